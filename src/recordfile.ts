/**
 * The file record, format 3 (`REPLICA/.treesync/record`): what the last runs knew of each
 * entry of both trees, kept as folder blocks in walk order, so that a run reads it folder by
 * folder as it walks the trees, and writes it the same way, without ever holding it whole. This
 * module owns the format: writing it ({@linkcode RecordWriter}), reading it back with every
 * block checked ({@linkcode openRecord}), and a version-2 record seen as the same stream, for
 * the one-time conversion ({@linkcode recordSourceFromV2}).
 *
 * ## Layout
 *
 * Numbers are unsigned LEB128 varints unless said otherwise, made with arithmetic (values go
 * up to 2^53, past what bitwise operators keep).
 *
 * ```text
 * record    = header block* trailer
 * header    = "treesync-record 3\n"                        18 bytes
 * block     = bodyLength body crc32                        crc32 of body, 4 bytes little-endian
 * body      = shared text rowCount row*                    the folder's path, then its rows
 * row       = shared text flags side(source)? side(replica)?
 * text      = byteLength bytes                             UTF-8
 * file side = size? mtime? ctime ino hash? hashedAt?       see flags for the optional ones
 * dir side  = ino                                          nothing else of a folder is kept
 * trailer   = 0x00 rowCount crc32                          rowCount 8 bytes little-endian;
 *                                                          crc32 of the 9 bytes before it
 * ```
 *
 * - Blocks come in strictly increasing walk order of their folder ({@linkcode compareWalkOrder};
 *   the root folder is `""`), each with at least one row; rows in strictly increasing
 *   {@linkcode compareNames} order. A block depends on no other but for its path prefix, so a
 *   reader can skip the rows of folders it does not need.
 * - `shared` counts the UTF-16 code units taken from the previous block's path (or the previous
 *   row's name in the block), `text` holds the rest; a surrogate pair is never split.
 * - `flags`: 1 source side present, 2 replica side present, 4 source hash present, 8 replica
 *   hash present, 16 the replica's hash is the source's (not stored again), 32 same size, 64
 *   same mtime (the replica's not stored), 128 a folder, 256 same hashedAt. The bits are
 *   ordered so a synced file (both sides, one hash, same size and mtime) takes one byte.
 * - A hash is 32 raw bytes.
 * - `mtime`, `ctime`, `ino` and `hashedAt` are stored "near": as a signed difference from the
 *   same field of the same side in the previous row of the block (0 for the first row), since
 *   files of one folder tend to be written, hashed and numbered together. A signed number is
 *   the varint of 2 × magnitude + sign (made so that no step needs more than 53 bits). The
 *   single byte 0x01 (negative zero, never written otherwise) says an absolute value follows
 *   instead: used when the difference is not a safe integer, so every safe integer is stored
 *   exactly. The writer refuses numbers that are not safe integers, and negative sizes and
 *   inodes, rather than store them wrong.
 *
 * ## What a reader checks
 *
 * The trailer is read first, at open: a record cut short anywhere is refused before any of its
 * rows is used, and so is one larger than its rows can be (1 MiB + 1 KiB a row of its trailer's
 * count, {@linkcode recordCapBytes}). A block larger than the rows it says it holds can be (64 KiB
 * + 1 KiB a row, {@linkcode blockCapBytes}) is refused before it is read whole. Each block's CRC is checked before any of its rows (or even its path) is used,
 * then the order of its folder and rows. The total row count is compared with the trailer's
 * when reading reaches the end. A block damaged in the middle is found only when reading
 * reaches it: the blocks handed out before it passed their checks, so what they said stands,
 * and from it on the record reads as empty (its files are simply unrecorded, and rebuilt).
 *
 * @module
 */

import * as fs from "node:fs";
import { crc32 } from "node:zlib";
import { errorText, UsageError } from "./errors.ts";
import { encoder } from "./files.ts";
import { formatBytes, quoted } from "./format.ts";
import { openOwnFile } from "./sides/local/meta.ts";
import { compareNames, compareWalkOrder } from "./order.ts";
import type { FileRecord, RecordEntry } from "./record.ts";

