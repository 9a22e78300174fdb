/**
 * Tests for the format-3 record: round trips through real files, walk order, skipping folders,
 * and a reader that refuses every kind of damage once and hands out nothing it has not checked.
 */

import { deepStrictEqual, match, ok, throws } from "node:assert/strict";
import * as fs from "node:fs";
import { crc32 } from "node:zlib";
import { UsageError } from "./errors.ts";
import { compareNames } from "./order.ts";
import type { FileRecord, RecordEntry } from "./record.ts";
import {
  emptyRecordSource,
  type RecordBlock,
  type RecordRow,
  type RecordSource,
  recordSourceFromV2,
  RecordWriter,
} from "./recordfile.ts";
import { withTemp } from "./test_helpers.ts";
import { openRecord } from "./sides/local/recordfiles.ts";

const MAX = Number.MAX_SAFE_INTEGER;
const HASH_A = "0123456789abcdef".repeat(4);
const HASH_B = "f0e1d2c3b4a59687".repeat(4);
const NOW = 1_700_000_000_000;
const HEADER_BYTES = 18;
const TRAILER_BYTES = 13;

/** A file side; fields not given are those of a plain synced file. */
function side(fields: Partial<RecordEntry> = {}): RecordEntry {
  return {
    size: 10,
    mtimeMs: NOW,
    ctimeMs: NOW + 1000,
    ino: 42,
    hash: HASH_A,
    hashedAtMs: NOW + 5000,
    ...fields,
  };
}

function file(name: string, source?: RecordEntry, replica?: RecordEntry): RecordRow {
  return { name, kind: "file", ...(source && { source }), ...(replica && { replica }) };
}

function dir(name: string, sourceIno?: number, replicaIno?: number): RecordRow {
  // The other fields are given on purpose: the record keeps only a folder's inode.
  const row: RecordRow = { name, kind: "dir" };
  if (sourceIno !== undefined) row.source = side({ ino: sourceIno, size: 4096 });
  if (replicaIno !== undefined) row.replica = side({ ino: replicaIno, hash: null });
  return row;
}

function byName(rows: RecordRow[]): RecordRow[] {
  return [...rows].sort((a, b) => compareNames(a.name, b.name));
}

/** A row as the record keeps it: a folder's sides hold their inode only; keys in one order. */
function stored(row: RecordRow): RecordRow {
  const keep = (entry: RecordEntry): RecordEntry =>
    row.kind === "dir"
      ? { size: 0, mtimeMs: 0, ctimeMs: 0, ino: entry.ino, hash: null, hashedAtMs: 0 }
      : {
        size: entry.size,
        mtimeMs: entry.mtimeMs,
        ctimeMs: entry.ctimeMs,
        ino: entry.ino,
        hash: entry.hash,
        hashedAtMs: entry.hashedAtMs,
      };
  const result: RecordRow = { name: row.name, kind: row.kind };
  if (row.source) result.source = keep(row.source);
  if (row.replica) result.replica = keep(row.replica);
  return result;
}

function storedBlocks(blocks: RecordBlock[]): RecordBlock[] {
  return blocks.map(({ folder, rows }) => ({ folder, rows: rows.map(stored) }));
}

/** Compares blocks as stored, row by row, so a failure names the row that differs. */
function assertBlocks(actual: RecordBlock[], expected: RecordBlock[], message = ""): void {
  const want = storedBlocks(expected);
  deepStrictEqual(actual.map((b) => b.folder), want.map((b) => b.folder), `${message} folders`);
  for (const [i, block] of actual.entries()) {
    const rows = want[i]!.rows;
    deepStrictEqual(block.rows.map((row) => row.name), rows.map((row) => row.name), block.folder);
    for (const [j, row] of block.rows.entries()) {
      deepStrictEqual(row, rows[j], `${message} ${block.folder}/${row.name}`);
    }
  }
}

/** Writes a record of `blocks` at `path`; returns the writer's byte count. */
function writeRecord(path: string, blocks: RecordBlock[]): number {
  const fd = fs.openSync(path, "w", 0o600);
  try {
    const writer = new RecordWriter(fd);
    for (const block of blocks) writer.writeFolder(block.folder, block.rows);
    writer.finish();
    return writer.bytesWritten;
  } finally {
    fs.closeSync(fd);
  }
}

