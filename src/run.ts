/**
 * One run as named phases: check, scan, refuse, prepare, hash, decide, execute. Every check that
 * can refuse a run comes before its first write.
 *
 * @module
 */

import { Applier, type ApplyContext, type CopyOutcome, FolderGuard } from "./apply.ts";
import { type Options } from "./cli.ts";
import {
  type ActionSink,
  emptyLeftovers,
  type EngineContext,
  type WalkLeftovers,
  walkPair,
} from "./engine.ts";
import { errorText } from "./errors.ts";
import { expectIdentity, type Identity, identityOf, pathExists } from "./files.ts";
import { displayPath } from "./format.ts";
import {
  describeAction,
  idleProgress,
  isListed,
  type Reporter,
  type RunProgress,
  writeStdout,
} from "./log.ts";
import {
  checkOwn,
  clearUnadopted,
  holdsEntries,
  isAdopted,
  markUnadopted,
  type MetaPaths,
  type ReplicaLock,
} from "./meta.ts";
import { applySink, finishRun, type WalkSettings } from "./mirror.ts";
import { copiedRow, type FolderRows, NextRecord } from "./nextrecord.ts";
import {
  bindMountProbeNeeded,
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
import { compareWalkOrder } from "./order.ts";
import { ancestors, baseName, isWithin, parentOf } from "./paths.ts";
import { type Action, reasonText, replacesData } from "./plan.ts";
import { openAnyRecord, type RecordRow, type RecordSource } from "./recordfile.ts";
import { type Entry, entryFromStat } from "./scan.ts";
import { countAction, emptySummary, type RunSummary } from "./summary.ts";
import { FolderStream, walkerStarts, type WalkRequest } from "./walk.ts";
import { widenForLinks } from "./linkscope.ts";
import { WorkerPool } from "./workers.ts";

export { takeLock } from "./prepare.ts";

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
  const begun = beginRun(options, deps);
  const { started, sides, writes, held } = begun;
  deps = begun.deps;
  const { control } = deps;
  try {
    // An existing lock file is taken now (taking it writes nothing); a first run makes it later.
    if (writes) takeLock(control, sides.replicaMeta, options.restore ? "read" : "existing");
    const walk = walkSettings(options, sides);
    const request = (root: string, avoid: Identity[]) => ({
      ...walkRequest(root, walk.filters, avoid),
      probe: walk.probe,
    });
    const from = new FolderStream(request(sides.fromRoot, walk.avoid.from));
    const to = walk.toExists
      ? new FolderStream(request(sides.toRoot, walk.avoid.to))
      : new FolderStream(null);
    held.streams.push(from, to);
    await refuseProbed(options, { from, to });
    control.progress = { ...idleProgress(), phase: "scanning" };
    const roots = { from: await from.peek(), to: await to.peek() };
    refuseUnsafe(options, roots);
    if (await stopAsked(control)) return stoppedSummary(options, started);
    held.record = openRecordSource(sides.replicaMeta, deps.report);
    if (writes) held.prepared = prepareWrites(options, sides, control);
    if (writes && !walk.toExists && from.start) {
      // Made by prepareWrites: the same line as the dry run's, which counts it nowhere either.
      deps.report.change(
        describeAction({ kind: "mkdir", path: "", reason: NEW, entry: from.start }),
      );
    }
    // Marked before any record is saved, so that no later run takes the record for adoption.
    if (writes && held.notAdopted && holdsEntries(sides.toRoot)) markUnadopted(sides.replicaMeta);
    const toRootEntry = to.start ??
      (writes ? entryFromStat(Deno.statSync(sides.toRoot)) : null);
    const run = startRun(options, { sides, deps, held, toRootEntry });
    const left = emptyLeftovers();
    const deferNew = run.context.moves && (roots.to?.entries.size ?? 0) > 0;
    control.progress.walking = true;
    if (toRootEntry === null && from.start) {
      // A dry run into a replica that does not exist yet: its root would be made first.
      await run.context.sink.apply({ kind: "mkdir", path: "", reason: NEW, entry: from.start });
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
    // A root this run made differs from the source's only as a new folder does: its attributes
    // are set, not listed, as the dry run shows it.
    if (writes && !walk.toExists) left.folderDiffers.delete("");
    return await endRun(left, run, { options, deps, walk, sides, held, started });
  } finally {
    releaseRun(held, control);
  }
}

const NEW = { code: "new" } as const;

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
  const begun = beginRun(options, deps);
  const { started, sides, writes, held } = begun;
  deps = begun.deps;
  const { control } = deps;
  try {
    if (writes) takeLock(control, sides.replicaMeta, options.restore ? "read" : "existing");
    const walk = walkSettings(options, sides);
    held.record = openRecordSource(sides.replicaMeta, deps.report);
    const record = countingRows(held.record);
    held.rest = openRecordSource(sides.replicaMeta, { ...deps.report, warn: () => {} });
    if (writes) held.prepared = prepareWrites(options, sides, control);
    if (writes && held.unadopted) markUnadopted(sides.replicaMeta);
    const run = startRun(options, { sides, deps, held, toRootEntry: null });
    const left = emptyLeftovers();
    for (const folder of await foldersOfScope(scope, { options, sides, walk, deps })) {
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
      // The guard checks a change from inside its folder up to the root: it knows them all.
      for (const above of ancestors(folder)) {
        if (run.context.guardEntries.has(above)) continue;
        const path = above === "" ? sides.toRoot : `${sides.toRoot}/${above}`;
        run.context.guardEntries.set(
          above,
          entryFromStat(above === "" ? Deno.statSync(path) : Deno.lstatSync(path)),
        );
      }
      const fromEntry = entryFromStat(
        folder === ""
          ? Deno.statSync(sides.fromRoot)
          : Deno.lstatSync(`${sides.fromRoot}/${folder}`),
      );
      await walkPair(
        {
          from,
          to,
          record: record.source,
          start: { folder, from: fromEntry, to: toEntry },
          deferNew: run.context.moves,
          rows: "patch",
        },
        run.context,
        left,
      );
    }
    // A `--max-delete` share is of the whole replica: the folders walked as found, the others
    // as the record has them.
    left.replicaEntries += Math.max(0, held.record.rowCount - record.rowsRead());
    return await endRun(left, run, { options, deps, walk, sides, held, started });
  } finally {
    releaseRun(held, control);
  }
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
    sides: RunSides;
    held: Held;
    started: number;
  },
): Promise<RunSummary> {
  const { options, deps, walk, sides, held } = input;
  const { control } = deps;
  const outcome = await finishRun(left, run.context, {
    gate: {
      maxDelete: options.maxDelete,
      confirm: options.interactive ? deps.confirmDeletes : null,
      unadopted: held.unadopted,
    },
    walk,
    guardEntries: run.context.guardEntries,
  });
  if (held.prepared && !outcome.maxDeleteHit && outcome.heldBack === 0) {
    purgeExpiredTrash(options, sides, deps.report);
  }
  const summary = run.summary();
  if (held.next) {
    // A whole run stopped early, or a run over part of the tree: the old record's rows the
    // walk did not reach are carried over.
    const rest = held.rest?.blocks() ?? (control.stopRequested ? held.record!.blocks() : []);
    saveNextRecord(held, { sides, rest, report: deps.report });
  }
  if (control.stopRequested && held.prepared) {
    deps.report.warn("Stopped before the end of the run; the record is saved");
  } else if (held.prepared && !held.rest && held.mayAdopt && outcome.heldBack === 0) {
    // A whole run that deleted what the source lacks (or found nothing to delete), over the
    // whole replica or with --adopt: the replica matches the source, adopted from now on.
    clearUnadopted(sides.replicaMeta);
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
  removeMadeFolders(held.prepared?.madeHere ?? []);
}

/**
 * The folders a scoped run walks: the scope's, and with `--hard-links` those holding other
 * names of its hard-linked files (said at `-vv`).
 */
async function foldersOfScope(
  scope: string[],
  input: { options: Options; sides: RunSides; walk: WalkSettings; deps: RunDependencies },
): Promise<string[]> {
  const { options, sides, walk, deps } = input;
  const folders = scopeFolders(scope, sides);
  if (!options.hardLinks) return folders;
  const widened = await widenForLinks(scope, {
    roots: { from: sides.fromRoot, to: sides.toRoot },
    filters: walk.filters,
    avoid: walk.avoid,
    openRecord: () => openRecordSource(sides.replicaMeta, { ...deps.report, warn: () => {} }),
    normalize: (folders) => scopeFolders(folders, sides),
  });
  const added = widened.filter((folder) => !folders.includes(folder));
  if (added.length > 0) {
    deps.report.debug(
      `watch run: also ${added.map((folder) => displayPath(folder || ".")).join(", ")} ` +
        `(other names of hard-linked files)`,
    );
  }
  return widened;
}

/**
 * The record as a scoped run's walks read it, counting the rows of the folders they ask for:
 * the rest of its rows are the replica's entries outside the scope.
 */
function countingRows(record: RecordSource): { source: RecordSource; rowsRead: () => number } {
  let rows = 0;
  let last: string | null = null;
  const source: RecordSource = {
    get corrupt() {
      return record.corrupt;
    },
    get rowCount() {
      return record.rowCount;
    },
    rowsOf: (folder) => {
      const found = record.rowsOf(folder);
      if (folder !== last) rows += found.size;
      last = folder;
      return found;
    },
    blocks: () => record.blocks(),
    close: () => record.close(),
  };
  return { source, rowsRead: () => rows };
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

/**
 * The start of every run: the checks that need no walk, the workers, what it will hold, and
 * the run's reporter, which counts each error line it prints (see {@linkcode countingReporter}).
 */
function beginRun(
  options: Options,
  deps: RunDependencies,
): { started: number; sides: RunSides; writes: boolean; held: Held; deps: RunDependencies } {
  const started = performance.now();
  const sides = checkBeforeRun(options);
  deps.control.pool = new WorkerPool(options.jobs);
  const counted = countingReporter(deps.report);
  const notAdopted = !options.restore && !options.adopt && !isAdopted(sides.replicaMeta);
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
  streams: FolderStream[];
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
function walkSettings(
  options: Options,
  sides: RunSides,
): WalkSettings & { toExists: boolean; probe: boolean } {
  const fromRoot = identityOf(sides.fromRoot)!;
  const toRoot = identityOf(sides.toRoot);
  return {
    filters: options.filters,
    avoid: { from: toRoot ? [toRoot] : [], to: [fromRoot] },
    toExists: toRoot !== null,
    probe: bindMountProbeNeeded(sides, { from: fromRoot, to: toRoot }),
  };
}

/** Refuses trees one of which holds the other's root, as the walkers' probes found. */
async function refuseProbed(
  options: Options,
  streams: { from: FolderStream; to: FolderStream },
): Promise<void> {
  const [fromName, toName] = options.restore ? ["replica", "source"] : ["source", "replica"];
  const [inFrom, inTo] = await Promise.all([streams.from.probed(), streams.to.probed()]);
  if (inFrom !== null) refuseNested(options, { nestedIn: fromName, path: inFrom });
  if (inTo !== null) refuseNested(options, { nestedIn: toName, path: inTo });
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
  return openAnyRecord(meta, (message) => report.warn(message));
}

/**
 * Whether the record knows a folder of a source inode, anywhere: a new folder that it does not
 * know cannot be a replica folder moved. The record's folder inodes are read on the first
 * question, once a run (a run that meets no new folder beside old ones never asks).
 */
function folderInodeTest(meta: MetaPaths): (entry: Entry) => boolean {
  let inodes: Set<number> | null = null;
  return (entry) => {
    if (inodes === null) {
      inodes = new Set();
      const quiet: Reporter = {
        change() {},
        debug() {},
        warn() {},
        error() {},
        summary() {},
        fileOnly() {},
        runEnd() {},
      };
      const record = openRecordSource(meta, quiet);
      try {
        for (const { rows } of record.blocks()) {
          for (const row of rows) if (row.kind === "dir" && row.source) inodes.add(row.source.ino);
        }
      } finally {
        record.close();
      }
    }
    return inodes.has(entry.ino);
  };
}

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
    // A move takes a replica entry's name away: held back with the deletions.
    moves: !options.restore && options.deletes && !held.unadopted,
    mayBeMoved: folderInodeTest(sides.replicaMeta),
    roots: { from: sides.fromRoot, to: sides.toRoot },
    pool: control.pool!,
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
      if (isListed(action)) report.change(describeAction(action));
      else report.debug(describeAction(action));
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
      if (isListed(action)) {
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
