/**
 * The session's writing end and its listings on the wire: frames queued during a write leave
 * together, in order; a walk's listings are compressed only for a client that offers it, and a
 * compressed listing that would unpack past a frame's limit is refused.
 */

import assert from "node:assert/strict";
import * as zlib from "node:zlib";
import { type FolderListing } from "../scan.ts";
import { type TreeWalk } from "../sides/reader.ts";
import { localTree } from "../sides/local/tree.ts";
import { WorkerPool } from "../sides/local/workers.ts";
import { withTemp, writeTree } from "../test_helpers.ts";
import { connectRemoteTree } from "./client.ts";
import {
  encodeFrame,
  encodeHello,
  type Frame,
  FrameDecoder,
  FrameFlag,
  FrameType,
  FROM_CLIENT,
  FROM_SERVER,
  LISTING_FEATURE,
  MAX_PAYLOAD,
  PROTOCOL_VERSIONS,
} from "./frames.ts";
import { FrameOutbox, GATHER_BYTES } from "./outbox.ts";
import { decompressChunk } from "./pace.ts";
import { serve } from "./server.ts";
import {
  decodeListingBatch,
  encodeOpen,
  encodeOpened,
  encodeWalk,
  ListingBatcher,
  WALK_CREDIT,
} from "./wire.ts";

/** A stream that keeps every write, each held until `release` is called for it. */
function heldStream() {
  const writes: Uint8Array[] = [];
  const pending: Array<() => void> = [];
  let fail: Error | null = null;
  const stream = new WritableStream<Uint8Array>({
    write(chunk) {
      if (fail) throw fail;
      writes.push(chunk.slice());
      return new Promise<void>((go) => pending.push(go));
    },
  });
  return {
    writes,
    stream,
    /** Lets the oldest write held finish. */
    release: () => pending.shift()?.(),
    /** Makes every later write fail. */
    breakWith: (error: Error) => fail = error,
    held: () => pending.length,
  };
}

/** Waits (a turn of the event loop at a time) until `done` holds. */
async function until(done: () => boolean): Promise<void> {
  for (let turn = 0; !done(); turn++) {
    if (turn > 1000) throw new Error("the condition never held");
    await new Promise((go) => setTimeout(go, 0));
  }
}

Deno.test("FrameOutbox sends the first frame at once and gathers the ones queued meanwhile", async () => {
  const held = heldStream();
  const outbox = new FrameOutbox(held.stream.getWriter());
  const settled: number[] = [];
  const sends = [1, 2, 3, 4].map((n) =>
    outbox.write(new Uint8Array([n, n])).then(() => settled.push(n))
  );
  await until(() => held.held() === 1);
  assert.deepEqual(held.writes, [new Uint8Array([1, 1])]);
  assert.deepEqual(settled, [], "a frame's promise waits for its write");
  held.release();
  await until(() => held.held() === 1 && held.writes.length === 2);
  assert.deepEqual(settled, [1]);
  assert.deepEqual(held.writes[1], new Uint8Array([2, 2, 3, 3, 4, 4]), "in order, in one write");
  held.release();
  await Promise.all(sends);
  assert.deepEqual(settled, [1, 2, 3, 4]);
  const drained = outbox.release();
  await drained;
  // The lock is given back: another writer may take the stream.
  held.stream.getWriter().releaseLock();
});

Deno.test("FrameOutbox writes a frame larger than a gathering alone, and fails every frame after a failed write", async () => {
  const held = heldStream();
  const outbox = new FrameOutbox(held.stream.getWriter());
  const first = outbox.write(new Uint8Array(10));
  const big = outbox.write(new Uint8Array(GATHER_BYTES));
  const small = outbox.write(new Uint8Array(3));
  await until(() => held.held() === 1);
  held.release();
  await first;
  await until(() => held.writes.length === 2);
  assert.equal(held.writes[1]!.length, GATHER_BYTES, "the big frame goes alone");
  held.breakWith(new Error("pipe gone"));
  held.release();
  await big;
  await assert.rejects(small, /pipe gone/);
  await assert.rejects(outbox.write(new Uint8Array(1)), /pipe gone/);
  await outbox.drained();
});

/** A tree whose one folder lists a few hundred long, alike names: a listing that packs well. */
function namesTree(dir: string): string {
  const root = `${dir}/t`;
  writeTree(root, { folder: {} });
  for (let i = 0; i < 400; i++) {
    Deno.writeTextFileSync(`${root}/folder/a-rather-long-file-name-of-a-report-${i}.txt`, "x");
  }
  return root;
}

const WHOLE: TreeWalk = { starts: [""], filters: [], avoid: [] };

/**
 * Greets a server with `features`, opens `root`, walks it whole, and returns the frames of
 * the walk (id 2) as they came, and the folders they unpack to.
 */
