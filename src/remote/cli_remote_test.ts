/**
 * The command line of remote trees, run as the real CLI: `host:PATH` and the flags that go
 * with it, `treesync --serve` over a plain pipe, and pulls over ssh from the test sshd (the far
 * end is this checkout's `sync.ts`, started by `--remote-treesync`).
 *
 * @module
 */

import { deepStrictEqual, match, ok } from "node:assert/strict";
import {
  assertExit,
  CHECKOUT,
  cli,
  type CliOptions,
  type CliResult,
  jsonLine,
  readTree,
  RunningCli,
  setMtime,
  snapshot,
  spawnCli,
  withTemp,
  writeTree,
} from "../test_helpers.ts";
import { parseCommandLine } from "../cli.ts";
import { LocalTreeReader } from "../sides/local/tree.ts";
import { WorkerPool } from "../sides/local/workers.ts";
import { type FolderSource } from "../sides/reader.ts";
import { connectRemoteTree, RemoteError } from "./client.ts";
import { sshdUnavailable, startSshd, type TestSshd } from "./test_sshd.ts";
import { FAR_TREESYNC, sshdTest, WITH_PATH } from "./test_remote.ts";

/** The `-e` text of the test sshd's client words (no word holds a space). */
function rshText(sshd: TestSshd): string {
  return sshd.rsh.join(" ");
}

/** A pull from the test sshd: `-e`, the far program, then `args`. */
function pull(sshd: TestSshd, args: string[], options: CliOptions = {}): Promise<CliResult> {
  const flags = ["-e", rshText(sshd), "--remote-treesync", FAR_TREESYNC];
  return cli([...flags, ...args], { ...WITH_PATH, ...options });
}

/**
 * The lines of a CLI's stderr (none for an empty one), without what the far login's own shell
 * start-up prints on some machines (pyenv's, when several logins start at once).
 */
function lines(text: string): string[] {
  return text.split("\n").filter((line) => line !== "" && !/^warning: [^:]+: .*pyenv/.test(line));
}

/** Every folder a walk gives, with its entries' names, in walk order. */
async function namesOf(walk: FolderSource): Promise<Array<[string, string[]]>> {
  const found: Array<[string, string[]]> = [];
  for (let listing = await walk.next(); listing !== null; listing = await walk.next()) {
    found.push([listing.folder, [...listing.entries.keys()].sort()]);
  }
  walk.close();
  return found;
}

const WHOLE = { starts: [""], filters: [], avoid: [] };

Deno.test("parseCommandLine() gives a remote tree, its shell, program, rate and -z", () => {
  const command = parseCommandLine(
    ["-e", "ssh -p 2222", "--bwlimit", "1M", "-z", "u@[::1]:data", "copy"],
    { TREESYNC_RSH: "rsh" },
    "/here",
  );
  if (command.kind !== "run") throw new Error(command.kind);
  const { source, replica, remote, rsh, remoteTreesync, bwlimit, compress } = command.options;
  deepStrictEqual(
    { source, replica, remote, rsh, remoteTreesync, bwlimit, compress },
    {
      source: "u@[::1]:data",
      replica: "/here/copy",
      remote: { kind: "remote", user: "u", host: "::1", path: "data", side: "source" },
      rsh: ["ssh", "-p", "2222"],
      remoteTreesync: "treesync",
      bwlimit: 1024 * 1024,
      compress: true,
    },
  );
  const push = parseCommandLine(["/src", "host:"], { TREESYNC_RSH: "ssh -4" }, "/here");
  if (push.kind !== "run") throw new Error(push.kind);
  deepStrictEqual(push.options.remote, {
    kind: "remote",
    host: "host",
    path: ".",
    side: "replica",
  });
  deepStrictEqual([push.options.rsh, push.options.bwlimit], [["ssh", "-4"], null]);
  const verify = parseCommandLine(["--verify", "host:/dst"], {}, "/here");
  if (verify.kind !== "run") throw new Error(verify.kind);
  deepStrictEqual([verify.options.source, verify.options.remote?.side], ["host:/dst", "replica"]);
  deepStrictEqual(parseCommandLine(["--serve", "--root", "srv"], {}, "/here"), {
    kind: "serve",
    root: "/here/srv",
  });
});

