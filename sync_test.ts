/**
 * Tests of treesync as a user meets it: the real command line run as a subprocess, for exit
 * codes, output, stdin, signals, kills and the attacks of the threat model. The modules' own
 * tests sit beside them in `src/`.
 */

import { deepStrictEqual, match, ok } from "node:assert/strict";
import { purgeTrash, trashFolderName } from "./src/sides/local/trash.ts";
import { pathExists } from "./src/files.ts";
import { displayPath, formatBytes, shortenMiddle } from "./src/format.ts";
import { progressText } from "./src/log.ts";
import { CLOCK_SLACK_MS, RACY_WINDOW_MS, type RecordEntry } from "./src/record.ts";
import {
  allocatedBytes,
  assertExit,
  CAN_DROP_ROOT,
  CAN_HOLD_OPEN,
  CAN_MAKE_HOLES,
  CAN_MOUNT,
  cli,
  collect,
  holdOpen,
  jsonLine,
  makeSparseFile,
  readRecord,
  readRecordBlocks,
  readTree,
  RunningCli,
  setMtime,
  sha256,
  snapshot,
  spawnCli,
  SYNC_FLAGS,
  SYNC_MODULE,
  type Tree,
  waitFor,
  withTemp,
  writeIslands,
  writeLegacyRecord,
  writeRecord,
  writeTree,
} from "./src/test_helpers.ts";

// ------------------------------------------------------------------------------------------------
// The command line as a subprocess
// ------------------------------------------------------------------------------------------------

Deno.test("cli mirrors content, folders, symlinks, modes and mtimes; a second run is a no-op", async () => {
  await withTemp(async (dir) => {
    const source = `${dir}/source`;
    const replica = `${dir}/deep/er/replica`;
    writeTree(source, {
      a: { "f.txt": "hello", b: { c: { "deep.txt": "deep" } } },
      empty: {},
      link: { link: "a/f.txt" },
      dangling: { link: "../../nowhere" },
      "x.bin": "binary\0data",
    });
    Deno.chmodSync(`${source}/a/f.txt`, 0o640);
    Deno.chmodSync(`${source}/x.bin`, 0o755);
    Deno.chmodSync(`${source}/empty`, 0o700);
    setMtime(`${source}/a/f.txt`, 1_500_000_000_123);
    setMtime(`${source}/a/b`, 1_400_000_000_000);
    setMtime(`${source}/empty`, 1_300_000_000_000);

    const first = await cli(["--json", source, replica]);
    assertExit(first, 0);
    deepStrictEqual(snapshot(replica), snapshot(source));
    const counts = jsonLine(first);
    deepStrictEqual([counts.copied, counts.dirsCreated, counts.failed, counts.dryRun], [
      5,
      4,
      0,
      false,
    ]);
    for (const key of ["updated", "deleted", "moved", "dirsDeleted", "bytesCopied", "durationMs"]) {
      ok(typeof counts[key] === "number", `--json has ${key}`);
    }

    const second = await cli(["--json", source, replica]);
    assertExit(second, 0);
    const again = jsonLine(second);
    deepStrictEqual(
      [again.copied, again.updated, again.deleted, again.dirsCreated, again.attrsUpdated],
      [0, 0, 0, 0, 0],
    );
  });
});

Deno.test("cli propagates edits, mode changes, deletions and type changes", async () => {
  await withTemp(async (dir) => {
    const source = `${dir}/s`;
    const replica = `${dir}/r`;
    writeTree(source, {
      edit: "v1",
      mode: "m",
      gone: { nested: { deeper: { "f": "x" } }, "g": "y" },
      fileToDir: "f",
      dirToFile: { inside: "i" },
      fileToLink: "l",
      linkToFile: { link: "edit" },
    });
    assertExit(await cli([source, replica]), 0);

    Deno.writeTextFileSync(`${source}/edit`, "version 2");
    Deno.chmodSync(`${source}/mode`, 0o600);
    Deno.removeSync(`${source}/gone`, { recursive: true });
    Deno.removeSync(`${source}/fileToDir`);
    writeTree(`${source}/fileToDir`, { now: "a folder" });
    Deno.removeSync(`${source}/dirToFile`, { recursive: true });
    Deno.writeTextFileSync(`${source}/dirToFile`, "now a file");
    Deno.removeSync(`${source}/fileToLink`);
    Deno.symlinkSync("edit", `${source}/fileToLink`);
    Deno.removeSync(`${source}/linkToFile`);
    Deno.writeTextFileSync(`${source}/linkToFile`, "now a file");

    const result = await cli(["--json", "-v", source, replica]);
    assertExit(result, 0);
    deepStrictEqual(snapshot(replica), snapshot(source));
    match(result.stderr, /^update edit/m);
    match(result.stderr, /^attrs mode \(mode\)$/m);
    match(result.stderr, /^rmdir gone\/nested\/deeper\/$/m);
    deepStrictEqual(jsonLine(result).dirsDeleted, 4);
  });
});

Deno.test("cli without --checksum trusts size and mtime; with it, content decides", async () => {
  await withTemp(async (dir) => {
    const source = `${dir}/s`;
    const replica = `${dir}/r`;
    writeTree(source, { f: "aaaa" });
    assertExit(await cli([source, replica]), 0);
    // When the record knows nothing of the source there is nothing but size and mtime to go
    // by, as in rsync. (Without any record the replica's files are hashed, and so the source's.)
    const replicaOnly = readRecordBlocks(replica).map(({ folder, rows }) => ({
      folder,
      rows: rows.filter((row) => row.replica).map(({ source: _, ...row }) => row),
    }));
    writeRecord(replica, replicaOnly);
    deepStrictEqual(readRecord(replica).source.size, 0);
    const mtime = Deno.statSync(`${source}/f`).mtime!.getTime();
    Deno.writeTextFileSync(`${source}/f`, "bbbb"); // same size, mtime put back
    setMtime(`${source}/f`, mtime);
    deepStrictEqual(jsonLine(await cli(["--json", source, replica])).updated, 0);
    deepStrictEqual(Deno.readTextFileSync(`${replica}/f`), "aaaa");
    const checked = await cli(["--json", "--checksum", source, replica]);
    deepStrictEqual(jsonLine(checked).updated, 1);
    deepStrictEqual(Deno.readTextFileSync(`${replica}/f`), "bbbb");
  });
});

Deno.test("cli without --checksum catches an edit with its mtime put back when the record saw the file", async () => {
  await withTemp(async (dir) => {
    const source = `${dir}/s`;
    const replica = `${dir}/r`;
    writeTree(source, { f: "aaaa" });
    setMtime(`${source}/f`, Date.now() - 3_600_000);
    assertExit(await cli([source, replica]), 0);
    // ctime has whole seconds: once the clock is in another, the edit gives the file another.
    await untilNextSecond();
    const mtime = Deno.statSync(`${source}/f`).mtime!.getTime();
    Deno.writeTextFileSync(`${source}/f`, "bbbb");
    setMtime(`${source}/f`, mtime);
    deepStrictEqual(jsonLine(await cli(["--json", source, replica])).updated, 1);
    deepStrictEqual(Deno.readTextFileSync(`${replica}/f`), "bbbb");
  });
});

Deno.test("cli mirrors names with spaces, newlines, shell characters, 255 bytes and both Unicode forms", async () => {
  await withTemp(async (dir) => {
    const source = `${dir}/s`;
    const replica = `${dir}/r`;
    const long = "L".repeat(251) + ".txt";
    let deep = "";
    for (let i = 0; i < 40; i++) deep += `level${i}/`;
    writeTree(source, {
      "with space": "1",
      "new\nline": "2",
      "semi;colon": "3",
      "^^^": "4",
      "-leading-dash": "5",
      [long]: "6",
      "caf\u00e9": "nfc",
      "cafe\u0301": "nfd",
      "日本語": { "ファイル": "7" },
    });
    Deno.mkdirSync(`${source}/${deep}`, { recursive: true });
    Deno.writeTextFileSync(`${source}/${deep}/bottom`, "deep");
    assertExit(await cli([source, replica]), 0);
    deepStrictEqual(snapshot(replica), snapshot(source));
    const dry = await cli(["-n", source, replica]);
    deepStrictEqual(dry.stdout, "", "nothing left to do");
  });
});

Deno.test("cli skips names that are not UTF-8 with an error, mirrors the rest and deletes nothing it cannot name", async () => {
  await withTemp(async (dir) => {
    const source = `${dir}/s`;
    const replica = `${dir}/r`;
    writeTree(source, { ok: "fine" });
    writeTree(replica, { holder: {} });
    // Deno cannot create such names; the shell can.
    const made = await new Deno.Command("sh", {
      args: [
        "-c",
        `printf 1 > "$1"/$(printf 'bad\\377'); printf 2 > "$2"/holder/$(printf 'x\\376')`,
        "sh",
        source,
        replica,
      ],
    }).output();
    ok(made.success);
    const result = await cli([source, replica]);
    assertExit(result, 1);
    match(result.stderr, /bad\uFFFD: Skipped: the name is not valid UTF-8/);
    deepStrictEqual(Deno.readTextFileSync(`${replica}/ok`), "fine");
    deepStrictEqual(
      [...Deno.readDirSync(`${replica}/holder`)].length,
      1,
      "the undecodable replica entry stays",
    );
  });
});

Deno.test("cli skips fifos with a warning and exits 0", async () => {
  await withTemp(async (dir) => {
    const source = `${dir}/s`;
    writeTree(source, { f: "x" });
    ok((await new Deno.Command("mkfifo", { args: [`${source}/pipe`] }).output()).success);
    const result = await cli([source, `${dir}/r`]);
    assertExit(result, 0);
    match(result.stderr, /warning: pipe: Skipped: fifos/);
    deepStrictEqual(readTree(`${dir}/r`), { f: "x" });
  });
});

Deno.test({
  name: "cli keeps owner and group when running as root",
  // Only root can give files away; CI runs as root.
  ignore: Deno.uid() !== 0,
  fn: async () => {
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { f: "x", l: { link: "f" } });
      Deno.chownSync(`${dir}/s/f`, 1234, 5678);
      assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
      const stat = Deno.lstatSync(`${dir}/r/f`);
      deepStrictEqual([stat.uid, stat.gid], [1234, 5678]);
    });
  },
});

Deno.test("cli --dry-run prints the plan and leaves every byte as it was", async () => {
  await withTemp(async (dir) => {
    const source = `${dir}/s`;
    const replica = `${dir}/r`;
    writeTree(source, { new: "n", changed: "new content", sub: { f: "f" } });
    writeTree(replica, { changed: "old", extra: { x: "x" } });
    setMtime(`${replica}/changed`, 1_500_000_000_000);
    // The roots alike: the plan lists a folder's attributes only where they differ.
    setMtime(replica, Deno.lstatSync(source).mtime!.getTime());
    const before = snapshot(replica, { skipMeta: false });
    for (const flag of ["-n", "--dry-run", "--scan"]) {
      // A replica made by hand: --adopt lets the plan show its deletions.
      const result = await cli([flag, "--adopt", "--json", source, replica]);
      assertExit(result, 0);
      deepStrictEqual(snapshot(replica, { skipMeta: false }), before, flag);
      const lines = result.stdout.trim().split("\n");
      deepStrictEqual(lines.slice(0, -1).sort(), [
        "copy new (1 B)",
        "copy sub/f (1 B)",
        "delete extra/x",
        "mkdir sub/",
        "rmdir extra/",
        "update changed (size, mtime; 11 B)",
      ]);
      deepStrictEqual(jsonLine(result).dryRun, true);
    }
    assertExit(await cli(["-n", source, `${dir}/missing`]), 0);
    ok(!pathExists(`${dir}/missing`), "a dry run does not create the replica");
  });
});

Deno.test("cli --restore copies missing and differing files back and deletes nothing", async () => {
  await withTemp(async (dir) => {
    const source = `${dir}/s`;
    const replica = `${dir}/r`;
    writeTree(source, { keep: "k", lost: "l", sub: { damaged: "good" } });
    assertExit(await cli([source, replica]), 0);
    Deno.removeSync(`${source}/lost`);
    Deno.writeTextFileSync(`${source}/sub/damaged`, "BAD!");
    Deno.writeTextFileSync(`${source}/only-in-source`, "new work");
    // The damage was made after the last sync: only --overwrite-newer replaces it.
    const result = await cli(["--restore", "--overwrite-newer", source, replica]);
    assertExit(result, 0);
    deepStrictEqual(readTree(source), {
      keep: "k",
      lost: "l",
      "only-in-source": "new work",
      sub: { damaged: "good" },
    });
  });
});

Deno.test("cli --verify passes a clean replica and names a flipped byte with the mtime put back", async () => {
  await withTemp(async (dir) => {
    const source = `${dir}/s`;
    const replica = `${dir}/r`;
    writeTree(source, { a: "alpha", sub: { b: "bravo" } });
    assertExit(await cli([source, replica]), 0);
    assertExit(await cli(["--verify", replica]), 0);
    const mtime = Deno.statSync(`${replica}/sub/b`).mtime!.getTime();
    Deno.writeTextFileSync(`${replica}/sub/b`, "brave");
    setMtime(`${replica}/sub/b`, mtime);
    const result = await cli(["--verify", replica]);
    assertExit(result, 1);
    deepStrictEqual(result.stdout, "mismatch sub/b\n");
  });
});

Deno.test("cli -H keeps hard links: one copy, then links; a change to one name reaches all", async () => {
  await withTemp(async (dir) => {
    const source = `${dir}/s`;
    writeTree(source, { a: { f: "x".repeat(1 << 20) }, b: {}, other: "alone" });
    Deno.linkSync(`${source}/a/f`, `${source}/b/g`);
    Deno.linkSync(`${source}/a/f`, `${source}/a/h`);
    const names = ["a/f", "a/h", "b/g"];
    const inodes = (root: string) => names.map((name) => Deno.lstatSync(`${root}/${name}`).ino);
    const kib = async (root: string) => {
      const du = await new Deno.Command("du", { args: ["-sk", root] }).output();
      return Number(new TextDecoder().decode(du.stdout).split("\t")[0]);
    };

    // Without -H (rsync's default too) each name is a file of its own: three copies.
    assertExit(await cli([source, `${dir}/apart`]), 0);
    deepStrictEqual(new Set(inodes(`${dir}/apart`)).size, 3);

    const first = await cli(["-H", "--json", "-v", source, `${dir}/r`]);
    assertExit(first, 0);
    deepStrictEqual([jsonLine(first).copied, jsonLine(first).linked], [2, 2]);
    match(first.stderr, /^hardlink b\/g => a\/f$/m);
    const [f, h, g] = inodes(`${dir}/r`);
    deepStrictEqual([h, g], [f, f], "one file, three names");
    deepStrictEqual(Deno.lstatSync(`${dir}/r/a/f`).nlink, 3);
    deepStrictEqual(Deno.lstatSync(`${dir}/r/other`).nlink, 1);
    ok(await kib(`${dir}/r`) < 1.5 * 1024, "the space of one copy, not three");
    ok(await kib(`${dir}/apart`) > 2.5 * 1024, "three copies take three times the space");
    deepStrictEqual(snapshot(`${dir}/r`), snapshot(source));

    const again = await cli(["-H", "--json", source, `${dir}/r`]);
    deepStrictEqual([jsonLine(again).copied, jsonLine(again).linked], [0, 0], "a no-op");

    Deno.writeTextFileSync(`${source}/b/g`, "edited through another name");
    const edited = await cli(["-H", "--json", source, `${dir}/r`]);
    assertExit(edited, 0);
    deepStrictEqual([jsonLine(edited).updated, jsonLine(edited).linked], [1, 2]);
    for (const name of names) {
      deepStrictEqual(Deno.readTextFileSync(`${dir}/r/${name}`), "edited through another name");
    }
    deepStrictEqual(new Set(inodes(`${dir}/r`)).size, 1, "still one file");

    // A replica made without -H gets its names linked; --verify reads the file once.
    const linked = await cli(["-H", "--json", source, `${dir}/apart`]);
    deepStrictEqual(jsonLine(linked).linked, 2);
    deepStrictEqual(new Set(inodes(`${dir}/apart`)).size, 1);
    const verify = await cli(["--verify", `${dir}/r`]);
    assertExit(verify, 0);
    match(verify.stderr, /verify: 4 files checked, 0 mismatched/);
  });
});

