/**
 * Tests for the read side of a remote tree: the payloads of `wire.ts` round trip, and a server
 * (`server.ts`) and a client (`client.ts`) joined by in-memory streams, a pipe to a subprocess
 * and the test sshd, read a real temporary tree exactly as the local reader does; a hostile
 * peer gets an Error frame and the session ends without a crash.
 */

import assert from "node:assert/strict";
import { type Entry, type FolderListing } from "../scan.ts";
import {
  type FolderSource,
  type HashOutcome,
  type TreeReader,
  type TreeWalk,
} from "../sides/reader.ts";
import { localTree } from "../sides/local/tree.ts";
import { WorkerPool } from "../sides/local/workers.ts";
import { withTemp, writeTree } from "../test_helpers.ts";
import { connectRemoteTree, MAX_HASHES, RemoteError, type RemoteTreeReader } from "./client.ts";
import {
  encodeFrame,
  encodeHello,
  ErrorKind,
  FrameError,
  FrameType,
  HEADER_BYTES,
  PROTOCOL_VERSIONS,
} from "./frames.ts";
import { MAX_RUNNING, serve, type ServeOutcome } from "./server.ts";
import { sshdUnavailable, startSshd } from "./test_sshd.ts";
import {
  decodeHashBatch,
  decodeListingBatch,
  decodeWalk,
  encodeHashBatch,
  encodeOpen,
  encodeStat,
  encodeWalk,
  ListingBatcher,
  readEntry,
  WireReader,
  WireWriter,
  writeEntry,
} from "./wire.ts";

const WHOLE: TreeWalk = { starts: [""], filters: [], avoid: [] };

function entry(fields: Partial<Entry> = {}): Entry {
  return {
    kind: "file",
    size: 12,
    mtimeMs: 1_700_000_000_123,
    ctimeMs: 1_700_000_000_000,
    ino: 42,
    dev: 2049,
    mode: 0o644,
    uid: 1000,
    gid: 1000,
    nlink: 1,
    ...fields,
  };
}

/** Every folder of a walk, whole. */
async function listingsOf(source: FolderSource): Promise<FolderListing[]> {
  try {
    const listings: FolderListing[] = [];
    for (let listing = await source.next(); listing; listing = await source.next()) {
      listings.push(listing);
    }
    return listings;
  } finally {
    source.close();
  }
}

Deno.test("wire: entries round trip, negative times, 60-bit inodes, links and hard links", () => {
  const entries = [
    entry(),
    entry({ kind: "dir", size: 0, mtimeMs: -86_400_000, ctimeMs: -1 }),
    entry({ kind: "symlink", target: "../elsewhere/ü", ino: 2 ** 60 + 2 ** 12 }),
    entry({ kind: "special", nlink: 3, uid: 4_294_967_294, mode: 0o7777 }),
  ];
  const writer = new WireWriter();
  for (const one of entries) writeEntry(writer, one);
  const reader = new WireReader(writer.finish());
  assert.deepEqual(entries.map(() => readEntry(reader)), entries);
  reader.done();
  // A file entry is compact: a byte of bits and varints.
  const one = new WireWriter();
  writeEntry(one, entry());
  assert.ok(one.length <= 24, `${one.length} bytes`);
});

Deno.test("wire: a malformed number, a count past the payload and a string too long are refused", () => {
  const tooLong = new Uint8Array(11).fill(0x80);
  assert.throws(() => new WireReader(tooLong).varint(), FrameError);
  assert.throws(() => new WireReader(new WireWriter().varint(1000).finish()).count(), FrameError);
  const long = new WireWriter().string("x".repeat(300)).finish();
  assert.throws(() => new WireReader(long).string(255), FrameError);
  assert.throws(() => new WireReader(new Uint8Array([5, 1])).string(), FrameError);
});

