/**
 * The interval loop: a run every `--interval`, and with `--watch` a run of the folders that
 * changed once the source is quiet (watch.ts reads the events); commands on stdin (on a
 * terminal, typed on a line of their own that the progress line keeps off), signals, totals on
 * exit.
 *
 * @module
 */

import { type Options } from "./cli.ts";
import { errorText, ExitCode, UsageError } from "./errors.ts";
import { counted, escapeControls, formatBytes, formatDuration, localTime } from "./format.ts";
import {
  changeCounts,
  flushLogFile,
  progressText,
  type Reporter,
  runStartLine,
  showTypedLine,
  startProgressLine,
  summaryLine,
  writeStderr,
  writeStdout,
} from "./log.ts";
import { LockHeldError } from "./sides/local/meta.ts";
import { LocalReplicaStore } from "./sides/local/store.ts";
import { checkPaths, sourceMissing } from "./sides/local/places.ts";
import { runAnywhere } from "./passes.ts";
import { isRunningAsRoot, newRunControl, requestStop, type RunControl, takeLock } from "./run.ts";
import { listenForStops } from "./signals.ts";
import { emptySummary, type RunSummary } from "./summary.ts";
import { VERSION } from "./version.ts";
import {
  folderList,
  SourceWatch,
  watchDueAt,
  type WatchRun,
  watchRunFor,
  type WatchState,
  watchStatusLine,
} from "./watch.ts";

const LOOP_HELP = `Commands (type one and press Enter):
  now       start a full run at once
  status    show the last run, the run in progress, when the next starts and, with --watch,
            the folders changed since the last run
  quit      finish the current file, save the record and exit (also q, exit)
  help      show this list`;

/** Said once when the loop starts on a terminal. */
const COMMANDS_HINT = "type 'help' for commands (now, status, quit)";

/** What a line typed into the loop asks for; an unknown one comes with its reply. */
export type LoopCommand =
  | { kind: "none" | "quit" | "now" | "status" | "help" }
  | { kind: "unknown"; reply: string };

/** Characters of an unknown command echoed back. */
const ECHOED_COMMAND_CHARS = 40;

/**
 * Reads one line typed into the loop. An unknown one is echoed in its reply cut to 40
 * characters, its control characters escaped: never raw escape sequences back to the terminal.
 * Pure.
 */
export function parseLoopCommand(line: string): LoopCommand {
  const word = line.trim().toLowerCase();
  if (word === "") return { kind: "none" };
  if (word === "quit" || word === "q" || word === "exit") return { kind: "quit" };
  if (word === "now" || word === "status") return { kind: word };
  if (word === "help" || word === "?") return { kind: "help" };
  const chars = Array.from(line.trim());
  const cut = chars.length > ECHOED_COMMAND_CHARS ? "…" : "";
  const shown = escapeControls(chars.slice(0, ECHOED_COMMAND_CHARS).join("")) + cut;
  return { kind: "unknown", reply: `Unknown command '${shown}'; type help for the list` };
}

/** The longest single timer the loop sets while it waits for the next run. */
export const WAIT_CHUNK_MS = 3_600_000;

/**
 * How long the loop sleeps before it looks at the clock again, waiting until `untilMs`: the
 * time left, but at most `chunkMs` (timers past 2^31-1 ms fire at once); 0 when it is time.
 * Pure.
 */
export function nextWaitMs(untilMs: number, nowMs: number, chunkMs = WAIT_CHUNK_MS): number {
  return Math.min(Math.max(0, untilMs - nowMs), chunkMs);
}

/** Totals over every run of a loop, logged when it exits. */
export interface LoopTotals {
  /** Runs started. */
  runs: number;
  /** Runs that failed, or that `--max-delete` held back. */
  failedRuns: number;
  /** New files copied, over every run. */
  copied: number;
  /** Changed files copied again. */
  updated: number;
  /** Files and folders renamed in the replica instead of copied. */
  moved: number;
  /** Entries deleted from the replica. */
  deleted: number;
  /** Bytes copied. */
  bytesCopied: number;
  /** Entries that failed, over every run. */
  failed: number;
}

