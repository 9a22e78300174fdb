/**
 * One run as named phases: check, scan, refuse, prepare, hash, decide, execute. Every check that
 * can refuse a run comes before its first write.
 *
 * @module
 */

import {
  Applier,
  type ApplyContext,
  type CopyOutcome,
  FolderGuard,
  purgeTrash,
  trashFolderName,
} from "./apply.ts";
import { type Options } from "./cli.ts";
import { type ActionSink, emptyLeftovers, type EngineContext, walkPair } from "./engine.ts";
import { errorText, RefusedError, UsageError } from "./errors.ts";
import { compileFilters } from "./exclude.ts";
import {
  expectIdentity,
  type Identity,
  identityOf,
  pathExists,
  removeQuietly,
  sameIdentity,
} from "./files.ts";
import { displayPath, formatDuration, quoted } from "./format.ts";
import {
  describeAction,
  idleProgress,
  type Reporter,
  type RunProgress,
  writeStdout,
} from "./log.ts";
import {
  acquireLock,
  checkMeta,
  checkOwn,
  type LockMode,
  makeOwnFolder,
  type MetaPaths,
  metaPaths,
  type ReplicaLock,
} from "./meta.ts";
import { applySink, finishRun, type WalkSettings } from "./mirror.ts";
import { copiedRow, type FolderRows, NextRecord } from "./nextrecord.ts";
import { checkPaths } from "./places.ts";
import { compareWalkOrder } from "./order.ts";
import { baseName, isWithin, parentOf } from "./paths.ts";
import { type Action, reasonText, replacesData } from "./plan.ts";
import { loadRecord } from "./record.ts";
import {
  emptyRecordSource,
  openRecord,
  type RecordRow,
  type RecordSource,
  recordSourceFromV2,
} from "./recordfile.ts";
import { type Entry, entryFromStat, type FolderListing, scanTree } from "./scan.ts";
import { countAction, emptySummary, type RunSummary } from "./summary.ts";
import { FolderStream, type WalkRequest } from "./walk.ts";
import { WorkerPool } from "./workers.ts";

/** Controls shared by a run and whoever started it (the loop, signals, stdin). */
export interface RunControl {
  /** True once a stop was asked: finish the current file, save the record. */
  stopRequested: boolean;
  /** True once a second SIGINT came: abandon the current file now. */
  abortNow: boolean;
  /** The replica lock while it is held. */
  lock: ReplicaLock | null;
  /** Keep the lock between runs (the loop holds it for its whole life). */
  keepLock: boolean;
  /** Progress of the run under way, for `status` and the progress line. */
  progress: RunProgress;
  /** The run's workers, told when a stop is asked. */
  pool: WorkerPool | null;
}

/**
 * Asks the run under way to stop: after the file in flight (1: quit, the first signal) or at
 * once, abandoning it (2: a second SIGINT).
 */
export function requestStop(control: RunControl, level: 1 | 2): void {
  control.stopRequested = true;
  if (level === 2) control.abortNow = true;
  control.pool?.stop(level);
}

/** A fresh {@linkcode RunControl}. */
export function newRunControl(): RunControl {
  return {
    stopRequested: false,
    abortNow: false,
    lock: null,
    keepLock: false,
    progress: idleProgress(),
    pool: null,
  };
}

function makePause(): () => Promise<void> {
  let last = performance.now();
  return async () => {
    const now = performance.now();
    if (now - last < 100) return; // a turn costs ~2 ms: take one ten times a second
    // A macrotask turn lets signal handlers, stdin and timers run between files.
    await new Promise((done) => setTimeout(done, 0));
    last = performance.now();
  };
}

/** What one run needs besides its options. */
export interface RunDependencies {
  /** Where the run's messages go. */
  report: Reporter;
  /** The stop flags, lock, progress and workers shared with the caller. */
  control: RunControl;
  /** Answers the `--interactive` question; true deletes. */
  confirmDeletes: (count: number, sample: string[]) => boolean;
  /** Running as root: owners are compared and kept. */
  isRoot: boolean;
}

/**
 * One pass: check, lock, walk both trees in lock-step with the record, deciding and acting
 * folder by folder, then what waited for the walk, then save the record.
 *
 * @returns The summary; `failed` counts entries that could not be mirrored.
 * @throws {UsageError} For paths that cannot be mirrored (nothing changed).
 * @throws {RefusedError} When a safety check refuses (nothing deleted).
 */
