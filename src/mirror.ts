/**
 * The end of a run, executed: what waited for the main walk, as `endplan.ts` plans it, each step
 * run in order through the run's sink (the same for a dry run and a real one), with the walks
 * of moved and new folders, the hashing for move matching and the record kept up to date.
 *
 * @module
 */

import { type Applier } from "./apply.ts";
import {
  type ArrivalStep,
  type GateSettings,
  type GateVerdict,
  type MoveHashes,
  moveHashesNeeded,
  planArrivals,
  planFolderAttributes,
  type PlannedMove,
  planSettling,
  type SettlingStep,
} from "./endplan.ts";
import {
  type EngineContext,
  hashFiles,
  type PendingDeletion,
  type WalkLeftovers,
  walkPair,
  type WalkStart,
} from "./engine.ts";
import { displayPath } from "./format.ts";
import { printPlanned } from "./log.ts";
import { type FilterRule } from "./exclude.ts";
import { type Identity } from "./files.ts";
import { resignedRow } from "./nextrecord.ts";
import { compareWalkOrder } from "./order.ts";
import { baseName } from "./paths.ts";
import { type Action } from "./plan.ts";
import { emptyRecordSource, type RecordRow, type RecordSource } from "./recordfile.ts";
import { type Entry, type Scan, type Signature, signatureOf } from "./scan.ts";

/** What the end of the run did with the deletions. */
export interface DeletionOutcome {
  /** Deletions held back (by the gate, or a declined `-I`). */
  heldBack: number;
  /** True when `--max-delete` held them back. */
  maxDeleteHit: boolean;
  /** True when the deletions were held back because the replica is not adopted (exit 3). */
  adoptNeeded?: boolean;
}

/** What a walk of one subtree needs to start: the walk settings of the run. */
export interface WalkSettings {
  /** The exclude rules. */
  filters: FilterRule[];
  /** Each tree's walk stops at the other's root. */
  avoid: { from: Identity[]; to: Identity[] };
}

/** How the end of a run deletes: the gate's settings, and the `-I` question. */
export interface DeletionGate extends GateSettings {
  /** Asks before deleting (`-I`): true deletes (a pushed run asks its near end). */
  confirm: (count: number, sample: string[]) => boolean | Promise<boolean>;
}

/** What the executor has done so far, for the steps after. */
interface EndState {
  /** Replica paths moved elsewhere. */
  movedAway: Set<string>;
  /** New paths placed by a move. */
  movedHere: Set<string>;
  /** Moved folders, to be walked against the source. */
  moved: MovedFolders;
  /** Folders made, to be walked against nothing. */
  made: Set<string>;
  /** False once an action was refused (a stop was asked): nothing more is applied. */
  going: boolean;
  /** First names of hard-linked files linked to, not recorded yet. */
  firstNames: Set<string>;
  /** True once the `-I` answer kept the deletions. */
  declined: boolean;
  outcome: DeletionOutcome;
}

/** Runs what waited for the main walk, in the order `endplan.ts` plans it. */
export async function finishRun(
  left: WalkLeftovers,
  context: EngineContext,
  input: { gate: DeletionGate; walk: WalkSettings },
): Promise<DeletionOutcome> {
  const { sink } = context;
  await sink.drain();
  const state: EndState = {
    movedAway: new Set(),
    movedHere: new Set(),
    moved: { starts: [], rows: new Map() },
    made: new Set(),
    firstNames: new Set(),
    going: true,
    declined: false,
    outcome: { heldBack: 0, maxDeleteHit: false },
  };
  if (context.stopped()) return state.outcome;
  const moves = context.moves && left.deletions.length > 0 && left.newEntries.length > 0;
  const hashes = moves ? await hashForMoves(left, context) : { from: new Map(), to: new Map() };
  for (const step of planArrivals(left, { moves, hashes })) {
    await runArrival(step, { left, context, state, walk: input.walk });
  }
  await sink.drain();
  const gate = { ...input.gate, asks: input.gate.asks && !context.options.dryRun };
  const settling = planSettling(left, { gate, movedAway: state.movedAway });
  for (const step of settling) {
    // Each first name is recorded once all its other names are links of it (a link changes
    // its ctime).
    if (step.kind !== "hardlink") await recordFirstNames(state, context);
    if (step.ifConfirmed && state.declined) continue;
    await runSettling(step, { left, context, state, walk: input.walk, gate: input.gate });
  }
  await sink.drain();
  return state.outcome;
}

