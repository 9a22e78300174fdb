/**
 * The payloads of the read side of the protocol (see the frame table in `frames.ts`): how an
 * entry, a folder listing, a walk request, a stat, a hash and a file's read travel. Pure:
 * values in, bytes out.
 *
 * Compact on purpose, since a listing is most of what a no-op run sends: integers are LEB128
 * varints (signed ones zigzagged first), strings are UTF-8 after a varint length, and an
 * entry's optional fields are announced by bits of its first byte. A typical file entry is
 * 25–40 bytes plus its name.
 *
 * An entry: `kind|bits` (kind in bits 0–1: file, dir, symlink, special; bit 2 a link target
 * follows; bit 3 `nlink` follows, when it is not 1), mode, uid, gid, size, mtime (signed),
 * ctime (signed), inode, device, [nlink], [target].
 *
 * A listing batch (`Listing` and `WalkEnd`): `bits` (0 the start's entry follows, 1 the probe's
 * answer follows, 2 it found a folder), [start entry], [probed folder], the skipped special
 * files (path, message), then the folder parts. A part is a folder's path, `bits` (0 it could
 * not be listed, 1 the next part, first of the next batch, is more of the same folder, 2 the
 * folder met the other tree's root), its entries (name, entry), problems (path, message) and
 * protected paths, and with bit 2 the nested folder. A folder too large for one frame is cut
 * into parts (and a long list of skipped files across batches), so no frame passes
 * {@linkcode LISTING_SOFT_LIMIT} by more than one item.
 *
 * A read: `Read` is the file's path; its bytes come as the payloads of `Data` frames as they
 * are (or zstd-compressed, with the `Compressed` flag); `DataEnd` is the SHA-256 (32 bytes),
 * a byte saying whether the file changed while read, and its entry as read.
 *
 * @module
 */

import { type FilterRule } from "../exclude.ts";
import { type Identity } from "../files.ts";
import {
  type Entry,
  type EntryKind,
  type FolderListing,
  type Problem,
  type Signature,
} from "../scan.ts";
import {
  type FileHash,
  type FileSource,
  type FolderSource,
  type HashOutcome,
  type StreamedFileEnd,
  type TreeReader,
  type TreeWalk,
} from "../sides/reader.ts";
import { FrameError } from "./frames.ts";
import { MAX_NAME_BYTES, MAX_PATH_BYTES } from "./wirepath.ts";
import { MAX_STRING_BYTES, WireReader, WireWriter } from "./wirebytes.ts";

export { WireReader, WireWriter } from "./wirebytes.ts";

// Re-exported: the types the remote modules' documentation names.
export type { EntryKind, FilterRule, Signature };
export type {
  Entry,
  FileHash,
  FileSource,
  FolderListing,
  FolderSource,
  HashOutcome,
  Identity,
  Problem,
  TreeReader,
  TreeWalk,
};

const utf8 = new TextEncoder();

/** A listing frame is sent once its payload reaches this many bytes (1 MiB is the cap). */
export const LISTING_SOFT_LIMIT = 256 * 1024;

/**
 * Listing batches a walk may send before the client grants more with `Credit` (one for each
 * batch it took): how far the far end's walk runs ahead of the engine.
 */
export const WALK_CREDIT = 4;

const KINDS: EntryKind[] = ["file", "dir", "symlink", "special"];

/** Appends an entry (without its name; `hash` is not sent). */
export function writeEntry(writer: WireWriter, entry: Entry): void {
  const nlink = entry.nlink ?? 1;
  const bits = KINDS.indexOf(entry.kind) | (entry.target === undefined ? 0 : 4) |
    (nlink === 1 ? 0 : 8);
  writer.u8(bits).varint(entry.mode).varint(entry.uid).varint(entry.gid).varint(entry.size);
  writer.zint(entry.mtimeMs).zint(entry.ctimeMs).varint(entry.ino).varint(entry.dev);
  if (nlink !== 1) writer.varint(nlink);
  if (entry.target !== undefined) writer.string(entry.target);
}

