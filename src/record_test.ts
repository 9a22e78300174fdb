/**
 * Tests for the record: when a hash is trusted, lookups by path or inode, the next record.
 */

import { deepStrictEqual } from "node:assert/strict";
import { recordLookup, type RecordMap, trustedHash } from "./record.ts";
import { type Entry, signatureOf } from "./scan.ts";
import { e, RACY_CASES, vouch } from "./test_helpers.ts";

Deno.test("trustedHash() applies the racy rule to ctime seconds as well as to mtime", () => {
  const file = e("file", { size: 4, mtimeMs: 1_000, ctimeMs: 5_000 });
  const hash = "a".repeat(64);
  const table = RACY_CASES;
  for (const [name, fields, hashedAtMs, trusted] of table) {
    const entry = { ...file, ...fields };
    const known = { ...signatureOf(entry), hash, hashedAtMs };
    deepStrictEqual(trustedHash(known, entry), trusted ? hash : null, name);
  }
});

Deno.test("recordLookup() finds a file by path, else a renamed one by its inode", () => {
  const file = e("file", { size: 9, ino: 4242 });
  const other = e("file", { size: 9 });
  const known: RecordMap = new Map([
    ["old/name", vouch(file, "9".repeat(64))],
    ["here", vouch(other, "8".repeat(64))],
  ]);
  const hashOf = recordLookup(known, trustedHash);
  // [name, path, entry, expected hash]
  const table: Array<[string, string, Entry, string | null]> = [
    ["by path", "here", other, "8".repeat(64)],
    ["renamed: by inode", "new/name", file, "9".repeat(64)],
    ["the path's record is stale: by inode", "here", file, "9".repeat(64)],
    ["changed since", "new/name", { ...file, ctimeMs: 5000 }, null],
    ["unknown inode", "new/name", e("file", { size: 9 }), null],
  ];
  for (const [name, path, entry, expected] of table) {
    deepStrictEqual(hashOf(path, entry), expected, name);
  }
  deepStrictEqual(recordLookup(undefined, trustedHash)("here", other), null, "no record");
});
