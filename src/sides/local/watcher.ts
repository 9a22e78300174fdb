/**
 * A tree on this host, watched ({@linkcode TreeWatcher}): `Deno.watchFs` on its root (one inotify
 * watch per folder), and the root's identity, real path and folders looked at where the events
 * are. What the events mean for the loop is `watch.ts`'s business.
 *
 * @module
 */

import { type Identity, identityOf } from "../../files.ts";
import { type TreeEvents, type TreeWatcher } from "../watcher.ts";

/** The watcher of the tree at `root` on this host. */
export class LocalTreeWatcher implements TreeWatcher {
  /** The root, as the user named it. */
  readonly display: string;
  readonly #root: string;

  /** Watches the tree at `root`. */
  constructor(root: string) {
    this.display = root;
    this.#root = root;
  }

  /** The device and inode the root resolves to now, or null when nothing is there. */
  identity(): Identity | null {
    return identityOf(this.#root);
  }

  /** Starts `Deno.watchFs` on the root, recursively. */
  watch(): TreeEvents {
    return Deno.watchFs(this.#root, { recursive: true });
  }

  /** The root as given, and as its real path when that differs (events may use either). */
  rootPaths(): string[] {
    try {
      const real = Deno.realPathSync(this.#root);
      return real === this.#root ? [this.#root] : [this.#root, real];
    } catch {
      return [this.#root];
    }
  }

  /** Whether `path` (relative to the root) is a folder now, not following a link. */
  isFolder(path: string): boolean {
    try {
      return Deno.lstatSync(`${this.#root}/${path}`).isDirectory;
    } catch {
      return false;
    }
  }
}
