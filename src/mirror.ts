/**
 * A streamed mirror from start to end: the main lock-step walk, then what waited for it, in
 * order: moves (new entries matched with the deletions), the new entries left, the deletions
 * (after the adoption guard, `--max-delete` and `-I`), the type changes that needed them, folder
 * attributes.
 *
 * @module
 */

import { type Applier } from "./apply.ts";
import {
  type ActionSink,
  type EngineContext,
  hashFiles,
  type PendingDeletion,
  type WalkLeftovers,
  walkPair,
  type WalkStart,
} from "./engine.ts";
import { counted, displayPath, quoted } from "./format.ts";
import { type RunProgress, writeStdout } from "./log.ts";
import { type FilterRule } from "./exclude.ts";
import { type Identity } from "./files.ts";
import { resignedRow } from "./nextrecord.ts";
import { compareWalkOrder } from "./order.ts";
import { baseName, isWithin, parentOf } from "./paths.ts";
import { type Action, deleteAllowance, folderAttrsAction } from "./plan.ts";
import { trustedHash } from "./record.ts";
import { emptyRecordSource, type RecordRow, type RecordSource } from "./recordfile.ts";
import { type Entry, type Scan, type Signature } from "./scan.ts";
import { FolderStream } from "./sides/local/stream.ts";
import { type WalkRequest } from "./sides/local/walk.ts";

/** How the end of a run may ask about deletions. */
export interface DeletionGate {
  /** `--max-delete`, if any. */
  maxDelete: Options["maxDelete"];
  /** Ask before deleting (`-I`): true deletes. */
  confirm: ((count: number, sample: string[]) => boolean) | null;
  /**
   * The replica is not adopted (no record, or an earlier run kept entries) and `--adopt` was
   * not given: every
   * deletion is held back, before `--max-delete` or `-I` is asked.
   */
  unadopted: boolean;
}

type Options = EngineContext["options"];

/** What the end of the run did with the deletions. */
export interface DeletionOutcome {
  heldBack: number;
  maxDeleteHit: boolean;
  /** True when the deletions were held back because the replica is not adopted (exit 3). */
  adoptNeeded?: boolean;
}

/** What a walk of one subtree needs to start: the walk settings of the run. */
export interface WalkSettings {
  filters: FilterRule[];
  /** Each tree's walk stops at the other's root. */
  avoid: { from: Identity[]; to: Identity[] };
}

/** Runs what waited for the main walk, in order. */
export async function finishRun(
  left: WalkLeftovers,
  context: EngineContext,
  input: { gate: DeletionGate; walk: WalkSettings; guardEntries: Map<string, Entry> },
): Promise<DeletionOutcome> {
  const { sink } = context;
  await sink.drain();
  if (context.stopped()) return { heldBack: 0, maxDeleteHit: false };
  const movedAway = new Set<string>();
  const movedHere = context.moves && left.deletions.length > 0 && left.newEntries.length > 0
    ? await placeMoves(left, context, { movedAway, ...input })
    : new Set<string>();
  const created = left.newEntries.map((pending) => pending.action)
    .filter((action) => !movedHere.has(action.path));
  await createWithSubtrees(created, context, { left, walk: input.walk });
  await sink.drain();
  await linkNames(left, context);
  const outcome = await deleteExtraneous(left, context, { gate: input.gate, movedAway });
  // Entries of another type that wait for a deletion held back are not made: nor are their
  // folders' attributes set.
  const notMade = new Set<string>();
  if (outcome.maxDeleteHit || outcome.heldBack > 0) {
    for (const action of left.afterDeletions) notMade.add(action.path);
  } else {
    const replacing: Action[] = [];
    for (const action of left.afterDeletions) {
      if (left.keptFolders.has(action.path)) {
        context.report.error(
          `${
            displayPath(action.path)
          }: Not replaced: the replica's folder holds entries that are excluded or unreadable`,
        );
        notMade.add(action.path);
        continue;
      }
      replacing.push(action);
    }
    await createWithSubtrees(replacing, context, { left, walk: input.walk });
  }
  await sink.drain();
  const folders = [...left.touchedFolders].filter(([path]) => !isWithin(path, notMade))
    .sort(([a], [b]) => compareWalkOrder(b, a));
  for (const [path, entry] of folders) {
    if (context.stopped()) break;
    await sink.apply(folderAttrsAction(path, entry, left.folderDiffers.get(path)));
  }
  await sink.drain();
  return outcome;
}

/**
 * Makes the later names of hard-linked source files hard links of their first name, now that
 * every copy is done, and records each name's file as it now is (a link changes the ctime).
 */
