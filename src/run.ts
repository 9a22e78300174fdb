/**
 * One run, whole or over a scope, in this order: the checks that need no walk (`prepare.ts`)
 * and the lock; the root's walk opened, probed and its first listings checked; the record
 * read; the writes prepared (our folders, the trash purge waits for the end); each folder of
 * the scope walked in lock-step with the record, hashed, decided and acted on folder by folder
 * (`engine.ts`); the end of the run: moves, creations, the deletion gate, deletions, type
 * changes, folder attributes (planned in `endplan.ts`, run by `mirror.ts`); the expired trash
 * purged; the record saved; the summary. Every check that can refuse a run comes before its
 * first write.
 *
 * @module
 */

import { type RunControl } from "./control.ts";
import { type Options } from "./cli.ts";
import { emptyLeftovers, type EngineContext, type WalkLeftovers, walkPair } from "./engine.ts";
import { errorText } from "./errors.ts";
import { displayPath } from "./format.ts";
import { describeAction, idleProgress, type Reporter } from "./log.ts";
import { finishRun, type WalkSettings } from "./mirror.ts";
import { countingRows, folderInodeTest, saveNextRecord, settleRows } from "./runrecord.ts";
import { runSink } from "./runsink.ts";
import { foldersOfScope, scopeStart } from "./scope.ts";
import { type FolderRows, NextRecord } from "./nextrecord.ts";
import {
  checkBeforeRun,
  type PreparedWrites,
  prepareWrites,
  purgeExpiredTrash,
  refuseNested,
  refuseUnsafe,
  removeMadeFolders,
  type RunSides,
  takeLock,
} from "./prepare.ts";
import { type RecordSource } from "./recordfile.ts";
import { type Entry, type FolderListing } from "./scan.ts";
import { emptySummary, type RunSummary } from "./summary.ts";
import { bindMountProbeNeeded } from "./sides/local/checks.ts";
import { walkerStarts } from "./sides/local/stream.ts";
import { type FolderSource } from "./sides/reader.ts";
import { openTrees, type RunTrees } from "./sides/sides.ts";
import { WorkerPool } from "./sides/local/workers.ts";

export { takeLock } from "./prepare.ts";
export { newRunControl, requestStop, type RunControl } from "./control.ts";

/** What one run needs besides its options. */
export interface RunDependencies {
  /** Where the run's messages go. */
  report: Reporter;
  /** The stop flags, lock, progress and workers shared with the caller. */
  control: RunControl;
  /** Answers the `--interactive` question; true deletes. */
  confirmDeletes: (count: number, sample: string[]) => boolean | Promise<boolean>;
  /** Running as root: owners are compared and kept. */
  isRoot: boolean;
  /**
   * The run's trees, when one of them is on another host (default: both on this host,
   * `sides.ts` `openTrees`); the local checks then run for this host's tree only.
   */
  openTrees?: (pool: WorkerPool) => RunTrees;
}

/**
 * One run, whole or over `scope` (relative paths `--watch` saw change: each folder walked with
 * everything below it, against the replica's same folder and the record, the rest of the
 * record carried over; a folder gone from either tree is taken from its nearest folder that
 * both still have). A whole run is the scope of the root. The order, for both: the checks that
 * need no walk and the lock; the root's walk opened, probed and its first listings checked
 * (whole runs); the record read; the writes prepared; each folder of the scope walked in
 * lock-step, decided and acted on folder by folder; the end of the run; the record saved.
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
  const begun = beginRun(options, deps);
  const { started, sides, trees, writes, held } = begun;
  deps = begun.deps;
  const { control } = deps;
  try {
    // An existing lock file is taken now (taking it writes nothing); a first run makes it later.
    if (writes) takeLock(control, trees.store, options.restore ? "read" : "existing");
    const walk = await walkSettings(options, { sides, trees });
    // Every check that can refuse the run comes before its first write: the root's walk first.
    const root = scope === undefined
      ? await openRootWalk(options, { trees, walk, held, control })
      : null;
    if (root && await stopAsked(control)) return stoppedSummary(options, started);
    held.record = trees.store.openRecord((message) => deps.report.warn(message));
    // A scoped run reads the record again for the rows it carries over, quietly.
    if (!root) held.rest = trees.store.openRecord(() => {});
    if (writes) held.prepared = prepareWrites(options, trees, control);
    if (writes) announcePrepared({ root, trees, walk, held, report: deps.report });
    const toRootEntry = !root
      ? null
      : root.to.start ?? (writes ? await trees.to.entryAt("") : null);
    const run = startRun(options, { trees, deps, held, toRootEntry });
    const left = emptyLeftovers();
    if (root) {
      await walkRoot(root, { run, left, held, toRootEntry, writes: writes && !walk.toExists });
    } else {
      const folders = await foldersOfScope(scope!, { options, trees, walk, deps });
      await walkScope(folders, { run, left, held, trees, walk });
    }
    return await endRun(left, run, { options, deps, walk, trees, held, started });
  } finally {
    releaseRun(held, control);
  }
}

const NEW = { code: "new" } as const;

/** The root's walk of both trees, opened and checked before anything is written. */
interface RootWalk {
  /** The walk of the tree read. */
  from: FolderSource;
  /** The walk of the tree written (empty when it does not exist yet). */
  to: FolderSource;
  /** The roots' first listings. */
  roots: { from: FolderListing | null; to: FolderListing | null };
}

