/**
 * treesync as people start it: under `deno task` on a terminal (Ctrl-C typed into a
 * pseudo-terminal, or SIGINT sent to the whole process group as a terminal does), the loop's
 * console on a terminal, and the launcher `deno task install` puts on PATH.
 *
 * @module
 */

import { dirname } from "node:path";
import {
  assert,
  assertEquals,
  assertMatch,
  copiesInFlight,
  makeSparseFile,
  RunningCli,
  withTemp,
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
  return text.replace(/\r?\n/g, "\n").replace(/\r\x1b\[2K/g, "").replace(/\r/g, "");
}

const BIG = 256 * 2 ** 20;

// ------------------------------------------------------------------------------------------------
// Ctrl-C under `deno task`
// ------------------------------------------------------------------------------------------------

// Regression: the terminal's SIGINT and the copy `deno task` forwards came as two presses, and
// the file in flight was abandoned.
Deno.test({
  name: "terminal: one Ctrl-C under deno task finishes the file in flight and exits 130",
  ignore: !HAS_SCRIPT,
  fn: async () => {
    await withTemp(async (dir) => {
      await makeSparseFile(`${dir}/s/big`, BIG);
      const run = onTerminal([Deno.execPath(), "task", "sync", `${dir}/s`, `${dir}/r`]);
      await run.waitFor(() => copiesInFlight(`${dir}/r`).length > 0, "the copy to start");
      await run.send("\x03");
      assertEquals(await run.exitCode(), 130, run.stdout);
      const screen = screenText(run.stdout);
      assertMatch(screen, /^warning: SIGINT: finishing the current file, then exiting/m);
      assert(!/abandoning/.test(screen), screen);
      assertEquals(Deno.statSync(`${dir}/r/big`).size, BIG, "the file in flight completed");
    });
  },
});

Deno.test({
  name: "terminal: one Ctrl-C under deno task finishes a loop's file in flight and exits 130",
  ignore: !HAS_SCRIPT,
  fn: async () => {
    await withTemp(async (dir) => {
      await makeSparseFile(`${dir}/s/big`, BIG);
      const args = ["task", "sync", "-i", "1h", `${dir}/s`, `${dir}/r`];
      const loop = onTerminal([Deno.execPath(), ...args]);
      await loop.waitFor(() => copiesInFlight(`${dir}/r`).length > 0, "the copy to start");
      await loop.send("\x03");
      assertEquals(await loop.exitCode(), 130, loop.stdout);
      assert(!/abandoning/.test(screenText(loop.stdout)), loop.stdout);
      assertEquals(Deno.statSync(`${dir}/r/big`).size, BIG, "the file in flight completed");
    });
  },
});

Deno.test({
  name: "terminal: SIGINT to the process group of deno task finishes a loop's file and exits 130",
  ignore: !HAS_SCRIPT,
  fn: async () => {
    await withTemp(async (dir) => {
      await makeSparseFile(`${dir}/s/big`, BIG);
      const loop = inOwnGroup([
        Deno.execPath(),
        "task",
        "sync",
        "-i",
        "1h",
        `${dir}/s`,
        `${dir}/r`,
      ]);
      await loop.waitFor(() => copiesInFlight(`${dir}/r`).length > 0, "the copy to start");
      Deno.kill(-loop.child.pid, "SIGINT");
      assertEquals(await loop.exitCode(), 130, loop.stderr);
      assertMatch(loop.stderr, /^warning: SIGINT: finishing the current file, then exiting/m);
      assert(!/abandoning/.test(loop.stderr), loop.stderr);
      assertEquals(Deno.statSync(`${dir}/r/big`).size, BIG, "the file in flight completed");
    });
  },
});

Deno.test({
  name: "terminal: Ctrl-C pressed again after the first was acknowledged abandons the file",
  ignore: !HAS_SCRIPT,
  fn: async () => {
    await withTemp(async (dir) => {
      await makeSparseFile(`${dir}/s/big`, 4 * 2 ** 30);
      const run = onTerminal([Deno.execPath(), "task", "sync", `${dir}/s`, `${dir}/r`]);
      await run.waitFor(() => copiesInFlight(`${dir}/r`).length > 0, "the copy to start");
      await run.send("\x03");
      await run.waitFor(() => /SIGINT: finishing/.test(run.stdout), "the acknowledgement");
      // Presses within a second of the acknowledgement are the same press: press until one
      // is taken as a second.
      let pressedAt = 0;
      await run.waitFor(() => {
        if (Date.now() - pressedAt > 250) {
          pressedAt = Date.now();
          void run.send("\x03");
        }
        return /SIGINT again: abandoning/.test(run.stdout);
      }, "the second press");
      assertEquals(await run.exitCode(), 130, run.stdout);
      assert(!copiesInFlight(`${dir}/r`).includes("big"));
      assertEquals(Array.from(Deno.readDirSync(`${dir}/r`)).map((item) => item.name), [
        ".treesync",
      ]);
    });
  },
});
