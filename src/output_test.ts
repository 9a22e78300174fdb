/**
 * Tests of what a sysadmin reads: the change lines of `-v`, `-n` and the log say what changed
 * and why (as `rsync -i` does), the log's start and end lines say which run a line belongs to
 * and how it ended, and every count is worded in the right number. The real CLI as a
 * subprocess, on real files.
 */

import { deepStrictEqual, match, ok } from "node:assert/strict";
import { describeAction, isListed, runEndLine, summaryLine } from "./log.ts";
import { planMirror } from "./plan.ts";
import { emptySummary } from "./summary.ts";
import {
  assertExit,
  cli,
  type CliResult,
  e,
  jsonLine,
  planDefaults,
  readTree,
  RunningCli,
  scanOf,
  setMtime,
  withTemp,
  writeTree,
} from "./test_helpers.ts";

/** A summary line of any run: not a change line. */
const SUMMARY = /^(sync|dry run|restore|run \d+): /;

/** The change lines of a dry run (stdout) or of `-v` (stderr), in order. */
function changeLines(text: string): string[] {
  return text.split("\n").filter((line) => line !== "" && !SUMMARY.test(line));
}

/** The change lines of a log file, without time, level and process id. */
function loggedChanges(log: string): string[] {
  return log.split("\n").filter((line) => line !== "").map((line) =>
    line.replace(/^\S+ INFO +\[\d+\] /, "")
  ).filter((line) => !/^(run|loop) (start|end): /.test(line));
}

/**
 * Runs the same change as a dry run, then for real with `-v` and a log: the three listings
 * must hold the same lines.
 *
 * @returns The change lines, sorted.
 */
async function sameLinesEverywhere(
  dir: string,
  args: string[],
): Promise<{ lines: string[]; dry: CliResult; real: CliResult }> {
  const log = `${dir}/run.log`;
  try {
    Deno.removeSync(log);
  } catch {
    // No log yet.
  }
  const dry = await cli(["-n", ...args]);
  assertExit(dry, 0);
  const real = await cli(["-v", "--log", log, ...args]);
  assertExit(real, 0);
  // Copies finish in any order: the lines are compared as sets.
  const lines = changeLines(real.stderr).sort();
  deepStrictEqual(changeLines(dry.stdout).sort(), lines, "the dry run lists what the run does");
  deepStrictEqual(loggedChanges(Deno.readTextFileSync(log)).sort(), lines, "the log lists it too");
  return { lines, dry, real };
}

Deno.test("output: attrs lines say whether the mode, the mtime or both differed", async () => {
  await withTemp(async (dir) => {
    // Regression: `attrs BSD` (a mode change) and `attrs Artistic` (an mtime change) looked
    // the same.
    writeTree(`${dir}/s`, { lic: { BSD: "bsd", Artistic: "artistic", GPL: "gpl" } });
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    Deno.chmodSync(`${dir}/s/lic/BSD`, 0o600);
    setMtime(`${dir}/s/lic/Artistic`, 1_500_000_000_000);
    Deno.chmodSync(`${dir}/s/lic/GPL`, 0o600);
    setMtime(`${dir}/s/lic/GPL`, 1_500_000_000_000);
    const { lines } = await sameLinesEverywhere(dir, [`${dir}/s`, `${dir}/r`]);
    deepStrictEqual(lines.sort(), [
      "attrs lic/Artistic (mtime)",
      "attrs lic/BSD (mode)",
      "attrs lic/GPL (mode, mtime)",
    ]);
  });
});

