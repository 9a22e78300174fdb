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
  readTree,
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
