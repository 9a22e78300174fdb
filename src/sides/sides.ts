/**
 * The trees of one run as the engine holds them: the tree it reads, the tree it writes, and the
 * replica's own files; and where each comes from (this host, so far). `--restore` swaps the two
 * trees here, once: from then on nothing above the sides knows which is the source.
 *
 * @module
 */

import { type WorkerPool } from "./local/workers.ts";
import { LocalReplicaStore } from "./local/store.ts";
import { LocalTreeReader } from "./local/tree.ts";
import { LocalTreeWriter } from "./local/treewriter.ts";
import { type TreeReader } from "./reader.ts";
import { type ReplicaStore, type TreeWriter } from "./writer.ts";

/** The two trees of a run and the replica's own files. */
export interface RunTrees {
  /** The tree read: the source, or the replica when restoring. */
  from: TreeReader;
  /** The tree written: the replica, or the source when restoring. */
  to: TreeWriter;
  /** The replica's lock, record and adoption mark (read-only when restoring). */
  store: ReplicaStore;
  /** With a tree on another host: the bytes on the wire so far, both ways. */
  wire?: () => { sent: number; received: number };
}

/** Where a run's trees are, as the command line named them. */
export interface TreePlaces {
  /** The source folder. */
  source: string;
  /** The replica folder. */
  replica: string;
  /** Mirror the replica back into the source. */
  restore: boolean;
}

/**
 * The trees of a run on this host, hashing and copying in `pool`. Opening touches nothing:
 * the checks and the first writes come later, in their order.
 */
export function openTrees(places: TreePlaces, pool: WorkerPool): RunTrees {
  const { source, replica, restore } = places;
  const [fromRoot, toRoot] = restore ? [replica, source] : [source, replica];
  return {
    from: new LocalTreeReader(fromRoot, { pool }),
    to: new LocalTreeWriter(toRoot, { pool }),
    store: new LocalReplicaStore(replica),
  };
}
