/**
 * The streamed mirror: both trees walked folder by folder in lock-step with the record, each
 * folder decided with the plan's rules and acted on at once. What can only be decided once the
 * whole tree is seen waits, as compact lists that grow with the change and not with the tree:
 * deletions (last, after `--max-delete` and `-I`), new entries that may be moves (matched
 * against the deletions), type changes (after the deletions they need), folder attributes.
 *
 * @module
 */

import { folderUnchanged } from "./changed.ts";
import {
  type EngineContext,
  type PendingDeletion,
  type WalkLeftovers,
  type WalkPair,
} from "./context.ts";
import { displayPath, quoted } from "./format.ts";
import { idleProgress, type Reporter } from "./log.ts";
import { hashesNeeded } from "./needs.ts";
import { type FolderRows, resignedRow, rowFor } from "./nextrecord.ts";
import { UsageError } from "./errors.ts";
import { lockStep } from "./order.ts";
import { baseName, isWithin, parentOf } from "./paths.ts";
import { type Action, mergeDifferences, planMirror, type Reason } from "./plan.ts";
import { type RecordMap } from "./record.ts";
import { type RecordRow } from "./recordfile.ts";
import { type Entry, type FolderListing, sameSignature, type Scan } from "./scan.ts";
import { type TreeReader } from "./sides/reader.ts";

export {
  type ActionSink,
  emptyLeftovers,
  type EngineContext,
  type LinkGroup,
  type PendingDeletion,
  type PendingNew,
  type WalkLeftovers,
  type WalkPair,
  type WalkStart,
} from "./context.ts";

/** Rows of folders being deleted kept at most, for moves (a few hundred bytes each). */
const STASH_ROWS = 200_000;

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
    { first: () => pair.from.next(), second: () => pair.to.next() },
    { first: (listing) => listing.folder, second: (listing) => listing.folder },
  );
  // What `status` shows of the walk (the progress object is swapped while hashing: keep this one).
  const progress = context.control.progress;
  for await (const { first: from, second: to } of folders) {
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
    const { planOptions, trees, names, report, options } = this.#context;
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
          tree: trees[side],
          ...(side === "to" && this.#context.locateTo ? { locate: this.#context.locateTo } : {}),
          report,
          label: names[side],
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
      for (const path of scan.entries.keys()) if (path !== folder) names.add(baseName(path));
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
        const known = state.known.get(baseName(action.path));
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
    const name = baseName(path);
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

/** Hashes files of one tree, putting each hash on its entry. */
export async function hashFiles(
  paths: string[],
  input: {
    scan: Scan;
    /** The tree the files are in. */
    tree: TreeReader;
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
  const { scan, tree, report, label, debug } = input;
  const locate = input.locate ?? ((path: string) => path);
  const named = new Map(paths.map((path) => [locate(path), path]));
  const files = paths.map((path) => ({ path: locate(path), size: scan.entries.get(path)!.size }));
  const outcomes = await tree.hash(files, input.onBatch);
  for (const [readAt, outcome] of outcomes) {
    const path = named.get(readAt) ?? readAt;
    const entry = scan.entries.get(path)!;
    if (debug) report.debug(`hash ${label} ${displayPath(path)}`);
    if ("error" in outcome) {
      const line = `${displayPath(path)}: Cannot hash: ${outcome.error}`;
      if (input.failuresAreErrors ?? true) report.error(line);
      else report.debug(line);
    } else if (outcome.result && sameSignature(outcome.result.signature, entry)) {
      // A file that changed since the walk stays unhashed: the plan then copies it.
      entry.hash = outcome.result.hash;
      entry.hashedAtMs = outcome.result.hashedAtMs;
    }
  }
}

function joinPath(folder: string, name: string): string {
  return folder === "" ? name : `${folder}/${name}`;
}
