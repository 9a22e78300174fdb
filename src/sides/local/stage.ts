/**
 * Staging a copy, in a copy worker: the bytes read from the other side's file (opened by that
 * side's code, see `source.ts`) go through SHA-256 into a new temporary file in our `tmp/`
 * folder, which then gets the source's attributes through its descriptor. The main thread
 * renames it into place (`place.ts`). Also what a copy batch is, as a worker gets it.
 *
 * @module
 */

import * as fs from "node:fs";
import { errorText } from "../../errors.ts";
import {
  expectIdentity,
  type Identity,
  identityOf,
  removeQuietly,
  sameIdentity,
} from "../../files.ts";
import { type OpenedFile, readThroughHash } from "./hash.ts";
import { type Entry, type Signature } from "../../scan.ts";
import { type LocalFileSource } from "../reader.ts";
import { tempPathIn } from "./meta.ts";
import { SparseWriter } from "./sparse.ts";

/** A batch of files to stage, as a copy worker gets it: plain data, posted as it is. */
export interface CopyRequest extends CopySettings {
  /** Where the files are read: the reading side's descriptor (a tree on this host). */
  source: LocalFileSource;
  /**
   * Each file, what the folder it goes into must be, and (restoring) the SHA-256 its bytes must
   * have.
   */
  items: Array<{ path: string; parent: Identity | null; recordedHash?: string }>;
}

/** What a worker gives back for one file: copied into our tmp folder, not yet in place. */
export type StageOutcome =
  | { staged: StagedCopy }
  | { error: string; refused?: boolean }
  | { skipped: true };

/** Where batches of copies are staged: the worker pool (`workers.ts`). */
export interface CopyPool {
  /** How many copies can run at once. */
  readonly size: number;
  /**
   * The stop asked so far (see `WorkerPool.stop`): 0 none, 1 after the file in flight, 2 at
   * once; for copies staged outside the pool (streamed from another host). Absent: never.
   */
  stopLevel?(): number;
  /**
   * Stages a batch in temporary files, reporting bytes copied as it goes and each file's
   * outcome (by its index in the batch) as soon as it is known: the caller renames it into
   * place at once.
   */
  copy(
    request: CopyRequest,
    report: {
      onBytes?: (bytes: number) => void;
      onEach: (index: number, outcome: StageOutcome) => void;
    },
  ): Promise<void>;
  /**
   * Makes up to `count` empty temporary files in our tmp folder, closed (`tempsupply.ts`), for
   * files streamed from another host. Absent: those make their own, on the main thread.
   */
  makeTemps?(settings: CopySettings, count: number): Promise<MadeTemp[]>;
}

/** A temporary file a worker made and closed: where, and which inode (still that one?). */
export interface MadeTemp {
  /** The file, in our tmp folder. */
  tempPath: string;
  /** Its device and inode numbers when made. */
  dev: number;
  /** See `dev`. */
  ino: number;
  /** Its change time when made (to the second, as Deno gives it). */
  ctimeMs: number;
}

/** The settings a copy worker needs besides the files: our folders, owners, holes. */
export interface CopySettings {
  /** A folder of ours on the written tree's file system, for files being written. */
  tempDir: string;
  /** What `tempDir` must be whenever it is used. */
  tempIdentity: Identity;
  /** Where deleted and overwritten files go (`--keep-deleted`), or null to delete them. */
  trashDir: string | null;
  /** What `trashDir` must be whenever it is used. */
  trashIdentity: Identity | null;
  /** Set owner and group (root only). */
  owners: boolean;
  /** `--sparse`: leave a hole for each whole block of zeros instead of writing it. */
  sparse: boolean;
}

/** What staging one file needs to know, in a worker or on the main thread. */
export interface CopyContext extends CopySettings {
  /** What the folder the file goes into must be at the final rename; null when unknown. */
  parent?: Identity | null;
  /** Checked inside long copies: true abandons the file at once. */
  mustAbort: () => boolean;
  /** Called as a file is copied, with the bytes just written. */
  onBytes?: (bytes: number) => void;
}

/** The settings of a copy request taken from a context that has more. */
export function copySettings(context: CopySettings): CopySettings {
  const { tempDir, tempIdentity, trashDir, trashIdentity, owners, sparse } = context;
  return { tempDir, tempIdentity, trashDir, trashIdentity, owners, sparse };
}

/** A file copied into our tmp folder, waiting to be renamed into place. */
export interface StagedCopy {
  /** The temporary file, in our tmp folder. */
  tempPath: string;
  /** SHA-256 of the bytes read and written. */
  hash: string;
  /** The source as it was read. */
  read: Entry;
  /** What the temporary file is (its ctime comes after the rename). */
  written: Signature;
  /** When the read began. */
  readAtMs: number;
}

/**
 * Copies one file through SHA-256 into a new temporary file in our tmp folder and sets its
 * attributes through the open descriptor; `placeCopy` (`place.ts`) renames it into place, so no
 * reader ever sees a partial file under the final name. A source that changes while it is read
 * is read again (twice at most). Runs in a worker.
 *
 * @returns The file staged, or null if aborted.
 * @throws {Error} When the folder it goes into is not one this run knows (its mkdir failed:
 * something else is there), or the bytes read are not `recordedHash` ({@linkcode RefusedError}):
 * nothing is kept.
 */
