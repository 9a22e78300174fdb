/**
 * Deciding what to change: from the two walks and the record to a list of actions, renamed files
 * and folders turned into moves, and the summary counts of a plan. Pure: no `Deno.*`, no I/O.
 *
 * @module
 */

import { type DeleteLimit } from "./cli.ts";
import { ancestors, baseName, isUnderAny, parentOf, subtree } from "./paths.ts";
import { type RecordEntry, type RecordMap, trustedHash } from "./record.ts";
import { type Entry, type EntryKind, type Problem, sameSignature, type Scan } from "./scan.ts";

/**
 * One change to the target tree. Kinds: `mkdir` a folder, `copy` a new file, `update` a changed
 * file, `link` (re)create a symlink, `attrs` fix mode/owner/mtime only, `move` rename a replica
 * file or folder whose content reappeared elsewhere in the source, `delete` a file or symlink,
 * `rmdir` an emptied folder, `dirattrs` set a folder's mode/owner/mtime after it is filled.
 */
export interface Action {
  kind:
    | "mkdir"
    | "copy"
    | "update"
    | "link"
    | "attrs"
    | "move"
    | "delete"
    | "rmdir"
    | "dirattrs";
  path: string;
  /** Why, in words, for `-vv` and the log. */
  reason: string;
  /** The entry to reproduce (every kind but `delete` and `rmdir`). */
  entry?: Entry;
  /** For `move`: the path it comes from, in the same tree. */
  from?: string;
}

/** What {@linkcode planMirror} decided. */
export interface Plan {
  /** In the order they must run. */
  actions: Action[];
  /** Changes the options forbade or that cannot be made safely: each makes the run fail. */
  blocked: Problem[];
  /** Entries left in the target because deletions are off. */
  keptExtraneous: number;
}

/** How {@linkcode planMirror} decides. */
export interface PlanOptions {
  /** Compare content hashes instead of size and mtime. */
  checksum: boolean;
  /**
   * Delete extraneous entries and replace entries whose type changed. Without it nothing is
   * removed: a type change is reported and left as it is.
   */
  deletes: boolean;
  /** Compare owner and group too (when running as root). */
  owners: boolean;
  /** What the record knows of `from`'s files: hashes that need no reading. */
  fromHashes?: RecordMap;
  /** What the record knows of `to`'s files. */
  toHashes?: RecordMap;
  /** Turn a deletion plus a copy of the same content into one rename (files and folders). */
  moves?: boolean;
  /**
   * Restoring: `to` is the source and `toHashes` the record's source side. A target entry the
   * last sync did not see as it is now (see {@linkcode unchangedSinceRecorded}) is kept and
   * reported, not overwritten, unless `overwriteNewer`. Nothing is deleted either way.
   */
  restore?: boolean;
  /** With `restore`: overwrite target files changed since the last sync too. */
  overwriteNewer?: boolean;
  /** Called with each unchanged entry and why, for `-vv`. */
  explain?: (path: string, reason: string) => void;
}

/** Finds a file's SHA-256 without reading it, or says it is not known. */
export type HashLookup = (path: string, entry: Entry) => string | null;

/**
 * A file's hash as far as it is known without reading: computed this run, or kept in the record
 * under its path, or under another path with the same inode and signature (a renamed file).
 * Pure.
 */
export function hashLookup(known: RecordMap | undefined): HashLookup {
  let byInode: Map<number, RecordEntry> | null = null;
  return (path, entry) => {
    if (entry.kind !== "file") return null;
    if (entry.hash !== undefined) return entry.hash;
    const direct = trustedHash(known?.get(path), entry);
    if (direct !== null || !known || known.size === 0) return direct;
    if (byInode === null) {
      byInode = new Map();
      for (const recorded of known.values()) byInode.set(recorded.ino, recorded);
    }
    return trustedHash(byInode.get(entry.ino), entry);
  };
}

