/**
 * The scope of a run over part of the source: the folders it walks (each taken up to the
 * nearest folder both trees have, with `--hard-links` widened to the other names of its
 * hard-linked files) and each folder's entries where its walk starts.
 *
 * @module
 */

import { type Options } from "./cli.ts";
import { type WalkStart } from "./context.ts";
import { displayPath } from "./format.ts";
import { widenForLinks } from "./linkscope.ts";
import { type Reporter } from "./log.ts";
import { type WalkSettings } from "./mirror.ts";
import { compareWalkOrder } from "./order.ts";
import { ancestors, isWithin, parentOf } from "./paths.ts";
import { type TreeReader } from "./sides/reader.ts";
import { type RunTrees } from "./sides/sides.ts";
import { type Entry } from "./scan.ts";

/**
 * The folders a scoped run walks: the scope's, and with `--hard-links` those holding other
 * names of its hard-linked files (said at `-vv`).
 */
export async function foldersOfScope(
  scope: string[],
  input: { options: Options; trees: RunTrees; walk: WalkSettings; deps: { report: Reporter } },
): Promise<string[]> {
  const { options, trees, walk, deps } = input;
  const folders = await scopeFolders(scope, trees);
  if (!options.hardLinks) return folders;
  const widened = await widenForLinks(scope, {
    trees,
    filters: walk.filters,
    avoid: walk.avoid,
    openRecord: () => trees.store.openRecord(() => {}),
    normalize: (folders) => scopeFolders(folders, trees),
  });
  const added = widened.filter((folder) => !folders.includes(folder));
  if (added.length > 0) {
    deps.report.debug(
      `watch run: also ${added.map((folder) => displayPath(folder || ".")).join(", ")} ` +
        `(other names of hard-linked files)`,
    );
  }
  return widened;
}

/**
 * The folders of a scope to walk, in walk order: each taken up to the nearest folder that is a
 * folder in both trees, and none inside another.
 */
async function scopeFolders(
  scope: string[],
  trees: { from: TreeReader; to: TreeReader },
): Promise<string[]> {
  const isFolder = async (tree: TreeReader, folder: string) => {
    try {
      return (await tree.entryAt(folder))?.kind === "dir";
    } catch {
      return false;
    }
  };
  const folders = new Set<string>();
  for (let folder of scope) {
    while (
      folder !== "" && !(await isFolder(trees.from, folder) && await isFolder(trees.to, folder))
    ) {
      folder = parentOf(folder);
    }
    folders.add(folder);
  }
  const sorted = [...folders].sort(compareWalkOrder);
  return sorted.filter((folder) =>
    !isWithin(folder, new Set(sorted.filter((other) => other !== folder)))
  );
}

/**
 * A scope folder's entries on both sides, as they are now; the guard learns it and every
 * folder above it (it checks a change from inside its folder up to the root).
 */
export async function scopeStart(
  folder: string,
  input: { trees: { from: TreeReader; to: TreeReader }; guardEntries: Map<string, Entry> },
): Promise<WalkStart> {
  const { trees, guardEntries } = input;
  const to = await entryOf(trees.to, folder);
  guardEntries.set(folder, to);
  for (const above of ancestors(folder)) {
    if (!guardEntries.has(above)) guardEntries.set(above, await entryOf(trees.to, above));
  }
  return { folder, from: await entryOf(trees.from, folder), to };
}

/** The entry at `path` of a tree that must have it (it was just found a folder there). */
async function entryOf(tree: TreeReader, path: string): Promise<Entry> {
  const entry = await tree.entryAt(path);
  if (entry === null) {
    throw new Error(`${displayPath(path || ".")} went away while the run started; run again`);
  }
  return entry;
}
