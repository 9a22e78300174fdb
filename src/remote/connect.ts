/**
 * Starting the far end of a remote tree: the remote shell (`remoteCommand`) spawned with its
 * stdin and stdout as the session's streams, the bytes on them counted, its stderr kept until
 * the far end greets (so that a failed start is one line, `farEndFailure`) and passed on line by
 * line after that; and the session's end, with the child waited for (killed after a bounded
 * wait). A far end that does not start, speaks another protocol or refuses the tree is a
 * `UsageError`: exit 2, nothing changed.
 *
 * @module
 */

import { errorText, UsageError } from "../errors.ts";
import { quoted } from "../format.ts";
import {
  configuredOptions,
  farEndFailure,
  isSsh,
  parseSshConfig,
  remoteCommand,
  type RemoteLocation,
  withBatchDefaults,
  withoutConfigFiles,
} from "./address.ts";
import {
  type ConnectionStreams,
  connectRemoteTree,
  RemoteError,
  RemoteTreeReader,
} from "./client.ts";
import { FrameError } from "./frames.ts";
import { connectRemoteReplica, type RemoteReplicaStore } from "./store.ts";

/** How the far end is started. */
export interface FarEndOptions {
  /** Where it is (the user and host; the path travels inside the session). */
  remote: RemoteLocation;
  /** The remote shell's words (`Options.rsh`). */
  rsh: string[];
  /** The far end's program (`Options.remoteTreesync`). */
  remoteTreesync: string;
  /** Takes each line the far end writes to stderr once it greeted (default: our stderr). */
  onStderr?: (line: string) => void;
}

/** Bytes on the wire so far, both ways. */
export interface WireBytes {
  /** Written to the far end. */
  sent: number;
  /** Read from the far end. */
  received: number;
}

/** A started far end: its streams, what went over them, and its end. */
export interface FarEnd {
  /** The session's streams: the far end's stdout and stdin. */
  streams: ConnectionStreams;
  /** Bytes on the wire so far. */
  wire(): WireBytes;
  /** The far end greeted: its stderr is passed on from now on (the lines kept first). */
  greeted(): void;
  /**
   * The one line saying why the far end stopped before it greeted, once the remote shell has
   * exited (waiting at most {@linkcode EXIT_WAIT_MS}); null while it still runs.
   */
  startFailure(): Promise<string | null>;
  /** Waits for the remote shell to exit (killed after {@linkcode EXIT_WAIT_MS}). */
  close(): Promise<void>;
}

/** How long the remote shell is given to exit once its session is over. */
export const EXIT_WAIT_MS = 10_000;

/** Lines of the far end's stderr kept for the message of a failed start. */
const KEPT_LINES = 20;
/** The most characters of one far-end stderr line shown; the rest of a longer one is dropped. */
const MAX_LINE = 4096;

/** The far end as the user named it, for messages: `user@host`. */
export function farEndName(remote: RemoteLocation): string {
  const host = remote.host.includes(":") ? `[${remote.host}]` : remote.host;
  return remote.user === undefined ? host : `${remote.user}@${host}`;
}

/** How long `ssh -G` is given to answer: it reads configuration files and connects nowhere. */
const SSH_CONFIG_WAIT_MS = 5_000;

/**
 * The options the user's ssh configuration (`~/.ssh/config`, the system's, a `-F` file) sets
 * for the far end's host, so that our unattended defaults leave them alone
 * (`withBatchDefaults`): `ssh -G` asked with the command's words and again with no
 * configuration file, and the answers compared ({@linkcode configuredOptions}).
 *
 * @returns Undefined for another remote shell, a command that sets every default itself, an
 * ssh without `-G` (before OpenSSH 6.8), or any failure or an answer later than 5 s: every
 * default the command itself does not set is then added.
 */
export async function sshConfigFor(
  options: { rsh: string[]; remote: RemoteLocation },
): Promise<Map<string, string> | undefined> {
  const { rsh, remote } = options;
  // Another shell, or an ssh command that sets every default itself: nothing to ask.
  if (!isSsh(rsh) || withBatchDefaults(rsh).length === rsh.length) return undefined;
  const effective = await askSsh(rsh, remote);
  if (effective === undefined) return undefined;
  // With the BatchMode in effect: some builds' defaults depend on it (Debian's ssh sends
  // keepalives every 300 s under BatchMode), and a default is no setting of the user's.
  const batchMode = ["-o", `BatchMode=${effective.get("batchmode") ?? "no"}`];
  const builtIn = await askSsh([...withoutConfigFiles(rsh), ...batchMode], remote);
  if (builtIn === undefined) return undefined;
  return configuredOptions(effective, builtIn);
}

/**
 * What `ssh -G` says these words would use for the host; undefined when it fails or does not
 * answer within `waitMs` (its output is then given up, even if something it started holds it).
 */
