/**
 * The record's files as this host reads them: a format-3 record opened without following a link
 * and read block by block through positional reads ({@linkcode openRecord}), a version-2 record
 * read whole to convert it ({@linkcode loadRecord}), either as one stream
 * ({@linkcode openAnyRecord}); the same readers over a record's bytes held in memory, as another
 * host sent them ({@linkcode recordFromBytes}, {@linkcode legacyRecordFromBytes}). Decoding is
 * `recorddecode.ts`'s, over the bytes read here.
 *
 * @module
 */

import * as fs from "node:fs";
import { crc32 } from "node:zlib";
import { errorText, UsageError } from "../../errors.ts";
import { pathExists } from "../../files.ts";
import { formatBytes, quoted } from "../../format.ts";
import { emptyRecord, type FileRecord, parseRecord } from "../../record.ts";
import { BlockDecoder } from "../../recorddecode.ts";
import {
  BLOCK_BASE_BYTES,
  blockCapBytes,
  BUFFER_BYTES,
  CorruptRecord,
  CRC_BYTES,
  HEADER,
  isRelativePath,
  MAX_VARINT_BYTES,
  readUint32,
  recordCapBytes,
  type RecordRow,
  type RecordSource,
  TRAILER_BYTES,
} from "../../recordformat.ts";
import {
  ArrayCursor,
  type BlockCursor,
  emptyRecordSource,
  recordSourceFromV2,
  WalkOrderSource,
} from "../../recordread.ts";
import { compareWalkOrder } from "../../order.ts";
import { openOwnFile } from "./meta.ts";

/**
 * Opens a format-3 record for reading folder by folder, in pieces of 1 MiB, never whole. The
 * path is looked at with `lstat` first, then opened without following a link or blocking on a
 * fifo, and the file opened must be the inode looked at: with scoped permissions Deno resolves
 * a link itself before it opens a path, so O_NOFOLLOW alone does not refuse one. A record that
 * is not one (bad header or trailer, cut short, a checksum or order that fails, more rows or
 * fewer than its trailer says), is larger than its trailer's row count allows
 * ({@linkcode recordCapBytes}) or than `maxBytes` (no more cap by default: the trailer's is the
 * one that matters), or cannot be read is reported once through `onCorrupt` (one line naming
 * the path and ending "; rebuilding it"), and from then on reads as empty: the record is a
 * cache of what can be rebuilt.
 *
 * @returns The source, or null when there is no record.
 * @throws {UsageError} When the path is not a regular file (a link, a fifo, a folder), or was
 *   replaced while it was opened.
 */
export function openRecord(
  path: string,
  options: { maxBytes?: number; onCorrupt: (message: string) => void },
): RecordSource | null {
  const { maxBytes = Number.MAX_SAFE_INTEGER, onCorrupt } = options;
  let opened: { fd: number; size: number } | null;
  try {
    opened = openOwnFile(path);
  } catch (error) {
    if (error instanceof UsageError) throw error;
    onCorrupt(`Cannot read the record ${quoted(path)} (${errorText(error, true)}); rebuilding it`);
    return new WalkOrderSource(new ArrayCursor([], true));
  }
  if (opened === null) return null;
  const { fd, size } = opened;
  if (size > maxBytes) {
    fs.closeSync(fd);
    onCorrupt(
      `The record ${quoted(path)} is ${formatBytes(size)}, more than a record of this tree can ` +
        `be (${formatBytes(maxBytes)}); rebuilding it`,
    );
    return new WalkOrderSource(new ArrayCursor([], true));
  }
  return new WalkOrderSource(new FileCursor({ reads: fileReads(fd), path, size, onCorrupt }));
}

/**
 * A format-3 record's bytes held in memory (the pieces as they came, in order), read exactly as
 * {@linkcode openRecord} reads a file: every check of the format, and damage reported once
 * through `onCorrupt`, the record named `name` in the message.
 */
