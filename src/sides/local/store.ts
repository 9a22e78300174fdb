/**
 * The replica's own files on this host ({@linkcode ReplicaStore}): `.treesync/` with its lock,
 * record, drafts of the next record in `tmp/`, and the `unadopted` mark; each used only once
 * `lstat` shows it is ours (`meta.ts`).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import * as fs from "node:fs";
import { dirname } from "node:path";
import { errorText, UsageError } from "../../errors.ts";
import { expectIdentity, type Identity, pathExists, removeQuietly } from "../../files.ts";
import { quoted } from "../../format.ts";
import { type RecordSource } from "../../recordfile.ts";
import { type LockMode, type RecordDraft, type ReplicaLock, type ReplicaStore } from "../writer.ts";
import {
  acquireLock,
  checkMeta,
  checkOwn,
  clearUnadopted,
  hasRecord,
  holdsEntries,
  isAdopted,
  makeOwnFolder,
  markUnadopted,
  type MetaPaths,
  metaPaths,
  openOwnFile,
  tempPathIn,
} from "./meta.ts";
import { openAnyRecord, openRecord } from "./recordfiles.ts";

/** The replica's own files, at `.treesync/` of the replica's root on this host. */
export class LocalReplicaStore implements ReplicaStore {
  /** The replica's root, as the user named it: for messages only. */
  readonly display: string;
  readonly #root: string;
  readonly #meta: MetaPaths;
  /** Our folder, once {@linkcode LocalReplicaStore.prepare} made or took it. */
  #identity: Identity | null = null;

  /** The store of the replica at `root`. */
  constructor(root: string) {
    this.display = root;
    this.#root = root;
    this.#meta = metaPaths(root);
  }

  /** The store whose own files are at `paths` (see {@linkcode metaPaths}). */
  static of(paths: MetaPaths): LocalReplicaStore {
    return new LocalReplicaStore(dirname(paths.dir));
  }

