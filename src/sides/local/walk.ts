/**
 * The streamed walk of one tree: a worker (`walker.ts`) lists it folder by folder in walk order
 * (depth first, names by `compareNames`) and hands the listings over in packed batches through
 * a bounded queue, so a fast walker waits instead of filling memory; the main thread reads them
 * back one folder at a time (`stream.ts`).
 *
 * @module
 */

import { type Identity } from "../../files.ts";
import { compileFilters, type FilterRule } from "../../exclude.ts";
import { joinRel } from "../../paths.ts";
import {
  type Entry,
  entryFromStat,
  type EntryKind,
  type FolderListing,
  type Problem,
} from "../../scan.ts";
import { findNested, listFolder } from "./list.ts";

/** What a walker worker is asked to walk. */
export interface WalkRequest {
  /** The tree's root. */
  root: string;
  /** The folder to start at, relative to the root (`""` for the whole tree). */
  start: string;
  /**
   * Instead of `start`: several folders walked one after another in one walk, in walk order and
   * none inside another (the subtrees the end of a run fills). The first one's entry is sent.
   */
  starts?: string[];
  /** `--include`/`--exclude` rules, in order. */
  filters: FilterRule[];
  /** Leave the root's `.treesync` out. */
  skipMetaDir: boolean;
  /** Folders never entered: the other tree's root. */
  avoid: Identity[];
  /** Look for the other tree's root among all folders first (see `findNested`), and say. */
  probe?: boolean;
  /** Batches taken by the reader so far: the walker stays at most {@linkcode WALK_AHEAD} ahead. */
  taken: SharedArrayBuffer;
}

/** How many batches a walker may run ahead of its reader. */
export const WALK_AHEAD = 8;

/** A batch stops growing at this many entries (or {@linkcode BATCH_FOLDERS} folders). */
const BATCH_ENTRIES = 4096;

const BATCH_FOLDERS = 256;

/** Folder listings packed into columns: cheap to move between threads. */
export interface PackedListings {
  /** Each folder's path, its entry count, and whether it could not be listed. */
  folders: Array<[string, number, boolean]>;
  /** The entry names, joined by NUL (no name holds one). */
  names: string;
  /** Each entry's kind, as its index in the kinds' table. */
  kinds: Uint8Array;
  /** Each entry's permission bits. */
  modes: Uint16Array;
  /** uid, gid per entry. */
  owners: Uint32Array;
  /** size, mtimeMs, ctimeMs, ino, dev, nlink per entry. */
  numbers: Float64Array;
  /** Symlink targets by entry index, in entry order. */
  targets: Array<[number, string]>;
  /** Entries that could not be read, and folders that could not be listed. */
  problems: Problem[];
  /** Paths left out that may hold data: never deleted. */
  protectedPaths: string[];
  /** Special files skipped, for the warnings. */
  skipped: Problem[];
  /** The start folder's own entry (its `stat`, following a link), in the first batch. */
  start?: Entry;
  /** Set when the walk met the other tree's root, and stopped. */
  nested?: string;
}

const KIND_CODES: EntryKind[] = ["file", "dir", "symlink", "special"];

const NUMBERS = 6;

/**
 * Walks a tree in a worker, depth first in walk order, handing each full batch to `post`; waits
 * while the reader is {@linkcode WALK_AHEAD} batches behind. Returns when the tree is walked or
 * `stopped()` says so.
 */
