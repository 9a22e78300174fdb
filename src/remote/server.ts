/**
 * The far end of a remote tree (`treesync --serve`), read side: one session over a byte stream
 * pair, answering `Hello`, `Open`, `Walk`, `Stat`, `Hash`, `Read`, `Credit`, `Cancel` and `End`
 * through a `TreeReader` of this host (`serve_stdio.ts` gives a `LocalTreeReader`), and `StoreOpen`
 * through the opened tree's own files (`store.ts`). Requests run
 * side by side (a walk waiting for credit does not hold up a stat); every frame goes out
 * through one queue, awaited, so a slow peer slows the walk or the read instead of filling
 * memory: a walk holds one listing batch at a time, a read one chunk.
 *
 * A `Read` streams one regular file of the tree (opened by the tree's own code, never through
 * a link) as `Data` frames of at most `DATA_CHUNK` bytes, hashed as read, then `DataEnd` with
 * its SHA-256, its entry as read and whether it changed meanwhile. The session's `Open` says
 * whether Data frames may be compressed (`-z`: each chunk goes compressed only when that is
 * smaller) and the bytes a second they may take (`--bwlimit`: one pacer for the session, over
 * the bytes on the wire).
 *
 * A peer that breaks the protocol (a frame that does not decode, a huge length, an unknown or
 * unexpected type, a request out of turn) gets one `Error` frame with id 0 and the session
 * ends; a request that fails (a path refused, a folder unreadable) gets an `Error` with its id
 * and the session goes on.
 *
 * @module
 */

import { errorText } from "../errors.ts";
import { quoted } from "../format.ts";
import {
  type FolderSource,
  type LocalFileSource,
  type TreeReader,
  type TreeWalk,
} from "../sides/reader.ts";
import { type ReplicaLock } from "../sides/writer.ts";
import { inBatches } from "../batch.ts";
import { HASH_BATCH } from "../sides/local/workers.ts";
import { HashingRead, type OpenedFile } from "../sides/local/hash.ts";
import { openSourceFile } from "../sides/local/source.ts";
import { VERSION } from "../version.ts";
import { ourFeatures } from "./kernel.ts";
import {
  chooseVersion,
  DATA_CHUNK,
  decodeHello,
  encodeError,
  encodeFrame,
  encodeHello,
  ErrorKind,
  type Frame,
  FrameDecoder,
  FrameError,
  FrameFlag,
  FrameType,
  frameTypeName,
  FROM_CLIENT,
  HEADER_BYTES,
  type Hello,
  LISTING_FEATURE,
  PROTOCOL_VERSIONS,
  type WireBytes,
} from "./frames.ts";
import { FrameOutbox } from "./outbox.ts";
import { compressChunk, Pacer } from "./pace.ts";
import {
  decodeCancel,
  decodeCredit,
  decodeHash,
  decodeOpen,
  decodeRead,
  decodeStat,
  decodeWalk,
  encodeDataEnd,
  encodeHashBatch,
  encodeOpened,
  encodeStatReply,
  type HashItem,
  ListingBatcher,
  WALK_CREDIT,
} from "./wire.ts";
import { type ServedStore, serveStore } from "./store.ts";
import { decodeStoreOpen } from "./storewire.ts";

