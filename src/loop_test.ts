/**
 * The loop's commands, replies and waits, without stdin, timers or disk.
 *
 * @module
 */

import { deepStrictEqual, match, ok } from "node:assert/strict";
import { escapeControls, localTime } from "./format.ts";
import {
  answerCommand,
  type LoopState,
  newLoopState,
  nextWaitMs,
  parseLoopCommand,
  statusText,
  WAIT_CHUNK_MS,
} from "./loop.ts";
import { newWatchState } from "./watch.ts";

const ESC = String.fromCharCode(27);
const START = Date.UTC(2030, 0, 1, 12);
const DAY_MS = 86_400_000;

/** A loop started at {@linkcode START}, changed by `fields`. */
function loopState(fields: Partial<LoopState> = {}): LoopState {
  return { ...newLoopState(START, () => "copying 1/2, 3 B of 6 B, 1 B/s, big"), ...fields };
}

Deno.test("parseLoopCommand() reads commands and echoes unknown ones short, escaped", () => {
  deepStrictEqual(parseLoopCommand("  STATUS \r"), { kind: "status" });
  deepStrictEqual(parseLoopCommand("q"), { kind: "quit" });
  deepStrictEqual(parseLoopCommand("?"), { kind: "help" });
  deepStrictEqual(parseLoopCommand(""), { kind: "none" });
  deepStrictEqual(parseLoopCommand("frob"), {
    kind: "unknown",
    reply: "Unknown command 'frob'; type help for the list",
  });
  const hostile = parseLoopCommand(`${ESC}]0;pwned${String.fromCharCode(7)}${"z".repeat(10_000)}`);
  ok(hostile.kind === "unknown");
  // deno-lint-ignore no-control-regex
  ok(!/[\x00-\x1f\x7f-\x9f]/.test(hostile.reply), JSON.stringify(hostile.reply));
  match(hostile.reply, /^Unknown command '\\x1b\]0;pwned\\x07z+…'; type help/);
  ok(hostile.reply.length < 120, `${hostile.reply.length} characters`);
  deepStrictEqual(escapeControls(`a${ESC}[2Jb\u009b`), "a\\x1b[2Jb\\x9b");
});

Deno.test("answerCommand() replies to each command, and says what the loop does next", () => {
  const idle = loopState();
  const running = loopState({ running: true });
  const table: Array<[string, LoopState, ReturnType<typeof answerCommand>]> = [
    ["", idle, {}],
    ["quit", idle, { logged: "quit", next: "quit" }],
    ["exit", running, { logged: "quit: finishing the current file", next: "quit" }],
    ["now", idle, { reply: "now: starting a run", next: "wake" }],
    ["now", running, { reply: "now: a run starts after the current one", next: "run-again" }],
    ["frob", idle, { reply: "Unknown command 'frob'; type help for the list" }],
  ];
  for (const [line, state, answer] of table) {
    deepStrictEqual(answerCommand(parseLoopCommand(line), state), answer, `'${line}'`);
  }
  const help = answerCommand(parseLoopCommand("help"), idle);
  match(help.reply!, /^Commands \(type one and press Enter\):\n {2}now /);
  deepStrictEqual(answerCommand(parseLoopCommand("status"), idle, START), {
    reply: statusText(idle, START),
  });
});

Deno.test("statusText() shows the last run, the run under way or the next, runs and uptime", () => {
  const hourLater = START + 3_600_000;
  const table: Array<[LoopState, number, string]> = [
    [
      loopState(),
      START,
      `last run: none yet\nnext run in 0s (at ${localTime(START)})\nruns: 0, uptime 0s`,
    ],
    [
      loopState({ running: true, totals: { ...loopState().totals, runs: 1 } }),
      START + 5_000,
      "last run: none yet\nrun in progress: copying 1/2, 3 B of 6 B, 1 B/s, big\nruns: 1, uptime 5s",
    ],
    [
      loopState({
        lastRun: "last run (failed): 0 copied",
        lastRunFailed: true,
        nextRunAt: hourLater + 30 * DAY_MS,
        totals: { ...loopState().totals, runs: 2 },
      }),
      hourLater,
      `last run (failed): 0 copied\nnext run in 30d (at ${localTime(hourLater + 30 * DAY_MS)})\n` +
      "runs: 2, uptime 1h",
    ],
    [
      loopState({ nextRunAt: START - 1_000 }),
      START,
      `last run: none yet\nnext run in 0s (at ${localTime(START - 1_000)})\nruns: 0, uptime 0s`,
    ],
  ];
  for (const [state, now, text] of table) deepStrictEqual(statusText(state, now), text);
});

Deno.test("statusText() with --watch names the next full run and adds what the watch holds", () => {
  const watch = {
    ...newWatchState(2_000, 3_600_000),
    watching: true,
    folders: new Set(["docs"]),
    firstAt: START,
    lastAt: START,
  };
  deepStrictEqual(
    statusText(loopState({ watch, nextRunAt: START + 3_600_000 }), START + 1_000),
    `last run: none yet\nnext full run in 59m 59s (at ${localTime(START + 3_600_000)})\n` +
      "watching: 1 folder changed (docs), run in 1s\nruns: 0, uptime 1s",
  );
});

Deno.test("nextWaitMs() waits in chunks of at most an hour, adding up to the whole wait", () => {
  const start = 1_700_000_000_000;
  deepStrictEqual(nextWaitMs(start + 5_000, start), 5_000);
  deepStrictEqual(nextWaitMs(start + 30 * DAY_MS, start), WAIT_CHUNK_MS);
  deepStrictEqual(nextWaitMs(start - 1, start), 0, "overdue: no wait");
  deepStrictEqual(nextWaitMs(start, start), 0);
  for (const total of [1, 999, WAIT_CHUNK_MS, WAIT_CHUNK_MS + 1, 2 ** 31, 365 * DAY_MS]) {
    // The loop's way of waiting, with a clock that runs exactly as long as each timer.
    let now = start;
    let timers = 0;
    for (let ms = nextWaitMs(start + total, now); ms > 0; ms = nextWaitMs(start + total, now)) {
      ok(ms <= WAIT_CHUNK_MS && ms < 2 ** 31 - 1, `a timer of ${ms} ms`);
      now += ms;
      timers++;
    }
    deepStrictEqual(now - start, total, `the whole of ${total} ms is waited`);
    deepStrictEqual(timers, Math.ceil(total / WAIT_CHUNK_MS));
  }
  // A timer that fires late (a busy machine, a suspend) leaves less to wait, never more.
  deepStrictEqual(nextWaitMs(start + 10_000, start + 9_000), 1_000);
});
