/**
 * Tests for file data over the remote protocol: `Read` → `Data`… → `DataEnd` between a server
 * (`server.ts`) and a client (`client.ts`) joined by in-memory streams or a pipe to a
 * subprocess, written by the local writer's copy of streamed files (`streamcopy.ts`): bytes,
 * mode and mtime arrive exact; links, fifos and `..` are refused; damaged or cut streams leave
 * neither a file nor a temporary file; `-z` compresses, `--bwlimit` paces (counted, not timed);
 * both ends count their bytes on the wire.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { type CopyItem, type CopyOutcome, type TreeChanges } from "../sides/writer.ts";
import { type FileSource, type StreamedFileEnd, type StreamedFiles } from "../sides/reader.ts";
import { LocalTreeWriter } from "../sides/local/treewriter.ts";
import { localTree } from "../sides/local/tree.ts";
import { WorkerPool } from "../sides/local/workers.ts";
import { allocatedBytes, scanOfTree, setMtime, withTemp } from "../test_helpers.ts";
import { connectRemoteTree, RemoteError, type RemoteTreeReader } from "./client.ts";
import {
  DATA_CHUNK,
  ErrorKind,
  FrameFlag,
  FrameType,
  HEADER_BYTES,
  type WireBytes,
} from "./frames.ts";
import { Pacer } from "./pace.ts";
import { serve, type ServeOptions } from "./server.ts";
import { sshdUnavailable, startSshd } from "./test_sshd.ts";
import { decodeDataEnd, decodeOpen, encodeDataEnd, encodeOpen } from "./wire.ts";

/** Bytes that do not compress (SHA-256 in counter mode), the same for a seed. */
function noise(size: number, seed = 1): Uint8Array {
  const bytes = new Uint8Array(size + 32);
  for (let at = 0, block = 0; at < size; at += 32, block++) {
    bytes.set(createHash("sha256").update(`${seed}:${block}`).digest(), at);
  }
  return bytes.slice(0, size);
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** What a session's server sent, frame by frame (each write is one frame in memory). */
interface Tap {
  /** Data frames seen, and how many of them were compressed. */
  data: number;
  compressed: number;
}

/** Options of {@linkcode withSession}. */
interface SessionOptions {
  compress?: boolean;
  rate?: number | null;
  pacer?: ServeOptions["pacer"];
  /** Rewrites or drops what the server writes (each chunk is one whole frame). */
  alter?: (frame: Uint8Array, controller: TransformStreamDefaultController<Uint8Array>) => void;
}

/** The frames of a server's write, each with its header (a write holds whole frames). */
function wholeFrames(chunk: Uint8Array): Uint8Array[] {
  const frames: Uint8Array[] = [];
  const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  for (let at = 0; at < chunk.length;) {
    const end = at + HEADER_BYTES + view.getUint32(at + 6);
    frames.push(chunk.subarray(at, end));
    at = end;
  }
  return frames;
}

/** A server and a client joined by in-memory streams over the tree at `path`. */
async function withSession(
  path: string,
  fn: (client: RemoteTreeReader, tap: Tap) => Promise<void>,
  options: SessionOptions = {},
): Promise<{ server: WireBytes; client: WireBytes }> {
  const toServer = new TransformStream<Uint8Array, Uint8Array>();
  const tap: Tap = { data: 0, compressed: 0 };
  const toClient = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      // A write holds whole frames (several when they were queued together): one at a time.
      for (const frame of wholeFrames(chunk)) {
        if (frame[0] === FrameType.Data) {
          tap.data++;
          if ((frame[1]! & FrameFlag.Compressed) !== 0) tap.compressed++;
        }
        if (options.alter) options.alter(frame, controller);
        else controller.enqueue(frame);
      }
    },
  });
  const pool = new WorkerPool(1);
  const wire: WireBytes = { sent: 0, received: 0 };
  try {
    const served = serve({
      input: toServer.readable,
      output: toClient.writable,
      readTree: (root) => localTree(root, { pool }),
      wire,
      ...(options.pacer ? { pacer: options.pacer } : {}),
    });
    const client = await connectRemoteTree({
      input: toClient.readable,
      output: toServer.writable,
      path,
      compress: options.compress ?? false,
      rate: options.rate ?? null,
    });
    let clientBytes: WireBytes;
    try {
      await fn(client, tap);
    } finally {
      await client.close();
      clientBytes = client.wireBytes();
    }
    await served;
    return { server: wire, client: clientBytes };
  } finally {
    pool.close();
  }
}

