/**
 * `--verify`: re-hashing every replica file against the record, changing nothing.
 *
 * @module
 */

import { Batcher, type BatchLimits } from "./batch.ts";
import { type Options } from "./cli.ts";
import { ExitCode, UsageError } from "./errors.ts";
import {
  compileFilters,
  type ExcludeMatcher,
  type FilterRule,
  isExcludedRecordPath,
} from "./exclude.ts";
import { counted, displayPath, formatBytes, listedPath, quoted } from "./format.ts";
import { type Reporter, runStartLine, writeStdout } from "./log.ts";
import { lockStep } from "./order.ts";
import { type RecordEntry } from "./record.ts";
import { type RecordRow } from "./recordfile.ts";
import { type Entry, type FolderListing, META_DIR, type Problem } from "./scan.ts";
import { LocalReplicaStore } from "./sides/local/store.ts";
import { localTree } from "./sides/local/tree.ts";
import { type TreeReader } from "./sides/reader.ts";
import { type ReplicaStore } from "./sides/writer.ts";
import { VERSION } from "./version.ts";
import { WorkerPool } from "./sides/local/workers.ts";

/** What `--verify` found. */
export interface VerifyResult {
  /** Files read and compared. */
  checked: number;
  /** Bytes read and hashed. */
  bytes: number;
  /**
   * Files whose content differs from the record while their size, mtime and inode are as
   * recorded: damage (bit rot, or a write that put the mtime back).
   */
  mismatched: string[];
  /**
   * Files whose size, mtime or inode differ from the record's: written after the record was
   * (by a run that was killed before it saved the record, or by something else), so the
   * record's hash says nothing about them. Not read.
   */
  changed: string[];
  /** Files the record has that the replica does not. */
  missing: string[];
  /** Files with no hash in the record: not checked. */
  unrecorded: string[];
  /** Files that could not be read, and record problems. */
  failed: Problem[];
  /** False when the replica has no record at all. */
  recordFound: boolean;
}

/**
 * Re-hashes every replica file and compares it with the record, walking the replica and the
 * record side by side, folder by folder. Changes nothing. Files the record has no hash for
 * cannot be checked: they are listed as unrecorded.
 */
export async function verifyReplica(
  replica: TreeReader,
  options: { exclude: ExcludeMatcher; filters: FilterRule[]; store: ReplicaStore },
): Promise<VerifyResult> {
  const { store } = options;
  store.check();
  const result: VerifyResult = {
    checked: 0,
    bytes: 0,
    mismatched: [],
    changed: [],
    missing: [],
    unrecorded: [],
    failed: [],
    recordFound: store.hasRecord(),
  };
  const onCorrupt = (message: string) =>
    result.failed.push({ path: META_DIR, message: verifyWording(message) });
  const record = store.openRecord(onCorrupt);
  const stream = replica.walk({ starts: [""], filters: options.filters, avoid: [] });
  const checks = new CheckBatch(replica, result);
  try {
    const blocks = record.blocks();
    const folders = lockStep({
      first: () => stream.next(),
      second: () => {
        const block = blocks.next();
        return Promise.resolve(block.done ? null : block.value);
      },
    }, { first: (listing) => listing.folder, second: (block) => block.folder });
    for await (const { first: listing, second: block } of folders) {
      const folder = listing?.folder ?? block!.folder;
      await checkFolder(listing, { folder, rows: block?.rows ?? [], checks, result, options });
    }
    await checks.flush();
    checks.mismatchLinked();
  } finally {
    stream.close();
    record.close();
  }
  return result;
}

/** Compares one folder: its files against the record's rows of it. */
async function checkFolder(
  listing: FolderListing | null,
  input: {
    folder: string;
    rows: RecordRow[];
    checks: CheckBatch;
    result: VerifyResult;
    options: { exclude: ExcludeMatcher };
  },
): Promise<void> {
  const { folder, rows, checks, result, options } = input;
  const known = new Map(rows.map((row) => [row.name, row]));
  const join = (name: string) => (folder === "" ? name : `${folder}/${name}`);
  result.failed.push(...listing?.problems ?? []);
  for (const [name, entry] of listing?.entries ?? []) {
    if (entry.kind !== "file") continue;
    const recorded = known.get(name)?.replica;
    const hash = recorded?.hash ?? null;
    if (hash === null) result.unrecorded.push(join(name));
    else if (!sameFileAsRecorded(recorded!, entry)) result.changed.push(join(name));
    else if ((entry.nlink ?? 1) > 1 && checks.sameFile(entry, { hash, path: join(name) })) {
      result.checked++;
    } else await checks.add({ path: join(name), size: entry.size, hash });
  }
  for (const row of rows) {
    if (row.kind !== "file" || !row.replica) continue;
    const path = join(row.name);
    if (listing?.entries.get(row.name)?.kind === "file") continue;
    if (listing === null && isProtectedFolder(folder, result)) continue;
    if (!isExcludedRecordPath(path, options.exclude)) result.missing.push(path);
  }
}