/** What a loop knows during and between runs: what `status` shows and commands change. */
export interface LoopState {
  /** When the loop started, in `Date.now()` milliseconds. */
  startedAt: number;
  /** Totals over the runs so far. */
  totals: LoopTotals;
  /** The last finished run's summary line, labelled for `status`; null before the first. */
  lastRun: string | null;
  /** Whether the last finished run failed: the exit code after `quit`. */
  lastRunFailed: boolean;
  /** Whether a run is under way. */
  running: boolean;
  /** The run under way's progress, as the progress line shows it. */
  progress: () => string;
  /** A `now` came: a full run starts at once, or as soon as the one under way ends. */
  runAgain: boolean;
  /** When the next full run starts, in `Date.now()` milliseconds. */
  nextRunAt: number;
  /** With `--watch`: what is watched and pending; null without it. */
  watch: WatchState | null;
  /** 130 or 143 once a signal came; null until then. */
  exitCode: number | null;
}

/** The state of a loop starting at `nowMs`, before its first run. */
export function newLoopState(nowMs: number, progress: () => string): LoopState {
  return {
    startedAt: nowMs,
    totals: {
      runs: 0,
      failedRuns: 0,
      copied: 0,
      updated: 0,
      moved: 0,
      deleted: 0,
      bytesCopied: 0,
      failed: 0,
    },
    lastRun: null,
    lastRunFailed: false,
    running: false,
    progress,
    runAgain: false,
    nextRunAt: nowMs,
    watch: null,
    exitCode: null,
  };
}

/**
 * The reply to `status`: the last run, the run under way or the next one, with `--watch` what
 * is watched and pending, runs and uptime.
 */
export function statusText(state: LoopState, nowMs: number = Date.now()): string {
  const { nextRunAt, watch } = state;
  const last = state.lastRun ?? "last run: none yet";
  const next = watch ? "next full run" : "next run";
  const now = state.running
    ? `run in progress: ${state.progress()}`
    : `${next} in ${formatDuration(Math.max(0, nextRunAt - nowMs))} ` +
      `(at ${localTime(nextRunAt)})`;
  const runs = `runs: ${state.totals.runs}, uptime ${formatDuration(nowMs - state.startedAt)}`;
  const lines = [last, now];
  if (watch) lines.push(watchStatusLine(watch, nowMs));
  lines.push(runs);
  return lines.join("\n");
}

/** What the loop does about one command: a reply on stdout, a line logged, what comes next. */
export interface CommandAnswer {
  /** Printed on stdout. */
  reply?: string;
  /** Logged as a summary line (shown unless `-q`, and in the log file). */
  logged?: string;
  /** Stop after the file in flight, start a run now, or start one when the current ends. */
  next?: "quit" | "wake" | "run-again";
}

/** The loop's answer to a command, given its state. Pure. */
export function answerCommand(
  command: LoopCommand,
  state: LoopState,
  nowMs: number = Date.now(),
): CommandAnswer {
  switch (command.kind) {
    case "none":
      return {};
    case "quit":
      return { logged: state.running ? "quit: finishing the current file" : "quit", next: "quit" };
    case "now":
      return state.running
        ? { reply: "now: a run starts after the current one", next: "run-again" }
        : { reply: "now: starting a run", next: "wake" };
    case "status":
      return { reply: statusText(state, nowMs) };
    case "help":
      return { reply: LOOP_HELP };
    case "unknown":
      return { reply: command.reply };
  }
}

/**
 * Runs a mirror every `options.intervalMs`, start to start, until `quit` or a signal; with
 * `--watch`, also a run of the folders that changed each time the source falls quiet. Stdin
 * takes commands; its end is not a quit (cron and systemd give none). The lock is held for the
 * loop's whole life.
 *
 * @returns 0 if the last run succeeded, 1 if it failed, 130 or 143 after a signal.
 */
