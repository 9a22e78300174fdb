/**
 * Writing a format-3 record (the layout is in `recordformat.ts`): {@linkcode RecordEncoder}
 * turns folders' rows into blocks in a byte buffer, and {@linkcode RecordWriter} writes them to
 * an open file descriptor, the only file call here.
 *
 * @module
 */

import * as fs from "node:fs";
import { crc32 } from "node:zlib";
import { encoder } from "./files.ts";
import { quoted } from "./format.ts";
import { compareNames, compareWalkOrder } from "./order.ts";
import type { RecordEntry } from "./record.ts";
import {
  BadRow,
  BUFFER_BYTES,
  COLUMN_COUNT,
  CRC_BYTES,
  CTIME,
  DIR,
  HASH_BYTES,
  HASHED_AT,
  HEADER,
  INO,
  isRelativePath,
  MAX_VARINT_BYTES,
  MTIME,
  NEAR_ESCAPE,
  type RecordRow,
  REPLICA,
  REPLICA_COLUMNS,
  REPLICA_HASH,
  SAME_HASH,
  SAME_HASHED_AT,
  SAME_MTIME,
  SAME_SIZE,
  sharedPrefixLength,
  SOURCE,
  SOURCE_COLUMNS,
  SOURCE_HASH,
  TRAILER_BYTES,
  utf8Length,
  writeUint32,
} from "./recordformat.ts";

/** Room a row needs besides its name: varints, flags, two sides with a hash each. */
const ROW_FIXED_BYTES = 3 * MAX_VARINT_BYTES + 2 * (5 * (MAX_VARINT_BYTES + 1) + HASH_BYTES);

/** Hex digit values by character code; -1 for anything else (upper case included). */
const HEX_VALUES = new Int8Array(128).fill(-1);
for (let digit = 0; digit < 16; digit++) HEX_VALUES[digit.toString(16).charCodeAt(0)] = digit;

/**
 * Writes a format-3 record to an open file descriptor, block by block, through a buffer of
 * about 1 MiB written out when full. The caller opens the file, and fsyncs and closes it after
 * {@linkcode RecordWriter.finish}. A call that throws writes nothing of its folder, and the
 * writer stays usable.
 *
 * @example
 * ```ts
 * const writer = new RecordWriter(fd);
 * writer.writeFolder("", [{ name: "a", kind: "dir", source: entry }]);
 * writer.finish();
 * ```
 */
export class RecordWriter {
  #encoder: RecordEncoder;
  /** The folder given last (written or empty), for the order check. */
  #lastFolder: string | null = null;
  #rowCount = 0;
  #finished = false;

  /** Writes the header at once, so an unwritable descriptor fails here. */
  constructor(fd: number) {
    this.#encoder = new RecordEncoder((bytes) => writeFully(fd, bytes));
    this.#encoder.flush();
  }

  /** Rows written so far. */
  get rowCount(): number {
    return this.#rowCount;
  }

  /** Bytes of the record so far, buffered ones included: after `finish()`, the file's size. */
  get bytesWritten(): number {
    return this.#encoder.length;
  }

