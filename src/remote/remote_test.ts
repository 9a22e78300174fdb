/**
 * Tests of the remote groundwork: addresses and the remote shell's words, the frame layer
 * against well-behaved and hostile byte streams, the paths a server accepts, `--bwlimit` and
 * the pacer (on a clock of its own), the `-z` codec, and the test sshd.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  chooseRemoteShell,
  configuredOptions,
  farEndFailure,
  type Location,
  parseLocation,
  parseSshConfig,
  remoteCommand,
  splitRemoteShell,
  SSH_DEFAULTS,
  withBatchDefaults,
  withoutConfigFiles,
} from "./address.ts";
import {
  chooseVersion,
  decodeError,
  decodeHello,
  encodeError,
  encodeFrame,
  encodeHello,
  ErrorKind,
  type Frame,
  FrameDecoder,
  FrameError,
  FrameFlag,
  FrameType,
  FROM_CLIENT,
  HEADER_BYTES,
  MAX_PAYLOAD,
  PayloadReader,
  PayloadWriter,
} from "./frames.ts";
import { checkWirePath, wirePathProblem } from "./wirepath.ts";
import { compressChunk, decompressChunk, pacedStream, Pacer, parseRate } from "./pace.ts";
import { UsageError } from "../errors.ts";
import { sshdUnavailable, startSshd } from "./test_sshd.ts";
import { withTemp } from "../test_helpers.ts";
import { askSsh, sshConfigFor } from "./connect.ts";

Deno.test("parseLocation() tells remote from local by rsync's rule", () => {
  const cases: Array<[string, Location]> = [
    ["host:", { kind: "remote", host: "host", path: "." }],
    ["host:dir", { kind: "remote", host: "host", path: "dir" }],
    ["host:/srv/data", { kind: "remote", host: "host", path: "/srv/data" }],
    ["host:a:b", { kind: "remote", host: "host", path: "a:b" }],
    ["host:~/x", { kind: "remote", host: "host", path: "x" }],
    ["host:~", { kind: "remote", host: "host", path: "." }],
    ["host:~/", { kind: "remote", host: "host", path: "." }],
    ["host:~//a/b", { kind: "remote", host: "host", path: "a/b" }],
    ["host:x/~/y", { kind: "remote", host: "host", path: "x/~/y" }],
    ["user@host:x", { kind: "remote", user: "user", host: "host", path: "x" }],
    ["u@h@host:x", { kind: "remote", user: "u@h", host: "host", path: "x" }],
    ["[::1]:p", { kind: "remote", host: "::1", path: "p" }],
    ["[::1]:", { kind: "remote", host: "::1", path: "." }],
    ["root@[fe80::1%eth0]:/d", { kind: "remote", user: "root", host: "fe80::1%eth0", path: "/d" }],
    ["./a:b", { kind: "local", path: "./a:b" }],
    ["/x/a:b", { kind: "local", path: "/x/a:b" }],
    ["a/b:c", { kind: "local", path: "a/b:c" }],
    ["plain", { kind: "local", path: "plain" }],
    ["", { kind: "local", path: "" }],
    ["[::1]", { kind: "local", path: "[::1]" }],
    ["[::1]/x:y", { kind: "local", path: "[::1]/x:y" }],
    ["a[b]:c", { kind: "local", path: "a[b]:c" }],
    ["[]:x", { kind: "local", path: "[]:x" }],
  ];
  for (const [argument, expected] of cases) {
    assert.deepEqual(parseLocation(argument), expected, argument);
  }
});

Deno.test("parseLocation() refuses daemon forms, empty hosts and users, and hosts like options", () => {
  const cases: Array<[string, RegExp]> = [
    ["host::module", /rsync daemon syntax/],
    ["rsync://host/module", /daemon URLs/],
    [":foo", /no host before ':'.*\.\/:foo/],
    ["user@:foo", /no host/],
    ["@host:x", /user name/],
    ["-oProxyCommand=x:y", /may not start with '-'/],
    ["-l:x", /may not start with '-'/],
    ["host:~backup/x", /'~user' is not expanded.*absolute path/],
  ];
  for (const [argument, message] of cases) {
    assert.throws(() => parseLocation(argument), (error: Error) => {
      assert.ok(error instanceof UsageError, argument);
      assert.match(error.message, message, argument);
      return true;
    });
  }
});

Deno.test("splitRemoteShell() splits on spaces and honours quotes as rsync does", () => {
  const cases: Array<[string, string[]]> = [
    ["ssh", ["ssh"]],
    ["  ssh   -p 22  ", ["ssh", "-p", "22"]],
    ["ssh -o 'ProxyJump a b'", ["ssh", "-o", "ProxyJump a b"]],
    ['ssh -o "A B"', ["ssh", "-o", "A B"]],
    ["ssh -i 'my key'x", ["ssh", "-i", "my keyx"]],
    ["ssh a'b c'd", ["ssh", "ab cd"]],
    ["'it''s'", ["it's"]],
    ['"x""y"', ['x"y']],
    [`"it's"`, ["it's"]],
    [`'say "hi"'`, ['say "hi"']],
    ["ssh ''", ["ssh", ""]],
    // rsync leaves backslashes alone, and only spaces separate words.
    ["a\\ b", ["a\\", "b"]],
    ["a\\'b c'", ["a\\b c"]],
    ["a\tb", ["a\tb"]],
  ];
  for (const [command, expected] of cases) {
    assert.deepEqual(splitRemoteShell(command), expected, command);
  }
  assert.throws(() => splitRemoteShell("ssh 'abc"), /Missing closing ' in remote shell command/);
  assert.throws(() => splitRemoteShell('ssh "a'), /Missing closing "/);
  assert.throws(() => splitRemoteShell("   "), /empty/);
});

Deno.test("withBatchDefaults() adds BatchMode, ConnectTimeout and ServerAlive* to ssh unless the command sets them", () => {
  const all = SSH_DEFAULTS.flatMap(([name, value]) => ["-o", `${name}=${value}`]);
  const others = all.slice(2);
  const cases: Array<[string[], string[]]> = [
    [["ssh"], ["ssh", ...all]],
    [["/usr/bin/ssh", "-p", "22"], ["/usr/bin/ssh", "-p", "22", ...all]],
    [["ssh", "-o", "BatchMode=no"], ["ssh", "-o", "BatchMode=no", ...others]],
    [["ssh", "-obatchmode no"], ["ssh", "-obatchmode no", ...others]],
    [["ssh", "-vo", "BatchMode=no"], ["ssh", "-vo", "BatchMode=no", ...others]],
    // `-i BatchMode=x` is a key file's name, not an option.
    [["ssh", "-i", "-oBatchMode=no"], ["ssh", "-i", "-oBatchMode=no", ...all]],
    [["ssh", "-o", "BatchModeX=no"], ["ssh", "-o", "BatchModeX=no", ...all]],
    [
      ["ssh", "-o", "serveraliveinterval=0", "-oConnectTimeout 5"],
      [
        "ssh",
        "-o",
        "serveraliveinterval=0",
        "-oConnectTimeout 5",
        "-o",
        "BatchMode=yes",
        "-o",
        "ServerAliveCountMax=4",
      ],
    ],
    [["rsh"], ["rsh"]],
    [["docker", "exec", "-i", "box"], ["docker", "exec", "-i", "box"]],
  ];
  for (const [words, expected] of cases) {
    assert.deepEqual(withBatchDefaults(words), expected, words.join(" "));
  }
  assert.deepEqual(SSH_DEFAULTS.map(([name]) => name), [
    "BatchMode",
    "ConnectTimeout",
    "ServerAliveInterval",
    "ServerAliveCountMax",
  ]);
});

Deno.test("withBatchDefaults() leaves out what the user's ssh configuration sets, as ssh -G shows it", () => {
  const builtIn = parseSshConfig(
    ["batchmode no", "connecttimeout none", "serveraliveinterval 0", "serveralivecountmax 3", ""]
      .join("\n"),
  );
  const effective = parseSshConfig(
    [
      "batchmode no",
      "connecttimeout none",
      "serveraliveinterval 60",
      "serveralivecountmax 3",
      "serveraliveinterval 99",
    ].join("\n"),
  );
  assert.equal(effective.get("serveraliveinterval"), "60", "the first value is ssh's");
  const configured = configuredOptions(effective, builtIn);
  assert.deepEqual([...configured], [["serveraliveinterval", "60"]]);
  assert.deepEqual(withBatchDefaults(["ssh"], configured), [
    "ssh",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=30",
    "-o",
    "ServerAliveCountMax=4",
  ]);
  // A build whose default differs (Debian: 300 s under BatchMode) shows it in both answers.
  const debian = new Map([["serveraliveinterval", "300"]]);
  assert.deepEqual([...configuredOptions(debian, debian)], []);
  // The command's own -o still wins, and other shells are left alone.
  const set = withBatchDefaults(["ssh", "-o", "ConnectTimeout=2"], new Map());
  assert.equal(set.filter((word) => word.startsWith("ConnectTimeout")).length, 1);
  assert.deepEqual(withBatchDefaults(["rsh"], new Map()), ["rsh"]);
});

Deno.test("withoutConfigFiles() drops every -F and reads /dev/null instead, keeping the rest", () => {
  const cases: Array<[string[], string[]]> = [
    [["ssh"], ["ssh", "-F", "/dev/null"]],
    [["ssh", "-F", "cfg", "-p", "22"], ["ssh", "-F", "/dev/null", "-p", "22"]],
    [["ssh", "-Fcfg", "-v"], ["ssh", "-F", "/dev/null", "-v"]],
    [["ssh", "-vF", "cfg", "-o", "X=1"], ["ssh", "-F", "/dev/null", "-v", "-o", "X=1"]],
    [["ssh", "-i", "-F", "-4"], ["ssh", "-F", "/dev/null", "-i", "-F", "-4"]],
    [["/usr/bin/ssh", "-p2222", "host"], ["/usr/bin/ssh", "-F", "/dev/null", "-p2222", "host"]],
  ];
  for (const [words, expected] of cases) {
    assert.deepEqual(withoutConfigFiles(words), expected, words.join(" "));
  }
});

Deno.test("remoteCommand() puts -l USER, the host and the remote program after the shell", () => {
  const remote = parseLocation("backup@store:/srv/replica");
  assert.ok(remote.kind === "remote");
  assert.deepEqual(remoteCommand({ rsh: ["ssh", "-p", "2222"], remote }), [
    "ssh",
    "-p",
    "2222",
    ...SSH_DEFAULTS.flatMap(([name, value]) => ["-o", `${name}=${value}`]),
    "-l",
    "backup",
    "store",
    "treesync --serve",
  ]);
  const plain = parseLocation("[::1]:x");
  assert.ok(plain.kind === "remote");
  assert.deepEqual(
    remoteCommand({ rsh: ["rsh"], remote: plain, remoteTreesync: "/opt/bin/treesync" }),
    ["rsh", "::1", "/opt/bin/treesync --serve"],
  );
  assert.equal(chooseRemoteShell(undefined, undefined), "ssh");
  assert.equal(chooseRemoteShell(undefined, ""), "ssh");
  assert.equal(chooseRemoteShell(undefined, "ssh -p 2"), "ssh -p 2");
  assert.equal(chooseRemoteShell("ssh -4", "ssh -p 2"), "ssh -4");
});

Deno.test("farEndFailure() says what to install or why the login failed, in one line", () => {
  const base = { host: "backup@store", remoteTreesync: "treesync" };
  const cases: Array<[number, string, string]> = [
    [
      127,
      "bash: line 1: treesync: command not found\n",
      "Cannot start 'treesync --serve' on backup@store (bash: line 1: treesync: command not found):" +
      " install treesync there, or name it with --remote-treesync",
    ],
    [
      1,
      "sh: 1: /opt/treesync: not found",
      "Cannot start 'treesync --serve' on backup@store (sh: 1: /opt/treesync: not found):" +
      " install treesync there, or name it with --remote-treesync",
    ],
    [
      255,
      "Warning: x\nbackup@store: Permission denied (publickey).\n",
      "Cannot log in to backup@store: backup@store: Permission denied (publickey). (ssh runs with" +
      " BatchMode=yes and asks nothing: use a key from ssh-agent and a known host key, or -e" +
      " 'ssh -o BatchMode=no')",
    ],
    [
      255,
      "ssh: Could not resolve hostname store: No such file or directory",
      "Cannot log in to backup@store: ssh: Could not resolve hostname store: No such file or" +
      " directory (ssh runs with BatchMode=yes and asks nothing: use a key from ssh-agent and a" +
      " known host key, or -e 'ssh -o BatchMode=no')",
    ],
    [3, "", "The far end on backup@store stopped before it greeted (exit 3): no message"],
  ];
  for (const [code, stderr, message] of cases) {
    const line = farEndFailure({ ...base, code, stderr });
    assert.equal(line, message);
    assert.ok(!line.includes("\n"));
  }
});

/** A small deterministic generator, so that a failing chunking can be replayed. */
function randomNumbers(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 0x100000000;
  };
}

