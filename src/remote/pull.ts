/**
 * A pull: the tree read is on another host, the tree written on this one, so the engine runs
 * here (`treesync host:/src /dst`). Each run starts the far end afresh, reads the far tree
 * through a `RemoteTreeReader` and writes the local tree exactly as a local run does; the
 * session's bytes go into the run's summary. `--restore` from a replica there is a pull too: its
 * own files (lock, record) are read there, read-only (`store.ts`).
 *
 * @module
 */

import { type Options } from "../cli.ts";
import { type Reporter } from "../log.ts";
import { type RunTrees } from "../sides/sides.ts";
import { LocalReplicaStore } from "../sides/local/store.ts";
import { LocalTreeWriter } from "../sides/local/treewriter.ts";
import { type WorkerPool } from "../sides/local/workers.ts";
import { connectFarTree, farEndName } from "./connect.ts";
import { checkRestoreFromRemote } from "./store.ts";

/**
 * Whether the engine runs on this host with the tree it reads on another: a remote SOURCE, or
 * `--restore` from a remote REPLICA. The other remote runs (a remote REPLICA, `--restore` into a
 * remote SOURCE, `--verify` of a remote replica) run on the far end.
 */
export function isPull(options: Pick<Options, "remote" | "restore" | "verify">): boolean {
  const { remote } = options;
  return remote !== undefined && !options.verify && (remote.side === "source") !== options.restore;
}

/** A pull's connection for one run: the engine's trees, and the session's end. */
export interface PullTrees {
  /** The run's trees (`RunDependencies.openTrees`): the far tree read, this host's written. */
  openTrees: (pool: WorkerPool) => RunTrees;
  /** Ends the session and waits for the far end. */
  close(): Promise<void>;
}

/**
 * Starts the far end and opens the tree to read there, before anything is written here.
 *
 * @throws {UsageError} The far end did not start, or refused or lacks the tree: exit 2.
 */
export async function connectPull(options: Options, report: Reporter): Promise<PullTrees> {
  const remote = options.remote!;
  const host = farEndName(remote);
  const restore = options.restore;
  const tree = await connectFarTree({
    remote,
    rsh: options.rsh,
    remoteTreesync: options.remoteTreesync,
    display: restore ? options.replica : options.source,
    name: restore ? "replica" : "source",
    compress: options.compress,
    rate: options.bwlimit,
    withStore: restore,
    onStderr: (line) => report.warn(`${host}: ${line}`),
  });
  // A restore reads the far replica's own files (locked read-only there): the same refusals
  // as for a replica here, before anything is written.
  const farStore = tree.store;
  if (farStore !== null) {
    try {
      checkRestoreFromRemote(farStore);
    } catch (error) {
      await tree.close();
      throw error;
    }
  }
  const written = restore ? options.source : options.replica;
  return {
    openTrees: (pool) => ({
      from: tree.reader,
      to: new LocalTreeWriter(written, { pool }),
      store: farStore ?? new LocalReplicaStore(options.replica),
      wire: () => tree.far.wire(),
    }),
    close: () => tree.close(),
  };
}