/** Reads an entry written by {@linkcode writeEntry}. */
export function readEntry(reader: WireReader): Entry {
  const bits = reader.u8();
  if (bits > 15) throw new FrameError(`Unknown entry bits ${bits}`);
  const entry: Entry = {
    kind: KINDS[bits & 3]!,
    mode: reader.varint() & 0o7777,
    uid: reader.varint(),
    gid: reader.varint(),
    size: reader.varint(),
    mtimeMs: reader.zint(),
    ctimeMs: reader.zint(),
    ino: reader.varint(),
    dev: reader.varint(),
    nlink: 1,
  };
  if (bits & 8) entry.nlink = reader.varint();
  if (bits & 4) entry.target = reader.string(MAX_PATH_BYTES);
  return entry;
}

function readProblems(reader: WireReader): Problem[] {
  const problems: Problem[] = [];
  for (let n = reader.count(); n > 0; n--) {
    problems.push({ path: reader.string(MAX_PATH_BYTES), message: reader.string() });
  }
  return problems;
}

function writeStrings(writer: WireWriter, strings: readonly string[]): void {
  writer.varint(strings.length);
  for (const string of strings) writer.string(string);
}

function readStrings(reader: WireReader, max: number = MAX_STRING_BYTES): string[] {
  const strings: string[] = [];
  for (let n = reader.count(); n > 0; n--) strings.push(reader.string(max));
  return strings;
}

/**
 * An `Open` request: the tree's absolute path, whether it is written, and how the file data
 * the server sends travels.
 */
export interface OpenRequest {
  /** The tree's root on the far end (absolute). */
  path: string;
  /** Read only, or also written. */
  role: "read" | "write";
  /** `-z`: Data frames the server sends may be compressed (default: not). */
  compress?: boolean;
  /** `--bwlimit`: the bytes a second the server's Data frames may take (null, default: any). */
  rate?: number | null;
}

/** An `Open` request as the server reads it: every setting given. */
export type OpenSettings = Required<OpenRequest>;

/**
 * An `Open` frame's payload: path, role, then the data settings (a byte of bits, bit 0
 * compress; the rate, 0 for none). A payload that ends after the role asks for neither: that
 * is how the settings go when neither is asked, so an earlier server still takes it.
 */
export function encodeOpen(request: OpenRequest): Uint8Array {
  const writer = new WireWriter().string(request.path).u8(request.role === "read" ? 0 : 1);
  if (!request.compress && !request.rate) return writer.finish();
  return writer.u8(request.compress ? 1 : 0).varint(request.rate ?? 0).finish();
}

/** Reads an `Open` frame's payload (the path is checked by the server, against its root). */
export function decodeOpen(payload: Uint8Array): OpenSettings {
  const reader = new WireReader(payload);
  const path = reader.string(MAX_PATH_BYTES);
  const role = reader.u8();
  if (role > 1) throw new FrameError(`Unknown tree role ${role}`);
  let compress = false;
  let rate: number | null = null;
  if (!reader.atEnd) {
    const bits = reader.u8();
    if (bits > 1) throw new FrameError(`Unknown data settings ${bits}`);
    compress = bits === 1;
    rate = reader.varint() || null;
  }
  reader.done();
  return { path, role: role === 0 ? "read" : "write", compress, rate };
}

/** An identity, or none: a byte, then device and inode. */
function writeIdentity(writer: WireWriter, identity: Identity | null): void {
  if (identity === null) writer.u8(0);
  else writer.u8(1).varint(identity.dev).varint(identity.ino);
}

function readIdentity(reader: WireReader): Identity | null {
  const present = reader.u8();
  if (present > 1) throw new FrameError("Malformed identity");
  return present === 0 ? null : { dev: reader.varint(), ino: reader.varint() };
}

/** The `Ok` answer to `Open`: the root's identity now (null: nothing is there). */
export function encodeOpened(identity: Identity | null): Uint8Array {
  const writer = new WireWriter();
  writeIdentity(writer, identity);
  return writer.finish();
}

