/**
 * The counts of a run, for its summary line and `--json`: one function maps an action to the
 * counters, for the run and for the dry run alike. Pure.
 *
 * @module
 */

import { type Action } from "./plan.ts";

/** Counts for one run; printed as the summary and, with `--json`, as a JSON line. */
export interface RunSummary {
  /** Files and symlinks created. */
  copied: number;
  /** Files rewritten and symlinks replaced. */
  updated: number;
  /** Files and symlinks deleted. */
  deleted: number;
  /** Files and folders renamed in place of a copy and a deletion. */
  moved: number;
  /** Names made hard links of a file already in the replica (`--hard-links`). */
  linked: number;
  /** Folders created. */
  dirsCreated: number;
  /** Folders removed. */
  dirsDeleted: number;
  /**
   * Files whose mode, owner or mtime alone were fixed, and folders whose attributes differed
   * from the source's before the run (each an `attrs` line).
   */
  attrsUpdated: number;
  /** Actions that failed. */
  failed: number;
  /** Bytes written by copies and updates. */
  bytesCopied: number;
  /** How long the run took. */
  durationMs: number;
  /** Whether nothing was written (`--dry-run`): the counts are the plan's. */
  dryRun: boolean;
  /** Deletions not made: `--max-delete` was exceeded, or `--interactive` was declined. */
  deletionsHeldBack: number;
  /** True when `--max-delete` held deletions back (exit 3). */
  maxDeleteHit: boolean;
  /** True when deletions were held back because the replica is not adopted (exit 3). */
  adoptNeeded: boolean;
  /** With a tree on another host: bytes this run sent on the wire. */
  bytesSent?: number;
  /** With a tree on another host: bytes this run received on the wire. */
  bytesReceived?: number;
}

/** A fresh summary with every count at zero. */
export function emptySummary(dryRun: boolean): RunSummary {
  return {
    copied: 0,
    updated: 0,
    deleted: 0,
    moved: 0,
    linked: 0,
    dirsCreated: 0,
    dirsDeleted: 0,
    attrsUpdated: 0,
    failed: 0,
    bytesCopied: 0,
    durationMs: 0,
    dryRun,
    deletionsHeldBack: 0,
    maxDeleteHit: false,
    adoptNeeded: false,
  };
}

/**
 * Adds one action, done or planned, to the counts it belongs to: a new symlink counts as
 * copied, a replaced one as updated; `bytes` (what a copy or update wrote) go to `bytesCopied`
 * and are ignored for other kinds. Folder attributes count as fixed only where they differed
 * before the run: those that only put back what filling the folder changed count nowhere. The
 * replica's root, made before the walk when it is missing, counts nowhere either: it is not a
 * folder inside the replica.
 */
export function countAction(summary: RunSummary, action: Action, bytes: number): void {
  switch (action.kind) {
    case "copy":
    case "update":
      summary[action.kind === "copy" ? "copied" : "updated"]++;
      summary.bytesCopied += bytes;
      break;
    case "link":
      summary[action.reason.code === "new" ? "copied" : "updated"]++;
      break;
    case "delete":
      summary.deleted++;
      break;
    case "mkdir":
      if (action.path !== "") summary.dirsCreated++;
      break;
    case "rmdir":
      summary.dirsDeleted++;
      break;
    case "attrs":
      summary.attrsUpdated++;
      break;
    case "move":
      summary.moved++;
      break;
    case "hardlink":
      summary.linked++;
      break;
    case "dirattrs":
      if ((action.differs?.length ?? 0) > 0) summary.attrsUpdated++;
      break;
  }
}
