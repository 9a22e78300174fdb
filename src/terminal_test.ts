/**
 * treesync as people start it: under `deno task` on a terminal (Ctrl-C typed into a
 * pseudo-terminal, or SIGINT sent to the whole process group as a terminal does), the loop's
 * console on a terminal, and the launcher `deno task install` puts on PATH.
 *
 * @module
 */

import { deepStrictEqual, match, ok } from "node:assert/strict";
import { dirname } from "node:path";
import { syncTaskFlags } from "../tools/install.ts";
import { pathExists } from "./files.ts";
import { localTime, localTimestamp } from "./format.ts";
import { idleProgress, progressText } from "./log.ts";
import {
  assertExit,
  CAN_HOLD_OPEN,
  type CliResult,
  collect,
  copiesInFlight,
  holdOpen,
  readTree,
  RunningCli,
  SYNC_FLAGS,
  SYNC_MODULE,
  withTemp,
  writeTree,
} from "./test_helpers.ts";

/** The checkout: `deno task` runs here. */
const CHECKOUT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** A PATH that finds this `deno` and the usual tools, and nothing of the caller's. */
const PATH = `${dirname(Deno.execPath())}:/usr/local/bin:/usr/bin:/bin`;

/** A clean environment: this PATH, no colours, and where Deno keeps its cache. */
function baseEnv(): Record<string, string> {
  const env: Record<string, string> = { PATH, NO_COLOR: "1" };
  for (const name of ["HOME", "DENO_DIR"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** Whether `script` (util-linux) can give a command a pseudo-terminal here. */
const HAS_SCRIPT = (() => {
  try {
    return new Deno.Command("script", { args: ["-qec", "true", "/dev/null"] }).outputSync()
      .success;
  } catch {
    return false;
  }
})();

/** Quotes one word for `sh -c`. */
function shellWord(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/**
 * Starts `command` on a pseudo-terminal of its own (`script -qec`), as from a terminal: what is
 * written to its stdin is typed there (`\x03` is Ctrl-C, which the terminal turns into SIGINT
 * for its whole foreground process group); stdout is the terminal's screen.
 */
function onTerminal(command: string[], options: { cwd?: string } = {}): RunningCli {
  const child = new Deno.Command("script", {
    args: ["-qec", command.map(shellWord).join(" "), "/dev/null"],
    cwd: options.cwd ?? CHECKOUT,
    env: { ...baseEnv(), TERM: "dumb" },
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return new RunningCli(child);
}

/** Starts `command` in a process group of its own (its pid is the group's id), stdin closed. */
function inOwnGroup(command: string[]): RunningCli {
  const child = new Deno.Command("setsid", {
    args: command,
    cwd: CHECKOUT,
    env: baseEnv(),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return new RunningCli(child, { stdin: "null" });
}

/** Screen text with the terminal's carriage returns and progress redraws taken out. */
function screenText(text: string): string {
  return text.replace(/\r?\n/g, "\n").replaceAll("\r\x1b[2K", "").replace(/\r/g, "");
}

/** The file whose copy a test holds at its start ({@linkcode holdOpen}) while it types. */
const BIG = "x".repeat(3 << 20);

// ------------------------------------------------------------------------------------------------
// Ctrl-C under `deno task`
// ------------------------------------------------------------------------------------------------

// Regression: the terminal's SIGINT and the copy `deno task` forwards came as two presses, and
// the file in flight was abandoned.
Deno.test({
  name: "terminal: one Ctrl-C under deno task finishes the file in flight and exits 130",
  ignore: !HAS_SCRIPT || !CAN_HOLD_OPEN,
  fn: async () => {
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { big: BIG });
      await using held = await holdOpen(`${dir}/s/big`);
      const run = onTerminal([Deno.execPath(), "task", "sync", `${dir}/s`, `${dir}/r`]);
      await run.waitFor(() => held.wanted, "the copy to start");
      await run.type("\x03");
      await run.waitFor(() => /SIGINT: finishing/.test(run.stdout), "the acknowledgement");
      await held.release();
      deepStrictEqual(await run.exitCode(), 130, run.stdout);
      const screen = screenText(run.stdout);
      // The terminal echoes the key as ^C.
      match(screen, /^(\^C)?warning: SIGINT: finishing the current file, then exiting/m);
      ok(!/abandoning/.test(screen), screen);
      deepStrictEqual(Deno.readTextFileSync(`${dir}/r/big`), BIG, "the file in flight completed");
    });
  },
});

Deno.test({
  name: "terminal: one Ctrl-C under deno task finishes a loop's file in flight and exits 130",
  ignore: !HAS_SCRIPT || !CAN_HOLD_OPEN,
  fn: async () => {
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { big: BIG });
      await using held = await holdOpen(`${dir}/s/big`);
      const args = ["task", "sync", "-i", "1h", `${dir}/s`, `${dir}/r`];
      const loop = onTerminal([Deno.execPath(), ...args]);
      await loop.waitFor(() => held.wanted, "the copy to start");
      await loop.type("\x03");
      await loop.waitFor(() => /SIGINT: finishing/.test(loop.stdout), "the acknowledgement");
      await held.release();
      deepStrictEqual(await loop.exitCode(), 130, loop.stdout);
      ok(!/abandoning/.test(screenText(loop.stdout)), loop.stdout);
      deepStrictEqual(Deno.readTextFileSync(`${dir}/r/big`), BIG, "the file in flight completed");
    });
  },
});

Deno.test({
  name: "terminal: SIGINT to the process group of deno task finishes a loop's file and exits 130",
  ignore: !HAS_SCRIPT || !CAN_HOLD_OPEN,
  fn: async () => {
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { big: BIG });
      await using held = await holdOpen(`${dir}/s/big`);
      const loop = inOwnGroup([
        Deno.execPath(),
        "task",
        "sync",
        "-i",
        "1h",
        `${dir}/s`,
        `${dir}/r`,
      ]);
      await loop.waitFor(() => held.wanted, "the copy to start");
      Deno.kill(-loop.child.pid, "SIGINT");
      await loop.waitFor(() => /SIGINT: finishing/.test(loop.stderr), "the acknowledgement");
      await held.release();
      deepStrictEqual(await loop.exitCode(), 130, loop.stderr);
      match(loop.stderr, /^warning: SIGINT: finishing the current file, then exiting/m);
      ok(!/abandoning/.test(loop.stderr), loop.stderr);
      deepStrictEqual(Deno.readTextFileSync(`${dir}/r/big`), BIG, "the file in flight completed");
    });
  },
});

