/**
 * The frame layer of the protocol a remote tree is reached through (`treesync --serve` on the
 * far end, on its stdin and stdout): the greeting and version choice, frames of a type, flags,
 * a request id and a length-prefixed payload, an incremental decoder that takes any chunking
 * and holds at most one frame, the fields inside payloads, and the check of every path a peer
 * sends. Pure: byte buffers in, byte buffers out.
 *
 * A frame is a 10-byte header and its payload:
 *
 * | bytes | field   | meaning                                                           |
 * | ----- | ------- | ----------------------------------------------------------------- |
 * | 1     | type    | one of the table below; any other is a protocol error             |
 * | 1     | flags   | bit 0 `More` (more frames answer this request), bit 1 `Compressed` |
 * | 4     | id      | big-endian; the request a frame asks or answers, 0 for the session |
 * | 4     | length  | big-endian payload length, at most `MAX_PAYLOAD` (checked first)   |
 *
 * Each side's first frame is `Hello` (id 0), whose payload starts with the bytes `treesync`;
 * the client speaks first, the server answers with its own, and both use the highest version
 * both speak. Then the client names the tree with `Open`: its path (the one absolute path a
 * client may send, checked against the server's `--root`) and whether it is read or written;
 * every later path is relative to it and passes `wirePathProblem` (`wirepath.ts`). Requests are
 * numbered by the client and pipelined (many in flight, in walk order); the server answers
 * each with its id, in any order between requests.
 *
 * **A push swaps the roles** (the engine runs on the host of the tree it writes): instead of
 * `Open`, the near end sends `Run`; the far end answers `Ok` and from the next byte on is the
 * client of a new session on the same streams (its own `Hello`, then `Open` of the near tree),
 * which the near end serves; the swapped client also sends `Report`, `Progress`, `Confirm` and
 * `Done`, and the swapped server `Stop` and `Answer`. Nothing follows `Run` until its answer.
 *
 * | type   | name          | from   | payload and answer                                          |
 * | ------ | ------------- | ------ | ----------------------------------------------------------- |
 * | `0x01` | Hello         | both   | `treesync`, lowest and highest version, program, features   |
 * | `0x02` | Ok            | server | the request with this id is done (a small result, if any)   |
 * | `0x03` | Error         | server | kind and one line; with id 0 the session is over            |
 * | `0x04` | End           | both   | client: no more requests; server: all answered, exiting     |
 * | `0x05` | Cancel        | client | stop answering request (id in the payload): a walk, a read  |
 * | `0x06` | Data          | both   | a chunk of a byte stream (file, record) of request id       |
 * | `0x07` | DataEnd       | both   | the stream is whole: its size and SHA-256, to be checked    |
 * | `0x08` | Open          | client | path, role, `-z` and `--bwlimit` for Data → Ok or Error     |
 * | `0x09` | Credit        | client | a walk (this id) may send this many more Listing batches    |
 * | `0x10` | Walk          | client | starts, filters, folders to avoid, probe, renames           |
 * | `0x11` | Listing       | server | folders in walk order, `More` until the walk's last batch   |
 * | `0x12` | WalkEnd       | server | the start's own entry, skipped special files, probed folder |
 * | `0x13` | Stat          | client | a path (not following a link) → StatReply                   |
 * | `0x14` | StatReply     | server | the entry, or none; for `""` the root's identity            |
 * | `0x15` | Hash          | client | files and sizes → HashResult batches                        |
 * | `0x16` | HashResult    | server | outcomes and bytes read so far, `More` until the last       |
 * | `0x17` | Read          | client | a file's path → Data… (`More`), DataEnd (hash, entry)       |
 * | `0x37` | StoreOpen     | client | the opened tree's own files, locked read-only → StoreReply  |
 * | `0x38` | StoreReply    | server | their snapshot (`More`: the record follows), Data…, the end |
 * | `0x40` | Run           | client | push: the options and scope of one run → Ok, then roles swap |
 * | `0x41` | Report        | client | swapped: one line the far run reports (how, text)            |
 * | `0x42` | Progress      | client | swapped: the far run's progress now                          |
 * | `0x43` | Stop          | server | swapped: stop the far run (1: gently, 2: now)               |
 * | `0x44` | Confirm       | client | swapped: the `--interactive` question → Answer               |
 * | `0x45` | Answer        | server | swapped: the answer to Confirm                               |
 * | `0x46` | Done          | client | swapped: the far run's summary or exit code, before its End  |
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { escapeControls } from "../format.ts";

/** The protocol versions this program speaks. */
export const PROTOCOL_VERSIONS = { lowest: 1, highest: 1 } as const;

