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
 * Where the files of a reading side are read from, as a writing side's copy gets it: a tree on
 * this host ({@linkcode LocalFileSource}, plain data posted to a copy worker as it is), or one
 * whose reader streams each file from another host ({@linkcode StreamedFileSource}, read on
 * the writer's main thread). Only the side that made it opens a file through it.
 */
export type FileSource = LocalFileSource | StreamedFileSource;

/** The files of a tree on this host: a copy worker opens them below `root`. */
export interface LocalFileSource {
  /** A tree on this host. */
  kind: "local";
  /** Its root. */
  root: string;
}

/** The files of a tree on another host, streamed to the writer one read at a time. */
export interface StreamedFileSource {
  /** A tree whose reader streams its files (a remote tree). */
  kind: "stream";
  /** Reads them. */
  files: StreamedFiles;
}

/** What the reading end saw once a streamed file was read whole. */
export interface StreamedFileEnd {
  /** SHA-256 of the bytes it read and sent, lowercase hex: the writer checks what arrived. */
  hash: string;
  /** The file as it was once read (size, mode, owner, mtime, ctime, inode): what a copy gets. */
  entry: Entry;
  /** It changed while it was read: the bytes may be torn, and the copy reads it again. */
  changed: boolean;
}

/**
 * Reads the files of a tree on another host, several at once (each read is one request over
 * the connection).
 */
export interface StreamedFiles {
  /**
   * Streams the regular file at the relative `path` (never through a link), handing each chunk
   * to `onChunk` as it arrives, synchronously: the next chunk is not taken until it returns, so
   * a slow writer slows the stream. `onChunk` returns false to abandon the read; the chunk is
   * valid only during the call.
   *
   * @returns What the reading end saw once it read the file whole, or null when abandoned.
   * @throws {Error} (rejects) The file is not there, not a regular file, could not be read, the
   * connection failed, or `onChunk` threw (the read is cancelled then, with its error).
   */
  read(path: string, onChunk: (chunk: Uint8Array) => boolean): Promise<StreamedFileEnd | null>;
}

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