interface Opened {
  source: RecordSource;
  messages: string[];
}

function open(path: string, maxBytes = 1 << 30): Opened {
  const messages: string[] = [];
  const source = openRecord(path, { maxBytes, onCorrupt: (message) => messages.push(message) });
  ok(source !== null, `no record at ${path}`);
  return { source, messages };
}

/** Every block the record gives, what it reported, and whether it ended corrupt. */
function readAll(path: string, maxBytes?: number) {
  const { source, messages } = open(path, maxBytes);
  const blocks = storedBlocks([...source.blocks()]);
  const corrupt = source.corrupt;
  source.close();
  return { blocks, messages, corrupt };
}

/** A record of a few folders, small enough to damage byte by byte. */
const SMALL: RecordBlock[] = [
  { folder: "", rows: [dir("a", 5, 6), file("top", side(), side({ ino: 7 }))] },
  { folder: "a", rows: [file("x", side({ size: 1 })), file("y", undefined, side({ hash: null }))] },
  { folder: "a/b", rows: [file("z", side({ hash: HASH_B }), side())] },
];

Deno.test("RecordWriter and openRecord() give back every kind of row as written", async () => {
  const top = byName([
    file("both sides, one hash", side(), side({ ino: 43, ctimeMs: NOW + 9000 })),
    file("source only", side({ hash: null })),
    file("replica only", undefined, side()),
    file("no hashes", side({ hash: null }), side({ hash: null, ino: 99 })),
    file("two hashes", side({ size: 1, mtimeMs: NOW - 5 }), side({ hash: HASH_B, size: 2 })),
    file("same hashedAt", side(), side({ hashedAtMs: NOW + 5000, ino: 1 })),
    dir("folder", 1000, 2000),
    dir("source folder", 1001),
    dir("replica folder", undefined, 2001),
    file("é", side()),
    file("emoji 🎉", side()),
    file("emoji 🎊 shares the first half of its surrogate pair", side()),
    file("\uFFFD", side()),
    file("\uFEFFleading byte order mark", side()),
    file(" spaces  around ", side()),
    file("negative mtime", side({ mtimeMs: -86_400_000, ctimeMs: 0 })),
    file("huge", side({ size: MAX, ino: MAX, hashedAtMs: 0 })),
    // Next to each other: the second differs from the first by about 2^54, which a double
    // cannot hold exactly, so it is stored whole rather than as a difference.
    file("huge1 far past", side({ mtimeMs: -MAX, ctimeMs: MAX, hashedAtMs: -MAX })),
    file("huge2 far future", side({ mtimeMs: MAX, ctimeMs: -MAX, hashedAtMs: MAX })),
  ]);
  const shared: RecordRow[] = [];
  for (let i = 0; i < 300; i++) {
    const name = `shared-prefix-${String(i).padStart(4, "0")}${i % 7 === 0 ? "-é" : ""}`;
    shared.push(
      i % 10 === 0 ? dir(name, 5000 + i, 9000 - i) : file(
        name,
        side({ ino: 100 + i, mtimeMs: NOW + (i % 3) * 1e9 - i, size: i * 1000 }),
        side({ ino: 20_000 - 3 * i, ctimeMs: NOW + i, hashedAtMs: NOW + 2 * i }),
      ),
    );
  }
  const blocks: RecordBlock[] = [
    { folder: "", rows: top },
    { folder: "shared", rows: shared },
    { folder: "shared/é/🎉 deep", rows: [file("last", side())] },
    { folder: "shared/é/🎊 deeper", rows: [file("last", side())] },
  ];
  await withTemp((temp) => {
    const path = `${temp}/record3`;
    const bytes = writeRecord(path, blocks);
    deepStrictEqual(bytes, Deno.statSync(path).size, "bytesWritten is the file's size");
    const read = readAll(path);
    deepStrictEqual(read.messages, []);
    deepStrictEqual(read.corrupt, false);
    assertBlocks(read.blocks, blocks);
    const { source } = open(path);
    for (const block of blocks) {
      deepStrictEqual([...source.rowsOf(block.folder).values()], block.rows.map(stored));
    }
    source.close();
  });
});

