/**
 * Applying a plan: the only code that writes to a mirrored tree. Copies go through a temporary
 * file and a rename; every change below a folder first checks that the folder is the one the
 * walk saw.
 *
 * @module
 */

import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { dirname } from "node:path";
import { errorText } from "./errors.ts";
import { expectIdentity, type Identity, pathExists, removeQuietly, writeAll } from "./files.ts";
import { quoted } from "./format.ts";
import { COPY_BUFFER } from "./hash.ts";
import { checkOwn, tempPathIn } from "./meta.ts";
import { enclosingFolder, joinRel, parentOf } from "./paths.ts";
import { type Action, countAction, emptySummary, type Plan, type RunSummary } from "./plan.ts";
import { type RecordChanges, type RecordEntry } from "./record.ts";
import {
  type Entry,
  entryFromStat,
  type Problem,
  sameSignature,
  type Scan,
  type Signature,
  signatureOf,
} from "./scan.ts";

/** A batch of files to copy from one tree into the other, with the settings of the run. */
export interface CopyRequest extends CopySettings {
  fromRoot: string;
  toRoot: string;
  /** Each file, and what the folder it goes into must be at the final rename. */
  items: Array<{ path: string; parent: Identity | null }>;
}

/** One copy's outcome: the record entries, an error, or skipped because a stop was asked. */
export type CopyOutcome = { copied: CopiedFile } | { error: string } | { skipped: true };

/** Where batches of copies run: the worker pool ({@linkcode ./workers.ts}). */
export interface CopyPool {
  /** How many copies can run at once. */
  readonly size: number;
  /** Copies a batch, reporting bytes copied as it goes. */
  copy(request: CopyRequest, onBytes?: (bytes: number) => void): Promise<CopyOutcome[]>;
}

/** Where and how {@linkcode applyPlan} writes. */
export interface ApplyContext {
  fromRoot: string;
  toRoot: string;
  /** A folder on the target's file system for files being written. */
  tempDir: string;
  /** Where deleted and overwritten files go (`--keep-deleted`), or null to delete them. */
  trashDir: string | null;
  /** Set owner and group (root only). */
  owners: boolean;
  /** Checked between actions: true stops after the current one. */
  shouldStop: () => boolean;
  /** Checked inside long copies: true abandons the file at once. */
  mustAbort: () => boolean;
  pause: () => Promise<void>;
  onDone: (action: Action, bytes: number) => void;
  onFailed: (problem: Problem) => void;
  /** Called as a file is copied, with the bytes just written. */
  onBytes?: (bytes: number) => void;
  /** Called before each action, for the progress line. */
  onStart?: (action: Action) => void;
  /** Workers to copy files in, or null to copy on this thread. */
  pool?: CopyPool | null;
  /** The target tree's folders, checked before every change below them. */
  guard: FolderGuard;
  /**
   * Called between actions with what is done so far, so the record can be saved during a long
   * run: a run killed later leaves less for the next to hash again. Returns the milliseconds
   * until the next call.
   */
  checkpoint?: (done: RecordChanges) => number;
  /** Milliseconds before the first checkpoint; {@linkcode CHECKPOINT_MS} unless told. */
  firstCheckpointMs?: number;
}

/** How long a run goes before the record is first saved at a checkpoint. */
export const CHECKPOINT_MS = 60_000;

/** What applying a plan did, for the summary and the record. */
export interface ApplyResult extends RecordChanges {
  summary: RunSummary;
  stopped: boolean;
}