export function stageCopy(
  open: () => OpenedFile,
  context: CopyContext & { recordedHash?: string },
): StagedCopy | null {
  requireKnownParent(context);
  for (let attempt = 1;; attempt++) {
    const { tempPath, fd } = createTemp(context);
    let staged = false;
    try {
      const result = copyThroughHash(open, fd, context);
      if (result === null) return null;
      if (result === "changed") {
        if (attempt < STAGE_ATTEMPTS) continue;
        throw keptChanging();
      }
      checkRecordedHash(result.hash, context.recordedHash);
      staged = true;
      return { tempPath, ...result };
    } finally {
      fs.closeSync(fd);
      if (!staged) discardTemp(tempPath, context);
    }
  }
}

/** A file that changes while it is copied is read this many times in all before it fails. */
export const STAGE_ATTEMPTS = 3;

/** The failure of a file that changed each time it was read. */
export function keptChanging(): Error {
  return new Error("the file kept changing while it was copied; try again later");
}

/**
 * Throws unless the folder a copy goes into is known.
 *
 * @throws {Error} Its mkdir failed (something else is there): nothing is written.
 */
export function requireKnownParent(context: { parent?: Identity | null }): void {
  if (!context.parent) {
    throw new Error("its folder is not one this run made or saw; nothing was written there");
  }
}

/**
 * Creates a new temporary file in our tmp folder, once the folder is shown to be still ours:
 * O_EXCL and O_NOFOLLOW, so a name already there, a link included, is never reused; mode 0600
 * until its attributes are set.
 */
export function createTemp(context: CopySettings): { tempPath: string; fd: number } {
  const tempPath = tempPathIn(context.tempDir);
  expectIdentity(context.tempDir, context.tempIdentity);
  return { tempPath, fd: fs.openSync(tempPath, TEMP_FLAGS, 0o600) };
}

/**
 * Throws unless the bytes copied are the ones the record has, when restoring.
 *
 * @throws {RefusedError} They are not: nothing is kept.
 */
export function checkRecordedHash(hash: string, recordedHash: string | undefined): void {
  if (recordedHash !== undefined && hash !== recordedHash) {
    throw new RefusedError(
      "Not restored: the replica's copy does not match the SHA-256 the last sync recorded " +
        "for it (damaged since?); the source was left as it is",
    );
  }
}

/** Removes a temporary file of ours, and only from our own tmp folder. */
export function discardTemp(tempPath: string, context: CopySettings): void {
  if (sameIdentity(identityOf(context.tempDir), context.tempIdentity)) removeQuietly(tempPath);
}

const TEMP_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL |
  fs.constants.O_NOFOLLOW;

/** Writes a file's bytes in order into a temporary file: with holes under `--sparse`. */
export class TempWriter {
  readonly #fd: number;
  readonly #sparse: SparseWriter | null;

  /** Writes into the new temporary file `fd`. */
  constructor(fd: number, context: { sparse: boolean }) {
    this.#fd = fd;
    this.#sparse = context.sparse ? new SparseWriter(fd) : null;
  }

  /** Writes the next chunk. */
  write(chunk: Uint8Array): void {
    if (this.#sparse) this.#sparse.write(chunk);
    else for (let done = 0; done < chunk.length;) done += fs.writeSync(this.#fd, chunk, done);
  }

  /** Ends the file: its size set, past holes at its end. */
  finish(): void {
    this.#sparse?.finish();
  }
}

/**
 * Gives a staged file the source's owner (with `owners`), mode and mtime through its
 * descriptor.
 *
 * @returns What the temporary file now is, for `placeCopy` to compare with once placed.
 */
export function setStagedAttributes(fd: number, source: Entry, context: CopySettings): Signature {
  // chown first: it clears setuid and setgid bits, which chmod then puts back.
  if (context.owners) fs.fchownSync(fd, source.uid, source.gid);
  fs.fchmodSync(fd, source.mode);
  const seconds = (source.mtimeMs + 0.0005) / 1000; // see setAttributes
  fs.futimesSync(fd, seconds, seconds);
  // What placedSignature compares the placed file with; its ctime comes from the path after
  // the rename, read the way the next scan reads it.
  return { size: source.size, mtimeMs: source.mtimeMs, ctimeMs: 0, ino: fs.fstatSync(fd).ino };
}

/**
 * Reads a source file once (`open` opens it, each time afresh), hashing it and writing what it reads to the temporary file `fd`
 * (with holes for its blocks of zeros under `--sparse`; the hash is of every byte), then gives
 * that file the source's owner, mode and mtime through the descriptor.
 *
 * @returns The hash and the source as read; "changed" if the source changed while read; null
 * if aborted.
 */
function copyThroughHash(
  open: () => OpenedFile,
  fd: number,
  context: CopyContext,
): { hash: string; read: Entry; written: Signature; readAtMs: number } | "changed" | null {
  const readAtMs = Date.now();
  using input = open();
  const writer = new TempWriter(fd, context);
  const read = readThroughHash(input, (chunk) => {
    writer.write(chunk);
    context.onBytes?.(chunk.length);
    return !context.mustAbort();
  });
  if (read === null) return null;
  // A file that changed while it was read may be torn; one that changed between the scan and
  // now is fine: the copy and the record take what was read.
  if (read.changed) return "changed";
  writer.finish();
  const written = setStagedAttributes(fd, read.after, context);
  return { hash: read.hash, read: read.after, written, readAtMs };
}

/** The outcome of a copy that threw: a refusal keeps its own words. */
export function failedOutcome(error: unknown): { error: string; refused?: boolean } {
  return error instanceof RefusedError
    ? { error: errorText(error), refused: true }
    : { error: errorText(error) };
}

/**
 * A copy not placed on purpose: the replica's bytes are not what the record has, or the source
 * name changed while the restore copied. The message is the whole line.
 */
export class RefusedError extends Error {
  /** The error's name, for messages and logs. */
  override name = "RefusedError";
}