/**
 * Decides what to change in `to` so that it matches `from`. Pure: reads no disk.
 *
 * Order: folders that must give way to another type are emptied and removed first (deepest
 * first), then folders are created (shallowest first), replica files and folders moved where
 * their content went, files and symlinks copied, extraneous entries deleted (deepest first;
 * deleting last means a failed copy never costs the old copy), and folder attributes set last,
 * since filling a folder changes its mtime.
 */
export function planMirror(from: Scan, to: Scan, options: PlanOptions): Plan {
  const { checksum, deletes, owners, explain, restore = false } = options;
  const guardTargets = restore && !options.overwriteNewer;
  const keptPaths = new Set([...from.kept, ...to.kept]);
  const keptAncestors = new Set<string>();
  for (const path of keptPaths) for (const parent of ancestors(path)) keptAncestors.add(parent);
  const isKept = (path: string) =>
    keptAncestors.has(path) || [path, ...ancestors(path)].some((p) => keptPaths.has(p));
  const fromHash = hashLookup(options.fromHashes);
  const toHash = hashLookup(options.toHashes);

  const removals: Action[] = []; // type changes, run first
  const creations: Action[] = [];
  const deletions: Action[] = []; // extraneous, run after copies
  const blocked: Problem[] = [];
  const touchedFolders = new Set<string>();
  const replaced = new Set<string>(); // target folders removed to make way for another type
  const left = new Set<string>(); // type changes left as they are: nothing happens at or below
  let keptExtraneous = 0;

  for (const [path, source] of from.entries) {
    const target = to.entries.get(path);
    if (path === "" && (source.kind !== "dir" || (target && target.kind !== "dir"))) {
      // Never plan to replace a root: whatever made it look like this, it is not a change.
      blocked.push({
        path: ".",
        message: "Not mirrored: the source or replica root is not a folder",
      });
      continue;
    }
    if (target && target.kind !== source.kind) {
      if (!deletes || restore) {
        // Replacing one type with another removes what was there: never without deletions.
        left.add(path);
        blocked.push({
          path,
          message: restore
            ? `Not restored: the source has a ${kindName(target.kind)} here and the replica a ` +
              `${kindName(source.kind)}; restore never replaces one with the other`
            : `Not replaced: the replica has a ${kindName(target.kind)} here and the source a ` +
              `${kindName(source.kind)}, and deletions are off`,
        });
        continue;
      }
      if (target.kind === "dir") {
        if (isKept(path)) {
          blocked.push({
            path,
            message:
              `Not replaced: the replica's folder holds entries that are excluded or unreadable`,
          });
          continue;
        }
        replaced.add(path);
        removals.push({ kind: "rmdir", path, reason: `replaced by a ${source.kind}` });
      } else {
        // A file or symlink giving way is an overwrite, as rsync does without --delete.
        removals.push({ kind: "delete", path, reason: `replaced by a ${source.kind}` });
      }
      touchedFolders.add(parentOf(path));
      if (source.kind === "dir") touchedFolders.add(path);
      creations.push(creationFor(path, source, "type changed"));
      continue;
    }
    if (!target) {
      touchedFolders.add(parentOf(path));
      if (source.kind === "dir") touchedFolders.add(path); // mkdir gives it today's mtime
      creations.push(creationFor(path, source, "new"));
      continue;
    }
    // Hashes matter only for same-size files that --checksum compares, whose mtimes differ, or
    // that were hashed because the record saw them change or cannot vouch for them (see
    // hashesNeeded).
    const hashesMatter = source.kind === "file" && source.size === target.size &&
      (checksum || source.mtimeMs !== target.mtimeMs || source.hash !== undefined ||
        target.hash !== undefined);
    const change = compareEntries(source, target, {
      checksum,
      owners,
      fromHash: hashesMatter ? fromHash(path, source) : null,
      toHash: hashesMatter ? toHash(path, target) : null,
    });
    if (change === null) {
      explain?.(path, "unchanged");
      continue;
    }
    if (change.kind === "dirattrs") {
      touchedFolders.add(path);
      continue;
    }
    if (guardTargets && !unchangedSinceRecorded(options.toHashes?.get(path), target)) {
      blocked.push({
        path,
        message: `Kept: the source's ${kindName(target.kind)} is not as the last sync left ` +
          `it and differs from the replica's (${change.reason}); pass --overwrite-newer to ` +
          `replace it`,
      });
      continue;
    }
    if (change.kind !== "attrs") touchedFolders.add(parentOf(path));
    creations.push({ kind: change.kind, path, reason: change.reason, entry: source });
  }

  for (const [path, target] of to.entries) {
    const source = from.entries.get(path);
    if (path === "" || (source && source.kind === target.kind)) continue;
    if (source && !replaced.has(path) && target.kind !== "dir") continue; // overwritten above
    const underReplaced = ancestors(path).some((parent) => replaced.has(parent));
    if (replaced.has(path)) continue; // already planned as a removal
    if (isKept(path)) continue;
    if (!deletes) {
      keptExtraneous++;
      continue;
    }
    const action: Action = {
      kind: target.kind === "dir" ? "rmdir" : "delete",
      path,
      reason: underReplaced ? "inside a folder replaced by another type" : "not in source",
    };
    (underReplaced ? removals : deletions).push(action);
    touchedFolders.add(parentOf(path));
  }

  byPath(removals, "deepest");
  byPath(creations, "shallowest");
  byPath(deletions, "deepest");
  let moves: Action[] = [];
  let kept = { creations, deletions };
  if (options.moves && deletions.length > 0) {
    ({ moves, kept } = planMoves({ from, to, creations, deletions, fromHash, toHash, owners }));
    for (const move of moves) {
      touchedFolders.add(parentOf(move.path)).add(parentOf(move.from!));
      if (move.entry!.kind === "dir") touchedFolders.add(move.path);
    }
  }

  if (left.size > 0) {
    // What would be created below an entry left in place has no folder to go in.
    kept.creations = kept.creations.filter((a) => !isUnderAny(a.path, left));
  }
  const folderAttrs: Action[] = [];
  for (const path of touchedFolders) {
    const source = from.entries.get(path);
    if (left.size > 0 && isUnderAny(path, left, true)) continue;
    if (source?.kind === "dir") {
      folderAttrs.push({ kind: "dirattrs", path, reason: "folder attributes", entry: source });
    }
  }
  byPath(folderAttrs, "deepest");
  const mkdirs = kept.creations.filter((a) => a.kind === "mkdir");
  const transfers = kept.creations.filter((a) => a.kind !== "mkdir");
  return {
    actions: [...removals, ...mkdirs, ...moves, ...transfers, ...kept.deletions, ...folderAttrs],
    blocked,
    keptExtraneous,
  };
}

