/**
 * Deciding what to change in one folder (or any set of entries): from the two sides and the
 * record to a list of actions, each with a typed reason. Moves are decided at the end of a run,
 * among the entries left unmatched (see `endplan.ts`). Pure: no `Deno.*`, no I/O.
 *
 * @module
 */

import {
  type ChangeReason,
  compareEntries,
  type CompareOptions,
  type Difference,
  hashesMatter,
  unchangedReason,
} from "./changed.ts";
import { type DeleteLimit } from "./types.ts";
import { ancestors, isWithin, parentOf } from "./paths.ts";
import { type HashLookup, hashLookup, type RecordMap, unchangedSinceRecorded } from "./record.ts";
import {
  type Entry,
  type EntryKind,
  type Problem,
  type Scan,
  type Signature,
  signatureOf,
} from "./scan.ts";

export type { DeleteLimit } from "./types.ts";
export { type Difference, mergeDifferences } from "./changed.ts";

/**
 * One change to the tree written. Kinds: `mkdir` a folder, `copy` a new file, `update` a changed
 * file, `link` (re)create a symlink, `attrs` fix mode/owner/mtime only, `move` rename a replica
 * file or folder whose content reappeared elsewhere in the source, `delete` a file or symlink,
 * `rmdir` an emptied folder, `dirattrs` set a folder's mode/owner/mtime after it is filled,
 * `hardlink` make a file another name of a replica file (`--hard-links`).
 */
export interface Action {
  /** What to do. */
  kind:
    | "mkdir"
    | "copy"
    | "update"
    | "link"
    | "attrs"
    | "move"
    | "delete"
    | "rmdir"
    | "dirattrs"
    | "hardlink";
  /** Where, relative to the written tree's root. */
  path: string;
  /** Why; {@linkcode reasonText} puts it in words for `-vv` and the log. */
  reason: Reason;
  /** The entry to reproduce (every kind but `delete` and `rmdir`). */
  entry?: Entry;
  /** For `move`: the path it comes from; for `hardlink`: the name it links to; same tree. */
  from?: string;
  /**
   * For `update`, `attrs`, `dirattrs` and a `link` replaced: what differed from the source
   * before the run, as the change line shows it (`attrs d/x (mode, mtime)`). A `dirattrs` without it only puts
   * back what filling the folder changed, and is not listed.
   */
  differs?: Difference[];
  /**
   * Restoring a file: the SHA-256 the record has for the replica file copied. A copy that
   * reads other bytes is discarded: the replica's copy is damaged.
   */
  recordedHash?: string;
  /**
   * Restoring a file: what the source name must still be at the final rename, or null when
   * nothing may be there. A source file changed meanwhile is kept, never replaced.
   */
  replacing?: Signature | null;
}

/**
 * Why an action is planned: a code that code may test, with what its words need. Only
 * {@linkcode reasonText} turns it into text, so rewording a line changes no decision.
 */
export type Reason =
  | { code: "new" }
  | { code: "type-changed" }
  | { code: "replaced"; by: EntryKind }
  | { code: "inside-replaced" }
  | { code: "not-in-source" }
  | ChangeReason
  | { code: "folder-filled" }
  | { code: "same-folder-tree" }
  | { code: "same-content" }
  | { code: "hard-linked" }
  | { code: "hard-links-split" };

/** What each kind of action does, in words for a message: `Cannot ${ACTION_WORDS.copy}: …`. */
export const ACTION_WORDS: Record<Action["kind"], string> = {
  mkdir: "create the folder",
  copy: "copy",
  update: "update",
  link: "create the symlink",
  attrs: "set the attributes",
  move: "move",
  delete: "delete",
  rmdir: "delete the folder",
  dirattrs: "set the folder's attributes",
  hardlink: "hard-link",
};

