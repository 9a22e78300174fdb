/**
 * The end of a run as a plan: from what the walk left (see {@linkcode WalkLeftovers}) to the
 * ordered steps that finish the mirror, each with its reason. Pure: no `Deno.*`, no I/O; the
 * executor (`mirror.ts`) hashes what {@linkcode moveHashesNeeded} asks for, runs each step
 * through the run's sink, and is the same for a dry run and a real one.
 *
 * The end comes in two halves, because the walks of moved and new folders in the middle add to
 * the leftovers (a moved folder may hold deletions, type changes, folders to touch):
 * - {@linkcode planArrivals}: folder moves (a new source folder whose inode the record knows at
 *   a replica folder being deleted), one walk of the moved folders against the source, file
 *   moves (same size and SHA-256, the same name preferred), the creations left, one walk of the
 *   new folders;
 * - {@linkcode planSettling}: hard links, the deletion gate's verdict (adoption, `--max-delete`,
 *   `-I`), the deletions deepest first, the type changes that needed them, folder attributes
 *   deepest first.
 *
 * @module
 */

import { type PendingDeletion, type WalkLeftovers } from "./context.ts";
import { counted, displayPath, quoted } from "./format.ts";
import { compareWalkOrder } from "./order.ts";
import { baseName, isWithin } from "./paths.ts";
import { type Action, deleteAllowance, folderAttrsAction } from "./plan.ts";
import { trustedHash } from "./record.ts";
import { type Entry } from "./scan.ts";
import { type DeleteLimit } from "./types.ts";

/** A move of a replica entry to the new path of the source entry it matches. */
export interface PlannedMove {
  /** The `move` action: `path` the new name, `from` the replica's old one. */
  move: Action;
  /** The deletion the move takes the place of. */
  gone: PendingDeletion;
}

/** One step of the first half of the end of a run, in the order they run. */
export type ArrivalStep =
  | { kind: "move-folder" } & PlannedMove
  | { kind: "walk-moved"; folders: string[] }
  | { kind: "move-file" } & PlannedMove
  | {
    kind: "create";
    action: Action;
    /** A folder planned to move: made only if its move failed (a copy of it instead). */
    unlessMoved?: true;
  }
  | { kind: "walk-new"; folders: string[] };

/** Hashes read for move matching, by path, on each side (see {@linkcode moveHashesNeeded}). */
export interface MoveHashes {
  /** Of new source files. */
  from: Map<string, string>;
  /** Of extraneous replica files. */
  to: Map<string, string>;
}

/** The files whose SHA-256 move matching needs, and the hashes the record already vouches for. */
export interface MoveHashNeeds {
  /** New source files of a size some extraneous replica file has. */
  from: Map<string, Entry>;
  /** Extraneous replica files of those sizes that the record cannot vouch for. */
  to: Map<string, Entry>;
  /** Extraneous replica files of those sizes whose hash the record vouches for. */
  trusted: Map<string, string>;
}

/** Deletions a move may take the place of: folders by source inode, files by size. */
interface Candidates {
  folders: Map<number, PendingDeletion>;
  files: Map<number, PendingDeletion[]>;
}

function candidatesOf(left: WalkLeftovers): Candidates {
  const folders = new Map<number, PendingDeletion>();
  const files = new Map<number, PendingDeletion[]>();
  for (const deletion of left.deletions) {
    const { action, entry, known } = deletion;
    if (action.reason.code !== "not-in-source") continue;
    if (action.kind === "rmdir" && known?.source && !left.keptFolders.has(action.path)) {
      folders.set(known.source.ino, deletion);
    } else if (action.kind === "delete" && entry.kind === "file") {
      const group = files.get(entry.size);
      if (group) group.push(deletion);
      else files.set(entry.size, [deletion]);
    }
  }
  return { folders, files };
}

/** The folder moves: each new folder whose source inode the record knows at a folder going. */
function folderMoves(left: WalkLeftovers, candidates: Candidates): PlannedMove[] {
  const moves: PlannedMove[] = [];
  const movedAway = new Set<string>();
  for (const { action } of left.newEntries) {
    if (action.kind !== "mkdir") continue;
    const gone = candidates.folders.get(action.entry!.ino);
    if (!gone || isWithin(gone.action.path, movedAway)) continue;
    movedAway.add(gone.action.path);
    const move = moveAction(action, { gone, code: "same-folder-tree", entry: action.entry! });
    moves.push({ move, gone });
  }
  return moves;
}

