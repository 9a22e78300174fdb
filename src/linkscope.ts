/**
 * With `--hard-links`, the scope of a watch run widened to the folders of the other names of
 * the hard-linked files in it. Events name the folder a file was written through, but a file
 * with several names is in every folder that holds one: the record knows the source and
 * replica inode of every name, so the folders of the other names are found there and walked
 * too, and the names stay exact (a new name linked, an edit reaching every name, a name split
 * off). A widened folder may hold changed hard-linked files of its own: widening goes on until
 * no new folder comes.
 *
 * @module
 */

import { type Identity } from "./files.ts";
import { type FilterRule } from "./exclude.ts";
import { baseName, isWithin } from "./paths.ts";
import { type RecordSource } from "./recordfile.ts";
import { type Entry, sameSignature } from "./scan.ts";
import { type TreeReader } from "./sides/reader.ts";

/** What widening a scope needs to know of the run. */
export interface LinkScopeInput {
  /** The tree mirrored from and the tree mirrored to: only walked. */
  trees: { from: TreeReader; to: TreeReader };
  /** `--include`/`--exclude` rules, in order. */
  filters: FilterRule[];
  /** Each tree's walk stops at the other's root. */
  avoid: { from: Identity[]; to: Identity[] };
  /** A fresh reading of the record, from its start. */
  openRecord: () => RecordSource;
  /** A scope as the folders to walk: each in both trees, none inside another, in walk order. */
  normalize: (scope: string[]) => Promise<string[]>;
}

/** Inodes of hard-linked files that changed, by side: their other names are looked up. */
interface LinkedInodes {
  source: Set<number>;
  replica: Set<number>;
}

/**
 * The folders to walk for `scope`: its own, and every folder the record has another name of a
 * changed hard-linked file of theirs in. A source file counts when it differs from its record
 * row (new, written, relinked): by its inode, when it has several names; by its replica file's,
 * when that has several names. Unchanged links cost a walk of the scope, never a record read.
 */
export async function widenForLinks(
  scope: string[],
  input: LinkScopeInput,
): Promise<string[]> {
  let folders = await input.normalize(scope);
  const listed = new Set<string>();
  const looked: LinkedInodes = { source: new Set(), replica: new Set() };
  for (;;) {
    const fresh = folders.filter((folder) => !isWithin(folder, listed));
    if (fresh.length === 0) return folders;
    const changed = await changedLinks(fresh, input);
    for (const folder of fresh) listed.add(folder);
    const inodes: LinkedInodes = {
      source: new Set([...changed.source].filter((ino) => !looked.source.has(ino))),
      replica: new Set([...changed.replica].filter((ino) => !looked.replica.has(ino))),
    };
    if (inodes.source.size + inodes.replica.size === 0) return folders;
    for (const ino of inodes.source) looked.source.add(ino);
    for (const ino of inodes.replica) looked.replica.add(ino);
    const others = foldersOfInodes(inodes, input.openRecord).filter((folder) =>
      !isWithin(folder, listed)
    );
    if (others.length === 0) return folders;
    folders = await input.normalize([...folders, ...others]);
  }
}

/**
 * The changed hard-linked files below `folders` (in walk order, none inside another): the
 * source walked against the record, then the replica's names of the files that changed.
 */
async function changedLinks(folders: string[], input: LinkScopeInput): Promise<LinkedInodes> {
  const found: LinkedInodes = { source: new Set(), replica: new Set() };
  const changedPaths = new Set<string>();
  const record = input.openRecord();
  try {
    await eachFile(folders, { ...input, side: "from" }, (path, entry, folder) => {
      const row = record.rowsOf(folder).get(baseName(path));
      if (row?.kind === "file" && row.source && sameSignature(row.source, entry)) return;
      changedPaths.add(path);
      if ((entry.nlink ?? 1) > 1) found.source.add(entry.ino);
    });
  } finally {
    record.close();
  }
  if (changedPaths.size === 0) return found;
  await eachFile(folders, { ...input, side: "to" }, (path, entry) => {
    if ((entry.nlink ?? 1) > 1 && changedPaths.has(path)) found.replica.add(entry.ino);
  });
  return found;
}

/** Calls `visit` for each file below `folders` in one tree, in walk order. */
async function eachFile(
  folders: string[],
  input: LinkScopeInput & { side: "from" | "to" },
  visit: (path: string, entry: Entry, folder: string) => void,
): Promise<void> {
  for (const start of folders) {
    const stream = input.trees[input.side].walk({
      starts: [start],
      filters: input.filters,
      avoid: input.avoid[input.side],
    });
    try {
      for (let listing = await stream.next(); listing; listing = await stream.next()) {
        const { folder } = listing;
        for (const [name, entry] of listing.entries) {
          if (entry.kind === "file") {
            visit(folder === "" ? name : `${folder}/${name}`, entry, folder);
          }
        }
      }
    } finally {
      stream.close();
    }
  }
}

/** The folders of the record's file rows whose source or replica inode is one of `inodes`. */
function foldersOfInodes(inodes: LinkedInodes, openRecord: () => RecordSource): string[] {
  const record = openRecord();
  const folders: string[] = [];
  try {
    for (const { folder, rows } of record.blocks()) {
      const holds = rows.some((row) =>
        row.kind === "file" &&
        ((row.source !== undefined && inodes.source.has(row.source.ino)) ||
          (row.replica !== undefined && inodes.replica.has(row.replica.ino)))
      );
      if (holds) folders.push(folder);
    }
  } finally {
    record.close();
  }
  return folders;
}
