/**
 * The own files (`.treesync/`: lock, record, adoption mark) of a replica on another host, as a
 * `--restore` reads them: never written, taken once per session as a snapshot.
 *
 * After `Open`, the client sends `StoreOpen` (an empty payload: the store is the opened tree's).
 * The server checks the store (`check()`), takes its lock read-only and holds it until the
 * session ends, so that no run changes the record while the session lasts, and answers:
 * - a `StoreReply` snapshot: what `check()`, `lock("read")`, `hasRecord()`, `isAdopted()` and
 *   `holdsEntries()` gave (a value, or the error thrown), and the record file's format and size;
 *   with the `More` flag when the record follows;
 * - the record file as stored, in `Data` frames of at most `DATA_CHUNK` bytes (read a chunk at
 *   a time: the server never holds the record), then a last `StoreReply` with the SHA-256 of
 *   the bytes sent, or why the file could not be read to its end.
 *
 * A store that is not ours (`check()` failed) is neither locked nor read: every answer is the
 * check's error. A lock held by another run is not waited for, and the record is then not read.
 * A version-2 record is sent as it is, with its format, and the client decodes it; the client
 * holds the record's bytes and reads them with the local record readers (`recordfiles.ts`), so
 * a damaged record is found and reported there, named as the user named the replica.
 *
 * @module
 */

import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { errorText, UsageError } from "../errors.ts";
import { formatBytes, quoted } from "../format.ts";
import { type RecordSource } from "../recordfile.ts";
import { ArrayCursor, emptyRecordSource, WalkOrderSource } from "../recordread.ts";
import { META_DIR } from "../scan.ts";
import { refuseRestoreFromStore } from "../sides/local/checks.ts";
import { LockHeldError } from "../sides/local/meta.ts";
import {
  LEGACY_RECORD_MAX_BYTES,
  legacyRecordFromBytes,
  recordFromBytes,
} from "../sides/local/recordfiles.ts";
import {
  type LockMode,
  type RecordDraft,
  type ReplicaLock,
  type ReplicaStore,
} from "../sides/writer.ts";
import {
  type Connection,
  connectRemoteTree,
  RemoteError,
  type RemoteTreeOptions,
  type RemoteTreeReader,
} from "./client.ts";
import {
  DATA_CHUNK,
  decodeError,
  type Frame,
  FrameError,
  FrameFlag,
  FrameType,
  frameTypeName,
} from "./frames.ts";
import {
  decodeStoreEnd,
  decodeStoreSnapshot,
  encodeStoreEnd,
  encodeStoreSnapshot,
  type RecordAnswer,
  type StoreAnswer,
  type StoreEnd,
  type StoreSnapshot,
  type ThrownError,
} from "./storewire.ts";

// ---------------------------------------------------------------------------------------------
// The far end

/** A store the server can send: the calls a restore reads, and the record file as stored. */
export interface ServedStore
  extends Pick<ReplicaStore, "check" | "lock" | "hasRecord" | "isAdopted" | "holdsEntries"> {
  /**
   * The record file, opened (the caller reads and closes it): format 3, else 2; null: none.
   *
   * @throws {UsageError} A record's path is not a regular file of ours.
   */
  openRecordFile(): { format: 2 | 3; fd: number; size: number } | null;
}

/** How {@linkcode serveStore} answers, and hands over the lock it took. */
export interface StoreSession {
  /** The `StoreOpen` request's id. */
  id: number;
  /** Queues a frame; resolves once it is written. */
  send(frame: Frame): Promise<void>;
  /** Keeps the lock taken until the session ends (then released by the session). */
  hold(lock: ReplicaLock): void;
  /** Whether the request was cancelled (the session is ending): stop sending. */
  cancelled(): boolean;
}

/** A call's outcome, with what it threw as a {@linkcode ThrownError}. */
function answerOf(call: () => boolean): StoreAnswer {
  try {
    return { value: call() };
  } catch (error) {
    return { thrown: thrownOf(error) };
  }
}

function thrownOf(error: unknown): ThrownError {
  const kind = error instanceof LockHeldError
    ? "locked"
    : error instanceof UsageError
    ? "usage"
    : "failed";
  return { kind, message: kind === "failed" ? errorText(error) : (error as Error).message };
}

