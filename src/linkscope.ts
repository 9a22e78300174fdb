/**
 * With `--hard-links`, the scope of a watch run widened to the folders of the other names of
 * the hard-linked files in it. Events name the folder a file was written through, but a file
 * with several names is in every folder that holds one: the record knows the source and
 * replica inode of every name, so the folders of the other names are found there and walked
 * too, and the names stay exact (a new name linked, an edit reaching every name, a name split
 * off). A widened folder may hold hard-linked files of its own: widening goes on until no new
 * folder comes.
 *
 * @module
 */

import { type Identity } from "./files.ts";
import { type FilterRule } from "./exclude.ts";
import { isWithin } from "./paths.ts";
import { type RecordSource } from "./recordfile.ts";
import { FolderStream } from "./walk.ts";

/** What widening a scope needs to know of the run. */
export interface LinkScopeInput {
  roots: { from: string; to: string };
  filters: FilterRule[];
  /** Each tree's walk stops at the other's root. */
  avoid: { from: Identity[]; to: Identity[] };
  /** A fresh reading of the record, from its start. */
  openRecord: () => RecordSource;
  /** A scope as the folders to walk: each in both trees, none inside another, in walk order. */
  normalize: (scope: string[]) => string[];
}

/** Inodes of the files with several names met, by side. */
interface LinkedInodes {
  source: Set<number>;
  replica: Set<number>;
}

/**
 * The folders to walk for `scope`: its own, and every folder the record has another name of a
 * hard-linked file of theirs in (the source file's inode, or the replica file's).
 */
export async function widenForLinks(scope: string[], input: LinkScopeInput): Promise<string[]> {
  let folders = input.normalize(scope);
  const listed = new Set<string>();
  for (;;) {
    const fresh = folders.filter((folder) => !isWithin(folder, listed));
    if (fresh.length === 0) return folders;
    const inodes: LinkedInodes = { source: new Set(), replica: new Set() };
    for (const folder of fresh) {
      await collectLinked(folder, { ...input, side: "from", into: inodes.source });
      await collectLinked(folder, { ...input, side: "to", into: inodes.replica });
      listed.add(folder);
    }
    if (inodes.source.size + inodes.replica.size === 0) return folders;
    const others = foldersOfInodes(inodes, input.openRecord).filter((folder) =>
      !isWithin(folder, listed)
    );
    if (others.length === 0) return folders;
    folders = input.normalize([...folders, ...others]);
  }
}

/** Adds the inode of each file with several names below `folder` in one tree. */
async function collectLinked(
  folder: string,
  input: LinkScopeInput & { side: "from" | "to"; into: Set<number> },
): Promise<void> {
  const stream = new FolderStream({
    root: input.roots[input.side],
    start: folder,
    filters: input.filters,
    skipMetaDir: true,
    avoid: input.avoid[input.side],
  });
  try {
    for (let listing = await stream.next(); listing; listing = await stream.next()) {
      for (const entry of listing.entries.values()) {
        if (entry.kind === "file" && (entry.nlink ?? 1) > 1) input.into.add(entry.ino);
      }
    }
  } finally {
    stream.close();
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
