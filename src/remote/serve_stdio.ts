/**
 * `treesync --serve`: the far end of a remote tree, one session on this process's stdin and
 * stdout (`farend.ts`: a pull's reads, or a pushed run). Standard output carries the
 * session's frames and nothing else: anything else this process would print goes to stderr,
 * which the remote shell hands back to the near end.
 *
 * @module
 */

import { serveFarEnd } from "./farend.ts";

/** What `treesync --serve` was given. */
export interface ServeStdioOptions {
  /** `--root`: trees may be opened at or below this absolute folder only (null: any). */
  root: string | null;
}

/**
 * Serves one session on stdin and stdout until the client ends it. A relative tree path is
 * taken from the current folder: the login's home, where the remote shell starts us.
 *
 * @returns 0 when the client ended the session, 1 (with the reason on stderr) when not, 2 on
 *   a terminal.
 */
export async function serveStdio(options: ServeStdioOptions): Promise<number> {
  if (Deno.stdin.isTerminal() || Deno.stdout.isTerminal()) {
    // Typed by hand, or `ssh -t`: a terminal would mangle the frames.
    console.error(
      "treesync --serve: its stdin and stdout carry the session, not a terminal: the near " +
        "end's remote shell starts it (treesync host:PATH ...); for ssh, drop -t",
    );
    return 2;
  }
  keepStdoutForFrames();
  return await serveFarEnd({
    input: Deno.stdin.readable,
    output: Deno.stdout.writable,
    ...(options.root === null ? {} : { root: options.root }),
  });
}

/** Sends what the console would print on stdout to stderr: stdout is the session's. */
function keepStdoutForFrames(): void {
  const toStderr = (...data: unknown[]) => console.error(...data);
  console.log = toStderr;
  console.info = toStderr;
  console.debug = toStderr;
}
