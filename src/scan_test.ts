/**
 * Tests for the walk of a tree, on real temporary folders.
 */

import { deepStrictEqual } from "node:assert/strict";
import { compileFilters } from "./exclude.ts";
import { scanTree } from "./scan.ts";
import { withTemp, writeTree } from "./test_helpers.ts";

Deno.test("scanTree() lists every kind without following symlinks, and skips excluded entries", async () => {
  await withTemp((dir) => {
    writeTree(dir, {
      a: { f: "1", "x.tmp": "t" },
      l: { link: "a" },
      dangling: { link: "nowhere" },
    });
    const scan = scanTree(dir, {
      exclude: compileFilters([{ kind: "exclude", pattern: "*.tmp" }]),
    });
    deepStrictEqual([...scan.entries.keys()].sort(), ["", "a", "a/f", "dangling", "l"]);
    deepStrictEqual(scan.entries.get("l")!.target, "a");
    deepStrictEqual(scan.protectedPaths, ["a/x.tmp"]);
  });
});
