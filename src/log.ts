/**
 * Output: LogTape set-up (the console, and a log file that never costs a run), stdout and stderr
 * that survive a closed pipe, the live progress line and the lines that describe a run.
 *
 * @module
 */

import { dirname } from "node:path";
import type { LogRecord, Sink } from "@logtape/logtape";
import { type Options } from "./cli.ts";
import { errorText } from "./errors.ts";
import { encoder, statOrNull, writeAll } from "./files.ts";
import {
  counted,
  displayPath,
  formatBytes,
  formatDuration,
  listedPath,
  localTimestamp,
  quoted,
} from "./format.ts";
import { type Action } from "./plan.ts";
import { type RunSummary } from "./summary.ts";

/** Console (stderr) and optional file logging, set up once per process. */
export interface Reporter {
  /** A change made (or planned), one line: to the file always, to the console with `-v`. */
  change(text: string): void;
  /**
   * A change a dry run would make, one line: on stdout (a dry run's output). Without it, the
   * line goes to stdout directly.
   */
  planned?(text: string): void;
  /** Detail for `-vv`: each entry scanned, each decision. */
  debug(text: string): void;
  /** Something the user should know; the run goes on. */
  warn(text: string): void;
  /** Something that failed; with `-vv`, the error's stack too. */
  error(text: string, error?: unknown): void;
  /** The run summary: shown by default, hidden by `-q`. */
  summary(text: string): void;
  /** A line for the log file only (the console shows it with `-vv`): a run's start. */
  fileOnly(text: string): void;
  /**
   * A run's (or with `what` "loop", a loop's) summary, as {@linkcode Reporter.summary} shows
   * it; the log file's line also says that it ended, and its exit code ({@linkcode runEndLine}).
   */
  runEnd(text: string, exitCode: number, what?: "run" | "loop"): void;
}

function consoleFormat(record: LogRecord): string {
  const text = record.message.map(String).join("");
  const prefix = record.level === "error" || record.level === "fatal"
    ? "error: "
    : record.level === "warning"
    ? "warning: "
    : "";
  return `${prefix}${text}\n`;
}

/**
 * A log file line: time, level, the process id in brackets (so runs of several jobs sharing
 * one log can be told apart line by line, as rsync's log does), and the text, or the record's
 * own `fileText` where the file says more than the console.
 */
function fileFormat(record: LogRecord): string {
  const level = record.level.toUpperCase().padEnd(7);
  const fileText = record.properties.fileText;
  const text = typeof fileText === "string" ? fileText : record.message.map(String).join("");
  return `${localTimestamp(record.timestamp)} ${level} [${Deno.pid}] ${text}\n`;
}

/**
 * Whether a live line is on screen at the bottom of the terminal (the progress line, or what
 * is being typed into the loop): console output clears it first.
 */
let progressLineShown = false;

/** What is being typed into the loop on a terminal, shown on the bottom line; null when nothing. */
let typedLine: string | null = null;

/** The prompt before what is typed into the loop. */
const TYPED_PROMPT = "> ";

/** Writes to stderr, clearing the live line first; a closed stderr ends its output quietly. */
export function writeStderr(text: string): void {
  writeOut(Deno.stderr, clearedLive() + text);
  redrawTyped();
}

/** The escape that clears the live line, if one is shown (it is then no longer). */
function clearedLive(): string {
  if (!progressLineShown) return "";
  progressLineShown = false;
  return "\r\x1b[2K";
}

/** Draws what is being typed on the bottom line again, after other output. */
function redrawTyped(): void {
  if (typedLine === null || progressLineShown) return;
  writeOut(Deno.stderr, `\r\x1b[2K${TYPED_PROMPT}${typedLine}`);
  progressLineShown = true;
}

/**
 * Shows what is being typed into the loop on the bottom line, in place of the progress line,
 * which is not drawn until the line is entered; null ends it (the line is cleared).
 */
export function showTypedLine(text: string | null): void {
  typedLine = text;
  if (text === null) {
    writeOut(Deno.stderr, clearedLive());
    return;
  }
  progressLineShown = false;
  redrawTyped();
}

/** Where console output goes instead of stdout and stderr (see {@linkcode sendOutputTo}). */
let outputSink: ((stream: "stdout" | "stderr", text: string) => void) | null = null;

/**
 * Sends what would be written to stdout and stderr to `sink` instead (null: to them again): the
 * far end of a pushed run, whose stdout carries the session, hands its output to the near end.
 */