/**
 * Answers a `StoreOpen` for `store` (see the module documentation): the snapshot, then the
 * record's bytes a chunk at a time, each sent before the next is read.
 */
export async function serveStore(store: ServedStore, session: StoreSession): Promise<void> {
  const { id } = session;
  const check = answerOf(() => {
    store.check();
    return true;
  });
  if ("thrown" in check) {
    // Nothing of a store that is not ours is looked at, locked or read.
    const snapshot = { check, lock: check, hasRecord: check, isAdopted: check };
    const payload = encodeStoreSnapshot({ ...snapshot, holdsEntries: check, record: check });
    return await session.send({ type: FrameType.StoreReply, flags: 0, id, payload });
  }
  const lock = answerOf(() => {
    const held = store.lock("read");
    if (held !== null) session.hold(held);
    return held !== null;
  });
  const [hasRecord, isAdopted, holdsEntries] = [
    answerOf(() => store.hasRecord()),
    answerOf(() => store.isAdopted()),
    answerOf(() => store.holdsEntries()),
  ];
  let file: { format: 2 | 3; fd: number; size: number } | null = null;
  let record: RecordAnswer = { format: 0, size: 0 };
  // While another run holds the lock, it may be writing the next record: it is not read.
  if ("thrown" in lock) record = lock;
  else {
    try {
      file = store.openRecordFile();
      if (file !== null) record = { format: file.format, size: file.size };
    } catch (error) {
      record = { thrown: thrownOf(error) };
    }
  }
  try {
    const snapshot = { check, lock, hasRecord, isAdopted, holdsEntries, record };
    await session.send({
      type: FrameType.StoreReply,
      flags: file === null ? 0 : FrameFlag.More,
      id,
      payload: encodeStoreSnapshot(snapshot),
    });
    if (file === null) return;
    const end = await sendRecordFile(file, session);
    if (session.cancelled()) return;
    await session.send({ type: FrameType.StoreReply, flags: 0, id, payload: encodeStoreEnd(end) });
  } finally {
    if (file !== null) fs.closeSync(file.fd);
  }
}

/** Sends an open record file's bytes as Data frames; one buffer, reused for every chunk. */
async function sendRecordFile(
  file: { format: 2 | 3; fd: number; size: number },
  session: StoreSession,
): Promise<StoreEnd> {
  const hash = createHash("sha256");
  const end = (unreadable: string | null) => ({ sha256: hash.digest("hex"), unreadable });
  if (file.format === 2 && file.size > LEGACY_RECORD_MAX_BYTES) {
    return end(
      `it is ${formatBytes(file.size)}, more than a version-2 record can be ` +
        `(${formatBytes(LEGACY_RECORD_MAX_BYTES)})`,
    );
  }
  const buffer = new Uint8Array(Math.min(DATA_CHUNK, file.size));
  for (let position = 0; position < file.size;) {
    if (session.cancelled()) return end("the session ended");
    let count: number;
    try {
      count = fs.readSync(
        file.fd,
        buffer,
        0,
        Math.min(buffer.length, file.size - position),
        position,
      );
    } catch (error) {
      return end(errorText(error, true));
    }
    if (count === 0) return end("it is shorter than when it was opened");
    const chunk = buffer.subarray(0, count);
    hash.update(chunk);
    // The frame is a copy: the buffer may be read into again at once.
    await session.send({
      type: FrameType.Data,
      flags: FrameFlag.More,
      id: session.id,
      payload: chunk,
    });
    position += count;
  }
  return end(null);
}

// ---------------------------------------------------------------------------------------------
// The near end

/**
 * Reads the store of the tree opened on `connection` (after `Open`): sends `StoreOpen` and
 * waits for the snapshot and the record's bytes, which it holds.
 *
 * @param display The replica as the user named it (`backup:/srv/data`), for messages.
 * @throws {RemoteError} The far end refused (it serves no stores, or the session failed).
 * @throws {FrameError} The answer broke the protocol (bytes past the size, a wrong checksum).
 */
export function openRemoteStore(
  connection: Connection,
  display: string,
): Promise<RemoteReplicaStore> {
  return new Promise((resolve, reject) => {
    const receiver = new StoreReceiver(connection, display);
    receiver.done = (store) => resolve(store);
    receiver.failed = (error) => reject(error);
    receiver.id = connection.request(FrameType.StoreOpen, new Uint8Array(), {
      frame: (frame) => receiver.receive(frame),
      fail: (error) => receiver.fail(error),
    });
  });
}

