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
