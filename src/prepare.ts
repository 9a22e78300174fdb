/**
 * Before a run writes: the checks that can refuse it (paths, our own files, a root that
 * cannot be listed, an empty source, a bind mount), the lock, and the first writes (the
 * replica, our folders, leftovers of a killed run); and what is undone at its end.
 *
 * @module
 */

import { type Options } from "./cli.ts";
import { RefusedError, UsageError } from "./errors.ts";
import { type Identity } from "./files.ts";
import { formatDuration, quoted } from "./format.ts";
import { type Reporter } from "./log.ts";
import { checkMeta, hasRecord, isAdopted, type MetaPaths, metaPaths } from "./sides/local/meta.ts";
import { type RunTrees } from "./sides/sides.ts";
import {
  type LockMode,
  type ReplicaLock,
  type ReplicaStore,
  type TreeWriter,
} from "./sides/writer.ts";
import { checkPaths } from "./places.ts";
import { type FolderListing } from "./scan.ts";

/** Checks that a restore has a replica to restore from. */
function checkRestoreFrom(replica: string): void {
  let isFolder = false;
  try {
    isFolder = Deno.statSync(replica).isDirectory;
  } catch {
    // Missing or unreadable: nothing to restore from either way.
  }
  if (!isFolder) {
    throw new UsageError(`Replica ${quoted(replica)} is not a folder: nothing to restore from`);
  }
}

/** The checks that need no walk: paths, our own files, a replica to restore from. */
export function checkBeforeRun(options: Options): RunSides {
  checkPaths(options.source, options.replica);
  const sides = runSides(options);
  checkMeta(sides.replicaMeta);
  if (options.restore) {
    checkMeta(sides.targetMeta);
    checkRestoreFrom(options.replica);
    refuseRestoreFromForeign(options.replica, sides.replicaMeta);
  }
  return sides;
}

/**
 * A restore writes into SOURCE only from a folder that treesync made a replica of it: a typo in
 * the replica's path, or a folder another tool filled, must not spill into the source.
 */
function refuseRestoreFromForeign(replica: string, meta: MetaPaths): void {
  if (isAdopted(meta)) return;
  const why = hasRecord(meta)
    ? "it is not adopted yet (a run kept entries found there that the source lacked, so not " +
      "all of it came from the source)"
    : "it is not a treesync replica (it has no record in .treesync/)";
  throw new UsageError(
    `Cannot restore from ${quoted(replica)}: ${why}; copy what you need by hand`,
  );
}

/** The two trees of a run and where each keeps our own files. */
export interface RunSides {
  /** The root of the tree copied from (the replica, when restoring). */
  fromRoot: string;
  /** The root of the tree written to (the source, when restoring). */
  toRoot: string;
  /** The replica's: lock and record. */
  replicaMeta: MetaPaths;
  /** The written tree's: temporary files and trash (the source's, when restoring). */
  targetMeta: MetaPaths;
}

function runSides(options: Options): RunSides {
  const [fromRoot, toRoot] = options.restore
    ? [options.replica, options.source]
    : [options.source, options.replica];
  // Files are written next to where they go, on the same file system, so the final rename
  // works: in the written tree's metadata folder (a top-level .treesync is never mirrored).
  return {
    fromRoot,
    toRoot,
    replicaMeta: metaPaths(options.replica),
    targetMeta: metaPaths(toRoot),
  };
}

/** Takes the replica lock unless this process still holds it. */
export function takeLock(
  control: { lock: ReplicaLock | null },
  store: Pick<ReplicaStore, "lock">,
  mode: LockMode,
): void {
  if (control.lock?.stillHeld()) return;
  control.lock?.release();
  control.lock = store.lock(mode);
}

/**
 * The checks that need the first listings, before anything is written: a root that cannot be
 * listed, an empty source over a full replica.
 */
export function refuseUnsafe(
  options: Options,
  roots: { from: FolderListing | null; to: FolderListing | null },
): void {
  const [fromName, toName] = options.restore ? ["replica", "source"] : ["source", "replica"];
  const [fromRoot, toRoot] = options.restore
    ? [options.replica, options.source]
    : [options.source, options.replica];
  const sides = [[roots.from, fromName, fromRoot], [roots.to, toName, toRoot]] as const;
  for (const [listing, name, root] of sides) {
    const rootProblem = listing?.problems.find((problem) => problem.path === "");
    if (rootProblem) {
      const why = rootProblem.message.replace(/^Cannot list folder: /, "");
      throw new UsageError(`Cannot list the ${name} ${quoted(root)}: ${why}`);
    }
    if (listing?.nested !== undefined) {
      refuseNested(options, { nestedIn: name, path: listing.nested });
    }
  }
  if (!options.restore && options.deletes && !options.allowEmptySource) {
    const { from, to } = roots;
    const fromEmpty = from !== null && from.entries.size === 0 && from.problems.length === 0;
    if (fromEmpty && (to?.entries.size ?? 0) > 0) {
      throw new RefusedError(
        `Refusing to empty ${quoted(options.replica)}: the source ${
          quoted(options.source)
        } is empty ` +
          `(an unmounted disk looks like this). Pass --allow-empty-source if it is meant`,
      );
    }
  }
}