/**
 * Connects to a replica on another host to restore from: greets, opens its tree for reading,
 * and reads its own files ({@linkcode openRemoteStore}), all over one session. Closing the
 * tree ends the session, and the far end lets the lock go.
 *
 * @throws {RemoteError} The far end refused the tree, its store, or the session.
 * @throws {UsageError} The two ends share no protocol version.
 */
export async function connectRemoteReplica(
  options: RemoteTreeOptions,
): Promise<{ tree: RemoteTreeReader; store: RemoteReplicaStore }> {
  const tree = await connectRemoteTree(options);
  try {
    return { tree, store: await openRemoteStore(tree.connection, tree.display) };
  } catch (error) {
    await tree.close();
    throw error;
  }
}

/** Takes a `StoreOpen`'s answer frame by frame, then stays to hear the connection end. */
class StoreReceiver {
  id = 0;
  done: (store: RemoteReplicaStore) => void = () => {};
  failed: (error: Error) => void = () => {};
  readonly #connection: Connection;
  readonly #display: string;
  #snapshot: StoreSnapshot | null = null;
  readonly #pieces: Uint8Array[] = [];
  #received = 0;
  #hash = createHash("sha256");
  #store: RemoteReplicaStore | null = null;
  #over = false;

  constructor(connection: Connection, display: string) {
    this.#connection = connection;
    this.#display = display;
  }

