/**
 * `--verify`: re-hashing every replica file against the record, changing nothing.
 *
 * @module
 */

import { type Options } from "./cli.ts";
import { ExitCode, UsageError } from "./errors.ts";
import { compileFilters, type ExcludeMatcher, isExcludedRecordPath } from "./exclude.ts";
import { pathExists } from "./files.ts";
import { displayPath, formatBytes, listedPath, quoted } from "./format.ts";
import { type Reporter, writeStdout } from "./log.ts";
import { checkMeta, metaPaths } from "./meta.ts";
import { loadRecord, recordSizeCap } from "./record.ts";
import { META_DIR, type Problem, scanTree } from "./scan.ts";
import { hashInPool, WorkerPool } from "./workers.ts";

/** What `--verify` found. */
export interface VerifyResult {
  /** Files read and compared. */
  checked: number;
  /** Bytes read and hashed. */
  bytes: number;
  /** Files whose content differs from the record. */
  mismatched: string[];
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
 * Re-hashes every replica file and compares it with the record. Changes nothing. Files the
 * record has no hash for cannot be checked: they are listed as unrecorded.
 */
export async function verifyReplica(
  replica: string,
  options: { exclude: ExcludeMatcher; pool: WorkerPool },
): Promise<VerifyResult> {
  const meta = metaPaths(replica);
  checkMeta(meta);
  const result: VerifyResult = {
    checked: 0,
    bytes: 0,
    mismatched: [],
    missing: [],
    unrecorded: [],
    failed: [],
    recordFound: pathExists(meta.record),
  };
  const scan = scanTree(replica, { exclude: options.exclude, skipMetaDir: true });
  const record = loadRecord(meta.record, {
    // The record holds both sides: allow for a source as large as the replica.
    maxBytes: recordSizeCap(2 * scan.entries.size),
    onCorrupt: (message) => result.failed.push({ path: META_DIR, message }),
  });
  result.failed.push(...scan.problems);
  const toCheck: Array<{ path: string; size: number }> = [];
  for (const [path, entry] of scan.entries) {
    if (entry.kind !== "file") continue;
    const known = record.replica.get(path);
    if (!known || known.hash === null) result.unrecorded.push(path);
    else toCheck.push({ path, size: entry.size });
  }
  // Every core hashes: verification runs at the machine's hashing speed, not one core's.
  const outcomes = await hashInPool(options.pool, replica, toCheck);
  for (const { path, size } of toCheck) {
    const outcome = outcomes.get(path)!;
    if ("error" in outcome || outcome.result === null) {
      const message = "error" in outcome ? outcome.error : "it changed while it was read";
      result.failed.push({ path, message: `Cannot read: ${message}` });
      continue;
    }
    result.checked++;
    result.bytes += size;
    if (outcome.result.hash !== record.replica.get(path)!.hash) result.mismatched.push(path);
  }
  for (const path of record.replica.keys()) {
    if (scan.entries.get(path)?.kind !== "file" && !isExcludedRecordPath(path, options.exclude)) {
      result.missing.push(path);
    }
  }
  return result;
}

/** Runs `--verify` on the replica and returns the exit code. */
export async function runVerify(options: Options, report: Reporter): Promise<number> {
  try {
    if (!Deno.statSync(options.replica).isDirectory) throw new Deno.errors.NotFound();
  } catch {
    throw new UsageError(`Replica ${quoted(options.replica)} is not a folder: nothing to verify`);
  }
  const started = performance.now();
  const pool = new WorkerPool(options.jobs);
  let result: VerifyResult;
  try {
    result = await verifyReplica(options.replica, {
      exclude: compileFilters(options.filters),
      pool,
    });
  } finally {
    pool.close();
  }
  for (const path of result.mismatched) {
    writeStdout(`mismatch ${listedPath(path)}\n`);
  }
  for (const path of result.missing) writeStdout(`missing ${listedPath(path)}\n`);
  for (const path of result.unrecorded) writeStdout(`unrecorded ${listedPath(path)}\n`);
  for (const problem of result.failed) {
    report.error(`${displayPath(problem.path)}: ${problem.message}`);
  }
  const unrecorded = result.unrecorded.length;
  if (unrecorded > 0) {
    // Not checked is not verified: say so, and what makes the record whole.
    const why = result.recordFound
      ? `${unrecorded} files have no hash in the record (a run was interrupted, or they were ` +
        `put there by hand or by another tool)`
      : `there is no record in '${options.replica}/${META_DIR}': none of its ${unrecorded} ` +
        `files could be checked`;
    report.error(
      `Not verified: ${why}; run 'treesync SOURCE ${options.replica}' once to hash them`,
    );
  }
  const seconds = (performance.now() - started) / 1000;
  report.summary(
    `verify: ${result.checked} files checked, ${result.mismatched.length} mismatched, ` +
      `${result.missing.length} missing, ${unrecorded} not in the record, ` +
      `${result.failed.length} failed; ` +
      `${formatBytes(result.bytes)} in ${seconds.toFixed(2)} s ` +
      `(${formatBytes(result.bytes / Math.max(seconds, 0.001))}/s)`,
  );
  if (options.json) {
    writeStdout(
      `${
        JSON.stringify({
          checked: result.checked,
          bytes: result.bytes,
          mismatched: result.mismatched.length,
          missing: result.missing.length,
          unrecorded: result.unrecorded.length,
          failed: result.failed.length,
          durationMs: Math.round(seconds * 1000),
        })
      }\n`,
    );
  }
  const bad = result.mismatched.length + result.missing.length + result.failed.length +
    unrecorded;
  return bad > 0 ? ExitCode.Failed : ExitCode.Ok;
}