Deno.test("cli --verify names every name of a damaged hard-linked file", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "content" });
    Deno.linkSync(`${dir}/s/f`, `${dir}/s/g`);
    assertExit(await cli(["-H", `${dir}/s`, `${dir}/r`]), 0);
    const mtime = Deno.lstatSync(`${dir}/r/f`).mtime!;
    Deno.writeTextFileSync(`${dir}/r/f`, "CONTENT");
    Deno.utimeSync(`${dir}/r/f`, mtime, mtime);
    const verify = await cli(["--verify", `${dir}/r`]);
    assertExit(verify, 1);
    deepStrictEqual(verify.stdout, "mismatch f\nmismatch g\n");
  });
});

Deno.test({
  name: "cli -S copies sparse files with their holes: same bytes and size, about the same space",
  ignore: !CAN_MAKE_HOLES,
  fn: async () => {
    await withTemp(async (dir) => {
      const source = `${dir}/s`;
      Deno.mkdirSync(source);
      // 64 MiB with a few islands of data, the last ending 20 MiB before the end of the file;
      // and a file whose size goes past its data by whole blocks and part of one.
      writeIslands(`${source}/disk.img`, 64 << 20, [
        [0, 4096],
        [1_000_000, 70_000],
        [(40 << 20) + 17, 300_000],
      ]);
      writeIslands(`${source}/tail`, (3 << 20) + 5, [[10, 10]]);
      assertExit(await cli(["-S", source, `${dir}/sparse`]), 0);
      assertExit(await cli([source, `${dir}/full`]), 0);
      for (const name of ["disk.img", "tail"]) {
        const bytes = Deno.readFileSync(`${source}/${name}`);
        for (const replica of ["sparse", "full"]) {
          const path = `${dir}/${replica}/${name}`;
          deepStrictEqual(Deno.statSync(path).size, bytes.length, `${replica}/${name}: size`);
          deepStrictEqual(sha256(Deno.readFileSync(path)), sha256(bytes), `${replica}/${name}`);
        }
        const taken = allocatedBytes(`${dir}/sparse/${name}`);
        ok(
          taken <= allocatedBytes(`${source}/${name}`) + (1 << 20),
          `-S: ${name} takes ${taken} bytes`,
        );
        ok(allocatedBytes(`${dir}/full/${name}`) >= bytes.length, `${name} is fully written`);
      }
      // The record has the hash of every byte, zeros included, and the holes read back as such.
      const verified = await cli(["--verify", "--json", `${dir}/sparse`]);
      assertExit(verified, 0);
      deepStrictEqual(jsonLine(verified).checked, 2);
      deepStrictEqual(jsonLine(await cli(["-S", "--json", source, `${dir}/sparse`])).copied, 0);
    });
  },
});

Deno.test("cli --exclude neither copies nor deletes matching entries", async () => {
  await withTemp(async (dir) => {
    const source = `${dir}/s`;
    const replica = `${dir}/r`;
    writeTree(source, {
      "a.tmp": "t",
      keep: "k",
      cache: { c: "c" },
      build: { "m.o": "o", "m.c": "c" },
    });
    writeTree(replica, { "old.tmp": "replica's own", gone: { "x.tmp": "protected" } });
    const result = await cli([
      "--exclude",
      "*.tmp",
      "--exclude",
      "cache/",
      "--exclude",
      "build/*.o",
      source,
      replica,
    ]);
    assertExit(result, 0);
    deepStrictEqual(readTree(replica), {
      build: { "m.c": "c" },
      gone: { "x.tmp": "protected" },
      keep: "k",
      "old.tmp": "replica's own",
    });
  });
});

Deno.test("cli --exclude-from and --include mirror what the first matching rule keeps", async () => {
  await withTemp(async (dir) => {
    const source = `${dir}/s`;
    const replica = `${dir}/r`;
    writeTree(source, {
      "main.c": "m",
      "main.o": "o",
      "notes.txt": "n",
      "keep.log": "k",
      "debug.log": "d",
      lib: { "util.c": "u", "util.h": "h", deep: { "x.c": "x" } },
      docs: { "a.c": "a" },
    });
    writeTree(replica, { "old.h": "replica's own", "stale.c": "gone from the source" });
    Deno.writeTextFileSync(
      `${dir}/rules.txt`,
      "# never mirrored\r\ndocs/\r\n+ keep.log\r\n*.log\r\n",
    );
    const result = await cli([
      "--adopt",
      "--exclude-from",
      "rules.txt",
      "--include",
      "*/",
      "--include",
      "*.c",
      "--exclude",
      "*",
      source,
      replica,
    ], { cwd: dir });
    assertExit(result, 0);
    // `docs/` comes before `*/`, `+ keep.log` before `*.log`; `*` takes the rest but for
    // folders and .c files. An included file the source lacks goes; an excluded one stays.
    deepStrictEqual(readTree(replica), {
      "keep.log": "k",
      lib: { deep: { "x.c": "x" }, "util.c": "u" },
      "main.c": "m",
      "old.h": "replica's own",
    });
  });
});

Deno.test("cli refuses a missing --exclude-from file with one line and exit 2, writing nothing", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "x" });
    for (const mode of [[], ["--interval", "1h"], ["--dry-run"]]) {
      const args = [...mode, "--log", "logs/", "--exclude-from", "missing.txt", "s", "r"];
      const before = snapshot(dir);
      const result = await cli(args, { cwd: dir });
      assertExit(result, 2);
      deepStrictEqual(
        result.stderr,
        "treesync: Cannot read --exclude-from 'missing.txt': no such file or folder\n",
      );
      deepStrictEqual(snapshot(dir), before, `nothing written for ${args.join(" ")}`);
    }
  });
});

Deno.test("cli --no-delete copies and updates but deletes nothing", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "new" });
    writeTree(`${dir}/r`, { f: "old", extra: "stays", d: { x: "x" } });
    setMtime(`${dir}/r/f`, 1_000_000_000_000); // same size: the mtime tells them apart
    assertExit(await cli(["--no-delete", `${dir}/s`, `${dir}/r`]), 0);
    deepStrictEqual(readTree(`${dir}/r`), { d: { x: "x" }, extra: "stays", f: "new" });
  });
});

Deno.test("cli --interactive is a usage error without a terminal", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "x" });
    const result = await cli(["-I", `${dir}/s`, `${dir}/r`]);
    assertExit(result, 2);
    match(result.stderr, /--interactive needs a terminal/);
  });
});

Deno.test("cli --interactive asks on a terminal; declining keeps entries and still copies", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "new" });
    writeTree(`${dir}/r`, { extra: "x", f: "old" });
    setMtime(`${dir}/r/f`, 1_000_000_000_000);
    // The answer is typed once the question is on the pseudo-terminal.
    const { shown } = await answerOnTerminal(
      ["-I", "--adopt", `${dir}/s`, `${dir}/r`],
      "Delete them? [y/N]",
      "n\n",
    );
    match(shown, /1 entry would be deleted/);
    match(shown, /extra/);
    deepStrictEqual(readTree(`${dir}/r`), { extra: "x", f: "new" });
  });
});

Deno.test("cli --log writes every change with a timestamp, into a folder it creates", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "x", g: "y" });
    const result = await cli(["-q", "--log", `${dir}/logs/`, `${dir}/s`, `${dir}/r`]);
    assertExit(result, 0);
    deepStrictEqual(result.stderr, "", "-q prints nothing when all is well");
    const log = Deno.readTextFileSync(`${dir}/logs/treesync.log`);
    // Local time with its offset (the tests run without TZ: UTC, +00:00).
    match(log, /^\d{4}-\d\d-\d\dT[\d:.]+[+-]\d\d:\d\d INFO +\[\d+\] copy f \(1 B\)$/m);
    match(log, /copy g/);
    match(log, /sync: 2 copied/);
  });
});

Deno.test("cli prints the summary by default and each change with -v", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "x" });
    const quiet = await cli([`${dir}/s`, `${dir}/r1`]);
    deepStrictEqual(quiet.stderr.trim().split("\n").length, 1);
    match(quiet.stderr, /^sync: 1 copied/);
    const verbose = await cli(["-v", `${dir}/s`, `${dir}/r2`]);
    match(verbose.stderr, /^copy f \(1 B\)$/m);
  });
});

Deno.test("cli takes defaults from TREESYNC_SOURCE and TREESYNC_REPLICA; flags win", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "x" });
    const env = { TREESYNC_SOURCE: `${dir}/s`, TREESYNC_REPLICA: `${dir}/r` };
    assertExit(await cli([], { env }), 0);
    deepStrictEqual(readTree(`${dir}/r`), { f: "x" });
    assertExit(await cli(["-r", `${dir}/other`], { env }), 0);
    deepStrictEqual(readTree(`${dir}/other`), { f: "x" });
  });
});

Deno.test("cli refuses bad input with one line and exit 2, changing nothing", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { inner: {}, f: "x" });
    Deno.symlinkSync(`${dir}/s`, `${dir}/alias`);
    const table: Array<[string[], RegExp]> = [
      [["--frobnicate", `${dir}/s`, `${dir}/r`], /Unknown option '--frobnicate'/],
      [[`${dir}/missing`, `${dir}/r`], /Source '.*\/missing' does not exist/],
      [[`${dir}/s/f`, `${dir}/r`], /is not a folder/],
      [[`${dir}/s`, `${dir}/s/inner/replica`], /the replica is inside the source/],
      [[`${dir}/s/inner`, `${dir}/s`], /the source is inside the replica/],
      [[`${dir}/s`, `${dir}/alias`], /they are the same folder/],
      [[`${dir}/s`, `${dir}/alias/inner`], /the replica is inside the source/],
      [["--interval", "0", `${dir}/s`, `${dir}/r`], /Invalid duration '0'/],
    ];
    for (const [args, pattern] of table) {
      const before = snapshot(dir);
      const result = await cli(args);
      assertExit(result, 2);
      match(result.stderr, pattern);
      ok(!/^\s+at /m.test(result.stderr), "no stack trace");
      deepStrictEqual(snapshot(dir), before, `nothing changed for ${args.join(" ")}`);
    }
  });
});

Deno.test("cli refuses an empty source over a non-empty replica with exit 3, naming the flag", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, {});
    writeTree(`${dir}/r`, { precious: "data" });
    const result = await cli([`${dir}/s`, `${dir}/r`]);
    assertExit(result, 3);
    match(result.stderr, /--allow-empty-source/);
    deepStrictEqual(readTree(`${dir}/r`), { precious: "data" });
    assertExit(await cli(["--allow-empty-source", "--adopt", `${dir}/s`, `${dir}/r`]), 0);
    deepStrictEqual(readTree(`${dir}/r`), {});
  });
});

Deno.test("cli rebuilds a corrupt record with a warning", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "x" });
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    // One bit flipped in the last byte of the last block's rows: the byte before the block's
    // checksum (4 bytes), which the record's end marker (13 bytes) follows.
    const path = `${dir}/r/.treesync/record`;
    const bytes = Deno.readFileSync(path);
    bytes[bytes.length - 13 - 4 - 1]! ^= 1;
    Deno.writeFileSync(path, bytes);
    const result = await cli([`${dir}/s`, `${dir}/r`]);
    assertExit(result, 0);
    match(
      result.stderr,
      /^warning: The record '.*\/\.treesync\/record' is corrupt \(block 1 fails its checksum\); rebuilding it$/m,
    );
    deepStrictEqual(readRecord(`${dir}/r`).replica.get("f")?.size, 1);
  });
});

Deno.test("cli records the SHA-256 of every copied file", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "some content", sub: { g: "more" } });
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    const record = readRecord(`${dir}/r`);
    const hashes = Object.fromEntries([...record.replica].map(([path, e]) => [path, e.hash]));
    deepStrictEqual(hashes, {
      f: sha256(Deno.readFileSync(`${dir}/r/f`)),
      "sub/g": sha256(Deno.readFileSync(`${dir}/r/sub/g`)),
    });
  });
});

Deno.test("cli exits 3 while another live run holds the lock, and takes over a dead one's", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "x" });
    Deno.mkdirSync(`${dir}/r/.treesync`, { recursive: true });
    const lockPath = `${dir}/r/.treesync/lock`;
    {
      // This test process holds the lock as a live run would.
      using lockFile = Deno.openSync(lockPath, { write: true, create: true });
      ok(lockFile.tryLockSync(true));
      lockFile.writeSync(new TextEncoder().encode(`${Deno.pid}\n`));
      const held = await cli([`${dir}/s`, `${dir}/r`]);
      assertExit(held, 3);
      match(held.stderr, new RegExp(`another treesync run \\(pid ${Deno.pid}\\)`));
      ok(!pathExists(`${dir}/r/f`));
    }
    // Closed without unlocking, as when a run dies: the pid is still in the file.
    deepStrictEqual(Deno.readTextFileSync(lockPath), `${Deno.pid}\n`);
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    deepStrictEqual(Deno.readTextFileSync(lockPath), "", "the lock is released");
  });
});

Deno.test({
  name: "cli: two concurrent runs on one replica, the second exits 3",
  ignore: !CAN_HOLD_OPEN,
  fn: async () => {
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { f: "held" });
      await using held = await holdOpen(`${dir}/s/f`);
      const first = spawnCli([`${dir}/s`, `${dir}/r`]);
      // The lock file alone does not say the lock is taken; a copy under way does (a run locks
      // before it writes anything else), and it waits while the file is held.
      await waitFor(() => held.wanted);
      const second = await cli([`${dir}/s`, `${dir}/r`]);
      assertExit(second, 3);
      match(second.stderr, /another treesync run \(pid \d+\) holds/);
      await held.release();
      assertExit(await collect(first), 0);
    });
  },
});

Deno.test({
  name: "cli killed mid-copy leaves no partial file under the final name; the next run cleans up",
  ignore: !CAN_HOLD_OPEN,
  fn: async () => {
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { big: "x".repeat(3 << 20) });
      writeTree(`${dir}/r`, {});
      const tmp = `${dir}/r/.treesync/tmp`;
      {
        // Killed while the copy's temporary file is open and the source file is held.
        await using held = await holdOpen(`${dir}/s/big`);
        const child = spawnCli([`${dir}/s`, `${dir}/r`]);
        await waitFor(() => held.wanted);
        child.kill("SIGKILL");
        await child.status;
      }
      ok(!pathExists(`${dir}/r/big`), "no file under the final name");
      ok([...Deno.readDirSync(tmp)].length > 0, "the copy's temporary file is in tmp");
      assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
      deepStrictEqual([...Deno.readDirSync(tmp)].length, 0);
      deepStrictEqual(Deno.readTextFileSync(`${dir}/r/big`), "x".repeat(3 << 20));
    });
  },
});

