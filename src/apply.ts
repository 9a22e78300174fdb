/**
 * Applying a plan: the only code that writes to a mirrored tree. Copies go through a temporary
 * file and a rename; every change below a folder first checks that the folder is the one the
 * walk saw.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import * as fs from "node:fs";
import { basename, dirname } from "node:path";
import { errorText } from "./errors.ts";
import {
  expectIdentity,
  type Identity,
  identityOf,
  inFolder,
  pathExists,
  removeQuietly,
  sameIdentity,
} from "./files.ts";
import { quoted } from "./format.ts";
import { openRegularFile, readThroughHash } from "./sides/local/hash.ts";
import { checkOwn, tempPathIn } from "./meta.ts";
import { ancestors, joinRel, parentOf } from "./paths.ts";
import { type Action, ACTION_WORDS, type Plan } from "./plan.ts";
import { type RecordEntry } from "./record.ts";
import {
  type Entry,
  entryFromStat,
  type Problem,
  sameSignature,
  type Scan,
  type Signature,
  signatureOf,
} from "./scan.ts";
import { countAction, emptySummary, type RunSummary } from "./summary.ts";

/** A batch of files to copy from one tree into the other, with the settings of the run. */
export interface CopyRequest extends CopySettings {
  /** The tree read. */
  fromRoot: string;
  /** The tree written. */
  toRoot: string;
  /**
   * Each file, what the folder it goes into must be, and (restoring) the SHA-256 its bytes must
   * have.
   */
  items: Array<{ path: string; parent: Identity | null; recordedHash?: string }>;
}

/**
 * One copy's outcome: the record entries, an error (`refused`: a line of its own, not a
 * failure to write), or skipped because a stop was asked.
 */
export type CopyOutcome =
  | { copied: CopiedFile }
  | { error: string; refused?: boolean }
  | { skipped: true };

/** What a worker gives back for one file: copied into our tmp folder, not yet in place. */
export type StageOutcome =
  | { staged: StagedCopy }
  | { error: string; refused?: boolean }
  | { skipped: true };

/** Where batches of copies run: the worker pool ({@linkcode ./workers.ts}). */
export interface CopyPool {
  /** How many copies can run at once. */
  readonly size: number;
  /**
   * Copies a batch into temporary files, reporting bytes copied as it goes and each file's
   * outcome (by its index in the batch) as soon as it is known: the caller renames it into
   * place at once ({@linkcode placeCopy}).
   */
  copy(
    request: CopyRequest,
    report: {
      onBytes?: (bytes: number) => void;
      onEach: (index: number, outcome: StageOutcome) => void;
    },
  ): Promise<void>;
}

/** Where and how {@linkcode applyPlan} writes. */
export interface ApplyContext extends CopySettings {
  /** The tree read. */
  fromRoot: string;
  /** The tree written. */
  toRoot: string;
  /** Checked between actions: true stops after the current one. */
  shouldStop: () => boolean;
  /** Checked inside long copies: true abandons the file at once. */
  mustAbort: () => boolean;
  /** Lets the event loop turn between actions (signals, stdin). */
  pause: () => Promise<void>;
  /** Called with each action done and the bytes it wrote. */
  onDone: (action: Action, bytes: number) => void;
  /** Called with each action that failed; the run goes on. */
  onFailed: (problem: Problem) => void;
  /** Called as a file is copied, with the bytes just written. */
  onBytes?: (bytes: number) => void;
  /** Called before each action, for the progress line. */
  onStart?: (action: Action) => void;
  /** The workers files are copied in. */
  pool: CopyPool;
  /** The target tree's folders, checked before every change below them. */
  guard: FolderGuard;
  /**
   * Called between actions with what is done so far, so the record can be saved during a long
   * run: a run killed later leaves less for the next to hash again. Returns the milliseconds
   * until the next call.
   */
  checkpoint?: (done: RecordChanges) => number;
  /**
   * Called with each copy's outcome as it comes back; when given, copies are not kept in the
   * result's `written` (a streamed run records them as it goes).
   */
  onSettled?: (action: Action, outcome: CopyOutcome) => void;
  /** Milliseconds before the first checkpoint; {@linkcode CHECKPOINT_MS} unless told. */
  firstCheckpointMs?: number;
}

/** How long a run goes before the record is first saved at a checkpoint. */
export const CHECKPOINT_MS = 60_000;

