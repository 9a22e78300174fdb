/**
 * Hardening round 3: bracket globs as rsync reads them, file options that refuse fifos,
 * `--max-delete P%` and `-H` under `--watch`, `--verify`'s words. The real CLI on real files.
 *
 * @module
 */

import { deepStrictEqual, match, ok } from "node:assert/strict";
import { crc32 } from "node:zlib";
import { pathExists } from "./files.ts";
import { recordCapBytes } from "./recordfile.ts";
import {
  assertExit,
  cli,
  type CliResult,
  collect,
  jsonLine,
  readTree,
  RunningCli,
  setMtime,
  snapshot,
  spawnCli,
  waitFor,
  withTemp,
  writeTree,
} from "./test_helpers.ts";
import { openRecord } from "./sides/local/recordfiles.ts";

Deno.test("--exclude '[[:digit:]]*' keeps the replica-only 2024-backup, as rsync does", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a", "1-b": "one" });
    writeTree(`${dir}/r`, { "2024-backup": "kept", stale: "old" });
    const result = await cli(["--adopt", "--exclude", "[[:digit:]]*", `${dir}/s`, `${dir}/r`]);
    assertExit(result, 0);
    deepStrictEqual(readTree(`${dir}/r`), { "2024-backup": "kept", a: "a" });
  });
});

Deno.test("--exclude with an unknown POSIX class exits 2 naming it", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a" });
    const result = await cli(["--exclude", "[[:letter:]]-b", `${dir}/s`, `${dir}/r`]);
    assertExit(result, 2);
    match(result.stderr, /'\[:letter:\]' is not a class/);
    ok(!pathExists(`${dir}/r`), "nothing is written");
  });
});

/** Runs the CLI to its end; one that does not end within `timeoutMs` is killed and fails. */
async function cliEnds(args: string[], timeoutMs = 20_000): Promise<CliResult> {
  const child = spawnCli(args);
  let ended = false;
  const result = collect(child).finally(() => ended = true);
  try {
    await waitFor(() => ended, timeoutMs);
  } catch {
    child.kill("SIGKILL");
    await result;
    throw new Error(`treesync ${args.join(" ")} did not end`);
  }
  return await result;
}

Deno.test("--exclude-from a fifo or a device exits 2 naming it, and never blocks", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a" });
    const made = new Deno.Command("mkfifo", { args: [`${dir}/rules`] }).outputSync();
    ok(made.success, "mkfifo");
    for (const [path, kind] of [[`${dir}/rules`, "a fifo"], ["/dev/zero", "a device"]]) {
      const result = await cliEnds(["--exclude-from", path!, `${dir}/s`, `${dir}/r`]);
      assertExit(result, 2);
      match(
        result.stderr,
        new RegExp(`^treesync: Cannot read --exclude-from '${path}': it is ${kind}`, "m"),
      );
    }
    ok(!pathExists(`${dir}/r`), "nothing is written");
  });
});

Deno.test("--verify calls a file written after the record 'changed', not 'mismatch'", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "old", g: "same" });
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    // What a run killed before it saved the record leaves: the file put in place by a rename
    // (a new inode), with the source's new content and mtime.
    Deno.writeTextFileSync(`${dir}/r/.f.new`, "new content");
    setMtime(`${dir}/r/.f.new`, Date.parse("2026-01-02T03:04:05Z"));
    Deno.renameSync(`${dir}/r/.f.new`, `${dir}/r/f`);
    const verify = await cli(["--verify", "--json", `${dir}/r`]);
    assertExit(verify, 1);
    deepStrictEqual(verify.stdout.split("\n")[0], "changed f");
    deepStrictEqual(jsonLine(verify).mismatched, 0);
    deepStrictEqual(jsonLine(verify).changed, 1);
    match(verify.stderr, /Not verified: 1 file changed since the record was written/);
    ok(!/^mismatch /m.test(verify.stdout), verify.stdout);
    // A run mirrors it again, and the record vouches for it.
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    assertExit(await cli(["--verify", `${dir}/r`]), 0);
  });
});

