/**
 * The streamed mirror: both trees walked folder by folder in lock-step with the record, each
 * folder decided with the plan's rules and acted on at once. What can only be decided once the
 * whole tree is seen waits, as compact lists that grow with the change and not with the tree:
 * deletions (last, after `--max-delete` and `-I`), new entries that may be moves (matched
 * against the deletions), type changes (after the deletions they need), folder attributes.
 *
 * @module
 */

import { type Applier } from "./apply.ts";
import { type Options } from "./cli.ts";
import { displayPath, quoted } from "./format.ts";
import { idleProgress, type Reporter, type RunProgress } from "./log.ts";
import { hashesNeeded } from "./needs.ts";
import { type FolderRows, type NextRecord, resignedRow, rowFor } from "./nextrecord.ts";
import { UsageError } from "./errors.ts";
import { lockStep } from "./order.ts";
import { isWithin, parentOf } from "./paths.ts";
import {
  type Action,
  type Difference,
  mergeDifferences,
  planMirror,
  type PlanOptions,
  type Reason,
} from "./plan.ts";
import { type RecordMap } from "./record.ts";
import { type RecordRow, type RecordSource } from "./recordfile.ts";
import { type Entry, type FolderListing, type Problem, type Scan } from "./scan.ts";
import { type FolderStream } from "./walk.ts";
import { hashInPool, type WorkerPool } from "./workers.ts";

/** An entry the walk found extraneous: deleted at the end, unless it moves or is kept. */
export interface PendingDeletion {
  action: Action;
  /** The replica's entry as walked. */
  entry: Entry;
  /** What the record knew of it. */
  known?: RecordRow;
  /** For a folder: the record's rows of its subtree, by folder, while few enough to hold. */
  stash?: Map<string, Map<string, RecordRow>>;
}

/** A new source entry kept back until the deletions are known: it may be a move. */
export interface PendingNew {
  action: Action;
}

/** What a streamed run does with each decided action: apply it, or print it (dry run). */
export interface ActionSink {
  /** Applies or prints one action; false once a stop was asked. */
  apply(action: Action): Promise<boolean>;
  /** Waits for copies in flight. */
  drain(): Promise<void>;
  /** The applier, when writing. */
  readonly applier: Applier | null;
}

/** Everything a streamed run works with. */
export interface EngineContext {
  options: Options;
  /** The planner's options for every folder (moves are the engine's own). */
  planOptions: Omit<PlanOptions, "fromHashes" | "toHashes">;
  /** Whether moves are looked for (mirroring with deletions). */
  moves: boolean;
  /**
   * Whether a new source folder may be a replica folder moved: the record knows a folder of its
   * source inode somewhere. Only those wait for the end of the run; any other is made and
   * filled in the walk that found it.
   */
  mayBeMoved: (entry: Entry) => boolean;
  roots: { from: string; to: string };
  /**
   * Where a replica path is now, when a dry run walks a folder it would move under the name it
   * would get: its files are read where they are.
   */
  locateTo?: (path: string) => string;
  pool: WorkerPool;
  report: Reporter;
  sink: ActionSink;
  /** The next record, when this run writes one. */
  next: NextRecord | null;
  /** The replica's folders (and the entries being changed) the folder guard checks against. */
  guardEntries: Map<string, Entry>;
  /** Folders whose copies are in flight: their rows wait for them. */
  pendingRows: Map<string, FolderRows>;
  /** With `--hard-links`: the first name of each source file with several, by inode. */
  linkGroups: Map<string, LinkGroup> | null;
  /**
   * With `--hard-links`: each replica file with several names met, by `dev:ino`, and the
   * source group its first name met keeps it for (`dev:ino` of the source file, or `one:PATH`
   * for a source file with one name). A later name of it from another group is split off.
   */
  replicaLinks: Map<string, string> | null;
  /** Where the progress line reads how far the run has come. */
  control: { progress: RunProgress };
  /** True once a stop was asked. */
  stopped: () => boolean;
}

/** The first name this run met of a source file with several names (`--hard-links`). */
export interface LinkGroup {
  /** Its path. */
  path: string;
  /** The replica file's inode there, unless this run copies it afresh. */
  replicaIno: number | null;
  /** Its folder's record rows (its row is final once its copy is back). */
  rows: Map<string, RecordRow> | null;
}

