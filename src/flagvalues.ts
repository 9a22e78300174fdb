/**
 * The values of the command line's flags: durations (`90`, `5m`, `1h30m`, `2d`), sizes (`10M`),
 * counts, `--max-delete` limits, and the largest each may be. Each parser takes the text as given
 * and either returns the value or throws a `UsageError` that quotes it and says what to write.
 *
 * @module
 */

import { UsageError } from "./errors.ts";
import { formatDuration, quoted } from "./format.ts";
import { type DeleteLimit } from "./types.ts";

/**
 * Parses `--max-delete`: a whole number of entries (`100`) or a percentage of the replica's
 * entries (`5%`, `0.5%`).
 *
 * @throws {UsageError} For anything else, quoting the value.
 */
export function parseDeleteLimit(text: string): DeleteLimit {
  const percent = /^(\d+(?:\.\d+)?)%$/.exec(text);
  if (percent && Number(percent[1]) <= 100) return { percent: Number(percent[1]) };
  if (/^\d+$/.test(text)) return { count: Number(text) };
  throw new UsageError(
    `Invalid --max-delete ${quoted(text)}: use a number of entries (100) or a share (5%)`,
  );
}

/** Milliseconds in each unit a duration may be written in. */
const DURATION_UNITS_MS = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000 } as const;

/** The longest `--interval` and `--keep-deleted`: 365 days. */
export const MAX_DURATION_MS = 365 * DURATION_UNITS_MS.d;

/** The most `--jobs`: each job is a worker thread with its own V8 heap (~12 MB at rest). */
export const MAX_JOBS = 64;

/** The most `--log-keep`: old log files kept beside the current one. */
export const MAX_LOG_KEEP = 100;

const DURATION_PATTERN = /^(?:(\d+)|(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?)$/;

/**
 * Parses a duration: whole seconds (`90`) or units in the order d, h, m, s (`5m`, `1h30m`,
 * `1d2h3m4s`).
 *
 * @param flag The flag it was given to, for the message when it is too long.
 * @returns The duration in milliseconds, always positive and at most
 *   {@linkcode MAX_DURATION_MS}.
 * @throws {UsageError} For anything else, quoting the value.
 */
export function parseDuration(text: string, flag = "duration"): number {
  const match = DURATION_PATTERN.exec(text.trim());
  const [, bare, d, h, m, s] = match ?? [];
  const total = bare !== undefined
    ? Number(bare) * 1000
    : Number(d ?? 0) * DURATION_UNITS_MS.d + Number(h ?? 0) * DURATION_UNITS_MS.h +
      Number(m ?? 0) * DURATION_UNITS_MS.m + Number(s ?? 0) * DURATION_UNITS_MS.s;
  if (!match || !(total > 0)) {
    throw new UsageError(
      `Invalid duration ${quoted(text)}: use seconds (90) or units like 45s, 5m, 1h30m, 2d`,
    );
  }
  if (total > MAX_DURATION_MS) {
    throw new UsageError(
      `Invalid ${flag} ${quoted(text)}: the most is ${formatDuration(MAX_DURATION_MS)}`,
    );
  }
  return total;
}

/** Whether `text` is written as a duration, whatever its length (`-i 5m` is `--interval`). */
export function isDuration(text: string): boolean {
  return DURATION_PATTERN.test(text.trim());
}

/**
 * Parses a size: bytes, or K, M, G (powers of 1024), at least 1 KiB.
 *
 * @throws {UsageError} For anything else, quoting the value and naming `flag`.
 */
export function parseSize(text: string, flag: string): number {
  const match = /^(\d+)([KMG]?)i?B?$/i.exec(text.trim());
  const factor = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[match?.[2]?.toUpperCase() ?? ""];
  const bytes = match && factor ? Number(match[1]) * factor : NaN;
  if (!(bytes >= 1024)) {
    throw new UsageError(`Invalid ${flag} ${quoted(text)}: use a size like 10M`);
  }
  return bytes;
}

/**
 * Parses a whole number from 1 to `max`.
 *
 * @throws {UsageError} For anything else, quoting the value and naming `flag`.
 */
export function parseCount(text: string, flag: string, max: number): number {
  if (!/^\d+$/.test(text) || Number(text) < 1) {
    throw new UsageError(`Invalid ${flag} ${quoted(text)}: use a whole number from 1 to ${max}`);
  }
  if (Number(text) > max) {
    throw new UsageError(`Invalid ${flag} ${quoted(text)}: the most is ${max}`);
  }
  return Number(text);
}