Deno.test("treesync --serve serves a tree over a plain pipe; a relative path is from its folder", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/home/data`, { "a.txt": "abc", sub: { b: "bb" }, link: { link: "a.txt" } });
    const child = spawnCli(["--serve"], { cwd: `${dir}/home`, stdin: "piped" });
    const pool = new WorkerPool(1);
    try {
      const far = await connectRemoteTree({
        input: child.stdout,
        output: child.stdin,
        path: "data",
        peer: "the pipe",
      });
      const near = new LocalTreeReader(`${dir}/home/data`, { pool });
      deepStrictEqual(await namesOf(far.walk(WHOLE)), await namesOf(near.walk(WHOLE)));
      await far.close();
      const status = await child.status;
      const stderr = new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
      deepStrictEqual([status.code, stderr], [0, ""]);
    } finally {
      pool.close();
    }
  });
});

Deno.test("treesync --serve --root refuses a tree outside the root before reading it", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/allowed`, { x: "1" });
    writeTree(`${dir}/outside`, { secret: "2" });
    for (const path of [`${dir}/outside`, `${dir}/allowed/../outside`, "../outside"]) {
      const child = spawnCli(["--serve", "--root", `${dir}/allowed`], {
        cwd: `${dir}/allowed`,
        stdin: "piped",
      });
      const refused = await connectRemoteTree({
        input: child.stdout,
        output: child.stdin,
        path,
        peer: "the pipe",
      }).then(() => null, (error) => error);
      ok(refused instanceof RemoteError, `${path}: ${refused}`);
      match(refused.message, /Refused/);
      await child.status;
      await child.stderr.cancel();
    }
  });
});

Deno.test("the command line of remote trees: what is refused, in one line, before anything runs", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { file: "d" });
    const s = `${dir}/s`;
    const table: Array<[string[], RegExp]> = [
      [["a:/x", "b:/y"], /both are on other hosts; run treesync on one of them/],
      [["--watch", "host:/src", `${dir}/r`], /--watch watches a local source/],
      [["-e", "ssh", s, `${dir}/r`], /-e\/--rsh only applies to a remote SOURCE or REPLICA/],
      [["-z", s, `${dir}/r`], /-z only applies to a remote .*nothing to compress/],
      [["--bwlimit", "1M", s, `${dir}/r`], /--bwlimit only applies to a remote/],
      [["--remote-treesync", "x", s, `${dir}/r`], /--remote-treesync only applies/],
      [["--bwlimit", "fast", "host:/src", `${dir}/r`], /Invalid --bwlimit 'fast'/],
      [["-e", "ssh 'oops", "host:/src", `${dir}/r`], /Missing closing '/],
      [["--serve", "--json"], /--serve takes only --root, not --json/],
      [["--serve", s], /--serve takes no paths/],
      [["--root", s], /--root only applies to --serve/],
      [["host::module", `${dir}/r`], /rsync daemon syntax/],
    ];
    for (const [args, pattern] of table) {
      const result = await cli(args);
      assertExit(result, 2);
      deepStrictEqual(lines(result.stderr).length, 1, result.stderr);
      match(result.stderr, pattern);
    }
    deepStrictEqual(readTree(dir), { s: { file: "d" } });
  });
});

Deno.test("a remote shell treesync may not run is one line saying so", async () => {
  await withTemp(async (dir) => {
    const result = await cli(["-e", "/bin/sh -c", "host:/src", `${dir}/r`], WITH_PATH);
    assertExit(result, 2);
    deepStrictEqual(lines(result.stderr).length, 1, result.stderr);
    match(result.stderr, /Cannot run the remote shell '\/bin\/sh': treesync may run only .*ssh/);
    deepStrictEqual(readTree(dir), {});
  });
});

Deno.test("a far end that floods stderr with one long line is shown cut, in one line", async () => {
  // 8 MB and no newline; 60 KB and a newline (in the same chunk as the line).
  for (const flood of ["head -c 8000000 /dev/zero", "(head -c 60000 /dev/zero; echo)"]) {
    await withTemp(async (dir) => {
      // A remote shell named ssh (the one the CLI may run) that floods and fails.
      Deno.mkdirSync(`${dir}/bin`);
      Deno.writeTextFileSync(
        `${dir}/bin/ssh`,
        `#!/bin/sh\n${flood} | tr '\\0' x >&2\nexit 1\n`,
      );
      Deno.chmodSync(`${dir}/bin/ssh`, 0o755);
      const env = { PATH: `${dir}/bin:${WITH_PATH.env!.PATH}` };
      const result = await cli(["host:/src", `${dir}/r`], { env });
      assertExit(result, 2);
      deepStrictEqual(lines(result.stderr).length, 1, result.stderr.slice(0, 200));
      ok(result.stderr.length < 10_000, `${flood}: ${result.stderr.length} characters`);
      match(result.stderr, /x{4096}… \(line cut\)/);
      deepStrictEqual(readTree(dir).r, undefined);
    });
  }
});

