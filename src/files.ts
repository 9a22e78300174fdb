/**
 * Small file-system helpers every writer shares: whether a path exists, what it resolves to
 * (device and inode), writing every byte, removing quietly.
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

/** Where the process started, to go back to after {@linkcode inFolder}. */
let homeFolder: string | null = null;

/** True while {@linkcode inFolder} runs: it does not nest. */
let inside = false;

/**
 * Runs `use` with the process's current folder set to `path`, once `.` is shown to be
 * `chain[0]`, `..` to be `chain[1]`, `../..` `chain[2]` and so on: names relative to it then
 * resolve inside that very folder, whatever is renamed or swapped for a link on the path
 * meanwhile, and that folder is where the chain says (`..` is a folder's real parent, never a
 * link). This is the way to reach an entry through a checked folder without `openat`: a check
 * of the path and a call through the path are two lookups, and the folder can be swapped
 * between them. Every other path the program uses is absolute, so changing the current folder
 * does not move them; `use` must not await (nothing else may run meanwhile).
 *
 * Only under `--allow-all` does Deno (2.9) pass a relative name to the kernel as it is; with
 * path permissions it first joins most of them to the current folder's real path (`getcwd`),
 * so each call looks that path up again: the checks then narrow the window to microseconds
 * instead of closing it.
 *
 * @throws {Error} When `path` does not lead to that folder (now): nothing is done in it.
 */
export function inFolder<T>(path: string, chain: Identity[], use: () => T): T {
  if (inside) throw new Error("inFolder() does not nest");
  if (chain.length === 0) {
    throw new Error(`${quoted(path)} is not a folder this run knows; nothing in it was touched`);
  }
  homeFolder ??= currentFolder();
  Deno.chdir(path);
  inside = true;
  try {
    chain.forEach((expected, up) => {
      const here = Deno.statSync(up === 0 ? "." : Array(up).fill("..").join("/"));
      if (here.dev !== expected.dev || here.ino !== expected.ino) {
        throw new Error(`${quoted(path)} was replaced during the run; nothing in it was touched`);
      }
    });
    return use();
  } finally {
    inside = false;
    goHome(homeFolder);
  }
}

function currentFolder(): string {
  try {
    return Deno.cwd();
  } catch {
    return "/"; // the folder started in was deleted: no relative path is used anyway
  }
}

function goHome(home: string): void {
  try {
    Deno.chdir(home);
  } catch {
    Deno.chdir("/");
  }
}