/** A writer of `to`, prepared, with its run's changes. */
function preparedChanges(to: string, pool: WorkerPool, sparse = false): TreeChanges {
  Deno.mkdirSync(to, { recursive: true });
  const writer = new LocalTreeWriter(to, { pool });
  writer.prepare({ cleanLeftovers: true, removeMadeFolders: false, trash: false, now: new Date() });
  return writer.changes({ seen: scanOfTree(to).entries, owners: false, sparse });
}

/**
 * Copies `paths` from a remote tree (or a scripted far end) into `to` through the writer;
 * outcomes by path.
 */
async function copyThrough(
  client: { fileSource(): FileSource },
  to: string,
  paths: string[],
  options: { sparse?: boolean; recordedHash?: string; stop?: 1 | 2 } = {},
): Promise<{ outcomes: Map<string, CopyOutcome>; bytes: number }> {
  const pool = new WorkerPool(1);
  try {
    const changes = preparedChanges(to, pool, options.sparse);
    const items: CopyItem[] = paths.map((path) => ({
      path,
      fresh: true,
      ...(options.recordedHash === undefined ? {} : { recordedHash: options.recordedHash }),
    }));
    if (options.stop) pool.stop(options.stop);
    const outcomes = new Map<string, CopyOutcome>();
    let bytes = 0;
    await changes.copy(client.fileSource(), items, {
      onBytes: (count) => bytes += count,
      onEach: (index, outcome) => outcomes.set(paths[index]!, outcome),
    });
    return { outcomes, bytes };
  } finally {
    pool.close();
  }
}

/** The names in the replica's tmp folder: none once every copy is placed or discarded. */
function tempFiles(to: string): string[] {
  return [...Deno.readDirSync(`${to}/.treesync/tmp`)].map((item) => item.name);
}

function errorOf(outcome: CopyOutcome | undefined): string {
  assert.ok(outcome && "error" in outcome, `an error, not ${JSON.stringify(outcome)}`);
  return outcome.error;
}

const BIG = 3 * DATA_CHUNK + 1234;

Deno.test("a file of several chunks arrives byte-exact with its mode and mtime through the writer's copy", async () => {
  await withTemp(async (dir) => {
    const from = `${dir}/from`;
    Deno.mkdirSync(from);
    const big = noise(BIG);
    Deno.writeFileSync(`${from}/big.bin`, big, { mode: 0o640 });
    Deno.chmodSync(`${from}/big.bin`, 0o640);
    setMtime(`${from}/big.bin`, 1_600_000_000_123);
    Deno.writeTextFileSync(`${from}/small`, "one line\n");
    Deno.writeFileSync(`${from}/empty`, new Uint8Array());
    const to = `${dir}/to`;
    await withSession(from, async (client, tap) => {
      const source = client.fileSource();
      assert.equal(source.kind, "stream");
      const { outcomes, bytes } = await copyThrough(client, to, ["big.bin", "small", "empty"]);
      for (const [path, outcome] of outcomes) assert.ok("copied" in outcome, path);
      assert.equal(bytes, BIG + 9);
      assert.equal(tap.data, 4 + 1, "four chunks and one");
      const copied = outcomes.get("big.bin") as { copied: { replica: { hash: string } } };
      assert.equal(copied.copied.replica.hash, sha256(big));
    });
    assert.deepEqual(Deno.readFileSync(`${to}/big.bin`), big);
    const stat = Deno.statSync(`${to}/big.bin`);
    assert.equal(stat.mode! & 0o7777, 0o640);
    assert.equal(stat.mtime!.getTime(), 1_600_000_000_123);
    assert.equal(Deno.readTextFileSync(`${to}/small`), "one line\n");
    assert.equal(Deno.statSync(`${to}/empty`).size, 0);
    assert.deepEqual(tempFiles(to), []);
  });
});