/** The feature that lets a server compress a walk's listings. */
export const LISTING_FEATURE = "zstd-listing";

/**
 * The features this program offers in its `Hello`: `zstd`, compressed Data frames (`-z`);
 * `zstd-listing`, a walk's `Listing` and `WalkEnd` frames compressed whenever that makes them
 * smaller (names and numbers of a listing pack to a fifth or less, and a walk is most of what
 * a no-op or a rename puts on the wire).
 */
export const FEATURES: readonly string[] = ["zstd", LISTING_FEATURE];

/** Bytes one end of a session sent and received on the wire, frame headers included. */
export interface WireBytes {
  /** Bytes written to the peer. */
  sent: number;
  /** Bytes read from the peer. */
  received: number;
}

/** Bytes in a frame header: type, flags, id, length. */
export const HEADER_BYTES = 10;

/** The largest payload a frame may carry (1 MiB): a longer length is an error, not a read. */
export const MAX_PAYLOAD = 1 << 20;

/** File data travels in chunks of at most this many bytes (before compression). */
export const DATA_CHUNK = 256 * 1024;

/** The frame types; see the table in the module documentation. */
export const FrameType = {
  Hello: 0x01,
  Ok: 0x02,
  Error: 0x03,
  End: 0x04,
  Cancel: 0x05,
  Data: 0x06,
  DataEnd: 0x07,
  Open: 0x08,
  Credit: 0x09,
  Walk: 0x10,
  Listing: 0x11,
  WalkEnd: 0x12,
  Stat: 0x13,
  StatReply: 0x14,
  Hash: 0x15,
  HashResult: 0x16,
  Read: 0x17,
  Run: 0x40,
  Report: 0x41,
  Progress: 0x42,
  Stop: 0x43,
  Confirm: 0x44,
  Answer: 0x45,
  Done: 0x46,
  StoreOpen: 0x37,
  StoreReply: 0x38,
} as const;

/** One of {@linkcode FrameType}'s values. */
export type FrameTypeValue = typeof FrameType[keyof typeof FrameType];

/** Flag bits of a frame header. */
export const FrameFlag = {
  /** More frames answer the same request. */
  More: 1,
  /** The payload is compressed with the session's codec. */
  Compressed: 2,
} as const;

const ALL_FLAGS = FrameFlag.More | FrameFlag.Compressed;

const TYPE_NAMES = new Map<number, string>(
  Object.entries(FrameType).map(([name, type]) => [type, name]),
);

/** Frame types the server accepts: what a client may send. */
export const FROM_CLIENT: ReadonlySet<number> = new Set([
  FrameType.Hello,
  FrameType.End,
  FrameType.Cancel,
  FrameType.Data,
  FrameType.DataEnd,
  FrameType.Open,
  FrameType.Credit,
  FrameType.Walk,
  FrameType.Stat,
  FrameType.Hash,
  FrameType.Read,
  FrameType.Run,
  FrameType.Report,
  FrameType.Progress,
  FrameType.Confirm,
  FrameType.Done,
  FrameType.StoreOpen,
]);

/** Frame types the client accepts: what a server may send. */
export const FROM_SERVER: ReadonlySet<number> = new Set([
  FrameType.Hello,
  FrameType.Ok,
  FrameType.Error,
  FrameType.End,
  FrameType.Data,
  FrameType.DataEnd,
  FrameType.Listing,
  FrameType.WalkEnd,
  FrameType.StatReply,
  FrameType.HashResult,
  FrameType.Stop,
  FrameType.Answer,
  FrameType.StoreReply,
]);