Deno.test("output: update lines say why: size and mtime, the mtime alone, the content", async () => {
  await withTemp(async (dir) => {
    // Regression: `update X (23 B)` gave no reason.
    writeTree(`${dir}/s`, { grown: "v1", edited: "aaaa", touched: "bbbb", quiet: "cccc" });
    // A replica made by another tool: same sizes, other content, no record of ours.
    writeTree(`${dir}/r`, { grown: "v1", edited: "AAAA", touched: "bbbb", quiet: "CCCC" });
    for (const name of ["grown", "edited", "touched", "quiet"]) {
      setMtime(`${dir}/s/${name}`, 1_600_000_000_000);
      setMtime(`${dir}/r/${name}`, 1_600_000_000_000);
    }
    setMtime(`${dir}/r/edited`, 1_500_000_000_000);
    for (const root of ["s", "r"]) setMtime(`${dir}/${root}`, 1_600_000_000_000);
    Deno.writeTextFileSync(`${dir}/s/grown`, "version 2, longer");
    setMtime(`${dir}/s/grown`, 1_700_000_000_000);
    // Equal size and mtime, other content: only --checksum sees it, below.
    const first = await sameLinesEverywhere(dir, [`${dir}/s`, `${dir}/r`]);
    deepStrictEqual(first.lines.sort(), [
      "update edited (mtime; 4 B)",
      "update grown (size, mtime; 17 B)",
      "update quiet (content; 4 B)",
    ]);
    // Now the record knows both sides: an edit of the same size is seen by its hash.
    Deno.writeTextFileSync(`${dir}/s/edited`, "dddd");
    setMtime(`${dir}/s/edited`, 1_800_000_000_000);
    Deno.writeTextFileSync(`${dir}/s/quiet`, "eeee");
    setMtime(`${dir}/s/quiet`, Deno.lstatSync(`${dir}/r/quiet`).mtime!.getTime());
    const second = await sameLinesEverywhere(dir, ["--checksum", `${dir}/s`, `${dir}/r`]);
    deepStrictEqual(second.lines.sort(), [
      "update edited (content, mtime; 4 B)",
      "update quiet (content; 4 B)",
    ]);
  });
});

Deno.test("output: a folder's own attribute change is listed, a folder filled by the run is not", async () => {
  await withTemp(async (dir) => {
    // Regression: folder attribute fixes were never listed.
    writeTree(`${dir}/s`, { locked: { f: "f" }, filled: { f: "f" } });
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    Deno.chmodSync(`${dir}/s/locked`, 0o700);
    // A file added with the folder's mtime put back: only this run changes the replica's.
    const mtime = Deno.lstatSync(`${dir}/s/filled`).mtime!.getTime();
    Deno.writeTextFileSync(`${dir}/s/filled/new`, "n");
    setMtime(`${dir}/s/filled`, mtime);
    const { lines, real } = await sameLinesEverywhere(dir, [`${dir}/s`, `${dir}/r`]);
    deepStrictEqual(lines.sort(), ["attrs locked/ (mode)", "copy filled/new (1 B)"]);
    match(real.stderr, /, 1 attribute fix, /);
    deepStrictEqual(Deno.lstatSync(`${dir}/r/locked`).mode! & 0o777, 0o700);
    deepStrictEqual(Deno.lstatSync(`${dir}/r/filled`).mtime!.getTime(), mtime);
  });
});

Deno.test("output: the log says which run each line belongs to and how it ended", async () => {
  await withTemp(async (dir) => {
    // Regression: four jobs sharing one log could not be told apart, and no line gave the
    // exit code.
    writeTree(`${dir}/s`, { a: "a", b: "b", c: "c" });
    const log = `${dir}/shared.log`;
    const first = await cli([
      "--log",
      log,
      "--max-delete",
      "50%",
      "--checksum",
      `${dir}/s`,
      `${dir}/r`,
    ]);
    assertExit(first, 0);
    Deno.removeSync(`${dir}/s/a`);
    Deno.removeSync(`${dir}/s/b`);
    Deno.removeSync(`${dir}/s/c`);
    Deno.writeTextFileSync(`${dir}/s/d`, "d");
    const held = await cli(["--log", log, "--max-delete", "1", `${dir}/s`, `${dir}/r`]);
    assertExit(held, 3);
    const lines = Deno.readTextFileSync(log).trim().split("\n");
    const pids = lines.map((line) => line.match(/^\S+ [A-Z]+ +\[(\d+)\] /)?.[1]);
    ok(
      pids.every((pid) => pid !== undefined),
      `every line names its process:\n${lines.join("\n")}`,
    );
    deepStrictEqual(new Set(pids).size, 2, "two runs, two processes");
    const texts = lines.map((line) => line.replace(/^\S+ [A-Z]+ +\[\d+\] /, ""));
    const starts = texts.filter((text) => text.startsWith("run start: "));
    deepStrictEqual(starts, [
      `run start: treesync 0.1.0 ${dir}/s -> ${dir}/r (--checksum, --max-delete 50%)`,
      `run start: treesync 0.1.0 ${dir}/s -> ${dir}/r (--max-delete 1)`,
    ]);
    const ends = texts.filter((text) => text.startsWith("run end: "));
    deepStrictEqual(ends.length, 2);
    match(ends[0]!, /^run end: sync: 3 copied, .* in [\d.]+ s; exit code 0$/);
    match(ends[1]!, /^run end: sync: 1 copied, .*; exit code 3$/);
    deepStrictEqual(texts[0], starts[0], "a run's first line is its start");
    deepStrictEqual(texts.at(-1), ends[1], "its last line its end");
  });
});

