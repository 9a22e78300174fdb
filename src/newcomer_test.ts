/**
 * The first hour of an rsync user: the habits that would lose data with a mirror, each run as
 * the real command line on real files.
 *
 * @module
 */

import { deepStrictEqual, match, ok } from "node:assert/strict";
import { pathExists } from "./files.ts";
import { metaPaths } from "./sides/local/meta.ts";
import {
  assertExit,
  CAN_HOLD_OPEN,
  cli,
  collect,
  holdOpen,
  readTree,
  RunningCli,
  setMtime,
  snapshot,
  SYNC_FLAGS,
  SYNC_MODULE,
  withTemp,
  writeTree,
} from "./test_helpers.ts";

/** The checkout: the folder of `deno.json` and `sync.ts`. */
const CHECKOUT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** `treesync /srv/data /backup/` over a /backup that holds other data. */
function rsyncHabitTree(dir: string): { source: string; replica: string } {
  writeTree(`${dir}/data`, { file: "d" });
  writeTree(`${dir}/backup`, { other: { important: "precious" } });
  return { source: `${dir}/data`, replica: `${dir}/backup/` };
}

// Finding 1: a first run over a folder that was never a replica deleted everything else in it,
// exit 0, no warning.
Deno.test("newcomer: a run into a folder treesync never mirrored copies, keeps the rest, and exits 3 naming --adopt", async () => {
  await withTemp(async (dir) => {
    const { source, replica } = rsyncHabitTree(dir);
    const first = await cli([source, replica]);
    assertExit(first, 3);
    deepStrictEqual(readTree(`${dir}/backup`), { file: "d", other: { important: "precious" } });
    const errors = first.stderr.split("\n").filter((line) => line.startsWith("error: "));
    deepStrictEqual(errors.length, 1, first.stderr);
    match(errors[0]!, /Deleting nothing: .* kept the 2 entries the source lacks/);
    match(errors[0]!, /give --adopt to mirror over it/);

    // The next run finds the record the first one wrote: what was kept stays kept.
    writeTree(source, { later: "l" });
    const second = await cli([source, replica]);
    assertExit(second, 3);
    deepStrictEqual(readTree(`${dir}/backup`), {
      file: "d",
      later: "l",
      other: { important: "precious" },
    });

    const adopted = await cli(["--adopt", source, replica]);
    assertExit(adopted, 0);
    deepStrictEqual(readTree(`${dir}/backup`), { file: "d", later: "l" });
    ok(!pathExists(metaPaths(`${dir}/backup`).unadopted), "adopted: no mark left");
    // Adopted: from now on it is a mirror like any other.
    Deno.removeSync(`${source}/later`);
    assertExit(await cli([source, replica]), 0);
    deepStrictEqual(readTree(`${dir}/backup`), { file: "d" });
  });
});

Deno.test({
  name:
    "newcomer: a run into a folder never mirrored, stopped mid-copy, leaves a record that keeps",
  ignore: !CAN_HOLD_OPEN,
  fn: async () => {
    await withTemp(async (dir) => {
      const { source, replica } = rsyncHabitTree(dir);
      writeTree(source, { big: "big" });
      {
        // Stopped while the copy of big waits at its start: SIGTERM finishes that file.
        await using held = await holdOpen(`${source}/big`);
        const run = new RunningCli([source, replica], { stdin: "null" });
        await run.waitFor(() => held.wanted, "the copy of big");
        run.child.kill("SIGTERM");
        await run.waitFor(() => /SIGTERM: finishing/.test(run.stderr), "SIGTERM to be seen");
        await held.release();
        deepStrictEqual(await run.exitCode(), 143, run.stderr);
      }
      ok(pathExists(metaPaths(`${dir}/backup`).record), "the stopped run saved its record");
      // The record the stopped run saved is no licence to delete.
      assertExit(await cli([source, replica]), 3);
      deepStrictEqual(readTree(`${dir}/backup/other`), { important: "precious" });
    });
  },
});

