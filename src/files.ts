/**
 * Small file-system helpers every writer shares: whether a path exists, what it resolves to
 * (device and inode), writing every byte, removing quietly.
 *
 * @module
 */

import { quoted } from "./format.ts";

export const encoder = new TextEncoder();

/** A device and inode: what a path resolved to when it was looked at. */
export interface Identity {
  /** Device. */
  dev: number;
  /** Inode. */
  ino: number;
}

/** Writes every byte: a write may take fewer than it was given. */
export function writeAll(file: { writeSync(bytes: Uint8Array): number }, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) done += file.writeSync(bytes.subarray(done));
}

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

export function sameIdentity(a: Identity, b: Identity): boolean {
  return a.dev === b.dev && a.ino === b.ino;
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

export function statOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.statSync(path);
  } catch {
    return null;
  }
}

/** Removes folders, innermost (last) first, each only if it is empty. */
export function removeEmptyFolders(folders: string[]): void {
  for (const folder of [...folders].reverse()) {
    try {
      Deno.removeSync(folder); // not recursive: a folder with anything in it stays
    } catch {
      // Not empty, or already gone: leave it.
    }
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