Deno.test({
  name: "terminal: Ctrl-C pressed again after the first was acknowledged abandons the file",
  ignore: !HAS_SCRIPT || !CAN_HOLD_OPEN,
  fn: async () => {
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { big: BIG });
      await using held = await holdOpen(`${dir}/s/big`);
      const run = onTerminal([Deno.execPath(), "task", "sync", `${dir}/s`, `${dir}/r`]);
      await run.waitFor(() => held.wanted, "the copy to start");
      await run.type("\x03");
      await run.waitFor(() => /SIGINT: finishing/.test(run.stdout), "the acknowledgement");
      // Presses within a second of the acknowledgement are the same press: press until one
      // is taken as a second.
      let pressedAt = 0;
      await run.waitFor(() => {
        if (Date.now() - pressedAt > 250) {
          pressedAt = Date.now();
          void run.type("\x03");
        }
        return /SIGINT again: abandoning/.test(run.stdout);
      }, "the second press");
      await held.release();
      deepStrictEqual(await run.exitCode(), 130, run.stdout);
      ok(!copiesInFlight(`${dir}/r`).includes("big"));
      deepStrictEqual(Array.from(Deno.readDirSync(`${dir}/r`)).map((item) => item.name), [
        ".treesync",
      ]);
    });
  },
});

// ------------------------------------------------------------------------------------------------
// The launcher of `deno task install`
// ------------------------------------------------------------------------------------------------