/** Cuts bytes into chunks of random sizes (1 to `largest`). */
function chunked(bytes: Uint8Array, random: () => number, largest: number): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < bytes.length;) {
    const size = 1 + Math.floor(random() * largest);
    chunks.push(bytes.subarray(offset, offset + size));
    offset += size;
  }
  return chunks;
}

/** Frames as one stream of bytes. */
function streamOf(frames: Frame[]): Uint8Array {
  const parts = frames.map((frame) => encodeFrame(frame));
  const bytes = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.length;
  }
  return bytes;
}

/** Random bytes, quickly. */
function randomBytes(size: number, random: () => number): Uint8Array {
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < size; i += 4) view.setUint32(Math.min(i, size - 4), random() * 0x100000000);
  return bytes;
}

/** A greeting and frames of every size class: empty, small, around a header, the largest. */
function sampleFrames(random: () => number, largest: number): Frame[] {
  const hello = encodeHello({ lowest: 1, highest: 1, program: "0.1.0", features: [] });
  const frames: Frame[] = [{ type: FrameType.Hello, flags: 0, id: 0, payload: hello }];
  const sizes = [0, 1, 9, 10, 11, 100, 4096, 70_000, largest];
  for (const [index, size] of sizes.entries()) {
    const payload = size < 4 ? new Uint8Array(size).fill(size) : randomBytes(size, random);
    const flags = index % 2 === 0 ? FrameFlag.More : FrameFlag.Compressed;
    frames.push({ type: FrameType.Data, flags, id: 0xffffffff - index, payload });
  }
  frames.push({ type: FrameType.End, flags: 0, id: 0, payload: new Uint8Array() });
  return frames;
}