  /**
   * Writes one folder's block. An empty `rows` writes nothing, but still counts for the order.
   *
   * @param folder The folder's path relative to the tree (`""` for the top), after the
   *   previous folder given in walk order ({@linkcode compareWalkOrder}).
   * @param rows Its entries, strictly by {@linkcode compareNames} of their names.
   * @throws {Error} When the folder or a row is out of order, or a row cannot be stored (a
   *   name with `/` or a lone surrogate, no side, a number that is not a safe integer, a hash
   *   that is not 64 lower-case hex digits).
   */
  writeFolder(folder: string, rows: readonly RecordRow[]): void {
    if (this.#finished) throw new Error("Cannot write to a finished record");
    if (!isRelativePath(folder)) {
      throw new Error(`Cannot write the folder ${quoted(folder)}: not a relative path`);
    }
    const last = this.#lastFolder;
    if (last !== null && compareWalkOrder(folder, last) <= 0) {
      throw new Error(
        `Cannot write the folder ${quoted(folder)} after ${quoted(last)}: out of walk order`,
      );
    }
    if (rows.length > 0) {
      this.#encoder.block(folder, rows);
      this.#rowCount += rows.length;
    }
    this.#lastFolder = folder;
  }

  /** Writes the trailer and what is buffered. Neither fsyncs nor closes the file. */
  finish(): void {
    if (this.#finished) throw new Error("Cannot finish a record twice");
    this.#encoder.trailer(this.#rowCount);
    this.#encoder.flush();
    this.#finished = true;
  }
}

/** Writes every byte: a write may take fewer than it was given. */
function writeFully(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) {
    done += fs.writeSync(fd, bytes, done, bytes.length - done);
  }
}

/**
 * Encodes a record into a byte buffer: the header, then blocks, then the trailer. When the
 * buffer is full, the complete blocks in it go to `spill` (the buffer grows only for a block
 * larger than itself). Checks rows, not the order of folders.
 */
export class RecordEncoder {
  #spill: (bytes: Uint8Array) => void;
  #bytes = new Uint8Array(BUFFER_BYTES);
  /** End of the bytes buffered. */
  #pos = 0;
  /** Start of the block being made; the bytes before it are complete and may be spilled. */
  #blockStart = 0;
  #spilled = 0;
  #columns = new Float64Array(COLUMN_COUNT);
  /** The folder of the last block made, which the next block's path is shared with. */
  #lastFolder = "";

  /** Starts with the header; `spill` takes complete bytes (it may keep them only while called). */
  constructor(spill: (bytes: Uint8Array) => void) {
    this.#spill = spill;
    this.#bytes.set(HEADER);
    this.#pos = this.#blockStart = HEADER.length;
  }

  /** Bytes made so far, spilled or buffered. */
  get length(): number {
    return this.#spilled + this.#pos;
  }

