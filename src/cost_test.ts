/**
 * What a run costs grows with what changed, and every error line it prints counts: the real
 * CLI as a subprocess, costs counted through the `-vv` line of worker starts, never timed.
 */

import { deepStrictEqual, match, ok } from "node:assert/strict";
import {
  assertExit,
  CAN_DROP_ROOT,
  cli,
  type CliResult,
  jsonLine,
  snapshot,
  SYNC_FLAGS,
  SYNC_MODULE,
  type Tree,
  withTemp,
  writeTree,
} from "./test_helpers.ts";

/** The walker workers a run started, from its `-vv` cost line. */
function walkersStarted(result: CliResult): number {
  const match = /^cost: (\d+) walker workers started/m.exec(result.stderr);
  ok(match, `no cost line in:\n${result.stderr.slice(-2000)}`);
  return Number(match[1]);
}

/** The run's error lines are exactly its failures. */
function assertErrorsCounted(result: CliResult): void {
  const lines = result.stderr.split("\n").filter((line) => line.startsWith("error: "));
  deepStrictEqual(jsonLine(result).failed, lines.length, result.stderr);
}

/** `count` one-file folders, `d0001/f.txt` and on. */
function oneFileFolders(count: number, prefix = "d"): Tree {
  const tree: Tree = {};
  for (let i = 1; i <= count; i++) {
    const name = `${prefix}${String(i).padStart(4, "0")}`;
    tree[name] = { "f.txt": `file ${i}` };
  }
  return tree;
}

/** Runs the CLI as a user without root's override of file permissions. */
async function cliWithoutRoot(args: string[]): Promise<CliResult> {
  const output = await new Deno.Command("unshare", {
    args: ["-U", Deno.execPath(), "run", "--quiet", ...SYNC_FLAGS, SYNC_MODULE, ...args],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: text(output.stdout), stderr: text(output.stderr) };
}

Deno.test("cli: a folder moved and a new file of its file's size: one move, no error, exit 0", async () => {
  // Regression: the file-move search hashed A/f.txt, which the folder move had taken to B/:
  // `move A/ -> B/`, `error: A/f.txt: Cannot hash: no such file or folder`, `0 failed`, exit 0.
  await withTemp(async (dir) => {
    const content = "x".repeat(41) + "\n";
    writeTree(`${dir}/s`, { A: { "f.txt": content }, keep: "k" });
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    Deno.renameSync(`${dir}/s/A`, `${dir}/s/B`);
    Deno.writeTextFileSync(`${dir}/s/new.txt`, "y".repeat(41) + "\n");
    const result = await cli(["--json", "-v", `${dir}/s`, `${dir}/r`]);
    assertExit(result, 0);
    ok(!/^error: /m.test(result.stderr), result.stderr);
    match(result.stderr, /^move A\/ -> B\/$/m);
    deepStrictEqual([jsonLine(result).moved, jsonLine(result).copied], [1, 1]);
    deepStrictEqual(snapshot(`${dir}/r`), snapshot(`${dir}/s`));
  });
});

Deno.test({
  name: "cli: an unreadable source file is an error line, counted as failed, exit 1",
  ignore: !CAN_DROP_ROOT,
  fn: async () => {
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { ok: "fine", secret: "hidden" });
      Deno.mkdirSync(`${dir}/r`);
      Deno.chmodSync(`${dir}/s/secret`, 0);
      const result = await cliWithoutRoot(["--json", `${dir}/s`, `${dir}/r`]);
      assertExit(result, 1);
      match(result.stderr, /^error: secret: Cannot copy: .*permission denied/m);
      ok((jsonLine(result).failed as number) >= 1, result.stdout);
      assertErrorsCounted(result);
    });
  },
});

Deno.test({
  name: "cli --checksum: a replica file it cannot read to compare is an error, counted, exit 1",
  ignore: !CAN_DROP_ROOT,
  fn: async () => {
    // Regression: `error: f: Cannot hash: permission denied` with `0 failed` and exit 0.
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { f: "same size A" });
      writeTree(`${dir}/r`, { f: "same size B" });
      Deno.chmodSync(`${dir}/r/f`, 0);
      for (const dryRun of [["-n"], []]) {
        const result = await cliWithoutRoot([
          ...dryRun,
          "--checksum",
          "--json",
          `${dir}/s`,
          `${dir}/r`,
        ]);
        assertExit(result, 1);
        match(result.stderr, /^error: f: Cannot hash: .*permission denied/m);
        assertErrorsCounted(result);
      }
    });
  },
});