export function walkInWorker(
  request: WalkRequest,
  post: (batch: PackedListings) => void,
  stopped: () => boolean,
  probed: (nested: string | null) => void,
): void {
  const taken = new Int32Array(request.taken);
  const options = {
    exclude: compileFilters(request.filters),
    skipMetaDir: request.skipMetaDir,
    avoid: request.avoid,
  };
  if (request.probe) probed(findNested(joinRel(request.root, request.start), options));
  let sent = 0;
  let batch = new BatchBuilder();
  const send = () => {
    while (sent - Atomics.load(taken, 0) >= WALK_AHEAD && !stopped()) {
      Atomics.wait(taken, 0, Atomics.load(taken, 0), 100);
    }
    post(batch.pack());
    sent++;
    batch = new BatchBuilder();
  };
  const first = request.starts === undefined ? request.start : request.starts[0];
  if (first !== undefined) {
    try {
      // The root is followed if it is a symlink; a folder below it never is (the reader checks
      // that it is the folder its parent's listing showed).
      const startPath = joinRel(request.root, first);
      batch.start = entryFromStat(
        first === "" ? Deno.statSync(startPath) : Deno.lstatSync(startPath),
      );
    } catch {
      // Gone or unreadable: the listing below says why.
    }
  }
  // A stack: the first start on top, each folder's subfolders above the starts after it.
  const pending = request.starts ? [...request.starts].reverse() : [request.start];
  while (pending.length > 0 && !stopped()) {
    const listing = listFolder(request.root, pending.pop()!, {
      ...options,
      onSkip: (path, message) => batch.skipped.push({ path, message }),
    });
    batch.add(listing);
    if (listing.nested !== undefined) break;
    const folders: string[] = [];
    for (const [name, entry] of listing.entries) {
      if (entry.kind === "dir") {
        folders.push(listing.folder === "" ? name : `${listing.folder}/${name}`);
      }
    }
    for (let i = folders.length - 1; i >= 0; i--) pending.push(folders[i]!);
    if (batch.full()) send();
  }
  send();
}

/**
 * The columns a batch is packed into, as it grows: one set per walker, reused batch after
 * batch, grown (doubled) for a folder larger than them. Each entry goes into them as its folder
 * is added, so that its object dies young instead of waiting for the batch to fill.
 */
const columns = {
  kinds: new Uint8Array(0),
  modes: new Uint16Array(0),
  owners: new Uint32Array(0),
  numbers: new Float64Array(0),
};

/** Makes the columns hold at least `count` entries, keeping the first `kept`. */
function growColumns(count: number, kept: number): void {
  if (count <= columns.kinds.length) return;
  const size = Math.max(count, 2 * columns.kinds.length, BATCH_ENTRIES);
  const grow = <T extends Uint8Array | Uint16Array | Uint32Array | Float64Array>(
    old: T,
    make: (length: number) => T,
    width: number,
  ) => {
    const grown = make(size * width);
    grown.set(old.subarray(0, kept * width));
    return grown;
  };
  columns.kinds = grow(columns.kinds, (length) => new Uint8Array(length), 1);
  columns.modes = grow(columns.modes, (length) => new Uint16Array(length), 1);
  columns.owners = grow(columns.owners, (length) => new Uint32Array(length), 2);
  columns.numbers = grow(columns.numbers, (length) => new Float64Array(length), NUMBERS);
}

/** Collects listings, packed into the columns as they come, until a batch is full. */
class BatchBuilder {
  folders: Array<[string, number, boolean]> = [];
  names: string[] = [];
  targets: Array<[number, string]> = [];
  problems: Problem[] = [];
  protectedPaths: string[] = [];
  skipped: Problem[] = [];
  start?: Entry;
  nested?: string;

  add(listing: FolderListing): void {
    this.folders.push([listing.folder, listing.entries.size, listing.unlistable ?? false]);
    let i = this.names.length;
    growColumns(i + listing.entries.size, i);
    const { kinds, modes, owners, numbers } = columns;
    for (const [name, entry] of listing.entries) {
      this.names.push(name);
      kinds[i] = KIND_CODES.indexOf(entry.kind);
      modes[i] = entry.mode;
      owners[i * 2] = entry.uid;
      owners[i * 2 + 1] = entry.gid;
      const at = i * NUMBERS;
      numbers[at] = entry.size;
      numbers[at + 1] = entry.mtimeMs;
      numbers[at + 2] = entry.ctimeMs;
      numbers[at + 3] = entry.ino;
      numbers[at + 4] = entry.dev;
      numbers[at + 5] = entry.nlink ?? 1;
      if (entry.target !== undefined) this.targets.push([i, entry.target]);
      i++;
    }
    this.problems.push(...listing.problems);
    this.protectedPaths.push(...listing.protectedPaths);
    if (listing.nested !== undefined) this.nested = listing.nested;
  }