export function recordFromBytes(
  pieces: readonly Uint8Array[],
  options: { name: string; onCorrupt: (message: string) => void },
): RecordSource {
  const reads = memoryReads(pieces);
  const { name: path, onCorrupt } = options;
  return new WalkOrderSource(new FileCursor({ reads, path, size: reads.size, onCorrupt }));
}

/**
 * A version-2 record's bytes held in memory, parsed as {@linkcode loadRecord} parses the file
 * and seen as one stream in walk order; a corrupt one reads as empty, reported through
 * `onCorrupt` with `name` in the message.
 */
export function legacyRecordFromBytes(
  bytes: Uint8Array,
  options: { name: string; onCorrupt: (message: string) => void },
): RecordSource {
  return recordSourceFromV2(parseLegacy(bytes, options.name, options.onCorrupt));
}

/** Where a record's bytes are read from: positional reads, as `pread` does them. */
interface PositionalReads {
  /** Reads up to `length` bytes at `position` into `buffer` at `offset`: how many (0 at the end). */
  read(buffer: Uint8Array, offset: number, length: number, position: number): number;
  /** Lets go of the bytes. */
  close(): void;
}

/** Reads of an open file. */
function fileReads(fd: number): PositionalReads {
  return {
    read: (buffer, offset, length, position) => fs.readSync(fd, buffer, offset, length, position),
    close: () => fs.closeSync(fd),
  };
}

/** Reads of pieces of bytes in memory, seen as one run of bytes. */
function memoryReads(pieces: readonly Uint8Array[]): PositionalReads & { size: number } {
  const starts: number[] = [];
  let size = 0;
  for (const piece of pieces) {
    starts.push(size);
    size += piece.length;
  }
  let held: readonly Uint8Array[] = pieces;
  const read = (buffer: Uint8Array, offset: number, length: number, position: number) => {
    let done = 0;
    // The last piece starting at or before the position: found by halving.
    let low = 0;
    let high = held.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (starts[middle]! <= position) low = middle;
      else high = middle - 1;
    }
    for (let i = low; i < held.length && done < length; i++) {
      const piece = held[i]!;
      const from = Math.max(0, position + done - starts[i]!);
      const part = piece.subarray(from, Math.min(piece.length, from + length - done));
      buffer.set(part, offset + done);
      done += part.length;
    }
    return done;
  };
  return { size, read, close: () => held = [] };
}

/**
 * The record a run reads, opened once: format 3 at `paths.record`, else a version-2 record at
 * `paths.legacyRecord` seen as the same stream (converted by the run that writes the next
 * record), else an empty one. Corruption is reported through `onCorrupt` as with
 * {@linkcode openRecord}; a version-2 record is parsed whole, so one larger than
 * `LEGACY_RECORD_MAX_BYTES` (1 GiB) is refused.
 *
 * @throws {UsageError} When a record's path is not a regular file.
 */
export function openAnyRecord(
  paths: { record: string; legacyRecord: string },
  onCorrupt: (message: string) => void,
): RecordSource {
  const current = openRecord(paths.record, { onCorrupt });
  if (current !== null) return current;
  if (!pathExists(paths.legacyRecord)) return emptyRecordSource();
  return recordSourceFromV2(loadRecord(paths.legacyRecord, { onCorrupt }));
}

/** A block whose frame is checked and whose folder is known, its rows not yet decoded. */
interface PendingBlock {
  folder: string;
  rowCount: number;
  /** Where its rows start in the buffer. */
  rowsStart: number;
  /** Where its body ends in the buffer (its checksum follows). */
  bodyEnd: number;
  /** Its whole length in the file: length, body, checksum. */
  frameLength: number;
}

/**
 * Blocks read from a record file in pieces: each block is held whole in the buffer (grown for
 * a folder larger than a piece) so its checksum is checked before anything in it is used.
 */