Deno.test("cli: 300 new folders beside an existing one start no more walkers than a fresh copy", async () => {
  // Regression: each new folder under a folder the replica had waited for the end of the run
  // and was walked by a walker worker of its own: 75–200 ms each, 3,000 did not end in 300 s
  // (here that would be some 300 walkers started).
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { x: { "keep.txt": "keep" } });
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    writeTree(`${dir}/s/x`, oneFileFolders(300));
    Deno.mkdirSync(`${dir}/fresh`); // empty: walked by a walker of its own, as the replica
    const fresh = await cli(["-vv", "--json", `${dir}/s`, `${dir}/fresh`]);
    assertExit(fresh, 0);
    const result = await cli(["-vv", "--json", `${dir}/s`, `${dir}/r`]);
    assertExit(result, 0);
    deepStrictEqual([jsonLine(result).dirsCreated, jsonLine(result).copied], [300, 300]);
    ok(walkersStarted(result) <= walkersStarted(fresh), result.stderr.slice(-500));
    deepStrictEqual(snapshot(`${dir}/r`), snapshot(`${dir}/s`));
  });
});

Deno.test("cli: 100 sibling folders renamed are 100 moves, walked in one walk", async () => {
  // Regression: each moved folder was walked by a pair of walker workers of its own (8.3 s).
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { x: oneFileFolders(100) });
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    for (let i = 1; i <= 100; i++) {
      const name = String(i).padStart(4, "0");
      Deno.renameSync(`${dir}/s/x/d${name}`, `${dir}/s/x/e${name}`);
    }
    const result = await cli(["-vv", "--json", `${dir}/s`, `${dir}/r`]);
    assertExit(result, 0);
    deepStrictEqual([jsonLine(result).moved, jsonLine(result).copied], [100, 0]);
    // The main walk's pair, and one pair for every moved folder together.
    ok(walkersStarted(result) <= 4, result.stderr.slice(-500));
    deepStrictEqual(snapshot(`${dir}/r`), snapshot(`${dir}/s`));
  });
});

Deno.test("cli: a folder moved into a new folder is one move, the replica's files kept", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { old: { a: "alpha" }, keep: { k: "k" } });
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    const inode = Deno.lstatSync(`${dir}/r/old/a`).ino;
    Deno.mkdirSync(`${dir}/s/new`);
    Deno.renameSync(`${dir}/s/old`, `${dir}/s/new/old`);
    const result = await cli(["-v", "--json", `${dir}/s`, `${dir}/r`]);
    assertExit(result, 0);
    match(result.stderr, /^move old\/ -> new\/old\/$/m);
    deepStrictEqual(Deno.lstatSync(`${dir}/r/new/old/a`).ino, inode);
    deepStrictEqual(snapshot(`${dir}/r`), snapshot(`${dir}/s`));
  });
});

Deno.test("cli -n into a replica with one unrelated file starts no more walkers than into an empty one", async () => {
  // Regression: every new folder of a dry run into a non-empty replica waited for the end and
  // was walked by a walker of its own: 18.9 s against 3.6 s into a missing replica.
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, oneFileFolders(300));
    writeTree(`${dir}/r`, { unrelated: "u" });
    Deno.mkdirSync(`${dir}/empty`);
    const empty = await cli(["-n", "-vv", "--json", `${dir}/s`, `${dir}/empty`]);
    const result = await cli(["-n", "-vv", "--json", `${dir}/s`, `${dir}/r`]);
    // A replica without a record whose run would delete may be held back (exit 3): the cost of
    // the walk is what is counted here, not that decision.
    ok([0, 3].includes(result.code), result.stderr);
    deepStrictEqual(jsonLine(result).dirsCreated, 300);
    ok(walkersStarted(result) <= walkersStarted(empty), result.stderr.slice(-500));
    deepStrictEqual(Deno.readDirSync(`${dir}/r`).toArray().map((e) => e.name), ["unrelated"]);
  });
});

Deno.test("cli: folders moved with changes inside, and a known folder gone from the replica, end exact", async () => {
  // The end of the run walks every moved folder, and every new folder that waited for it, in
  // one walk: each must still get its own fixes.
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: { f1: "one" }, b: { f2: "two", old: "o" }, c: { f3: "three" } });
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    Deno.renameSync(`${dir}/s/a`, `${dir}/s/a2`);
    Deno.renameSync(`${dir}/s/b`, `${dir}/s/b2`);
    Deno.writeTextFileSync(`${dir}/s/a2/f1`, "one, edited");
    Deno.writeTextFileSync(`${dir}/s/b2/new`, "new");
    Deno.removeSync(`${dir}/s/b2/old`);
    Deno.removeSync(`${dir}/r/c`, { recursive: true }); // known to the record: it waits
    const result = await cli(["-vv", "--json", `${dir}/s`, `${dir}/r`]);
    assertExit(result, 0);
    const counts = jsonLine(result);
    deepStrictEqual([counts.moved, counts.updated, counts.copied, counts.deleted], [2, 1, 2, 1]);
    // The main walk's pair, a pair for the moved folders, one walker for the new folders.
    ok(walkersStarted(result) <= 5, result.stderr.slice(-500));
    deepStrictEqual(snapshot(`${dir}/r`), snapshot(`${dir}/s`));
    assertExit(await cli(["--verify", `${dir}/r`]), 0);
  });
});