Deno.test("cli --help and --version print and exit 0", async () => {
  const help = await cli(["--help"]);
  assertExit(help, 0);
  match(help.stdout, /Usage: treesync \[options\] SOURCE REPLICA/);
  const version = await cli(["-V"]);
  assertExit(version, 0);
  match(version.stdout, /^treesync \d+\.\d+\.\d+ \(deno \d/);
});

// ------------------------------------------------------------------------------------------------
// Subprocess helpers
// ------------------------------------------------------------------------------------------------

Deno.test("deno.json: the compiled binary gets exactly the permissions the tests run the CLI with", () => {
  const config = JSON.parse(Deno.readTextFileSync(new URL("./deno.json", import.meta.url)));
  const flagsOf = (task: string) => task.split(/\s+/).filter((word) => word.startsWith("--allow-"));
  deepStrictEqual(flagsOf(config.tasks.compile), SYNC_FLAGS);
  ok(!SYNC_FLAGS.includes("--allow-all") && !SYNC_FLAGS.includes("-A"), "least privilege");
});

// ------------------------------------------------------------------------------------------------
// The loop: --interval, stdin commands, signals, recovery
// ------------------------------------------------------------------------------------------------

/** A looping CLI whose output is collected as it comes, driven through its stdin. */
const LoopProcess = RunningCli;

Deno.test("loop: a change in the source is mirrored by a later run; quit exits 0 with totals", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { first: "1" });
    const loop = new LoopProcess(["--interval", "1", `${dir}/s`, `${dir}/r`]);
    await loop.waitFor(() => pathExists(`${dir}/r/first`), "the first run");
    writeTree(`${dir}/s`, { second: "2" });
    await loop.waitFor(() => pathExists(`${dir}/r/second`), "the change to be mirrored");
    await loop.send("quit");
    deepStrictEqual(await loop.exitCode(), 0);
    // The same words as each run's summary, and the same as before the summaries shared them.
    match(
      loop.stderr,
      /^loop totals: \d+ runs? \(0 failed\), 2 copied, 0 updated, 0 moved, 0 deleted, 2 B, 0 failures, uptime \d+s$/m,
    );
  });
});

Deno.test("loop: the first run starts without waiting for the interval; `now` starts another", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a" });
    const loop = new LoopProcess(["--interval", "1h", `${dir}/s`, `${dir}/r`]);
    await loop.waitFor(() => loop.runs === 1, "the first run, at once");
    writeTree(`${dir}/s`, { b: "b" });
    await loop.send("now");
    await loop.waitFor(() => pathExists(`${dir}/r/b`), "the run that `now` asked for");
    await loop.send("quit");
    deepStrictEqual(await loop.exitCode(), 0);
  });
});

Deno.test("loop: --exclude-from is read once, at the start", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a", "a.tmp": "t" });
    Deno.writeTextFileSync(`${dir}/rules.txt`, "*.tmp\n");
    const loop = new LoopProcess([
      "-i",
      "1h",
      "--exclude-from",
      `${dir}/rules.txt`,
      `${dir}/s`,
      `${dir}/r`,
    ]);
    await loop.waitFor(() => loop.runs === 1, "the first run");
    Deno.removeSync(`${dir}/rules.txt`);
    writeTree(`${dir}/s`, { b: "b", "b.tmp": "t" });
    await loop.send("now");
    await loop.waitFor(() => pathExists(`${dir}/r/b`), "the run that `now` asked for");
    await loop.send("quit");
    deepStrictEqual(await loop.exitCode(), 0);
    deepStrictEqual(readTree(`${dir}/r`), { a: "a", b: "b" });
  });
});

Deno.test("loop: status, help and unknown words are answered on stdout", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a" });
    const loop = new LoopProcess(["-i", "1h", `${dir}/s`, `${dir}/r`]);
    await loop.waitFor(() => loop.runs === 1, "the first run");
    await loop.send("status");
    await loop.send("help");
    await loop.send("frobnicate");
    await loop.waitFor(
      () => /Unknown command 'frobnicate'; type help/.test(loop.stdout),
      "the hint",
    );
    match(loop.stdout, /^last run: 1 copied/m);
    match(loop.stdout, /^next run in \d+[dhms]/m);
    match(loop.stdout, /^ {2}quit /m);
    await loop.send("q");
    deepStrictEqual(await loop.exitCode(), 0);
  });
});

Deno.test("loop: stdin at end of file is not a quit; SIGTERM exits 143 with the record saved", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a" });
    const loop = new LoopProcess(["-i", "1", `${dir}/s`, `${dir}/r`], { stdin: "null" });
    await loop.waitFor(() => loop.runs >= 2, "a second run after stdin ended");
    writeTree(`${dir}/s`, { b: "b" });
    await loop.waitFor(() => pathExists(`${dir}/r/b`), "the change");
    loop.child.kill("SIGTERM");
    deepStrictEqual(await loop.exitCode(), 143);
    deepStrictEqual(readRecord(`${dir}/r`).replica.get("b")?.size, 1);
    match(loop.stderr, /^loop totals: /m);
  });
});

Deno.test({
  name: "loop: quit in the middle of a long copy finishes that file and stops",
  ignore: !CAN_HOLD_OPEN,
  fn: async () => {
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { "a-big": "a".repeat(3 << 20), "b-big": "b" });
      // The copy of a-big is held at its start until `quit` is seen.
      await using held = await holdOpen(`${dir}/s/a-big`);
      // One job: one file in flight. (With more, each file in flight is finished.)
      const loop = new LoopProcess(["-i", "1h", "--jobs", "1", `${dir}/s`, `${dir}/r`]);
      await loop.waitFor(() => held.wanted, "the first copy to start");
      await loop.send("quit");
      await loop.waitFor(() => /^quit: finishing the current file/m.test(loop.stderr), "quit");
      await held.release();
      deepStrictEqual(await loop.exitCode(), 0);
      deepStrictEqual(
        Deno.readTextFileSync(`${dir}/r/a-big`),
        "a".repeat(3 << 20),
        "the file in flight completed",
      );
      ok(!pathExists(`${dir}/r/b-big`), "the next file was not started");
      ok(readRecord(`${dir}/r`).replica.has("a-big"), "the finished file is recorded");
    });
  },
});

/**
 * Two SIGINTs while a large file is copied, the second once the first was seen: the file in
 * flight is abandoned, the files copied before it stay recorded, and the exit code is 130.
 */
async function interruptTwiceMidCopy(loopArgs: string[]): Promise<void> {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a1: "first", a2: "second", "z-big": "z".repeat(8 << 20) });
    // The large copy is held at its start until both signals are seen, then read in chunks.
    await using held = await holdOpen(`${dir}/s/z-big`);
    // One job: the small files are copied before the large one starts.
    const run = new LoopProcess([...loopArgs, "--jobs", "1", `${dir}/s`, `${dir}/r`], {
      stdin: "null",
    });
    await run.waitFor(() => held.wanted, "the large copy to start");
    run.child.kill("SIGINT");
    await run.waitFor(() => /SIGINT: finishing/.test(run.stderr), "the first SIGINT to be seen");
    // A SIGINT within a second of the acknowledgement is taken as the same key press (a
    // wrapper's copy of it): signal until one counts as a second press.
    let sentAt = 0;
    await run.waitFor(() => {
      if (Date.now() - sentAt > 250) {
        sentAt = Date.now();
        run.child.kill("SIGINT");
      }
      return /SIGINT again: abandoning/.test(run.stderr);
    }, "the second SIGINT to be seen");
    await held.release();
    deepStrictEqual(await run.exitCode(), 130, run.stderr);
    match(run.stderr, /^warning: SIGINT again: abandoning the current file/m);
    ok(!pathExists(`${dir}/r/z-big`), "no partial file under the final name");
    const recorded = readRecord(`${dir}/r`).replica;
    ok(recorded.has("a1") && recorded.has("a2"), `the record: ${[...recorded.keys()]}`);
    ok(!recorded.has("z-big"), "the abandoned file is not recorded");
  });
}

// A second SIGINT used to exit at once without saving the record.
Deno.test({
  name: "loop: a second SIGINT abandons the file in flight, saves the record and exits 130",
  ignore: !CAN_HOLD_OPEN,
  fn: () => interruptTwiceMidCopy(["-i", "1h"]),
});

Deno.test({
  name: "cli: a second SIGINT abandons the file in flight, saves the record and exits 130",
  ignore: !CAN_HOLD_OPEN,
  fn: () => interruptTwiceMidCopy([]),
});

Deno.test({
  name: "loop: a run longer than the interval warns, and the next run follows",
  ignore: !CAN_HOLD_OPEN,
  fn: async () => {
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { big: "big" });
      // The first run's copy is held until the run has lasted longer than the interval.
      await using held = await holdOpen(`${dir}/s/big`);
      const loop = new LoopProcess(["-i", "1", `${dir}/s`, `${dir}/r`]);
      await loop.waitFor(() => held.wanted, "the first run's copy");
      // What is tested is a duration: the run began before its copy did.
      const copyingAt = Date.now();
      await loop.waitFor(() => Date.now() - copyingAt > 1_000, "the run to outlast the interval");
      await held.release();
      await loop.waitFor(() => loop.runs >= 2, "two runs");
      match(
        loop.stderr,
        /warning: Run 1 took .*longer than the interval of 1s; starting the next one now/,
      );
      await loop.send("quit");
      deepStrictEqual(await loop.exitCode(), 0);
    });
  },
});

Deno.test("loop: the replica and the log folder, deleted mid-loop, are recreated", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a" });
    const loop = new LoopProcess(["-i", "1", "--log", `${dir}/logs/`, `${dir}/s`, `${dir}/r`]);
    await loop.waitFor(() => loop.runs >= 1, "the first run");
    match(Deno.readTextFileSync(`${dir}/logs/treesync.log`), /copy a/);
    Deno.removeSync(`${dir}/r`, { recursive: true });
    Deno.removeSync(`${dir}/logs`, { recursive: true });
    await loop.waitFor(() => pathExists(`${dir}/r/a`), "the replica to be recreated");
    await loop.waitFor(
      () =>
        pathExists(`${dir}/logs/treesync.log`) &&
        /copy a/.test(Deno.readTextFileSync(`${dir}/logs/treesync.log`)),
      "the log file to be recreated with the new lines",
    );
    // The lock was taken again on the new replica: a one-shot run is refused.
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 3);
    await loop.send("quit");
    deepStrictEqual(await loop.exitCode(), 0);
  });
});

Deno.test("loop: a missing source fails runs without deleting; the loop picks up when it is back", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a" });
    const loop = new LoopProcess(["-i", "1", `${dir}/s`, `${dir}/r`]);
    await loop.waitFor(() => pathExists(`${dir}/r/a`), "the first run");
    Deno.renameSync(`${dir}/s`, `${dir}/away`);
    await loop.waitFor(
      () => /error: Run \d+ failed: Source .* does not exist/.test(loop.stderr),
      "a failed run",
    );
    ok(pathExists(`${dir}/r/a`), "nothing deleted");
    await loop.send("status");
    await loop.waitFor(() => /last run \(failed\)/.test(loop.stdout), "status to show the failure");
    Deno.renameSync(`${dir}/away`, `${dir}/s`);
    writeTree(`${dir}/s`, { b: "b" });
    await loop.waitFor(() => pathExists(`${dir}/r/b`), "the source to be picked up again");
    await loop.send("quit");
    deepStrictEqual(await loop.exitCode(), 0);
  });
});

Deno.test("loop: quit after a failed run exits 1", async () => {
  await withTemp(async (dir) => {
    const loop = new LoopProcess(["-i", "1h", `${dir}/missing`, `${dir}/r`]);
    await loop.waitFor(() => loop.runs === 1, "the first run");
    await loop.send("quit");
    deepStrictEqual(await loop.exitCode(), 1);
    match(loop.stderr, /loop totals: 1 run \(1 failed\)/);
  });
});

Deno.test("loop: bad --interval values exit 2, quoting the value", async () => {
  for (const value of ["5x", "0", "-3", "1.5.2m"]) {
    const result = await cli([`--interval=${value}`, "/tmp", "/nonexistent/replica"]);
    assertExit(result, 2);
    match(result.stderr, new RegExp(`Invalid duration '${value.replaceAll(".", "\\.")}'`));
  }
});

// ------------------------------------------------------------------------------------------------
// Operations: trash, max-delete, progress, bounded logs
// ------------------------------------------------------------------------------------------------

Deno.test("trashFolderName() and purgeTrash() keep what is younger than the limit", async () => {
  await withTemp((dir) => {
    deepStrictEqual(trashFolderName(new Date("2026-11-22T03:16:14.123Z")), "20261122T031614Z");
    writeTree(dir, {
      "20261120T000000Z": { f: "old" },
      "20261122T000000Z": { f: "new" },
      "notes": {},
    });
    const purged = purgeTrash(dir, 86_400_000, new Date("2026-11-22T12:00:00Z"));
    deepStrictEqual(purged, ["20261120T000000Z"]);
    deepStrictEqual(Object.keys(readTree(dir)).sort(), ["20261122T000000Z", "notes"]);
  });
});

Deno.test("progressText() shows counts, bytes, rate, ETA and the current file", () => {
  const text = progressText({
    phase: "copying",
    done: 3,
    total: 10,
    bytes: 1024 ** 3,
    totalBytes: 3 * 1024 ** 3,
    current: "a/big.iso",
    startedAt: 0,
  }, 2000);
  deepStrictEqual(text, "copying 3/10, 1.0 GiB of 3.0 GiB, 512.0 MiB/s, ETA 4s, a/big.iso");
});

Deno.test("cli --keep-deleted moves deleted and overwritten files to the trash, never mirrored", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { keep: "k", edit: "v1", gone: { f: "deleted content" } });
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    Deno.writeTextFileSync(`${dir}/s/edit`, "version 2");
    Deno.removeSync(`${dir}/s/gone`, { recursive: true });
    const dry = await cli(["-n", "--keep-deleted", "7d", `${dir}/s`, `${dir}/r`]);
    match(dry.stdout, /^delete gone\/f \(to trash\)$/m);
    match(dry.stdout, /^update edit \(size, mtime; 9 B\) \(to trash\)$/m);
    ok(!pathExists(`${dir}/r/.treesync/trash`), "a dry run trashes nothing");

    assertExit(await cli(["--keep-deleted", "7d", `${dir}/s`, `${dir}/r`]), 0);
    deepStrictEqual(readTree(`${dir}/r`), { edit: "version 2", keep: "k" });
    const runs = [...Deno.readDirSync(`${dir}/r/.treesync/trash`)].map((item) => item.name);
    deepStrictEqual(runs.length, 1);
    match(runs[0]!, /^\d{8}T\d{6}Z$/);
    deepStrictEqual(readTree(`${dir}/r/.treesync/trash/${runs[0]}`), {
      edit: "v1",
      gone: { f: "deleted content" },
    });

    const again = await cli(["--json", "--keep-deleted", "7d", `${dir}/s`, `${dir}/r`]);
    deepStrictEqual(jsonLine(again).deleted, 0, "the trash is not extraneous");
    ok(pathExists(`${dir}/r/.treesync/trash/${runs[0]}/edit`));
  });
});

Deno.test("cli --keep-deleted purges only expired trash at the start of a run", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "x" });
    writeTree(`${dir}/r/.treesync/trash`, { "20000101T000000Z": { old: "o" } });
    const young = trashFolderName(new Date(Date.now() - 3_600_000));
    writeTree(`${dir}/r/.treesync/trash/${young}`, { recent: "r" });
    const result = await cli(["-v", "--keep-deleted", "1d", `${dir}/s`, `${dir}/r`]);
    assertExit(result, 0);
    match(result.stderr, /^purge trash 20000101T000000Z\/ \(older than 1d\)$/m);
    deepStrictEqual(Object.keys(readTree(`${dir}/r/.treesync/trash`)), [young]);
  });
});

Deno.test("cli --max-delete: over the limit nothing is deleted, the rest is copied, exit 3", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a", b: "b", c: "c", d: "d" });
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    for (const name of ["a", "b", "c"]) Deno.removeSync(`${dir}/s/${name}`);
    writeTree(`${dir}/s`, { added: "new" });

    const dry = await cli(["-n", "--max-delete", "2", `${dir}/s`, `${dir}/r`]);
    assertExit(dry, 3);
    match(dry.stderr, /would delete 3 entries, more than --max-delete 2/);

    const over = await cli(["--json", "--max-delete", "50%", `${dir}/s`, `${dir}/r`]);
    assertExit(over, 3);
    match(over.stderr, /more than --max-delete 50% = 2 of 4 entries/);
    deepStrictEqual(readTree(`${dir}/r`), { a: "a", added: "new", b: "b", c: "c", d: "d" });
    deepStrictEqual([jsonLine(over).deletionsHeldBack, jsonLine(over).maxDeleteHit], [3, true]);

    const under = await cli(["--max-delete", "3", `${dir}/s`, `${dir}/r`]);
    assertExit(under, 0);
    deepStrictEqual(readTree(`${dir}/r`), { added: "new", d: "d" });
  });
});

