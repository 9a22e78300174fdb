/**
 * Serves one session on this process's stdin and stdout: the far end's program until the
 * command line gains `--serve` (tests run it as a subprocess). `--root=FOLDER` confines the
 * trees a client may open.
 *
 * @module
 */

import { LocalReplicaStore } from "../sides/local/store.ts";
import { LocalTreeReader } from "../sides/local/tree.ts";
import { WorkerPool } from "../sides/local/workers.ts";
import { serve } from "./server.ts";

/** Runs the session; exits 0 when the client ended it, 1 with the reason on stderr when not. */
async function main(): Promise<void> {
  const rootArgument = Deno.args.find((argument) => argument.startsWith("--root="));
  const pool = new WorkerPool(navigator.hardwareConcurrency || 2);
  const outcome = await serve({
    input: Deno.stdin.readable,
    output: Deno.stdout.writable,
    readTree: (path) => new LocalTreeReader(path, { pool }),
    openStore: (path) => new LocalReplicaStore(path),
    ...(rootArgument === undefined ? {} : { root: rootArgument.slice("--root=".length) }),
  });
  pool.close();
  if (outcome.error !== undefined) {
    console.error(`treesync --serve: ${outcome.error}`);
    Deno.exit(1);
  }
  Deno.exit(0);
}

if (import.meta.main) main();
