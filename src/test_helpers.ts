/**
 * What the tests share: assertions, temporary trees written from literals and read back,
 * planner entries, a replica's record read and written, and the real CLI run as a subprocess
 * with exactly the `sync` task's permission flags (read from deno.json, in one place).
 *
 * @module
 */

import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { metaPaths } from "./sides/local/meta.ts";
import { type Action } from "./plan.ts";
import { type RecordEntry } from "./record.ts";
import { type RecordBlock, type RecordRow, RecordWriter } from "./recordfile.ts";
import { type Entry, entryFromStat, type Scan, signatureOf } from "./scan.ts";
import { openRecord } from "./sides/local/recordfiles.ts";
import { listFolder } from "./sides/local/list.ts";
import { type FolderSource } from "./sides/reader.ts";
import { type CopySettings } from "./sides/local/stage.ts";
import { identityOf } from "./files.ts";

// The engine's types these helpers take and give, so that this module documents whole.
export type { Action, Difference, Reason } from "./plan.ts";
export type { RecordEntry } from "./record.ts";
export type { RecordBlock, RecordRow } from "./recordfile.ts";
export type { Entry, EntryKind, Problem, Scan, Signature } from "./scan.ts";

/** Runs `fn` with a fresh temporary folder that is always removed. */
export async function withTemp(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = Deno.makeTempDirSync({ prefix: "treesync-test-" });
  try {
    await fn(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

/** A tree as a literal: a string is a file, an object a folder, `{ link }` a symlink. */
export type Tree = { [name: string]: string | Tree | { link: string } };

/** Writes `tree` under `root` (made if missing), next to what is there already. */
export function writeTree(root: string, tree: Tree): void {
  Deno.mkdirSync(root, { recursive: true });
  for (const [name, value] of Object.entries(tree)) {
    const path = `${root}/${name}`;
    if (typeof value === "string") Deno.writeTextFileSync(path, value);
    else if (typeof value.link === "string") Deno.symlinkSync(value.link, path);
    else writeTree(path, value as Tree);
  }
}

/** Reads a tree back as a literal, leaving out the replica's `.treesync`. */
export function readTree(root: string, top = true): Tree {
  const tree: Tree = {};
  for (const item of [...Deno.readDirSync(root)].sort((a, b) => a.name < b.name ? -1 : 1)) {
    const path = `${root}/${item.name}`;
    if (top && item.name === ".treesync") continue;
    if (item.isSymlink) tree[item.name] = { link: Deno.readLinkSync(path) };
    else if (item.isDirectory) tree[item.name] = readTree(path, false);
    else tree[item.name] = Deno.readTextFileSync(path);
  }
  return tree;
}

/**
 * Every entry's type, size, mode, mtime and content hash: equal snapshots mean equal trees.
 *
 * @param options `mtimes` (default true): with the mtimes of files and folders; `skipMeta`
 *   (default true): without the top's `.treesync`.
 * @returns The entries by path relative to `root`.
 */
export function snapshot(
  root: string,
  options: { mtimes?: boolean; skipMeta?: boolean } = {},
): Record<string, string> {
  const { mtimes = true, skipMeta = true } = options;
  const result: Record<string, string> = {};
  const walk = (dir: string, rel: string) => {
    for (const item of Deno.readDirSync(dir)) {
      const path = `${dir}/${item.name}`;
      const relPath = rel ? `${rel}/${item.name}` : item.name;
      if (skipMeta && rel === "" && item.name === ".treesync") continue;
      const stat = Deno.lstatSync(path);
      const mode = (stat.mode! & 0o7777).toString(8);
      const time = mtimes && !stat.isSymlink ? ` ${stat.mtime!.getTime()}` : "";
      if (stat.isSymlink) result[relPath] = `link ${Deno.readLinkSync(path)}`;
      else if (stat.isDirectory) {
        result[relPath] = `dir ${mode}${time}`;
        walk(path, relPath);
      } else result[relPath] = `file ${mode}${time} ${sha256(Deno.readFileSync(path))}`;
    }
  };
  walk(root, "");
  return result;
}

/** SHA-256 of `bytes`, in hex, as the record keeps it. */
export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Sets the access and modification times of `path` to `ms` (milliseconds since the epoch). */
export function setMtime(path: string, ms: number): void {
  Deno.utimeSync(path, new Date(ms), new Date(ms));
}

/** The permission flags of the `sync` task: the CLI under test gets exactly these. */
export const SYNC_FLAGS: string[] = (() => {
  const config = JSON.parse(Deno.readTextFileSync(new URL("../deno.json", import.meta.url)));
  const words: string[] = config.tasks.sync.split(/\s+/);
  return words.filter((word) => word.startsWith("--allow-"));
})();

/** The path of the CLI's entry module, `sync.ts`. */
export const SYNC_MODULE: string = new URL("../sync.ts", import.meta.url).pathname;

/** How a CLI run ended. */
export interface CliResult {
  /** The exit code. */
  code: number;
  /** All it wrote to stdout. */
  stdout: string;
  /** All it wrote to stderr. */
  stderr: string;
}

/** The checkout's root folder: where a CLI under test starts unless told. */
export const CHECKOUT: string = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** How to start the CLI under test. */
export interface CliOptions {
  /** Its whole environment, besides `NO_COLOR=1` (default: nothing else). */
  env?: Record<string, string>;
  /** Its working folder (default: the checkout). */
  cwd?: string;
  /** `--allow-all` instead of the task's flags: only it reaches `/dev` and `/proc`. */
  allowAll?: boolean;
}

/**
 * Starts the real CLI as a subprocess, with exactly the `sync` task's permission flags (unless
 * `allowAll`) and a clean environment.
 */
export function spawnCli(
  args: string[],
  options: CliOptions & { stdin?: "piped" | "null" } = {},
): Deno.ChildProcess {
  const flags = options.allowAll ? ["--allow-all"] : SYNC_FLAGS;
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...flags, SYNC_MODULE, ...args],
    env: { NO_COLOR: "1", ...options.env },
    clearEnv: true,
    // Always a folder of its own choosing: a test running the engine in this process changes
    // the process's current folder for a moment (every change below a replica folder is made
    // from inside it), and a CLI started in that moment would inherit it.
    cwd: options.cwd ?? CHECKOUT,
    stdin: options.stdin ?? "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Runs the real CLI to its end, feeding `stdin` if given. */
export async function cli(
  args: string[],
  options: CliOptions & { stdin?: string } = {},
): Promise<CliResult> {
  const { stdin, ...rest } = options;
  const child = spawnCli(args, { ...rest, stdin: stdin === undefined ? "null" : "piped" });
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  return await collect(child);
}

/** The summary of a `--json` run: its last line of stdout, parsed. */
export function jsonLine(result: CliResult): Record<string, number | boolean> {
  const line = result.stdout.trim().split("\n").at(-1)!;
  return JSON.parse(line);
}

/**
 * Throws unless the run exited with `code`, showing its output.
 *
 * @throws {Error} When the exit code differs.
 */
export function assertExit(result: CliResult, code: number): void {
  if (result.code !== code) {
    throw new Error(
      `expected exit ${code}, got ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`,
    );
  }
}

/** Whether this process can mount (root on Linux): tests that need it report as ignored. */
export const CAN_MOUNT: boolean = (() => {
  const dir = Deno.makeTempDirSync({ prefix: "treesync-mount-probe-" });
  try {
    const mounted = new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir],
      stdout: "null",
      stderr: "null",
    }).outputSync().success;
    if (mounted) new Deno.Command("umount", { args: [dir] }).outputSync();
    return mounted;
  } catch {
    return false;
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
})();

/** Whether `unshare -U` can run a process without root's override of file permissions. */
export const CAN_DROP_ROOT: boolean = (() => {
  try {
    return new Deno.Command("unshare", { args: ["-U", "true"], stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
})();

/** The inode {@linkcode e} gives the next entry that is not given one. */
export let nextInode = 1000;

/** An entry literal for planner tables; each gets an inode of its own unless told. */
export function e(kind: Entry["kind"], fields: Partial<Entry> = {}): Entry {
  return {
    kind,
    size: 0,
    mtimeMs: 1000,
    ctimeMs: 1000,
    ino: nextInode++,
    dev: 1,
    mode: kind === "dir" ? 0o755 : 0o644,
    uid: 0,
    gid: 0,
    ...fields,
  };
}

/** A scan of the root folder and `entries` (by path), with no problems. */
export function scanOf(entries: Record<string, Entry>, protectedPaths: string[] = []): Scan {
  return {
    entries: new Map([["", e("dir")], ...Object.entries(entries)]),
    problems: [],
    protectedPaths,
  };
}

/** A whole tree on disk as one scan, listed folder by folder in walk order, nothing excluded. */
export function scanOfTree(root: string): Scan {
  const scan: Scan = {
    entries: new Map([["", entryFromStat(Deno.statSync(root))]]),
    problems: [],
    protectedPaths: [],
  };
  const pending = [""];
  while (pending.length > 0) {
    const listing = listFolder(root, pending.pop()!, { exclude: () => false });
    scan.problems.push(...listing.problems);
    scan.protectedPaths.push(...listing.protectedPaths);
    const folders: string[] = [];
    for (const [name, entry] of listing.entries) {
      const path = listing.folder === "" ? name : `${listing.folder}/${name}`;
      scan.entries.set(path, entry);
      if (entry.kind === "dir") folders.push(path);
    }
    pending.push(...folders.reverse());
  }
  return scan;
}

/** The planner's options of a plain run: no `--checksum`, deletions, no owners. */
export const planDefaults: { checksum: boolean; deletes: boolean; owners: boolean } = {
  checksum: false,
  deletes: true,
  owners: false,
};

/** Each action but `dirattrs` as `kind path` (a move as `move from -> path`). */
export function planned(actions: Action[]): string[] {
  return actions.filter((a) => a.kind !== "dirattrs").map((a) =>
    a.kind === "move" ? `move ${a.from} -> ${a.path}` : `${a.kind} ${a.path}`
  );
}

/** Each action but `dirattrs` as `kind path: reason code`, to check why the planner chose it. */
export function because(actions: Action[]): string[] {
  return actions.filter((a) => a.kind !== "dirattrs").map((a) =>
    `${a.kind} ${a.path}: ${a.reason.code}`
  );
}

/** A record entry that vouches for `entry` with `hash`, hashed long after its mtime. */
export function vouch(entry: Entry, hash: string, fields: Partial<RecordEntry> = {}): RecordEntry {
  return { ...signatureOf(entry), hash, hashedAtMs: entry.mtimeMs + 60_000, ...fields };
}

/** A file of `size` zero bytes that takes no disk (a hole), its folders made if missing. */
export async function makeSparseFile(path: string, size: number): Promise<void> {
  Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  using file = Deno.openSync(path, { write: true, create: true });
  await file.truncate(size);
}

/**
 * A file of `size` bytes that holds data only at the `[offset, length]` islands given (bytes
 * that are never zero and differ with the offset, so a misplaced write shows), holes elsewhere.
 */
export function writeIslands(path: string, size: number, islands: Array<[number, number]>): void {
  using file = Deno.openSync(path, { write: true, create: true, truncate: true });
  for (const [offset, length] of islands) {
    const bytes = new Uint8Array(length).map((_, i) => 1 + (offset + i) % 251);
    file.seekSync(offset, Deno.SeekMode.Start);
    for (let done = 0; done < length;) done += file.writeSync(bytes.subarray(done));
  }
  file.truncateSync(size);
}

/** The bytes a file takes on disk. */
export function allocatedBytes(path: string): number {
  return Deno.statSync(path).blocks! * 512;
}

/** Whether the temporary folder's file system keeps holes: a sparse file made there says. */
export const CAN_MAKE_HOLES: boolean = (() => {
  const dir = Deno.makeTempDirSync({ prefix: "treesync-holes-probe-" });
  try {
    writeIslands(`${dir}/probe`, 8 << 20, [[0, 1]]);
    return allocatedBytes(`${dir}/probe`) < 1 << 20;
  } catch {
    return false;
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
})();

/** Waits for a started CLI's end and gives its exit code and output. */
export async function collect(child: Deno.ChildProcess): Promise<CliResult> {
  const output = await child.output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/**
 * Resolves once `condition` holds, looking every 10 ms.
 *
 * @throws {Error} When it does not hold within `timeoutMs`.
 */
export async function waitFor(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for a condition");
    await new Promise((done) => setTimeout(done, 10));
  }
}

/**
 * A CLI left running (a loop, a watch), its output collected as it comes, driven through its
 * stdin when that is piped.
 */
export class RunningCli {
  /** What it wrote to stdout so far. */
  stdout = "";
  /** What it wrote to stderr so far. */
  stderr = "";
  /** The process. */
  readonly child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array> | null;
  readonly #pumps: Promise<void>[];

  /** Starts the CLI with `args` (or takes a child started otherwise, stdin piped or not). */
  constructor(
    args: string[] | Deno.ChildProcess,
    options: CliOptions & { stdin?: "piped" | "null" } = {},
  ) {
    const stdin = options.stdin ?? "piped";
    this.child = Array.isArray(args) ? spawnCli(args, { ...options, stdin }) : args;
    this.#writer = stdin === "piped" ? this.child.stdin.getWriter() : null;
    this.#pumps = [
      this.#pump(this.child.stdout, (text) => this.stdout += text),
      this.#pump(this.child.stderr, (text) => this.stderr += text),
    ];
  }

  async #pump(stream: ReadableStream<Uint8Array>, add: (text: string) => void): Promise<void> {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) add(text);
  }

  /** Types a command line into the loop. */
  async send(line: string): Promise<void> {
    await this.#writer!.write(new TextEncoder().encode(`${line}\n`));
  }

  /** Writes `text` to stdin as it is, with no newline (keys typed on a terminal). */
  async type(text: string): Promise<void> {
    await this.#writer!.write(new TextEncoder().encode(text));
  }

  /** Number of runs the loop has reported so far. */
  get runs(): number {
    return this.stderr.match(/^run \d+: /gm)?.length ?? 0;
  }

  /** Waits for `condition`; on a timeout the process is killed and its output shown. */
  async waitFor(condition: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
    try {
      await waitFor(condition, timeoutMs);
    } catch {
      this.child.kill("SIGKILL");
      throw new Error(
        `timed out waiting for ${what}\nstdout: ${this.stdout}\nstderr: ${this.stderr}`,
      );
    }
  }

  /** Waits for the exit and returns its code. */
  async exitCode(): Promise<number> {
    const status = await this.child.status;
    await Promise.all(this.#pumps);
    try {
      await this.#writer?.close();
    } catch {
      // The process is gone, and its stdin with it.
    }
    return status.code;
  }
}

/** A file of `size` bytes whose SHA-256 is 64 times `content`. */
export function f(size: number, content: string, fields: Partial<Entry> = {}): Entry {
  return e("file", { size, hash: content.repeat(64), ...fields });
}

/**
 * When a recorded hash may be trusted, for a file of mtime 1,000 and ctime 5,000 (ms): the label,
 * the file's fields that differ, when the hash was taken, and whether it is trusted.
 */
export const RACY_CASES: Array<[string, Partial<Entry>, number, boolean]> = [
  ["ctime in a second before the hash's", {}, 6_100, true],
  ["ctime in the hash's second", {}, 5_900, false],
  ["ctime in the second just before, within the clock's slack", { ctimeMs: 5_000 }, 6_010, false],
  ["mtime within the racy window", { mtimeMs: 5_500 }, 6_100, false],
];

/** What a replica's record says of its files, by side and path relative to the tree. */
export interface RecordContents {
  /** The replica's files. */
  replica: Map<string, RecordEntry>;
  /** The source's files, as the last runs read them. */
  source: Map<string, RecordEntry>;
  /** The folder rows (of which the record keeps only the inodes), by path. */
  folders: Map<string, RecordRow>;
}

/**
 * The blocks of the record in `REPLICA/.treesync/record`, read to the end with every check of
 * the format.
 *
 * @throws {Error} When there is no record, or it is corrupt.
 */
export function readRecordBlocks(replica: string): RecordBlock[] {
  const path = metaPaths(replica).record;
  const problems: string[] = [];
  const record = openRecord(path, {
    maxBytes: Number.MAX_SAFE_INTEGER,
    onCorrupt: (message) => problems.push(message),
  });
  if (record === null) throw new Error(`There is no record at ${path}`);
  try {
    const blocks = [...record.blocks()];
    if (problems.length > 0 || record.corrupt) {
      throw new Error(problems.join("\n") || `The record ${path} is corrupt`);
    }
    return blocks;
  } finally {
    record.close();
  }
}

/**
 * The record in `REPLICA/.treesync/record` by side and relative path, files and folders apart.
 *
 * @throws {Error} When there is no record, or it is corrupt.
 */
export function readRecord(replica: string): RecordContents {
  const contents: RecordContents = { replica: new Map(), source: new Map(), folders: new Map() };
  for (const { folder, rows } of readRecordBlocks(replica)) {
    for (const row of rows) {
      const path = folder === "" ? row.name : `${folder}/${row.name}`;
      if (row.kind === "dir") {
        contents.folders.set(path, row);
        continue;
      }
      if (row.source) contents.source.set(path, row.source);
      if (row.replica) contents.replica.set(path, row.replica);
    }
  }
  return contents;
}

/**
 * Writes `blocks` (in walk order, rows by name) as the record in `REPLICA/.treesync/record`,
 * replacing what is there; the folder `.treesync` must exist.
 */
export function writeRecord(replica: string, blocks: Iterable<RecordBlock>): void {
  const fd = fs.openSync(
    metaPaths(replica).record,
    fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_NOFOLLOW,
    0o600,
  );
  try {
    const writer = new RecordWriter(fd);
    for (const { folder, rows } of blocks) writer.writeFolder(folder, rows);
    writer.finish();
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Writes a version-2 record (`REPLICA/.treesync/record.json`), as treesync wrote it before
 * format 3: one row `[path, size, mtimeMs, ctimeMs, ino, hash, hashedAtMs]` a file and side.
 */
export function writeLegacyRecord(
  replica: string,
  record: { replica: Map<string, RecordEntry>; source: Map<string, RecordEntry> },
): void {
  const rows = (side: Map<string, RecordEntry>) =>
    [...side].map(([path, e]) => [path, e.size, e.mtimeMs, e.ctimeMs, e.ino, e.hash, e.hashedAtMs]);
  const data = {
    format: "treesync-record",
    version: 2,
    replica: rows(record.replica),
    source: rows(record.source),
  };
  const path = metaPaths(replica).legacyRecord;
  Deno.mkdirSync(metaPaths(replica).dir, { recursive: true, mode: 0o700 });
  Deno.writeTextFileSync(path, JSON.stringify(data), { mode: 0o600 });
}

/** How every record of format 3 starts: a draft of the next one sits in `.treesync/tmp/`. */
const RECORD_HEADER = "treesync-record 3\n";

/**
 * The copies under way in a replica: the files in `.treesync/tmp/` that hold data and are not
 * a draft of the next record (which a run keeps there from its start to its end), by name.
 */
export function copiesInFlight(replica: string): string[] {
  const temp = metaPaths(replica).temp;
  const copies: string[] = [];
  let items: Deno.DirEntry[];
  try {
    items = [...Deno.readDirSync(temp)];
  } catch {
    return copies;
  }
  const start = new Uint8Array(RECORD_HEADER.length);
  for (const item of items) {
    try {
      using file = Deno.openSync(`${temp}/${item.name}`);
      let got = 0;
      while (got < start.length) {
        const count = file.readSync(start.subarray(got));
        if (count === null) break;
        got += count;
      }
      // A draft is a record from the header on; what has no byte yet may be either.
      const text = new TextDecoder().decode(start.subarray(0, got));
      if (got > 0 && !RECORD_HEADER.startsWith(text)) copies.push(item.name);
    } catch {
      // Renamed into place or removed meanwhile: no longer in flight.
    }
  }
  return copies;
}

/** Whether a file's opening can be held ({@linkcode holdOpen}: file leases, Linux only). */
export const CAN_HOLD_OPEN: boolean = Deno.build.os === "linux" && (() => {
  try {
    // Read by a subprocess: Deno lets only --allow-all read under /proc.
    const output = new Deno.Command("cat", { args: ["/proc/sys/fs/leases-enable"] }).outputSync();
    return new TextDecoder().decode(output.stdout).trim() === "1";
  } catch {
    return false;
  }
})();

/**
 * A file that other processes cannot open until {@linkcode HeldOpen.release} (see
 * `src/test_lease.ts`): a copy or a hash of it by the CLI stands still at its start, for as long
 * as the test needs, whatever the file's size and the machine's speed.
 */
export interface HeldOpen extends AsyncDisposable {
  /** Whether another process has tried to open the file (and is waiting). */
  readonly wanted: boolean;
  /** Lets the waiting open, and every later one, through. */
  release(): Promise<void>;
}

/**
 * Holds the opening of the file at `path` (which must exist, and be open nowhere) until
 * released: resolves once the hold is in place. The kernel lets a waiting open through by
 * itself after `/proc/sys/fs/lease-break-time` (45 s by default).
 *
 * @throws {Error} When the hold cannot be taken.
 */
export async function holdOpen(path: string): Promise<HeldOpen> {
  const holder = new URL("./test_lease.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--allow-ffi", `--allow-read=${path}`, holder, path],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let output = "";
  const { promise: isHeld, resolve: held } = Promise.withResolvers<void>();
  const pump = (async () => {
    for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) {
      output += text;
      if (/^held$/m.test(output)) held();
    }
    held(); // ended without holding: the check below says so
  })();
  await isHeld;
  if (!/^held$/m.test(output)) {
    await child.status;
    throw new Error(`Cannot hold '${path}' open: ${output.trim()}`);
  }
  let released = false;
  const release = async () => {
    if (released) return;
    released = true;
    await child.stdin.close();
    await child.status;
    await pump;
  };
  return {
    get wanted() {
      return /^wanted$/m.test(output);
    },
    release,
    [Symbol.asyncDispose]: release,
  };
}

/** Every folder of a walk with its entry names, in the order handed over. */
export async function foldersOf(source: FolderSource): Promise<Array<[string, string[]]>> {
  try {
    const folders: Array<[string, string[]]> = [];
    for (let listing = await source.next(); listing; listing = await source.next()) {
      folders.push([listing.folder, [...listing.entries.keys()]]);
    }
    return folders;
  } finally {
    source.close();
  }
}

/** Copy settings over a new tmp folder of ours at `dir/tmp`: no trash, no owners, no holes. */
export function tempSettingsIn(dir: string): CopySettings {
  Deno.mkdirSync(`${dir}/tmp`, { recursive: true });
  return {
    tempDir: `${dir}/tmp`,
    tempIdentity: identityOf(`${dir}/tmp`)!,
    trashDir: null,
    trashIdentity: null,
    owners: false,
    sparse: false,
  };
}
