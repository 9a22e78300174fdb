/**
 * The worker pool: copying and hashing in worker threads (synchronous file calls, several times
 * cheaper than async ones, on every core), and what a worker serves: copies and hashes (a walk
 * has a worker of its own: `sides/local/walker.ts`), and empty temporary files made ahead for
 * files streamed from another host.
 *
 * @module
 */

import { type BatchLimits, inBatches } from "../../batch.ts";
import { errorText } from "../../errors.ts";
import { joinRel } from "../../paths.ts";
import { hashFile, type HashResult } from "./hash.ts";
import { setTempPrefix } from "./meta.ts";
import { openSourceFile } from "./source.ts";
import {
  type CopyPool,
  type CopyRequest,
  type CopySettings,
  copySettings,
  failedOutcome,
  type MadeTemp,
  stageCopy,
  type StageOutcome,
} from "./stage.ts";
import { makeTemps } from "./tempsupply.ts";

// the file-system calls are synchronous (several times cheaper per call than async ones) and
// two cores do twice the work. A shared flag tells workers to stop between files (1) or to
// abandon the file they are copying (2).

const IN_WORKER = typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !==
  "undefined";

/** What a worker was asked to do. */
type WorkerRequest =
  | { op: "init"; id: number; stopFlag: SharedArrayBuffer }
  | { op: "copy" } & CopyRequest
  | { op: "hash"; root: string; paths: string[] }
  | { op: "temps"; settings: CopySettings; count: number };

/** One hash's outcome; null when the file changed while read. */
export type HashOutcome = { result: HashResult | null } | { error: string };

/** A fixed set of workers taking requests in turn; the main thread's side. */
export class WorkerPool implements CopyPool {
  readonly size: number;
  readonly #stopFlag = new Int32Array(new SharedArrayBuffer(4));
  readonly #workers: Worker[] = [];
  readonly #idle: Worker[] = [];
  readonly #waiting: Array<(worker: Worker) => void> = [];

  /**
   * A pool of up to `size` workers, each started on first need: a run with nothing to copy or
   * hash starts none.
   */
  constructor(size: number) {
    this.size = size;
  }