/** What the record knows of one entry of a folder. */
export interface RecordRow {
  /** The entry's name in its folder (no `/`). */
  name: string;
  /** What it is. */
  kind: "file" | "dir";
  /** The source side as last read. Of a folder only `ino` is kept. */
  source?: RecordEntry;
  /** The replica side as last written or read. Of a folder only `ino` is kept. */
  replica?: RecordEntry;
}

/** One folder's rows, as {@linkcode RecordSource.blocks} hands them out. */
export interface RecordBlock {
  /** The folder's path relative to the tree, `""` for the top. */
  folder: string;
  /** Its rows, by {@linkcode compareNames} of their names. */
  rows: RecordRow[];
}

/** Where the engine reads rows from, folder by folder in walk order. */
export interface RecordSource {
  /**
   * The rows of `folder`'s entries by name; an empty map when the record has none. Folders
   * must be asked for in walk order: each call for a folder after the previous one, or for
   * the same folder again, which returns the same map object (as {@linkcode blocks} left it,
   * when it handed that folder out last). Blocks of folders never asked for are skipped,
   * their rows never decoded.
   *
   * @throws {Error} When `folder` comes before the folder asked for last.
   */
  rowsOf(folder: string): Map<string, RecordRow>;
  /** Every block from where reading stands, in walk order (for `--verify`). */
  blocks(): Generator<RecordBlock>;
  /** True once corruption was met: from then on the record reads as if the rest were empty. */
  readonly corrupt: boolean;
  /** The rows the whole record holds, as its trailer says (0 for none, or one refused). */
  readonly rowCount: number;
  /** Lets the file go; the source then reads as empty. Calling it again does nothing. */
  close(): void;
}

const HEADER = encoder.encode("treesync-record 3\n");

/** The end marker, a row count and a checksum. */
const TRAILER_BYTES = 13;

const HASH_BYTES = 32;

const CRC_BYTES = 4;

/** A varint of a value below 2^56 (safe integers are below 2^53) takes at most 8 bytes. */
const MAX_VARINT_BYTES = 8;

/**
 * The most one row takes: a name of 255 bytes, each a U+FFFD (3 bytes) when it is not UTF-8,
 * with its lengths (~770), flags, and two file sides of at most 5 numbers (9 bytes each,
 * escaped) and a hash (~150). A record larger than {@linkcode recordCapBytes} of its rows, or
 * a block larger than {@linkcode blockCapBytes} of its rows, is corrupt: refused before it is
 * read, never held in memory.
 */
const ROW_CAP_BYTES = 1024;

/** What a record holds besides its rows, at most: header, trailer, and room to spare. */
const RECORD_BASE_BYTES = 1 << 20;

/** What a block holds besides its rows, at most: its length, its folder's path, its count. */
const BLOCK_BASE_BYTES = 64 << 10;

/** The most bytes a record of `rows` rows may take: 1 MiB + 1 KiB a row. */
export function recordCapBytes(rows: number): number {
  return RECORD_BASE_BYTES + ROW_CAP_BYTES * rows;
}

/** The most bytes a block's body of `rows` rows may take: 64 KiB + 1 KiB a row. */
export function blockCapBytes(rows: number): number {
  return BLOCK_BASE_BYTES + ROW_CAP_BYTES * rows;
}

/** The writer writes in pieces of about this size; the reader reads in pieces of this size. */
const BUFFER_BYTES = 1 << 20;

/** Stands for an absolute value where a difference from the previous row was expected. */
const NEAR_ESCAPE = 0x01;

// Row flags. Their order puts a synced file in one varint byte.
const SOURCE = 1;
const REPLICA = 2;
const SOURCE_HASH = 4;
const REPLICA_HASH = 8;
const SAME_HASH = 16;
const SAME_SIZE = 32;
const SAME_MTIME = 64;
const DIR = 128;
const SAME_HASHED_AT = 256;
const FLAG_LIMIT = 512;