/** Runs a plan's actions in order. The only code that writes to a tree. */
export async function applyPlan(plan: Plan, context: ApplyContext): Promise<ApplyResult> {
  const { fromRoot, toRoot, onDone, onFailed, pool } = context;
  const summary = emptySummary(false);
  const result: ApplyResult = {
    summary,
    stopped: false,
    written: new Map(),
    deleted: new Set(),
    resigned: new Map(),
    movedFiles: new Map(),
    movedFolders: new Map(),
  };
  const recordCopy = (action: Action, copied: CopiedFile) => {
    result.written.set(action.path, copied);
    summary.bytesCopied += copied.replica.size;
    summary[action.kind === "copy" ? "copied" : "updated"]++;
    onDone(action, copied.replica.size);
  };

  // With a pool, file copies go out in batches and run while the main thread goes on with the
  // actions that may overlap them (links, attributes); anything else waits for them.
  const inFlight = new Set<Promise<void>>();
  let batch: Action[] = [];
  let batchBytes = 0;
  const dispatch = async () => {
    if (batch.length === 0 || !pool) return;
    const actions = batch;
    batch = [];
    batchBytes = 0;
    while (inFlight.size >= pool.size * 2) await Promise.race(inFlight);
    const items = actions.map((a) => ({
      path: a.path,
      parent: context.guard.expected(parentOf(a.path)),
    }));
    const done = pool.copy(
      { fromRoot, toRoot, items, ...copySettings(context) },
      (bytes) => context.onBytes?.(bytes),
    ).then(
      (outcomes) => {
        outcomes.forEach((outcome, i) => {
          const action = actions[i]!;
          if ("copied" in outcome) recordCopy(action, outcome.copied);
          else if ("error" in outcome) {
            summary.failed++;
            onFailed({ path: action.path, message: `Cannot ${action.kind}: ${outcome.error}` });
          } else result.stopped = true;
        });
      },
    );
    const tracked = done.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  };
  const drain = async () => {
    await dispatch();
    while (inFlight.size > 0) await Promise.race(inFlight);
  };

  let checkpointAt = performance.now() + (context.firstCheckpointMs ?? CHECKPOINT_MS);
  for (const action of plan.actions) {
    if (context.shouldStop()) {
      result.stopped = true;
      break;
    }
    if (context.checkpoint && performance.now() >= checkpointAt) {
      checkpointAt = performance.now() + context.checkpoint(result);
    }
    await context.pause();
    const overlaps = action.kind === "link" || action.kind === "attrs";
    if (pool && (action.kind === "copy" || action.kind === "update")) {
      context.onStart?.(action);
      batch.push(action);
      batchBytes += action.entry!.size;
      if (batch.length >= COPY_BATCH_FILES || batchBytes >= COPY_BATCH_BYTES) await dispatch();
      continue;
    }
    if (!overlaps) await drain();
    if (action.kind !== "dirattrs") context.onStart?.(action);
    const fromPath = joinRel(fromRoot, action.path);
    const toPath = joinRel(toRoot, action.path);
    try {
      if (action.path === "" && action.kind !== "dirattrs") {
        throw new Error("refusing to touch the root itself: that is never part of a plan");
      }
      const { guard } = context;
      if (action.kind === "dirattrs") guard.check(action.path);
      else guard.checkParent(action.path);
      switch (action.kind) {
        case "rmdir":
          Deno.removeSync(toPath);
          summary.dirsDeleted++;
          break;
        case "delete":
          if (context.trashDir) moveToTrash(toPath, action.path, context.trashDir);
          else Deno.removeSync(toPath);
          result.deleted.add(action.path);
          summary.deleted++;
          break;
        case "mkdir":
          makeFolder(toPath);
          guard.made(action.path);
          summary.dirsCreated++;
          break;
        case "copy":
        case "update": {
          const copied = await copyFile(fromPath, toPath, {
            ...context,
            parent: guard.expected(parentOf(action.path)),
          });
          if (copied === null) result.stopped = true;
          else recordCopy(action, copied);
          continue;
        }
        case "link":
          placeSymlink(toPath, action.entry!, context);
          countAction(summary, action, 0);
          break;
        case "attrs":
          setAttributes(toPath, action.entry!, context.owners);
          result.resigned.set(action.path, signatureOf(entryFromStat(Deno.lstatSync(toPath))));
          summary.attrsUpdated++;
          break;
        case "move": {
          const oldPath = joinRel(toRoot, action.from!);
          guard.checkParent(action.from!);
          // rename() would quietly replace an entry there; the plan says there is none.
          if (pathExists(toPath)) throw new Error(`${quoted(action.path)} appeared meanwhile`);
          Deno.renameSync(oldPath, toPath);
          if (action.entry!.kind === "dir") {
            guard.moved(action.path, action.from!);
            result.movedFolders.set(action.path, action.from!);
          } else {
            setAttributes(toPath, action.entry!, context.owners);
            result.movedFiles.set(action.path, action.from!);
            result.resigned.set(action.path, signatureOf(entryFromStat(Deno.lstatSync(toPath))));
          }
          summary.moved++;
          break;
        }
        case "dirattrs":
          setAttributes(toPath, action.entry!, context.owners);
          break;
      }
      onDone(action, 0);
    } catch (error) {
      summary.failed++;
      onFailed({ path: action.path, message: `Cannot ${action.kind}: ${errorText(error)}` });
    }
    if (result.stopped) break;
  }
  await drain();
  return result;
}

