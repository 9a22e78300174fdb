/**
 * A dry run prints what the real run does: each scenario is run dry, then for real, in-process
 * over real temporary trees, and the change lines of the two are compared.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { parseCommandLine, readExcludeFiles } from "./cli.ts";
import { newRunControl } from "./control.ts";
import { type Reporter } from "./log.ts";
import { isRunningAsRoot, runOnce } from "./run.ts";
import { type RunSummary } from "./summary.ts";
import { setMtime, type Tree, withTemp, writeTree } from "./test_helpers.ts";

/** What one in-process run printed: its change lines, errors and warnings, and its summary. */
interface Printed {
  changes: string[];
  errors: string[];
  warnings: string[];
  summary: RunSummary;
}

/** Runs treesync in-process with `args`, capturing what it prints. */
async function run(args: string[], confirm = true): Promise<Printed> {
  const command = parseCommandLine(args, {}, "/");
  assert(command.kind === "run");
  const options = readExcludeFiles(command.options);
  const printed = { changes: [] as string[], errors: [] as string[], warnings: [] as string[] };
  const report: Reporter = {
    change: (text) => printed.changes.push(text),
    planned: (text) => printed.changes.push(text),
    debug: () => {},
    warn: (text) => printed.warnings.push(text),
    error: (text) => printed.errors.push(text),
    summary: () => {},
    fileOnly: () => {},
    runEnd: () => {},
  };
  const summary = await runOnce(options, {
    report,
    control: newRunControl(),
    confirmDeletes: () => confirm,
    isRoot: isRunningAsRoot(),
  });
  return { ...printed, summary };
}

/** The counts of a summary that a dry run and a real one share. */
function counts(summary: RunSummary): Partial<RunSummary> {
  const { durationMs: _d, dryRun: _r, ...rest } = summary;
  return rest;
}

/**
 * Runs `args` (without `-n`) dry, then for real, on the trees `dir/s` and `dir/r` as `setUp`
 * left them, and checks that both print the same change lines, errors and counts; then that a
 * second real run finds nothing left to do, unless `settles` is false.
 */
async function dryThenReal(
  dir: string,
  args: string[],
  input: { settles?: boolean } = {},
): Promise<Printed> {
  const paths = [`${dir}/s`, `${dir}/r`];
  const dry = await run(["-n", ...args, ...paths]);
  const real = await run([...args, ...paths]);
  assertEquals(dry.changes.sort(), [...real.changes].sort());
  assertEquals(dry.errors, real.errors);
  assertEquals(counts(dry.summary), counts(real.summary));
  if (input.settles ?? true) {
    const again = await run(["-n", ...args, ...paths]);
    assertEquals(again.changes, [], "the real run did everything the dry run said");
  }
  return dry;
}

/** Writes both trees, then mirrors them once for real (so the replica is adopted). */
async function synced(dir: string, trees: { s: Tree; r?: Tree }, args: string[] = []) {
  writeTree(`${dir}/s`, trees.s);
  writeTree(`${dir}/r`, trees.r ?? {});
  const first = await run([...args, `${dir}/s`, `${dir}/r`]);
  assertEquals(first.errors, []);
}

const PAST = Date.parse("2026-01-01T00:00:00Z");

Deno.test("dry = real: new files and folders, into a replica that exists and one that does not", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "one", d: { b: "two", e: {} } });
    Deno.mkdirSync(`${dir}/r`);
    const dry = await dryThenReal(dir, []);
    assert(dry.changes.includes("copy d/b (3 B)"), dry.changes.join("\n"));
  });
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "one", d: { b: "two" } });
    const dry = await dryThenReal(dir, []);
    assert(dry.changes.some((line) => line.startsWith("mkdir ./")), dry.changes.join("\n"));
  });
});