interface MoveInput {
  from: Scan;
  to: Scan;
  /** Sorted shallowest first. */
  creations: Action[];
  /** Sorted deepest first. */
  deletions: Action[];
  fromHash: HashLookup;
  toHash: HashLookup;
  owners: boolean;
}

/**
 * Turns "delete a replica file, copy a source file with the same size and SHA-256" into one
 * rename, and a new source folder whose whole tree matches a deleted replica folder into one
 * rename of the folder. Candidates are paired by size first, so only same-size files ever need
 * a hash. Among equal candidates, one with the same name wins (a folder was renamed). Pure.
 *
 * @returns The moves (attribute fixes for a moved folder's contents included) and what is left
 * of the creations and deletions.
 */
function planMoves(input: MoveInput): {
  moves: Action[];
  kept: { creations: Action[]; deletions: Action[] };
} {
  const { from, to, creations, deletions, fromHash, toHash, owners } = input;
  const unchanged = { moves: [], kept: { creations, deletions } };
  const goneByContent = new Map<string, string[]>();
  for (const action of deletions) {
    const entry = to.entries.get(action.path)!;
    const hash = action.kind === "delete" ? toHash(action.path, entry) : null;
    if (hash !== null) {
      const key = `${entry.size}:${hash}`;
      const group = goneByContent.get(key);
      if (group) group.push(action.path);
      else goneByContent.set(key, [action.path]);
    }
  }
  if (goneByContent.size === 0) return unchanged;

  const fileMoves = new Map<string, string>(); // new path -> replica path it comes from
  for (const action of creations) {
    if (action.kind !== "copy" || action.reason !== "new") continue;
    const hash = fromHash(action.path, action.entry!);
    const candidates = hash === null
      ? undefined
      : goneByContent.get(`${action.entry!.size}:${hash}`);
    if (!candidates?.length) continue;
    const name = baseName(action.path);
    const sameName = candidates.findIndex((path) => baseName(path) === name);
    fileMoves.set(action.path, candidates.splice(Math.max(sameName, 0), 1)[0]!);
  }
  if (fileMoves.size === 0) return unchanged;

  // Folder candidates: walk up a moved file's old and new paths while the names agree.
  const folderPairs = new Map<string, string>();
  for (const [newPath, oldPath] of fileMoves) {
    let [n, o] = [newPath, oldPath];
    while (n.includes("/") && o.includes("/") && baseName(n) === baseName(o)) {
      [n, o] = [parentOf(n), parentOf(o)];
      if (!folderPairs.has(n)) folderPairs.set(n, o);
    }
  }
  const newDirs = new Set(
    creations.filter((a) => a.kind === "mkdir" && a.reason === "new").map((a) => a.path),
  );
  const goneDirs = new Set(deletions.filter((a) => a.kind === "rmdir").map((a) => a.path));
  const creationPaths = creations.map((a) => a.path); // sorted ascending
  const deletionPaths = deletions.map((a) => a.path).reverse(); // sorted ascending
  const folderMoves = new Map<string, string>();
  const movedOld = new Set<string>();
  const attrFixes: Action[] = [];
  const candidates = [...folderPairs].filter(([n, o]) => newDirs.has(n) && goneDirs.has(o))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [newDir, oldDir] of candidates) {
    if (isUnderAny(newDir, folderMoves) || isUnderAny(oldDir, movedOld)) continue;
    const newInside = subtree(creationPaths, newDir);
    const oldInside = subtree(deletionPaths, oldDir);
    if (newInside.length !== oldInside.length) continue;
    const fixes: Action[] = [];
    const matches = newInside.every((newPath) => {
      const oldPath = oldDir + newPath.slice(newDir.length);
      const source = from.entries.get(newPath)!;
      const target = to.entries.get(oldPath);
      if (!target || target.kind !== source.kind) return false;
      if (source.kind === "file" && fileMoves.get(newPath) !== oldPath) return false;
      if (source.kind === "symlink" && source.target !== target.target) return false;
      const hash = source.kind === "file" ? fromHash(newPath, source) : null;
      const change = compareEntries(source, target, {
        checksum: true,
        owners,
        fromHash: hash,
        toHash: hash,
      });
      if (change?.kind === "attrs" || change?.kind === "dirattrs") {
        fixes.push({ kind: change.kind, path: newPath, reason: change.reason, entry: source });
      }
      return true;
    });
    if (!matches) continue;
    folderMoves.set(newDir, oldDir);
    movedOld.add(oldDir);
    attrFixes.push(...fixes.filter((fix) => fix.kind === "attrs"));
  }

  const moves: Action[] = [];
  for (const [newDir, oldDir] of folderMoves) {
    moves.push({
      kind: "move",
      path: newDir,
      from: oldDir,
      reason: "same folder tree",
      entry: from.entries.get(newDir)!,
    });
  }
  const movedFiles = new Set<string>();
  for (const [newPath, oldPath] of fileMoves) {
    if (isUnderAny(newPath, folderMoves)) continue;
    movedFiles.add(newPath).add(oldPath);
    moves.push({
      kind: "move",
      path: newPath,
      from: oldPath,
      reason: "same size and SHA-256",
      entry: from.entries.get(newPath)!,
    });
  }
  const keptCreations = creations.filter((a) =>
    !(a.kind === "copy" && movedFiles.has(a.path)) && !isUnderAny(a.path, folderMoves, true)
  );
  const keptDeletions = deletions.filter((a) =>
    !(a.kind === "delete" && movedFiles.has(a.path)) && !isUnderAny(a.path, movedOld, true)
  );
  return {
    moves,
    kept: { creations: [...keptCreations, ...attrFixes], deletions: keptDeletions },
  };
}