/** What a run changed in the replica, for the record. */
export interface RecordChanges {
  /** Files written: the replica's new state, and the source state that was read. */
  written: Map<string, { replica: RecordEntry; source: RecordEntry }>;
  /** Replica files deleted. */
  deleted: Set<string>;
  /** Files whose content stayed but whose signature changed (moved, attributes set). */
  resigned: Map<string, Signature>;
  /** New path to old, for files moved in the replica. */
  movedFiles: Map<string, string>;
  /** New path to old, for folders moved in the replica. */
  movedFolders: Map<string, string>;
}

/** What applying a plan did, for the summary and the record. */
export interface ApplyResult extends RecordChanges {
  /** The counts for the summary. */
  summary: RunSummary;
  /** True when a stop was asked before the end. */
  stopped: boolean;
}

/** Runs a plan's actions in order. The only code that writes to a tree. */
export async function applyPlan(plan: Plan, context: ApplyContext): Promise<ApplyResult> {
  const applier = new Applier(context);
  for (const action of plan.actions) {
    if (!await applier.apply(action)) break;
  }
  await applier.drain();
  return applier.result;
}

/**
 * Applies actions one at a time as they are decided: copies go to the workers in batches and
 * finish later (see {@linkcode Applier.drain}); every other action is done at once.
 */
export class Applier {
  /** What was done so far. */
  readonly result: ApplyResult = {
    summary: emptySummary(false),
    stopped: false,
    written: new Map(),
    deleted: new Set(),
    resigned: new Map(),
    movedFiles: new Map(),
    movedFolders: new Map(),
  };
  readonly #context: ApplyContext;
  readonly #copies: CopyBatches;
  #checkpointAt: number;

  /** Applies in `context`. */
  constructor(context: ApplyContext) {
    this.#context = context;
    this.#copies = new CopyBatches(context, this.result);
    this.#checkpointAt = performance.now() + (context.firstCheckpointMs ?? CHECKPOINT_MS);
  }

  /**
   * Applies one action (a copy may still be in flight when this returns).
   *
   * @returns False once a stop was asked: the action was not applied.
   */
  async apply(action: Action): Promise<boolean> {
    const { context, result } = { context: this.#context, result: this.result };
    if (context.shouldStop()) {
      result.stopped = true;
      return false;
    }
    if (context.checkpoint && performance.now() >= this.#checkpointAt) {
      this.#checkpointAt = performance.now() + context.checkpoint(result);
    }
    await context.pause();
    if (action.kind === "copy" || action.kind === "update") {
      context.onStart?.(action);
      await this.#copies.add(action);
      return true;
    }
    // Links, new folders and attribute fixes may overlap the copies in flight (none of them
    // touches a file being copied); deletions, moves and folder attributes wait for them.
    if (!OVERLAPPING.has(action.kind)) await this.#copies.drain();
    if (action.kind !== "dirattrs") context.onStart?.(action);
    try {
      if (applyOne(action, context, result) === "recopy") {
        // A fresh copy replaces the name; the other hard links keep the old file untouched.
        await this.#copies.add({ ...action, kind: "update" });
        return true;
      }
      context.onDone(action, 0);
    } catch (error) {
      result.summary.failed++;
      context.onFailed({
        path: action.path,
        message: `Cannot ${ACTION_WORDS[action.kind]}: ${errorText(error)}`,
      });
    }
    return true;
  }

  /** Waits for every copy in flight. */
  drain(): Promise<void> {
    return this.#copies.drain();
  }
}

const OVERLAPPING = new Set<Action["kind"]>(["link", "attrs", "mkdir"]);

/**
 * Sends file copies to the worker pool in batches ({@linkcode BATCH_LIMITS}), keeping at most two batches a worker in flight, and records
 * each outcome as it comes back.
 */
class CopyBatches {
  readonly #context: ApplyContext;
  readonly #result: ApplyResult;
  readonly #inFlight = new Set<Promise<void>>();
  #batch: Action[] = [];
  #bytes = 0;

  constructor(context: ApplyContext, result: ApplyResult) {
    this.#context = context;
    this.#result = result;
  }

  /** Adds a copy; sends the batch once it is full. */
  async add(action: Action): Promise<void> {
    this.#batch.push(action);
    this.#bytes += action.entry!.size;
    if (this.#batch.length >= BATCH_LIMITS.files || this.#bytes >= BATCH_LIMITS.copyBytes) {
      await this.#send();
    }
  }