export async function askSsh(
  words: string[],
  remote: RemoteLocation,
  waitMs = SSH_CONFIG_WAIT_MS,
): Promise<Map<string, string> | undefined> {
  const user = remote.user === undefined ? [] : ["-l", remote.user];
  let child: Deno.ChildProcess;
  try {
    // -G first: a trailing option of the words that takes a value cannot take it instead.
    child = new Deno.Command(words[0]!, {
      args: ["-G", ...words.slice(1), ...user, remote.host],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
  } catch {
    return undefined;
  }
  let exited = false;
  const status = child.status.then((status) => {
    exited = true;
    return status;
  });
  const reader = child.stdout.getReader();
  const answer = Promise.all([readText(reader), status]);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<null>((settle) => timer = setTimeout(() => settle(null), waitMs));
  try {
    const done = await Promise.race([answer, late]);
    if (done === null) return undefined;
    const [text, { success }] = done;
    return success ? parseSshConfig(text) : undefined;
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
    answer.catch(() => {});
    // Given up when late: nothing of it (its output held open by what it started, say) may
    // keep this process waiting.
    reader.cancel().catch(() => {});
    if (!exited) {
      try {
        child.kill("SIGKILL");
      } catch {
        // It exited meanwhile.
      }
      child.unref();
    }
  }
}

/** All a stream's bytes as text, once it ends. */
async function readText(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    text += decoder.decode(read.value, { stream: true });
  }
  return text + decoder.decode();
}

/**
 * Spawns the remote shell that starts the far end, with our unattended ssh defaults where the
 * user's ssh configuration does not set them ({@linkcode sshConfigFor}). Nothing is read or
 * written yet.
 *
 * @throws {UsageError} The remote shell is not installed, or this process may not run it.
 */
export async function spawnFarEnd(options: FarEndOptions): Promise<FarEnd> {
  const configured = await sshConfigFor(options);
  const words = remoteCommand(configured ? { ...options, configured } : options);
  const program = words[0]!;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, {
      args: words.slice(1),
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    throw new UsageError(spawnFailure(program, error));
  }
  const wire: WireBytes = { sent: 0, received: 0 };
  const stderr = new StderrLines(child.stderr, options.onStderr ?? writeLine);
  const exited = child.status.then((status) => status.code);
  const exitedWithin = async (ms: number): Promise<number | null> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<null>((done) => timer = setTimeout(() => done(null), ms));
    try {
      return await Promise.race([exited, late]);
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    streams: countedStreams(child, wire),
    wire: () => ({ ...wire }),
    greeted: () => stderr.passOn(),
    async startFailure() {
      const code = await exitedWithin(EXIT_WAIT_MS);
      if (code === null) return null;
      await stderr.done;
      const { remoteTreesync } = options;
      return farEndFailure({
        host: farEndName(options.remote),
        remoteTreesync,
        code,
        stderr: stderr.text(),
      });
    },
    async close() {
      if (await exitedWithin(EXIT_WAIT_MS) === null) {
        try {
          child.kill("SIGTERM");
        } catch {
          // It exited meanwhile.
        }
        await exited;
      }
      await stderr.done;
    },
  };
}

/** The line for a remote shell that could not be started. */
function spawnFailure(program: string, error: unknown): string {
  if (error instanceof Deno.errors.NotFound) {
    return `Cannot run the remote shell ${quoted(program)}: it is not installed (or not on ` +
      "PATH); name another with -e";
  }
  if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
    return `Cannot run the remote shell ${quoted(program)}: treesync may run only the programs ` +
      `its --allow-run names (ssh by default); add ${program} there, e.g. --allow-run=ssh,${program}`;
  }
  return `Cannot run the remote shell ${quoted(program)}: ${errorText(error)}`;
}

/** The child's stdout and stdin as the session's streams, every byte counted. */
function countedStreams(child: Deno.ChildProcess, wire: WireBytes): ConnectionStreams {
  const input = child.stdout.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        wire.received += chunk.length;
        controller.enqueue(chunk);
      },
    }),
  );
  const stdin = child.stdin.getWriter();
  const output = new WritableStream<Uint8Array>({
    async write(chunk) {
      wire.sent += chunk.length;
      await stdin.write(chunk);
    },
    close: () => stdin.close().catch(() => {}),
    abort: () => stdin.close().catch(() => {}),
  });
  return { input, output };
}

function writeLine(line: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`${line}\n`));
}

/**
 * The far end's stderr, read line by line as it comes: kept (the last lines) until the far end
 * greets, handed on after that. A failed start shows only the one line made of what was kept.
 */