/** One frame. */
export interface Frame {
  /** What the frame is (see {@linkcode FrameType}). */
  type: number;
  /** {@linkcode FrameFlag} bits. */
  flags: number;
  /** The request it asks or answers; 0 for the session. */
  id: number;
  /** The payload; a decoded frame's may share memory with the chunk it came in. */
  payload: Uint8Array;
}

/** The peer broke the protocol: the session ends with this message. */
export class FrameError extends Error {
  /** The error's name, for messages and logs. */
  override name = "FrameError";
}

/** A frame type's name for messages (`Walk`, or `0x7f` for an unknown one). */
export function frameTypeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `0x${type.toString(16).padStart(2, "0")}`;
}

/**
 * A frame as bytes: header and payload in one buffer.
 *
 * @throws {FrameError} An unknown type or flag, an id outside 32 bits, a payload too long.
 */
export function encodeFrame(frame: Frame, maxPayload: number = MAX_PAYLOAD): Uint8Array {
  const { type, flags, id, payload } = frame;
  if (!TYPE_NAMES.has(type)) throw new FrameError(`Cannot send frame type ${frameTypeName(type)}`);
  if ((flags & ~ALL_FLAGS) !== 0) throw new FrameError(`Cannot send frame flags ${flags}`);
  if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) {
    throw new FrameError(`Cannot send request id ${id}`);
  }
  if (payload.length > maxPayload) {
    throw new FrameError(`Cannot send a ${payload.length}-byte payload (at most ${maxPayload})`);
  }
  const bytes = new Uint8Array(HEADER_BYTES + payload.length);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, type);
  view.setUint8(1, flags);
  view.setUint32(2, id);
  view.setUint32(6, payload.length);
  bytes.set(payload, HEADER_BYTES);
  return bytes;
}

/** How a {@linkcode FrameDecoder} checks what it reads. */
export interface FrameDecoderOptions {
  /** The frame types this side accepts (default: every known type). */
  accept?: ReadonlySet<number>;
  /** The largest payload accepted (default {@linkcode MAX_PAYLOAD}). */
  maxPayload?: number;
}

/** Printable text of a peer's first bytes, for the message when they are not a greeting. */
function shownBytes(bytes: Uint8Array): string {
  return escapeControls(new TextDecoder().decode(bytes.subarray(0, 60)));
}

/**
 * Turns a byte stream cut at arbitrary points into whole frames. It holds at most one
 * incomplete frame: a header is checked (type, flags, length) before any payload byte is
 * kept, so a huge length costs nothing; the payload buffer is allocated once, at its length.
 * The first frame must be `Hello` (the greeting).
 */
export class FrameDecoder {
  readonly #accept: ReadonlySet<number> | null;
  readonly #maxPayload: number;
  readonly #header = new Uint8Array(HEADER_BYTES);
  #headerFill = 0;
  #pending: Frame | null = null;
  #payloadFill = 0;
  #greeted = false;
  #failure: FrameError | null = null;

  /** A decoder that has read nothing yet. */
  constructor(options: FrameDecoderOptions = {}) {
    this.#accept = options.accept ?? null;
    this.#maxPayload = options.maxPayload ?? MAX_PAYLOAD;
  }

  /** Bytes held for the frame being read (a header and a partial payload). */
  get buffered(): number {
    return this.#headerFill + this.#payloadFill;
  }

  /**
   * Reads one chunk.
   *
   * @returns The frames it completed, in order.
   * @throws {FrameError} A frame that breaks the protocol; every later call throws it again.
   */
  push(chunk: Uint8Array): Frame[] {
    return this.pushUntil(chunk, () => false).frames;
  }