/** New files and the extraneous files of their size, outside the folders that move. */
function fileCandidates(
  left: WalkLeftovers,
  input: { candidates: Candidates; movedAway: Set<string> },
): { newFiles: Action[]; goneFiles: Map<number, PendingDeletion[]> } {
  const goneFiles = new Map<number, PendingDeletion[]>();
  // A file inside a folder that moves is at its new place already, not a candidate.
  for (const [size, group] of input.candidates.files) {
    const kept = group.filter((gone) => !isWithin(gone.action.path, input.movedAway));
    if (kept.length > 0) goneFiles.set(size, kept);
  }
  const newFiles = left.newEntries.map(({ action }) => action)
    .filter((action) => action.kind === "copy" && goneFiles.has(action.entry!.size));
  return { newFiles, goneFiles };
}

/**
 * Which files move matching must hash: the new source files of a size that an extraneous
 * replica file outside the folders that move has, and those replica files (unless the record
 * vouches for their hash). Pure.
 */
export function moveHashesNeeded(left: WalkLeftovers): MoveHashNeeds {
  const needs: MoveHashNeeds = { from: new Map(), to: new Map(), trusted: new Map() };
  const candidates = candidatesOf(left);
  const movedAway = new Set(folderMoves(left, candidates).map(({ gone }) => gone.action.path));
  const { newFiles, goneFiles } = fileCandidates(left, { candidates, movedAway });
  const sizes = new Set<number>();
  for (const action of newFiles) {
    needs.from.set(action.path, action.entry!);
    sizes.add(action.entry!.size);
  }
  for (const size of sizes) {
    for (const gone of goneFiles.get(size) ?? []) {
      const known = gone.known?.replica;
      const trusted = known ? trustedHash(known, gone.entry) : null;
      if (trusted !== null) needs.trusted.set(gone.action.path, trusted);
      else needs.to.set(gone.action.path, gone.entry);
    }
  }
  return needs;
}

/**
 * The first half of the end of a run: folder moves, the walk of the moved folders, file moves,
 * the creations left (a folder planned to move among them, made only should its move fail),
 * the walk of the new folders. With `moves` false, only the creations and their walk. Pure.
 */
export function planArrivals(
  left: WalkLeftovers,
  input: { moves: boolean; hashes: MoveHashes },
): ArrivalStep[] {
  const steps: ArrivalStep[] = [];
  const folders = input.moves ? folderMoves(left, candidatesOf(left)) : [];
  const files = input.moves ? fileMoves(left, { folders, hashes: input.hashes }) : [];
  for (const planned of folders) steps.push({ kind: "move-folder", ...planned });
  if (folders.length > 0) {
    steps.push({ kind: "walk-moved", folders: folders.map(({ move }) => move.path) });
  }
  for (const planned of files) steps.push({ kind: "move-file", ...planned });
  const movingFolders = new Set(folders.map(({ move }) => move.path));
  const movingFiles = new Set(files.map(({ move }) => move.path));
  const made: string[] = [];
  for (const { action } of left.newEntries) {
    if (movingFiles.has(action.path)) continue;
    const unlessMoved = movingFolders.has(action.path);
    steps.push(unlessMoved ? { kind: "create", action, unlessMoved } : { kind: "create", action });
    if (action.kind === "mkdir") made.push(action.path);
  }
  if (made.length > 0) steps.push({ kind: "walk-new", folders: made });
  return steps;
}

/**
 * The file moves: each new file matched with an extraneous replica file of the same size and
 * SHA-256 outside the folders that move, one of the same name first, each replica file once.
 */
function fileMoves(
  left: WalkLeftovers,
  input: { folders: PlannedMove[]; hashes: MoveHashes },
): PlannedMove[] {
  const movedAway = new Set(input.folders.map(({ gone }) => gone.action.path));
  const { newFiles, goneFiles } = fileCandidates(left, {
    candidates: candidatesOf(left),
    movedAway,
  });
  const moves: PlannedMove[] = [];
  for (const action of newFiles) {
    const hash = input.hashes.from.get(action.path);
    if (hash === undefined) continue;
    const candidates = (goneFiles.get(action.entry!.size) ?? []).filter((gone) =>
      !movedAway.has(gone.action.path) && input.hashes.to.get(gone.action.path) === hash
    );
    if (candidates.length === 0) continue;
    const sameName = candidates.find((gone) =>
      baseName(gone.action.path) === baseName(action.path)
    );
    const gone = sameName ?? candidates[0]!;
    movedAway.add(gone.action.path);
    const move = moveAction(action, {
      gone,
      code: "same-content",
      entry: { ...action.entry!, hash },
    });
    moves.push({ move, gone });
  }
  return moves;
}