// "Near" fields keep the previous row's value of their side in a column.
const SOURCE_COLUMNS = 0;
const REPLICA_COLUMNS = 4;
const MTIME = 0;
const CTIME = 1;
const INO = 2;
const HASHED_AT = 3;
const COLUMN_COUNT = 8;

/** Room a row needs besides its name: varints, flags, two sides with a hash each. */
const ROW_FIXED_BYTES = 3 * MAX_VARINT_BYTES + 2 * (5 * (MAX_VARINT_BYTES + 1) + HASH_BYTES);

/** Whether each flags value can be: 1 where it can. Checked once per row read. */
const VALID_FLAGS = buildValidFlags();

function buildValidFlags(): Uint8Array {
  const valid = new Uint8Array(FLAG_LIMIT);
  for (let flags = 0; flags < FLAG_LIMIT; flags++) {
    const source = (flags & SOURCE) !== 0;
    const replica = (flags & REPLICA) !== 0;
    const fileBits = SOURCE_HASH | REPLICA_HASH | SAME_HASH | SAME_SIZE | SAME_MTIME |
      SAME_HASHED_AT;
    const ok = (source || replica) &&
      ((flags & DIR) !== 0 ? (flags & fileBits) === 0 : (source || (flags & SOURCE_HASH) === 0) &&
        (replica || (flags & REPLICA_HASH) === 0) &&
        ((source && replica) ||
          (flags & (SAME_HASH | SAME_SIZE | SAME_MTIME | SAME_HASHED_AT)) === 0) &&
        ((flags & SAME_HASH) === 0 ||
          (flags & (SOURCE_HASH | REPLICA_HASH)) === (SOURCE_HASH | REPLICA_HASH)));
    valid[flags] = ok ? 1 : 0;
  }
  return valid;
}

/** Hex digit values by character code; -1 for anything else (upper case included). */
const HEX_VALUES = new Int8Array(128).fill(-1);
for (let digit = 0; digit < 16; digit++) HEX_VALUES[digit.toString(16).charCodeAt(0)] = digit;

/** The two hex digits of each byte value, as character codes. */
const HEX_HIGH: number[] = [];
const HEX_LOW: number[] = [];
for (let byte = 0; byte < 256; byte++) {
  const pair = byte.toString(16).padStart(2, "0");
  HEX_HIGH.push(pair.charCodeAt(0));
  HEX_LOW.push(pair.charCodeAt(1));
}

/** Reused for every hash read: one `String.fromCharCode` call makes the whole string. */
const hexCodes: number[] = new Array(2 * HASH_BYTES).fill(0);

/** Reused for every ASCII name read. */
const charCodes: number[] = [];

/** ASCII texts up to this length are made with `String.fromCharCode`; others decoded. */
const MAX_FAST_TEXT = 1024;

/** Strict, and keeping a leading U+FEFF: it is part of a name, not a byte order mark. */
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** A record that is not what it should be: the reason, in a few words. */
class CorruptRecord extends Error {
  override name = "CorruptRecord";
}

/** A row the format cannot hold as given: the reason, in a few words. */
class BadRow extends Error {
  override name = "BadRow";
}