function kindName(kind: EntryKind): string {
  return kind === "dir" ? "folder" : kind;
}

/**
 * The plan without its deletions: extraneous entries stay, and so do entries that were to give
 * way to another type, whose replacements (and anything to be created below them) are dropped.
 * Pure.
 *
 * @returns The new plan and how many deletions it held back.
 */
export function holdBackDeletions(plan: Plan): { plan: Plan; heldBack: number } {
  const removesData = (a: Action) => a.kind === "delete" || a.kind === "rmdir";
  const heldPaths = new Set(plan.actions.filter(removesData).map((a) => a.path));
  const underHeld = (path: string) =>
    heldPaths.has(path) || ancestors(path).some((parent) => heldPaths.has(parent));
  const actions = plan.actions.filter((a) =>
    !removesData(a) && (a.kind === "dirattrs" || a.kind === "attrs" || !underHeld(a.path))
  );
  return { plan: { ...plan, actions }, heldBack: heldPaths.size };
}

/** The number of entries a `--max-delete` limit allows in a replica of `entryCount` entries. */
export function deleteAllowance(limit: DeleteLimit, entryCount: number): number {
  return "count" in limit ? limit.count : Math.floor((limit.percent / 100) * entryCount);
}

function creationFor(path: string, entry: Entry, reason: string): Action {
  const kind = entry.kind === "dir" ? "mkdir" : entry.kind === "symlink" ? "link" : "copy";
  return { kind, path, reason, entry };
}