export function sendOutputTo(
  sink: ((stream: "stdout" | "stderr", text: string) => void) | null,
): void {
  outputSink = sink;
}

/** Output streams whose reader went away (`treesync -n … | head -1`): written no more. */
const closedOutputs = new Set<typeof Deno.stdout | typeof Deno.stderr>();

/**
 * Writes all of `text`. A closed pipe ends that stream's output quietly, and the run goes on
 * with its usual exit code: the reader left, the work is not wrong.
 */
function writeOut(stream: typeof Deno.stdout | typeof Deno.stderr, text: string): void {
  if (outputSink !== null) return outputSink(stream === Deno.stdout ? "stdout" : "stderr", text);
  if (closedOutputs.has(stream)) return;
  const bytes = encoder.encode(text);
  try {
    writeAll(stream, bytes);
  } catch (error) {
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
    closedOutputs.add(stream);
  }
}

/** Characters of log lines held before one write: 64 KiB, not a write (or fsync) per line. */
const LOG_BLOCK_CHARS = 64 * 1024;

/** A held line is written once this much time has passed, when the next line comes. */
const LOG_HOLD_MS = 1000;

/**
 * Opens the log file for appending, creating it and its folders when missing. It never
 * truncates, and never creates a file through a symlink: a link to an existing file is appended
 * to, a link to nothing is refused (O_EXCL refuses any name already taken, a dangling link too).
 */