/**
 * Opens the walk of both roots (with the bind-mount probe when needed) and refuses trees one of
 * which holds the other's root, and roots that are not safe to mirror.
 */
async function openRootWalk(
  options: Options,
  input: {
    trees: RunTrees;
    walk: Awaited<ReturnType<typeof walkSettings>>;
    held: Held;
    control: RunControl;
  },
): Promise<RootWalk> {
  const { trees, walk, held } = input;
  const { filters, probe } = walk;
  const from = trees.from.walk({ starts: [""], filters, avoid: walk.avoid.from, probe });
  const to = trees.to.walk(
    walk.toExists ? { starts: [""], filters, avoid: walk.avoid.to, probe } : null,
  );
  held.streams.push(from, to);
  await refuseProbed(options, { from, to });
  input.control.progress = { ...idleProgress(), phase: "scanning" };
  const roots = { from: await from.peek(), to: await to.peek() };
  refuseUnsafe(options, roots);
  return { from, to, roots };
}

/**
 * Once the writes are prepared: the line for a replica root they made, and the mark of a
 * replica not adopted, set before any record is saved so that no later run takes the record for
 * adoption.
 */
function announcePrepared(
  input: {
    root: RootWalk | null;
    trees: RunTrees;
    walk: { toExists: boolean };
    held: Held;
    report: Reporter;
  },
): void {
  const { root, trees: { store }, walk, held } = input;
  if (!walk.toExists && root?.from.start) {
    // Made by prepareWrites: the same line as the dry run's, which counts it nowhere either.
    input.report.change(
      describeAction({ kind: "mkdir", path: "", reason: NEW, entry: root.from.start }),
    );
  }
  // A whole run marks a replica that holds entries; a scoped one, whenever it may delete.
  const mark = root ? held.notAdopted && store.holdsEntries() : held.unadopted;
  if (mark) store.markUnadopted();
}

/** Walks the whole of both trees from their roots, with the record. */
async function walkRoot(
  root: RootWalk,
  input: {
    run: { context: EngineContext };
    left: WalkLeftovers;
    held: Held;
    toRootEntry: Entry | null;
    /** Whether this run made the replica's root. */
    writes: boolean;
  },
): Promise<void> {
  const { run: { context }, left, held, toRootEntry } = input;
  const { from, to, roots } = root;
  context.control.progress.walking = true;
  if (toRootEntry === null && from.start) {
    // A dry run into a replica that does not exist yet: its root would be made first.
    await context.sink.apply({ kind: "mkdir", path: "", reason: NEW, entry: from.start });
  }
  const start = { folder: "", from: from.start, to: toRootEntry };
  const deferNew = context.moves && (roots.to?.entries.size ?? 0) > 0;
  const pair = { from, to, record: held.record!, start, deferNew, rows: "draft" as const };
  await walkPair(pair, context, left);
  context.control.progress.walking = false;
  reportSkipped(context.report, [from, to]);
  // A root this run made differs from the source's only as a new folder does: its attributes
  // are set, not listed, as the dry run shows it.
  if (input.writes) left.folderDiffers.delete("");
}

/** Walks each folder of a scope with everything below it, patching the record's rows. */
async function walkScope(
  folders: string[],
  input: {
    run: { context: EngineContext };
    left: WalkLeftovers;
    held: Held;
    trees: RunTrees;
    walk: WalkSettings;
  },
): Promise<void> {
  const { run: { context }, left, held, trees, walk } = input;
  const { filters } = walk;
  const record = countingRows(held.record!);
  for (const folder of folders) {
    if (context.stopped()) break;
    const from = trees.from.walk({ starts: [folder], filters, avoid: walk.avoid.from });
    const to = trees.to.walk({ starts: [folder], filters, avoid: walk.avoid.to });
    held.streams.push(from, to);
    const start = await scopeStart(folder, { trees, guardEntries: context.guardEntries });
    const deferNew = context.moves;
    await walkPair(
      { from, to, record: record.source, start, deferNew, rows: "patch" },
      context,
      left,
    );
  }
  // A `--max-delete` share is of the whole replica: the folders walked as found, the others
  // as the record has them.
  left.replicaEntries += Math.max(0, held.record!.rowCount - record.rowsRead());
}