/**
 * Whether a replica file is the one the record's row was written of: the same size, mtime and
 * inode. The ctime is not compared, so damage that put the mtime back is still a mismatch;
 * a run (even one killed before it saved the record) replaces a file through a rename, a new
 * inode.
 */
function sameFileAsRecorded(recorded: RecordEntry, entry: Entry): boolean {
  return recorded.size === entry.size && recorded.mtimeMs === entry.mtimeMs &&
    recorded.ino === entry.ino;
}

/**
 * A message of the record's reader as `--verify` says it: the reader's "rebuilding it" is what
 * a run does, and `--verify` writes nothing.
 */
function verifyWording(message: string): string {
  return message.replace(
    /; rebuilding it$/,
    "; --verify leaves it as it is (the next run rebuilds it)",
  );
}

/** A folder that could not be listed: what the record has inside is not missing. */
function isProtectedFolder(folder: string, result: VerifyResult): boolean {
  return result.failed.some((problem) =>
    problem.path !== META_DIR && (folder === problem.path || folder.startsWith(`${problem.path}/`))
  );
}

/** How many files `--verify` hands the hashing at once (the pool cuts them finer). */
const CHECK_BATCH: BatchLimits = { items: 1024, bytes: 256 << 20 };

/** Files to hash, sent to the tree in batches so every core hashes. */
class CheckBatch {
  readonly #tree: TreeReader;
  readonly #result: VerifyResult;
  readonly #batch = new Batcher<{ path: string; size: number; hash: string }>(CHECK_BATCH);
  /** Files with several names, by inode: the first name met, its recorded hash, the others. */
  readonly #linked = new Map<string, { path: string; hash: string; others: string[] }>();

  constructor(tree: TreeReader, result: VerifyResult) {
    this.#tree = tree;
    this.#result = result;
  }

  /**
   * Whether `entry` is another name of a file already checked with the same recorded hash:
   * one file is read once, however many names it has.
   */
  sameFile(entry: Entry, name: { hash: string; path: string }): boolean {
    const key = `${entry.dev}:${entry.ino}`;
    const first = this.#linked.get(key);
    if (first === undefined) {
      this.#linked.set(key, { ...name, others: [] });
      return false;
    }
    if (first.hash !== name.hash) return false;
    first.others.push(name.path);
    return true;
  }

  /** The other names of each mismatched file are mismatched too. */
  mismatchLinked(): void {
    const mismatched = new Set(this.#result.mismatched);
    for (const { path, others } of this.#linked.values()) {
      if (mismatched.has(path)) this.#result.mismatched.push(...others);
    }
  }

  async add(file: { path: string; size: number; hash: string }): Promise<void> {
    const full = this.#batch.add(file, file.size);
    if (full) await this.#check(full);
  }

  /** Checks the files gathered so far. */
  async flush(): Promise<void> {
    await this.#check(this.#batch.take());
  }

  async #check(files: Array<{ path: string; size: number; hash: string }>): Promise<void> {
    if (files.length === 0) return;
    const outcomes = await this.#tree.hash(files);
    const result = this.#result;
    for (const { path, size, hash } of files) {
      const outcome = outcomes.get(path)!;
      if ("error" in outcome || outcome.result === null) {
        const message = "error" in outcome ? outcome.error : "it changed while it was read";
        result.failed.push({ path, message: `Cannot read: ${message}` });
        continue;
      }
      result.checked++;
      result.bytes += size;
      if (outcome.result.hash !== hash) result.mismatched.push(path);
    }
  }
}

/**
 * Runs `--verify` on the replica and returns the exit code. `shown` names the replica in the
 * advice lines (a far end is given `host:PATH` as the user typed it; default: its path).
 */