/** Refuses a tree that holds the other's root (a bind mount). */
export function refuseNested(options: Options, found: { nestedIn: string; path: string }): never {
  const other = found.nestedIn === "source" ? "replica" : "source";
  throw new UsageError(
    `Cannot mirror ${quoted(options.source)} into ${quoted(options.replica)}: the ${other} is ` +
      `the folder ${quoted(found.path)} of the ${found.nestedIn} (a bind mount shows one ` +
      `folder twice)`,
  );
}

/**
 * Whether the walks must first look through every folder for the other tree's root, before
 * anything is written: where a bind mount could show one folder in both trees (see
 * {@linkcode bindMountPossible}), or where the mount table cannot be read (Deno lets only `-A`
 * read `/proc/self/mountinfo`). A streamed walk would meet such a folder only after writes began.
 */
export function bindMountProbeNeeded(
  sides: RunSides,
  roots: { from: Identity; to: Identity | null },
): boolean {
  if (roots.to === null) return false;
  const mountPoints = readMountPoints();
  if (mountPoints === null) return true;
  const real = { from: Deno.realPathSync(sides.fromRoot), to: Deno.realPathSync(sides.toRoot) };
  return bindMountPossible(mountPoints, {
    roots: real,
    sameDevice: roots.from.dev === roots.to.dev,
  });
}

/**
 * Whether a folder could be in both trees through a bind mount. Two paths reach one folder
 * only through two mounts of its file system (folders have no hard links): so only when a mount
 * point lies inside either tree, or the two roots, on one device, are reached through two
 * different mounts. Paths are real (no links). Pure.
 */
export function bindMountPossible(
  mountPoints: string[],
  input: { roots: { from: string; to: string }; sameDevice: boolean },
): boolean {
  const { roots, sameDevice } = input;
  const below = (path: string, folder: string) =>
    path !== folder && path.startsWith(folder === "/" ? "/" : `${folder}/`);
  if (mountPoints.some((point) => below(point, roots.from) || below(point, roots.to))) {
    return true;
  }
  const mountOf = (path: string) => {
    let found = "";
    for (const point of mountPoints) {
      if ((point === path || below(path, point)) && point.length > found.length) found = point;
    }
    return found;
  };
  return sameDevice && mountOf(roots.from) !== mountOf(roots.to);
}

/** The mount points this process sees, or null when that cannot be read. */
function readMountPoints(): string[] | null {
  try {
    return Deno.readTextFileSync("/proc/self/mountinfo").split("\n")
      .map((line) => line.split(" ")[4])
      .filter((point): point is string => point !== undefined)
      // Spaces, tabs and backslashes in mount points are written as octal escapes.
      .map((point) =>
        point.replace(/\\([0-7]{3})/g, (_, octal) => String.fromCharCode(parseInt(octal, 8)))
      );
  } catch {
    return null;
  }
}

/** What a writing run set up: the tree it writes and the replica's own files, prepared. */
export interface PreparedWrites {
  /** The tree written (the source, when restoring), its folders of ours made. */
  writer: TreeWriter;
  /** The replica's own files; its folder made and the lock taken unless restoring. */
  store: ReplicaStore;
}

/**
 * The first writes of a run, once every check has passed: the replica and our folders, the
 * lock, leftovers of a killed run.
 */
export function prepareWrites(
  options: Options,
  trees: RunTrees,
  control: { lock: ReplicaLock | null },
): PreparedWrites {
  const { store, to: writer } = trees;
  if (!options.restore) {
    // Restoring writes into the source only: the replica, read-only perhaps, is just read.
    store.prepare();
    takeLock(control, store, "create");
    control.lock!.announce();
  }
  writer.prepare({
    // In the source (restoring) nothing is removed but what this run made.
    cleanLeftovers: !options.restore,
    removeMadeFolders: options.restore,
    trash: options.keepDeletedMs !== null,
    now: new Date(),
  });
  return { writer, store };
}

/** Removes the trash folders older than `--keep-deleted`, once the run is decided. */
export function purgeExpiredTrash(
  options: Options,
  prepared: PreparedWrites,
  report: Reporter,
): void {
  if (options.keepDeletedMs === null) return;
  for (const name of prepared.writer.purgeTrash(options.keepDeletedMs, new Date())) {
    report.change(`purge trash ${name}/ (older than ${formatDuration(options.keepDeletedMs)})`);
  }
}

/** Removes folders this run made, innermost first, each only if empty and still the one made. */
export function removeMadeFolders(prepared: PreparedWrites | null): void {
  prepared?.writer.removeMadeFolders();
}