/** A reason in words, as `-vv` and the log show it. */
export function reasonText(reason: Reason): string {
  switch (reason.code) {
    case "new":
      return "new";
    case "type-changed":
      return "type changed";
    case "replaced":
      return `replaced by a ${reason.by}`;
    case "inside-replaced":
      return "inside a folder replaced by another type";
    case "not-in-source":
      return "not in source";
    case "link-target-differs":
      return "symlink target differs";
    case "folder-attrs-differ":
      return "folder attributes differ";
    case "size-differs":
      return `size differs (${reason.toSize} -> ${reason.fromSize})`;
    case "content-differs":
      return "content differs";
    case "hash-differs":
      return "content differs (SHA-256), size and mtime alike";
    case "mtime-differs-same-hash":
      return "mtime differs, same SHA-256";
    case "mtime-differs":
      return "mtime differs";
    case "mode-or-owner-differs":
      return "mode or owner differs";
    case "folder-filled":
      return "folder attributes";
    case "same-folder-tree":
      return "same folder tree";
    case "same-content":
      return "same size and SHA-256";
    case "hard-linked":
      return "another name of the same source file";
    case "hard-links-split":
      return "hard-linked in the replica to a name it is not linked to in the source";
  }
}

/** What {@linkcode planMirror} decided. */
export interface Plan {
  /** In the order they must run. */
  actions: Action[];
  /** Changes the options forbade or that cannot be made safely: each makes the run fail. */
  blocked: Problem[];
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
  /**
   * Restoring: `to` is the source and `toHashes` the record's source side. An entry of the tree written the
   * last sync did not see as it is now (see {@linkcode unchangedSinceRecorded}) is kept and
   * reported, not overwritten, unless `overwriteNewer`. Nothing is deleted either way.
   */
  restore?: boolean;
  /** With `restore`: overwrite files written changed since the last sync too. */
  overwriteNewer?: boolean;
  /** Called with each unchanged entry and why, for `-vv`. */
  explain?: (path: string, reason: string) => void;
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
  const walk: Walk = {
    from,
    to,
    options,
    isProtected: protection(from, to),
    fromHash: hashLookup(options.fromHashes),
    toHash: hashLookup(options.toHashes),
  };
  const draft: Draft = {
    removals: [],
    creations: [],
    deletions: [],
    blocked: [],
    touchedFolders: new Set(),
    folderDiffers: new Map(),
    replaced: new Set(),
    typeChangesKept: new Set(),
  };
  for (const [path, fromEntry] of from.entries) planFromEntry(path, fromEntry, walk, draft);
  for (const [path, toEntry] of to.entries) planToEntry(path, toEntry, walk, draft);
  byPath(draft.removals, "deepest");
  byPath(draft.creations, "shallowest");
  byPath(draft.deletions, "deepest");

  const remaining = { creations: draft.creations, deletions: draft.deletions };
  // What would be created below an entry left in place has no folder to go in.
  const creations = remaining.creations.filter((a) =>
    !isWithin(a.path, draft.typeChangesKept, BELOW)
  );
  const folderAttrs = folderAttributes(from, draft);
  if (options.restore) { for (const action of creations) guardRestore(action, walk); }
  return {
    actions: [
      ...draft.removals,
      ...creations.filter((a) => a.kind === "mkdir"),
      ...creations.filter((a) => a.kind !== "mkdir"),
      ...remaining.deletions,
      ...folderAttrs,
    ],
    blocked: draft.blocked,
  };
}

const BELOW = { below: true };

/**
 * Restoring, a file copy carries what must hold when it lands: the replica's bytes must hash to
 * what the record has for them, and the source name must still be what the walk saw.
 */
function guardRestore(action: Action, walk: Walk): void {
  if (action.kind !== "copy" && action.kind !== "update") return;
  const recorded = walk.options.fromHashes?.get(action.path)?.hash;
  if (recorded) action.recordedHash = recorded;
  const toEntry = walk.to.entries.get(action.path);
  action.replacing = toEntry ? signatureOf(toEntry) : null;
}

/** What {@linkcode planMirror} looks at while it walks the two scans. */
interface Walk {
  from: Scan;
  to: Scan;
  options: PlanOptions;
  /** Whether deleting or replacing the written tree's entry at a path could cost data a scan kept. */
  isProtected: (path: string) => boolean;
  fromHash: HashLookup;
  toHash: HashLookup;
}

/** What {@linkcode planMirror} gathers while it walks the two scans. */
interface Draft {
  /** Type changes: run first. */
  removals: Action[];
  creations: Action[];
  /** Extraneous entries: run after the copies. */
  deletions: Action[];
  blocked: Problem[];
  /** Folders whose mtime the run changes: their attributes are set last. */
  touchedFolders: Set<string>;
  /** Of those, the folders whose attributes differed from the source's before the run. */
  folderDiffers: Map<string, Difference[]>;
  /** Written folders removed to make way for another type. */
  replaced: Set<string>;
  /** Type changes left as they are: nothing happens at or below them. */
  typeChangesKept: Set<string>;
}

