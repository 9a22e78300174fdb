/**
 * `treesync --serve` on the far end: one session on the process's stdin and stdout. A pull
 * opens a tree here and reads it (`server.ts`); a push sends `Run` instead, and this host then
 * runs the engine itself, as it writes the replica: its walk, checks, lock, record, trash and
 * renames are this host's local code, and the tree it reads is the near end's, through the same
 * streams with the roles swapped (`frames.ts`). What the run reports goes back as `Report`
 * frames, its progress as `Progress`, its `-I` question as `Confirm`, its outcome as `Done`.
 *
 * The near end is a peer like any other: the run's options are checked field by field
 * (`runwire.ts`), the replica must lie within `--root`, and the run never logs to a file here.
 *
 * @module
 */

import { resolve } from "node:path";
import { type Options, type RemoteTree } from "../cli.ts";
import { newRunControl, requestStop, type RunControl } from "../control.ts";
import { errorText, ExitCode, RefusedError, UsageError } from "../errors.ts";
import { quoted } from "../format.ts";
import { type Reporter, sendOutputTo } from "../log.ts";
import { isRunningAsRoot, runOnce } from "../run.ts";
import { LocalReplicaStore } from "../sides/local/store.ts";
import { LocalTreeReader } from "../sides/local/tree.ts";
import { LocalTreeWriter } from "../sides/local/treewriter.ts";
import { WorkerPool } from "../sides/local/workers.ts";
import { runVerify } from "../verify.ts";
import { Connection, openRemoteTree, RemoteError, type RemoteTreeReader } from "./client.ts";
import { checkRestoreFromRemote, openRemoteStore, type RemoteReplicaStore } from "./store.ts";
import { type Frame, FrameError, FrameType } from "./frames.ts";
import {
  decodeRunRequest,
  decodeStop,
  encodeJson,
  type ReporterLine,
  type RunDone,
  type RunRequest,
} from "./runwire.ts";
import { confinementProblem, serve } from "./server.ts";

/** The streams of a far end, and what it may touch. */
export interface FarEndOptions {
  /** What the near end sends (stdin). */
  input: ReadableStream<Uint8Array>;
  /** Where the answers go (stdout). */
  output: WritableStream<Uint8Array>;
  /** Only trees at or below this folder may be read or written (`--root`; default: any). */
  root?: string;
}

/**
 * Serves one session: a pull's reads, or a pushed run.
 *
 * @returns The exit code: 0 when the session ended as agreed, 1 with the reason on stderr.
 */
export async function serveFarEnd(options: FarEndOptions): Promise<number> {
  const pool = new WorkerPool(navigator.hardwareConcurrency || 2);
  const outcome = await serve({
    input: options.input,
    output: options.output,
    readTree: (path) => new LocalTreeReader(path, { pool }),
    openStore: (path) => new LocalReplicaStore(path),
    home: Deno.cwd(),
    ...(options.root === undefined ? {} : { root: options.root }),
    onRun: (payload) => acceptRun(payload, options.root),
  });
  pool.close();
  if (outcome.handoff !== undefined) {
    return await runForPeer(outcome.handoff as RunRequest, options);
  }
  if (outcome.error === undefined) return ExitCode.Ok;
  console.error(`treesync --serve: ${outcome.error}`);
  return ExitCode.Failed;
}

/**
 * A `Run` this far end takes, or the one line refusing it: a shape that is not a run's, or a
 * tree to write (the replica; the source, when restoring into it) outside `--root`.
 */
export function acceptRun(
  payload: Uint8Array,
  root: string | undefined,
): { refused: string } | { accepted: RunRequest } {
  let request: RunRequest;
  try {
    request = decodeRunRequest(payload);
  } catch (error) {
    return { refused: errorText(error) };
  }
  const { options } = request;
  // --verify reads the replica; a restore writes the source; a run writes the replica.
  if (request.mode === "verify" && options.restore) {
    return { refused: "A Run to verify and restore" };
  }
  const side = options.restore ? "source" : "replica";
  const given = options[side];
  if (given.includes("\0") || given.split("/").includes("..")) {
    return { refused: `Refused ${quoted(given)}: a path with a NUL or a '..' name` };
  }
  // A relative path is relative to the login's home, where the remote shell starts, as rsync's.
  const home = Deno.cwd();
  const written = resolve(home, given);
  if (request.mode === "run" && (written === "/" || written === resolve(home))) {
    return {
      refused: `Refusing to mirror into ${written === "/" ? "/" : "the login's home folder"} ` +
        `itself (${quoted(written)}): name a folder below it, as host:backup/data`,
    };
  }
  const problem = confinementProblem(written, root);
  if (problem !== null) return { refused: problem };
  return { accepted: { ...request, options: { ...options, [side]: written } } };
}

/** How often the far run's progress goes to the near end. */
const PROGRESS_EVERY_MS = 500;

/**
 * Runs a pushed run here: connects back to the near end's tree over the same streams, runs,
 * and sends the outcome.
 *
 * @returns The exit code of this process (the run's own goes to the near end).
 */
