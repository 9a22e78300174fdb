/**
 * Pushes over ssh, run as the real CLI against the test sshd: the far end (this checkout's
 * `sync.ts --serve`, started by `--remote-treesync`) runs the engine over its replica and reads
 * the near source through the session. Also `--verify host:PATH`, `--restore` from a far
 * replica, a far end confined by `--root`, a hostile path, a connection killed mid-copy, and
 * `--watch` pushing a change.
 *
 * @module
 */

import { deepStrictEqual, match, ok } from "node:assert/strict";
import {
  assertExit,
  CHECKOUT,
  cli,
  type CliResult,
  holdOpen,
  jsonLine,
  readTree,
  RunningCli,
  setMtime,
  waitFor,
  writeTree,
} from "../test_helpers.ts";
import { type TestSshd } from "./test_sshd.ts";
import { FAR_TREESYNC, sshdTest, WITH_PATH } from "./test_remote.ts";

/** `-e` and `--remote-treesync` for the test sshd. */
function remoteFlags(sshd: TestSshd, far = FAR_TREESYNC): string[] {
  return ["-e", sshd.rsh.join(" "), "--remote-treesync", far];
}

/** Runs the CLI with the test sshd's flags, then `args`. */
function viaSsh(sshd: TestSshd, args: string[], far = FAR_TREESYNC): Promise<CliResult> {
  return cli([...remoteFlags(sshd, far), ...args], WITH_PATH);
}

/** Lines of a text, without empty ones. */
function lines(text: string): string[] {
  return text.split("\n").filter((line) => line !== "");
}

/** A tree with some bulk: 64 files of 16 KiB in a folder, and small things around it. */
function bulkyTree(root: string): void {
  const bulk = Object.fromEntries(
    Array.from({ length: 64 }, (_, i) => [`part-${i}.dat`, `${i}`.repeat(16 * 1024)]),
  );
  writeTree(root, { "a.txt": "hello", data: bulk, empty: {}, link: { link: "a.txt" } });
  Deno.chmodSync(`${root}/a.txt`, 0o640);
}

sshdTest(
  "a push copies the tree exactly; a no-op and a folder rename send almost nothing",
  async (sshd, dir) => {
    bulkyTree(`${dir}/s`);
    const target = `127.0.0.1:${dir}/r`;
    const first = await viaSsh(sshd, ["--json", `${dir}/s`, target]);
    assertExit(first, 0);
    deepStrictEqual(readTree(`${dir}/r`), readTree(`${dir}/s`));
    deepStrictEqual(Deno.statSync(`${dir}/r/a.txt`).mode! & 0o777, 0o640);
    const copied = jsonLine(first);
    deepStrictEqual([copied.copied, copied.failed], [66, 0]);
    ok(Number(copied.bytesSent) > 64 * 16 * 1024, first.stdout);

    const noop = await viaSsh(sshd, ["--json", `${dir}/s`, target]);
    assertExit(noop, 0);
    const still = jsonLine(noop);
    deepStrictEqual([still.copied, still.updated, still.deleted, still.moved], [0, 0, 0, 0]);
    ok(Number(still.bytesSent) < 32 * 1024, noop.stdout);

    const inode = Deno.statSync(`${dir}/r/data/part-0.dat`).ino;
    Deno.renameSync(`${dir}/s/data`, `${dir}/s/renamed`);
    const rename = await viaSsh(sshd, ["--json", "-v", `${dir}/s`, target]);
    assertExit(rename, 0);
    match(rename.stderr, /^move data\/ -> renamed\/$/m);
    const moved = jsonLine(rename);
    deepStrictEqual([moved.copied, moved.moved], [0, 1]);
    // The folder is renamed on the far end: no file data crosses the wire (1 % of it at most).
    ok(Number(moved.bytesSent) < 64 * 16 * 1024 / 100, rename.stdout);
    deepStrictEqual(Deno.statSync(`${dir}/r/renamed/part-0.dat`).ino, inode);
    deepStrictEqual(readTree(`${dir}/r`), readTree(`${dir}/s`));
  },
);