/**
 * What waited for the walk, the trash purge, the record saved, and the run's summary.
 */
async function endRun(
  left: WalkLeftovers,
  run: { context: EngineContext; summary: () => RunSummary },
  input: {
    options: Options;
    deps: RunDependencies;
    walk: WalkSettings;
    trees: RunTrees;
    held: Held;
    started: number;
  },
): Promise<RunSummary> {
  const { options, deps, walk, trees, held } = input;
  const { control } = deps;
  const outcome = await finishRun(left, run.context, {
    gate: {
      maxDelete: options.maxDelete,
      asks: options.interactive,
      confirm: deps.confirmDeletes,
      unadopted: held.unadopted,
      replica: options.replica,
    },
    walk,
  });
  if (held.prepared && !outcome.maxDeleteHit && outcome.heldBack === 0) {
    purgeExpiredTrash(options, held.prepared, deps.report);
  }
  const summary = run.summary();
  if (held.next) {
    // A whole run stopped early, or a run over part of the tree: the old record's rows the
    // walk did not reach are carried over.
    const rest = held.rest?.blocks() ?? (control.stopRequested ? held.record!.blocks() : []);
    saveNextRecord(held.next, { store: trees.store, rest, report: deps.report });
  }
  if (control.stopRequested && held.prepared) {
    deps.report.warn("Stopped before the end of the run; the record is saved");
  } else if (held.prepared && !held.rest && held.mayAdopt && outcome.heldBack === 0) {
    // A whole run that deleted what the source lacks (or found nothing to delete), over the
    // whole replica or with --adopt: the replica matches the source, adopted from now on.
    trees.store.clearUnadopted();
  }
  // Every error line of the run is one failure, and only those are: the count and the lines
  // printed cannot disagree.
  summary.failed = held.errorLines();
  deps.report.debug(
    `cost: ${walkerStarts() - held.walkersBefore} walker workers started, ` +
      `${control.pool?.started ?? 0} copy and hash workers`,
  );
  summary.durationMs = Math.round(performance.now() - input.started);
  summary.deletionsHeldBack = outcome.heldBack;
  summary.maxDeleteHit = outcome.maxDeleteHit;
  summary.adoptNeeded = outcome.adoptNeeded ?? false;
  const wire = trees.wire?.();
  if (wire) Object.assign(summary, { bytesSent: wire.sent, bytesReceived: wire.received });
  return summary;
}

/** Lets go of what a run held, whatever happened: streams, record, workers, lock, our folders. */
function releaseRun(held: Held, control: RunControl): void {
  control.progress = idleProgress();
  control.pool?.close();
  control.pool = null;
  for (const stream of held.streams) stream.close();
  held.next?.close();
  held.record?.close();
  held.rest?.close();
  if (!control.keepLock) {
    control.lock?.release();
    control.lock = null;
  }
  // Restoring leaves the source as it was found: the folders of ours this run made there go
  // again, if empty. Nothing else there is ever removed.
  removeMadeFolders(held.prepared);
}

/**
 * The start of every run: the checks that need no walk, the workers, what it will hold, and
 * the run's reporter, which counts each error line it prints (see {@linkcode countingReporter}).
 */
function beginRun(
  options: Options,
  deps: RunDependencies,
): {
  started: number;
  sides: RunSides;
  trees: RunTrees;
  writes: boolean;
  held: Held;
  deps: RunDependencies;
} {
  const started = performance.now();
  const sides = checkBeforeRun(options);
  deps.control.pool = new WorkerPool(options.jobs);
  const trees = deps.openTrees?.(deps.control.pool) ?? openTrees(options, deps.control.pool);
  const counted = countingReporter(deps.report);
  const notAdopted = !options.restore && !options.adopt && !trees.store.isAdopted();
  const held: Held = {
    streams: [],
    record: null,
    rest: null,
    next: null,
    prepared: null,
    notAdopted,
    unadopted: notAdopted && !options.restore && options.deletes,
    // An excluded replica entry is never a deletion: only a run that saw everything (or was
    // told to) may take the mark away.
    mayAdopt: options.deletes && !options.restore &&
      (options.adopt || options.filters.length === 0),
    errorLines: counted.errorLines,
    walkersBefore: walkerStarts(),
  };
  return {
    started,
    sides,
    trees,
    writes: !options.dryRun,
    held,
    deps: { ...deps, report: counted.report },
  };
}

/**
 * A reporter whose every error line counts: the one way a run prints an error also counts it,
 * and the run's `failed` (so its exit code) is that count.
 */
export function countingReporter(report: Reporter): { report: Reporter; errorLines: () => number } {
  let lines = 0;
  return {
    report: {
      ...report,
      error: (text, error) => {
        lines++;
        report.error(text, error);
      },
    },
    errorLines: () => lines,
  };
}

