/**
 * The paths a peer may send ({@linkcode wirePathProblem}): relative to the served tree, no
 * empty, `.` or `..` names, no NUL, within Linux's limits. Pure: no I/O.
 *
 * @module
 */

import { FrameError } from "./frames.ts";

const encoder = new TextEncoder();

/** The longest path a peer may send, in UTF-8 bytes (Linux's `PATH_MAX`). */
export const MAX_PATH_BYTES = 4096;

/** The longest name in a path, in UTF-8 bytes (Linux's `NAME_MAX`). */
export const MAX_NAME_BYTES = 255;

/**
 * What is wrong with a path a peer sent, or null when the served tree may look it up: it must
 * be relative to the tree's root (`""` is the root itself), with no empty, `.` or `..` names
 * and no NUL. Whether a folder on the way is a link is the far end's check, on its disk.
 */
export function wirePathProblem(path: string): string | null {
  if (path === "") return null;
  if (path.includes("\0")) return "it contains a NUL byte";
  if (path.startsWith("/")) return "it is absolute";
  if (encoder.encode(path).length > MAX_PATH_BYTES) {
    return `it is longer than ${MAX_PATH_BYTES} bytes`;
  }
  for (const name of path.split("/")) {
    if (name === "") return "it has an empty name (a doubled or trailing '/')";
    if (name === "." || name === "..") return `it has a '${name}' name`;
    if (encoder.encode(name).length > MAX_NAME_BYTES) {
      return `it has a name longer than ${MAX_NAME_BYTES} bytes`;
    }
  }
  return null;
}

/**
 * Checks a path a peer sent.
 *
 * @throws {FrameError} The path may not be looked up (see {@linkcode wirePathProblem}).
 */
export function checkWirePath(path: string): string {
  const problem = wirePathProblem(path);
  if (problem !== null) {
    throw new FrameError(`Refused path '${JSON.stringify(path).slice(1, -1)}': ${problem}`);
  }
  return path;
}
