/**
 * Reading a file through SHA-256 with a reused buffer, checking with `fstat` before and after
 * that it did not change while it was read. Copies and hashes both read this way.
 *
 * @module
 */

import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { type Entry, sameSignature, type Signature, signatureOf } from "../../scan.ts";

/** One buffer a thread reads every file through: memory stays flat for any file size. */
const READ_BUFFER = new Uint8Array(1 << 20);

/** What one read of a file through SHA-256 saw. */
export interface ReadThrough {
  /** SHA-256 of the bytes read, in hex. */
  hash: string;
  /** The file as `fstat` showed it once read. */
  after: Entry;
  /** True when it changed while it was read (signature or byte count): the hash may be torn. */
  changed: boolean;
}

/**
 * Opens a regular file for reading without being led elsewhere by a link: Deno cannot open with
 * O_NOFOLLOW, so the path is looked at first and the file opened must be the one looked at.
 *
 * @throws {Error} When it is not a regular file, or was replaced while it was opened.
 */
export function openRegularFile(path: string): OpenedFile {
  const looked = Deno.lstatSync(path);
  if (!looked.isFile) throw new Error("it is no longer a regular file");
  // node:fs on a descriptor: with scoped permissions, Deno's own file handle checks its path
  // again (a readlink per folder of it) on every fstat and read; a descriptor is not re-checked.
  const fd = fs.openSync(path, fs.constants.O_RDONLY);
  const opened = fs.fstatSync(fd);
  if (!opened.isFile() || opened.ino !== looked.ino || opened.dev !== looked.dev) {
    fs.closeSync(fd);
    throw new Error("it was replaced while it was opened");
  }
  return { fd, opened: entryFromNodeStat(opened), [Symbol.dispose]: () => fs.closeSync(fd) };
}

/** An entry from what node's `fstat` said of an open file. */
function entryFromNodeStat(stat: fs.Stats): Entry {
  return {
    kind: "file",
    size: stat.size,
    mtimeMs: Math.trunc(stat.mtimeMs),
    // Deno's lstat gives ctime in whole seconds: the same here, so signatures compare.
    ctimeMs: Math.floor(stat.ctimeMs / 1000) * 1000,
    ino: stat.ino,
    dev: stat.dev,
    mode: stat.mode & 0o7777,
    uid: stat.uid,
    gid: stat.gid,
    nlink: stat.nlink,
  };
}

/** A file opened by {@linkcode openRegularFile}, with what `fstat` said once it was open. */
export interface OpenedFile extends Disposable {
  /** The open file's descriptor. */
  fd: number;
  /** Its `fstat` right after it was opened: where {@linkcode readThroughHash} starts from. */
  opened: Entry;
}

/**
 * Reads an open file once through SHA-256, up to the size `fstat` gave when it was opened (growth or shrinking
 * shows in the `fstat` after), handing each chunk to `onChunk`, which returns false to abandon
 * the read.
 *
 * @returns What was read, or null when `onChunk` abandoned it.
 */
export function readThroughHash(
  input: OpenedFile,
  onChunk?: (chunk: Uint8Array) => boolean,
): ReadThrough | null {
  const reading = new HashingRead(input);
  for (let chunk = reading.next(); chunk !== null; chunk = reading.next()) {
    if (onChunk && !onChunk(chunk)) return null;
  }
  return reading.finish();
}

/**
 * One read of an open file through SHA-256, a chunk at a time, for a caller that waits between
 * chunks (the far end of a remote tree sends each before it reads the next): what
 * {@linkcode readThroughHash} does in one loop.
 */
export class HashingRead {
  readonly #input: OpenedFile;
  readonly #buffer: Uint8Array;
  readonly #hash = createHash("sha256");
  #total = 0;

  /**
   * Starts reading `input` into `buffer` (default: the thread's shared 1 MiB buffer, for a
   * caller that reads one file at a time without waiting).
   */
  constructor(input: OpenedFile, buffer: Uint8Array = READ_BUFFER) {
    this.#input = input;
    this.#buffer = buffer;
  }

  /** Bytes read so far. */
  get bytes(): number {
    return this.#total;
  }

  /**
   * The next chunk, hashed already: a view of the buffer, valid until the next call; null once
   * the size the file had when opened is read, or at its end.
   */
  next(): Uint8Array | null {
    const left = this.#input.opened.size - this.#total;
    if (left <= 0) return null;
    // Never ask for more than is left: node:fs readSync under Deno costs by the length asked
    // for, not by the bytes read (an 8 KB file read into 1 MiB: 66 µs, against 8 µs for 64 KiB).
    const wanted = Math.min(this.#buffer.length, left);
    const count = fs.readSync(this.#input.fd, this.#buffer, 0, wanted, null);
    if (count === 0) return null;
    const chunk = this.#buffer.subarray(0, count);
    this.#hash.update(chunk);
    this.#total += count;
    return chunk;
  }

  /** The hash and whether the file changed while it was read (signature or byte count). */
  finish(): ReadThrough {
    const before = this.#input.opened;
    const after = entryFromNodeStat(fs.fstatSync(this.#input.fd));
    const changed = this.#total !== before.size || !sameSignature(before, after);
    return { hash: this.#hash.digest("hex"), after, changed };
  }
}

/** A file's SHA-256 and the signature it had while it was read. */
export interface HashResult {
  /** SHA-256 in hex. */
  hash: string;
  /** The file's signature while it was read. */
  signature: Signature;
  /** When the read began, for the racy rule. */
  hashedAtMs: number;
}

/**
 * Hashes the regular file at `path`.
 *
 * @returns The hash, or null if the file changed while it was read.
 */
export function hashFile(path: string): HashResult | null {
  const hashedAtMs = Date.now();
  using input = openRegularFile(path);
  const read = readThroughHash(input)!;
  if (read.changed) return null;
  return { hash: read.hash, signature: signatureOf(read.after), hashedAtMs };
}
