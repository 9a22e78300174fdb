/**
 * One run as named phases: check, scan, refuse, prepare, hash, decide, execute. Every check that
 * can refuse a run comes before its first write.
 *
 * @module
 */

import { applyPlan, CHECKPOINT_MS, FolderGuard, purgeTrash, trashFolderName } from "./apply.ts";
import { type Options } from "./cli.ts";
import { errorText, RefusedError, UsageError } from "./errors.ts";
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
  type LockMode,
  makeOwnFolder,
  type MetaPaths,
  metaPaths,
  type ReplicaLock,
} from "./meta.ts";
import { hashesNeeded } from "./needs.ts";
import { checkPaths } from "./places.ts";
import {
  deleteAllowance,
  holdBackDeletions,
  type Plan,
  planMirror,
  type PlanOptions,
  reasonText,
  replacesData,
} from "./plan.ts";
import {
  type FileRecord,
  loadRecord,
  nextRecord,
  RECORD_EAGER_BYTES,
  type RecordChanges,
  recordSizeCap,
  sameRecord,
  saveRecord,
} from "./record.ts";
import { entryFromStat, sameSignature, type Scan } from "./scan.ts";
import { countPlan, emptySummary, type RunSummary } from "./summary.ts";
import { hashInPool, scanBoth, WorkerPool, type WorkerScan } from "./workers.ts";

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
 * One pass: check, lock, scan both trees, plan, apply, save the record.
 *
 * @returns The summary; `failed` counts entries that could not be mirrored.
 * @throws {UsageError} For paths that cannot be mirrored (nothing changed).
 * @throws {RefusedError} When a safety check refuses (nothing deleted).
 */
