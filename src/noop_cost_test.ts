/**
 * What the no-op's faster paths must keep exactly: the walker's packing and unpacking hand over
 * every field `listFolder` read; a folder's names sort by code point on the fast path too; the
 * record's path check; and `folderUnchanged` stepping through its lists in name order.
 */

import assert from "node:assert/strict";
import * as fs from "node:fs";
import { folderUnchanged } from "./changed.ts";
import { compileFilters } from "./exclude.ts";
import { compareNames } from "./order.ts";
import { type RecordRow, RecordWriter } from "./recordfile.ts";
import { isRelativePath } from "./recordformat.ts";
import { type Entry, type FolderListing } from "./scan.ts";
import { e, vouch, withTemp, writeTree } from "./test_helpers.ts";
import { FolderStream } from "./sides/local/stream.ts";
import { openRecord } from "./sides/local/recordfiles.ts";
import { listFolder } from "./sides/local/list.ts";

/** Every folder of a tree as listFolder reads it, depth first in walk order. */
function listedDirectly(root: string): FolderListing[] {
  const options = { exclude: compileFilters([]), skipMetaDir: true, avoid: [] };
  const listings: FolderListing[] = [];
  const pending = [""];
  while (pending.length > 0) {
    const listing = listFolder(root, pending.pop()!, options);
    listings.push(listing);
    const folders = [...listing.entries].filter(([, entry]) => entry.kind === "dir")
      .map(([name]) => listing.folder === "" ? name : `${listing.folder}/${name}`);
    pending.push(...folders.reverse());
  }
  return listings;
}

async function streamed(root: string): Promise<FolderListing[]> {
  const stream = new FolderStream({ root, start: "", filters: [], skipMetaDir: true, avoid: [] });
  try {
    const listings: FolderListing[] = [];
    for (let listing = await stream.next(); listing; listing = await stream.next()) {
      listings.push(listing);
    }
    return listings;
  } finally {
    stream.close();
  }
}

Deno.test("FolderStream hands over every field listFolder read: links, large folders, many batches", async () => {
  await withTemp(async (dir) => {
    const root = `${dir}/t`;
    const many: Record<string, string> = {};
    for (let i = 0; i < 4_200; i++) many[`f${i}`] = "";
    const folders: Record<string, Record<string, string>> = {};
    for (let i = 0; i < 260; i++) folders[`d${i}`] = { x: "1" };
    writeTree(root, { big: many, folders, a: { b: "22", c: { d: "333" } } });
    // Links in several folders and batches: each target must stay with its own entry.
    Deno.symlinkSync("b", `${root}/a/link-b`);
    Deno.symlinkSync("../../a/b", `${root}/a/c/up`);
    Deno.symlinkSync("nowhere", `${root}/big/f2500-link`);
    Deno.symlinkSync("x", `${root}/folders/d259/y`);
    Deno.chmodSync(`${root}/a/b`, 0o640);
    const expected = listedDirectly(root);
    const actual = await streamed(root);
    assert.equal(actual.length, expected.length);
    for (let i = 0; i < expected.length; i++) {
      assert.deepStrictEqual(
        { ...actual[i]!, entries: [...actual[i]!.entries] },
        { ...expected[i]!, entries: [...expected[i]!.entries] },
      );
    }
  });
});

Deno.test("listFolder() sorts plain names by code point, as with surrogates and U+FFFD", () => {
  withTemp((dir) => {
    const plain = ["a", "a-", "a.b", "A", "_", "~", "a0", "ab", "b", "é", "\uE000"];
    const wide = [...plain, "😀", "\uFFFD"];
    for (const [folder, names] of [["plain", plain], ["wide", wide]] as const) {
      writeTree(`${dir}/${folder}`, Object.fromEntries(names.map((name) => [name, ""])));
      const listing = listFolder(dir, folder, { exclude: compileFilters([]) });
      assert.deepStrictEqual([...listing.entries.keys()], [...names].sort(compareNames));
    }
  });
});

Deno.test("isRelativePath() refuses empty, '.' and '..' parts only", () => {
  const table: Array<[string, boolean]> = [
    ["", true],
    ["a", true],
    ["a/b/c", true],
    ["...", true],
    [".a", true],
    ["a..", true],
    ["a/.b/..c", true],
    ["/a", false],
    ["a/", false],
    ["a//b", false],
    [".", false],
    ["..", false],
    ["a/.", false],
    ["a/../b", false],
    ["/", false],
  ];
  for (const [path, expected] of table) {
    assert.deepStrictEqual([path, isRelativePath(path)], [path, expected]);
  }
});

Deno.test("folderUnchanged() sends a folder whose lists are not in the same name order to the planner", () => {
  const hash = "ab".repeat(32);
  const listing = (entries: Array<[string, Entry]>): FolderListing => ({
    folder: "d",
    entries: new Map(entries),
    problems: [],
    protectedPaths: [],
  });
  const files = ["a", "b"].map((name) => {
    const source = e("file", { size: 5, mtimeMs: 1_000, ino: name.charCodeAt(0) });
    const replica = e("file", { size: 5, mtimeMs: 1_000, ino: 100 + name.charCodeAt(0) });
    const row: RecordRow = {
      name,
      kind: "file",
      source: vouch(source, hash),
      replica: vouch(replica, hash),
    };
    return { name, source, replica, row };
  });
  const from = listing(files.map((file) => [file.name, file.source]));
  const to = listing(files.map((file) => [file.name, file.replica]));
  const toReversed = listing(
    files.map((file) => [file.name, file.replica] as [string, Entry]).reverse(),
  );
  const known = new Map(files.map((file) => [file.name, file.row]));
  const knownReversed = new Map([...known].reverse());
  assert.equal(folderUnchanged(from, to, { known, owners: false }), true);
  assert.equal(folderUnchanged(from, toReversed, { known, owners: false }), false);
  assert.equal(folderUnchanged(from, to, { known: knownReversed, owners: false }), false);
});

Deno.test("the record reads back names and paths that share a prefix, ASCII or not, short or long", () => {
  withTemp((dir) => {
    const long = "p".repeat(600);
    const side = e("file", { size: 1, mtimeMs: 5_000 });
    const entry = vouch(side, "cd".repeat(32));
    const row = (name: string): RecordRow => ({ name, kind: "file", source: entry });
    const blocks: Array<[string, string[]]> = [
      ["", ["ab", "abc", "abcé", "abcéz", "abd", "é", "éa", "😀", "😀a"]],
      [`${long}/${long}`, ["x", "xy"]],
      [`${long}/${long}/q`, ["caf", "café", "cafés", `${"n".repeat(200)}`, `${"n".repeat(201)}`]],
      [`${long}/${long}é`, ["z"]],
    ];
    const path = `${dir}/record`;
    const file = fs.openSync(path, "w");
    const writer = new RecordWriter(file);
    for (const [folder, names] of blocks) writer.writeFolder(folder, names.map(row));
    writer.finish();
    fs.closeSync(file);
    const source = openRecord(path, { onCorrupt: (message) => assert.fail(message) })!;
    const read = [...source.blocks()].map((block) => [block.folder, block.rows.map((r) => r.name)]);
    source.close();
    assert.deepStrictEqual(read, blocks);
  });
});