Deno.test("wire: a walk request round trips, and its paths are checked", () => {
  const walk: TreeWalk = {
    starts: ["a", "b/c"],
    filters: [{ kind: "include", pattern: "*.c" }, { kind: "exclude", pattern: "*" }],
    avoid: [{ dev: 2049, ino: 2 ** 40 }],
    probe: true,
    renames: new Map([["old", "new"]]),
  };
  assert.deepEqual(decodeWalk(encodeWalk(walk)), walk);
  assert.throws(() => decodeWalk(encodeWalk({ ...WHOLE, starts: ["../etc"] })), FrameError);
  assert.throws(() => decodeWalk(encodeWalk({ ...WHOLE, starts: ["/etc"] })), FrameError);
});

Deno.test("wire: a folder larger than a batch is cut into parts that join back, problems and skipped files too", () => {
  const big: FolderListing = {
    folder: "big",
    entries: new Map(Array.from({ length: 500 }, (_, i) => [`name-${i}`, entry({ ino: i })])),
    problems: Array.from({ length: 200 }, (_, i) => ({ path: `big/bad${i}`, message: "denied" })),
    protectedPaths: Array.from({ length: 200 }, (_, i) => `big/bad${i}`),
    nested: "big/mount",
  };
  const skipped = Array.from({ length: 200 }, (_, i) => ({ path: `fifo${i}`, message: "a fifo" }));
  const batcher = new ListingBatcher(1000);
  const payloads = batcher.note({ start: entry({ kind: "dir" }), probed: null, skipped });
  payloads.push(...batcher.add(big));
  payloads.push(batcher.take());
  assert.ok(payloads.length > 10);
  assert.ok(payloads.every((payload) => payload.length < 1100));
  const batches = payloads.map(decodeListingBatch);
  assert.deepEqual(batches[0]!.start, entry({ kind: "dir" }));
  assert.equal(batches[0]!.probed, null);
  assert.deepEqual(batches.flatMap((batch) => batch.skipped), skipped);
  const parts = batches.flatMap((batch) => batch.parts);
  assert.deepEqual(parts.map((part) => part.continues), parts.map((_, i) => i < parts.length - 1));
  const joined: FolderListing = {
    folder: "big",
    entries: new Map(),
    problems: [],
    protectedPaths: [],
  };
  for (const { listing } of parts) {
    for (const [name, one] of listing.entries) joined.entries.set(name, one);
    joined.problems.push(...listing.problems);
    joined.protectedPaths.push(...listing.protectedPaths);
    if (listing.nested !== undefined) joined.nested = listing.nested;
  }
  assert.deepEqual(joined, big);
});

Deno.test("wire: hash outcomes round trip", () => {
  const batch = {
    bytes: 30,
    outcomes: [
      ["a", {
        result: {
          hash: "ab".repeat(32),
          signature: { size: 30, mtimeMs: 5, ctimeMs: 4, ino: 3 },
          hashedAtMs: 6,
        },
      }],
      ["b", { result: null }],
      ["c", { error: "permission denied" }],
    ] as Array<[string, never]>,
  };
  assert.deepEqual(decodeHashBatch(encodeHashBatch(batch)), batch);
});

/** A server and a client joined by in-memory streams, over the tree at `path`. */
async function withSession(
  path: string,
  fn: (client: RemoteTreeReader, pool: WorkerPool) => Promise<void>,
  options: { root?: string; batchBytes?: number } = {},
): Promise<ServeOutcome> {
  const toServer = new TransformStream<Uint8Array, Uint8Array>();
  const toClient = new TransformStream<Uint8Array, Uint8Array>();
  const pool = new WorkerPool(2);
  try {
    const served = serve({
      input: toServer.readable,
      output: toClient.writable,
      readTree: (root) => localTree(root, { pool }),
      ...options,
    });
    try {
      const client = await connectRemoteTree({
        input: toClient.readable,
        output: toServer.writable,
        path,
      });
      try {
        await fn(client, pool);
      } finally {
        await client.close();
      }
    } catch (error) {
      await toServer.writable.close().catch(() => {});
      await served;
      throw error;
    }
    return await served;
  } finally {
    pool.close();
  }
}

