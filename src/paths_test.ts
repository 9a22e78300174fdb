/**
 * Tests for relative paths: ancestors, sorted ranges, and being at or below a set of folders.
 */

import { ancestors, enclosingFolder, isWithin, subtree } from "./paths.ts";
import { assertEquals } from "./test_helpers.ts";

Deno.test("enclosingFolder() and isWithin() find the nearest folder at or above a path", () => {
  const folders = new Set(["a", "a/b", "x/y"]);
  // [path, nearest at or above, nearest strictly above]
  const table: Array<[string, string | undefined, string | undefined]> = [
    ["a", "a", undefined],
    ["a/b", "a/b", "a"],
    ["a/b/c", "a/b", "a/b"],
    ["a/bc", "a", "a"],
    ["ab", undefined, undefined],
    ["x", undefined, undefined],
    ["x/y/z/w", "x/y", "x/y"],
    ["", undefined, undefined],
  ];
  for (const [path, atOrAbove, above] of table) {
    assertEquals(enclosingFolder(path, folders), atOrAbove, path);
    assertEquals(enclosingFolder(path, folders, { below: true }), above, `${path}, below`);
    assertEquals(isWithin(path, folders), atOrAbove !== undefined, path);
    assertEquals(isWithin(path, folders, { below: true }), above !== undefined, `${path}, below`);
  }
  // A map is looked up by its keys; the root holds every other path.
  assertEquals(enclosingFolder("p/q", new Map([["p", "old"]])), "p");
  assertEquals(enclosingFolder("p/q", new Set([""])), "");
  assertEquals(enclosingFolder("", new Set([""]), { below: true }), undefined);
  assertEquals(isWithin("p", new Set()), false);
});

Deno.test("ancestors() and subtree() walk up and list below", () => {
  assertEquals(ancestors("a/b/c"), ["a/b", "a", ""]);
  assertEquals(ancestors(""), []);
  assertEquals(subtree(["a", "a b", "a/b", "a/b/c", "ab", "b"], "a"), ["a/b", "a/b/c"]);
});
