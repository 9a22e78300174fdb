/**
 * What the record says of a file: when a recorded hash can be trusted, whether the file is as
 * the record saw it; and reading a version-2 record (`record.json`, JSON), once, to convert it.
 *
 * @module
 */

import { type Entry, sameSignature, type Signature } from "./scan.ts";

const RECORD_FORMAT = "treesync-record";

const RECORD_VERSION = 2;

/** What the record knows of one file. */
export interface RecordEntry extends Signature {
  /** SHA-256 of the content, or null when it was never hashed. */
  hash: string | null;
  /** When the hash was taken, to tell racily clean files (see {@linkcode trustedHash}). */
  hashedAtMs: number;
}

/** Relative path to what the record knows of the file there. */
export type RecordMap = Map<string, RecordEntry>;

/**
 * The file record kept in the replica: its own files, and a cache of source hashes (the source
 * is never written to, so its cache lives here too).
 */
export interface FileRecord {
  /** The replica's files. */
  replica: RecordMap;
  /** The source's files, as the last runs read them. */
  source: RecordMap;
}

/**
 * A file whose mtime is this close to the moment it was hashed may have been written again in
 * the same timestamp tick (the kernel stamps files from a clock that ticks every few ms, and
 * Deno reads milliseconds), so its hash is not trusted: it is "racily clean", as git says.
 */
export const RACY_WINDOW_MS = 1000;

/** An empty record. */
export function emptyRecord(): FileRecord {
  return { replica: new Map(), source: new Map() };
}

/**
 * The kernel stamps files from a clock that may lag the wall clock by a tick (up to 10 ms at
 * 100 Hz): a change made just after a second began can carry the second before. The racy rule
 * on ctime counts a hash taken this close to a second's start as taken in the second before.
 */
export const CLOCK_SLACK_MS = 20;

/**
 * The recorded hash of a file, if it can be trusted without reading: the file's signature (size,
 * mtime, ctime, inode) is what it was when hashed, and it was not racily clean then. Racily
 * clean, as git says, is a file that may have changed again after it was hashed without its
 * signature showing it: one whose ctime (which Deno reads to the whole second) falls in the
 * second the hash was taken in, or whose mtime is within {@linkcode RACY_WINDOW_MS} of it. A
 * freshly copied file is racily clean until a later run reads it again. Pure.
 */
export function trustedHash(known: RecordEntry | undefined, entry: Entry): string | null {
  if (!known || known.hash === null || entry.kind !== "file") return null;
  if (!sameSignature(known, entry)) return null;
  if (Math.floor(known.ctimeMs / 1000) >= Math.floor((known.hashedAtMs - CLOCK_SLACK_MS) / 1000)) {
    return null;
  }
  return known.hashedAtMs - known.mtimeMs < RACY_WINDOW_MS ? null : known.hash;
}

/** Parses a version-2 record, checking every row; throws a short reason when it is not one. */
export function parseRecord(text: string): FileRecord {
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    throw new Error("it is not valid JSON");
  }
  if (
    data?.format !== RECORD_FORMAT || data.version !== RECORD_VERSION ||
    !Array.isArray(data.replica) || !Array.isArray(data.source)
  ) {
    throw new Error(`it is not a treesync record of version ${RECORD_VERSION}`);
  }
  const record = emptyRecord();
  for (const side of ["replica", "source"] as const) {
    const map = record[side];
    for (const row of data[side] as unknown[]) {
      // Plain checks, no allocation: this loop runs once per file on every run.
      if (!Array.isArray(row)) throw new Error(`a ${side} row is not a list`);
      const [filePath, size, mtimeMs, ctimeMs, ino, hash, hashedAtMs] = row;
      if (
        typeof filePath !== "string" || typeof size !== "number" ||
        typeof mtimeMs !== "number" || typeof ctimeMs !== "number" ||
        typeof ino !== "number" || typeof hashedAtMs !== "number" ||
        (hash !== null && (typeof hash !== "string" || hash.length !== 64))
      ) throw new Error(`a bad ${side} row for '${String(filePath).slice(0, 100)}'`);
      map.set(filePath, { size, mtimeMs, ctimeMs, ino, hash, hashedAtMs });
    }
  }
  return record;
}

/**
 * Looks files up in one side of a record: by path, else by inode (a renamed file keeps its
 * inode), taking the first recorded entry that `accept` turns into a value. The inode index is
 * built on first need. Pure.
 */
export function recordLookup<T>(
  known: RecordMap | undefined,
  accept: (recorded: RecordEntry, entry: Entry) => T | null,
): (path: string, entry: Entry) => T | null {
  let byInode: Map<number, RecordEntry> | null = null;
  return (path, entry) => {
    if (!known || known.size === 0) return null;
    const atPath = known.get(path);
    const found = atPath === undefined ? null : accept(atPath, entry);
    if (found !== null) return found;
    if (byInode === null) {
      byInode = new Map();
      for (const recorded of known.values()) byInode.set(recorded.ino, recorded);
    }
    const renamed = byInode.get(entry.ino);
    return renamed === undefined ? null : accept(renamed, entry);
  };
}

/** Finds a file's SHA-256 without reading it, or says it is not known. */
export type HashLookup = (path: string, entry: Entry) => string | null;

/**
 * A file's hash as far as it is known without reading: computed this run, or kept in the record
 * under its path, or under another path with the same inode and signature (a renamed file).
 */
export function hashLookup(known: RecordMap | undefined): HashLookup {
  const recorded = recordLookup(known, trustedHash);
  return (path, entry) => {
    if (entry.kind !== "file") return null;
    return entry.hash ?? recorded(path, entry);
  };
}

/** Whether the record saw this path with another inode or ctime: swapped in, or edited. */
export function changedSinceRecorded(known: RecordEntry | undefined, entry: Entry): boolean {
  return known !== undefined && (known.ino !== entry.ino || known.ctimeMs !== entry.ctimeMs);
}

/** Whether the record has a hash for the file as it is now, trusted or not. */
export function recordedAsIs(known: RecordEntry | undefined, entry: Entry): boolean {
  return known !== undefined && known.hash !== null && sameSignature(known, entry);
}

/** Whether the record has a hash for the file as it is now that it cannot trust yet. */
export function racilyRecorded(known: RecordEntry | undefined, entry: Entry): boolean {
  return recordedAsIs(known, entry) && trustedHash(known, entry) === null;
}

/**
 * Whether the record saw `entry` exactly as it is now: the same signature, and a hash that is
 * trusted or that this run's hash confirms. Folders and symlinks are never recorded: never
 * unchanged.
 */
export function unchangedSinceRecorded(known: RecordEntry | undefined, entry: Entry): boolean {
  if (entry.kind !== "file" || !recordedAsIs(known, entry)) return false;
  if (entry.hash !== undefined) return entry.hash === known!.hash;
  return trustedHash(known, entry) !== null;
}