Deno.test("folders and names go in code-point walk order, not in UTF-16 or byte order", async () => {
  // By code point: "a" < "a-" (the folder's subtree first), "z" < "é" < "\uFFFD" < "🎉".
  const names = ["a", "a-", "z", "é", "\uFFFD", "🎉"];
  const folders = ["", "a", "a/b", "a-", "z", "é", "\uFFFD", "🎉"];
  // JavaScript's own sort (UTF-16) puts the emoji before "\uFFFD"; bytes put "a-" before "a/b".
  ok(JSON.stringify([...names].sort()) !== JSON.stringify(names));
  ok([...folders].sort()[2] === "a-");
  const blocks = folders.map((folder) => ({
    folder,
    rows: names.map((name) => file(name, side())),
  }));
  await withTemp((temp) => {
    const path = `${temp}/record3`;
    writeRecord(path, blocks);
    const read = readAll(path);
    deepStrictEqual(read.blocks.map((block) => block.folder), folders);
    for (const block of read.blocks) deepStrictEqual(block.rows.map((row) => row.name), names);
    const fd = fs.openSync(`${temp}/other`, "w");
    try {
      const writer = new RecordWriter(fd);
      throws(
        () => writer.writeFolder("", [file("🎉", side()), file("\uFFFD", side())]),
        { message: /does not come after/ },
      );
      writer.writeFolder("a-", [file("x", side())]);
      throws(() => writer.writeFolder("a/b", []), { message: /out of walk order/ });
    } finally {
      fs.closeSync(fd);
    }
  });
});

Deno.test("rowsOf() skips folders not asked for and gives empty maps for folders without rows", async () => {
  const blocks: RecordBlock[] = [
    { folder: "", rows: [file("f", side())] },
    { folder: "a", rows: [file("skipped", side())] },
    { folder: "a/x", rows: [file("one", side()), file("two", side())] },
    { folder: "b", rows: [dir("d", 1, 2)] },
    { folder: "c", rows: [file("left", side())] },
  ];
  await withTemp((temp) => {
    const path = `${temp}/record3`;
    writeRecord(path, blocks);
    const { source, messages } = open(path);
    const names = (folder: string) => [...source.rowsOf(folder).keys()];
    deepStrictEqual(names(""), ["f"]);
    deepStrictEqual(names("a/x"), ["one", "two"], "the block of 'a' is skipped");
    const missing = source.rowsOf("a/y");
    deepStrictEqual(missing.size, 0);
    ok(source.rowsOf("a/y") === missing, "the same folder again: the same map");
    deepStrictEqual(names("b"), ["d"]);
    deepStrictEqual(names("bb"), []);
    throws(() => source.rowsOf("a"), { message: /walk order/ });
    deepStrictEqual([...source.blocks()].map((block) => block.folder), ["c"]);
    deepStrictEqual(names("c"), ["left"], "the folder blocks() handed out last, again");
    deepStrictEqual(names("d"), []);
    deepStrictEqual(messages, [], "skipped rows still count against the end's total");
    deepStrictEqual(source.corrupt, false);
    source.close();
    deepStrictEqual(names("e"), [], "closed: reads as empty");
  });
  const empty = emptyRecordSource();
  deepStrictEqual(empty.rowsOf("").size, 0);
  deepStrictEqual([...empty.blocks()], []);
  deepStrictEqual(empty.corrupt, false);
});