function openLogFile(path: string): Deno.FsFile {
  // A fifo would block the open until someone reads it. (Devices such as /dev/null are fine.)
  const found = statOrNull(path);
  if (found?.isFifo || found?.isSocket || found?.isDirectory) {
    throw new Error("it is a fifo, socket or folder, not a file to log to");
  }
  try {
    return Deno.openSync(path, { append: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  Deno.mkdirSync(dirname(path), { recursive: true });
  try {
    return Deno.openSync(path, { append: true, createNew: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
  }
  try {
    return Deno.openSync(path, { append: true }); // made by someone else meanwhile
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new Error("it is a symlink to nothing, and no log file is created through a link");
  }
}

function countNewlines(bytes: Uint8Array): number {
  let count = 0;
  for (const byte of bytes) if (byte === 10) count++;
  return count;
}

/** Log lines that could not be written, told in the file once it can be written again. */
interface LostLines {
  lines: number;
  since: string;
  reason: string;
  /** The last write stopped inside a line: the next one starts on a new line. */
  midLine: boolean;
}

function lostNotice(lost: LostLines): string {
  const line = `${localTimestamp(Date.now())} WARNING [${Deno.pid}] ` +
    `${counted(lost.lines, "log line")} since ${lost.since} could not be written: ${lost.reason}\n`;
  return lost.midLine ? `\n${line}` : line;
}

/**
 * The log file sink: lines are held and written in blocks, each through a fresh open of the
 * path (so a file or folder deleted, or moved away by logrotate, is simply made again), rotated
 * by size keeping `maxFiles` old files. No error leaves it: a block that cannot be written is
 * dropped, counted, and costs one warning on stderr per run; once the file can be written again
 * it says in the file how many lines were lost, and goes on. Everything is synchronous, so
 * nothing can fail later on a timer or in a promise.
 */
function recoveringFileSink(
  path: string,
  options: { maxSize: number; maxFiles: number },
): Sink & Disposable {
  const file = new LogFile(path, options);
  flushLogFile = () => file.endRun();
  return Object.assign((record: LogRecord) => file.add(record), {
    [Symbol.dispose]: () => file.close(),
  });
}

/**
 * The log file: lines held and written in blocks, each block opening the path afresh (so a
 * deleted file or folder is made again), rotated by renames only (a rename moves a symlink
 * itself, never what it points to). A block that cannot be written is dropped and counted, with
 * one warning a run; the next block that can be written says how many lines were lost.
 */
class LogFile {
  readonly #path: string;
  readonly #maxSize: number;
  readonly #maxFiles: number;
  /** A block is at most a quarter of the file, so rotated files stay near --log-max-size. */
  readonly #blockChars: number;
  #held: string[] = [];
  #heldChars = 0;
  #lastWriteAt = Date.now();
  #lost: LostLines | null = null;
  /** Runs are counted by their end-of-run flushes: one warning a run. */
  #run = 0;
  #warnedInRun = -1;

  constructor(path: string, options: { maxSize: number; maxFiles: number }) {
    this.#path = path;
    this.#maxSize = options.maxSize;
    this.#maxFiles = options.maxFiles;
    this.#blockChars = Math.min(LOG_BLOCK_CHARS, Math.floor(options.maxSize / 4));
    // A log that cannot even be opened now is a setup error: the caller exits 2 naming it.
    openLogFile(path).close();
  }

  /** Holds one record's line; writes the block once it is full or has waited long enough. */
  add(record: LogRecord): void {
    const line = fileFormat(record);
    this.#held.push(line);
    this.#heldChars += line.length;
    const due = record.timestamp - this.#lastWriteAt >= LOG_HOLD_MS;
    if (this.#heldChars >= this.#blockChars || due) this.#write(false);
  }

  /** Writes what is held, durably, at the end of a run. */
  endRun(): void {
    this.#write(true);
    this.#run++;
  }

  /** The last lines (quit, loop totals) belong to the last run: no second warning for them. */
  close(): void {
    if (this.#run > 0) this.#run--;
    this.#write(true);
  }

  #write(durable: boolean): void {
    this.#lastWriteAt = Date.now();
    if (this.#held.length === 0) return;
    const notice = this.#lost === null ? "" : lostNotice(this.#lost);
    const bytes = encoder.encode(notice + this.#held.join(""));
    const noticeBytes = encoder.encode(notice).length;
    this.#held = [];
    this.#heldChars = 0;
    let done = 0;
    let file: Deno.FsFile | null = null;
    try {
      file = this.#openWithRoom(bytes.length);
      while (done < bytes.length) done += file.writeSync(bytes.subarray(done));
      if (durable) file.syncDataSync();
      this.#lost = null;
    } catch (error) {
      if (done < bytes.length) this.#countLost(bytes, { done, noticeBytes, error });
      this.#warn(
        `cannot write the log file ${quoted(this.#path)}: ${errorText(error, true)} ` +
          "(the run goes on; logging resumes when the file can be written)",
      );
    } finally {
      try {
        file?.close();
      } catch {
        // Closing can only fail for a file already closed.
      }
    }
  }

  /** Opens the log for a block of `bytes`, rotating first when the block would not fit. */
  #openWithRoom(bytes: number): Deno.FsFile {
    const file = openLogFile(this.#path);
    const size = file.statSync().size;
    if (size === 0 || size + bytes <= this.#maxSize) return file;
    file.close();
    try {
      this.#rotate();
    } catch (error) {
      this.#warn(
        `cannot rotate the log file ${quoted(this.#path)}: ${errorText(error, true)} ` +
          "(it grows past its size)",
      );
    }
    return openLogFile(this.#path);
  }

  #rotate(): void {
    for (let i = this.#maxFiles - 1; i >= 1; i--) {
      try {
        Deno.renameSync(`${this.#path}.${i}`, `${this.#path}.${i + 1}`);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
    Deno.renameSync(this.#path, `${this.#path}.1`);
  }

  #countLost(
    bytes: Uint8Array,
    write: { done: number; noticeBytes: number; error: unknown },
  ): void {
    const { done, noticeBytes, error } = write;
    const lost = this.#lost;
    const noticeWritten = done >= noticeBytes;
    this.#lost = {
      lines: (noticeWritten || lost === null ? 0 : lost.lines) +
        countNewlines(bytes.subarray(Math.max(done, noticeBytes))),
      since: noticeWritten || lost === null ? localTimestamp(Date.now()) : lost.since,
      reason: errorText(error, true),
      midLine: done > 0 ? bytes[done - 1] !== 10 : lost?.midLine ?? false,
    };
  }

  #warn(text: string): void {
    if (this.#warnedInRun === this.#run) return;
    this.#warnedInRun = this.#run;
    try {
      writeStderr(`warning: ${text}\n`);
    } catch {
      // No stderr either: nothing is left to tell.
    }
  }
}

/** Writes out the log file's held lines; called at the end of every run. Never throws. */
export let flushLogFile = () => {};

/**
 * Sets up LogTape: the console gets errors (`-q`), warnings and summaries (default), each
 * change (`-v`) or everything (`-vv`); the log file gets every change with a timestamp.
 */
export async function setUpLogging(options: Options): Promise<Reporter> {
  const { configure, getLogger } = await import("@logtape/logtape");
  const logger = getLogger(["treesync"]);
  const consoleLevels = ["error", "warning", "info", "debug"] as const;
  const consoleLowest = consoleLevels[options.verbosity]!;
  const consoleSink: Sink = (record) => {
    const levelOk = consoleLevels.indexOf(record.level as typeof consoleLevels[number]) <=
      consoleLevels.indexOf(consoleLowest);
    const isSummary = record.properties.summary === true && options.verbosity > 0;
    const fileOnly = record.properties.fileOnly === true && options.verbosity < 3;
    if ((levelOk || isSummary) && !fileOnly) writeStderr(consoleFormat(record));
  };
  const sinks: Record<string, Sink> = { console: consoleSink };
  if (options.logPath !== null) {
    const fileSink = recoveringFileSink(options.logPath, {
      maxSize: options.logMaxBytes,
      maxFiles: options.logKeep,
    });
    sinks.file = options.verbosity >= 3
      ? fileSink
      : Object.assign((record: LogRecord) => record.level !== "debug" && fileSink(record), {
        [Symbol.dispose]: () => fileSink[Symbol.dispose](),
      });
  }
  await configure({
    reset: true,
    sinks,
    loggers: [
      { category: ["treesync"], sinks: Object.keys(sinks), lowestLevel: "debug" },
      { category: ["logtape", "meta"], sinks: ["console"], lowestLevel: "error" },
    ],
  });
  const debugOn = options.verbosity >= 3;
  // Changes go nowhere without -v or a log file: skip making their records at all.
  const changesShown = options.verbosity >= 2 || options.logPath !== null;
  return {
    change: (text) => changesShown && logger.info("{text}", { text }),
    planned: (text) => writeStdout(`${text}\n`),
    debug: (text) => debugOn && logger.debug("{text}", { text }),
    warn: (text) => logger.warn("{text}", { text }),
    error: (text, error) => {
      logger.error("{text}", { text });
      if (debugOn && error instanceof Error && error.stack) writeStderr(`${error.stack}\n`);
    },
    summary: (text) => logger.info("{text}", { text, summary: true }),
    fileOnly: (text) => logger.info("{text}", { text, fileOnly: true }),
    runEnd: (text, exitCode, what = "run") =>
      logger.info("{text}", { text, summary: true, fileText: runEndLine(text, exitCode, what) }),
  };
}

/** Writes out and closes the log sinks. Never throws: a log problem never decides an exit. */
export async function closeLogging(): Promise<void> {
  try {
    const { dispose } = await import("@logtape/logtape");
    await dispose();
  } catch (error) {
    try {
      writeStderr(`warning: cannot close the log: ${errorText(error, true)}\n`);
    } catch {
      // No stderr either.
    }
  }
}

/** One line for an action, as `-v`, the log and the dry run show it. */
export function describeAction(action: Action): string {
  const shown = listedPath(action.path === "" ? "." : action.path);
  switch (action.kind) {
    case "mkdir":
      return `mkdir ${shown}/`;
    case "rmdir":
      return `rmdir ${shown}/`;
    case "link":
      return withDiffers(`link ${shown} -> ${listedPath(action.entry!.target!)}`, action);
    case "move": {
      const slash = action.entry!.kind === "dir" ? "/" : "";
      return `move ${listedPath(action.from!)}${slash} -> ${shown}${slash}`;
    }
    case "copy":
      return `copy ${shown} (${formatBytes(action.entry!.size)})`;
    case "update": {
      const parts = [differsText(action), formatBytes(action.entry!.size)];
      return `update ${shown} (${parts.filter((part) => part !== "").join("; ")})`;
    }
    case "hardlink":
      return `hardlink ${shown} => ${listedPath(action.from!)}`;
    case "attrs":
      return withDiffers(`attrs ${shown}`, action);
    case "dirattrs":
      // Listed only when the folder differed before the run; -vv shows the others as well.
      return action.differs?.length
        ? `attrs ${shown}/ (${differsText(action)})`
        : `attrs ${shown}/`;
    default:
      return `${action.kind} ${shown}`;
  }
}

/** What differed, as a change line lists it: `size, mtime`. */
function differsText(action: Action): string {
  return (action.differs ?? []).join(", ");
}

/** A change line with what differed after it, if anything: `attrs x (mode)`. */
function withDiffers(line: string, action: Action): string {
  return action.differs?.length ? `${line} (${differsText(action)})` : line;
}

/**
 * Whether an action has a change line of its own for `-v`, the log and the dry run: all but
 * the folder attributes that only put back what filling the folder changed.
 */
export function isListed(action: Action): boolean {
  return action.kind !== "dirattrs" || (action.differs?.length ?? 0) > 0;
}

/** The files changed, as every summary words them: `2 copied, 0 updated, 1 moved, 0 deleted`. */
export function changeCounts(
  counts: Pick<RunSummary, "copied" | "updated" | "moved" | "deleted">,
): string {
  const c = counts;
  return `${c.copied} copied, ${c.updated} updated, ${c.moved} moved, ${c.deleted} deleted`;
}

/** The summary line of a run, after `label` (`sync`, `run 3`, `dry run`). */
export function summaryLine(summary: RunSummary, label: string): string {
  const s = summary;
  return `${label}: ${changeCounts(s)}, ` +
    `${counted(s.dirsCreated, "folder")} created, ${counted(s.dirsDeleted, "folder")} deleted, ` +
    `${counted(s.attrsUpdated, "attribute fix", "attribute fixes")}, ${s.failed} failed, ` +
    `${formatBytes(s.bytesCopied)} copied in ${(s.durationMs / 1000).toFixed(2)} s`;
}

/** The log file's line at the end of a run: `run end: sync: 2 copied, …; exit code 0`. */
export function runEndLine(summary: string, exitCode: number, what = "run"): string {
  return `${what} end: ${summary}; exit code ${exitCode}`;
}

/**
 * The log file's line at the start of a run: what it is for, so runs of several jobs sharing
 * one log can be told apart: `run start: treesync 0.1.0 /srv/data -> /backup/data
 * (--max-delete 50%, --checksum)`. A restore shows its direction, replica to source; a
 * verify, the replica it checks.
 */
export function runStartLine(options: Options, input: { version: string; run?: string }): string {
  const { source, replica, restore, verify } = options;
  const [from, to] = restore ? [replica, source] : [source, replica];
  const what = verify
    ? `--verify ${listedPath(replica)}`
    : `${listedPath(from)} -> ${listedPath(to)}`;
  const shown = [...(input.run ? [input.run] : []), ...(verify ? [] : optionFlags(options))];
  const flags = shown.length > 0 ? ` (${shown.join(", ")})` : "";
  return `run start: treesync ${input.version} ${what}${flags}`;
}

/** Filter rules shown by pattern in the start line; past this many, only counted. */
const SHOWN_FILTER_RULES = 3;

/** The options that change what a run does, as they are typed. */
function optionFlags(options: Options): string[] {
  const flags: string[] = [];
  const add = (on: boolean, flag: string) => on && flags.push(flag);
  add(options.dryRun, "--dry-run");
  add(options.restore, "--restore");
  add(options.overwriteNewer, "--overwrite-newer");
  add(options.checksum, "--checksum");
  add(!options.deletes, "--no-delete");
  const limit = options.maxDelete;
  if (limit) flags.push(`--max-delete ${"count" in limit ? limit.count : `${limit.percent}%`}`);
  if (options.keepDeletedMs !== null) {
    flags.push(`--keep-deleted ${formatDuration(options.keepDeletedMs).replaceAll(" ", "")}`);
  }
  add(options.hardLinks, "--hard-links");
  add(options.sparse, "--sparse");
  add(options.allowEmptySource, "--allow-empty-source");
  add(options.interactive, "--interactive");
  if (options.intervalMs !== null) {
    flags.push(`--interval ${formatDuration(options.intervalMs).replaceAll(" ", "")}`);
  }
  add(options.watch, "--watch");
  const rules = options.filters;
  if (rules.length > SHOWN_FILTER_RULES) flags.push(counted(rules.length, "filter rule"));
  else for (const rule of rules) flags.push(`--${rule.kind} ${quoted(rule.pattern)}`);
  return flags;
}

/** How far the run under way has come. */
export interface RunProgress {
  /** What the run is doing. */
  phase: "idle" | "scanning" | "hashing" | "copying";
  /** Entries scanned, or changes made. */
  done: number;
  /** Changes planned (0 while scanning). */
  total: number;
  /** Bytes hashed or copied so far. */
  bytes: number;
  /** Bytes to copy in all, once the plan is known. */
  totalBytes: number;
  /** The path being copied. */
  current: string;
  /** When the phase began (`performance.now()`). */
  startedAt: number;
  /** True while the walk goes on: the totals are only what it decided so far. */
  walking?: boolean;
  /** Source entries the walk has gone through so far. */
  walked?: number;
}

/** The progress of no run. */
export function idleProgress(): RunProgress {
  return {
    phase: "idle",
    done: 0,
    total: 0,
    bytes: 0,
    totalBytes: 0,
    current: "",
    startedAt: performance.now(),
  };
}

/** One line of progress: `copying 12/345, 1.2 GiB of 3.4 GiB, 512.0 MiB/s, ETA 5s, a/b`. */
export function progressText(p: RunProgress, now = performance.now()): string {
  if (p.phase === "scanning") return `scanning: ${counted(p.done, "entry", "entries")}`;
  if (p.phase === "hashing") return `hashing: ${counted(p.done, "file")}, ${formatBytes(p.bytes)}`;
  const seconds = Math.max((now - p.startedAt) / 1000, 0.001);
  const rate = p.bytes / seconds;
  if (p.walking) return walkingText(p, { rate, ms: now - p.startedAt });
  const left = Math.max(p.totalBytes - p.bytes, 0);
  // While the walk goes on, the totals grow with it: no ETA until they are known.
  const more = p.walking ? "+" : "";
  const eta = p.walking
    ? ", walking"
    : rate > 0 && left > 0
    ? `, ETA ${formatDuration((left / rate) * 1000)}`
    : "";
  return `${p.phase} ${p.done}/${p.total}${more}, ${formatBytes(p.bytes)} of ` +
    `${formatBytes(p.totalBytes)}${more}, ${formatBytes(rate)}/s${eta}` +
    (p.current ? `, ${displayPath(p.current)}` : "");
}

/**
 * Progress while the walk goes on: what is known so far, the totals growing with the walk
 * (`walking 12345 entries, 3/5+ changes, 1.2 MiB of 3.0 MiB+, 512.0 KiB/s, 42s, a/b`).
 */
function walkingText(p: RunProgress, run: { rate: number; ms: number }): string {
  const entries = p.walked === 1 ? "1 entry" : `${p.walked ?? 0} entries`;
  return `walking ${entries}, ${p.done}/${p.total}+ changes, ${formatBytes(p.bytes)} of ` +
    `${formatBytes(p.totalBytes)}+, ${formatBytes(run.rate)}/s, ${formatDuration(run.ms)}` +
    (p.current ? `, ${displayPath(p.current)}` : "");
}

/**
 * Draws one live status line on stderr while a run is under way: only on a terminal, never with
 * `-q`, never in the log file, and only once a run has lasted a second (short runs do not
 * flicker).
 *
 * @returns A function that stops it and clears the line.
 */
export function startProgressLine(
  progress: () => RunProgress,
  options: Pick<Options, "verbosity">,
): () => void {
  if (options.verbosity === 0 || !Deno.stderr.isTerminal()) return () => {};
  const draw = () => {
    const p = progress();
    if (p.phase === "idle" || performance.now() - p.startedAt < 1000) return;
    if (typedLine !== null) return; // what is being typed has the line
    let width = 80;
    try {
      width = Deno.consoleSize().columns;
    } catch {
      // Not a console after all: keep 80.
    }
    writeOut(Deno.stderr, `\r\x1b[2K${progressText(p).slice(0, width - 1)}`);
    progressLineShown = true;
  };
  const timer = setInterval(draw, 250);
  return () => {
    clearInterval(timer);
    if (progressLineShown) writeStderr("");
  };
}

/**
 * Writes to stdout; a closed stdout (`| head`) ends its output quietly. On the terminal that
 * shows the live line, that line is cleared first and what is being typed drawn again after.
 */
export function writeStdout(text: string): void {
  const sameScreen = progressLineShown && Deno.stdout.isTerminal();
  if (sameScreen) writeOut(Deno.stderr, clearedLive());
  writeOut(Deno.stdout, text);
  if (sameScreen) redrawTyped();
}

/**
 * Prints a line of what a dry run would do: through the reporter's `planned` (stdout on the
 * command line), or on stdout when it has none.
 */
export function printPlanned(report: Reporter, line: string): void {
  if (report.planned) report.planned(line);
  else writeStdout(`${line}\n`);
}
