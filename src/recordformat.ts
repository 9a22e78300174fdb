/**
 * The file record, format 3 (`REPLICA/.treesync/record`): what the last runs knew of each
 * entry of both trees, kept as folder blocks in walk order, so that a run reads it folder by
 * folder as it walks the trees, and writes it the same way, without ever holding it whole. This
 * module holds the format: its layout, constants and row types, and the small pieces the
 * encoder (`recordwrite.ts`), the decoder (`recorddecode.ts`) and the reader (`recordread.ts`)
 * share. `recordfile.ts` is the record's public face.
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

import { encoder } from "./files.ts";
import type { RecordEntry } from "./record.ts";

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

/** The first bytes of every format-3 record. */
export const HEADER: Uint8Array = encoder.encode("treesync-record 3\n");

/** The end marker, a row count and a checksum. */
export const TRAILER_BYTES = 13;

/** A hash is stored as its 32 raw bytes. */
export const HASH_BYTES = 32;

/** A CRC-32 after each block's body. */
export const CRC_BYTES = 4;

/** A varint of a value below 2^56 (safe integers are below 2^53) takes at most 8 bytes. */
export const MAX_VARINT_BYTES = 8;

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
export const BLOCK_BASE_BYTES: number = 64 << 10;

/** The most bytes a record of `rows` rows may take: 1 MiB + 1 KiB a row. */
export function recordCapBytes(rows: number): number {
  return RECORD_BASE_BYTES + ROW_CAP_BYTES * rows;
}

/** The most bytes a block's body of `rows` rows may take: 64 KiB + 1 KiB a row. */
export function blockCapBytes(rows: number): number {
  return BLOCK_BASE_BYTES + ROW_CAP_BYTES * rows;
}

/** The writer writes in pieces of about this size; the reader reads in pieces of this size. */
export const BUFFER_BYTES: number = 1 << 20;

/** Stands for an absolute value where a difference from the previous row was expected. */
export const NEAR_ESCAPE = 0x01;

// Row flags. Their order puts a synced file in one varint byte.
/** Row flag: the source side is present. */
export const SOURCE = 1;
/** Row flag: the replica side is present. */
export const REPLICA = 2;
/** Row flag: the source side's hash is present. */
export const SOURCE_HASH = 4;
/** Row flag: the replica side's hash is present. */
export const REPLICA_HASH = 8;
/** Row flag: the replica's hash is the source's, not stored again. */
export const SAME_HASH = 16;
/** Row flag: the replica's size is the source's. */
export const SAME_SIZE = 32;
/** Row flag: the replica's mtime is the source's. */
export const SAME_MTIME = 64;
/** Row flag: the row is a folder. */
export const DIR = 128;
/** Row flag: the replica's hashedAt is the source's. */
export const SAME_HASHED_AT = 256;
/** Every flags value is below this. */
export const FLAG_LIMIT = 512;

// "Near" fields keep the previous row's value of their side in a column.
/** The first column of the source side's near fields. */
export const SOURCE_COLUMNS = 0;
/** The first column of the replica side's near fields. */
export const REPLICA_COLUMNS = 4;
/** The mtime's column, from a side's first. */
export const MTIME = 0;
/** The ctime's column, from a side's first. */
export const CTIME = 1;
/** The inode's column, from a side's first. */
export const INO = 2;
/** The hashedAt's column, from a side's first. */
export const HASHED_AT = 3;
/** How many near columns there are. */
export const COLUMN_COUNT = 8;

/** Whether each flags value can be: 1 where it can. Checked once per row read. */
export const VALID_FLAGS: Uint8Array = buildValidFlags();

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

/** A record that is not what it should be: the reason, in a few words. */
export class CorruptRecord extends Error {
  /** Its class, in messages. */
  override name = "CorruptRecord";
}

/** A row the format cannot hold as given: the reason, in a few words. */
export class BadRow extends Error {
  /** Its class, in messages. */
  override name = "BadRow";
}

/** Puts a 32-bit number at `at`, little-endian. */
export function writeUint32(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value & 0xff;
  bytes[at + 1] = (value >>> 8) & 0xff;
  bytes[at + 2] = (value >>> 16) & 0xff;
  bytes[at + 3] = value >>> 24;
}

/** The 32-bit little-endian number at `at`. */
export function readUint32(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>>
    0;
}

/**
 * How many UTF-16 code units `next` takes from `previous`, never ending between the two
 * halves of a surrogate pair (the rest is stored as UTF-8, which cannot hold half a pair).
 */
export function sharedPrefixLength(previous: string, next: string): number {
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
export function utf8Length(text: string): number {
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
export function isRelativePath(path: string): boolean {
  // Part by part without splitting: this runs for every block read and written.
  let start = 0;
  for (let end = 0; end <= path.length; end++) {
    if (end < path.length && path.charCodeAt(end) !== 0x2f) continue;
    const length = end - start;
    if (length === 0 && path.length > 0) return false;
    if (length === 1 && path.charCodeAt(start) === 0x2e) return false;
    if (length === 2 && path.charCodeAt(start) === 0x2e && path.charCodeAt(start + 1) === 0x2e) {
      return false;
    }
    start = end + 1;
  }
  return true;
}
