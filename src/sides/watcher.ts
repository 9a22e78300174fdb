/**
 * Watching a tree, as `--watch` sees it (`watch.ts`): the tree's file-system events, and the
 * few questions reading them needs answered (what the root is now, where it is, whether a path
 * is a folder). Implementations: `local/watcher.ts` (a tree on this host). Nothing here touches
 * a file.
 *
 * @module
 */

import { type Identity } from "../files.ts";

/** One file-system event, as `Deno.watchFs` gives it. */
export interface WatchEvent {
  /** What happened: `create`, `modify`, `remove`, `rename`, `access`, `any`, `other`. */
  kind: string;
  /** The absolute paths it concerns. */
  paths: string[];
  /** `rescan` when the kernel's queue overflowed and events were lost. */
  flag?: string | null;
}

/** A tree's events while it is watched; they end (or throw) when the watch fails. */
export interface TreeEvents extends AsyncIterable<WatchEvent> {
  /** Stops watching: the events end. */
  close(): void;
}

/** A tree that can be watched. */
export interface TreeWatcher {
  /** Where the tree is, as the user named it: for messages only, never opened. */
  readonly display: string;
  /** The root's identity now (followed), or null when nothing is there. */
  identity(): Identity | null;
  /**
   * Starts watching the whole tree, every folder in it.
   *
   * @throws {Error} When it cannot be watched (the inotify watch limit, say).
   */
  watch(): TreeEvents;
  /** The absolute paths events may name the root by: as given, and its real path if different. */
  rootPaths(): string[];
  /** Whether a path relative to the root is a folder now (a link to one is not). */
  isFolder(path: string): boolean;
}
