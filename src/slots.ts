/**
 * A count of things allowed at once ({@linkcode Slots}): files streamed in flight, requests a
 * session may have running. Pure: no I/O.
 *
 * @module
 */

/** Slots taken first come, first served; one waits for a free slot when none is left. */
export class Slots {
  #free: number;
  readonly #waiting: Array<() => void> = [];

  /** `count` slots. */
  constructor(count: number) {
    this.#free = count;
  }

  /** Waits for a free slot and takes it. */
  async take(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((go) => this.#waiting.push(go));
  }

  /** Gives a slot back: to the first one waiting, if any. */
  give(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#free++;
  }

  /** Runs `work` in a slot. */
  async run<T>(work: () => Promise<T>): Promise<T> {
    await this.take();
    try {
      return await work();
    } finally {
      this.give();
    }
  }
}