Deno.test("RecordWriter rejects what it cannot store, writes nothing of it, and goes on", async () => {
  await withTemp((temp) => {
    const path = `${temp}/record3`;
    const fd = fs.openSync(path, "w");
    const writer = new RecordWriter(fd);
    writer.writeFolder("b", [file("kept", side())]);
    // A fine row goes first, so each rejection comes in the middle of a block begun.
    const fine = file("a fine row first", side());
    const table: Array<[string, string, RecordRow[], RegExp]> = [
      ["a folder before the last", "a", [fine], /out of walk order/],
      ["the same folder again", "b", [fine], /out of walk order/],
      ["not a relative path", "/c", [fine], /not a relative path/],
      ["a folder path with '..'", "c/..", [fine], /not a relative path/],
      ["rows out of order", "c", [fine, file("z", side()), file("x", side())], /not come after/],
      ["a duplicate name", "c", [fine, file("x", side()), file("x", side())], /not come after/],
      ["a name with '/'", "c", [fine, file("x/y", side())], /without '\/'/],
      ["an empty name", "c", [file("", side())], /non-empty/],
      ["no side", "c", [fine, file("x")], /source or a replica side/],
      ["a fractional mtime", "c", [fine, file("x", side({ mtimeMs: 1.5 }))], /mtime/],
      ["a negative size", "c", [fine, file("x", side({ size: -1 }))], /size/],
      ["an inode past 2^53", "c", [fine, dir("x", 2 ** 53)], /inode/],
      ["an upper-case hash", "c", [fine, file("x", side({ hash: HASH_A.toUpperCase() }))], /hash/],
      ["a short hash", "c", [fine, file("x", side({ hash: "abc" }))], /hash/],
      ["a lone surrogate", "c", [fine, file("x\uD83D", side())], /lone surrogate/],
    ];
    for (const [name, folder, rows, pattern] of table) {
      const before = writer.bytesWritten;
      throws(() => writer.writeFolder(folder, rows), { message: pattern });
      deepStrictEqual(writer.bytesWritten, before, `${name}: nothing of it is kept`);
    }
    writer.writeFolder("c", [file("x", side())]);
    writer.finish();
    deepStrictEqual(writer.rowCount, 2);
    throws(() => writer.writeFolder("d", [file("x", side())]), { message: /finished/ });
    fs.closeSync(fd);
    const read = readAll(path);
    deepStrictEqual(read.messages, []);
    deepStrictEqual(read.blocks.map((block) => block.folder), ["b", "c"]);
  });
});

Deno.test("openRecord() reports a record cut short once, before any of its rows is used", async () => {
  await withTemp((temp) => {
    const whole = `${temp}/whole`;
    const size = writeRecord(whole, SMALL);
    const bytes = Deno.readFileSync(whole);
    const cuts = new Set([0, 5, HEADER_BYTES, HEADER_BYTES + 3, size - TRAILER_BYTES, size - 1]);
    for (const boundary of blockBoundaries(bytes)) cuts.add(boundary);
    for (const cut of cuts) {
      const path = `${temp}/cut-${cut}`;
      Deno.writeFileSync(path, bytes.subarray(0, cut));
      const read = readAll(path);
      deepStrictEqual(read.blocks, [], `cut at ${cut}: nothing handed out`);
      deepStrictEqual(read.messages.length, 1, `cut at ${cut}: reported once`);
      match(read.messages[0]!, /^The record '.*cut-\d+' is corrupt \(.*\); rebuilding it$/);
      deepStrictEqual(read.corrupt, true);
    }
  });
});

/** Where each block starts (and the trailer), read from the block lengths. */
function blockBoundaries(bytes: Uint8Array): number[] {
  const boundaries: number[] = [];
  let at = HEADER_BYTES;
  while (at < bytes.length - TRAILER_BYTES) {
    boundaries.push(at);
    let length = 0;
    let scale = 1;
    let byte: number;
    do {
      byte = bytes[at++]!;
      length += (byte % 128) * scale;
      scale *= 128;
    } while (byte >= 128);
    at += length + 4;
  }
  boundaries.push(at);
  return boundaries;
}

Deno.test("openRecord() catches any flipped bit: blocks before it come out right, none after", async () => {
  await withTemp((temp) => {
    const whole = `${temp}/whole`;
    writeRecord(whole, SMALL);
    const bytes = Deno.readFileSync(whole);
    const expected = storedBlocks(SMALL);
    let partial = 0;
    for (let at = 0; at < bytes.length; at++) {
      for (const bit of [0x01, 0x10, 0x80]) {
        const damaged = bytes.slice();
        damaged[at]! ^= bit;
        const path = `${temp}/damaged`;
        Deno.writeFileSync(path, damaged);
        const read = readAll(path);
        const where = `byte ${at}, bit ${bit}`;
        deepStrictEqual(read.messages.length, 1, `${where}: reported once`);
        deepStrictEqual(read.corrupt, true, where);
        deepStrictEqual(
          read.blocks,
          expected.slice(0, read.blocks.length),
          `${where}: no wrong row`,
        );
        ok(read.blocks.length < expected.length, `${where}: the damaged block is not used`);
        if (read.blocks.length > 0) partial++;
      }
    }
    ok(partial > 0, "some damage is met only after good blocks were handed out");
  });
});