  /** Sends what is batched and waits for every copy in flight. */
  async drain(): Promise<void> {
    await this.#send();
    while (this.#inFlight.size > 0) await Promise.race(this.#inFlight);
  }

  async #send(): Promise<void> {
    if (this.#batch.length === 0) return;
    const context = this.#context;
    const actions = this.#batch;
    this.#batch = [];
    this.#bytes = 0;
    while (this.#inFlight.size >= context.pool.size * 2) await Promise.race(this.#inFlight);
    const items = actions.map((a) => ({
      path: a.path,
      parent: context.guard.expected(parentOf(a.path)),
      ...(a.recordedHash === undefined ? {} : { recordedHash: a.recordedHash }),
    }));
    const request = {
      fromRoot: context.fromRoot,
      toRoot: context.toRoot,
      items,
      ...copySettings(context),
    };
    const done = context.pool.copy(request, {
      onBytes: (bytes) => context.onBytes?.(bytes),
      onEach: (i, outcome) => this.#settle(actions[i]!, this.#place(actions[i]!, outcome)),
    });
    const tracked = done.finally(() => this.#inFlight.delete(tracked));
    this.#inFlight.add(tracked);
  }

  /** Renames a staged copy into place, here on the main thread (see {@linkcode placeCopy}). */
  #place(action: Action, outcome: StageOutcome): CopyOutcome {
    if (!("staged" in outcome)) return outcome;
    const context = this.#context;
    try {
      const copied = placeCopy(joinRel(context.toRoot, action.path), outcome.staged, {
        ...copySettings(context),
        toRoot: context.toRoot,
        chain: context.guard.chain(parentOf(action.path)),
        fresh: action.kind === "copy",
        ...(action.replacing === undefined ? {} : { replacing: action.replacing }),
      });
      return { copied };
    } catch (error) {
      return failedOutcome(error);
    }
  }

  #settle(action: Action, outcome: CopyOutcome): void {
    const { summary } = this.#result;
    this.#context.onSettled?.(action, outcome);
    if ("copied" in outcome) {
      if (!this.#context.onSettled) this.#result.written.set(action.path, outcome.copied);
      countAction(summary, action, outcome.copied.replica.size);
      this.#context.onDone(action, outcome.copied.replica.size);
    } else if ("error" in outcome) {
      summary.failed++;
      this.#context.onFailed({
        path: action.path,
        message: outcome.refused
          ? outcome.error
          : `Cannot ${ACTION_WORDS[action.kind]}: ${outcome.error}`,
      });
    } else this.#result.stopped = true;
  }
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
  override name = "RefusedError";
}

/**
 * Applies one action that is not a file copy, after checking the folder it happens in.
 *
 * @returns "recopy" when a file with other hard links must be copied afresh instead of having
 * its attributes changed (the other names, maybe outside the tree, keep theirs).
 */
function applyOne(action: Action, context: ApplyContext, result: ApplyResult): "recopy" | void {
  const { guard, toRoot, owners, trashDir } = context;
  if (action.path === "" && action.kind !== "dirattrs") {
    throw new Error("refusing to touch the root itself: that is never part of a plan");
  }
  if (action.kind === "dirattrs") guard.check(action.path);
  else guard.checkParent(action.path);
  const toPath = joinRel(toRoot, action.path);
  const parent = guard.chain(parentOf(action.path));
  switch (action.kind) {
    case "rmdir":
      inParent(toPath, parent, (name) => Deno.removeSync(name));
      break;
    case "delete":
      inParent(toPath, parent, (name) => {
        if (trashDir) moveToTrash(name, action.path, context);
        else Deno.removeSync(name);
      });
      result.deleted.add(action.path);
      break;
    case "mkdir":
      guard.made(action.path, makeFolder(toPath, { parent, seen: guard.expected(action.path) }));
      break;
    case "link":
      placeSymlink(toPath, action.entry!, { ...context, relative: action.path, parent });
      break;
    case "attrs": {
      const resigned = setFileAttributes(toPath, action, context);
      if (resigned === null) return "recopy";
      result.resigned.set(action.path, resigned);
      break;
    }
    case "move": {
      const outcome = moveInTree(action, context, result);
      countAction(result.summary, action, 0);
      return outcome;
    }
    case "dirattrs":
      // Set from inside the folder itself: `.` is the folder checked, wherever its path leads.
      inFolder(
        toPath,
        guard.chain(action.path) ?? [],
        () => setAttributes(".", action.entry!, { owners, expected: guard.expected(action.path) }),
      );
      break;
    case "hardlink":
      guard.checkParent(action.from!);
      placeHardLink(action, context);
      break;
    default:
      throw new Error(`${action.kind} is not applied here`);
  }
  countAction(result.summary, action, 0);
}

/** Renames a replica file or folder to where its content reappeared in the source. */
function moveInTree(action: Action, context: ApplyContext, result: ApplyResult): "recopy" | void {
  const { guard, toRoot } = context;
  const toPath = joinRel(toRoot, action.path);
  guard.checkParent(action.from!);
  // Renamed into the folder checked, from inside it; the path it comes from is looked up
  // through the path (see the README's threat model).
  inParent(toPath, guard.chain(parentOf(action.path)), (name) => {
    // rename() would quietly replace an entry there; the plan says there is none.
    if (pathExists(name)) throw new Error(`${quoted(action.path)} appeared meanwhile`);
    Deno.renameSync(joinRel(toRoot, action.from!), name);
  });
  guard.moved(action.path, action.from!);
  if (action.entry!.kind === "dir") {
    result.movedFolders.set(action.path, action.from!);
    return;
  }
  result.movedFiles.set(action.path, action.from!);
  const resigned = setFileAttributes(toPath, action, context);
  if (resigned === null) return "recopy";
  result.resigned.set(action.path, resigned);
}

/**
 * Sets a replica file's attributes from inside its folder, checked.
 *
 * @returns Its new signature; null when it has other hard links (left as it is).
 */
function setFileAttributes(
  toPath: string,
  action: Action,
  context: ApplyContext,
): Signature | null {
  const { guard, owners } = context;
  return inParent(toPath, guard.chain(parentOf(action.path)), (name) => {
    try {
      setAttributes(name, action.entry!, { owners, expected: guard.identity(action.path) });
    } catch (error) {
      if (error instanceof HardLinkedError) return null;
      throw error;
    }
    return signatureOf(entryFromStat(Deno.lstatSync(name)));
  });
}

/**
 * Runs `use` on the base name of `path` inside its folder, once that folder and each one above
 * it up to the root are shown to be `parent` ({@linkcode FolderGuard.chain},
 * {@linkcode inFolder}): the call meets the entry in the folder checked, inside the tree, even
 * if a folder on the path is swapped for a link meanwhile.
 *
 * @throws {Error} When the folder is not one this run knows, or not the one it knows.
 */
function inParent<T>(path: string, parent: Identity[] | null, use: (name: string) => T): T {
  if (!parent) {
    throw new Error("its folder is not one this run made or saw; nothing was written there");
  }
  return inFolder(dirname(path), parent, () => use(basename(path)));
}

/**
 * Makes a folder inside the checked folder `parent` and returns what it made. A folder already
 * there is taken only when it is the one the walk saw (`seen`): anything else appeared during
 * the run, and nothing is written into it.
 */
function makeFolder(
  path: string,
  known: { parent: Identity[] | null; seen: Identity | null },
): Identity {
  return inParent(path, known.parent, (name) => {
    let existed = false;
    try {
      Deno.mkdirSync(name);
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
      existed = true;
    }
    const info = Deno.lstatSync(name);
    const made = { dev: info.dev, ino: info.ino ?? 0 };
    if (!info.isDirectory || (existed && !sameIdentity(made, known.seen))) {
      throw new Error("something else appeared there during the run; nothing was written into it");
    }
    return made;
  });
}

/** A copied file: the replica's new state, and the source's as it was read. */
export interface CopiedFile {
  /** The replica's new state: what was written. */
  replica: RecordEntry;
  /** The source as it was read. */
  source: RecordEntry;
}

/**
 * Copies one file through SHA-256 into a temporary file and renames it into place
 * ({@linkcode stageCopy}, then {@linkcode placeCopy}).
 *
 * @returns The record entries of the bytes written and of the source as read, or null if
 * aborted.
 */
export function copyFile(
  fromPath: string,
  toPath: string,
  context: CopyContext,
): CopiedFile | null {
  const staged = stageCopy(fromPath, context);
  return staged === null ? null : placeCopy(toPath, staged, context);
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
 * attributes through the open descriptor; {@linkcode placeCopy} renames it into place, so no
 * reader ever sees a partial file under the final name. A source that changes while it is read
 * is read again (twice at most). Runs in a worker.
 *
 * @returns The file staged, or null if aborted.
 * @throws {Error} When the folder it goes into is not one this run knows (its mkdir failed:
 * something else is there), or the bytes read are not `recordedHash` ({@linkcode RefusedError}):
 * nothing is kept.
 */
export function stageCopy(
  fromPath: string,
  context: CopyContext & { recordedHash?: string },
): StagedCopy | null {
  if (!context.parent) {
    throw new Error("its folder is not one this run made or saw; nothing was written there");
  }
  for (let attempt = 1;; attempt++) {
    const tempPath = tempPathIn(context.tempDir);
    // Our tmp folder must still be ours before anything is made in it. O_EXCL and O_NOFOLLOW:
    // a name already there, a link included, is never reused.
    expectIdentity(context.tempDir, context.tempIdentity);
    const fd = fs.openSync(tempPath, TEMP_FLAGS, 0o600);
    let staged = false;
    try {
      const result = copyThroughHash(fromPath, fd, context);
      if (result === null) return null;
      if (result === "changed") {
        if (attempt < 3) continue;
        throw new Error("the file kept changing while it was copied; try again later");
      }
      if (context.recordedHash !== undefined && result.hash !== context.recordedHash) {
        throw new RefusedError(
          "Not restored: the replica's copy does not match the SHA-256 the last sync recorded " +
            "for it (damaged since?); the source was left as it is",
        );
      }
      staged = true;
      return { tempPath, ...result };
    } finally {
      fs.closeSync(fd);
      if (!staged) discardTemp(tempPath, context);
    }
  }
}

/**
 * Renames a staged copy over `toPath`, from inside the folder it goes into, once that folder
 * is shown to be `context.parent` ({@linkcode inFolder}): a folder swapped for a link at any
 * moment never receives it. With `replacing` (a restore), the name must still be what the walk
 * saw: a source file changed while its replacement was copied is kept ({@linkcode RefusedError}).
 * What was there goes to the trash first, with one. Runs on the main thread.
 *
 * @returns The record entries of the file placed and of the source as read.
 */
export function placeCopy(
  toPath: string,
  staged: StagedCopy,
  context: CopySettings & {
    toRoot: string;
    /** The folder it goes into, checked alone (see `chain`). */
    parent?: Identity | null;
    /** The folder it goes into and those above it ({@linkcode FolderGuard.chain}). */
    chain?: Identity[] | null;
    /** Restoring: what the name must still be ({@linkcode Action.replacing}). */
    replacing?: Signature | null;
    /** The plan saw nothing at this name: the file is placed without replacing anything. */
    fresh?: boolean;
  },
): CopiedFile {
  let placed = false;
  try {
    // Our tmp folder must still be the one checked: never a link put there since.
    expectIdentity(context.tempDir, context.tempIdentity);
    const chain = context.chain ?? (context.parent ? [context.parent] : null);
    const done = inParent(toPath, chain, (name) => {
      if (context.replacing !== undefined) expectAsPlanned(name, context.replacing);
      const renamedAtMs = Date.now();
      if (context.fresh) {
        placed = placeNew(staged.tempPath, name, context);
      } else {
        keepOverwritten(name, toPath.slice(context.toRoot.length + 1), context);
        Deno.renameSync(staged.tempPath, name);
        placed = true;
      }
      return { signature: placedSignature(name, staged.written), renamedAtMs };
    });
    return {
      replica: { ...done.signature, hash: staged.hash, hashedAtMs: done.renamedAtMs },
      source: { ...signatureOf(staged.read), hash: staged.hash, hashedAtMs: staged.readAtMs },
    };
  } finally {
    if (!placed) discardTemp(staged.tempPath, context);
  }
}

/**
 * Gives the staged file its final name without replacing anything: a hard link, which fails
 * when the name is taken (whatever the name leads to by then), then the temporary name
 * removed. Where the file system has no hard links, a rename once the name is seen free.
 *
 * @returns True: the temporary file is placed (or gone).
 */
function placeNew(tempPath: string, name: string, context: CopySettings): boolean {
  const appeared = () =>
    new RefusedError("Kept: an entry appeared at this name during the run; left as it is");
  try {
    Deno.linkSync(tempPath, name);
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) throw appeared();
    const noLinks = error instanceof Deno.errors.PermissionDenied ||
      error instanceof Deno.errors.NotSupported;
    if (!noLinks) throw error;
    if (pathExists(name)) throw appeared();
    Deno.renameSync(tempPath, name);
    return true;
  }
  discardTemp(tempPath, context);
  return true;
}

/**
 * Throws unless the target name is what the plan saw (`null`: nothing): looked at right before
 * the rename that would replace it.
 */
function expectAsPlanned(name: string, planned: Signature | null): void {
  let now: Entry | null = null;
  try {
    now = entryFromStat(Deno.lstatSync(name));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  if (planned === null && now === null) return;
  if (planned !== null && now?.kind === "file" && sameSignature(now, planned)) return;
  throw new RefusedError(
    planned === null
      ? "Kept: an entry appeared at this name while the restore copied the replica's file; " +
        "left as it is"
      : "Kept: the source file changed while the restore copied the replica's; left as it is " +
        "(run the restore again to replace it)",
  );
}

/** Removes a temporary file of ours, and only from our own tmp folder. */
function discardTemp(tempPath: string, context: CopySettings): void {
  if (sameIdentity(identityOf(context.tempDir), context.tempIdentity)) removeQuietly(tempPath);
}

const TEMP_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL |
  fs.constants.O_NOFOLLOW;

/**
 * The signature of a file just renamed into place: the rename gave it a new ctime (ext4 does),
 * which may fall in a later second than the one read before the rename, and the record must
 * match what the next scan sees, or the next run would hash the file again. Taken from the
 * path, which holds our file unless something replaced or wrote it meanwhile (then the
 * signature read before stays, and the next run does hash it again). Either way the hash is
 * dated before the rename, so the racy rule keeps it untrusted until a later run reads the file
 * (see `trustedHash`).
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
 * Reads a source file once, hashing it and writing what it reads to the temporary file `fd`
 * (with holes for its blocks of zeros under `--sparse`; the hash is of every byte), then gives
 * that file the source's owner, mode and mtime through the descriptor.
 *
 * @returns The hash and the source as read; "changed" if the source changed while read; null
 * if aborted.
 */
function copyThroughHash(
  fromPath: string,
  fd: number,
  context: CopyContext,
): { hash: string; read: Entry; written: Signature; readAtMs: number } | "changed" | null {
  const readAtMs = Date.now();
  using input = openRegularFile(fromPath);
  const sparse = context.sparse ? new SparseWriter(fd) : null;
  const read = readThroughHash(input, (chunk) => {
    if (sparse) sparse.write(chunk);
    else for (let done = 0; done < chunk.length;) done += fs.writeSync(fd, chunk, done);
    context.onBytes?.(chunk.length);
    return !context.mustAbort();
  });
  if (read === null) return null;
  // A file that changed while it was read may be torn; one that changed between the scan and
  // now is fine: the copy and the record take what was read.
  if (read.changed) return "changed";
  sparse?.finish();
  const { after } = read;
  // chown first: it clears setuid and setgid bits, which chmod then puts back.
  if (context.owners) fs.fchownSync(fd, after.uid, after.gid);
  fs.fchmodSync(fd, after.mode);
  const seconds = (after.mtimeMs + 0.0005) / 1000; // see setAttributes
  fs.futimesSync(fd, seconds, seconds);
  // What placedSignature compares the placed file with; its ctime comes from the path after
  // the rename, read the way the next scan reads it.
  const written = {
    size: after.size,
    mtimeMs: after.mtimeMs,
    ctimeMs: 0,
    ino: fs.fstatSync(fd).ino,
  };
  return { hash: read.hash, read: after, written, readAtMs };
}

/**
 * Writes a file read in order into `fd` with holes (`--sparse`): each whole file-system block of
 * zeros is skipped instead of written, the data between goes in positioned writes, and the size
 * is set at the end, which a file ending in a hole needs. Blocks are counted from the start of
 * the file, so a hole is only ever made where the file system can leave one.
 */
class SparseWriter {
  readonly #fd: number;
  readonly #block: number;
  /** A block of zeros to compare with (`compare` is a native memcmp: ~50 GiB/s here). */
  readonly #zeros: Buffer;
  /** Where the next chunk goes in the file. */
  #position = 0;

  constructor(fd: number) {
    this.#fd = fd;
    this.#block = holeBlockSize(fs.fstatSync(fd).blksize);
    this.#zeros = Buffer.alloc(this.#block);
  }

  /** Writes the next chunk read, leaving out its whole blocks of zeros. */
  write(chunk: Uint8Array): void {
    const block = this.#block;
    const view = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    let pending = 0; // the start of the bytes in `chunk` not yet written
    // The first block boundary inside the chunk: a short read can leave one mid-block.
    for (let at = (block - (this.#position % block)) % block; at + block <= chunk.length;) {
      if (view.compare(this.#zeros, 0, block, at, at + block) === 0) {
        this.#put(chunk, pending, at);
        pending = at + block;
      }
      at += block;
    }
    this.#put(chunk, pending, chunk.length);
    this.#position += chunk.length;
  }

  /** Sets the size: the holes at the end were never written. */
  finish(): void {
    fs.ftruncateSync(this.#fd, this.#position);
  }

  #put(chunk: Uint8Array, start: number, end: number): void {
    for (let done = start; done < end;) {
      done += fs.writeSync(this.#fd, chunk, done, end - done, this.#position + done);
    }
  }
}

/** The largest unit of holes: one read (1 MiB) must hold whole blocks. */
const MAX_HOLE_BLOCK = 1 << 20;

/**
 * The unit of holes on the written file system: its `blksize` (4 KiB on ext4, XFS, btrfs and
 * tmpfs) when a power of two from 4 KiB to 1 MiB, else 4 KiB. A run of zeros shorter than a
 * block would still take the block.
 */
function holeBlockSize(blksize: number): number {
  const power = blksize > 0 && (blksize & (blksize - 1)) === 0;
  return power && blksize >= 4096 && blksize <= MAX_HOLE_BLOCK ? blksize : 4096;
}

/**
 * Makes `toPath` another name of the replica file at `fromPath`: a link made in our `tmp/`
 * folder, then renamed over whatever is there (kept in the trash first, with one).
 */
function placeHardLink(action: Action, context: ApplyContext): void {
  const { guard, toRoot } = context;
  const place = { relative: action.path, parent: guard.chain(parentOf(action.path)) };
  const fromPath = joinRel(toRoot, action.from!);
  placeThroughTemp(joinRel(toRoot, action.path), { ...context, ...place }, (tempPath) =>
    // The link is made from inside the folder of the file linked to, once it is shown to be
    // the one checked: never to a file outside through a swapped folder.
    inParent(fromPath, guard.chain(parentOf(action.from!)), (name) => {
      if (!Deno.lstatSync(name).isFile) throw new Error("the file to link to is not a file");
      Deno.linkSync(name, tempPath);
    }));
}

/** Where {@linkcode placeThroughTemp} puts an entry: its relative path, and its folder. */
interface Placement {
  /** The entry's path relative to the root. */
  relative: string;
  /** What the folder it goes into and those above it must be ({@linkcode FolderGuard.chain}). */
  parent: Identity[] | null;
}

function placeSymlink(toPath: string, entry: Entry, context: CopySettings & Placement): void {
  placeThroughTemp(toPath, context, (tempPath) => {
    Deno.symlinkSync(entry.target!, tempPath);
    // The l- calls act on the link itself (Deno.chownSync would follow it).
    if (context.owners) fs.lchownSync(tempPath, entry.uid, entry.gid);
    const mtime = new Date(entry.mtimeMs);
    fs.lutimesSync(tempPath, mtime, mtime);
  });
}

/**
 * Makes an entry under a new name in our `tmp/` folder (`make` fails if the name is taken: it
 * is only ever made new, in our own folder), then renames it over `toPath`, keeping what was
 * there in the trash first, with one.
 */
function placeThroughTemp(
  toPath: string,
  context: CopySettings & Placement,
  make: (tempPath: string) => void,
): void {
  const tempPath = tempPathIn(context.tempDir);
  expectIdentity(context.tempDir, context.tempIdentity);
  let made = false;
  try {
    make(tempPath);
    made = true;
    expectIdentity(context.tempDir, context.tempIdentity);
    inParent(toPath, context.parent, (name) => {
      keepOverwritten(name, context.relative, context);
      Deno.renameSync(tempPath, name);
    });
  } catch (error) {
    // Only our own entry, in our own folder, is removed; a name that was taken is not ours.
    const ours = made || !(error instanceof Deno.errors.AlreadyExists);
    if (ours && sameIdentity(identityOf(context.tempDir), context.tempIdentity)) {
      removeQuietly(tempPath);
    }
    throw error;
  }
}

/**
 * With a trash, moves what is about to be overwritten there first. `name` is in the current
 * folder ({@linkcode inParent}); `relative` is where it is in the tree.
 */
function keepOverwritten(name: string, relative: string, context: CopySettings): void {
  if (context.trashDir === null || !pathExists(name)) return; // nothing there to keep
  moveToTrash(name, relative, context);
}

/**
 * Moves a tree entry to `trashDir/<its relative path>`, keeping an earlier one there. `path` is
 * a name in the current folder ({@linkcode inParent}).
 */
function moveToTrash(path: string, relative: string, trash: CopySettings): void {
  const trashDir = trash.trashDir!;
  // The run's trash folder must still be the one made: never a link put there since.
  expectIdentity(trashDir, trash.trashIdentity!);
  let target = `${trashDir}/${relative}`;
  Deno.mkdirSync(dirname(target), { recursive: true, mode: 0o700 });
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
 * written through. (The check and the change are two calls: see docs/threat-model.md.)
 */
export class FolderGuard {
  readonly #root: string;
  /** The tree as the walk saw it. */
  readonly #seen: Map<string, Entry>;
  /** Folders this run made. */
  readonly #made = new Map<string, Identity>();
  /** Entries this run moved: new path to the path the walk saw them at. */
  readonly #movedFrom = new Map<string, string>();

  /** Takes `scan`, the walk of the tree at `root`. */
  constructor(root: string, scan: Scan) {
    this.#root = root;
    this.#seen = scan.entries;
  }

  /**
   * Remembers a folder this run just made: `identity`, as seen from inside its parent (a lookup
   * through the path again could meet another folder swapped in meanwhile).
   */
  made(path: string, identity: Identity): void {
    this.#made.set(path, identity);
  }

  /** Remembers an entry this run moved from `oldPath` to `newPath`. */
  moved(newPath: string, oldPath: string): void {
    this.#movedFrom.set(newPath, oldPath);
  }

  /** What the folder at `path` must be, or null when this run knows no folder there. */
  expected(path: string): Identity | null {
    const made = this.#made.get(path);
    if (made !== undefined) return made;
    const seen = this.#seenAt(path);
    return seen?.kind === "dir" ? { dev: seen.dev, ino: seen.ino } : null;
  }

  /**
   * What the folder at `path` and each folder above it up to the root must be, nearest first;
   * null when this run knows no folder at one of them. Checked from inside the folder through
   * `..` ({@linkcode inFolder}), this proves the folder is in the tree, not only that its path
   * led to a folder the walk saw (a walk through a swapped folder sees folders outside).
   */
  chain(path: string): Identity[] | null {
    const chain: Identity[] = [];
    for (const folder of [path, ...ancestors(path)]) {
      const expected = this.expected(folder);
      if (expected === null) return null;
      chain.push(expected);
    }
    return chain;
  }

  /** What the entry at `path` must be (the one the walk saw, followed through moves). */
  identity(path: string): Identity | null {
    const seen = this.#seenAt(path);
    return this.#made.get(path) ?? (seen ? { dev: seen.dev, ino: seen.ino } : null);
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

  /** The walk's entry now at `path`: at the same path, or where a move took it from. */
  #seenAt(path: string): Entry | undefined {
    if (this.#movedFrom.size > 0) {
      for (const moved of [path, ...ancestors(path)]) {
        const oldPath = this.#movedFrom.get(moved);
        if (oldPath !== undefined) return this.#seen.get(oldPath + path.slice(moved.length));
      }
    }
    return this.#seen.get(path);
  }
}

/** A file with other hard links: changing its attributes would change them all. */
class HardLinkedError extends Error {
  override name = "HardLinkedError";
}

const NO_FOLLOW = fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;

/**
 * Sets mode, owner and mtime on what `path` names without following a link there: the entry is
 * opened with O_NOFOLLOW and changed through that descriptor. Only an entry the owner cannot
 * open (mode 000 when not root) falls back to the path, after an `lstat`.
 */
function setAttributes(
  path: string,
  entry: Entry,
  options: { owners: boolean; expected: Identity | null },
): void {
  const { owners, expected } = options;
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
    const found = { dev: info.dev, ino: info.ino ?? 0, nlink: info.nlink ?? 1 };
    checkAttributeTarget(found, { expected, isDir });
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
    checkAttributeTarget({ dev: info.dev, ino: info.ino, nlink: info.nlink }, { expected, isDir });
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

/**
 * What was opened for an attribute change must be the entry the walk saw (a swap of any folder
 * above it shows here), and a file must have no other hard link: one outside the tree would
 * change with it.
 */
function checkAttributeTarget(
  found: Identity & { nlink: number },
  options: { expected: Identity | null; isDir: boolean },
): void {
  const { expected } = options;
  if (expected !== null && (found.dev !== expected.dev || found.ino !== expected.ino)) {
    throw new Error("it was replaced during the run; left alone");
  }
  // A folder's link count counts its subfolders; only a file's means other names.
  if (!options.isDir && found.nlink > 1) throw new HardLinkedError("it has other hard links");
}

/**
 * How much work goes to a worker at once: enough that a message per batch costs nothing, little
 * enough that both workers stay busy to the end. Copies also write, so their batches are smaller.
 */
export const BATCH_LIMITS = { files: 64, copyBytes: 16 << 20, hashBytes: 64 << 20 } as const;

/** The parts of an apply context a worker needs to copy files. */
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

/** What copying one file needs to know, on the main thread or in a worker. */
export interface CopyContext extends CopySettings {
  /** The tree written. */
  toRoot: string;
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