/** A port nothing listens on: one the test sshd had, after it stopped. */
async function closedPort(): Promise<number> {
  const sshd = await startSshd();
  await sshd.stop();
  return sshd.port;
}

Deno.test({
  name: "a port with no server behind it is exit 2 in one line, nothing made",
  ignore: sshdUnavailable() !== null,
  fn: async () => {
    const port = await closedPort();
    await withTemp(async (dir) => {
      const result = await cli(
        ["-e", `ssh -p ${port}`, `127.0.0.1:${dir}/s`, `${dir}/r`],
        WITH_PATH,
      );
      assertExit(result, 2);
      deepStrictEqual(lines(result.stderr).length, 1, result.stderr);
      match(result.stderr, /Cannot log in to 127\.0\.0\.1: .*Connection refused.*BatchMode/);
      deepStrictEqual(readTree(dir), {});
    });
  },
});

sshdTest(
  "a pull of identical trees over ssh changes nothing and counts the wire",
  async (sshd, dir) => {
    writeTree(`${dir}/s`, { a: "1", sub: { b: "22", empty: {} }, link: { link: "a" } });
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    const before = snapshot(`${dir}/r`, { mtimes: true });
    const result = await pull(sshd, ["--json", `127.0.0.1:${dir}/s`, `${dir}/r`]);
    assertExit(result, 0);
    const summary = jsonLine(result);
    deepStrictEqual(
      [summary.copied, summary.updated, summary.deleted, summary.dirsCreated, summary.failed],
      [0, 0, 0, 0, 0],
    );
    ok(Number(summary.bytesSent) > 0 && Number(summary.bytesReceived) > 0, result.stdout);
    deepStrictEqual(snapshot(`${dir}/r`, { mtimes: true }), before);
    deepStrictEqual(result.stderr.includes("error"), false, result.stderr);
  },
);

sshdTest(
  "a pull deletes, makes folders and symlinks, and fixes modes and mtimes",
  async (sshd, dir) => {
    writeTree(`${dir}/s`, { a: "1", gone: "x", old: { deep: "y" }, keep: "k" });
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    // Made before the removal, so that no inode of old/ comes back as a folder moved.
    writeTree(`${dir}/s`, { fresh: { deeper: {} }, to: { link: "a" } });
    Deno.removeSync(`${dir}/s/gone`);
    Deno.removeSync(`${dir}/s/old`, { recursive: true });
    Deno.chmodSync(`${dir}/s/a`, 0o600);
    setMtime(`${dir}/s/keep`, Date.parse("2020-01-02T03:04:05Z"));
    const result = await pull(sshd, ["--json", "-v", `127.0.0.1:${dir}/s`, `${dir}/r`]);
    assertExit(result, 0);
    match(result.stderr, /delete gone/);
    match(result.stderr, /link to -> a/);
    const summary = jsonLine(result);
    deepStrictEqual(
      [summary.deleted, summary.dirsDeleted, summary.copied, summary.dirsCreated, summary.moved],
      [2, 1, 1, 2, 0],
    );
    deepStrictEqual(summary.attrsUpdated, 3); // a's mode, keep's mtime, the root's mtime
    deepStrictEqual(readTree(`${dir}/r`), readTree(`${dir}/s`));
    deepStrictEqual(Deno.statSync(`${dir}/r/a`).mode! & 0o777, 0o600);
    deepStrictEqual(Deno.statSync(`${dir}/r/keep`).mtime, Deno.statSync(`${dir}/s/keep`).mtime);
  },
);

sshdTest(
  "a dry-run pull lists the new files and changes nothing; --max-delete holds back",
  async (sshd, dir) => {
    writeTree(`${dir}/s`, { a: "1", b: "2", c: "3" });
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    writeTree(`${dir}/s`, { new: "brand new", skip: "excluded" });
    Deno.removeSync(`${dir}/s/b`);
    Deno.removeSync(`${dir}/s/c`);
    const before = snapshot(`${dir}/r`, { mtimes: true });
    const dry = await pull(sshd, ["-n", "--exclude", "skip", `127.0.0.1:${dir}/s`, `${dir}/r`]);
    assertExit(dry, 0);
    deepStrictEqual(lines(dry.stdout).sort(), [
      "attrs ./ (mtime)",
      "copy new (9 B)",
      "delete b",
      "delete c",
    ]);
    deepStrictEqual(snapshot(`${dir}/r`, { mtimes: true }), before);
    Deno.removeSync(`${dir}/s/new`);
    Deno.removeSync(`${dir}/s/skip`);
    const held = await pull(sshd, ["--max-delete", "1", `127.0.0.1:${dir}/s`, `${dir}/r`]);
    assertExit(held, 3);
    deepStrictEqual(readTree(`${dir}/r`), { a: "1", b: "2", c: "3" });
  },
);