/** Runs `deno task -q install FOLDER` in the checkout. */
async function install(folder: string): Promise<CliResult> {
  return await collect(
    new Deno.Command(Deno.execPath(), {
      args: ["task", "-q", "install", folder],
      cwd: CHECKOUT,
      env: baseEnv(),
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).spawn(),
  );
}

/** Runs the launcher at `path` in `cwd` as cron would: no HOME, a bare PATH. */
async function launch(path: string, args: string[], cwd: string): Promise<CliResult> {
  return await collect(
    new Deno.Command(path, {
      args,
      cwd,
      env: { PATH: "/usr/bin:/bin", NO_COLOR: "1" },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).spawn(),
  );
}

Deno.test("install: the launcher mirrors relative paths from the caller's folder, exit codes kept", async () => {
  await withTemp(async (dir) => {
    Deno.mkdirSync(`${dir}/bin`);
    assertExit(await install(`${dir}/bin`), 0);
    writeTree(`${dir}/work/s`, { sub: { f: "hello" } });
    const first = await launch(`${dir}/bin/treesync`, ["s", "r"], `${dir}/work`);
    assertExit(first, 0);
    deepStrictEqual(readTree(`${dir}/work/r`), { sub: { f: "hello" } });
    ok(!/Task/.test(first.stdout + first.stderr), "no Task line");
    assertExit(await launch(`${dir}/bin/treesync`, ["--no-such-option"], `${dir}/work`), 2);
    // An emptied source is refused: 3, the replica kept.
    Deno.removeSync(`${dir}/work/s/sub`, { recursive: true });
    assertExit(await launch(`${dir}/bin/treesync`, ["s", "r"], `${dir}/work`), 3);
    deepStrictEqual(readTree(`${dir}/work/r`), { sub: { f: "hello" } });
  });
});

Deno.test("install: the launcher runs sync.ts with the sync task's flags, deno by its full path", async () => {
  await withTemp(async (dir) => {
    assertExit(await install(dir), 0);
    const text = Deno.readTextFileSync(`${dir}/treesync`);
    const config = JSON.parse(Deno.readTextFileSync(`${CHECKOUT}/deno.json`));
    const task: string[] = config.tasks.sync.split(/\s+/);
    const flags = task.slice(2, task.indexOf("sync.ts"));
    ok(flags.some((flag) => flag.startsWith("--v8-flags=")), "the heap flags are in the task");
    deepStrictEqual(syncTaskFlags(config), flags);
    const exec = text.split("\n").find((line) => line.startsWith("exec "));
    deepStrictEqual(
      exec,
      `exec ${Deno.execPath()} run --quiet --config ${CHECKOUT}/deno.json ${flags.join(" ")} ` +
        `${CHECKOUT}/sync.ts "$@"`,
    );
  });
});

Deno.test("install: refuses to replace what it did not make, replaces its own launcher", async () => {
  await withTemp(async (dir) => {
    Deno.writeTextFileSync(`${dir}/treesync`, "#!/bin/sh\necho another program\n");
    const refused = await install(dir);
    assertExit(refused, 2);
    match(refused.stderr, /^install: Not replacing '.*\/treesync': it is a file, not a /m);
    deepStrictEqual(Deno.readTextFileSync(`${dir}/treesync`), "#!/bin/sh\necho another program\n");
    Deno.removeSync(`${dir}/treesync`);
    Deno.symlinkSync(`${dir}/elsewhere`, `${dir}/treesync`);
    match((await install(dir)).stderr, /it is a link, not a launcher/);
    ok(!pathExists(`${dir}/elsewhere`), "nothing written through the link");
    Deno.removeSync(`${dir}/treesync`);
    assertExit(await install(dir), 0);
    assertExit(await install(dir), 0);
    deepStrictEqual(Array.from(Deno.readDirSync(dir)).map((item) => item.name), ["treesync"]);
    assertExit(await install(`${dir}/missing`), 2);
    // Regression: an empty FOLDER (an unset variable) installed into the caller's folder.
    const compiled = pathExists(`${CHECKOUT}/treesync`);
    const empty = await install("");
    assertExit(empty, 2);
    match(empty.stderr, /^install: the FOLDER is empty/m);
    deepStrictEqual(
      pathExists(`${CHECKOUT}/treesync`),
      compiled,
      "nothing installed in the checkout",
    );
  });
});

// ------------------------------------------------------------------------------------------------
// The loop's console
// ------------------------------------------------------------------------------------------------

Deno.test({
  name:
    "terminal: the loop says once that it takes commands, and keeps the progress line off what is typed",
  ignore: !HAS_SCRIPT || !CAN_HOLD_OPEN,
  fn: async () => {
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { big: BIG });
      // The copy is held at its start while keys are typed and the line is drawn again.
      await using held = await holdOpen(`${dir}/s/big`);
      const loop = onTerminal([
        Deno.execPath(),
        "run",
        "--quiet",
        ...SYNC_FLAGS,
        SYNC_MODULE,
        "-i",
        "1h",
        `${dir}/s`,
        `${dir}/r`,
      ]);
      const hint = "type 'help' for commands (now, status, quit)";
      await loop.waitFor(() => loop.stdout.includes(hint), "the hint");
      // The progress line is drawn once a run has lasted a second.
      const drawn = () =>
        ["copying", "walking"].some((what) => loop.stdout.includes(`\x1b[2K${what} `));
      await loop.waitFor(drawn, "progress");
      await loop.type("sta");
      await loop.waitFor(() => loop.stdout.includes("> sta"), "the typed keys to show");
      const typedAt = loop.stdout.indexOf("> sta");
      // Output meanwhile (the acknowledgement of Ctrl-C) comes above it, and it is drawn again.
      await loop.type("\x03");
      await loop.waitFor(
        () => /SIGINT: finishing[^\n]*\n[^]*> sta/.test(loop.stdout.slice(typedAt)),
        "the typed line drawn again after the acknowledgement",
      );
      // The progress line is drawn every 250 ms: four turns pass while the keys are shown.
      const redrawnAt = Date.now();
      await loop.waitFor(() => Date.now() - redrawnAt > 1_000, "the progress line's turns");
      await held.release();
      deepStrictEqual(await loop.exitCode(), 130, loop.stdout);
      const whileTyped = loop.stdout.slice(typedAt);
      // The file was still being copied for a second: no progress line drew over the keys.
      ok(!/(copying|walking) \d/.test(whileTyped), JSON.stringify(whileTyped));
      deepStrictEqual(loop.stdout.split(hint).length - 1, 1, "the hint, once");
      deepStrictEqual(Deno.readTextFileSync(`${dir}/r/big`), BIG);
    });
  },
});