  #start(): Worker {
    const worker = new Worker(import.meta.url, { type: "module" });
    const init: WorkerRequest = {
      op: "init",
      id: this.#workers.length,
      stopFlag: this.#stopFlag.buffer as SharedArrayBuffer,
    };
    worker.postMessage(init);
    this.#workers.push(worker);
    return worker;
  }

  /** How many workers this pool has started so far. */
  get started(): number {
    return this.#workers.length;
  }

  /** The stop asked so far: 0 none, 1 after the current file, 2 at once. */
  stopLevel(): number {
    return Atomics.load(this.#stopFlag, 0);
  }

  /** Asks workers to stop after their current file (1) or at once (2). */
  stop(level: 1 | 2): void {
    Atomics.store(this.#stopFlag, 0, Math.max(level, Atomics.load(this.#stopFlag, 0)));
  }

  /** Copies a batch of files in a worker, which reports bytes copied as it goes. */
  copy(
    request: CopyRequest,
    report: {
      onBytes?: (bytes: number) => void;
      onEach: (index: number, outcome: StageOutcome) => void;
    },
  ): Promise<void> {
    return this.#request({ op: "copy", ...request }, report.onBytes, report.onEach);
  }

  /** Makes empty temporary files in a worker (see `tempsupply.ts`). */
  makeTemps(settings: CopySettings, count: number): Promise<MadeTemp[]> {
    return this.#request({ op: "temps", settings, count });
  }

  /** Hashes a batch of files in a worker. */
  hash(root: string, paths: string[]): Promise<HashOutcome[]> {
    return this.#request({ op: "hash", root, paths });
  }

  /** Ends every worker. */
  close(): void {
    for (const worker of this.#workers) worker.terminate();
  }

  async #request<T>(
    request: WorkerRequest,
    onBytes?: (bytes: number) => void,
    onEach?: (index: number, outcome: StageOutcome) => void,
  ): Promise<T> {
    const worker = this.#idle.pop() ??
      (this.#workers.length < this.size ? this.#start() : null) ??
      await new Promise<Worker>((take) => this.#waiting.push(take));
    try {
      return await new Promise<T>((resolve, reject) => {
        worker.onmessage = (event: MessageEvent) => {
          const reply = event.data as
            | { ok: true; value: T }
            | { ok: false; error: string }
            | { progress: number }
            | { each: number; outcome: StageOutcome };
          if ("progress" in reply) onBytes?.(reply.progress);
          else if ("each" in reply) onEach?.(reply.each, reply.outcome);
          else if (reply.ok) resolve(reply.value);
          else reject(new Error(reply.error));
        };
        worker.onerror = (event) => {
          event.preventDefault();
          reject(new Error(event.message));
        };
        worker.postMessage(request);
      });
    } finally {
      const next = this.#waiting.shift();
      if (next) next(worker);
      else this.#idle.push(worker);
    }
  }
}

/**
 * How many files go to a worker to hash at once: enough that a message per batch costs
 * nothing, little enough that every worker stays busy to the end.
 */
export const HASH_BATCH: BatchLimits = { items: 64, bytes: 64 << 20 };

/**
 * Hashes files in the pool, in batches of up to 64 files or 64 MiB, so both cores hash.
 *
 * @returns Each path's outcome, in the order given.
 */
export async function hashInPool(
  pool: WorkerPool,
  root: string,
  paths: Array<{ path: string; size: number }>,
  onBatch?: (files: number, bytes: number) => void,
): Promise<Map<string, HashOutcome>> {
  const outcomes = new Map<string, HashOutcome>();
  const batches = inBatches(paths, { limits: HASH_BATCH, bytesOf: (item) => item.size });
  await Promise.all(batches.map(async (batch) => {
    const results = await pool.hash(root, batch.map((item) => item.path));
    results.forEach((outcome, i) => outcomes.set(batch[i]!.path, outcome));
    onBatch?.(batch.length, batch.reduce((sum, item) => sum + item.size, 0));
  }));
  return outcomes;
}

/** The worker's side: answers one request at a time, never throwing out of the handler. */
function serveRequests(): void {
  let stopFlag: Int32Array<ArrayBufferLike> = new Int32Array(1);
  const scope = globalThis as unknown as {
    onmessage: ((event: MessageEvent) => void) | null;
    postMessage(message: unknown, transfer?: Transferable[]): void;
  };
  const handle = (request: WorkerRequest): unknown => {
    switch (request.op) {
      case "init":
        stopFlag = new Int32Array(request.stopFlag);
        setTempPrefix(`${Deno.pid}-w${request.id}`);
        return null;
      case "copy":
        return copyBatch(request, stopFlag, {
          report: (bytes) => scope.postMessage({ progress: bytes }),
          each: (index, outcome) => scope.postMessage({ each: index, outcome }),
        });
      case "hash":
        return request.paths.map((path) => hashOne(joinRel(request.root, path)));
      case "temps":
        return makeTemps(request.settings, request.count);
    }
  };
  scope.onmessage = (event: MessageEvent) => {
    const request = event.data as WorkerRequest;
    try {
      const value = handle(request);
      if (request.op === "init") return;
      scope.postMessage({ ok: true, value });
    } catch (error) {
      scope.postMessage({ ok: false, error: errorText(error) });
    }
  };
}

/**
 * Copies a batch in this worker, one file after another, reporting progress every 8 MiB and
 * each file's outcome as soon as it is known (the main thread places it at once); a stop asked
 * between files (1) skips the rest, an abort (2) abandons the file in flight.
 */
function copyBatch(
  request: CopyRequest,
  stopFlag: Int32Array<ArrayBufferLike>,
  post: { report: (bytes: number) => void; each: (index: number, outcome: StageOutcome) => void },
): void {
  const { report } = post;
  let unreported = 0;
  const context = {
    ...copySettings(request),
    mustAbort: () => Atomics.load(stopFlag, 0) === 2,
    onBytes: (bytes: number) => {
      unreported += bytes;
      if (unreported < 8 << 20) return;
      report(unreported);
      unreported = 0;
    },
  };
  request.items.forEach((item, index) => {
    let outcome: StageOutcome = { skipped: true };
    if (Atomics.load(stopFlag, 0) === 0) {
      try {
        // Staged only: the main thread renames it into place from inside the folder checked.
        // Opened by the reading side's code, through its descriptor; written by the writer's.
        const staged = stageCopy(() => openSourceFile(request.source, item.path), {
          ...context,
          parent: item.parent,
          ...(item.recordedHash === undefined ? {} : { recordedHash: item.recordedHash }),
        });
        if (staged !== null) outcome = { staged };
      } catch (error) {
        outcome = failedOutcome(error);
      }
    }
    post.each(index, outcome);
  });
  if (unreported > 0) report(unreported);
}

function hashOne(path: string): HashOutcome {
  try {
    return { result: hashFile(path) };
  } catch (error) {
    return { error: errorText(error) };
  }
}

// A worker loads this module only to serve requests.
if (IN_WORKER) serveRequests();
