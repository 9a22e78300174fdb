/**
 * One run, wherever its trees are: both on this host (`runOnce`); the tree it reads on another
 * (a pull, or a restore from a replica there: the far end is started for this run and the
 * engine runs here); or the tree it writes on another (a push, or a restore into a source
 * there: the engine runs on that host, `remote/far.ts`). The one-shot run and the loop call
 * {@linkcode runAnywhere} for every run, so each run of a loop starts its far end afresh and
 * one that cannot reach it fails alone.
 *
 * @module
 */

import { type Options } from "./cli.ts";
import { runFar } from "./remote/far.ts";
import { connectPull, isPull } from "./remote/pull.ts";
import { type RunDependencies, runOnce } from "./run.ts";
import { type RunSummary } from "./summary.ts";

/**
 * Runs once, whole or over `scope` (see `runOnce`), on whichever host writes.
 *
 * @returns The run's summary (with the bytes on the wire when a tree is remote).
 * @throws {UsageError} Paths that cannot be mirrored, or a far end that cannot be started or
 * refuses (nothing changed).
 * @throws {RefusedError} A safety check refused the run.
 */
export async function runAnywhere(
  options: Options,
  deps: RunDependencies,
  scope?: string[],
): Promise<RunSummary> {
  if (options.remote === undefined) return await runOnce(options, deps, scope);
  if (!isPull(options)) return await runFar(options, deps, scope);
  const pull = await connectPull(options, deps.report);
  try {
    return await runOnce(options, { ...deps, openTrees: pull.openTrees }, scope);
  } finally {
    await pull.close();
  }
}
