/**
 * The near end of a push (`treesync /srv/data backup:/backup/data`, and `--verify backup:…`):
 * the engine runs on the far end, where the replica is, so this process asks it to run
 * (`Run`), then serves its own source to it with the roles swapped (`frames.ts`), and prints,
 * logs and counts what the far run reports as if the run were here. {@linkcode runFar} has
 * `runOnce`'s shape, so the one-shot run, the loop and `--watch` drive a push as they drive a
 * local run; each call is one session.
 *
 * @module
 */

import { type Options, type RemoteTree } from "../cli.ts";
import { type RunControl } from "../control.ts";
import { ExitCode, RefusedError, UsageError } from "../errors.ts";
import { escapeControls } from "../format.ts";
import { type Reporter, writeStderr, writeStdout } from "../log.ts";
import { type RunDependencies } from "../run.ts";
import { LocalReplicaStore } from "../sides/local/store.ts";
import { LocalTreeReader } from "../sides/local/tree.ts";
import { WorkerPool } from "../sides/local/workers.ts";
import { emptySummary, type RunSummary } from "../summary.ts";
import { VERSION } from "../version.ts";
import { ourFeatures } from "./kernel.ts";
import { type ConnectionStreams, RemoteError } from "./client.ts";
import {
  chooseVersion,
  decodeError,
  decodeHello,
  encodeFrame,
  encodeHello,
  type Frame,
  FrameDecoder,
  FrameType,
  FROM_SERVER,
  type Hello,
  PROTOCOL_VERSIONS,
} from "./frames.ts";
import {
  decodeConfirm,
  decodeDone,
  decodeProgress,
  decodeReport,
  encodeJson,
  encodeStop,
  type ReportCall,
  type RunDone,
  type RunRequest,
} from "./runwire.ts";
import { serve, type SwappedPeer } from "./server.ts";

/** A far end started (`ssh host treesync --serve`), as a push uses it. */
export interface FarEndLink extends ConnectionStreams {
  /** The far end as the user named it (`backup@host`), for messages. */
  host: string;
  /** The far end took the run: what it writes to stderr is passed on from now on. */
  greeted?(): void;
  /** The one line for a far end that did not take the run (it did not start, say). */
  explain?(error: unknown): Promise<Error>;
  /** Ends the link: waits for the far end to exit. */
  close(): Promise<void>;
}

/** A push's options: the tree written (the replica, or the source when restoring) is far. */
export type PushOptions = Options & { remote: RemoteTree };

/** How a push reaches its far end. */
export interface PushDependencies extends RunDependencies {
  /** Starts the far end (a new session for each run). */
  connect: () => Promise<FarEndLink>;
}

/**
 * One pushed run: the far end runs it over its replica, reading this host's source.
 *
 * @returns The far run's summary, with the bytes this session put on the wire and took off it.
 * @throws {UsageError} The far end refused the run (outside its `--root`, a bad path there) or
 * could not be started.
 * @throws {RefusedError} A safety check of the far run refused it.
 */
export async function runPushed(
  options: PushOptions,
  deps: PushDependencies,
  scope?: string[],
): Promise<RunSummary> {
  // Change lines go nowhere here without -v or a log: the far end need not send them.
  const changes = options.verbosity >= 2 || options.logPath !== null;
  const request: RunRequest = { mode: "run", options: farOptions(options), changes };
  if (scope !== undefined) request.scope = scope;
  const session = await pushSession(request, deps);
  const done = session.done;
  const wire = { bytesSent: session.sent, bytesReceived: session.received };
  if (done === null || "failure" in done) {
    return failedRun(options, done, { deps, wire, host: session.host });
  }
  if (!("summary" in done)) throw new Error("The far end answered a run with a verify's outcome");
  return { ...done.summary, ...wire };
}

/**
 * `--verify` of a replica on the far end: it hashes there; only the findings travel.
 *
 * @returns The exit code of the far verify.
 */
export async function verifyPushed(
  options: PushOptions,
  deps: { report: Reporter; control: RunControl; connect: () => Promise<FarEndLink> },
): Promise<number> {
  // Advice such as "run 'treesync SOURCE REPLICA'" must name the far replica with its host.
  const request: RunRequest = {
    mode: "verify",
    options: farOptions(options),
    shown: options.replica,
  };
  const session = await pushSession(request, {
    ...deps,
    isRoot: false,
    confirmDeletes: () => false,
  });
  const done = session.done;
  if (done !== null && "exitCode" in done) return done.exitCode;
  failedRun(options, done, { deps, wire: { bytesSent: 0, bytesReceived: 0 }, host: session.host });
  return ExitCode.Failed;
}

