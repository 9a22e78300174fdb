/**
 * The near end of a remote tree, read side: a {@linkcode RemoteTreeReader} over a session with
 * `treesync --serve` (`connection.ts`: any byte stream pair, an ssh child's stdout and stdin or
 * memory in tests). Requests are pipelined: a walk, stats and hashes are in flight at once.
 *
 * `identity()` and `entryAt()` are one `Stat` round trip each. `fileSource()` hands the writer
 * a streamed source: each file is one `Read` request, its `Data` chunks handed to the writer
 * synchronously inside the reading loop (so the pipe itself pushes back on a slow disk), and
 * its `DataEnd` the far end's hash and entry; a few reads are in flight at once.
 *
 * @module
 */

import { errorText } from "../errors.ts";
import { type Identity } from "../files.ts";
import { type Entry, type FolderListing, type Problem } from "../scan.ts";
import {
  type FileSource,
  type FolderSource,
  type HashOutcome,
  type StreamedFileEnd,
  type StreamedFiles,
  type TreeReader,
  type TreeWalk,
} from "../sides/reader.ts";
import { onThisKernel } from "./kernel.ts";
import {
  DATA_CHUNK,
  type Frame,
  FrameError,
  FrameFlag,
  FrameType,
  frameTypeName,
  MAX_PAYLOAD,
} from "./frames.ts";
import { Slots } from "../slots.ts";
import { Connection, type ConnectionStreams, remoteError } from "./connection.ts";
import { decompressChunk } from "./pace.ts";
import {
  decodeDataEnd,
  decodeHashBatch,
  decodeListingBatch,
  decodeOpened,
  decodeStatReply,
  encodeCancel,
  encodeCredit,
  encodeHash,
  encodeOpen,
  encodeRead,
  encodeStat,
  encodeWalk,
  type HashItem,
  hashItemBytes,
  type ListingBatch,
  WALK_CREDIT,
} from "./wire.ts";

export { Connection, type ConnectionStreams, type Handler, RemoteError } from "./connection.ts";

/** How a remote tree is reached. */
export interface RemoteTreeOptions extends ConnectionStreams {
  /** The tree's absolute path on the far end. */
  path: string;
  /** The tree as the user named it (`backup:/srv/data`), for messages. */
  display?: string;
  /** The far end's name for messages (default: the display). */
  peer?: string;
  /** The session frames of a pushed run's near end (see {@linkcode Connection}). */
  onSession?: (frame: Frame) => void;
  /** `-z`: ask for the file data compressed, when the far end can (default: not). */
  compress?: boolean;
  /** `--bwlimit`: bytes a second the far end's file data may take (null, default: any). */
  rate?: number | null;
}

/**
 * Connects to a served tree: greets, opens `path` for reading, and reads the root's identity.
 *
 * @throws {RemoteError} The far end refused the tree (outside its `--root`, say) or the session.
 * @throws {UsageError} The two ends share no protocol version.
 */
export async function connectRemoteTree(options: RemoteTreeOptions): Promise<RemoteTreeReader> {
  const display = options.display ?? options.path;
  const connection = new Connection(options, options.peer ?? display, options.onSession);
  try {
    await connection.greet();
    return await openRemoteTree(connection, {
      path: options.path,
      display,
      compress: options.compress ?? false,
      rate: options.rate ?? null,
    });
  } catch (error) {
    await connection.close();
    throw error;
  }
}

/**
 * Opens `path` for reading over a greeted connection and reads the root's identity.
 *
 * @throws {RemoteError} The far end refused the tree (outside its `--root`, say).
 */
export async function openRemoteTree(
  connection: Connection,
  tree: { path: string; display: string; compress?: boolean; rate?: number | null },
): Promise<RemoteTreeReader> {
  // An earlier far end without zstd sends its data as it is.
  const compress = (tree.compress ?? false) && connection.peerFeatures.includes("zstd");
  const opened = await connection.ask(
    FrameType.Open,
    encodeOpen({ path: tree.path, role: "read", compress, rate: tree.rate ?? null }),
    FrameType.Ok,
  );
  return new RemoteTreeReader(connection, {
    display: tree.display,
    identity: decodeOpened(opened),
    compressed: compress,
  });
}

/** A `Hash` request's files are cut so that each request stays well under the cap. */
const HASH_REQUEST_BYTES = MAX_PAYLOAD / 2;

