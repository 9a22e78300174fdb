/**
 * The interval loop: a run every `--interval`, commands on stdin, signals, totals on exit.
 *
 * @module
 */

import { type Options } from "./cli.ts";
import { errorText, ExitCode, UsageError } from "./errors.ts";
import { pathExists } from "./files.ts";
import { escapeControls, formatBytes, formatDuration } from "./format.ts";
import {
  closeLogging,
  flushLogFile,
  progressText,
  type Reporter,
  startProgressLine,
  summaryLine,
  writeStdout,
} from "./log.ts";
import { LockHeldError, metaPaths } from "./meta.ts";
import { checkPaths } from "./places.ts";
import { emptySummary, type RunSummary } from "./plan.ts";
import { isRunningAsRoot, newRunControl, requestStop, runOnce, takeLock } from "./run.ts";

const LOOP_HELP = `Commands (type one and press Enter):
  now       start a run at once
  status    show the last run, the run in progress and when the next starts
  quit      finish the current file, save the record and exit (also q, exit)
  help      show this list`;

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
interface LoopTotals {
  runs: number;
  failedRuns: number;
  copied: number;
  updated: number;
  moved: number;
  deleted: number;
  bytesCopied: number;
  failed: number;
}

function addToTotals(totals: LoopTotals, summary: RunSummary): void {
  totals.copied += summary.copied;
  totals.updated += summary.updated;
  totals.moved += summary.moved;
  totals.deleted += summary.deleted;
  totals.bytesCopied += summary.bytesCopied;
  totals.failed += summary.failed;
}

/** Characters of a command line kept: the rest of a longer line (a file piped in) is dropped. */
const MAX_COMMAND_CHARS = 1024;

/**
 * Reads lines from stdin as they come and hands each to `onLine`, cut to
 * {@linkcode MAX_COMMAND_CHARS}; returns at end of file.
 */