/** The options as the far end runs them: its own tree's path there, this host's here. */
function farOptions(options: PushOptions): Options {
  const { remote: _remote, ...rest } = options;
  const path = options.remote.path;
  return options.restore ? { ...rest, source: path } : { ...rest, replica: path };
}

/**
 * A far run that did not end with a summary: the session was lost (exit 1, the next run
 * finishes the job), or the far end says what stopped it (with that error's exit code).
 */
function failedRun(
  options: PushOptions,
  done: RunDone | null,
  input: {
    deps: { report: Reporter };
    wire: { bytesSent: number; bytesReceived: number };
    host: string;
  },
): RunSummary {
  const { host } = input;
  if (done !== null && "failure" in done) {
    if (done.failure === "usage") throw new UsageError(`${host}: ${done.message}`);
    if (done.failure === "refused") throw new RefusedError(`${host}: ${done.message}`);
    input.deps.report.error(`${host}: ${done.message}`);
  } else {
    input.deps.report.error(
      `The connection to ${host} was lost before the run ended: what was not done is left ` +
        "as it was (no partial file), and the next run does it",
    );
  }
  return { ...emptySummary(options.dryRun), failed: 1, ...input.wire };
}

/** A session's outcome. */
interface PushOutcome {
  /** The far run's `Done`; null when the session ended without one. */
  done: RunDone | null;
  /** Bytes sent and received over the session. */
  sent: number;
  received: number;
  /** The far end, for messages. */
  host: string;
}

/** Starts the far end, sends the run, serves this host's source, and takes the outcome. */
async function pushSession(request: RunRequest, deps: PushDependencies): Promise<PushOutcome> {
  const link = await deps.connect();
  const counted = countedStreams(link);
  const pool = new WorkerPool(request.options.jobs);
  const peer = new NearPeer(deps);
  const { options } = request;
  // The far end reads this run's tree of this host and nothing else of it.
  const served = options.restore ? options.replica : options.source;
  try {
    const rest = await askToRun(request, { link, streams: counted }).catch(async (error) => {
      throw link.explain ? await link.explain(error) : error;
    });
    link.greeted?.();
    const outcome = await serve({
      input: prefixed(rest, counted.reader),
      output: counted.output,
      readTree: (path) => new LocalTreeReader(path, { pool }),
      root: served,
      // A restore into the far source reads this host's replica and its own files.
      ...(options.restore ? { openStore: (path: string) => new LocalReplicaStore(path) } : {}),
      swapped: peer,
    });
    if (peer.done === null && outcome.error !== undefined) {
      deps.report.debug(`session with ${link.host} ended: ${outcome.error}`);
    }
    const host = link.host;
    return { done: peer.done, sent: counted.sent(), received: counted.received(), host };
  } finally {
    peer.stop();
    pool.close();
    // The far end's input ends here (its output, with the link); what is closed stays closed.
    await counted.output.close().catch(() => {});
    await counted.reader.cancel().catch(() => {});
    await link.close();
  }
}

/**
 * Greets the far end and sends `Run`.
 *
 * @returns The bytes read past the far end's `Ok`: the start of the swapped session.
 * @throws {UsageError} No common version, the far end refused the run, or it went away.
 */
async function askToRun(
  request: RunRequest,
  input: { link: FarEndLink; streams: CountedStreams },
): Promise<Uint8Array> {
  const { link, streams } = input;
  const ours: Hello = { ...PROTOCOL_VERSIONS, program: VERSION, features: ourFeatures() };
  const writer = streams.output.getWriter();
  try {
    await writer.write(
      encodeFrame({ type: FrameType.Hello, flags: 0, id: 0, payload: encodeHello(ours) }),
    );
    await writer.write(
      encodeFrame({ type: FrameType.Run, flags: 0, id: 1, payload: encodeJson(request) }),
    );
  } finally {
    writer.releaseLock();
  }
  const decoder = new FrameDecoder({ accept: FROM_SERVER });
  let greeted = false;
  for (;;) {
    const { value, done } = await streams.reader.read();
    // Not a UsageError: the far end's own exit says why (a failed login, treesync missing).
    if (done) throw new RemoteError(0, `${link.host} closed the connection before it took the run`);
    const { frames, rest } = decoder.pushUntil(value, (frame) => frame.type !== FrameType.Hello);
    for (const frame of frames) {
      if (frame.type === FrameType.Hello) {
        chooseVersion(ours, decodeHello(frame.payload), link.host);
        greeted = true;
      } else if (!greeted) {
        throw new UsageError(`${link.host} did not greet as treesync --serve`);
      } else if (frame.type === FrameType.Ok && frame.id === 1) {
        return rest;
      } else if (frame.type === FrameType.Error) {
        throw new UsageError(`${link.host} refused the run: ${decodeError(frame.payload).message}`);
      } else {
        throw new UsageError(`${link.host} answered the run with an unexpected frame`);
      }
    }
  }
}