function sampleTree(dir: string): string {
  const root = `${dir}/t`;
  writeTree(root, {
    "a.txt": "one",
    b: { c: { "deep.bin": "x".repeat(5000) }, "keep.c": "int x;", "skip.o": "obj" },
    old: { sub: { f: "1" } },
    link: { link: "a.txt" },
    ".treesync": { record: "" },
  });
  for (let i = 0; i < 300; i++) Deno.writeTextFileSync(`${root}/b/many-${i}`, `${i}`);
  return root;
}

const WALKS: Array<[string, TreeWalk]> = [
  ["the whole tree", WHOLE],
  ["with excludes", { ...WHOLE, filters: [{ kind: "exclude", pattern: "*.o" }] }],
  ["several starts, one renamed", {
    starts: ["old", "b/c"],
    filters: [],
    avoid: [],
    renames: new Map([["old", "a"]]),
  }],
];

Deno.test("RemoteTreeReader.walk() hands over what the local walk does, in its order", async () => {
  await withTemp(async (dir) => {
    const root = sampleTree(dir);
    // A special file: skipped, and said so, by both walks.
    const fifo = new Deno.Command("mkfifo", { args: [`${root}/b/pipe`] }).outputSync();
    assert.equal(fifo.code, 0);
    const pool = new WorkerPool(1);
    const local = localTree(root, { pool });
    try {
      // Tiny batches: folders are cut and the walk waits for credit many times.
      const outcome = await withSession(root, async (client) => {
        for (const [what, walk] of WALKS) {
          const expected = local.walk(walk);
          const listings = await listingsOf(expected);
          const remote = client.walk(walk);
          assert.deepEqual(await listingsOf(remote), listings, what);
          assert.deepEqual(remote.start, expected.start, what);
          assert.deepEqual(remote.skipped, expected.skipped, what);
          if (walk === WHOLE) assert.equal(remote.skipped.length, 1);
        }
        const probing = client.walk({ ...WHOLE, avoid: [client.openedIdentity()!], probe: true });
        assert.equal(await probing.probed(), null);
        probing.close();
      }, { batchBytes: 500 });
      assert.deepEqual(outcome, {});
    } finally {
      pool.close();
    }
  });
});

Deno.test("RemoteTreeReader.walk() closed early cancels the walk; stats go on meanwhile", async () => {
  await withTemp(async (dir) => {
    const root = sampleTree(dir);
    const outcome = await withSession(root, async (client) => {
      const walk = client.walk(WHOLE);
      const first = await walk.peek();
      assert.equal(first?.folder, "");
      // The walk is held back by its credit, yet a stat is answered.
      assert.equal((await client.entryAt("a.txt"))?.size, 3);
      walk.close();
      assert.equal(await walk.next(), null);
      assert.equal((await listingsOf(client.walk(null))).length, 0);
    }, { batchBytes: 200 });
    assert.deepEqual(outcome, {});
  });
});

Deno.test("RemoteTreeReader.entryAt() and identity(): the root, a link, nothing", async () => {
  await withTemp(async (dir) => {
    const root = sampleTree(dir);
    const pool = new WorkerPool(1);
    const local = localTree(root, { pool });
    try {
      await withSession(root, async (client) => {
        assert.deepEqual(client.openedIdentity(), await local.identity());
        assert.deepEqual(await client.entryAt(""), await local.entryAt(""));
        assert.deepEqual(await client.identity(), await local.identity());
        const link = await client.entryAt("link");
        assert.equal(link?.kind, "symlink");
        assert.equal(link?.target, "a.txt");
        assert.deepEqual(await client.entryAt("link"), await local.entryAt("link"));
        assert.equal(await client.entryAt("missing"), null);
        assert.equal(await client.entryAt("a.txt/below"), null);
        assert.equal(await client.entryAt("missing"), null);
        assert.equal(client.fileSource().kind, "stream");
      });
    } finally {
      pool.close();
    }
  });
});