interface CompareOptions {
  checksum: boolean;
  owners: boolean;
  fromHash: string | null;
  toHash: string | null;
}

/**
 * The one place that decides whether an entry needs a transfer. Checks, in order: size; then
 * content with `--checksum`, or mtime without it, where equal known hashes still spare the copy
 * (only the mtime is fixed); then mode and owner.
 *
 * @returns The change to make, or null when the entry is unchanged.
 */
export function compareEntries(
  from: Entry,
  to: Entry,
  options: CompareOptions,
): { kind: "update" | "link" | "attrs" | "dirattrs"; reason: string } | null {
  const { checksum, owners, fromHash, toHash } = options;
  const attrsDiffer = from.mode !== to.mode ||
    (owners && (from.uid !== to.uid || from.gid !== to.gid));
  if (from.kind === "symlink") {
    if (from.target !== to.target) return { kind: "link", reason: "symlink target differs" };
    return null; // a link's own mode means nothing on Linux; its mtime is set when made
  }
  if (from.kind === "dir") {
    if (attrsDiffer || from.mtimeMs !== to.mtimeMs) {
      return { kind: "dirattrs", reason: "folder attributes differ" };
    }
    return null;
  }
  if (from.size !== to.size) {
    return { kind: "update", reason: `size differs (${to.size} -> ${from.size})` };
  }
  const sameContent = fromHash !== null && fromHash === toHash;
  if (checksum && !sameContent) return { kind: "update", reason: "content differs" };
  if (fromHash !== null && toHash !== null && !sameContent) {
    return { kind: "update", reason: "content differs (SHA-256), size and mtime alike" };
  }
  if (from.mtimeMs !== to.mtimeMs) {
    return sameContent
      ? { kind: "attrs", reason: "mtime differs, same SHA-256" }
      : { kind: "update", reason: "mtime differs" };
  }
  if (attrsDiffer) return { kind: "attrs", reason: "mode or owner differs" };
  return null;
}

