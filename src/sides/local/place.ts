/**
 * Placing entries into the tree being written, on the main thread: a staged copy renamed over
 * its name, hard links and symlinks made in our `tmp/` folder and renamed into place, each
 * from inside the folder it goes into once that folder is shown to be the one checked
 * ({@linkcode inParent}); what was there goes to the trash first, with one.
 *
 * @module
 */

import {
  expectIdentity,
  type Identity,
  identityOf,
  pathExists,
  removeQuietly,
  sameIdentity,
} from "../../files.ts";
import * as fs from "node:fs";
import {
  type Entry,
  entryFromStat,
  sameSignature,
  type Signature,
  signatureOf,
} from "../../scan.ts";
import { type CopiedFile } from "../writer.ts";
import { inParent } from "./guard.ts";
import { tempPathIn } from "./meta.ts";
import { type CopySettings, discardTemp, RefusedError, type StagedCopy } from "./stage.ts";
import { keepOverwritten } from "./trash.ts";

/**
 * Renames a staged copy over `toPath`, from inside the folder it goes into, once that folder
 * is shown to be `context.parent` ({@linkcode inFolder}): a folder swapped for a link at any
 * moment never receives it. With `replacing` (a restore), the name must still be what the walk
 * saw: a source file changed while its replacement was copied is kept ({@linkcode RefusedError}).
 * What was there goes to the trash first, with one. Runs on the main thread.
 *
 * @returns The record entries of the file placed and of the source as read.
 */
export function placeCopy(
  toPath: string,
  staged: StagedCopy,
  context: CopySettings & {
    toRoot: string;
    /** The folder it goes into, checked alone (see `chain`). */
    parent?: Identity | null;
    /** The folder it goes into and those above it ({@linkcode FolderGuard.chain}). */
    chain?: Identity[] | null;
    /** Restoring: what the name must still be (the action's `replacing`). */
    replacing?: Signature | null;
    /** The plan saw nothing at this name: the file is placed without replacing anything. */
    fresh?: boolean;
  },
): CopiedFile {
  let placed = false;
  try {
    // Our tmp folder must still be the one checked: never a link put there since.
    expectIdentity(context.tempDir, context.tempIdentity);
    const chain = context.chain ?? (context.parent ? [context.parent] : null);
    const done = inParent(toPath, chain, (name) => {
      if (context.replacing !== undefined) expectAsPlanned(name, context.replacing);
      const renamedAtMs = Date.now();
      if (context.fresh) {
        placed = placeNew(staged.tempPath, name, context);
      } else {
        keepOverwritten(name, toPath.slice(context.toRoot.length + 1), context);
        Deno.renameSync(staged.tempPath, name);
        placed = true;
      }
      return { signature: placedSignature(name, staged.written), renamedAtMs };
    });
    return {
      replica: { ...done.signature, hash: staged.hash, hashedAtMs: done.renamedAtMs },
      source: { ...signatureOf(staged.read), hash: staged.hash, hashedAtMs: staged.readAtMs },
    };
  } finally {
    if (!placed) discardTemp(staged.tempPath, context);
  }
}

/**
 * Gives the staged file its final name without replacing anything: a hard link, which fails
 * when the name is taken (whatever the name leads to by then), then the temporary name
 * removed. Where the file system has no hard links, a rename once the name is seen free.
 *
 * @returns True: the temporary file is placed (or gone).
 */
function placeNew(tempPath: string, name: string, context: CopySettings): boolean {
  const appeared = () =>
    new RefusedError("Kept: an entry appeared at this name during the run; left as it is");
  try {
    Deno.linkSync(tempPath, name);
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) throw appeared();
    const noLinks = error instanceof Deno.errors.PermissionDenied ||
      error instanceof Deno.errors.NotSupported;
    if (!noLinks) throw error;
    if (pathExists(name)) throw appeared();
    Deno.renameSync(tempPath, name);
    return true;
  }
  discardTemp(tempPath, context);
  return true;
}

/**
 * Throws unless the target name is what the plan saw (`null`: nothing): looked at right before
 * the rename that would replace it.
 */
