/**
 * A run's changes to a tree on this host ({@linkcode TreeChanges}): each one checks the folder
 * it happens in with the run's {@linkcode FolderGuard} and is made from inside that folder;
 * copies are staged in the copy workers (files streamed from another host: here, on the main
 * thread, `streamcopy.ts`) and renamed into place here, on the main thread.
 *
 * @module
 */

import { type Identity, pathExists, sameIdentity } from "../../files.ts";
import { quoted } from "../../format.ts";
import { joinRel, parentOf } from "../../paths.ts";
import { type Entry, entryFromStat, type Signature, signatureOf } from "../../scan.ts";
import {
  type ChangeSettings,
  type CopyItem,
  type CopyOutcome,
  type CopyReport,
  type FileSource,
  type TreeChanges,
} from "../writer.ts";
import { HardLinkedError, setAttributes } from "./attributes.ts";
import { FolderGuard, inFolder, inParent } from "./guard.ts";
import { placeCopy, placeHardLink, placeSymlink } from "./place.ts";
import {
  type CopyPool,
  type CopySettings,
  copySettings,
  failedOutcome,
  type StageOutcome,
} from "./stage.ts";
import { stageStreamedBatch, StreamSlots } from "./streamcopy.ts";
import { TempSupply } from "./tempsupply.ts";
import { moveToTrash } from "./trash.ts";

/** The changes of one run to the tree at `root`. */
export class LocalTreeChanges implements TreeChanges {
  readonly #root: string;
  readonly #guard: FolderGuard;
  readonly #settings: CopySettings;
  readonly #pool: CopyPool;
  /** The files streamed from another host in flight at once, across batches. */
  readonly #streamSlots = new StreamSlots();
  /** Their temporary files, made ahead in a worker when the pool can. */
  readonly #temps: TempSupply | null;

  /** Changes the tree at `root`, staging copies in `pool` with our folders of `folders`. */
  constructor(
    root: string,
    input: {
      settings: ChangeSettings;
      folders: Omit<CopySettings, "owners" | "sparse">;
      pool: CopyPool;
    },
  ) {
    const { settings, folders, pool } = input;
    this.#root = root;
    this.#guard = new FolderGuard(root, settings.seen);
    this.#settings = copySettings({ ...folders, owners: settings.owners, sparse: settings.sparse });
    this.#pool = pool;
    const maker = pool.makeTemps?.bind(pool);
    this.#temps = maker ? new TempSupply(maker, this.#settings) : null;
  }

  /** Two batches a worker. */
  get copySlots(): number {
    return this.#pool.size * 2;
  }

  makeFolder(path: string): void {
    const parent = this.#checkedParent(path);
    const seen = this.#guard.expected(path);
    this.#guard.made(path, makeFolderIn(this.#at(path), { parent, seen }));
  }

  removeFolder(path: string): void {
    inParent(this.#at(path), this.#checkedParent(path), (name) => Deno.removeSync(name));
  }

  removeFile(path: string): void {
    inParent(this.#at(path), this.#checkedParent(path), (name) => {
      if (this.#settings.trashDir) moveToTrash(name, path, this.#settings);
      else Deno.removeSync(name);
    });
  }

  rename(from: string, to: string): void {
    const parent = this.#checkedParent(to);
    this.#guard.checkParent(from);
    // Renamed into the folder checked, from inside it; the path it comes from is looked up
    // through the path (see the README's threat model).
    inParent(this.#at(to), parent, (name) => {
      // rename() would quietly replace an entry there; the plan says there is none.
      if (pathExists(name)) throw new Error(`${quoted(to)} appeared meanwhile`);
      Deno.renameSync(this.#at(from), name);
    });
    this.#guard.moved(to, from);
  }

  hardLink(path: string, target: string): void {
    const parent = this.#checkedParent(path);
    this.#guard.checkParent(target);
    placeHardLink(this.#at(path), this.#at(target), {
      ...this.#settings,
      relative: path,
      parent,
      targetParent: this.#guard.chain(parentOf(target)),
    });
  }

