/**
 * Tests for relative paths: ancestors, sorted ranges, and being at or below a set of folders.
 */

import { deepStrictEqual } from "node:assert/strict";
import { ancestors, enclosingFolder, isWithin, subtree } from "./paths.ts";

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
    deepStrictEqual(enclosingFolder(path, folders), atOrAbove, path);
    deepStrictEqual(enclosingFolder(path, folders, { below: true }), above, `${path}, below`);
    deepStrictEqual(isWithin(path, folders), atOrAbove !== undefined, path);
    deepStrictEqual(
      isWithin(path, folders, { below: true }),
      above !== undefined,
      `${path}, below`,
    );
  }
  // A map is looked up by its keys; the root holds every other path.
  deepStrictEqual(enclosingFolder("p/q", new Map([["p", "old"]])), "p");
  deepStrictEqual(enclosingFolder("p/q", new Set([""])), "");
  deepStrictEqual(enclosingFolder("", new Set([""]), { below: true }), undefined);
  deepStrictEqual(isWithin("p", new Set()), false);
});

Deno.test("ancestors() and subtree() walk up and list below", () => {
  deepStrictEqual(ancestors("a/b/c"), ["a/b", "a", ""]);
  deepStrictEqual(ancestors(""), []);
  deepStrictEqual(subtree(["a", "a b", "a/b", "a/b/c", "ab", "b"], "a"), ["a/b", "a/b/c"]);
});