export async function runOnce(
  options: Options,
  deps: RunDependencies,
  scope?: string[],
): Promise<RunSummary> {
  if (scope !== undefined) return await runInScope(options, deps, scope);
  const started = performance.now();
  const { control } = deps;
  const sides = checkBeforeRun(options);
  const writes = !options.dryRun;
  const pool = new WorkerPool(options.jobs);
  control.pool = pool;
  const held: Held = { streams: [], record: null, next: null, prepared: null };
  try {
    // An existing lock file is taken now (taking it writes nothing); a first run makes it later.
    if (writes) takeLock(control, sides.replicaMeta, options.restore ? "read" : "existing");
    const walk = walkSettings(options, sides);
    const from = new FolderStream(walkRequest(sides.fromRoot, walk.filters, walk.avoid.from));
    const to = walk.toExists
      ? new FolderStream(walkRequest(sides.toRoot, walk.filters, walk.avoid.to))
      : new FolderStream(null);
    held.streams.push(from, to);
    control.progress = { ...idleProgress(), phase: "scanning" };
    const roots = { from: await from.peek(), to: await to.peek() };
    refuseUnsafe(options, roots);
    if (await stopAsked(control)) return stoppedSummary(options, started);
    held.record = openRecordSource(sides.replicaMeta, deps.report);
    if (writes) held.prepared = prepareWrites(options, sides, deps);
    const toRootEntry = to.start ??
      (writes ? entryFromStat(Deno.statSync(sides.toRoot)) : null);
    const run = startRun(options, { sides, deps, held, toRootEntry });
    const left = emptyLeftovers();
    const deferNew = run.context.moves && (roots.to?.entries.size ?? 0) > 0;
    control.progress.walking = true;
    if (toRootEntry === null && from.start) {
      // A dry run into a replica that does not exist yet: its root would be made first.
      await run.context.sink.apply({
        kind: "mkdir",
        path: "",
        reason: { code: "new" },
        entry: from.start,
      });
    }
    await walkPair(
      {
        from,
        to,
        record: held.record,
        start: { folder: "", from: from.start, to: toRootEntry },
        deferNew,
        rows: "draft",
      },
      run.context,
      left,
    );
    control.progress.walking = false;
    reportSkipped(deps.report, [from, to]);
    const outcome = await finishRun(left, run.context, {
      gate: {
        maxDelete: options.maxDelete,
        confirm: options.interactive ? deps.confirmDeletes : null,
      },
      walk,
      guardEntries: run.context.guardEntries,
    });
    if (writes && !outcome.maxDeleteHit && outcome.heldBack === 0) {
      purgeExpiredTrash(options, sides, deps.report);
    }
    const summary = run.summary();
    if (held.next) {
      const rest = control.stopRequested ? held.record!.blocks() : [];
      saveNextRecord(held, { sides, rest, report: deps.report });
    }
    if (control.stopRequested && writes) {
      deps.report.warn("Stopped before the end of the run; the record is saved");
    }
    summary.failed += left.failed;
    summary.durationMs = Math.round(performance.now() - started);
    summary.deletionsHeldBack = outcome.heldBack;
    summary.maxDeleteHit = outcome.maxDeleteHit;
    return summary;
  } finally {
    control.progress = idleProgress();
    control.pool = null;
    for (const stream of held.streams) stream.close();
    held.next?.close();
    held.record?.close();
    pool.close();
    if (!control.keepLock) {
      control.lock?.release();
      control.lock = null;
    }
    // Restoring leaves the source as it was found: the folders of ours this run made there
    // go again, if empty. Nothing else there is ever removed.
    removeMadeFolders(held.prepared?.madeHere ?? []);
  }
}

/**
 * A run over part of the source: each folder of `scope` (relative paths; `--watch` saw them
 * change) walked with everything below it, against the replica's same folder and the record;
 * the rest of the record carried over. A folder gone from either tree is taken from its
 * nearest folder that both still have.
 */
