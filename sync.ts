/**
 * treesync — a one-way folder mirror for servers. This is the entry: it reads the command line
 * and the environment, picks the mode (one run, the loop, `--verify`) and turns the outcome into
 * an exit code. The engine lives in `src/` (docs/development.md has the map).
 *
 * Mirrors SOURCE into REPLICA so that the replica matches it exactly: new and changed files are
 * copied, extraneous entries deleted, folders (empty ones too), symlinks, modes and mtimes kept.
 * A file record in `REPLICA/.treesync/` remembers the SHA-256 of what was copied, so a replica
 * can be verified later.
 *
 * ```sh
 * deno task sync /srv/data /backup/data               # one run, exit code says how it went
 * deno task sync --interval 5m /srv/data /backup/data # a run every five minutes
 * deno task sync --watch /srv/data /backup/data      # each change within seconds, all hourly
 * deno task sync backup:/srv/data /mnt/copy         # a pull over ssh (treesync --serve there)
 * ```
 *
 * Options follow `deno task sync` directly, with no `--`: Deno hands a `--` on, and here it ends
 * the options, so whatever follows it is a path.
 *
 * @module
 */

import { dirname, isAbsolute } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type Command,
  type Environment,
  type Options,
  parseCommandLine,
  readExcludeFiles,
  USAGE,
} from "./src/cli.ts";
import { errorText, ExitCode, RefusedError, UsageError } from "./src/errors.ts";
import { quoted } from "./src/format.ts";
import {
  closeLogging,
  type Reporter,
  runEndLine,
  setUpLogging,
  writeStderr,
  writeStdout,
} from "./src/log.ts";
import { runLoop } from "./src/loop.ts";
import { runOneShot } from "./src/oneshot.ts";
import { RemoteError } from "./src/remote/client.ts";
import { verifyFar } from "./src/remote/far.ts";
import { FrameError } from "./src/remote/frames.ts";
import { newRunControl } from "./src/control.ts";
import { serveStdio } from "./src/remote/serve_stdio.ts";
import { checkLogPlace } from "./src/sides/local/places.ts";
import { runVerify } from "./src/verify.ts";
import { VERSION } from "./src/version.ts";

/** What every mode reports through: the console and the log file, set up by `main`. */
export type { Reporter } from "./src/log.ts";

export { VERSION } from "./src/version.ts";

/**
 * Runs the command line and returns the exit code. Only this function reads the
 * environment and the terminal.
 */
export async function main(args: string[]): Promise<number> {
  let command: Command;
  try {
    command = parseCommandLine(args, readEnvironment(), callerFolder());
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    // One line, the hint folded in: scripts and logs keep the message whole.
    writeStderr(`treesync: ${error.message} (see 'treesync --help')\n`);
    return ExitCode.Usage;
  }
  if (command.kind === "help") {
    writeStdout(`${USAGE}\n`);
    return ExitCode.Ok;
  }
  if (command.kind === "version") {
    writeStdout(`treesync ${VERSION} (deno ${Deno.version.deno}, ${Deno.build.target})\n`);
    return ExitCode.Ok;
  }
  // The far end: its stdout is the session's, never a line of ours.
  if (command.kind === "serve") return await serveStdio({ root: command.root });
  let options: Options;
  try {
    // Once, before anything is written: the loop keeps the rules read now.
    options = readExcludeFiles(command.options);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    writeStderr(`treesync: ${error.message}\n`);
    return ExitCode.Usage;
  }
  if (options.interactive && !Deno.stdin.isTerminal()) {
    writeStderr("treesync: --interactive needs a terminal to ask on; run it by hand, or drop -I\n");
    return ExitCode.Usage;
  }
  try {
    checkLogPlace(options);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    writeStderr(`treesync: ${error.message}\n`);
    return ExitCode.Usage;
  }
  let report: Reporter;
  try {
    report = await setUpLogging(options);
  } catch (error) {
    const shown = quoted(String(options.logPath));
    writeStderr(`treesync: Cannot open the log file ${shown}: ${errorText(error)}\n`);
    return ExitCode.Usage;
  }
  try {
    if (options.verify) {
      // A replica on another host is verified there: only the findings travel.
      if (!options.remote) return await runVerify(options, report);
      return await verifyFar(options, { report, control: newRunControl() });
    }
    if (options.intervalMs !== null) return await runLoop(options, report);
    return await runOneShot(options, report);
  } catch (error) {
    const exitCode = reportFailure(report, error);
    // The run's start line is in the log: its end says how it ended.
    report.fileOnly(runEndLine("stopped by the error above", exitCode));
    return exitCode;
  } finally {
    await closeLogging();
  }
}

/**
 * The folder relative paths mean: where the command was typed. `deno task` runs its command in
 * the folder of `deno.json` and passes the caller's folder in `INIT_CWD`; that is used only
 * when this process runs in the folder holding this file (the checkout, where `deno task` puts
 * it), so an `INIT_CWD` inherited by a command started elsewhere never moves the paths.
 */
function callerFolder(): string {
  const cwd = Deno.cwd();
  // Asked first, so a run without the permission neither prompts nor fails.
  if (Deno.permissions.querySync({ name: "env", variable: "INIT_CWD" }).state !== "granted") {
    return cwd;
  }
  const initCwd = Deno.env.get("INIT_CWD");
  if (initCwd === undefined || !isAbsolute(initCwd)) return cwd;
  try {
    const checkout = Deno.realPathSync(dirname(fileURLToPath(import.meta.url)));
    if (Deno.realPathSync(cwd) !== checkout) return cwd;
    return Deno.statSync(initCwd).isDirectory ? initCwd : cwd;
  } catch {
    return cwd; // a compiled binary's own path is not a folder here
  }
}

/** Reports what stopped a run and returns its exit code. */
function reportFailure(report: Reporter, error: unknown): number {
  if (error instanceof UsageError) {
    report.error(error.message);
    return ExitCode.Usage;
  }
  if (error instanceof RefusedError) {
    report.error(error.message);
    return ExitCode.Refused;
  }
  if (error instanceof FrameError || (error instanceof RemoteError && error.kind === 0)) {
    // The far end went away or garbled the session: the next run starts it afresh.
    report.error(`Lost the session with the far end: ${error.message}`);
    return ExitCode.Failed;
  }
  report.error(`Unexpected failure: ${errorText(error)}`, error);
  return ExitCode.Failed;
}

function readEnvironment(): Environment {
  const env: Environment = {};
  const names = ["TREESYNC_SOURCE", "TREESYNC_REPLICA", "TREESYNC_LOG", "TREESYNC_RSH"] as const;
  for (const name of names) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
