/**
 * The record as a run reads and saves it: the record to read (format 3, or a version-2 record
 * to convert), the record's folder inodes (may a new folder be a moved one?), the rows a scoped
 * run reads, each copy's row as it comes back, the next record saved.
 *
 * @module
 */

import { type CopyOutcome } from "./apply.ts";
import { errorText } from "./errors.ts";
import { expectIdentity, type Identity, pathExists } from "./files.ts";
import { type Reporter } from "./log.ts";
import { checkOwn, type MetaPaths } from "./meta.ts";
import { copiedRow, type FolderRows, type NextRecord } from "./nextrecord.ts";
import { baseName, parentOf } from "./paths.ts";
import { type Action } from "./plan.ts";
import { type RunSides } from "./prepare.ts";
import { loadRecord } from "./record.ts";
import {
  emptyRecordSource,
  openRecord,
  type RecordRow,
  type RecordSource,
  recordSourceFromV2,
} from "./recordfile.ts";
import { type Entry } from "./scan.ts";

/** The record to read: format 3, else a version-2 record to convert, else none. */
export function openRecordSource(meta: MetaPaths, report: Reporter): RecordSource {
  const onCorrupt = (message: string) => report.warn(message);
  const current = openRecord(meta.record, { maxBytes: Number.MAX_SAFE_INTEGER, onCorrupt });
  if (current !== null) return current;
  if (!pathExists(meta.legacyRecord)) return emptyRecordSource();
  return recordSourceFromV2(
    loadRecord(meta.legacyRecord, { maxBytes: LEGACY_RECORD_MAX_BYTES, onCorrupt }),
  );
}

/**
 * Whether the record knows a folder of a source inode, anywhere: a new folder that it does not
 * know cannot be a replica folder moved. The record's folder inodes are read on the first
 * question, once a run (a run that meets no new folder beside old ones never asks).
 */
export function folderInodeTest(meta: MetaPaths): (entry: Entry) => boolean {
  let inodes: Set<number> | null = null;
  return (entry) => {
    if (inodes === null) {
      inodes = new Set();
      const quiet: Reporter = {
        change() {},
        debug() {},
        warn() {},
        error() {},
        summary() {},
        fileOnly() {},
        runEnd() {},
      };
      const record = openRecordSource(meta, quiet);
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

/** A version-2 record is parsed whole: one this large is refused, not read. */
const LEGACY_RECORD_MAX_BYTES = 1 << 30;

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
    sides: RunSides;
    /** The replica's metadata folder as checked before the run. */
    metaIdentity: Identity;
    rest: Iterable<{ folder: string; rows: RecordRow[] }>;
    report: Reporter;
  },
): void {
  const { sides, rest } = input;
  try {
    expectIdentity(sides.replicaMeta.dir, input.metaIdentity);
    next.save(rest);
    if (pathExists(sides.replicaMeta.legacyRecord)) {
      // Converted: the version-2 record has served. Ours, checked before the run.
      checkOwn(sides.replicaMeta.legacyRecord, "file");
      Deno.removeSync(sides.replicaMeta.legacyRecord);
    }
  } catch (error) {
    input.report.warn(`Cannot save the record: ${errorText(error)}`);
  }
}
