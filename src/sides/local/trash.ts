/**
 * The trash of `--keep-deleted`: one folder per run under `.treesync/trash/`, named after its
 * start; what a run deletes or overwrites is moved there, and folders older than the setting
 * are purged once a run is decided.
 *
 * @module
 */

import { dirname } from "node:path";
import { expectIdentity, type Identity, pathExists } from "../../files.ts";
import { checkOwn } from "./meta.ts";

/** A run's trash folder, or null to delete instead. */
export interface TrashSettings {
  /** Where deleted and overwritten files go (`--keep-deleted`), or null to delete them. */
  trashDir: string | null;
  /** What `trashDir` must be whenever it is used. */
  trashIdentity: Identity | null;
}

/**
 * With a trash, moves what is about to be overwritten there first. `name` is in the current
 * folder (`inParent`, `guard.ts`); `relative` is where it is in the tree.
 */
export function keepOverwritten(name: string, relative: string, context: TrashSettings): void {
  if (context.trashDir === null || !pathExists(name)) return; // nothing there to keep
  moveToTrash(name, relative, context);
}

/**
 * Moves a tree entry to `trashDir/<its relative path>`, keeping an earlier one there. `path` is
 * a name in the current folder (`inParent`, `guard.ts`).
 */
export function moveToTrash(path: string, relative: string, trash: TrashSettings): void {
  const trashDir = trash.trashDir!;
  // The run's trash folder must still be the one made: never a link put there since.
  expectIdentity(trashDir, trash.trashIdentity!);
  let target = `${trashDir}/${relative}`;
  Deno.mkdirSync(dirname(target), { recursive: true, mode: 0o700 });
  for (let n = 1; pathExists(target); n++) target = `${trashDir}/${relative}.${n}`;
  Deno.renameSync(path, target);
}

/** Name of a run's trash folder: its UTC start time, `20261122T031614Z`. */
export function trashFolderName(date: Date): string {
  return date.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
}

/**
 * Removes trash folders older than `keepMs`.
 *
 * @returns The names of the folders removed.
 */
export function purgeTrash(trashRoot: string, keepMs: number, now: Date): string[] {
  const purged: string[] = [];
  if (checkOwn(trashRoot, "dir") === null) return purged;
  for (const item of Deno.readDirSync(trashRoot)) {
    if (!item.isDirectory) continue; // a link or a file is not a run's trash: leave it
    const match = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/.exec(item.name);
    if (!match) continue; // not ours: leave it
    const [, y, mo, d, h, mi, se] = match.map(Number) as number[];
    const madeAt = Date.UTC(y!, mo! - 1, d!, h!, mi!, se!);
    if (now.getTime() - madeAt > keepMs) {
      Deno.removeSync(`${trashRoot}/${item.name}`, { recursive: true });
      purged.push(item.name);
    }
  }
  return purged;
}