/** What the walk of a pair of trees leaves for the end of the run. */
export interface WalkLeftovers {
  deletions: PendingDeletion[];
  /** Replica folders that must stay: they hold entries left out (excluded, unreadable). */
  keptFolders: Set<string>;
  /** New source entries that may be moves, in walk order. */
  newEntries: PendingNew[];
  /** Creations that must wait for a deletion (a type change), in walk order. */
  afterDeletions: Action[];
  /** Names to make hard links of their first name, once every copy is done. */
  hardLinks: Action[];
  /** Folders whose attributes are set last, by path. */
  touchedFolders: Map<string, Entry>;
  /** Of those, what differed from the source's before the run (those are listed). */
  folderDiffers: Map<string, Difference[]>;
  /** Replica entries walked (for a `--max-delete` percentage). */
  replicaEntries: number;
}

/** A fresh set of leftovers. */
export function emptyLeftovers(): WalkLeftovers {
  return {
    deletions: [],
    keptFolders: new Set(),
    newEntries: [],
    afterDeletions: [],
    hardLinks: [],
    touchedFolders: new Map(),
    folderDiffers: new Map(),
    replicaEntries: 0,
  };
}

/** Rows of folders being deleted kept at most, for moves (a few hundred bytes each). */
const STASH_ROWS = 200_000;

/** One pair of walks merged in lock-step, from a start folder down. */
export interface WalkPair {
  from: FolderStream;
  to: FolderStream;
  record: RecordSource;
  /**
   * The start folder's entries on each side (a missing side: the other's stands in); several
   * for a walk over several subtrees (in walk order, none inside another).
   */
  start: WalkStart | WalkStart[];
  /** New entries wait for the end (they may be moves); false once the end has come. */
  deferNew: boolean;
  /** Folder rows go into the draft (the main walk) or are patched in (the end's walks). */
  rows: "draft" | "patch";
}

/** A folder a walk starts at, and its entry on each side. */
export interface WalkStart {
  folder: string;
  from: Entry | null;
  to: Entry | null;
  /**
   * Where the replica's side of `folder` is now, when it is still elsewhere: a folder a dry run
   * would move, walked where it is and listed under the name it would get.
   */
  toFolder?: string;
}

/**
 * Walks a pair of trees in lock-step and decides and acts folder by folder, leaving what must
 * wait in `left`.
 */
export async function walkPair(
  pair: WalkPair,
  context: EngineContext,
  left: WalkLeftovers,
): Promise<void> {
  const walk = new MirrorWalk(pair, context, left);
  const folders = lockStep(
    { left: () => pair.from.next(), right: () => pair.to.next() },
    { left: (listing) => listing.folder, right: (listing) => listing.folder },
  );
  // What `status` shows of the walk (the progress object is swapped while hashing: keep this one).
  const progress = context.control.progress;
  for await (const { left: from, right: to } of folders) {
    if (context.stopped()) break;
    progress.walked = (progress.walked ?? 0) + (from?.entries.size ?? 0);
    await walk.visit(from, to);
  }
}

/** The lock-step walk's state: folder entries seen by their parent, folders not to enter. */
class MirrorWalk {
  readonly #pair: WalkPair;
  readonly #context: EngineContext;
  readonly #left: WalkLeftovers;
  /** Folders listed by their parent and not visited yet: their own entries. */
  readonly #folders = new Map<string, { from?: Entry; to?: Entry }>();
  /** Source folders not entered now: kept back (new, may move), or left as they are. */
  readonly #skipFrom = new Set<string>();
  /** Replica folders not entered: a type change left as it is. */
  readonly #skipTo = new Set<string>();
  /** Replica folders removed for another type: what is inside goes as "inside-replaced". */
  readonly #replaced = new Set<string>();
  /** Replica folders to be deleted, by path. */
  readonly #deletedFolders = new Map<string, PendingDeletion>();
  /** Record rows stashed with deletions so far. */
  #stashed = 0;
  /** Whether a folder whose entries all match may skip the planner (see `folderUnchanged`). */
  readonly #fastPath: boolean;
  readonly #owners: boolean;

