/**
 * Before a run writes: the checks that can refuse it (paths, our own files, a root that
 * cannot be listed, an empty source, a bind mount), the lock, and the first writes (the
 * replica, our folders, leftovers of a killed run); and what is undone at its end.
 *
 * @module
 */

import { type Options } from "./cli.ts";
import { RefusedError, UsageError } from "./errors.ts";
import { formatDuration, quoted } from "./format.ts";
import { type Reporter } from "./log.ts";
import { checkOwnFiles, checkTrees } from "./sides/local/checks.ts";
import { type RunTrees } from "./sides/sides.ts";
import {
  type LockMode,
  type ReplicaLock,
  type ReplicaStore,
  type TreeWriter,
} from "./sides/writer.ts";
import { type FolderListing } from "./scan.ts";

/**
 * The checks that need no walk: paths, our own files, a replica to restore from. With a tree on
 * another host, only this host's tree is checked here: the far end checks its own when the
 * tree is opened.
 */
export function checkBeforeRun(options: Options): RunSides {
  if (options.remote === undefined) checkTrees(options);
  else checkOwnFiles(options.remote.side === "source" ? options.replica : options.source);
  return runSides(options);
}

/** The two trees of a run, as the command line named them. */
export interface RunSides {
  /** The root of the tree copied from (the replica, when restoring). */
  fromRoot: string;
  /** The root of the tree written to (the source, when restoring). */
  toRoot: string;
}

function runSides(options: Options): RunSides {
  const [fromRoot, toRoot] = options.restore
    ? [options.replica, options.source]
    : [options.source, options.replica];
  return { fromRoot, toRoot };
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
