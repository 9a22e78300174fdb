/**
 * The writing end of a session ({@linkcode FrameOutbox}): frames queued while a write is under
 * way leave together in the next one. A run of small files is two or three small frames per
 * file each way (a `Read`, its `Data`, its `DataEnd`); written one by one, each costs a system
 * call and a wake-up of the ssh process on the other side of the pipe, and the pipe, not the
 * disk or the network, sets the pace. Gathered, they cost one write per turn of the event loop.
 *
 * Order is kept (frames leave in the order they were queued), and every frame's promise still
 * resolves only once its bytes were written, so a sender that awaits it is held back by the
 * peer's pace as before.
 *
 * @module
 */

/** The most bytes gathered into one write; a frame larger than this goes alone. */
export const GATHER_BYTES = 1024 * 1024;

/** Frames waiting for the next write, and the promise that tells their senders it was made. */
interface Gathered {
  parts: Uint8Array[];
  bytes: number;
  written: PromiseWithResolvers<void>;
}

/** A stream writer that gathers frames queued during a write into the next write. */
export class FrameOutbox {
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #waiting: Gathered[] = [];
  #pumping: Promise<void> | null = null;
  #failure: Error | null = null;

  /** Writes through `writer` (whose lock the outbox holds until {@linkcode release}). */
  constructor(writer: WritableStreamDefaultWriter<Uint8Array>) {
    this.#writer = writer;
  }

  /**
   * Queues one frame's bytes; resolves once they are written, rejects if the stream failed.
   * The caller must not change `bytes` afterwards.
   */
  write(bytes: Uint8Array): Promise<void> {
    if (this.#failure !== null) return Promise.reject(this.#failure);
    let last = this.#waiting.at(-1);
    if (last === undefined || last.bytes + bytes.length > GATHER_BYTES) {
      last = { parts: [], bytes: 0, written: Promise.withResolvers<void>() };
      // A rejection no sender awaits (a fire-and-forget frame) is not an unhandled one.
      last.written.promise.catch(() => {});
      this.#waiting.push(last);
    }
    last.parts.push(bytes);
    last.bytes += bytes.length;
    this.#pumping ??= this.#pump();
    return last.written.promise;
  }

  /** Resolves once every frame queued so far was written (or the stream failed). */
  async drained(): Promise<void> {
    while (this.#pumping !== null) await this.#pumping;
  }

  /** Waits for the queue to drain, then gives the stream's lock back (a session handed on). */
  async release(): Promise<void> {
    await this.drained();
    this.#writer.releaseLock();
  }

  /** Waits for the queue to drain, then closes the stream. */
  async close(): Promise<void> {
    await this.drained();
    await this.#writer.close().catch(() => {});
  }

  async #pump(): Promise<void> {
    try {
      for (let next = this.#waiting.shift(); next !== undefined; next = this.#waiting.shift()) {
        try {
          if (this.#failure !== null) throw this.#failure;
          await this.#writer.write(joined(next));
          next.written.resolve();
        } catch (error) {
          this.#failure ??= error instanceof Error ? error : new Error(String(error));
          next.written.reject(this.#failure);
        }
      }
    } finally {
      this.#pumping = null;
    }
  }
}

/** One buffer of a batch's frames, in order (the frame itself when it is alone). */
function joined(gathered: Gathered): Uint8Array {
  if (gathered.parts.length === 1) return gathered.parts[0]!;
  const bytes = new Uint8Array(gathered.bytes);
  let at = 0;
  for (const part of gathered.parts) {
    bytes.set(part, at);
    at += part.length;
  }
  return bytes;
}