Deno.test("--verify on a corrupt record says it leaves it, never that it rebuilds it", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "f" });
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    Deno.writeTextFileSync(`${dir}/r/.treesync/record`, "treesync-record 3\nnot a record at all");
    const before = Deno.readFileSync(`${dir}/r/.treesync/record`);
    const verify = await cli(["--verify", `${dir}/r`]);
    assertExit(verify, 1);
    ok(!/rebuilding/.test(verify.stderr), verify.stderr);
    match(
      verify.stderr,
      /corrupt .*; --verify leaves it as it is \(the next run rebuilds it\)/,
    );
    deepStrictEqual(Deno.readFileSync(`${dir}/r/.treesync/record`), before);
  });
});

Deno.test("--verify without the runs' --exclude rules says to pass them; with them it passes", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "f" });
    writeTree(`${dir}/r`, { "keep.tmp": "replica only, excluded" });
    assertExit(await cli(["--exclude", "*.tmp", `${dir}/s`, `${dir}/r`]), 0);
    const bare = await cli(["--verify", `${dir}/r`]);
    assertExit(bare, 1);
    deepStrictEqual(bare.stdout, "unrecorded keep.tmp\n");
    match(
      bare.stderr,
      /1 unrecorded file: if the runs use --exclude or --include rules, pass the same rules to --verify/,
    );
    const ruled = await cli(["--verify", "--exclude", "*.tmp", `${dir}/r`]);
    assertExit(ruled, 0);
    deepStrictEqual(ruled.stdout, "");
  });
});

/** A record file: the header, `body` as it is, and a trailer saying `rows` rows. */
function craftRecord(path: string, body: Uint8Array, rows: number): void {
  const header = new TextEncoder().encode("treesync-record 3\n");
  const trailer = new Uint8Array(13);
  let count = rows;
  for (let i = 1; i <= 8; i++) {
    trailer[i] = count % 256;
    count = Math.floor(count / 256);
  }
  new DataView(trailer.buffer).setUint32(9, crc32(trailer.subarray(0, 9)) >>> 0, true);
  const bytes = new Uint8Array(header.length + body.length + trailer.length);
  bytes.set(header);
  bytes.set(body, header.length);
  bytes.set(trailer, header.length + body.length);
  Deno.writeFileSync(path, bytes);
}

/** A varint as the record writes it. */
function varint(value: number): number[] {
  const bytes: number[] = [];
  while (value >= 128) {
    bytes.push(128 + (value % 128));
    value = Math.floor(value / 128);
  }
  return [...bytes, value];
}

/** What opening a record and reading all its blocks reports. */
function recordComplaints(path: string): string[] {
  const messages: string[] = [];
  const record = openRecord(path, {
    maxBytes: Number.MAX_SAFE_INTEGER,
    onCorrupt: (message) => messages.push(message),
  });
  for (const _ of record?.blocks() ?? []) { /* read them all */ }
  record?.close();
  return messages;
}

Deno.test("a record larger than its rows can be, or a block larger than its rows, is refused unread", async () => {
  await withTemp((dir) => {
    deepStrictEqual(recordCapBytes(1000), (1 << 20) + 1000 * 1024);
    // 2 MiB of anything with a trailer that says 1 row: refused at open.
    craftRecord(`${dir}/whole`, new Uint8Array(2 << 20).fill(0xff), 1);
    const whole = recordComplaints(`${dir}/whole`);
    deepStrictEqual(whole.length, 1);
    match(whole[0]!, /is 2\.0 MiB, more than a record of 1 rows can be \(1\.0 MiB\)/);
    // A block that says it is 3 MiB and holds 1 row, in a record of 10,000 rows.
    const bodyLength = 3 << 20;
    const block = new Uint8Array(varint(bodyLength).length + bodyLength + 4);
    block.set([...varint(bodyLength), 0, 0, ...varint(1)]);
    craftRecord(`${dir}/block`, block, 10_000);
    const one = recordComplaints(`${dir}/block`);
    deepStrictEqual(one.length, 1);
    match(one[0]!, /block 1 is 3\.0 MiB, more than a block of 1 rows can be \(65\.0 KiB\)/);
  });
});

