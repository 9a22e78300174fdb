/**
 * A tree on this host read through paths: the reading half a `LocalTreeWriter` (`tree.ts`)
 * needs (the walk in its walker worker, hashing in the copy and hash workers). A stand-in for
 * the local reading side, which takes its place once it lands.
 *
 * @module
 */

import { type Identity, identityOf } from "../../files.ts";
import { joinRel } from "../../paths.ts";
import { type Entry, entryFromStat } from "../../scan.ts";
import { FolderStream } from "../../walk.ts";
import { hashInPool, type WorkerPool } from "../../workers.ts";
import { type FolderSource, type HashOutcome, type TreeReader, type TreeWalk } from "../reader.ts";
import { type CopySide, type FileSource } from "../writer.ts";
import { localFileSource } from "./source.ts";

/** The tree at `root`, read through its paths. */
export class PathReader implements TreeReader, CopySide {
  /** Where the tree is, as the user named it: for messages only. */
  readonly display: string;
  readonly #root: string;
  readonly #pool: WorkerPool;

  /** Reads the tree at `root`, hashing in `pool`. */
  constructor(root: string, pool: WorkerPool) {
    this.display = root;
    this.#root = root;
    this.#pool = pool;
  }

  /** The root's identity, or null when it does not exist. */
  identity(): Identity | null {
    return identityOf(this.#root);
  }

  /** Streams folders in walk order, in a walker worker. */
  walk(request: TreeWalk | null): FolderSource {
    if (request === null) return new FolderStream(null);
    const { starts, filters, avoid } = request;
    const many = starts.length > 1 ? { starts } : {};
    return new FolderStream(
      {
        root: this.#root,
        start: starts[0] ?? "",
        ...many,
        filters,
        skipMetaDir: true,
        avoid,
        ...(request.probe ? { probe: true } : {}),
      },
      request.renames,
    );
  }

  /** The entry at a relative path without following a link (`""`: the root, followed). */
  entryAt(path: string): Entry | null {
    try {
      const at = joinRel(this.#root, path);
      return entryFromStat(path === "" ? Deno.statSync(at) : Deno.lstatSync(at));
    } catch {
      return null;
    }
  }

  /** Hashes files of this tree in the workers. */
  hash(
    files: Array<{ path: string; size: number }>,
    onBatch?: (files: number, bytes: number) => void,
  ): Promise<Map<string, HashOutcome>> {
    return hashInPool(this.#pool, this.#root, files, onBatch);
  }

  /** The descriptor copies read this tree's files through. */
  fileSource(): FileSource {
    return localFileSource(this.#root);
  }
}