/**
 * Lists the files to hash before planning, those whose SHA-256 would change a decision and is
 * not known yet:
 *
 * - with `--checksum`, both sides of every same-size pair;
 * - a same-size pair whose mtime differs, when the target's hash is known (equal content then
 *   needs no copy): the source side, and the target too if the record has its hash but cannot
 *   trust it yet (see {@linkcode trustedHash});
 * - both sides of a pair that size and mtime call unchanged but whose source the record saw
 *   with another inode or ctime (an edit with the mtime put back);
 * - both sides of a pair that size and mtime call unchanged but whose target the record does
 *   not know as it is (an interrupted run, a replica made by another tool, damage with the mtime
 *   put back), so that after a run every target file has a hash in the record; without
 *   deletions, also the target files that stay without a source;
 * - for move detection, new source files and extraneous target files of a size found on both
 *   sides;
 * - restoring, a target the plan may overwrite whose recorded hash cannot be trusted yet, to
 *   tell whether it changed since the last sync.
 *
 * Restoring, targets are source files and are never hashed just to complete the record. A
 * hash the record has for a file as it is now is never read again just because it is not yet
 * trusted: a no-op run reads nothing. Pure.
 */
export function hashesNeeded(
  from: Scan,
  to: Scan,
  options:
    & Pick<PlanOptions, "checksum" | "fromHashes" | "toHashes" | "moves" | "overwriteNewer">
    & { deletes?: boolean; restore?: boolean },
): { from: string[]; to: string[] } {
  const fromHash = hashLookup(options.fromHashes);
  const toHash = hashLookup(options.toHashes);
  const restore = options.restore ?? false;
  const guardTargets = restore && !options.overwriteNewer;
  const wanted = { from: new Set<string>(), to: new Set<string>() };
  const both = (path: string, source: Entry, target: Entry) => {
    if (fromHash(path, source) === null) wanted.from.add(path);
    if (toHash(path, target) === null) wanted.to.add(path);
  };
  const newBySize = new Map<number, string[]>();
  for (const [path, source] of from.entries) {
    if (source.kind !== "file") continue;
    const target = to.entries.get(path);
    if (!target) {
      if (!options.moves) continue;
      const group = newBySize.get(source.size);
      if (group) group.push(path);
      else newBySize.set(source.size, [path]);
      continue;
    }
    if (target.kind !== "file") continue;
    const knownTarget = options.toHashes?.get(path);
    if (source.size !== target.size) {
      if (guardTargets && racilyRecorded(knownTarget, target)) wanted.to.add(path);
      continue;
    }
    if (options.checksum) {
      both(path, source, target);
    } else if (source.mtimeMs !== target.mtimeMs) {
      if (toHash(path, target) !== null) {
        if (fromHash(path, source) === null) wanted.from.add(path);
      } else if (recordedAsIs(knownTarget, target)) {
        // Hashed in the second it last changed: reading it again may spare a copy.
        both(path, source, target);
      }
    } else if (changedSinceRecorded(options.fromHashes?.get(path), source)) {
      // Size and mtime say unchanged, but the record saw another inode or ctime here: a file
      // swapped in, or edited with its mtime put back. Hash it rather than trust the mtime.
      wanted.from.add(path);
      if (toHash(path, target) === null) wanted.to.add(path);
    } else if (!restore && !recordedAsIs(knownTarget, target)) {
      // Size and mtime say unchanged, but the record cannot vouch for the replica's content.
      both(path, source, target);
    }
  }
  if (!restore && options.deletes === false) {
    // Replica files that stay without a source file get a hash too: --verify can check them.
    for (const [path, target] of to.entries) {
      if (target.kind !== "file" || from.entries.get(path)?.kind === "file") continue;
      if (!recordedAsIs(options.toHashes?.get(path), target)) wanted.to.add(path);
    }
  }
  if (newBySize.size > 0) {
    // Linear in the tree: each size found on both sides adds its new files once.
    const pairedSizes = new Set<number>();
    for (const [path, target] of to.entries) {
      if (target.kind !== "file" || from.entries.has(path) || !newBySize.has(target.size)) {
        continue;
      }
      pairedSizes.add(target.size);
      if (toHash(path, target) === null) wanted.to.add(path);
    }
    for (const size of pairedSizes) {
      for (const newPath of newBySize.get(size)!) {
        if (fromHash(newPath, from.entries.get(newPath)!) === null) wanted.from.add(newPath);
      }
    }
  }
  return { from: [...wanted.from], to: [...wanted.to] };
}