sshdTest(
  "a far end that is missing, or refuses the tree, is exit 2 in one line",
  async (sshd, dir) => {
    writeTree(`${dir}/s`, { a: "1" });
    const missing = await cli(
      ["-e", rshText(sshd), "--remote-treesync", "/nonexistent", `127.0.0.1:${dir}/s`, `${dir}/r`],
      WITH_PATH,
    );
    assertExit(missing, 2);
    deepStrictEqual(lines(missing.stderr).length, 1, missing.stderr);
    match(
      missing.stderr,
      /Cannot start '\/nonexistent --serve' on 127\.0\.0\.1 .*install treesync/,
    );
    const noFolder = await pull(sshd, [`127.0.0.1:${dir}/nothing`, `${dir}/r`]);
    assertExit(noFolder, 2);
    deepStrictEqual(lines(noFolder.stderr), [
      `error: Source '127.0.0.1:${dir}/nothing' does not exist: check the path on the far end`,
    ]);
    const notTreesync = await cli(
      ["-e", rshText(sshd), "--remote-treesync", "echo", `127.0.0.1:${dir}/s`, `${dir}/r`],
      WITH_PATH,
    );
    assertExit(notTreesync, 2);
    match(notTreesync.stderr, /did not greet as treesync.*is treesync installed on 127\.0\.0\.1/);
    deepStrictEqual(readTree(dir), { s: { a: "1" } });
  },
);

