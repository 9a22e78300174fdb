/**
 * Listing one folder of a tree on this host: each entry's `lstat` (symlink targets read), never
 * following a link below the root, sorted in walk order; excluded, unreadable and special
 * entries left out and protected. And the look for the other tree's root among all folders
 * (a bind mount shows one folder twice).
 *
 * @module
 */

import { errorText } from "../../errors.ts";
import { type ExcludeMatcher } from "../../exclude.ts";
import { type Identity, sameIdentity } from "../../files.ts";
import { compareNames } from "../../order.ts";
import { type Entry, entryFromStat, type FolderListing, META_DIR } from "../../scan.ts";

/** How {@linkcode listFolder} and {@linkcode findNested} look at a tree. */
export interface ScanOptions {
  /** Leaves excluded entries out and keeps them. */
  exclude: ExcludeMatcher;
  /** Leaves the root's `.treesync` folder out (it is the replica's own). */
  skipMetaDir?: boolean;
  /** Called for each skipped special file. */
  onSkip?: (path: string, message: string) => void;
  /** Folders the walk must not enter: the other tree's root. Meeting one ends the scan. */
  avoid?: Identity[];
}

/**
 * Lists one folder of a tree: each entry's `lstat` (symlink targets read), sorted in walk
 * order; excluded, unreadable and special entries left out and protected. Synchronous calls,
 * several times faster per call than the async ones: a walker worker makes them.
 */
export function listFolder(root: string, folder: string, options: ScanOptions): FolderListing {
  const { exclude, skipMetaDir = false, onSkip, avoid = [] } = options;
  const folderPath = folder === "" ? root : `${root}/${folder}`;
  const result: FolderListing = { folder, entries: new Map(), problems: [], protectedPaths: [] };
  let listing: Deno.DirEntry[];
  try {
    listing = [...Deno.readDirSync(folderPath)];
  } catch (error) {
    result.problems.push({ path: folder, message: `Cannot list folder: ${errorText(error)}` });
    result.protectedPaths.push(folder);
    result.unlistable = true;
    return result;
  }
  listing = sortedByName(listing);
  // Names that are not UTF-8 come back with U+FFFD, and two of them can then look the same.
  const nameCounts = new Map<string, number>();
  if (listing.some((item) => item.name.includes("\uFFFD"))) {
    for (const item of listing) nameCounts.set(item.name, (nameCounts.get(item.name) ?? 0) + 1);
  }
  for (const item of listing) {
    const path = folder === "" ? item.name : `${folder}/${item.name}`;
    const skipped = folder === "" && skipMetaDir && item.name === META_DIR;
    if (skipped || exclude(path, item.isDirectory)) {
      // Not walked, but a folder left out must still not be the other tree's root.
      if (item.isDirectory && avoid.length > 0 && isAvoided(`${root}/${path}`, avoid)) {
        result.nested = path;
        return result;
      }
      if (!skipped) result.protectedPaths.push(path);
      continue;
    }
    const entry = readEntry(root, path, (nameCounts.get(item.name) ?? 0) > 1, result);
    if (entry === null) continue;
    if (entry.kind === "special") {
      onSkip?.(path, "Skipped: fifos, sockets and devices are not mirrored");
      result.protectedPaths.push(path);
      continue;
    }
    if (entry.kind === "dir" && avoid.some((id) => sameIdentity(id, entry))) {
      // A bind mount shows one folder under two real paths: only its inode tells.
      result.nested = path;
      return result;
    }
    result.entries.set(item.name, entry);
  }
  return result;
}

/** Code units past which `<` on strings is not code point order, and U+FFFD (names may repeat). */
const WIDE_CHARS = /[\uD800-\uFFFF]/;

/**
 * A folder's items by {@linkcode compareNames} of their names. Names without surrogates (and
 * without U+FFFD, so no two are the same) sort as the engine's own strings do, without a
 * comparison function: a large folder sorts several times faster.
 */
function sortedByName(items: Deno.DirEntry[]): Deno.DirEntry[] {
  for (const item of items) {
    if (WIDE_CHARS.test(item.name)) return items.sort((a, b) => compareNames(a.name, b.name));
  }
  const byName = new Map(items.map((item) => [item.name, item]));
  return items.map((item) => item.name).sort().map((name) => byName.get(name)!);
}

/** One entry's `lstat` (and link target), or null with a problem noted. */
function readEntry(
  root: string,
  path: string,
  ambiguous: boolean,
  result: FolderListing,
): Entry | null {
  let entry: Entry;
  try {
    // Two names that listed the same had bytes that are not UTF-8: neither can be reached.
    if (ambiguous) throw new Deno.errors.NotFound();
    entry = entryFromStat(Deno.lstatSync(`${root}/${path}`));
    if (entry.kind === "symlink") entry.target = Deno.readLinkSync(`${root}/${path}`);
  } catch (error) {
    const lossy = path.slice(path.lastIndexOf("/") + 1).includes("\uFFFD");
    result.problems.push({
      path,
      message: lossy
        ? "Skipped: the name is not valid UTF-8, which this tool cannot read or write"
        : error instanceof Deno.errors.NotFound
        ? "Skipped: it vanished during the scan"
        : `Skipped: ${errorText(error)}`,
    });
    result.protectedPaths.push(path);
    return null;
  }
  return entry;
}

/**
 * Looks for the other tree's root among a tree's folders, reading only folders (a listing says
 * which entries are folders: no `lstat` for files): where a bind mount could show one folder in
 * both trees, this runs before anything is written. Excluded folders are looked at, not entered.
 *
 * @returns The relative path of the folder that is one of `avoid`, or null.
 */
export function findNested(root: string, options: ScanOptions): string | null {
  const { exclude, skipMetaDir = false, avoid = [] } = options;
  const pending = [""];
  while (pending.length > 0) {
    const folder = pending.pop()!;
    let listing: Iterable<Deno.DirEntry>;
    try {
      listing = Deno.readDirSync(folder === "" ? root : `${root}/${folder}`);
    } catch {
      continue; // the walk reports it
    }
    for (const item of listing) {
      if (!item.isDirectory) continue;
      const path = folder === "" ? item.name : `${folder}/${item.name}`;
      let info: Deno.FileInfo;
      try {
        info = Deno.lstatSync(`${root}/${path}`);
      } catch {
        continue;
      }
      if (avoid.some((id) => id.dev === info.dev && id.ino === info.ino)) return path;
      const skipped = folder === "" && skipMetaDir && item.name === META_DIR;
      // A folder's link count is 2 plus its subfolders where the file system keeps it (ext4,
      // XFS, tmpfs): 2 means none, so nothing below it can be a mount point. Others say 1.
      if (!skipped && !exclude(path, true) && info.nlink !== 2) pending.push(path);
    }
  }
  return null;
}

function isAvoided(path: string, avoid: Identity[]): boolean {
  try {
    const info = Deno.lstatSync(path);
    return avoid.some((id) => id.dev === info.dev && id.ino === info.ino);
  } catch {
    return false;
  }
}