Deno.test("--max-delete holding back files that became folders fails nothing and names no action", async () => {
  await withTemp(async (dir) => {
    const source = `${dir}/s`;
    writeTree(source, { keep: "k", f1: "x", f2: "x", f3: "x" });
    assertExit(await cli([source, `${dir}/r`]), 0);
    for (const name of ["f1", "f2", "f3"]) {
      Deno.removeSync(`${source}/${name}`);
      writeTree(`${source}/${name}`, { inside: "y" });
    }
    const held = await cli(["--max-delete", "1", "--json", source, `${dir}/r`]);
    assertExit(held, 3);
    // The one error line is the refusal itself: every error line counts, and nothing else failed.
    deepStrictEqual([jsonLine(held).failed, jsonLine(held).deletionsHeldBack], [1, 3]);
    deepStrictEqual(held.stderr.match(/^error: /gm)?.length, 1, held.stderr);
    ok(!/Cannot|dirattrs/.test(held.stderr), held.stderr);
    deepStrictEqual(readTree(`${dir}/r`), { f1: "x", f2: "x", f3: "x", keep: "k" });
  });
});

/** Starts `--watch` with a quiet period of 1 s and waits for its first (full) run. */
async function startWatch(args: string[]): Promise<RunningCli> {
  const loop = new RunningCli(["--watch", "--watch-delay", "1", "--interval", "1h", ...args]);
  await loop.waitFor(() => loop.runs === 1, "the first run");
  return loop;
}

/** Ends a watch started by {@linkcode startWatch}; it must exit 0. */
async function quitWatch(loop: RunningCli): Promise<void> {
  await loop.send("quit");
  deepStrictEqual(await loop.exitCode(), 0, loop.stderr);
}

Deno.test("watch: --max-delete P% is a share of the whole replica, not of the folders watched", async () => {
  await withTemp(async (dir) => {
    const many: Record<string, string> = {};
    for (let i = 0; i < 320; i++) many[`f${i}`] = `${i}`;
    writeTree(`${dir}/s`, { big: many, small: { a: "a", b: "b", c: "c", d: "d", e: "e" } });
    const loop = await startWatch(["--max-delete", "10%", `${dir}/s`, `${dir}/r`]);
    for (const name of ["a", "b", "c"]) Deno.removeSync(`${dir}/s/small/${name}`);
    await loop.waitFor(() => loop.runs === 2, "the watch run");
    match(loop.stderr, /^watch run: 1 folder \(small\)$/m);
    ok(!/Deleting nothing/.test(loop.stderr), loop.stderr);
    deepStrictEqual(readTree(`${dir}/r/small`), { d: "d", e: "e" });
    await quitWatch(loop);
  });
});

/** The inode of each name under `root`. */
function inodes(root: string, names: string[]): number[] {
  return names.map((name) => Deno.lstatSync(`${root}/${name}`).ino!);
}

Deno.test("-H splits replica names whose source names were split, even with the same mtime", async () => {
  await withTemp(async (dir) => {
    const [source, replica] = [`${dir}/s`, `${dir}/r`];
    writeTree(source, { a: { f: "shared" }, b: {} });
    Deno.linkSync(`${source}/a/f`, `${source}/b/g`);
    assertExit(await cli(["-H", source, replica]), 0);
    deepStrictEqual(new Set(inodes(replica, ["a/f", "b/g"])).size, 1);
    // b/g becomes a copy of its own: same content, same mtime.
    const mtime = Deno.lstatSync(`${source}/b/g`).mtime!;
    Deno.removeSync(`${source}/b/g`);
    Deno.writeTextFileSync(`${source}/b/g`, "shared");
    Deno.utimeSync(`${source}/b/g`, mtime, mtime);
    const split = await cli(["-H", "-v", source, replica]);
    assertExit(split, 0);
    deepStrictEqual(new Set(inodes(replica, ["a/f", "b/g"])).size, 2, split.stderr);
    // The change line says why a file of the same content and mtime is copied again.
    match(split.stderr, /^update (a\/f|b\/g) \(links; 6 B\)$/m);
    deepStrictEqual(Deno.lstatSync(`${replica}/a/f`).nlink, 1);
    deepStrictEqual(readTree(replica), readTree(source));
    deepStrictEqual(snapshot(replica), snapshot(source));
    // And a no-op after.
    const again = await cli(["-H", "--json", source, replica]);
    deepStrictEqual([jsonLine(again).updated, jsonLine(again).linked], [0, 0]);
  });
});