Deno.test("FrameDecoder gives back every frame whatever the chunking", () => {
  for (const seed of [1, 2, 3]) {
    const random = randomNumbers(seed);
    for (const largest of [1, 7, 4096, 300_000, 2 * MAX_PAYLOAD]) {
      // One byte at a time is slow: without the largest frame, and once.
      if (largest === 1 && seed > 1) continue;
      const frames = sampleFrames(random, largest === 1 ? 5_000 : MAX_PAYLOAD);
      const bytes = streamOf(frames);
      const decoder = new FrameDecoder();
      const decoded: Frame[] = [];
      for (const chunk of chunked(bytes, random, largest)) {
        decoded.push(...decoder.push(chunk));
        assert.ok(decoder.buffered < HEADER_BYTES + MAX_PAYLOAD);
      }
      decoder.end();
      assert.equal(decoded.length, frames.length, `seed ${seed}, chunks up to ${largest}`);
      for (const [index, frame] of frames.entries()) {
        const got = decoded[index]!;
        assert.deepEqual(
          { type: got.type, flags: got.flags, id: got.id, length: got.payload.length },
          { type: frame.type, flags: frame.flags, id: frame.id, length: frame.payload.length },
        );
        assert.ok(Buffer.from(got.payload).equals(Buffer.from(frame.payload)), `frame ${index}`);
      }
    }
  }
});