sshdTest(
  "--verify host:PATH hashes on the far end and names a damaged file; no file data travels",
  async (sshd, dir) => {
    bulkyTree(`${dir}/s`);
    assertExit(await viaSsh(sshd, [`${dir}/s`, `127.0.0.1:${dir}/r`]), 0);
    assertExit(await viaSsh(sshd, ["--verify", `127.0.0.1:${dir}/r`]), 0);
    // Damage that keeps size and mtime: only the hash can see it.
    const damaged = `${dir}/r/data/part-7.dat`;
    const mtime = Deno.statSync(damaged).mtime!.getTime();
    Deno.writeTextFileSync(damaged, "X".repeat(16 * 1024));
    setMtime(damaged, mtime);
    // And a file whose size changed: its advice must name the replica with its host, since
    // the bare far path, run here, would mirror into a folder of this host.
    Deno.writeTextFileSync(`${dir}/r/data/part-8.dat`, "short");
    const verify = await viaSsh(sshd, ["--verify", `127.0.0.1:${dir}/r`]);
    assertExit(verify, 1);
    deepStrictEqual(lines(verify.stdout), [
      "mismatch data/part-7.dat",
      "changed data/part-8.dat",
    ]);
    match(verify.stderr, /verify: 64 files checked, 1 mismatched, 1 changed since the record/);
    const advice = `run 'treesync SOURCE 127.0.0.1:${dir}/r' to check them`;
    ok(verify.stderr.includes(advice), verify.stderr);
  },
);

sshdTest(
  "--restore from a far replica brings a lost file back, and keeps a changed one",
  async (sshd, dir) => {
    bulkyTree(`${dir}/s`);
    assertExit(await viaSsh(sshd, [`${dir}/s`, `127.0.0.1:${dir}/r`]), 0);
    Deno.removeSync(`${dir}/s/data/part-3.dat`);
    Deno.writeTextFileSync(`${dir}/s/a.txt`, "mine now");
    const restore = await viaSsh(sshd, ["--restore", `${dir}/s`, `127.0.0.1:${dir}/r`]);
    // A source file changed since the last sync is kept, and said so (exit 1), as locally.
    assertExit(restore, 1);
    match(restore.stderr, /^error: a\.txt: Kept: .*--overwrite-newer/m);
    deepStrictEqual(Deno.readTextFileSync(`${dir}/s/data/part-3.dat`), "3".repeat(16 * 1024));
    deepStrictEqual(Deno.readTextFileSync(`${dir}/s/a.txt`), "mine now");
  },
);

sshdTest(
  "a far end confined by --serve --root refuses a push outside it: exit 2, one line, nothing made",
  async (sshd, dir) => {
    writeTree(`${dir}/s`, { a: "1" });
    Deno.mkdirSync(`${dir}/allowed`);
    const far = `${FAR_TREESYNC} --root ${dir}/allowed`;
    const outside = await viaSsh(sshd, [`${dir}/s`, `127.0.0.1:${dir}/elsewhere`], far);
    assertExit(outside, 2);
    deepStrictEqual(lines(outside.stderr).length, 1, outside.stderr);
    match(outside.stderr, /refused the run: .*outside the served root/);
    deepStrictEqual(readTree(dir), { s: { a: "1" }, allowed: {} });
    assertExit(await viaSsh(sshd, [`${dir}/s`, `127.0.0.1:${dir}/allowed/r`], far), 0);
    deepStrictEqual(readTree(`${dir}/allowed/r`), { a: "1" });
  },
);

sshdTest(
  "a push into its own source through localhost is refused like a local one: exit 2, nothing made",
  async (sshd, dir) => {
    writeTree(`${dir}/s`, { a: "1", d: {} });
    for (const target of [`${dir}/s`, `${dir}/s/sub`, `${dir}/s/d/deeper`]) {
      const result = await viaSsh(sshd, [`${dir}/s`, `127.0.0.1:${target}`]);
      assertExit(result, 2);
      match(result.stderr, /one host reached twice|the replica is the folder/);
    }
    const pull = await viaSsh(sshd, [`127.0.0.1:${dir}/s/d`, `${dir}/s`]);
    assertExit(pull, 2);
    deepStrictEqual(readTree(`${dir}/s`), { a: "1", d: {} });
    deepStrictEqual(existsAt(`${dir}/s/.treesync`), false);
  },
  // One machine is known by its id: without one, two ends cannot tell they share it.
  { machineId: true },
);