  /** Hands every buffered byte to `spill` (between blocks only). */
  flush(): void {
    this.#spill(this.#bytes.subarray(0, this.#pos));
    this.#spilled += this.#pos;
    this.#pos = this.#blockStart = 0;
    // One huge folder grew the buffer: let that memory go.
    if (this.#bytes.length > BUFFER_BYTES) this.#bytes = new Uint8Array(BUFFER_BYTES);
  }

  /** The end marker: `rowCount` in 8 bytes and their checksum. */
  trailer(rowCount: number): void {
    this.#ensureRoom(TRAILER_BYTES);
    const bytes = this.#bytes;
    const start = this.#pos;
    bytes[start] = 0;
    let count = rowCount;
    for (let i = 1; i <= 8; i++) {
      bytes[start + i] = count % 256;
      count = Math.floor(count / 256);
    }
    writeUint32(bytes, start + 9, crc32(bytes.subarray(start, start + 9)));
    this.#pos = this.#blockStart = start + TRAILER_BYTES;
  }

  /**
   * One folder's block, of at least one row. A row that cannot be stored leaves nothing of the
   * block behind.
   *
   * @throws {Error} Naming the row's path, when a row is out of order or cannot be stored.
   */
  block(folder: string, rows: readonly RecordRow[]): void {
    let rowName = "";
    try {
      // Varints (the body's length, the shared count, the text's length, the row count) and the
      // path. The body's length is written once the body is known: room is kept for it.
      this.#ensureRoom(4 * MAX_VARINT_BYTES + 3 * folder.length);
      this.#pos += MAX_VARINT_BYTES;
      const shared = sharedPrefixLength(this.#lastFolder, folder);
      this.#writeUnsigned(shared);
      this.#writeText(folder, shared);
      this.#writeUnsigned(rows.length);
      this.#columns.fill(0);
      let previous = "";
      for (let i = 0; i < rows.length; i++) {
        const row = rows[i]!;
        rowName = row.name;
        if (i > 0 && compareNames(previous, row.name) >= 0) {
          throw new BadRow(`it does not come after ${quoted(previous)} by name`);
        }
        this.#writeRow(row, previous);
        previous = row.name;
      }
      this.#closeBlock();
    } catch (error) {
      this.#pos = this.#blockStart;
      if (!(error instanceof BadRow)) throw error;
      const path = folder === "" ? rowName : `${folder}/${rowName}`;
      throw new Error(`Cannot write ${quoted(path)} to the record: ${error.message}`);
    }
    this.#lastFolder = folder;
  }

  /** Puts the body's length before it and its checksum after it. */
  #closeBlock(): void {
    this.#ensureRoom(CRC_BYTES);
    const bytes = this.#bytes;
    const bodyStart = this.#blockStart + MAX_VARINT_BYTES;
    const bodyLength = this.#pos - bodyStart;
    this.#pos = this.#blockStart;
    this.#writeUnsigned(bodyLength);
    bytes.copyWithin(this.#pos, bodyStart, bodyStart + bodyLength);
    const bodyEnd = this.#pos + bodyLength;
    writeUint32(bytes, bodyEnd, crc32(bytes.subarray(this.#pos, bodyEnd)));
    this.#pos = this.#blockStart = bodyEnd + CRC_BYTES;
  }

  #writeRow(row: RecordRow, previous: string): void {
    const { name, source, replica } = row;
    if (name.length === 0 || name.includes("/")) {
      throw new BadRow("a name must be non-empty and without '/'");
    }
    this.#ensureRoom(3 * name.length + ROW_FIXED_BYTES);
    const shared = sharedPrefixLength(previous, name);
    this.#writeUnsigned(shared);
    this.#writeText(name, shared);
    const flags = rowFlags(row);
    this.#writeUnsigned(flags);
    if ((flags & DIR) !== 0) {
      if (source) this.#writeNear(checkedCount(source.ino, "inode"), SOURCE_COLUMNS + INO);
      if (replica) this.#writeNear(checkedCount(replica.ino, "inode"), REPLICA_COLUMNS + INO);
      return;
    }
    if (source) this.#writeFileSide(source, SOURCE_COLUMNS, 0);
    if (replica) this.#writeFileSide(replica, REPLICA_COLUMNS, flags);
  }

  /** One side of a file; `shares` holds the flags of fields the replica takes from the source. */
  #writeFileSide(entry: RecordEntry, columns: number, shares: number): void {
    if ((shares & SAME_SIZE) === 0) this.#writeUnsigned(checkedCount(entry.size, "size"));
    if ((shares & SAME_MTIME) === 0) {
      this.#writeNear(checkedTime(entry.mtimeMs, "mtime"), columns + MTIME);
    }
    this.#writeNear(checkedTime(entry.ctimeMs, "ctime"), columns + CTIME);
    this.#writeNear(checkedCount(entry.ino, "inode"), columns + INO);
    if (entry.hash !== null && (shares & SAME_HASH) === 0) this.#writeHash(entry.hash);
    if ((shares & SAME_HASHED_AT) === 0) {
      this.#writeNear(checkedTime(entry.hashedAtMs, "hashedAt"), columns + HASHED_AT);
    }
  }

  #writeUnsigned(value: number): void {
    const bytes = this.#bytes;
    let pos = this.#pos;
    while (value >= 128) {
      bytes[pos++] = (value % 128) + 128;
      value = Math.floor(value / 128);
    }
    bytes[pos++] = value;
    this.#pos = pos;
  }

  /** The sign in the lowest bit, the magnitude above it. */
  #writeSigned(value: number): void {
    const magnitude = Math.abs(value);
    const first = (magnitude % 64) * 2 + (value < 0 ? 1 : 0);
    const rest = Math.floor(magnitude / 64);
    if (rest === 0) {
      this.#bytes[this.#pos++] = first;
      return;
    }
    this.#bytes[this.#pos++] = first + 128;
    this.#writeUnsigned(rest);
  }

  /** A field as its difference from the previous row's, or escaped and absolute. */
  #writeNear(value: number, column: number): void {
    const difference = value - this.#columns[column]!;
    if (Number.isSafeInteger(difference)) {
      this.#writeSigned(difference);
    } else {
      this.#bytes[this.#pos++] = NEAR_ESCAPE;
      this.#writeSigned(value);
    }
    this.#columns[column] = value;
  }

