/**
 * Our own files at the top of a tree (`.treesync/`, its `tmp/` and `trash/`, the lock): each is
 * used only once `lstat` shows it is ours, never through a link; and the replica lock.
 *
 * @module
 */

import * as fs from "node:fs";
import { dirname } from "node:path";
import { errorText, RefusedError, UsageError } from "../../errors.ts";
import { encoder, type Identity } from "../../files.ts";
import { quoted } from "../../format.ts";
import { META_DIR } from "../../scan.ts";
import { type LockMode, type ReplicaLock } from "../writer.ts";

export type { LockMode, ReplicaLock };

const RECORD_NAME = "record";

/** The version-2 record, read once and converted. */
const LEGACY_RECORD_NAME = "record.json";

const LOCK_NAME = "lock";

const UNADOPTED_NAME = "unadopted";

const TEMP_NAME = "tmp";

let tempCounter = 0;

/** Makes temporary names unique per process and per worker. */
let tempPrefix = `${Deno.pid}`;

/** Gives this thread's temporary names a prefix of their own (each worker has one). */
export function setTempPrefix(prefix: string): void {
  tempPrefix = prefix;
}

/** A new temporary name in `tempDir`, unique to this process and thread. */
export function tempPathIn(tempDir: string): string {
  return `${tempDir}/${tempPrefix}-${++tempCounter}`;
}

/** Where treesync keeps its own files at the top of a tree. */
export interface MetaPaths {
  /** `TREE/.treesync` */
  dir: string;
  /** Files being written, renamed into place when complete. */
  temp: string;
  /** `--keep-deleted` folders, one per run. */
  trash: string;
  /** The lock file. */
  lock: string;
  /** The record file (format 3). */
  record: string;
  /** A version-2 record (JSON), read once to convert it. */
  legacyRecord: string;
  /**
   * There while the replica holds entries treesync found there and has not been told to delete
   * ({@linkcode isAdopted}).
   */
  unadopted: string;
}

/** The paths of the metadata folder at the top of `treeRoot`. */
export function metaPaths(treeRoot: string): MetaPaths {
  const dir = `${treeRoot}/${META_DIR}`;
  return {
    dir,
    temp: `${dir}/${TEMP_NAME}`,
    trash: `${dir}/trash`,
    lock: `${dir}/${LOCK_NAME}`,
    record: `${dir}/${RECORD_NAME}`,
    legacyRecord: `${dir}/${LEGACY_RECORD_NAME}`,
    unadopted: `${dir}/${UNADOPTED_NAME}`,
  };
}

function runningUid(): number | null {
  try {
    return Deno.uid();
  } catch {
    return null;
  }
}

/**
 * Looks at one of our own paths without following it. Absent is fine; a real folder (or regular
 * file) owned by this user and not writable by everyone is ours; anything else, a symlink above
 * all, is a setup error: treesync never follows links among its own files.
 *
 * @returns Its device and inode, or null when it is absent.
 * @throws {UsageError} Naming the path and what to do.
 */
export function checkOwn(path: string, kind: "dir" | "file"): Identity | null {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw new UsageError(`Cannot look at ${quoted(path)}: ${errorText(error, true)}`);
  }
  const wanted = kind === "dir" ? info.isDirectory : info.isFile;
  if (!wanted) {
    const found = info.isSymlink
      ? "a symlink"
      : info.isDirectory
      ? "a folder"
      : info.isFile
      ? "a file"
      : "a special file";
    throw new UsageError(
      `${quoted(path)} is ${found}, not treesync's own ${kind === "dir" ? "folder" : "file"}: ` +
        `move it away, then run again (treesync never follows links there)`,
    );
  }
  const uid = runningUid();
  if (uid !== null && info.uid !== null && info.uid !== uid) {
    throw new UsageError(
      `${
        quoted(path)
      } belongs to user ${info.uid}, not to this user (${uid}): check who made it, ` +
        `move it away, then run again`,
    );
  }
  if (kind === "file" && (info.nlink ?? 1) > 1) {
    throw new UsageError(
      `${quoted(path)} has other hard links, so writing it would write them too: move it away, ` +
        `then run again`,
    );
  }
  if (((info.mode ?? 0) & 0o002) !== 0) {
    throw new UsageError(
      `${quoted(path)} is writable by every user: run 'chmod o-w' on it, then again`,
    );
  }
  return { dev: info.dev, ino: info.ino ?? 0 };
}

/**
 * Checks a tree's metadata folder and what is in it before anything is written.
 *
 * @throws {UsageError} When any of them is not ours.
 */
export function checkMeta(paths: MetaPaths): void {
  if (checkOwn(paths.dir, "dir") === null) return;
  checkOwn(paths.temp, "dir");
  checkOwn(paths.trash, "dir");
  checkOwn(paths.lock, "file");
  checkOwn(paths.record, "file");
  checkOwn(paths.legacyRecord, "file");
  checkOwn(paths.unadopted, "file");
}

/**
 * Whether the replica is treesync's to mirror over: it has a record, and no mark says that a
 * run kept entries it found there. A folder made by another tool, or one holding other data,
 * has neither; the mark outlives the record written beside it, so kept entries stay kept on
 * every later run, until `--adopt`. Paths checked by {@linkcode checkMeta} first.
 */
export function isAdopted(paths: MetaPaths): boolean {
  return hasRecord(paths) && checkOwn(paths.unadopted, "file") === null;
}

/** Whether the replica has a record of ours, of either format. Paths checked first. */
export function hasRecord(paths: MetaPaths): boolean {
  return checkOwn(paths.record, "file") !== null ||
    checkOwn(paths.legacyRecord, "file") !== null;
}