Deno.test("terminal: now is acknowledged; status and the log show local times with their offset", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "x" });
    const loop = new RunningCli(["-i", "1h", "--log", `${dir}/log`, `${dir}/s`, `${dir}/r`], {
      env: { TZ: "Asia/Kolkata" },
    });
    await loop.waitFor(() => loop.runs === 1, "the first run");
    await loop.send("status");
    const at = /^next run in (59m \d+s|1h) \(at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+05:30\)$/m;
    await loop.waitFor(() => at.test(loop.stdout), "status with the local time");
    await loop.send("now");
    await loop.waitFor(() => loop.runs === 2, "the run that now started");
    match(loop.stdout, /^now: starting a run$/m);
    await loop.send("quit");
    deepStrictEqual(await loop.exitCode(), 0);
    const log = Deno.readTextFileSync(`${dir}/log`);
    match(
      log,
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+05:30 INFO +\[\d+\] run end: run 2: /m,
    );
  });
});

Deno.test("localTime() and localTimestamp() show the offset; progress during a walk says what is known", () => {
  const moment = Date.UTC(2026, 11, 2, 9, 15, 0, 123);
  deepStrictEqual(localTime(moment, 60), "2026-12-02 10:15:00 +01:00");
  deepStrictEqual(localTime(moment, -330), "2026-12-02 03:45:00 -05:30");
  deepStrictEqual(localTime(moment, -600), "2026-12-01 23:15:00 -10:00");
  deepStrictEqual(localTimestamp(moment, 0), "2026-12-02T09:15:00.123+00:00");
  deepStrictEqual(localTimestamp(moment, 330), "2026-12-02T14:45:00.123+05:30");
  const walking = {
    ...idleProgress(),
    phase: "copying" as const,
    walking: true,
    walked: 12_345,
    done: 3,
    total: 5,
    bytes: 2 * 1024 ** 2,
    totalBytes: 6 * 1024 ** 2,
    current: "a/b",
    startedAt: 0,
  };
  deepStrictEqual(
    progressText(walking, 42_000),
    "walking 12345 entries, 3/5+ changes, 2.0 MiB of 6.0 MiB+, 48.8 KiB/s, 42s, a/b",
  );
  deepStrictEqual(
    progressText(
      { ...walking, walked: 0, done: 0, total: 0, bytes: 0, totalBytes: 0, current: "" },
      2_000,
    ),
    "walking 0 entries, 0/0+ changes, 0 B of 0 B+, 0 B/s, 2s",
  );
});