class StderrLines {
  readonly #kept: string[] = [];
  readonly #onLine: (line: string) => void;
  #passing = false;
  /** Resolves when the stream ends. */
  readonly done: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void) {
    this.#onLine = onLine;
    this.done = this.#read(stream).catch(() => {});
  }

  /** Hands on the lines kept, and every line from now on. */
  passOn(): void {
    this.#passing = true;
    for (const line of this.#kept.splice(0)) this.#onLine(line);
  }

  /** The lines kept, for a message. */
  text(): string {
    return this.#kept.join("\n");
  }

  #line(line: string): void {
    if (this.#passing) return this.#onLine(line);
    this.#kept.push(line);
    if (this.#kept.length > KEPT_LINES) this.#kept.shift();
  }

  /**
   * Reads lines; a line past {@linkcode MAX_LINE} characters is cut there, and the rest of it
   * dropped as it comes, so a far end that writes without newlines holds bounded memory here.
   */
  async #read(stream: ReadableStream<Uint8Array>): Promise<void> {
    let rest = "";
    let dropping = false;
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      const lines = (rest + text).split("\n");
      rest = lines.pop()!;
      for (const line of lines) {
        if (!dropping) this.#line(cut(line.replace(/\r$/, "")));
        dropping = false;
      }
      if (rest.length > MAX_LINE) {
        if (!dropping) this.#line(cut(rest));
        dropping = true;
        rest = "";
      }
    }
    if (rest !== "" && !dropping) this.#line(rest);
  }
}

/** A far-end line as shown: at most {@linkcode MAX_LINE} characters. */
function cut(line: string): string {
  return line.length <= MAX_LINE ? line : `${line.slice(0, MAX_LINE)}… (line cut)`;
}

/** A remote tree read through a started far end. */
export interface FarTree {
  /** The tree, read over the session. */
  reader: RemoteTreeReader;
  /** Its own files, read-only (`withStore`: a restore from a replica there). */
  store: RemoteReplicaStore | null;
  /** The far end it is read through. */
  far: FarEnd;
  /** Ends the session and waits for the far end. */
  close(): Promise<void>;
}

/** Which tree to read on the far end, and how it is named in messages. */
export interface FarTreeOptions extends FarEndOptions {
  /** The tree as the user typed it (`host:/srv/data`). */
  display: string;
  /** What the tree is, for messages: `source`, or `replica` when restoring. */
  name: string;
  /** `-z`: ask for the file data compressed. */
  compress: boolean;
  /** `--bwlimit`: bytes a second the file data may take (null: any). */
  rate: number | null;
  /** Also read the tree's own files (lock taken read-only there, record), for a restore. */
  withStore?: boolean;
}

/**
 * Starts the far end, greets it and opens `remote.path` for reading; the tree must be a folder
 * there.
 *
 * @throws {UsageError} The far end did not start (one line: `farEndFailure`), is not treesync,
 *   shares no protocol version with us, refused the tree, or the tree is missing or not a folder.
 */
export async function connectFarTree(options: FarTreeOptions): Promise<FarTree> {
  const far = await spawnFarEnd(options);
  let reader: RemoteTreeReader;
  let store: RemoteReplicaStore | null = null;
  try {
    const tree = {
      ...far.streams,
      path: options.remote.path,
      display: options.display,
      peer: farEndName(options.remote),
      compress: options.compress,
      rate: options.rate,
    };
    if (options.withStore) ({ tree: reader, store } = await connectRemoteReplica(tree));
    else reader = await connectRemoteTree(tree);
  } catch (error) {
    const failure = await startError(far, error, options);
    await far.close();
    throw failure;
  }
  far.greeted();
  const close = async () => {
    await reader.close();
    await far.close();
  };
  try {
    await refuseNonFolder(reader, options);
  } catch (error) {
    await close();
    throw error;
  }
  return { reader, store, far, close };
}

/** The tree's root on the far end must be a folder. */
async function refuseNonFolder(reader: RemoteTreeReader, options: FarTreeOptions): Promise<void> {
  const { display, name } = options;
  const root = await reader.entryAt("").catch((error) => {
    throw new UsageError(`Cannot read the ${name} ${quoted(display)}: ${errorText(error)}`);
  });
  const named = name.charAt(0).toUpperCase() + name.slice(1);
  if (root === null) {
    throw new UsageError(
      `${named} ${quoted(display)} does not exist: check the path on the far end`,
    );
  }
  if (root.kind !== "dir") throw new UsageError(`${named} ${quoted(display)} is not a folder`);
}

/**
 * Why a session with a started far end did not open, as one `UsageError` line for exit 2: its
 * start failed (`farEndFailure`, once the remote shell exited), it is not treesync, it shares no
 * protocol version, or it refused the tree. For any caller that greets a far end (a push too).
 */
export async function startError(
  far: FarEnd,
  error: unknown,
  options: FarEndOptions & { display: string; name: string },
): Promise<Error> {
  if (error instanceof UsageError) return error; // no shared protocol version: says what to install
  const where = farEndName(options.remote);
  if (error instanceof FrameError) {
    return new UsageError(
      `${error.message}: is treesync installed on ${where}? name it with --remote-treesync`,
    );
  }
  if (error instanceof RemoteError && error.kind !== 0) {
    return new UsageError(
      `Cannot read the ${options.name} ${quoted(options.display)}: ${error.message}`,
    );
  }
  const failure = await far.startFailure();
  return new UsageError(
    failure ?? `The far end on ${where} stopped answering: ${errorText(error)}`,
  );
}
