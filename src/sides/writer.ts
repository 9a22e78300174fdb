/**
 * Changing a tree, as the engine sees it: the tree a run mirrors *to* is a {@linkcode TreeWriter}
 * (it is read as well, see `reader.ts`), and the replica's own files (lock, record, adoption
 * mark) are a {@linkcode ReplicaStore}. Nothing above the sides names a path of either.
 *
 * **Changes are checked.** A run's changes are made through one {@linkcode TreeChanges} per
 * run ({@linkcode TreeWriter.changes}), which knows the folders the walk saw and the ones the
 * run made or moved, and refuses to change anything below a folder that is no longer the one
 * it knows (a folder swapped for a link during the run is never written through).
 *
 * **Copies: read from one side, place into the other.** A copy is the *from* side producing
 * the bytes and the *to* side placing them; no code opens both trees by path:
 * - the reading side hands out a {@linkcode FileSource} ({@linkcode TreeReader.fileSource}), a
 *   small serializable descriptor of where its files are read; only that side's own module
 *   opens a file through it (for the local side, `local/source.ts`, with `openRegularFile`);
 * - the writing side's {@linkcode TreeChanges.copy} takes that descriptor and a batch of
 *   paths, stages each file in its own temporary folder as the bytes come, and renames it into
 *   place from inside the folder checked.
 *
 * The local writer sends a batch to a worker as one message (the descriptor, the staging
 * settings, the paths) and the worker runs synchronous calls only, several times cheaper than
 * async ones; each staged file comes back at once and is placed on the main thread, where the
 * folder checks are. A side on another host would answer the same calls with its own
 * descriptor and its own transfer.
 *
 * Roles are `from`/`to`; `source`/`replica` are the command line's and the record's words.
 *
 * @module
 */

import { type Identity } from "../files.ts";
import { type RecordEntry } from "../record.ts";
import { type RecordSource } from "../recordfile.ts";
import { type Entry, type Signature } from "../scan.ts";
import { type FileSource, type TreeReader } from "./reader.ts";

export type { FileSource } from "./reader.ts";

/** A copied file: the replica's new state, and the source's as it was read. */
export interface CopiedFile {
  /** The replica's new state: what was written. */
  replica: RecordEntry;
  /** The source as it was read. */
  source: RecordEntry;
}

/**
 * One copy's outcome: the record entries, an error (`refused`: a line of its own, not a
 * failure to write), or skipped because a stop was asked.
 */
export type CopyOutcome =
  | { copied: CopiedFile }
  | { error: string; refused?: boolean }
  | { skipped: true };

/** One file of a copy batch. */
export interface CopyItem {
  /** Where it is read and where it goes: the same relative path on both sides. */
  path: string;
  /** The plan saw nothing at this name: placed without replacing anything. */
  fresh: boolean;
  /** Restoring: the SHA-256 its bytes must have, else it is not placed. */
  recordedHash?: string;
  /** Restoring: what the name must still be at the final rename (null: nothing). */
  replacing?: Signature | null;
}

/** How a batch of copies reports. */
export interface CopyReport {
  /** Bytes copied since the last call. */
  onBytes?: (bytes: number) => void;
  /** Each file's outcome, by its index in the batch, as soon as it is placed (or not). */
  onEach: (index: number, outcome: CopyOutcome) => void;
}

/** What a run's changes are made with. */
export interface ChangeSettings {
  /**
   * The entries the walk saw in the written tree, by relative path; kept up to date by the
   * engine while it walks (read, never changed, by the writer).
   */
  seen: Map<string, Entry>;
  /** Set owner and group (root only). */
  owners: boolean;
  /** `--sparse`: leave a hole for each whole block of zeros instead of writing it. */
  sparse: boolean;
}

/**
 * A run's changes to the tree it writes. Every call first checks the folder it happens in
 * (and each one above it) against what the walk saw or the run made, and throws with a
 * message naming what was refused; nothing is changed then. Paths are relative to the root,
 * which is itself never removed or renamed.
 */
export interface TreeChanges {
  /** How many copy batches may be in flight at once (two per worker). */
  readonly copySlots: number;
  /** Makes a folder; one already there is taken only if it is the one the walk saw. */
  makeFolder(path: string): void;
  /** Removes an empty folder. */
  removeFolder(path: string): void;
  /** Removes a file or symlink: into the run's trash with `--keep-deleted`. */
  removeFile(path: string): void;
  /** Renames an entry of the tree to a free name (the plan's moves). */
  rename(from: string, to: string): void;
  /** Makes `path` another name of the tree's file `target` (kept in the trash first). */
  hardLink(path: string, target: string): void;
  /** Makes `path` a symlink like `entry` (what was there kept in the trash first). */
  symlink(path: string, entry: Entry): void;
  /**
   * Sets a file's mode, owner and mtime, never through a link.
   *
   * @returns Its new signature; null when it has other hard links (left as it is: changing
   * it would change them all, so the caller copies it afresh).
   */
  setFileAttributes(path: string, entry: Entry): Signature | null;
  /** Sets a folder's mode, owner and mtime, from inside the folder itself. */
  setFolderAttributes(path: string, entry: Entry): void;
  /**
   * Copies a batch of files read from `source` (the other side's {@linkcode FileSource}):
   * each through a temporary file, renamed into place once complete.
   */
  copy(source: FileSource, items: CopyItem[], report: CopyReport): Promise<void>;
}

