/**
 * A walker worker: walks the one tree it is asked to (see `walk.ts`) and posts the packed
 * batches, then whether the walk ended well. Started by `stream.ts` for each walk and ended by
 * it; it loads only the walk, not the copy and hash workers' code.
 *
 * @module
 */

import { errorText } from "../../errors.ts";
import { transferablesOf, walkInWorker, type WalkRequest } from "./walk.ts";

const IN_WORKER = typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !==
  "undefined";

/** Answers the one walk request this worker gets, never throwing out of the handler. */
function serveWalk(): void {
  const scope = globalThis as unknown as {
    onmessage: ((event: MessageEvent) => void) | null;
    postMessage(message: unknown, transfer?: Transferable[]): void;
  };
  scope.onmessage = (event: MessageEvent) => {
    try {
      walkInWorker(
        event.data as WalkRequest,
        (batch) => scope.postMessage({ walked: batch }, transferablesOf(batch)),
        // The reader ends a walk by ending this worker.
        () => false,
        (nested) => scope.postMessage({ probed: nested }),
      );
      scope.postMessage({ ok: true });
    } catch (error) {
      scope.postMessage({ ok: false, error: errorText(error) });
    }
  };
}

// A worker loads this module only to walk.
if (IN_WORKER) serveWalk();