const ESC = String.fromCharCode(27);
const CLEAR_LINE = `\r${ESC}[2K`;

/**
 * Runs the CLI under a pseudo-terminal (`script`) and returns what the terminal showed, with
 * `file` held open until `until` says so (given what is shown so far and how long ago the run
 * first opened the file): the run's copy or hash of the file waits meanwhile, so the run lasts
 * as long as the test needs.
 */
async function onTerminalHolding(
  args: string[],
  file: string,
  until: (shown: string, heldMs: number) => boolean,
): Promise<string> {
  const command = [Deno.execPath(), "run", "--quiet", ...SYNC_FLAGS, SYNC_MODULE, ...args]
    .map((word) => `'${word}'`).join(" ");
  await using held = await holdOpen(file);
  const terminal = new RunningCli(
    new Deno.Command("script", {
      args: ["-qec", `stty cols 200; ${command}`, "/dev/null"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn(),
    { stdin: "null" },
  );
  await terminal.waitFor(() => held.wanted, `the run to open ${file}`);
  const wantedAt = Date.now();
  await terminal.waitFor(() => until(terminal.stdout, Date.now() - wantedAt), "the output");
  await held.release();
  await terminal.exitCode();
  return terminal.stdout;
}

/** A run that lasts long enough for the progress line to be drawn, were it ever. */
const PAST_A_SECOND = (_shown: string, heldMs: number) => heldMs > 1_500;

Deno.test({
  name: "cli shows a live progress line on a terminal only, and never with -q",
  ignore: !CAN_HOLD_OPEN,
  fn: async () => {
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { big: "x".repeat(3 << 20) });
      const big = `${dir}/s/big`;
      const drawn = (what: string) => (shown: string) => shown.includes(`${CLEAR_LINE}${what}`);
      const shown = await onTerminalHolding([`${dir}/s`, `${dir}/r`], big, drawn("copying"));
      const lines = shown.split(CLEAR_LINE).slice(1);
      ok(lines.length > 0, `a progress line is drawn: ${JSON.stringify(shown)}`);
      match(lines[0]!, /^copying 0\/1, [\d.]+ (B|[KMG]iB) of 3\.0 MiB, .*\/s(, ETA .*)?, big/);
      match(shown, /sync: 1 copied/);

      // Runs that last over a second without writing much: --checksum hashes both sides.
      // The copy recorded both hashes; without the record, --checksum must read both sides again.
      const forget = () => Deno.removeSync(`${dir}/r/.treesync/record`);
      forget();
      const quiet = await onTerminalHolding(
        ["-q", "-c", `${dir}/s`, `${dir}/r`],
        big,
        PAST_A_SECOND,
      );
      ok(!/hashing|copying/.test(quiet), `no progress with -q: ${JSON.stringify(quiet)}`);
      forget();
      const hashing = await onTerminalHolding(
        ["-c", `${dir}/s`, `${dir}/r`],
        big,
        drawn("hashing: "),
      );
      ok(hashing.includes(`${CLEAR_LINE}hashing: `), "hashing progress is drawn too");

      forget();
      const piped = await (async () => {
        await using held = await holdOpen(big);
        const run = new RunningCli(["-c", "--log", `${dir}/log`, `${dir}/s`, `${dir}/r`], {
          stdin: "null",
        });
        await run.waitFor(() => held.wanted, "the hash to start");
        const wantedAt = Date.now();
        await run.waitFor(() => PAST_A_SECOND("", Date.now() - wantedAt), "a long run");
        await held.release();
        return { code: await run.exitCode(), stdout: run.stdout, stderr: run.stderr };
      })();
      assertExit(piped, 0);
      for (
        const [text, where] of [[piped.stderr, "stderr"], [
          Deno.readTextFileSync(`${dir}/log`),
          "log",
        ]]
      ) {
        ok(!text!.includes("hashing") && !text!.includes(ESC), `no progress in ${where}`);
      }
    });
  },
});

Deno.test("cli rotates its log file by size, keeping --log-keep old files", async () => {
  await withTemp(async (dir) => {
    const files: Tree = {};
    for (let i = 0; i < 400; i++) files[`file-with-a-longish-name-${i}`] = `${i}`;
    writeTree(`${dir}/s`, files);
    const log = `${dir}/logs/treesync.log`;
    const args = ["--log", log, "--log-max-size", "4K", "--log-keep", "2"];
    assertExit(await cli([...args, `${dir}/s`, `${dir}/r`]), 0);
    const names = [...Deno.readDirSync(`${dir}/logs`)].map((item) => item.name).sort();
    deepStrictEqual(names, ["treesync.log", "treesync.log.1", "treesync.log.2"]);
    for (const name of names) {
      ok(Deno.statSync(`${dir}/logs/${name}`).size <= 4096 + 1024, `${name} stays near 4K`);
    }
  });
});

// ------------------------------------------------------------------------------------------------
// Engine: moves, record-backed hashes
// ------------------------------------------------------------------------------------------------

Deno.test("cli moves renamed files instead of copying them, keeping the replica's inodes", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "alpha content", d1: { x: "x content" }, d2: {}, edited: "12345" });
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    const inodeOf = (path: string) => Deno.lstatSync(`${dir}/r/${path}`).ino;
    const [a, x] = [inodeOf("a"), inodeOf("d1/x")];
    Deno.renameSync(`${dir}/s/a`, `${dir}/s/renamed`);
    Deno.renameSync(`${dir}/s/d1/x`, `${dir}/s/d2/x`);
    Deno.renameSync(`${dir}/s/edited`, `${dir}/s/edited2`);
    Deno.writeTextFileSync(`${dir}/s/edited2`, "54321"); // renamed and edited: a copy
    const result = await cli(["--json", "-v", `${dir}/s`, `${dir}/r`]);
    assertExit(result, 0);
    deepStrictEqual(snapshot(`${dir}/r`), snapshot(`${dir}/s`));
    const counts = jsonLine(result);
    deepStrictEqual([counts.moved, counts.copied, counts.deleted], [2, 1, 1]);
    match(result.stderr, /^move a -> renamed$/m);
    deepStrictEqual([inodeOf("renamed"), inodeOf("d2/x")], [a, x]);
    assertExit(await cli(["--verify", `${dir}/r`]), 0);
  });
});

Deno.test("cli renames a folder of many files in one step, reading nothing", async () => {
  await withTemp(async (dir) => {
    const files: Tree = {};
    for (let i = 0; i < 200; i++) files[`photo-${i}.jpg`] = `picture ${i}`.repeat(i + 1);
    writeTree(`${dir}/s/photos/2020`, files);
    writeTree(`${dir}/s/photos`, { "index.txt": "list" });
    // Files written a moment ago are racily clean; these photos are from last year.
    for (const name of [...Object.keys(files).map((n) => `2020/${n}`), "index.txt"]) {
      setMtime(`${dir}/s/photos/${name}`, Date.now() - 365 * 86_400_000);
    }
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    // Fresh copies are racily clean (hashed in the second their ctime shows) until read again,
    // in a later second: a --checksum run does that once.
    await untilNextSecond();
    assertExit(await cli(["-c", `${dir}/s`, `${dir}/r`]), 0);
    Deno.renameSync(`${dir}/s/photos`, `${dir}/s/pictures`);
    const result = await cli(["--json", "-vv", `${dir}/s`, `${dir}/r`]);
    assertExit(result, 0);
    deepStrictEqual(snapshot(`${dir}/r`), snapshot(`${dir}/s`));
    deepStrictEqual(result.stderr.match(/^move /gm), ["move "], "one rename");
    match(result.stderr, /^move photos\/ -> pictures\/$/m);
    ok(!/^hash /m.test(result.stderr), "hashes came from the record, by inode");
    deepStrictEqual(jsonLine(result).copied, 0);
    assertExit(await cli(["--verify", `${dir}/r`]), 0);
  });
});

Deno.test("cli --checksum rereads racily clean files once, then reads nothing", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { settled: "old content" });
    setMtime(`${dir}/s/settled`, Date.now() - 3_600_000);
    await untilNextSecond(); // so `settled` last changed in a second before it is hashed
    writeTree(`${dir}/s`, { fresh: "just written" });
    assertExit(await cli(["-c", `${dir}/s`, `${dir}/r`]), 0);
    // Past the racy window, so this run's hashes of `fresh` will be trusted.
    await untilTrusted([`${dir}/s/fresh`, `${dir}/r/fresh`]);
    const second = await cli(["-c", "-vv", `${dir}/s`, `${dir}/r`]);
    assertExit(second, 0);
    const hashed = second.stderr.match(/^hash \w+ .*$/gm) ?? [];
    // `fresh` was modified within a second of being hashed, and both copies were hashed in the
    // second their ctime shows: those hashes are not trusted yet.
    deepStrictEqual(hashed.sort(), [
      "hash source fresh",
      "hash replica fresh",
      "hash replica settled",
    ]);
    const third = await cli(["-c", "-vv", `${dir}/s`, `${dir}/r`]);
    deepStrictEqual(third.stderr.match(/^hash /gm), null, "now every hash is trusted");
  });
});

Deno.test("cli without --checksum fixes only the mtime of a touched file whose content is unchanged", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "same bytes" });
    setMtime(`${dir}/s/f`, Date.now() - 3_600_000);
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    const inode = Deno.lstatSync(`${dir}/r/f`).ino;
    setMtime(`${dir}/s/f`, Date.now() - 1_800_000); // touched, not changed
    const result = await cli(["--json", `${dir}/s`, `${dir}/r`]);
    deepStrictEqual([jsonLine(result).updated, jsonLine(result).attrsUpdated], [0, 1]);
    deepStrictEqual(Deno.lstatSync(`${dir}/r/f`).ino, inode, "not copied");
    deepStrictEqual(snapshot(`${dir}/r`), snapshot(`${dir}/s`));
  });
});

Deno.test({
  name: "cli --restore works when source and replica are on different file systems",
  ignore: !CAN_MOUNT,
  fn: async () => {
    // The source gets a tmpfs of its own: a restore must write its temporary files on the
    // source's file system, or the final rename fails with EXDEV.
    await withTemp(async (dir) => {
      const mountPoint = `${dir}/tmpfs`;
      Deno.mkdirSync(mountPoint);
      const mounted = await new Deno.Command("mount", {
        args: ["-t", "tmpfs", "-o", "size=16m", "tmpfs", mountPoint],
        stderr: "null",
      }).output();
      ok(mounted.success, "mounting works when CAN_MOUNT says so");
      try {
        const source = `${mountPoint}/s`;
        writeTree(source, { keep: "k", lost: "lost content" });
        assertExit(await cli([source, `${dir}/r`]), 0);
        Deno.removeSync(`${source}/lost`);
        assertExit(await cli(["--restore", source, `${dir}/r`]), 0);
        deepStrictEqual(readTree(source), { keep: "k", lost: "lost content" });
        ok(!pathExists(`${source}/.treesync`), "no metadata folder is left in the source");
      } finally {
        await new Deno.Command("umount", { args: [mountPoint] }).output();
      }
    });
  },
});

Deno.test("cli --keep-deleted keeps an overwritten dangling symlink in the trash", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { l: { link: "nowhere" } });
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    Deno.removeSync(`${dir}/s/l`);
    Deno.symlinkSync("elsewhere", `${dir}/s/l`);
    assertExit(await cli(["--keep-deleted", "1d", `${dir}/s`, `${dir}/r`]), 0);
    const [run] = [...Deno.readDirSync(`${dir}/r/.treesync/trash`)].map((item) => item.name);
    // A stat() that follows links would call the dangling link absent and lose it.
    deepStrictEqual(Deno.readLinkSync(`${dir}/r/.treesync/trash/${run}/l`), "nowhere");
    deepStrictEqual(Deno.readLinkSync(`${dir}/r/l`), "elsewhere");
  });
});

Deno.test("cli: swapped names, an identical twin renamed, and a size-only match all end exact", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, {
      a: "AAAA",
      b: "BBBB",
      twin1: "same bytes",
      twin2: "same bytes",
      sized: "12345",
    });
    const old = Date.now() - 3_600_000;
    for (const name of ["a", "b", "twin1", "twin2", "sized"]) setMtime(`${dir}/s/${name}`, old);
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    Deno.renameSync(`${dir}/s/a`, `${dir}/s/tmp`);
    Deno.renameSync(`${dir}/s/b`, `${dir}/s/a`);
    Deno.renameSync(`${dir}/s/tmp`, `${dir}/s/b`);
    Deno.renameSync(`${dir}/s/twin2`, `${dir}/s/twin3`);
    Deno.removeSync(`${dir}/s/sized`);
    writeTree(`${dir}/s`, { other: "54321" }); // same size as the deleted file, other bytes
    const result = await cli(["--json", `${dir}/s`, `${dir}/r`]);
    assertExit(result, 0);
    deepStrictEqual(snapshot(`${dir}/r`), snapshot(`${dir}/s`));
    const counts = jsonLine(result);
    // The swap is two updates, the renamed twin one move, the size-only match a copy.
    deepStrictEqual([counts.updated, counts.moved, counts.copied, counts.deleted], [2, 1, 1, 1]);
    assertExit(await cli(["--verify", `${dir}/r`]), 0);
  });
});

Deno.test("cli mirrors through a symlinked source or replica root, keeping the links", async () => {
  await withTemp(async (dir) => {
    // Regression: the root was lstat'ed, so a symlinked root looked like a symlink to replace,
    // and the plan deleted the whole replica.
    writeTree(`${dir}/real-source`, { f: "data", sub: { g: "more" } });
    Deno.mkdirSync(`${dir}/real-replica`);
    Deno.symlinkSync(`${dir}/real-source`, `${dir}/source-link`);
    Deno.symlinkSync(`${dir}/real-replica`, `${dir}/replica-link`);
    const dry = await cli(["-n", `${dir}/source-link`, `${dir}/replica-link`]);
    assertExit(dry, 0);
    ok(!/^(rmdir|delete) \./m.test(dry.stdout), `no removal of a root:\n${dry.stdout}`);
    assertExit(await cli([`${dir}/source-link`, `${dir}/replica-link`]), 0);
    deepStrictEqual(readTree(`${dir}/real-replica`), { f: "data", sub: { g: "more" } });
    deepStrictEqual(Deno.readLinkSync(`${dir}/replica-link`), `${dir}/real-replica`);
    deepStrictEqual(
      jsonLine(await cli(["--json", `${dir}/source-link`, `${dir}/replica-link`])).copied,
      0,
    );
  });
});

Deno.test({
  name: "cli refuses a replica inside the source through a bind mount (device and inode)",
  ignore: !CAN_MOUNT,
  fn: async () => {
    await withTemp(async (dir) => {
      writeTree(`${dir}/src`, { inner: {}, f: "x" });
      Deno.mkdirSync(`${dir}/view`);
      const mounted = await new Deno.Command("mount", {
        args: ["--bind", `${dir}/src`, `${dir}/view`],
        stderr: "null",
      }).output();
      ok(mounted.success, "mounting works when CAN_MOUNT says so");
      try {
        // Real paths differ under a bind mount; only device and inode show it is one folder.
        const table: Array<[string, string, RegExp]> = [
          [`${dir}/src`, `${dir}/view`, /they are the same folder/],
          [`${dir}/src`, `${dir}/view/inner/replica`, /the replica is inside the source/],
          [`${dir}/view/inner`, `${dir}/src`, /the source is inside the replica/],
        ];
        for (const [source, replica, pattern] of table) {
          const result = await cli([source, replica]);
          assertExit(result, 2);
          match(result.stderr, pattern);
        }
        deepStrictEqual(readTree(`${dir}/src`), { f: "x", inner: {} }, "nothing was written");
      } finally {
        await new Deno.Command("umount", { args: [`${dir}/view`] }).output();
      }
    });
  },
});