/** What a writing run sets up before its first change. */
export interface WritePreparation {
  /** Remove the files a killed run left in our temporary folder. */
  cleanLeftovers: boolean;
  /**
   * The folders of ours this run makes go again at its end if left empty (the source's, when
   * restoring: a restore leaves the source as it found it).
   */
  removeMadeFolders: boolean;
  /** `--keep-deleted`: make this run's trash folder, named after `now`. */
  trash: boolean;
  /** The start of the run. */
  now: Date;
}

/** A tree a run changes: read like any tree, and changed through checked calls. */
export interface TreeWriter extends TreeReader {
  /**
   * The identity of the nearest folder that exists at or above the root: where a root not made
   * yet would be made (checked against a tree on this kernel reached as another host).
   */
  placeIdentity(): Promise<Identity | null>;
  /**
   * The first writes of a run, once every check passed: the root if missing, our folders
   * (temporary files, trash), leftovers of a killed run.
   *
   * @throws {UsageError} When one of our folders cannot be made or is not ours.
   */
  prepare(request: WritePreparation): void;
  /**
   * Begins the run's changes (after {@linkcode TreeWriter.prepare}).
   */
  changes(settings: ChangeSettings): TreeChanges;
  /**
   * Removes the trash folders older than `keepMs`.
   *
   * @returns The names of the folders removed.
   */
  purgeTrash(keepMs: number, now: Date): string[];
  /** Removes the folders of ours this run made, if empty and still the ones made. */
  removeMadeFolders(): void;
}

/**
 * How to take the lock: `create` the lock file if missing; take an `existing` one only (taking
 * it writes nothing); or `read`: an existing one opened read-only, for a restore, which must
 * work from a read-only replica and never writes there.
 */
export type LockMode = "create" | "existing" | "read";

/** A held replica lock. */
export interface ReplicaLock {
  /** Writes this process's pid into the lock file, for the message another run shows. */
  announce(): void;
  /** Lets the lock go; the file stays, empty, for the next run to lock. */
  release(): void;
  /** False once the lock file was deleted or replaced (say, with the whole replica). */
  stillHeld(): boolean;
}

/** The next record being written: a draft among the replica's own files. */
export interface RecordDraft {
  /** The descriptor the record writer writes through. */
  readonly fd: number;
}

/** The file operations of the next record: drafts in our temporary folder, then the record. */
export interface RecordFiles {
  /** A new, empty draft, made exclusively (never through a link). */
  createDraft(): RecordDraft;
  /**
   * Reads a finished draft back, as the record is read; `onCorrupt` hears of damage.
   *
   * @returns The draft's rows, or null when it is gone.
   */
  readDraft(draft: RecordDraft, onCorrupt: (message: string) => void): RecordSource | null;
  /** Whether a finished draft holds exactly the bytes of the record now in place. */
  sameAsRecord(draft: RecordDraft): boolean;
  /** Flushes a finished draft to the disk and renames it over the record. */
  commit(draft: RecordDraft): void;
  /** Closes a draft (if still open) and removes it; never throws. */
  discard(draft: RecordDraft): void;
}

/**
 * The replica's own files (`.treesync/`): the lock, the record, the adoption mark. Each is used
 * only once `lstat` shows it is ours; links there are refused, never followed.
 */
export interface ReplicaStore extends RecordFiles {
  /** The replica's root, as the user named it: for messages only. */
  readonly display: string;
  /**
   * Takes the replica's lock.
   *
   * @returns The lock, or null when there is no lock file and `mode` is not `create`.
   * @throws {LockHeldError} When another live run holds it.
   */
  lock(mode: LockMode): ReplicaLock | null;
  /**
   * Makes our folder (and the replica's root if missing): a writing run's first write there.
   *
   * @throws {UsageError} When it cannot be made or is not ours.
   */
  prepare(): void;
  /**
   * Checks our folder and each of our files in it, before anything reads or writes them: each
   * absent, or ours (owned by this user, not writable by everyone, never a link).
   *
   * @throws {UsageError} Naming the first that is not ours, and what to do.
   */
  check(): void;
  /** Throws unless our folder is still the one {@linkcode ReplicaStore.prepare} made. */
  checkStillOurs(): void;
  /**
   * Opens the record for reading: the current format, else a version-2 record converted, else
   * an empty one. `onCorrupt` hears of a damaged record, read as far as it can be.
   */
  openRecord(onCorrupt: (message: string) => void): RecordSource;
  /** Whether the record is there, of either format. */
  hasRecord(): boolean;
  /** Whether the replica is ours to mirror over: a record, and no mark of kept entries. */
  isAdopted(): boolean;
  /** Whether the root holds anything but our own folder. */
  holdsEntries(): boolean;
  /** Marks the replica as holding entries a run kept (once is enough). */
  markUnadopted(): void;
  /** Takes the mark away once the replica matches the source. */
  clearUnadopted(): void;
  /** Removes the version-2 record once converted (nothing when there is none). */
  removeLegacyRecord(): void;
}
