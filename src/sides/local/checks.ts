/**
 * The local side's own checks before a run, on trees of this host: the paths against each other
 * (`places.ts`), our own files in each tree (`meta.ts`), a replica to restore from, and whether
 * a bind mount could show one folder in both trees (the mount table of this host). A side on
 * another host runs its own checks there.
 *
 * @module
 */

import { UsageError } from "../../errors.ts";
import { type Identity } from "../../files.ts";
import { quoted } from "../../format.ts";
import { checkMeta, hasRecord, isAdopted, type MetaPaths, metaPaths } from "./meta.ts";
import { checkPaths } from "./places.ts";
import { type ReplicaStore } from "../writer.ts";

/**
 * The checks that need no walk: the paths, our own files (the replica's, and the source's when
 * restoring), a replica to restore from.
 *
 * @throws {UsageError} When the run cannot go on.
 */
export function checkTrees(places: { source: string; replica: string; restore: boolean }): void {
  const { source, replica, restore } = places;
  checkPaths(source, replica);
  const replicaMeta = metaPaths(replica);
  checkMeta(replicaMeta);
  if (restore) {
    checkMeta(metaPaths(source));
    checkRestoreFrom(replica);
    refuseRestoreFromForeign(replica, replicaMeta);
  }
}

/**
 * The check of a tree of this host whose other tree is on another host: our own files in it
 * (the far end checks its tree, and the two paths cannot be compared).
 *
 * @throws {UsageError} When the run cannot go on.
 */
export function checkOwnFiles(root: string): void {
  checkMeta(metaPaths(root));
}

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

/**
 * A restore writes into SOURCE only from a folder that treesync made a replica of it: a typo in
 * the replica's path, or a folder another tool filled, must not spill into the source.
 */
function refuseRestoreFromForeign(replica: string, meta: MetaPaths): void {
  refuseRestoreFromStore(replica, {
    isAdopted: () => isAdopted(meta),
    hasRecord: () => hasRecord(meta),
  });
}

/**
 * The same refusal for a replica reached through its store, wherever it is (another host's):
 * `replica` names it in the message.
 *
 * @throws {UsageError} The replica is not adopted, or not one.
 */
export function refuseRestoreFromStore(
  replica: string,
  store: Pick<ReplicaStore, "isAdopted" | "hasRecord">,
): void {
  if (store.isAdopted()) return;
  const why = store.hasRecord()
    ? "it is not adopted yet (a run kept entries found there that the source lacked, so not " +
      "all of it came from the source)"
    : "it is not a treesync replica (it has no record in .treesync/)";
  throw new UsageError(
    `Cannot restore from ${quoted(replica)}: ${why}; copy what you need by hand`,
  );
}

/**
 * Whether the walks must first look through every folder for the other tree's root, before
 * anything is written: where a bind mount could show one folder in both trees (see
 * {@linkcode bindMountPossible}), or where the mount table cannot be read (Deno lets only `-A`
 * read `/proc/self/mountinfo`). A streamed walk would meet such a folder only after writes began.
 */
export function bindMountProbeNeeded(
  sides: { fromRoot: string; toRoot: string },
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
