/**
 * Reading a tree, as the engine sees it: every tree is reached through this interface (and,
 * for the tree a run changes, `writer.ts`), never through a path. A run reads the tree it
 * mirrors *from* and the tree it mirrors *to* alike; `--restore` swaps the two once, at the
 * start: from then on nothing above the sides knows which is which.
 *
 * Roles are `from`/`to`; `source`/`replica` are the command line's and the record's words.
 * Implementations: `local/` (this host). Nothing here touches a file.
 *
 * @module
 */

import { type FilterRule } from "../exclude.ts";
import { type Identity } from "../files.ts";
import { type Entry, type FolderListing, type Problem } from "../scan.ts";

/** What a walk of one tree is asked for. */
export interface TreeWalk {
  /**
   * The folders to walk, relative to the root (`""`: the whole tree), in walk order and none
   * inside another; the first start's own entry is {@linkcode FolderSource.start}.
   */
  starts: string[];
  /** `--include`/`--exclude` rules, in order. */
  filters: FilterRule[];
  /** Folders never entered: the other tree's root. */
  avoid: Identity[];
  /** Look for the other tree's root among all folders first (bind mounts), see `probed`. */
  probe?: boolean;
  /**
   * Subtrees listed under another name: the subtree at each key is handed over at its value
   * (a dry run walks a folder it would move where it is, under the name it would get).
   */
  renames?: Map<string, string>;
}

/** One tree's folders, one at a time in walk order, read ahead in batches. */
export interface FolderSource {
  /** The first start folder's own entry, once the first folder came (null: not readable). */
  readonly start: Entry | null;
  /** Special files skipped so far, for the warnings. */
  readonly skipped: Problem[];
  /** The next folder in walk order, or null at the end. */
  next(): Promise<FolderListing | null>;
  /** The next folder without taking it. */
  peek(): Promise<FolderListing | null>;
  /** With `probe`: the folder of this tree that is the other's root, or null. */
  probed(): Promise<string | null>;
  /** Ends the walk. */
  close(): void;
}

/** A file's SHA-256 as read: null when it changed while read. */
export interface FileHash {
  /** Lowercase hex SHA-256. */
  hash: string;
  /** The file as it was when read (size, mtime, ctime, inode). */
  signature: { size: number; mtimeMs: number; ctimeMs: number; ino: number };
  /** When the read began. */
  hashedAtMs: number;
}

/** One file's hashing outcome. */
export type HashOutcome = { result: FileHash | null } | { error: string };

/**
 * Where the files of a reading side are read from, as a copy worker gets it: plain data, posted
 * to a worker as it is. Only the side that made it opens a file through it.
 */
export type FileSource = {
  /** A tree on this host. */
  kind: "local";
  /** Its root. */
  root: string;
};

/** A tree as the engine reads it. */
export interface TreeReader {
  /** Where the tree is, as the user named it: for messages only, never opened. */
  readonly display: string;
  /**
   * The root's identity now, or null when it does not exist. Asynchronous, as every question
   * to a tree is: a tree on another host answers over the network.
   */
  identity(): Promise<Identity | null>;
  /** The descriptor a writing side's copies read this tree's files through. */
  fileSource(): FileSource;
  /** Streams folders in walk order (null: an empty stream, for a tree that does not exist). */
  walk(request: TreeWalk | null): FolderSource;
  /**
   * The entry at a relative path without following a link (`""`: the root, followed), with a
   * link's target; null when nothing is there.
   *
   * @throws {Error} (rejects) When it is there but cannot be read.
   */
  entryAt(path: string): Promise<Entry | null>;
  /**
   * Hashes files of this tree, in batches on every core.
   *
   * @returns Each path's outcome.
   */
  hash(
    files: Array<{ path: string; size: number }>,
    onBatch?: (files: number, bytes: number) => void,
  ): Promise<Map<string, HashOutcome>>;
}