/**
 * Whether a replica root holds anything but our own folder, whatever the rules exclude: an
 * excluded entry is not the source's either, and a later run without the rule would delete it.
 */
export function holdsEntries(root: string): boolean {
  try {
    for (const entry of Deno.readDirSync(root)) if (entry.name !== META_DIR) return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
  return false;
}

/** Marks the replica as not adopted (a file of ours, made exclusively); once is enough. */
export function markUnadopted(paths: MetaPaths): void {
  if (checkOwn(paths.unadopted, "file") !== null) return;
  try {
    Deno.writeTextFileSync(
      paths.unadopted,
      "Entries found here that the source lacks are kept until a run with --adopt.\n",
      { createNew: true, mode: 0o600 },
    );
  } catch (error) {
    throw new UsageError(`Cannot create ${quoted(paths.unadopted)}: ${errorText(error, true)}`);
  }
}

/** Takes the mark away once the replica matches the source (or `--adopt` deleted the rest). */
export function clearUnadopted(paths: MetaPaths): void {
  if (checkOwn(paths.unadopted, "file") === null) return;
  Deno.removeSync(paths.unadopted);
}

/**
 * Makes one of our folders (mode 0700), or takes the one there once it is known to be ours.
 *
 * @returns Its identity, and whether this call made it.
 */
export function makeOwnFolder(path: string): Identity & { made: boolean } {
  let made = true;
  try {
    Deno.mkdirSync(path, { mode: 0o700 });
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) {
      throw new UsageError(`Cannot create ${quoted(path)}: ${errorText(error, true)}`);
    }
    made = false;
  }
  const identity = checkOwn(path, "dir");
  if (identity === null) throw new UsageError(`${quoted(path)} vanished as it was made: run again`);
  return { ...identity, made };
}

/** Another run holds the replica: exit 3. */
export class LockHeldError extends RefusedError {
  /** The error's name, for messages and logs. */
  override name = "LockHeldError";
}

/**
 * Takes the replica's lock: an exclusive `flock` on `.treesync/lock`. The kernel drops the lock
 * when its process dies, however it dies, so a lock left by a killed run is simply taken over.
 * The file is made exclusively or opened only once `lstat` shows a regular file of ours, and
 * the opened file must be that same inode; nothing is written to it here.
 *
 * @returns The lock, or null when there is no lock file and `create` is false.
 * @throws {LockHeldError} When another live run holds it.
 * @throws {UsageError} When the lock path is not ours.
 */
export function acquireLock(paths: MetaPaths, mode: LockMode): ReplicaLock | null {
  const path = paths.lock;
  const checked = checkOwn(path, "file");
  const write = mode !== "read";
  let file: Deno.FsFile;
  if (checked === null) {
    if (mode !== "create") return null;
    // O_EXCL: refuses any name already there, a link included.
    file = Deno.openSync(path, { read: true, write: true, createNew: true, mode: 0o600 });
  } else {
    file = Deno.openSync(path, { read: true, write });
    const opened = file.statSync();
    if (!opened.isFile || opened.ino !== checked.ino || opened.dev !== checked.dev) {
      file.close();
      throw new UsageError(`${quoted(path)} changed while it was opened: run again`);
    }
  }
  if (!file.tryLockSync(true)) {
    const holder = readSmallText(file);
    file.close();
    throw new LockHeldError(
      `Cannot lock ${quoted(dirname(paths.dir))}: another treesync run (pid ${
        holder || "unknown"
      }) ` +
        `holds ${quoted(path)}; wait for it, or stop it`,
    );
  }
  const inode = file.statSync().ino;
  let held = true;
  return {
    announce: () => {
      if (!write) return;
      try {
        file.truncateSync(0);
        file.writeSync(encoder.encode(`${Deno.pid}\n`));
      } catch {
        // Only for the message another run shows: a full disk must not stop the run.
      }
    },
    release: () => {
      if (!held) return;
      held = false;
      try {
        if (write) file.truncateSync(0);
      } catch {
        // Cannot empty it (a full or read-only disk): the kernel lock goes anyway.
      } finally {
        file.close();
      }
    },
    stillHeld: () => {
      try {
        return held && Deno.lstatSync(path).ino === inode;
      } catch {
        return false;
      }
    },
  };
}

function readSmallText(file: Deno.FsFile): string {
  try {
    const buffer = new Uint8Array(64);
    const count = file.readSync(buffer) ?? 0;
    return new TextDecoder().decode(buffer.subarray(0, count)).trim();
  } catch {
    return "";
  }
}

/**
 * Opens one of our files for reading, only if it is a regular file, and the one `lstat` saw.
 *
 * @returns Its descriptor and size, or null when it is absent.
 * @throws {UsageError} When it is not a regular file, or was replaced while it was opened.
 */
export function openOwnFile(path: string): { fd: number; size: number } | null {
  let looked: Deno.FileInfo;
  try {
    looked = Deno.lstatSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
  const notRegular = () =>
    new UsageError(`${quoted(path)} is not a regular file: move it away, then run again`);
  if (looked.isSymlink) checkOwn(path, "file"); // throws, naming the link
  if (!looked.isFile) throw notRegular();
  let fd: number;
  try {
    fd = fs.openSync(
      path,
      fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK,
    );
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "ENOENT") return null;
    if (code === "ELOOP") checkOwn(path, "file");
    throw error;
  }
  try {
    const info = fs.fstatSync(fd);
    if (!info.isFile()) throw notRegular();
    if (info.ino !== looked.ino || info.dev !== looked.dev) {
      throw new UsageError(`${quoted(path)} changed while it was opened: run again`);
    }
    return { fd, size: info.size };
  } catch (error) {
    fs.closeSync(fd);
    throw error;
  }
}