Deno.test("RemoteTreeReader.hash() equals the local hash, progress included", async () => {
  await withTemp(async (dir) => {
    const root = sampleTree(dir);
    const files = [
      { path: "a.txt", size: 3 },
      { path: "b/c/deep.bin", size: 5000 },
      { path: "missing", size: 1 },
      ...Array.from({ length: 300 }, (_, i) => ({ path: `b/many-${i}`, size: `${i}`.length })),
    ];
    const pool = new WorkerPool(1);
    try {
      const expected = await localTree(root, { pool }).hash(files);
      await withSession(root, async (client) => {
        let counted = 0;
        let bytes = 0;
        const hashed = await client.hash(files, (n, b) => {
          counted += n;
          bytes += b;
        });
        // The same hashes and signatures; when each read began differs, of course.
        const timeless = (outcomes: Map<string, HashOutcome>) =>
          [...outcomes].sort().map(([path, outcome]) =>
            "result" in outcome && outcome.result !== null
              ? [path, { ...outcome.result, hashedAtMs: 0 }]
              : [path, outcome]
          );
        assert.deepEqual(timeless(hashed), timeless(expected));
        assert.equal(counted, files.length);
        assert.equal(bytes, files.reduce((sum, file) => sum + file.size, 0));
        assert.deepEqual(await client.hash([]), new Map());
      });
    } finally {
      pool.close();
    }
  });
});

Deno.test("serve() with a root refuses a tree outside it, a '..' and a path through a link", async () => {
  await withTemp(async (dir) => {
    writeTree(dir, {
      served: { t: { f: "1" }, out: { link: `${dir}/secret` } },
      secret: { passwd: "x" },
    });
    Deno.symlinkSync(`${dir}/secret`, `${dir}/served/t/escape`);
    const root = `${dir}/served`;
    for (const path of [`${dir}/secret`, `${dir}/served/out`, `${root}/../secret`, "served/t"]) {
      await assert.rejects(
        withSession(path, () => Promise.resolve(), { root }),
        (error: Error) => error instanceof RemoteError && error.kind === ErrorKind.Refused,
        path,
      );
    }
    await withSession(`${root}/t`, async (client) => {
      for (const path of ["..", "../secret", "/etc", "escape/passwd", "a\0b"]) {
        await assert.rejects(
          client.entryAt(path),
          (error: Error) => error instanceof RemoteError && error.kind === ErrorKind.Refused,
          path,
        );
      }
      await assert.rejects(client.hash([{ path: "escape/passwd", size: 1 }]), /is a link/);
      await assert.rejects(listingsOf(client.walk({ ...WHOLE, starts: ["escape/x"] })), /link/);
      // The link itself is an entry of the tree, read, not followed.
      assert.equal((await client.entryAt("escape"))?.kind, "symlink");
    }, { root });
  });
});

/** The frames in what a server wrote (which may start with an Error, not a Hello). */
function framesIn(bytes: Uint8Array): Array<{ type: number; id: number; payload: Uint8Array }> {
  const frames = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = 0; at + HEADER_BYTES <= bytes.length;) {
    const length = view.getUint32(at + 6);
    frames.push({
      type: view.getUint8(at),
      id: view.getUint32(at + 2),
      payload: bytes.subarray(at + HEADER_BYTES, at + HEADER_BYTES + length),
    });
    at += HEADER_BYTES + length;
  }
  return frames;
}

const HELLO = encodeFrame({
  type: FrameType.Hello,
  flags: 0,
  id: 0,
  payload: encodeHello({ ...PROTOCOL_VERSIONS, program: "test", features: [] }),
});