// ------------------------------------------------------------------------------------------------
// Safety: own files, bind mounts, swapped folders, the record, set-up errors (issue 8)
// ------------------------------------------------------------------------------------------------

/** A folder outside every tree under test, with files a run must never touch. */
function makeDecoy(path: string): () => Record<string, string> {
  writeTree(path, { "keep.txt": "decoy", "20000101T000000Z": { old: "decoy trash" }, tmp: {} });
  Deno.writeTextFileSync(`${path}/tmp/inside`, "decoy temp");
  return () => snapshot(path, { skipMeta: false });
}

Deno.test("cli refuses links and strangers among its own files, touching nothing outside (exit 2)", async () => {
  // Regression: links in .treesync were followed: the tmp cleanup emptied the folder a planted
  // `tmp` link pointed to, the lock truncated /etc/passwd, trash purges ran in other folders.
  const plants: Array<[string, (replica: string, decoy: string) => void, RegExp]> = [
    [".treesync", (r, d) => Deno.symlinkSync(d, `${r}/.treesync`), /\.treesync' is a symlink/],
    [".treesync/tmp", (r, d) => Deno.symlinkSync(d, `${r}/.treesync/tmp`), /tmp' is a symlink/],
    [".treesync/trash", (r, d) => Deno.symlinkSync(d, `${r}/.treesync/trash`), /trash' is a/],
    [
      ".treesync/lock",
      (r, d) => Deno.symlinkSync(`${d}/keep.txt`, `${r}/.treesync/lock`),
      /lock' is a symlink/,
    ],
    [
      ".treesync/record",
      (r, d) => Deno.symlinkSync(`${d}/keep.txt`, `${r}/.treesync/record`),
      /\.treesync\/record' is a symlink/,
    ],
    [
      ".treesync/record.json (version 2)",
      (r, d) => Deno.symlinkSync(`${d}/keep.txt`, `${r}/.treesync/record.json`),
      /record\.json' is a symlink/,
    ],
    [".treesync as a file", (r) => Deno.writeTextFileSync(`${r}/.treesync`, "x"), /is a file/],
    [".treesync/lock as a folder", (r) => Deno.mkdirSync(`${r}/.treesync/lock`), /is a folder/],
  ];
  for (const [name, plant, message] of plants) {
    await withTemp(async (dir) => {
      const decoy = makeDecoy(`${dir}/decoy`);
      const before = decoy();
      writeTree(`${dir}/s`, { f: "new" });
      writeTree(`${dir}/r`, { old: "to delete", f: "to overwrite", ".treesync": {} });
      if (name === ".treesync" || name.includes("as a file")) {
        Deno.removeSync(`${dir}/r/.treesync`);
      }
      plant(`${dir}/r`, `${dir}/decoy`);
      const result = await cli(["--keep-deleted", "1s", `${dir}/s`, `${dir}/r`]);
      assertExit(result, 2);
      match(result.stderr, message);
      deepStrictEqual(result.stderr.trim().split("\n").length, 1, `one line for ${name}`);
      deepStrictEqual(decoy(), before, `the decoy is untouched (${name})`);
      deepStrictEqual(readTree(`${dir}/r`), { f: "to overwrite", old: "to delete" }, name);
    });
  }
});

Deno.test("cli reads the record only when it is a regular file, never hanging on a fifo", async () => {
  // Regression: a fifo at the record hung the run for good, holding the lock, deaf to SIGTERM;
  // a record linked to /dev/zero grew the process to 14 GB.
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "x" });
    writeTree(`${dir}/r`, { ".treesync": {} });
    const record = `${dir}/r/.treesync/record`;
    const fifo = new Deno.Command("mkfifo", { args: [record] });
    ok((await fifo.output()).success);
    const child = spawnCli([`${dir}/s`, `${dir}/r`]);
    const finished = collect(child);
    let done = false;
    finished.then(() => done = true);
    try {
      await waitFor(() => done);
    } catch (error) {
      child.kill("SIGKILL");
      throw error;
    }
    const result = await finished;
    assertExit(result, 2);
    match(result.stderr, /\.treesync\/record' is a special file/);
    Deno.removeSync(record);
    Deno.symlinkSync("/dev/zero", record);
    const linked = await cli([`${dir}/s`, `${dir}/r`]);
    assertExit(linked, 2);
    match(linked.stderr, /\.treesync\/record' is a symlink/);
  });
});

Deno.test("cli rebuilds a huge record of zeros with a warning, refused at its header", async () => {
  // The record is read as a stream, its header and end checked first: 4 GiB of zeros (sparse:
  // they take no disk) fail at the header, before any block is read, and the run goes on.
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "x" });
    writeTree(`${dir}/r`, { ".treesync": {} });
    await makeSparseFile(`${dir}/r/.treesync/record`, 4 * 2 ** 30);
    const result = await cli([`${dir}/s`, `${dir}/r`]);
    assertExit(result, 0);
    match(
      result.stderr,
      /^warning: The record '.*\/\.treesync\/record' is corrupt \(it does not start as a treesync record of format 3\); rebuilding it$/m,
    );
    deepStrictEqual(readTree(`${dir}/r`), { f: "x" });
    ok(Deno.statSync(`${dir}/r/.treesync/record`).size < 1000, "rebuilt");
    deepStrictEqual([...readRecord(`${dir}/r`).replica.keys()], ["f"]);
  });
});

Deno.test({
  name: "cli refuses a replica bind-mounted from a folder inside the source, writing nothing",
  ignore: !CAN_MOUNT,
  fn: async () => {
    // Regression: `mount --bind S/sub X; treesync S X` renamed the source's own files (move
    // detection) and wrote .treesync/ into the source.
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { f: "x", sub: { inner: "y", deeper: { g: "z" } } });
      Deno.mkdirSync(`${dir}/view`);
      const mount = new Deno.Command("mount", { args: ["--bind", `${dir}/s/sub`, `${dir}/view`] });
      ok((await mount.output()).success);
      try {
        const before = snapshot(`${dir}/s`, { skipMeta: false });
        const result = await cli([`${dir}/s`, `${dir}/view`]);
        assertExit(result, 2);
        match(result.stderr, /the replica is the folder 'sub' of the source/);
        const restore = await cli(["--restore", `${dir}/s`, `${dir}/view`]);
        assertExit(restore, 2);
        deepStrictEqual(snapshot(`${dir}/s`, { skipMeta: false }), before, "nothing was written");
      } finally {
        await new Deno.Command("umount", { args: [`${dir}/view`] }).output();
      }
    });
  },
});

Deno.test({
  name: "cli never writes through a replica folder swapped for a symlink during the run",
  ignore: !CAN_HOLD_OPEN,
  fn: async () => {
    // Regression: `delete z/old` removed a file outside the replica, and the folder-attribute
    // step chmodded and touched the outside folder.
    await withTemp(async (dir) => {
      const decoy = makeDecoy(`${dir}/decoy`);
      Deno.writeTextFileSync(`${dir}/decoy/old`, "outside, same name");
      Deno.writeTextFileSync(`${dir}/decoy/new`, "outside, to be overwritten?");
      Deno.chmodSync(`${dir}/decoy`, 0o700);
      const before = decoy();
      writeTree(`${dir}/s`, { big: "big", z: { new: "new file", sub: {} } });
      Deno.chmodSync(`${dir}/s/z`, 0o751);
      writeTree(`${dir}/r`, { z: { old: "to delete", sub: {} } });
      await using held = await holdOpen(`${dir}/s/big`);
      // One worker: the big file is copied alone, and z/new after it, once z has been swapped
      // (with two, z/new could be renamed in the instant between its check and the swap).
      const child = spawnCli(["-j", "1", "--adopt", `${dir}/s`, `${dir}/r`]);
      // While the big file's copy is held, the replica's folder z becomes a link to the decoy.
      await waitFor(() => held.wanted);
      Deno.renameSync(`${dir}/r/z`, `${dir}/z-moved-away`);
      Deno.symlinkSync(`${dir}/decoy`, `${dir}/r/z`);
      await held.release();
      const result = await collect(child);
      deepStrictEqual(decoy(), before, "nothing outside the replica changed");
      deepStrictEqual(Deno.lstatSync(`${dir}/decoy`).mode! & 0o777, 0o700);
      assertExit(result, 1);
      match(result.stderr, /was replaced during the run/);
    });
  },
});

Deno.test({
  name: "cli: setup failures exit 2 with one line naming the path",
  fn: async () => {
    // Regression: these exited 1 as "Unexpected failure", some without a path.
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { f: "x" });
      Deno.writeTextFileSync(`${dir}/file`, "a file");
      const table: Array<[string[], RegExp]> = [
        [[`${dir}/s`, `${dir}/file/replica`], /'.*\/file\/replica': a part of the path is not a/],
        [[`${dir}/s`, "/proc/treesync-replica"], /'\/proc\/treesync-replica'/],
      ];
      for (const [args, message] of table) {
        const result = await cli(args);
        assertExit(result, 2);
        match(result.stderr, message);
        deepStrictEqual(result.stderr.trim().split("\n").length, 1, result.stderr);
        ok(!/Unexpected/.test(result.stderr), result.stderr);
      }
    });
  },
});

Deno.test({
  name: "cli: a read-only replica, or one whose parent is read-only, exits 2 naming it",
  ignore: !CAN_MOUNT,
  fn: async () => {
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { f: "x" });
      writeTree(`${dir}/ro`, { r: { old: "y" } });
      const mounts = [
        ["--bind", `${dir}/ro`, `${dir}/ro`],
        ["-o", "remount,ro,bind", `${dir}/ro`],
      ];
      for (const args of mounts) {
        ok((await new Deno.Command("mount", { args }).output()).success);
      }
      try {
        for (const replica of [`${dir}/ro/r`, `${dir}/ro/new/replica`]) {
          const result = await cli([`${dir}/s`, replica]);
          assertExit(result, 2);
          match(result.stderr, /Read-only file system|read-only/i);
          match(result.stderr, new RegExp(`'${dir}/ro/`));
          deepStrictEqual(result.stderr.trim().split("\n").length, 1, result.stderr);
        }
      } finally {
        await new Deno.Command("umount", { args: [`${dir}/ro`] }).output();
      }
    });
  },
});

Deno.test({
  name: "cli: an unreadable source root exits 2 naming it, and nothing is deleted",
  ignore: !CAN_DROP_ROOT,
  fn: async () => {
    // Regression: the message was `error: : Cannot list folder` (no path), exit 1.
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { f: "x" });
      writeTree(`${dir}/r`, { f: "x", g: "y" });
      Deno.chmodSync(`${dir}/s`, 0);
      try {
        // In a new user namespace, root's override of file permissions does not apply.
        const output = await new Deno.Command("unshare", {
          args: [
            "-U",
            Deno.execPath(),
            "run",
            "--quiet",
            ...SYNC_FLAGS,
            SYNC_MODULE,
            `${dir}/s`,
            `${dir}/r`,
          ],
          env: { NO_COLOR: "1" },
          stdout: "piped",
          stderr: "piped",
        }).output();
        const stderr = new TextDecoder().decode(output.stderr);
        deepStrictEqual(output.code, 2, stderr);
        match(stderr, new RegExp(`Cannot list the source '${dir}/s': permission denied`));
        deepStrictEqual(readTree(`${dir}/r`), { f: "x", g: "y" });
      } finally {
        Deno.chmodSync(`${dir}/s`, 0o755);
      }
    });
  },
});

Deno.test({
  name: "cli on a full disk still deletes what the source no longer has",
  ignore: !CAN_MOUNT,
  fn: async () => {
    // Regression: writing the pid into the lock failed on a full disk and stopped the run
    // before its deletions, so no run could ever free space.
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { keep: "k" });
      Deno.mkdirSync(`${dir}/r`);
      const mount = new Deno.Command("mount", {
        args: ["-t", "tmpfs", "-o", "size=256k", "tmpfs", `${dir}/r`],
      });
      ok((await mount.output()).success);
      try {
        assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
        Deno.writeFileSync(`${dir}/r/gone`, new Uint8Array(64 << 10));
        // Fill the disk to the last block.
        try {
          using filler = Deno.openSync(`${dir}/r/zz-filler`, { write: true, createNew: true });
          for (;;) filler.writeSync(new Uint8Array(4096));
        } catch {
          // ENOSPC: full.
        }
        Deno.writeTextFileSync(`${dir}/r/.treesync/lock`, "");
        const result = await cli([`${dir}/s`, `${dir}/r`]);
        ok(!pathExists(`${dir}/r/gone`), `deleted:\n${result.stderr}`);
        ok(!pathExists(`${dir}/r/zz-filler`), "deleted");
        deepStrictEqual(readTree(`${dir}/r`), { keep: "k" });
      } finally {
        await new Deno.Command("umount", { args: [`${dir}/r`] }).output();
      }
    });
  },
});

Deno.test({
  name:
    "cli honours SIGTERM that comes while it plans: it stops before copying everything, exit 143",
  ignore: !CAN_HOLD_OPEN,
  fn: async () => {
    await withTemp(async (dir) => {
      // Long names: many lines of output from few files.
      const files: Tree = {};
      for (let i = 0; i < 2_500; i++) files[`f${i}-${"x".repeat(200)}`] = "";
      writeTree(`${dir}/s`, { many: files });
      assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
      const newFiles = 300;
      Deno.mkdirSync(`${dir}/s/new`);
      for (let i = 0; i < newFiles; i++) Deno.writeTextFileSync(`${dir}/s/new/${i}`, `${i}`);
      // The first new file's copy waits until the signal is seen: the copies cannot all be
      // done before, however fast they are.
      await using held = await holdOpen(`${dir}/s/new/0`);
      const child = spawnCli(["-vv", `${dir}/s`, `${dir}/r`]);
      // -vv explains each unchanged entry while the plan is made: once those lines flow, the
      // run is planning, and it is held in its writes of them while they are not read (some
      // 550 KB, far more than the pipe and the reader hold).
      const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
      let seen = "";
      while (!/^keep many\/f/m.test(seen)) {
        const { value, done } = await reader.read();
        if (done) break;
        seen += value;
      }
      child.kill("SIGTERM");
      for (let read = await reader.read(); !read.done; read = await reader.read()) {
        seen += read.value;
        if (/^warning: SIGTERM: finishing/m.test(seen)) await held.release();
      }
      const status = await child.status;
      await child.stdout.cancel();
      deepStrictEqual(status.code, 143, seen.slice(-2000));
      // A signal is seen when the event loop next turns: at the latest between copy batches.
      const copied = pathExists(`${dir}/r/new`) ? [...Deno.readDirSync(`${dir}/r/new`)].length : 0;
      ok(copied < newFiles, `the run stopped before copying all ${newFiles} new files`);
    });
  },
});

// ------------------------------------------------------------------------------------------------
// Safety: a log that cannot be written (issue 8)

/** Lines warning that the log file cannot be written. */
function logWarnings(stderr: string): number {
  return stderr.match(/^warning: cannot write the log file '/gm)?.length ?? 0;
}

/** No uncaught error and no stack trace: the log path never crashes the process. */
function assertNoCrash(stderr: string): void {
  ok(!/Uncaught|^\s+at /m.test(stderr), `a crash or stack trace:\n${stderr}`);
}

/** Fills the file system holding `folder` until it says no space is left. */
function fillDisk(folder: string): void {
  using file = Deno.openSync(`${folder}/filler`, { write: true, createNew: true });
  const block = new Uint8Array(4096);
  try {
    for (;;) file.writeSync(block);
  } catch (error) {
    if (!/No space left/.test(String(error))) throw error;
  }
}

Deno.test("log: one that cannot be opened at startup is exit 2, one line naming it, nothing changed", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a" });
    Deno.writeTextFileSync(`${dir}/file`, "");
    Deno.symlinkSync(`${dir}/nowhere`, `${dir}/dangling`);
    // Under the task's flags Deno refuses /dev and /proc when they are opened.
    for (
      const log of ["/dev/full", "/proc/version", `${dir}/file/treesync.log`, `${dir}/dangling`]
    ) {
      const result = await cli(["--log", log, `${dir}/s`, `${dir}/r`]);
      assertExit(result, 2);
      deepStrictEqual(result.stderr.trim().split("\n").length, 1, result.stderr);
      match(result.stderr, new RegExp(`^treesync: Cannot open the log file '${log}': `));
      assertNoCrash(result.stderr);
      ok(!pathExists(`${dir}/r`), "nothing was written");
    }
    ok(!pathExists(`${dir}/nowhere`), "no file is created through a dangling link");
  });
});

