/**
 * Reading a file through SHA-256 with a reused buffer, checking with `fstat` before and after
 * that it did not change while it was read. Copies and hashes both read this way.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { type Entry, entryFromStat, sameSignature, type Signature, signatureOf } from "./scan.ts";

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
  const file = Deno.openSync(path, { read: true });
  const opened = file.statSync();
  if (!opened.isFile || opened.ino !== looked.ino || opened.dev !== looked.dev) {
    file.close();
    throw new Error("it was replaced while it was opened");
  }
  return { file, opened: entryFromStat(opened), [Symbol.dispose]: () => file.close() };
}

/** A file opened by {@linkcode openRegularFile}, with what `fstat` said once it was open. */
export interface OpenedFile extends Disposable {
  /** The open file. */
  file: Deno.FsFile;
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
  const { file, opened: before } = input;
  const hash = createHash("sha256");
  let total = 0;
  while (total < before.size) {
    const count = file.readSync(READ_BUFFER);
    if (count === null || count === 0) break;
    const chunk = READ_BUFFER.subarray(0, count);
    hash.update(chunk);
    total += count;
    if (onChunk && !onChunk(chunk)) return null;
  }
  const after = entryFromStat(file.statSync());
  const changed = total !== before.size || !sameSignature(before, after);
  return { hash: hash.digest("hex"), after, changed };
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