/** Feeds `bytes` to a server (the stream left open), and collects all it answers. */
async function hostile(
  bytes: Uint8Array[],
  options: { batchBytes?: number } = {},
): Promise<{ outcome: ServeOutcome; frames: number[] }> {
  const toServer = new TransformStream<Uint8Array, Uint8Array>();
  const answers = new Response(
    new ReadableStream<Uint8Array>({
      start: (controller) => {
        const pool = new WorkerPool(1);
        const writer = toServer.writable.getWriter();
        for (const chunk of bytes) writer.write(chunk).catch(() => {});
        serve({
          input: toServer.readable,
          output: new WritableStream({ write: (chunk) => controller.enqueue(chunk) }),
          readTree: (root) => localTree(root, { pool }),
          ...options,
        }).then((outcome) => {
          pool.close();
          controller.enqueue(new TextEncoder().encode(JSON.stringify(outcome)));
          controller.close();
        });
      },
    }),
  );
  const all = new Uint8Array(await answers.arrayBuffer());
  const end = all.lastIndexOf("{".charCodeAt(0));
  const outcome = JSON.parse(new TextDecoder().decode(all.subarray(end))) as ServeOutcome;
  return { outcome, frames: framesIn(all.subarray(0, end)).map((frame) => frame.type) };
}

function header(type: number, id: number, length: number): Uint8Array {
  const bytes = new Uint8Array(HEADER_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, type);
  view.setUint32(2, id);
  view.setUint32(6, length);
  return bytes;
}

Deno.test("serve() answers a hostile peer with one Error and ends cleanly", async () => {
  const stat = encodeFrame({ type: FrameType.Stat, flags: 0, id: 1, payload: encodeStat("") });
  const cases: Array<[string, Uint8Array[], number[], RegExp]> = [
    ["garbage", [new TextEncoder().encode("Welcome to the host!\n")], [3], /did not greet/],
    ["a request before Hello", [stat], [3], /did not greet/],
    ["a huge length", [HELLO, header(FrameType.Walk, 1, 0x7fffffff)], [1, 3], /announces/],
    ["an unknown type", [HELLO, header(0x7f, 1, 0)], [1, 3], /Unknown frame type/],
    ["a server's frame", [HELLO, header(FrameType.Listing, 1, 0)], [1, 3], /not expected/],
    ["a request before Open", [HELLO, stat], [1, 3], /before Open/],
    ["a second Hello", [HELLO, HELLO], [1, 3], /second Hello/],
    ["a bad Hello", [encodeFrame({ type: 1, flags: 0, id: 0, payload: new Uint8Array(3) })], [
      3,
    ], /greeting/],
  ];
  for (const [what, bytes, frames, message] of cases) {
    const result = await hostile(bytes);
    assert.deepEqual(result.frames, frames, what);
    assert.match(result.outcome.error ?? "", message, what);
  }
});

Deno.test("a subprocess serves a tree over a pipe", async () => {
  await withTemp(async (dir) => {
    const root = sampleTree(dir);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", new URL("./serve_main.ts", import.meta.url).pathname],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const pool = new WorkerPool(1);
    try {
      const client = await connectRemoteTree({
        input: child.stdout,
        output: child.stdin,
        path: root,
        peer: "the subprocess",
      }).catch((error) => {
        killQuietly(child);
        throw error;
      });
      const local = localTree(root, { pool });
      assert.deepEqual(await listingsOf(client.walk(WHOLE)), await listingsOf(local.walk(WHOLE)));
      const files = [{ path: "a.txt", size: 3 }];
      const [remoteHash, localHash] = [await client.hash(files), await local.hash(files)];
      assert.equal(remoteHash.size, 1);
      assert.deepEqual(
        (remoteHash.get("a.txt") as { result: { hash: string } }).result.hash,
        (localHash.get("a.txt") as { result: { hash: string } }).result.hash,
      );
      await client.close();
      const status = await child.status;
      const stderr = new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
      assert.equal(status.code, 0, stderr);
    } finally {
      pool.close();
    }
  });
});

/** Ends a child that may have exited already. */
function killQuietly(child: Deno.ChildProcess): void {
  try {
    child.kill();
  } catch {
    // It exited.
  }
}

const noSshd = sshdUnavailable();

