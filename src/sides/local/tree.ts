/**
 * A tree on this host, read through {@linkcode TreeReader}: its walk streamed from a walker
 * worker (`stream.ts`), entries read with `lstat` (the root with `stat`: a root that is a link
 * is the folder it names), files hashed in the run's worker pool, which copies share.
 *
 * @module
 */

import { type Identity, identityOf } from "../../files.ts";
import { quoted } from "../../format.ts";
import { type Entry, entryFromStat } from "../../scan.ts";
import { hashInPool, type WorkerPool } from "./workers.ts";
import {
  type FileSource,
  type FolderSource,
  type HashOutcome,
  type TreeReader,
  type TreeWalk,
} from "../reader.ts";
import { localFileSource } from "./source.ts";
import { FolderStream } from "./stream.ts";

/** How a local tree is read. */
export interface LocalTreeOptions {
  /** The workers its files are hashed in: the run's pool, shared with copies. */
  pool: WorkerPool;
  /** The tree as the user named it, for messages (default: the root). */
  display?: string;
}

/** A folder of this host read as a tree: every read of it is below `root`. */
export class LocalTreeReader implements TreeReader {
  /** The tree's root folder (a link to one is followed). */
  readonly root: string;
  /** Where the tree is, as the user named it: for messages only. */
  readonly display: string;
  /** The run's workers: hashes here, and copies in a writer that extends this class. */
  protected readonly pool: WorkerPool;

  /** Reads the tree at `root`, hashing in `options.pool`. */
  constructor(root: string, options: LocalTreeOptions) {
    this.root = root;
    this.display = options.display ?? root;
    this.pool = options.pool;
  }

  /** The device and inode the root resolves to now, or null when nothing is there. */
  identity(): Promise<Identity | null> {
    return Promise.resolve(identityOf(this.root));
  }

  /** The descriptor a copy worker opens this tree's files through (`source.ts`). */
  fileSource(): FileSource {
    return localFileSource(this.root);
  }

  /**
   * Starts a walker worker on the folders `request` asks for, the root's `.treesync` left out
   * (null: an empty stream, for a tree that does not exist).
   */
  walk(request: TreeWalk | null): FolderSource {
    if (request === null) return new FolderStream(null);
    const { starts, filters, avoid, probe, renames } = request;
    return new FolderStream({
      root: this.root,
      start: starts[0] ?? "",
      starts,
      filters,
      skipMetaDir: true,
      avoid,
      ...(probe === undefined ? {} : { probe }),
    }, renames);
  }

  /**
   * The entry at `path` (relative; `""`: the root, a link followed), a link's target read, or
   * null when nothing is there.
   *
   * @throws {Error} When it cannot be read (the error of `lstat`), or `path` leaves the tree.
   */
  entryAt(path: string): Promise<Entry | null> {
    // Answered at once (a local tree can), a failure as a rejection.
    return new Promise((resolve) => resolve(this.#entryNow(path)));
  }

  #entryNow(path: string): Entry | null {
    const at = this.#pathOf(path);
    try {
      const entry = entryFromStat(path === "" ? Deno.statSync(at) : Deno.lstatSync(at));
      if (entry.kind === "symlink") entry.target = Deno.readLinkSync(at);
      return entry;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
        return null;
      }
      throw error;
    }
  }

  /** Hashes files of this tree in the pool, in batches so every core hashes. */
  hash(
    files: Array<{ path: string; size: number }>,
    onBatch?: (files: number, bytes: number) => void,
  ): Promise<Map<string, HashOutcome>> {
    return hashInPool(this.pool, this.root, files, onBatch);
  }

  /** The absolute path of a relative one; refuses one that could lead out of the tree. */
  #pathOf(path: string): string {
    if (path === "") return this.root;
    if (path.startsWith("/") || path.split("/").some((part) => part === ".." || part === "")) {
      throw new Error(`${quoted(path)} is not a path inside the tree ${quoted(this.display)}`);
    }
    return `${this.root}/${path}`;
  }
}

/** The tree at `root` on this host, read through {@linkcode TreeReader}. */
export function localTree(root: string, options: LocalTreeOptions): LocalTreeReader {
  return new LocalTreeReader(root, options);
}
