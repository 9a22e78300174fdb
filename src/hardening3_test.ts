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
  readTree,
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