  /**
   * Reads one chunk up to the end of the first frame `stop` says yes to, for a session that
   * hands its stream over (see `farend.ts`): the bytes after it are the next session's.
   *
   * @returns The frames completed, in order, and the rest of the chunk (empty unless stopped).
   * @throws {FrameError} A frame that breaks the protocol; every later call throws it again.
   */
  pushUntil(
    chunk: Uint8Array,
    stop: (frame: Frame) => boolean,
  ): { frames: Frame[]; rest: Uint8Array } {
    if (this.#failure !== null) throw this.#failure;
    try {
      return this.#read(chunk, stop);
    } catch (error) {
      if (error instanceof FrameError) this.#failure = error;
      throw error;
    }
  }

  /** Reads one chunk, see {@linkcode FrameDecoder.pushUntil}. */
  #read(
    chunk: Uint8Array,
    stop: (frame: Frame) => boolean,
  ): { frames: Frame[]; rest: Uint8Array } {
    if (!this.#greeted && this.#headerFill === 0 && chunk.length > 0) {
      if (chunk[0] !== FrameType.Hello) {
        throw new FrameError(
          `The far end did not greet as treesync: it sent '${shownBytes(chunk)}' first` +
            " (does a login script print to standard output?)",
        );
      }
      this.#greeted = true;
    }
    const frames: Frame[] = [];
    let offset = 0;
    while (offset < chunk.length) {
      if (this.#pending === null) {
        const take = Math.min(HEADER_BYTES - this.#headerFill, chunk.length - offset);
        this.#header.set(chunk.subarray(offset, offset + take), this.#headerFill);
        this.#headerFill += take;
        offset += take;
        if (this.#headerFill < HEADER_BYTES) break;
        this.#pending = this.#startFrame(chunk, offset);
        this.#headerFill = 0;
        if (this.#payloadFill === this.#pending.payload.length) offset += this.#payloadFill;
      } else {
        const payload = this.#pending.payload;
        const take = Math.min(payload.length - this.#payloadFill, chunk.length - offset);
        payload.set(chunk.subarray(offset, offset + take), this.#payloadFill);
        this.#payloadFill += take;
        offset += take;
      }
      if (this.#payloadFill === this.#pending.payload.length) {
        const frame = this.#pending;
        frames.push(frame);
        this.#pending = null;
        this.#payloadFill = 0;
        if (stop(frame)) return { frames, rest: chunk.subarray(offset) };
      }
    }
    return { frames, rest: new Uint8Array() };
  }

  /**
   * The stream ended.
   *
   * @throws {FrameError} It ended inside a frame.
   */
  end(): void {
    if (this.#pending !== null || this.#headerFill > 0) {
      const what = this.#pending === null ? "a frame header" : frameTypeName(this.#pending.type);
      throw new FrameError(`The far end's stream ended inside ${what}`);
    }
  }

  /** Checks a whole header; the payload is taken from the chunk when all of it is there. */
  #startFrame(chunk: Uint8Array, offset: number): Frame {
    const view = new DataView(this.#header.buffer);
    const type = view.getUint8(0);
    const flags = view.getUint8(1);
    const id = view.getUint32(2);
    const length = view.getUint32(6);
    if (!TYPE_NAMES.has(type)) throw new FrameError(`Unknown frame type ${frameTypeName(type)}`);
    if (this.#accept !== null && !this.#accept.has(type)) {
      throw new FrameError(`Frame ${frameTypeName(type)} is not expected from this side`);
    }
    if ((flags & ~ALL_FLAGS) !== 0) {
      throw new FrameError(`Unknown flags ${flags} on frame ${frameTypeName(type)}`);
    }
    if (length > this.#maxPayload) {
      throw new FrameError(
        `Frame ${frameTypeName(type)} announces ${length} bytes (at most ${this.#maxPayload})`,
      );
    }
    if (chunk.length - offset >= length) {
      this.#payloadFill = length;
      return { type, flags, id, payload: chunk.subarray(offset, offset + length) };
    }
    this.#payloadFill = 0;
    return { type, flags, id, payload: new Uint8Array(length) };
  }
}

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/** Builds a payload from fields: integers big-endian, strings and bytes length-prefixed. */
export class PayloadWriter {
  #bytes = new Uint8Array(256);
  #view = new DataView(this.#bytes.buffer);
  #length = 0;

  /**
   * Makes room for `count` more bytes: where they go. The buffer may be replaced, so callers
   * take `#view` and `#bytes` only after this returns.
   */
  #room(count: number): number {
    const at = this.#length;
    if (at + count > this.#bytes.length) {
      const grown = new Uint8Array(Math.max(this.#bytes.length * 2, at + count));
      grown.set(this.#bytes.subarray(0, at));
      this.#bytes = grown;
      this.#view = new DataView(grown.buffer);
    }
    this.#length += count;
    return at;
  }

  /** Appends one byte. */
  u8(value: number): this {
    const at = this.#room(1);
    this.#view.setUint8(at, value);
    return this;
  }

  /** Appends a 16-bit unsigned integer. */
  u16(value: number): this {
    const at = this.#room(2);
    this.#view.setUint16(at, value);
    return this;
  }

  /** Appends a 32-bit unsigned integer. */
  u32(value: number): this {
    const at = this.#room(4);
    this.#view.setUint32(at, value);
    return this;
  }

  /** Appends a number (sizes, times in milliseconds) as a 64-bit float. */
  f64(value: number): this {
    const at = this.#room(8);
    this.#view.setFloat64(at, value);
    return this;
  }

  /** Appends bytes after their 32-bit length. */
  bytes(value: Uint8Array): this {
    this.u32(value.length);
    const at = this.#room(value.length);
    this.#bytes.set(value, at);
    return this;
  }

  /** Appends a string as UTF-8 after its length. */
  string(value: string): this {
    return this.bytes(encoder.encode(value));
  }

  /** The payload so far. */
  finish(): Uint8Array {
    return this.#bytes.slice(0, this.#length);
  }
}

/** Reads a payload's fields, refusing to read past its end. */
export class PayloadReader {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  #offset = 0;

  /** A reader at the start of `payload`. */
  constructor(payload: Uint8Array) {
    this.#bytes = payload;
    this.#view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  }

  /** Takes `count` bytes' place. */
  #take(count: number): number {
    if (this.#offset + count > this.#bytes.length) {
      throw new FrameError(`A payload ended early: ${count} more bytes expected`);
    }
    const at = this.#offset;
    this.#offset += count;
    return at;
  }

  /** Reads one byte. */
  u8(): number {
    return this.#view.getUint8(this.#take(1));
  }

  /** Reads a 16-bit unsigned integer. */
  u16(): number {
    return this.#view.getUint16(this.#take(2));
  }

  /** Reads a 32-bit unsigned integer. */
  u32(): number {
    return this.#view.getUint32(this.#take(4));
  }

  /** Reads a 64-bit float. */
  f64(): number {
    return this.#view.getFloat64(this.#take(8));
  }

  /** Reads length-prefixed bytes (a view into the payload). */
  bytes(): Uint8Array {
    const length = this.u32();
    const at = this.#take(length);
    return this.#bytes.subarray(at, at + length);
  }

  /**
   * Reads a length-prefixed UTF-8 string.
   *
   * @throws {FrameError} Bytes that are not UTF-8.
   */
  string(): string {
    try {
      return strictDecoder.decode(this.bytes());
    } catch (error) {
      if (error instanceof FrameError) throw error;
      throw new FrameError("A payload holds a string that is not UTF-8");
    }
  }

  /**
   * Checks that every byte was read.
   *
   * @throws {FrameError} Bytes left over.
   */
  done(): void {
    if (this.#offset !== this.#bytes.length) {
      throw new FrameError(`A payload has ${this.#bytes.length - this.#offset} bytes too many`);
    }
  }
}

/** What kind of failure an `Error` frame reports. */
export const ErrorKind = {
  /** The request broke the protocol; the session ends. */
  Protocol: 1,
  /** Refused: a path outside the tree or `--root`, or through a link. */
  Refused: 2,
  /** Nothing is at the path. */
  Missing: 3,
  /** The replica is locked by another run. */
  Locked: 4,
  /** The change failed on the far end's disk (the message says why). */
  Failed: 5,
} as const;

/** An `Error` frame's content. */
export interface ErrorReport {
  /** One of {@linkcode ErrorKind}'s values. */
  kind: number;
  /** One line for the user, naming the path. */
  message: string;
}

const ERROR_KINDS: ReadonlySet<number> = new Set(Object.values(ErrorKind));

/** The longest message an `Error` frame carries, in characters. */
export const MAX_ERROR_MESSAGE = 1000;

/** An `Error` frame's payload. */
export function encodeError(report: ErrorReport): Uint8Array {
  return new PayloadWriter().u8(report.kind).string(report.message.slice(0, MAX_ERROR_MESSAGE))
    .finish();
}

/**
 * Reads an `Error` frame's payload; control characters in the message are escaped.
 *
 * @throws {FrameError} An unknown kind, a message too long, or a malformed payload.
 */
export function decodeError(payload: Uint8Array): ErrorReport {
  const reader = new PayloadReader(payload);
  const kind = reader.u8();
  const message = reader.string();
  reader.done();
  if (!ERROR_KINDS.has(kind)) throw new FrameError(`Unknown error kind ${kind}`);
  if (message.length > MAX_ERROR_MESSAGE) throw new FrameError("An error message is too long");
  return { kind, message: escapeControls(message) };
}

/** The greeting each side sends first. */
export interface Hello {
  /** The lowest protocol version this side speaks. */
  lowest: number;
  /** The highest protocol version this side speaks. */
  highest: number;
  /** The program's version (`0.1.0`), for the message when the two cannot talk. */
  program: string;
  /**
   * What this side can do beyond the version's minimum (`zstd` for `-z`): a session uses a
   * feature only when both sides name it, so one can be added without a new version.
   */
  features: string[];
}

/** At most this many features, each at most {@linkcode MAX_FEATURE_LENGTH} characters. */
const MAX_FEATURES = 32;
const MAX_FEATURE_LENGTH = 64;

const MAGIC = encoder.encode("treesync");

/** The `Hello` frame's payload. */
export function encodeHello(hello: Hello): Uint8Array {
  const writer = new PayloadWriter();
  for (const byte of MAGIC) writer.u8(byte);
  writer.u16(hello.lowest).u16(hello.highest).string(hello.program.slice(0, 64));
  writer.u8(Math.min(hello.features.length, MAX_FEATURES));
  for (const feature of hello.features.slice(0, MAX_FEATURES)) {
    writer.string(feature.slice(0, MAX_FEATURE_LENGTH));
  }
  return writer.finish();
}

/**
 * Reads a `Hello` frame's payload.
 *
 * @throws {FrameError} It does not start with `treesync` or is malformed.
 */
export function decodeHello(payload: Uint8Array): Hello {
  const reader = new PayloadReader(payload);
  for (const byte of MAGIC) {
    if (reader.u8() !== byte) throw new FrameError("The far end's greeting is not treesync's");
  }
  const lowest = reader.u16();
  const highest = reader.u16();
  const program = reader.string();
  const count = reader.u8();
  const features: string[] = [];
  for (let i = 0; i < count && i < MAX_FEATURES; i++) features.push(reader.string());
  reader.done();
  const longFeature = features.some((feature) => feature.length > MAX_FEATURE_LENGTH);
  if (
    lowest > highest || lowest === 0 || program.length > 64 || count > MAX_FEATURES || longFeature
  ) {
    throw new FrameError("The far end's greeting is malformed");
  }
  return { lowest, highest, program, features };
}

/** `1` or `1–3`, for messages. */
function versionRange(hello: Hello): string {
  return hello.lowest === hello.highest ? `${hello.lowest}` : `${hello.lowest}–${hello.highest}`;
}

/**
 * The protocol version both sides speak: the highest they share.
 *
 * @param peer The far end's name for the message (`backup.example.com`).
 * @throws {UsageError} They share none: one line saying which treesync to install where.
 */
export function chooseVersion(ours: Hello, theirs: Hello, peer: string): number {
  const version = Math.min(ours.highest, theirs.highest);
  if (version >= Math.max(ours.lowest, theirs.lowest)) return version;
  const them = `${peer} runs treesync ${theirs.program} (protocol ${versionRange(theirs)})`;
  const us = `this treesync ${ours.program} (protocol ${versionRange(ours)})`;
  if (theirs.highest < ours.lowest) {
    throw new UsageError(`${them}, too old for ${us}: install treesync ${ours.program} there`);
  }
  throw new UsageError(
    `${them}, too new for ${us}: install treesync ${theirs.program} here, or ${ours.program} there`,
  );
}
