/**
 * Temporary files made ahead in a copy worker for files streamed from another host
 * ({@linkcode TempSupply}). Making a file's inode is the dearest call of a small file's copy
 * (0.06–0.15 ms on ext4 while other new files are being written, against 0.01 ms to open an
 * existing one); a copy worker pays it beside the main thread, but a streamed copy is written on
 * the main thread, which also reads the connection. So a worker makes them (exclusively, in our
 * tmp folder, once that folder is shown to be ours: `createTemp`), closes them and says which
 * inode each is; the main thread opens one by name and writes into it only if what it opened
 * is still that inode, empty and with no other name (a link or fifo put there is refused).
 *
 * Files made and not used are removed when the last batch using the supply ends; a run killed
 * meanwhile leaves them in our tmp folder, whose leftovers the next run removes.
 *
 * @module
 */

import * as fs from "node:fs";
import { type CopySettings, createTemp, discardTemp, type MadeTemp } from "./stage.ts";

/** How many files a worker makes in one request. */
export const TEMPS_AT_ONCE = 32;

/** Makes `count` temporary files in our tmp folder and closes them (in a copy worker). */
export function makeTemps(settings: CopySettings, count: number): MadeTemp[] {
  const made: MadeTemp[] = [];
  try {
    for (let index = 0; index < count; index++) {
      const { tempPath, fd } = createTemp(settings);
      try {
        const { dev, ino, ctimeMs } = fs.fstatSync(fd);
        made.push({ tempPath, dev, ino, ctimeMs });
      } finally {
        fs.closeSync(fd);
      }
    }
  } catch (error) {
    for (const temp of made) discardTemp(temp.tempPath, settings);
    throw error;
  }
  return made;
}

// O_NOFOLLOW refuses a final link only with unscoped permissions (Deno resolves the path itself
// otherwise): what was opened is compared with what was made. O_NONBLOCK: a fifo put in its
// place fails at once instead of waiting for a reader.
const REOPEN_FLAGS = fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;

/**
 * Opens a made temporary file for writing, once it shows to be the inode made (number and
 * change time), still empty and with no second name.
 *
 * @throws {Error} It is not: something else touched our tmp folder (what is there is left for
 * the next run's clean-up of the folder).
 */
export function openMadeTemp(temp: MadeTemp): number {
  const fd = fs.openSync(temp.tempPath, REOPEN_FLAGS);
  const { dev, ino, ctimeMs, size, nlink } = fs.fstatSync(fd);
  const same = dev === temp.dev && ino === temp.ino && ctimeMs === temp.ctimeMs;
  if (same && size === 0 && nlink === 1) return fd;
  fs.closeSync(fd);
  throw new Error(
    `the temporary file ${temp.tempPath} was changed by something else since it was made; ` +
      "nothing was written (is another program using the replica's .treesync folder?)",
  );
}

/** Makes temporary files: a copy worker pool's side of the supply (`CopyPool.makeTemps`). */
export type TempMaker = (settings: CopySettings, count: number) => Promise<MadeTemp[]>;

/** Temporary files made ahead by a worker, handed out one by one. */
export class TempSupply {
  readonly #make: TempMaker;
  readonly #settings: CopySettings;
  #stock: MadeTemp[] = [];
  #filling: Promise<void> | null = null;
  #users = 0;

  /** Files made by `make` in the tmp folder of `settings`. */
  constructor(make: TempMaker, settings: CopySettings) {
    this.#make = make;
    this.#settings = settings;
  }

  /** A batch starts using the supply. */
  begin(): void {
    this.#users++;
  }

  /** A batch is done with it: when none is left, the files not used are removed. */
  async end(): Promise<void> {
    if (--this.#users > 0) return;
    await this.#filling?.catch(() => {});
    if (this.#users > 0) return;
    for (const temp of this.#stock.splice(0)) discardTemp(temp.tempPath, this.#settings);
  }

  /**
   * A new temporary file, open for writing, and its path.
   *
   * @throws {Error} The worker could not make one (our tmp folder is no longer ours, say).
   */
  async take(): Promise<{ tempPath: string; fd: number }> {
    while (this.#stock.length === 0) await this.#fill();
    if (this.#stock.length < TEMPS_AT_ONCE / 2) this.#fill().catch(() => {});
    const temp = this.#stock.shift()!;
    return { tempPath: temp.tempPath, fd: openMadeTemp(temp) };
  }

  /** Asks for more files, unless a request is out already (then waits for that one). */
  #fill(): Promise<void> {
    this.#filling ??= this.#make(this.#settings, TEMPS_AT_ONCE).then((made) => {
      this.#stock.push(...made);
    }).finally(() => {
      this.#filling = null;
    });
    return this.#filling;
  }
}