function changedSinceRecorded(known: RecordEntry | undefined, entry: Entry): boolean {
  return known !== undefined && (known.ino !== entry.ino || known.ctimeMs !== entry.ctimeMs);
}

/** Whether the record has a hash for the file as it is now, trusted or not. */
function recordedAsIs(known: RecordEntry | undefined, entry: Entry): boolean {
  return known !== undefined && known.hash !== null && sameSignature(known, entry);
}

/** Whether the record has a hash for the file as it is now that it cannot trust yet. */
function racilyRecorded(known: RecordEntry | undefined, entry: Entry): boolean {
  return recordedAsIs(known, entry) && trustedHash(known, entry) === null;
}

/**
 * Whether the record saw `entry` exactly as it is now: the same signature, and a hash that is
 * trusted or that this run's hash confirms. Folders and symlinks are never recorded: never
 * unchanged. Pure.
 */
export function unchangedSinceRecorded(known: RecordEntry | undefined, entry: Entry): boolean {
  if (entry.kind !== "file" || !recordedAsIs(known, entry)) return false;
  if (entry.hash !== undefined) return entry.hash === known!.hash;
  return trustedHash(known, entry) !== null;
}

function byPath(actions: Action[], order: "deepest" | "shallowest"): void {
  // In code-unit order a folder sorts before everything below it ("a" < "a/b"), so the reverse
  // order puts every entry before its parent.
  actions.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  if (order === "deepest") actions.reverse();
}

/** Counts for one run; printed as the summary and, with `--json`, as a JSON line. */
export interface RunSummary {
  copied: number;
  updated: number;
  deleted: number;
  moved: number;
  dirsCreated: number;
  dirsDeleted: number;
  attrsUpdated: number;
  failed: number;
  bytesCopied: number;
  durationMs: number;
  dryRun: boolean;
  /** Deletions not made: `--max-delete` was exceeded, or `--interactive` was declined. */
  deletionsHeldBack: number;
  /** True when `--max-delete` held deletions back (exit 3). */
  maxDeleteHit: boolean;
}

/** A fresh summary with every count at zero. */
export function emptySummary(dryRun: boolean): RunSummary {
  return {
    copied: 0,
    updated: 0,
    deleted: 0,
    moved: 0,
    dirsCreated: 0,
    dirsDeleted: 0,
    attrsUpdated: 0,
    failed: 0,
    bytesCopied: 0,
    durationMs: 0,
    dryRun,
    deletionsHeldBack: 0,
    maxDeleteHit: false,
  };
}

export function countPlan(plan: Plan): RunSummary {
  const summary = emptySummary(true);
  for (const action of plan.actions) {
    if (action.kind === "copy") summary.copied++, summary.bytesCopied += action.entry!.size;
    else if (action.kind === "update") summary.updated++, summary.bytesCopied += action.entry!.size;
    else if (action.kind === "link") summary[action.reason === "new" ? "copied" : "updated"]++;
    else if (action.kind === "delete") summary.deleted++;
    else if (action.kind === "mkdir") summary.dirsCreated++;
    else if (action.kind === "rmdir") summary.dirsDeleted++;
    else if (action.kind === "attrs") summary.attrsUpdated++;
    else if (action.kind === "move") summary.moved++;
  }
  return summary;
}