Deno.test("output: each run of a loop has its start and end lines, and the loop its end", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a" });
    const log = `${dir}/loop.log`;
    const loop = new RunningCli(["--interval", "1h", "--log", log, `${dir}/s`, `${dir}/r`]);
    await loop.waitFor(() => loop.runs === 1, "the first run");
    Deno.writeTextFileSync(`${dir}/s/b`, "b");
    await loop.send("now");
    await loop.waitFor(() => loop.runs === 2, "the second run");
    await loop.send("quit");
    deepStrictEqual(await loop.exitCode(), 0);
    const texts = Deno.readTextFileSync(log).trim().split("\n").map((line) =>
      line.replace(/^\S+ [A-Z]+ +\[\d+\] /, "")
    );
    const marks = texts.filter((text) => /^(run|loop) (start|end): /.test(text));
    const start = (run: number) =>
      `run start: treesync 0.1.0 ${dir}/s -> ${dir}/r (run ${run}, --interval 1h)`;
    deepStrictEqual(marks.map((text) => text.replace(/: run \d+: .*; /, ": …; ")), [
      start(1),
      "run end: …; exit code 0",
      start(2),
      "run end: …; exit code 0",
      marks.at(-1)!,
    ]);
    match(marks[1]!, /^run end: run 1: 1 copied, /);
    match(marks[3]!, /^run end: run 2: 1 copied, /);
    match(
      marks.at(-1)!,
      /^loop end: loop totals: 2 runs \(0 failed\), 2 copied, .*, 0 failures, uptime .*; exit code 0$/,
    );
    match(loop.stderr, /^loop totals: 2 runs \(0 failed\)/m);
  });
});

Deno.test("output: counts are worded in the right number", async () => {
  await withTemp(async (dir) => {
    // Regression: "1 folders created".
    writeTree(`${dir}/one`, { d: { f: "f" } });
    const one = await cli([`${dir}/one`, `${dir}/r1`]);
    assertExit(one, 0);
    match(
      one.stderr,
      /^sync: 1 copied, 0 updated, 0 moved, 0 deleted, 1 folder created, 0 folders deleted, 0 attribute fixes, 0 failed, 1 B copied in /m,
    );
    writeTree(`${dir}/two`, { d: { f: "f" }, e: {} });
    const two = await cli([`${dir}/two`, `${dir}/r2`]);
    match(two.stderr, /, 2 folders created, /);
    Deno.chmodSync(`${dir}/two/d/f`, 0o600);
    const rootMtime = Deno.lstatSync(`${dir}/two`).mtime!.getTime();
    Deno.removeSync(`${dir}/two/e`);
    setMtime(`${dir}/two`, rootMtime);
    const fix = await cli([`${dir}/two`, `${dir}/r2`]);
    match(fix.stderr, /, 0 folders created, 1 folder deleted, 1 attribute fix, /);
    // A loop of one run.
    const loop = new RunningCli(["--interval", "1h", `${dir}/one`, `${dir}/r1`]);
    await loop.waitFor(() => loop.runs === 1, "the run");
    await loop.send("quit");
    deepStrictEqual(await loop.exitCode(), 0);
    match(loop.stderr, /^loop totals: 1 run \(0 failed\), .*, 0 failures, /m);
  });
});