async function runInScope(
  options: Options,
  deps: RunDependencies,
  scope: string[],
): Promise<RunSummary> {
  const started = performance.now();
  const { control } = deps;
  const sides = checkBeforeRun(options);
  const writes = !options.dryRun;
  const pool = new WorkerPool(options.jobs);
  control.pool = pool;
  const held: Held = { streams: [], record: null, next: null, prepared: null };
  let rest: RecordSource | null = null;
  try {
    if (writes) takeLock(control, sides.replicaMeta, options.restore ? "read" : "existing");
    const walk = walkSettings(options, sides);
    held.record = openRecordSource(sides.replicaMeta, deps.report);
    rest = openRecordSource(sides.replicaMeta, { ...deps.report, warn: () => {} });
    if (writes) held.prepared = prepareWrites(options, sides, deps);
    const run = startRun(options, { sides, deps, held, toRootEntry: null });
    const left = emptyLeftovers();
    for (const folder of scopeFolders(scope, sides)) {
      if (control.stopRequested) break;
      const request = (root: string, avoid: Identity[]) => ({
        ...walkRequest(root, walk.filters, avoid),
        start: folder,
      });
      const from = new FolderStream(request(sides.fromRoot, walk.avoid.from));
      const to = new FolderStream(request(sides.toRoot, walk.avoid.to));
      held.streams.push(from, to);
      const toEntry = entryFromStat(
        folder === "" ? Deno.statSync(sides.toRoot) : Deno.lstatSync(`${sides.toRoot}/${folder}`),
      );
      run.context.guardEntries.set(folder, toEntry);
      const fromEntry = entryFromStat(
        folder === ""
          ? Deno.statSync(sides.fromRoot)
          : Deno.lstatSync(`${sides.fromRoot}/${folder}`),
      );
      await walkPair(
        {
          from,
          to,
          record: held.record,
          start: { folder, from: fromEntry, to: toEntry },
          deferNew: run.context.moves,
          rows: "patch",
        },
        run.context,
        left,
      );
    }
    const outcome = await finishRun(left, run.context, {
      gate: {
        maxDelete: options.maxDelete,
        confirm: options.interactive ? deps.confirmDeletes : null,
      },
      walk,
      guardEntries: run.context.guardEntries,
    });
    const summary = run.summary();
    if (held.next) saveNextRecord(held, { sides, rest: rest.blocks(), report: deps.report });
    summary.failed += left.failed;
    summary.durationMs = Math.round(performance.now() - started);
    summary.deletionsHeldBack = outcome.heldBack;
    summary.maxDeleteHit = outcome.maxDeleteHit;
    return summary;
  } finally {
    control.progress = idleProgress();
    control.pool = null;
    for (const stream of held.streams) stream.close();
    held.next?.close();
    held.record?.close();
    rest?.close();
    pool.close();
    if (!control.keepLock) {
      control.lock?.release();
      control.lock = null;
    }
    removeMadeFolders(held.prepared?.madeHere ?? []);
  }
}

/**
 * The folders of a scope to walk, in walk order: each taken up to the nearest folder that is a
 * folder in both trees, and none inside another.
 */
function scopeFolders(scope: string[], sides: RunSides): string[] {
  const isFolder = (root: string, folder: string) => {
    try {
      return Deno.lstatSync(`${root}/${folder}`).isDirectory;
    } catch {
      return false;
    }
  };
  const folders = new Set<string>();
  for (let folder of scope) {
    while (folder !== "" && !(isFolder(sides.fromRoot, folder) && isFolder(sides.toRoot, folder))) {
      folder = parentOf(folder);
    }
    folders.add(folder);
  }
  const sorted = [...folders].sort(compareWalkOrder);
  return sorted.filter((folder) =>
    !isWithin(folder, new Set(sorted.filter((other) => other !== folder)))
  );
}

/** What a run holds open, released at its end whatever happens. */
interface Held {
  streams: FolderStream[];
  record: RecordSource | null;
  next: NextRecord | null;
  prepared: PreparedWrites | null;
}

/** How each tree is walked: the rules, and the other tree's root to stop at. */
function walkSettings(options: Options, sides: RunSides): WalkSettings & { toExists: boolean } {
  const fromRoot = identityOf(sides.fromRoot)!;
  const toRoot = identityOf(sides.toRoot);
  checkNoBindMount(options, { sides, fromRoot, toRoot });
  return {
    filters: options.filters,
    avoid: { from: toRoot ? [toRoot] : [], to: [fromRoot] },
    toExists: toRoot !== null,
  };
}

