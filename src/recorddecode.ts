/**
 * Decoding the rows of a format-3 record's blocks (the layout is in `recordformat.ts`), over a
 * byte buffer: no file calls here. Pure.
 *
 * @module
 */

import { compareNames } from "./order.ts";
import type { RecordEntry } from "./record.ts";
import {
  COLUMN_COUNT,
  CorruptRecord,
  CTIME,
  DIR,
  FLAG_LIMIT,
  HASH_BYTES,
  HASHED_AT,
  INO,
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
  SOURCE,
  SOURCE_COLUMNS,
  SOURCE_HASH,
  VALID_FLAGS,
} from "./recordformat.ts";

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

/**
 * Reads the fields of blocks from a byte buffer. The reader points it at a block (`bytes`,
 * `pos`, `end`) once the block's checksum holds; every read stays before `end`.
 */
export class BlockDecoder {
  /** The buffer holding the block. */
  bytes: Uint8Array = new Uint8Array(0);
  /** The next byte to read. */
  pos = 0;
  /** Where the block's body ends: nothing at or past it is read. */
  end = 0;
  /** The block's number in the record, for messages. */
  blockNumber = 0;
  #columns = new Float64Array(COLUMN_COUNT);

  /**
   * The `rowCount` rows of a block, from `start` to the end of its body, `end`.
   *
   * @throws {CorruptRecord} When they are not what the format says.
   */
  decodeRows(block: { rowCount: number; start: number; end: number }): RecordRow[] {
    this.pos = block.start;
    this.end = block.end;
    this.#columns.fill(0);
    const rows: RecordRow[] = [];
    let previous = "";
    for (let i = 0; i < block.rowCount; i++) {
      const row = this.#decodeRow(previous);
      if (this.pos > block.end) {
        throw new CorruptRecord(`block ${this.blockNumber} is malformed`);
      }
      if (i > 0 && compareNames(previous, row.name) >= 0) {
        throw new CorruptRecord(`the rows of block ${this.blockNumber} are out of order`);
      }
      rows.push(row);
      previous = row.name;
    }
    if (this.pos !== block.end) {
      throw new CorruptRecord(`block ${this.blockNumber} is malformed`);
    }
    return rows;
  }

  #decodeRow(previous: string): RecordRow {
    const name = this.readSharedText(previous);
    if (name.length === 0 || name.includes("/")) {
      throw new CorruptRecord(`block ${this.blockNumber} holds a bad name`);
    }
    const flags = this.readUnsigned();
    if (flags >= FLAG_LIMIT || VALID_FLAGS[flags] === 0) {
      throw new CorruptRecord(`block ${this.blockNumber} holds a bad row`);
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
    const size = (shares & SAME_SIZE) !== 0 ? source!.size : this.readUnsigned();
    const mtimeMs = (shares & SAME_MTIME) !== 0 ? source!.mtimeMs : this.#readNear(columns + MTIME);
    const ctimeMs = this.#readNear(columns + CTIME);
    const ino = this.#readNear(columns + INO);
    const hash = !hashed ? null : (shares & SAME_HASH) !== 0 ? source!.hash : this.#readHash();
    const hashedAtMs = (shares & SAME_HASHED_AT) !== 0
      ? source!.hashedAtMs
      : this.#readNear(columns + HASHED_AT);
    return { size, mtimeMs, ctimeMs, ino, hash, hashedAtMs };
  }

  /** An unsigned varint, at most 2^53, before `end`. */
  readUnsigned(): number {
    const bytes = this.bytes;
    let pos = this.pos;
    const first = bytes[pos++]!;
    if (first < 128) {
      this.pos = pos;
      return first;
    }
    let value = first - 128;
    let scale = 128;
    for (let count = 1; count < MAX_VARINT_BYTES && pos < this.end; count++) {
      const byte = bytes[pos++]!;
      if (byte < 128) {
        value += byte * scale;
        this.pos = pos;
        if (value > Number.MAX_SAFE_INTEGER) break;
        return value;
      }
      value += (byte - 128) * scale;
      scale *= 128;
    }
    throw new CorruptRecord(`block ${this.blockNumber} holds a bad number`);
  }

  #readSigned(): number {
    const first = this.bytes[this.pos++]!;
    const low = first % 128;
    let magnitude = Math.floor(low / 2);
    if (first >= 128) magnitude += this.readUnsigned() * 64;
    return low % 2 === 1 ? -magnitude : magnitude;
  }

  #readNear(column: number): number {
    let value: number;
    if (this.bytes[this.pos] === NEAR_ESCAPE) {
      this.pos++;
      value = this.#readSigned();
    } else {
      value = this.#columns[column]! + this.#readSigned();
    }
    this.#columns[column] = value;
    return value;
  }

  /** A name or path: `shared` code units of `previous`, then the rest as UTF-8. */
  readSharedText(previous: string): string {
    const shared = this.readUnsigned();
    const length = this.readUnsigned();
    const start = this.pos;
    const end = start + length;
    if (shared > previous.length || end > this.end) {
      throw new CorruptRecord(`block ${this.blockNumber} holds a bad name`);
    }
    this.pos = end;
    const ascii = asciiText(this.bytes, { start, end, previous, shared });
    if (ascii !== null) return ascii;
    const rest = utf8Text(this.bytes, start, end);
    if (rest === null) throw new CorruptRecord(`block ${this.blockNumber} holds a bad name`);
    return shared === 0 ? rest : previous.slice(0, shared) + rest;
  }

  #readHash(): string {
    const bytes = this.bytes;
    let pos = this.pos;
    for (let i = 0; i < 2 * HASH_BYTES; i += 2) {
      const byte = bytes[pos++]!;
      hexCodes[i] = HEX_HIGH[byte]!;
      hexCodes[i + 1] = HEX_LOW[byte]!;
    }
    this.pos = pos;
    return String.fromCharCode.apply(null, hexCodes);
  }
}

/**
 * `shared` code units of `previous` and then ASCII bytes, as one flat string made with one
 * `String.fromCharCode` call (a name joined with `+` would be flattened again when a map hashes
 * it); null when the bytes are not all ASCII or the text is long.
 */
function asciiText(
  bytes: Uint8Array,
  text: { start: number; end: number; previous: string; shared: number },
): string | null {
  const { start, end, previous, shared } = text;
  const length = shared + end - start;
  if (length === 0) return "";
  if (length > MAX_FAST_TEXT) return null;
  charCodes.length = length;
  for (let i = 0; i < shared; i++) charCodes[i] = previous.charCodeAt(i);
  for (let i = start, at = shared; i < end; i++, at++) {
    const byte = bytes[i]!;
    if (byte >= 128) return null;
    charCodes[at] = byte;
  }
  return String.fromCharCode.apply(null, charCodes);
}

/** UTF-8 bytes as a string; null when not valid UTF-8. */
function utf8Text(bytes: Uint8Array, start: number, end: number): string | null {
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
