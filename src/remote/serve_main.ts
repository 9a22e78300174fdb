/**
 * Serves one session on this process's stdin and stdout, as `treesync --serve` does, for tests
 * that start the far end with read permission only. `--root=FOLDER` confines the trees a client
 * may open.
 *
 * @module
 */

import { serveStdio } from "./serve_stdio.ts";

if (import.meta.main) {
  const rootArgument = Deno.args.find((argument) => argument.startsWith("--root="));
  const root = rootArgument === undefined ? null : rootArgument.slice("--root=".length);
  Deno.exit(await serveStdio({ root }));
}