  constructor(pair: WalkPair, context: EngineContext, left: WalkLeftovers) {
    this.#pair = pair;
    this.#context = context;
    this.#left = left;
    const { planOptions } = context;
    // Checksums, restores and -vv explanations go through the planner for every entry.
    this.#fastPath = !planOptions.checksum && !planOptions.restore && !planOptions.explain;
    this.#owners = planOptions.owners;
    for (const { folder, from, to } of [pair.start].flat()) {
      this.#folders.set(folder, {
        ...(from ? { from } : {}),
        ...(to ? { to } : {}),
      });
    }
  }

  /** Decides and acts on one folder: its listing on either side, or both. */
  async visit(from: FolderListing | null, to: FolderListing | null): Promise<void> {
    const folder = (from ?? to)!.folder;
    const self = this.#folders.get(folder);
    this.#folders.delete(folder);
    if (from && (isWithin(folder, this.#skipFrom) || !self?.from)) from = null;
    if (to && (isWithin(folder, this.#skipTo) || !self?.to)) to = null;
    if (!from && !to) return;
    const nested = from?.nested ?? to?.nested;
    if (nested !== undefined) {
      throw new UsageError(
        `Stopped: ${quoted(nested)} is the other tree's root (a bind mount shows one folder ` +
          `twice); nothing more is changed`,
      );
    }
    if (to) this.#left.replicaEntries += to.entries.size;
    this.#noteProblems(from, to);
    const known = this.#pair.record.rowsOf(folder);
    const fastPath = this.#fastPath &&
      !(this.#context.linkGroups && (hasLinkedFiles(from) || hasLinkedFiles(to)));
    if (
      from && to && fastPath && folderUnchanged(from, to, { known, owners: this.#owners })
    ) {
      this.#passUnchanged(folder, { from, to, known });
      return;
    }
    if (!from && to) this.#stash(folder, known);
    const scans = this.#scans(folder, { from, to, self: self! });
    const hashes = this.#recordMaps(folder, known);
    await this.#hashWhatMatters(scans, hashes);
    const { planOptions, report } = this.#context;
    const plan = planMirror(scans.from, scans.to, {
      ...planOptions,
      ...hashes,
    });
    for (const problem of plan.blocked) {
      report.error(`${displayPath(problem.path)}: ${problem.message}`);
    }
    const rows = this.#rows(folder, scans, known);
    for (const [name, entry] of from?.entries ?? []) {
      if (entry.kind === "dir") this.#seeFolder(joinPath(folder, name), "from", entry);
    }
    const { guardEntries } = this.#context;
    for (const [name, entry] of to?.entries ?? []) {
      const path = joinPath(folder, name);
      // The guard checks each change against what the walk saw: folders for as long as the
      // run lasts, this folder's files while it is decided.
      guardEntries.set(path, entry);
      if (entry.kind === "dir") this.#seeFolder(path, "to", entry);
    }
    // A folder the source does not have gets no attributes: it is going.
    let actions = from ? plan.actions : plan.actions.filter((a) => a.kind !== "dirattrs");
    if (this.#context.linkGroups && from) {
      actions = this.#linkNames(actions, { folder, scans, rows });
    }
    await this.#route(actions, { folder, scans, rows, known, replicaSide: to !== null });
    for (const [name, entry] of to?.entries ?? []) {
      if (entry.kind !== "dir") guardEntries.delete(joinPath(folder, name));
    }
  }

  /**
   * A folder that needs nothing: its subfolders are noted for their visits and the guard, its
   * rows carried over as the record had them.
   */
  #passUnchanged(
    folder: string,
    input: { from: FolderListing; to: FolderListing; known: Map<string, RecordRow> },
  ): void {
    const { from, to, known } = input;
    for (const [name, entry] of from.entries) {
      if (entry.kind === "dir") this.#seeFolder(joinPath(folder, name), "from", entry);
    }
    for (const [name, entry] of to.entries) {
      if (entry.kind !== "dir") continue;
      const path = joinPath(folder, name);
      this.#context.guardEntries.set(path, entry);
      this.#seeFolder(path, "to", entry);
    }
    const next = this.#context.next;
    if (next && known.size > 0) {
      const rows = { folder, rows: known, pending: 0 };
      if (this.#pair.rows === "patch") next.setFolder(folder, known);
      else next.add(rows);
    }
  }

  /**
   * Keeps the record's rows of a folder being deleted with the deletion of its topmost folder:
   * should that folder turn out moved, its files need no reading. Held up to a limit.
   */
  #stash(folder: string, known: Map<string, RecordRow>): void {
    if (known.size === 0 || this.#stashed + known.size > STASH_ROWS) return;
    let top: PendingDeletion | undefined;
    for (let path = folder;; path = parentOf(path)) {
      top = this.#deletedFolders.get(path) ?? top;
      if (path === "") break;
    }
    if (!top) return;
    top.stash ??= new Map();
    top.stash.set(folder, known);
    this.#stashed += known.size;
  }

  #seeFolder(path: string, side: "from" | "to", entry: Entry): void {
    const seen = this.#folders.get(path);
    if (seen) seen[side] = entry;
    else this.#folders.set(path, { [side]: entry });
  }

  /**
   * With `--hard-links`: the first name met of each source file with several names is mirrored
   * as planned; every later name becomes a hard link to it, unless it already is one. A replica
   * file with several names is kept by the group of the first of them met; any other name of it
   * (a source file in another group, or with one name) is copied afresh, split off from it.
   *
   * @returns The actions left for this folder, splits added.
   */
  #linkNames(
    actions: Action[],
    input: {
      folder: string;
      scans: { from: Scan; to: Scan };
      rows: Map<string, RecordRow> | null;
    },
  ): Action[] {
    const { folder, scans, rows } = input;
    const groups = this.#context.linkGroups!;
    const linksBefore = this.#left.hardLinks.length;
    const linked = new Set<string>();
    const splits: Action[] = [];
    for (const [path, source] of scans.from.entries) {
      if (source.kind !== "file") continue;
      const key = (source.nlink ?? 1) > 1 ? `${source.dev}:${source.ino}` : null;
      const target = scans.to.entries.get(path);
      const group = key === null ? undefined : groups.get(key);
      if (group) {
        if (target && target.kind !== "file") continue; // a type change: mirrored as planned
        linked.add(path);
        if (group.replicaIno !== null && target?.ino === group.replicaIno) continue;
        this.#left.hardLinks.push({
          kind: "hardlink",
          path,
          from: group.path,
          reason: { code: "hard-linked" },
          entry: source,
        });
        continue;
      }
      let copied = actions.some((a) =>
        a.path === path && (a.kind === "copy" || a.kind === "update")
      );
      if (!copied && target && this.#splitOff(target, key ?? `one:${path}`)) {
        splits.push({
          kind: "update",
          path,
          reason: { code: "hard-links-split" },
          entry: source,
          // Linked in the replica to a name it is not linked to in the source.
          differs: ["links"],
        });
        copied = true;
      }
      if (key === null) continue;
      groups.set(key, { path, replicaIno: copied ? null : target?.ino ?? null, rows });
    }
    if (splits.length > 0 || this.#left.hardLinks.length > linksBefore) {
      // A name renamed into this folder (a link, a fresh copy) changes its mtime: set it last.
      this.#left.touchedFolders.set(folder, scans.from.entries.get(folder)!);
    }
    const kept = linked.size === 0 ? actions : actions.filter((a) => !linked.has(a.path));
    return splits.length === 0 ? kept : [...kept, ...splits];
  }

  /**
   * Whether a replica file with several names must be split off for the source group `owner`:
   * another group keeps it. The first group met keeps it.
   */
  #splitOff(target: Entry, owner: string): boolean {
    if (target.kind !== "file" || (target.nlink ?? 1) < 2) return false;
    const claims = this.#context.replicaLinks!;
    const replicaKey = `${target.dev}:${target.ino}`;
    const keeper = claims.get(replicaKey);
    if (keeper === undefined) claims.set(replicaKey, owner);
    return keeper !== undefined && keeper !== owner;
  }

  /** Reports what the listings could not read; excluded replica entries keep their folders. */
  #noteProblems(from: FolderListing | null, to: FolderListing | null): void {
    const { report } = this.#context;
    for (const listing of [from, to]) {
      for (const problem of listing?.problems ?? []) {
        if (problem.path === "") continue; // a root that cannot be listed refused the run
        report.error(`${displayPath(problem.path)}: ${problem.message}`);
      }
    }
    if (to && to.protectedPaths.length > 0) {
      // Deleting or replacing a folder above what is left out would cost that data.
      for (let path = to.folder;; path = parentOf(path)) {
        this.#left.keptFolders.add(path);
        if (path === "") break;
      }
    }
  }

  /** The folder and its entries on both sides as two small scans the planner reads. */
  #scans(
    folder: string,
    sides: {
      from: FolderListing | null;
      to: FolderListing | null;
      self: { from?: Entry; to?: Entry };
    },
  ): { from: Scan; to: Scan } {
    const { from, to, self } = sides;
    // A side without this folder gets the other's entry: the folder itself is the parent's
    // business, and planned there.
    const scan = (listing: FolderListing | null, own: Entry): Scan => {
      const entries = new Map<string, Entry>([[folder, { ...own }]]);
      for (const [name, entry] of listing?.entries ?? []) {
        entries.set(joinPath(folder, name), entry);
      }
      return {
        entries,
        problems: listing?.problems ?? [],
        protectedPaths: listing?.protectedPaths ?? [],
      };
    };
    const fromSelf = self.from ?? self.to!;
    const toSelf = self.to ?? self.from!;
    return { from: scan(from, fromSelf), to: scan(to, toSelf) };
  }

  /** What the record knows of this folder's files, by path, on the side each tree is. */
  #recordMaps(
    folder: string,
    known: Map<string, RecordRow>,
  ): { fromHashes: RecordMap; toHashes: RecordMap } {
    const source: RecordMap = new Map();
    const replica: RecordMap = new Map();
    for (const [name, row] of known) {
      if (row.kind !== "file") continue;
      const path = joinPath(folder, name);
      if (row.source) source.set(path, row.source);
      if (row.replica) replica.set(path, row.replica);
    }
    // Restoring reads the replica and writes the source.
    return this.#context.planOptions.restore
      ? { fromHashes: replica, toHashes: source }
      : { fromHashes: source, toHashes: replica };
  }

  /** Hashes the files of this folder whose SHA-256 would change a decision. */
  async #hashWhatMatters(
    scans: { from: Scan; to: Scan },
    hashes: { fromHashes: RecordMap; toHashes: RecordMap },
  ): Promise<void> {
    const { planOptions, pool, roots, report, options } = this.#context;
    const wanted = hashesNeeded(scans.from, scans.to, {
      ...hashes,
      checksum: planOptions.checksum,
      overwriteNewer: planOptions.overwriteNewer ?? false,
      deletes: planOptions.deletes,
      restore: planOptions.restore ?? false,
    });
    if (wanted.from.length + wanted.to.length === 0) return;
    const { control } = this.#context;
    const copying = control.progress;
    const hashing = { ...idleProgress(), phase: "hashing" as const };
    control.progress = hashing;
    try {
      for (const side of ["from", "to"] as const) {
        if (wanted[side].length === 0) continue;
        await hashFiles(wanted[side], {
          scan: scans[side],
          root: roots[side],
          ...(side === "to" && this.#context.locateTo ? { locate: this.#context.locateTo } : {}),
          pool,
          report,
          label: side === "from" ? "source" : "target",
          debug: options.verbosity >= 3,
          onBatch: (files, bytes) => {
            hashing.done += files;
            hashing.bytes += bytes;
          },
        });
      }
    } finally {
      control.progress = copying;
    }
  }

  /** This folder's record rows as the walk found them; actions update them as they finish. */
  #rows(
    folder: string,
    scans: { from: Scan; to: Scan },
    known: Map<string, RecordRow>,
  ): Map<string, RecordRow> | null {
    if (this.#context.next === null) return null;
    const rows = new Map<string, RecordRow>();
    const names = new Set<string>();
    for (const scan of [scans.from, scans.to]) {
      for (const path of scan.entries.keys()) if (path !== folder) names.add(baseOf(path));
    }
    for (const name of names) {
      const path = joinPath(folder, name);
      const row = rowFor(name, {
        source: scans.from.entries.get(path),
        replica: scans.to.entries.get(path),
        known: known.get(name),
      });
      if (row) rows.set(name, row);
    }
    return rows;
  }

  /** Sends each action where it belongs: done now, or kept for the end of the run. */
  async #route(
    actions: Action[],
    state: {
      folder: string;
      scans: { from: Scan; to: Scan };
      rows: Map<string, RecordRow> | null;
      known: Map<string, RecordRow>;
      /** Whether the replica has this folder (it is not being made in this walk). */
      replicaSide: boolean;
    },
  ): Promise<void> {
    const { folder, scans, rows, known } = state;
    const { sink, next, pendingRows, moves, mayBeMoved } = this.#context;
    const copies: FolderRows = { folder, rows: rows ?? new Map(), pending: 0 };
    if (rows) pendingRows.set(folder, copies);
    // New files wait beside existing ones only: in a folder made in this walk they are copied
    // now. A new folder that may be a moved one waits wherever it is.
    const deferFolders = this.#pair.deferNew && moves;
    const deferFiles = deferFolders && state.replicaSide;
    for (const action of actions) {
      if (action.path === folder && action.kind !== "dirattrs") continue;
      const route = routeOf(action, { deferFiles, deferFolders, mayBeMoved });
      if (route !== "now") {
        this.#keep(route, action, { scans, known });
        continue;
      }
      if (action.kind === "copy" || action.kind === "update") copies.pending++;
      if (!await sink.apply(action)) break;
      if (action.kind === "attrs" && rows) this.#resigned(action.path, rows);
    }
    this.#skipLeftTypeChanges(scans);
    if (!next || !rows) return;
    if (copies.pending === 0) pendingRows.delete(folder);
    if (this.#pair.rows === "patch") next.setFolder(folder, copies.rows);
    else next.add(copies);
  }

  /** Keeps an action for the end of the run, in the list it belongs to. */
  #keep(
    route: "delete" | "later" | "new" | "touch",
    action: Action,
    state: { scans: { from: Scan; to: Scan }; known: Map<string, RecordRow> },
  ): void {
    const left = this.#left;
    switch (route) {
      case "touch": {
        left.touchedFolders.set(action.path, action.entry!);
        // The parent's visit and the folder's own both compare it: one list of the two.
        const seen = left.folderDiffers.get(action.path) ?? [];
        const differs = mergeDifferences(seen, action.differs ?? []);
        if (differs.length > 0) left.folderDiffers.set(action.path, differs);
        return;
      }
      case "delete": {
        const entry = state.scans.to.entries.get(action.path)!;
        const reason: Reason = isWithin(action.path, this.#replaced, { below: true })
          ? { code: "inside-replaced" }
          : action.reason;
        const deletion: PendingDeletion = { action: { ...action, reason }, entry };
        const known = state.known.get(baseOf(action.path));
        if (known) deletion.known = known;
        left.deletions.push(deletion);
        if (action.kind === "rmdir") this.#deletedFolders.set(action.path, deletion);
        if (action.reason.code === "replaced" && action.kind === "rmdir") {
          this.#replaced.add(action.path);
        }
        return;
      }
      case "later":
        left.afterDeletions.push(action);
        if (action.kind === "mkdir") this.#skipFrom.add(action.path);
        return;
      case "new":
        left.newEntries.push({ action });
        if (action.kind === "mkdir") this.#skipFrom.add(action.path);
    }
  }

  /** A file's row after its attributes were set: the replica's new signature. */
  #resigned(path: string, rows: Map<string, RecordRow>): void {
    const applier = this.#context.sink.applier;
    const signature = applier?.result.resigned.get(path);
    if (!signature) return;
    applier!.result.resigned.delete(path);
    const name = baseOf(path);
    const row = rows.get(name);
    if (row) rows.set(name, resignedRow(row, signature));
  }

  /** A type change left as it is: neither side of it is entered. */
  #skipLeftTypeChanges(scans: { from: Scan; to: Scan }): void {
    for (const [path, entry] of scans.from.entries) {
      const other = scans.to.entries.get(path);
      if (!other || other.kind === entry.kind) continue;
      if (entry.kind === "dir") this.#skipFrom.add(path);
      if (other.kind === "dir" && !this.#replaced.has(path)) this.#skipTo.add(path);
    }
  }
}