Deno.test("a streamed copy under --sparse leaves holes and hashes every byte", async () => {
  await withTemp(async (dir) => {
    const from = `${dir}/from`;
    Deno.mkdirSync(from);
    const bytes = new Uint8Array(2 * DATA_CHUNK);
    bytes.set(noise(4096), 0);
    Deno.writeFileSync(`${from}/holes`, bytes);
    const to = `${dir}/to`;
    await withSession(from, async (client) => {
      const { outcomes } = await copyThrough(client, to, ["holes"], { sparse: true });
      assert.ok("copied" in outcomes.get("holes")!);
    });
    assert.deepEqual(Deno.readFileSync(`${to}/holes`), bytes);
    assert.ok(allocatedBytes(`${to}/holes`) < bytes.length / 2, "the zeros are holes");
  });
});

Deno.test("a link, a fifo, a folder and a missing file are refused; nothing is placed and the session goes on", async () => {
  await withTemp(async (dir) => {
    const from = `${dir}/from`;
    Deno.mkdirSync(`${from}/folder`, { recursive: true });
    Deno.writeTextFileSync(`${dir}/outside`, "secret");
    Deno.symlinkSync(`${dir}/outside`, `${from}/link`);
    const mkfifo = new Deno.Command("mkfifo", { args: [`${from}/fifo`] }).outputSync();
    assert.ok(mkfifo.success);
    Deno.writeTextFileSync(`${from}/fine`, "fine");
    const to = `${dir}/to`;
    await withSession(from, async (client) => {
      const paths = ["link", "fifo", "folder", "missing", "fine"];
      const { outcomes } = await copyThrough(client, to, paths);
      for (const path of ["link", "fifo", "folder"]) {
        assert.match(errorOf(outcomes.get(path)), /Cannot read '.+': .*regular file/, path);
      }
      assert.match(errorOf(outcomes.get("missing")), /No such file|not found/i);
      const files = (client.fileSource() as { files: StreamedFiles }).files;
      for (const [path, kind] of [["link", ErrorKind.Refused], ["missing", ErrorKind.Missing]]) {
        await assert.rejects(files.read(path as string, () => true), (error: RemoteError) => {
          assert.equal(error.kind, kind, `${path}: ${error.message}`);
          return true;
        });
      }
      assert.ok("copied" in outcomes.get("fine")!);
    });
    assert.deepEqual([...Deno.readDirSync(to)].map((item) => item.name).sort(), [
      ".treesync",
      "fine",
    ]);
    assert.deepEqual(tempFiles(to), []);
  });
});

Deno.test("a read of a path with '..', or through a linked folder, is refused by the far end", async () => {
  await withTemp(async (dir) => {
    const from = `${dir}/from`;
    Deno.mkdirSync(from);
    Deno.mkdirSync(`${dir}/elsewhere`);
    Deno.writeTextFileSync(`${dir}/elsewhere/secret`, "secret");
    Deno.writeTextFileSync(`${dir}/secret`, "secret");
    Deno.symlinkSync(`${dir}/elsewhere`, `${from}/linked`);
    await withSession(from, async (client) => {
      const files = (client.fileSource() as { files: StreamedFiles }).files;
      const chunks: Uint8Array[] = [];
      const onChunk = (chunk: Uint8Array) => chunks.push(chunk.slice()) > 0;
      for (const path of ["../secret", "linked/secret", "/etc/passwd"]) {
        await assert.rejects(files.read(path, onChunk), (error: Error) => {
          assert.ok(error instanceof RemoteError, `${path}: ${error}`);
          assert.equal(error.kind, ErrorKind.Refused, path);
          return true;
        });
      }
      assert.deepEqual(chunks, []);
    });
  });
});