Deno.test("log: one that opens but cannot be written costs one warning; the exit code is the run's own", async () => {
  await withTemp(async (dir) => {
    const files: Tree = {};
    for (let i = 0; i < 300; i++) files[`file-${i}`] = `${i}`;
    writeTree(`${dir}/s`, files);
    // /dev/full fails each write with ENOSPC, /proc/version with EIO.
    for (
      const [log, reason] of [["/dev/full", /No space left/], [
        "/proc/version",
        /Input\/output error/,
      ]] as const
    ) {
      if (pathExists(`${dir}/r`)) Deno.removeSync(`${dir}/r`, { recursive: true });
      // A 16K log is written in 4K blocks: several writes fail, one warning is printed.
      const args = ["--log", log, "--log-max-size", "16K", `${dir}/s`, `${dir}/r`];
      const result = await collect(spawnCli(args, { allowAll: true }));
      assertExit(result, 0);
      deepStrictEqual(readTree(`${dir}/r`), readTree(`${dir}/s`));
      deepStrictEqual(logWarnings(result.stderr), 1, result.stderr);
      match(
        result.stderr,
        new RegExp(`cannot write the log file '${log}': ${reason.source}`),
      );
      assertNoCrash(result.stderr);
    }
    // A run that deserves exit 3 still gets it.
    writeTree(`${dir}/r`, { extra: "x" });
    const limited = await collect(
      spawnCli(["--log", "/dev/full", "--max-delete", "0", `${dir}/s`, `${dir}/r`], {
        allowAll: true,
      }),
    );
    assertExit(limited, 3);
    deepStrictEqual(logWarnings(limited.stderr), 1, limited.stderr);
    assertNoCrash(limited.stderr);
  });
});

Deno.test("log: a loop whose log fails every write (/dev/full) keeps running; quit exits 0", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a" });
    const loop = new LoopProcess(["-i", "1", "--log", "/dev/full", `${dir}/s`, `${dir}/r`], {
      allowAll: true,
    });
    await loop.waitFor(() => loop.runs >= 2, "two runs");
    writeTree(`${dir}/s`, { b: "b" });
    await loop.waitFor(() => pathExists(`${dir}/r/b`), "a change mirrored by a later run");
    await loop.send("quit");
    deepStrictEqual(await loop.exitCode(), 0);
    const warnings = logWarnings(loop.stderr);
    ok(warnings >= 1 && warnings <= loop.runs, `at most one warning a run:\n${loop.stderr}`);
    match(loop.stderr, /^loop totals: /m);
    assertNoCrash(loop.stderr);
  });
});

Deno.test("log: a loop whose log folder became a file warns once a run, and logs again once it can", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a" });
    const logs = `${dir}/logs`;
    const loop = new LoopProcess([
      "-i",
      "1",
      "--log",
      `${logs}/treesync.log`,
      `${dir}/s`,
      `${dir}/r`,
    ]);
    try {
      await loop.waitFor(() => loop.runs >= 1, "the first run");
      // The loop may make the folder again at any time: retry until a file stands in its place.
      for (;;) {
        try {
          Deno.removeSync(logs, { recursive: true });
          Deno.writeTextFileSync(logs, "in the way", { createNew: true });
          break;
        } catch {
          continue;
        }
      }
      const runsBefore = loop.runs;
      await loop.waitFor(() => loop.runs >= runsBefore + 2, "two runs with no log folder");
      const seen = loop.stderr;
      const warnings = logWarnings(seen);
      ok(warnings >= 1 && warnings <= loop.runs, `at most one warning a run:\n${seen}`);
      match(
        seen,
        /cannot write the log file '.*treesync\.log': a part of the path is not a folder/,
      );
      Deno.removeSync(logs);
      await loop.waitFor(
        () =>
          pathExists(`${logs}/treesync.log`) &&
          /could not be written: a part of the path is not a folder\n(.*\n)*.* INFO +\[\d+\] run end: run \d+: /
            .test(
              Deno.readTextFileSync(`${logs}/treesync.log`),
            ),
        "the log to be written again, saying how many lines were lost",
      );
      await loop.send("quit");
      deepStrictEqual(await loop.exitCode(), 0);
      assertNoCrash(loop.stderr);
    } finally {
      try {
        loop.child.kill("SIGKILL");
        await loop.exitCode();
      } catch {
        // It has exited.
      }
    }
  });
});

Deno.test({
  name: "log: a full disk costs at most one warning a run; logging resumes when space is freed",
  ignore: !CAN_MOUNT,
  fn: async () => {
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { a: "a" });
      const disk = `${dir}/disk`;
      Deno.mkdirSync(disk);
      const mounted = new Deno.Command("mount", {
        args: ["-t", "tmpfs", "-o", "size=64k", "tmpfs", disk],
      }).outputSync();
      ok(mounted.success, "mount");
      let loop: RunningCli | null = null;
      try {
        fillDisk(disk);
        const log = `${disk}/logs/treesync.log`;
        loop = new LoopProcess(["-i", "1", "--log", `${disk}/logs/`, `${dir}/s`, `${dir}/r`]);
        const running = loop;
        await running.waitFor(() => running.runs >= 3, "three runs on a full disk");
        const seen = running.stderr;
        const warnings = logWarnings(seen);
        const runs = seen.match(/^run \d+: /gm)?.length ?? 0;
        ok(warnings >= 1 && warnings <= runs, `at most one warning a run:\n${seen}`);
        match(seen, /cannot write the log file '.*': No space left on device/);
        deepStrictEqual(Deno.statSync(log).size, 0, "nothing could be written");
        Deno.removeSync(`${disk}/filler`);
        await running.waitFor(
          () => /INFO +\[\d+\] run end: run \d+: /.test(Deno.readTextFileSync(log)),
          "log lines once there is room",
        );
        match(
          Deno.readTextFileSync(log),
          /WARNING \[\d+\] \d+ log lines? since .* could not be written: No space left on device/,
        );
        await running.send("quit");
        deepStrictEqual(await running.exitCode(), 0);
        ok(
          logWarnings(running.stderr) <= running.runs,
          `at most one warning a run:\n${running.stderr}`,
        );
        assertNoCrash(running.stderr);
      } finally {
        if (loop) {
          try {
            loop.child.kill("SIGKILL");
            await loop.exitCode();
          } catch {
            // It has exited.
          }
        }
        new Deno.Command("umount", { args: [disk] }).outputSync();
      }
    });
  },
});

Deno.test("log: a symlinked log is appended to, never truncated; rotation renames the link itself", async () => {
  await withTemp(async (dir) => {
    const files: Tree = {};
    for (let i = 0; i < 100; i++) files[`file-with-a-longish-name-${i}`] = `${i}`;
    writeTree(`${dir}/s`, files);
    Deno.mkdirSync(`${dir}/logs`);
    // A log kept on another disk through a link: a treesync log already (a file of another
    // program's is refused, see output_test.ts).
    const earlier = "2026-01-01T00:00:00.000+00:00 INFO    [1] run start: an earlier run\n";
    Deno.writeTextFileSync(`${dir}/elsewhere`, earlier);
    Deno.symlinkSync(`${dir}/elsewhere`, `${dir}/logs/treesync.log`);
    const args = ["--log", `${dir}/logs/`, "--log-max-size", "4K", "--log-keep", "5"];
    assertExit(await cli([...args, `${dir}/s`, `${dir}/r`]), 0);
    const target = Deno.readTextFileSync(`${dir}/elsewhere`);
    ok(target.startsWith(earlier) && /copy file-/.test(target), "appended to");
    ok(target.length <= 4096, "and rotated away once full");
    // The link was renamed to treesync.log.N; the live log is a file of its own.
    const links = [...Deno.readDirSync(`${dir}/logs`)].filter((item) => item.isSymlink);
    deepStrictEqual(links.length, 1);
    deepStrictEqual(Deno.readLinkSync(`${dir}/logs/${links[0]!.name}`), `${dir}/elsewhere`);
    ok(Deno.lstatSync(`${dir}/logs/treesync.log`).isFile, "a new file, not the link");
    deepStrictEqual([...Deno.readDirSync(dir)].map((item) => item.name).sort(), [
      "elsewhere",
      "logs",
      "r",
      "s",
    ]);
  });
});

Deno.test("log: a fifo as the log path is exit 2 before any run, never a run blocked on it", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "x" });
    ok((await new Deno.Command("mkfifo", { args: [`${dir}/log`] }).output()).success);
    const result = await cli([`${dir}/s`, `${dir}/r`, "--log", `${dir}/log`]);
    assertExit(result, 2);
    match(result.stderr, /log file '.*\/log': it is a fifo/);
    ok(!pathExists(`${dir}/r`), "nothing was written");
  });
});

// ------------------------------------------------------------------------------------------------
// Safety: restore, --no-delete and record integrity (issue 8)
// ------------------------------------------------------------------------------------------------

/**
 * Resolves once the clock is in a later second than when called, by enough that the kernel's
 * file timestamps (a tick behind the wall clock) are too. A wait on a condition, not a sleep.
 */
async function untilNextSecond(): Promise<void> {
  const second = Math.floor(Date.now() / 1000);
  await waitFor(() => Math.floor((Date.now() - CLOCK_SLACK_MS) / 1000) > second, 5_000);
}

/**
 * Resolves once a hash of the files at `paths`, taken from now on, is one the record trusts
 * (see `trustedHash`): their last change is a racy window ago, in an earlier second.
 */
async function untilTrusted(paths: string[]): Promise<void> {
  const stats = paths.map((path) => Deno.statSync(path));
  const changedAt = Math.max(...stats.map((stat) => stat.mtime!.getTime()));
  const ctimeSecond = Math.max(...stats.map((stat) => Math.floor(stat.ctime!.getTime() / 1000)));
  await waitFor(() =>
    Date.now() - changedAt > RACY_WINDOW_MS &&
    Math.floor((Date.now() - CLOCK_SLACK_MS) / 1000) > ctimeSecond
  );
}

function hashLines(stderr: string): string[] {
  return (stderr.match(/^hash \w+ .*$/gm) ?? []).sort();
}

Deno.test("cli --restore keeps a source file edited since the last sync (exit 1); --overwrite-newer replaces it", async () => {
  await withTemp(async (dir) => {
    const [source, replica] = [`${dir}/s`, `${dir}/r`];
    writeTree(source, { edited: "synced text", lost: "lost", same: "same" });
    assertExit(await cli([source, replica]), 0);
    Deno.writeTextFileSync(`${source}/edited`, "work done after the sync");
    Deno.removeSync(`${source}/lost`);
    const kept = await cli(["--restore", source, replica]);
    assertExit(kept, 1);
    match(kept.stderr, /^error: edited: Kept: .*--overwrite-newer/m);
    deepStrictEqual(readTree(source), {
      edited: "work done after the sync",
      lost: "lost",
      same: "same",
    });
    ok(!pathExists(`${source}/.treesync`), "nothing of ours is left in the source");

    const replaced = await cli([
      "--restore",
      "--overwrite-newer",
      "--keep-deleted",
      "1d",
      source,
      replica,
    ]);
    assertExit(replaced, 0);
    deepStrictEqual(Deno.readTextFileSync(`${source}/edited`), "synced text");
    const [run] = [...Deno.readDirSync(`${source}/.treesync/trash`)].map((item) => item.name);
    deepStrictEqual(
      Deno.readTextFileSync(`${source}/.treesync/trash/${run}/edited`),
      "work done after the sync",
      "what restore replaced is in the source's trash",
    );
    deepStrictEqual(readTree(source).edited, "synced text", "the trash is not part of the tree");
    assertExit(await cli(["--overwrite-newer", source, replica]), 2);
  });
});

Deno.test("cli --restore leaves type conflicts alone, both ways, and deletes nothing", async () => {
  await withTemp(async (dir) => {
    const [source, replica] = [`${dir}/s`, `${dir}/r`];
    writeTree(source, { becameFile: { inner: "i" }, becameDir: "f", becameLink: "l" });
    assertExit(await cli([source, replica]), 0);
    Deno.removeSync(`${source}/becameFile`, { recursive: true });
    Deno.writeTextFileSync(`${source}/becameFile`, "new work in a file");
    Deno.removeSync(`${source}/becameDir`);
    writeTree(`${source}/becameDir`, { mine: "new work in a folder" });
    Deno.removeSync(`${source}/becameLink`);
    Deno.symlinkSync("becameDir/mine", `${source}/becameLink`);
    const before = snapshot(source);
    const result = await cli(["--restore", "--overwrite-newer", source, replica]);
    assertExit(result, 1);
    for (const name of ["becameFile", "becameDir", "becameLink"]) {
      match(result.stderr, new RegExp(`^error: ${name}: Not restored: `, "m"));
    }
    deepStrictEqual(snapshot(source), before);
  });
});

Deno.test("cli --restore --keep-deleted purges expired trash in the source only, never the replica's", async () => {
  await withTemp(async (dir) => {
    const [source, replica] = [`${dir}/s`, `${dir}/r`];
    writeTree(source, { f: "f" });
    assertExit(await cli([source, replica]), 0);
    writeTree(`${source}/.treesync/trash/20000101T000000Z`, { old: "expired, source" });
    writeTree(`${replica}/.treesync/trash/20000101T000000Z`, { old: "the replica's" });
    Deno.removeSync(`${source}/f`);
    assertExit(await cli(["--restore", "--keep-deleted", "1d", source, replica]), 0);
    deepStrictEqual(readTree(source), { f: "f" });
    ok(!pathExists(`${source}/.treesync/trash/20000101T000000Z`), "source trash purged");
    ok(pathExists(`${replica}/.treesync/trash/20000101T000000Z/old`), "replica trash kept");
  });
});

Deno.test("cli --restore removes only the temporary files and folders it made in SOURCE/.treesync", async () => {
  await withTemp(async (dir) => {
    const [source, replica] = [`${dir}/s`, `${dir}/r`];
    writeTree(source, { f: "f" });
    assertExit(await cli([source, replica]), 0);
    const restore = async (meta: Tree | null) => {
      if (pathExists(`${source}/.treesync`)) {
        Deno.removeSync(`${source}/.treesync`, { recursive: true });
      }
      if (meta) writeTree(`${source}/.treesync`, meta);
      Deno.removeSync(`${source}/f`);
      assertExit(await cli(["--restore", source, replica]), 0);
      deepStrictEqual(Deno.readTextFileSync(`${source}/f`), "f");
    };
    // Someone else's files in tmp/ (the source may be a replica itself) stay as they are.
    await restore({ tmp: { "123-4": "a run's file in flight" }, record: "theirs" });
    deepStrictEqual(readTree(`${source}/.treesync`, false), {
      record: "theirs",
      tmp: { "123-4": "a run's file in flight" },
    });
    // An empty .treesync that was there stays; the tmp/ made in it goes.
    await restore({});
    deepStrictEqual(readTree(`${source}/.treesync`, false), {});
    // None there: none left.
    await restore(null);
    ok(!pathExists(`${source}/.treesync`));
  });
});