/** Reads the `Ok` answer to `Open`. */
export function decodeOpened(payload: Uint8Array): Identity | null {
  const reader = new WireReader(payload);
  const identity = readIdentity(reader);
  reader.done();
  return identity;
}

/** A `Walk` frame's payload. */
export function encodeWalk(walk: TreeWalk): Uint8Array {
  const writer = new WireWriter();
  writeStrings(writer, walk.starts);
  writer.varint(walk.filters.length);
  for (const rule of walk.filters) writer.u8(rule.kind === "include" ? 0 : 1).string(rule.pattern);
  writer.varint(walk.avoid.length);
  for (const identity of walk.avoid) writer.varint(identity.dev).varint(identity.ino);
  writer.u8(walk.probe === undefined ? 0 : walk.probe ? 2 : 1);
  const renames = [...walk.renames ?? []];
  writer.varint(renames.length);
  for (const [from, to] of renames) writer.string(from).string(to);
  return writer.finish();
}

/** Reads a `Walk` frame's payload; every path in it is checked. */
export function decodeWalk(payload: Uint8Array): TreeWalk {
  const reader = new WireReader(payload);
  const starts: string[] = [];
  for (let n = reader.count(); n > 0; n--) starts.push(reader.path());
  const filters: FilterRule[] = [];
  for (let n = reader.count(); n > 0; n--) {
    const kind = reader.u8();
    if (kind > 1) throw new FrameError(`Unknown filter kind ${kind}`);
    filters.push({ kind: kind === 0 ? "include" : "exclude", pattern: reader.string() });
  }
  const avoid: Identity[] = [];
  for (let n = reader.count(); n > 0; n--) {
    avoid.push({ dev: reader.varint(), ino: reader.varint() });
  }
  const probe = reader.u8();
  if (probe > 2) throw new FrameError(`Unknown probe setting ${probe}`);
  const renames = new Map<string, string>();
  for (let n = reader.count(); n > 0; n--) renames.set(reader.path(), reader.path());
  reader.done();
  const walk: TreeWalk = { starts, filters, avoid };
  if (probe !== 0) walk.probe = probe === 2;
  if (renames.size > 0) walk.renames = renames;
  return walk;
}

/** What a listing batch says besides its folders. */
export interface BatchHeader {
  /** The first start folder's own entry, in the first batch that has it. */
  start?: Entry | null;
  /** The probe's answer (null: nothing found), in the first batch after it. */
  probed?: string | null;
  /** Special files skipped, since the last batch. */
  skipped: Problem[];
}

/** One folder's part in a batch: all of it, or a piece when `continues`. */
export interface ListingPart {
  /** The folder's listing (or the piece in this batch). */
  listing: FolderListing;
  /** More of the same folder comes first in the next batch. */
  continues: boolean;
}

/** A decoded listing batch. */
export interface ListingBatch extends BatchHeader {
  /** The folder parts, in walk order. */
  parts: ListingPart[];
}

/** The fields of one folder part as they are written, with their counts. */
class PartBuilder {
  entries = new WireWriter();
  entryCount = 0;
  problems = new WireWriter();
  problemCount = 0;
  kept = new WireWriter();
  keptCount = 0;

  get length(): number {
    return this.entries.length + this.problems.length + this.kept.length;
  }
}

/**
 * Cuts a walk into listing batch payloads of about {@linkcode LISTING_SOFT_LIMIT} bytes:
 * folders are added as they come and each full batch is handed back at once, so that what is
 * held is one batch and the folder being cut. Entries, problems, protected paths and skipped
 * files are all cut, so no payload passes the limit by more than one item.
 */
export class ListingBatcher {
  readonly #limit: number;
  #header: BatchHeader = { skipped: [] };
  #skipped = new WireWriter();
  #skippedCount = 0;
  #parts = new WireWriter();
  #partCount = 0;

  /** A batcher that cuts at `limit` bytes. */
  constructor(limit: number = LISTING_SOFT_LIMIT) {
    this.#limit = limit;
  }

