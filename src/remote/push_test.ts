/**
 * A push: the far end runs the engine over its replica and reads the near end's source through
 * the swapped session. Run in process over in-memory streams (the far end is `serveFarEnd`), and
 * the far end's checks of a `Run` as a hostile near end would send it.
 */

import assert from "node:assert/strict";
import { type Options } from "../cli.ts";
import { newRunControl } from "../control.ts";
import { UsageError } from "../errors.ts";
import { type Reporter } from "../log.ts";
import { readTree, withTemp, writeTree } from "../test_helpers.ts";
import { Connection, openRemoteTree, RemoteError } from "./client.ts";
import {
  encodeFrame,
  encodeHello,
  FrameDecoder,
  FrameType,
  FROM_CLIENT,
  PROTOCOL_VERSIONS,
} from "./frames.ts";
import { acceptRun, serveFarEnd } from "./farend.ts";
import { type FarEndLink, type PushOptions, runPushed } from "./push.ts";
import { decodeDone, decodeRunRequest, encodeJson } from "./runwire.ts";
import { emptySummary } from "../summary.ts";

/** The options of `treesync SOURCE far:REPLICA`. */
function pushOptions(source: string, replica: string, more: Partial<Options> = {}): PushOptions {
  return {
    source,
    replica: `far:${replica}`,
    dryRun: false,
    restore: false,
    overwriteNewer: false,
    checksum: false,
    verify: false,
    filters: [],
    deletes: true,
    adopt: false,
    interactive: false,
    allowEmptySource: false,
    logPath: null,
    logMaxBytes: 0,
    logKeep: 0,
    json: false,
    verbosity: 1,
    intervalMs: null,
    watch: false,
    watchDelayMs: 0,
    keepDeletedMs: null,
    maxDelete: null,
    jobs: 2,
    sparse: false,
    hardLinks: false,
    ...more,
    rsh: ["ssh"],
    remoteTreesync: "treesync",
    bwlimit: null,
    compress: false,
    remote: { kind: "remote", host: "far", path: replica, side: "replica" },
  } as PushOptions;
}

/** A reporter keeping every line, by kind. */
function keptLines(): { report: Reporter; lines: string[] } {
  const lines: string[] = [];
  const keep = (how: string) => (text: string) => lines.push(`${how}: ${text}`);
  return {
    lines,
    report: {
      change: keep("change"),
      planned: keep("planned"),
      debug: keep("debug"),
      warn: keep("warn"),
      error: keep("error"),
      summary: keep("summary"),
      fileOnly: () => {},
      runEnd: (text) => lines.push(`end: ${text}`),
    },
  };
}

/** A far end in this process, joined by in-memory streams. */
function memoryFarEnd(root?: string): FarEndLink {
  const toFar = new TransformStream<Uint8Array, Uint8Array>();
  const toNear = new TransformStream<Uint8Array, Uint8Array>();
  const far = serveFarEnd({
    input: toFar.readable,
    output: toNear.writable,
    ...(root === undefined ? {} : { root }),
  });
  return {
    host: "far",
    input: toNear.readable,
    output: toFar.writable,
    close: async () => {
      await toFar.writable.close().catch(() => {});
      await far;
    },
  };
}

function pushDeps(report: Reporter, connect: () => Promise<FarEndLink>) {
  return { report, control: newRunControl(), isRoot: false, confirmDeletes: () => false, connect };
}