Deno.test("output: a dry run into a missing replica counts what the real run counts", async () => {
  await withTemp(async (dir) => {
    // Regression: the dry run counted `mkdir ./`, which the real run neither listed nor counted.
    writeTree(`${dir}/s`, { d: { f: "f", e: { g: "gg" } }, h: "h" });
    const dry = await cli(["-n", "--json", `${dir}/s`, `${dir}/r`]);
    assertExit(dry, 0);
    const real = await cli(["-v", "--json", `${dir}/s`, `${dir}/r`]);
    assertExit(real, 0);
    const counts = (result: CliResult) => {
      const { durationMs: _, dryRun: __, ...rest } = jsonLine(result);
      return rest;
    };
    deepStrictEqual(counts(dry), counts(real));
    deepStrictEqual(counts(real).dirsCreated, 2);
    const dryLines = changeLines(dry.stdout).filter((line) => !line.startsWith("{"));
    deepStrictEqual(dryLines.toSorted(), changeLines(real.stderr).sort());
    deepStrictEqual(dryLines[0], "mkdir ./");
    deepStrictEqual(
      dry.stderr.match(/^dry run: .* folders? created/m)?.[0],
      "dry run: 3 copied, 0 updated, 0 moved, 0 deleted, 2 folders created",
    );
  });
});

Deno.test("describeAction() lists what differed, always in one order, for files and folders", () => {
  const file = (fields: Parameters<typeof e>[1]) => e("file", { size: 4, ...fields });
  const from = scanOf({
    owned: file({ uid: 7, gid: 8 }),
    all: file({ mode: 0o600, uid: 7, mtimeMs: 5 }),
    same: file({ hash: "a", mtimeMs: 5 }),
    other: file({ hash: "a" }),
    grown: file({ size: 9, mtimeMs: 5 }),
    d: e("dir", { mode: 0o700, mtimeMs: 5 }),
    "d/new": file({}),
    filled: e("dir"),
    "filled/new": file({}),
    moved: e("symlink", { target: "there" }),
    fresh: e("symlink", { target: "new" }),
  });
  const to = scanOf({
    owned: file({}),
    all: file({}),
    same: file({ hash: "a" }),
    other: file({ hash: "b" }),
    grown: file({}),
    d: e("dir"),
    filled: e("dir"),
    moved: e("symlink", { target: "here" }),
  });
  const plan = planMirror(from, to, { ...planDefaults, owners: true });
  const lines = plan.actions.filter(isListed).map(describeAction).sort();
  deepStrictEqual(lines, [
    "attrs d/ (mode, mtime)",
    "attrs owned (owner, group)",
    "attrs same (mtime)",
    "copy d/new (4 B)",
    "copy filled/new (4 B)",
    "link fresh -> new",
    "link moved -> there (target)",
    "update all (mode, owner, mtime; 4 B)",
    "update grown (size, mtime; 9 B)",
    "update other (content; 4 B)",
  ]);
  // The folder the run fills gets its attributes back, without a line of its own.
  const filled = plan.actions.find((a) => a.kind === "dirattrs" && a.path === "filled");
  ok(filled !== undefined && !isListed(filled), "filled/ is set, not listed");
});

Deno.test("summaryLine() and runEndLine() word every count in the right number", () => {
  const one = { ...emptySummary(false), dirsCreated: 1, dirsDeleted: 1, attrsUpdated: 1 };
  match(
    summaryLine(one, "sync"),
    /^sync: 0 copied, 0 updated, 0 moved, 0 deleted, 1 folder created, 1 folder deleted, 1 attribute fix, 0 failed, 0 B copied in 0.00 s$/,
  );
  const two = { ...emptySummary(false), dirsCreated: 2, dirsDeleted: 0, attrsUpdated: 2 };
  match(
    summaryLine(two, "sync"),
    /, 2 folders created, 0 folders deleted, 2 attribute fixes, /,
  );
  deepStrictEqual(runEndLine("sync: …", 3), "run end: sync: …; exit code 3");
});