sshdTest(
  "a remote path is only a name: quotes, ';' and '$(...)' reach no shell",
  async (sshd, dir) => {
    const marker = `pwned-${Deno.pid}`;
    const name = `a b'c"d;touch ${marker};$(touch ${marker}-2)\`touch ${marker}-3\``;
    Deno.mkdirSync(`${dir}/${name}/sub`, { recursive: true });
    const result = await pull(sshd, ["--json", `127.0.0.1:${dir}/${name}`, `${dir}/r`], {
      ...WITH_PATH,
      cwd: dir,
    });
    assertExit(result, 0);
    deepStrictEqual(readTree(`${dir}/r`), { sub: {} });
    deepStrictEqual(Deno.readDirSync(dir).toArray().map((entry) => entry.name).sort(), [name, "r"]);
    const home = Deno.env.get("HOME") ?? "/root";
    for (const made of [marker, `${marker}-2`, `${marker}-3`]) {
      ok(!existsAt(`${home}/${made}`) && !existsAt(`${CHECKOUT}/${made}`), `${made} was made`);
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

sshdTest(
  "a forced --serve --root in authorized_keys confines the pulls (exit 2 outside)",
  async (sshd, dir) => {
    writeTree(`${dir}/allowed/s`, { sub: {} });
    writeTree(`${dir}/outside`, { secret: {} });
    const key = Deno.readTextFileSync(`${sshd.folder}/client_key.pub`).trim();
    const forced = `${FAR_TREESYNC} --serve --root ${dir}/allowed`;
    Deno.writeTextFileSync(`${sshd.folder}/authorized_keys`, `command="${forced}" ${key}\n`);
    const outside = await pull(sshd, [`127.0.0.1:${dir}/outside`, `${dir}/r`]);
    assertExit(outside, 2);
    deepStrictEqual(lines(outside.stderr).length, 1, outside.stderr);
    match(outside.stderr, /Refused .*outside the served root/);
    deepStrictEqual(readTree(dir), { allowed: { s: { sub: {} } }, outside: { secret: {} } });
    const inside = await pull(sshd, [`127.0.0.1:${dir}/allowed/s`, `${dir}/r`]);
    assertExit(inside, 0);
    deepStrictEqual(readTree(`${dir}/r`), { sub: {} });
  },
);

sshdTest("TREESYNC_RSH names the remote shell when -e does not", async (sshd, dir) => {
  writeTree(`${dir}/s`, { sub: {} });
  const result = await cli(["--remote-treesync", FAR_TREESYNC, `127.0.0.1:${dir}/s`, `${dir}/r`], {
    env: { ...WITH_PATH.env, TREESYNC_RSH: rshText(sshd) },
  });
  assertExit(result, 0);
  deepStrictEqual(readTree(`${dir}/r`), { sub: {} });
});

sshdTest(
  "--interval connects afresh each run: a run that cannot open the far tree fails alone",
  async (sshd, dir) => {
    const loop = new RunningCli([
      "-e",
      rshText(sshd),
      "--remote-treesync",
      FAR_TREESYNC,
      "--interval",
      "1",
      `127.0.0.1:${dir}/s`,
      `${dir}/r`,
    ], WITH_PATH);
    await loop.waitFor(() => /Run 1 failed: Source .* does not exist/.test(loop.stderr), "run 1");
    writeTree(`${dir}/s`, { made: { later: {} } });
    await loop.waitFor(() => existsAt(`${dir}/r/made/later`), "a later run's pull");
    await loop.send("quit");
    deepStrictEqual(await loop.exitCode(), 0, loop.stderr);
    deepStrictEqual(readTree(`${dir}/r`), { made: { later: {} } });
  },
);

/**
 * A far end whose output is cut after `bytes` bytes on its first start (a marker file says it
 * happened), as a connection lost in the middle of a run; whole on every later start.
 */
function cutOnce(dir: string, bytes: number): string {
  const script = `${dir}/cut.sh`;
  const serve = `${FAR_TREESYNC} "$@"`;
  Deno.writeTextFileSync(
    script,
    [
      "#!/bin/bash",
      `if [ -e ${dir}/cut-done ]; then exec ${serve}; fi`,
      `touch ${dir}/cut-done`,
      `exec dd bs=1 count=${bytes} status=none < <(exec ${serve})`,
      "",
    ].join("\n"),
  );
  return `bash ${script}`;
}

sshdTest(
  "a connection lost during a run is exit 1 in one line, and the next run finishes",
  async (sshd, dir) => {
    // Names that do not compress: the listing is well past the bytes the cut lets through.
    const files = Object.fromEntries(
      Array.from({ length: 300 }, (_, i) => [`file-${crypto.randomUUID()}`, `${i}`]),
    );
    writeTree(`${dir}/s`, { ...files, gone: { deep: {} } });
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    Deno.removeSync(`${dir}/s/gone`, { recursive: true });
    const far = cutOnce(dir, 3000);
    const args = ["-e", rshText(sshd), "--remote-treesync", far, `127.0.0.1:${dir}/s`, `${dir}/r`];
    const cut = await cli(args, WITH_PATH);
    assertExit(cut, 1);
    deepStrictEqual(lines(cut.stderr).length, 1, cut.stderr);
    match(cut.stderr, /^error: Lost the session with the far end: /);
    Deno.removeSync(`${dir}/cut-done`);
    const loop = new RunningCli(["--interval", "1", ...args], WITH_PATH);
    await loop.waitFor(() => /Run 1 failed: .*stream ended/.test(loop.stderr), "run 1 cut");
    await loop.waitFor(() => /^run 2: /m.test(loop.stderr), "run 2");
    await loop.send("quit");
    deepStrictEqual(await loop.exitCode(), 0, loop.stderr);
    deepStrictEqual(readTree(`${dir}/r`), readTree(`${dir}/s`));
  },
);

sshdTest(
  "a --checksum pull hashes on the far end: same size and mtime, other bytes",
  async (sshd, dir) => {
    writeTree(`${dir}/s`, { same: "abc", changed: "xyz" });
    assertExit(await cli([`${dir}/s`, `${dir}/r`]), 0);
    const mtime = Deno.statSync(`${dir}/s/changed`).mtime!.getTime();
    Deno.writeTextFileSync(`${dir}/s/changed`, "XYZ");
    setMtime(`${dir}/s/changed`, mtime);
    // (Without --checksum the run may see it too, by the ctime: only when the write fell in
    // another second than the first one, which a loaded machine decides.)
    const checksum = await pull(sshd, ["-n", "--checksum", `127.0.0.1:${dir}/s`, `${dir}/r`]);
    assertExit(checksum, 0);
    deepStrictEqual(lines(checksum.stdout), ["update changed (content; 3 B)"]);
  },
);

sshdTest(
  "what the far end writes to stderr is shown once it greeted, named by its host",
  async (sshd, dir) => {
    writeTree(`${dir}/s`, { sub: {} });
    Deno.writeTextFileSync(
      `${dir}/chatty.sh`,
      `#!/bin/bash\necho "far says hi" >&2\nexec ${FAR_TREESYNC} "$@"\n`,
    );
    const args = ["-e", rshText(sshd), "--remote-treesync", `bash ${dir}/chatty.sh`];
    const result = await cli([...args, `127.0.0.1:${dir}/s`, `${dir}/r`], WITH_PATH);
    assertExit(result, 0);
    deepStrictEqual(lines(result.stderr).filter((line) => !line.startsWith("sync: ")), [
      "warning: 127.0.0.1: far says hi",
    ]);
    deepStrictEqual(readTree(`${dir}/r`), { sub: {} });
  },
);
