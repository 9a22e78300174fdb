/**
 * Temporary files made ahead in a copy worker for files streamed from another host
 * ({@linkcode TempSupply}). Making a file's inode is the dearest call of a small file's copy
 * (0.06–0.15 ms on ext4 while other new files are being written, against 0.01 ms to open an
 * existing one); a copy worker pays it beside the main thread, but a streamed copy is written on
 * the main thread, which also reads the connection. So a worker makes them (exclusively, in our
 * tmp folder, once that folder is shown to be ours: `createTemp`), closes them and says which
 * inode each is; the main thread opens one by name and writes into it only if what it opened
 * is still that inode (device, number, change time to the second), empty and with no other
 * name. Otherwise, and whenever no file made ahead is at hand (the pool busy hashing, the first
 * files of a run), it makes one itself as before (`createTemp`: O_EXCL on a fresh name), so a
 * file never waits for the pool and a file system whose inode numbers change between opens
 * only loses the gain. Our tmp folder is ours alone (mode 0700): only our own user or root
 * could swap a name in it, and the check is there for that too.
 *
 * Files made and not used are removed when the last batch using the supply ends; a run killed
 * meanwhile leaves them in our tmp folder, whose leftovers the next run removes.
 *
 * @module
 */

import * as fs from "node:fs";
import { type CopySettings, createTemp, discardTemp, type MadeTemp } from "./stage.ts";

/** How many files a worker makes in one request; more are asked for below half of it. */
export const TEMPS_AT_ONCE = 16;

/**
 * Makes up to `count` temporary files in our tmp folder and closes them (in a copy worker).
 *
 * @throws {Error} Not even one could be made (our tmp folder is no longer ours, say).
 */
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
    // Those made are good (out of inodes for the rest, say); none made is the error.
    if (made.length === 0) throw error;
  }
  return made;
}

// Deno follows a final link despite O_NOFOLLOW under any permissions but -A (it resolves the
// path for its own check): what was opened is compared with what was made. O_NONBLOCK: a fifo
// put in its place fails at once instead of waiting for a reader.
const REOPEN_FLAGS = fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;

/**
 * Opens a made temporary file for writing, once it shows to be the inode made, still empty and
 * with no second name.
 *
 * @returns Its descriptor; null when it is not (what is there is left alone, for the next
 * run's clean-up of our tmp folder) or cannot be opened.
 */
export function openMadeTemp(temp: MadeTemp): number | null {
  let fd: number;
  try {
    fd = fs.openSync(temp.tempPath, REOPEN_FLAGS);
  } catch {
    return null;
  }
  const { dev, ino, ctimeMs, size, nlink } = fs.fstatSync(fd);
  const same = dev === temp.dev && ino === temp.ino && ctimeMs === temp.ctimeMs;
  if (same && size === 0 && nlink === 1) return fd;
  fs.closeSync(fd);
  return null;
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
    await this.#filling;
    if (this.#users > 0) return;
    for (const temp of this.#stock.splice(0)) discardTemp(temp.tempPath, this.#settings);
  }

  /** Resolves once a request for more files is answered (at once when none is out). */
  async ready(): Promise<void> {
    if (this.#stock.length === 0) this.#fill();
    await this.#filling;
  }

  /**
   * A new temporary file, open for writing, and its path: one made ahead if it is at hand and
   * still the one made, else one made here.
   *
   * @throws {Error} None could be made here either (our tmp folder is no longer ours, say).
   */
  take(): { tempPath: string; fd: number } {
    if (this.#stock.length < TEMPS_AT_ONCE / 2) this.#fill();
    const temp = this.#stock.shift();
    const fd = temp === undefined ? null : openMadeTemp(temp);
    if (fd !== null) return { tempPath: temp!.tempPath, fd };
    return createTemp(this.#settings);
  }

  /** Asks for more files, unless a request is out already; a failed one is only no files. */
  #fill(): void {
    this.#filling ??= this.#make(this.#settings, TEMPS_AT_ONCE).then(
      (made) => {
        this.#stock.push(...made);
      },
      () => {},
    ).finally(() => {
      this.#filling = null;
    });
  }
}