Deno.test("newcomer: a dry run into a folder never mirrored lists what it would keep and exits 3", async () => {
  await withTemp(async (dir) => {
    const { source, replica } = rsyncHabitTree(dir);
    // The roots' mtimes differ (made a few milliseconds apart, or in the same one): fixed here,
    // so that the root's attribute line is always there.
    setMtime(source, Date.parse("2026-01-01T00:00:00Z"));
    setMtime(`${dir}/backup`, Date.parse("2026-01-02T00:00:00Z"));
    const before = snapshot(`${dir}/backup`, { mtimes: true });
    const dry = await cli(["--dry-run", source, replica]);
    assertExit(dry, 3);
    deepStrictEqual(dry.stdout.split("\n").filter(Boolean), [
      "copy file (1 B)",
      "keep other/ (not deleted: --adopt deletes it)",
      "keep other/important (not deleted: --adopt deletes it)",
      "attrs ./ (mtime)",
    ]);
    match(dry.stderr, /Deleting nothing: .*--adopt/);
    deepStrictEqual(snapshot(`${dir}/backup`, { mtimes: true }), before);
  });
});

Deno.test("newcomer: an exact copy made by another tool, or an empty folder, is adopted without --adopt", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "same", sub: { b: "same too" } });
    writeTree(`${dir}/copy`, { a: "same", sub: { b: "same too" } });
    for (const path of ["a", "sub/b"]) {
      setMtime(`${dir}/copy/${path}`, Deno.statSync(`${dir}/s/${path}`).mtime!.getTime());
    }
    Deno.mkdirSync(`${dir}/empty`);
    for (const replica of [`${dir}/copy`, `${dir}/empty`]) {
      assertExit(await cli([`${dir}/s`, replica]), 0);
      ok(!pathExists(metaPaths(replica).unadopted), `${replica}: adopted`);
      // A mirror from now on: what the source drops goes.
      writeTree(replica, { extra: "x" });
      assertExit(await cli([`${dir}/s`, replica]), 0);
      ok(!pathExists(`${replica}/extra`), `${replica}: extra deleted`);
    }
  });
});

Deno.test("newcomer: the guard comes before --max-delete and -I; --no-delete never adopts", async () => {
  await withTemp(async (dir) => {
    const { source, replica } = rsyncHabitTree(dir);
    const limited = await cli(["--max-delete", "0", source, replica]);
    assertExit(limited, 3);
    match(limited.stderr, /Deleting nothing: .*--adopt/);
    ok(!/--max-delete/.test(limited.stderr), limited.stderr);

    // --no-delete deletes nothing and so adopts nothing: the next run still keeps.
    assertExit(await cli(["--no-delete", source, replica]), 0);
    assertExit(await cli([source, replica]), 3);

    // With --adopt, --max-delete still holds its ground, and the replica stays not adopted.
    const both = await cli(["--adopt", "--max-delete", "1", source, replica]);
    assertExit(both, 3);
    match(both.stderr, /more than --max-delete 1/);
    assertExit(await cli([source, replica]), 3);
    deepStrictEqual(readTree(`${dir}/backup`), { file: "d", other: { important: "precious" } });
    assertExit(await cli(["--adopt", source, replica]), 0);
    deepStrictEqual(readTree(`${dir}/backup`), { file: "d" });
  });
});