  /** Takes the lock (see {@linkcode acquireLock}). */
  lock(mode: LockMode): ReplicaLock | null {
    return acquireLock(this.#meta, mode);
  }

  /** Makes the replica's root if missing, then our folder in it (mode 0700). */
  prepare(): void {
    if (!pathExists(this.#root)) {
      try {
        Deno.mkdirSync(this.#root, { recursive: true });
      } catch (error) {
        throw new UsageError(
          `Cannot create the replica ${quoted(this.#root)}: ${errorText(error, true)}`,
        );
      }
    }
    const { dev, ino } = makeOwnFolder(this.#meta.dir);
    this.#identity = { dev, ino };
  }

  /** Checks our folder and our files in it (see {@linkcode checkMeta}). */
  check(): void {
    checkMeta(this.#meta);
  }

  /** Throws unless our folder is still the one made (never a link put there since). */
  checkStillOurs(): void {
    if (this.#identity === null) throw new Error("the replica's own folder is not prepared");
    expectIdentity(this.#meta.dir, this.#identity);
  }

  /**
   * The record to read: format 3, else a version-2 record to convert, else none.
   * `onCorrupt` hears of a damaged one (read as far as it can be).
   */
  openRecord(onCorrupt: (message: string) => void): RecordSource {
    return openAnyRecord(this.#meta, onCorrupt);
  }

  /**
   * Opens the record file as it is stored, to send it whole to another host: the format-3
   * record, else a version-2 one (the format says which), each only if it is a regular file
   * of ours; the caller reads and closes the descriptor.
   *
   * @returns The open file, or null when there is no record.
   * @throws {UsageError} When a record's path is not a regular file.
   */
  openRecordFile(): { format: 2 | 3; fd: number; size: number } | null {
    const current = openOwnFile(this.#meta.record);
    if (current !== null) return { format: 3, ...current };
    const legacy = openOwnFile(this.#meta.legacyRecord);
    return legacy === null ? null : { format: 2, ...legacy };
  }

  /** Whether the record is there, of either format. */
  hasRecord(): boolean {
    return hasRecord(this.#meta);
  }

  /** Whether the replica is ours to mirror over. */
  isAdopted(): boolean {
    return isAdopted(this.#meta);
  }

  /** Whether the root holds anything but our own folder. */
  holdsEntries(): boolean {
    return holdsEntries(this.#root);
  }

  /** Marks the replica as holding entries a run kept. */
  markUnadopted(): void {
    markUnadopted(this.#meta);
  }

  /** Takes the mark away. */
  clearUnadopted(): void {
    clearUnadopted(this.#meta);
  }

  /** Removes the version-2 record once converted; ours, checked before the run. */
  removeLegacyRecord(): void {
    if (!pathExists(this.#meta.legacyRecord)) return;
    checkOwn(this.#meta.legacyRecord, "file");
    Deno.removeSync(this.#meta.legacyRecord);
  }

  /** A new draft in our `tmp/` folder: O_EXCL and O_NOFOLLOW, so never an existing name. */
  createDraft(): RecordDraft {
    const path = tempPathIn(this.#meta.temp);
    const fd = fs.openSync(path, DRAFT_FLAGS, 0o600);
    return new LocalDraft(fd, path);
  }

  /** Reads a finished draft back, whatever its size. */
  readDraft(draft: RecordDraft, onCorrupt: (message: string) => void): RecordSource | null {
    return openRecord(pathOf(draft), { onCorrupt });
  }

  /** Whether a finished draft holds the bytes of the record in place. */
  sameAsRecord(draft: RecordDraft): boolean {
    return sameBytes(pathOf(draft), this.#meta.record);
  }

  /** Flushes the draft to the disk, then renames it over the record. */
  commit(draft: RecordDraft): void {
    const path = pathOf(draft);
    const fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    Deno.renameSync(path, this.#meta.record);
    closeDraft(draft);
  }

  /** Closes the draft if open and removes it. */
  discard(draft: RecordDraft): void {
    closeDraft(draft);
    removeQuietly(pathOf(draft));
  }
}

const DRAFT_FLAGS = fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL |
  fs.constants.O_NOFOLLOW;

/** A draft file of ours: its descriptor, closed once. */
class LocalDraft implements RecordDraft {
  #open = true;
  constructor(readonly fd: number, readonly path: string) {}

  close(): void {
    if (!this.#open) return;
    this.#open = false;
    fs.closeSync(this.fd);
  }
}

function closeDraft(draft: RecordDraft): void {
  if (draft instanceof LocalDraft) draft.close();
}

/** Where a draft of this store is. */
function pathOf(draft: RecordDraft): string {
  if (!(draft instanceof LocalDraft)) throw new Error("not a draft of this replica store");
  return draft.path;
}

/** Whether two files hold the same bytes; read a MiB at a time. */
function sameBytes(a: string, b: string): boolean {
  let fdA: number | null = null;
  let fdB: number | null = null;
  try {
    fdA = fs.openSync(a, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    fdB = fs.openSync(b, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
    if (fs.fstatSync(fdA).size !== fs.fstatSync(fdB).size) return false;
    const bufA = new Uint8Array(1 << 20);
    const bufB = new Uint8Array(1 << 20);
    for (;;) {
      const readA = fs.readSync(fdA, bufA, 0, bufA.length, null);
      let readB = 0;
      while (readB < readA) {
        const count = fs.readSync(fdB, bufB, readB, readA - readB, null);
        if (count === 0) return false;
        readB += count;
      }
      if (readA === 0) return true;
      const viewA = bufA.subarray(0, readA);
      const viewB = bufB.subarray(0, readA);
      if (Buffer.compare(viewA, viewB) !== 0) return false;
    }
  } catch {
    return false;
  } finally {
    if (fdA !== null) fs.closeSync(fdA);
    if (fdB !== null) fs.closeSync(fdB);
  }
}