export async function runLoop(options: Options, report: Reporter): Promise<number> {
  const intervalMs = options.intervalMs!;
  const control = newRunControl();
  const state = newLoopState(Date.now(), () => progressText(control.progress));
  const sleep = new Sleep();
  checkPathsAtStart(options, report);
  // The lock is held for the loop's life (each run takes it again if the replica was deleted
  // with it). A second loop on the same replica is refused now, if the lock file exists; on a
  // new replica the first run makes it.
  control.keepLock = true;
  holdLock(options, control);
  // An event ends the wait early only when its quiet period ends before the wait would.
  const watch = options.watch
    ? new SourceWatch(options, report, () => {
      const due = watchDueAt(watch!.state);
      if (due !== null && due < sleep.untilMs) sleep.wake();
    })
    : null;
  state.watch = watch?.state ?? null;
  const stopCommands = listenForCommands((line) => obey(line, state, { control, report, sleep }));
  if (Deno.stdin.isTerminal() && options.verbosity > 0) writeStderr(`${COMMANDS_HINT}\n`);
  const stopProgress = startProgressLine(() => control.progress, options);
  const stopSignals = listenForStops(control, report, (exitCode) => {
    state.exitCode = exitCode;
    sleep.wake();
  });
  try {
    while (!control.stopRequested) {
      const run = startingRun(state, watch, report);
      const runStartedAt = Date.now();
      const { summary, threw } = await loopRun(options, { report, control }, state, run.scope);
      if (run.scope !== undefined && threw) {
        // The folders it took would wait for the interval: a full run takes them up now.
        watch!.needFullRun(`watch run ${state.totals.runs} failed`);
      }
      finishRun(options, report, state, summary);
      if (control.stopRequested) break;
      if (run.scope === undefined) {
        scheduleNext(report, state, { runStartedAt, intervalMs, summary });
      }
      await waitForWork(state, { control, sleep });
    }
  } finally {
    watch?.close();
    stopProgress();
    stopSignals();
    stopCommands();
    control.lock?.release();
    control.lock = null;
    const totals = totalsLine(state.totals, Date.now() - state.startedAt);
    report.runEnd(totals, loopExitCode(state), "loop");
  }
  return loopExitCode(state);
}

/** The loop's exit code: a signal's, else the last run's outcome. */
function loopExitCode(state: LoopState): number {
  return state.exitCode ?? (state.lastRunFailed ? ExitCode.Failed : ExitCode.Ok);
}

/**
 * What the run about to start walks: everything when `now` asked for it, the interval is up or
 * there is no watch; else what the watch marked ({@linkcode watchRunFor}), said in one line.
 * A full run starts the watch first if it is off (the first run, or after a failure), so that
 * changes during the run are seen, and takes every change pending: it walks them all.
 */
function startingRun(
  state: LoopState,
  watch: SourceWatch | null,
  report: Reporter,
): { scope?: string[] } {
  const asked = state.runAgain || Date.now() >= state.nextRunAt;
  state.runAgain = false;
  if (watch === null) return {};
  if (!asked) {
    watch.checkRoot(); // a root replaced or removed asks for a full run
    const pending = watch.take();
    const run: WatchRun = pending.full !== null
      ? { kind: "full", why: pending.full }
      : watchRunFor(pending.folders);
    if (run.kind === "folders") {
      const count = run.folders.length === 1 ? "1 folder" : `${run.folders.length} folders`;
      report.summary(`watch run: ${count} (${folderList(run.folders)})`);
      return { scope: run.folders };
    }
    report.summary(`watch run: the whole tree (${run.why})`);
  }
  // A root replaced without an event that said so is watched anew too.
  watch.checkRoot();
  watch.start();
  watch.take();
  return {};
}

/**
 * Waits until a run is due: the interval's, a watch run's once the source is quiet, or one that
 * `now` asked for; or until a stop. Events and commands end a wait early, and it is worked out
 * again.
 */
async function waitForWork(
  state: LoopState,
  loop: { control: RunControl; sleep: Sleep },
): Promise<void> {
  for (;;) {
    if (loop.control.stopRequested || state.runAgain) return;
    const watchDue = state.watch ? watchDueAt(state.watch) : null;
    const due = Math.min(state.nextRunAt, watchDue ?? Infinity);
    if (due <= Date.now()) return;
    await loop.sleep.until(due);
  }
}

/**
 * Paths that can never be mirrored are a usage error now; a source that is missing may be a
 * disk not yet mounted, so the loop starts and each run says so until it appears.
 */
function checkPathsAtStart(options: Options, report: Reporter): void {
  if (options.remote !== undefined) return; // the far end checks its tree at each run's start
  try {
    checkPaths(options.source, options.replica);
  } catch (error) {
    if (!(error instanceof UsageError) || !sourceMissing(options.source)) throw error;
    report.warn(`${error.message}; runs fail until it appears`);
  }
}

/** Takes the replica lock unless this loop holds it still (a dry run takes none). */
function holdLock(options: Options, control: RunControl): void {
  // A replica on another host is locked there, by each run.
  if (options.dryRun || options.remote?.side === "replica") return;
  takeLock(control, new LocalReplicaStore(options.replica), "existing");
}

/** Carries out one line typed into the loop. */
function obey(
  line: string,
  state: LoopState,
  loop: { control: RunControl; report: Reporter; sleep: Sleep },
): void {
  const answer = answerCommand(parseLoopCommand(line), state);
  if (answer.logged !== undefined) loop.report.summary(answer.logged);
  if (answer.reply !== undefined) writeStdout(`${answer.reply}\n`);
  if (answer.next === "quit") requestStop(loop.control, 1);
  if (answer.next === "run-again" || answer.next === "wake") state.runAgain = true;
  if (answer.next === "quit" || answer.next === "wake") loop.sleep.wake();
}