Deno.test("a push mirrors folders and links into the far replica, and renames a moved folder there", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/src`, { a: { b: {}, l: { link: "x" } }, top: { link: "a" } });
    const first = keptLines();
    const summary = await runPushed(
      pushOptions(`${dir}/src`, `${dir}/dst`),
      pushDeps(first.report, () => Promise.resolve(memoryFarEnd())),
    );
    assert.equal(summary.failed, 0, first.lines.join("\n"));
    assert.deepEqual(readTree(`${dir}/dst`), readTree(`${dir}/src`));
    assert.ok(summary.bytesSent! > 0 && summary.bytesReceived! > 0);
    const inode = Deno.statSync(`${dir}/dst/a/b`).ino;
    Deno.renameSync(`${dir}/src/a`, `${dir}/src/moved`);
    const second = keptLines();
    await runPushed(
      pushOptions(`${dir}/src`, `${dir}/dst`, { verbosity: 2 }),
      pushDeps(second.report, () => Promise.resolve(memoryFarEnd())),
    );
    assert.ok(second.lines.includes("change: move a/ -> moved/"), second.lines.join("\n"));
    // Without -v or a log the near end shows no change line: the far end sends none; debug
    // lines only at -vv.
    assert.ok(!first.lines.some((line) => /^(change|debug):/.test(line)), first.lines.join("\n"));
    assert.ok(!second.lines.some((line) => line.startsWith("debug:")), second.lines.join("\n"));
    assert.equal(Deno.statSync(`${dir}/dst/moved/b`).ino, inode);
    Deno.renameSync(`${dir}/src/moved`, `${dir}/src/again`);
    const third = keptLines();
    await runPushed(
      pushOptions(`${dir}/src`, `${dir}/dst`, { verbosity: 3 }),
      pushDeps(third.report, () => Promise.resolve(memoryFarEnd())),
    );
    assert.ok(third.lines.some((line) => line.startsWith("debug:")), third.lines.join("\n"));
  });
});

Deno.test("a push's -I question is asked on the near end and its answer decides", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/src`, { keep: {}, gone: {} });
    const { report } = keptLines();
    const connect = () => Promise.resolve(memoryFarEnd());
    await runPushed(pushOptions(`${dir}/src`, `${dir}/dst`), pushDeps(report, connect));
    Deno.removeSync(`${dir}/src/gone`);
    const asked: number[] = [];
    const deps = {
      ...pushDeps(report, connect),
      confirmDeletes: (count: number) => Promise.resolve(asked.push(count) > 0),
    };
    const summary = await runPushed(
      pushOptions(`${dir}/src`, `${dir}/dst`, { interactive: true }),
      deps,
    );
    assert.deepEqual(asked, [1]);
    assert.equal(summary.dirsDeleted, 1);
  });
});

Deno.test("a far end refuses a pushed replica outside its --root: exit 2 with its line, nothing made", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/src`, { a: {} });
    Deno.mkdirSync(`${dir}/allowed`);
    const { report } = keptLines();
    await assert.rejects(
      runPushed(
        pushOptions(`${dir}/src`, `${dir}/elsewhere`),
        pushDeps(report, () => Promise.resolve(memoryFarEnd(`${dir}/allowed`))),
      ),
      (error) => error instanceof UsageError && /refused the run: .*outside/.test(error.message),
    );
    assert.throws(() => Deno.lstatSync(`${dir}/elsewhere`), Deno.errors.NotFound);
  });
});

/**
 * A push to a hostile far end: it takes the run (Hello, Ok), then acts as `script` says on the
 * swapped session's connection. Returns the near end's summary and lines.
 */
async function pushToFake(
  dir: string,
  script: (connection: Connection) => Promise<void>,
): Promise<{ summary: Awaited<ReturnType<typeof runPushed>>; lines: string[] }> {
  const toFar = new TransformStream<Uint8Array, Uint8Array>();
  const toNear = new TransformStream<Uint8Array, Uint8Array>();
  const far = (async () => {
    const reader = toFar.readable.getReader();
    const decoder = new FrameDecoder({ accept: FROM_CLIENT });
    let frames = 0;
    while (frames < 2) frames += decoder.push((await reader.read()).value!).length;
    reader.releaseLock();
    const writer = toNear.writable.getWriter();
    const hello = encodeHello({ ...PROTOCOL_VERSIONS, program: "hostile", features: [] });
    await writer.write(encodeFrame({ type: FrameType.Hello, flags: 0, id: 0, payload: hello }));
    await writer.write(
      encodeFrame({ type: FrameType.Ok, flags: 0, id: 1, payload: new Uint8Array() }),
    );
    writer.releaseLock();
    const connection = new Connection({ input: toFar.readable, output: toNear.writable }, "near");
    await connection.greet();
    await script(connection);
    await connection.close();
  })();
  const { report, lines } = keptLines();
  const summary = await runPushed(
    pushOptions(`${dir}/src`, `${dir}/dst`),
    pushDeps(
      report,
      () =>
        Promise.resolve({
          host: "far",
          input: toNear.readable,
          output: toFar.writable,
          close: () => far,
        }),
    ),
  );
  return { summary, lines };
}

Deno.test("a far end that asks the near end for a path outside the pushed source is refused", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/src`, { a: {} });
    writeTree(`${dir}/secret`, { key: "private" });
    let refusal = "";
    const { summary, lines } = await pushToFake(dir, async (connection) => {
      await openRemoteTree(connection, { path: `${dir}/secret`, display: "secret" }).catch(
        (error) => refusal = error instanceof RemoteError ? error.message : String(error),
      );
    });
    assert.match(refusal, /outside/);
    assert.equal(summary.failed, 1);
    assert.match(lines.join("\n"), /connection to far was lost/);
  });
});