/** How the end of a run may delete. */
export interface GateSettings {
  /** `--max-delete`, if any. */
  maxDelete: DeleteLimit | null;
  /** `-I` was given (and this is no dry run): the user is asked. */
  asks: boolean;
  /**
   * The replica is not adopted (no record, or an earlier run kept entries) and `--adopt` was
   * not given: every deletion is held back, before `--max-delete` or `-I` is asked.
   */
  unadopted: boolean;
  /** The replica as the user named it, for the message. */
  replica: string;
}

/**
 * What the deletion gate decided: delete (`none` when there is nothing to delete), hold the
 * deletions back with a message, or ask the user (`-I`).
 */
export type GateVerdict =
  | { kind: "none" }
  | { kind: "delete"; count: number }
  | {
    kind: "unadopted";
    count: number;
    /** Each entry kept, in walk order, a folder with a final `/`. */
    kept: string[];
    message: string;
  }
  | { kind: "max-delete"; count: number; message: string }
  | {
    kind: "ask";
    count: number;
    /** The first entries to delete, to show in the question. */
    sample: string[];
    /** The warning when the answer is no. */
    declined: string;
  };

/**
 * One step of the second half of the end of a run. A step marked `ifConfirmed` runs only if the
 * user's answer to the `-I` question deleted.
 */
export type SettlingStep =
  & (
    | { kind: "hardlink"; action: Action }
    | { kind: "gate"; verdict: GateVerdict }
    | { kind: "delete"; deletion: PendingDeletion }
    | { kind: "not-replaced"; path: string; message: string }
    | { kind: "replace"; action: Action }
    | { kind: "walk-new"; folders: string[] }
    | { kind: "attributes"; later: AttributesLater }
    | { kind: "folder-attrs"; action: Action }
  )
  & { ifConfirmed?: true };

/**
 * What the folder attributes of the end of a run leave out, planned once the walks before them
 * are done ({@linkcode planFolderAttributes}): those walks find folders of their own.
 */
export interface AttributesLater {
  /** What a type change held back would have made: no attributes at or below them. */
  notMade: Set<string>;
  /** The type changes made: their attributes wait for the `-I` answer as they did. */
  replacing: Set<string>;
  /** Whether the `-I` answer decides those. */
  asks: boolean;
}

/**
 * The second half of the end of a run: hard links, the gate's verdict, deletions deepest first,
 * the type changes that waited for them (not where the replica's folder must stay), folder
 * attributes deepest first (not of what a type change held back would have made). `movedAway`:
 * the replica paths the first half moved. Pure.
 */
export function planSettling(
  left: WalkLeftovers,
  input: { gate: GateSettings; movedAway: Set<string> },
): SettlingStep[] {
  const steps: SettlingStep[] = left.hardLinks.map((action) => ({ kind: "hardlink", action }));
  const deletions = deletionsLeft(left, input.movedAway);
  const verdict = gateVerdict(deletions, { gate: input.gate, replicaEntries: left.replicaEntries });
  steps.push({ kind: "gate", verdict });
  const held = verdict.kind === "unadopted" || verdict.kind === "max-delete";
  const when = verdict.kind === "ask" ? { ifConfirmed: true as const } : {};
  const notMade = new Set<string>();
  if (!held) {
    for (let i = deletions.length - 1; i >= 0; i--) {
      steps.push({ kind: "delete", deletion: deletions[i]!, ...when });
    }
  }
  const replacing = new Set<string>();
  for (const action of left.afterDeletions) {
    if (held) notMade.add(action.path);
    else if (left.keptFolders.has(action.path)) {
      notMade.add(action.path);
      steps.push({ kind: "not-replaced", path: action.path, message: NOT_REPLACED, ...when });
    } else {
      steps.push({ kind: "replace", action, ...when });
      replacing.add(action.path);
    }
  }
  const made = left.afterDeletions.filter((a) => a.kind === "mkdir" && replacing.has(a.path));
  if (made.length > 0) {
    steps.push({ kind: "walk-new", folders: made.map((a) => a.path), ...when });
  }
  // Last, once the walk of the folders made here has found the folders inside them.
  steps.push({ kind: "attributes", later: { notMade, replacing, asks: verdict.kind === "ask" } });
  return steps;
}