/** A header with any fields, valid or not. */
function header(type: number, flags: number, id: number, length: number): Uint8Array {
  const bytes = new Uint8Array(HEADER_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, type);
  view.setUint8(1, flags);
  view.setUint32(2, id);
  view.setUint32(6, length);
  return bytes;
}

const GREETING = encodeFrame({
  type: FrameType.Hello,
  flags: 0,
  id: 0,
  payload: encodeHello({ lowest: 1, highest: 1, program: "0.1.0", features: [] }),
});

/** A decoder past the greeting. */
function greetedDecoder(accept?: ReadonlySet<number>): FrameDecoder {
  const decoder = new FrameDecoder(accept === undefined ? {} : { accept });
  assert.equal(decoder.push(GREETING).length, 1);
  return decoder;
}

Deno.test("FrameDecoder refuses hostile streams before holding their bytes", () => {
  const huge = greetedDecoder();
  assert.throws(() => huge.push(header(FrameType.Data, 0, 1, 0xffffffff)), /announces 4294967295/);
  assert.equal(huge.buffered, HEADER_BYTES);
  const overCap = greetedDecoder();
  assert.throws(() => overCap.push(header(FrameType.Data, 0, 1, MAX_PAYLOAD + 1)), FrameError);
  const unknown = greetedDecoder();
  assert.throws(() => unknown.push(header(0x7f, 0, 1, 0)), /Unknown frame type 0x7f/);
  const flags = greetedDecoder();
  assert.throws(() => flags.push(header(FrameType.Data, 0x80, 1, 0)), /Unknown flags 128/);
  const direction = greetedDecoder(FROM_CLIENT);
  assert.throws(() => direction.push(header(FrameType.Listing, 0, 1, 0)), /not expected/);
  const small = new FrameDecoder({ maxPayload: 16 });
  small.push(GREETING.subarray(0, HEADER_BYTES - 1));
  assert.throws(() => small.push(GREETING.subarray(HEADER_BYTES - 1)), /at most 16/);
});

Deno.test("FrameDecoder says when a stream ends inside a frame", () => {
  const inHeader = greetedDecoder();
  inHeader.push(header(FrameType.Data, 0, 1, 5).subarray(0, 4));
  assert.throws(() => inHeader.end(), /ended inside a frame header/);
  const inPayload = greetedDecoder();
  inPayload.push(header(FrameType.Data, 0, 1, 5));
  inPayload.push(new Uint8Array(4));
  assert.equal(inPayload.buffered, 4);
  assert.throws(() => inPayload.end(), /ended inside Data/);
  greetedDecoder().end();
  new FrameDecoder().end();
});

Deno.test("FrameDecoder names what came instead of the greeting", () => {
  const junk = new TextEncoder().encode("Welcome to the server\n\x01\x02");
  assert.throws(
    () => new FrameDecoder().push(junk),
    /did not greet as treesync: it sent 'Welcome to the server\\x0a\\x01\\x02' first/,
  );
  // Once broken, it stays broken: a greeting after the junk is not taken for one.
  const broken = new FrameDecoder();
  assert.throws(() => broken.push(junk), /did not greet/);
  assert.throws(() => broken.push(GREETING), /did not greet/);
});