  /** `text` from code unit `from` on: its UTF-8 length, then its bytes. */
  #writeText(text: string, from: number): void {
    const length = text.length;
    let ascii = true;
    for (let i = from; i < length; i++) {
      if (text.charCodeAt(i) >= 128) {
        ascii = false;
        break;
      }
    }
    if (ascii) {
      this.#writeUnsigned(length - from);
      const bytes = this.#bytes;
      let pos = this.#pos;
      for (let i = from; i < length; i++) bytes[pos++] = text.charCodeAt(i);
      this.#pos = pos;
      return;
    }
    // A lone surrogate would be written as U+FFFD: the name read back would not be the same.
    if (!text.isWellFormed()) throw new BadRow("a name must not hold a lone surrogate");
    const part = from === 0 ? text : text.slice(from);
    const byteLength = utf8Length(part);
    this.#writeUnsigned(byteLength);
    encoder.encodeInto(part, this.#bytes.subarray(this.#pos, this.#pos + byteLength));
    this.#pos += byteLength;
  }

  #writeHash(hash: string): void {
    if (typeof hash !== "string" || hash.length !== 2 * HASH_BYTES) {
      throw new BadRow("a hash must be 64 lower-case hex digits");
    }
    const bytes = this.#bytes;
    const pos = this.#pos;
    for (let i = 0; i < HASH_BYTES; i++) {
      const high = HEX_VALUES[hash.charCodeAt(2 * i)]!;
      const low = HEX_VALUES[hash.charCodeAt(2 * i + 1)]!;
      if (!(high >= 0 && low >= 0)) throw new BadRow("a hash must be 64 lower-case hex digits");
      bytes[pos + i] = high * 16 + low;
    }
    this.#pos = pos + HASH_BYTES;
  }

  /**
   * Makes room for `count` more bytes: writes out the complete blocks before the one being

  /**
   * Makes room for `count` more bytes: spills the complete blocks before the one being made,
   * then grows the buffer only if that block alone does not fit.
   */
  #ensureRoom(count: number): void {
    if (this.#pos + count <= this.#bytes.length) return;
    const start = this.#blockStart;
    if (start > 0) {
      this.#spill(this.#bytes.subarray(0, start));
      this.#spilled += start;
      this.#bytes.copyWithin(0, start, this.#pos);
      this.#pos -= start;
      this.#blockStart = 0;
      if (this.#pos + count <= this.#bytes.length) return;
    }
    const grown = new Uint8Array(Math.max(2 * this.#bytes.length, this.#pos + count));
    grown.set(this.#bytes.subarray(0, this.#pos));
    this.#bytes = grown;
  }
}

/** The flags of a row, checking what they depend on. */
function rowFlags(row: RecordRow): number {
  const { kind, source, replica } = row;
  if (!source && !replica) throw new BadRow("a row needs a source or a replica side");
  let flags = (source ? SOURCE : 0) | (replica ? REPLICA : 0);
  if (kind === "dir") return flags | DIR;
  if (kind !== "file") throw new BadRow(`a row's kind must be "file" or "dir"`);
  if (source && source.hash !== null) flags |= SOURCE_HASH;
  if (replica && replica.hash !== null) flags |= REPLICA_HASH;
  if (source && replica) {
    if (source.hash !== null && replica.hash === source.hash) flags |= SAME_HASH;
    if (replica.size === source.size) flags |= SAME_SIZE;
    if (replica.mtimeMs === source.mtimeMs) flags |= SAME_MTIME;
    if (replica.hashedAtMs === source.hashedAtMs) flags |= SAME_HASHED_AT;
  }
  return flags;
}

function checkedCount(value: number, field: string): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new BadRow(`its ${field} (${value}) is not a whole number from 0 to 2^53`);
  }
  return value;
}

function checkedTime(value: number, field: string): number {
  if (!Number.isSafeInteger(value)) {
    throw new BadRow(`its ${field} (${value}) is not a whole number of milliseconds`);
  }
  return value;
}
