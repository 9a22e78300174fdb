/**
 * The controls shared by a run and whoever started it (the loop, signals, stdin): the stop
 * flags, the lock held, the progress shown, the workers told to stop.
 *
 * @module
 */

import { idleProgress, type RunProgress } from "./log.ts";
import { type ReplicaLock } from "./sides/writer.ts";
import { type WorkerPool } from "./sides/local/workers.ts";

/** Controls shared by a run and whoever started it (the loop, signals, stdin). */
export interface RunControl {
  /** True once a stop was asked: finish the current file, save the record. */
  stopRequested: boolean;
  /** True once a second SIGINT came: abandon the current file now. */
  abortNow: boolean;
  /** The replica lock while it is held. */
  lock: ReplicaLock | null;
  /** Keep the lock between runs (the loop holds it for its whole life). */
  keepLock: boolean;
  /** Progress of the run under way, for `status` and the progress line. */
  progress: RunProgress;
  /** The run's workers, told when a stop is asked. */
  pool: WorkerPool | null;
}

/**
 * Asks the run under way to stop: after the file in flight (1: quit, the first signal) or at
 * once, abandoning it (2: a second SIGINT).
 */
export function requestStop(control: RunControl, level: 1 | 2): void {
  control.stopRequested = true;
  if (level === 2) control.abortNow = true;
  control.pool?.stop(level);
}

/** A fresh {@linkcode RunControl}. */
export function newRunControl(): RunControl {
  return {
    stopRequested: false,
    abortNow: false,
    lock: null,
    keepLock: false,
    progress: idleProgress(),
    pool: null,
  };
}
