/**
 * The next record, written while the walk goes on: each folder's rows once its copies are
 * back, in walk order, into a draft; what the end of the run changes (moves, deferred copies,
 * deletions) kept as patches and merged into the draft as it is put in place.
 *
 * @module
 */

import { compareNames, compareWalkOrder } from "./order.ts";
import { isWithin, parentOf } from "./paths.ts";
import { type RecordEntry } from "./record.ts";
import { type RecordRow, RecordWriter } from "./recordfile.ts";
import { type Entry, sameSignature, type Signature, signatureOf } from "./scan.ts";
import { type CopiedFile, type RecordDraft, type RecordFiles } from "./sides/writer.ts";

/** The rows of one folder, waiting for its copies before they are written. */
export interface FolderRows {
  /** The folder, relative to the root. */
  folder: string;
  /** Rows by name. */
  rows: Map<string, RecordRow>;
  /** Copies still in flight in this folder. */
  pending: number;
}

/**
 * The record row of an entry seen on either side: what the record knew while it still holds,
 * what this run hashed, the replica's signature otherwise (folders: their inodes, for moves).
 * Pure.
 */
export function rowFor(
  name: string,
  sides: { source: Entry | undefined; replica: Entry | undefined; known: RecordRow | undefined },
): RecordRow | null {
  const { source, replica, known } = sides;
  if (source?.kind === "dir" || replica?.kind === "dir") {
    const row: RecordRow = { name, kind: "dir" };
    if (source?.kind === "dir") row.source = folderSide(source);
    if (replica?.kind === "dir") row.replica = folderSide(replica);
    return row;
  }
  const row: RecordRow = { name, kind: "file" };
  if (source?.kind === "file") {
    const side = hashedNow(source) ?? sameAsRecorded(known?.source, source);
    if (side) row.source = side;
  }
  if (replica?.kind === "file") {
    row.replica = hashedNow(replica) ?? sameAsRecorded(known?.replica, replica) ??
      { ...signatureOf(replica), hash: null, hashedAtMs: 0 };
  }
  return row.source || row.replica ? row : null;
}

function folderSide(entry: Entry): RecordEntry {
  return { size: 0, mtimeMs: 0, ctimeMs: 0, ino: entry.ino, hash: null, hashedAtMs: 0 };
}

function hashedNow(entry: Entry): RecordEntry | null {
  if (entry.hash === undefined) return null;
  return { ...signatureOf(entry), hash: entry.hash, hashedAtMs: entry.hashedAtMs ?? 0 };
}

function sameAsRecorded(known: RecordEntry | undefined, entry: Entry): RecordEntry | null {
  return known && sameSignature(known, entry) ? known : null;
}

/** The row of a file just copied. */
export function copiedRow(name: string, copied: CopiedFile): RecordRow {
  return { name, kind: "file", source: copied.source, replica: copied.replica };
}

/** A row with the replica's new signature (attributes set, or moved). */
export function resignedRow(row: RecordRow, signature: Signature): RecordRow {
  return row.replica ? { ...row, replica: { ...row.replica, ...signature } } : row;
}

/**
 * The next record while the run goes on: folders' rows written in walk order as their copies
 * come back, then patched at the end.
 */
export class NextRecord {
  readonly #files: RecordFiles;
  readonly #draftFile: RecordDraft | null = null;
  readonly #draft: RecordWriter | null = null;
  readonly #onFailure: (error: unknown) => void;
  /** Set once a write failed (a full disk): the record is then not saved this run. */
  #failed = false;
  readonly #queue: FolderRows[] = [];
  /** Whole folders written at the end (moved or new subtrees), by folder. */
  readonly #blocks = new Map<string, Map<string, RecordRow>>();
  /** Rows changed at the end in folders already written: null removes. */
  readonly #rows = new Map<string, Map<string, RecordRow | null>>();
  /** Folders gone at the end, with everything below them. */
  readonly #goneFolders = new Set<string>();
  #closed = false;
  #merged: RecordDraft | null = null;

  /**
   * Starts a draft in our `tmp/` folder. A write that fails (a full disk) is reported once
   * through `onFailure` and ends the draft: the run goes on, and the old record stays.
   */
  constructor(files: RecordFiles, options: { onFailure: (error: unknown) => void }) {
    this.#files = files;
    this.#onFailure = options.onFailure;
    try {
      this.#draftFile = files.createDraft();
      this.#draft = new RecordWriter(this.#draftFile.fd);
    } catch (error) {
      this.#fail(error);
    }
  }