Deno.test("cli --no-delete keeps a replica entry whose type changed in the source, exit 1", async () => {
  await withTemp(async (dir) => {
    const [source, replica] = [`${dir}/s`, `${dir}/r`];
    writeTree(source, { toDir: "file data", toFile: { x: "x" }, toLink: "link me", same: "s" });
    assertExit(await cli([source, replica]), 0);
    const before = snapshot(replica);
    Deno.removeSync(`${source}/toDir`);
    writeTree(`${source}/toDir`, { inner: "i" });
    Deno.removeSync(`${source}/toFile`, { recursive: true });
    Deno.writeTextFileSync(`${source}/toFile`, "now a file");
    Deno.removeSync(`${source}/toLink`);
    Deno.symlinkSync("same", `${source}/toLink`);
    writeTree(source, { added: "new" });
    const result = await cli(["--no-delete", source, replica]);
    assertExit(result, 1);
    for (const name of ["toDir", "toFile", "toLink"]) {
      match(
        result.stderr,
        new RegExp(`^error: ${name}: Not replaced: .*deletions are off`, "m"),
      );
    }
    const expected = { ...before, added: snapshot(source).added! };
    deepStrictEqual(Object.entries(snapshot(replica)).sort(), Object.entries(expected).sort());
  });
});

Deno.test("cli repairs a damaged replica file whose mtime was put back, keeping its hash in the record", async () => {
  await withTemp(async (dir) => {
    const [source, replica] = [`${dir}/s`, `${dir}/r`];
    writeTree(source, { a: "alpha", sub: { b: "bravo" } });
    assertExit(await cli([source, replica]), 0);
    // Damage in a later second than the copy, so its ctime shows it.
    await untilNextSecond();
    const mtime = Deno.statSync(`${replica}/sub/b`).mtime!.getTime();
    Deno.writeTextFileSync(`${replica}/sub/b`, "brave");
    setMtime(`${replica}/sub/b`, mtime);
    const found = await cli(["--verify", replica]);
    assertExit(found, 1);
    deepStrictEqual(found.stdout, "mismatch sub/b\n");
    const repair = await cli(["-v", source, replica]);
    assertExit(repair, 0);
    match(repair.stderr, /^update sub\/b/m);
    deepStrictEqual(Deno.readTextFileSync(`${replica}/sub/b`), "bravo");
    const verified = await cli(["--verify", replica]);
    assertExit(verified, 0);
    deepStrictEqual(verified.stdout, "");
  });
});

Deno.test({
  name: "cli killed with SIGKILL mid-run: the next run hashes what the record missed",
  ignore: !CAN_HOLD_OPEN,
  fn: async () => {
    await withTemp(async (dir) => {
      const [source, replica] = [`${dir}/s`, `${dir}/r`];
      const files: Tree = {};
      for (let i = 0; i < 300; i++) files[`f-${String(i).padStart(3, "0")}`] = `file ${i}`;
      writeTree(source, files);
      writeTree(source, { "zz-big": "copied last, held: the run is busy" });
      {
        await using held = await holdOpen(`${source}/zz-big`);
        const child = spawnCli([source, replica]);
        await waitFor(() => pathExists(`${replica}/f-000`) && held.wanted);
        child.kill("SIGKILL");
        await child.status;
      }
      ok(!pathExists(`${replica}/.treesync/record`), "killed before the record was saved");
      assertExit(await cli([source, replica]), 0);
      const verified = await cli(["--verify", replica]);
      assertExit(verified, 0);
      ok(!/unrecorded/.test(verified.stdout), `every file has a hash:\n${verified.stdout}`);
      match(verified.stderr, /^verify: 301 files checked/m);
    });
  },
});

Deno.test("cli --verify refuses a folder with no record, and exits 1 for files without a hash", async () => {
  await withTemp(async (dir) => {
    const [source, replica] = [`${dir}/s`, `${dir}/r`];
    writeTree(replica, { a: "made by another tool" });
    const bare = await cli(["--verify", replica]);
    assertExit(bare, 2);
    deepStrictEqual(
      bare.stderr,
      `error: '${replica}' is not a treesync replica: it has no record in .treesync/\n`,
    );

    writeTree(source, { a: "made by another tool" });
    setMtime(`${source}/a`, Deno.statSync(`${replica}/a`).mtime!.getTime());
    const adopted = await cli(["-vv", source, replica]);
    assertExit(adopted, 0);
    deepStrictEqual(hashLines(adopted.stderr), ["hash source a", "hash replica a"]);
    assertExit(await cli(["--verify", replica]), 0);

    writeTree(replica, { extra: "put there by hand" });
    const partial = await cli(["--verify", replica]);
    assertExit(partial, 1);
    match(partial.stderr, /1 file has no hash in the record/);
    assertExit(await cli(["--no-delete", source, replica]), 0);
    assertExit(await cli(["--verify", replica]), 0);
  });
});

Deno.test("cli --checksum catches a same-size edit with the mtime put back in the second of the last run", async () => {
  await withTemp(async (dir) => {
    const [source, replica] = [`${dir}/s`, `${dir}/r`];
    const old = Date.now() - 3_600_000;
    writeTree(source, { f: "aaaa" });
    setMtime(`${source}/f`, old);
    assertExit(await cli(["-c", source, replica]), 0);
    Deno.writeTextFileSync(`${source}/f`, "bbbb");
    setMtime(`${source}/f`, old);
    // The race: the edit came in the very second the last run hashed the file, so the ctime
    // the record saw is the file's still. Written into the record as that run would have.
    const ctimeMs = Deno.statSync(`${source}/f`).ctime!.getTime();
    const blocks = readRecordBlocks(replica).map(({ folder, rows }) => ({
      folder,
      rows: rows.map((row) =>
        folder === "" && row.name === "f"
          ? { ...row, source: { ...row.source!, ctimeMs, hashedAtMs: ctimeMs + 500 } }
          : row
      ),
    }));
    writeRecord(replica, blocks);
    const { source: seen } = readRecord(replica);
    deepStrictEqual(seen.get("f")?.ctimeMs, ctimeMs, "the record saw the edited file's ctime");
    const result = await cli(["-c", "--json", source, replica]);
    assertExit(result, 0);
    deepStrictEqual(jsonLine(result).updated, 1);
    deepStrictEqual(Deno.readTextFileSync(`${replica}/f`), "bbbb");
  });
});

Deno.test("cli: no-op runs after a copy read nothing; --checksum rereads the fresh copies once", async () => {
  await withTemp(async (dir) => {
    const [source, replica] = [`${dir}/s`, `${dir}/r`];
    const files: Tree = {};
    for (let i = 0; i < 500; i++) files[`f${i}`] = `content ${i}`;
    writeTree(source, { d: files });
    for (const name of Object.keys(files)) setMtime(`${source}/d/${name}`, Date.now() - 3_600_000);
    await untilNextSecond(); // the source files last changed before any run reads them
    assertExit(await cli([source, replica]), 0);
    for (const run of [1, 2]) {
      const noop = await cli(["-vv", source, replica]);
      assertExit(noop, 0);
      deepStrictEqual(hashLines(noop.stderr), [], `no-op run ${run}`);
    }
    // The copies were hashed in the second their ctime shows: racily clean until read again.
    await untilNextSecond();
    const checked = await cli(["-c", "-vv", source, replica]);
    assertExit(checked, 0);
    const reread = hashLines(checked.stderr);
    deepStrictEqual(reread.length, 500, "every fresh copy, once");
    deepStrictEqual(reread.filter((line) => !line.startsWith("hash replica d/f")), []);
    const again = await cli(["-c", "-vv", source, replica]);
    deepStrictEqual(hashLines(again.stderr), [], "every hash is trusted now");
  });
});

Deno.test({
  name: "cli --restore works from a read-only replica, writing nothing there",
  ignore: !CAN_MOUNT,
  fn: async () => {
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { f: "data", sub: { g: "more" } });
      assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
      Deno.removeSync(`${dir}/s/sub`, { recursive: true });
      for (
        const args of [["--bind", `${dir}/r`, `${dir}/r`], ["-o", "remount,ro,bind", `${dir}/r`]]
      ) {
        ok((await new Deno.Command("mount", { args }).output()).success);
      }
      try {
        const result = await cli(["--restore", `${dir}/s`, `${dir}/r`]);
        assertExit(result, 0);
        deepStrictEqual(readTree(`${dir}/s`), { f: "data", sub: { g: "more" } });
      } finally {
        await new Deno.Command("umount", { args: [`${dir}/r`] }).output();
      }
    });
  },
});

Deno.test("cli names what is wrong with a corrupt record in words, not internals", async () => {
  // Regression: a version-2 record without its lists warned `data[side] is not iterable`.
  // A version-2 record is still read (once, to convert it) when there is no record of format 3.
  const cutShort = (replica: string) => {
    const entry = { size: 1, mtimeMs: 1000, ctimeMs: 1000, ino: 7, hash: null, hashedAtMs: 0 };
    writeRecord(replica, [{ folder: "", rows: [{ name: "f", kind: "file", replica: entry }] }]);
    const bytes = Deno.readFileSync(`${replica}/.treesync/record`);
    Deno.writeFileSync(`${replica}/.treesync/record`, bytes.subarray(0, bytes.length - 1));
  };
  const plant = (name: string, text: string) => (replica: string) =>
    Deno.writeTextFileSync(`${replica}/.treesync/${name}`, text);
  const records: Array<[(replica: string) => void, RegExp]> = [
    [
      plant("record.json", `{"format":"treesync-record","version":2}`),
      /record\.json' is corrupt \(it is not a treesync record of version 2\)/,
    ],
    [
      plant("record.json", `{"format":"treesync-record","version":2,"replica":[7],"source":[]}`),
      /record\.json' is corrupt \(a replica row is not a list\)/,
    ],
    [plant("record.json", "{not json"), /record\.json' is corrupt \(it is not valid JSON\)/],
    [plant("record", "{not json"), /record' is corrupt \(it is too short to be a record: it was/],
    [
      plant("record", `{"format":"treesync-record","version":2,"replica":[],"source":[]}`),
      /record' is corrupt \(it does not start as a treesync record of format 3\)/,
    ],
    [cutShort, /record' is corrupt \(it does not end with its end marker: it was cut short\)/],
  ];
  for (const [damage, reason] of records) {
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { f: "x" });
      writeTree(`${dir}/r`, { ".treesync": {} });
      damage(`${dir}/r`);
      const result = await cli([`${dir}/s`, `${dir}/r`]);
      assertExit(result, 0);
      match(result.stderr, reason);
      match(result.stderr, /; rebuilding it$/m);
      ok(!/iterable|undefined|TypeError|CorruptRecord/.test(result.stderr), result.stderr);
      ok(!pathExists(`${dir}/r/.treesync/record.json`), "a version-2 record serves once");
      deepStrictEqual([...readRecord(`${dir}/r`).replica.keys()], ["f"]);
    });
  }
});

Deno.test("cli converts a version-2 record.json, keeping its hashes, and removes it", async () => {
  await withTemp(async (dir) => {
    const [source, replica] = [`${dir}/s`, `${dir}/r`];
    const files: Tree = { a: "alpha", sub: { b: "bravo" }, unrecorded: "not in the record" };
    writeTree(source, files);
    writeTree(replica, files);
    const old = Date.now() - 3_600_000;
    for (const path of ["a", "sub/b", "unrecorded"]) {
      setMtime(`${source}/${path}`, old);
      setMtime(`${replica}/${path}`, old);
    }
    // As a run of the version-2 code left it: both sides hashed, well after their last change.
    const entry = (path: string): RecordEntry => {
      const info = Deno.statSync(path);
      return {
        size: info.size,
        mtimeMs: info.mtime!.getTime(),
        ctimeMs: info.ctime!.getTime(),
        ino: info.ino!,
        hash: sha256(Deno.readFileSync(path)),
        hashedAtMs: info.ctime!.getTime() + 5_000,
      };
    };
    const v2 = { replica: new Map<string, RecordEntry>(), source: new Map<string, RecordEntry>() };
    for (const path of ["a", "sub/b"]) {
      v2.source.set(path, entry(`${source}/${path}`));
      v2.replica.set(path, entry(`${replica}/${path}`));
    }
    writeLegacyRecord(replica, v2);
    await untilNextSecond(); // the unrecorded file's hashes, taken now, are trusted next run

    const converted = await cli(["-vv", source, replica]);
    assertExit(converted, 0);
    // The recorded files are not read again; the one the record lacked is, on both sides.
    deepStrictEqual(hashLines(converted.stderr), [
      "hash source unrecorded",
      "hash replica unrecorded",
    ]);
    ok(!pathExists(`${replica}/.treesync/record.json`), "the version-2 record is removed");
    ok(pathExists(`${replica}/.treesync/record`), "the record of format 3 is written");
    const record = readRecord(replica);
    for (const side of ["source", "replica"] as const) {
      for (const [path, was] of v2[side]) {
        deepStrictEqual(record[side].get(path), was, `${side} ${path} carried over`);
      }
    }
    deepStrictEqual(snapshot(replica), snapshot(source));
    const again = await cli(["-vv", source, replica]);
    assertExit(again, 0);
    deepStrictEqual(hashLines(again.stderr), [], "every hash is in the new record");
  });
});

// ------------------------------------------------------------------------------------------------
// Safety: command line and output (issue 8)
// ------------------------------------------------------------------------------------------------

Deno.test("safety: an empty path, in any position, flag or variable, is exit 2 naming it; the current folder is untouched", async () => {
  await withTemp(async (dir) => {
    const [s, r] = [`${dir}/s`, `${dir}/r`];
    writeTree(s, { f: "source" });
    // The current folder of every run: an empty path used to mean this folder.
    const decoy = `${dir}/decoy`;
    writeTree(decoy, { keep: "me", sub: { also: "me" } });
    const table: Array<[string[], Record<string, string>, RegExp]> = [
      [[s, ""], {}, /Empty path for REPLICA \(the second path is ''\)/],
      [["", r], {}, /Empty path for SOURCE \(the first path is ''\)/],
      [["-s", "", r], {}, /Empty path for -s /],
      [["--source=", r], {}, /Empty path for --source /],
      [["--src", "", r], {}, /Empty path for --src /],
      [["-r", "", s], {}, /Empty path for -r /],
      [["--replica", "", s], {}, /Empty path for --replica /],
      [["--dest", "", s], {}, /Empty path for --dest /],
      [["-s", s, ""], {}, /Empty path for REPLICA \(the path is ''\)/],
      [["--verify", ""], {}, /Empty path for REPLICA/],
      [["--log", "", s, r], {}, /Empty path for --log /],
      [["-l", "", s, r], {}, /Empty path for -l /],
      [["--log_file=", s, r], {}, /Empty path for --log_file /],
      [[], { TREESYNC_SOURCE: s, TREESYNC_REPLICA: "" }, /Empty path for TREESYNC_REPLICA/],
      [[s], { TREESYNC_REPLICA: "" }, /Empty path for TREESYNC_REPLICA/],
      [["-s", s], { TREESYNC_REPLICA: "" }, /Empty path for TREESYNC_REPLICA/],
      [["-r", r], { TREESYNC_SOURCE: "" }, /Empty path for TREESYNC_SOURCE/],
      [[], { TREESYNC_SOURCE: "", TREESYNC_REPLICA: r }, /Empty path for TREESYNC_SOURCE/],
      [[s, r], { TREESYNC_LOG: "" }, /Empty path for TREESYNC_LOG/],
    ];
    for (const [args, env, pattern] of table) {
      const before = snapshot(dir);
      const result = await cli(args, { env, cwd: decoy });
      const what = `${JSON.stringify(args)} ${JSON.stringify(env)}`;
      if (result.code !== 2) throw new Error(`${what}: exit ${result.code}\n${result.stderr}`);
      const lines = result.stderr.trim().split("\n");
      match(lines[0]!, pattern);
      deepStrictEqual(lines.length, 1, `${what}: one line`);
      deepStrictEqual(snapshot(dir), before, `${what}: nothing changed`);
      ok(!pathExists(`${decoy}/.treesync`) && !pathExists(r), `${what}: nothing created`);
    }
    // Flags win over the environment: a variable that is not used is not looked at.
    assertExit(await cli(["-r", r], { env: { TREESYNC_SOURCE: s, TREESYNC_REPLICA: "" } }), 0);
    deepStrictEqual(readTree(r), { f: "source" });
  });
});

