/**
 * The bytes of a read-side payload: a writer and a reader of LEB128 varints (signed ones
 * zigzagged first) and UTF-8 strings after a varint length, every length bounded. The payloads
 * themselves are `wire.ts`'s.
 *
 * @module
 */

import { FrameError } from "./frames.ts";
import { checkWirePath, MAX_PATH_BYTES } from "./wirepath.ts";

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/** The longest string any read-side payload carries (a message, a pattern), in bytes. */
export const MAX_STRING_BYTES = 64 * 1024;

/** Builds a payload: varints, zigzag varints, length-prefixed UTF-8. */
export class WireWriter {
  #bytes = new Uint8Array(256);
  #length = 0;

  /** Bytes written so far. */
  get length(): number {
    return this.#length;
  }

  #room(count: number): number {
    const at = this.#length;
    if (at + count > this.#bytes.length) {
      const grown = new Uint8Array(Math.max(this.#bytes.length * 2, at + count));
      grown.set(this.#bytes.subarray(0, at));
      this.#bytes = grown;
    }
    this.#length += count;
    return at;
  }

  /** Appends one byte. */
  u8(value: number): this {
    const at = this.#room(1);
    this.#bytes[at] = value & 0xff;
    return this;
  }

  /**
   * Appends a non-negative integer as a varint (exact for every integer a double holds below
   * 2^64, inodes included).
   */
  varint(value: number): this {
    if (!Number.isInteger(value) || value < 0 || value >= 2 ** 64) {
      throw new RangeError(`Cannot encode ${value} as an unsigned varint`);
    }
    let rest = value;
    while (rest >= 0x80) {
      this.u8((rest % 0x80) | 0x80);
      rest = Math.floor(rest / 0x80);
    }
    return this.u8(rest);
  }

  /** Appends an integer that may be negative (a time before 1970), zigzagged. */
  zint(value: number): this {
    if (!Number.isInteger(value)) throw new RangeError(`Cannot encode ${value} as an integer`);
    return this.varint(value >= 0 ? value * 2 : -value * 2 - 1);
  }

  /** Appends raw bytes after their varint length. */
  bytes(value: Uint8Array): this {
    this.varint(value.length);
    const at = this.#room(value.length);
    this.#bytes.set(value, at);
    return this;
  }

  /** Appends a string as UTF-8 after its length. */
  string(value: string): this {
    return this.bytes(encoder.encode(value));
  }

  /** Appends what another writer holds, as it is. */
  append(other: WireWriter): this {
    const at = this.#room(other.#length);
    this.#bytes.set(other.#bytes.subarray(0, other.#length), at);
    return this;
  }

  /** The payload so far (a copy). */
  finish(): Uint8Array {
    return this.#bytes.slice(0, this.#length);
  }
}

/** Reads a payload's fields, refusing to read past its end or to trust a length. */
export class WireReader {
  readonly #bytes: Uint8Array;
  #offset = 0;

  /** A reader at the start of `payload`. */
  constructor(payload: Uint8Array) {
    this.#bytes = payload;
  }

  /** Reads one byte. */
  u8(): number {
    if (this.#offset >= this.#bytes.length) throw new FrameError("A payload ended early");
    return this.#bytes[this.#offset++]!;
  }

  /** Reads a varint; more than 10 bytes, or a value past 2^64, is an error. */
  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const byte = this.u8();
      value += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) {
        if (value >= 2 ** 64) break;
        return value;
      }
      scale *= 0x80;
    }
    throw new FrameError("A payload holds a malformed number");
  }

  /** Reads a zigzagged integer. */
  zint(): number {
    const value = this.varint();
    return value % 2 === 0 ? value / 2 : -(value + 1) / 2;
  }

  /** A count of items, each at least one byte: one larger than what is left is an error. */
  count(): number {
    const count = this.varint();
    if (count > this.#bytes.length - this.#offset) {
      throw new FrameError(`A payload announces ${count} items in fewer bytes`);
    }
    return count;
  }

  /** Reads length-prefixed bytes (a view into the payload), at most `max` of them. */
  bytes(max: number = MAX_STRING_BYTES): Uint8Array {
    const length = this.varint();
    if (length > max) throw new FrameError(`A payload holds a ${length}-byte field`);
    if (length > this.#bytes.length - this.#offset) throw new FrameError("A payload ended early");
    const at = this.#offset;
    this.#offset += length;
    return this.#bytes.subarray(at, at + length);
  }

  /** Reads a length-prefixed UTF-8 string, at most `max` bytes. */
  string(max: number = MAX_STRING_BYTES): string {
    const bytes = this.bytes(max);
    try {
      return strictDecoder.decode(bytes);
    } catch {
      throw new FrameError("A payload holds a string that is not UTF-8");
    }
  }

  /** Reads a relative path and checks it (see `wirePathProblem`). */
  path(): string {
    return checkWirePath(this.string(MAX_PATH_BYTES));
  }

  /** Whether every byte was read. */
  get atEnd(): boolean {
    return this.#offset === this.#bytes.length;
  }

  /** Checks that every byte was read. */
  done(): void {
    if (!this.atEnd) {
      throw new FrameError(`A payload has ${this.#bytes.length - this.#offset} bytes too many`);
    }
  }
}