/**
 * Whether a folder needs nothing at all, so that the planner may be skipped: the same names on
 * both sides, each the same kind, size, mtime, mode (and owner, when kept) or link target, and
 * a record that vouches for every file on both sides as it is now and holds exactly these
 * entries, so its rows carry over unchanged. Anything else goes through the planner. Pure.
 */
export function folderUnchanged(
  from: FolderListing,
  to: FolderListing,
  input: { known: Map<string, RecordRow>; owners: boolean },
): boolean {
  const { known, owners } = input;
  if (from.entries.size !== to.entries.size || from.problems.length + to.problems.length > 0) {
    return false;
  }
  // Listings and rows are all in name order: stepping through them together replaces two
  // lookups an entry (a list in another order only sends the folder to the planner).
  const targets = to.entries.entries();
  const rows = known.values();
  let recorded = 0;
  for (const [name, source] of from.entries) {
    const [targetName, target] = targets.next().value!;
    if (targetName !== name || target.kind !== source.kind || target.mode !== source.mode) {
      return false;
    }
    if (owners && (target.uid !== source.uid || target.gid !== source.gid)) return false;
    if (source.kind === "symlink") {
      if (source.target !== target.target) return false;
      continue;
    }
    if (source.mtimeMs !== target.mtimeMs) return false;
    const row: RecordRow | undefined = rows.next().value;
    if (row === undefined || row.name !== name) return false;
    recorded++;
    if (source.kind === "dir") {
      if (row.kind !== "dir" || row.source?.ino !== source.ino || row.replica?.ino !== target.ino) {
        return false;
      }
      continue;
    }
    if (row.kind !== "file" || !row.source || !row.replica || row.replica.hash === null) {
      return false;
    }
    if (!sameSig(row.source, source) || !sameSig(row.replica, target)) return false;
    if (source.size !== target.size) return false;
  }
  return recorded === known.size;
}