function makeFolder(path: string): void {
  try {
    Deno.mkdirSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists) || !Deno.lstatSync(path).isDirectory) {
      throw error;
    }
  }
}

/** A copied file: the replica's new state, and the source's as it was read. */
export interface CopiedFile {
  replica: RecordEntry;
  source: RecordEntry;
}

/**
 * Copies one file through SHA-256 into a temporary file, sets its attributes and renames it
 * into place, so no reader ever sees a partial file under the final name. A source that
 * changes while it is read is read again (twice at most).
 *
 * @returns The record entries of the bytes written and of the source as read, or null if
 * aborted.
 */
export async function copyFile(
  fromPath: string,
  toPath: string,
  context: CopyContext,
): Promise<CopiedFile | null> {
  for (let attempt = 1;; attempt++) {
    const tempPath = tempPathIn(context.tempDir);
    let keepTemp = false;
    try {
      const result = await copyThroughHash(fromPath, tempPath, context);
      if (result === null) return null;
      if (result === "changed") {
        if (attempt < 3) continue;
        throw new Error("the file kept changing while it was copied; try again later");
      }
      // The folder it goes into must still be the one the walk saw (not a link put there since).
      if (context.parent) expectIdentity(dirname(toPath), context.parent);
      keepOverwritten(toPath, context);
      const renamedAtMs = Date.now();
      Deno.renameSync(tempPath, toPath);
      keepTemp = true;
      return {
        replica: {
          ...placedSignature(toPath, result.written),
          hash: result.hash,
          hashedAtMs: renamedAtMs,
        },
        source: { ...signatureOf(result.read), hash: result.hash, hashedAtMs: result.readAtMs },
      };
    } finally {
      if (!keepTemp) removeQuietly(tempPath);
    }
  }
}

/**
 * The signature of a file just renamed into place: the rename gave it a new ctime (ext4 does),
 * which may fall in a later second than the one read before the rename, and the record must
 * match what the next scan sees, or the next run would hash the file again. Taken from the
 * path, which holds our file unless something replaced or wrote it meanwhile (then the
 * signature read before stays, and the next run does hash it again). Either way the hash is
 * dated before the rename, so the racy rule keeps it untrusted until a later run reads the file
 * (see {@linkcode trustedHash}).
 */
function placedSignature(path: string, before: Signature): Signature {
  try {
    const placed = entryFromStat(Deno.lstatSync(path));
    const same = placed.kind === "file" && placed.ino === before.ino &&
      placed.size === before.size && placed.mtimeMs === before.mtimeMs;
    if (same) return signatureOf(placed);
  } catch {
    // Gone already: the next scan will not see it either.
  }
  return before;
}

/**
 * Reads a source file once, hashing and writing what it reads, then gives the temporary copy
 * the source's attributes.
 *
 * @returns The hash, the source as read, and the copy's signature before the rename (see
 * {@linkcode placedSignature}); "changed" if the source changed while read; null if aborted.
 */
async function copyThroughHash(
  fromPath: string,
  tempPath: string,
  context: CopyContext,
): Promise<
  { hash: string; read: Entry; written: Signature; readAtMs: number } | "changed" | null
