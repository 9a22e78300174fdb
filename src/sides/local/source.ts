/**
 * The local reading side's files as a copy reads them: the {@linkcode FileSource} descriptor
 * of a tree on this host, and the one way a file is opened through it (a copy worker calls
 * this; the writer never opens a file of the other tree).
 *
 * @module
 */

import { type OpenedFile, openRegularFile } from "./hash.ts";
import { joinRel } from "../../paths.ts";
import { type LocalFileSource } from "../reader.ts";

/** The descriptor of the tree at `root` on this host. */
export function localFileSource(root: string): LocalFileSource {
  return { kind: "local", root };
}

/**
 * Opens a regular file of the tree `source` describes for reading.
 *
 * @throws {Error} When it is not a regular file (any more), or cannot be opened.
 */
export function openSourceFile(source: LocalFileSource, path: string): OpenedFile {
  return openRegularFile(joinRel(source.root, path));
}
