/**
 * The record as a run reads and saves it: the record to read (format 3, or a version-2 record
 * to convert), the record's folder inodes (may a new folder be a moved one?), the rows a scoped
 * run reads, each copy's row as it comes back, the next record saved.
 *
 * @module
 */

import { type CopyOutcome } from "./apply.ts";
import { errorText } from "./errors.ts";
import { type Reporter } from "./log.ts";
import { copiedRow, type FolderRows, type NextRecord } from "./nextrecord.ts";
import { baseName, parentOf } from "./paths.ts";
import { type Action } from "./plan.ts";
import { type RecordRow, type RecordSource } from "./recordfile.ts";
import { type Entry } from "./scan.ts";
import { type ReplicaStore } from "./sides/writer.ts";

/**
 * Whether the record knows a folder of a source inode, anywhere: a new folder that it does not
 * know cannot be a replica folder moved. The record's folder inodes are read on the first
 * question, once a run (a run that meets no new folder beside old ones never asks).
 */
export function folderInodeTest(store: ReplicaStore): (entry: Entry) => boolean {
  let inodes: Set<number> | null = null;
  return (entry) => {
    if (inodes === null) {
      inodes = new Set();
      // A record the walk found corrupt said so already: read quietly.
      const record = store.openRecord(() => {});
      try {
        for (const { rows } of record.blocks()) {
          for (const row of rows) if (row.kind === "dir" && row.source) inodes.add(row.source.ino);
        }
      } finally {
        record.close();
      }
    }
    return inodes.has(entry.ino);
  };
}

/**
 * The record as a scoped run's walks read it, counting the rows of the folders they ask for:
 * the rest of its rows are the replica's entries outside the scope.
 */
export function countingRows(
  record: RecordSource,
): { source: RecordSource; rowsRead: () => number } {
  let rows = 0;
  let last: string | null = null;
  const source: RecordSource = {
    get corrupt() {
      return record.corrupt;
    },
    get rowCount() {
      return record.rowCount;
    },
    rowsOf: (folder) => {
      const found = record.rowsOf(folder);
      if (folder !== last) rows += found.size;
      last = folder;
      return found;
    },
    blocks: () => record.blocks(),
    close: () => record.close(),
  };
  return { source, rowsRead: () => rows };
}

/** A copy came back: its row goes with its folder's, or straight into the next record. */
export function settleRows(
  action: Action,
  outcome: CopyOutcome,
  input: { pendingRows: Map<string, FolderRows>; next: NextRecord | null },
): void {
  const { pendingRows, next } = input;
  if (!next) return;
  const folder = pendingRows.get(parentOf(action.path));
  const name = baseName(action.path);
  if ("copied" in outcome) {
    const row = copiedRow(name, outcome.copied);
    if (folder) folder.rows.set(name, row);
    else next.setRow(action.path, row);
  }
  if (!folder) return;
  folder.pending = Math.max(0, folder.pending - 1);
  if (folder.pending === 0) {
    pendingRows.delete(folder.folder);
    next.flush();
  }
}

/** Saves the next record (after a stop, the old record's rows the walk did not reach too). */
export function saveNextRecord(
  next: NextRecord,
  input: {
    /** The replica's own files, checked again before the record is put in place. */
    store: ReplicaStore;
    rest: Iterable<{ folder: string; rows: RecordRow[] }>;
    report: Reporter;
  },
): void {
  const { store, rest } = input;
  try {
    store.checkStillOurs();
    next.save(rest);
    // Converted: the version-2 record has served.
    store.removeLegacyRecord();
  } catch (error) {
    input.report.warn(`Cannot save the record: ${errorText(error)}`);
  }
}