async function runForPeer(request: RunRequest, streams: FarEndOptions): Promise<number> {
  const control = newRunControl();
  const onSession = (frame: Frame) => {
    if (frame.type === FrameType.Stop) requestStop(control, decodeStop(frame.payload));
  };
  const connection = new Connection(streams, NEAR_END, onSession);
  try {
    await connection.greet();
  } catch (error) {
    console.error(`treesync --serve: ${errorText(error)}`);
    await connection.close();
    return ExitCode.Failed;
  }
  const report = forwardingReporter(connection, {
    changes: request.changes ?? true,
    // The near end shows and logs debug lines only at -vv.
    debug: request.options.verbosity >= 3,
  });
  const progress = setInterval(() => {
    // How long ago the phase began: the near end's clock is not this one.
    const startedAt = performance.now() - control.progress.startedAt;
    send(connection, FrameType.Progress, { ...control.progress, startedAt });
  }, PROGRESS_EVERY_MS);
  // What the run writes to stdout itself (--verify's findings) is the near end's to print.
  sendOutputTo((stream, text) => send(connection, FrameType.Report, { how: stream, text }));
  let done: RunDone;
  try {
    done = await runHere(request, { report, control, connection });
  } catch (error) {
    done = failureDone(error);
  } finally {
    clearInterval(progress);
    sendOutputTo(null);
  }
  await connection.send({ type: FrameType.Done, flags: 0, id: 0, payload: encodeJson(done) })
    .catch(() => {});
  await connection.close();
  // A near end that broke the protocol cannot be told any more: say why where ssh shows it.
  const broken = connection.failure;
  if (broken instanceof FrameError) {
    console.error(`treesync --serve: the near end broke the protocol: ${broken.message}`);
    return ExitCode.Failed;
  }
  return ExitCode.Ok;
}

/**
 * The run itself: this host's tree written, the near end's read (with its replica's own files,
 * read-only, when restoring into this host's source).
 */
async function runHere(
  request: RunRequest,
  input: { report: Reporter; control: RunControl; connection: Connection },
): Promise<RunDone> {
  const { options } = request;
  const { report, control, connection } = input;
  // --verify reads nothing of the near end's.
  if (request.mode === "verify") {
    return { exitCode: await runVerify(options, report, { shown: request.shown }) };
  }
  const near = await openNearTree(connection, options);
  if (near.store !== null) checkRestoreFromRemote(near.store);
  const written = options.restore ? options.source : options.replica;
  // The near end's tree is the remote one here: this host's own files get the local checks.
  const remote: RemoteTree = options.restore
    ? { kind: "remote", host: NEAR_END, path: options.replica, side: "replica" }
    : { kind: "remote", host: NEAR_END, path: options.source, side: "source" };
  const summary = await runOnce({ ...options, remote }, {
    report,
    control,
    isRoot: isRunningAsRoot(),
    confirmDeletes: (count, sample) => askNearEnd(connection, { count, sample }),
    openTrees: (pool) => ({
      from: near.tree,
      to: new LocalTreeWriter(written, { pool }),
      store: near.store ?? new LocalReplicaStore(written),
    }),
  }, request.scope);
  return { summary };
}

/** The near end, in messages. */
const NEAR_END = "the near end";

/** Opens the near end's tree read (and, when restoring, its replica's own files). */
async function openNearTree(
  connection: Connection,
  options: Options,
): Promise<{ tree: RemoteTreeReader; store: RemoteReplicaStore | null }> {
  const path = options.restore ? options.replica : options.source;
  const tree = await openRemoteTree(connection, {
    path,
    display: path,
    compress: options.compress,
    rate: options.bwlimit,
  });
  const store = options.restore ? await openRemoteStore(connection, path) : null;
  return { tree, store };
}

/** What stopped the run, for the near end to report as its own (with the same exit code). */
function failureDone(error: unknown): RunDone {
  if (error instanceof UsageError) return { failure: "usage", message: error.message };
  if (error instanceof RefusedError) return { failure: "refused", message: error.message };
  if (error instanceof RemoteError || error instanceof FrameError) {
    return { failure: "failed", message: error.message };
  }
  return { failure: "failed", message: `Unexpected failure: ${errorText(error)}` };
}

/** The `-I` question, asked on the near end's terminal. */
async function askNearEnd(
  connection: Connection,
  question: { count: number; sample: string[] },
): Promise<boolean> {
  const answer = await connection.ask(FrameType.Confirm, encodeJson(question), FrameType.Answer);
  return answer.length === 1 && answer[0] === 1;
}

/** Sends a session frame; a near end gone is noticed by the run's own requests. */
function send(connection: Connection, type: number, value: unknown): void {
  connection.send({ type, flags: 0, id: 0, payload: encodeJson(value) }).catch(() => {});
}

/**
 * A reporter whose every line goes to the near end, which prints and logs it as its own; change
 * and debug lines only when the near end shows or logs them.
 */
function forwardingReporter(
  connection: Connection,
  sent: { changes: boolean; debug: boolean },
): Reporter {
  const line = (how: ReporterLine) => (text: string) =>
    send(connection, FrameType.Report, { how, text });
  const none = () => {};
  return {
    change: sent.changes ? line("change") : none,
    planned: line("planned"),
    debug: sent.debug ? line("debug") : none,
    warn: line("warn"),
    error: line("error"),
    summary: line("summary"),
    fileOnly: line("fileOnly"),
    runEnd: (text, exitCode, what = "run") =>
      send(connection, FrameType.Report, { how: "runEnd", text, exitCode, what }),
  };
}