Deno.test("a damaged block: rowsOf() gives the folders before it, then empty maps", async () => {
  await withTemp((temp) => {
    const path = `${temp}/record3`;
    writeRecord(path, SMALL);
    const bytes = Deno.readFileSync(path);
    const second = blockBoundaries(bytes)[1]!;
    bytes[second + 4]! ^= 0x40;
    Deno.writeFileSync(path, bytes);
    const { source, messages } = open(path);
    deepStrictEqual([...source.rowsOf("").keys()], ["a", "top"]);
    deepStrictEqual(messages, []);
    deepStrictEqual(source.rowsOf("a").size, 0);
    deepStrictEqual(messages.length, 1);
    match(messages[0]!, /block 2 fails its checksum\); rebuilding it$/);
    deepStrictEqual(source.rowsOf("a/b").size, 0, "the rest reads as empty");
    deepStrictEqual(source.corrupt, true);
    deepStrictEqual(messages.length, 1, "reported once");
  });
});

Deno.test("openRecord() reports a wrong header, misplaced blocks and a wrong row total once", async () => {
  await withTemp((temp) => {
    const good = `${temp}/good`;
    writeRecord(good, SMALL);
    const bytes = Deno.readFileSync(good);
    const v2 = `${temp}/v2`;
    Deno.writeTextFileSync(v2, '{"format":"treesync-record","version":2,"replica":[],"source":[]}');
    const version4 = `${temp}/version4`;
    const changed = bytes.slice();
    changed[16] = "4".charCodeAt(0);
    Deno.writeFileSync(version4, changed);
    for (const path of [v2, version4]) {
      const read = readAll(path);
      deepStrictEqual(read.messages.length, 1, path);
      match(read.messages[0]!, /does not start as a treesync record of format 3/);
      deepStrictEqual(read.blocks, []);
    }
    // Blocks of "a" then "": each is sound, their order is not.
    const [first, second, third] = blockBoundaries(bytes);
    const swapped = `${temp}/swapped`;
    Deno.writeFileSync(
      swapped,
      concat([
        bytes.subarray(0, first),
        bytes.subarray(second, third),
        bytes.subarray(first, second),
        trailer(3),
      ]),
    );
    let read = readAll(swapped);
    assertBlocks(read.blocks, SMALL.slice(1, 2));
    deepStrictEqual(read.messages.length, 1);
    match(read.messages[0]!, /block 2 is out of walk order/);
    const wrongTotal = `${temp}/wrong-total`;
    Deno.writeFileSync(wrongTotal, concat([bytes.subarray(0, -TRAILER_BYTES), trailer(6)]));
    read = readAll(wrongTotal);
    assertBlocks(read.blocks, SMALL, "every block is sound: handed out");
    deepStrictEqual(read.messages.length, 1);
    match(read.messages[0]!, /holds 5 rows where its end says 6/);
  });
});

function concat(parts: Uint8Array[]): Uint8Array {
  const whole = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    whole.set(part, at);
    at += part.length;
  }
  return whole;
}

/** A trailer saying `rows` rows, with its checksum right. */
function trailer(rows: number): Uint8Array {
  const bytes = new Uint8Array(TRAILER_BYTES);
  bytes[1] = rows;
  new DataView(bytes.buffer).setUint32(9, crc32(bytes.subarray(0, 9)), true);
  return bytes;
}

Deno.test("openRecord() refuses a record over maxBytes without reading it", async () => {
  await withTemp((temp) => {
    const path = `${temp}/record3`;
    const size = writeRecord(path, SMALL);
    const over = readAll(path, size - 1);
    deepStrictEqual(over.blocks, []);
    deepStrictEqual(over.messages.length, 1);
    match(over.messages[0]!, /more than a record of this tree can be .*; rebuilding it$/);
    const fits = readAll(path, size);
    deepStrictEqual(fits.messages, []);
    assertBlocks(fits.blocks, SMALL);
  });
});