/**
 * One run of the loop, of the whole tree or of the folders of `scope`. A run that throws gives
 * a summary with one failure, and the loop goes on; only a lock held by another process ends it.
 */
async function loopRun(
  options: Options,
  { report, control }: { report: Reporter; control: RunControl },
  state: LoopState,
  scope: string[] | undefined,
): Promise<{ summary: RunSummary; threw: boolean }> {
  const startedAt = Date.now();
  state.running = true;
  state.totals.runs++;
  const what = scope === undefined ? "" : `, a watch run of ${counted(scope.length, "folder")}`;
  report.fileOnly(
    runStartLine(options, { version: VERSION, run: `run ${state.totals.runs}${what}` }),
  );
  try {
    holdLock(options, control);
    // Each run starts a far end afresh: one that cannot be reached fails this run only.
    const summary = await runAnywhere(options, {
      report,
      control,
      isRoot: isRunningAsRoot(),
      confirmDeletes: () => false,
    }, scope);
    return { summary, threw: false };
  } catch (error) {
    // Another process holds the replica: two loops must not take turns on one replica.
    if (error instanceof LockHeldError) throw error;
    report.error(`Run ${state.totals.runs} failed: ${errorText(error)}`, error);
    const failed = {
      ...emptySummary(options.dryRun),
      failed: 1,
      durationMs: Date.now() - startedAt,
    };
    return { summary: failed, threw: true };
  } finally {
    state.running = false;
  }
}

/** Adds a finished run to the state and totals, and reports it. */
function finishRun(
  options: Options,
  report: Reporter,
  state: LoopState,
  summary: RunSummary,
): void {
  const { totals } = state;
  state.lastRunFailed = summary.failed > 0 || summary.maxDeleteHit || summary.adoptNeeded;
  state.lastRun = summaryLine(summary, state.lastRunFailed ? "last run (failed)" : "last run");
  if (state.lastRunFailed) totals.failedRuns++;
  totals.copied += summary.copied;
  totals.updated += summary.updated;
  totals.moved += summary.moved;
  totals.deleted += summary.deleted;
  totals.bytesCopied += summary.bytesCopied;
  totals.failed += summary.failed;
  // The exit code the loop would give if it stopped now.
  report.runEnd(summaryLine(summary, `run ${totals.runs}`), loopExitCode(state));
  flushLogFile(); // a loop may idle for hours: its log should not
  if (options.json) writeStdout(`${JSON.stringify(summary)}\n`);
}

/** Sets when the next run starts: an interval after the last began, or now if that is past. */
function scheduleNext(
  report: Reporter,
  state: LoopState,
  run: { runStartedAt: number; intervalMs: number; summary: RunSummary },
): void {
  state.nextRunAt = run.runStartedAt + run.intervalMs;
  if (state.nextRunAt - Date.now() <= 0) {
    report.warn(
      `Run ${state.totals.runs} took ${formatDuration(run.summary.durationMs)}, longer than the ` +
        `interval of ${formatDuration(run.intervalMs)}; starting the next one now`,
    );
    state.nextRunAt = Date.now();
  }
}

/** The line logged when a loop exits; its counts are worded as each run's summary words them. */
function totalsLine(totals: LoopTotals, uptimeMs: number): string {
  return `loop totals: ${counted(totals.runs, "run")} (${totals.failedRuns} failed), ` +
    `${changeCounts(totals)}, ${formatBytes(totals.bytesCopied)}, ` +
    `${counted(totals.failed, "failure")}, ` +
    `uptime ${formatDuration(uptimeMs)}`;
}

/**
 * The wait between runs, which `now`, `quit` and signals end early. It waits in chunks of at
 * most {@linkcode WAIT_CHUNK_MS}, each recomputed from the clock: a single timer past 2^31-1 ms
 * (~24.8 days) would fire at once.
 */
class Sleep {
  #wake = () => {};
  /** When the wait under way ends; infinity between waits. */
  untilMs = Infinity;

  /** Resolves once the clock reaches `untilMs`, or at the next {@linkcode Sleep.wake}. */
  until(untilMs: number): Promise<void> {
    this.untilMs = untilMs;
    return new Promise<void>((done) => {
      const tick = () => {
        const ms = nextWaitMs(untilMs, Date.now());
        if (ms > 0) timer = setTimeout(tick, ms);
        else finish();
      };
      const finish = () => {
        clearTimeout(timer);
        this.#wake = () => {};
        this.untilMs = Infinity;
        done();
      };
      let timer = setTimeout(tick, nextWaitMs(untilMs, Date.now()));
      this.#wake = finish;
    });
  }