/**
 * The folder attributes of the end of a run, deepest first, of every folder touched so far
 * (the walks of the end included), but what `later` leaves out. Pure.
 */
export function planFolderAttributes(left: WalkLeftovers, later: AttributesLater): SettlingStep[] {
  const when = later.asks ? { ifConfirmed: true as const } : {};
  const folders = [...left.touchedFolders].filter(([path]) => !isWithin(path, later.notMade))
    .sort(([a], [b]) => compareWalkOrder(b, a));
  return folders.map(([path, entry]) => ({
    kind: "folder-attrs",
    action: folderAttrsAction(path, entry, left.folderDiffers.get(path)),
    // What a declined `-I` leaves unmade gets no attributes either.
    ...(isWithin(path, later.replacing) ? when : {}),
  }));
}

const NOT_REPLACED =
  "Not replaced: the replica's folder holds entries that are excluded or unreadable";

/**
 * The deletions that remain, in walk order: not moved away, not a folder that must stay, and
 * nothing inside a replaced folder that must stay.
 */
function deletionsLeft(left: WalkLeftovers, movedAway: Set<string>): PendingDeletion[] {
  const keptReplaced = new Set(
    left.deletions.filter((d) =>
      d.action.reason.code === "replaced" && left.keptFolders.has(d.action.path)
    ).map((d) => d.action.path),
  );
  return left.deletions.filter(({ action }) =>
    !isWithin(action.path, movedAway) &&
    !(action.kind === "rmdir" && left.keptFolders.has(action.path)) &&
    !isWithin(action.path, keptReplaced)
  );
}

/**
 * The deletion gate, in order: nothing to delete; a replica not adopted keeps everything; more
 * than `--max-delete` deletes nothing; `-I` asks; else delete.
 */
export function gateVerdict(
  deletions: PendingDeletion[],
  input: { gate: GateSettings; replicaEntries: number },
): GateVerdict {
  const { gate } = input;
  const count = deletions.length;
  if (count === 0) return { kind: "none" };
  if (gate.unadopted) {
    const kept = deletions.map(({ action }) =>
      `${displayPath(action.path)}${action.kind === "rmdir" ? "/" : ""}`
    );
    const message = `Deleting nothing: ${quoted(gate.replica)} is not a treesync replica yet ` +
      `(no record, or an earlier run kept its entries): kept the ${entries(count)} the source ` +
      `lacks, copied the rest; give --adopt to mirror over it and delete them`;
    return { kind: "unadopted", count, kept, message };
  }
  if (gate.maxDelete) {
    const allowed = deleteAllowance(gate.maxDelete, input.replicaEntries);
    if (count > allowed) {
      const limit = "count" in gate.maxDelete
        ? `${gate.maxDelete.count}`
        : `${gate.maxDelete.percent}% = ${allowed} of ${entries(input.replicaEntries)}`;
      const message = `Deleting nothing: this run would delete ${entries(count)}, more than ` +
        `--max-delete ${limit}; copying the rest. Check the source, then raise the limit ` +
        `or run once without it`;
      return { kind: "max-delete", count, message };
    }
  }
  if (gate.asks) {
    const sample = deletions.slice(0, 10).map((d) => displayPath(d.action.path));
    const declined = `Kept ${entries(count)} that would have been deleted; copying the rest`;
    return { kind: "ask", count, sample, declined };
  }
  return { kind: "delete", count };
}

function entries(count: number): string {
  return counted(count, "entry", "entries");
}

/** The move that puts a replica entry being deleted (`gone`) where `action` would create one. */
function moveAction(
  action: Action,
  input: { gone: PendingDeletion; code: "same-folder-tree" | "same-content"; entry: Entry },
): Action {
  return {
    kind: "move",
    path: action.path,
    from: input.gone.action.path,
    reason: { code: input.code },
    entry: input.entry,
  };
}
