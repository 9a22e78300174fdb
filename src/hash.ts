/**
 * Reading a file through SHA-256 with a reused buffer, checking with `fstat` before and after
 * that it did not change while it was read.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { entryFromStat, sameSignature, type Signature, signatureOf } from "./scan.ts";

export const COPY_BUFFER = new Uint8Array(1 << 20);

/** A file's SHA-256 and the signature it had while it was read. */
export interface HashResult {
  hash: string;
  signature: Signature;
  hashedAtMs: number;
}

/**
 * Streams a file through SHA-256 with a reused buffer: memory stays flat for any size.
 *
 * @returns The hash, or null if the file changed while it was read.
 */
export function hashFile(path: string): HashResult | null {
  const hashedAtMs = Date.now();
  using file = Deno.openSync(path, { read: true });
  const before = entryFromStat(file.statSync());
  const hash = createHash("sha256");
  let total = 0;
  for (;;) {
    const count = file.readSync(COPY_BUFFER);
    if (count === null || count === 0) break;
    hash.update(COPY_BUFFER.subarray(0, count));
    total += count;
  }
  const after = entryFromStat(file.statSync());
  if (!sameSignature(before, after) || total !== before.size) return null;
  return { hash: hash.digest("hex"), signature: signatureOf(before), hashedAtMs };
}