class FileCursor implements BlockCursor {
  #reads: PositionalReads | null;
  #path: string;
  #onCorrupt: (message: string) => void;
  #size: number;
  /** Where the trailer starts in the file: where the blocks end. */
  #blocksEnd: number;
  #bytes = new Uint8Array(BUFFER_BYTES);
  /** The next byte not yet used, in the buffer, and where it is in the file. */
  #start = 0;
  #offset = 0;
  /** The end of what the buffer holds, and where the next read starts in the file. */
  #filled = 0;
  #readPos = 0;
  /** Reads the fields of the block at hand, in the buffer. */
  #decoder = new BlockDecoder();
  #expectedRows = 0;
  #rowsSeen = 0;
  #previousFolder: string | null = null;
  #pending: PendingBlock | null = null;
  #corrupt = false;

  constructor(file: {
    reads: PositionalReads;
    path: string;
    size: number;
    onCorrupt: (message: string) => void;
  }) {
    this.#reads = file.reads;
    this.#path = file.path;
    this.#size = file.size;
    this.#blocksEnd = file.size - TRAILER_BYTES;
    this.#onCorrupt = file.onCorrupt;
    this.#guard(() => this.#readEnds());
  }

  get corrupt(): boolean {
    return this.#corrupt;
  }

  get rowCount(): number {
    return this.#expectedRows;
  }

