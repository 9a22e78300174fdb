/**
 * One session with `treesync --serve`, as the end that asks ({@linkcode Connection}): the
 * greeting, numbered requests and the one reading loop that hands each frame to the request
 * with its id, the session frames of a pushed run, and the failure of it all. What is asked
 * for (a walk, stats, hashes, files) is `client.ts`.
 *
 * @module
 */

import { VERSION } from "../version.ts";
import { ourFeatures } from "./kernel.ts";
import {
  chooseVersion,
  decodeError,
  decodeHello,
  encodeFrame,
  encodeHello,
  type Frame,
  FrameDecoder,
  FrameError,
  FrameFlag,
  FrameType,
  frameTypeName,
  FROM_SERVER,
  type Hello,
  PROTOCOL_VERSIONS,
  type WireBytes,
} from "./frames.ts";
import { FrameOutbox } from "./outbox.ts";

/** The frames a server may send compressed: file data (`-z`) and a walk's listings. */
const PACKED_TYPES: ReadonlySet<number> = new Set([
  FrameType.Data,
  FrameType.Listing,
  FrameType.WalkEnd,
]);

/** A connection's streams: what the server says, and where requests go. */
export interface ConnectionStreams {
  /** The server's output (an ssh child's stdout). */
  input: ReadableStream<Uint8Array>;
  /** The server's input (an ssh child's stdin). */
  output: WritableStream<Uint8Array>;
}

/** The far end failed a request or the session: its one line. */
export class RemoteError extends Error {
  /** The error's name, for messages and logs. */
  override name = "RemoteError";
  /** The `ErrorKind` the far end gave (0: the connection itself failed). */
  readonly kind: number;

  /** An error of `kind` with the far end's message. */
  constructor(kind: number, message: string) {
    super(message);
    this.kind = kind;
  }
}

/** What a request's frames are handed to. */
export type Handler = (frame: Frame) => void;

/** One session's framing: numbered requests, and the loop that hands frames to them. */
export class Connection {
  readonly #outbox: FrameOutbox;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #decoder = new FrameDecoder({ accept: FROM_SERVER });
  readonly #handlers = new Map<number, { frame: Handler; fail: (error: Error) => void }>();
  readonly #peer: string;
  readonly #onSession: ((frame: Frame) => void) | null;
  #nextId = 1;
  #failure: Error | null = null;
  #greeting = Promise.withResolvers<Hello>();
  #peerFeatures: readonly string[] = [];
  readonly #wire: WireBytes = { sent: 0, received: 0 };
  #ended = Promise.withResolvers<void>();
  readonly #loop: Promise<void>;

  /**
   * Starts reading `streams`; `peer` names the far end in messages; `onSession` takes the
   * session frames a near end sends a pushed run (`Stop`).
   */
  constructor(streams: ConnectionStreams, peer: string, onSession?: (frame: Frame) => void) {
    this.#outbox = new FrameOutbox(streams.output.getWriter());
    this.#reader = streams.input.getReader();
    this.#peer = peer;
    this.#onSession = onSession ?? null;
    this.#greeting.promise.catch(() => {});
    this.#ended.promise.catch(() => {});
    this.#loop = this.#readAll();
  }

  /** Why the session failed (a peer that broke the protocol, a stream that ended), or null. */
  get failure(): Error | null {
    return this.#failure;
  }

  /** The far end's name, for messages. */
  get peer(): string {
    return this.#peer;
  }