Deno.test({
  name: "a tree is read over ssh from the test sshd",
  ignore: noSshd !== null,
  fn: async () => {
    await withTemp(async (dir) => {
      const root = sampleTree(dir);
      const sshd = await startSshd();
      const pool = new WorkerPool(1);
      try {
        const serveMain = new URL("./serve_main.ts", import.meta.url).pathname;
        const child = new Deno.Command(sshd.rsh[0]!, {
          args: [
            ...sshd.rsh.slice(1),
            sshd.host,
            `${Deno.execPath()} run --allow-read ${serveMain}`,
          ],
          stdin: "piped",
          stdout: "piped",
          stderr: "inherit",
        }).spawn();
        try {
          const client = await connectRemoteTree({
            input: child.stdout,
            output: child.stdin,
            path: root,
            peer: sshd.host,
          });
          const local = localTree(root, { pool });
          const expected = await listingsOf(local.walk(WHOLE));
          assert.deepEqual(await listingsOf(client.walk(WHOLE)), expected);
          await client.close();
          assert.equal((await child.status).code, 0);
        } finally {
          // A failed test must not leave the session open: sshd would wait for it.
          killQuietly(child);
          await child.status;
        }
      } finally {
        pool.close();
        await sshd.stop();
      }
    });
  },
});

Deno.test("serve() refuses a peer that starts more walks than it may run at once", async () => {
  await withTemp(async (dir) => {
    const root = sampleTree(dir);
    const open = encodeFrame({
      type: FrameType.Open,
      flags: 0,
      id: 1,
      payload: encodeOpen({ path: root, role: "read" }),
    });
    // Tiny batches: every walk soon waits for credit that never comes, so they all stay running.
    const walks = Array.from(
      { length: MAX_RUNNING.walks + 1 },
      (_, i) =>
        encodeFrame({ type: FrameType.Walk, flags: 0, id: 2 + i, payload: encodeWalk(WHOLE) }),
    );
    const result = await hostile([HELLO, open, ...walks], { batchBytes: 200 });
    assert.match(result.outcome.error ?? "", /Too many requests/);
    assert.equal(result.frames.at(-1), FrameType.Error);
  });
});

/** Calls `each` with every frame of a stream of whole frames, and passes the bytes on. */
function frameTap(each: (type: number, flags: number) => void) {
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      for (let at = 0; at < chunk.length; at += HEADER_BYTES + view.getUint32(at + 6)) {
        each(chunk[at]!, chunk[at + 1]!);
      }
      controller.enqueue(chunk);
    },
  });
}

Deno.test("a hash of a folder of many files runs at most MAX_HASHES requests at once", async () => {
  await withTemp(async (dir) => {
    // Names of 250 bytes: a Hash request holds ~2,000 of them, so 24,000 are a dozen requests.
    const files = Array.from({ length: 24_000 }, (_, i) => ({
      path: `${String(i).padStart(6, "0")}${"n".repeat(244)}`,
      size: 1,
    }));
    let running = 0;
    let most = 0;
    let requests = 0;
    const slow: Pick<TreeReader, "hash"> = {
      async hash(items) {
        await new Promise((go) => setTimeout(go, 5));
        return new Map(items.map((item) => [item.path, { error: "not here" }]));
      },
    };
    const toServer = frameTap((type) => {
      if (type !== FrameType.Hash) return;
      requests++;
      most = Math.max(most, ++running);
    });
    const toClient = frameTap((type, flags) => {
      if (type === FrameType.HashResult && (flags & 1) === 0) running--;
    });
    const pool = new WorkerPool(1);
    const served = serve({
      input: toServer.readable,
      output: toClient.writable,
      readTree: (root) => Object.assign(localTree(root, { pool }), slow),
    });
    const client = await connectRemoteTree({
      input: toClient.readable,
      output: toServer.writable,
      path: dir,
    });
    const outcomes = await client.hash(files);
    await client.close();
    assert.deepEqual(await served, {});
    pool.close();
    assert.equal(outcomes.size, files.length);
    assert.ok(requests > MAX_HASHES, `${requests} Hash requests`);
    assert.ok(most <= MAX_HASHES, `${most} at once`);
  });
});