Deno.test("openRecord() throws on a symlink, a fifo or a folder, and gives null for none", async () => {
  await withTemp((temp) => {
    const real = `${temp}/real`;
    writeRecord(real, SMALL);
    const link = `${temp}/link`;
    Deno.symlinkSync(real, link);
    const fifo = `${temp}/fifo`;
    const made = new Deno.Command("mkfifo", { args: [fifo] }).outputSync();
    ok(made.success, "mkfifo failed");
    const messages: string[] = [];
    const options = { maxBytes: 1 << 20, onCorrupt: (message: string) => messages.push(message) };
    throws(() => openRecord(link, options), {
      name: UsageError.name,
      message: /'.*link' is a symlink/,
    });
    // Refused once lstat shows it: opening a fifo nobody writes to could wait for ever.
    throws(() => openRecord(fifo, options), {
      name: UsageError.name,
      message: /'.*fifo' is not a regular file/,
    });
    throws(() => openRecord(temp, options), {
      name: UsageError.name,
      message: /is not a regular file/,
    });
    deepStrictEqual(openRecord(`${temp}/missing`, options), null);
    deepStrictEqual(messages, []);
  });
});

Deno.test("a record with no rows reads as empty and sound", async () => {
  await withTemp((temp) => {
    const path = `${temp}/record3`;
    const size = writeRecord(path, [{ folder: "", rows: [] }, { folder: "a", rows: [] }]);
    deepStrictEqual(size, HEADER_BYTES + TRAILER_BYTES, "empty folders write no block");
    const read = readAll(path);
    deepStrictEqual(read, { blocks: [], messages: [], corrupt: false });
  });
});

Deno.test("folders larger than the buffers, and thousands of them, come back whole", async () => {
  const names = (count: number, stem: string) =>
    Array.from({ length: count }, (_, i) => `${stem}-${String(i).padStart(6, "0")}`);
  const big = names(25_000, "a long file name that makes this one folder over a mebibyte")
    .map((name, i) => file(name, side({ ino: i, hash: i % 2 ? HASH_A : HASH_B }), side()));
  const blocks: RecordBlock[] = [{ folder: "", rows: big }];
  for (const folder of names(3000, "folder")) {
    blocks.push({ folder, rows: [file("only", side({ ino: blocks.length }))] });
  }
  await withTemp((temp) => {
    const path = `${temp}/record3`;
    writeRecord(path, blocks);
    const [first, second] = blockBoundaries(Deno.readFileSync(path));
    ok(second! - first! > 1 << 20, "the first folder alone is more than a buffer");
    const read = readAll(path);
    deepStrictEqual(read.messages, []);
    assertBlocks(read.blocks, blocks);
  });
});

Deno.test("recordSourceFromV2() yields the rows a written record gives back, in walk order", async () => {
  const a = side({ ino: 1 });
  const b = side({ ino: 2, hash: HASH_B });
  const record: FileRecord = {
    replica: new Map([
      ["z/deep/file", a],
      ["a-/y", a],
      ["both", a],
      ["a/🎉", a],
      ["replica only", b],
      ["../outside", a],
      ["a//empty part", a],
    ]),
    source: new Map([["a/\uFFFD", b], ["both", b], ["a/é", a], ["source only", a], ["a/x", b]]),
  };
  const expected: RecordBlock[] = [
    {
      folder: "",
      rows: [file("both", b, a), file("replica only", undefined, b), file("source only", a)],
    },
    {
      folder: "a",
      rows: [file("x", b), file("é", a), file("\uFFFD", b), file("🎉", undefined, a)],
    },
    { folder: "a-", rows: [file("y", undefined, a)] },
    { folder: "z/deep", rows: [file("file", undefined, a)] },
  ];
  const fromV2 = [...recordSourceFromV2(record).blocks()];
  assertBlocks(storedBlocks(fromV2), expected);
  deepStrictEqual([...recordSourceFromV2(record).rowsOf("a").keys()], ["x", "é", "\uFFFD", "🎉"]);
  await withTemp((temp) => {
    const path = `${temp}/record3`;
    writeRecord(path, fromV2);
    assertBlocks(readAll(path).blocks, expected);
  });
});