/** A tree on another host, read through {@linkcode TreeReader} over a connection. */
export class RemoteTreeReader implements TreeReader {
  /** Where the tree is, as the user named it: for messages only. */
  readonly display: string;
  readonly #connection: Connection;
  readonly #files: RemoteFiles;
  readonly #hashSlots = new Slots(MAX_HASHES);
  #identity: Identity | null;

  /**
   * A reader over an opened connection (see {@linkcode connectRemoteTree}); `compressed`: the
   * session agreed to compressed Data frames.
   */
  constructor(
    connection: Connection,
    opened: { display: string; identity: Identity | null; compressed?: boolean },
  ) {
    this.#connection = connection;
    this.display = opened.display;
    this.#identity = opened.identity;
    this.#files = new RemoteFiles(connection, opened.compressed ?? false);
  }

  /** Bytes sent and received on the wire so far (see {@linkcode Connection.wireBytes}). */
  wireBytes(): { sent: number; received: number } {
    return this.#connection.wireBytes();
  }

  /** The connection it reads through (a pushed run reports through it too). */
  get connection(): Connection {
    return this.#connection;
  }

  /**
   * Whether the far end runs on this kernel (`localhost`, a container): its identities then
   * name this host's folders too, and the checks for nested trees apply.
   */
  get onThisKernel(): boolean {
    return onThisKernel(this.#connection.peerFeatures);
  }

  /** The root's identity when it was opened (null: nothing there). */
  openedIdentity(): Identity | null {
    return this.#identity;
  }

  /** The root's identity on the far end now (null: nothing there). */
  async identity(): Promise<Identity | null> {
    const reply = decodeStatReply(
      await this.#connection.ask(FrameType.Stat, encodeStat(""), FrameType.StatReply),
    );
    this.#identity = reply.identity;
    return reply.identity;
  }

  /** The streamed source a writer's copies read this tree's files through, over the connection. */
  fileSource(): FileSource {
    return { kind: "stream", files: this.#files };
  }

  /** Streams the far end's walk (null: an empty stream, for a tree that does not exist). */
  walk(request: TreeWalk | null): FolderSource {
    return new RemoteFolderSource(this.#connection, request);
  }

  /** The entry at `path` on the far end now (see {@linkcode TreeReader.entryAt}). */
  async entryAt(path: string): Promise<Entry | null> {
    const reply = decodeStatReply(
      await this.#connection.ask(FrameType.Stat, encodeStat(path), FrameType.StatReply),
    );
    if (path === "") this.#identity = reply.identity;
    return reply.entry;
  }

  /** Hashes files on the far end, in its worker pool; requests cut under the frame cap. */
  async hash(
    files: Array<{ path: string; size: number }>,
    onBatch?: (files: number, bytes: number) => void,
  ): Promise<Map<string, HashOutcome>> {
    const outcomes = new Map<string, HashOutcome>();
    const requests: HashItem[][] = [[]];
    let bytes = 0;
    for (const file of files) {
      const size = hashItemBytes(file);
      if (bytes + size > HASH_REQUEST_BYTES && requests.at(-1)!.length > 0) {
        requests.push([]);
        bytes = 0;
      }
      requests.at(-1)!.push(file);
      bytes += size;
    }
    // A folder of many files is many requests: at most MAX_HASHES of them run at once.
    await Promise.all(
      requests.map((group) => this.#hashSlots.run(() => this.#hashOnce(group, outcomes, onBatch))),
    );
    return outcomes;
  }

  #hashOnce(
    files: HashItem[],
    outcomes: Map<string, HashOutcome>,
    onBatch?: (files: number, bytes: number) => void,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      const id = this.#connection.request(FrameType.Hash, encodeHash(files), {
        fail: reject,
        frame: (frame) => {
          if (frame.type === FrameType.Error) {
            this.#connection.forget(id);
            return reject(remoteError(frame.payload));
          }
          try {
            if (frame.type !== FrameType.HashResult) throw new FrameError("Hash answered wrongly");
            const batch = decodeHashBatch(frame.payload);
            for (const [path, outcome] of batch.outcomes) outcomes.set(path, outcome);
            onBatch?.(batch.outcomes.length, batch.bytes);
          } catch (error) {
            this.#connection.forget(id);
            return reject(error);
          }
          if ((frame.flags & FrameFlag.More) === 0) {
            this.#connection.forget(id);
            resolve();
          }
        },
      });
    });
  }

  /** Ends the session. */
  close(): Promise<void> {
    return this.#connection.close();
  }
}

