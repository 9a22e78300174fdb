/**
 * Setting mode, owner and mtime on an entry of the tree being written, never through a link:
 * through a descriptor opened with O_NOFOLLOW, checked to be the entry the walk saw.
 *
 * @module
 */

import * as fs from "node:fs";
import { dirname } from "node:path";
import { type Identity } from "../../files.ts";
import { type Entry } from "../../scan.ts";

/** A file with other hard links: changing its attributes would change them all. */
export class HardLinkedError extends Error {
  /** The error's name, for messages and logs. */
  override name = "HardLinkedError";
}

const NO_FOLLOW = fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;

/**
 * Sets mode, owner and mtime on what `path` names without following a link there: the entry is
 * opened with O_NOFOLLOW and changed through that descriptor. Only an entry the owner cannot
 * open (mode 000 when not root) falls back to the path, after an `lstat`.
 */
export function setAttributes(
  path: string,
  entry: Entry,
  options: { owners: boolean; expected: Identity | null },
): void {
  const { owners } = options;
  const isDir = entry.kind === "dir";
  // Under any permissions but -A, O_NOFOLLOW does not refuse a final link (Deno resolves the
  // path for its own check first): with no identity to expect, what is opened must be what an
  // lstat saw there.
  const expected = options.expected ?? lookedAt(path);
  let fd: number | null = null;
  try {
    fd = fs.openSync(
      path,
      fs.constants.O_RDONLY | NO_FOLLOW | (isDir ? fs.constants.O_DIRECTORY : 0),
    );
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "ELOOP" || code === "ENOTDIR") {
      throw new Error(`it became a symlink or changed type during the run; left alone`);
    }
    if (code !== "EACCES") throw error;
  }
  const mtime = new Date(entry.mtimeMs);
  if (fd === null) {
    if (!isDir) refuseSwappableFolder(path);
    const info = Deno.lstatSync(path);
    if (isDir ? !info.isDirectory : !info.isFile) throw new Error("it changed type; left alone");
    const found = { dev: info.dev, ino: info.ino ?? 0, nlink: info.nlink ?? 1 };
    checkAttributeTarget(found, { expected, isDir });
    // chown first: it clears setuid and setgid bits, which chmod then puts back.
    if (owners) Deno.chownSync(path, entry.uid, entry.gid);
    Deno.chmodSync(path, entry.mode);
    Deno.utimeSync(path, mtime, mtime);
    return;
  }
  try {
    const info = fs.fstatSync(fd);
    if (isDir ? !info.isDirectory() : !info.isFile()) {
      throw new Error("it changed type; left alone");
    }
    checkAttributeTarget({ dev: info.dev, ino: info.ino, nlink: info.nlink }, { expected, isDir });
    if (owners) fs.fchownSync(fd, entry.uid, entry.gid);
    fs.fchmodSync(fd, entry.mode);
    // Seconds as a double land a hair below the millisecond (…352.9999): half a microsecond
    // more reads back as the same millisecond.
    const seconds = (entry.mtimeMs + 0.0005) / 1000;
    fs.futimesSync(fd, seconds, seconds);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Throws unless nobody but us and root can swap `path` for a link between the check and the
 * change by path that an entry we cannot open needs: its folder is ours or root's, and others
 * cannot write it (or it is sticky: then they cannot rename our entries).
 *
 * @throws {Error} Someone else could.
 */
function refuseSwappableFolder(path: string): void {
  const folder = Deno.lstatSync(dirname(path));
  const mode = folder.mode ?? 0;
  const ours = folder.uid === Deno.uid() || folder.uid === 0;
  if (ours && ((mode & 0o022) === 0 || (mode & 0o1000) !== 0)) return;
  throw new Error(
    "it cannot be opened and its folder is writable by others (a link swapped in would take " +
      "the change): left alone",
  );
}

/**
 * What `path` names, once shown not to be a link.
 *
 * @throws {Error} It is a link.
 */
function lookedAt(path: string): Identity {
  const info = Deno.lstatSync(path);
  if (info.isSymlink) throw new Error("it became a symlink during the run; left alone");
  return { dev: info.dev, ino: info.ino ?? 0 };
}

/**
 * What was opened for an attribute change must be the entry the walk saw (a swap of any folder
 * above it shows here), and a file must have no other hard link: one outside the tree would
 * change with it.
 */
function checkAttributeTarget(
  found: Identity & { nlink: number },
  options: { expected: Identity | null; isDir: boolean },
): void {
  const { expected } = options;
  if (expected !== null && (found.dev !== expected.dev || found.ino !== expected.ino)) {
    throw new Error("it was replaced during the run; left alone");
  }
  // A folder's link count counts its subfolders; only a file's means other names.
  if (!options.isDir && found.nlink > 1) throw new HardLinkedError("it has other hard links");
}
