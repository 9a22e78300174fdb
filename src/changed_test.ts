/**
 * Tests for the one "changed?" module: tables of small entries, no disk.
 */

import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { hashesMatter } from "./changed.ts";
import { planMirror } from "./plan.ts";
import { type Entry } from "./scan.ts";
import { e, f, planDefaults, scanOf } from "./test_helpers.ts";

Deno.test("planMirror() at -vvv says why each entry judged unchanged is left alone", () => {
  const same = e("file", { size: 3 });
  const link = e("symlink", { target: "t" });
  const folder = e("dir");
  const hashed = { ...f(3, "abc"), hash: "h" };
  const from = scanOf({ a: same, l: link, d: folder, h: hashed });
  const to = scanOf({ a: { ...same }, l: { ...link }, d: { ...folder }, h: { ...hashed } });
  const why: Array<[string, string]> = [];
  planMirror(from, to, { ...planDefaults, explain: (path, reason) => why.push([path, reason]) });
  assertEquals(why.filter(([path]) => path !== ""), [
    ["a", "same size and mtime"],
    ["l", "same target"],
    ["d", "same attributes"],
    ["h", "same size, mtime and SHA-256"],
  ]);
});

function file(size: number, fields: Partial<Entry> = {}): Entry {
  return e("file", { size, ...fields });
}

Deno.test("hashesMatter() only for same-size files compared by content, mtime or a hash read", () => {
  const table: Array<[string, Entry, Entry, boolean, boolean]> = [
    ["sizes differ", file(3), file(4), true, false],
    ["same size and mtime", file(3), file(3), false, false],
    ["--checksum", file(3), file(3), true, true],
    ["mtimes differ", file(3, { mtimeMs: 5 }), file(3), false, true],
    ["a hash read", f(3, "a"), file(3), false, true],
    ["folders", e("dir"), e("dir"), true, false],
  ];
  for (const [name, source, target, checksum, expected] of table) {
    assertEquals(hashesMatter(source, target, checksum), expected, name);
  }
});
