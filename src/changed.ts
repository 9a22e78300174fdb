/**
 * Whether an entry changed: the one place that compares a source entry with its target (size,
 * content, mtime, mode, owner, link target), says which hashes would change that answer, and
 * whether a whole folder is unchanged so that the planner may be skipped. Used by the planner
 * (`plan.ts`), the hash step (`needs.ts`) and the walk's fast path (`engine.ts`). Pure: no
 * `Deno.*`, no I/O.
 *
 * @module
 */

import {
  changedSinceRecorded,
  type HashLookup,
  racilyRecorded,
  recordedAsIs,
  type RecordMap,
} from "./record.ts";
import { type RecordRow } from "./recordfile.ts";
import { type Entry, type FolderListing, sameSignature } from "./scan.ts";

/**
 * One way a target entry differed from the source's. Change lines list them in this order:
 * what the entry holds, who may use it, when it was changed.
 */
export type Difference =
  | "size"
  | "content"
  | "target"
  | "links"
  | "mtime"
  | "mode"
  | "owner"
  | "group";

/** The order {@linkcode Difference}s are listed in. */
const DIFFERENCE_ORDER: readonly Difference[] = [
  "size",
  "content",
  "target",
  "links",
  "mode",
  "owner",
  "group",
  "mtime",
];

/** Two lists of differences as one, in the listed order. Pure. */
export function mergeDifferences(a: readonly Difference[], b: readonly Difference[]): Difference[] {
  return DIFFERENCE_ORDER.filter((d) => a.includes(d) || b.includes(d));
}

/** Why an entry of the same type on both sides needs a change (a part of the plan's `Reason`). */
export type ChangeReason =
  | { code: "link-target-differs" }
  | { code: "folder-attrs-differ" }
  | { code: "size-differs"; fromSize: number; toSize: number }
  | { code: "content-differs" }
  | { code: "hash-differs" }
  | { code: "mtime-differs-same-hash" }
  | { code: "mtime-differs" }
  | { code: "mode-or-owner-differs" };

/**
 * Whether the hashes of a pair matter to {@linkcode compareEntries}: only for same-size files
 * that `--checksum` compares, whose mtimes differ, or that were hashed because the record saw
 * them change or cannot vouch for them (see `hashesNeeded`).
 */
export function hashesMatter(source: Entry, target: Entry, checksum: boolean): boolean {
  return source.kind === "file" && source.size === target.size &&
    (checksum || source.mtimeMs !== target.mtimeMs || source.hash !== undefined ||
      target.hash !== undefined);
}

/**
 * Why an entry {@linkcode compareEntries} found unchanged is left alone, in words, for `-vvv`:
 * `same size and mtime`, `same size, mtime and SHA-256`, `same target`.
 */
export function unchangedReason(from: Entry, options: CompareOptions): string {
  if (from.kind === "symlink") return "same target";
  if (from.kind === "dir") return "same attributes";
  const sameHash = options.fromHash !== null && options.fromHash === options.toHash;
  return sameHash ? "same size, mtime and SHA-256" : "same size and mtime";
}

/** What {@linkcode hashesForPair} looks at, and the paths it wants hashed. */
export interface PairHashNeed {
  /** How the plan will decide. */
  options: {
    checksum: boolean;
    overwriteNewer?: boolean;
    restore?: boolean;
    fromHashes?: RecordMap;
    toHashes?: RecordMap;
  };
  /** Hashes known of the source's files (the record's, or read this run). */
  fromHash: HashLookup;
  /** Hashes known of the target's files. */
  toHash: HashLookup;
  /** The paths to hash, on each side. */
  wanted: { from: Set<string>; to: Set<string> };
}

/** What {@linkcode compareEntries} compares with. */
export interface CompareOptions {
  /** `--checksum`: content decides, not the mtime. */
  checksum: boolean;
  /** Owner and group are compared (running as root). */
  owners: boolean;
  /** The source file's SHA-256, if known (and it matters: see {@linkcode hashesMatter}). */
  fromHash: string | null;
  /** The target file's SHA-256, if known. */
  toHash: string | null;
}

/** A change {@linkcode compareEntries} found: what to do, why, and what differed. */
export interface Change {
  /** The action that makes the entry match. */
  kind: "update" | "link" | "attrs" | "dirattrs";
  /** Why. */
  reason: ChangeReason;
  /** What differed. */
  differs: Difference[];
}

/**
 * The one place that decides whether an entry needs a transfer. Checks, in order: size; then
 * content with `--checksum`, or mtime without it, where equal known hashes still spare the copy
 * (only the mtime is fixed); then mode and owner.
 *
 * @returns The change to make, or null when the entry is unchanged.
 */
