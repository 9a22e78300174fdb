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
import { type RunSides } from "./prepare.ts";
import { openRecordSource } from "./runrecord.ts";
import { type Entry, entryFromStat } from "./scan.ts";

/**
 * The folders a scoped run walks: the scope's, and with `--hard-links` those holding other
 * names of its hard-linked files (said at `-vv`).
 */
export async function foldersOfScope(
  scope: string[],
  input: { options: Options; sides: RunSides; walk: WalkSettings; deps: { report: Reporter } },
): Promise<string[]> {
  const { options, sides, walk, deps } = input;
  const folders = scopeFolders(scope, sides);
  if (!options.hardLinks) return folders;
  const widened = await widenForLinks(scope, {
    roots: { from: sides.fromRoot, to: sides.toRoot },
    filters: walk.filters,
    avoid: walk.avoid,
    openRecord: () => openRecordSource(sides.replicaMeta, { ...deps.report, warn: () => {} }),
    normalize: (folders) => scopeFolders(folders, sides),
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
function scopeFolders(scope: string[], sides: RunSides): string[] {
  const isFolder = (root: string, folder: string) => {
    try {
      return Deno.lstatSync(`${root}/${folder}`).isDirectory;
    } catch {
      return false;
    }
  };
  const folders = new Set<string>();
  for (let folder of scope) {
    while (folder !== "" && !(isFolder(sides.fromRoot, folder) && isFolder(sides.toRoot, folder))) {
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
export function scopeStart(
  folder: string,
  input: { sides: RunSides; guardEntries: Map<string, Entry> },
): WalkStart {
  const { sides, guardEntries } = input;
  const entryAt = (root: string, path: string) =>
    entryFromStat(path === "" ? Deno.statSync(root) : Deno.lstatSync(`${root}/${path}`));
  const to = entryAt(sides.toRoot, folder);
  guardEntries.set(folder, to);
  for (const above of ancestors(folder)) {
    if (!guardEntries.has(above)) guardEntries.set(above, entryAt(sides.toRoot, above));
  }
  return { folder, from: entryAt(sides.fromRoot, folder), to };
}