Deno.test("a far end's lines reach the near end with their control characters escaped", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/src`, {});
    const { lines } = await pushToFake(dir, async (connection) => {
      const report = { how: "error", text: "copy \x1b]0;owned\x07\x1b[2J" };
      await connection.send({
        type: FrameType.Report,
        flags: 0,
        id: 0,
        payload: encodeJson(report),
      });
    });
    assert.deepEqual(lines.filter((line) => line.includes("copy")), [
      "error: copy \\x1b]0;owned\\x07\\x1b[2J",
    ]);
  });
});

Deno.test("a Run is taken only in its own shape: bad fields refused, the log and loop left to the near end", () => {
  const options = pushOptions("/near/src", "/far/dst", { logPath: "/far/log", intervalMs: 5 });
  const good = decodeRunRequest(encodeJson({ mode: "run", options: { ...options, extra: 1 } }));
  assert.equal(good.options.logPath, null);
  assert.equal(good.options.intervalMs, null);
  assert.equal("extra" in good.options, false);
  assert.equal("remote" in good.options, false);
  const verify = decodeRunRequest(encodeJson({ mode: "verify", options, shown: "vault:/r" }));
  assert.equal(verify.shown, "vault:/r");
  for (
    const bad of [
      { mode: "run" },
      { mode: "shell", options },
      { mode: "run", options: { ...options, jobs: "2" } },
      { mode: "run", options: { ...options, filters: [{ kind: "exec", pattern: "x" }] } },
      { mode: "run", options: { ...options, maxDelete: { count: "1" } } },
      { mode: "run", options, scope: [1] },
      { mode: "run", options, changes: "yes" },
      { mode: "run", options, scope: ["../etc"] },
      { mode: "run", options, scope: ["/etc"] },
      { mode: "run", options, scope: ["a/./b"] },
      { mode: "run", options, scope: ["a\u0000b"] },
      { mode: "verify", options, shown: 7 },
      { mode: "verify", options, shown: "host:/r\nerror: forged" },
      { mode: "verify", options, shown: "x".repeat(4097) },
    ]
  ) {
    assert.throws(() => decodeRunRequest(encodeJson(bad)), /A Run frame/, JSON.stringify(bad));
  }
  assert.throws(() => decodeRunRequest(new TextEncoder().encode("{")), /not JSON/);
});

Deno.test("a far end resolves the relative tree it writes against its login folder, within --root", () => {
  const options = pushOptions("/near/src", "backup/data");
  const request = { mode: "run", options: { ...options, replica: "backup/data" } };
  const accepted = acceptRun(encodeJson(request), undefined);
  assert.ok("accepted" in accepted);
  assert.equal(accepted.accepted.options.replica, `${Deno.cwd()}/backup/data`);
  const outside = acceptRun(encodeJson(request), Deno.makeTempDirSync());
  assert.ok("refused" in outside && /^Refused/.test(outside.refused));
  // Restoring writes the far end's source: that is the path confined.
  const restore = { ...options, restore: true, source: "/etc", replica: "/near/replica" };
  const root = Deno.makeTempDirSync();
  const refused = acceptRun(encodeJson({ mode: "run", options: restore }), root);
  assert.ok("refused" in refused && /outside/.test(refused.refused));
  const inside = { ...restore, source: `${root}/data` };
  const taken = acceptRun(encodeJson({ mode: "run", options: inside }), root);
  assert.ok("accepted" in taken);
  assert.equal(taken.accepted.options.replica, "/near/replica");
});

Deno.test("a far end confines what --verify reads, and refuses '..', the login's home and /", () => {
  const root = Deno.makeTempDirSync();
  const outside = pushOptions("/near/src", "/elsewhere/replica", { restore: true });
  // A verify reads the replica: it is the path confined, whatever `restore` says.
  const verify = acceptRun(encodeJson({ mode: "verify", options: outside }), root);
  assert.ok("refused" in verify);
  const plain = pushOptions("/near/src", "/elsewhere/replica");
  const verifyOut = acceptRun(encodeJson({ mode: "verify", options: plain }), root);
  assert.ok("refused" in verifyOut && /^Refused/.test(verifyOut.refused));
  for (const replica of ["../x", "a/../../x", "", ".", "/"]) {
    const run = acceptRun(encodeJson({ mode: "run", options: { ...plain, replica } }), undefined);
    assert.ok("refused" in run, replica);
  }
});

/** The frames whole in `bytes` (of either direction: no accepted set), and the bytes after. */
function splitFrames(
  bytes: Uint8Array,
): { frames: Array<{ type: number; id: number }>; rest: number } {
  const frames = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  while (at + 10 <= bytes.length && at + 10 + view.getUint32(at + 6) <= bytes.length) {
    frames.push({ type: view.getUint8(at), id: view.getUint32(at + 2) });
    at += 10 + view.getUint32(at + 6);
  }
  return { frames, rest: at };
}

Deno.test("a far end whose near end breaks the protocol during a run says why on its stderr", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/src`, { a: "1" });
    const toFar = new TransformStream<Uint8Array, Uint8Array>();
    const toNear = new TransformStream<Uint8Array, Uint8Array>();
    const said: string[] = [];
    const consoleError = console.error;
    console.error = (...words: unknown[]) => said.push(words.join(" "));
    try {
      const far = serveFarEnd({ input: toFar.readable, output: toNear.writable });
      const writer = toFar.writable.getWriter();
      const hello = (program: string) =>
        encodeFrame({
          type: FrameType.Hello,
          flags: 0,
          id: 0,
          payload: encodeHello({ ...PROTOCOL_VERSIONS, program, features: [] }),
        });
      const options = { ...pushOptions(`${dir}/src`, `${dir}/dst`), replica: `${dir}/dst` };
      // Not awaited: the far end answers each frame before it reads the next.
      const send = (bytes: Uint8Array) => void writer.write(bytes).catch(() => {});
      send(hello("near"));
      send(
        encodeFrame({
          type: FrameType.Run,
          flags: 0,
          id: 1,
          payload: encodeJson({ mode: "run", options }),
        }),
      );
      // Its Hello and Ok, then (roles swapped) its Hello as the client; ours; then its Open.
      const reader = toNear.readable.getReader();
      let seen = new Uint8Array();
      const readFrames = async (count: number) => {
        while (splitFrames(seen).frames.length < count) {
          const { value } = await reader.read();
          seen = new Uint8Array([...seen, ...value!]);
        }
      };
      await readFrames(3);
      send(hello("near"));
      await readFrames(4);
      const types = splitFrames(seen).frames.map((frame) => frame.type);
      assert.deepEqual(types, [FrameType.Hello, FrameType.Ok, FrameType.Hello, FrameType.Open]);
      // An Ok may never come compressed.
      const bad = encodeFrame({ type: FrameType.Ok, flags: 0, id: 1, payload: new Uint8Array() });
      bad[1] = 2;
      send(bad);
      const drained = (async () => {
        while (!(await reader.read()).done);
      })();
      assert.equal(await far, 1);
      await writer.close().catch(() => {});
      await drained;
    } finally {
      console.error = consoleError;
    }
    assert.deepEqual(said, [
      "treesync --serve: the near end broke the protocol: A compressed Ok frame",
    ]);
    assert.throws(() => Deno.lstatSync(`${dir}/dst/a`), Deno.errors.NotFound);
  });
});