/**
 * Reads a client keeps in flight at once: enough to fill the pipe with small files (fewer
 * cost more CPU on both ends: fewer frames leave in each write). With the walks (8 at most)
 * and the hash requests ({@linkcode MAX_HASHES}), well under the far end's limit of requests
 * running (`MAX_RUNNING`, 128), which stats and the store's requests (one at a time) share.
 */
export const MAX_READS = 64;

/** `Hash` requests a client keeps running at once, whatever the number of files to hash. */
export const MAX_HASHES = 8;

/** A remote tree's files, each streamed by one `Read` request ({@linkcode StreamedFiles}). */
class RemoteFiles implements StreamedFiles {
  readonly #connection: Connection;
  readonly #compressed: boolean;
  readonly #slots = new Slots(MAX_READS);

  constructor(connection: Connection, compressed: boolean) {
    this.#connection = connection;
    this.#compressed = compressed;
  }

  /** Streams one file, once fewer than {@linkcode MAX_READS} are in flight. */
  read(
    path: string,
    onChunk: (chunk: Uint8Array) => boolean,
  ): Promise<StreamedFileEnd | null> {
    return this.#slots.run(() => this.#readOnce(path, onChunk));
  }

  #readOnce(
    path: string,
    onChunk: (chunk: Uint8Array) => boolean,
  ): Promise<StreamedFileEnd | null> {
    const connection = this.#connection;
    return new Promise((resolve, reject) => {
      const cancel = () => {
        connection.forget(id);
        const payload = encodeCancel(id);
        connection.send({ type: FrameType.Cancel, flags: 0, id, payload }).catch(() => {});
      };
      const id = connection.request(FrameType.Read, encodeRead(path), {
        fail: reject,
        frame: (frame) => {
          try {
            if (frame.type === FrameType.Data) {
              if (!onChunk(this.#unpack(frame))) {
                cancel();
                resolve(null);
              }
              return;
            }
            connection.forget(id);
            if (frame.type === FrameType.DataEnd) resolve(decodeDataEnd(frame.payload));
            else if (frame.type === FrameType.Error) reject(remoteError(frame.payload));
            else reject(new FrameError(`${frameTypeName(frame.type)} answered a read`));
          } catch (error) {
            // The writer failed (or the chunk did not decode): the far end stops reading.
            cancel();
            reject(error);
          }
        },
      });
    });
  }

  /** A Data frame's bytes, unpacked if compressed (only when the session agreed to it). */
  #unpack(frame: Frame): Uint8Array {
    if ((frame.flags & FrameFlag.Compressed) === 0) return frame.payload;
    if (!this.#compressed) throw new FrameError("A compressed Data frame was not agreed");
    return unpacked(frame, { maxBytes: DATA_CHUNK, what: "Data frame" });
  }
}

/**
 * A listing frame's payload, unpacked if compressed (we offer that in every `Hello`), never
 * past the largest payload a frame may have.
 */
function unpackListing(frame: Frame): Uint8Array {
  if ((frame.flags & FrameFlag.Compressed) === 0) return frame.payload;
  return unpacked(frame, { maxBytes: MAX_PAYLOAD, what: "listing" });
}

/**
 * A compressed frame's payload unpacked, never past `maxBytes`.
 *
 * @throws {FrameError} It does not unpack, or would be larger.
 */
function unpacked(frame: Frame, limit: { maxBytes: number; what: string }): Uint8Array {
  try {
    return decompressChunk(frame.payload, limit.maxBytes);
  } catch (error) {
    throw new FrameError(`A compressed ${limit.what} does not unpack: ${errorText(error)}`);
  }
}

/** A folder and whether the batch it ended was taken: then the walk gets one more credit. */
interface Queued {
  listing: FolderListing;
  credit: boolean;
}

/** A walk on the far end, read a folder at a time from its Listing frames. */
class RemoteFolderSource implements FolderSource {
  start: Entry | null = null;
  readonly skipped: Problem[] = [];
  readonly #connection: Connection;
  readonly #id: number;
  readonly #queue: Queued[] = [];
  #partial: FolderListing | null = null;
  #done = false;
  #error: Error | null = null;
  #wake: (() => void) | null = null;
  /** Listing frames the far end may still send before it waits for a `Credit`. */
  #credit = WALK_CREDIT;
  readonly #probed = Promise.withResolvers<string | null>();

