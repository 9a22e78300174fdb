/**
 * The runs whose engine runs on the far end, because the tree they write is there: a push
 * (`treesync /src host:/dst`), `--restore host:/src /dst`, and `--verify host:/dst`. This module
 * starts the far end over the remote shell for each run (`connect.ts`) and hands it to
 * `push.ts`, which sends the run, serves this host's tree and reports what the far run reports.
 *
 * @module
 */

import { type Options } from "../cli.ts";
import { type RunControl } from "../control.ts";
import { type Reporter } from "../log.ts";
import { type RunDependencies } from "../run.ts";
import { type RunSummary } from "../summary.ts";
import { farEndName, spawnFarEnd, startError } from "./connect.ts";
import { type FarEndLink, type PushOptions, runPushed, verifyPushed } from "./push.ts";

/**
 * One run on the far end, with `runOnce`'s shape.
 *
 * @throws {UsageError} The far end did not start or refused the run (exit 2).
 * @throws {RefusedError} A safety check of the far run refused it (exit 3).
 */
export function runFar(
  options: Options,
  deps: RunDependencies,
  scope?: string[],
): Promise<RunSummary> {
  const pushed = options as PushOptions;
  return runPushed(pushed, { ...deps, connect: () => connectPush(pushed, deps.report) }, scope);
}

/**
 * `--verify` of a replica on the far end: it hashes there, and only its findings travel.
 *
 * @returns The verify's exit code.
 */
export function verifyFar(
  options: Options,
  deps: { report: Reporter; control: RunControl },
): Promise<number> {
  const pushed = options as PushOptions;
  return verifyPushed(pushed, { ...deps, connect: () => connectPush(pushed, deps.report) });
}

/** Starts the far end for one pushed run; its stderr lines become warnings once it greeted. */
async function connectPush(options: PushOptions, report: Reporter): Promise<FarEndLink> {
  const remote = options.remote;
  const host = farEndName(remote);
  const started = {
    remote,
    rsh: options.rsh,
    remoteTreesync: options.remoteTreesync,
    onStderr: (line: string) => report.warn(`${host}: ${line}`),
  };
  const far = await spawnFarEnd(started);
  const display = options.restore ? options.source : options.replica;
  return {
    ...far.streams,
    host,
    greeted: () => far.greeted(),
    explain: (error: unknown) =>
      startError(far, error, { ...started, display, name: options.restore ? "source" : "replica" }),
    close: () => far.close(),
  };
}