Deno.test("a far end's Done is taken only in its own shape: counts whole and from 0, known exit codes, nothing more", () => {
  const summary = { ...emptySummary(false), copied: 3, bytesCopied: 10, durationMs: 5 };
  const done = (value: unknown) => decodeDone(encodeJson(value));
  assert.deepEqual(done({ summary: { ...summary, extra: "x".repeat(100), bytesSent: 1e15 } }), {
    summary,
  });
  assert.deepEqual(done({ exitCode: 3 }), { exitCode: 3 });
  assert.deepEqual(done({ failure: "usage", message: "no" }), { failure: "usage", message: "no" });
  // A long message is cut, not the outcome lost; a count a far end does not send is 0.
  const long = done({ failure: "refused", message: "x".repeat(5000) });
  assert.ok("message" in long && long.message.length === 4097 && long.message.endsWith("…"));
  assert.deepEqual(done({ summary: { copied: 1, failed: 0 } }), {
    summary: { ...emptySummary(false), copied: 1 },
  });
  for (
    const bad of [
      { summary: { ...summary, copied: -1 } },
      { summary: { ...summary, moved: 1.5 } },
      { summary: { ...summary, failed: "0" } },
      { summary: { ...summary, deleted: 2 ** 60 } },
      { summary: { ...summary, dryRun: 0 } },
      { summary: { copied: 1 } },
      { exitCode: 77 },
      { exitCode: "0" },
      { failure: "panic", message: "x" },
    ]
  ) {
    assert.throws(
      () => done(bad),
      /A Done frame of an unknown shape/,
      JSON.stringify(bad).slice(0, 80),
    );
  }
});
