/**
 * Where things are on this host: SOURCE, REPLICA and the log file, checked against each other
 * before anything runs (the same folder, one inside the other through symlinks or bind mounts, a
 * log inside a tree, a log file that holds something else).
 *
 * @module
 */

import { dirname, join } from "node:path";
import { errorText, UsageError } from "../../errors.ts";
import { pathExists } from "../../files.ts";
import { quoted } from "../../format.ts";

/** Real path of `path`, or of its nearest existing ancestor with the rest appended. */
function realPathOrNearest(path: string): string {
  const missing: string[] = [];
  for (let current = path;; current = dirname(current)) {
    try {
      return join(Deno.realPathSync(current), ...missing.reverse());
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound) || current === dirname(current)) throw error;
      missing.push(current.slice(dirname(current).length).replace(/^\//, ""));
    }
  }
}

/** `device:inode` of an existing path and of each folder above it, nearest first. */
function folderIdentities(realPath: string): string[] {
  const identities: string[] = [];
  for (let path = realPath;; path = dirname(path)) {
    try {
      const info = Deno.statSync(path);
      identities.push(`${info.dev}:${info.ino}`);
    } catch {
      // A part of a replica path that does not exist yet.
    }
    if (path === dirname(path)) return identities;
  }
}

/** Whether `inner` is `outer` or below it (real paths). */
function isInside(inner: string, outer: string): boolean {
  return inner === outer || inner.startsWith(outer.endsWith("/") ? outer : `${outer}/`);
}

/**
 * Refuses a log file inside SOURCE or REPLICA: there it would be mirrored, or deleted as
 * extraneous (and a link planted in its place would lead the log's lines elsewhere).
 *
 * @throws {UsageError} Naming the log and the tree.
 */
export function checkLogPlace(
  options: {
    logPath: string | null;
    source: string;
    replica: string;
    /** The tree on another host, if any: only this host's tree can hold the log. */
    remote?: { side: "source" | "replica" };
  },
): void {
  if (options.logPath === null) return;
  refuseForeignLog(options.logPath);
  let log: string;
  try {
    log = realPathOrNearest(options.logPath);
  } catch {
    return; // a log that cannot be resolved fails when it is opened, with its own message
  }
  for (const [name, root] of [["source", options.source], ["replica", options.replica]]) {
    if (options.remote?.side === name) continue;
    let realRoot: string;
    try {
      realRoot = realPathOrNearest(root!);
    } catch {
      continue;
    }
    if (isInside(log, realRoot)) {
      throw new UsageError(
        `The log file ${quoted(options.logPath)} is inside the ${name} ${quoted(root!)}, where ` +
          `it would be mirrored or deleted: put it outside`,
      );
    }
  }
}

/** How every line of a treesync log begins: an ISO time with its zone, then the level. */
const LOG_LINE_START = /^\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:\d\d) +[A-Z]+ /;

/**
 * Refuses a log path that holds another program's data: the log is appended to and rotated
 * (renamed to `.1`, the oldest removed), which would lose a file named by mistake.
 */
function refuseForeignLog(logPath: string): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(logPath);
  } catch {
    return; // missing (made at start) or unreadable (fails when opened, with its own message)
  }
  if (!info.isFile || info.size === 0) return;
  const head = new Uint8Array(Math.min(info.size, 256));
  try {
    using file = Deno.openSync(logPath, { read: true });
    file.readSync(head);
  } catch {
    return;
  }
  const firstLine = new TextDecoder().decode(head).split("\n")[0]!;
  if (!LOG_LINE_START.test(firstLine)) {
    throw new UsageError(
      `The log file ${quoted(logPath)} holds something else (its first line is no treesync ` +
        `log line), and logs are rotated: name a new file, or a folder for treesync.log`,
    );
  }
}

/** Whether nothing at all is at the source's path (a disk not mounted yet), not even a link. */
export function sourceMissing(source: string): boolean {
  return !pathExists(source);
}

/**
 * Checks the two paths before anything is written: the source must be a folder, and neither
 * may be, or be inside, the other (compared by real path, so symlinks do not hide it).
 *
 * @throws {UsageError} When the paths cannot be mirrored.
 */
export function checkPaths(source: string, replica: string): void {
  let sourceInfo: Deno.FileInfo;
  try {
    sourceInfo = Deno.statSync(source);
  } catch (error) {
    throw new UsageError(
      error instanceof Deno.errors.NotFound
        ? `Source ${quoted(source)} does not exist: check the path, or whether its disk is mounted`
        : `Cannot read source ${quoted(source)}: ${errorText(error, true)}`,
    );
  }
  if (!sourceInfo.isDirectory) throw new UsageError(`Source ${quoted(source)} is not a folder`);
  const realSource = Deno.realPathSync(source);
  let realReplica: string;
  try {
    realReplica = realPathOrNearest(replica);
  } catch (error) {
    throw new UsageError(`Cannot use the replica ${quoted(replica)}: ${errorText(error, true)}`);
  }
  // Real paths catch symlinks; device and inode also catch bind mounts, where one folder has
  // two real paths.
  const sourceChain = folderIdentities(realSource);
  const replicaChain = folderIdentities(realReplica);
  const replicaExists = pathExists(replica);
  const refuse = (why: string) => {
    throw new UsageError(`Cannot mirror ${quoted(source)} into ${quoted(replica)}: ${why}`);
  };
  if (realSource === realReplica || (replicaExists && sourceChain[0] === replicaChain[0])) {
    refuse("they are the same folder");
  }
  if (isInside(realReplica, realSource) || replicaChain.includes(sourceChain[0]!)) {
    refuse("the replica is inside the source");
  }
  if (
    isInside(realSource, realReplica) ||
    (replicaExists && sourceChain.includes(replicaChain[0]!))
  ) {
    refuse("the source is inside the replica");
  }
  try {
    const replicaInfo = Deno.statSync(replica);
    if (!replicaInfo.isDirectory) {
      throw new UsageError(`Replica ${quoted(replica)} is not a folder`);
    }
  } catch (error) {
    if (error instanceof UsageError) throw error;
    if (!(error instanceof Deno.errors.NotFound)) {
      throw new UsageError(`Cannot use the replica ${quoted(replica)}: ${errorText(error, true)}`);
    }
  }
}
