/**
 * Relative paths inside a tree (`a/b/c`; the root is `""`): parents, ancestors, names, sorted
 * ranges, and whether a path is at or below one of a set of folders. Pure.
 *
 * @module
 */

/** Paths strictly below `folder` in an ascending list (they are contiguous there). */
export function subtree(sortedPaths: string[], folder: string): string[] {
  const prefix = `${folder}/`;
  let low = 0;
  let high = sortedPaths.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (sortedPaths[middle]! < prefix) low = middle + 1;
    else high = middle;
  }
  const result: string[] = [];
  for (let i = low; i < sortedPaths.length && sortedPaths[i]!.startsWith(prefix); i++) {
    result.push(sortedPaths[i]!);
  }
  return result;
}

/** Folders to look paths up in: a `Set` of them, or a `Map` keyed by them. */
export interface Folders {
  /** Whether `folder` is one of them. */
  has(folder: string): boolean;
  /** How many there are, where known: with none, no path is looked up. */
  readonly size?: number;
}

/**
 * The nearest of `folders` that holds `path`: `path` itself (unless `below`), else the nearest
 * folder above it, the root `""` last; undefined when none does.
 */
export function enclosingFolder(
  path: string,
  folders: Folders,
  options: { below?: boolean } = {},
): string | undefined {
  if (folders.size === 0) return undefined;
  if (!options.below && folders.has(path)) return path;
  for (let rest = path; rest !== "";) {
    rest = parentOf(rest);
    if (folders.has(rest)) return rest;
  }
  return undefined;
}

/** Whether `path` is at or below one of `folders` (strictly below, with `below`). */
export function isWithin(
  path: string,
  folders: Folders,
  options: { below?: boolean } = {},
): boolean {
  return enclosingFolder(path, folders, options) !== undefined;
}

/** The last name of a path. */
export function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** Paths above `path`, nearest first, ending with the root `""`. */
export function ancestors(path: string): string[] {
  const result: string[] = [];
  for (let cut = path.lastIndexOf("/"); path !== ""; cut = path.lastIndexOf("/")) {
    path = cut < 0 ? "" : path.slice(0, cut);
    result.push(path);
  }
  return result;
}

/** The folder holding `path`; the root's own parent is the root. */
export function parentOf(path: string): string {
  const cut = path.lastIndexOf("/");
  return cut < 0 ? "" : path.slice(0, cut);
}

/** An absolute path from a tree's root and a relative path in it. */
export function joinRel(root: string, path: string): string {
  return path === "" ? root : `${root}/${path}`;
}