async function rawWalk(root: string, features: string[]) {
  const toServer = new TransformStream<Uint8Array, Uint8Array>();
  const toClient = new TransformStream<Uint8Array, Uint8Array>();
  const pool = new WorkerPool(1);
  const served = serve({
    input: toServer.readable,
    output: toClient.writable,
    readTree: (path) => localTree(path, { pool }),
  });
  const writer = toServer.writable.getWriter();
  const hello = encodeHello({ ...PROTOCOL_VERSIONS, program: "test", features });
  const frames = [
    { type: FrameType.Hello, flags: 0, id: 0, payload: hello },
    { type: FrameType.Open, flags: 0, id: 1, payload: encodeOpen({ path: root, role: "read" }) },
    { type: FrameType.Walk, flags: 0, id: 2, payload: encodeWalk(WHOLE) },
  ];
  // Not awaited: the server answers each before it reads the next, and is read only below.
  for (const frame of frames) writer.write(encodeFrame(frame)).catch(() => {});
  const decoder = new FrameDecoder({ accept: FROM_SERVER });
  const walked: Frame[] = [];
  const reader = toClient.readable.getReader();
  while (!walked.some((frame) => frame.type === FrameType.WalkEnd)) {
    const { value, done } = await reader.read();
    if (done) break;
    walked.push(...decoder.push(value).filter((frame) => frame.id === 2));
  }
  // Read no more (the server's last frames need no reader), then end the session.
  await reader.cancel().catch(() => {});
  await writer.close();
  await served;
  pool.close();
  const folders: FolderListing[] = walked.flatMap((frame) => {
    const packed = (frame.flags & FrameFlag.Compressed) !== 0;
    const payload = packed ? decompressChunk(frame.payload, MAX_PAYLOAD) : frame.payload;
    return decodeListingBatch(payload).parts.map((part) => part.listing);
  });
  return { frames: walked, folders };
}

Deno.test("a walk's listings go compressed to a client that offers it, plain to one that does not", async () => {
  await withTemp(async (dir) => {
    const root = namesTree(dir);
    const plain = await rawWalk(root, []);
    const packed = await rawWalk(root, [LISTING_FEATURE]);
    assert.ok(plain.frames.every((frame) => (frame.flags & FrameFlag.Compressed) === 0));
    assert.ok(packed.frames.some((frame) => (frame.flags & FrameFlag.Compressed) !== 0));
    const bytes = (frames: Frame[]) => frames.reduce((sum, frame) => sum + frame.payload.length, 0);
    assert.ok(
      bytes(packed.frames) * 3 < bytes(plain.frames),
      `${bytes(packed.frames)} bytes packed, ${bytes(plain.frames)} plain`,
    );
    assert.deepEqual(packed.folders, plain.folders);
    assert.equal(plain.folders.reduce((sum, folder) => sum + folder.entries.size, 0), 401);
  });
});

/**
 * A fake server over in-memory streams: greets, opens any tree, answers End, and answers a
 * walk with the frames `onWalk` gives for its id. Returns a client's tree and the fake's end.
 */
async function fakeServer(onWalk: (id: number) => Frame[]) {
  const toServer = new TransformStream<Uint8Array, Uint8Array>();
  const toClient = new TransformStream<Uint8Array, Uint8Array>();
  const fake = (async () => {
    const decoder = new FrameDecoder({ accept: FROM_CLIENT });
    const writer = toClient.writable.getWriter();
    const hello = encodeHello({ ...PROTOCOL_VERSIONS, program: "fake", features: [] });
    const reader = toServer.readable.getReader();
    const answer = (frame: Frame) => writer.write(encodeFrame(frame)).catch(() => {});
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      for (const frame of decoder.push(value)) {
        if (frame.type === FrameType.Hello) {
          await answer({ type: FrameType.Hello, flags: 0, id: 0, payload: hello });
        } else if (frame.type === FrameType.Open) {
          const payload = encodeOpened({ dev: 1, ino: 2 });
          await answer({ type: FrameType.Ok, flags: 0, id: frame.id, payload });
        } else if (frame.type === FrameType.Walk) {
          // In one write: the client takes them all before it reads (and grants) any.
          const bytes = onWalk(frame.id).map((sent) => [...encodeFrame(sent)]).flat();
          await writer.write(new Uint8Array(bytes)).catch(() => {});
        } else if (frame.type === FrameType.End) {
          await answer({ ...frame, payload: new Uint8Array() });
        }
      }
    }
    await writer.close().catch(() => {});
  })();
  const tree = await connectRemoteTree({
    input: toClient.readable,
    output: toServer.writable,
    path: "/t",
  });
  return { tree, fake };
}

Deno.test("a client refuses a compressed listing that would unpack past a frame's limit", async () => {
  // A bomb of zeros.
  const payload = zlib.zstdCompressSync(new Uint8Array(MAX_PAYLOAD + 1));
  const { tree, fake } = await fakeServer((id) => [
    { type: FrameType.WalkEnd, flags: FrameFlag.Compressed, id, payload },
  ]);
  const walk = tree.walk(WHOLE);
  await assert.rejects(walk.next(), /compressed listing does not unpack/);
  walk.close();
  await tree.close();
  await fake;
});

Deno.test("a client refuses a walk that sends more listings than its credit", async () => {
  const batcher = new ListingBatcher();
  batcher.add({ folder: "", entries: new Map(), problems: [], protectedPaths: [] });
  const empty = batcher.take();
  const { tree, fake } = await fakeServer((id) =>
    Array.from({ length: WALK_CREDIT + 1 }, () => ({
      type: FrameType.Listing,
      flags: FrameFlag.More,
      id,
      payload: empty,
    }))
  );
  const walk = tree.walk(WHOLE);
  // The listings within the credit may come first; the one past it ends the walk.
  let failure: unknown = null;
  for (let i = 0; i <= WALK_CREDIT + 1 && failure === null; i++) {
    await walk.next().catch((error) => failure = error);
  }
  assert.match(String(failure), /more than its credit/);
  walk.close();
  await tree.close();
  await fake;
});