/** Applies one action unless a stop came: false once nothing more is applied. */
async function applyStep(
  action: Action,
  context: EngineContext,
  state: EndState,
): Promise<boolean> {
  if (!state.going || context.stopped()) return state.going = false;
  return state.going = await context.sink.apply(action);
}

/** Runs one step of the first half: a move, a creation, or the walk of moved or new folders. */
async function runArrival(
  step: ArrivalStep,
  input: { left: WalkLeftovers; context: EngineContext; state: EndState; walk: WalkSettings },
): Promise<void> {
  const { left, context, state, walk } = input;
  switch (step.kind) {
    case "move-folder":
      if (state.going && await moveFolder(step, context, state.moved)) {
        state.movedAway.add(step.gone.action.path);
        state.movedHere.add(step.move.path);
      }
      return;
    case "walk-moved": {
      // Each moved folder is walked against the source to fix what differs inside, all at once.
      const record = mapRecordSource(state.moved.rows);
      return await walkSubtrees(state.moved.starts, context, { left, walk, record });
    }
    case "move-file":
      context.guardEntries.set(step.gone.action.path, step.gone.entry);
      if (!await applyStep(step.move, context, state)) return;
      state.movedAway.add(step.gone.action.path);
      state.movedHere.add(step.move.path);
      return recordMove(context, step);
    case "create":
      if (step.unlessMoved && state.movedHere.has(step.action.path)) return;
      if (await applyStep(step.action, context, state) && step.action.kind === "mkdir") {
        state.made.add(step.action.path);
      }
      return;
    case "walk-new":
      return await walkMade(step.folders, { left, context, state, walk });
  }
}

/**
 * Walks the folders made (of `folders`) against nothing and fills them, in one walk: a new
 * folder costs what it costs in a fresh replica, not a walk of its own.
 */
async function walkMade(
  folders: string[],
  input: { left: WalkLeftovers; context: EngineContext; state: EndState; walk: WalkSettings },
): Promise<void> {
  const { left, context, state, walk } = input;
  const entries = new Map(
    [...left.newEntries.map(({ action }) => action), ...left.afterDeletions]
      .map((action) => [action.path, action.entry!]),
  );
  const starts: WalkStart[] = folders.filter((folder) => state.made.has(folder))
    .map((folder) => ({ folder, from: entries.get(folder)!, to: null }));
  await walkSubtrees(starts, context, { left, walk, record: emptyRecordSource() });
  await context.sink.drain();
}

/**
 * Runs one step of the second half: a hard link, the gate's verdict, a deletion, a type change,
 * the walk of the folders it made, folder attributes.
 */
async function runSettling(
  step: SettlingStep,
  input: {
    left: WalkLeftovers;
    context: EngineContext;
    state: EndState;
    walk: WalkSettings;
    gate: DeletionGate;
  },
): Promise<void> {
  const { context, state } = input;
  switch (step.kind) {
    case "hardlink":
      if (!context.linkGroups || !await applyStep(step.action, context, state)) return;
      state.firstNames.add(step.action.from!);
      return await recordLinked(step.action.path, step.action.from!, context);
    case "gate":
      return await settleGate(step.verdict, { context, state, gate: input.gate });
    case "delete":
      return await deleteOne(step.deletion, context, state);
    case "not-replaced":
      return context.report.error(`${displayPath(step.path)}: ${step.message}`);
    case "replace":
      if (await applyStep(step.action, context, state) && step.action.kind === "mkdir") {
        state.made.add(step.action.path);
      }
      return;
    case "walk-new":
      return await walkMade(step.folders, input);
    case "attributes":
      for (const attrs of planFolderAttributes(input.left, step.later)) {
        if (attrs.ifConfirmed && state.declined) continue;
        await runSettling(attrs, input);
      }
      return;
    case "folder-attrs":
      // Attributes are set even after a refused action, until a stop.
      if (context.stopped()) return;
      await context.sink.apply(step.action);
  }
}
/** Records the first names linked to so far, as they now are. */
async function recordFirstNames(state: EndState, context: EngineContext): Promise<void> {
  for (const path of state.firstNames) await recordLinked(path, path, context);
  state.firstNames.clear();
}

/** The record row of a name of a replica file, from its first name's row and a fresh `lstat`. */
async function recordLinked(
  path: string,
  firstPath: string,
  context: EngineContext,
): Promise<void> {
  if (!context.next) return;
  const group = [...context.linkGroups!.values()].find((g) => g.path === firstPath);
  const first = group?.rows?.get(baseName(firstPath));
  if (!first?.replica) return;
  let signature: Signature;
  try {
    const entry = await context.trees.to.entryAt(path);
    if (entry === null) return;
    signature = signatureOf(entry);
  } catch {
    return;
  }
  const row: RecordRow = {
    ...first,
    name: baseName(path),
    replica: { ...first.replica, ...signature },
  };
  context.next.setRow(path, row);
}