Deno.test("a chunk damaged on the way leaves neither the file nor a temporary file", async () => {
  await withTemp(async (dir) => {
    const from = `${dir}/from`;
    Deno.mkdirSync(from);
    Deno.writeFileSync(`${from}/big.bin`, noise(BIG));
    const to = `${dir}/to`;
    let damaged = 0;
    await withSession(from, async (client) => {
      const { outcomes } = await copyThrough(client, to, ["big.bin"]);
      assert.match(errorOf(outcomes.get("big.bin")), /do not match/);
    }, {
      alter: (frame, controller) => {
        if (frame[0] === FrameType.Data && damaged++ === 1) frame[HEADER_BYTES + 100]! ^= 0xff;
        controller.enqueue(frame);
      },
    });
    assert.ok(damaged > 1);
    assert.deepEqual([...Deno.readDirSync(to)].map((item) => item.name), [".treesync"]);
    assert.deepEqual(tempFiles(to), []);
  });
});

Deno.test("a stream cut in the middle of a file fails the copy and leaves neither the file nor a temporary file", async () => {
  await withTemp(async (dir) => {
    const from = `${dir}/from`;
    Deno.mkdirSync(from);
    Deno.writeFileSync(`${from}/big.bin`, noise(BIG));
    const to = `${dir}/to`;
    let data = 0;
    await withSession(from, async (client) => {
      const { outcomes } = await copyThrough(client, to, ["big.bin"]);
      assert.match(errorOf(outcomes.get("big.bin")), /stream ended inside Data/);
    }, {
      alter: (frame, controller) => {
        if (frame[0] === FrameType.Data && data++ === 1) {
          // Half a frame, then the end of the stream.
          controller.enqueue(frame.subarray(0, 1000));
          controller.terminate();
        } else controller.enqueue(frame);
      },
    });
    assert.deepEqual([...Deno.readDirSync(to)].map((item) => item.name), [".treesync"]);
    assert.deepEqual(tempFiles(to), []);
  });
});

Deno.test("a read abandoned by the writer is cancelled, and the next read is whole", async () => {
  await withTemp(async (dir) => {
    const from = `${dir}/from`;
    Deno.mkdirSync(from);
    const big = noise(BIG);
    Deno.writeFileSync(`${from}/big.bin`, big);
    await withSession(from, async (client) => {
      const files = (client.fileSource() as { files: StreamedFiles }).files;
      let first = 0;
      assert.equal(await files.read("big.bin", () => ++first < 1), null);
      assert.equal(first, 1);
      const whole = new Uint8Array(BIG);
      let at = 0;
      const end = await files.read("big.bin", (chunk) => {
        whole.set(chunk, at);
        at += chunk.length;
        return true;
      });
      assert.equal(end?.hash, sha256(big));
      assert.equal(end?.changed, false);
      assert.equal(end?.entry.size, BIG);
      assert.equal(at, BIG);
      assert.deepEqual(whole, big);
      await assert.rejects(
        files.read("big.bin", () => {
          throw new Error("disk full");
        }),
        /disk full/,
      );
      assert.equal((await files.read("big.bin", () => true))?.hash, sha256(big));
    });
  });
});

