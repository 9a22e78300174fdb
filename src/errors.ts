/**
 * Errors and exit codes: what each kind of failure means to a caller, and one way of turning any
 * error into a short line of text.
 *
 * @module
 */

import { escapeControls, shortenQuoted } from "./format.ts";

/** Exit codes: part of the command-line contract that cron jobs and scripts rely on. */
export const ExitCode = {
  /** The replica matches the source (or, with `--verify`, its record). */
  Ok: 0,
  /**
   * The run finished but the replica does not match the source: entries failed or were kept
   * (`--no-delete`, `--restore`), or deletions were declined at `-I`; or `--verify` found
   * mismatches or could not check every file.
   */
  Failed: 1,
  /** Usage or setup error; nothing was changed. */
  Usage: 2,
  /** Refused by a safety check; nothing was deleted. */
  Refused: 3,
  /** Stopped by SIGINT. */
  Interrupted: 130,
  /** Stopped by SIGTERM. */
  Terminated: 143,
} as const;

/** A bad flag, value or path: exit 2, nothing changed. */
export class UsageError extends Error {
  /** The error's name, for messages and logs. */
  override name = "UsageError";
}

/** A safety check said no: exit 3, nothing deleted. */
export class RefusedError extends Error {
  /** The error's name, for messages and logs. */
  override name = "RefusedError";
}

/**
 * An error in a few words for a message.
 *
 * @param pathShown The message names the path already: leave out the call and path that
 *   Deno's messages end with (`File name too long: stat '/a/b'` becomes `File name too long`).
 */
export function errorText(error: unknown, pathShown = false): string {
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.NotFound) return "no such file or folder";
  if (error instanceof Deno.errors.NotADirectory) return "a part of the path is not a folder";
  let text = error instanceof Error
    ? error.message.replace(/,? (?:os error \d+|\(os error \d+\))/, "").trim()
    : String(error);
  if (pathShown) text = text.replace(/: [a-z_]+ '.*'$/s, "");
  // Deno's messages quote the path they failed on, which may be thousands of characters long.
  return escapeControls(shortenQuoted(text));
}