  /** Bytes held for the batch being built. */
  get buffered(): number {
    return this.#parts.length + this.#skipped.length;
  }

  /** Folder parts in the batch being built. */
  get folders(): number {
    return this.#partCount;
  }

  /**
   * Says the start's entry, the probe's answer, or specials skipped, in the next batch.
   *
   * @returns The batches the skipped files filled, to be sent in order.
   */
  note(header: Partial<BatchHeader>): Uint8Array[] {
    if (header.start !== undefined) this.#header.start = header.start;
    if (header.probed !== undefined) this.#header.probed = header.probed;
    const full: Uint8Array[] = [];
    for (const problem of header.skipped ?? []) {
      this.#skipped.string(problem.path).string(problem.message);
      this.#skippedCount++;
      if (this.buffered >= this.#limit) full.push(this.take());
    }
    return full;
  }

  /** Adds a folder; returns the batches it filled, to be sent in order. */
  add(listing: FolderListing): Uint8Array[] {
    const full: Uint8Array[] = [];
    let part = new PartBuilder();
    const cutIfFull = () => {
      if (this.buffered + part.length < this.#limit) return;
      this.#writePart(listing, part, true);
      full.push(this.take());
      part = new PartBuilder();
    };
    for (const [name, entry] of listing.entries) {
      part.entries.string(name);
      writeEntry(part.entries, entry);
      part.entryCount++;
      cutIfFull();
    }
    for (const problem of listing.problems) {
      part.problems.string(problem.path).string(problem.message);
      part.problemCount++;
      cutIfFull();
    }
    for (const path of listing.protectedPaths) {
      part.kept.string(path);
      part.keptCount++;
      cutIfFull();
    }
    this.#writePart(listing, part, false);
    if (this.buffered >= this.#limit) full.push(this.take());
    return full;
  }

  #writePart(listing: FolderListing, part: PartBuilder, continues: boolean): void {
    const nested = !continues && listing.nested !== undefined;
    const bits = (listing.unlistable ? 1 : 0) | (continues ? 2 : 0) | (nested ? 4 : 0);
    this.#parts.string(listing.folder).u8(bits);
    this.#parts.varint(part.entryCount).append(part.entries);
    this.#parts.varint(part.problemCount).append(part.problems);
    this.#parts.varint(part.keptCount).append(part.kept);
    if (nested) this.#parts.string(listing.nested!);
    this.#partCount++;
  }

  /** The batch built so far, as a payload; the batcher starts a new one. */
  take(): Uint8Array {
    const writer = new WireWriter();
    const { start, probed } = this.#header;
    const hasStart = start !== undefined && start !== null;
    writer.u8((hasStart ? 1 : 0) | (probed !== undefined ? 2 : 0) | (probed ? 4 : 0));
    if (hasStart) writeEntry(writer, start);
    if (probed) writer.string(probed);
    writer.varint(this.#skippedCount).append(this.#skipped);
    writer.varint(this.#partCount).append(this.#parts);
    this.#header = { skipped: [] };
    this.#skipped = new WireWriter();
    this.#skippedCount = 0;
    this.#parts = new WireWriter();
    this.#partCount = 0;
    return writer.finish();
  }
}

/** Reads a folder name of a listing: one name, no `/`. */
function readName(reader: WireReader): string {
  const name = reader.string(MAX_NAME_BYTES);
  if (name === "" || name === "." || name === ".." || /[/\0]/.test(name)) {
    throw new FrameError(`A listing holds the name '${JSON.stringify(name).slice(1, -1)}'`);
  }
  return name;
}

/** Reads a `Listing` or `WalkEnd` payload. */
export function decodeListingBatch(payload: Uint8Array): ListingBatch {
  const reader = new WireReader(payload);
  const bits = reader.u8();
  if (bits > 7) throw new FrameError(`Unknown listing bits ${bits}`);
  const batch: ListingBatch = { skipped: [], parts: [] };
  if (bits & 1) batch.start = readEntry(reader);
  if (bits & 2) batch.probed = bits & 4 ? reader.path() : null;
  batch.skipped = readProblems(reader);
  for (let n = reader.count(); n > 0; n--) {
    const folder = reader.path();
    const partBits = reader.u8();
    if (partBits > 7) throw new FrameError(`Unknown folder bits ${partBits}`);
    const listing: FolderListing = { folder, entries: new Map(), problems: [], protectedPaths: [] };
    if (partBits & 1) listing.unlistable = true;
    for (let count = reader.count(); count > 0; count--) {
      const name = readName(reader);
      listing.entries.set(name, readEntry(reader));
    }
    listing.problems = readProblems(reader);
    listing.protectedPaths = readStrings(reader, MAX_PATH_BYTES);
    if (partBits & 4) listing.nested = reader.path();
    batch.parts.push({ listing, continues: (partBits & 2) !== 0 });
  }
  reader.done();
  return batch;
}

/** A `Stat` frame's payload: a relative path. */
export function encodeStat(path: string): Uint8Array {
  return new WireWriter().string(path).finish();
}

/** Reads a `Stat` frame's payload; the path is checked. */
export function decodeStat(payload: Uint8Array): string {
  const reader = new WireReader(payload);
  const path = reader.path();
  reader.done();
  return path;
}

/** A `StatReply`: the entry (null: nothing there) and, for the root, its identity. */
export interface StatReply {
  /** The entry, not following a link (the root followed). */
  entry: Entry | null;
  /** The root's identity, for `""`; null otherwise or when it is not there. */
  identity: Identity | null;
}

/** A `StatReply` frame's payload. */
export function encodeStatReply(reply: StatReply): Uint8Array {
  const writer = new WireWriter();
  if (reply.entry === null) writer.u8(0);
  else writeEntry(writer.u8(1), reply.entry);
  writeIdentity(writer, reply.identity);
  return writer.finish();
}

/** Reads a `StatReply` frame's payload. */
export function decodeStatReply(payload: Uint8Array): StatReply {
  const reader = new WireReader(payload);
  const present = reader.u8();
  if (present > 1) throw new FrameError("Malformed stat reply");
  const entry = present === 1 ? readEntry(reader) : null;
  const identity = readIdentity(reader);
  reader.done();
  return { entry, identity };
}

/** A file to hash: its path and the size the walk saw. */
export interface HashItem {
  /** Relative path. */
  path: string;
  /** Bytes, for batching. */
  size: number;
}

/** A `Hash` frame's payload. */
export function encodeHash(files: readonly HashItem[]): Uint8Array {
  const writer = new WireWriter().varint(files.length);
  for (const file of files) writer.string(file.path).varint(file.size);
  return writer.finish();
}

/** The bytes a file adds to a `Hash` payload, to cut requests under the cap. */
export function hashItemBytes(file: HashItem): number {
  return utf8.encode(file.path).length + 20;
}

/** Reads a `Hash` frame's payload; every path is checked. */
export function decodeHash(payload: Uint8Array): HashItem[] {
  const reader = new WireReader(payload);
  const files: HashItem[] = [];
  for (let n = reader.count(); n > 0; n--) {
    files.push({ path: reader.path(), size: reader.varint() });
  }
  reader.done();
  return files;
}

/** A `HashResult` batch: each file's outcome, and the bytes the batch read. */
export interface HashBatch {
  /** Outcomes by path. */
  outcomes: Array<[string, HashOutcome]>;
  /** Bytes of the files in this batch, for progress. */
  bytes: number;
}

/** A `HashResult` frame's payload. */
export function encodeHashBatch(batch: HashBatch): Uint8Array {
  const writer = new WireWriter().varint(batch.bytes).varint(batch.outcomes.length);
  for (const [path, outcome] of batch.outcomes) {
    writer.string(path);
    if ("error" in outcome) writer.u8(2).string(outcome.error.slice(0, 1000));
    else if (outcome.result === null) writer.u8(0);
    else {
      const { hash, signature, hashedAtMs } = outcome.result;
      writer.u8(1).bytes(hexBytes(hash)).varint(signature.size).zint(signature.mtimeMs);
      writer.zint(signature.ctimeMs).varint(signature.ino).zint(hashedAtMs);
    }
  }
  return writer.finish();
}

/** Reads a `HashResult` frame's payload. */
export function decodeHashBatch(payload: Uint8Array): HashBatch {
  const reader = new WireReader(payload);
  const bytes = reader.varint();
  const outcomes: Array<[string, HashOutcome]> = [];
  for (let n = reader.count(); n > 0; n--) {
    const path = reader.path();
    const tag = reader.u8();
    if (tag === 0) outcomes.push([path, { result: null }]);
    else if (tag === 2) outcomes.push([path, { error: reader.string() }]);
    else if (tag === 1) {
      const digest = reader.bytes(32);
      if (digest.length !== 32) throw new FrameError("A hash is not 32 bytes");
      const hash = hexOf(digest);
      const signature = {
        size: reader.varint(),
        mtimeMs: reader.zint(),
        ctimeMs: reader.zint(),
        ino: reader.varint(),
      };
      outcomes.push([path, { result: { hash, signature, hashedAtMs: reader.zint() } }]);
    } else throw new FrameError(`Unknown hash outcome ${tag}`);
  }
  reader.done();
  return { outcomes, bytes };
}

function hexBytes(hex: string): Uint8Array {
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new RangeError(`Not a SHA-256: ${hex}`);
  const bytes = new Uint8Array(32);
  for (let i = 0; i < 32; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

/** A `Credit` frame's payload: how many more listing batches the walk may send. */
export function encodeCredit(batches: number): Uint8Array {
  return new WireWriter().varint(batches).finish();
}

/** Reads a `Credit` frame's payload. */
export function decodeCredit(payload: Uint8Array): number {
  const reader = new WireReader(payload);
  const batches = reader.varint();
  reader.done();
  if (batches > 1024) throw new FrameError(`A credit of ${batches} batches is too large`);
  return batches;
}

/** A `Cancel` frame's payload: the request to stop answering. */
export function encodeCancel(id: number): Uint8Array {
  return new WireWriter().varint(id).finish();
}

/** Reads a `Cancel` frame's payload. */
export function decodeCancel(payload: Uint8Array): number {
  const reader = new WireReader(payload);
  const id = reader.varint();
  reader.done();
  if (id === 0 || id > 0xffffffff) throw new FrameError(`Cannot cancel request ${id}`);
  return id;
}

/** A `Read` frame's payload: the file's relative path. */
export function encodeRead(path: string): Uint8Array {
  return new WireWriter().string(path).finish();
}

/** Reads a `Read` frame's payload; the path is checked. */
export function decodeRead(payload: Uint8Array): string {
  const reader = new WireReader(payload);
  const path = reader.path();
  reader.done();
  return path;
}

/**
 * A `DataEnd` frame's payload: the SHA-256 of the bytes read (32 bytes), whether the file
 * changed while read, and the file's entry as it was once read.
 */
export function encodeDataEnd(end: StreamedFileEnd): Uint8Array {
  const writer = new WireWriter().bytes(hexBytes(end.hash)).u8(end.changed ? 1 : 0);
  writeEntry(writer, end.entry);
  return writer.finish();
}

/** Reads a `DataEnd` frame's payload. */
export function decodeDataEnd(payload: Uint8Array): StreamedFileEnd {
  const reader = new WireReader(payload);
  const digest = reader.bytes(32);
  if (digest.length !== 32) throw new FrameError("A hash is not 32 bytes");
  const changed = reader.u8();
  if (changed > 1) throw new FrameError("Malformed DataEnd");
  const entry = readEntry(reader);
  reader.done();
  if (entry.kind !== "file") throw new FrameError("A DataEnd names something not a file");
  return { hash: hexOf(digest), changed: changed === 1, entry };
}

function hexOf(digest: Uint8Array): string {
  return [...digest].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}