  #fail(error: unknown): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#queue.length = 0;
    this.#onFailure(error);
  }

  /** Writes one folder to the draft unless a write failed before. */
  #write(folder: string, rows: RecordRow[]): void {
    if (this.#failed) return;
    try {
      this.#draft!.writeFolder(folder, rows);
    } catch (error) {
      this.#fail(error);
    }
  }

  /** Queues a folder's rows; they are written once no copy of it is in flight. */
  add(folder: FolderRows): void {
    this.#queue.push(folder);
    this.flush();
  }

  /** Writes the folders at the head of the queue whose copies are all back. */
  flush(): void {
    while (this.#queue.length > 0 && this.#queue[0]!.pending === 0) {
      const { folder, rows } = this.#queue.shift()!;
      this.#write(folder, sortedRows(rows));
    }
  }

  /** The rows of a whole folder walked at the end of the run. */
  setFolder(folder: string, rows: Map<string, RecordRow>): void {
    this.#blocks.set(folder, rows);
  }

  /** Changes one row of a folder written during the walk (null removes it). */
  setRow(path: string, row: RecordRow | null): void {
    const folder = parentOf(path);
    let rows = this.#rows.get(folder);
    if (!rows) this.#rows.set(folder, rows = new Map());
    rows.set(path.slice(path.lastIndexOf("/") + 1), row);
  }

  /** Drops a folder and everything below it (deleted, or moved away). */
  dropFolder(folder: string): void {
    this.#goneFolders.add(folder);
    this.setRow(folder, null);
  }

  /**
   * Finishes the record and puts it in place, unless it says exactly what `current` holds.
   * Rows of folders never walked (a stop) come from `rest`, the old record from where the walk
   * stopped reading it.
   *
   * @returns Whether a new record was saved.
   */
  save(rest: Iterable<{ folder: string; rows: RecordRow[] }>): boolean {
    for (const block of this.#queue.splice(0)) this.#write(block.folder, sortedRows(block.rows));
    for (const block of rest) this.#write(block.folder, block.rows);
    if (this.#failed) return false;
    this.#draft!.finish();
    let final = this.#draftFile!;
    if (this.#blocks.size + this.#rows.size > 0) final = this.#merged = this.#mergedDraft();
    if (this.#files.sameAsRecord(final)) return false;
    this.#files.commit(final);
    return true;
  }

  /** The draft with the end's patches merged in, as a new file in `tmp/`. */
  #mergedDraft(): RecordDraft {
    const merged = this.#files.createDraft();
    try {
      const writer = new RecordWriter(merged.fd);
      const patched = [...new Set([...this.#blocks.keys(), ...this.#rows.keys()])]
        .sort(compareWalkOrder);
      let next = 0;
      const write = (folder: string, rows: Map<string, RecordRow>) => {
        if (isWithin(folder, this.#goneFolders)) return;
        for (const [name, row] of this.#rows.get(folder) ?? []) {
          if (row === null) rows.delete(name);
          else rows.set(name, row);
        }
        writer.writeFolder(folder, sortedRows(rows));
      };
      const draft = this.#files.readDraft(this.#draftFile!, (message) => {
        throw new Error(message);
      });
      for (const block of draft?.blocks() ?? []) {
        while (next < patched.length && compareWalkOrder(patched[next]!, block.folder) < 0) {
          const folder = patched[next++]!;
          write(folder, new Map(this.#blocks.get(folder) ?? []));
        }
        const rows = new Map(block.rows.map((row) => [row.name, row]));
        if (next < patched.length && patched[next] === block.folder) {
          for (const [name, row] of this.#blocks.get(block.folder) ?? []) rows.set(name, row);
          next++;
        }
        write(block.folder, rows);
      }
      draft?.close();
      for (; next < patched.length; next++) {
        write(patched[next]!, new Map(this.#blocks.get(patched[next]!) ?? []));
      }
      writer.finish();
    } catch (error) {
      this.#files.discard(merged);
      throw error;
    }
    this.#files.discard(this.#draftFile!);
    return merged;
  }

  /** Removes the draft (after a save it is gone already). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#draftFile !== null) this.#files.discard(this.#draftFile);
    if (this.#merged !== null) this.#files.discard(this.#merged);
  }
}

function sortedRows(rows: Map<string, RecordRow>): RecordRow[] {
  return [...rows.values()].sort((a, b) => compareNames(a.name, b.name));
}
