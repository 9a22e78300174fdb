/**
 * The payloads of a pushed run (see `frames.ts`, "A push swaps the roles"): `Run` (what the far
 * end runs), `Report` (one line of the far run's reporter), `Progress`, `Stop`, `Confirm` and
 * `Answer`, and `Done` (the summary or exit code). They are small and rare, so they travel as
 * JSON. The far end takes from `Run` only the fields listed here, each checked, because the
 * near end is a peer like any other; the log, the loop and the remote shell stay the near end's.
 *
 * @module
 */

import { type Options } from "../cli.ts";
import { type RunProgress } from "../log.ts";
import { emptySummary, type RunSummary } from "../summary.ts";
import { ExitCode } from "../errors.ts";
import { FrameError } from "./frames.ts";
import { wirePathProblem } from "./wirepath.ts";

/** What the near end asks the far end to run. */
export interface RunRequest {
  /** A mirroring run, or `--verify` of the far replica. */
  mode: "run" | "verify";
  /**
   * The options as the far end runs them: `replica` is its own path (checked against its
   * `--root`), `source` the near tree's path, opened through the swapped session.
   */
  options: Options;
  /** The relative paths a `--watch` pass covers (none: the whole tree). */
  scope?: string[];
  /**
   * Whether the near end shows or logs change lines (`-v`, `--log`): only then does the far
   * end send them, one `Report` a file otherwise (absent: it sends them).
   */
  changes?: boolean;
  /**
   * `--verify`: the far replica as the user named it (`host:PATH`), for the advice lines that
   * tell them what to run next (absent: the far end's own path).
   */
  shown?: string;
}

/** The reporter's methods that take one line. */
export type ReporterLine =
  | "change"
  | "planned"
  | "debug"
  | "warn"
  | "error"
  | "summary"
  | "fileOnly";

/** The reporter's calls, as `Report` carries them. */
export type ReportCall =
  | {
    /** A reporter's method, or what the far run wrote to its stdout or stderr itself. */
    how: ReporterLine | "stdout" | "stderr";
    text: string;
  }
  | { how: "runEnd"; text: string; exitCode: number; what: "run" | "loop" };

/**
 * How a far run ended, as `Done` carries it: a run's summary, `--verify`'s exit code, or what
 * stopped the run before its end (the near end reports it as its own, with the same exit code).
 */
export type RunDone =
  | { summary: RunSummary }
  | { exitCode: number }
  | { failure: "usage" | "refused" | "failed"; message: string };

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Any of this module's payloads as bytes. */
export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