/** What a session serves, and over what. */
export interface ServeOptions {
  /** The bytes the client sends (the server's stdin). */
  input: ReadableStream<Uint8Array>;
  /** Where the answers go (the server's stdout). */
  output: WritableStream<Uint8Array>;
  /**
   * Reads the tree a client opened (its checked, absolute path): `treesync --serve` gives a
   * `LocalTreeReader` hashing in the process's `WorkerPool` (see `serve_stdio.ts`).
   */
  readTree: (path: string) => TreeReader;
  /**
   * The own files of the tree a client opened, for `StoreOpen` (a restore from a replica here):
   * `treesync --serve` gives a `LocalReplicaStore`. Without it, `StoreOpen` is refused.
   */
  openStore?: (path: string) => ServedStore;
  /** Only trees at or below this folder may be opened (`--root`; default: any). */
  root?: string;
  /**
   * The folder a relative tree path is taken from: the login's home, where the remote shell
   * starts the far end, as rsync does (default: relative paths are refused).
   */
  home?: string;
  /** A listing batch is sent at this many bytes (default `LISTING_SOFT_LIMIT`, for tests). */
  batchBytes?: number;
  /**
   * A far end that takes pushed runs: decides on a `Run` instead of `Open`. Accepted, the
   * session answers `Ok` and ends at once, leaving both streams open (see `farend.ts`).
   */
  onRun?: (payload: Uint8Array) => { refused: string } | { accepted: unknown };
  /** A near end serving a pushed run (the roles swapped): the far run's own frames. */
  swapped?: SwappedPeer;
  /**
   * Counts the bytes of the session (headers and payloads), added to as they go and come: read
   * it at any time (the summary of a run whose near end serves).
   */
  wire?: WireBytes;
  /** Makes the pacer of a session with a rate (default `new Pacer(rate)`; tests count). */
  pacer?: (bytesPerSecond: number) => Pacer;
}

/** What a near end does with the frames only a far run sends (see `push.ts`). */
export interface SwappedPeer {
  /** Called once, with the session's way to send (a `Stop`, an `Answer`). */
  started(send: (frame: Frame) => Promise<void>): void;
  /** A `Report`, `Progress`, `Done` (id 0) or `Confirm` frame. */
  receive(frame: Frame): Promise<void> | void;
}

/** The frames a far run sends its near end. */
const SWAPPED_TYPES: ReadonlySet<number> = new Set([
  FrameType.Report,
  FrameType.Progress,
  FrameType.Confirm,
  FrameType.Done,
]);

/** How a session ended. */
export interface ServeOutcome {
  /** Why it ended early, one line (none: the client said End, or its stream ended). */
  error?: string;
  /** A pushed run accepted (what `onRun` accepted): the streams are still open, for it. */
  handoff?: unknown;
}

/** A request being answered: how it is stopped and, for a walk, given more credit. */
interface Running {
  cancel(): void;
  /** Whether it is a walk. */
  walk: boolean;
  credit?(batches: number): void;
}

/**
 * Requests one session may have running at once, and walks among them (each walk has a walker
 * thread): a peer asking for more is refused rather than served out of memory.
 */
export const MAX_RUNNING = { requests: 128, walks: 8 } as const;

/** Folders a listing batch holds at most, as the local walk's batches. */
const BATCH_FOLDERS = 256;
/** Listings smaller than this go as they are: packing would save less than it costs. */
const PACK_LISTINGS_FROM = 512;

/**
 * Serves one session until the client ends it, its stream ends, or it breaks the protocol.
 * Never throws: a failure is the outcome's `error`, which the peer was told too.
 */
export async function serve(options: ServeOptions): Promise<ServeOutcome> {
  const session = new Session(options);
  return await session.run();
}

/** One session's state: where it is in the greeting, the tree, the requests running. */
class Session {
  readonly #options: ServeOptions;
  readonly #outbox: FrameOutbox;
  readonly #decoder = new FrameDecoder({ accept: FROM_CLIENT });
  #state: "greeting" | "opening" | "open" = "greeting";
  #tree: TreeReader | null = null;
  #root = "";
  #compress = false;
  /** Whether the client takes compressed listings. */
  #packListings = false;
  #pacer: Pacer | null = null;
  readonly #wire: WireBytes;
  readonly #running = new Map<number, Running>();
  readonly #tasks = new Set<Promise<void>>();
  #broken = false;
  #handoff: { accepted: unknown } | null = null;
  #storeOpened = false;
  /** The opened tree's replica lock, held read-only from `StoreOpen` to the session's end. */
  #storeLock: ReplicaLock | null = null;

