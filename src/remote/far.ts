/**
 * The runs whose engine runs on the far end, because the tree they write is there: a push
 * (`treesync /src host:/dst`, `--restore host:/src /dst`) and `--verify host:/dst`. The near
 * end starts `treesync --serve`, sends the run, serves its own tree and prints what the far
 * end reports (docs: the engine runs on the host of the tree it writes).
 *
 * @module
 */

import { type Options } from "../cli.ts";
import { UsageError } from "../errors.ts";
import { type Reporter } from "../log.ts";

/**
 * Runs a push on the far end and returns its exit code: the one entry for every run whose
 * written tree is on another host.
 *
 * @throws {UsageError} Not built yet.
 */
export function runFar(options: Options, _report: Reporter): Promise<number> {
  return Promise.reject(
    new UsageError(
      `Cannot mirror into ${options.restore ? options.source : options.replica}: runs that ` +
        "write a tree on another host are not built yet (pull instead: run treesync there)",
    ),
  );
}

/**
 * Verifies a replica on another host, on the far end, and returns the exit code.
 *
 * @throws {UsageError} Not built yet.
 */
export function verifyFar(options: Options, _report: Reporter): Promise<number> {
  return Promise.reject(
    new UsageError(
      `Cannot verify ${options.replica}: --verify of a remote replica is not built yet`,
    ),
  );
}
