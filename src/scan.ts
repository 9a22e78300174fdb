/**
 * What a tree is made of, as every side hands it over: an entry's kind, size, times, inode and
 * mode, one folder's listing, what went wrong with a path; and the signature that says a file
 * may have changed. Types and pure helpers; the local side lists folders in
 * `sides/local/list.ts`.
 *
 * @module
 */

export type { ExcludeMatcher } from "./exclude.ts";
export type { Identity } from "./files.ts";

/** Name of the metadata folder at the top of every replica; never mirrored, never deleted. */
export const META_DIR = ".treesync";

/** What a folder entry is; `special` covers fifos, sockets and devices. */
export type EntryKind = "file" | "dir" | "symlink" | "special";

/** One entry of a scanned tree, keyed elsewhere by its path relative to the root. */
export interface Entry extends Signature {
  /** What it is. */
  kind: EntryKind;
  /** Device, with `ino` the entry's identity: a folder swapped during a run shows here. */
  dev: number;
  /** Permission bits (`0o7777`). */
  mode: number;
  /** Owner. */
  uid: number;
  /** Group. */
  gid: number;
  /** Hard links to it (names it has). */
  nlink?: number;
  /** Symlink target, for symlinks. */
  target?: string;
  /** SHA-256 in hex, where it has been computed this run. */
  hash?: string;
  /** When `hash` was computed. */
  hashedAtMs?: number;
}

/** Something that went wrong with one path; the run goes on and exits 1. */
export interface Problem {
  /** The path it concerns, relative to the tree's root. */
  path: string;
  /** What went wrong, one line. */
  message: string;
}

/** A tree as one scan saw it. Paths are relative, `/`-separated; the root itself is `""`. */
export interface Scan {
  /** Every entry seen, by relative path, the root `""` included. */
  entries: Map<string, Entry>;
  /** Entries that could not be read: each makes the run fail. */
  problems: Problem[];
  /**
   * Paths that are not in `entries` but may hold data: unreadable or undecodable entries,
   * excluded ones, skipped specials. Nothing at or below them, nor any folder above them, is
   * ever deleted.
   */
  protectedPaths: string[];
  /** A folder met during the walk that is the other tree's root (a bind mount), if any. */
  nested?: string;
}

/** One folder of a tree as its walk saw it. */
export interface FolderListing {
  /** The folder, relative to the root (`""` for the root). */
  folder: string;
  /** Its entries by name, in walk order ({@linkcode compareNames}). */
  entries: Map<string, Entry>;
  /** Entries that could not be read; the folder itself when it could not be listed. */
  problems: Problem[];
  /** Paths (relative to the root) left out that may hold data: never deleted. */
  protectedPaths: string[];
  /** True when the folder itself could not be listed. */
  unlistable?: boolean;
  /** An entry that is the other tree's root (a bind mount): the walk must stop. */
  nested?: string;
}

/** An entry from what `lstat` (or `stat`, for a root) said. */
export function entryFromStat(stat: Deno.FileInfo): Entry {
  const kind: EntryKind = stat.isFile
    ? "file"
    : stat.isDirectory
    ? "dir"
    : stat.isSymlink
    ? "symlink"
    : "special";
  return {
    kind,
    size: kind === "file" ? stat.size : 0,
    mtimeMs: stat.mtime?.getTime() ?? 0,
    ctimeMs: stat.ctime?.getTime() ?? 0,
    ino: stat.ino ?? 0,
    dev: stat.dev ?? 0,
    mode: (stat.mode ?? 0) & 0o7777,
    uid: stat.uid ?? 0,
    gid: stat.gid ?? 0,
    nlink: stat.nlink ?? 1,
  };
}

/** What identifies one state of a file: if any of it changes, the content may have. */
export interface Signature {
  /** Bytes (0 for all but files). */
  size: number;
  /** Modification time. */
  mtimeMs: number;
  /** Change time; Deno reads it to the whole second. */
  ctimeMs: number;
  /** Inode. */
  ino: number;
}

/** The signature part of an entry. */
export function signatureOf(entry: Signature): Signature {
  return { size: entry.size, mtimeMs: entry.mtimeMs, ctimeMs: entry.ctimeMs, ino: entry.ino };
}

/** Whether two signatures are the same: the file has not changed, as far as it shows. */
export function sameSignature(a: Signature, b: Signature): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs &&
    a.ino === b.ino;
}