Deno.test("output: --verify has its start and end lines in the log too", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a" });
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    const log = `${dir}/verify.log`;
    assertExit(await cli(["--verify", "--log", log, `${dir}/s`, `${dir}/r`]), 0);
    const texts = Deno.readTextFileSync(log).trim().split("\n").map((line) =>
      line.replace(/^\S+ [A-Z]+ +\[\d+\] /, "")
    );
    deepStrictEqual(texts[0], `run start: treesync 0.1.0 --verify ${dir}/r`);
    match(texts.at(-1)!, /^run end: verify: 1 file checked, .*; exit code 0$/);
  });
});

// Regression: the dry run printed only `move a/ -> b/`, the real run also what it changed inside
// the moved folder (it was walked only once it had moved).
Deno.test("output: a dry run of a folder move lists what the run changes inside it", async () => {
  await withTemp(async (dir) => {
    const [source, replica] = [`${dir}/s`, `${dir}/r`];
    writeTree(source, { A: { a1: "one", a2: "two", sub: { deep: "deep" } }, B: { b: "b" } });
    assertExit(await cli([source, replica]), 0);
    Deno.renameSync(`${source}/A`, `${source}/A2`);
    Deno.renameSync(`${source}/B`, `${source}/0B`);
    Deno.writeTextFileSync(`${source}/A2/a1`, "longer content");
    Deno.writeTextFileSync(`${source}/A2/sub/new`, "new");
    Deno.removeSync(`${source}/A2/a2`);
    Deno.writeTextFileSync(`${source}/0B/b2`, "b2");
    const { lines } = await sameLinesEverywhere(dir, [source, replica]);
    for (
      const line of ["move A/ -> A2/", "move B/ -> 0B/", "copy A2/sub/new (3 B)", "delete A2/a2"]
    ) {
      ok(lines.includes(line), `${line} in:\n${lines.join("\n")}`);
    }
    ok(lines.some((line) => line.startsWith("update A2/a1 (size")), lines.join("\n"));
    ok(lines.includes("copy 0B/b2 (2 B)"), lines.join("\n"));
    deepStrictEqual(readTree(replica), readTree(source));
  });
});

// Regression: `--log` named a file of another program's, and treesync appended to it and
// rotated it (`notes.txt` became `notes.txt.1`, the oldest sibling removed).
Deno.test("output: --log naming a file that is not a treesync log is exit 2, the file untouched", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a" });
    Deno.writeTextFileSync(`${dir}/notes.txt`, "my notes\n");
    const refused = await cli(["--log", `${dir}/notes.txt`, `${dir}/s`, `${dir}/r`]);
    assertExit(refused, 2);
    match(refused.stderr, /The log file '.*notes\.txt' holds something else/);
    deepStrictEqual(Deno.readTextFileSync(`${dir}/notes.txt`), "my notes\n");
    // A log of ours is appended to, run after run.
    assertExit(await cli(["--log", `${dir}/run.log`, `${dir}/s`, `${dir}/r`]), 0);
    assertExit(await cli(["--log", `${dir}/run.log`, `${dir}/s`, `${dir}/r`]), 0);
    deepStrictEqual(Deno.readTextFileSync(`${dir}/run.log`).match(/ run start: /g)?.length, 2);
  });
});

// Regression: a dry run read the files of a folder it would move out of a deleted one under
// their new names, which do not exist yet: "Cannot hash" errors and exit 1, where the run is clean.
Deno.test("output: a dry run of a folder moved out of a deleted folder reads its files where they are", async () => {
  await withTemp(async (dir) => {
    const [source, replica] = [`${dir}/s`, `${dir}/r`];
    writeTree(source, { A: { B: { C: { f: "1" }, bf: "2" } } });
    assertExit(await cli([source, replica]), 0);
    Deno.renameSync(`${source}/A/B/C`, `${source}/C`);
    Deno.removeSync(`${source}/A`, { recursive: true });
    const { lines, dry } = await sameLinesEverywhere(dir, [source, replica]);
    ok(!/error:/.test(dry.stderr), dry.stderr);
    ok(lines.includes("move A/B/C/ -> C/"), lines.join("\n"));
    deepStrictEqual(readTree(replica), readTree(source));
  });
});