  /** Greets the far end and agrees on a version. */
  async greet(): Promise<number> {
    const ours: Hello = { ...PROTOCOL_VERSIONS, program: VERSION, features: ourFeatures() };
    await this.send({ type: FrameType.Hello, flags: 0, id: 0, payload: encodeHello(ours) });
    const theirs = await this.#greeting.promise;
    this.#peerFeatures = theirs.features;
    return chooseVersion(ours, theirs, this.#peer);
  }

  /** What the far end said it can do beyond the version's minimum (`zstd`), once greeted. */
  get peerFeatures(): readonly string[] {
    return this.#peerFeatures;
  }

  /** Bytes sent and received on the wire so far, frame headers included. */
  wireBytes(): { sent: number; received: number } {
    return { ...this.#wire };
  }

  /** Writes a frame; resolves once the stream took it. */
  async send(frame: Frame): Promise<void> {
    if (this.#failure !== null) throw this.#failure;
    const bytes = encodeFrame(frame);
    await this.#outbox.write(bytes);
    this.#wire.sent += bytes.length;
  }

  /**
   * Sends a request under a new id; every frame answering it goes to `frame` until `forget`,
   * and a failure of the connection to `fail`.
   */
  request(
    type: number,
    payload: Uint8Array,
    handler: { frame: Handler; fail: (error: Error) => void },
  ): number {
    const id = this.#nextId++;
    if (this.#failure !== null) {
      handler.fail(this.#failure);
      return id;
    }
    this.#handlers.set(id, handler);
    this.send({ type, flags: 0, id, payload }).catch((error) => this.#fail(error));
    return id;
  }

  /** Stops handing frames of request `id` to its handler. */
  forget(id: number): void {
    this.#handlers.delete(id);
  }

  /** A single-answer request: the payload of its one answer of type `answer`. */
  ask(type: number, payload: Uint8Array, answer: number): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      const id = this.request(type, payload, {
        fail: reject,
        frame: (frame) => {
          this.forget(id);
          if (frame.type === answer) resolve(frame.payload);
          else if (frame.type === FrameType.Error) reject(remoteError(frame.payload));
          else reject(new FrameError(`${frameTypeName(frame.type)} answered a request`));
        },
      });
    });
  }

  /** Ends the session: End, then the far end's End; the streams are released. */
  async close(): Promise<void> {
    if (this.#failure === null) {
      await this.send({ type: FrameType.End, flags: 0, id: 0, payload: new Uint8Array() })
        .catch(() => {});
      await this.#ended.promise.catch(() => {});
    }
    await this.#outbox.close();
    await this.#reader.cancel().catch(() => {});
    await this.#loop;
  }

  async #readAll(): Promise<void> {
    try {
      for (;;) {
        const { value, done } = await this.#reader.read();
        if (done) {
          this.#decoder.end();
          throw new RemoteError(0, `The connection to ${this.#peer} closed`);
        }
        this.#wire.received += value.length;
        for (const frame of this.#decoder.push(value)) {
          if ((frame.flags & FrameFlag.Compressed) !== 0 && !PACKED_TYPES.has(frame.type)) {
            throw new FrameError(`A compressed ${frameTypeName(frame.type)} frame`);
          }
          if (frame.id === 0) this.#session(frame);
          else this.#handlers.get(frame.id)?.frame(frame);
        }
      }
    } catch (error) {
      this.#fail(error instanceof Error ? error : new Error(String(error)));
    }
  }

  #session(frame: Frame): void {
    if (frame.type === FrameType.Hello) this.#greeting.resolve(decodeHello(frame.payload));
    else if (frame.type === FrameType.End) {
      this.#ended.resolve();
      this.#fail(new RemoteError(0, `${this.#peer} ended the session`));
    } else if (frame.type === FrameType.Error) this.#fail(remoteError(frame.payload));
    else if (frame.type === FrameType.Stop && this.#onSession) this.#onSession(frame);
    else throw new FrameError(`${frameTypeName(frame.type)} without a request id`);
  }

  #fail(error: Error): void {
    if (this.#failure !== null) return;
    this.#failure = error;
    this.#greeting.reject(error);
    this.#ended.reject(error);
    for (const handler of this.#handlers.values()) handler.fail(error);
    this.#handlers.clear();
  }
}

/** The error a far end's `Error` frame reports. */
export function remoteError(payload: Uint8Array): RemoteError {
  const report = decodeError(payload);
  return new RemoteError(report.kind, report.message);
}
