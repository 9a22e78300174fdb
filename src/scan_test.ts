/**
 * Tests for listing one folder of a tree, on real temporary folders.
 */

import assert from "node:assert/strict";
import { compileFilters } from "./exclude.ts";
import { withTemp, writeTree } from "./test_helpers.ts";
import { listFolder } from "./sides/local/list.ts";

Deno.test("listFolder() lists every kind without following symlinks, and protects excluded entries", async () => {
  await withTemp((dir) => {
    writeTree(dir, {
      a: { f: "1", "x.tmp": "t" },
      l: { link: "a" },
      dangling: { link: "nowhere" },
    });
    const options = { exclude: compileFilters([{ kind: "exclude", pattern: "*.tmp" }]) };
    const top = listFolder(dir, "", options);
    assert.deepEqual([...top.entries.keys()], ["a", "dangling", "l"]);
    assert.equal(top.entries.get("a")?.kind, "dir");
    assert.equal(top.entries.get("l")?.kind, "symlink");
    assert.equal(top.entries.get("l")?.target, "a");
    assert.equal(top.entries.get("dangling")?.target, "nowhere");
    assert.deepEqual(top.protectedPaths, []);
    const inner = listFolder(dir, "a", options);
    assert.deepEqual([...inner.entries.keys()], ["f"]);
    assert.equal(inner.entries.get("f")?.kind, "file");
    assert.deepEqual(inner.protectedPaths, ["a/x.tmp"]);
    assert.deepEqual(inner.problems, []);
  });
});