  constructor(options: ServeOptions) {
    this.#options = options;
    this.#outbox = new FrameOutbox(options.output.getWriter());
    options.swapped?.started((frame) => this.send(frame));
    this.#wire = options.wire ?? { sent: 0, received: 0 };
  }

  async run(): Promise<ServeOutcome> {
    const reader = this.#options.input.getReader();
    let outcome: ServeOutcome = {};
    try {
      outcome = await this.#readAll(reader);
    } catch (error) {
      const message = error instanceof FrameError ? error.message : errorText(error);
      outcome = { error: message };
      await this.send({ type: FrameType.Error, flags: 0, id: 0, payload: errorPayload(error) });
    } finally {
      for (const running of this.#running.values()) running.cancel();
      await Promise.allSettled([...this.#tasks]);
      this.#storeLock?.release();
      reader.releaseLock();
      if (this.#handoff !== null && outcome.error === undefined) await this.#outbox.release();
      else await this.#outbox.close();
    }
    return outcome;
  }

  /** Reads frames until End or the end of the stream; the session's protocol errors throw. */
  async #readAll(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<ServeOutcome> {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        this.#decoder.end();
        return {};
      }
      this.#wire.received += value.length;
      const frames = this.#decoder.push(value);
      for (const [index, frame] of frames.entries()) {
        if (frame.type === FrameType.End) {
          // A walk waits for credit the client will not give any more.
          for (const running of this.#running.values()) if (running.credit) running.cancel();
          await Promise.allSettled([...this.#tasks]);
          await this.send({ type: FrameType.End, flags: 0, id: 0, payload: new Uint8Array() });
          await reader.cancel().catch(() => {});
          return {};
        }
        await this.#handle(frame);
        if (this.#broken) throw new FrameError("The peer's stream broke");
        const handoff = this.#handedOff();
        if (handoff === null) continue;
        // The next session begins with our next byte: nothing of the peer's may be read ahead.
        if (index < frames.length - 1 || this.#decoder.buffered > 0) {
          throw new FrameError("Frames after Run, before its answer");
        }
        return { handoff: handoff.accepted };
      }
    }
  }

  /** Queues a frame; resolves once it is written (the peer's pace), or the stream broke. */
  send(frame: Frame): Promise<void> {
    const bytes = encodeFrame(frame);
    return this.#outbox.write(bytes).then(() => {
      this.#wire.sent += bytes.length;
    }, () => {
      this.#broken = true;
    });
  }

  #fail(id: number, kind: number, message: string): Promise<void> {
    return this.send({
      type: FrameType.Error,
      flags: 0,
      id,
      payload: encodeError({ kind, message }),
    });
  }

  async #handle(frame: Frame): Promise<void> {
    if ((frame.flags & FrameFlag.Compressed) !== 0) {
      throw new FrameError("Compressed frames are not agreed");
    }
    if (this.#state === "greeting") {
      if (frame.type !== FrameType.Hello) {
        throw new FrameError(`Frame ${frameTypeName(frame.type)} before Hello`);
      }
      return await this.#greet(decodeHello(frame.payload));
    }
    if (frame.type === FrameType.Hello) throw new FrameError("A second Hello");
    if (this.#options.swapped && SWAPPED_TYPES.has(frame.type)) {
      return await this.#options.swapped.receive(frame);
    }
    if (frame.id === 0) throw new FrameError(`Frame ${frameTypeName(frame.type)} without an id`);
    if (frame.type === FrameType.Cancel) {
      return this.#running.get(decodeCancel(frame.payload))?.cancel();
    }
    if (frame.type === FrameType.Credit) {
      return this.#running.get(frame.id)?.credit?.(decodeCredit(frame.payload));
    }
    if (this.#running.has(frame.id)) throw new FrameError(`Request ${frame.id} is already running`);
    if (this.#state === "opening") {
      if (frame.type === FrameType.Run && this.#options.onRun) {
        return await this.#run(frame.id, frame.payload);
      }
      if (frame.type !== FrameType.Open) {
        throw new FrameError(`Frame ${frameTypeName(frame.type)} before Open`);
      }
      return await this.#open(frame.id, frame.payload);
    }
    switch (frame.type) {
      case FrameType.Walk:
        return this.#start(
          frame.id,
          (running) => this.#walk(frame.id, frame.payload, running),
          true,
        );
      case FrameType.Hash:
        return this.#start(frame.id, (running) => this.#hash(frame.id, frame.payload, running));
      case FrameType.Read:
        return this.#start(frame.id, (running) => this.#read(frame.id, frame.payload, running));
      case FrameType.Stat:
        return await this.#stat(frame.id, frame.payload);
      case FrameType.StoreOpen:
        return this.#start(frame.id, (running) => this.#store(frame.id, frame.payload, running));
      case FrameType.Open:
        throw new FrameError("A second Open");
      default:
        return await this.#fail(
          frame.id,
          ErrorKind.Refused,
          `${frameTypeName(frame.type)} is not served yet: this server reads trees only`,
        );
    }
  }

