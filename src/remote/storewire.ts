/**
 * The payloads of the store frames a `--restore` from a far replica reads (`store.ts` has the
 * exchange): the snapshot `StoreReply` (what each store call gave on the far end), the last
 * `StoreReply` (the SHA-256 of the record's bytes, or why they could not all be read) and the
 * empty `StoreOpen`. Every decoder checks each field and throws `FrameError` on a malformed one;
 * the far end's text is escaped before it can reach a terminal.
 *
 * @module
 */

import { escapeControls } from "../format.ts";
import { FrameError, MAX_ERROR_MESSAGE } from "./frames.ts";
import { WireReader, WireWriter } from "./wirebytes.ts";

/** An error a store call threw on the far end, to be thrown again here. */
export interface ThrownError {
  /** `usage`: a `UsageError` (exit 2); `locked`: a `LockHeldError` (exit 3); `failed`: others. */
  kind: "usage" | "locked" | "failed";
  /** Its one line. */
  message: string;
}

/** A store call's outcome on the far end: its value, or what it threw. */
export type StoreAnswer = { value: boolean } | { thrown: ThrownError };

/** The record file as the far end found it: its format (0: none) and size, or what it threw. */
export type RecordAnswer = { format: 0 | 2 | 3; size: number } | { thrown: ThrownError };

/** The first `StoreReply`: what each store call gave on the far end. */
export interface StoreSnapshot {
  /** `check()`: true, or the reason the store is not ours. */
  check: StoreAnswer;
  /** `lock("read")`: held (true), no lock file (false), or another run holds it. */
  lock: StoreAnswer;
  /** `hasRecord()`. */
  hasRecord: StoreAnswer;
  /** `isAdopted()`. */
  isAdopted: StoreAnswer;
  /** `holdsEntries()`. */
  holdsEntries: StoreAnswer;
  /** The record file; its bytes follow when its format is not 0. */
  record: RecordAnswer;
}

/** The last `StoreReply`, after the record's bytes. */
export interface StoreEnd {
  /** The SHA-256 of the bytes sent, as hex. */
  sha256: string;
  /** Why the record could not be read to its end (a line), or null when it was. */
  unreadable: string | null;
}

const SNAPSHOT = 1;
const END = 2;
const THROWN_KINDS = ["usage", "locked", "failed"] as const;

function writeThrown(writer: WireWriter, thrown: ThrownError): void {
  writer.u8(THROWN_KINDS.indexOf(thrown.kind)).string(thrown.message.slice(0, MAX_ERROR_MESSAGE));
}

function readThrown(reader: WireReader): ThrownError {
  const kind = THROWN_KINDS[reader.u8()];
  if (kind === undefined) throw new FrameError("Unknown kind of store error");
  // Shown to the user: the far end's text never reaches the terminal as control characters.
  return { kind, message: escapeControls(reader.string(4 * MAX_ERROR_MESSAGE)) };
}

function writeAnswer(writer: WireWriter, answer: StoreAnswer): void {
  if ("thrown" in answer) writeThrown(writer.u8(1), answer.thrown);
  else writer.u8(0).u8(answer.value ? 1 : 0);
}

function readAnswer(reader: WireReader): StoreAnswer {
  const tag = reader.u8();
  if (tag === 1) return { thrown: readThrown(reader) };
  const value = reader.u8();
  if (tag !== 0 || value > 1) throw new FrameError("Malformed store answer");
  return { value: value === 1 };
}

const ANSWERS = ["check", "lock", "hasRecord", "isAdopted", "holdsEntries"] as const;

/** The snapshot `StoreReply`'s payload. */
export function encodeStoreSnapshot(snapshot: StoreSnapshot): Uint8Array {
  const writer = new WireWriter().u8(SNAPSHOT);
  for (const name of ANSWERS) writeAnswer(writer, snapshot[name]);
  const record = snapshot.record;
  if ("thrown" in record) writeThrown(writer.u8(1), record.thrown);
  else writer.u8(0).u8(record.format).varint(record.size);
  return writer.finish();
}

/**
 * Reads the snapshot `StoreReply`'s payload.
 *
 * @throws {FrameError} A malformed payload.
 */
export function decodeStoreSnapshot(payload: Uint8Array): StoreSnapshot {
  const reader = new WireReader(payload);
  if (reader.u8() !== SNAPSHOT) throw new FrameError("A store's snapshot was expected");
  const [check, lock, hasRecord, isAdopted, holdsEntries] = ANSWERS.map(() => readAnswer(reader));
  let record: RecordAnswer;
  if (reader.u8() === 1) record = { thrown: readThrown(reader) };
  else {
    const format = reader.u8();
    if (format !== 0 && format !== 2 && format !== 3) {
      throw new FrameError(`Unknown record format ${format}`);
    }
    record = { format, size: reader.varint() };
  }
  reader.done();
  return {
    check: check!,
    lock: lock!,
    hasRecord: hasRecord!,
    isAdopted: isAdopted!,
    holdsEntries: holdsEntries!,
    record,
  };
}

/** The last `StoreReply`'s payload. */
export function encodeStoreEnd(end: StoreEnd): Uint8Array {
  const writer = new WireWriter().u8(END).string(end.sha256);
  if (end.unreadable === null) writer.u8(0);
  else writer.u8(1).string(end.unreadable.slice(0, MAX_ERROR_MESSAGE));
  return writer.finish();
}

/**
 * Reads the last `StoreReply`'s payload.
 *
 * @throws {FrameError} A malformed payload.
 */
export function decodeStoreEnd(payload: Uint8Array): StoreEnd {
  const reader = new WireReader(payload);
  if (reader.u8() !== END) throw new FrameError("The end of a store's record was expected");
  const sha256 = reader.string(64);
  const tag = reader.u8();
  const unreadable = tag === 1 ? escapeControls(reader.string(4 * MAX_ERROR_MESSAGE)) : null;
  reader.done();
  if (tag > 1 || !/^[0-9a-f]{64}$/.test(sha256)) throw new FrameError("Malformed store end");
  return { sha256, unreadable };
}

/**
 * Checks a `StoreOpen` payload: empty, since the store is the opened tree's.
 *
 * @throws {FrameError} It is not empty.
 */
export function decodeStoreOpen(payload: Uint8Array): void {
  if (payload.length > 0) throw new FrameError("StoreOpen carries nothing");
}