Deno.test("-z compresses the Data frames of a compressible file, and fewer bytes cross the wire", async () => {
  await withTemp(async (dir) => {
    const from = `${dir}/from`;
    Deno.mkdirSync(from);
    const text = new TextEncoder().encode("a line of log text, again and again\n".repeat(30_000));
    Deno.writeFileSync(`${from}/log.txt`, text);
    Deno.writeFileSync(`${from}/noise`, noise(DATA_CHUNK));
    const received: number[] = [];
    for (const compress of [false, true]) {
      const to = `${dir}/to-${compress}`;
      const wire = await withSession(from, async (client, tap) => {
        const { outcomes } = await copyThrough(client, to, ["log.txt", "noise"]);
        assert.ok("copied" in outcomes.get("log.txt")!);
        assert.ok("copied" in outcomes.get("noise")!);
        const chunks = Math.ceil(text.length / DATA_CHUNK);
        assert.equal(tap.data, chunks + 1);
        // Noise goes as it is: compressing it would not make it smaller.
        assert.equal(tap.compressed, compress ? chunks : 0);
      }, { compress });
      assert.deepEqual(Deno.readFileSync(`${to}/log.txt`), text);
      assert.deepEqual(Deno.readFileSync(`${to}/noise`), noise(DATA_CHUNK));
      assert.equal(wire.client.received, wire.server.sent, "both ends count the same bytes");
      assert.equal(wire.client.sent, wire.server.received);
      received.push(wire.client.received);
    }
    assert.ok(received[0]! > text.length + DATA_CHUNK, `${received[0]}`);
    assert.ok(received[1]! < DATA_CHUNK + text.length / 10, `${received}`);
  });
});

/** A pacer on a clock that moves only when it sleeps, counting the bytes it is asked for. */
class CountingPacer extends Pacer {
  asked = 0;
  slept = 0;

  constructor(rate: number) {
    let clock = 0;
    super(rate, {
      now: () => clock,
      sleep: (milliseconds) => {
        clock += milliseconds;
        this.slept += milliseconds;
        return Promise.resolve();
      },
    });
  }

  override pace(bytes: number): Promise<void> {
    this.asked += bytes;
    return super.pace(bytes);
  }
}

Deno.test("--bwlimit paces every Data byte on the wire through the session's pacer, in small chunks at a low rate", async () => {
  await withTemp(async (dir) => {
    const from = `${dir}/from`;
    Deno.mkdirSync(from);
    const size = 100_000;
    Deno.writeFileSync(`${from}/file`, noise(size));
    const pacers: CountingPacer[] = [];
    const rate = 64 * 1024;
    await withSession(from, async (client, tap) => {
      const { outcomes } = await copyThrough(client, `${dir}/to`, ["file"]);
      assert.ok("copied" in outcomes.get("file")!);
      assert.equal(pacers.length, 1);
      const pacer = pacers[0]!;
      // A 64K rate has an 8K burst: the file goes in 8K chunks, each paced with its header.
      const chunks = Math.ceil(size / 8192);
      assert.equal(tap.data, chunks);
      assert.equal(pacer.asked, size + chunks * HEADER_BYTES);
      // On its clock the pacer waited for all but its first burst.
      assert.ok(Math.abs(pacer.slept - ((pacer.asked - pacer.burst) / rate) * 1000) < 1);
    }, {
      rate,
      pacer: (bytesPerSecond) => {
        const pacer = new CountingPacer(bytesPerSecond);
        pacers.push(pacer);
        return pacer;
      },
    });
    assert.deepEqual(Deno.readFileSync(`${dir}/to/file`), noise(size));
  });
});

Deno.test("Open carries -z and --bwlimit; an Open without them asks for neither; DataEnd round trips", () => {
  const open = { path: "/srv", role: "read" as const, compress: true, rate: 500 * 1024 };
  assert.deepEqual(decodeOpen(encodeOpen(open)), open);
  assert.deepEqual(decodeOpen(encodeOpen({ path: "/srv", role: "read" })), {
    path: "/srv",
    role: "read",
    compress: false,
    rate: null,
  });
  // Without settings, the Open an earlier server takes: the path and the role only.
  assert.equal(encodeOpen({ path: "/srv", role: "read", compress: false, rate: null }).length, 6);
  const rateOnly = { path: "/srv", role: "write" as const, compress: false, rate: 1024 };
  assert.deepEqual(decodeOpen(encodeOpen(rateOnly)), rateOnly);
  const end = {
    hash: sha256(new Uint8Array([1])),
    changed: true,
    entry: {
      kind: "file" as const,
      size: 1,
      mtimeMs: 1_600_000_000_123,
      ctimeMs: 1_600_000_000_000,
      ino: 7,
      dev: 2049,
      mode: 0o4755,
      uid: 1000,
      gid: 100,
      nlink: 1,
    },
  };
  assert.deepEqual(decodeDataEnd(encodeDataEnd(end)), end);
});