/** The near end's side of the swapped session: what the far run reports, asks and ends with. */
class NearPeer implements SwappedPeer {
  /** The far run's outcome, once its `Done` came. */
  done: RunDone | null = null;
  readonly #deps: PushDependencies;
  #send: ((frame: Frame) => Promise<void>) | null = null;
  #stopSent = 0;
  #watch: ReturnType<typeof setInterval> | null = null;

  constructor(deps: PushDependencies) {
    this.#deps = deps;
  }

  started(send: (frame: Frame) => Promise<void>): void {
    this.#send = send;
    // A stop asked here (a signal, `quit`) goes to the far run, once per level.
    this.#watch = setInterval(() => this.#forwardStop(), 100);
  }

  async receive(frame: Frame): Promise<void> {
    const { report, control } = this.#deps;
    switch (frame.type) {
      case FrameType.Report:
        return replay(report, decodeReport(frame.payload));
      case FrameType.Progress: {
        const progress = decodeProgress(frame.payload);
        // The far end sends how long ago its phase began: clocks of two hosts do not compare.
        control.progress = { ...progress, startedAt: performance.now() - progress.startedAt };
        return;
      }
      case FrameType.Confirm: {
        const question = decodeConfirm(frame.payload);
        const yes = await this.#deps.confirmDeletes(question.count, question.sample);
        const payload = Uint8Array.of(yes ? 1 : 0);
        await this.#send?.({ type: FrameType.Answer, flags: 0, id: frame.id, payload });
        return;
      }
      case FrameType.Done:
        this.done = decodeDone(frame.payload);
    }
  }

  /** Ends the stop forwarding. */
  stop(): void {
    if (this.#watch !== null) clearInterval(this.#watch);
    this.#watch = null;
  }

  #forwardStop(): void {
    const { control } = this.#deps;
    const level = control.abortNow ? 2 : control.stopRequested ? 1 : 0;
    if (level <= this.#stopSent || this.#send === null) return;
    this.#stopSent = level;
    this.#send({ type: FrameType.Stop, flags: 0, id: 0, payload: encodeStop(level as 1 | 2) })
      .catch(() => {});
  }
}

/**
 * One of the far run's reporter calls, made here. Its text is the far end's: control characters
 * are shown escaped (local output escapes names already; a far end could send anything), and
 * output written whole keeps only its line ends.
 */
function replay(report: Reporter, call: ReportCall): void {
  const text = call.how === "stdout" || call.how === "stderr"
    ? call.text.split("\n").map(escapeControls).join("\n")
    : escapeControls(call.text);
  switch (call.how) {
    case "runEnd":
      return report.runEnd(text, call.exitCode, call.what);
    case "planned":
      return report.planned ? report.planned(text) : report.change(text);
    case "stdout":
      return writeStdout(text);
    case "stderr":
      return writeStderr(text);
    default:
      return report[call.how](text);
  }
}

/** A link's streams with their bytes counted. */
interface CountedStreams {
  reader: ReadableStreamDefaultReader<Uint8Array>;
  output: WritableStream<Uint8Array>;
  sent(): number;
  received(): number;
}

function countedStreams(link: FarEndLink): CountedStreams {
  let sent = 0;
  let received = 0;
  const reader = link.input.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        received += chunk.length;
        controller.enqueue(chunk);
      },
    }),
  ).getReader();
  const counter = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      sent += chunk.length;
      controller.enqueue(chunk);
    },
  });
  counter.readable.pipeTo(link.output).catch(() => {});
  return { reader, output: counter.writable, sent: () => sent, received: () => received };
}

/** A stream of `first`, then the rest of what `reader` reads. */
function prefixed(
  first: Uint8Array,
  reader: ReadableStreamDefaultReader<Uint8Array>,
): ReadableStream<Uint8Array> {
  let pending: Uint8Array | null = first.length > 0 ? first : null;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (pending !== null) {
        controller.enqueue(pending);
        pending = null;
        return;
      }
      const { value, done } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}