  symlink(path: string, entry: Entry): void {
    const parent = this.#checkedParent(path);
    placeSymlink(this.#at(path), entry, { ...this.#settings, relative: path, parent });
  }

  setFileAttributes(path: string, entry: Entry): Signature | null {
    const parent = this.#checkedParent(path);
    const { owners } = this.#settings;
    return inParent(this.#at(path), parent, (name) => {
      try {
        setAttributes(name, entry, { owners, expected: this.#guard.identity(path) });
      } catch (error) {
        if (error instanceof HardLinkedError) return null;
        throw error;
      }
      return signatureOf(entryFromStat(Deno.lstatSync(name)));
    });
  }

  setFolderAttributes(path: string, entry: Entry): void {
    this.#guard.check(path);
    const { owners } = this.#settings;
    // Set from inside the folder itself: `.` is the folder checked, wherever its path leads.
    inFolder(
      this.#at(path),
      this.#guard.chain(path) ?? [],
      () => setAttributes(".", entry, { owners, expected: this.#guard.expected(path) }),
    );
  }

  /**
   * Stages a batch in the copy workers (a tree on this host) or, for files streamed from
   * another host, here on the main thread, several in flight at once; each staged file is
   * renamed into place as soon as it is staged.
   */
  copy(source: FileSource, items: CopyItem[], report: CopyReport): Promise<void> {
    const staged = {
      ...(report.onBytes ? { onBytes: report.onBytes } : {}),
      onEach: (index: number, outcome: StageOutcome) =>
        report.onEach(index, this.#place(items[index]!, outcome)),
    };
    const toStage = items.map((item) => ({
      path: item.path,
      parent: this.#guard.expected(parentOf(item.path)),
      ...(item.recordedHash === undefined ? {} : { recordedHash: item.recordedHash }),
    }));
    if (source.kind === "stream") {
      const pool = this.#pool;
      return stageStreamedBatch(source.files, {
        items: toStage,
        settings: this.#settings,
        slots: this.#streamSlots,
        temps: this.#temps,
        stopLevel: () => pool.stopLevel?.() ?? 0,
      }, staged);
    }
    return this.#pool.copy({ source, items: toStage, ...this.#settings }, staged);
  }

  /** Renames a staged copy into place, here on the main thread (see {@linkcode placeCopy}). */
  #place(item: CopyItem, outcome: StageOutcome): CopyOutcome {
    if (!("staged" in outcome)) return outcome;
    try {
      const copied = placeCopy(this.#at(item.path), outcome.staged, {
        ...this.#settings,
        toRoot: this.#root,
        chain: this.#guard.chain(parentOf(item.path)),
        fresh: item.fresh,
        ...(item.replacing === undefined ? {} : { replacing: item.replacing }),
      });
      return { copied };
    } catch (error) {
      return failedOutcome(error);
    }
  }

  /**
   * The chain of the folder holding `path`, once that folder is checked: the root itself is
   * never removed, renamed or replaced.
   */
  #checkedParent(path: string): Identity[] | null {
    if (path === "") {
      throw new Error("refusing to touch the root itself: that is never part of a plan");
    }
    this.#guard.checkParent(path);
    return this.#guard.chain(parentOf(path));
  }

  #at(path: string): string {
    return joinRel(this.#root, path);
  }
}

/**
 * Makes a folder inside the checked folder `parent` and returns what it made. A folder already
 * there is taken only when it is the one the walk saw (`seen`): anything else appeared during
 * the run, and nothing is written into it.
 */
function makeFolderIn(
  path: string,
  known: { parent: Identity[] | null; seen: Identity | null },
): Identity {
  return inParent(path, known.parent, (name) => {
    let existed = false;
    try {
      Deno.mkdirSync(name);
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
      existed = true;
    }
    const info = Deno.lstatSync(name);
    const made = { dev: info.dev, ino: info.ino ?? 0 };
    if (!info.isDirectory || (existed && !sameIdentity(made, known.seen))) {
      throw new Error("something else appeared there during the run; nothing was written into it");
    }
    return made;
  });
}