function expectAsPlanned(name: string, planned: Signature | null): void {
  let now: Entry | null = null;
  try {
    now = entryFromStat(Deno.lstatSync(name));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  if (planned === null && now === null) return;
  if (planned !== null && now?.kind === "file" && sameSignature(now, planned)) return;
  throw new RefusedError(
    planned === null
      ? "Kept: an entry appeared at this name while the restore copied the replica's file; " +
        "left as it is"
      : "Kept: the source file changed while the restore copied the replica's; left as it is " +
        "(run the restore again to replace it)",
  );
}

/**
 * The signature of a file just renamed into place: the rename gave it a new ctime (ext4 does),
 * which may fall in a later second than the one read before the rename, and the record must
 * match what the next scan sees, or the next run would hash the file again. Taken from the
 * path, which holds our file unless something replaced or wrote it meanwhile (then the
 * signature read before stays, and the next run does hash it again). Either way the hash is
 * dated before the rename, so the racy rule keeps it untrusted until a later run reads the file
 * (see `trustedHash`).
 */
function placedSignature(path: string, before: Signature): Signature {
  try {
    const placed = entryFromStat(Deno.lstatSync(path));
    const same = placed.kind === "file" && placed.ino === before.ino &&
      placed.size === before.size && placed.mtimeMs === before.mtimeMs;
    if (same) return signatureOf(placed);
  } catch {
    // Gone already: the next scan will not see it either.
  }
  return before;
}

/**
 * Makes `toPath` another name of the tree's file at `targetPath`: a link made in our `tmp/`
 * folder, then renamed over whatever is there (kept in the trash first, with one).
 */
export function placeHardLink(
  toPath: string,
  targetPath: string,
  context: CopySettings & Placement & { targetParent: Identity[] | null },
): void {
  placeThroughTemp(toPath, context, (tempPath) =>
    // The link is made from inside the folder of the file linked to, once it is shown to be
    // the one checked: never to a file outside through a swapped folder.
    inParent(targetPath, context.targetParent, (name) => {
      if (!Deno.lstatSync(name).isFile) throw new Error("the file to link to is not a file");
      Deno.linkSync(name, tempPath);
    }));
}

/** Where {@linkcode placeThroughTemp} puts an entry: its relative path, and its folder. */
export interface Placement {
  /** The entry's path relative to the root. */
  relative: string;
  /** What the folder it goes into and those above it must be ({@linkcode FolderGuard.chain}). */
  parent: Identity[] | null;
}

/** Makes `toPath` a symlink like `entry`, with its owner and mtime, through our `tmp/`. */
export function placeSymlink(
  toPath: string,
  entry: Entry,
  context: CopySettings & Placement,
): void {
  placeThroughTemp(toPath, context, (tempPath) => {
    Deno.symlinkSync(entry.target!, tempPath);
    // The l- calls act on the link itself (Deno.chownSync would follow it).
    if (context.owners) fs.lchownSync(tempPath, entry.uid, entry.gid);
    const mtime = new Date(entry.mtimeMs);
    fs.lutimesSync(tempPath, mtime, mtime);
  });
}

/**
 * Makes an entry under a new name in our `tmp/` folder (`make` fails if the name is taken: it
 * is only ever made new, in our own folder), then renames it over `toPath`, keeping what was
 * there in the trash first, with one.
 */
function placeThroughTemp(
  toPath: string,
  context: CopySettings & Placement,
  make: (tempPath: string) => void,
): void {
  const tempPath = tempPathIn(context.tempDir);
  expectIdentity(context.tempDir, context.tempIdentity);
  let made = false;
  try {
    make(tempPath);
    made = true;
    expectIdentity(context.tempDir, context.tempIdentity);
    inParent(toPath, context.parent, (name) => {
      keepOverwritten(name, context.relative, context);
      Deno.renameSync(tempPath, name);
    });
  } catch (error) {
    // Only our own entry, in our own folder, is removed; a name that was taken is not ours.
    const ours = made || !(error instanceof Deno.errors.AlreadyExists);
    if (ours && sameIdentity(identityOf(context.tempDir), context.tempIdentity)) {
      removeQuietly(tempPath);
    }
    throw error;
  }
}