Deno.test("-H relinking names into a folder leaves that folder's mtime right", async () => {
  await withTemp(async (dir) => {
    const [source, replica] = [`${dir}/s`, `${dir}/r`];
    writeTree(source, { a: { f: "same" }, c: { h: "same", other: "o" } });
    assertExit(await cli(["-H", source, replica]), 0);
    // c/h becomes another name of a/f; c/ keeps the mtime it had.
    const mtime = Deno.lstatSync(`${source}/c`).mtime!;
    Deno.removeSync(`${source}/c/h`);
    Deno.linkSync(`${source}/a/f`, `${source}/c/h`);
    Deno.utimeSync(`${source}/c`, mtime, mtime);
    const relinked = await cli(["-H", "--json", source, replica]);
    assertExit(relinked, 0);
    deepStrictEqual(jsonLine(relinked).linked, 1);
    deepStrictEqual(new Set(inodes(replica, ["a/f", "c/h"])).size, 1);
    deepStrictEqual(snapshot(replica), snapshot(source));
    const again = await cli(["-H", "--json", source, replica]);
    deepStrictEqual(jsonLine(again).attrsUpdated, 0);
  });
});

/** Whether two snapshots are the same tree (keys in any order). */
function sameTree(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => a[key] === b[key]);
}

/**
 * Whether the replica's names are linked as the source's are (the same inode in both or in
 * neither, pair by pair), and the trees are the same, mtimes and all.
 */
function linkedAsSource(source: string, replica: string, names: string[]): boolean {
  try {
    const from = inodes(source, names);
    const to = inodes(replica, names);
    for (let i = 0; i < names.length; i++) {
      for (let j = i + 1; j < names.length; j++) {
        if ((from[i] === from[j]) !== (to[i] === to[j])) return false;
      }
    }
    return sameTree(snapshot(source), snapshot(replica));
  } catch {
    return false; // a name is not there yet
  }
}

Deno.test("watch -H: a new name, an edit through one name, a split: the replica's names follow", async () => {
  await withTemp(async (dir) => {
    const [source, replica] = [`${dir}/s`, `${dir}/r`];
    const names = ["a/f", "b/g"];
    writeTree(source, { a: { f: "first" }, b: { other: "o" } });
    const loop = await startWatch(["-H", source, replica]);
    // A new name in b/: the event is in b/ only, but the replica's b/g must be a/f's file.
    Deno.linkSync(`${source}/a/f`, `${source}/b/g`);
    await loop.waitFor(() => linkedAsSource(source, replica, names), "b/g linked to a/f");
    // An edit through a/f: b/g is the same file, so it must show the edit too.
    Deno.writeTextFileSync(`${source}/a/f`, "edited through a/f");
    await loop.waitFor(
      () =>
        linkedAsSource(source, replica, names) &&
        Deno.readTextFileSync(`${replica}/b/g`) === "edited through a/f",
      "the edit reaching b/g",
    );
    // b/g split off as a copy of its own, same content and mtime: the event is in b/ only.
    const mtime = Deno.lstatSync(`${source}/b/g`).mtime!;
    Deno.removeSync(`${source}/b/g`);
    Deno.writeTextFileSync(`${source}/b/g`, "edited through a/f");
    Deno.utimeSync(`${source}/b/g`, mtime, mtime);
    await loop.waitFor(() => linkedAsSource(source, replica, names), "b/g split off");
    deepStrictEqual(Deno.lstatSync(`${replica}/a/f`).nlink, 1);
    await quitWatch(loop);
  });
});

Deno.test("-vv names a folder's attributes as the README does ('attrs d/'), never 'dirattrs'", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { d: { f: "f" } });
    const result = await cli(["-vv", `${dir}/s`, `${dir}/r`]);
    assertExit(result, 0);
    match(result.stderr, /^attrs d\/$/m);
    ok(!/dirattrs/.test(result.stderr), result.stderr);
  });
});
