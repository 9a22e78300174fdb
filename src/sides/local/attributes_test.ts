/**
 * Attributes are set on the entry named, never through a link put in its place: with scoped
 * permissions (as the test task runs) Deno follows a final link even under O_NOFOLLOW.
 */

import assert from "node:assert/strict";
import { entryFromStat } from "../../scan.ts";
import { withTemp } from "../../test_helpers.ts";
import { setAttributes } from "./attributes.ts";

Deno.test("setAttributes() refuses a link put where a file was, with or without an identity to expect", async () => {
  await withTemp((dir) => {
    Deno.writeTextFileSync(`${dir}/outside`, "not ours");
    Deno.chmodSync(`${dir}/outside`, 0o644);
    Deno.writeTextFileSync(`${dir}/file`, "ours");
    const seen = Deno.lstatSync(`${dir}/file`);
    const wanted = { ...entryFromStat(seen), mode: 0o600, mtimeMs: 1_000_000 };
    Deno.removeSync(`${dir}/file`);
    Deno.symlinkSync(`${dir}/outside`, `${dir}/file`);
    for (const expected of [null, { dev: seen.dev, ino: seen.ino! }]) {
      assert.throws(
        () => setAttributes(`${dir}/file`, wanted, { owners: false, expected }),
        /symlink|replaced/,
        JSON.stringify(expected),
      );
    }
    const outside = Deno.statSync(`${dir}/outside`);
    assert.equal(outside.mode! & 0o777, 0o644);
    assert.notEqual(outside.mtime!.getTime(), 1_000_000);
    // The entry itself, unchanged since it was looked at, gets them.
    Deno.removeSync(`${dir}/file`);
    Deno.writeTextFileSync(`${dir}/file`, "ours");
    setAttributes(`${dir}/file`, wanted, { owners: false, expected: null });
    assert.equal(Deno.statSync(`${dir}/file`).mode! & 0o777, 0o600);
    assert.equal(Deno.statSync(`${dir}/file`).mtime!.getTime(), 1_000_000);
  });
});

Deno.test({
  name: "an entry we cannot open is changed by path only in a folder others cannot write",
  // Root opens any file: only a user whom permissions stop takes this path.
  ignore: Deno.uid() === 0,
  fn: async () => {
    await withTemp((dir) => {
      const cases: Array<[number, boolean]> = [[0o777, false], [0o1777, true], [0o755, true]];
      for (const [folderMode, allowed] of cases) {
        const folder = `${dir}/f${folderMode.toString(8)}`;
        Deno.mkdirSync(folder);
        Deno.chmodSync(folder, folderMode);
        Deno.writeTextFileSync(`${folder}/locked`, "x");
        Deno.chmodSync(`${folder}/locked`, 0o000);
        const seen = Deno.lstatSync(`${folder}/locked`);
        const wanted = { ...entryFromStat(seen), mode: 0o044, mtimeMs: 1_000_000 };
        const set = () =>
          setAttributes(`${folder}/locked`, wanted, { owners: false, expected: null });
        if (allowed) {
          set();
          assert.equal(Deno.lstatSync(`${folder}/locked`).mode! & 0o777, 0o044);
        } else {
          assert.throws(set, /writable by others/);
          assert.equal(Deno.lstatSync(`${folder}/locked`).mode! & 0o777, 0o000);
        }
      }
    });
  },
});