Deno.test("newcomer: -I on a folder never mirrored asks nothing: the guard keeps first", async () => {
  await withTemp(async (dir) => {
    const { source, replica } = rsyncHabitTree(dir);
    const command = [Deno.execPath(), "run", "--quiet", ...SYNC_FLAGS, SYNC_MODULE, "-I"]
      .concat([source, replica]).map((word) => `'${word}'`).join(" ");
    // Under a pseudo-terminal, so that -I may ask; stdin at its end answers "no" if it does.
    const output = await new Deno.Command("script", {
      args: ["-qec", command, "/dev/null"],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    const shown = new TextDecoder().decode(output.stdout);
    deepStrictEqual(output.code, 3, shown);
    ok(!shown.includes("Delete them?"), shown);
    match(shown, /Deleting nothing: .*--adopt/);
    deepStrictEqual(readTree(`${dir}/backup`), { file: "d", other: { important: "precious" } });
  });
});

Deno.test("newcomer: every --interval pass into a folder never mirrored copies and keeps", async () => {
  await withTemp(async (dir) => {
    const { source, replica } = rsyncHabitTree(dir);
    const loop = new RunningCli(["--interval", "1h", source, replica]);
    await loop.waitFor(() => loop.runs === 1, "the first pass");
    writeTree(source, { later: "l" });
    await loop.send("now");
    await loop.waitFor(() => loop.runs === 2, "the second pass");
    await loop.send("quit");
    deepStrictEqual(await loop.exitCode(), 1);
    deepStrictEqual(loop.stderr.match(/^error: Deleting nothing: /gm)?.length, 2, loop.stderr);
    match(loop.stderr, /^loop totals: 2 runs \(2 failed\)/m);
    deepStrictEqual(readTree(`${dir}/backup`), {
      file: "d",
      later: "l",
      other: { important: "precious" },
    });
  });
});

// Finding 2: `-r` is rsync's "recursive"; here it named the replica, and `-r A B` mirrored B
// into A, deleting A's newer files.
Deno.test("newcomer: paths given both ways (-r A B, -s A B, one path and a variable) are refused in one line", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/a`, { newer: "keep me" });
    writeTree(`${dir}/b`, { old: "o" });
    const before = snapshot(dir, { mtimes: true });
    const cases: Array<[string[], Record<string, string>, RegExp]> = [
      [["-r", `${dir}/a`, `${dir}/b`, "-v"], {}, /-r names the REPLICA here/],
      [["-s", `${dir}/a`, `${dir}/b`], {}, /either as two paths or both with -s and -r/],
      [[`${dir}/a`], { TREESYNC_REPLICA: `${dir}/b` }, /Missing REPLICA/],
    ];
    for (const [args, env, pattern] of cases) {
      const result = await cli(args, { env });
      assertExit(result, 2);
      deepStrictEqual(result.stderr.split("\n").length, 2, result.stderr); // one line and its end
      match(result.stderr, pattern);
    }
    deepStrictEqual(snapshot(dir, { mtimes: true }), before);
  });
});

/** Runs the real `deno task` from `cwd` (no `INIT_CWD` inherited from the test's own task). */
async function denoTask(args: string[], cwd: string) {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const name of ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", ...args],
    cwd,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return await collect(child);
}

// Finding 3: under `deno task`, relative paths were taken from the checkout: a relative replica
// was made inside it, and `HOST:PATH` became a local folder there.
Deno.test("newcomer: under deno task, relative paths mean the caller's folder (--cwd and --config)", async () => {
  const unique = `newcomer-${Deno.pid}-${Date.now()}`;
  try {
    await withTemp(async (dir) => {
      writeTree(`${dir}/data`, { file: "d" });
      const viaCwd = await denoTask(["--cwd", CHECKOUT, "sync", "data", `${unique}-a`], dir);
      assertExit(viaCwd, 0);
      deepStrictEqual(readTree(`${dir}/${unique}-a`), { file: "d" });
      const viaConfig = await denoTask(
        ["--config", `${CHECKOUT}/deno.json`, "sync", "data", `${unique}-b`],
        dir,
      );
      assertExit(viaConfig, 0);
      deepStrictEqual(readTree(`${dir}/${unique}-b`), { file: "d" });

      const remote = await denoTask(
        ["--cwd", CHECKOUT, "sync", "data", `root@${unique}:/srv/backup`],
        dir,
      );
      // A replica on another host: never a local folder named `root@host:`.
      assertExit(remote, 2);
      deepStrictEqual(remote.stderr.split("\n").length, 2, remote.stderr);
      match(remote.stderr, new RegExp(`root@${unique}`));
      deepStrictEqual(Deno.readDirSync(dir).toArray().map((e) => e.name).sort(), [
        "data",
        `${unique}-a`,
        `${unique}-b`,
      ]);
    });
  } finally {
    // On the old code these landed in the checkout: clean up whatever did.
    for (const name of [`${unique}-a`, `${unique}-b`, `root@${unique}:`]) {
      if (pathExists(`${CHECKOUT}/${name}`)) {
        Deno.removeSync(`${CHECKOUT}/${name}`, { recursive: true });
      }
    }
  }
  for (const name of Deno.readDirSync(CHECKOUT)) {
    ok(!name.name.startsWith(unique), `made in the checkout: ${name.name}`);
  }
});

Deno.test("newcomer: an INIT_CWD inherited by a run started elsewhere moves no path", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/here/data`, { file: "d" });
    Deno.mkdirSync(`${dir}/elsewhere`);
    const result = await cli(["data", "copy"], {
      cwd: `${dir}/here`,
      env: { INIT_CWD: `${dir}/elsewhere` },
    });
    assertExit(result, 0);
    deepStrictEqual(readTree(`${dir}/here/copy`), { file: "d" });
    deepStrictEqual(readTree(`${dir}/elsewhere`), {});
  });
});