function parsed(payload: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(decoder.decode(payload));
  } catch {
    throw new FrameError(`A ${what} frame that is not JSON`);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The fields of {@linkcode Options} by what they hold; a `Run` with any other key is refused. */
const OPTION_FIELDS: Record<string, "boolean" | "number" | "string" | "nullable"> = {
  source: "string",
  replica: "string",
  dryRun: "boolean",
  restore: "boolean",
  overwriteNewer: "boolean",
  checksum: "boolean",
  verify: "boolean",
  deletes: "boolean",
  adopt: "boolean",
  interactive: "boolean",
  allowEmptySource: "boolean",
  logMaxBytes: "number",
  logKeep: "number",
  json: "boolean",
  verbosity: "number",
  watch: "boolean",
  watchDelayMs: "number",
  keepDeletedMs: "nullable",
  jobs: "number",
  sparse: "boolean",
  hardLinks: "boolean",
  compress: "boolean",
  bwlimit: "nullable",
};

/**
 * A `Run` payload, checked field by field.
 *
 * @throws {FrameError} Anything but the shape of {@linkcode RunRequest}.
 */
export function decodeRunRequest(payload: Uint8Array): RunRequest {
  const value = parsed(payload, "Run");
  if (!isRecord(value) || (value.mode !== "run" && value.mode !== "verify")) {
    throw new FrameError("A Run frame without its mode");
  }
  const options = value.options;
  if (!isRecord(options)) throw new FrameError("A Run frame without its options");
  const taken: Record<string, unknown> = {};
  for (const [key, kind] of Object.entries(OPTION_FIELDS)) {
    const field = options[key];
    // Options a far end of an older build does not know are left at their defaults.
    if (field === undefined && (key === "compress" || key === "bwlimit")) continue;
    const ok = kind === "nullable"
      ? field === null || (typeof field === "number" && Number.isFinite(field))
      : typeof field === kind && (kind !== "number" || Number.isFinite(field as number));
    if (!ok) throw new FrameError(`A Run frame with a bad option ${JSON.stringify(key)}`);
    taken[key] = field;
  }
  const request: RunRequest = {
    mode: value.mode,
    options: {
      ...taken,
      filters: checkedFilters(options.filters),
      maxDelete: checkedLimit(options.maxDelete),
      // The far end logs nowhere and runs once: the near end keeps the log, the loop, --watch.
      logPath: null,
      intervalMs: null,
      watch: false,
    } as unknown as Options,
  };
  if (value.scope !== undefined) {
    // Paths of the far end's own tree: relative, inside it, each a name the wire allows.
    request.scope = checkedStrings(value.scope, "scope");
    for (const path of request.scope) {
      const problem = wirePathProblem(path);
      if (problem !== null) {
        throw new FrameError(`A Run frame with a bad scope ${JSON.stringify(path)}: ${problem}`);
      }
    }
  }
  if (value.shown !== undefined) {
    // Only ever printed: one line of bounded length.
    if (
      typeof value.shown !== "string" || value.shown.length > 4096 || /[\0\n\r]/.test(value.shown)
    ) {
      throw new FrameError("A Run frame with a bad shown name");
    }
    request.shown = value.shown;
  }
  if (value.changes !== undefined) {
    if (typeof value.changes !== "boolean") throw new FrameError("A Run frame with bad changes");
    request.changes = value.changes;
  }
  return request;
}

function checkedFilters(value: unknown): Options["filters"] {
  if (!Array.isArray(value)) throw new FrameError("A Run frame without its filters");
  return value.map((rule) => {
    if (
      !isRecord(rule) || (rule.kind !== "include" && rule.kind !== "exclude") ||
      typeof rule.pattern !== "string"
    ) {
      throw new FrameError("A Run frame with a bad filter");
    }
    return { kind: rule.kind, pattern: rule.pattern };
  });
}

function checkedLimit(value: unknown): Options["maxDelete"] {
  if (value === null || value === undefined) return null;
  if (isRecord(value) && typeof value.count === "number" && Number.isFinite(value.count)) {
    return { count: value.count };
  }
  if (isRecord(value) && typeof value.percent === "number" && Number.isFinite(value.percent)) {
    return { percent: value.percent };
  }
  throw new FrameError("A Run frame with a bad --max-delete");
}

function checkedStrings(value: unknown, what: string): string[] {
  if (!Array.isArray(value) || !value.every((item) => typeof item === "string")) {
    throw new FrameError(`A Run frame with a bad ${what}`);
  }
  return value;
}

const REPORT_HOWS = new Set([
  "change",
  "planned",
  "debug",
  "warn",
  "error",
  "summary",
  "fileOnly",
  "stdout",
  "stderr",
]);

/**
 * A `Report` payload.
 *
 * @throws {FrameError} Anything but a {@linkcode ReportCall}.
 */
export function decodeReport(payload: Uint8Array): ReportCall {
  const value = parsed(payload, "Report");
  if (isRecord(value) && typeof value.text === "string") {
    if (typeof value.how === "string" && REPORT_HOWS.has(value.how)) {
      return { how: value.how as ReporterLine, text: value.text };
    }
    if (
      value.how === "runEnd" && typeof value.exitCode === "number" &&
      (value.what === "run" || value.what === "loop")
    ) {
      return { how: "runEnd", text: value.text, exitCode: value.exitCode, what: value.what };
    }
  }
  throw new FrameError("A Report frame of an unknown shape");
}

/**
 * A `Progress` payload.
 *
 * @throws {FrameError} Anything but a progress snapshot.
 */
export function decodeProgress(payload: Uint8Array): RunProgress {
  const value = parsed(payload, "Progress");
  if (!isRecord(value) || typeof value.phase !== "string" || typeof value.done !== "number") {
    throw new FrameError("A Progress frame of an unknown shape");
  }
  return value as unknown as RunProgress;
}

/**
 * A `Done` payload.
 *
 * @throws {FrameError} Anything but a summary or an exit code.
 */
export function decodeDone(payload: Uint8Array): RunDone {
  const value = parsed(payload, "Done");
  if (isRecord(value) && Object.values(ExitCode).includes(value.exitCode as never)) {
    return { exitCode: value.exitCode as number };
  }
  if (
    isRecord(value) && typeof value.message === "string" &&
    (value.failure === "usage" || value.failure === "refused" || value.failure === "failed")
  ) {
    const message = value.message.length <= MAX_MESSAGE
      ? value.message
      : `${value.message.slice(0, MAX_MESSAGE)}…`;
    return { failure: value.failure, message };
  }
  const summary = isRecord(value) && isRecord(value.summary) ? summaryOf(value.summary) : null;
  if (summary !== null) return { summary };
  throw new FrameError("A Done frame of an unknown shape");
}

/** The longest message a far end's `Done` may carry (one line, as the near end prints it). */
const MAX_MESSAGE = 4096;

/** A summary's fields and what each is (a count or a flag), as `emptySummary` has them. */
const SUMMARY_FIELDS = Object.entries(emptySummary(false));

/**
 * A far run's summary, field by field: every count a whole number from 0 up, every flag a
 * boolean (one a far end does not send is 0 or false), nothing else kept (the near end prints
 * it, logs it and puts it in `--json`). The wire's bytes are the near end's own count, never
 * the far end's word.
 */
function summaryOf(value: Record<string, unknown>): RunSummary | null {
  if (typeof value.failed !== "number") return null;
  const summary: Record<string, unknown> = {};
  for (const [name, none] of SUMMARY_FIELDS) {
    const field = value[name] ?? none;
    if (typeof field !== typeof none) return null;
    if (typeof field === "number" && (!Number.isSafeInteger(field) || field < 0)) return null;
    summary[name] = field;
  }
  return summary as unknown as RunSummary;
}

/** A `Stop` payload: 1 stops gently (the run finishes what it is doing), 2 at once. */
export function encodeStop(level: 1 | 2): Uint8Array {
  return Uint8Array.of(level);
}

/**
 * A `Stop` payload's level.
 *
 * @throws {FrameError} Anything but 1 or 2.
 */
export function decodeStop(payload: Uint8Array): 1 | 2 {
  const level = payload.length === 1 ? payload[0] : 0;
  if (level !== 1 && level !== 2) throw new FrameError("A Stop frame of an unknown level");
  return level;
}

/** A `Confirm` question: how many entries would go, and some of them. */
export interface ConfirmQuestion {
  /** Entries that would be deleted. */
  count: number;
  /** Some of them, to show. */
  sample: string[];
}

/**
 * A `Confirm` payload.
 *
 * @throws {FrameError} Anything but a {@linkcode ConfirmQuestion}.
 */
export function decodeConfirm(payload: Uint8Array): ConfirmQuestion {
  const value = parsed(payload, "Confirm");
  if (!isRecord(value) || typeof value.count !== "number") {
    throw new FrameError("A Confirm frame of an unknown shape");
  }
  return { count: value.count, sample: checkedStrings(value.sample, "sample").slice(0, 100) };
}
