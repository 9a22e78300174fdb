/**
 * One run from the command line: signals, the `--interactive` question on the terminal, the
 * summary and the exit code.
 *
 * @module
 */

import { type Options } from "./cli.ts";
import { ExitCode } from "./errors.ts";
import { counted } from "./format.ts";
import {
  type Reporter,
  runStartLine,
  startProgressLine,
  summaryLine,
  writeStderr,
  writeStdout,
} from "./log.ts";
import { newRunControl } from "./control.ts";
import { runAnywhere } from "./passes.ts";
import { isRunningAsRoot } from "./run.ts";
import { listenForStops } from "./signals.ts";
import { type RunSummary } from "./summary.ts";
import { VERSION } from "./version.ts";

/**
 * Runs one mirror (or dry run, or restore) and prints its summary.
 *
 * @returns 0 when the result matches, 1 when it does not, 3 when `--max-delete` or a replica
 *   not adopted held deletions back, 130 or 143 after a signal.
 */
export async function runOneShot(options: Options, report: Reporter): Promise<number> {
  const control = newRunControl();
  let interrupted: number | null = null;
  const stopListening = listenForStops(control, report, (exitCode) => interrupted = exitCode);
  const stopProgress = options.interactive
    ? () => {}
    : startProgressLine(() => control.progress, options);
  report.fileOnly(runStartLine(options, { version: VERSION }));
  try {
    const summary = await runAnywhere(options, {
      report,
      control,
      isRoot: isRunningAsRoot(),
      confirmDeletes: confirmOnTerminal,
    });
    stopProgress();
    const exitCode = interrupted ?? exitCodeFor(summary);
    report.runEnd(
      summaryLine(summary, options.dryRun ? "dry run" : options.restore ? "restore" : "sync"),
      exitCode,
    );
    if (options.json) writeStdout(`${JSON.stringify(summary)}\n`);
    return exitCode;
  } finally {
    stopProgress();
    stopListening();
  }
}

function exitCodeFor(summary: RunSummary): number {
  if (summary.maxDeleteHit || summary.adoptNeeded) return ExitCode.Refused;
  // Deletions declined at -I leave a replica that does not match the source.
  return summary.failed > 0 || summary.deletionsHeldBack > 0 ? ExitCode.Failed : ExitCode.Ok;
}

/** Asks on the terminal whether to delete `count` entries, showing `sample`; true deletes. */
function confirmOnTerminal(count: number, sample: string[]): boolean {
  writeStderr(
    `${counted(count, "entry", "entries")} would be deleted from the replica, among them:\n`,
  );
  for (const path of sample) writeStderr(`  ${path}\n`);
  if (count > sample.length) writeStderr(`  ... and ${count - sample.length} more\n`);
  writeStderr("Delete them? [y/N] ");
  return /^y(es)?$/i.test(readAnswer());
}

/** One line typed on the terminal, read byte by byte so nothing after it is consumed. */
function readAnswer(): string {
  const buffer = new Uint8Array(1);
  const bytes: number[] = [];
  while (true) {
    const count = Deno.stdin.readSync(buffer);
    if (count === null || count === 0 || buffer[0] === 10) break;
    bytes.push(buffer[0]!);
  }
  return new TextDecoder().decode(new Uint8Array(bytes)).trim();
}
