/**
 * Small file-system helpers the log and the local side share: whether a path exists, what it
 * resolves to (device and inode), writing every byte, removing quietly. Above the sides they are
 * used on the log only, never on a tree path.
 *
 * @module
 */

import { quoted } from "./format.ts";

/** One encoder for every text written. */
export const encoder = new TextEncoder();

/** A device and inode: what a path resolved to when it was looked at. */
export interface Identity {
  /** The device. */
  dev: number;
  /** The inode on that device. */
  ino: number;
}

/** Writes every byte: a write may take fewer than it was given. */
export function writeAll(file: { writeSync(bytes: Uint8Array): number }, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) done += file.writeSync(bytes.subarray(done));
}

/** Removes a path (a folder with what is in it) if it is there; never throws. */
export function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch {
    // Already gone, or never made: either way nothing is left to clean.
  }
}

/** The device and inode `path` resolves to now, or null when nothing is there. */
export function identityOf(path: string): Identity | null {
  try {
    const info = Deno.statSync(path);
    return { dev: info.dev, ino: info.ino ?? 0 };
  } catch {
    return null;
  }
}

/** Whether two identities are the same entry (false when either is unknown). */
export function sameIdentity(a: Identity | null, b: Identity | null): boolean {
  return a !== null && b !== null && a.dev === b.dev && a.ino === b.ino;
}

/**
 * Throws unless `path` still resolves to `expected`: a folder of ours or of the tree, swapped
 * for a link (or anything else) since it was checked, is never written through.
 */
export function expectIdentity(path: string, expected: Identity): void {
  const now = identityOf(path);
  if (now === null || !sameIdentity(now, expected)) {
    throw new Error(`${quoted(path)} was replaced during the run; nothing in it was touched`);
  }
}

/** The `stat` of a path, or null when it cannot be had. */
export function statOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.statSync(path);
  } catch {
    return null;
  }
}

/** Whether anything is at `path`, a dangling symlink included. */
export function pathExists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