export function compareEntries(from: Entry, to: Entry, options: CompareOptions): Change | null {
  const { checksum, fromHash, toHash } = options;
  if (from.kind === "symlink") {
    if (from.target !== to.target) {
      return { kind: "link", reason: { code: "link-target-differs" }, differs: ["target"] };
    }
    return null; // a link's own mode means nothing on Linux; its mtime is set when made
  }
  const differs = differences(from, to, options);
  if (from.kind === "dir") {
    if (differs.length === 0) return null;
    return { kind: "dirattrs", reason: { code: "folder-attrs-differ" }, differs };
  }
  if (from.size !== to.size) {
    const reason: ChangeReason = { code: "size-differs", fromSize: from.size, toSize: to.size };
    return { kind: "update", reason, differs };
  }
  const sameContent = fromHash !== null && fromHash === toHash;
  if (checksum && !sameContent) {
    return { kind: "update", reason: { code: "content-differs" }, differs: withContent(differs) };
  }
  if (fromHash !== null && toHash !== null && !sameContent) {
    return { kind: "update", reason: { code: "hash-differs" }, differs };
  }
  if (from.mtimeMs !== to.mtimeMs) {
    return sameContent
      ? { kind: "attrs", reason: { code: "mtime-differs-same-hash" }, differs }
      : { kind: "update", reason: { code: "mtime-differs" }, differs };
  }
  if (differs.length > 0) {
    return { kind: "attrs", reason: { code: "mode-or-owner-differs" }, differs };
  }
  return null;
}

/**
 * What differs between two entries of one kind: size, content (when both hashes are known and
 * the sizes alike), mode, owner and group (when they are kept), mtime.
 */
function differences(from: Entry, to: Entry, options: CompareOptions): Difference[] {
  const { owners, fromHash, toHash } = options;
  const differs: Difference[] = [];
  if (from.kind === "file" && from.size !== to.size) differs.push("size");
  else if (fromHash !== null && toHash !== null && fromHash !== toHash) differs.push("content");
  if (from.mode !== to.mode) differs.push("mode");
  if (owners && from.uid !== to.uid) differs.push("owner");
  if (owners && from.gid !== to.gid) differs.push("group");
  if (from.mtimeMs !== to.mtimeMs) differs.push("mtime");
  return differs;
}

/** With `--checksum`, a hash that could not be read still counts as content that differs. */
function withContent(differs: Difference[]): Difference[] {
  return mergeDifferences(differs, ["content"]);
}

/**
 * The hashes that decide whether the file at `path` needs a copy (see `hashesNeeded` for the
 * list of cases), added to `wanted`. Pure.
 */
export function hashesForPair(
  path: string,
  pair: { source: Entry; target: Entry },
  need: PairHashNeed,
): void {
  const { source, target } = pair;
  const { options, fromHash, toHash, wanted } = need;
  const restore = options.restore ?? false;
  const knownTarget = options.toHashes?.get(path);
  const both = () => {
    if (fromHash(path, source) === null) wanted.from.add(path);
    if (toHash(path, target) === null) wanted.to.add(path);
  };
  if (source.size !== target.size) {
    const guardTargets = restore && !options.overwriteNewer;
    if (guardTargets && racilyRecorded(knownTarget, target)) wanted.to.add(path);
  } else if (options.checksum) {
    both();
  } else if (source.mtimeMs !== target.mtimeMs) {
    if (toHash(path, target) !== null) {
      if (fromHash(path, source) === null) wanted.from.add(path);
    } else if (recordedAsIs(knownTarget, target)) {
      // Hashed in the second it last changed: reading it again may spare a copy.
      both();
    }
  } else if (changedSinceRecorded(options.fromHashes?.get(path), source)) {
    // Size and mtime say unchanged, but the record saw another inode or ctime here: a file
    // swapped in, or edited with its mtime put back. Hash it rather than trust the mtime.
    wanted.from.add(path);
    if (toHash(path, target) === null) wanted.to.add(path);
  } else if (restore && changedSinceRecorded(knownTarget, target)) {
    // Restoring, the source file looks unchanged by size and mtime, but the record saw another
    // inode or ctime: edited in place with both put back. Hashing tells a copy that matches
    // the replica from one to keep.
    both();
  } else if (!restore && !recordedAsIs(knownTarget, target)) {
    // Size and mtime say unchanged, but the record cannot vouch for the replica's content.
    both();
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
    if (!sameSignature(row.source, source) || !sameSignature(row.replica, target)) return false;
    if (source.size !== target.size) return false;
  }
  return recorded === known.size;
}
