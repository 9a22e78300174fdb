/**
 * Batching: work handed to another thread (or host) a batch at a time, a batch closing at a
 * count of items or a count of bytes, whichever comes first. The one batcher of copies
 * (`apply.ts`), hashes (`sides/local/workers.ts`) and `--verify`'s checks.
 *
 * @module
 */

/** When a batch is full. */
export interface BatchLimits {
  /** Items a batch holds at most. */
  items: number;
  /** Bytes a batch holds at most (it closes at the item that reaches them). */
  bytes: number;
}

/** Items gathered into batches as they come. */
export class Batcher<T> {
  readonly #limits: BatchLimits;
  #items: T[] = [];
  #bytes = 0;

  /** Batches closing at `limits`. */
  constructor(limits: BatchLimits) {
    this.#limits = limits;
  }

  /**
   * Adds an item of `bytes`.
   *
   * @returns The batch it filled, taken; null while the batch is not full.
   */
  add(item: T, bytes: number): T[] | null {
    this.#items.push(item);
    this.#bytes += bytes;
    const full = this.#items.length >= this.#limits.items || this.#bytes >= this.#limits.bytes;
    return full ? this.take() : null;
  }

  /** The items gathered so far, taken (empty when there are none). */
  take(): T[] {
    const items = this.#items;
    this.#items = [];
    this.#bytes = 0;
    return items;
  }
}

/** Cuts `items` into batches at `limits`, in their order. */
export function inBatches<T>(
  items: Iterable<T>,
  input: { limits: BatchLimits; bytesOf: (item: T) => number },
): T[][] {
  const batcher = new Batcher<T>(input.limits);
  const batches: T[][] = [];
  for (const item of items) {
    const full = batcher.add(item, input.bytesOf(item));
    if (full) batches.push(full);
  }
  const last = batcher.take();
  if (last.length > 0) batches.push(last);
  return batches;
}