export async function runOnce(options: Options, deps: RunDependencies): Promise<RunSummary> {
  const started = performance.now();
  const { report, control } = deps;
  const sides = checkBeforeRun(options);
  const writes = !options.dryRun;
  const pool = new WorkerPool(options.jobs);
  control.pool = pool;
  let prepared: PreparedWrites | null = null;
  try {
    // An existing lock file is taken now (taking it writes nothing); a first run makes it later.
    if (writes) takeLock(control, sides.replicaMeta, options.restore ? "read" : "existing");
    const { from, to, record } = await scanAndLoad(pool, sides, { options, deps });
    if (await stopAsked(control)) return stoppedSummary(options, started);
    if (writes) {
      prepared = prepareWrites(options, sides, deps);
      // A replica this run made had no walk: its root is the folder just made.
      if (!to.entries.has("")) to.entries.set("", entryFromStat(Deno.statSync(sides.toRoot)));
    }

    const hashOptions = planOptionsFor(options, record);
    await hashWhatMatters(pool, { sides, from, to, hashOptions, options, deps });
    if (await stopAsked(control)) return stoppedSummary(options, started);
    const decided = decide(options, deps, { from, to, hashOptions });
    if (await stopAsked(control)) return stoppedSummary(options, started);
    if (writes) purgeExpiredTrash(options, sides, report);
    const summary = options.dryRun
      ? printPlan(decided.plan, options.keepDeletedMs !== null)
      : await execute(decided.plan, {
        sides,
        from,
        to,
        record,
        prepared: prepared!,
        restore: options.restore,
        sparse: options.sparse,
        deps,
      });
    summary.failed += from.problems.length + to.problems.length + decided.plan.blocked.length;
    summary.durationMs = Math.round(performance.now() - started);
    summary.deletionsHeldBack = decided.heldBack;
    summary.maxDeleteHit = decided.maxDeleteHit;
    return summary;
  } finally {
    control.progress = idleProgress();
    control.pool = null;
    pool.close();
    if (!control.keepLock) {
      control.lock?.release();
      control.lock = null;
    }
    // Restoring leaves the source as it was found: the folders of ours this run made there
    // go again, if empty. Nothing else there is ever removed.
    removeMadeFolders(prepared?.madeHere ?? []);
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

/**
 * Walks both trees in the workers while this thread reads the record (when it is small enough
 * to be harmless; a larger one waits for the walk to say how large it may be), then refuses
 * what the walk shows cannot be mirrored.
 */
async function scanAndLoad(
  pool: WorkerPool,
  sides: RunSides,
  run: { options: Options; deps: RunDependencies },
): Promise<{ from: WorkerScan; to: WorkerScan; record: FileRecord }> {
  const { options, deps: { report, control } } = run;
  control.progress = { ...idleProgress(), phase: "scanning" };
  const scanning = scanBoth(pool, { from: sides.fromRoot, to: sides.toRoot }, options.excludes);
  const recordPath = sides.replicaMeta.record;
  const onCorrupt = (message: string) => report.warn(message);
  const early = fileSize(recordPath) <= RECORD_EAGER_BYTES
    ? loadRecord(recordPath, { onCorrupt, maxBytes: RECORD_EAGER_BYTES })
    : null;
  const { from, to } = await scanning;
  reportScans(report, options, { from, to });
  refuseUnsafe(options, { from, to });
  const maxBytes = recordSizeCap(from.entries.size + to.entries.size);
  return { from, to, record: early ?? loadRecord(recordPath, { onCorrupt, maxBytes }) };
}

/** How the plan decides, from the options and what the record knows of each side. */
function planOptionsFor(
  options: Options,
  record: FileRecord,
): Omit<PlanOptions, "owners" | "explain"> {
  return {
    checksum: options.checksum,
    // Restoring reads the replica and writes the source.
    fromHashes: options.restore ? record.replica : record.source,
    toHashes: options.restore ? record.source : record.replica,
    moves: !options.restore && options.deletes,
    deletes: options.deletes && !options.restore,
    restore: options.restore,
    overwriteNewer: options.overwriteNewer,
  };
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

function fileSize(path: string): number {
  try {
    return Deno.lstatSync(path).size;
  } catch {
    return 0;
  }
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

function reportScans(
  report: Reporter,
  options: Options,
  scans: { from: WorkerScan; to: WorkerScan },
): void {
  const debugScan = options.verbosity >= 3;
  for (const [side, scan] of [["source", scans.from], ["target", scans.to]] as const) {
    for (const problem of scan.skipped) {
      report.warn(`${displayPath(problem.path)}: ${problem.message}`);
    }
    if (debugScan) {
      for (const [path, entry] of scan.entries) {
        report.debug(`scan ${side} ${entry.kind} ${displayPath(path || ".")}`);
      }
    }
  }
  for (const problem of [...scans.from.problems, ...scans.to.problems]) {
    if (problem.path !== "") report.error(`${displayPath(problem.path)}: ${problem.message}`);
  }
}

/**
 * The checks that need the walk, before anything is written: a tree that is the other's root
 * through a bind mount, a root that cannot be listed, an empty source over a full replica.
 */
function refuseUnsafe(options: Options, scans: { from: Scan; to: Scan }): void {
  const [fromName, toName] = options.restore ? ["replica", "source"] : ["source", "replica"];
  const [fromRoot, toRoot] = options.restore
    ? [options.replica, options.source]
    : [options.source, options.replica];
  const sides = [[scans.from, fromName, fromRoot], [scans.to, toName, toRoot]] as const;
  for (const [scan, name, root] of sides) {
    const rootProblem = scan.problems.find((problem) => problem.path === "");
    if (rootProblem) {
      const why = rootProblem.message.replace(/^Cannot list folder: /, "");
      throw new UsageError(`Cannot list the ${name} ${quoted(root)}: ${why}`);
    }
  }
  const nested = scans.from.nested ?? scans.to.nested;
  if (nested !== undefined) {
    const inside = scans.from.nested !== undefined ? `the ${toName} is` : `the ${fromName} is`;
    const host = scans.from.nested !== undefined ? fromName : toName;
    throw new UsageError(
      `Cannot mirror ${quoted(options.source)} into ${
        quoted(options.replica)
      }: ${inside} the folder ` +
        `${quoted(nested)} of the ${host} (a bind mount shows one folder twice)`,
    );
  }
  if (!options.restore && options.deletes && !options.allowEmptySource) {
    const { from, to } = scans;
    if (from.entries.size === 1 && from.problems.length === 0 && to.entries.size > 1) {
      throw new RefusedError(
        `Refusing to empty ${quoted(options.replica)}: the source ${
          quoted(options.source)
        } is empty ` +
          `(an unmounted disk looks like this). Pass --allow-empty-source if it is meant`,
      );
    }
  }
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

/** Hashes the files whose SHA-256 would change a decision and is not known yet. */
async function hashWhatMatters(
  pool: WorkerPool,
  input: {
    sides: RunSides;
    from: Scan;
    to: Scan;
    hashOptions: Pick<PlanOptions, "checksum" | "fromHashes" | "toHashes" | "moves">;
    options: Options;
    deps: RunDependencies;
  },
): Promise<void> {
  const { sides, from, to, options, deps: { report, control } } = input;
  const wanted = hashesNeeded(from, to, input.hashOptions);
  if (wanted.from.length + wanted.to.length === 0) return;
  control.progress = { ...idleProgress(), phase: "hashing" };
  const debugScan = options.verbosity >= 3;
  const sideList = [["from", from, sides.fromRoot], ["to", to, sides.toRoot]] as const;
  for (const [side, scan, root] of sideList) {
    const files = wanted[side].map((path) => ({ path, size: scan.entries.get(path)!.size }));
    const outcomes = await hashInPool(pool, root, files, (count, bytes) => {
      control.progress.done += count;
      control.progress.bytes += bytes;
    });
    for (const [path, outcome] of outcomes) {
      const entry = scan.entries.get(path)!;
      if (debugScan) {
        report.debug(`hash ${side === "from" ? "source" : "target"} ${displayPath(path)}`);
      }
      if ("error" in outcome) {
        report.error(`${displayPath(path)}: Cannot hash: ${outcome.error}`);
      } else if (outcome.result && sameSignature(outcome.result.signature, entry)) {
        // A file that changed since the scan stays unhashed: the plan then copies it.
        entry.hash = outcome.result.hash;
        entry.hashedAtMs = outcome.result.hashedAtMs;
      }
    }
  }
}

/** Plans the run, then applies `--max-delete` and the `--interactive` answer to the plan. */
function decide(
  options: Options,
  deps: RunDependencies,
  input: {
    from: Scan;
    to: Scan;
    hashOptions: Omit<PlanOptions, "owners" | "explain">;
  },
): { plan: Plan; heldBack: number; maxDeleteHit: boolean } {
  const { report } = deps;
  const { from, to } = input;
  let plan = planMirror(from, to, {
    ...input.hashOptions,
    owners: deps.isRoot,
    ...(options.verbosity >= 3
      ? {
        explain: (path: string, why: string) =>
          report.debug(`keep ${displayPath(path || ".")}: ${why}`),
      }
      : {}),
  });
  for (const problem of plan.blocked) {
    report.error(`${displayPath(problem.path)}: ${problem.message}`);
  }
  if (plan.extraneousLeft > 0) {
    report.debug(`${plan.extraneousLeft} extraneous entries kept: deletions are off`);
  }
  let heldBack = 0;
  let maxDeleteHit = false;
  const deletions = plan.actions.filter((a) => a.kind === "delete" || a.kind === "rmdir");
  if (options.maxDelete && deletions.length > 0) {
    const allowed = deleteAllowance(options.maxDelete, to.entries.size - 1);
    if (deletions.length > allowed) {
      const limit = "count" in options.maxDelete
        ? `${options.maxDelete.count}`
        : `${options.maxDelete.percent}% = ${allowed} of ${to.entries.size - 1} entries`;
      report.error(
        `Deleting nothing: this run would delete ${deletions.length} entries, more than ` +
          `--max-delete ${limit}; copying the rest. Check the source, then raise the limit ` +
          `or run once without it`,
      );
      ({ plan, heldBack } = holdBackDeletions(plan));
      maxDeleteHit = true;
    }
  }
  if (options.interactive && deletions.length > 0 && !options.dryRun && !maxDeleteHit) {
    const sample = deletions.slice(0, 10).map((a) => displayPath(a.path));
    if (!deps.confirmDeletes(deletions.length, sample)) {
      report.warn(
        `Kept ${deletions.length} entries that would have been deleted; copying the rest`,
      );
      ({ plan, heldBack } = holdBackDeletions(plan));
    }
  }
  return { plan, heldBack, maxDeleteHit };
}

/** A dry run: prints the plan on stdout and counts it. */
function printPlan(plan: Plan, trash: boolean): RunSummary {
  for (const action of plan.actions) {
    if (action.kind === "dirattrs") continue;
    const toTrash = trash && replacesData(action);
    writeStdout(`${describeAction(action)}${toTrash ? " (to trash)" : ""}\n`);
  }
  return countPlan(plan);
}

/** Applies the plan with the run's workers, then saves the record. */
async function execute(
  plan: Plan,
  input: {
    sides: RunSides;
    from: Scan;
    to: Scan;
    record: FileRecord;
    prepared: PreparedWrites;
    restore: boolean;
    sparse: boolean;
    deps: RunDependencies;
  },
): Promise<RunSummary> {
  const { sides, from, to, record, prepared, deps: { report, control, isRoot } } = input;
  let checkpointed = false;
  const checkpoint = (done: RecordChanges) => {
    const before = performance.now();
    try {
      expectIdentity(sides.replicaMeta.dir, prepared.metaIdentity!);
      saveRecord(sides.replicaMeta, nextRecord(record, { source: from, replica: to }, done));
      checkpointed = true;
    } catch (error) {
      report.warn(`Cannot save the record at a checkpoint: ${errorText(error)}`);
    }
    // Checkpoints take at most a twentieth of a run, however large the record.
    return Math.max(CHECKPOINT_MS, (performance.now() - before) * 20);
  };
  control.progress = {
    ...idleProgress(),
    phase: "copying",
    total: plan.actions.filter((a) => a.kind !== "dirattrs").length,
    totalBytes: plan.actions.reduce(
      (sum, a) => sum + (a.kind === "copy" || a.kind === "update" ? a.entry!.size : 0),
      0,
    ),
  };
  const result = await applyPlan(plan, {
    fromRoot: sides.fromRoot,
    toRoot: sides.toRoot,
    tempDir: prepared.tempDir,
    tempIdentity: prepared.tempIdentity,
    trashDir: prepared.trashDir,
    trashIdentity: prepared.trashIdentity,
    pool: control.pool!,
    guard: new FolderGuard(sides.toRoot, to),
    onStart: (action) => control.progress.current = action.path,
    onBytes: (bytes) => control.progress.bytes += bytes,
    owners: isRoot,
    sparse: input.sparse,
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
    ...(input.restore ? {} : { checkpoint }),
  });
  if (!input.restore) {
    const next = nextRecord(record, { source: from, replica: to }, result);
    if (checkpointed || !sameRecord(record, next)) {
      expectIdentity(sides.replicaMeta.dir, prepared.metaIdentity!);
      saveRecord(sides.replicaMeta, next);
    }
  }
  if (result.stopped) report.warn("Stopped before the end of the run; the record is saved");
  return result.summary;
}

/** Whether this process runs as root (owners are kept only then). */
export function isRunningAsRoot(): boolean {
  try {
    return Deno.uid() === 0;
  } catch {
    return false;
  }
}