  /** Ends the wait under way; does nothing between waits. */
  wake(): void {
    this.#wake();
  }
}

/** Characters of a command line kept: the rest of a longer line (a file piped in) is dropped. */
const MAX_COMMAND_CHARS = 1024;

/**
 * Reads lines from stdin as they come and hands each to `onLine`, cut to
 * {@linkcode MAX_COMMAND_CHARS}, until stdin ends or the returned function is called. On a
 * terminal, keys are read one by one (cbreak mode: Ctrl-C still signals) and echoed on a line
 * of their own ({@linkcode TypedLine}), so that the progress line never draws over them.
 */
function listenForCommands(onLine: (line: string) => void): () => void {
  const typed = rawTerminal() ? new TypedLine(onLine) : null;
  const reader = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
  void (typed ? readKeys(reader, typed) : readLines(reader, onLine));
  // A pending read would keep the process alive.
  return () => {
    void reader.cancel().catch(() => {});
    if (typed) {
      typed.close();
      rawTerminal(false);
    }
  };
}

/** Whether a key is text: not a C0 or C1 control character, nor DEL. */
function isPrintable(char: string): boolean {
  const code = char.codePointAt(0)!;
  return code >= 0x20 && (code < 0x7f || code > 0x9f);
}

/**
 * Puts a terminal stdin into cbreak mode or back; false where it cannot, or where stderr (which
 * shows what is typed) is not that terminal too: the terminal's own echo is kept then.
 */
function rawTerminal(on = true): boolean {
  try {
    if (!Deno.stdin.isTerminal() || !Deno.stderr.isTerminal()) return false;
    Deno.stdin.setRaw(on, { cbreak: true });
    return true;
  } catch {
    return false;
  }
}

async function readKeys(reader: ReadableStreamDefaultReader<string>, typed: TypedLine) {
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      typed.keys(value);
    }
  } catch {
    // As for lines: a closed stdin leaves the loop without commands.
  }
}

/**
 * A command line typed on a terminal in cbreak mode: printable keys are added and echoed,
 * Backspace and Ctrl-U edit, Enter hands the line on (echoed above, so the reply follows its
 * command); escape sequences (arrow keys) and other control keys are dropped.
 */
class TypedLine {
  #text = "";
  #inEscape = false;
  readonly #onLine: (line: string) => void;

  constructor(onLine: (line: string) => void) {
    this.#onLine = onLine;
  }

  /** Takes keys as the terminal sent them. */
  keys(chunk: string): void {
    for (const char of chunk) this.#key(char);
    showTypedLine(this.#text === "" ? null : this.#text);
  }

  /** Ends the line shown, if any. */
  close(): void {
    this.#text = "";
    showTypedLine(null);
  }

  #key(char: string): void {
    if (this.#inEscape) {
      // CSI and SS3 sequences end with a letter or `~`; `ESC [` and `ESC O` go on.
      if (/[A-Za-z~]/.test(char) && char !== "O") this.#inEscape = false;
      return;
    }
    if (char === "\r" || char === "\n") {
      if (this.#text === "" && char === "\n") return; // the \n of a \r\n
      const line = this.#text;
      this.#text = "";
      showTypedLine(null);
      if (line !== "") writeStderr(`> ${line}\n`);
      this.#onLine(line);
    } else if (char === "\x7f" || char === "\b") {
      this.#text = Array.from(this.#text).slice(0, -1).join("");
    } else if (char === "\x15") {
      this.#text = "";
    } else if (char === "\x1b") {
      this.#inEscape = true;
    } else if (isPrintable(char) && Array.from(this.#text).length < MAX_COMMAND_CHARS) {
      this.#text += char;
    }
  }
}

async function readLines(
  reader: ReadableStreamDefaultReader<string>,
  onLine: (line: string) => void,
): Promise<void> {
  let pending = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const parts = value.split("\n");
      for (let i = 0; i < parts.length; i++) {
        pending = (pending + parts[i]).slice(0, MAX_COMMAND_CHARS);
        if (i < parts.length - 1) {
          onLine(pending);
          pending = "";
        }
      }
    }
    if (pending !== "") onLine(pending);
  } catch {
    // A closed or broken stdin is the same as its end: the loop goes on without commands.
  }
}