> {
  const readAtMs = Date.now();
  // Deno cannot open without following a link: look first, then make sure the file opened is
  // the one looked at.
  const looked = Deno.lstatSync(fromPath);
  if (!looked.isFile) throw new Error("it is no longer a regular file");
  using input = Deno.openSync(fromPath, { read: true });
  const before = entryFromStat(input.statSync());
  if (before.kind !== "file" || before.ino !== looked.ino) {
    throw new Error("it was replaced while it was opened");
  }
  using output = Deno.openSync(tempPath, { write: true, createNew: true, mode: 0o600 });
  const hash = createHash("sha256");
  let total = 0;
  // Read up to the size fstat gave, not to an extra empty read: growth or shrinking shows in
  // the fstat after.
  while (total < before.size) {
    const count = input.readSync(COPY_BUFFER);
    if (count === null || count === 0) break;
    const chunk = COPY_BUFFER.subarray(0, count);
    hash.update(chunk);
    writeAll(output, chunk);
    total += count;
    context.onBytes?.(count);
    if (context.mustAbort()) return null;
    await context.pause();
  }
  const after = entryFromStat(input.statSync());
  // A file that changed while it was read may be torn; one that changed between the scan and
  // now is fine: the copy and the record take what was read.
  if (total !== before.size || !sameSignature(before, after)) return "changed";
  // chown first: it clears setuid and setgid bits, which chmod then puts back.
  if (context.owners) Deno.chownSync(tempPath, after.uid, after.gid);
  Deno.chmodSync(tempPath, after.mode);
  output.utimeSync(new Date(after.mtimeMs), new Date(after.mtimeMs));
  const written = signatureOf(entryFromStat(output.statSync()));
  return { hash: hash.digest("hex"), read: after, written, readAtMs };
}

function placeSymlink(toPath: string, entry: Entry, context: CopyContext): void {
  const tempPath = tempPathIn(context.tempDir);
  try {
    Deno.symlinkSync(entry.target!, tempPath);
    if (context.owners) fs.lchownSync(tempPath, entry.uid, entry.gid); // Deno.chownSync follows links
    const mtime = new Date(entry.mtimeMs);
    fs.lutimesSync(tempPath, mtime, mtime);
    keepOverwritten(toPath, context);
    Deno.renameSync(tempPath, toPath);
  } catch (error) {
    removeQuietly(tempPath);
    throw error;
  }
}

/** With a trash, moves what is about to be overwritten there first. */
function keepOverwritten(toPath: string, context: CopyContext): void {
  if (context.trashDir === null || !pathExists(toPath)) return; // nothing there to keep
  moveToTrash(toPath, toPath.slice(context.toRoot.length + 1), context.trashDir);
}

/** Moves a replica entry to `trashDir/<its relative path>`, keeping an earlier one there. */
function moveToTrash(path: string, relative: string, trashDir: string): void {
  let target = `${trashDir}/${relative}`;
  Deno.mkdirSync(dirname(target), { recursive: true });
  for (let n = 1; pathExists(target); n++) target = `${trashDir}/${relative}.${n}`;
  Deno.renameSync(path, target);
}

/** Name of a run's trash folder: its UTC start time, `20261122T031614Z`. */
export function trashFolderName(date: Date): string {
  return date.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
}

/**
 * Removes trash folders older than `keepMs`.
 *
 * @returns The names of the folders removed.
 */
export function purgeTrash(trashRoot: string, keepMs: number, now: Date): string[] {
  const purged: string[] = [];
  if (checkOwn(trashRoot, "dir") === null) return purged;
  for (const item of Deno.readDirSync(trashRoot)) {
    if (!item.isDirectory) continue; // a link or a file is not a run's trash: leave it
    const match = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/.exec(item.name);
    if (!match) continue; // not ours: leave it
    const [, y, mo, d, h, mi, se] = match.map(Number) as number[];
    const madeAt = Date.UTC(y!, mo! - 1, d!, h!, mi!, se!);
    if (now.getTime() - madeAt > keepMs) {
      Deno.removeSync(`${trashRoot}/${item.name}`, { recursive: true });
      purged.push(item.name);
    }
  }
  return purged;
}

/**
 * What each folder of the tree being written was when the walk saw it, or when this run made
 * or moved it. Every delete, rename and attribute change below a folder first checks that its
 * path still resolves to that folder, so a folder swapped for a link during the run is never
 * written through. (The check and the change are two calls: see the README's threat model.)
 */
export class FolderGuard {
  readonly #root: string;
  /** Folders as the walk saw them. */
  readonly #seen = new Map<string, Identity>();
  /** Folders this run made. */
  readonly #made = new Map<string, Identity>();
  /** Folders this run moved: new path to the path the walk saw them at. */
  readonly #movedFrom = new Map<string, string>();

  /** Takes the folders of `scan`, the walk of the tree at `root`. */
  constructor(root: string, scan: Scan) {
    this.#root = root;
    for (const [path, entry] of scan.entries) {
      if (entry.kind === "dir") this.#seen.set(path, { dev: entry.dev, ino: entry.ino });
    }
  }

