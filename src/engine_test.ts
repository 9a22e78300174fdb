import { deepStrictEqual } from "node:assert/strict";
import { folderUnchanged } from "./changed.ts";
import { rowFor } from "./nextrecord.ts";
import { type RecordRow } from "./recordfile.ts";
import { type Entry, type FolderListing } from "./scan.ts";
import { e, vouch } from "./test_helpers.ts";

const HASH = "ab".repeat(32);

function listing(entries: Record<string, Entry>): FolderListing {
  return {
    folder: "d",
    entries: new Map(Object.entries(entries)),
    problems: [],
    protectedPaths: [],
  };
}

/** A synced file: source and replica alike, both vouched for by the record. */
function synced(fields: Partial<Entry> = {}): { source: Entry; replica: Entry; row: RecordRow } {
  const source = e("file", { size: 5, mtimeMs: 1_000, ...fields });
  const replica = e("file", { size: 5, mtimeMs: 1_000, ...fields });
  return {
    source,
    replica,
    row: { name: "f", kind: "file", source: vouch(source, HASH), replica: vouch(replica, HASH) },
  };
}

Deno.test("folderUnchanged() lets only a folder the planner would leave alone skip it", () => {
  type Case = [string, (s: ReturnType<typeof synced>) => void, boolean];
  const table: Case[] = [
    ["all alike, all recorded", () => {}, true],
    ["mtime differs", (s) => s.source.mtimeMs = 2_000, false],
    ["size differs", (s) => s.source.size = 6, false],
    ["mode differs", (s) => s.replica.mode = 0o600, false],
    ["source swapped in (inode)", (s) => s.source.ino++, false],
    ["source edited, mtime put back (ctime)", (s) => s.source.ctimeMs += 1_000, false],
    ["replica touched (ctime)", (s) => s.replica.ctimeMs += 1_000, false],
    ["replica not hashed", (s) => s.row.replica = { ...s.row.replica!, hash: null }, false],
    ["no source side recorded", (s) => delete s.row.source, false],
    ["type changed", (s) => s.replica.kind = "symlink", false],
  ];
  for (const [label, change, expected] of table) {
    const file = synced();
    change(file);
    const known = new Map([["f", file.row]]);
    const result = folderUnchanged(listing({ f: file.source }), listing({ f: file.replica }), {
      known,
      owners: false,
    });
    deepStrictEqual([label, result], [label, expected]);
  }
});

Deno.test("folderUnchanged() wants the same names on both sides and a record of exactly them", () => {
  const { source, replica, row } = synced();
  const dirS = e("dir");
  const dirR = e("dir");
  const dirRow: RecordRow = {
    name: "sub",
    kind: "dir",
    source: rowFor("sub", { source: dirS, replica: dirR, known: undefined })!.source!,
    replica: rowFor("sub", { source: dirS, replica: dirR, known: undefined })!.replica!,
  };
  const known = new Map([["f", row], ["sub", dirRow]]);
  const check = (from: Record<string, Entry>, to: Record<string, Entry>, rows = known) =>
    folderUnchanged(listing(from), listing(to), { known: rows, owners: false });
  deepStrictEqual(check({ f: source, sub: dirS }, { f: replica, sub: dirR }), true);
  deepStrictEqual(
    check({ f: source, sub: dirS }, { f: replica }),
    false,
    "a folder only in the source",
  );
  deepStrictEqual(check({ f: source }, { f: replica, sub: dirR }), false, "only in the replica");
  deepStrictEqual(
    check({ f: source, sub: dirS }, { f: replica, sub: e("dir") }),
    false,
    "another folder",
  );
  deepStrictEqual(
    check({ f: source }, { f: replica }, new Map([["f", row], ["gone", row]])),
    false,
    "a row the record should drop",
  );
  const link = (target: string) => e("symlink", { target });
  deepStrictEqual(
    check({ f: source, sub: dirS, l: link("a") }, { f: replica, sub: dirR, l: link("a") }),
    true,
    "links are not recorded",
  );
  deepStrictEqual(
    check({ f: source, sub: dirS, l: link("a") }, { f: replica, sub: dirR, l: link("b") }),
    false,
    "a link's target",
  );
});

Deno.test("folderUnchanged() compares owners only when they are kept", () => {
  const file = synced();
  file.replica.uid = 1000;
  const known = new Map([["f", file.row]]);
  const run = (owners: boolean) =>
    folderUnchanged(listing({ f: file.source }), listing({ f: file.replica }), { known, owners });
  deepStrictEqual([run(false), run(true)], [true, false]);
});

Deno.test("rowFor() keeps what the record knew while it holds, and the replica's signature", () => {
  const { source, replica, row } = synced();
  deepStrictEqual(
    rowFor("f", { source, replica, known: row }),
    row,
    "unchanged: the row carries over",
  );
  const edited = { ...source, ctimeMs: source.ctimeMs + 1_000 };
  deepStrictEqual(rowFor("f", { source: edited, replica, known: row }), {
    name: "f",
    kind: "file",
    replica: row.replica!,
  }, "the source side goes once it changed");
  const hashed = { ...edited, hash: HASH, hashedAtMs: 9_000 };
  deepStrictEqual(
    rowFor("f", { source: hashed, replica, known: row })!.source!.hash,
    HASH,
    "hashed this run",
  );
  const unknown = rowFor("f", { source, replica, known: undefined })!;
  deepStrictEqual(
    [unknown.source, unknown.replica!.hash],
    [undefined, null],
    "no record: the replica unhashed",
  );
  deepStrictEqual(
    rowFor("l", { source: e("symlink"), replica: e("symlink"), known: undefined }),
    null,
  );
  const dir = rowFor("d", { source: e("dir", { ino: 7 }), replica: undefined, known: undefined })!;
  deepStrictEqual(
    [dir.kind, dir.source!.ino, dir.replica],
    ["dir", 7, undefined],
    "a folder: its source inode, for moves",
  );
});