  full(): boolean {
    return this.names.length >= BATCH_ENTRIES || this.folders.length >= BATCH_FOLDERS;
  }

  /** The batch, its columns copied out to move to the reader. */
  pack(): PackedListings {
    const count = this.names.length;
    const packed: PackedListings = {
      folders: this.folders,
      names: this.names.join("\0"),
      kinds: columns.kinds.slice(0, count),
      modes: columns.modes.slice(0, count),
      owners: columns.owners.slice(0, 2 * count),
      numbers: columns.numbers.slice(0, NUMBERS * count),
      targets: this.targets,
      problems: this.problems,
      protectedPaths: this.protectedPaths,
      skipped: this.skipped,
    };
    if (this.start) packed.start = this.start;
    if (this.nested !== undefined) packed.nested = this.nested;
    return packed;
  }
}

/** The columns of a packed batch that move between threads rather than being copied. */
export function transferablesOf(batch: PackedListings): ArrayBuffer[] {
  return [batch.kinds, batch.modes, batch.owners, batch.numbers].map((column) =>
    column.buffer as ArrayBuffer
  );
}

/** Unpacks a batch into one listing per folder, in walk order. */
export function unpackListings(batch: PackedListings): FolderListing[] {
  const names = batch.names === "" && batch.kinds.length === 0 ? [] : batch.names.split("\0");
  const { kinds, modes, owners, numbers, targets } = batch;
  const listings: FolderListing[] = [];
  // Targets come in entry order: the next one's index is looked at, not a map.
  let target = 0;
  let targetAt = targets.length > 0 ? targets[0]![0] : -1;
  let i = 0;
  for (const [folder, count, unlistable] of batch.folders) {
    const listing: FolderListing = { folder, entries: new Map(), problems: [], protectedPaths: [] };
    if (unlistable) listing.unlistable = true;
    const entries = listing.entries;
    for (const end = i + count; i < end; i++) {
      const at = i * NUMBERS;
      const entry: Entry = {
        kind: KIND_CODES[kinds[i]!]!,
        size: numbers[at]!,
        mtimeMs: numbers[at + 1]!,
        ctimeMs: numbers[at + 2]!,
        ino: numbers[at + 3]!,
        dev: numbers[at + 4]!,
        nlink: numbers[at + 5]!,
        mode: modes[i]!,
        uid: owners[i * 2]!,
        gid: owners[i * 2 + 1]!,
      };
      if (i === targetAt) {
        entry.target = targets[target]![1];
        targetAt = ++target < targets.length ? targets[target]![0] : -1;
      }
      entries.set(names[i]!, entry);
    }
    listings.push(listing);
  }
  placeProblems(batch, listings);
  if (batch.nested !== undefined && listings.length > 0) {
    listings[listings.length - 1]!.nested = batch.nested;
  }
  return listings;
}

/** Problems and protected paths go with the folder they are in. */
function placeProblems(batch: PackedListings, listings: FolderListing[]): void {
  if (batch.problems.length === 0 && batch.protectedPaths.length === 0) return;
  const byFolder = new Map(listings.map((listing) => [listing.folder, listing]));
  const home = (path: string) => {
    const cut = path.lastIndexOf("/");
    return byFolder.get(cut < 0 ? "" : path.slice(0, cut));
  };
  for (const problem of batch.problems) {
    (byFolder.get(problem.path) ?? home(problem.path) ?? listings[0])?.problems.push(problem);
  }
  for (const path of batch.protectedPaths) {
    const listing = byFolder.get(path)?.unlistable ? byFolder.get(path) : home(path);
    (listing ?? listings[0])?.protectedPaths.push(path);
  }
}