// ---------------------------------------------------------------------------------------------
// Writing

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
  #fd: number;
  #bytes = new Uint8Array(BUFFER_BYTES);
  /** End of the bytes buffered. */
  #pos = 0;
  /** Start of the block being made; the bytes before it are complete and may be written out. */
  #blockStart = 0;
  #flushed = 0;
  #columns = new Float64Array(COLUMN_COUNT);
  /** The folder given last (written or empty), for the order check. */
  #lastFolder: string | null = null;
  /** The folder of the last block written, which the next block's path is shared with. */
  #lastWrittenFolder = "";
  #rowCount = 0;
  #finished = false;

  /** Writes the header at once, so an unwritable descriptor fails here. */
  constructor(fd: number) {
    this.#fd = fd;
    this.#bytes.set(HEADER);
    this.#pos = this.#blockStart = HEADER.length;
    this.#flush();
  }

  /** Rows written so far. */
  get rowCount(): number {
    return this.#rowCount;
  }

  /** Bytes of the record so far, buffered ones included: after `finish()`, the file's size. */
  get bytesWritten(): number {
    return this.#flushed + this.#pos;
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
    if (rows.length > 0) this.#writeBlock(folder, rows);
    this.#lastFolder = folder;
  }

  /** Writes the trailer and what is buffered. Neither fsyncs nor closes the file. */
  finish(): void {
    if (this.#finished) throw new Error("Cannot finish a record twice");
    this.#ensureRoom(TRAILER_BYTES);
    const bytes = this.#bytes;
    const start = this.#pos;
    bytes[start] = 0;
    let count = this.#rowCount;
    for (let i = 1; i <= 8; i++) {
      bytes[start + i] = count % 256;
      count = Math.floor(count / 256);
    }
    writeUint32(bytes, start + 9, crc32(bytes.subarray(start, start + 9)));
    this.#pos = this.#blockStart = start + TRAILER_BYTES;
    this.#flush();
    this.#finished = true;
  }

  #writeBlock(folder: string, rows: readonly RecordRow[]): void {
    let rowName = "";
    try {
      // Varints (the body's length, the shared count, the text's length, the row count) and the
      // path. The body's length is written once the body is known: room is kept for it.
      this.#ensureRoom(4 * MAX_VARINT_BYTES + 3 * folder.length);
      this.#pos += MAX_VARINT_BYTES;
      const shared = sharedPrefixLength(this.#lastWrittenFolder, folder);
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
    this.#lastWrittenFolder = folder;
    this.#rowCount += rows.length;
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
   * made, then grows the buffer only if that block alone does not fit.
   */
  #ensureRoom(count: number): void {
    if (this.#pos + count <= this.#bytes.length) return;
    const start = this.#blockStart;
    if (start > 0) {
      writeFully(this.#fd, this.#bytes.subarray(0, start));
      this.#flushed += start;
      this.#bytes.copyWithin(0, start, this.#pos);
      this.#pos -= start;
      this.#blockStart = 0;
      if (this.#pos + count <= this.#bytes.length) return;
    }
    const grown = new Uint8Array(Math.max(2 * this.#bytes.length, this.#pos + count));
    grown.set(this.#bytes.subarray(0, this.#pos));
    this.#bytes = grown;
  }

  /** Writes out every buffered byte (called between blocks only). */
  #flush(): void {
    writeFully(this.#fd, this.#bytes.subarray(0, this.#pos));
    this.#flushed += this.#pos;
    this.#pos = this.#blockStart = 0;
    // One huge folder grew the buffer: let that memory go.
    if (this.#bytes.length > BUFFER_BYTES) this.#bytes = new Uint8Array(BUFFER_BYTES);
  }
}

/** Writes every byte: a write may take fewer than it was given. */
function writeFully(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) {
    done += fs.writeSync(fd, bytes, done, bytes.length - done);
  }
}

function writeUint32(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value & 0xff;
  bytes[at + 1] = (value >>> 8) & 0xff;
  bytes[at + 2] = (value >>> 16) & 0xff;
  bytes[at + 3] = value >>> 24;
}

function readUint32(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>>
    0;
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

/**
 * How many UTF-16 code units `next` takes from `previous`, never ending between the two
 * halves of a surrogate pair (the rest is stored as UTF-8, which cannot hold half a pair).
 */
function sharedPrefixLength(previous: string, next: string): number {
  const limit = Math.min(previous.length, next.length);
  let shared = 0;
  while (shared < limit && previous.charCodeAt(shared) === next.charCodeAt(shared)) shared++;
  if (shared > 0) {
    const last = next.charCodeAt(shared - 1);
    if (last >= 0xd800 && last <= 0xdbff) shared--;
  }
  return shared;
}

/** The UTF-8 length of a well-formed string. */
function utf8Length(text: string): number {
  let length = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) length += 1;
    else if (code < 0x800) length += 2;
    else if (code >= 0xd800 && code <= 0xdbff) {
      length += 4;
      i++;
    } else length += 3;
  }
  return length;
}

/** Whether `path` is `""` or names a path below a tree: no empty, `.` or `..` part. */
function isRelativePath(path: string): boolean {
  if (path === "") return true;
  for (const part of path.split("/")) {
    if (part === "" || part === "." || part === "..") return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Reading

/** Blocks as a {@linkcode RecordSource} meets them: one at a time, in walk order. */
interface BlockCursor {
  /** The folder of the next block; null at the end, or once corrupt or closed. */
  nextFolder(): string | null;
  /** The rows of the next block (none if they turn out corrupt), moving past it. */
  takeRows(): RecordRow[];
  /** Moves past the next block without decoding its rows. */
  skip(): void;
  /** True once corruption was met. */
  readonly corrupt: boolean;
  /** The rows of all the blocks, read or not. */
  readonly rowCount: number;
  close(): void;
}

/** The walk-order rules of {@linkcode RecordSource}, over any cursor. */
class WalkOrderSource implements RecordSource {
  #cursor: BlockCursor;
  #lastFolder: string | null = null;
  /** The rows of the last folder; as a map once asked for (blocks() hands out lists). */
  #lastRows: RecordRow[] = [];
  #lastMap: Map<string, RecordRow> | null = null;

  constructor(cursor: BlockCursor) {
    this.#cursor = cursor;
  }

  get corrupt(): boolean {
    return this.#cursor.corrupt;
  }

  get rowCount(): number {
    return this.#cursor.rowCount;
  }

  rowsOf(folder: string): Map<string, RecordRow> {
    const last = this.#lastFolder;
    if (last !== null) {
      const order = compareWalkOrder(folder, last);
      if (order === 0) return this.#lastMap ??= rowMap(this.#lastRows);
      if (order < 0) {
        throw new Error(
          `Cannot read the record's folder ${quoted(folder)} after ${quoted(last)}: ` +
            `folders must be read in walk order`,
        );
      }
    }
    let rows: RecordRow[] = [];
    for (let next = this.#cursor.nextFolder(); next !== null; next = this.#cursor.nextFolder()) {
      const order = compareWalkOrder(next, folder);
      if (order > 0) break;
      if (order === 0) {
        rows = this.#cursor.takeRows();
        break;
      }
      this.#cursor.skip();
    }
    this.#remember(folder, rows);
    return this.#lastMap = rowMap(rows);
  }

  *blocks(): Generator<RecordBlock> {
    for (let next = this.#cursor.nextFolder(); next !== null; next = this.#cursor.nextFolder()) {
      const rows = this.#cursor.takeRows();
      // A damaged block is not handed out: the record ends where it is.
      if (this.#cursor.corrupt) return;
      this.#remember(next, rows);
      yield { folder: next, rows };
    }
  }

  close(): void {
    this.#cursor.close();
  }

  #remember(folder: string, rows: RecordRow[]): void {
    this.#lastFolder = folder;
    this.#lastRows = rows;
    this.#lastMap = null;
  }
}

function rowMap(rows: RecordRow[]): Map<string, RecordRow> {
  const map = new Map<string, RecordRow>();
  for (const row of rows) map.set(row.name, row);
  return map;
}

/** Blocks held in memory, already in order. */
class ArrayCursor implements BlockCursor {
  #blocks: RecordBlock[];
  #next = 0;
  readonly corrupt: boolean;
  readonly rowCount: number;

  constructor(blocks: RecordBlock[], corrupt = false) {
    this.#blocks = blocks;
    this.corrupt = corrupt;
    this.rowCount = blocks.reduce((sum, block) => sum + block.rows.length, 0);
  }

  nextFolder(): string | null {
    return this.#blocks[this.#next]?.folder ?? null;
  }

  takeRows(): RecordRow[] {
    return this.#blocks[this.#next++]?.rows ?? [];
  }

  skip(): void {
    this.#next++;
  }

  close(): void {
    this.#next = this.#blocks.length;
  }
}

/** An empty source. */
export function emptyRecordSource(): RecordSource {
  return new WalkOrderSource(new ArrayCursor([]));
}

/**
 * A version-2 record (replica and source maps by relative path) as a {@linkcode RecordSource}
 * in walk order, for the one-time conversion: each path becomes a file row in its folder,
 * with the sides the record has of it (v2 kept no folders). Paths that cannot be in a tree
 * (empty parts, `.`, `..`) are left out. Pure: the entries are shared, not copied.
 */
export function recordSourceFromV2(record: FileRecord): RecordSource {
  const folders = new Map<string, Map<string, RecordRow>>();
  for (const side of ["source", "replica"] as const) {
    for (const [path, entry] of record[side]) {
      if (path === "" || !isRelativePath(path)) continue;
      const slash = path.lastIndexOf("/");
      const folder = slash < 0 ? "" : path.slice(0, slash);
      const name = path.slice(slash + 1);
      let rows = folders.get(folder);
      if (rows === undefined) folders.set(folder, rows = new Map());
      let row = rows.get(name);
      if (row === undefined) rows.set(name, row = { name, kind: "file" });
      row[side] = entry;
    }
  }
  const blocks = [...folders.keys()].sort(compareWalkOrder).map((folder) => ({
    folder,
    rows: [...folders.get(folder)!.values()].sort((a, b) => compareNames(a.name, b.name)),
  }));
  return new WalkOrderSource(new ArrayCursor(blocks));
}

/**
 * Opens a format-3 record for reading folder by folder, in pieces of 1 MiB, never whole. The
 * path is looked at with `lstat` first, then opened without following a link or blocking on a
 * fifo, and the file opened must be the inode looked at: with scoped permissions Deno resolves
 * a link itself before it opens a path, so O_NOFOLLOW alone does not refuse one. A record that
 * is not one (bad header or trailer, cut short, a checksum or order that fails, more rows or
 * fewer than its trailer says), is larger than `maxBytes`, or cannot be read is reported once
 * through `onCorrupt` (one line naming the path and ending "; rebuilding it"), and from then
 * on reads as empty: the record is a cache of what can be rebuilt.
 *
 * @returns The source, or null when there is no record.
 * @throws {UsageError} When the path is not a regular file (a link, a fifo, a folder), or was
 *   replaced while it was opened.
 */
export function openRecord(
  path: string,
  options: { maxBytes: number; onCorrupt: (message: string) => void },
): RecordSource | null {
  const { maxBytes, onCorrupt } = options;
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
  return new WalkOrderSource(new FileCursor({ fd, path, size, onCorrupt }));
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
  #fd: number | null;
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
  /** The row being decoded: where it stands in the buffer, and where its block ends. */
  #pos = 0;
  #bodyEnd = 0;
  #columns = new Float64Array(COLUMN_COUNT);
  #expectedRows = 0;
  #rowsSeen = 0;
  #blockNumber = 0;
  #previousFolder: string | null = null;
  #pending: PendingBlock | null = null;
  #corrupt = false;

  constructor(file: {
    fd: number;
    path: string;
    size: number;
    onCorrupt: (message: string) => void;
  }) {
    this.#fd = file.fd;
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
    if (this.#fd === null) return null;
    return this.#guard(() => this.#loadBlock()) ?? null;
  }

  takeRows(): RecordRow[] {
    const pending = this.#pending;
    if (pending === null) return [];
    const rows = this.#guard(() => this.#decodeRows(pending)) ?? [];
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
    if (this.#fd === null) return;
    const fd = this.#fd;
    this.#fd = null;
    this.#bytes = new Uint8Array(0);
    fs.closeSync(fd);
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
      const count = fs.readSync(
        this.#fd!,
        trailer,
        done,
        TRAILER_BYTES - done,
        this.#blocksEnd + done,
      );
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
    const number = ++this.#blockNumber;
    this.#ensure(Math.min(MAX_VARINT_BYTES, this.#blocksEnd - this.#offset));
    this.#pos = this.#start;
    this.#bodyEnd = this.#bytes.length;
    const bodyLength = this.#readUnsigned();
    const lengthBytes = this.#pos - this.#start;
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
    this.#pos = bodyStart;
    this.#bodyEnd = bodyEnd;
    const previous = this.#previousFolder;
    const folder = this.#readSharedText(previous ?? "");
    const rowCount = this.#readUnsigned();
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
    this.#pending = { folder, rowCount, rowsStart: this.#pos, bodyEnd, frameLength };
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
    this.#pos = bodyStart;
    this.#bodyEnd = bodyStart + head;
    this.#readUnsigned(); // the shared part of the folder's path
    const textBytes = this.#readUnsigned(); // the rest of it
    this.#pos += textBytes;
    if (this.#pos >= this.#bodyEnd) throw new CorruptRecord(`block ${number} is malformed`);
    const rows = this.#readUnsigned();
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
        ? fs.readSync(this.#fd!, this.#bytes, this.#filled, wanted, this.#readPos)
        : 0;
      if (got === 0) throw new CorruptRecord("it is shorter than when it was opened");
      this.#filled += got;
      this.#readPos += got;
    }
  }

  #decodeRows(block: PendingBlock): RecordRow[] {
    this.#pos = block.rowsStart;
    this.#bodyEnd = block.bodyEnd;
    this.#columns.fill(0);
    const rows: RecordRow[] = [];
    let previous = "";
    for (let i = 0; i < block.rowCount; i++) {
      const row = this.#decodeRow(previous);
      if (this.#pos > block.bodyEnd) {
        throw new CorruptRecord(`block ${this.#blockNumber} is malformed`);
      }
      if (i > 0 && compareNames(previous, row.name) >= 0) {
        throw new CorruptRecord(`the rows of block ${this.#blockNumber} are out of order`);
      }
      rows.push(row);
      previous = row.name;
    }
    if (this.#pos !== block.bodyEnd) {
      throw new CorruptRecord(`block ${this.#blockNumber} is malformed`);
    }
    return rows;
  }

  #decodeRow(previous: string): RecordRow {
    const name = this.#readSharedText(previous);
    if (name.length === 0 || name.includes("/")) {
      throw new CorruptRecord(`block ${this.#blockNumber} holds a bad name`);
    }
    const flags = this.#readUnsigned();
    if (flags >= FLAG_LIMIT || VALID_FLAGS[flags] === 0) {
      throw new CorruptRecord(`block ${this.#blockNumber} holds a bad row`);
    }
    let source: RecordEntry | undefined;
    let replica: RecordEntry | undefined;
    if ((flags & DIR) !== 0) {
      if ((flags & SOURCE) !== 0) source = dirSide(this.#readNear(SOURCE_COLUMNS + INO));
      if ((flags & REPLICA) !== 0) replica = dirSide(this.#readNear(REPLICA_COLUMNS + INO));
      return makeRow(name, "dir", source, replica);
    }
    if ((flags & SOURCE) !== 0) {
      source = this.#readFileSide(SOURCE_COLUMNS, (flags & SOURCE_HASH) !== 0, 0, undefined);
    }
    if ((flags & REPLICA) !== 0) {
      replica = this.#readFileSide(REPLICA_COLUMNS, (flags & REPLICA_HASH) !== 0, flags, source);
    }
    return makeRow(name, "file", source, replica);
  }

  /** One side of a file; fields the flags in `shares` mark are taken from `source`. */
  #readFileSide(
    columns: number,
    hashed: boolean,
    shares: number,
    source: RecordEntry | undefined,
  ): RecordEntry {
    const size = (shares & SAME_SIZE) !== 0 ? source!.size : this.#readUnsigned();
    const mtimeMs = (shares & SAME_MTIME) !== 0 ? source!.mtimeMs : this.#readNear(columns + MTIME);
    const ctimeMs = this.#readNear(columns + CTIME);
    const ino = this.#readNear(columns + INO);
    const hash = !hashed ? null : (shares & SAME_HASH) !== 0 ? source!.hash : this.#readHash();
    const hashedAtMs = (shares & SAME_HASHED_AT) !== 0
      ? source!.hashedAtMs
      : this.#readNear(columns + HASHED_AT);
    return { size, mtimeMs, ctimeMs, ino, hash, hashedAtMs };
  }

  #readUnsigned(): number {
    const bytes = this.#bytes;
    let pos = this.#pos;
    const first = bytes[pos++]!;
    if (first < 128) {
      this.#pos = pos;
      return first;
    }
    let value = first - 128;
    let scale = 128;
    for (let count = 1; count < MAX_VARINT_BYTES && pos < this.#bodyEnd; count++) {
      const byte = bytes[pos++]!;
      if (byte < 128) {
        value += byte * scale;
        this.#pos = pos;
        if (value > Number.MAX_SAFE_INTEGER) break;
        return value;
      }
      value += (byte - 128) * scale;
      scale *= 128;
    }
    throw new CorruptRecord(`block ${this.#blockNumber} holds a bad number`);
  }

  #readSigned(): number {
    const first = this.#bytes[this.#pos++]!;
    const low = first % 128;
    let magnitude = Math.floor(low / 2);
    if (first >= 128) magnitude += this.#readUnsigned() * 64;
    return low % 2 === 1 ? -magnitude : magnitude;
  }

  #readNear(column: number): number {
    let value: number;
    if (this.#bytes[this.#pos] === NEAR_ESCAPE) {
      this.#pos++;
      value = this.#readSigned();
    } else {
      value = this.#columns[column]! + this.#readSigned();
    }
    this.#columns[column] = value;
    return value;
  }

  /** A name or path: `shared` code units of `previous`, then the rest as UTF-8. */
  #readSharedText(previous: string): string {
    const shared = this.#readUnsigned();
    const length = this.#readUnsigned();
    const start = this.#pos;
    const end = start + length;
    if (shared > previous.length || end > this.#bodyEnd) {
      throw new CorruptRecord(`block ${this.#blockNumber} holds a bad name`);
    }
    this.#pos = end;
    const rest = decodeText(this.#bytes, start, end);
    if (rest === null) throw new CorruptRecord(`block ${this.#blockNumber} holds a bad name`);
    return shared === 0 ? rest : previous.slice(0, shared) + rest;
  }

  #readHash(): string {
    const bytes = this.#bytes;
    let pos = this.#pos;
    for (let i = 0; i < 2 * HASH_BYTES; i += 2) {
      const byte = bytes[pos++]!;
      hexCodes[i] = HEX_HIGH[byte]!;
      hexCodes[i + 1] = HEX_LOW[byte]!;
    }
    this.#pos = pos;
    return String.fromCharCode.apply(null, hexCodes);
  }
}

/** UTF-8 bytes as a string, ASCII without a decoder call; null when not valid UTF-8. */
function decodeText(bytes: Uint8Array, start: number, end: number): string | null {
  const length = end - start;
  if (length === 0) return "";
  if (length <= MAX_FAST_TEXT) {
    charCodes.length = length;
    let ascii = true;
    for (let i = 0; i < length; i++) {
      const byte = bytes[start + i]!;
      if (byte >= 128) {
        ascii = false;
        break;
      }
      charCodes[i] = byte;
    }
    if (ascii) return String.fromCharCode.apply(null, charCodes);
  }
  try {
    return utf8.decode(bytes.subarray(start, end));
  } catch {
    return null;
  }
}

function dirSide(ino: number): RecordEntry {
  return { size: 0, mtimeMs: 0, ctimeMs: 0, ino, hash: null, hashedAtMs: 0 };
}

/** A row with only the sides it has (no `undefined` keys). */
function makeRow(
  name: string,
  kind: "file" | "dir",
  source: RecordEntry | undefined,
  replica: RecordEntry | undefined,
): RecordRow {
  if (source && replica) return { name, kind, source, replica };
  if (source) return { name, kind, source };
  return { name, kind, replica: replica! };
}
