/**
 * Relative paths inside a tree (`a/b/c`; the root is `""`): parents, ancestors, names, sorted
 * ranges. Pure.
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

/** Whether `path` is below (or, with `orAt`, at) one of the folders. */
export function isUnderAny(
  path: string,
  folders: Map<string, string> | Set<string>,
  orAt = false,
): boolean {
  if (folders.size === 0) return false;
  if (orAt && folders.has(path)) return true;
  return ancestors(path).some((parent) => folders.has(parent));
}

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

export function parentOf(path: string): string {
  const cut = path.lastIndexOf("/");
  return cut < 0 ? "" : path.slice(0, cut);
}

export function joinRel(root: string, path: string): string {
  return path === "" ? root : `${root}/${path}`;
}