function walkRequest(
  root: string,
  filters: Options["filters"],
  avoid: Identity[],
): Omit<WalkRequest, "taken"> {
  return { root, start: "", filters, skipMetaDir: true, avoid };
}

/** The record to read: format 3, else a version-2 record to convert, else none. */
function openRecordSource(meta: MetaPaths, report: Reporter): RecordSource {
  const onCorrupt = (message: string) => report.warn(message);
  const current = openRecord(meta.record, { maxBytes: RECORD_MAX_BYTES, onCorrupt });
  if (current !== null) return current;
  if (!pathExists(meta.legacyRecord)) return emptyRecordSource();
  return recordSourceFromV2(
    loadRecord(meta.legacyRecord, { maxBytes: LEGACY_RECORD_MAX_BYTES, onCorrupt }),
  );
}

/** No record of ours is ever this large: 100 bytes a file for 100 million files and more. */
const RECORD_MAX_BYTES = 16 * 2 ** 30;

/** A version-2 record is parsed whole: one this large is refused, not read. */
const LEGACY_RECORD_MAX_BYTES = 1 << 30;

/** The applier or the printer, the engine's context, and the summary they keep. */
function startRun(
  options: Options,
  input: { sides: RunSides; deps: RunDependencies; held: Held; toRootEntry: Entry | null },
): { context: EngineContext; summary: () => RunSummary } {
  const { sides, deps, held, toRootEntry } = input;
  const { report, control, isRoot } = deps;
  const guardEntries = new Map<string, Entry>();
  if (toRootEntry) guardEntries.set("", toRootEntry);
  const pendingRows = new Map<string, FolderRows>();
  if (held.prepared && !options.restore) {
    expectIdentity(sides.replicaMeta.dir, held.prepared.metaIdentity!);
    held.next = new NextRecord(sides.replicaMeta, {
      onFailure: (error) =>
        report.warn(
          `Cannot write the record: ${errorText(error)}; the next run rebuilds what it misses`,
        ),
    });
  }
  control.progress = { ...idleProgress(), phase: "copying" };
  let sink: ActionSink;
  let summary: () => RunSummary;
  if (held.prepared) {
    const applier = new Applier(applyContext(options, {
      sides,
      deps,
      prepared: held.prepared,
      guardEntries,
      onSettled: (action, outcome) => settleRows(action, outcome, { pendingRows, next: held.next }),
    }));
    sink = applySink(applier, control);
    summary = () => applier.result.summary;
  } else {
    const counts = emptySummary(true);
    sink = printSink(counts, { trash: options.keepDeletedMs !== null, control });
    summary = () => counts;
  }
  const context: EngineContext = {
    options,
    planOptions: {
      checksum: options.checksum,
      deletes: options.deletes && !options.restore,
      owners: isRoot,
      restore: options.restore,
      overwriteNewer: options.overwriteNewer,
      ...(options.verbosity >= 3
        ? {
          explain: (path: string, why: string) =>
            report.debug(`keep ${displayPath(path || ".")}: ${why}`),
        }
        : {}),
    },
    moves: !options.restore && options.deletes,
    roots: { from: sides.fromRoot, to: sides.toRoot },
    pool: control.pool!,
    report,
    sink,
    next: held.next,
    guardEntries,
    pendingRows,
    linkGroups: options.hardLinks ? new Map() : null,
    control,
    stopped: () => control.stopRequested,
  };
  return { context, summary };
}