Deno.test("dry = real: an update and attributes of a file and a folder", async () => {
  await withTemp(async (dir) => {
    await synced(dir, { s: { a: "one", b: "two", d: { c: "three" } } });
    Deno.writeTextFileSync(`${dir}/s/a`, "changed");
    Deno.chmodSync(`${dir}/s/b`, 0o600);
    Deno.chmodSync(`${dir}/s/d`, 0o700);
    setMtime(`${dir}/s/d`, PAST);
    const dry = await dryThenReal(dir, []);
    assert(dry.changes.some((line) => line.startsWith("update a")), dry.changes.join("\n"));
    assert(dry.changes.some((line) => line.startsWith("attrs b")), dry.changes.join("\n"));
  });
});

Deno.test("dry = real: a folder renamed with a changed file inside, and a file renamed", async () => {
  await withTemp(async (dir) => {
    await synced(dir, { s: { d: { b: "two", c: "three" }, f: "a file of some length" } });
    Deno.renameSync(`${dir}/s/d`, `${dir}/s/d2`);
    Deno.writeTextFileSync(`${dir}/s/d2/b`, "changed");
    Deno.renameSync(`${dir}/s/f`, `${dir}/s/g`);
    const dry = await dryThenReal(dir, []);
    assert(dry.changes.some((line) => line.startsWith("move d/ -> d2/")), dry.changes.join("\n"));
    assert(dry.changes.some((line) => line.startsWith("update d2/b")), dry.changes.join("\n"));
    assert(dry.changes.some((line) => line.startsWith("move f -> g")), dry.changes.join("\n"));
  });
});

Deno.test("dry = real: type changes, file to folder and folder to file", async () => {
  await withTemp(async (dir) => {
    await synced(dir, { s: { a: "file", d: { inside: "x" } } });
    Deno.removeSync(`${dir}/s/a`);
    writeTree(`${dir}/s`, { a: { child: "y" } });
    Deno.removeSync(`${dir}/s/d`, { recursive: true });
    Deno.writeTextFileSync(`${dir}/s/d`, "now a file");
    await dryThenReal(dir, []);
  });
});

Deno.test("a file replaced by a folder gets the attributes of every folder inside it too", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { x: "a file", keep: "k" });
    await run([`${dir}/s`, `${dir}/r`]);
    Deno.removeSync(`${dir}/s/x`);
    writeTree(`${dir}/s`, { x: { priv: { deeper: { f: "inside" } } } });
    Deno.chmodSync(`${dir}/s/x/priv`, 0o700);
    Deno.chmodSync(`${dir}/s/x/priv/deeper`, 0o750);
    for (
      const [folder, ms] of [["x/priv/deeper", 1e12], ["x/priv", 1.1e12], ["x", 1.2e12]] as const
    ) {
      setMtime(`${dir}/s/${folder}`, ms);
    }
    // The second dry run of dryThenReal finds nothing left: every folder was finished.
    await dryThenReal(dir, []);
    for (const folder of ["x", "x/priv", "x/priv/deeper"]) {
      const [source, replica] = [
        Deno.statSync(`${dir}/s/${folder}`),
        Deno.statSync(`${dir}/r/${folder}`),
      ];
      assertEquals(replica.mode! & 0o7777, source.mode! & 0o7777, `${folder}: mode`);
      assertEquals(replica.mtime?.getTime(), source.mtime?.getTime(), `${folder}: mtime`);
    }
  });
});

Deno.test("dry = real: deletions held back by --max-delete", async () => {
  await withTemp(async (dir) => {
    await synced(dir, { s: { a: "1", b: "2", c: "3", keep: "4" } });
    for (const name of ["a", "b", "c"]) Deno.removeSync(`${dir}/s/${name}`);
    Deno.writeTextFileSync(`${dir}/s/new`, "5");
    const dry = await dryThenReal(dir, ["--max-delete", "1"], { settles: false });
    assert(dry.summary.maxDeleteHit);
    assertEquals(dry.errors.length, 1);
  });
});