/** What a run holds open, released at its end whatever happens. */
interface Held {
  streams: FolderSource[];
  record: RecordSource | null;
  /** A scoped run's second reading of the record: the rows it carries over. */
  rest: RecordSource | null;
  next: NextRecord | null;
  prepared: PreparedWrites | null;
  /** The replica is not adopted and `--adopt` was not given: a writing run marks it so. */
  notAdopted: boolean;
  /** Deletions are held back: not adopted, and this run would delete. */
  unadopted: boolean;
  /** A whole run that ends with nothing held back adopts the replica. */
  mayAdopt: boolean;
  /** Error lines the run printed so far: its failures. */
  errorLines: () => number;
  /** Walker workers started before this run, for its cost line. */
  walkersBefore: number;
}

/** How each tree is walked: the rules, and the other tree's root to stop at. */
async function walkSettings(
  options: Options,
  input: { sides: RunSides; trees: RunTrees },
): Promise<WalkSettings & { toExists: boolean; probe: boolean }> {
  const { sides, trees } = input;
  const fromRoot = (await trees.from.identity())!;
  const toRoot = await trees.to.identity();
  // Identities of two hosts say nothing of each other, and no mount holds both trees.
  const remote = options.remote !== undefined;
  return {
    filters: options.filters,
    avoid: remote ? { from: [], to: [] } : { from: toRoot ? [toRoot] : [], to: [fromRoot] },
    toExists: toRoot !== null,
    probe: !remote && bindMountProbeNeeded(sides, { from: fromRoot, to: toRoot }),
  };
}

/** Refuses trees one of which holds the other's root, as the walkers' probes found. */
async function refuseProbed(
  options: Options,
  streams: { from: FolderSource; to: FolderSource },
): Promise<void> {
  const [fromName, toName] = options.restore ? ["replica", "source"] : ["source", "replica"];
  const [inFrom, inTo] = await Promise.all([streams.from.probed(), streams.to.probed()]);
  if (inFrom !== null) refuseNested(options, { nestedIn: fromName, path: inFrom });
  if (inTo !== null) refuseNested(options, { nestedIn: toName, path: inTo });
}

/** How the planner decides every folder of a run. */
function planOptionsOf(
  options: Options,
  input: { report: Reporter; isRoot: boolean },
): EngineContext["planOptions"] {
  const { report, isRoot } = input;
  return {
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
  };
}

/** The applier or the printer, the engine's context, and the summary they keep. */
function startRun(
  options: Options,
  input: { trees: RunTrees; deps: RunDependencies; held: Held; toRootEntry: Entry | null },
): { context: EngineContext; summary: () => RunSummary } {
  const { trees, deps, held, toRootEntry } = input;
  const { report, control, isRoot } = deps;
  const guardEntries = new Map<string, Entry>();
  if (toRootEntry) guardEntries.set("", toRootEntry);
  const pendingRows = new Map<string, FolderRows>();
  if (held.prepared && !options.restore) {
    held.prepared.store.checkStillOurs();
    held.next = new NextRecord(held.prepared.store, {
      onFailure: (error) =>
        report.warn(
          `Cannot write the record: ${errorText(error)}; the next run rebuilds what it misses`,
        ),
    });
  }
  control.progress = { ...idleProgress(), phase: "copying" };
  const { sink, summary } = runSink(options, {
    from: trees.from,
    deps,
    prepared: held.prepared,
    guardEntries,
    onSettled: (action, outcome) => settleRows(action, outcome, { pendingRows, next: held.next }),
  });
  const context: EngineContext = {
    options,
    planOptions: planOptionsOf(options, { report, isRoot }),
    // A move takes a replica entry's name away: held back with the deletions.
    moves: !options.restore && options.deletes && !held.unadopted,
    mayBeMoved: folderInodeTest(trees.store),
    trees: { from: trees.from, to: trees.to },
    names: options.restore ? { from: "replica", to: "source" } : { from: "source", to: "replica" },
    report,
    sink,
    next: held.next,
    guardEntries,
    pendingRows,
    linkGroups: options.hardLinks ? new Map() : null,
    replicaLinks: options.hardLinks ? new Map() : null,
    control,
    stopped: () => control.stopRequested,
  };
  return { context, summary };
}

/** Warns of the special files the walks skipped. */
function reportSkipped(report: Reporter, streams: FolderSource[]): void {
  for (const stream of streams) {
    for (const problem of stream.skipped) {
      report.warn(`${displayPath(problem.path)}: ${problem.message}`);
    }
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

/** Whether this process runs as root (owners are kept only then). */
export function isRunningAsRoot(): boolean {
  try {
    return Deno.uid() === 0;
  } catch {
    return false;
  }
}