async function linkNames(left: WalkLeftovers, context: EngineContext): Promise<void> {
  const groups = context.linkGroups;
  if (!groups || left.hardLinks.length === 0) return;
  const firstNames = new Set<string>();
  for (const action of left.hardLinks) {
    if (context.stopped()) break;
    if (!await context.sink.apply(action)) break;
    firstNames.add(action.from!);
    recordLinked(action.path, action.from!, context);
  }
  for (const path of firstNames) recordLinked(path, path, context);
}

/** The record row of a name of a replica file, from its first name's row and a fresh `lstat`. */
function recordLinked(path: string, firstPath: string, context: EngineContext): void {
  if (!context.next) return;
  const group = [...context.linkGroups!.values()].find((g) => g.path === firstPath);
  const first = group?.rows?.get(baseName(firstPath));
  if (!first?.replica) return;
  let signature: Signature;
  try {
    const info = Deno.lstatSync(`${context.roots.to}/${path}`);
    signature = {
      size: info.size,
      mtimeMs: info.mtime?.getTime() ?? 0,
      ctimeMs: info.ctime?.getTime() ?? 0,
      ino: info.ino ?? 0,
    };
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
 * Creates new entries, then walks every new folder among them against nothing and fills it, in
 * one walk: a new folder costs what it costs in a fresh replica, not a walk of its own.
 */
async function createWithSubtrees(
  actions: Action[],
  context: EngineContext,
  input: { left: WalkLeftovers; walk: WalkSettings },
): Promise<void> {
  const folders: WalkStart[] = [];
  for (const action of actions) {
    if (context.stopped() || !await context.sink.apply(action)) break;
    if (action.kind === "mkdir") {
      folders.push({ folder: action.path, from: action.entry!, to: null });
    }
  }
  await walkSubtrees(folders, context, { ...input, record: emptyRecordSource() });
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
  const request = (
    root: string,
    input: { avoid: Identity[]; folders: string[] },
  ): Omit<WalkRequest, "taken"> => ({
    root,
    start: input.folders[0]!,
    starts: input.folders,
    filters: walk.filters,
    skipMetaDir: true,
    avoid: input.avoid,
  });
  const onReplica = starts.filter((start) => start.to !== null);
  // In the walk order of the names they are handed over at, each where it is now.
  const replicaSide = onReplica.map((start) => start.toFolder ?? start.folder);
  const renames = new Map(
    onReplica.filter((start) => start.toFolder !== undefined).map((start) => [
      start.toFolder!,
      start.folder,
    ]),
  );
  const from = new FolderStream(
    request(context.roots.from, { avoid: walk.avoid.from, folders: starts.map((s) => s.folder) }),
  );
  const to = replicaSide.length > 0
    ? new FolderStream(
      request(context.roots.to, { avoid: walk.avoid.to, folders: replicaSide }),
      renames,
    )
    : new FolderStream(null);
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

/**
 * Turns new entries into moves of extraneous replica entries: a folder whose source inode the
 * record remembers at the replica folder being deleted, a file with the same size and SHA-256.
 *
 * @returns The new paths placed by a move.
 */
async function placeMoves(
  left: WalkLeftovers,
  context: EngineContext,
  input: { movedAway: Set<string>; walk: WalkSettings; guardEntries: Map<string, Entry> },
): Promise<Set<string>> {
  const { movedAway, guardEntries } = input;
  const movedHere = new Set<string>();
  const goneFolders = new Map<number, PendingDeletion>();
  const goneFiles = new Map<number, PendingDeletion[]>();
  for (const deletion of left.deletions) {
    const { action, entry, known } = deletion;
    if (action.reason.code !== "not-in-source") continue;
    if (action.kind === "rmdir" && known?.source && !left.keptFolders.has(action.path)) {
      goneFolders.set(known.source.ino, deletion);
    } else if (action.kind === "delete" && entry.kind === "file") {
      const group = goneFiles.get(entry.size);
      if (group) group.push(deletion);
      else goneFiles.set(entry.size, [deletion]);
    }
  }
  const newFiles: Action[] = [];
  const moved: MovedFolders = { starts: [], rows: new Map() };
  for (const { action } of left.newEntries) {
    const entry = action.entry!;
    if (action.kind === "mkdir") {
      const gone = goneFolders.get(entry.ino);
      if (!gone || isWithin(gone.action.path, movedAway)) continue;
      if (!await moveFolder(action, gone, context, moved)) continue;
      movedAway.add(gone.action.path);
      movedHere.add(action.path);
    } else if (action.kind === "copy" && goneFiles.has(entry.size)) {
      newFiles.push(action);
    }
  }
  // Each moved folder is walked against the source to fix what differs inside, all at once.
  await walkSubtrees(moved.starts, context, {
    left,
    walk: input.walk,
    record: mapRecordSource(moved.rows),
  });
  // A file inside a folder moved above is at its new place already, not a candidate.
  for (const [size, group] of goneFiles) {
    const kept = group.filter((gone) => !isWithin(gone.action.path, movedAway));
    if (kept.length > 0) goneFiles.set(size, kept);
    else goneFiles.delete(size);
  }
  const sameSize = newFiles.filter((action) => goneFiles.has(action.entry!.size));
  if (sameSize.length === 0) return movedHere;
  await hashForMoves(sameSize, goneFiles, context);
  for (const action of sameSize) {
    const entry = action.entry!;
    if (entry.hash === undefined) continue;
    const candidates = (goneFiles.get(entry.size) ?? []).filter((gone) =>
      !isWithin(gone.action.path, movedAway) && gone.entry.hash === entry.hash
    );
    if (candidates.length === 0) continue;
    const sameName = candidates.find((gone) =>
      baseName(gone.action.path) === baseName(action.path)
    );
    const gone = sameName ?? candidates[0]!;
    guardEntries.set(gone.action.path, gone.entry);
    const move: Action = {
      kind: "move",
      path: action.path,
      from: gone.action.path,
      reason: { code: "same-content" },
      entry,
    };
    if (!await context.sink.apply(move)) break;
    movedAway.add(gone.action.path);
    movedHere.add(action.path);
    recordMove(context, { move, gone });
  }
  return movedHere;
}

/** The record after a file move: the old row goes, the new one keeps the replica's hash. */
function recordMove(
  context: EngineContext,
  input: { move: Action; gone: PendingDeletion },
): void {
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

/** Hashes the new files and the extraneous replica files of the same sizes. */
async function hashForMoves(
  newFiles: Action[],
  goneFiles: Map<number, PendingDeletion[]>,
  context: EngineContext,
): Promise<void> {
  const { pool, roots, report, options } = context;
  const debug = options.verbosity >= 3;
  const fromScan: Scan = { entries: new Map(), problems: [], protectedPaths: [] };
  const toScan: Scan = { entries: new Map(), problems: [], protectedPaths: [] };
  const sizes = new Set<number>();
  for (const action of newFiles) {
    fromScan.entries.set(action.path, action.entry!);
    sizes.add(action.entry!.size);
  }
  for (const size of sizes) {
    for (const gone of goneFiles.get(size) ?? []) {
      const known = gone.known?.replica;
      const trusted = known ? trustedHash(known, gone.entry) : null;
      if (trusted !== null) gone.entry.hash = trusted;
      else toScan.entries.set(gone.action.path, gone.entry);
    }
  }
  // A file that cannot be hashed here is no move: it is copied, and a copy that fails says so.
  const common = { pool, report, debug, failuresAreErrors: false };
  await hashFiles([...fromScan.entries.keys()], {
    ...common,
    scan: fromScan,
    root: roots.from,
    label: "source",
  });
  await hashFiles([...toScan.entries.keys()], {
    ...common,
    scan: toScan,
    root: roots.to,
    label: "target",
  });
}

/** Folders moved so far, to walk at the end of the moves, and their record rows by folder. */
interface MovedFolders {
  starts: WalkStart[];
  rows: Map<string, Map<string, RecordRow>>;
}

/**
 * Moves a replica folder to where the source's folder of the same inode now is, noting it in
 * `moved` to be walked against the source once all folders have moved.
 */
async function moveFolder(
  action: Action,
  gone: PendingDeletion,
  context: EngineContext,
  moved: MovedFolders,
): Promise<boolean> {
  const move: Action = {
    kind: "move",
    path: action.path,
    from: gone.action.path,
    reason: { code: "same-folder-tree" },
    entry: action.entry!,
  };
  const applier = context.sink.applier;
  if (!await context.sink.apply(move)) return false;
  if (applier === null) {
    // A dry run walks the folder where it is, under the name it would get, and so says what
    // the real run would change inside it.
    moved.starts.push({
      folder: action.path,
      from: action.entry!,
      to: gone.entry,
      toFolder: gone.action.path,
    });
    addMovedRows(moved.rows, gone, action.path);
    return true;
  }
  // A failed move leaves the new folder to be copied.
  if (!applier.result.movedFolders.has(action.path)) return false;
  context.next?.dropFolder(gone.action.path);
  moved.starts.push({ folder: action.path, from: action.entry!, to: gone.entry });
  addMovedRows(moved.rows, gone, action.path);
  return true;
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
 * Deletes what the source no longer has, deepest first, unless `--max-delete` or the `-I`
 * answer holds the deletions back; folders that hold entries left out stay.
 */
async function deleteExtraneous(
  left: WalkLeftovers,
  context: EngineContext,
  input: { gate: DeletionGate; movedAway: Set<string> },
): Promise<DeletionOutcome> {
  const { gate, movedAway } = input;
  const { report, options } = context;
  const keptReplaced = new Set(
    left.deletions.filter((d) =>
      d.action.reason.code === "replaced" && left.keptFolders.has(d.action.path)
    )
      .map((d) => d.action.path),
  );
  const deletions = left.deletions.filter(({ action }) =>
    !isWithin(action.path, movedAway) &&
    !(action.kind === "rmdir" && left.keptFolders.has(action.path)) &&
    !isWithin(action.path, keptReplaced)
  );
  if (deletions.length === 0) return { heldBack: 0, maxDeleteHit: false };
  if (gate.unadopted) return holdBackUnadopted(deletions, context);
  if (gate.maxDelete) {
    const allowed = deleteAllowance(gate.maxDelete, left.replicaEntries);
    if (deletions.length > allowed) {
      const limit = "count" in gate.maxDelete
        ? `${gate.maxDelete.count}`
        : `${gate.maxDelete.percent}% = ${allowed} of ${entries(left.replicaEntries)}`;
      report.error(
        `Deleting nothing: this run would delete ${entries(deletions.length)}, more than ` +
          `--max-delete ${limit}; copying the rest. Check the source, then raise the limit ` +
          `or run once without it`,
      );
      return { heldBack: deletions.length, maxDeleteHit: true };
    }
  }
  if (gate.confirm && !options.dryRun) {
    const sample = deletions.slice(0, 10).map((d) => displayPath(d.action.path));
    if (!gate.confirm(deletions.length, sample)) {
      report.warn(
        `Kept ${entries(deletions.length)} that would have been deleted; copying the rest`,
      );
      return { heldBack: deletions.length, maxDeleteHit: false };
    }
  }
  for (let i = deletions.length - 1; i >= 0; i--) {
    if (context.stopped()) break;
    const { action } = deletions[i]!;
    if (!await context.sink.apply(action)) break;
    if (context.next && context.sink.applier?.result.deleted.has(action.path)) {
      context.next.setRow(action.path, null);
    } else if (context.next && action.kind === "rmdir") {
      context.next.dropFolder(action.path);
    }
  }
  return { heldBack: 0, maxDeleteHit: false };
}

/**
 * Keeps every entry the replica has and the source lacks, since the replica was never
 * treesync's (rsync's `treesync SRC DEST/` habit would otherwise wipe DEST's other data): each
 * one listed (on stdout in a dry run, at `-v` otherwise), and one line saying how to mirror.
 */
function holdBackUnadopted(
  deletions: PendingDeletion[],
  context: EngineContext,
): DeletionOutcome {
  const { report, options } = context;
  for (const { action } of deletions) {
    const line = `keep ${displayPath(action.path)}${action.kind === "rmdir" ? "/" : ""}`;
    if (options.dryRun) writeStdout(`${line} (not deleted: --adopt deletes it)\n`);
    else report.change(line);
  }
  report.error(
    `Deleting nothing: ${quoted(options.replica)} is not a treesync replica yet (no record, or ` +
      `an earlier run kept its entries): kept the ${entries(deletions.length)} the source ` +
      `lacks, copied the rest; give --adopt to mirror over it and delete them`,
  );
  return { heldBack: deletions.length, maxDeleteHit: false, adoptNeeded: true };
}

function entries(count: number): string {
  return counted(count, "entry", "entries");
}

/** The parent folder of a path (re-exported for the run). */
export const folderOf = parentOf;

/** The sink of a writing run: actions go to the applier, and count in the progress totals. */
export function applySink(applier: Applier, control: { progress: RunProgress }): ActionSink {
  return {
    applier,
    apply: (action) => {
      if (action.kind !== "dirattrs") control.progress.total++;
      if (action.kind === "copy" || action.kind === "update") {
        control.progress.totalBytes += action.entry!.size;
      }
      return applier.apply(action);
    },
    drain: () => applier.drain(),
  };
}
