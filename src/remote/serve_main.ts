/**
 * Serves one session on this process's stdin and stdout (`serveFarEnd`): the far end's
 * program until the command line gains `--serve` (tests run it as a subprocess).
 * `--root=FOLDER` confines the trees a client may open.
 *
 * @module
 */

import { serveFarEnd } from "./farend.ts";

if (import.meta.main) {
  const rootArgument = Deno.args.find((argument) => argument.startsWith("--root="));
  Deno.exit(
    await serveFarEnd({
      input: Deno.stdin.readable,
      output: Deno.stdout.writable,
      ...(rootArgument === undefined ? {} : { root: rootArgument.slice("--root=".length) }),
    }),
  );
}