async function readCommandLines(onLine: (line: string) => void): Promise<void> {
  const reader = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
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

/**
 * Runs a mirror every `options.intervalMs`, start to start, until `quit` or a signal. Stdin
 * takes commands; its end is not a quit (cron and systemd give none). The lock is held for the
 * loop's whole life.
 *
 * @returns 0 if the last run succeeded, 1 if it failed, 130 or 143 after a signal.
 */
export async function runLoop(options: Options, report: Reporter): Promise<number> {
  const intervalMs = options.intervalMs!;
  const control = newRunControl();
  const startedAt = Date.now();
  const totals: LoopTotals = {
    runs: 0,
    failedRuns: 0,
    copied: 0,
    updated: 0,
    moved: 0,
    deleted: 0,
    bytesCopied: 0,
    failed: 0,
  };
  // Assigned inside closures, which TypeScript's narrowing does not follow.
  let lastSummary: RunSummary | null = null;
  let lastRunFailed = false;
  let running = false;
  let runAgain = false;
  let nextRunAt = startedAt;
  let exitCode: number | null = null;
  let wake = () => {};

  // The lock is held for the loop's life (each run takes it again if the replica was deleted
  // with it). A second loop on the same replica is refused now, if the lock file exists; on a
  // new replica the first run makes it.
  control.keepLock = true;
  const holdLock = () => {
    if (!options.dryRun) takeLock(control, metaPaths(options.replica), "existing");
  };

  // Paths that can never be mirrored are a usage error now; a source that is missing may be
  // a disk not yet mounted, so the loop starts and each run says so until it appears.
  try {
    checkPaths(options.source, options.replica);
  } catch (error) {
    const sourceMissing = !pathExists(options.source);
    if (!(error instanceof UsageError) || !sourceMissing) throw error;
    report.warn(`${error.message}; runs fail until it appears`);
  }
  holdLock();

  const onCommand = (line: string) => {
    const command = parseLoopCommand(line);
    if (command.kind === "quit") {
      report.summary(running ? "quit: finishing the current file" : "quit");
      requestStop(control, 1);
      wake();
    } else if (command.kind === "now") {
      if (running) {
        runAgain = true;
        writeStdout("A run is in progress; the next starts as soon as it ends\n");
      } else wake();
    } else if (command.kind === "status") {
      writeStdout(`${statusText()}\n`);
    } else if (command.kind === "help") {
      writeStdout(`${LOOP_HELP}\n`);
    } else if (command.kind === "unknown") {
      writeStdout(`${command.reply}\n`);
    }
  };
  const statusText = () => {
    const lines = [
      lastSummary
        ? summaryLine(lastSummary, lastRunFailed ? "last run (failed)" : "last run")
        : "last run: none yet",
    ];
    lines.push(
      running
        ? `run in progress: ${progressText(control.progress)}`
        : `next run in ${formatDuration(Math.max(0, nextRunAt - Date.now()))} ` +
          `(${new Date(nextRunAt).toISOString()})`,
    );
    lines.push(`runs: ${totals.runs}, uptime ${formatDuration(Date.now() - startedAt)}`);
    return lines.join("\n");
  };
  void readCommandLines(onCommand);
  const stopProgress = startProgressLine(() => control.progress, options);

  const onSignal = (signal: "SIGINT" | "SIGTERM") => () => {
    if (signal === "SIGINT" && exitCode === ExitCode.Interrupted) {
      // A second Ctrl-C: stop now. Whatever was being copied stays in the temporary folder,
      // never under its final name, and the next run clears it.
      control.lock?.release();
      void closeLogging().finally(() => Deno.exit(ExitCode.Interrupted));
      return;
    }
    exitCode = signal === "SIGINT" ? ExitCode.Interrupted : ExitCode.Terminated;
    report.warn(`${signal}: finishing the current file, then exiting`);
    requestStop(control, 1);
    wake();
  };
  const handlers = { SIGINT: onSignal("SIGINT"), SIGTERM: onSignal("SIGTERM") } as const;
  for (const [signal, handler] of Object.entries(handlers)) {
    Deno.addSignalListener(signal as Deno.Signal, handler);
  }

  try {
    while (!control.stopRequested) {
      const runStartedAt = Date.now();
      running = true;
      totals.runs++;
      let summary: RunSummary;
      try {
        holdLock();
        summary = await runOnce(options, {
          report,
          control,
          isRoot: isRunningAsRoot(),
          confirmDeletes: () => false,
        });
      } catch (error) {
        // Another process holds the replica: two loops must not take turns on one replica.
        if (error instanceof LockHeldError) throw error;
        report.error(`Run ${totals.runs} failed: ${errorText(error)}`, error);
        summary = { ...emptySummary(options.dryRun), failed: 1 };
        summary.durationMs = Date.now() - runStartedAt;
      }
      running = false;
      lastSummary = summary;
      lastRunFailed = summary.failed > 0 || summary.maxDeleteHit;
      if (lastRunFailed) totals.failedRuns++;
      addToTotals(totals, summary);
      report.summary(summaryLine(summary, `run ${totals.runs}`));
      flushLogFile(); // a loop may idle for hours: its log should not
      if (options.json) writeStdout(`${JSON.stringify(summary)}\n`);
      if (control.stopRequested) break;

      nextRunAt = runStartedAt + intervalMs;
      const waitMs = nextRunAt - Date.now();
      if (waitMs <= 0) {
        report.warn(
          `Run ${totals.runs} took ${formatDuration(summary.durationMs)}, longer than the ` +
            `interval of ${formatDuration(intervalMs)}; starting the next one now`,
        );
        nextRunAt = Date.now();
      }
      if (runAgain) {
        runAgain = false;
        continue;
      }
      // Waited in chunks of at most an hour, each recomputed from the clock: a single timer
      // past 2^31-1 ms (~24.8 days) would fire at once. `now`, `quit` and signals wake it.
      await new Promise<void>((done) => {
        const tick = () => {
          const ms = nextWaitMs(nextRunAt, Date.now());
          if (ms > 0) timer = setTimeout(tick, ms);
          else done();
        };
        let timer = setTimeout(tick, nextWaitMs(nextRunAt, Date.now()));
        wake = () => {
          clearTimeout(timer);
          done();
        };
      });
      wake = () => {};
    }
  } finally {
    stopProgress();
    for (const [signal, handler] of Object.entries(handlers)) {
      Deno.removeSignalListener(signal as Deno.Signal, handler);
    }
    control.lock?.release();
    control.lock = null;
    report.summary(
      `loop totals: ${totals.runs} runs (${totals.failedRuns} failed), ${totals.copied} copied, ` +
        `${totals.updated} updated, ${totals.moved} moved, ${totals.deleted} deleted, ` +
        `${formatBytes(totals.bytesCopied)}, ${totals.failed} failures, ` +
        `uptime ${formatDuration(Date.now() - startedAt)}`,
    );
  }
  return exitCode ?? (lastRunFailed ? ExitCode.Failed : ExitCode.Ok);
}