/** Whether a listing has files with several names (their group is decided name by name). */
function hasLinkedFiles(listing: FolderListing | null): boolean {
  for (const entry of listing?.entries.values() ?? []) {
    if (entry.kind === "file" && (entry.nlink ?? 1) > 1) return true;
  }
  return false;
}

/**
 * Where an action goes: now, at the end (and which list), or the folder attributes. A new file
 * waits with `deferFiles` (it may be a replica file moved); a new folder waits with
 * `deferFolders` if `mayBeMoved` says it may be a replica folder moved; any other new folder is
 * made now, and filled in this walk.
 */
function routeOf(
  action: Action,
  input: { deferFiles: boolean; deferFolders: boolean; mayBeMoved: (entry: Entry) => boolean },
): "now" | "delete" | "later" | "new" | "touch" {
  switch (action.kind) {
    case "dirattrs":
      return "touch";
    case "delete":
    case "rmdir":
      return "delete";
    case "mkdir":
    case "copy":
    case "link":
      if (action.reason.code === "type-changed") return "later";
      if (action.reason.code !== "new" || action.kind === "link") return "now";
      if (action.kind === "copy") return input.deferFiles ? "new" : "now";
      return input.deferFolders && input.mayBeMoved(action.entry!) ? "new" : "now";
    default:
      return "now";
  }
}