/**
 * Paths whose target entry must never be deleted or replaced: at or below a path either scan
 * protects, or a folder above one.
 */
function protection(from: Scan, to: Scan): (path: string) => boolean {
  const protectedPaths = new Set([...from.protectedPaths, ...to.protectedPaths]);
  const above = new Set<string>();
  for (const path of protectedPaths) for (const folder of ancestors(path)) above.add(folder);
  return (path) => above.has(path) || isWithin(path, protectedPaths);
}

/** Plans what the read tree's entry at `path` needs in the tree written. */
function planFromEntry(path: string, fromEntry: Entry, walk: Walk, draft: Draft): void {
  const toEntry = walk.to.entries.get(path);
  if (path === "" && (fromEntry.kind !== "dir" || (toEntry && toEntry.kind !== "dir"))) {
    // Never plan to replace a root: whatever made it look like this, it is not a change.
    draft.blocked.push({
      path: ".",
      message: "Not mirrored: the source or replica root is not a folder",
    });
  } else if (toEntry && toEntry.kind !== fromEntry.kind) {
    planTypeChange(path, fromEntry, toEntry, walk, draft);
  } else if (!toEntry) {
    draft.touchedFolders.add(parentOf(path));
    if (fromEntry.kind === "dir") draft.touchedFolders.add(path); // mkdir gives it today's mtime
    draft.creations.push(creationFor(path, fromEntry, { code: "new" }));
  } else {
    planDifference(path, fromEntry, toEntry, walk, draft);
  }
}

/** Plans replacing the written tree's entry with the read tree's one of another type, where allowed. */
function planTypeChange(
  path: string,
  fromEntry: Entry,
  toEntry: Entry,
  walk: Walk,
  draft: Draft,
): void {
  const { deletes, restore } = walk.options;
  if (!deletes || restore) {
    // Replacing one type with another removes what was there: never without deletions.
    draft.typeChangesKept.add(path);
    draft.blocked.push({
      path,
      message: restore
        ? `Not restored: the source has a ${kindName(toEntry.kind)} here and the replica a ` +
          `${kindName(fromEntry.kind)}; restore never replaces one with the other`
        : `Not replaced: the replica has a ${kindName(toEntry.kind)} here and the source a ` +
          `${kindName(fromEntry.kind)}, and deletions are off`,
    });
    return;
  }
  const reason: Reason = { code: "replaced", by: fromEntry.kind };
  if (toEntry.kind === "dir") {
    if (walk.isProtected(path)) {
      draft.blocked.push({
        path,
        message: `Not replaced: the replica's folder holds entries that are excluded or unreadable`,
      });
      return;
    }
    draft.replaced.add(path);
    draft.removals.push({ kind: "rmdir", path, reason });
  } else {
    // A file or symlink giving way is an overwrite, as rsync does without --delete.
    draft.removals.push({ kind: "delete", path, reason });
  }
  draft.touchedFolders.add(parentOf(path));
  if (fromEntry.kind === "dir") draft.touchedFolders.add(path);
  draft.creations.push(creationFor(path, fromEntry, { code: "type-changed" }));
}