  async #greet(theirs: Hello): Promise<void> {
    const ours: Hello = { ...PROTOCOL_VERSIONS, program: VERSION, features: ourFeatures() };
    await this.send({ type: FrameType.Hello, flags: 0, id: 0, payload: encodeHello(ours) });
    chooseVersion(ours, theirs, "the client");
    this.#packListings = theirs.features.includes(LISTING_FEATURE);
    this.#state = "opening";
  }

  /** The pushed run accepted, if one was (the session ends then). */
  #handedOff(): { accepted: unknown } | null {
    return this.#handoff;
  }

  /** A pushed run: refused with a line, or accepted (the session then hands its streams over). */
  async #run(id: number, payload: Uint8Array): Promise<void> {
    const decision = this.#options.onRun!(payload);
    if ("refused" in decision) return await this.#fail(id, ErrorKind.Refused, decision.refused);
    await this.send({ type: FrameType.Ok, flags: 0, id, payload: new Uint8Array() });
    this.#handoff = decision;
  }

  async #open(id: number, payload: Uint8Array): Promise<void> {
    const request = decodeOpen(payload);
    if (request.role !== "read") {
      return await this.#fail(id, ErrorKind.Refused, "Writing a remote tree is not served yet");
    }
    const path = treePath(request.path, this.#options.home);
    const problem = confinementProblem(path, this.#options.root);
    if (problem !== null) return await this.#fail(id, ErrorKind.Refused, problem);
    this.#tree = this.#options.readTree(path);
    this.#root = path;
    this.#compress = request.compress;
    if (request.rate !== null) {
      this.#pacer = this.#options.pacer?.(request.rate) ?? new Pacer(request.rate);
    }
    this.#state = "open";
    const opened = encodeOpened(await this.#tree.identity());
    await this.send({ type: FrameType.Ok, flags: 0, id, payload: opened });
  }

  /** Runs a request beside the others; its failure is the peer's Error, never the session's. */
  #start(id: number, work: (running: Running) => Promise<void>, walk = false): void {
    const walks = [...this.#running.values()].filter((running) => running.walk).length;
    if (this.#running.size >= MAX_RUNNING.requests || (walk && walks >= MAX_RUNNING.walks)) {
      throw new FrameError(
        `Too many requests at once (at most ${MAX_RUNNING.requests}, ${MAX_RUNNING.walks} walks)`,
      );
    }
    const running: Running = { cancel: () => {}, walk };
    this.#running.set(id, running);
    const task = work(running).catch((error) =>
      this.#fail(id, failureKind(error), errorText(error))
    )
      .finally(() => {
        this.#running.delete(id);
        this.#tasks.delete(task);
      });
    this.#tasks.add(task);
  }

  async #stat(id: number, payload: Uint8Array): Promise<void> {
    const tree = this.#tree!;
    try {
      const path = decodeStat(payload);
      refuseLinkOnTheWay(this.#root, path);
      const entry = await tree.entryAt(path);
      const identity = path === "" ? await tree.identity() : null;
      const reply = encodeStatReply({ entry, identity });
      await this.send({ type: FrameType.StatReply, flags: 0, id, payload: reply });
    } catch (error) {
      await this.#fail(id, failureKind(error), errorText(error));
    }
  }

  /** Answers `StoreOpen`: the opened tree's own files, locked read-only for the session. */
  async #store(id: number, payload: Uint8Array, running: Running): Promise<void> {
    decodeStoreOpen(payload);
    const openStore = this.#options.openStore;
    if (openStore === undefined) throw new RefusedPath("This server serves no replica's own files");
    if (this.#storeOpened) throw new RefusedPath("The replica's own files are open already");
    this.#storeOpened = true;
    let cancelled = false;
    running.cancel = () => cancelled = true;
    await serveStore(openStore(this.#root), {
      id,
      send: (frame) => this.send(frame),
      hold: (lock) => this.#storeLock = lock,
      cancelled: () => cancelled,
    });
  }

  async #walk(id: number, payload: Uint8Array, running: Running): Promise<void> {
    const walk = decodeWalk(payload);
    for (const start of walk.starts) refuseLinkOnTheWay(this.#root, start);
    const source = this.#tree!.walk(walk);
    const pace = new Credit(WALK_CREDIT);
    running.cancel = () => pace.cancel();
    running.credit = (batches) => pace.add(batches);
    try {
      await this.#stream(id, walk, source, pace);
    } finally {
      source.close();
    }
  }

  /** Sends a walk's folders in batches, each waiting for credit; WalkEnd carries the last. */
  async #stream(id: number, walk: TreeWalk, source: FolderSource, pace: Credit): Promise<void> {
    const batcher = new ListingBatcher(this.#options.batchBytes);
    const listing = (payload: Uint8Array) => async () => {
      if (!await pace.take()) return false;
      await this.#sendListing({ type: FrameType.Listing, flags: FrameFlag.More, id, payload });
      return true;
    };
    if (walk.probe) {
      // The engine waits for the probe's answer before it takes a folder: it goes out alone.
      batcher.note({ probed: await source.probed() });
      if (!await listing(batcher.take())()) return;
    }
    let skippedSeen = 0;
    let first = true;
    for (;;) {
      const folder = await source.next();
      if (pace.cancelled) return;
      if (first) batcher.note({ start: source.start });
      first = false;
      const full = batcher.note({ skipped: source.skipped.slice(skippedSeen) });
      skippedSeen = source.skipped.length;
      if (folder === null) {
        for (const batch of full) if (!await listing(batch)()) return;
        break;
      }
      full.push(...batcher.add(folder));
      if (batcher.folders >= BATCH_FOLDERS) full.push(batcher.take());
      for (const batch of full) if (!await listing(batch)()) return;
    }
    await this.#sendListing({ type: FrameType.WalkEnd, flags: 0, id, payload: batcher.take() });
  }

  /** Sends a listing frame, compressed when the client takes that and it comes out smaller. */
  #sendListing(frame: Frame): Promise<void> {
    const worth = this.#packListings && frame.payload.length >= PACK_LISTINGS_FROM;
    return this.send(worth ? packedIfSmaller(frame) : frame);
  }

  /**
   * Streams one file: Data frames of at most a chunk each, every one awaited on the wire (and
   * paced), then DataEnd. A cancel stops it between chunks; a failure is the request's Error.
   */
  async #read(id: number, payload: Uint8Array, running: Running): Promise<void> {
    const path = decodeRead(payload);
    refuseLinkOnTheWay(this.#root, path);
    const source = this.#tree!.fileSource();
    if (source.kind !== "local") throw new Error("Cannot serve files of a tree on another host");
    let cancelled = false;
    running.cancel = () => cancelled = true;
    using opened = openServedFile(source, path);
    // A buffer of its own (reads are in flight together), no larger than the file: most are
    // small, and zeroing a whole chunk each would cost more than reading them.
    const bufferBytes = Math.min(this.#chunkBytes(), Math.max(1, opened.opened.size));
    const reading = new HashingRead(opened, new Uint8Array(bufferBytes));
    for (let chunk = reading.next(); chunk !== null; chunk = reading.next()) {
      await this.#sendData(id, chunk);
      if (cancelled || this.#broken) return;
    }
    const read = reading.finish();
    const end = encodeDataEnd({ hash: read.hash, entry: read.after, changed: read.changed });
    await this.send({ type: FrameType.DataEnd, flags: 0, id, payload: end });
  }

  /** A read's chunk: a whole `DATA_CHUNK`, or less under a rate so low it would be bursty. */
  #chunkBytes(): number {
    if (this.#pacer === null) return DATA_CHUNK;
    return Math.min(DATA_CHUNK, Math.max(4096, this.#pacer.burst));
  }

  /** Sends a chunk (compressed when agreed and smaller), once the pacer lets its bytes go. */
  async #sendData(id: number, chunk: Uint8Array): Promise<void> {
    const plain = { type: FrameType.Data, flags: FrameFlag.More, id, payload: chunk };
    const frame = this.#compress ? packedIfSmaller(plain) : plain;
    await this.#pacer?.pace(HEADER_BYTES + frame.payload.length);
    await this.send(frame);
  }

  async #hash(id: number, payload: Uint8Array, running: Running): Promise<void> {
    const files = decodeHash(payload);
    const tree = this.#tree!;
    const checked = new Set<string>();
    for (const file of files) refuseLinkOnTheWay(this.#root, file.path, checked);
    let cancelled = false;
    running.cancel = () => cancelled = true;
    const groups = inBatches<HashItem>(files, { limits: HASH_BATCH, bytesOf: (item) => item.size });
    if (groups.length === 0) groups.push([]);
    let left = groups.length;
    await Promise.all(groups.map(async (group) => {
      const outcomes = group.length === 0 ? new Map() : await tree.hash(group);
      if (cancelled) return;
      const bytes = group.reduce((sum, item) => sum + item.size, 0);
      const flags = --left > 0 ? FrameFlag.More : 0;
      const batch = encodeHashBatch({ outcomes: [...outcomes], bytes });
      await this.send({ type: FrameType.HashResult, flags, id, payload: batch });
    }));
  }
}

/** `frame` with its payload compressed and flagged so, when that makes it smaller. */
function packedIfSmaller(frame: Frame): Frame {
  const packed = compressChunk(frame.payload);
  if (packed.length >= frame.payload.length) return frame;
  return { ...frame, flags: frame.flags | FrameFlag.Compressed, payload: packed };
}

/** A walk's credit: how many more Listing batches it may send before the client takes some. */
class Credit {
  #left: number;
  #wake: (() => void) | null = null;
  cancelled = false;

  constructor(batches: number) {
    this.#left = batches;
  }

  add(batches: number): void {
    this.#left += batches;
    this.#wakeUp();
  }

  cancel(): void {
    this.cancelled = true;
    this.#wakeUp();
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  /** Waits for one batch's credit; false when the walk was cancelled. */
  async take(): Promise<boolean> {
    while (this.#left === 0 && !this.cancelled) {
      await new Promise<void>((wake) => this.#wake = wake);
    }
    if (this.cancelled) return false;
    this.#left--;
    return true;
  }
}

/**
 * Opens a file to serve, as the tree's own copies open one (a regular file, never through a
 * link).
 *
 * @throws {RefusedPath} It is not a regular file (a link, a fifo, a folder), or was replaced.
 * @throws {Error} The system's error: nothing there, permission denied.
 */
function openServedFile(source: LocalFileSource, path: string): OpenedFile {
  try {
    return openSourceFile(source, path);
  } catch (error) {
    // The open's own refusals carry no system error code.
    if (error instanceof Error && !("code" in error)) {
      throw new RefusedPath(`Cannot read ${quoted(path)}: ${error.message}`);
    }
    throw error;
  }
}

/** A request's failure: refused when it named a path it may not, failed otherwise. */
function failureKind(error: unknown): number {
  if (error instanceof FrameError || error instanceof RefusedPath) return ErrorKind.Refused;
  if (error instanceof Deno.errors.NotFound) return ErrorKind.Missing;
  return ErrorKind.Failed;
}

function errorPayload(error: unknown): Uint8Array {
  const message = error instanceof FrameError ? error.message : errorText(error);
  return encodeError({ kind: ErrorKind.Protocol, message });
}

/** A path the tree may not be read through. */
class RefusedPath extends Error {
  override name = "RefusedPath";
}

/**
 * Refuses a path that goes through a link below the root: the served tree is read below its
 * root only, as the walk reads it (the last name may be a link; its target is not followed).
 * `checked` remembers folders already seen to be real ones, for a batch of paths.
 */
function refuseLinkOnTheWay(root: string, path: string, checked = new Set<string>()): void {
  const names = path === "" ? [] : path.split("/");
  let folder = "";
  for (const name of names.slice(0, -1)) {
    folder = folder === "" ? name : `${folder}/${name}`;
    if (checked.has(folder)) continue;
    let isLink = false;
    try {
      isLink = Deno.lstatSync(`${root}/${folder}`).isSymlink;
    } catch {
      return;
    }
    if (isLink) throw new RefusedPath(`Refused ${quoted(path)}: ${quoted(folder)} is a link`);
    checked.add(folder);
  }
}

/**
 * A client's tree path, a relative one taken from `home` (`.` is home itself); one with a `..`
 * name, or a relative one without a home, is left as it is for the check to refuse.
 */
function treePath(path: string, home: string | undefined): string {
  if (path.startsWith("/") || home === undefined || path.split("/").includes("..")) return path;
  const names = path.split("/").filter((name) => name !== "" && name !== ".");
  return names.length === 0 ? home : `${home === "/" ? "" : home}/${names.join("/")}`;
}

/**
 * What keeps a client from opening `path`, or null: it must be absolute, without `..` or NUL,
 * and with `root`, resolve (links followed) to `root` or a folder below it.
 */
export function confinementProblem(path: string, root: string | undefined): string | null {
  if (path.includes("\0")) return "Refused a tree path with a NUL byte";
  if (!path.startsWith("/")) return `Refused ${quoted(path)}: a tree's path must be absolute`;
  if (path.split("/").includes("..")) return `Refused ${quoted(path)}: it has a '..' name`;
  if (root === undefined) return null;
  let resolvedRoot: string;
  try {
    resolvedRoot = Deno.realPathSync(root);
  } catch (error) {
    return `Cannot read the served root ${quoted(root)}: ${errorText(error)}`;
  }
  const resolved = resolveExisting(path);
  if (resolved === null) return `Refused ${quoted(path)}: its folder cannot be resolved`;
  if (resolved === resolvedRoot || resolved.startsWith(`${resolvedRoot}/`)) return null;
  if (resolvedRoot === "/") return null;
  return `Refused ${quoted(path)}: it is outside the served root ${quoted(root)}`;
}

/** A path with links resolved; a missing last name is kept as it is. */
function resolveExisting(path: string): string | null {
  try {
    return Deno.realPathSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) return null;
  }
  const cut = path.lastIndexOf("/");
  try {
    const parent = Deno.realPathSync(cut <= 0 ? "/" : path.slice(0, cut));
    return `${parent === "/" ? "" : parent}/${path.slice(cut + 1)}`;
  } catch {
    return null;
  }
}
