/**
 * Tests for a replica's own files on another host (`store.ts`), read-only for a restore: a
 * server and a client joined by in-memory streams and by a pipe to `serve_main.ts` answer as the
 * local store does over real replicas made by the CLI; a store that is not ours, a lock held by
 * another run and a damaged record give the local store's errors; nothing can be written.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { UsageError } from "../errors.ts";
import { type RecordBlock, type RecordSource } from "../recordfile.ts";
import { LockHeldError, metaPaths } from "../sides/local/meta.ts";
import { openRecord, recordFromBytes } from "../sides/local/recordfiles.ts";
import { LocalReplicaStore } from "../sides/local/store.ts";
import { type ReplicaLock, type ReplicaStore } from "../sides/writer.ts";
import { localTree } from "../sides/local/tree.ts";
import { WorkerPool } from "../sides/local/workers.ts";
import { compareWalkOrder } from "../order.ts";
import {
  assertExit,
  cli,
  vouch,
  withTemp,
  writeLegacyRecord,
  writeRecord,
  writeTree,
} from "../test_helpers.ts";
import { Connection, RemoteError, type RemoteTreeReader } from "./client.ts";
import {
  DATA_CHUNK,
  encodeFrame,
  encodeHello,
  ErrorKind,
  type Frame,
  FrameDecoder,
  FrameError,
  FrameFlag,
  FrameType,
  FROM_CLIENT,
  PROTOCOL_VERSIONS,
} from "./frames.ts";
import { serve, type ServeOutcome } from "./server.ts";
import {
  checkRestoreFromRemote,
  connectRemoteReplica,
  MAX_HELD_RECORD_BYTES,
  openRemoteStore,
  type RemoteReplicaStore,
} from "./store.ts";
import {
  decodeStoreEnd,
  decodeStoreSnapshot,
  encodeStoreEnd,
  encodeStoreSnapshot,
  type StoreSnapshot,
} from "./storewire.ts";
import { encodeOpen, encodeOpened } from "./wire.ts";

/** A server and a client joined by in-memory streams, over the replica at `path`. */
async function withStore(
  path: string,
  fn: (store: RemoteReplicaStore, tree: RemoteTreeReader) => Promise<void> | void,
  options: { serveStores?: boolean } = {},
): Promise<ServeOutcome> {
  const toServer = new TransformStream<Uint8Array, Uint8Array>();
  const toClient = new TransformStream<Uint8Array, Uint8Array>();
  const pool = new WorkerPool(1);
  try {
    const served = serve({
      input: toServer.readable,
      output: toClient.writable,
      readTree: (root) => localTree(root, { pool }),
      ...(options.serveStores === false
        ? {}
        : { openStore: (root) => new LocalReplicaStore(root) }),
    });
    try {
      const { tree, store } = await connectRemoteReplica({
        input: toClient.readable,
        output: toServer.writable,
        path,
        display: `far:${path}`,
      });
      try {
        await fn(store, tree);
      } finally {
        await tree.close();
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

/** Every block of a record source, read to its end. */
function blocksOf(record: RecordSource): RecordBlock[] {
  try {
    return [...record.blocks()];
  } finally {
    record.close();
  }
}

/** A source tree mirrored into a replica by the real CLI: the replica's path. */
async function madeReplica(dir: string, files = 0): Promise<string> {
  writeTree(`${dir}/src`, { "a.txt": "one", b: { c: { "deep.bin": "x".repeat(5000) } } });
  for (let i = 0; i < files; i++) {
    if (i % 100 === 0) Deno.mkdirSync(`${dir}/src/many/f${i / 100}`, { recursive: true });
    Deno.writeTextFileSync(`${dir}/src/many/f${Math.floor(i / 100)}/file-${i}`, `${i}`);
  }
  assertExit(await cli([`${dir}/src`, `${dir}/dst`]), 0);
  return `${dir}/dst`;
}

/** Blocks of 40 folders of 200 files each, with hashes that do not compress: some 700 KB. */
function largeRecord(): RecordBlock[] {
  const hex = () =>
    Array.from(
      crypto.getRandomValues(new Uint8Array(32)),
      (byte) => byte.toString(16).padStart(2, "0"),
    )
      .join("");
  const entry = (ino: number) => ({
    size: ino * 3,
    mtimeMs: 1_700_000_000_000 + ino,
    ctimeMs: 1_700_000_000_000,
    ino,
    hash: hex(),
    hashedAtMs: 1_700_000_100_000,
  });
  const folders = Array.from({ length: 40 }, (_, i) => `d${String(i).padStart(2, "0")}`);
  return folders.sort(compareWalkOrder).map((folder, f) => ({
    folder,
    rows: Array.from({ length: 200 }, (_, i) => ({
      name: `file-${String(i).padStart(4, "0")}`,
      kind: "file" as const,
      source: entry(f * 1000 + i),
      replica: entry(f * 1000 + i + 500),
    })),
  }));
}

/** What a restore asks a store, in the order it asks; thrown errors as their name and message. */
function answersOf(store: LocalReplicaStore | RemoteReplicaStore): unknown[] {
  const ask = (call: () => unknown) => {
    try {
      return call();
    } catch (error) {
      return `${(error as Error).name}: ${(error as Error).message}`;
    }
  };
  return [
    ask(() => store.check()),
    ask(() => store.hasRecord()),
    ask(() => store.isAdopted()),
    ask(() => store.holdsEntries()),
  ];
}

Deno.test("store: the snapshot and its end round trip", () => {
  const snapshot: StoreSnapshot = {
    check: { value: true },
    lock: { thrown: { kind: "locked", message: "Cannot lock '/r': held" } },
    hasRecord: { value: true },
    isAdopted: { value: false },
    holdsEntries: { thrown: { kind: "failed", message: "permission denied" } },
    record: { format: 3, size: 2 ** 40 },
  };
  assert.deepEqual(decodeStoreSnapshot(encodeStoreSnapshot(snapshot)), snapshot);
  const thrown = { ...snapshot, record: { thrown: { kind: "usage", message: "a link" } } } as const;
  assert.deepEqual(decodeStoreSnapshot(encodeStoreSnapshot(thrown)), thrown);
  const end = { sha256: "ab".repeat(32), unreadable: "input/output error" };
  assert.deepEqual(decodeStoreEnd(encodeStoreEnd(end)), end);
  assert.deepEqual(decodeStoreEnd(encodeStoreEnd({ ...end, unreadable: null })), {
    ...end,
    unreadable: null,
  });
});

Deno.test("recordFromBytes() reads a record cut into any pieces as openRecord() reads the file", async () => {
  await withTemp(async (dir) => {
    const replica = await madeReplica(dir, 300);
    const path = metaPaths(replica).record;
    const bytes = Deno.readFileSync(path);
    const expected = blocksOf(openRecord(path, { onCorrupt: assert.fail })!);
    assert.ok(expected.length > 3);
    for (const size of [1, 7, 4096, bytes.length]) {
      const pieces: Uint8Array[] = [new Uint8Array(0)];
      for (let at = 0; at < bytes.length; at += size) pieces.push(bytes.slice(at, at + size));
      const record = recordFromBytes(pieces, { name: "far", onCorrupt: assert.fail });
      assert.equal(record.rowCount, expected.reduce((sum, block) => sum + block.rows.length, 0));
      assert.deepEqual(blocksOf(record), expected, `pieces of ${size} bytes`);
    }
  });
});

Deno.test("a remote store answers as the local one over a replica the CLI made, and holds its lock for the session", async () => {
  await withTemp(async (dir) => {
    const replica = await madeReplica(dir);
    const local = new LocalReplicaStore(replica);
    const localRows = blocksOf(local.openRecord(assert.fail));
    let ended: RemoteReplicaStore | null = null;
    const outcome = await withStore(replica, (store) => {
      ended = store;
      assert.equal(store.display, `far:${replica}`);
      assert.deepEqual(answersOf(store), answersOf(local));
      assert.deepEqual(answersOf(store), [undefined, true, true, true]);
      checkRestoreFromRemote(store);
      assert.deepEqual(blocksOf(store.openRecord(assert.fail)), localRows);
      // Read again, as a run reads it twice: the snapshot holds.
      assert.deepEqual(blocksOf(store.openRecord(assert.fail)), localRows);
      const lock = store.lock("read");
      assert.ok(lock !== null && lock.stillHeld());
      lock.announce();
      // The far end holds the replica's lock: no writing run can take it meanwhile.
      assert.throws(() => local.lock("existing"), LockHeldError);
      lock.release();
      assert.equal(lock.stillHeld(), false);
      assert.ok(store.lock("read")!.stillHeld());
    });
    assert.deepEqual(outcome, {});
    assert.throws(() => ended!.lock("read"), /the session with its host ended/);
    // The session is over: the far end let the lock go.
    const taken = local.lock("existing");
    assert.ok(taken !== null);
    taken.release();
  });
});

Deno.test("a remote store of a folder that is no replica has no record and no lock", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/plain`, { "file.txt": "data" });
    await withStore(`${dir}/plain`, (store) => {
      assert.deepEqual(answersOf(store), [undefined, false, false, true]);
      assert.throws(
        () => checkRestoreFromRemote(store),
        new UsageError(
          `Cannot restore from 'far:${dir}/plain': it is not a treesync replica (it has no ` +
            "record in .treesync/); copy what you need by hand",
        ),
      );
      assert.equal(store.lock("read"), null);
      const record = store.openRecord(assert.fail);
      assert.equal(record.rowCount, 0);
      assert.deepEqual(blocksOf(record), []);
    });
  });
});

Deno.test("a remote replica not adopted is refused for a restore, as a local one", async () => {
  await withTemp(async (dir) => {
    const replica = await madeReplica(dir);
    new LocalReplicaStore(replica).markUnadopted();
    await withStore(replica, (store) => {
      assert.deepEqual(answersOf(store), [undefined, true, false, true]);
      assert.throws(() => checkRestoreFromRemote(store), /it is not adopted yet/);
    });
  });
});

Deno.test("a remote store whose .treesync is a symlink is refused, naming it, and never read", async () => {
  await withTemp(async (dir) => {
    const replica = await madeReplica(dir);
    Deno.renameSync(`${replica}/.treesync`, `${dir}/elsewhere`);
    Deno.symlinkSync(`${dir}/elsewhere`, `${replica}/.treesync`);
    await withStore(replica, (store) => {
      assert.throws(
        () => store.check(),
        (error) =>
          error instanceof UsageError &&
          error.message.includes(`'${replica}/.treesync' is a symlink`),
      );
      // The local check throws the same; nothing else of a store not ours is answered here.
      const line = `UsageError: ${
        answersOf(new LocalReplicaStore(replica))[0]!.toString().replace(/^UsageError: /, "")
      }`;
      assert.deepEqual(answersOf(store), [line, line, line, line]);
      assert.throws(() => store.lock("read"), UsageError);
      assert.throws(() => store.openRecord(assert.fail), UsageError);
    });
  });
});

Deno.test("a remote store's lock held by another live run gives the lock message, and its record is not read", async () => {
  await withTemp(async (dir) => {
    const replica = await madeReplica(dir);
    const writer = new LocalReplicaStore(replica).lock("existing")!;
    try {
      await withStore(replica, (store) => {
        const held = (error: unknown) =>
          error instanceof LockHeldError &&
          error.message.startsWith(`Cannot lock '${replica}': another treesync run`);
        assert.throws(() => store.lock("read"), held);
        assert.throws(() => store.openRecord(assert.fail), held);
        // What needs no lock still answers, as on a local replica.
        assert.equal(store.hasRecord(), true);
        assert.equal(store.isAdopted(), true);
      });
    } finally {
      writer.release();
    }
  });
});

Deno.test("a remote store's damaged record is reported through onCorrupt, named as the user named it", async () => {
  await withTemp(async (dir) => {
    const replica = await madeReplica(dir);
    const path = metaPaths(replica).record;
    const bytes = Deno.readFileSync(path);
    bytes[bytes.length >> 1]! ^= 0xff;
    Deno.writeFileSync(path, bytes);
    const localHeard: string[] = [];
    const localRows = blocksOf(
      new LocalReplicaStore(replica).openRecord((m) => localHeard.push(m)),
    );
    await withStore(replica, (store) => {
      const heard: string[] = [];
      const record = store.openRecord((message) => heard.push(message));
      assert.deepEqual(blocksOf(record), localRows);
      assert.equal(record.corrupt, true);
      assert.equal(heard.length, 1);
      assert.match(heard[0]!, /is corrupt \(block \d+ fails its checksum\); rebuilding it$/);
      assert.deepEqual(
        heard,
        localHeard.map((line) => line.replace(`'${replica}`, `'far:${replica}`)),
      );
    });
  });
});

Deno.test("a remote store's version-2 record is read as the local store converts it", async () => {
  await withTemp(async (dir) => {
    const replica = `${dir}/old`;
    writeTree(replica, { "a.txt": "one" });
    const info = Deno.lstatSync(`${replica}/a.txt`);
    const entry = vouch(
      {
        kind: "file",
        size: 3,
        mtimeMs: info.mtime!.getTime(),
        ctimeMs: 0,
        ino: info.ino!,
        dev: info.dev,
        mode: 0o644,
        uid: 0,
        gid: 0,
        nlink: 1,
      },
      "7".repeat(64),
    );
    writeLegacyRecord(replica, {
      replica: new Map([["a.txt", entry], ["sub/b", entry]]),
      source: new Map([["a.txt", entry]]),
    });
    const local = new LocalReplicaStore(replica);
    const localRows = blocksOf(local.openRecord(assert.fail));
    assert.equal(localRows.length, 2);
    await withStore(replica, (store) => {
      assert.deepEqual(answersOf(store), answersOf(local));
      assert.deepEqual(blocksOf(store.openRecord(assert.fail)), localRows);
    });
  });
});

Deno.test("a remote store is read-only: every write, and a lock for writing, throws", async () => {
  await withTemp(async (dir) => {
    const replica = await madeReplica(dir);
    const before = Deno.readFileSync(metaPaths(replica).record);
    await withStore(replica, (store) => {
      const asStore: ReplicaStore = store;
      const writes: Array<[string, () => unknown]> = [
        ["lock existing", () => store.lock("existing")],
        ["lock create", () => store.lock("create")],
        ["prepare", () => store.prepare()],
        ["checkStillOurs", () => store.checkStillOurs()],
        ["markUnadopted", () => store.markUnadopted()],
        ["clearUnadopted", () => store.clearUnadopted()],
        ["removeLegacyRecord", () => store.removeLegacyRecord()],
        ["createDraft", () => store.createDraft()],
        ["readDraft", () => asStore.readDraft({ fd: 0 }, assert.fail)],
        ["sameAsRecord", () => asStore.sameAsRecord({ fd: 0 })],
        ["commit", () => asStore.commit({ fd: 0 })],
        ["discard", () => asStore.discard({ fd: 0 })],
      ];
      for (const [what, write] of writes) {
        assert.throws(write, /a remote replica is read-only here/, what);
      }
    });
    assert.deepEqual(Deno.readFileSync(metaPaths(replica).record), before);
  });
});

Deno.test("StoreOpen is refused by a server serving no stores, and a second time in a session", async () => {
  await withTemp(async (dir) => {
    const replica = await madeReplica(dir);
    await assert.rejects(
      withStore(replica, () => {}, { serveStores: false }),
      (error) => error instanceof RemoteError && error.kind === ErrorKind.Refused,
    );
    const toServer = new TransformStream<Uint8Array, Uint8Array>();
    const toClient = new TransformStream<Uint8Array, Uint8Array>();
    const pool = new WorkerPool(1);
    const served = serve({
      input: toServer.readable,
      output: toClient.writable,
      readTree: (root) => localTree(root, { pool }),
      openStore: (root) => new LocalReplicaStore(root),
    });
    const connection = new Connection(
      { input: toClient.readable, output: toServer.writable },
      "the server",
    );
    try {
      await connection.greet();
      const open = encodeOpen({ path: replica, role: "read" });
      await connection.ask(FrameType.Open, open, FrameType.Ok);
      await openRemoteStore(connection, replica);
      await assert.rejects(openRemoteStore(connection, replica), /open already/);
    } finally {
      await connection.close();
      pool.close();
    }
    assert.deepEqual(await served, {});
  });
});

Deno.test("StoreOpen before Open ends the session with an error", async () => {
  const hello = { ...PROTOCOL_VERSIONS, program: "test", features: [] };
  const frames = [
    encodeFrame({ type: FrameType.Hello, flags: 0, id: 0, payload: encodeHello(hello) }),
    encodeFrame({ type: FrameType.StoreOpen, flags: 0, id: 1, payload: new Uint8Array() }),
  ];
  const answered: Uint8Array[] = [];
  const pool = new WorkerPool(1);
  let opened = false;
  const outcome = await serve({
    input: ReadableStream.from(frames),
    output: new WritableStream({ write: (chunk) => void answered.push(chunk) }),
    readTree: (root) => localTree(root, { pool }),
    openStore: (root) => {
      opened = true;
      return new LocalReplicaStore(root);
    },
  });
  pool.close();
  assert.match(outcome.error ?? "", /StoreOpen before Open/);
  const decoder = new FrameDecoder();
  const types = answered.flatMap((chunk) => decoder.push(chunk)).map((frame) => frame.type);
  assert.deepEqual(types, [FrameType.Hello, FrameType.Error]);
  assert.equal(opened, false);
});

Deno.test("a subprocess serves a replica's own files over a pipe, a record of several chunks, locked until the session ends", async () => {
  await withTemp(async (dir) => {
    const replica = await madeReplica(dir);
    writeRecord(replica, largeRecord());
    const recordPath = metaPaths(replica).record;
    assert.ok(Deno.statSync(recordPath).size > 2 * DATA_CHUNK, "a record of several chunks");
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("./serve_main.ts", import.meta.url).pathname],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const local = new LocalReplicaStore(replica);
    let lock: ReplicaLock | null = null;
    const { tree, store } = await connectRemoteReplica({
      input: child.stdout,
      output: child.stdin,
      path: replica,
      display: `far:${replica}`,
      peer: "the subprocess",
    }).catch((error) => {
      child.kill();
      throw error;
    });
    try {
      assert.deepEqual(answersOf(store), answersOf(local));
      assert.deepEqual(
        blocksOf(store.openRecord(assert.fail)),
        blocksOf(local.openRecord(assert.fail)),
      );
      lock = store.lock("read")!;
      assert.ok(lock.stillHeld());
      // Another process holds the lock: a writing run here is refused.
      assert.throws(() => local.lock("existing"), LockHeldError);
    } finally {
      await tree.close();
    }
    assert.equal(lock?.stillHeld(), false);
    const status = await child.status;
    const stderr = new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
    assert.equal(status.code, 0, stderr);
    const taken = local.lock("existing")!;
    taken.release();
  });
});

/** A far end that greets, opens any tree, and answers StoreOpen with `reply`. */
async function withFakeServer(
  reply: (id: number) => Frame[],
  fn: (connection: Connection) => Promise<void>,
): Promise<void> {
  const toServer = new TransformStream<Uint8Array, Uint8Array>();
  const toClient = new TransformStream<Uint8Array, Uint8Array>();
  const served = (async () => {
    const writer = toClient.writable.getWriter();
    const decoder = new FrameDecoder({ accept: FROM_CLIENT });
    const hello = { ...PROTOCOL_VERSIONS, program: "fake", features: [] };
    const answers: Record<number, (id: number) => Frame[]> = {
      [FrameType.Hello]:
        () => [{ type: FrameType.Hello, flags: 0, id: 0, payload: encodeHello(hello) }],
      [FrameType.Open]: (id) => [{ type: FrameType.Ok, flags: 0, id, payload: encodeOpened(null) }],
      [FrameType.StoreOpen]: reply,
      [FrameType.End]: () => [{ type: FrameType.End, flags: 0, id: 0, payload: new Uint8Array() }],
    };
    for await (const chunk of toServer.readable) {
      for (const frame of decoder.push(chunk)) {
        for (const answer of answers[frame.type]?.(frame.id) ?? []) {
          await writer.write(encodeFrame(answer));
        }
      }
    }
    await writer.close().catch(() => {});
  })();
  const connection = new Connection(
    { input: toClient.readable, output: toServer.writable },
    "the fake",
  );
  try {
    await connection.greet();
    await connection.ask(FrameType.Open, encodeOpen({ path: "/r", role: "read" }), FrameType.Ok);
    await fn(connection);
  } finally {
    await connection.close();
    await served;
  }
}

Deno.test("openRemoteStore() refuses a record longer than announced, a wrong checksum, a snapshot that misleads", async () => {
  const answer = (size: number, more: boolean) => (id: number) => announced(id, size, more);
  const data = (id: number, bytes: number) => dataFrame(id, new Uint8Array(bytes));
  const end = (id: number) => endFrame(id, "0".repeat(64));
  const cases: Array<[string, (id: number) => Frame[], RegExp]> = [
    ["longer", (id) => [answer(4, true)(id), data(id, 8)], /longer than it said/],
    [
      "checksum",
      (id) => [answer(4, true)(id), data(id, 4), end(id)],
      /does not match its checksum/,
    ],
    ["shorter", (id) => [answer(8, true)(id), data(id, 4), end(id)], /does not match its checksum/],
    ["no More", (id) => [answer(4, false)(id)], /whether a record follows/],
    // Each would be a piece held for nothing: a flood of them is memory without bytes.
    ["empty Data", (id) => [answer(4, true)(id), data(id, 0)], /An empty Data frame/],
  ];
  for (const [what, reply, message] of cases) {
    await withFakeServer(reply, async (connection) => {
      await assert.rejects(
        openRemoteStore(connection, "fake:/r"),
        (error) => error instanceof FrameError && message.test(error.message),
        what,
      );
    });
  }
});

Deno.test("openRemoteStore() refuses a far record larger than it holds, on the size announced, before its bytes", async () => {
  const announce = (size: number) => (id: number): Frame[] => [announced(id, size, true)];
  await withFakeServer(announce(MAX_HELD_RECORD_BYTES + 1), async (connection) => {
    await assert.rejects(
      openRemoteStore(connection, "fake:/r"),
      (error) =>
        error instanceof UsageError &&
        /^The record of fake:\/r is 1073741825 bytes, more than the 1\.0 GiB a restore from another host holds in memory: run the restore on that host instead$/
          .test(error.message),
    );
  });
  // At the limit, the announcement is taken: what fails then is the record's missing bytes.
  const cutShort = (id: number): Frame[] => [
    announced(id, MAX_HELD_RECORD_BYTES, true),
    endFrame(id, "0".repeat(64)),
  ];
  await withFakeServer(cutShort, async (connection) => {
    await assert.rejects(
      openRemoteStore(connection, "fake:/r"),
      (error) => error instanceof FrameError && /does not match its checksum/.test(error.message),
    );
  });
});

Deno.test("a far record sent in frames of any size is held as its bytes, and read as the local one", async () => {
  await withTemp(async (dir) => {
    const replica = await madeReplica(dir);
    writeRecord(replica, largeRecord());
    const path = metaPaths(replica).record;
    const bytes = Deno.readFileSync(path);
    assert.ok(bytes.length > 2 * DATA_CHUNK, "a record of several pieces");
    const expected = blocksOf(openRecord(path, { onCorrupt: assert.fail })!);
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    // Frames that cross the pieces of DATA_CHUNK bytes the receiver fills: 1 byte, then
    // 100,003 at a time; and the record in one frame.
    for (const sizes of [[1, 100_003], [bytes.length]]) {
      const reply = (id: number): Frame[] => {
        const frames = [announced(id, bytes.length, true)];
        for (let at = 0, turn = 0; at < bytes.length; turn++) {
          const next = Math.min(bytes.length, at + sizes[Math.min(turn, sizes.length - 1)]!);
          frames.push(dataFrame(id, bytes.slice(at, next)));
          at = next;
        }
        return [...frames, endFrame(id, sha256)];
      };
      await withFakeServer(reply, async (connection) => {
        const store = await openRemoteStore(connection, "fake:/r");
        assert.deepEqual(blocksOf(store.openRecord(assert.fail)), expected, String(sizes));
      });
    }
  });
});

/** The snapshot of a replica that is ours and locked, its record of `size` bytes (format 3). */
function announced(id: number, size: number, more: boolean): Frame {
  const payload = encodeStoreSnapshot({
    check: { value: true },
    lock: { value: true },
    hasRecord: { value: true },
    isAdopted: { value: true },
    holdsEntries: { value: true },
    record: { format: 3, size },
  });
  return { type: FrameType.StoreReply, flags: more ? FrameFlag.More : 0, id, payload };
}

/** Some of the record's bytes. */
function dataFrame(id: number, payload: Uint8Array): Frame {
  return { type: FrameType.Data, flags: FrameFlag.More, id, payload };
}

/** The record's end, with the SHA-256 the far end says it sent. */
function endFrame(id: number, sha256: string): Frame {
  const payload = encodeStoreEnd({ sha256, unreadable: null });
  return { type: FrameType.StoreReply, flags: 0, id, payload };
}
