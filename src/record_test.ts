/**
 * Tests for the record: when a hash is trusted, lookups by path or inode, the next record.
 */

import {
  type FileRecord,
  nextRecord,
  recordLookup,
  type RecordMap,
  trustedHash,
} from "./record.ts";
import { type Entry, signatureOf } from "./scan.ts";
import { assertEquals, e, RACY_CASES, scanOf, vouch } from "./test_helpers.ts";

Deno.test("trustedHash() applies the racy rule to ctime seconds as well as to mtime", () => {
  const file = e("file", { size: 4, mtimeMs: 1_000, ctimeMs: 5_000 });
  const hash = "a".repeat(64);
  const table = RACY_CASES;
  for (const [name, fields, hashedAtMs, trusted] of table) {
    const entry = { ...file, ...fields };
    const known = { ...signatureOf(entry), hash, hashedAtMs };
    assertEquals(trustedHash(known, entry), trusted ? hash : null, name);
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
    assertEquals(hashOf(path, entry), expected, name);
  }
  assertEquals(recordLookup(undefined, trustedHash)("here", other), null, "no record");
});

Deno.test("nextRecord() carries hashes while signatures hold, and follows moves and writes", () => {
  const hash = "c".repeat(64);
  const carried = e("file", { size: 1 });
  const stale = e("file", { size: 1 });
  const movedFile = e("file", { size: 2 });
  const inFolder = e("file", { size: 3 });
  const source = e("file", { size: 4, hash, hashedAtMs: 99_999 });
  const previous: FileRecord = {
    replica: new Map([
      ["carried", vouch(carried, hash)],
      ["stale", vouch(stale, hash, { mtimeMs: 5 })],
      ["gone", vouch(e("file"), hash)],
      ["old", vouch(movedFile, hash)],
      ["dir/f", vouch(inFolder, hash)],
    ]),
    source: new Map(),
  };
  const replica = scanOf({
    carried,
    stale,
    gone: e("file"),
    old: movedFile,
    dir: e("dir"),
    "dir/f": inFolder,
  });
  const newSignature = { size: 2, mtimeMs: 1000, ctimeMs: 7000, ino: 77 };
  const written = { ...signatureOf(e("file")), hash, hashedAtMs: 5 };
  const next = nextRecord(previous, { source: scanOf({ src: source }), replica }, {
    written: new Map([["new", { replica: written, source: written }]]),
    deleted: new Set(["gone"]),
    resigned: new Map([["renamed", newSignature]]),
    movedFiles: new Map([["renamed", "old"]]),
    movedFolders: new Map([["folder", "dir"]]),
  });
  assertEquals([...next.replica.keys()].sort(), ["carried", "folder/f", "new", "renamed", "stale"]);
  assertEquals(next.replica.get("stale")!.hash, null, "a changed signature drops the hash");
  assertEquals(next.replica.get("renamed"), { ...vouch(movedFile, hash), ...newSignature });
  assertEquals(next.replica.get("folder/f")!.hash, hash);
  assertEquals(
    [...next.source.keys()].sort(),
    ["new", "src"],
    "hashes computed this run are cached",
  );
});
