/**
 * Hardening round 3: bracket globs as rsync reads them, file options that refuse fifos,
 * `--max-delete P%` and `-H` under `--watch`, `--verify`'s words. The real CLI on real files.
 *
 * @module
 */

import { pathExists } from "./files.ts";
import {
  assert,
  assertEquals,
  assertExit,
  assertMatch,
  cli,
  type CliResult,
  collect,
  jsonLine,
  readTree,
  setMtime,
  spawnCli,
  waitFor,
  withTemp,
  writeTree,
} from "./test_helpers.ts";

Deno.test("--exclude '[[:digit:]]*' keeps the replica-only 2024-backup, as rsync does", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a", "1-b": "one" });
    writeTree(`${dir}/r`, { "2024-backup": "kept", stale: "old" });
    const result = await cli(["--exclude", "[[:digit:]]*", `${dir}/s`, `${dir}/r`]);
    assertExit(result, 0);
    assertEquals(readTree(`${dir}/r`), { "2024-backup": "kept", a: "a" });
  });
});

Deno.test("--exclude with an unknown POSIX class exits 2 naming it", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a" });
    const result = await cli(["--exclude", "[[:letter:]]-b", `${dir}/s`, `${dir}/r`]);
    assertExit(result, 2);
    assertMatch(result.stderr, /'\[:letter:\]' is not a class/);
    assert(!pathExists(`${dir}/r`), "nothing is written");
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
    assert(made.success, "mkfifo");
    for (const [path, kind] of [[`${dir}/rules`, "a fifo"], ["/dev/zero", "a device"]]) {
      const result = await cliEnds(["--exclude-from", path!, `${dir}/s`, `${dir}/r`]);
      assertExit(result, 2);
      assertMatch(
        result.stderr,
        new RegExp(`^treesync: Cannot read --exclude-from '${path}': it is ${kind}`, "m"),
      );
    }
    assert(!pathExists(`${dir}/r`), "nothing is written");
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
    assertEquals(verify.stdout.split("\n")[0], "changed f");
    assertEquals(jsonLine(verify).mismatched, 0);
    assertEquals(jsonLine(verify).changed, 1);
    assertMatch(verify.stderr, /Not verified: 1 files changed since the record was written/);
    assert(!/^mismatch /m.test(verify.stdout), verify.stdout);
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
    assert(!/rebuilding/.test(verify.stderr), verify.stderr);
    assertMatch(
      verify.stderr,
      /corrupt .*; --verify leaves it as it is \(the next run rebuilds it\)/,
    );
    assertEquals(Deno.readFileSync(`${dir}/r/.treesync/record`), before);
  });
});

Deno.test("--verify without the runs' --exclude rules says to pass them; with them it passes", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { f: "f" });
    writeTree(`${dir}/r`, { "keep.tmp": "replica only, excluded" });
    assertExit(await cli(["--exclude", "*.tmp", `${dir}/s`, `${dir}/r`]), 0);
    const bare = await cli(["--verify", `${dir}/r`]);
    assertExit(bare, 1);
    assertEquals(bare.stdout, "unrecorded keep.tmp\n");
    assertMatch(
      bare.stderr,
      /1 unrecorded files: if the runs use --exclude or --include rules, pass the same rules to --verify/,
    );
    const ruled = await cli(["--verify", "--exclude", "*.tmp", `${dir}/r`]);
    assertExit(ruled, 0);
    assertEquals(ruled.stdout, "");
  });
});