Deno.test("Hello carries the versions, and chooseVersion() says what to install", () => {
  const ours = { lowest: 2, highest: 3, program: "0.3.0", features: ["zstd", "x"] };
  assert.deepEqual(decodeHello(encodeHello(ours)), ours);
  const peer = (lowest: number, highest: number, program: string) => ({
    lowest,
    highest,
    program,
    features: [],
  });
  assert.equal(chooseVersion(ours, peer(1, 2, "0.2.0"), "h"), 2);
  assert.equal(chooseVersion(ours, peer(3, 9, "0.9.0"), "h"), 3);
  assert.throws(
    () => chooseVersion(ours, peer(1, 1, "0.1.0"), "store"),
    (error: Error) => {
      assert.ok(error instanceof UsageError);
      assert.equal(
        error.message,
        "store runs treesync 0.1.0 (protocol 1), too old for this treesync 0.3.0 (protocol 2–3):" +
          " install treesync 0.3.0 there",
      );
      return true;
    },
  );
  assert.throws(
    () => chooseVersion(ours, peer(4, 5, "1.0.0"), "store"),
    /too new for this treesync 0\.3\.0 \(protocol 2–3\): install treesync 1\.0\.0 here, or 0\.3\.0 there/,
  );
  const wrongMagic = encodeHello(ours);
  wrongMagic[0] = 0x54;
  assert.throws(() => decodeHello(wrongMagic), /not treesync's/);
  assert.throws(() => decodeHello(encodeHello(ours).subarray(0, 11)), /ended early/);
  const backwards = new PayloadWriter();
  for (const byte of new TextEncoder().encode("treesync")) backwards.u8(byte);
  assert.throws(() => decodeHello(backwards.u16(3).u16(2).string("x").u8(0).finish()), /malformed/);
  const tooMany = new PayloadWriter();
  for (const byte of new TextEncoder().encode("treesync")) tooMany.u8(byte);
  tooMany.u16(1).u16(1).string("x").u8(200);
  for (let i = 0; i < 200; i++) tooMany.string("f");
  assert.throws(() => decodeHello(tooMany.finish()), FrameError);
});

Deno.test("PayloadReader reads what PayloadWriter wrote and refuses to read past the end", () => {
  const payload = new PayloadWriter().u8(7).u16(513).u32(0xfeedface).f64(1.5e12)
    .string("a/é").bytes(new Uint8Array([1, 2])).finish();
  const reader = new PayloadReader(payload);
  assert.deepEqual(
    [reader.u8(), reader.u16(), reader.u32(), reader.f64(), reader.string(), [...reader.bytes()]],
    [7, 513, 0xfeedface, 1.5e12, "a/é", [1, 2]],
  );
  reader.done();
  const lying = new PayloadReader(new PayloadWriter().u32(1000).finish());
  assert.throws(() => lying.bytes(), /ended early: 1000 more bytes/);
  const notUtf8 = new PayloadReader(
    new PayloadWriter().bytes(new Uint8Array([0x61, 0xff])).finish(),
  );
  assert.throws(() => notUtf8.string(), /not UTF-8/);
  const extra = new PayloadReader(new Uint8Array(3));
  extra.u8();
  assert.throws(() => extra.done(), /2 bytes too many/);
});

Deno.test("PayloadWriter grows past its first buffer without losing a field", () => {
  // Each field used to be written into the buffer from before it grew.
  const writer = new PayloadWriter();
  for (let i = 0; i < 100; i++) writer.u8(i % 256).u16(i).u32(i * 7).f64(i / 3).string(`n${i}`);
  writer.bytes(new Uint8Array(1000).fill(9));
  const reader = new PayloadReader(writer.finish());
  for (let i = 0; i < 100; i++) {
    assert.deepEqual(
      [reader.u8(), reader.u16(), reader.u32(), reader.f64(), reader.string()],
      [i % 256, i, i * 7, i / 3, `n${i}`],
    );
  }
  assert.deepEqual(reader.bytes(), new Uint8Array(1000).fill(9));
  reader.done();
});

Deno.test("Error payloads carry a known kind and one escaped line", () => {
  const report = { kind: ErrorKind.Refused, message: "Refused path 'a/../b'" };
  assert.deepEqual(decodeError(encodeError(report)), report);
  const hostile = encodeError({ kind: ErrorKind.Failed, message: "line\n\x1b[2Jclear" });
  assert.equal(decodeError(hostile).message, "line\\x0a\\x1b[2Jclear");
  const unknown = encodeError({ kind: 99, message: "x" });
  assert.throws(() => decodeError(unknown), /Unknown error kind 99/);
  const long = new PayloadWriter().u8(ErrorKind.Failed).string("x".repeat(1001)).finish();
  assert.throws(() => decodeError(long), /too long/);
  assert.equal(encodeError({ kind: 1, message: "y".repeat(5000) }).length, 1 + 4 + 1000);
});

Deno.test("encodeFrame() refuses what the decoder would refuse", () => {
  const payload = new Uint8Array(0);
  assert.throws(() => encodeFrame({ type: 0x7f, flags: 0, id: 1, payload }), /type 0x7f/);
  assert.throws(() => encodeFrame({ type: FrameType.Ok, flags: 4, id: 1, payload }), /flags/);
  assert.throws(() => encodeFrame({ type: FrameType.Ok, flags: 0, id: -1, payload }), /id/);
  assert.throws(
    () => encodeFrame({ type: FrameType.Data, flags: 0, id: 1, payload: new Uint8Array(17) }, 16),
    /17-byte payload/,
  );
});

Deno.test("wirePathProblem() lets through only relative paths inside the tree", () => {
  const cases: Array<[string, string | null]> = [
    ["", null],
    ["a", null],
    ["a/b/c.txt", null],
    ["a b/ü/\\x", null],
    ["...", null],
    ["a/..b/c..", null],
    ["/etc/passwd", "it is absolute"],
    ["/", "it is absolute"],
    ["..", "it has a '..' name"],
    ["a/../../b", "it has a '..' name"],
    ["a/..", "it has a '..' name"],
    [".", "it has a '.' name"],
    ["a/./b", "it has a '.' name"],
    ["a//b", "it has an empty name (a doubled or trailing '/')"],
    ["a/", "it has an empty name (a doubled or trailing '/')"],
    ["a\0b", "it contains a NUL byte"],
    ["x".repeat(256), "it has a name longer than 255 bytes"],
    ["é".repeat(128), "it has a name longer than 255 bytes"],
    [`${"x/".repeat(2048)}x`, "it is longer than 4096 bytes"],
  ];
  for (const [path, problem] of cases) {
    assert.equal(wirePathProblem(path), problem, JSON.stringify(path).slice(0, 40));
  }
  assert.equal(checkWirePath("a/b"), "a/b");
  assert.throws(() => checkWirePath("a/\0/../x"), /Refused path 'a\/\\u0000\/..\/x': .*NUL/);
});

Deno.test("parseRate() reads --bwlimit as rsync does (K = 1024, KB = 1000, no unit = K)", () => {
  const cases: Array<[string, number]> = [
    ["500K", 512_000],
    ["500k", 512_000],
    ["20M", 20 * 1024 * 1024],
    ["1.5M", 1_572_864],
    ["1.5MB", 1_500_000],
    ["2MiB", 2_097_152],
    ["1G", 1024 ** 3],
    ["1000", 1_024_000],
    ["1.5", 1536],
    ["4096B", 4096],
    ["64kb", 64_000],
    ["0", 0],
    ["0K", 0],
    [".5M", 524_288],
  ];
  for (const [text, bytes] of cases) assert.equal(parseRate(text), bytes, text);
  for (const text of ["", "fast", "5X", "5 K", "-1K", "1e3", "5KX", "5ib", "5Bb", "1,5M"]) {
    assert.throws(() => parseRate(text), /Invalid --bwlimit .*500K, 20M or 1\.5M/, text);
  }
  assert.throws(() => parseRate("100B"), /the lowest limit is 1K \(or 0 for none\)/);
  assert.throws(() => parseRate("99999999999T"), /too large/);
});

/** A clock that moves only when the pacer sleeps on it. */
function fakeClock() {
  const clock = { now: 0, slept: 0 };
  return {
    clock,
    now: () => clock.now,
    sleep: (milliseconds: number) => {
      clock.now += milliseconds;
      clock.slept += milliseconds;
      return Promise.resolve();
    },
  };
}

Deno.test("Pacer lets a burst go at once and then the rate, on an injected clock", async () => {
  const { clock, now, sleep } = fakeClock();
  const pacer = new Pacer(10_000, { burst: 2_000, now, sleep });
  assert.equal(pacer.reserve(2_000), 0);
  assert.equal(pacer.reserve(1_000), 100);
  clock.now += 100;
  assert.equal(pacer.reserve(0), 0);
  clock.now += 10_000; // idle: the bucket refills to the burst, no further
  assert.equal(pacer.reserve(2_000), 0);
  assert.equal(pacer.reserve(500), 50);
  await pacer.pace(1_000);
  assert.equal(clock.slept, 150);
  assert.equal(new Pacer(8_000_000).burst, 1_000_000);
  assert.equal(new Pacer(2_000).burst, 1024);
  assert.throws(() => new Pacer(0), RangeError);
});

Deno.test("pacedStream() passes every byte in burst-sized pieces at the rate", async () => {
  const { clock, now, sleep } = fakeClock();
  const rate = 100 * 1024;
  const pacer = new Pacer(rate, { now, sleep });
  const input = new Uint8Array(1024 * 1024).map((_, index) => index % 251);
  const pieces: Array<{ at: number; length: number }> = [];
  let sent = 0;
  const sink = new WritableStream<Uint8Array>({
    write(piece) {
      sent += piece.length;
      pieces.push({ at: clock.now, length: piece.length });
      // Over any stretch from the start: at most the burst plus the rate times the time.
      assert.ok(sent <= pacer.burst + (rate * clock.now) / 1000 + 1e-6);
    },
  });
  const source = ReadableStream.from(chunked(input, randomNumbers(9), 300_000));
  await source.pipeThrough(pacedStream(pacer)).pipeTo(sink);
  assert.equal(sent, input.length);
  assert.ok(pieces.every((piece) => piece.length <= pacer.burst));
  const expected = ((input.length - pacer.burst) / rate) * 1000;
  assert.ok(Math.abs(clock.slept - expected) < 1e-6, `${clock.slept} ms, not ${expected}`);
});

Deno.test("compressChunk() and decompressChunk() round-trip and bound what they unpack", () => {
  const text = new TextEncoder().encode("treesync mirrors folders. ".repeat(10_000));
  const packed = compressChunk(text);
  assert.ok(packed.length < text.length / 20);
  assert.ok(Buffer.from(decompressChunk(packed, text.length)).equals(Buffer.from(text)));
  assert.throws(() => decompressChunk(packed, text.length - 1), RangeError);
});

const noSshd = sshdUnavailable();
if (noSshd !== null) console.warn(`The sshd tests are ignored here: ${noSshd}`);

Deno.test({
  name: "startSshd() serves key logins on 127.0.0.1 that ssh reaches without a prompt",
  ignore: noSshd !== null,
  async fn() {
    const sshd = await startSshd();
    try {
      const ssh = async (args: string[]) => {
        const [program, ...rest] = args;
        const output = await new Deno.Command(program!, { args: rest, stdin: "null" }).output();
        const stderr = new TextDecoder().decode(output.stderr);
        assert.equal(output.code, 0, stderr);
        return new TextDecoder().decode(output.stdout);
      };
      assert.equal(await ssh([...sshd.rsh, sshd.host, "echo", "ok"]), "ok\n");
      // The far end's command line as remoteCommand() builds it, a user included.
      const user = new TextDecoder().decode(
        (await new Deno.Command("id", { args: ["-un"] }).output()).stdout,
      ).trim();
      const remote = parseLocation(`${user}@${sshd.host}:tree`);
      assert.ok(remote.kind === "remote");
      const words = remoteCommand({ rsh: sshd.rsh, remote, remoteTreesync: "echo treesync" });
      assert.equal(await ssh(words), "treesync --serve\n");
    } finally {
      await sshd.stop();
    }
    await assert.rejects(Deno.lstat(sshd.folder), Deno.errors.NotFound);
  },
});

/** Runs a command to its end without input: exit code and stderr. */
async function runQuietly(words: string[]): Promise<{ code: number; stderr: string }> {
  const [program, ...args] = words;
  const output = await new Deno.Command(program!, { args, stdin: "null", stdout: "null" }).output();
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
}

Deno.test({
  name: "farEndFailure() explains a far end without treesync and a refused key, over real ssh",
  ignore: noSshd !== null,
  async fn() {
    const sshd = await startSshd();
    try {
      const remote = parseLocation(`${sshd.host}:tree`);
      assert.ok(remote.kind === "remote");
      const remoteTreesync = "treesync-not-installed";
      const missing = await runQuietly(remoteCommand({ rsh: sshd.rsh, remote, remoteTreesync }));
      assert.equal(missing.code, 127, missing.stderr);
      assert.match(
        farEndFailure({ host: sshd.host, remoteTreesync, ...missing }),
        /^Cannot start 'treesync-not-installed --serve' on 127\.0\.0\.1 \(.*not found\): install/,
      );
      // The host key is not an authorized client key: ssh fails at once, it does not ask.
      const wrongKey = sshd.rsh.map((word) =>
        word.endsWith("/client_key") ? `${sshd.folder}/host_key` : word
      );
      const refused = await runQuietly(remoteCommand({ rsh: wrongKey, remote }));
      assert.equal(refused.code, 255, refused.stderr);
      assert.match(
        farEndFailure({ host: sshd.host, remoteTreesync: "treesync", ...refused }),
        /^Cannot log in to 127\.0\.0\.1: .*Permission denied \(publickey\)/,
      );
    } finally {
      await sshd.stop();
    }
    await assert.rejects(Deno.lstat(sshd.folder), Deno.errors.NotFound);
  },
});

const sshClient = (() => {
  try {
    return new Deno.Command("ssh", { args: ["-V"], stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "sshConfigFor() asks ssh -G what the user's configuration sets for that host",
  ignore: !sshClient,
  async fn() {
    await withTemp(async (dir) => {
      const config = `${dir}/config`;
      Deno.writeTextFileSync(
        config,
        "Host backup.example\n  ServerAliveInterval 60\n  ConnectTimeout 5\n",
      );
      const remote = farHost("backup@backup.example:/backup");
      const configured = await sshConfigFor({ rsh: ["ssh", "-F", config], remote });
      assert.ok(configured !== undefined);
      assert.deepEqual([...configured].sort(), [
        ["connecttimeout", "5"],
        ["serveraliveinterval", "60"],
      ]);
      const words = remoteCommand({ rsh: ["ssh", "-F", config], remote, configured });
      assert.deepEqual(words.filter((word) => /^[A-Z][a-zA-Z]+=/.test(word)), [
        "BatchMode=yes",
        "ServerAliveCountMax=4",
      ]);
      // Another host of the same configuration gets every default.
      const other = farHost("elsewhere.example:/x");
      const plain = await sshConfigFor({ rsh: ["ssh", "-F", config], remote: other });
      assert.deepEqual(
        remoteCommand({ rsh: ["ssh"], remote: other, configured: plain! }).filter((word) =>
          /^[A-Z][a-zA-Z]+=/.test(word)
        ),
        SSH_DEFAULTS.map(([name, value]) => `${name}=${value}`),
      );
      // No answer (a configuration ssh cannot read, another shell): the defaults as before.
      assert.equal(await sshConfigFor({ rsh: ["ssh", "-F", `${dir}/none`], remote }), undefined);
      assert.equal(await sshConfigFor({ rsh: ["rsh"], remote }), undefined);
    });
  },
});

Deno.test({
  name: "sshConfigFor() takes a default that follows BatchMode for no setting of the user's",
  ignore: !sshClient,
  async fn() {
    await withTemp(async (dir) => {
      const config = `${dir}/config`;
      Deno.writeTextFileSync(config, "Host *\n  BatchMode yes\n");
      const remote = farHost("backup.example:/backup");
      const configured = await sshConfigFor({ rsh: ["ssh", "-F", config], remote });
      assert.ok(configured !== undefined);
      // Whatever this build's keepalive default under BatchMode is, it is not the user's.
      assert.deepEqual([...configured], []);
      const words = remoteCommand({ rsh: ["ssh", "-F", config], remote, configured });
      assert.ok(words.includes("ServerAliveInterval=15"), words.join(" "));
    });
  },
});

Deno.test("askSsh() gives up on an ssh that does not answer in time, even when what it started holds its output", async () => {
  await withTemp(async (dir) => {
    const remote = farHost("backup.example:/backup");
    const pids = `${dir}/pids`;
    const fake = (name: string, body: string) => {
      Deno.writeTextFileSync(`${dir}/${name}`, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
      return `${dir}/${name}`;
    };
    // Still running; and gone at once, leaving a child of its own holding the output.
    const running = fake("running", `sleep 20 & echo $! >> ${pids}\nexec sleep 20`);
    const gone = fake("gone", `sleep 20 & echo $! >> ${pids}\necho "batchmode no"`);
    assert.equal(await askSsh([running], remote, 200), undefined);
    assert.equal(await askSsh([gone], remote, 200), undefined);
    // -G comes first, so no word of the command can take it as its value.
    const args = `${dir}/args`;
    const echo = fake("echo", `echo "$@" > ${args}\necho "batchmode yes"`);
    const answer = await askSsh([echo, "-p", "22", "-i"], remote, 5_000);
    assert.equal(answer?.get("batchmode"), "yes");
    assert.equal(Deno.readTextFileSync(args), "-G -p 22 -i backup.example\n");
    for (const pid of Deno.readTextFileSync(pids).trim().split("\n")) {
      try {
        Deno.kill(Number(pid), "SIGKILL");
      } catch {
        // Ended already.
      }
    }
  });
});

Deno.test("sshConfigFor() asks nothing of an ssh command that sets every default itself", async () => {
  await withTemp(async (dir) => {
    const remote = farHost("backup.example:/backup");
    const asked = `${dir}/asked`;
    Deno.mkdirSync(`${dir}/bin`);
    Deno.writeTextFileSync(`${dir}/bin/ssh`, `#!/bin/sh\necho "$@" >> ${asked}\n`, {
      mode: 0o755,
    });
    const all = SSH_DEFAULTS.flatMap(([name]) => ["-o", `${name}=1`]);
    assert.equal(await sshConfigFor({ rsh: [`${dir}/bin/ssh`, ...all], remote }), undefined);
    assert.equal(existsNow(asked), false);
    // One left to add: ssh is asked (twice: with and without the configuration files).
    await sshConfigFor({ rsh: [`${dir}/bin/ssh`, ...all.slice(2)], remote });
    assert.equal(Deno.readTextFileSync(asked).trim().split("\n").length, 2);
  });
});

function existsNow(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** A remote side's location, as the command line would give it. */
function farHost(text: string): Extract<Location, { kind: "remote" }> {
  const location = parseLocation(text);
  assert.ok(location.kind === "remote", text);
  return location;
}