sshdTest(
  "a pushed path with spaces, quotes, ; and $(…) is only a name on the far end",
  async (sshd, dir) => {
    writeTree(`${dir}/s`, { a: "1" });
    const marks = ["pushed-semicolon", "pushed-subshell", "pushed-tick"];
    const name = `a b'c"d;touch ${marks[0]};$(touch ${marks[1]})\`touch ${marks[2]}\``;
    assertExit(await viaSsh(sshd, [`${dir}/s`, `127.0.0.1:${dir}/${name}`]), 0);
    deepStrictEqual([...Deno.readDirSync(dir)].map((entry) => entry.name).sort(), [name, "s"]);
    deepStrictEqual(readTree(`${dir}/${name}`), { a: "1" });
    // A shell would have run them in the far login's folder, or in ours.
    for (const folder of [Deno.env.get("HOME") ?? "/root", CHECKOUT, Deno.cwd()]) {
      for (const mark of marks) ok(!existsAt(`${folder}/${mark}`), `${folder}/${mark}`);
    }
  },
);

function existsAt(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The pids of `ssh` processes whose parent is `parent` (the tests may not read all of /proc). */
function sshChildren(parent: number): number[] {
  const found = new Deno.Command("pgrep", { args: ["-P", String(parent), "-x", "ssh"] })
    .outputSync();
  return new TextDecoder().decode(found.stdout).split("\n").filter((line) => line !== "")
    .map(Number);
}

/** Whether the replica's lock is free (the far run of a killed session has ended). */
function lockFree(replica: string): boolean {
  const probe = new Deno.Command("flock", {
    args: ["-n", `${replica}/.treesync/lock`, "true"],
    stdout: "null",
    stderr: "null",
  });
  return probe.outputSync().success;
}

sshdTest(
  "a push whose ssh is killed mid-copy leaves no partial file, exits 1, and the next run is exact",
  async (sshd, dir) => {
    writeTree(`${dir}/s`, { "a.txt": "small", "big.bin": "B".repeat(4 * 1024 * 1024) });
    // The near end's opening of big.bin stands still until released: ssh dies while it waits.
    await using held = await holdOpen(`${dir}/s/big.bin`);
    const push = new RunningCli(
      [...remoteFlags(sshd), `${dir}/s`, `127.0.0.1:${dir}/r`],
      { ...WITH_PATH, stdin: "null" },
    );
    await push.waitFor(() => held.wanted, "the near end to open big.bin");
    const ssh = sshChildren(push.child.pid);
    deepStrictEqual(ssh.length, 1);
    Deno.kill(ssh[0]!, "SIGKILL");
    await held.release();
    deepStrictEqual(await push.exitCode(), 1, push.stderr);
    match(push.stderr, /connection to 127\.0\.0\.1 was lost before the run ended/);
    await waitFor(() => lockFree(`${dir}/r`), 30_000);
    ok(!readTree(`${dir}/r`)["big.bin"], "no big.bin, whole or partial");
    deepStrictEqual([...Deno.readDirSync(`${dir}/r/.treesync/tmp`)], []);
    assertExit(await viaSsh(sshd, [`${dir}/s`, `127.0.0.1:${dir}/r`]), 0);
    deepStrictEqual(readTree(`${dir}/r`), readTree(`${dir}/s`));
  },
);

sshdTest("--watch pushes a change to the far replica within its delay", async (sshd, dir) => {
  writeTree(`${dir}/s`, { a: "1" });
  const watch = new RunningCli(
    [...remoteFlags(sshd), "--watch", "--watch-delay", "1", `${dir}/s`, `127.0.0.1:${dir}/r`],
    WITH_PATH,
  );
  await watch.waitFor(() => watch.runs >= 1, "the first run");
  writeTree(`${dir}/s/new`, { "b.txt": "pushed" });
  const pushed = `${dir}/r/new/b.txt`;
  await watch.waitFor(() => {
    try {
      return Deno.readTextFileSync(pushed) === "pushed";
    } catch {
      return false;
    }
  }, "the change pushed");
  await watch.send("quit");
  deepStrictEqual(await watch.exitCode(), 0, watch.stderr);
  deepStrictEqual(readTree(`${dir}/r`), readTree(`${dir}/s`));
});
