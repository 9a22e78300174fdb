/**
 * Tests for the walk of a tree, on real temporary folders.
 */

import { compileFilters } from "./exclude.ts";
import { scanTree } from "./scan.ts";
import { assertEquals, withTemp, writeTree } from "./test_helpers.ts";

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
    assertEquals([...scan.entries.keys()].sort(), ["", "a", "a/f", "dangling", "l"]);
    assertEquals(scan.entries.get("l")!.target, "a");
    assertEquals(scan.protectedPaths, ["a/x.tmp"]);
  });
});