/**
 * Walks subtrees of the source (and of the replica, for those with a replica side: moved
 * folders) at the end of a run, all in one pair of walks.
 */
async function walkSubtrees(
  starts: WalkStart[],
  context: EngineContext,
  input: { left: WalkLeftovers; walk: WalkSettings; record: RecordSource },
): Promise<void> {
  if (starts.length === 0 || context.stopped()) return;
  const { walk, left } = input;
  starts = [...starts].sort((a, b) => compareWalkOrder(a.folder, b.folder));
  const onReplica = starts.filter((start) => start.to !== null);
  // In the walk order of the names they are handed over at, each where it is now.
  const replicaSide = onReplica.map((start) => start.toFolder ?? start.folder);
  const renames = new Map(
    onReplica.filter((start) => start.toFolder !== undefined).map((start) => [
      start.toFolder!,
      start.folder,
    ]),
  );
  const { trees } = context;
  const { filters } = walk;
  const from = trees.from.walk({
    starts: starts.map((start) => start.folder),
    filters,
    avoid: walk.avoid.from,
  });
  const to = trees.to.walk(
    replicaSide.length > 0 ? { starts: replicaSide, filters, avoid: walk.avoid.to, renames } : null,
  );
  try {
    // A dry run reads the files of a folder it would move where they are.
    const locateTo = (path: string) => {
      for (const [now, name] of renames) {
        if (path === name || path.startsWith(`${name}/`)) return now + path.slice(name.length);
      }
      return path;
    };
    await walkPair(
      { from, to, record: input.record, start: starts, deferNew: false, rows: "patch" },
      renames.size > 0 ? { ...context, locateTo } : context,
      left,
    );
    await context.sink.drain();
  } finally {
    from.close();
    to.close();
  }
}

/** The record after a file move: the old row goes, the new one keeps the replica's hash. */
function recordMove(context: EngineContext, input: PlannedMove): void {
  const { next, sink } = context;
  if (!next) return;
  const { move, gone } = input;
  const entry = move.entry!;
  const applier: Applier | null = sink.applier;
  const signature = applier?.result.resigned.get(move.path);
  applier?.result.resigned.delete(move.path);
  next.setRow(gone.action.path, null);
  const replica = {
    size: gone.entry.size,
    mtimeMs: gone.entry.mtimeMs,
    ctimeMs: gone.entry.ctimeMs,
    ino: gone.entry.ino,
    hash: gone.entry.hash ?? null,
    hashedAtMs: gone.entry.hashedAtMs ?? 0,
  };
  const row: RecordRow = {
    name: baseName(move.path),
    kind: "file",
    source: {
      size: entry.size,
      mtimeMs: entry.mtimeMs,
      ctimeMs: entry.ctimeMs,
      ino: entry.ino,
      hash: entry.hash ?? null,
      hashedAtMs: entry.hashedAtMs ?? 0,
    },
    replica,
  };
  next.setRow(move.path, signature ? resignedRow(row, signature) : row);
}

/** Folders moved so far, to walk at the end of the moves, and their record rows by folder. */
interface MovedFolders {
  starts: WalkStart[];
  rows: Map<string, Map<string, RecordRow>>;
}

/** Adds the record rows of a moved folder's subtree to `blocks`, under its new path. */
function addMovedRows(
  blocks: Map<string, Map<string, RecordRow>>,
  gone: PendingDeletion,
  newPath: string,
): void {
  const oldPath = gone.action.path;
  for (const [folder, rows] of gone.stash ?? []) {
    blocks.set(newPath + folder.slice(oldPath.length), rows);
  }
}

/** A record source over rows held in memory, by folder. */
export function mapRecordSource(blocks: Map<string, Map<string, RecordRow>>): RecordSource {
  const source: RecordSource = {
    corrupt: false,
    rowCount: [...blocks.values()].reduce((sum, rows) => sum + rows.size, 0),
    rowsOf: (folder) => blocks.get(folder) ?? new Map(),
    *blocks() {
      const folders = [...blocks.keys()].sort(compareWalkOrder);
      for (const folder of folders) yield { folder, rows: [...blocks.get(folder)!.values()] };
    },
    close: () => {},
  };
  return source;
}