  /** Remembers a folder this run just made. */
  made(path: string): void {
    const info = Deno.lstatSync(joinRel(this.#root, path));
    if (!info.isDirectory) throw new Error(`${quoted(path)} is not the folder just made`);
    this.#made.set(path, { dev: info.dev, ino: info.ino ?? 0 });
  }

  /** Remembers a folder this run moved from `oldPath` to `newPath`. */
  moved(newPath: string, oldPath: string): void {
    this.#movedFrom.set(newPath, oldPath);
  }

  /** What the folder at `path` must be, or null when this run knows no folder there. */
  expected(path: string): Identity | null {
    const known = this.#made.get(path) ?? this.#seen.get(path);
    if (known !== undefined || this.#movedFrom.size === 0) return known ?? null;
    const folder = enclosingFolder(path, this.#movedFrom);
    if (folder === undefined) return null;
    return this.#seen.get(this.#movedFrom.get(folder)! + path.slice(folder.length)) ?? null;
  }

  /** Throws unless the folder `path` (relative) still is the one this run knows. */
  check(path: string): void {
    const expected = this.expected(path);
    if (expected === null) {
      throw new Error(
        `the folder ${quoted(path || ".")} is not one the walk saw; nothing was changed`,
      );
    }
    expectIdentity(joinRel(this.#root, path), expected);
  }

  /** Throws unless the folder holding `path` still is the one this run knows. */
  checkParent(path: string): void {
    this.check(parentOf(path));
  }
}

const NO_FOLLOW = fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;

/**
 * Sets mode, owner and mtime on what `path` names without following a link there: the entry is
 * opened with O_NOFOLLOW and changed through that descriptor. Only an entry the owner cannot
 * open (mode 000 when not root) falls back to the path, after an `lstat`.
 */
function setAttributes(path: string, entry: Entry, owners: boolean): void {
  const isDir = entry.kind === "dir";
  let fd: number | null = null;
  try {
    fd = fs.openSync(
      path,
      fs.constants.O_RDONLY | NO_FOLLOW | (isDir ? fs.constants.O_DIRECTORY : 0),
    );
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "ELOOP" || code === "ENOTDIR") {
      throw new Error(`it became a symlink or changed type during the run; left alone`);
    }
    if (code !== "EACCES") throw error;
  }
  const mtime = new Date(entry.mtimeMs);
  if (fd === null) {
    const info = Deno.lstatSync(path);
    if (isDir ? !info.isDirectory : !info.isFile) throw new Error("it changed type; left alone");
    // chown first: it clears setuid and setgid bits, which chmod then puts back.
    if (owners) Deno.chownSync(path, entry.uid, entry.gid);
    Deno.chmodSync(path, entry.mode);
    Deno.utimeSync(path, mtime, mtime);
    return;
  }
  try {
    const info = fs.fstatSync(fd);
    if (isDir ? !info.isDirectory() : !info.isFile()) {
      throw new Error("it changed type; left alone");
    }
    if (owners) fs.fchownSync(fd, entry.uid, entry.gid);
    fs.fchmodSync(fd, entry.mode);
    // Seconds as a double land a hair below the millisecond (…352.9999): half a microsecond
    // more reads back as the same millisecond.
    const seconds = (entry.mtimeMs + 0.0005) / 1000;
    fs.futimesSync(fd, seconds, seconds);
  } finally {
    fs.closeSync(fd);
  }
}

export const COPY_BATCH_FILES = 64;

const COPY_BATCH_BYTES = 16 << 20;

/** The parts of an apply context a worker needs to copy files. */
export interface CopySettings {
  tempDir: string;
  trashDir: string | null;
  owners: boolean;
}

/** What copying one file needs to know, on the main thread or in a worker. */
interface CopyContext extends CopySettings {
  toRoot: string;
  /** What the folder the file goes into must be at the final rename; null when unknown. */
  parent?: Identity | null;
  /** Checked inside long copies: true abandons the file at once. */
  mustAbort: () => boolean;
  pause: () => Promise<void>;
  onBytes?: (bytes: number) => void;
}

export function copySettings(context: CopySettings): CopySettings {
  return { tempDir: context.tempDir, trashDir: context.trashDir, owners: context.owners };
}