Deno.test("a subprocess streams files over a pipe, compressed, and exits cleanly", async () => {
  await withTemp(async (dir) => {
    const from = `${dir}/from`;
    Deno.mkdirSync(from);
    const big = noise(BIG);
    Deno.writeFileSync(`${from}/big.bin`, big);
    Deno.chmodSync(`${from}/big.bin`, 0o600);
    setMtime(`${from}/big.bin`, 1_500_000_000_007);
    const text = new TextEncoder().encode("compressible ".repeat(50_000));
    Deno.writeFileSync(`${from}/text`, text);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("./serve_main.ts", import.meta.url).pathname],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const to = `${dir}/to`;
    const client = await connectRemoteTree({
      input: child.stdout,
      output: child.stdin,
      path: from,
      peer: "the subprocess",
      compress: true,
    });
    try {
      const { outcomes } = await copyThrough(client, to, ["big.bin", "text"]);
      for (const [path, outcome] of outcomes) assert.ok("copied" in outcome, path);
      assert.ok(client.wireBytes().received < BIG + text.length / 4);
    } finally {
      await client.close();
    }
    const status = await child.status;
    const stderr = new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
    assert.equal(status.code, 0, stderr);
    assert.deepEqual(Deno.readFileSync(`${to}/big.bin`), big);
    assert.deepEqual(Deno.readFileSync(`${to}/text`), text);
    const stat = Deno.statSync(`${to}/big.bin`);
    assert.equal(stat.mode! & 0o7777, 0o600);
    assert.equal(stat.mtime!.getTime(), 1_500_000_000_007);
    assert.deepEqual(tempFiles(to), []);
  });
});

/**
 * A far end that sends `bytes` for every read, saying it changed while read for the first
 * `changedReads` reads; `reads` counts them.
 */
function scriptedFarEnd(bytes: Uint8Array, changedReads: number) {
  const far = {
    reads: 0,
    fileSource: (): FileSource => ({ kind: "stream", files }),
  };
  const files: StreamedFiles = {
    read(_path, onChunk): Promise<StreamedFileEnd | null> {
      far.reads++;
      for (let at = 0; at < bytes.length; at += 1000) {
        if (!onChunk(bytes.subarray(at, at + 1000))) return Promise.resolve(null);
      }
      const entry = {
        kind: "file" as const,
        size: bytes.length,
        mtimeMs: 1_600_000_000_000,
        ctimeMs: 1_600_000_000_000,
        ino: 1,
        dev: 1,
        mode: 0o644,
        uid: 0,
        gid: 0,
        nlink: 1,
      };
      return Promise.resolve({ hash: sha256(bytes), entry, changed: far.reads <= changedReads });
    },
  };
  return far;
}

Deno.test("a file the far end saw change while read is read again, and fails after three reads", async () => {
  await withTemp(async (dir) => {
    const bytes = noise(5000);
    const twice = scriptedFarEnd(bytes, 2);
    const { outcomes } = await copyThrough(twice, `${dir}/a`, ["f"]);
    assert.ok("copied" in outcomes.get("f")!);
    assert.equal(twice.reads, 3);
    assert.deepEqual(Deno.readFileSync(`${dir}/a/f`), bytes);
    const always = scriptedFarEnd(bytes, Infinity);
    const failed = await copyThrough(always, `${dir}/b`, ["f"]);
    assert.match(errorOf(failed.outcomes.get("f")), /kept changing/);
    assert.equal(always.reads, 3);
    assert.deepEqual(tempFiles(`${dir}/b`), []);
    assert.deepEqual([...Deno.readDirSync(`${dir}/b`)].map((item) => item.name), [".treesync"]);
  });
});