/** Plans what an entry of the same type on both sides needs, if anything. */
function planDifference(
  path: string,
  fromEntry: Entry,
  toEntry: Entry,
  walk: Walk,
  draft: Draft,
): void {
  const { checksum, owners, explain, restore, overwriteNewer, toHashes } = walk.options;
  const matter = hashesMatter(fromEntry, toEntry, checksum);
  const compare: CompareOptions = {
    checksum,
    owners,
    fromHash: matter ? walk.fromHash(path, fromEntry) : null,
    toHash: matter ? walk.toHash(path, toEntry) : null,
  };
  const change = compareEntries(fromEntry, toEntry, compare);
  if (change === null) {
    explain?.(path, unchangedReason(fromEntry, compare));
    return;
  }
  if (change.kind === "dirattrs") {
    draft.touchedFolders.add(path);
    draft.folderDiffers.set(path, change.differs);
    return;
  }
  if (restore && !overwriteNewer && !unchangedSinceRecorded(toHashes?.get(path), toEntry)) {
    draft.blocked.push({
      path,
      message: `Kept: the source's ${kindName(toEntry.kind)} is not as the last sync left ` +
        `it and differs from the replica's (${reasonText(change.reason)}); pass ` +
        `--overwrite-newer to replace it`,
    });
    return;
  }
  // The attributes of a file with other names cannot change alone (every name would change,
  // some perhaps outside the tree): the writer copies it afresh, so the plan says so.
  const kind = change.kind === "attrs" && toEntry.kind === "file" && (toEntry.nlink ?? 1) > 1
    ? "update"
    : change.kind;
  if (kind !== "attrs") draft.touchedFolders.add(parentOf(path));
  const action: Action = { kind, path, reason: change.reason, entry: fromEntry };
  if (change.differs.length > 0) action.differs = change.differs;
  draft.creations.push(action);
}

/** Plans the deletion of the written tree's entry at `path` when the source has none like it. */
function planToEntry(path: string, toEntry: Entry, walk: Walk, draft: Draft): void {
  const fromEntry = walk.from.entries.get(path);
  if (path === "" || (fromEntry && fromEntry.kind === toEntry.kind)) return;
  if (fromEntry && !draft.replaced.has(path) && toEntry.kind !== "dir") return; // overwritten
  if (draft.replaced.has(path)) return; // already planned as a removal
  if (walk.isProtected(path)) return;
  if (!walk.options.deletes) return;
  const underReplaced = isWithin(path, draft.replaced, BELOW);
  const action: Action = {
    kind: toEntry.kind === "dir" ? "rmdir" : "delete",
    path,
    reason: { code: underReplaced ? "inside-replaced" : "not-in-source" },
  };
  (underReplaced ? draft.removals : draft.deletions).push(action);
  draft.touchedFolders.add(parentOf(path));
}

/** Attributes for every source folder the plan fills or empties, deepest first. */
function folderAttributes(from: Scan, draft: Draft): Action[] {
  const actions: Action[] = [];
  for (const path of draft.touchedFolders) {
    const fromEntry = from.entries.get(path);
    if (isWithin(path, draft.typeChangesKept)) continue;
    if (fromEntry?.kind !== "dir") continue;
    actions.push(folderAttrsAction(path, fromEntry, draft.folderDiffers.get(path)));
  }
  byPath(actions, "deepest");
  return actions;
}

/**
 * Setting a folder's attributes at the end of a run: listed as a fix when they differed from
 * the source's before the run (`differs`), else only putting back what filling it changed.
 */
export function folderAttrsAction(path: string, entry: Entry, differs?: Difference[]): Action {
  return differs && differs.length > 0
    ? { kind: "dirattrs", path, reason: { code: "folder-attrs-differ" }, entry, differs }
    : { kind: "dirattrs", path, reason: { code: "folder-filled" }, entry };
}

function kindName(kind: EntryKind): string {
  return kind === "dir" ? "folder" : kind;
}

/**
 * Whether an action removes or replaces what is in the target (a deletion, an update, a link
 * over an existing entry): what `--keep-deleted` keeps in the trash.
 */
export function replacesData(action: Action): boolean {
  // A link of another type replaces nothing itself: what was there went with its deletion.
  return action.kind === "delete" || action.kind === "update" ||
    (action.kind === "link" && action.reason.code === "link-target-differs");
}

/** The number of entries a `--max-delete` limit allows in a replica of `entryCount` entries. */
export function deleteAllowance(limit: DeleteLimit, entryCount: number): number {
  return "count" in limit ? limit.count : Math.floor((limit.percent / 100) * entryCount);
}

function creationFor(path: string, entry: Entry, reason: Reason): Action {
  const kind = entry.kind === "dir" ? "mkdir" : entry.kind === "symlink" ? "link" : "copy";
  return { kind, path, reason, entry };
}

function byPath(actions: Action[], order: "deepest" | "shallowest"): void {
  // In code-unit order a folder sorts before everything below it ("a" < "a/b"), so the reverse
  // order puts every entry before its parent.
  actions.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  if (order === "deepest") actions.reverse();
}