/** A copy came back: its row goes with its folder's, or straight into the next record. */
function settleRows(
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

/** Where and how the applier writes, and what it reports. */
function applyContext(
  options: Options,
  input: {
    sides: RunSides;
    deps: RunDependencies;
    prepared: PreparedWrites;
    guardEntries: Map<string, Entry>;
    onSettled: ApplyContext["onSettled"];
  },
): ApplyContext {
  const { sides, deps: { report, control, isRoot }, prepared, guardEntries } = input;
  return {
    fromRoot: sides.fromRoot,
    toRoot: sides.toRoot,
    tempDir: prepared.tempDir,
    tempIdentity: prepared.tempIdentity,
    trashDir: prepared.trashDir,
    trashIdentity: prepared.trashIdentity,
    pool: control.pool!,
    guard: new FolderGuard(sides.toRoot, {
      entries: guardEntries,
      problems: [],
      protectedPaths: [],
    }),
    onStart: (action) => control.progress.current = action.path,
    onBytes: (bytes) => control.progress.bytes += bytes,
    owners: isRoot,
    sparse: options.sparse,
    shouldStop: () => control.stopRequested,
    mustAbort: () => control.abortNow,
    pause: makePause(),
    onDone: (action) => {
      if (action.kind !== "dirattrs") control.progress.done++;
      if (action.kind === "dirattrs") report.debug(describeAction(action));
      else report.change(describeAction(action));
      report.debug(`  because: ${reasonText(action.reason)}`);
    },
    onFailed: (problem) => report.error(`${displayPath(problem.path)}: ${problem.message}`),
    ...(input.onSettled ? { onSettled: input.onSettled } : {}),
  };
}

/** A dry run's sink: each action printed on stdout and counted. */
function printSink(
  counts: RunSummary,
  input: { trash: boolean; control: RunControl },
): ActionSink {
  return {
    applier: null,
    drain: () => Promise.resolve(),
    apply: (action) => {
      if (input.control.stopRequested) return Promise.resolve(false);
      if (action.kind !== "dirattrs") {
        const toTrash = input.trash && replacesData(action);
        writeStdout(`${describeAction(action)}${toTrash ? " (to trash)" : ""}\n`);
      }
      countAction(counts, action, action.entry?.size ?? 0);
      return Promise.resolve(true);
    },
  };
}

/** Saves the next record (after a stop, the old record's rows the walk did not reach too). */
function saveNextRecord(
  held: Held,
  input: {
    sides: RunSides;
    rest: Iterable<{ folder: string; rows: RecordRow[] }>;
    report: Reporter;
  },
): void {
  const { sides, rest } = input;
  try {
    expectIdentity(sides.replicaMeta.dir, held.prepared!.metaIdentity!);
    held.next!.save(rest);
    if (pathExists(sides.replicaMeta.legacyRecord)) {
      // Converted: the version-2 record has served. Ours, checked before the run.
      checkOwn(sides.replicaMeta.legacyRecord, "file");
      Deno.removeSync(sides.replicaMeta.legacyRecord);
    }
  } catch (error) {
    input.report.warn(`Cannot save the record: ${errorText(error)}`);
  }
}

/** Warns of the special files the walks skipped. */
function reportSkipped(report: Reporter, streams: FolderStream[]): void {
  for (const stream of streams) {
    for (const problem of stream.skipped) {
      report.warn(`${displayPath(problem.path)}: ${problem.message}`);
    }
  }
}

/** Checks that a restore has a replica to restore from. */
function checkRestoreFrom(replica: string): void {
  let isFolder = false;
  try {
    isFolder = Deno.statSync(replica).isDirectory;
  } catch {
    // Missing or unreadable: nothing to restore from either way.
  }
  if (!isFolder) {
    throw new UsageError(`Replica ${quoted(replica)} is not a folder: nothing to restore from`);
  }
}

/** The checks that need no walk: paths, our own files, a replica to restore from. */
function checkBeforeRun(options: Options): RunSides {
  checkPaths(options.source, options.replica);
  const sides = runSides(options);
  checkMeta(sides.replicaMeta);
  if (options.restore) {
    checkMeta(sides.targetMeta);
    checkRestoreFrom(options.replica);
  }
  return sides;
}

/** The two trees of a run and where each keeps our own files. */
interface RunSides {
  fromRoot: string;
  toRoot: string;
  /** The replica's: lock and record. */
  replicaMeta: MetaPaths;
  /** The written tree's: temporary files and trash (the source's, when restoring). */
  targetMeta: MetaPaths;
}

function runSides(options: Options): RunSides {
  const [fromRoot, toRoot] = options.restore
    ? [options.replica, options.source]
    : [options.source, options.replica];
  // Files are written next to where they go, on the same file system, so the final rename
  // works: in the written tree's metadata folder (a top-level .treesync is never mirrored).
  return {
    fromRoot,
    toRoot,
    replicaMeta: metaPaths(options.replica),
    targetMeta: metaPaths(toRoot),
  };
}

/**
 * Whether a stop was asked. Signal handlers run on the event loop, which the synchronous phases
 * (loading the record, planning) do not give back: a short wait lets a signal that came meanwhile
 * in.
 */
async function stopAsked(control: RunControl): Promise<boolean> {
  // A timer of a few ms (not 0) lets the event loop wait for, and deliver, a pending signal.
  await new Promise((done) => setTimeout(done, 5));
  return control.stopRequested;
}

function stoppedSummary(options: Options, started: number): RunSummary {
  const summary = emptySummary(options.dryRun);
  summary.durationMs = Math.round(performance.now() - started);
  return summary;
}

/** Takes the replica lock unless this process still holds it. */
export function takeLock(control: RunControl, meta: MetaPaths, mode: LockMode): void {
  if (control.lock?.stillHeld()) return;
  control.lock?.release();
  control.lock = acquireLock(meta, mode);
}

/**
 * The checks that need the first listings, before anything is written: a root that cannot be
 * listed, an empty source over a full replica.
 */
function refuseUnsafe(
  options: Options,
  roots: { from: FolderListing | null; to: FolderListing | null },
): void {
  const [fromName, toName] = options.restore ? ["replica", "source"] : ["source", "replica"];
  const [fromRoot, toRoot] = options.restore
    ? [options.replica, options.source]
    : [options.source, options.replica];
  const sides = [[roots.from, fromName, fromRoot], [roots.to, toName, toRoot]] as const;
  for (const [listing, name, root] of sides) {
    const rootProblem = listing?.problems.find((problem) => problem.path === "");
    if (rootProblem) {
      const why = rootProblem.message.replace(/^Cannot list folder: /, "");
      throw new UsageError(`Cannot list the ${name} ${quoted(root)}: ${why}`);
    }
    if (listing?.nested !== undefined) {
      refuseNested(options, { nestedIn: name, path: listing.nested });
    }
  }
  if (!options.restore && options.deletes && !options.allowEmptySource) {
    const { from, to } = roots;
    const fromEmpty = from !== null && from.entries.size === 0 && from.problems.length === 0;
    if (fromEmpty && (to?.entries.size ?? 0) > 0) {
      throw new RefusedError(
        `Refusing to empty ${quoted(options.replica)}: the source ${
          quoted(options.source)
        } is empty ` +
          `(an unmounted disk looks like this). Pass --allow-empty-source if it is meant`,
      );
    }
  }
}

/** Refuses a tree that holds the other's root (a bind mount). */
function refuseNested(options: Options, found: { nestedIn: string; path: string }): never {
  const other = found.nestedIn === "source" ? "replica" : "source";
  throw new UsageError(
    `Cannot mirror ${quoted(options.source)} into ${quoted(options.replica)}: the ${other} is ` +
      `the folder ${quoted(found.path)} of the ${found.nestedIn} (a bind mount shows one ` +
      `folder twice)`,
  );
}

/**
 * Before anything is written: where the trees' file systems are mounted more than once (a bind
 * mount), each tree is walked once to make sure the other's root is not inside it. A streamed
 * walk meets such a folder only after writes began; a file system mounted once cannot show a
 * folder twice, so most runs skip this walk.
 */
function checkNoBindMount(
  options: Options,
  input: { sides: RunSides; fromRoot: Identity; toRoot: Identity | null },
): void {
  const { sides, fromRoot, toRoot } = input;
  if (toRoot === null || !mountedMoreThanOnce([fromRoot.dev, toRoot.dev])) return;
  const exclude = compileFilters(options.filters);
  const [fromName, toName] = options.restore ? ["replica", "source"] : ["source", "replica"];
  const walks = [[sides.fromRoot, toRoot, fromName], [sides.toRoot, fromRoot, toName]] as const;
  for (const [root, avoid, name] of walks) {
    const nested = scanTree(root, { exclude, skipMetaDir: true, avoid: [avoid] }).nested;
    if (nested !== undefined) refuseNested(options, { nestedIn: name, path: nested });
  }
}

/** Whether any of the devices is mounted more than once; true when that cannot be read. */
function mountedMoreThanOnce(devices: number[]): boolean {
  let table: string;
  try {
    table = Deno.readTextFileSync("/proc/self/mountinfo");
  } catch {
    return true;
  }
  const wanted = new Set(devices.map((dev) => `${deviceMajor(dev)}:${deviceMinor(dev)}`));
  const seen = new Map<string, number>();
  for (const line of table.split("\n")) {
    const device = line.split(" ")[2];
    if (device === undefined || !wanted.has(device)) continue;
    seen.set(device, (seen.get(device) ?? 0) + 1);
  }
  return [...wanted].some((device) => (seen.get(device) ?? 0) !== 1);
}

/** Linux's `major()` of a `dev_t` (glibc's encoding). */
function deviceMajor(dev: number): number {
  return Number(((BigInt(dev) >> 8n) & 0xfffn) | ((BigInt(dev) >> 32n) & ~0xfffn));
}

/** Linux's `minor()` of a `dev_t`. */
function deviceMinor(dev: number): number {
  return Number((BigInt(dev) & 0xffn) | ((BigInt(dev) >> 12n) & ~0xffn));
}

/** What a writing run set up: where files are written and kept, and what it made. */
interface PreparedWrites {
  tempDir: string;
  tempIdentity: Identity;
  trashDir: string | null;
  trashIdentity: Identity | null;
  /** The replica's metadata folder, checked again before the record is saved (not restoring). */
  metaIdentity: Identity | null;
  /**
   * Our folders this run made that go again at its end if left empty: in the source when
   * restoring, and the run's trash folder.
   */
  madeHere: Array<{ path: string } & Identity>;
}

/**
 * The first writes of a run, once every check has passed: the replica and our folders, the
 * lock, leftovers of a killed run.
 */
function prepareWrites(options: Options, sides: RunSides, deps: RunDependencies): PreparedWrites {
  const { replicaMeta, targetMeta } = sides;
  if (!pathExists(options.replica)) {
    try {
      Deno.mkdirSync(options.replica, { recursive: true });
    } catch (error) {
      throw new UsageError(
        `Cannot create the replica ${quoted(options.replica)}: ${errorText(error, true)}`,
      );
    }
  }
  let metaIdentity: Identity | null = null;
  if (!options.restore) {
    // Restoring writes into the source only: the replica, read-only perhaps, is just read.
    metaIdentity = makeOwnFolder(replicaMeta.dir);
    takeLock(deps.control, replicaMeta, "create");
    deps.control.lock!.announce();
  }
  const madeHere: PreparedWrites["madeHere"] = [];
  const make = (path: string, removeIfEmpty: boolean) => {
    const { dev, ino, made } = makeOwnFolder(path);
    if (made && removeIfEmpty) madeHere.push({ path, dev, ino });
    return { dev, ino };
  };
  if (options.restore) make(targetMeta.dir, true);
  const tempIdentity = make(targetMeta.temp, options.restore);
  if (!options.restore) {
    // Files left by a run that was killed mid-copy; the lock says no run is using them. In the
    // source (restoring) nothing is removed but what this run made.
    for (const leftover of Deno.readDirSync(targetMeta.temp)) {
      removeQuietly(`${targetMeta.temp}/${leftover.name}`);
    }
  }
  let trashDir: string | null = null;
  let trashIdentity: Identity | null = null;
  if (options.keepDeletedMs !== null) {
    make(targetMeta.trash, options.restore);
    trashDir = `${targetMeta.trash}/${trashFolderName(new Date())}`;
    trashIdentity = make(trashDir, true);
  }
  return {
    tempDir: targetMeta.temp,
    tempIdentity,
    trashDir,
    trashIdentity,
    metaIdentity,
    madeHere,
  };
}

/** Removes the trash folders older than `--keep-deleted`, once the run is decided. */
function purgeExpiredTrash(options: Options, sides: RunSides, report: Reporter): void {
  if (options.keepDeletedMs === null) return;
  for (const name of purgeTrash(sides.targetMeta.trash, options.keepDeletedMs, new Date())) {
    report.change(`purge trash ${name}/ (older than ${formatDuration(options.keepDeletedMs)})`);
  }
}

/** Removes folders this run made, innermost first, each only if empty and still the one made. */
function removeMadeFolders(folders: PreparedWrites["madeHere"]): void {
  for (const folder of folders.toReversed()) {
    if (!sameIdentity(identityOf(folder.path), folder)) continue;
    try {
      Deno.removeSync(folder.path); // not recursive: a folder with anything in it stays
    } catch {
      // Not empty, or already gone: leave it.
    }
  }
}

/** Whether this process runs as root (owners are kept only then). */
export function isRunningAsRoot(): boolean {
  try {
    return Deno.uid() === 0;
  } catch {
    return false;
  }
}