/** Hashes files of one side in the pool, putting each hash on its entry. */
export async function hashFiles(
  paths: string[],
  input: {
    scan: Scan;
    root: string;
    pool: WorkerPool;
    report: Reporter;
    label: string;
    debug: boolean;
    onBatch?: (files: number, bytes: number) => void;
    /** A file that cannot be hashed is an error of the run (true), or only left unhashed. */
    failuresAreErrors?: boolean;
    /** Where each path is read from, when not at its own name (a dry run's moved folders). */
    locate?: (path: string) => string;
  },
): Promise<void> {
  const { scan, root, pool, report, label, debug } = input;
  const locate = input.locate ?? ((path: string) => path);
  const named = new Map(paths.map((path) => [locate(path), path]));
  const files = paths.map((path) => ({ path: locate(path), size: scan.entries.get(path)!.size }));
  const outcomes = await hashInPool(pool, root, files, input.onBatch);
  for (const [readAt, outcome] of outcomes) {
    const path = named.get(readAt) ?? readAt;
    const entry = scan.entries.get(path)!;
    if (debug) report.debug(`hash ${label} ${displayPath(path)}`);
    if ("error" in outcome) {
      const line = `${displayPath(path)}: Cannot hash: ${outcome.error}`;
      if (input.failuresAreErrors ?? true) report.error(line);
      else report.debug(line);
    } else if (outcome.result && sameSig(outcome.result.signature, entry)) {
      // A file that changed since the walk stays unhashed: the plan then copies it.
      entry.hash = outcome.result.hash;
      entry.hashedAtMs = outcome.result.hashedAtMs;
    }
  }
}

function sameSig(
  a: { size: number; mtimeMs: number; ctimeMs: number; ino: number },
  b: Entry,
): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs && a.ino === b.ino;
}

function joinPath(folder: string, name: string): string {
  return folder === "" ? name : `${folder}/${name}`;
}

function baseOf(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** Problems a listing holds, for the run's count. */
export function listingProblems(listing: FolderListing): Problem[] {
  return listing.problems;
}