Deno.test("newcomer: a remote path is never a local folder; ./a:b and /x/a:b stay local", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { file: "d" });
    for (const replica of ["backuphost:/srv/backup", "root@backuphost:backup", "host:"]) {
      const result = await cli([`${dir}/s`, replica], { cwd: dir });
      assertExit(result, 2);
      deepStrictEqual(result.stderr.split("\n").length, 2, result.stderr);
    }
    deepStrictEqual(Deno.readDirSync(dir).toArray().map((e) => e.name), ["s"]);
    assertExit(await cli([`${dir}/s`, "./a:b"], { cwd: dir }), 0);
    assertExit(await cli([`${dir}/s`, `${dir}/x/a:b`]), 0);
    deepStrictEqual(readTree(`${dir}/a:b`), { file: "d" });
    deepStrictEqual(readTree(`${dir}/x/a:b`), { file: "d" });
  });
});

// Finding 6: --verify of the source listed every file as unrecorded and advised mirroring over
// it ("run 'treesync SOURCE /srv/data' once").
Deno.test("newcomer: --verify of a folder with no record is exit 2, one line, no advice to mirror", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/data`, { a: "1", sub: { b: "2" } });
    const result = await cli(["--verify", `${dir}/data`]);
    assertExit(result, 2);
    deepStrictEqual(result.stdout, "");
    deepStrictEqual(
      result.stderr,
      `error: '${dir}/data' is not a treesync replica: it has no record in .treesync/\n`,
    );
  });
});

// Finding 9: usage errors took two lines, `--delete` was accepted silently, and rsync's flags
// got a bare "Unknown option".
Deno.test("newcomer: usage errors are one line; --delete and rsync's flags say what treesync does", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { file: "d" });
    writeTree(`${dir}/r`, { extra: "x" });
    const [s, r] = [`${dir}/s`, `${dir}/r`];
    const table: Array<[string[], RegExp]> = [
      [["--bogus", s, r], /^treesync: Unknown option '--bogus' \(see 'treesync --help'\)$/],
      [["--delete", s, r], /--delete is not needed: treesync always deletes .*--no-delete/],
      [["-a", s, r], /'-a' \(rsync's archive\): treesync always keeps folders/],
      [["-avz", s, r], /'-a' \(rsync's archive\)/],
      [["-P", s, r], /'-P' \(rsync's progress and partial\): treesync shows a progress line/],
      [["--progress", s, r], /treesync shows a progress line/],
      [["-z", s, r], /nothing to compress/],
      [["-e", "ssh", s, r], /-e\/--rsh only applies to a remote SOURCE or REPLICA/],
      [["-i", s, r], /-i is --interval here .*rsync's -i, itemize, is -v here/],
      [["-r", s, r], /-r names the REPLICA here \(treesync always recurses/],
      [["--delete-after", s, r], /always deletes what SOURCE lacks/],
      [["-u", s, r], /\(rsync's update\): treesync makes REPLICA match SOURCE/],
      [["--adopt", "--no-delete", s, r], /--adopt cannot be combined with --no-delete/],
      [[s], /^treesync: Missing REPLICA/],
    ];
    const before = snapshot(dir, { mtimes: true });
    for (const [args, pattern] of table) {
      const result = await cli(args);
      assertExit(result, 2);
      const lines = result.stderr.split("\n");
      deepStrictEqual([lines.length, lines[1]], [2, ""], `${args.join(" ")}: ${result.stderr}`);
      match(lines[0]!, pattern);
    }
    deepStrictEqual(snapshot(dir, { mtimes: true }), before);
  });
});

// Regression: a first run with --no-delete wrote a record and no mark, so the next ordinary
// run took the folder for a replica and deleted what it held.
Deno.test("newcomer: a first run with --no-delete into a folder never mirrored leaves it unadopted", async () => {
  await withTemp(async (dir) => {
    const { source, replica } = rsyncHabitTree(dir);
    assertExit(await cli(["--no-delete", source, replica]), 0);
    ok(pathExists(metaPaths(`${dir}/backup`).unadopted), "the mark is written");
    assertExit(await cli([source, replica]), 3);
    deepStrictEqual(readTree(`${dir}/backup`), { file: "d", other: { important: "precious" } });
  });
});

// Regression: a run whose --exclude covered the folder's other entries set no mark (first run)
// or took it away (later run), so a run without that rule deleted them.
Deno.test("newcomer: --exclude neither skips nor clears the mark; a run without the rule keeps", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a" });
    writeTree(`${dir}/r`, { "keep.log": "foreign" });
    const [source, replica] = [`${dir}/s`, `${dir}/r`];
    assertExit(await cli(["--exclude", "*.log", source, replica]), 0);
    ok(pathExists(metaPaths(replica).unadopted), "an excluded entry is not the source's");
    assertExit(await cli([source, replica]), 3);
    assertExit(await cli(["--exclude", "*.log", source, replica]), 0);
    ok(pathExists(metaPaths(replica).unadopted), "a filtered run does not adopt");
    assertExit(await cli([source, replica]), 3);
    deepStrictEqual(readTree(replica), { a: "a", "keep.log": "foreign" });
    assertExit(await cli(["--adopt", source, replica]), 0);
    deepStrictEqual(readTree(replica), { a: "a" });
  });
});

// Regression: --restore took any folder for a replica and wrote its files into SOURCE (with
// --overwrite-newer, over the source's own).
Deno.test("newcomer: --restore from a folder that is no replica, or not adopted, is exit 2 and writes nothing", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "mine" });
    writeTree(`${dir}/r`, { a: "theirs, longer", extra: "x" });
    const before = snapshot(`${dir}/s`, { mtimes: true });
    for (const extra of [[], ["--overwrite-newer"]]) {
      const restore = await cli(["--restore", ...extra, `${dir}/s`, `${dir}/r`]);
      assertExit(restore, 2);
      match(
        restore.stderr,
        /^error: Cannot restore from '.*\/r': it is not a treesync replica/m,
      );
    }
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 3); // copies, keeps `extra`, marks it
    const marked = await cli(["--restore", `${dir}/s`, `${dir}/r`]);
    assertExit(marked, 2);
    match(marked.stderr, /it is not adopted yet/);
    deepStrictEqual(readTree(`${dir}/s`), { a: "mine" });
    deepStrictEqual(snapshot(`${dir}/s`, { mtimes: true }), before);
  });
});