Deno.test("a streamed restore refuses bytes that are not the recorded SHA-256", async () => {
  await withTemp(async (dir) => {
    const far = scriptedFarEnd(noise(5000), 0);
    const { outcomes } = await copyThrough(far, `${dir}/to`, ["f"], {
      recordedHash: "0".repeat(64),
    });
    const outcome = outcomes.get("f");
    assert.ok(outcome && "error" in outcome && outcome.refused, JSON.stringify(outcome));
    assert.match(outcome.error, /Not restored/);
    assert.deepEqual(tempFiles(`${dir}/to`), []);
  });
});

Deno.test("a stop skips the streamed files not started, and an abort abandons the one in flight", async () => {
  await withTemp(async (dir) => {
    const far = scriptedFarEnd(noise(5000), 0);
    const stopped = await copyThrough(far, `${dir}/a`, ["f", "g"], { stop: 1 });
    assert.deepEqual([...stopped.outcomes.values()], [{ skipped: true }, { skipped: true }]);
    assert.equal(far.reads, 0);
    const from = `${dir}/from`;
    Deno.mkdirSync(from);
    Deno.writeFileSync(`${from}/big.bin`, noise(BIG));
    await withSession(from, async (client) => {
      const pool = new WorkerPool(1);
      try {
        const changes = preparedChanges(`${dir}/b`, pool);
        const outcomes: CopyOutcome[] = [];
        await changes.copy(client.fileSource(), [{ path: "big.bin", fresh: true }], {
          onBytes: () => pool.stop(2),
          onEach: (_, outcome) => outcomes.push(outcome),
        });
        assert.deepEqual(outcomes, [{ skipped: true }]);
      } finally {
        pool.close();
      }
      // The session goes on after the cancelled read.
      assert.equal((await client.entryAt("big.bin"))?.size, BIG);
    });
    assert.deepEqual(tempFiles(`${dir}/b`), []);
    assert.deepEqual([...Deno.readDirSync(`${dir}/b`)].map((item) => item.name), [".treesync"]);
  });
});

Deno.test({
  name: "a file of several chunks is copied over ssh from the test sshd, compressed",
  ignore: sshdUnavailable() !== null,
  fn: async () => {
    await withTemp(async (dir) => {
      const from = `${dir}/from`;
      Deno.mkdirSync(from);
      const big = noise(BIG);
      Deno.writeFileSync(`${from}/big.bin`, big);
      setMtime(`${from}/big.bin`, 1_400_000_000_000);
      const text = new TextEncoder().encode("over ssh ".repeat(100_000));
      Deno.writeFileSync(`${from}/text`, text);
      const sshd = await startSshd();
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
            path: from,
            peer: sshd.host,
            compress: true,
          });
          const { outcomes } = await copyThrough(client, `${dir}/to`, ["big.bin", "text"]);
          for (const [path, outcome] of outcomes) assert.ok("copied" in outcome, path);
          assert.ok(client.wireBytes().received < BIG + text.length / 4);
          await client.close();
          assert.equal((await child.status).code, 0);
        } finally {
          // A failed test must not leave the session open: sshd would wait for it.
          try {
            child.kill();
          } catch {
            // It exited.
          }
          await child.status;
        }
      } finally {
        await sshd.stop();
      }
      assert.deepEqual(Deno.readFileSync(`${dir}/to/big.bin`), big);
      assert.equal(Deno.statSync(`${dir}/to/big.bin`).mtime!.getTime(), 1_400_000_000_000);
      assert.deepEqual(Deno.readFileSync(`${dir}/to/text`), text);
    });
  },
});