  constructor(connection: Connection, request: TreeWalk | null) {
    this.#connection = connection;
    if (request === null) {
      this.#done = true;
      this.#id = 0;
      this.#probed.resolve(null);
      return;
    }
    if (!request.probe) this.#probed.resolve(null);
    this.#id = connection.request(FrameType.Walk, encodeWalk(request), {
      frame: (frame) => this.#receive(frame),
      fail: (error) => this.#stop(error),
    });
  }

  #receive(frame: Frame): void {
    try {
      if (frame.type === FrameType.Error) throw remoteError(frame.payload);
      if (frame.type !== FrameType.Listing && frame.type !== FrameType.WalkEnd) {
        throw new FrameError(`${frameTypeName(frame.type)} answered a walk`);
      }
      const last = frame.type === FrameType.WalkEnd;
      // Each Listing spends a credit (WalkEnd none): a far end that does not wait for them
      // would make this end hold what it sends.
      if (!last && this.#credit-- <= 0) throw new FrameError("A walk sent more than its credit");
      this.#take(decodeListingBatch(unpackListing(frame)), !last);
      if (last) {
        this.#connection.forget(this.#id);
        this.#done = true;
      }
    } catch (error) {
      this.#connection.forget(this.#id);
      return this.#stop(error instanceof Error ? error : new Error(String(error)));
    }
    this.#wakeUp();
  }

  /** Queues a batch's folders, joining a folder cut across batches. */
  #take(batch: ListingBatch, credit: boolean): void {
    if (batch.start !== undefined) this.start = batch.start;
    if (batch.probed !== undefined) this.#probed.resolve(batch.probed);
    this.skipped.push(...batch.skipped);
    const complete: FolderListing[] = [];
    for (const { listing, continues } of batch.parts) {
      const whole = this.#partial === null ? listing : this.#join(this.#partial, listing);
      this.#partial = continues ? whole : null;
      if (!continues) complete.push(whole);
    }
    this.#probed.resolve(null);
    if (complete.length === 0) {
      if (credit) this.#grant();
      return;
    }
    complete.forEach((listing, i) => {
      this.#queue.push({ listing, credit: credit && i === complete.length - 1 });
    });
  }

  #join(first: FolderListing, more: FolderListing): FolderListing {
    if (more.folder !== first.folder) throw new FrameError("A cut folder did not go on");
    for (const [name, entry] of more.entries) first.entries.set(name, entry);
    first.problems.push(...more.problems);
    first.protectedPaths.push(...more.protectedPaths);
    if (more.nested !== undefined) first.nested = more.nested;
    if (more.unlistable) first.unlistable = true;
    return first;
  }

  #grant(): void {
    if (this.#done || this.#error !== null) return;
    this.#credit++;
    this.#connection.send({
      type: FrameType.Credit,
      flags: 0,
      id: this.#id,
      payload: encodeCredit(1),
    }).catch(() => {});
  }

  #stop(error: Error): void {
    this.#error ??= error;
    this.#probed.resolve(null);
    this.#wakeUp();
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  async next(): Promise<FolderListing | null> {
    for (;;) {
      const queued = this.#queue.shift();
      if (queued !== undefined) {
        if (queued.credit) this.#grant();
        return queued.listing;
      }
      if (this.#error !== null) throw this.#error;
      if (this.#done) return null;
      await new Promise<void>((wake) => this.#wake = wake);
    }
  }

  async peek(): Promise<FolderListing | null> {
    const listing = await this.next();
    // Put back without granting twice: its credit, if any, went out when it was taken.
    if (listing !== null) this.#queue.unshift({ listing, credit: false });
    return listing;
  }

  probed(): Promise<string | null> {
    return this.#probed.promise;
  }

  close(): void {
    this.#queue.length = 0;
    if (this.#done || this.#error !== null) return;
    this.#done = true;
    this.#connection.forget(this.#id);
    this.#connection.send({
      type: FrameType.Cancel,
      flags: 0,
      id: this.#id,
      payload: encodeCancel(this.#id),
    }).catch(() => {});
    this.#wakeUp();
  }
}