  receive(frame: Frame): void {
    // Nothing more answers a store: the handler stays only to hear the connection end.
    if (this.#over || this.#store !== null) return;
    try {
      this.#take(frame);
    } catch (error) {
      this.#over = true;
      this.#connection.forget(this.id);
      this.failed(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /** The connection failed or ended: before the answer, the open fails; after, the lock goes. */
  fail(error: Error): void {
    if (this.#store !== null) this.#store.connectionEnded();
    else if (!this.#over) this.failed(error);
    this.#over = true;
  }

  #take(frame: Frame): void {
    if (frame.type === FrameType.Error) {
      const report = decodeError(frame.payload);
      throw new RemoteError(report.kind, report.message);
    }
    const more = (frame.flags & FrameFlag.More) !== 0;
    if (this.#snapshot === null) {
      if (frame.type !== FrameType.StoreReply) {
        throw new FrameError(`${frameTypeName(frame.type)} answered StoreOpen`);
      }
      this.#snapshot = decodeStoreSnapshot(frame.payload);
      const record = this.#snapshot.record;
      if (more !== ("format" in record && record.format !== 0)) {
        throw new FrameError("A store's snapshot does not say rightly whether a record follows");
      }
      if ("size" in record && record.size > MAX_HELD_RECORD_BYTES) {
        throw new UsageError(
          `The record of ${this.#display} is ${record.size} bytes, more than the ` +
            `${formatBytes(MAX_HELD_RECORD_BYTES)} a restore from another host holds in ` +
            "memory: run the restore on that host instead",
        );
      }
      if (!more) this.#finish(null);
      return;
    }
    if (frame.type === FrameType.Data) {
      const size = (this.#snapshot.record as { size: number }).size;
      const bytes = frame.payload;
      if (bytes.length === 0) throw new FrameError("An empty Data frame in the record of a store");
      if (this.#received + bytes.length > size || !more) {
        throw new FrameError(`The record from ${this.#connection.peer} is longer than it said`);
      }
      this.#hash.update(bytes);
      this.#keep(bytes, size);
      this.#received += bytes.length;
      return;
    }
    if (frame.type !== FrameType.StoreReply || more) {
      throw new FrameError(`${frameTypeName(frame.type)} in the record of a store`);
    }
    this.#finish(decodeStoreEnd(frame.payload));
  }

  /**
   * Copies the record's next bytes into pieces of `DATA_CHUNK` bytes (the last: what is left of
   * `size`), so that what is held is the record's size, whatever sizes its frames came in. A
   * copy also because a frame's payload may share memory with the larger chunk it came in.
   */
  #keep(bytes: Uint8Array, size: number): void {
    for (let at = 0; at < bytes.length;) {
      const kept = this.#received + at;
      const offset = kept % DATA_CHUNK;
      if (offset === 0) this.#pieces.push(new Uint8Array(Math.min(DATA_CHUNK, size - kept)));
      const piece = this.#pieces.at(-1)!;
      const count = Math.min(piece.length - offset, bytes.length - at);
      piece.set(bytes.subarray(at, at + count), offset);
      at += count;
    }
  }

  #finish(end: StoreEnd | null): void {
    const snapshot = this.#snapshot!;
    const unreadable = end?.unreadable ?? null;
    if (end !== null && unreadable === null) {
      const size = (snapshot.record as { size: number }).size;
      if (this.#received !== size || this.#hash.digest("hex") !== end.sha256) {
        throw new FrameError(
          `The record from ${this.#connection.peer} does not match its checksum`,
        );
      }
    }
    if (unreadable !== null) this.#pieces.length = 0;
    this.#store = new RemoteReplicaStore({
      display: this.#display,
      snapshot,
      pieces: this.#pieces,
      unreadable,
    });
    this.done(this.#store);
  }
}

/**
 * The largest far record a restore takes: it is held in memory while the restore runs (about
 * 55 bytes an entry, so some 20 million entries), and a far end cannot make this host hold more
 * by announcing more. Checked on the announced size, before any of its bytes arrive.
 */
export const MAX_HELD_RECORD_BYTES = 1 << 30;

/** What a {@linkcode RemoteReplicaStore} answers from. */
export interface RemoteStoreContents {
  /** The replica as the user named it. */
  display: string;
  /** What the far end's store calls gave. */
  snapshot: StoreSnapshot;
  /** The record's bytes as they came (none when there is no record). */
  pieces: Uint8Array[];
  /** Why the far end could not read the record to its end, or null. */
  unreadable: string | null;
}

/**
 * A replica on another host, read-only: a {@linkcode ReplicaStore} answering from the snapshot
 * the far end sent (see {@linkcode openRemoteStore}). The far end holds the replica's lock for
 * the session, so the snapshot stays true while it lasts. Every call that would write, and a
 * lock in any mode but `read`, throws.
 */
export class RemoteReplicaStore implements ReplicaStore {
  /** The replica's root, as the user named it: for messages only. */
  readonly display: string;
  readonly #snapshot: StoreSnapshot;
  readonly #pieces: Uint8Array[];
  readonly #unreadable: string | null;
  #connected = true;

  /** A store over what the far end sent. */
  constructor(contents: RemoteStoreContents) {
    this.display = contents.display;
    this.#snapshot = contents.snapshot;
    this.#pieces = contents.pieces;
    this.#unreadable = contents.unreadable;
  }

  /** The session is over: the far end let the lock go. */
  connectionEnded(): void {
    this.#connected = false;
  }

  /**
   * The lock the far end took for the session (`read` only): null when the replica has no
   * lock file.
   *
   * @throws {LockHeldError} Another live run held it when the session began.
   * @throws {Error} Any other mode: a remote replica is not written here.
   */
  lock(mode: LockMode): ReplicaLock | null {
    if (mode !== "read") throw this.#readOnly(`lock (${mode}) and write`);
    if (!valueOf(this.#snapshot.lock)) return null;
    if (!this.#connected) {
      throw new Error(`Cannot lock ${quoted(this.display)}: the session with its host ended`);
    }
    let held = true;
    return {
      // A read-only lock writes nothing, here as on the far end.
      announce: () => {},
      release: () => held = false,
      stillHeld: () => held && this.#connected,
    };
  }

  /**
   * Whether the far end found its store ours, when the session began.
   *
   * @throws {UsageError} The far end's line, when it is not.
   */
  check(): void {
    valueOf(this.#snapshot.check);
  }

  /**
   * The record the far end sent, read as a local one: a damaged one is reported through
   * `onCorrupt` and read as far as it can be.
   *
   * @throws {UsageError} The record's path is not a regular file on the far end.
   * @throws {LockHeldError} Another run held the lock: the record was not read.
   */
  openRecord(onCorrupt: (message: string) => void): RecordSource {
    valueOf(this.#snapshot.check);
    const record = this.#snapshot.record;
    if ("thrown" in record) throw thrownError(record.thrown);
    if (record.format === 0) return emptyRecordSource();
    const name = `${this.display}/${META_DIR}/${record.format === 3 ? "record" : "record.json"}`;
    if (this.#unreadable !== null) {
      onCorrupt(`Cannot read the record ${quoted(name)} (${this.#unreadable}); rebuilding it`);
      return new WalkOrderSource(new ArrayCursor([], true));
    }
    if (record.format === 3) return recordFromBytes(this.#pieces, { name, onCorrupt });
    return legacyRecordFromBytes(joined(this.#pieces), { name, onCorrupt });
  }

  /** Whether the far end has a record, of either format. */
  hasRecord(): boolean {
    return valueOf(this.#snapshot.hasRecord);
  }

  /** Whether the far end's replica is ours to mirror over (and so to restore from). */
  isAdopted(): boolean {
    return valueOf(this.#snapshot.isAdopted);
  }

  /** Whether the far end's root holds anything but our own folder. */
  holdsEntries(): boolean {
    return valueOf(this.#snapshot.holdsEntries);
  }

  /**
   * Not here: a remote replica is only read.
   *
   * @throws {Error} Always.
   */
  prepare(): void {
    throw this.#readOnly("prepare");
  }

  /**
   * Not here: nothing of a remote replica is prepared.
   *
   * @throws {Error} Always.
   */
  checkStillOurs(): void {
    throw this.#readOnly("write");
  }

  /**
   * Not here: a remote replica is only read.
   *
   * @throws {Error} Always.
   */
  markUnadopted(): void {
    throw this.#readOnly("mark");
  }

  /**
   * Not here: a remote replica is only read.
   *
   * @throws {Error} Always.
   */
  clearUnadopted(): void {
    throw this.#readOnly("adopt");
  }

  /**
   * Not here: a remote replica's record is never converted here.
   *
   * @throws {Error} Always.
   */
  removeLegacyRecord(): void {
    throw this.#readOnly("convert the record of");
  }

  /**
   * Not here: a remote replica's record is never written here.
   *
   * @throws {Error} Always.
   */
  createDraft(): RecordDraft {
    throw this.#readOnly("write the record of");
  }

  /**
   * Not here: a remote replica's record is never written here.
   *
   * @throws {Error} Always.
   */
  readDraft(): RecordSource | null {
    throw this.#readOnly("write the record of");
  }

  /**
   * Not here: a remote replica's record is never written here.
   *
   * @throws {Error} Always.
   */
  sameAsRecord(): boolean {
    throw this.#readOnly("write the record of");
  }

  /**
   * Not here: a remote replica's record is never written here.
   *
   * @throws {Error} Always.
   */
  commit(): void {
    throw this.#readOnly("write the record of");
  }

  /**
   * Not here: a remote replica's record is never written here.
   *
   * @throws {Error} Always.
   */
  discard(): void {
    throw this.#readOnly("write the record of");
  }

  #readOnly(what: string): Error {
    return new Error(
      `Cannot ${what} the replica ${quoted(this.display)}: a remote replica is read-only here ` +
        `(it is only restored from)`,
    );
  }
}

/**
 * The checks a restore makes of a replica on another host before anything is written, as
 * `checkTrees` makes them of a local one: its own files are ours, and it is a replica of ours,
 * adopted (a missing root or one that is no folder has no record, and is refused so).
 *
 * @throws {UsageError} The replica cannot be restored from.
 */
export function checkRestoreFromRemote(store: ReplicaStore): void {
  store.check();
  refuseRestoreFromStore(store.display, store);
}

/** An answer's value; what the far end threw is thrown here. */
function valueOf(answer: StoreAnswer): boolean {
  if ("thrown" in answer) throw thrownError(answer.thrown);
  return answer.value;
}

/** The error the far end threw, of the class that gives the same exit code. */
function thrownError(thrown: ThrownError): Error {
  if (thrown.kind === "locked") return new LockHeldError(thrown.message);
  if (thrown.kind === "usage") return new UsageError(thrown.message);
  return new Error(thrown.message);
}

/** Pieces of bytes as one buffer. */
function joined(pieces: readonly Uint8Array[]): Uint8Array {
  const whole = new Uint8Array(pieces.reduce((sum, piece) => sum + piece.length, 0));
  let at = 0;
  for (const piece of pieces) {
    whole.set(piece, at);
    at += piece.length;
  }
  return whole;
}