export async function runVerify(
  options: Options,
  report: Reporter,
  { shown = options.replica }: { shown?: string | undefined } = {},
): Promise<number> {
  report.fileOnly(runStartLine(options, { version: VERSION }));
  // A pool starts its workers on first need: none before the checks pass.
  const pool = new WorkerPool(options.jobs);
  let result: VerifyResult;
  let started: number;
  try {
    const replica = localTree(options.replica, { pool });
    const store = new LocalReplicaStore(options.replica);
    await checkIsReplica(replica, store);
    started = performance.now();
    result = await verifyReplica(replica, {
      exclude: compileFilters(options.filters),
      filters: options.filters,
      store,
    });
  } finally {
    pool.close();
  }
  reportFindings(result, { ...options, replica: shown }, report);
  const unrecorded = result.unrecorded.length;
  const changed = result.changed.length;
  const seconds = (performance.now() - started) / 1000;
  const bad = result.mismatched.length + changed + result.missing.length +
    result.failed.length + unrecorded;
  const exitCode = bad > 0 ? ExitCode.Failed : ExitCode.Ok;
  report.runEnd(
    `verify: ${counted(result.checked, "file")} checked, ${result.mismatched.length} mismatched, ` +
      `${changed} changed since the record, ${result.missing.length} missing, ` +
      `${unrecorded} not in the record, ` +
      `${result.failed.length} failed; ` +
      `${formatBytes(result.bytes)} in ${seconds.toFixed(2)} s ` +
      `(${formatBytes(result.bytes / Math.max(seconds, 0.001))}/s)`,
    exitCode,
  );
  if (options.json) {
    writeStdout(
      `${
        JSON.stringify({
          checked: result.checked,
          bytes: result.bytes,
          mismatched: result.mismatched.length,
          changed,
          missing: result.missing.length,
          unrecorded: result.unrecorded.length,
          failed: result.failed.length,
          durationMs: Math.round(seconds * 1000),
        })
      }\n`,
    );
  }
  return exitCode;
}

/** Refuses what is no folder, or no replica: there is nothing to verify against. */
async function checkIsReplica(replica: TreeReader, store: ReplicaStore): Promise<void> {
  let isFolder = false;
  try {
    isFolder = (await replica.entryAt(""))?.kind === "dir";
  } catch {
    // Cannot be read: no folder to verify either.
  }
  if (!isFolder) {
    throw new UsageError(`Replica ${quoted(replica.display)} is not a folder: nothing to verify`);
  }
  store.check();
  if (!store.hasRecord()) {
    // Nothing to verify against, and no advice to run a mirror: this may be the source itself.
    throw new UsageError(
      `${quoted(replica.display)} is not a treesync replica: it has no record in ${META_DIR}/`,
    );
  }
}

/** Lists what does not match on stdout, and says on stderr what was not verified and why. */
function reportFindings(result: VerifyResult, options: Options, report: Reporter): void {
  for (const path of result.mismatched) {
    writeStdout(`mismatch ${listedPath(path)}\n`);
  }
  for (const path of result.changed) writeStdout(`changed ${listedPath(path)}\n`);
  for (const path of result.missing) writeStdout(`missing ${listedPath(path)}\n`);
  for (const path of result.unrecorded) writeStdout(`unrecorded ${listedPath(path)}\n`);
  for (const problem of result.failed) {
    report.error(`${displayPath(problem.path)}: ${problem.message}`);
  }
  const unrecorded = result.unrecorded.length;
  const changed = result.changed.length;
  if (changed > 0) {
    report.error(
      `Not verified: ${
        counted(changed, "file")
      } changed since the record was written (a run was killed ` +
        `before it saved the record, or something else wrote to the replica), so the record ` +
        `cannot vouch for them; run 'treesync SOURCE ${options.replica}' to check them against ` +
        `the source`,
    );
  }
  if (unrecorded > 0 && options.filters.length === 0) {
    // Excluded replica entries are never hashed by a run: they stay unrecorded.
    report.warn(
      `${
        counted(unrecorded, "unrecorded file")
      }: if the runs use --exclude or --include rules, pass ` +
        `the same rules to --verify`,
    );
  }
  if (unrecorded > 0) {
    // Not checked is not verified: say so, and what makes the record whole.
    report.error(
      `Not verified: ${counted(unrecorded, "file")} ${unrecorded === 1 ? "has" : "have"} no hash ` +
        `in the record (a run was interrupted, or ` +
        `they were put there by hand or by another tool); run 'treesync SOURCE ` +
        `${options.replica}' once to hash them`,
    );
  }
}