  nextFolder(): string | null {
    if (this.#pending !== null) return this.#pending.folder;
    if (this.#reads === null) return null;
    return this.#guard(() => this.#loadBlock()) ?? null;
  }

  takeRows(): RecordRow[] {
    const pending = this.#pending;
    if (pending === null) return [];
    const rows = this.#guard(() =>
      this.#at(pending.rowsStart, pending.bodyEnd).decodeRows({
        rowCount: pending.rowCount,
        start: pending.rowsStart,
        end: pending.bodyEnd,
      })
    ) ?? [];
    this.skip();
    return rows;
  }

  skip(): void {
    const pending = this.#pending;
    if (pending === null) return;
    this.#pending = null;
    this.#start = pending.bodyEnd + CRC_BYTES;
    this.#offset += pending.frameLength;
  }

  close(): void {
    this.#pending = null;
    if (this.#reads === null) return;
    const reads = this.#reads;
    this.#reads = null;
    this.#bytes = new Uint8Array(0);
    reads.close();
  }

  /** Runs a step; corruption or a read error is reported once, and reading stops. */
  #guard<T>(step: () => T): T | undefined {
    try {
      return step();
    } catch (error) {
      this.close();
      if (this.#corrupt) return undefined;
      this.#corrupt = true;
      const where = quoted(this.#path);
      this.#onCorrupt(
        error instanceof CorruptRecord
          ? `The record ${where} is corrupt (${error.message}); rebuilding it`
          : `Cannot read the record ${where} (${errorText(error, true)}); rebuilding it`,
      );
      return undefined;
    }
  }

  /** Checks the header, and the trailer at the end of the file, before any block is read. */
  #readEnds(): void {
    if (this.#size < HEADER.length + TRAILER_BYTES) {
      throw new CorruptRecord("it is too short to be a record: it was cut short");
    }
    this.#ensure(HEADER.length);
    for (let i = 0; i < HEADER.length; i++) {
      if (this.#bytes[i] !== HEADER[i]) {
        throw new CorruptRecord("it does not start as a treesync record of format 3");
      }
    }
    this.#start = this.#offset = HEADER.length;
    const trailer = new Uint8Array(TRAILER_BYTES);
    for (let done = 0; done < TRAILER_BYTES;) {
      const count = this.#reads!.read(trailer, done, TRAILER_BYTES - done, this.#blocksEnd + done);
      if (count === 0) throw new CorruptRecord("it is shorter than when it was opened");
      done += count;
    }
    if (trailer[0] !== 0 || crc32(trailer.subarray(0, 9)) !== readUint32(trailer, 9)) {
      throw new CorruptRecord("it does not end with its end marker: it was cut short");
    }
    let rows = 0;
    for (let i = 8; i >= 1; i--) rows = rows * 256 + trailer[i]!;
    if (this.#size > recordCapBytes(rows)) {
      throw new CorruptRecord(
        `it is ${formatBytes(this.#size)}, more than a record of ${rows} rows can be ` +
          `(${formatBytes(recordCapBytes(rows))})`,
      );
    }
    this.#expectedRows = rows;
  }

  /** Reads the next block's frame whole, checks it, and decodes its folder. */
  #loadBlock(): string | null {
    if (this.#offset === this.#blocksEnd) {
      if (this.#rowsSeen !== this.#expectedRows) {
        throw new CorruptRecord(
          `it holds ${this.#rowsSeen} rows where its end says ${this.#expectedRows}`,
        );
      }
      this.close();
      return null;
    }
    const number = ++this.#decoder.blockNumber;
    this.#ensure(Math.min(MAX_VARINT_BYTES, this.#blocksEnd - this.#offset));
    const decoder = this.#at(this.#start, this.#bytes.length);
    const bodyLength = decoder.readUnsigned();
    const lengthBytes = decoder.pos - this.#start;
    const frameLength = lengthBytes + bodyLength + CRC_BYTES;
    if (bodyLength === 0 || this.#offset + frameLength > this.#blocksEnd) {
      throw new CorruptRecord(`block ${number} runs past the end of the record`);
    }
    this.#checkBlockSize(number, { lengthBytes, bodyLength });
    this.#ensure(frameLength);
    const bytes = this.#bytes;
    const bodyStart = this.#start + lengthBytes;
    const bodyEnd = bodyStart + bodyLength;
    if (crc32(bytes.subarray(bodyStart, bodyEnd)) !== readUint32(bytes, bodyEnd)) {
      throw new CorruptRecord(`block ${number} fails its checksum`);
    }
    const body = this.#at(bodyStart, bodyEnd);
    const previous = this.#previousFolder;
    const folder = body.readSharedText(previous ?? "");
    const rowCount = body.readUnsigned();
    if (rowCount === 0 || !isRelativePath(folder)) {
      throw new CorruptRecord(`block ${number} is malformed`);
    }
    if (previous !== null && compareWalkOrder(folder, previous) <= 0) {
      throw new CorruptRecord(`block ${number} is out of walk order`);
    }
    this.#rowsSeen += rowCount;
    if (this.#rowsSeen > this.#expectedRows) {
      throw new CorruptRecord(`it holds more rows than its end says (${this.#expectedRows})`);
    }
    this.#previousFolder = folder;
    this.#pending = { folder, rowCount, rowsStart: body.pos, bodyEnd, frameLength };
    return folder;
  }

  /**
   * Refuses a block larger than the rows it says it holds can be, before it is read whole: the
   * count is read from its first bytes, not yet checked (its checksum covers the whole body),
   * so that a damaged length never makes the reader hold more than a piece.
   */
  #checkBlockSize(number: number, frame: { lengthBytes: number; bodyLength: number }): void {
    const { lengthBytes, bodyLength } = frame;
    const head = Math.min(bodyLength, BLOCK_BASE_BYTES);
    this.#ensure(lengthBytes + head);
    const bodyStart = this.#start + lengthBytes;
    const decoder = this.#at(bodyStart, bodyStart + head);
    decoder.readUnsigned(); // the shared part of the folder's path
    const textBytes = decoder.readUnsigned(); // the rest of it
    decoder.pos += textBytes;
    if (decoder.pos >= decoder.end) throw new CorruptRecord(`block ${number} is malformed`);
    const rows = decoder.readUnsigned();
    if (bodyLength > blockCapBytes(rows)) {
      throw new CorruptRecord(
        `block ${number} is ${formatBytes(bodyLength)}, more than a block of ${rows} rows can ` +
          `be (${formatBytes(blockCapBytes(rows))})`,
      );
    }
  }

  /** Makes the buffer hold the next `count` bytes from `#start` on, reading what it lacks. */
  #ensure(count: number): void {
    if (this.#filled - this.#start >= count) return;
    if (this.#start + count > this.#bytes.length) {
      const kept = this.#bytes.subarray(this.#start, this.#filled);
      if (count > this.#bytes.length) {
        const grown = new Uint8Array(Math.max(count, 2 * this.#bytes.length));
        grown.set(kept);
        this.#bytes = grown;
      } else {
        this.#bytes.copyWithin(0, this.#start, this.#filled);
      }
      this.#filled -= this.#start;
      this.#start = 0;
    }
    while (this.#filled - this.#start < count) {
      const wanted = Math.min(this.#bytes.length - this.#filled, this.#size - this.#readPos);
      const got = wanted > 0
        ? this.#reads!.read(this.#bytes, this.#filled, wanted, this.#readPos)
        : 0;
      if (got === 0) throw new CorruptRecord("it is shorter than when it was opened");
      this.#filled += got;
      this.#readPos += got;
    }
  }

  /** The decoder, reading the buffer from `pos` to `end`. */
  #at(pos: number, end: number): BlockDecoder {
    const decoder = this.#decoder;
    decoder.bytes = this.#bytes;
    decoder.pos = pos;
    decoder.end = end;
    return decoder;
  }
}

/** A version-2 record is parsed whole: one larger than this (1 GiB) is refused, not read. */
export const LEGACY_RECORD_MAX_BYTES: number = 1 << 30;

/**
 * Reads the record: opened without following a link and without blocking on a fifo, and read
 * only when it is a regular file of at most `maxBytes` ({@linkcode LEGACY_RECORD_MAX_BYTES}
 * unless said). A missing record is an empty one; an
 * unreadable, oversized or corrupt one is too, reported through `onCorrupt`, since the record
 * is a cache of what can be rebuilt.
 *
 * @throws {UsageError} When the path is not a regular file (a link, a fifo, a folder).
 */
export function loadRecord(
  path: string,
  options: { maxBytes?: number; onCorrupt: (message: string) => void },
): FileRecord {
  const { maxBytes = LEGACY_RECORD_MAX_BYTES, onCorrupt } = options;
  let bytes: Uint8Array;
  try {
    const read = readOwnFile(path, maxBytes);
    if (read === null) return emptyRecord();
    if (typeof read === "number") {
      onCorrupt(
        `The record ${quoted(path)} is ${
          formatBytes(read)
        }, more than a record of this tree can be ` +
          `(${formatBytes(maxBytes)}); rebuilding it`,
      );
      return emptyRecord();
    }
    bytes = read;
  } catch (error) {
    if (error instanceof UsageError) throw error;
    onCorrupt(`Cannot read the record ${quoted(path)} (${errorText(error, true)}); rebuilding it`);
    return emptyRecord();
  }
  return parseLegacy(bytes, path, onCorrupt);
}

/** A version-2 record's bytes parsed; a corrupt one is an empty record, reported. */
function parseLegacy(
  bytes: Uint8Array,
  path: string,
  onCorrupt: (message: string) => void,
): FileRecord {
  try {
    return parseRecord(new TextDecoder().decode(bytes));
  } catch (error) {
    onCorrupt(`The record ${quoted(path)} is corrupt (${errorText(error)}); rebuilding it`);
    return emptyRecord();
  }
}

/**
 * Reads one of our files without following a link or blocking on a fifo.
 *
 * @returns Its bytes; its size when over `maxBytes`; null when absent.
 * @throws {UsageError} When it is not a regular file.
 */
function readOwnFile(path: string, maxBytes: number): Uint8Array | number | null {
  const opened = openOwnFile(path);
  if (opened === null) return null;
  const { fd, size } = opened;
  try {
    if (size > maxBytes) return size;
    const bytes = new Uint8Array(size);
    let done = 0;
    while (done < bytes.length) {
      const count = fs.readSync(fd, bytes, done, bytes.length - done, null);
      if (count === 0) break;
      done += count;
    }
    return bytes.subarray(0, done);
  } finally {
    fs.closeSync(fd);
  }
}