/**
 * Hashes what move matching needs (see {@linkcode moveHashesNeeded}): the hashes go on the
 * entries, for the record, and come back by path, for the planner.
 */
async function hashForMoves(left: WalkLeftovers, context: EngineContext): Promise<MoveHashes> {
  const { trees, names, report, options } = context;
  const needs = moveHashesNeeded(left);
  const scan = (entries: Map<string, Entry>): Scan => ({
    entries,
    problems: [],
    protectedPaths: [],
  });
  const fromScan = scan(needs.from);
  const toScan = scan(needs.to);
  for (const deletion of left.deletions) {
    const trusted = needs.trusted.get(deletion.action.path);
    if (trusted !== undefined && deletion.action.kind === "delete") deletion.entry.hash = trusted;
  }
  // A file that cannot be hashed here is no move: it is copied, and a copy that fails says so.
  const common = { report, debug: options.verbosity >= 3, failuresAreErrors: false };
  const sides = [[fromScan, trees.from, names.from], [toScan, trees.to, names.to]] as const;
  for (const [scan, tree, label] of sides) {
    if (scan.entries.size === 0) continue;
    await hashFiles([...scan.entries.keys()], { ...common, scan, tree, label });
  }
  const hashes: MoveHashes = { from: new Map(), to: new Map(needs.trusted) };
  for (const [path, entry] of needs.from) if (entry.hash) hashes.from.set(path, entry.hash);
  for (const [path, entry] of needs.to) if (entry.hash) hashes.to.set(path, entry.hash);
  return hashes;
}

/** Folders moved so far, to walk at the end of the moves, and their record rows by folder. */
interface MovedFolders {
  starts: WalkStart[];
  rows: Map<string, Map<string, RecordRow>>;
}

/**
 * Moves a replica folder to where the source's folder of the same inode now is, noting it in
 * `moved` to be walked against the source once all folders have moved.
 *
 * @returns Whether it moved (a dry run: would move); a failed move leaves it to be copied.
 */
async function moveFolder(
  planned: PlannedMove,
  context: EngineContext,
  moved: MovedFolders,
): Promise<boolean> {
  const { move, gone } = planned;
  const applier = context.sink.applier;
  if (context.stopped() || !await context.sink.apply(move)) return false;
  if (applier === null) {
    // A dry run walks the folder where it is, under the name it would get, and so says what
    // the real run would change inside it.
    moved.starts.push({
      folder: move.path,
      from: move.entry!,
      to: gone.entry,
      toFolder: gone.action.path,
    });
    addMovedRows(moved.rows, gone, move.path);
    return true;
  }
  if (!applier.result.movedFolders.has(move.path)) return false;
  context.next?.dropFolder(gone.action.path);
  moved.starts.push({ folder: move.path, from: move.entry!, to: gone.entry });
  addMovedRows(moved.rows, gone, move.path);
  return true;
}

/** Says what the gate decided, asks the `-I` question, and keeps the outcome. */
async function settleGate(
  verdict: GateVerdict,
  input: { context: EngineContext; state: EndState; gate: DeletionGate },
): Promise<void> {
  const { context: { report, options }, state } = input;
  switch (verdict.kind) {
    case "unadopted":
      // Each entry kept is listed (on stdout in a dry run, at `-v` otherwise), in the same words.
      for (const path of verdict.kept) {
        const line = `keep ${path} (not deleted: --adopt deletes it)`;
        if (options.dryRun) printPlanned(report, line);
        else report.change(line);
      }
      report.error(verdict.message);
      state.outcome = { heldBack: verdict.count, maxDeleteHit: false, adoptNeeded: true };
      return;
    case "max-delete":
      report.error(verdict.message);
      state.outcome = { heldBack: verdict.count, maxDeleteHit: true };
      return;
    case "ask":
      if (await input.gate.confirm(verdict.count, verdict.sample)) return;
      report.warn(verdict.declined);
      state.declined = true;
      state.outcome = { heldBack: verdict.count, maxDeleteHit: false };
  }
}

/** Deletes one entry, and takes it out of the next record. */
async function deleteOne(
  deletion: PendingDeletion,
  context: EngineContext,
  state: EndState,
): Promise<void> {
  const { action } = deletion;
  if (!await applyStep(action, context, state)) return;
  if (context.next && context.sink.applier?.result.deleted.has(action.path)) {
    context.next.setRow(action.path, null);
  } else if (context.next && action.kind === "rmdir") {
    context.next.dropFolder(action.path);
  }
}
