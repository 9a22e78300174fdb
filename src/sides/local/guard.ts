/**
 * The folder guard: what each folder of the tree being written was when the walk saw it, or
 * when this run made or moved it, and the way every change reaches an entry through its
 * checked folder ({@linkcode inParent}).
 *
 * @module
 */

import { basename, dirname } from "node:path";
import { expectIdentity, type Identity, inFolder } from "../../files.ts";
import { quoted } from "../../format.ts";
import { ancestors, joinRel, parentOf } from "../../paths.ts";
import { type Entry } from "../../scan.ts";

/**
 * Runs `use` on the base name of `path` inside its folder, once that folder and each one above
 * it up to the root are shown to be `parent` ({@linkcode FolderGuard.chain},
 * {@linkcode inFolder}): the call meets the entry in the folder checked, inside the tree, even
 * if a folder on the path is swapped for a link meanwhile.
 *
 * @throws {Error} When the folder is not one this run knows, or not the one it knows.
 */
export function inParent<T>(path: string, parent: Identity[] | null, use: (name: string) => T): T {
  if (!parent) {
    throw new Error("its folder is not one this run made or saw; nothing was written there");
  }
  return inFolder(dirname(path), parent, () => use(basename(path)));
}

/**
 * What each folder of the tree being written was when the walk saw it, or when this run made
 * or moved it. Every delete, rename and attribute change below a folder first checks that its
 * path still resolves to that folder, so a folder swapped for a link during the run is never
 * written through. (The check and the change are two calls: see docs/threat-model.md.)
 */
export class FolderGuard {
  readonly #root: string;
  /** The tree as the walk saw it. */
  readonly #seen: Map<string, Entry>;
  /** Folders this run made. */
  readonly #made = new Map<string, Identity>();
  /** Entries this run moved: new path to the path the walk saw them at. */
  readonly #movedFrom = new Map<string, string>();

  /** Takes the entries the walk saw in the tree at `root` (read as they grow, never changed). */
  constructor(root: string, seen: Map<string, Entry>) {
    this.#root = root;
    this.#seen = seen;
  }

  /**
   * Remembers a folder this run just made: `identity`, as seen from inside its parent (a lookup
   * through the path again could meet another folder swapped in meanwhile).
   */
  made(path: string, identity: Identity): void {
    this.#made.set(path, identity);
  }

  /** Remembers an entry this run moved from `oldPath` to `newPath`. */
  moved(newPath: string, oldPath: string): void {
    this.#movedFrom.set(newPath, oldPath);
  }

  /** What the folder at `path` must be, or null when this run knows no folder there. */
  expected(path: string): Identity | null {
    const made = this.#made.get(path);
    if (made !== undefined) return made;
    const seen = this.#seenAt(path);
    return seen?.kind === "dir" ? { dev: seen.dev, ino: seen.ino } : null;
  }

  /**
   * What the folder at `path` and each folder above it up to the root must be, nearest first;
   * null when this run knows no folder at one of them. Checked from inside the folder through
   * `..` ({@linkcode inFolder}), this proves the folder is in the tree, not only that its path
   * led to a folder the walk saw (a walk through a swapped folder sees folders outside).
   */
  chain(path: string): Identity[] | null {
    const chain: Identity[] = [];
    for (const folder of [path, ...ancestors(path)]) {
      const expected = this.expected(folder);
      if (expected === null) return null;
      chain.push(expected);
    }
    return chain;
  }

  /** What the entry at `path` must be (the one the walk saw, followed through moves). */
  identity(path: string): Identity | null {
    const seen = this.#seenAt(path);
    return this.#made.get(path) ?? (seen ? { dev: seen.dev, ino: seen.ino } : null);
  }

  /** Throws unless the folder `path` (relative) still is the one this run knows. */
  check(path: string): void {
    const expected = this.expected(path);
    if (expected === null) {
      throw new Error(
        `the folder ${quoted(path || ".")} is not one the walk saw; nothing was changed`,
      );
    }
    expectIdentity(joinRel(this.#root, path), expected);
  }

  /** Throws unless the folder holding `path` still is the one this run knows. */
  checkParent(path: string): void {
    this.check(parentOf(path));
  }

  /** The walk's entry now at `path`: at the same path, or where a move took it from. */
  #seenAt(path: string): Entry | undefined {
    if (this.#movedFrom.size > 0) {
      for (const moved of [path, ...ancestors(path)]) {
        const oldPath = this.#movedFrom.get(moved);
        if (oldPath !== undefined) return this.#seen.get(oldPath + path.slice(moved.length));
      }
    }
    return this.#seen.get(path);
  }
}