Deno.test("dry = real: a replica never mirrored keeps what the source lacks", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { file: "x" });
    writeTree(`${dir}/r`, { other: { important: "precious" } });
    const dry = await dryThenReal(dir, [], { settles: false });
    assert(dry.summary.adoptNeeded);
    assertEquals(dry.changes.filter((line) => line.startsWith("keep")), [
      "keep other/ (not deleted: --adopt deletes it)",
      "keep other/important (not deleted: --adopt deletes it)",
    ]);
  });
});

// Regression: with --keep-deleted, the dry run's lines ended in "(to trash)" and the real run's
// did not.
Deno.test("dry = real: --keep-deleted says what goes to the trash in both", async () => {
  await withTemp(async (dir) => {
    await synced(dir, { s: { gone: "1", changed: "2", same: "3" } });
    Deno.removeSync(`${dir}/s/gone`);
    Deno.writeTextFileSync(`${dir}/s/changed`, "changed");
    const dry = await dryThenReal(dir, ["--keep-deleted", "1d"]);
    assert(dry.changes.includes("delete gone (to trash)"), dry.changes.join("\n"));
  });
});

Deno.test("--keep-deleted: a symlink replacing a file or folder sends nothing to the trash itself", async () => {
  await withTemp(async (dir) => {
    await synced(dir, { s: { ee: { inside: "x" }, ff: "file", ll: { link: "a" } } });
    Deno.removeSync(`${dir}/s/ee`, { recursive: true });
    Deno.removeSync(`${dir}/s/ff`);
    Deno.removeSync(`${dir}/s/ll`);
    writeTree(`${dir}/s`, { ee: { link: "/etc" }, ff: { link: "/etc" }, ll: { link: "b" } });
    const dry = await dryThenReal(dir, ["--keep-deleted", "1d"]);
    const links = dry.changes.filter((line) => line.startsWith("link "));
    assertEquals(links.sort(), [
      "link ee -> /etc",
      "link ff -> /etc",
      "link ll -> b (target) (to trash)",
    ]);
    assert(dry.changes.includes("delete ff (to trash)"), dry.changes.join("\n"));
  });
});

Deno.test("dry = real: hard links with -H", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "linked", c: "alone", d: {} });
    Deno.linkSync(`${dir}/s/a`, `${dir}/s/b`);
    Deno.linkSync(`${dir}/s/a`, `${dir}/s/d/e`);
    Deno.mkdirSync(`${dir}/r`);
    const dry = await dryThenReal(dir, ["-H"]);
    assertEquals(dry.summary.linked, 2);
  });
});

Deno.test("dry = real: a name split off its hard links in the source, same bytes, new mtime", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: { x3: "same" } });
    Deno.linkSync(`${dir}/s/a/x3`, `${dir}/s/a/y3`);
    await run(["-H", `${dir}/s`, `${dir}/r`]);
    // `cp x3 x3.tmp && mv x3.tmp x3`: x3 has one name now, the same bytes, another mtime.
    Deno.copyFileSync(`${dir}/s/a/x3`, `${dir}/s/a/x3.tmp`);
    Deno.renameSync(`${dir}/s/a/x3.tmp`, `${dir}/s/a/x3`);
    setMtime(`${dir}/s/a/x3`, PAST);
    const dry = await dryThenReal(dir, ["-H"]);
    assertEquals(dry.changes.filter((line) => line.includes("x3")), ["update a/x3 (mtime; 4 B)"]);
    assertEquals(Deno.statSync(`${dir}/r/a/x3`).nlink, 1, "split off in one copy");
    assertEquals(Deno.statSync(`${dir}/r/a/y3`).nlink, 1);
  });
});

Deno.test("dry = real: excluded entries are neither copied nor deleted", async () => {
  await withTemp(async (dir) => {
    await synced(dir, { s: { a: "1", "x.tmp": "2", d: { "y.tmp": "3", b: "4" } } }, [
      "--exclude",
      "*.tmp",
    ]);
    Deno.removeSync(`${dir}/s/d`, { recursive: true });
    writeTree(`${dir}/r`, { "z.tmp": "kept" });
    await dryThenReal(dir, ["--exclude", "*.tmp"]);
  });
});