// The table of refused --no-X flags is in src/cli_test.ts.
Deno.test('safety: --no-dry-run is exit 2 naming it, never read as "not a dry run"', async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "x" });
    // --no-dry-run was read as "not a dry run" and mirrored.
    const result = await cli(["--no-dry-run", `${dir}/s`, `${dir}/r`]);
    assertExit(result, 2);
    match(
      result.stderr,
      /^treesync: Unknown option '--no-dry-run' \(see 'treesync --help'\)\n$/,
    );
    ok(!pathExists(`${dir}/r`), "nothing was mirrored");
  });
});

// The table of ceilings is in src/cli_test.ts.
Deno.test("safety: --jobs past its ceiling is exit 2 naming the value, nothing mirrored", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "x" });
    const result = await cli(["--jobs", "99999999999", `${dir}/s`, `${dir}/r`]);
    assertExit(result, 2);
    match(
      result.stderr,
      /^treesync: Invalid --jobs '99999999999': the most is 64 \(see 'treesync --help'\)\n$/,
    );
    ok(!pathExists(`${dir}/r`), "nothing was mirrored");
  });
});

Deno.test("safety: loop --interval 30d runs once and schedules the next run 30 days on", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a" });
    const loop = new LoopProcess(["--interval", "30d", `${dir}/s`, `${dir}/r`]);
    await loop.waitFor(() => loop.runs >= 1, "the first run");
    await loop.send("status");
    await loop.waitFor(() => /^runs: \d+/m.test(loop.stdout), "the status");
    match(loop.stdout, /^next run in (29d 23h 59m \d+s|30d) /m);
    match(loop.stdout, /^runs: 1, /m);
    await loop.send("quit");
    deepStrictEqual(await loop.exitCode(), 0);
    match(loop.stderr, /^loop totals: 1 run /m);
    ok(!loop.stderr.includes("TimeoutOverflow"), loop.stderr);
  });
});

/**
 * Runs the CLI under a pseudo-terminal (`script`), types `answer` once `prompt` is shown, and
 * returns the exit code and what the terminal showed.
 */
async function answerOnTerminal(
  args: string[],
  prompt: string,
  answer: string,
): Promise<{ code: number; shown: string }> {
  const command = [Deno.execPath(), "run", "--quiet", ...SYNC_FLAGS, SYNC_MODULE, ...args]
    .map((word) => `'${word}'`).join(" ");
  const child = new Deno.Command("script", {
    args: ["-qec", command, "/dev/null"],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  let shown = "";
  const pump = (async () => {
    for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) shown += text;
  })();
  const writer = child.stdin.getWriter();
  try {
    await waitFor(() => shown.includes(prompt));
  } catch (error) {
    child.kill("SIGKILL");
    throw new Error(`${error}; the terminal showed: ${JSON.stringify(shown)}`);
  }
  await writer.write(new TextEncoder().encode(answer));
  await writer.close();
  const { code } = await child.status;
  await pump;
  return { code, shown };
}

Deno.test("safety: -I answered no exits 1, the replica not matching; answered yes exits 0", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "new" });
    writeTree(`${dir}/r`, { extra: "x", f: "old" });
    setMtime(`${dir}/r/f`, 1_000_000_000_000);
    const args = ["-I", "--adopt", `${dir}/s`, `${dir}/r`];
    const no = await answerOnTerminal(args, "Delete them? [y/N]", "n\n");
    match(no.shown, /1 entry would be deleted/);
    deepStrictEqual(no.code, 1, `declined: ${no.shown}`);
    deepStrictEqual(readTree(`${dir}/r`), { extra: "x", f: "new" }, "kept, and still copied");
    const yes = await answerOnTerminal(args, "Delete them? [y/N]", "y\n");
    deepStrictEqual(yes.code, 0, `accepted: ${yes.shown}`);
    deepStrictEqual(readTree(`${dir}/r`), { f: "new" });
  });
});

Deno.test("safety: a closed stdout (treesync -n | head -1) ends the output quietly with the usual exit code", async () => {
  await withTemp(async (dir) => {
    // Far more plan than a pipe holds (64 KiB), so the CLI is still writing when the reader goes.
    const files: Tree = {};
    for (let i = 0; i < 3000; i++) files[`a-name-long-enough-to-fill-the-pipe-quickly-${i}`] = "x";
    writeTree(`${dir}/s`, files);
    const child = spawnCli(["-n", `${dir}/s`, `${dir}/r`]);
    let stderr = "";
    const pump = (async () => {
      for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) stderr += text;
    })();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let stdout = "";
    while (!stdout.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      stdout += value;
    }
    await reader.cancel(); // as `head -1` exits after its line
    const { code } = await child.status;
    await pump;
    deepStrictEqual(stdout.split("\n")[0], "mkdir ./");
    ok(!/Broken pipe|Unexpected failure/i.test(stderr), `no error: ${stderr}`);
    deepStrictEqual(code, 0, stderr);
    match(stderr, /^dry run: 3000 copied/m);
    ok(!pathExists(`${dir}/r`), "a dry run still changes nothing");
  });
});

Deno.test("safety: shortenMiddle() and displayPath() keep messages one short line", () => {
  deepStrictEqual(shortenMiddle("short"), "short");
  const long = `/start/${"x".repeat(5000)}/THE-END`;
  const shown = shortenMiddle(long);
  deepStrictEqual(Array.from(shown).length, 121);
  ok(shown.startsWith("/start/xxx") && shown.endsWith("xxx/THE-END") && shown.includes("…"));
  deepStrictEqual(shortenMiddle("a".repeat(121)), "a".repeat(121), "121 characters fit");
  // Whole code points: an emoji (two UTF-16 units) is kept whole or dropped, never halved.
  const emoji = shortenMiddle("😀".repeat(200));
  ok(emoji.isWellFormed() && emoji.startsWith("😀") && emoji.endsWith("😀"), "no lone half");
  deepStrictEqual(displayPath("a\nb"), '"a\\nb"', "control characters are still quoted");
  ok(displayPath(`${"\n".repeat(3000)}`).length <= 121);
});

Deno.test("safety: a 5,000-character path gives an error line under 300 characters, with its start and end", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "x" });
    const long = `${dir}/${"long-name/".repeat(500)}THE-END`;
    const cases = [
      [long, `${dir}/r`],
      [`${dir}/s`, long],
      ["--exclude", `${long}[`, `${dir}/s`, `${dir}/r`],
      [`--${long}`, `${dir}/s`, `${dir}/r`],
      [`${dir}/s`, `${dir}/r`, long],
      ["--interval", long, `${dir}/s`, `${dir}/r`],
    ];
    for (const args of cases) {
      const result = await cli(args);
      assertExit(result, 2);
      const line = result.stderr.split("\n")[0]!;
      ok(line.length < 300, `${line.length} characters: ${line.slice(0, 400)}`);
      ok(line.includes(dir) || line.includes(`--${dir}`), `the start is shown: ${line}`);
      match(line, /…[a-z/-]*\/THE-END\[?'/);
      ok(!pathExists(`${dir}/r`), "nothing was mirrored");
    }
  });
});

Deno.test("safety: numbers are rounded: formatBytes(), progress, the --verify rate", async () => {
  deepStrictEqual(formatBytes(356.54102099286433), "357 B");
  deepStrictEqual(formatBytes(0.4), "0 B");
  deepStrictEqual(formatBytes(1023.7), "1.0 KiB");
  deepStrictEqual(formatBytes(1536), "1.5 KiB");
  const progress = progressText({
    phase: "copying",
    done: 1,
    total: 3,
    bytes: 1000,
    totalBytes: 3001,
    current: "f",
    startedAt: 0,
  }, 3000);
  ok(!/\d\.\d{2,}/.test(progress), progress);
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "x" });
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    const result = await cli(["--verify", `${dir}/r`]);
    assertExit(result, 0);
    match(result.stderr, /\(\d+(\.\d)? (B|KiB|MiB|GiB)\/s\)/);
    ok(!/\d\.\d{3,}/.test(result.stderr), `no raw floats: ${result.stderr}`);
  });
});

Deno.test("safety: loop echoes an unknown 1 MB command with escape sequences short and escaped", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a" });
    const loop = new LoopProcess(["-i", "1h", `${dir}/s`, `${dir}/r`]);
    await loop.waitFor(() => loop.runs === 1, "the first run");
    await loop.send(`${ESC}[2J${ESC}]0;title${String.fromCharCode(7)}${"y".repeat(1_000_000)}`);
    await loop.send("status");
    await loop.waitFor(() => /^runs: /m.test(loop.stdout), "the status after the reply");
    const reply = loop.stdout.split("\n").find((line) => line.startsWith("Unknown command"));
    ok(reply !== undefined, loop.stdout);
    ok(reply.length < 120, `${reply.length} characters`);
    match(reply, /^Unknown command '\\x1b\[2J\\x1b\]0;title\\x07y+…'/);
    ok(!loop.stdout.includes(ESC), "no raw escape sequence echoed");
    await loop.send("quit");
    deepStrictEqual(await loop.exitCode(), 0);
  });
});

Deno.test("safety: the README's command works: `deno task sync [options] SOURCE REPLICA`, no `--`", async () => {
  const readme = Deno.readTextFileSync(new URL("./README.md", import.meta.url));
  const moduleDoc = Deno.readTextFileSync(new URL("./sync.ts", import.meta.url)).split(
    "@module",
  )[0]!;
  for (const [name, text] of [["README.md", readme], ["sync.ts", moduleDoc]] as const) {
    // A bare `--`; `deno task sync --interval 5m` is fine.
    ok(!/deno task sync --(?![\w-])/.test(text!), `${name} shows 'deno task sync --'`);
  }
  match(readme, /deno task sync \[options\] SOURCE REPLICA/);
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "x" });
    const run = (args: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: ["task", "--quiet", "sync", ...args],
        cwd: new URL(".", import.meta.url).pathname,
        env: { NO_COLOR: "1" },
        clearEnv: true,
        stdin: "null",
      }).output();
    const dry = await run(["-n", `${dir}/s`, `${dir}/r`]);
    const stdout = new TextDecoder().decode(dry.stdout);
    deepStrictEqual(dry.code, 0, new TextDecoder().decode(dry.stderr));
    match(stdout, /^copy f \(1 B\)$/m);
    ok(!pathExists(`${dir}/r`), "-n was read as an option");
    deepStrictEqual((await run([`${dir}/s`, `${dir}/r`])).code, 0);
    deepStrictEqual(readTree(`${dir}/r`), { f: "x" });
  });
});

// ------------------------------------------------------------------------------------------------
// Safety: attacks found by a hostile review (issue 8)
// ------------------------------------------------------------------------------------------------

Deno.test("cli never changes the attributes of a replica file with other hard links: it copies it afresh", async () => {
  // Regression: a replica file hard-linked to a file outside got that file chmodded and
  // chowned by an `attrs` fix.
  await withTemp(async (dir) => {
    writeTree(`${dir}/decoy`, { passwd: "same content" });
    Deno.chmodSync(`${dir}/decoy/passwd`, 0o640);
    setMtime(`${dir}/decoy/passwd`, 1_500_000_000_000);
    writeTree(`${dir}/s`, {});
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    Deno.writeTextFileSync(`${dir}/s/f`, "same content");
    Deno.chmodSync(`${dir}/s/f`, 0o777);
    setMtime(`${dir}/s/f`, 1_500_000_000_000);
    Deno.linkSync(`${dir}/decoy/passwd`, `${dir}/r/f`);
    const before = snapshot(`${dir}/decoy`);
    const result = await cli([`${dir}/s`, `${dir}/r`]);
    assertExit(result, 0);
    deepStrictEqual(snapshot(`${dir}/decoy`), before, "the file outside keeps its attributes");
    deepStrictEqual(Deno.statSync(`${dir}/r/f`).mode! & 0o777, 0o777);
    ok(Deno.statSync(`${dir}/r/f`).ino !== Deno.statSync(`${dir}/decoy/passwd`).ino);
  });
});

Deno.test("cli refuses a log file inside the source or the replica (exit 2)", async () => {
  // Regression: `-l R/` logged into the replica, deleted the log every run as extraneous, and a
  // link planted there led the log's lines into a file outside.
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "x" });
    for (const log of [`${dir}/r/`, `${dir}/r/logs/x.log`, `${dir}/s/treesync.log`]) {
      const result = await cli(["-l", log, `${dir}/s`, `${dir}/r`]);
      assertExit(result, 2);
      match(result.stderr, /The log file '.*' is inside the (source|replica)/);
    }
    ok(!pathExists(`${dir}/r`), "nothing was written");
    deepStrictEqual(readTree(`${dir}/s`), { f: "x" });
  });
});

Deno.test("cli refuses a lock file with other hard links (exit 2), writing nothing to it", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/decoy`, { passwd: "outside" });
    writeTree(`${dir}/s`, { f: "x" });
    writeTree(`${dir}/r`, { ".treesync": {} });
    Deno.linkSync(`${dir}/decoy/passwd`, `${dir}/r/.treesync/lock`);
    const result = await cli([`${dir}/s`, `${dir}/r`]);
    assertExit(result, 2);
    match(result.stderr, /lock' has other hard links/);
    deepStrictEqual(Deno.readTextFileSync(`${dir}/decoy/passwd`), "outside");
  });
});

Deno.test({
  name: "cli refuses a bind-mounted replica inside the source also when --exclude hides it",
  ignore: !CAN_MOUNT,
  fn: async () => {
    // Regression: excluded folders were never looked at, so the walk did not meet the replica
    // and the run deleted the source's files under the excluded folder.
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { a: "a", sub: { data: "precious" } });
      Deno.mkdirSync(`${dir}/r`);
      const mount = new Deno.Command("mount", { args: ["--bind", `${dir}/s/sub`, `${dir}/r`] });
      ok((await mount.output()).success);
      try {
        const result = await cli(["--exclude", "sub", `${dir}/s`, `${dir}/r`]);
        assertExit(result, 2);
        match(result.stderr, /the replica is the folder 'sub' of the source/);
      } finally {
        await new Deno.Command("umount", { args: [`${dir}/r`] }).output();
      }
      deepStrictEqual(readTree(`${dir}/s`), { a: "a", sub: { data: "precious" } });
    });
  },
});

Deno.test({
  name: "cli never writes through .treesync swapped for a link during the run",
  ignore: !CAN_HOLD_OPEN,
  fn: async () => {
    // Regression: with .treesync replaced mid-run by a link to a folder outside, the copy's
    // temporary file was chowned and chmodded by path there, names there were removed, and an
    // outside link was renamed into the replica.
    await withTemp(async (dir) => {
      const decoy = makeDecoy(`${dir}/decoy`);
      Deno.mkdirSync(`${dir}/decoy/trash`);
      const before = decoy();
      writeTree(`${dir}/s`, { big: "big", small: "small" });
      writeTree(`${dir}/r`, { old: "to delete" });
      await using held = await holdOpen(`${dir}/s/big`);
      const child = spawnCli(["-j", "1", "--keep-deleted", "1d", `${dir}/s`, `${dir}/r`]);
      // Swapped while the copy's temporary file is open in tmp and its source file held.
      await waitFor(() => held.wanted);
      Deno.renameSync(`${dir}/r/.treesync`, `${dir}/r/.moved-away`);
      Deno.symlinkSync(`${dir}/decoy`, `${dir}/r/.treesync`);
      await held.release();
      const result = await collect(child);
      deepStrictEqual(decoy(), before, "nothing outside the replica changed");
      ok(result.code !== 0, `the run reports it:\n${result.stderr}`);
      match(result.stderr, /was replaced during the run/);
    });
  },
});
