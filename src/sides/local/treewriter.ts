/**
 * A tree on this host that a run writes ({@linkcode TreeWriter}): read as a
 * {@linkcode LocalTreeReader}, prepared (our `tmp/` and trash folders in its `.treesync/`,
 * leftovers of a killed run), changed through one {@linkcode LocalTreeChanges} per run, and
 * tidied at the end (old trash purged, folders of ours made for a restore removed again).
 * Copies are staged in the pool the reading half hashes in.
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import { type Identity, identityOf, removeQuietly, sameIdentity } from "../../files.ts";
import {
  type ChangeSettings,
  type TreeChanges,
  type TreeWriter,
  type WritePreparation,
} from "../writer.ts";
import { LocalTreeChanges } from "./changes.ts";
import { makeOwnFolder, type MetaPaths, metaPaths } from "./meta.ts";
import { type CopyPool } from "./stage.ts";
import { type LocalTreeOptions, LocalTreeReader } from "./tree.ts";
import { purgeTrash, trashFolderName } from "./trash.ts";

/** Our folders of a prepared tree: where files are staged and kept. */
interface PreparedFolders {
  tempDir: string;
  tempIdentity: Identity;
  trashDir: string | null;
  trashIdentity: Identity | null;
}

/** The tree at `root` on this host, as a run writes it. */
export class LocalTreeWriter extends LocalTreeReader implements TreeWriter {
  readonly #meta: MetaPaths;
  /** Where copies are staged: the reading half's pool, unless told (tests record requests). */
  readonly #copies: CopyPool;
  #folders: PreparedFolders | null = null;
  /** Our folders this run made that go again at its end if left empty. */
  readonly #madeHere: Array<{ path: string } & Identity> = [];

  /** Writes the tree at `root`; copies are staged in `options.copies`, else in the pool. */
  constructor(root: string, options: LocalTreeOptions & { copies?: CopyPool }) {
    super(root, options);
    this.#meta = metaPaths(root);
    this.#copies = options.copies ?? this.pool;
  }

  /** The nearest folder that exists at or above the root (the one the root would be made in). */
  placeIdentity(): Promise<Identity | null> {
    for (let path = resolve(this.root);; path = dirname(path)) {
      const found = identityOf(path);
      if (found !== null || path === "/") return Promise.resolve(found);
    }
  }

  /**
   * Makes our folders in the tree's `.treesync/` (each taken only once shown to be ours) and
   * removes what a killed run left in `tmp/`; the lock says no run is using it.
   */
  prepare(request: WritePreparation): void {
    const make = (path: string, removeIfEmpty: boolean) => {
      const { dev, ino, made } = makeOwnFolder(path);
      if (made && removeIfEmpty) this.#madeHere.push({ path, dev, ino });
      return { dev, ino };
    };
    const meta = this.#meta;
    make(meta.dir, request.removeMadeFolders);
    const tempIdentity = make(meta.temp, request.removeMadeFolders);
    if (request.cleanLeftovers) {
      for (const leftover of Deno.readDirSync(meta.temp)) {
        removeQuietly(`${meta.temp}/${leftover.name}`);
      }
    }
    let trashDir: string | null = null;
    let trashIdentity: Identity | null = null;
    if (request.trash) {
      make(meta.trash, request.removeMadeFolders);
      trashDir = `${meta.trash}/${trashFolderName(request.now)}`;
      trashIdentity = make(trashDir, true);
    }
    this.#folders = { tempDir: meta.temp, tempIdentity, trashDir, trashIdentity };
  }

  /** The run's changes, checked against `settings.seen`. */
  changes(settings: ChangeSettings): TreeChanges {
    if (this.#folders === null) throw new Error("the tree is not prepared for writing");
    return new LocalTreeChanges(this.root, {
      settings,
      folders: this.#folders,
      pool: this.#copies,
    });
  }

  /** Removes the trash folders older than `keepMs`; returns their names. */
  purgeTrash(keepMs: number, now: Date): string[] {
    return purgeTrash(this.#meta.trash, keepMs, now);
  }

  /** Removes folders this run made, innermost first, each only if empty and still ours. */
  removeMadeFolders(): void {
    for (const folder of this.#madeHere.toReversed()) {
      if (!sameIdentity(identityOf(folder.path), folder)) continue;
      try {
        Deno.removeSync(folder.path); // not recursive: a folder with anything in it stays
      } catch {
        // Not empty, or already gone: leave it.
      }
    }
    this.#madeHere.length = 0;
  }
}
