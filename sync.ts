/**
 * treesync — a one-way folder mirror for servers.
 *
 * Mirrors SOURCE into REPLICA so that the replica matches it exactly: new and changed files are
 * copied, extraneous entries deleted, folders (empty ones too), symlinks, modes and mtimes kept.
 * A file record in `REPLICA/.treesync/` remembers the SHA-256 of what was copied, so a replica
 * can be verified later.
 *
 * ```sh
 * deno task sync /srv/data /backup/data               # one run, exit code says how it went
 * deno task sync --interval 5m /srv/data /backup/data # a run every five minutes
 * ```
 *
 * Options follow `deno task sync` directly, with no `--`: Deno hands a `--` on, and here it ends
 * the options, so whatever follows it is a path.
 *
 * The module reads top to bottom in the order the data flows: command line, options, scan,
 * plan, apply, record, verify, run, loop, main.
 *
 * @module
 */

import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
// LogTape is loaded when logging is set up, so worker threads (which never log) start faster.
import type { LogRecord, Sink } from "@logtape/logtape";

/** The tool's version, printed by `--version`. */
export const VERSION = "0.1.0";

/** Name of the metadata folder at the top of every replica; never mirrored, never deleted. */
export const META_DIR = ".treesync";
const RECORD_NAME = "record.json";
const LOCK_NAME = "lock";
const TEMP_NAME = "tmp";
const RECORD_FORMAT = "treesync-record";
const RECORD_VERSION = 2;
const encoder = new TextEncoder();

/** Exit codes: part of the command-line contract that cron jobs and scripts rely on. */
export const ExitCode = {
  /** The replica matches the source (or, with `--verify`, its record). */
  Ok: 0,
  /**
   * The run finished but the replica does not match the source: entries failed or were kept
   * (`--no-delete`, `--restore`), or deletions were declined at `-I`; or `--verify` found
   * mismatches or could not check every file.
   */
  Failed: 1,
  /** Usage or setup error; nothing was changed. */
  Usage: 2,
  /** Refused by a safety check; nothing was deleted. */
  Refused: 3,
  /** Stopped by SIGINT. */
  Interrupted: 130,
  /** Stopped by SIGTERM. */
  Terminated: 143,
} as const;

// ================================================================================================
// Command line
// ================================================================================================

/** A bad flag, value or path: exit 2, nothing changed. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** A safety check said no: exit 3, nothing deleted. */
export class RefusedError extends Error {
  override name = "RefusedError";
}

/** Everything one invocation was asked to do, after defaults and validation. */
export interface Options {
  /** Absolute path of the folder to mirror. */
  source: string;
  /** Absolute path of the mirror. */
  replica: string;
  dryRun: boolean;
  restore: boolean;
  /** With `--restore`: also replace source files changed since the last sync. */
  overwriteNewer: boolean;
  checksum: boolean;
  verify: boolean;
  excludes: string[];
  /** False with `--no-delete`: nothing is ever deleted from the replica. */
  deletes: boolean;
  interactive: boolean;
  allowEmptySource: boolean;
  /** Absolute path of the log file, or null for the console only. */
  logPath: string | null;
  logMaxBytes: number;
  logKeep: number;
  json: boolean;
  /** 0 errors only (`-q`), 1 default, 2 each change (`-v`), 3 each decision (`-vv`). */
  verbosity: number;
  /** Milliseconds between run starts, or null for one run. */
  intervalMs: number | null;
  /** With `--keep-deleted`: how long deleted and overwritten files stay in the trash. */
  keepDeletedMs: number | null;
  /** With `--max-delete`: the most entries one run may delete. */
  maxDelete: DeleteLimit | null;
  /** Files copied or hashed at once, each in a worker thread (`--jobs`). */
  jobs: number;
}

/** A `--max-delete` limit: a count of entries, or a share of the replica's entries. */
export type DeleteLimit = { count: number } | { percent: number };

/** What the command line asked for. */
export type Command = { kind: "help" } | { kind: "version" } | { kind: "run"; options: Options };

const USAGE = `Usage: treesync [options] SOURCE REPLICA

Mirror SOURCE into REPLICA: copy new and changed files, delete extraneous ones, keep folders,
symlinks, modes and mtimes. A file record in REPLICA/.treesync/ keeps each file's SHA-256.

Paths (flags win over the environment):
  -s, --source PATH       folder to mirror (alias --src; default $TREESYNC_SOURCE)
  -r, --replica PATH      the mirror (alias --dest; default $TREESYNC_REPLICA)

What to do:
  -n, --dry-run           print the itemized plan, change nothing (alias --scan)
      --restore           copy missing and differing files from REPLICA back into SOURCE;
                          never deletes anything, never replaces one type with another, and
                          keeps (and reports, exit 1) source files changed since the last sync
      --overwrite-newer   with --restore: replace those changed source files too
      --verify            re-hash every replica file against the record; change nothing
  -c, --checksum          decide "changed" by SHA-256 content instead of size and mtime
      --exclude GLOB      leave matching entries alone on both sides (repeatable):
                          'name' any depth, 'a/b' from the root, 'dir/' folders only, '**' any depth
      --no-delete         never delete anything from the replica (the only --no- flag; an
                          entry whose type changed in the source is reported and left: exit 1)
  -I, --interactive       ask on the terminal before deleting anything
      --allow-empty-source  mirror an empty SOURCE over a non-empty replica (deletes everything)
  -i, --interval DURATION run every DURATION (90, 45s, 5m, 1h30m, 2d; at most 365d) and read
                          commands on stdin
      --keep-deleted DURATION  move deleted and overwritten replica files to
                          REPLICA/.treesync/trash/ instead (with --restore, replaced source files
                          to SOURCE/.treesync/trash/), and purge them after DURATION (at most 365d)
  -j, --jobs N            files copied or hashed at once (default: the number of cores; at
                          most 64)
      --max-delete N|P%   if a run would delete more entries than N (or P% of the replica), delete
                          nothing, still copy, and exit 3

Output:
  -l, --log PATH          also log to PATH (a folder or PATH/ means PATH/treesync.log; alias
                          --log_file; default $TREESYNC_LOG)
      --log-max-size SIZE rotate the log file past SIZE (default 10M; K, M, G suffixes)
      --log-keep N        rotated log files to keep (default 5, at most 100)
      --json              print one JSON summary line on stdout after each run
  -v, --verbose           print each change; twice (-vv) each entry scanned and each decision
  -q, --quiet             print errors only
  -h, --help              show this help
  -V, --version           show the version

An empty path ('', as an unset variable gives) is refused: it would mean the current folder.

Exit codes: 0 replica matches, 1 it does not (entries failed or were kept, deletions declined at
-I, or --verify found mismatches or unrecorded files), 2 usage or setup error (nothing changed),
3 refused by a safety check
(nothing deleted), 130/143 SIGINT/SIGTERM.`;

/** Environment variables that give defaults for flags. */
export type Environment = Partial<
  Record<"TREESYNC_SOURCE" | "TREESYNC_REPLICA" | "TREESYNC_LOG", string>
>;

/**
 * Parses the command line into a {@linkcode Command}.
 *
 * @param args The arguments after the program name.
 * @param env Defaults for the source, replica and log paths.
 * @param cwd The folder relative paths are resolved against.
 * @throws {UsageError} On an unknown flag, a bad value, or missing paths.
 */
export function parseCommandLine(args: string[], env: Environment, cwd: string): Command {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      allowNegative: true,
      strict: true,
      tokens: true,
      options: {
        source: { type: "string", short: "s" },
        src: { type: "string" },
        replica: { type: "string", short: "r" },
        dest: { type: "string" },
        "dry-run": { type: "boolean", short: "n" },
        scan: { type: "boolean" },
        restore: { type: "boolean" },
        "overwrite-newer": { type: "boolean" },
        checksum: { type: "boolean", short: "c" },
        verify: { type: "boolean" },
        exclude: { type: "string", multiple: true },
        delete: { type: "boolean" },
        interactive: { type: "boolean", short: "I" },
        "allow-empty-source": { type: "boolean" },
        interval: { type: "string", short: "i" },
        "keep-deleted": { type: "string" },
        "max-delete": { type: "string" },
        jobs: { type: "string", short: "j" },
        log: { type: "string", short: "l" },
        log_file: { type: "string" },
        "log-max-size": { type: "string" },
        "log-keep": { type: "string" },
        json: { type: "boolean" },
        verbose: { type: "boolean", short: "v", multiple: true },
        quiet: { type: "boolean", short: "q" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
      },
    });
  } catch (error) {
    throw new UsageError(describeParseError(error));
  }
  const { values, positionals, tokens } = parsed;
  checkOptionTokens(tokens);
  if (values.help) return { kind: "help" };
  if (values.version) return { kind: "version" };

  const verify = values.verify ?? false;
  const source = pickOne("source", [values.source, values.src]);
  const replica = pickOne("replica", [values.replica, values.dest]);
  let sourceArg: string | undefined;
  let replicaArg: string | undefined;
  if (positionals.length > 2) {
    const extra = positionals.slice(2);
    const more = extra.length > 3 ? ` and ${extra.length - 3} more` : "";
    throw new UsageError(`Too many paths: ${extra.slice(0, 3).map(quoted).join(" ")}${more}`);
  } else if (positionals.length === 2) {
    if (source !== undefined || replica !== undefined) {
      throw new UsageError("Give SOURCE and REPLICA either as two paths or with -s and -r");
    }
    [sourceArg, replicaArg] = positionals;
  } else if (positionals.length === 1) {
    // One path fills whichever of the two is not given by a flag; `--verify REPLICA` needs
    // no source at all.
    if (replica === undefined && (source !== undefined || verify)) replicaArg = positionals[0];
    else if (source === undefined && replica !== undefined) sourceArg = positionals[0];
    else {
      pathFromEnv(env, "TREESYNC_REPLICA"); // set but empty: the likelier slip, named first
      throw new UsageError("Missing REPLICA: give SOURCE and REPLICA");
    }
  }
  // An empty path would resolve to the current folder: `treesync "$SRC" "$DEST"` with DEST
  // unset would mirror over wherever the script happens to run.
  const position = (index: number) =>
    positionals.length === 2 ? (index === 0 ? "the first path" : "the second path") : "the path";
  if (sourceArg === "") throw emptyPath("SOURCE", `${position(0)} is ''`);
  if (replicaArg === "") throw emptyPath("REPLICA", `${position(1)} is ''`);
  sourceArg ??= source ?? (verify ? undefined : pathFromEnv(env, "TREESYNC_SOURCE"));
  replicaArg ??= replica ?? pathFromEnv(env, "TREESYNC_REPLICA");
  if (replicaArg === undefined) {
    throw new UsageError("Missing REPLICA: give SOURCE and REPLICA, or set TREESYNC_REPLICA");
  }
  if (sourceArg === undefined && !verify) {
    throw new UsageError("Missing SOURCE: give SOURCE and REPLICA, or set TREESYNC_SOURCE");
  }

  const dryRun = (values["dry-run"] ?? false) || (values.scan ?? false);
  const restore = values.restore ?? false;
  const interactive = values.interactive ?? false;
  const modes = [restore && "--restore", verify && "--verify"].filter(Boolean);
  if (modes.length > 1) throw new UsageError(`Choose one of ${modes.join(" and ")}`);
  const overwriteNewer = values["overwrite-newer"] ?? false;
  if (overwriteNewer && !restore) {
    throw new UsageError("--overwrite-newer only applies to --restore");
  }
  if (values.quiet && values.verbose) throw new UsageError("Choose one of --quiet and --verbose");
  const intervalMs = values.interval === undefined
    ? null
    : parseDuration(values.interval, "--interval");
  if (intervalMs !== null && (interactive || verify)) {
    throw new UsageError(
      `--interval cannot be combined with ${interactive ? "--interactive" : "--verify"}`,
    );
  }

  const excludes = values.exclude ?? [];
  compileExcludes(excludes); // validates every pattern now, before anything runs
  const logArg = pickOne("log", [values.log, values.log_file]) ?? pathFromEnv(env, "TREESYNC_LOG");

  return {
    kind: "run",
    options: {
      source: resolve(cwd, sourceArg ?? replicaArg),
      replica: resolve(cwd, replicaArg),
      dryRun,
      restore,
      overwriteNewer,
      checksum: values.checksum ?? false,
      verify,
      excludes,
      deletes: values.delete ?? true,
      interactive,
      allowEmptySource: values["allow-empty-source"] ?? false,
      logPath: logArg === undefined ? null : resolveLogPath(cwd, logArg),
      logMaxBytes: parseSize(values["log-max-size"] ?? "10M", "--log-max-size"),
      logKeep: parseCount(values["log-keep"] ?? "5", "--log-keep", MAX_LOG_KEEP),
      json: values.json ?? false,
      verbosity: values.quiet ? 0 : 1 + (values.verbose?.length ?? 0),
      intervalMs,
      keepDeletedMs: values["keep-deleted"] === undefined
        ? null
        : parseDuration(values["keep-deleted"], "--keep-deleted"),
      maxDelete: values["max-delete"] === undefined ? null : parseDeleteLimit(values["max-delete"]),
      jobs: values.jobs === undefined
        ? Math.min(MAX_JOBS, Math.max(1, navigator.hardwareConcurrency || 1))
        : parseCount(values.jobs, "--jobs", MAX_JOBS),
    },
  };
}

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

function describeParseError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  // node:util's messages end with advice for programmers ("To specify a positional argument
  // starting with a '-' ..."); the first sentence is the one that helps a user.
  return shortenQuoted(message.split(". ")[0]!.replace(/\.$/, ""));
}

function pickOne(name: string, values: Array<string | undefined>): string | undefined {
  const given = values.filter((value) => value !== undefined);
  if (given.length > 1) {
    throw new UsageError(`--${name} is given twice: ${given.map(quoted).join(" and ")}`);
  }
  return given[0];
}

/** Long options whose `--no-` form means something; every other `--no-X` is refused. */
const NEGATABLE_OPTIONS = new Set(["--no-delete"]);
/** Options that take a path: an empty one is refused, never read as the current folder. */
const PATH_OPTIONS = new Set(["source", "src", "replica", "dest", "log", "log_file"]);

/**
 * Refuses what `parseArgs` lets through: `--no-X` for flags where "no" means nothing
 * (`--no-verify` would be a silent no-op), and an empty path after a path option.
 */
function checkOptionTokens(
  tokens: Array<{ kind: string; rawName?: string; name?: string; value?: string | undefined }>,
): void {
  for (const token of tokens) {
    if (token.kind !== "option") continue;
    const rawName = token.rawName!;
    if (rawName.startsWith("--no-") && !NEGATABLE_OPTIONS.has(rawName)) {
      throw new UsageError(`Unknown option ${quoted(rawName)}`);
    }
    if (PATH_OPTIONS.has(token.name!) && token.value === "") {
      throw emptyPath(rawName, `${rawName} is given ''`);
    }
  }
}

function emptyPath(what: string, why: string): UsageError {
  return new UsageError(`Empty path for ${what} (${why}): is a variable unset?`);
}

/**
 * A path from the environment. Set but empty is refused: `TREESYNC_REPLICA="$DEST"` with DEST
 * unset is a script bug, and an empty path would be the current folder.
 */
function pathFromEnv(env: Environment, name: keyof Environment): string | undefined {
  if (env[name] === "") throw emptyPath(name, `it is set but empty`);
  return env[name];
}

function resolveLogPath(cwd: string, logArg: string): string {
  const path = resolve(cwd, logArg);
  if (logArg.endsWith("/")) return join(path, "treesync.log");
  try {
    if (Deno.statSync(path).isDirectory) return join(path, "treesync.log");
  } catch {
    // Not there yet: it names the file, and its folders are created when logging starts.
  }
  return path;
}

const DURATION_UNITS_MS = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000 } as const;

/** The longest `--interval` and `--keep-deleted`: 365 days. */
export const MAX_DURATION_MS = 365 * DURATION_UNITS_MS.d;
/** The most `--jobs`: each job is a worker thread with its own V8 heap (~12 MB at rest). */
export const MAX_JOBS = 64;
/** The most `--log-keep`: old log files kept beside the current one. */
export const MAX_LOG_KEEP = 100;

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
  const match = /^(?:(\d+)|(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?)$/.exec(text.trim());
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

function parseSize(text: string, flag: string): number {
  const match = /^(\d+)([KMG]?)i?B?$/i.exec(text.trim());
  const factor = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[match?.[2]?.toUpperCase() ?? ""];
  const bytes = match && factor ? Number(match[1]) * factor : NaN;
  if (!(bytes >= 1024)) {
    throw new UsageError(`Invalid ${flag} ${quoted(text)}: use a size like 10M`);
  }
  return bytes;
}

function parseCount(text: string, flag: string, max: number): number {
  if (!/^\d+$/.test(text) || Number(text) < 1) {
    throw new UsageError(`Invalid ${flag} ${quoted(text)}: use a whole number from 1 to ${max}`);
  }
  if (Number(text) > max) {
    throw new UsageError(`Invalid ${flag} ${quoted(text)}: the most is ${max}`);
  }
  return Number(text);
}

// ================================================================================================
// Exclusions
// ================================================================================================

/** Says whether a relative path (folders flagged) is excluded from the mirror. */
export type ExcludeMatcher = (path: string, isDir: boolean) => boolean;

/**
 * Compiles `--exclude` globs the way rsync and `.gitignore` read them: a pattern without a
 * slash matches a name at any depth; a slash at the start or in the middle anchors it at the
 * root; a trailing slash matches folders only. `*` and `?` stay within one name, `**` crosses
 * folders, `[abc]` is a class.
 *
 * @throws {UsageError} For an empty pattern or an unclosed `[`.
 */
export function compileExcludes(patterns: string[]): ExcludeMatcher {
  const rules = patterns.map((pattern) => {
    let body = pattern;
    const dirOnly = body.endsWith("/");
    if (dirOnly) body = body.replace(/\/+$/, "");
    const anchored = body.includes("/");
    body = body.replace(/^\/+/, "");
    if (body === "") {
      throw new UsageError(`Invalid --exclude ${quoted(pattern)}: the pattern is empty`);
    }
    return { dirOnly, anchored, regex: new RegExp(`^${globToRegex(body, pattern)}$`, "s") };
  });
  if (rules.length === 0) return () => false;
  return (path, isDir) =>
    rules.some((rule) =>
      (!rule.dirOnly || isDir) &&
      rule.regex.test(rule.anchored ? path : path.slice(path.lastIndexOf("/") + 1))
    );
}

function globToRegex(glob: string, pattern: string): string {
  let out = "";
  for (let i = 0; i < glob.length; i++) {
    const char = glob[i]!;
    if (char === "*" && glob[i + 1] === "*") {
      const slashFollows = glob[i + 2] === "/";
      out += slashFollows ? "(?:.*/)?" : ".*";
      i += slashFollows ? 2 : 1;
    } else if (char === "*") {
      out += "[^/]*";
    } else if (char === "?") {
      out += "[^/]";
    } else if (char === "[") {
      const close = glob.indexOf("]", i + 2);
      if (close < 0) {
        throw new UsageError(`Invalid --exclude ${quoted(pattern)}: '[' is not closed`);
      }
      const inside = glob.slice(i + 1, close).replace(/^!/, "^").replace(/\\/g, "\\\\");
      out += `[${inside}]`;
      i = close;
    } else {
      out += char.replace(/[.+^${}()|\\\]]/g, "\\$&");
    }
  }
  return out;
}

// ================================================================================================
// Scan
// ================================================================================================

/** What a folder entry is; `special` covers fifos, sockets and devices. */
export type EntryKind = "file" | "dir" | "symlink" | "special";

/** One entry of a scanned tree, keyed elsewhere by its path relative to the root. */
export interface Entry extends Signature {
  kind: EntryKind;
  /** Device, with `ino` the entry's identity: a folder swapped during a run shows here. */
  dev: number;
  /** Permission bits (`0o7777`). */
  mode: number;
  uid: number;
  gid: number;
  /** Symlink target, for symlinks. */
  target?: string;
  /** SHA-256 in hex, where it has been computed this run. */
  hash?: string;
  /** When `hash` was computed. */
  hashedAtMs?: number;
}

/** Something that went wrong with one path; the run goes on and exits 1. */
export interface Problem {
  path: string;
  message: string;
}

/** A tree as one scan saw it. Paths are relative, `/`-separated; the root itself is `""`. */
export interface Scan {
  entries: Map<string, Entry>;
  /** Entries that could not be read: each makes the run fail. */
  problems: Problem[];
  /**
   * Paths that are not in `entries` but may hold data: unreadable or undecodable entries,
   * excluded ones, skipped specials. Nothing at or below them, nor any folder above them, is
   * ever deleted.
   */
  kept: string[];
  /** A folder met during the walk that is the other tree's root (a bind mount), if any. */
  nested?: string;
}

/** A device and inode: what a path resolved to when it was looked at. */
export interface Identity {
  dev: number;
  ino: number;
}

/** How {@linkcode scanTree} looks at a tree. */
export interface ScanOptions {
  /** Leaves excluded entries out and keeps them. */
  exclude: ExcludeMatcher;
  /** Leaves the root's `.treesync` folder out (it is the replica's own). */
  skipMetaDir?: boolean;
  /** Called for each skipped special file. */
  onSkip?: (path: string, message: string) => void;
  /** Folders the walk must not enter: the other tree's root. Meeting one ends the scan. */
  avoid?: Identity[];
}

/**
 * Lists a tree without following symlinks, using Deno's synchronous calls (several times
 * faster per call than the async ones). Runs in a worker during a mirror, so it need not
 * yield.
 *
 * @param root An existing folder.
 */
export function scanTree(root: string, options: ScanOptions): Scan {
  const { exclude, skipMetaDir = false, onSkip, avoid = [] } = options;
  // The root is followed if it is a symlink (/srv/data -> /mnt/disk1/data): it is the folder
  // to mirror, never an entry to replace. Everything below it is not followed.
  const entries = new Map<string, Entry>([["", entryFromStat(Deno.statSync(root))]]);
  const problems: Problem[] = [];
  const kept: string[] = [];
  const pending = [""];
  while (pending.length > 0) {
    const folder = pending.pop()!;
    const folderPath = folder === "" ? root : `${root}/${folder}`;
    let listing: Deno.DirEntry[];
    try {
      listing = [...Deno.readDirSync(folderPath)];
    } catch (error) {
      problems.push({ path: folder, message: `Cannot list folder: ${errorText(error)}` });
      kept.push(folder);
      entries.delete(folder);
      continue;
    }
    // Names that are not UTF-8 come back with U+FFFD, and two of them can then look the same.
    const nameCounts = new Map<string, number>();
    if (listing.some((item) => item.name.includes("\uFFFD"))) {
      for (const item of listing) nameCounts.set(item.name, (nameCounts.get(item.name) ?? 0) + 1);
    }
    for (const item of listing) {
      const path = folder === "" ? item.name : `${folder}/${item.name}`;
      if (folder === "" && skipMetaDir && item.name === META_DIR) continue;
      if (exclude(path, item.isDirectory)) {
        kept.push(path);
        continue;
      }
      let stat: Deno.FileInfo;
      try {
        // Two names that listed the same had bytes that are not UTF-8: neither can be reached.
        if ((nameCounts.get(item.name) ?? 0) > 1) throw new Deno.errors.NotFound();
        stat = Deno.lstatSync(`${root}/${path}`);
      } catch (error) {
        const lossy = item.name.includes("\uFFFD");
        problems.push({
          path,
          message: lossy
            ? "Skipped: the name is not valid UTF-8, which this tool cannot read or write"
            : error instanceof Deno.errors.NotFound
            ? "Skipped: it vanished during the scan"
            : `Skipped: ${errorText(error)}`,
        });
        kept.push(path);
        continue;
      }
      const entry = entryFromStat(stat);
      if (entry.kind === "special") {
        onSkip?.(path, "Skipped: fifos, sockets and devices are not mirrored");
        kept.push(path);
        continue;
      }
      if (entry.kind === "symlink") {
        try {
          entry.target = Deno.readLinkSync(`${root}/${path}`);
        } catch (error) {
          problems.push({ path, message: `Cannot read symlink: ${errorText(error)}` });
          kept.push(path);
          continue;
        }
      }
      if (entry.kind === "dir" && avoid.some((id) => sameIdentity(id, entry))) {
        // A bind mount shows one folder under two real paths: only its inode tells.
        return { entries, problems, kept, nested: path };
      }
      entries.set(path, entry);
      if (entry.kind === "dir") pending.push(path);
    }
  }
  return { entries, problems, kept };
}

function entryFromStat(stat: Deno.FileInfo): Entry {
  const kind: EntryKind = stat.isFile
    ? "file"
    : stat.isDirectory
    ? "dir"
    : stat.isSymlink
    ? "symlink"
    : "special";
  return {
    kind,
    size: kind === "file" ? stat.size : 0,
    mtimeMs: stat.mtime?.getTime() ?? 0,
    ctimeMs: stat.ctime?.getTime() ?? 0,
    ino: stat.ino ?? 0,
    dev: stat.dev ?? 0,
    mode: (stat.mode ?? 0) & 0o7777,
    uid: stat.uid ?? 0,
    gid: stat.gid ?? 0,
  };
}

// ================================================================================================
// Plan
// ================================================================================================

/**
 * One change to the target tree. Kinds: `mkdir` a folder, `copy` a new file, `update` a changed
 * file, `link` (re)create a symlink, `attrs` fix mode/owner/mtime only, `move` rename a replica
 * file or folder whose content reappeared elsewhere in the source, `delete` a file or symlink,
 * `rmdir` an emptied folder, `dirattrs` set a folder's mode/owner/mtime after it is filled.
 */
export interface Action {
  kind:
    | "mkdir"
    | "copy"
    | "update"
    | "link"
    | "attrs"
    | "move"
    | "delete"
    | "rmdir"
    | "dirattrs";
  path: string;
  /** Why, in words, for `-vv` and the log. */
  reason: string;
  /** The entry to reproduce (every kind but `delete` and `rmdir`). */
  entry?: Entry;
  /** For `move`: the path it comes from, in the same tree. */
  from?: string;
}

/** What {@linkcode planMirror} decided. */
export interface Plan {
  /** In the order they must run. */
  actions: Action[];
  /** Changes the options forbade or that cannot be made safely: each makes the run fail. */
  blocked: Problem[];
  /** Entries left in the target because deletions are off. */
  keptExtraneous: number;
}

/** How {@linkcode planMirror} decides. */
export interface PlanOptions {
  /** Compare content hashes instead of size and mtime. */
  checksum: boolean;
  /**
   * Delete extraneous entries and replace entries whose type changed. Without it nothing is
   * removed: a type change is reported and left as it is.
   */
  deletes: boolean;
  /** Compare owner and group too (when running as root). */
  owners: boolean;
  /** What the record knows of `from`'s files: hashes that need no reading. */
  fromHashes?: RecordMap;
  /** What the record knows of `to`'s files. */
  toHashes?: RecordMap;
  /** Turn a deletion plus a copy of the same content into one rename (files and folders). */
  moves?: boolean;
  /**
   * Restoring: `to` is the source and `toHashes` the record's source side. A target entry the
   * last sync did not see as it is now (see {@linkcode unchangedSinceRecorded}) is kept and
   * reported, not overwritten, unless `overwriteNewer`. Nothing is deleted either way.
   */
  restore?: boolean;
  /** With `restore`: overwrite target files changed since the last sync too. */
  overwriteNewer?: boolean;
  /** Called with each unchanged entry and why, for `-vv`. */
  explain?: (path: string, reason: string) => void;
}

/** Finds a file's SHA-256 without reading it, or says it is not known. */
export type HashLookup = (path: string, entry: Entry) => string | null;

/**
 * A file's hash as far as it is known without reading: computed this run, or kept in the record
 * under its path, or under another path with the same inode and signature (a renamed file).
 * Pure.
 */
export function hashLookup(known: RecordMap | undefined): HashLookup {
  let byInode: Map<number, RecordEntry> | null = null;
  return (path, entry) => {
    if (entry.kind !== "file") return null;
    if (entry.hash !== undefined) return entry.hash;
    const direct = trustedHash(known?.get(path), entry);
    if (direct !== null || !known || known.size === 0) return direct;
    if (byInode === null) {
      byInode = new Map();
      for (const recorded of known.values()) byInode.set(recorded.ino, recorded);
    }
    return trustedHash(byInode.get(entry.ino), entry);
  };
}

/**
 * Decides what to change in `to` so that it matches `from`. Pure: reads no disk.
 *
 * Order: folders that must give way to another type are emptied and removed first (deepest
 * first), then folders are created (shallowest first), replica files and folders moved where
 * their content went, files and symlinks copied, extraneous entries deleted (deepest first;
 * deleting last means a failed copy never costs the old copy), and folder attributes set last,
 * since filling a folder changes its mtime.
 */
export function planMirror(from: Scan, to: Scan, options: PlanOptions): Plan {
  const { checksum, deletes, owners, explain, restore = false } = options;
  const guardTargets = restore && !options.overwriteNewer;
  const keptPaths = new Set([...from.kept, ...to.kept]);
  const keptAncestors = new Set<string>();
  for (const path of keptPaths) for (const parent of ancestors(path)) keptAncestors.add(parent);
  const isKept = (path: string) =>
    keptAncestors.has(path) || [path, ...ancestors(path)].some((p) => keptPaths.has(p));
  const fromHash = hashLookup(options.fromHashes);
  const toHash = hashLookup(options.toHashes);

  const removals: Action[] = []; // type changes, run first
  const creations: Action[] = [];
  const deletions: Action[] = []; // extraneous, run after copies
  const blocked: Problem[] = [];
  const touchedFolders = new Set<string>();
  const replaced = new Set<string>(); // target folders removed to make way for another type
  const left = new Set<string>(); // type changes left as they are: nothing happens at or below
  let keptExtraneous = 0;

  for (const [path, source] of from.entries) {
    const target = to.entries.get(path);
    if (path === "" && (source.kind !== "dir" || (target && target.kind !== "dir"))) {
      // Never plan to replace a root: whatever made it look like this, it is not a change.
      blocked.push({
        path: ".",
        message: "Not mirrored: the source or replica root is not a folder",
      });
      continue;
    }
    if (target && target.kind !== source.kind) {
      if (!deletes || restore) {
        // Replacing one type with another removes what was there: never without deletions.
        left.add(path);
        blocked.push({
          path,
          message: restore
            ? `Not restored: the source has a ${kindName(target.kind)} here and the replica a ` +
              `${kindName(source.kind)}; restore never replaces one with the other`
            : `Not replaced: the replica has a ${kindName(target.kind)} here and the source a ` +
              `${kindName(source.kind)}, and deletions are off`,
        });
        continue;
      }
      if (target.kind === "dir") {
        if (isKept(path)) {
          blocked.push({
            path,
            message:
              `Not replaced: the replica's folder holds entries that are excluded or unreadable`,
          });
          continue;
        }
        replaced.add(path);
        removals.push({ kind: "rmdir", path, reason: `replaced by a ${source.kind}` });
      } else {
        // A file or symlink giving way is an overwrite, as rsync does without --delete.
        removals.push({ kind: "delete", path, reason: `replaced by a ${source.kind}` });
      }
      touchedFolders.add(parentOf(path));
      if (source.kind === "dir") touchedFolders.add(path);
      creations.push(creationFor(path, source, "type changed"));
      continue;
    }
    if (!target) {
      touchedFolders.add(parentOf(path));
      if (source.kind === "dir") touchedFolders.add(path); // mkdir gives it today's mtime
      creations.push(creationFor(path, source, "new"));
      continue;
    }
    // Hashes matter only for same-size files that --checksum compares, whose mtimes differ, or
    // that were hashed because the record saw them change or cannot vouch for them (see
    // hashesNeeded).
    const hashesMatter = source.kind === "file" && source.size === target.size &&
      (checksum || source.mtimeMs !== target.mtimeMs || source.hash !== undefined ||
        target.hash !== undefined);
    const change = compareEntries(source, target, {
      checksum,
      owners,
      fromHash: hashesMatter ? fromHash(path, source) : null,
      toHash: hashesMatter ? toHash(path, target) : null,
    });
    if (change === null) {
      explain?.(path, "unchanged");
      continue;
    }
    if (change.kind === "dirattrs") {
      touchedFolders.add(path);
      continue;
    }
    if (guardTargets && !unchangedSinceRecorded(options.toHashes?.get(path), target)) {
      blocked.push({
        path,
        message: `Kept: the source's ${kindName(target.kind)} is not as the last sync left ` +
          `it and differs from the replica's (${change.reason}); pass --overwrite-newer to ` +
          `replace it`,
      });
      continue;
    }
    if (change.kind !== "attrs") touchedFolders.add(parentOf(path));
    creations.push({ kind: change.kind, path, reason: change.reason, entry: source });
  }

  for (const [path, target] of to.entries) {
    const source = from.entries.get(path);
    if (path === "" || (source && source.kind === target.kind)) continue;
    if (source && !replaced.has(path) && target.kind !== "dir") continue; // overwritten above
    const underReplaced = ancestors(path).some((parent) => replaced.has(parent));
    if (replaced.has(path)) continue; // already planned as a removal
    if (isKept(path)) continue;
    if (!deletes) {
      keptExtraneous++;
      continue;
    }
    const action: Action = {
      kind: target.kind === "dir" ? "rmdir" : "delete",
      path,
      reason: underReplaced ? "inside a folder replaced by another type" : "not in source",
    };
    (underReplaced ? removals : deletions).push(action);
    touchedFolders.add(parentOf(path));
  }

  byPath(removals, "deepest");
  byPath(creations, "shallowest");
  byPath(deletions, "deepest");
  let moves: Action[] = [];
  let kept = { creations, deletions };
  if (options.moves && deletions.length > 0) {
    ({ moves, kept } = planMoves({ from, to, creations, deletions, fromHash, toHash, owners }));
    for (const move of moves) {
      touchedFolders.add(parentOf(move.path)).add(parentOf(move.from!));
      if (move.entry!.kind === "dir") touchedFolders.add(move.path);
    }
  }

  if (left.size > 0) {
    // What would be created below an entry left in place has no folder to go in.
    kept.creations = kept.creations.filter((a) => !isUnderAny(a.path, left));
  }
  const folderAttrs: Action[] = [];
  for (const path of touchedFolders) {
    const source = from.entries.get(path);
    if (left.size > 0 && isUnderAny(path, left, true)) continue;
    if (source?.kind === "dir") {
      folderAttrs.push({ kind: "dirattrs", path, reason: "folder attributes", entry: source });
    }
  }
  byPath(folderAttrs, "deepest");
  const mkdirs = kept.creations.filter((a) => a.kind === "mkdir");
  const transfers = kept.creations.filter((a) => a.kind !== "mkdir");
  return {
    actions: [...removals, ...mkdirs, ...moves, ...transfers, ...kept.deletions, ...folderAttrs],
    blocked,
    keptExtraneous,
  };
}

interface MoveInput {
  from: Scan;
  to: Scan;
  /** Sorted shallowest first. */
  creations: Action[];
  /** Sorted deepest first. */
  deletions: Action[];
  fromHash: HashLookup;
  toHash: HashLookup;
  owners: boolean;
}

/**
 * Turns "delete a replica file, copy a source file with the same size and SHA-256" into one
 * rename, and a new source folder whose whole tree matches a deleted replica folder into one
 * rename of the folder. Candidates are paired by size first, so only same-size files ever need
 * a hash. Among equal candidates, one with the same name wins (a folder was renamed). Pure.
 *
 * @returns The moves (attribute fixes for a moved folder's contents included) and what is left
 * of the creations and deletions.
 */
function planMoves(input: MoveInput): {
  moves: Action[];
  kept: { creations: Action[]; deletions: Action[] };
} {
  const { from, to, creations, deletions, fromHash, toHash, owners } = input;
  const unchanged = { moves: [], kept: { creations, deletions } };
  const goneByContent = new Map<string, string[]>();
  for (const action of deletions) {
    const entry = to.entries.get(action.path)!;
    const hash = action.kind === "delete" ? toHash(action.path, entry) : null;
    if (hash !== null) {
      const key = `${entry.size}:${hash}`;
      const group = goneByContent.get(key);
      if (group) group.push(action.path);
      else goneByContent.set(key, [action.path]);
    }
  }
  if (goneByContent.size === 0) return unchanged;

  const fileMoves = new Map<string, string>(); // new path -> replica path it comes from
  for (const action of creations) {
    if (action.kind !== "copy" || action.reason !== "new") continue;
    const hash = fromHash(action.path, action.entry!);
    const candidates = hash === null
      ? undefined
      : goneByContent.get(`${action.entry!.size}:${hash}`);
    if (!candidates?.length) continue;
    const name = baseName(action.path);
    const sameName = candidates.findIndex((path) => baseName(path) === name);
    fileMoves.set(action.path, candidates.splice(Math.max(sameName, 0), 1)[0]!);
  }
  if (fileMoves.size === 0) return unchanged;

  // Folder candidates: walk up a moved file's old and new paths while the names agree.
  const folderPairs = new Map<string, string>();
  for (const [newPath, oldPath] of fileMoves) {
    let [n, o] = [newPath, oldPath];
    while (n.includes("/") && o.includes("/") && baseName(n) === baseName(o)) {
      [n, o] = [parentOf(n), parentOf(o)];
      if (!folderPairs.has(n)) folderPairs.set(n, o);
    }
  }
  const newDirs = new Set(
    creations.filter((a) => a.kind === "mkdir" && a.reason === "new").map((a) => a.path),
  );
  const goneDirs = new Set(deletions.filter((a) => a.kind === "rmdir").map((a) => a.path));
  const creationPaths = creations.map((a) => a.path); // sorted ascending
  const deletionPaths = deletions.map((a) => a.path).reverse(); // sorted ascending
  const folderMoves = new Map<string, string>();
  const movedOld = new Set<string>();
  const attrFixes: Action[] = [];
  const candidates = [...folderPairs].filter(([n, o]) => newDirs.has(n) && goneDirs.has(o))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [newDir, oldDir] of candidates) {
    if (isUnderAny(newDir, folderMoves) || isUnderAny(oldDir, movedOld)) continue;
    const newInside = subtree(creationPaths, newDir);
    const oldInside = subtree(deletionPaths, oldDir);
    if (newInside.length !== oldInside.length) continue;
    const fixes: Action[] = [];
    const matches = newInside.every((newPath) => {
      const oldPath = oldDir + newPath.slice(newDir.length);
      const source = from.entries.get(newPath)!;
      const target = to.entries.get(oldPath);
      if (!target || target.kind !== source.kind) return false;
      if (source.kind === "file" && fileMoves.get(newPath) !== oldPath) return false;
      if (source.kind === "symlink" && source.target !== target.target) return false;
      const hash = source.kind === "file" ? fromHash(newPath, source) : null;
      const change = compareEntries(source, target, {
        checksum: true,
        owners,
        fromHash: hash,
        toHash: hash,
      });
      if (change?.kind === "attrs" || change?.kind === "dirattrs") {
        fixes.push({ kind: change.kind, path: newPath, reason: change.reason, entry: source });
      }
      return true;
    });
    if (!matches) continue;
    folderMoves.set(newDir, oldDir);
    movedOld.add(oldDir);
    attrFixes.push(...fixes.filter((fix) => fix.kind === "attrs"));
  }

  const moves: Action[] = [];
  for (const [newDir, oldDir] of folderMoves) {
    moves.push({
      kind: "move",
      path: newDir,
      from: oldDir,
      reason: "same folder tree",
      entry: from.entries.get(newDir)!,
    });
  }
  const movedFiles = new Set<string>();
  for (const [newPath, oldPath] of fileMoves) {
    if (isUnderAny(newPath, folderMoves)) continue;
    movedFiles.add(newPath).add(oldPath);
    moves.push({
      kind: "move",
      path: newPath,
      from: oldPath,
      reason: "same size and SHA-256",
      entry: from.entries.get(newPath)!,
    });
  }
  const keptCreations = creations.filter((a) =>
    !(a.kind === "copy" && movedFiles.has(a.path)) && !isUnderAny(a.path, folderMoves, true)
  );
  const keptDeletions = deletions.filter((a) =>
    !(a.kind === "delete" && movedFiles.has(a.path)) && !isUnderAny(a.path, movedOld, true)
  );
  return {
    moves,
    kept: { creations: [...keptCreations, ...attrFixes], deletions: keptDeletions },
  };
}

/** Paths strictly below `folder` in an ascending list (they are contiguous there). */
function subtree(sortedPaths: string[], folder: string): string[] {
  const prefix = `${folder}/`;
  let low = 0;
  let high = sortedPaths.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (sortedPaths[middle]! < prefix) low = middle + 1;
    else high = middle;
  }
  const result: string[] = [];
  for (let i = low; i < sortedPaths.length && sortedPaths[i]!.startsWith(prefix); i++) {
    result.push(sortedPaths[i]!);
  }
  return result;
}

/** Whether `path` is below (or, with `orAt`, at) one of the folders. */
function isUnderAny(
  path: string,
  folders: Map<string, string> | Set<string>,
  orAt = false,
): boolean {
  if (folders.size === 0) return false;
  if (orAt && folders.has(path)) return true;
  return ancestors(path).some((parent) => folders.has(parent));
}

function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

function kindName(kind: EntryKind): string {
  return kind === "dir" ? "folder" : kind;
}

/**
 * The plan without its deletions: extraneous entries stay, and so do entries that were to give
 * way to another type, whose replacements (and anything to be created below them) are dropped.
 * Pure.
 *
 * @returns The new plan and how many deletions it held back.
 */
export function holdBackDeletions(plan: Plan): { plan: Plan; heldBack: number } {
  const removesData = (a: Action) => a.kind === "delete" || a.kind === "rmdir";
  const heldPaths = new Set(plan.actions.filter(removesData).map((a) => a.path));
  const underHeld = (path: string) =>
    heldPaths.has(path) || ancestors(path).some((parent) => heldPaths.has(parent));
  const actions = plan.actions.filter((a) =>
    !removesData(a) && (a.kind === "dirattrs" || a.kind === "attrs" || !underHeld(a.path))
  );
  return { plan: { ...plan, actions }, heldBack: heldPaths.size };
}

/** The number of entries a `--max-delete` limit allows in a replica of `entryCount` entries. */
export function deleteAllowance(limit: DeleteLimit, entryCount: number): number {
  return "count" in limit ? limit.count : Math.floor((limit.percent / 100) * entryCount);
}

function creationFor(path: string, entry: Entry, reason: string): Action {
  const kind = entry.kind === "dir" ? "mkdir" : entry.kind === "symlink" ? "link" : "copy";
  return { kind, path, reason, entry };
}

interface CompareOptions {
  checksum: boolean;
  owners: boolean;
  fromHash: string | null;
  toHash: string | null;
}

/**
 * The one place that decides whether an entry needs a transfer. Checks, in order: size; then
 * content with `--checksum`, or mtime without it, where equal known hashes still spare the copy
 * (only the mtime is fixed); then mode and owner.
 *
 * @returns The change to make, or null when the entry is unchanged.
 */
export function compareEntries(
  from: Entry,
  to: Entry,
  options: CompareOptions,
): { kind: "update" | "link" | "attrs" | "dirattrs"; reason: string } | null {
  const { checksum, owners, fromHash, toHash } = options;
  const attrsDiffer = from.mode !== to.mode ||
    (owners && (from.uid !== to.uid || from.gid !== to.gid));
  if (from.kind === "symlink") {
    if (from.target !== to.target) return { kind: "link", reason: "symlink target differs" };
    return null; // a link's own mode means nothing on Linux; its mtime is set when made
  }
  if (from.kind === "dir") {
    if (attrsDiffer || from.mtimeMs !== to.mtimeMs) {
      return { kind: "dirattrs", reason: "folder attributes differ" };
    }
    return null;
  }
  if (from.size !== to.size) {
    return { kind: "update", reason: `size differs (${to.size} -> ${from.size})` };
  }
  const sameContent = fromHash !== null && fromHash === toHash;
  if (checksum && !sameContent) return { kind: "update", reason: "content differs" };
  if (fromHash !== null && toHash !== null && !sameContent) {
    return { kind: "update", reason: "content differs (SHA-256), size and mtime alike" };
  }
  if (from.mtimeMs !== to.mtimeMs) {
    return sameContent
      ? { kind: "attrs", reason: "mtime differs, same SHA-256" }
      : { kind: "update", reason: "mtime differs" };
  }
  if (attrsDiffer) return { kind: "attrs", reason: "mode or owner differs" };
  return null;
}

/**
 * Lists the files to hash before planning, those whose SHA-256 would change a decision and is
 * not known yet:
 *
 * - with `--checksum`, both sides of every same-size pair;
 * - a same-size pair whose mtime differs, when the target's hash is known (equal content then
 *   needs no copy): the source side, and the target too if the record has its hash but cannot
 *   trust it yet (see {@linkcode trustedHash});
 * - both sides of a pair that size and mtime call unchanged but whose source the record saw
 *   with another inode or ctime (an edit with the mtime put back);
 * - both sides of a pair that size and mtime call unchanged but whose target the record does
 *   not know as it is (an interrupted run, a replica made by another tool, damage with the mtime
 *   put back), so that after a run every target file has a hash in the record; without
 *   deletions, also the target files that stay without a source;
 * - for move detection, new source files and extraneous target files of a size found on both
 *   sides;
 * - restoring, a target the plan may overwrite whose recorded hash cannot be trusted yet, to
 *   tell whether it changed since the last sync.
 *
 * Restoring, targets are source files and are never hashed just to complete the record. A
 * hash the record has for a file as it is now is never read again just because it is not yet
 * trusted: a no-op run reads nothing. Pure.
 */
export function hashesNeeded(
  from: Scan,
  to: Scan,
  options:
    & Pick<PlanOptions, "checksum" | "fromHashes" | "toHashes" | "moves" | "overwriteNewer">
    & { deletes?: boolean; restore?: boolean },
): { from: string[]; to: string[] } {
  const fromHash = hashLookup(options.fromHashes);
  const toHash = hashLookup(options.toHashes);
  const restore = options.restore ?? false;
  const guardTargets = restore && !options.overwriteNewer;
  const wanted = { from: new Set<string>(), to: new Set<string>() };
  const both = (path: string, source: Entry, target: Entry) => {
    if (fromHash(path, source) === null) wanted.from.add(path);
    if (toHash(path, target) === null) wanted.to.add(path);
  };
  const newBySize = new Map<number, string[]>();
  for (const [path, source] of from.entries) {
    if (source.kind !== "file") continue;
    const target = to.entries.get(path);
    if (!target) {
      if (!options.moves) continue;
      const group = newBySize.get(source.size);
      if (group) group.push(path);
      else newBySize.set(source.size, [path]);
      continue;
    }
    if (target.kind !== "file") continue;
    const knownTarget = options.toHashes?.get(path);
    if (source.size !== target.size) {
      if (guardTargets && racilyRecorded(knownTarget, target)) wanted.to.add(path);
      continue;
    }
    if (options.checksum) {
      both(path, source, target);
    } else if (source.mtimeMs !== target.mtimeMs) {
      if (toHash(path, target) !== null) {
        if (fromHash(path, source) === null) wanted.from.add(path);
      } else if (recordedAsIs(knownTarget, target)) {
        // Hashed in the second it last changed: reading it again may spare a copy.
        both(path, source, target);
      }
    } else if (changedSinceRecorded(options.fromHashes?.get(path), source)) {
      // Size and mtime say unchanged, but the record saw another inode or ctime here: a file
      // swapped in, or edited with its mtime put back. Hash it rather than trust the mtime.
      wanted.from.add(path);
      if (toHash(path, target) === null) wanted.to.add(path);
    } else if (!restore && !recordedAsIs(knownTarget, target)) {
      // Size and mtime say unchanged, but the record cannot vouch for the replica's content.
      both(path, source, target);
    }
  }
  if (!restore && options.deletes === false) {
    // Replica files that stay without a source file get a hash too: --verify can check them.
    for (const [path, target] of to.entries) {
      if (target.kind !== "file" || from.entries.get(path)?.kind === "file") continue;
      if (!recordedAsIs(options.toHashes?.get(path), target)) wanted.to.add(path);
    }
  }
  if (newBySize.size > 0) {
    // Linear in the tree: each size found on both sides adds its new files once.
    const pairedSizes = new Set<number>();
    for (const [path, target] of to.entries) {
      if (target.kind !== "file" || from.entries.has(path) || !newBySize.has(target.size)) {
        continue;
      }
      pairedSizes.add(target.size);
      if (toHash(path, target) === null) wanted.to.add(path);
    }
    for (const size of pairedSizes) {
      for (const newPath of newBySize.get(size)!) {
        if (fromHash(newPath, from.entries.get(newPath)!) === null) wanted.from.add(newPath);
      }
    }
  }
  return { from: [...wanted.from], to: [...wanted.to] };
}

function changedSinceRecorded(known: RecordEntry | undefined, entry: Entry): boolean {
  return known !== undefined && (known.ino !== entry.ino || known.ctimeMs !== entry.ctimeMs);
}

/** Whether the record has a hash for the file as it is now, trusted or not. */
function recordedAsIs(known: RecordEntry | undefined, entry: Entry): boolean {
  return known !== undefined && known.hash !== null && sameSignature(known, entry);
}

/** Whether the record has a hash for the file as it is now that it cannot trust yet. */
function racilyRecorded(known: RecordEntry | undefined, entry: Entry): boolean {
  return recordedAsIs(known, entry) && trustedHash(known, entry) === null;
}

/**
 * Whether the record saw `entry` exactly as it is now: the same signature, and a hash that is
 * trusted or that this run's hash confirms. Folders and symlinks are never recorded: never
 * unchanged. Pure.
 */
export function unchangedSinceRecorded(known: RecordEntry | undefined, entry: Entry): boolean {
  if (entry.kind !== "file" || !recordedAsIs(known, entry)) return false;
  if (entry.hash !== undefined) return entry.hash === known!.hash;
  return trustedHash(known, entry) !== null;
}

/** Paths above `path`, nearest first, ending with the root `""`. */
function ancestors(path: string): string[] {
  const result: string[] = [];
  for (let cut = path.lastIndexOf("/"); path !== ""; cut = path.lastIndexOf("/")) {
    path = cut < 0 ? "" : path.slice(0, cut);
    result.push(path);
  }
  return result;
}

function parentOf(path: string): string {
  const cut = path.lastIndexOf("/");
  return cut < 0 ? "" : path.slice(0, cut);
}

function byPath(actions: Action[], order: "deepest" | "shallowest"): void {
  // In code-unit order a folder sorts before everything below it ("a" < "a/b"), so the reverse
  // order puts every entry before its parent.
  actions.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  if (order === "deepest") actions.reverse();
}

// ================================================================================================
// Apply
// ================================================================================================

/** Counts for one run; printed as the summary and, with `--json`, as a JSON line. */
export interface RunSummary {
  copied: number;
  updated: number;
  deleted: number;
  moved: number;
  dirsCreated: number;
  dirsDeleted: number;
  attrsUpdated: number;
  failed: number;
  bytesCopied: number;
  durationMs: number;
  dryRun: boolean;
  /** Deletions not made: `--max-delete` was exceeded, or `--interactive` was declined. */
  deletionsHeldBack: number;
  /** True when `--max-delete` held deletions back (exit 3). */
  maxDeleteHit: boolean;
}

/** A fresh summary with every count at zero. */
export function emptySummary(dryRun: boolean): RunSummary {
  return {
    copied: 0,
    updated: 0,
    deleted: 0,
    moved: 0,
    dirsCreated: 0,
    dirsDeleted: 0,
    attrsUpdated: 0,
    failed: 0,
    bytesCopied: 0,
    durationMs: 0,
    dryRun,
    deletionsHeldBack: 0,
    maxDeleteHit: false,
  };
}

/** Where and how {@linkcode applyPlan} writes. */
export interface ApplyContext {
  fromRoot: string;
  toRoot: string;
  /** A folder on the target's file system for files being written. */
  tempDir: string;
  /** Where deleted and overwritten files go (`--keep-deleted`), or null to delete them. */
  trashDir: string | null;
  /** Set owner and group (root only). */
  owners: boolean;
  /** Checked between actions: true stops after the current one. */
  shouldStop: () => boolean;
  /** Checked inside long copies: true abandons the file at once. */
  mustAbort: () => boolean;
  pause: () => Promise<void>;
  onDone: (action: Action, bytes: number) => void;
  onFailed: (problem: Problem) => void;
  /** Called as a file is copied, with the bytes just written. */
  onBytes?: (bytes: number) => void;
  /** Called before each action, for the progress line. */
  onStart?: (action: Action) => void;
  /** Workers to copy files in, or null to copy on this thread. */
  pool?: WorkerPool | null;
  /** The target tree's folders, checked before every change below them. */
  guard: FolderGuard;
  /**
   * Called between actions with what is done so far, so the record can be saved during a long
   * run: a run killed later leaves less for the next to hash again. Returns the milliseconds
   * until the next call.
   */
  checkpoint?: (done: RecordChanges) => number;
  /** Milliseconds before the first checkpoint; {@linkcode CHECKPOINT_MS} unless told. */
  firstCheckpointMs?: number;
}

/** How long a run goes before the record is first saved at a checkpoint. */
export const CHECKPOINT_MS = 60_000;

/** What applying a plan did, for the summary and the record. */
export interface ApplyResult extends RecordChanges {
  summary: RunSummary;
  stopped: boolean;
}

/** Runs a plan's actions in order. The only code that writes to a tree. */
export async function applyPlan(plan: Plan, context: ApplyContext): Promise<ApplyResult> {
  const { fromRoot, toRoot, onDone, onFailed, pool } = context;
  const summary = emptySummary(false);
  const result: ApplyResult = {
    summary,
    stopped: false,
    written: new Map(),
    deleted: new Set(),
    resigned: new Map(),
    movedFiles: new Map(),
    movedFolders: new Map(),
  };
  const recordCopy = (action: Action, copied: CopiedFile) => {
    result.written.set(action.path, copied);
    summary.bytesCopied += copied.replica.size;
    summary[action.kind === "copy" ? "copied" : "updated"]++;
    onDone(action, copied.replica.size);
  };

  // With a pool, file copies go out in batches and run while the main thread goes on with the
  // actions that may overlap them (links, attributes); anything else waits for them.
  const inFlight = new Set<Promise<void>>();
  let batch: Action[] = [];
  let batchBytes = 0;
  const dispatch = async () => {
    if (batch.length === 0 || !pool) return;
    const actions = batch;
    batch = [];
    batchBytes = 0;
    while (inFlight.size >= pool.size * 2) await Promise.race(inFlight);
    const items = actions.map((a) => ({
      path: a.path,
      parent: context.guard.expected(parentOf(a.path)),
    }));
    const done = pool.copy(
      { fromRoot, toRoot, items, ...copySettings(context) },
      (bytes) => context.onBytes?.(bytes),
    ).then(
      (outcomes) => {
        outcomes.forEach((outcome, i) => {
          const action = actions[i]!;
          if ("copied" in outcome) recordCopy(action, outcome.copied);
          else if ("error" in outcome) {
            summary.failed++;
            onFailed({ path: action.path, message: `Cannot ${action.kind}: ${outcome.error}` });
          } else result.stopped = true;
        });
      },
    );
    const tracked = done.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  };
  const drain = async () => {
    await dispatch();
    while (inFlight.size > 0) await Promise.race(inFlight);
  };

  let checkpointAt = performance.now() + (context.firstCheckpointMs ?? CHECKPOINT_MS);
  for (const action of plan.actions) {
    if (context.shouldStop()) {
      result.stopped = true;
      break;
    }
    if (context.checkpoint && performance.now() >= checkpointAt) {
      checkpointAt = performance.now() + context.checkpoint(result);
    }
    await context.pause();
    const overlaps = action.kind === "link" || action.kind === "attrs";
    if (pool && (action.kind === "copy" || action.kind === "update")) {
      context.onStart?.(action);
      batch.push(action);
      batchBytes += action.entry!.size;
      if (batch.length >= COPY_BATCH_FILES || batchBytes >= COPY_BATCH_BYTES) await dispatch();
      continue;
    }
    if (!overlaps) await drain();
    if (action.kind !== "dirattrs") context.onStart?.(action);
    const fromPath = joinRel(fromRoot, action.path);
    const toPath = joinRel(toRoot, action.path);
    try {
      if (action.path === "" && action.kind !== "dirattrs") {
        throw new Error("refusing to touch the root itself: that is never part of a plan");
      }
      const { guard } = context;
      if (action.kind === "dirattrs") guard.check(action.path);
      else guard.checkParent(action.path);
      switch (action.kind) {
        case "rmdir":
          Deno.removeSync(toPath);
          summary.dirsDeleted++;
          break;
        case "delete":
          if (context.trashDir) moveToTrash(toPath, action.path, context.trashDir);
          else Deno.removeSync(toPath);
          result.deleted.add(action.path);
          summary.deleted++;
          break;
        case "mkdir":
          makeFolder(toPath);
          guard.made(action.path);
          summary.dirsCreated++;
          break;
        case "copy":
        case "update": {
          const copied = await copyFile(fromPath, toPath, {
            ...context,
            parent: guard.expected(parentOf(action.path)),
          });
          if (copied === null) result.stopped = true;
          else recordCopy(action, copied);
          continue;
        }
        case "link":
          placeSymlink(toPath, action.entry!, context);
          summary[action.reason === "new" ? "copied" : "updated"]++;
          break;
        case "attrs":
          setAttributes(toPath, action.entry!, context.owners);
          result.resigned.set(action.path, signatureOf(entryFromStat(Deno.lstatSync(toPath))));
          summary.attrsUpdated++;
          break;
        case "move": {
          const oldPath = joinRel(toRoot, action.from!);
          guard.checkParent(action.from!);
          // rename() would quietly replace an entry there; the plan says there is none.
          if (pathExists(toPath)) throw new Error(`${quoted(action.path)} appeared meanwhile`);
          Deno.renameSync(oldPath, toPath);
          if (action.entry!.kind === "dir") {
            guard.moved(action.path, action.from!);
            result.movedFolders.set(action.path, action.from!);
          } else {
            setAttributes(toPath, action.entry!, context.owners);
            result.movedFiles.set(action.path, action.from!);
            result.resigned.set(action.path, signatureOf(entryFromStat(Deno.lstatSync(toPath))));
          }
          summary.moved++;
          break;
        }
        case "dirattrs":
          setAttributes(toPath, action.entry!, context.owners);
          break;
      }
      onDone(action, 0);
    } catch (error) {
      summary.failed++;
      onFailed({ path: action.path, message: `Cannot ${action.kind}: ${errorText(error)}` });
    }
    if (result.stopped) break;
  }
  await drain();
  return result;
}

function joinRel(root: string, path: string): string {
  return path === "" ? root : `${root}/${path}`;
}

function makeFolder(path: string): void {
  try {
    Deno.mkdirSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists) || !Deno.lstatSync(path).isDirectory) {
      throw error;
    }
  }
}

const COPY_BUFFER = new Uint8Array(1 << 20);
let tempCounter = 0;
/** Makes temporary names unique per process and per worker. */
let tempPrefix = `${Deno.pid}`;

function tempPathIn(tempDir: string): string {
  return `${tempDir}/${tempPrefix}-${++tempCounter}`;
}

/** A copied file: the replica's new state, and the source's as it was read. */
export interface CopiedFile {
  replica: RecordEntry;
  source: RecordEntry;
}

/**
 * Copies one file through SHA-256 into a temporary file, sets its attributes and renames it
 * into place, so no reader ever sees a partial file under the final name. A source that
 * changes while it is read is read again (twice at most).
 *
 * @returns The record entries of the bytes written and of the source as read, or null if
 * aborted.
 */
async function copyFile(
  fromPath: string,
  toPath: string,
  context: CopyContext,
): Promise<CopiedFile | null> {
  for (let attempt = 1;; attempt++) {
    const tempPath = tempPathIn(context.tempDir);
    let keepTemp = false;
    try {
      const result = await copyThroughHash(fromPath, tempPath, context);
      if (result === null) return null;
      if (result === "changed") {
        if (attempt < 3) continue;
        throw new Error("the file kept changing while it was copied; try again later");
      }
      // The folder it goes into must still be the one the walk saw (not a link put there since).
      if (context.parent) expectIdentity(dirname(toPath), context.parent);
      keepOverwritten(toPath, context);
      const renamedAtMs = Date.now();
      Deno.renameSync(tempPath, toPath);
      keepTemp = true;
      return {
        replica: {
          ...placedSignature(toPath, result.written),
          hash: result.hash,
          hashedAtMs: renamedAtMs,
        },
        source: { ...signatureOf(result.read), hash: result.hash, hashedAtMs: result.readAtMs },
      };
    } finally {
      if (!keepTemp) removeQuietly(tempPath);
    }
  }
}

/**
 * The signature of a file just renamed into place: the rename gave it a new ctime (ext4 does),
 * which may fall in a later second than the one read before the rename, and the record must
 * match what the next scan sees, or the next run would hash the file again. Taken from the
 * path, which holds our file unless something replaced or wrote it meanwhile (then the
 * signature read before stays, and the next run does hash it again). Either way the hash is
 * dated before the rename, so the racy rule keeps it untrusted until a later run reads the file
 * (see {@linkcode trustedHash}).
 */
function placedSignature(path: string, before: Signature): Signature {
  try {
    const placed = entryFromStat(Deno.lstatSync(path));
    const same = placed.kind === "file" && placed.ino === before.ino &&
      placed.size === before.size && placed.mtimeMs === before.mtimeMs;
    if (same) return signatureOf(placed);
  } catch {
    // Gone already: the next scan will not see it either.
  }
  return before;
}

/**
 * Reads a source file once, hashing and writing what it reads, then gives the temporary copy
 * the source's attributes.
 *
 * @returns The hash, the source as read, and the copy's signature before the rename (see
 * {@linkcode placedSignature}); "changed" if the source changed while read; null if aborted.
 */
async function copyThroughHash(
  fromPath: string,
  tempPath: string,
  context: CopyContext,
): Promise<
  { hash: string; read: Entry; written: Signature; readAtMs: number } | "changed" | null
> {
  const readAtMs = Date.now();
  // Deno cannot open without following a link: look first, then make sure the file opened is
  // the one looked at.
  const looked = Deno.lstatSync(fromPath);
  if (!looked.isFile) throw new Error("it is no longer a regular file");
  using input = Deno.openSync(fromPath, { read: true });
  const before = entryFromStat(input.statSync());
  if (before.kind !== "file" || before.ino !== looked.ino) {
    throw new Error("it was replaced while it was opened");
  }
  using output = Deno.openSync(tempPath, { write: true, createNew: true, mode: 0o600 });
  const hash = createHash("sha256");
  let total = 0;
  // Read up to the size fstat gave, not to an extra empty read: growth or shrinking shows in
  // the fstat after.
  while (total < before.size) {
    const count = input.readSync(COPY_BUFFER);
    if (count === null || count === 0) break;
    const chunk = COPY_BUFFER.subarray(0, count);
    hash.update(chunk);
    writeAll(output, chunk);
    total += count;
    context.onBytes?.(count);
    if (context.mustAbort()) return null;
    await context.pause();
  }
  const after = entryFromStat(input.statSync());
  // A file that changed while it was read may be torn; one that changed between the scan and
  // now is fine: the copy and the record take what was read.
  if (total !== before.size || !sameSignature(before, after)) return "changed";
  // chown first: it clears setuid and setgid bits, which chmod then puts back.
  if (context.owners) Deno.chownSync(tempPath, after.uid, after.gid);
  Deno.chmodSync(tempPath, after.mode);
  output.utimeSync(new Date(after.mtimeMs), new Date(after.mtimeMs));
  const written = signatureOf(entryFromStat(output.statSync()));
  return { hash: hash.digest("hex"), read: after, written, readAtMs };
}

function placeSymlink(toPath: string, entry: Entry, context: CopyContext): void {
  const tempPath = tempPathIn(context.tempDir);
  try {
    Deno.symlinkSync(entry.target!, tempPath);
    if (context.owners) fs.lchownSync(tempPath, entry.uid, entry.gid); // Deno.chownSync follows links
    const mtime = new Date(entry.mtimeMs);
    fs.lutimesSync(tempPath, mtime, mtime);
    keepOverwritten(toPath, context);
    Deno.renameSync(tempPath, toPath);
  } catch (error) {
    removeQuietly(tempPath);
    throw error;
  }
}

/** With a trash, moves what is about to be overwritten there first. */
function keepOverwritten(toPath: string, context: CopyContext): void {
  if (context.trashDir === null || !pathExists(toPath)) return; // nothing there to keep
  moveToTrash(toPath, toPath.slice(context.toRoot.length + 1), context.trashDir);
}

/** Moves a replica entry to `trashDir/<its relative path>`, keeping an earlier one there. */
function moveToTrash(path: string, relative: string, trashDir: string): void {
  let target = `${trashDir}/${relative}`;
  Deno.mkdirSync(dirname(target), { recursive: true });
  for (let n = 1; pathExists(target); n++) target = `${trashDir}/${relative}.${n}`;
  Deno.renameSync(path, target);
}

/** Name of a run's trash folder: its UTC start time, `20261122T031614Z`. */
export function trashFolderName(date: Date): string {
  return date.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
}

/**
 * Removes trash folders older than `keepMs`.
 *
 * @returns The names of the folders removed.
 */
export function purgeTrash(trashRoot: string, keepMs: number, now: Date): string[] {
  const purged: string[] = [];
  if (checkOwn(trashRoot, "dir") === null) return purged;
  for (const item of Deno.readDirSync(trashRoot)) {
    if (!item.isDirectory) continue; // a link or a file is not a run's trash: leave it
    const match = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/.exec(item.name);
    if (!match) continue; // not ours: leave it
    const [, y, mo, d, h, mi, se] = match.map(Number) as number[];
    const madeAt = Date.UTC(y!, mo! - 1, d!, h!, mi!, se!);
    if (now.getTime() - madeAt > keepMs) {
      Deno.removeSync(`${trashRoot}/${item.name}`, { recursive: true });
      purged.push(item.name);
    }
  }
  return purged;
}

/**
 * What each folder of the tree being written was when the walk saw it, or when this run made
 * or moved it. Every delete, rename and attribute change below a folder first checks that its
 * path still resolves to that folder, so a folder swapped for a link during the run is never
 * written through. (The check and the change are two calls: see the README's threat model.)
 */
export class FolderGuard {
  readonly #root: string;
  /** Folders as the walk saw them. */
  readonly #seen = new Map<string, Identity>();
  /** Folders this run made. */
  readonly #made = new Map<string, Identity>();
  /** Folders this run moved: new path to the path the walk saw them at. */
  readonly #movedFrom = new Map<string, string>();

  /** Takes the folders of `scan`, the walk of the tree at `root`. */
  constructor(root: string, scan: Scan) {
    this.#root = root;
    for (const [path, entry] of scan.entries) {
      if (entry.kind === "dir") this.#seen.set(path, { dev: entry.dev, ino: entry.ino });
    }
  }

  /** Remembers a folder this run just made. */
  made(path: string): void {
    const info = Deno.lstatSync(joinRel(this.#root, path));
    if (!info.isDirectory) throw new Error(`${quoted(path)} is not the folder just made`);
    this.#made.set(path, { dev: info.dev, ino: info.ino ?? 0 });
  }

  /** Remembers a folder this run moved from `oldPath` to `newPath`. */
  moved(newPath: string, oldPath: string): void {
    this.#movedFrom.set(newPath, oldPath);
  }

  /** What the folder at `path` must be, or null when this run knows no folder there. */
  expected(path: string): Identity | null {
    const known = this.#made.get(path) ?? this.#seen.get(path);
    if (known !== undefined || this.#movedFrom.size === 0) return known ?? null;
    for (const folder of [path, ...ancestors(path)]) {
      const oldPath = this.#movedFrom.get(folder);
      if (oldPath !== undefined) {
        return this.#seen.get(oldPath + path.slice(folder.length)) ?? null;
      }
    }
    return null;
  }

  /** Throws unless the folder `path` (relative) still is the one this run knows. */
  check(path: string): void {
    const expected = this.expected(path);
    if (expected === null) {
      throw new Error(
        `the folder ${quoted(path || ".")} is not one the walk saw; nothing was changed`,
      );
    }
    expectIdentity(joinRel(this.#root, path), expected);
  }

  /** Throws unless the folder holding `path` still is the one this run knows. */
  checkParent(path: string): void {
    this.check(parentOf(path));
  }
}

const NO_FOLLOW = fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;

/**
 * Sets mode, owner and mtime on what `path` names without following a link there: the entry is
 * opened with O_NOFOLLOW and changed through that descriptor. Only an entry the owner cannot
 * open (mode 000 when not root) falls back to the path, after an `lstat`.
 */
function setAttributes(path: string, entry: Entry, owners: boolean): void {
  const isDir = entry.kind === "dir";
  let fd: number | null = null;
  try {
    fd = fs.openSync(
      path,
      fs.constants.O_RDONLY | NO_FOLLOW | (isDir ? fs.constants.O_DIRECTORY : 0),
    );
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "ELOOP" || code === "ENOTDIR") {
      throw new Error(`it became a symlink or changed type during the run; left alone`);
    }
    if (code !== "EACCES") throw error;
  }
  const mtime = new Date(entry.mtimeMs);
  if (fd === null) {
    const info = Deno.lstatSync(path);
    if (isDir ? !info.isDirectory : !info.isFile) throw new Error("it changed type; left alone");
    // chown first: it clears setuid and setgid bits, which chmod then puts back.
    if (owners) Deno.chownSync(path, entry.uid, entry.gid);
    Deno.chmodSync(path, entry.mode);
    Deno.utimeSync(path, mtime, mtime);
    return;
  }
  try {
    const info = fs.fstatSync(fd);
    if (isDir ? !info.isDirectory() : !info.isFile()) {
      throw new Error("it changed type; left alone");
    }
    if (owners) fs.fchownSync(fd, entry.uid, entry.gid);
    fs.fchmodSync(fd, entry.mode);
    // Seconds as a double land a hair below the millisecond (…352.9999): half a microsecond
    // more reads back as the same millisecond.
    const seconds = (entry.mtimeMs + 0.0005) / 1000;
    fs.futimesSync(fd, seconds, seconds);
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes every byte: a write may take fewer than it was given. */
function writeAll(file: { writeSync(bytes: Uint8Array): number }, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) done += file.writeSync(bytes.subarray(done));
}

function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch {
    // Already gone, or never made: either way nothing is left to clean.
  }
}

// ================================================================================================
// Record
// ================================================================================================

/** What identifies one state of a file: if any of it changes, the content may have. */
export interface Signature {
  size: number;
  mtimeMs: number;
  /** Change time; Deno reads it to the whole second. */
  ctimeMs: number;
  ino: number;
}

/** What the record knows of one file. */
export interface RecordEntry extends Signature {
  /** SHA-256 of the content, or null when it was never hashed. */
  hash: string | null;
  /** When the hash was taken, to tell racily clean files (see {@linkcode trustedHash}). */
  hashedAtMs: number;
}

/** Relative path to what the record knows of the file there. */
export type RecordMap = Map<string, RecordEntry>;

/**
 * The file record kept in the replica: its own files, and a cache of source hashes (the source
 * is never written to, so its cache lives here too).
 */
export interface FileRecord {
  replica: RecordMap;
  source: RecordMap;
}

/**
 * A file whose mtime is this close to the moment it was hashed may have been written again in
 * the same timestamp tick (the kernel stamps files from a clock that ticks every few ms, and
 * Deno reads milliseconds), so its hash is not trusted: it is "racily clean", as git says.
 */
export const RACY_WINDOW_MS = 1000;

/** An empty record. */
export function emptyRecord(): FileRecord {
  return { replica: new Map(), source: new Map() };
}

/** The signature part of an entry. */
export function signatureOf(entry: Signature): Signature {
  return { size: entry.size, mtimeMs: entry.mtimeMs, ctimeMs: entry.ctimeMs, ino: entry.ino };
}

function sameSignature(a: Signature, b: Signature): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs &&
    a.ino === b.ino;
}

/**
 * The kernel stamps files from a clock that may lag the wall clock by a tick (up to 10 ms at
 * 100 Hz): a change made just after a second began can carry the second before. The racy rule
 * on ctime counts a hash taken this close to a second's start as taken in the second before.
 */
export const CLOCK_SLACK_MS = 20;

/**
 * The recorded hash of a file, if it can be trusted without reading: the file's signature (size,
 * mtime, ctime, inode) is what it was when hashed, and it was not racily clean then. Racily
 * clean, as git says, is a file that may have changed again after it was hashed without its
 * signature showing it: one whose ctime (which Deno reads to the whole second) falls in the
 * second the hash was taken in, or whose mtime is within {@linkcode RACY_WINDOW_MS} of it. A
 * freshly copied file is racily clean until a later run reads it again. Pure.
 */
export function trustedHash(known: RecordEntry | undefined, entry: Entry): string | null {
  if (!known || known.hash === null || entry.kind !== "file") return null;
  if (!sameSignature(known, entry)) return null;
  if (Math.floor(known.ctimeMs / 1000) >= Math.floor((known.hashedAtMs - CLOCK_SLACK_MS) / 1000)) {
    return null;
  }
  return known.hashedAtMs - known.mtimeMs < RACY_WINDOW_MS ? null : known.hash;
}

/** Records up to this size are read while the trees are walked; larger ones wait for the count. */
export const RECORD_EAGER_BYTES = 32 << 20;

/**
 * The largest record a tree of `entryCount` entries (both sides) can have: a version-2 row takes
 * about 140 bytes, so 512 a row plus 1 MiB leaves room, while a record linked to an endless
 * file or grown by a hostile writer is refused before it is read.
 */
export function recordSizeCap(entryCount: number): number {
  return (1 << 20) + 512 * entryCount;
}

/**
 * Reads the record: opened without following a link and without blocking on a fifo, and read
 * only when it is a regular file of at most `maxBytes`. A missing record is an empty one; an
 * unreadable, oversized or corrupt one is too, reported through `onCorrupt`, since the record
 * is a cache of what can be rebuilt.
 *
 * @throws {UsageError} When the path is not a regular file (a link, a fifo, a folder).
 */
export function loadRecord(
  path: string,
  options: { maxBytes: number; onCorrupt: (message: string) => void },
): FileRecord {
  const { maxBytes, onCorrupt } = options;
  let bytes: Uint8Array;
  try {
    const read = readOwnFile(path, maxBytes);
    if (read === null) return emptyRecord();
    if (typeof read === "number") {
      onCorrupt(
        `The record ${quoted(path)} is ${
          formatBytes(read)
        }, more than a record of this tree can be ` +
          `(${formatBytes(maxBytes)}); rebuilding it`,
      );
      return emptyRecord();
    }
    bytes = read;
  } catch (error) {
    if (error instanceof UsageError) throw error;
    onCorrupt(`Cannot read the record ${quoted(path)} (${errorText(error, true)}); rebuilding it`);
    return emptyRecord();
  }
  try {
    return parseRecord(new TextDecoder().decode(bytes));
  } catch (error) {
    onCorrupt(`The record ${quoted(path)} is corrupt (${errorText(error)}); rebuilding it`);
    return emptyRecord();
  }
}

/**
 * Reads one of our files without following a link or blocking on a fifo.
 *
 * @returns Its bytes; its size when over `maxBytes`; null when absent.
 * @throws {UsageError} When it is not a regular file.
 */
function readOwnFile(path: string, maxBytes: number): Uint8Array | number | null {
  let fd: number;
  try {
    fd = fs.openSync(
      path,
      fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK,
    );
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "ENOENT") return null;
    if (code === "ELOOP") checkOwn(path, "file"); // throws, naming the link
    throw error;
  }
  try {
    const info = fs.fstatSync(fd);
    if (!info.isFile()) {
      throw new UsageError(`${quoted(path)} is not a regular file: move it away, then run again`);
    }
    if (info.size > maxBytes) return info.size;
    const bytes = new Uint8Array(info.size);
    let done = 0;
    while (done < bytes.length) {
      const count = fs.readSync(fd, bytes, done, bytes.length - done, null);
      if (count === 0) break;
      done += count;
    }
    return bytes.subarray(0, done);
  } finally {
    fs.closeSync(fd);
  }
}

/** Parses a version-2 record, checking every row; throws a short reason when it is not one. */
function parseRecord(text: string): FileRecord {
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    throw new Error("it is not valid JSON");
  }
  if (
    data?.format !== RECORD_FORMAT || data.version !== RECORD_VERSION ||
    !Array.isArray(data.replica) || !Array.isArray(data.source)
  ) {
    throw new Error(`it is not a treesync record of version ${RECORD_VERSION}`);
  }
  const record = emptyRecord();
  for (const side of ["replica", "source"] as const) {
    const map = record[side];
    for (const row of data[side] as unknown[]) {
      // Plain checks, no allocation: this loop runs once per file on every run.
      if (!Array.isArray(row)) throw new Error(`a ${side} row is not a list`);
      const [filePath, size, mtimeMs, ctimeMs, ino, hash, hashedAtMs] = row;
      if (
        typeof filePath !== "string" || typeof size !== "number" ||
        typeof mtimeMs !== "number" || typeof ctimeMs !== "number" ||
        typeof ino !== "number" || typeof hashedAtMs !== "number" ||
        (hash !== null && (typeof hash !== "string" || hash.length !== 64))
      ) throw new Error(`a bad ${side} row for '${String(filePath).slice(0, 100)}'`);
      map.set(filePath, { size, mtimeMs, ctimeMs, ino, hash, hashedAtMs });
    }
  }
  return record;
}

/** What a run changed, for the record. */
export interface RecordChanges {
  /** Files written: the replica's new state, and the source state that was read. */
  written: Map<string, { replica: RecordEntry; source: RecordEntry }>;
  deleted: Set<string>;
  /** Files whose content stayed but whose signature changed (moved, attributes set). */
  resigned: Map<string, Signature>;
  /** New path to old, for files and folders moved in the replica. */
  movedFiles: Map<string, string>;
  movedFolders: Map<string, string>;
}

/**
 * The record after a run. Replica side: every file the scan saw, carried over while its
 * signature holds, then moved, re-signed, written or dropped as the run did. Source side: the
 * hashes known of source files still there unchanged (found by path, or by inode when renamed).
 * Pure.
 */
export function nextRecord(
  previous: FileRecord,
  scans: { source: Scan; replica: Scan },
  changes: RecordChanges,
): FileRecord {
  const replica: RecordMap = new Map();
  for (const [path, entry] of scans.replica.entries) {
    if (entry.kind !== "file" || changes.deleted.has(path)) continue;
    replica.set(path, carried(previous.replica.get(path), entry) ?? unhashed(entry));
  }
  if (changes.movedFolders.size > 0) {
    // One pass, whatever the number of folders moved: each path looks its folders up.
    const newByOld = new Map([...changes.movedFolders].map(([newDir, oldDir]) => [oldDir, newDir]));
    for (const [path, entry] of [...replica]) {
      const oldDir = ancestors(path).find((folder) => newByOld.has(folder));
      if (oldDir === undefined) continue;
      replica.delete(path);
      replica.set(newByOld.get(oldDir)! + path.slice(oldDir.length), entry);
    }
  }
  for (const [newPath, oldPath] of changes.movedFiles) {
    const entry = replica.get(oldPath);
    replica.delete(oldPath);
    if (entry) replica.set(newPath, entry);
  }
  for (const [path, signature] of changes.resigned) {
    const entry = replica.get(path);
    if (entry) replica.set(path, { ...entry, ...signature });
  }
  for (const [path, written] of changes.written) replica.set(path, written.replica);

  const source: RecordMap = new Map();
  const byInode = new Map<number, RecordEntry>();
  for (const entry of previous.source.values()) byInode.set(entry.ino, entry);
  for (const [path, entry] of scans.source.entries) {
    if (entry.kind !== "file") continue;
    const known = carried(previous.source.get(path), entry) ??
      carried(byInode.get(entry.ino), entry);
    if (known?.hash) source.set(path, known);
  }
  for (const [path, written] of changes.written) source.set(path, written.source);
  return { replica, source };
}

function carried(known: RecordEntry | undefined, entry: Entry): RecordEntry | null {
  if (entry.hash !== undefined) {
    return { ...signatureOf(entry), hash: entry.hash, hashedAtMs: entry.hashedAtMs ?? 0 };
  }
  return known && sameSignature(known, entry) ? known : null;
}

function unhashed(entry: Entry): RecordEntry {
  return { ...signatureOf(entry), hash: null, hashedAtMs: 0 };
}

/** Whether two records say the same. */
export function sameRecord(a: FileRecord, b: FileRecord): boolean {
  for (const side of ["replica", "source"] as const) {
    if (a[side].size !== b[side].size) return false;
    for (const [path, entry] of a[side]) {
      const other = b[side].get(path);
      if (
        !other || !sameSignature(entry, other) || other.hash !== entry.hash ||
        other.hashedAtMs !== entry.hashedAtMs
      ) return false;
    }
  }
  return true;
}

/**
 * Writes the record atomically: a new file made exclusively in our `tmp/` folder, fsync, then a
 * rename over the old record (rename replaces a link there, never follows it).
 */
export function saveRecord(paths: MetaPaths, record: FileRecord): void {
  const rows = (map: RecordMap) =>
    [...map].map(([path, e]) => [path, e.size, e.mtimeMs, e.ctimeMs, e.ino, e.hash, e.hashedAtMs]);
  const text = JSON.stringify({
    format: RECORD_FORMAT,
    version: RECORD_VERSION,
    replica: rows(record.replica),
    source: rows(record.source),
  });
  const tempPath = tempPathIn(paths.temp);
  try {
    using file = Deno.openSync(tempPath, { write: true, createNew: true, mode: 0o600 });
    writeAll(file, encoder.encode(text));
    file.syncSync();
    Deno.renameSync(tempPath, paths.record);
  } catch (error) {
    removeQuietly(tempPath);
    throw error;
  }
}

/** A file's SHA-256 and the signature it had while it was read. */
export interface HashResult {
  hash: string;
  signature: Signature;
  hashedAtMs: number;
}

/**
 * Streams a file through SHA-256 with a reused buffer: memory stays flat for any size.
 *
 * @returns The hash, or null if the file changed while it was read.
 */
export function hashFile(path: string): HashResult | null {
  const hashedAtMs = Date.now();
  using file = Deno.openSync(path, { read: true });
  const before = entryFromStat(file.statSync());
  const hash = createHash("sha256");
  let total = 0;
  for (;;) {
    const count = file.readSync(COPY_BUFFER);
    if (count === null || count === 0) break;
    hash.update(COPY_BUFFER.subarray(0, count));
    total += count;
  }
  const after = entryFromStat(file.statSync());
  if (!sameSignature(before, after) || total !== before.size) return null;
  return { hash: hash.digest("hex"), signature: signatureOf(before), hashedAtMs };
}

// ================================================================================================
// Workers
// ================================================================================================

// Scanning both trees, copying and hashing run in worker threads, each a copy of this module:
// the file-system calls are synchronous (several times cheaper per call than async ones) and
// two cores do twice the work. A shared flag tells workers to stop between files (1) or to
// abandon the file they are copying (2).

const IN_WORKER = typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !==
  "undefined";
const COPY_BATCH_FILES = 64;
const COPY_BATCH_BYTES = 16 << 20;

/** The parts of an apply context a worker needs to copy files. */
interface CopySettings {
  tempDir: string;
  trashDir: string | null;
  owners: boolean;
}

/** What copying one file needs to know, on the main thread or in a worker. */
interface CopyContext extends CopySettings {
  toRoot: string;
  /** What the folder the file goes into must be at the final rename; null when unknown. */
  parent?: Identity | null;
  /** Checked inside long copies: true abandons the file at once. */
  mustAbort: () => boolean;
  pause: () => Promise<void>;
  onBytes?: (bytes: number) => void;
}

function copySettings(context: CopySettings): CopySettings {
  return { tempDir: context.tempDir, trashDir: context.trashDir, owners: context.owners };
}

/** What a worker was asked to do. */
type WorkerRequest =
  | { op: "init"; id: number; stopFlag: SharedArrayBuffer }
  | { op: "scan"; root: string; excludes: string[]; skipMetaDir: boolean; avoid: Identity[] }
  | {
    op: "copy";
    fromRoot: string;
    toRoot: string;
    items: Array<{ path: string; parent: Identity | null }>;
  } & CopySettings
  | { op: "hash"; root: string; paths: string[] };

/** One copy's outcome: the record entries, an error, or skipped because a stop was asked. */
type CopyOutcome = { copied: CopiedFile } | { error: string } | { skipped: true };

/** One hash's outcome; null when the file changed while read. */
type HashOutcome = { result: HashResult | null } | { error: string };

/** A scan as a worker sends it back, with what the `-vv` and warning output needs. */
interface WorkerScan extends Scan {
  skipped: Problem[];
}

/** A fixed set of workers taking requests in turn; the main thread's side. */
export class WorkerPool {
  readonly size: number;
  readonly #stopFlag = new Int32Array(new SharedArrayBuffer(4));
  readonly #workers: Worker[] = [];
  readonly #idle: Worker[] = [];
  readonly #waiting: Array<(worker: Worker) => void> = [];

  /** Starts `size` workers. */
  constructor(size: number) {
    this.size = size;
    for (let id = 0; id < size; id++) {
      const worker = new Worker(import.meta.url, { type: "module" });
      const init: WorkerRequest = {
        op: "init",
        id,
        stopFlag: this.#stopFlag.buffer as SharedArrayBuffer,
      };
      worker.postMessage(init);
      this.#workers.push(worker);
      this.#idle.push(worker);
    }
  }

  /** Asks workers to stop after their current file (1) or at once (2). */
  stop(level: 1 | 2): void {
    Atomics.store(this.#stopFlag, 0, Math.max(level, Atomics.load(this.#stopFlag, 0)));
  }

  /** Scans a tree in a worker. */
  async scan(
    root: string,
    options: { excludes: string[]; skipMetaDir: boolean; avoid: Identity[] },
  ): Promise<WorkerScan> {
    return unpackScan(await this.#request<PackedScan>({ op: "scan", root, ...options }));
  }

  /** Copies a batch of files in a worker, which reports bytes copied as it goes. */
  copy(
    request: Omit<Extract<WorkerRequest, { op: "copy" }>, "op">,
    onBytes?: (bytes: number) => void,
  ): Promise<CopyOutcome[]> {
    return this.#request({ op: "copy", ...request }, onBytes);
  }

  /** Hashes a batch of files in a worker. */
  hash(root: string, paths: string[]): Promise<HashOutcome[]> {
    return this.#request({ op: "hash", root, paths });
  }

  /** Ends every worker. */
  close(): void {
    for (const worker of this.#workers) worker.terminate();
  }

  async #request<T>(request: WorkerRequest, onBytes?: (bytes: number) => void): Promise<T> {
    const worker = this.#idle.pop() ??
      await new Promise<Worker>((take) => this.#waiting.push(take));
    try {
      return await new Promise<T>((resolve, reject) => {
        worker.onmessage = (event: MessageEvent) => {
          const reply = event.data as
            | { ok: true; value: T }
            | { ok: false; error: string }
            | { progress: number };
          if ("progress" in reply) onBytes?.(reply.progress);
          else if (reply.ok) resolve(reply.value);
          else reject(new Error(reply.error));
        };
        worker.onerror = (event) => {
          event.preventDefault();
          reject(new Error(event.message));
        };
        worker.postMessage(request);
      });
    } finally {
      const next = this.#waiting.shift();
      if (next) next(worker);
      else this.#idle.push(worker);
    }
  }
}

/** A scan packed into columns: cheap to send between threads (a clone of a Map is not). */
interface PackedScan {
  /** Paths joined by NUL, which no name can contain. */
  paths: string;
  kinds: Uint8Array;
  modes: Uint16Array;
  owners: Uint32Array;
  /** size, mtimeMs, ctimeMs, ino, dev per entry. */
  numbers: Float64Array;
  targets: Array<[number, string]>;
  problems: Problem[];
  kept: string[];
  nested?: string;
  skipped: Problem[];
}

const KIND_CODES: EntryKind[] = ["file", "dir", "symlink", "special"];

function packScan(scan: Scan, skipped: Problem[]): PackedScan {
  const count = scan.entries.size;
  const packed: PackedScan = {
    paths: "",
    kinds: new Uint8Array(count),
    modes: new Uint16Array(count),
    owners: new Uint32Array(count * 2),
    numbers: new Float64Array(count * 5),
    targets: [],
    problems: scan.problems,
    kept: scan.kept,
    skipped,
  };
  if (scan.nested !== undefined) packed.nested = scan.nested;
  const paths: string[] = [];
  let i = 0;
  for (const [path, entry] of scan.entries) {
    paths.push(path);
    packed.kinds[i] = KIND_CODES.indexOf(entry.kind);
    packed.modes[i] = entry.mode;
    packed.owners.set([entry.uid, entry.gid], i * 2);
    packed.numbers.set([entry.size, entry.mtimeMs, entry.ctimeMs, entry.ino, entry.dev], i * 5);
    if (entry.target !== undefined) packed.targets.push([i, entry.target]);
    i++;
  }
  packed.paths = paths.join("\0");
  return packed;
}

function unpackScan(packed: PackedScan): WorkerScan {
  const entries = new Map<string, Entry>();
  const targets = new Map(packed.targets);
  const paths = packed.kinds.length === 0 ? [] : packed.paths.split("\0");
  const { kinds, modes, owners, numbers } = packed;
  for (let i = 0; i < paths.length; i++) {
    const entry: Entry = {
      kind: KIND_CODES[kinds[i]!]!,
      size: numbers[i * 5]!,
      mtimeMs: numbers[i * 5 + 1]!,
      ctimeMs: numbers[i * 5 + 2]!,
      ino: numbers[i * 5 + 3]!,
      dev: numbers[i * 5 + 4]!,
      mode: modes[i]!,
      uid: owners[i * 2]!,
      gid: owners[i * 2 + 1]!,
    };
    const target = targets.get(i);
    if (target !== undefined) entry.target = target;
    entries.set(paths[i]!, entry);
  }
  const scan: WorkerScan = {
    entries,
    problems: packed.problems,
    kept: packed.kept,
    skipped: packed.skipped,
  };
  if (packed.nested !== undefined) scan.nested = packed.nested;
  return scan;
}

/** Scans both trees at once, two workers side by side. */
async function scanBoth(
  pool: WorkerPool,
  roots: { from: string; to: string },
  excludes: string[],
): Promise<{ from: WorkerScan; to: WorkerScan }> {
  // Each walk stops at the other tree's root, which a bind mount can put inside it.
  const fromRoot = identityOf(roots.from)!;
  const toRoot = identityOf(roots.to);
  const [from, to] = await Promise.all([
    pool.scan(roots.from, { excludes, skipMetaDir: true, avoid: toRoot ? [toRoot] : [] }),
    toRoot
      ? pool.scan(roots.to, { excludes, skipMetaDir: true, avoid: [fromRoot] })
      : Promise.resolve({ entries: new Map(), problems: [], kept: [], skipped: [] }),
  ]);
  return { from, to };
}

/**
 * Hashes files in the pool, in batches of up to 64 files or 64 MiB, so both cores hash.
 *
 * @returns Each path's outcome, in the order given.
 */
export async function hashInPool(
  pool: WorkerPool,
  root: string,
  paths: Array<{ path: string; size: number }>,
  onBatch?: (files: number, bytes: number) => void,
): Promise<Map<string, HashOutcome>> {
  const outcomes = new Map<string, HashOutcome>();
  const batches: Array<typeof paths> = [];
  let current: typeof paths = [];
  let bytes = 0;
  for (const item of paths) {
    current.push(item);
    bytes += item.size;
    if (current.length >= COPY_BATCH_FILES || bytes >= 64 << 20) {
      batches.push(current);
      [current, bytes] = [[], 0];
    }
  }
  if (current.length > 0) batches.push(current);
  await Promise.all(batches.map(async (batch) => {
    const results = await pool.hash(root, batch.map((item) => item.path));
    results.forEach((outcome, i) => outcomes.set(batch[i]!.path, outcome));
    onBatch?.(batch.length, batch.reduce((sum, item) => sum + item.size, 0));
  }));
  return outcomes;
}

/** The worker's side: answers one request at a time, never throwing out of the handler. */
function serveRequests(): void {
  let stopFlag: Int32Array<ArrayBufferLike> = new Int32Array(1);
  const scope = globalThis as unknown as {
    onmessage: ((event: MessageEvent) => void) | null;
    postMessage(message: unknown, transfer?: Transferable[]): void;
  };
  const handle = async (request: WorkerRequest): Promise<unknown> => {
    switch (request.op) {
      case "init":
        stopFlag = new Int32Array(request.stopFlag);
        tempPrefix = `${Deno.pid}-w${request.id}`;
        return null;
      case "scan": {
        const skipped: Problem[] = [];
        const scan = scanTree(request.root, {
          exclude: compileExcludes(request.excludes),
          skipMetaDir: request.skipMetaDir,
          avoid: request.avoid,
          onSkip: (path, message) => skipped.push({ path, message }),
        });
        return packScan(scan, skipped);
      }
      case "copy": {
        let unreported = 0;
        const context = {
          ...copySettings(request),
          toRoot: request.toRoot,
          mustAbort: () => Atomics.load(stopFlag, 0) === 2,
          pause: () => Promise.resolve(),
          onBytes: (bytes: number) => {
            unreported += bytes;
            if (unreported < 8 << 20) return;
            scope.postMessage({ progress: unreported });
            unreported = 0;
          },
        };
        const outcomes: CopyOutcome[] = [];
        for (const item of request.items) {
          if (Atomics.load(stopFlag, 0) > 0) {
            outcomes.push({ skipped: true });
            continue;
          }
          try {
            const copied = await copyFile(
              joinRel(request.fromRoot, item.path),
              joinRel(request.toRoot, item.path),
              { ...context, parent: item.parent },
            );
            outcomes.push(copied === null ? { skipped: true } : { copied });
          } catch (error) {
            outcomes.push({ error: errorText(error) });
          }
        }
        if (unreported > 0) scope.postMessage({ progress: unreported });
        return outcomes;
      }
      case "hash": {
        const outcomes: HashOutcome[] = [];
        for (const path of request.paths) {
          try {
            outcomes.push({ result: hashFile(joinRel(request.root, path)) });
          } catch (error) {
            outcomes.push({ error: errorText(error) });
          }
        }
        return outcomes;
      }
    }
  };
  scope.onmessage = async (event: MessageEvent) => {
    const request = event.data as WorkerRequest;
    try {
      const value = await handle(request);
      if (request.op === "init") return;
      const packed = value as Partial<PackedScan> | null;
      // A packed scan's columns are moved to the main thread, not copied.
      const transfer = request.op === "scan" && packed
        ? [packed.kinds!, packed.modes!, packed.owners!, packed.numbers!].map((column) =>
          column.buffer as ArrayBuffer
        )
        : [];
      scope.postMessage({ ok: true, value }, transfer);
    } catch (error) {
      scope.postMessage({ ok: false, error: errorText(error) });
    }
  };
}

// ================================================================================================
// Own files: `.treesync/`, its `tmp/` and `trash/`, the lock and the record
// ================================================================================================

/** Where treesync keeps its own files at the top of a tree. */
export interface MetaPaths {
  /** `TREE/.treesync` */
  dir: string;
  /** Files being written, renamed into place when complete. */
  temp: string;
  /** `--keep-deleted` folders, one per run. */
  trash: string;
  lock: string;
  record: string;
}

/** The paths of the metadata folder at the top of `treeRoot`. */
export function metaPaths(treeRoot: string): MetaPaths {
  const dir = `${treeRoot}/${META_DIR}`;
  return {
    dir,
    temp: `${dir}/${TEMP_NAME}`,
    trash: `${dir}/trash`,
    lock: `${dir}/${LOCK_NAME}`,
    record: `${dir}/${RECORD_NAME}`,
  };
}

function runningUid(): number | null {
  try {
    return Deno.uid();
  } catch {
    return null;
  }
}

/**
 * Looks at one of our own paths without following it. Absent is fine; a real folder (or regular
 * file) owned by this user and not writable by everyone is ours; anything else, a symlink above
 * all, is a setup error: treesync never follows links among its own files.
 *
 * @returns Its device and inode, or null when it is absent.
 * @throws {UsageError} Naming the path and what to do.
 */
export function checkOwn(path: string, kind: "dir" | "file"): Identity | null {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw new UsageError(`Cannot look at ${quoted(path)}: ${errorText(error, true)}`);
  }
  const wanted = kind === "dir" ? info.isDirectory : info.isFile;
  if (!wanted) {
    const found = info.isSymlink
      ? "a symlink"
      : info.isDirectory
      ? "a folder"
      : info.isFile
      ? "a file"
      : "a special file";
    throw new UsageError(
      `${quoted(path)} is ${found}, not treesync's own ${kind === "dir" ? "folder" : "file"}: ` +
        `move it away, then run again (treesync never follows links there)`,
    );
  }
  const uid = runningUid();
  if (uid !== null && info.uid !== null && info.uid !== uid) {
    throw new UsageError(
      `${
        quoted(path)
      } belongs to user ${info.uid}, not to this user (${uid}): check who made it, ` +
        `move it away, then run again`,
    );
  }
  if (((info.mode ?? 0) & 0o002) !== 0) {
    throw new UsageError(
      `${quoted(path)} is writable by every user: run 'chmod o-w' on it, then again`,
    );
  }
  return { dev: info.dev, ino: info.ino ?? 0 };
}

/**
 * Checks a tree's metadata folder and what is in it before anything is written.
 *
 * @throws {UsageError} When any of them is not ours.
 */
export function checkMeta(paths: MetaPaths): void {
  if (checkOwn(paths.dir, "dir") === null) return;
  checkOwn(paths.temp, "dir");
  checkOwn(paths.trash, "dir");
  checkOwn(paths.lock, "file");
  checkOwn(paths.record, "file");
}

/**
 * Makes one of our folders (mode 0700), or takes the one there once it is known to be ours.
 *
 * @returns Its identity, and whether this call made it.
 */
export function makeOwnFolder(path: string): Identity & { made: boolean } {
  let made = true;
  try {
    Deno.mkdirSync(path, { mode: 0o700 });
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) {
      throw new UsageError(`Cannot create ${quoted(path)}: ${errorText(error, true)}`);
    }
    made = false;
  }
  const identity = checkOwn(path, "dir");
  if (identity === null) throw new UsageError(`${quoted(path)} vanished as it was made: run again`);
  return { ...identity, made };
}

/** The device and inode `path` resolves to now, or null when nothing is there. */
export function identityOf(path: string): Identity | null {
  try {
    const info = Deno.statSync(path);
    return { dev: info.dev, ino: info.ino ?? 0 };
  } catch {
    return null;
  }
}

function sameIdentity(a: Identity, b: Identity): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/**
 * Throws unless `path` still resolves to `expected`: a folder of ours or of the tree, swapped
 * for a link (or anything else) since it was checked, is never written through.
 */
export function expectIdentity(path: string, expected: Identity): void {
  const now = identityOf(path);
  if (now === null || !sameIdentity(now, expected)) {
    throw new Error(`${quoted(path)} was replaced during the run; nothing in it was touched`);
  }
}

/** A held replica lock. */
export interface ReplicaLock {
  /** Writes this process's pid into the lock file, for the message another run shows. */
  announce(): void;
  /** Lets the lock go; the file stays, empty, for the next run to lock. */
  release(): void;
  /** False once the lock file was deleted or replaced (say, with the whole replica). */
  stillHeld(): boolean;
}

/**
 * How to take the lock: `create` the lock file if missing; take an `existing` one only (taking
 * it writes nothing); or `read`: an existing one opened read-only, for a restore, which must
 * work from a read-only replica and never writes there.
 */
export type LockMode = "create" | "existing" | "read";

/** Another run holds the replica: exit 3. */
export class LockHeldError extends RefusedError {
  override name = "LockHeldError";
}

/**
 * Takes the replica's lock: an exclusive `flock` on `.treesync/lock`. The kernel drops the lock
 * when its process dies, however it dies, so a lock left by a killed run is simply taken over.
 * The file is made exclusively or opened only once `lstat` shows a regular file of ours, and
 * the opened file must be that same inode; nothing is written to it here.
 *
 * @returns The lock, or null when there is no lock file and `create` is false.
 * @throws {LockHeldError} When another live run holds it.
 * @throws {UsageError} When the lock path is not ours.
 */
export function acquireLock(paths: MetaPaths, mode: LockMode): ReplicaLock | null {
  const path = paths.lock;
  const checked = checkOwn(path, "file");
  const write = mode !== "read";
  let file: Deno.FsFile;
  if (checked === null) {
    if (mode !== "create") return null;
    // O_EXCL: refuses any name already there, a link included.
    file = Deno.openSync(path, { read: true, write: true, createNew: true, mode: 0o600 });
  } else {
    file = Deno.openSync(path, { read: true, write });
    const opened = file.statSync();
    if (!opened.isFile || opened.ino !== checked.ino || opened.dev !== checked.dev) {
      file.close();
      throw new UsageError(`${quoted(path)} changed while it was opened: run again`);
    }
  }
  if (!file.tryLockSync(true)) {
    const holder = readSmallText(file);
    file.close();
    throw new LockHeldError(
      `Cannot lock ${quoted(dirname(paths.dir))}: another treesync run (pid ${
        holder || "unknown"
      }) ` +
        `holds ${quoted(path)}; wait for it, or stop it`,
    );
  }
  const inode = file.statSync().ino;
  let held = true;
  return {
    announce: () => {
      if (!write) return;
      try {
        file.truncateSync(0);
        file.writeSync(encoder.encode(`${Deno.pid}\n`));
      } catch {
        // Only for the message another run shows: a full disk must not stop the run.
      }
    },
    release: () => {
      if (!held) return;
      held = false;
      try {
        if (write) file.truncateSync(0);
      } catch {
        // Cannot empty it (a full or read-only disk): the kernel lock goes anyway.
      } finally {
        file.close();
      }
    },
    stillHeld: () => {
      try {
        return held && Deno.lstatSync(path).ino === inode;
      } catch {
        return false;
      }
    },
  };
}

function readSmallText(file: Deno.FsFile): string {
  try {
    const buffer = new Uint8Array(64);
    const count = file.readSync(buffer) ?? 0;
    return new TextDecoder().decode(buffer.subarray(0, count)).trim();
  } catch {
    return "";
  }
}

// ================================================================================================
// Logging
// ================================================================================================

/** Console (stderr) and optional file logging, set up once per process. */
export interface Reporter {
  /** A change made (or planned), one line: to the file always, to the console with `-v`. */
  change(text: string): void;
  /** Detail for `-vv`: each entry scanned, each decision. */
  debug(text: string): void;
  warn(text: string): void;
  error(text: string, error?: unknown): void;
  /** The run summary: shown by default, hidden by `-q`. */
  summary(text: string): void;
}

function consoleFormat(record: LogRecord): string {
  const text = record.message.map(String).join("");
  const prefix = record.level === "error" || record.level === "fatal"
    ? "error: "
    : record.level === "warning"
    ? "warning: "
    : "";
  return `${prefix}${text}\n`;
}

function fileFormat(record: LogRecord): string {
  const level = record.level.toUpperCase().padEnd(7);
  const text = record.message.map(String).join("");
  return `${new Date(record.timestamp).toISOString()} ${level} ${text}\n`;
}

/** Whether the live progress line is on screen: console output clears it first. */
let progressLineShown = false;

function writeStderr(text: string): void {
  if (progressLineShown) {
    progressLineShown = false;
    text = `\r\x1b[2K${text}`;
  }
  writeOut(Deno.stderr, text);
}

/** Output streams whose reader went away (`treesync -n … | head -1`): written no more. */
const closedOutputs = new Set<typeof Deno.stdout | typeof Deno.stderr>();

/**
 * Writes all of `text`. A closed pipe ends that stream's output quietly, and the run goes on
 * with its usual exit code: the reader left, the work is not wrong.
 */
function writeOut(stream: typeof Deno.stdout | typeof Deno.stderr, text: string): void {
  if (closedOutputs.has(stream)) return;
  const bytes = encoder.encode(text);
  try {
    for (let done = 0; done < bytes.length;) done += stream.writeSync(bytes.subarray(done));
  } catch (error) {
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
    closedOutputs.add(stream);
  }
}

/** Characters of log lines held before one write: 64 KiB, not a write (or fsync) per line. */
const LOG_BLOCK_CHARS = 64 * 1024;
/** A held line is written once this much time has passed, when the next line comes. */
const LOG_HOLD_MS = 1000;

/**
 * Opens the log file for appending, creating it and its folders when missing. It never
 * truncates, and never creates a file through a symlink: a link to an existing file is appended
 * to, a link to nothing is refused (O_EXCL refuses any name already taken, a dangling link too).
 */
function openLogFile(path: string): Deno.FsFile {
  // A fifo would block the open until someone reads it. (Devices such as /dev/null are fine.)
  const found = statOrNull(path);
  if (found?.isFifo || found?.isSocket || found?.isDirectory) {
    throw new Error("it is a fifo, socket or folder, not a file to log to");
  }
  try {
    return Deno.openSync(path, { append: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  Deno.mkdirSync(dirname(path), { recursive: true });
  try {
    return Deno.openSync(path, { append: true, createNew: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
  }
  try {
    return Deno.openSync(path, { append: true }); // made by someone else meanwhile
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new Error("it is a symlink to nothing, and no log file is created through a link");
  }
}

function statOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.statSync(path);
  } catch {
    return null;
  }
}

/** An error in one line, without the path Deno sometimes appends (it is named already). */
function logErrorText(error: unknown): string {
  return errorText(error).replace(/: (?:open|mkdir|rename|stat) '.*'$/s, "");
}

function countNewlines(bytes: Uint8Array): number {
  let count = 0;
  for (const byte of bytes) if (byte === 10) count++;
  return count;
}

/** Log lines that could not be written, told in the file once it can be written again. */
interface LostLines {
  lines: number;
  since: string;
  reason: string;
  /** The last write stopped inside a line: the next one starts on a new line. */
  midLine: boolean;
}

function lostNotice(lost: LostLines): string {
  const line = `${new Date().toISOString()} WARNING ${lost.lines} log lines since ${lost.since} ` +
    `could not be written: ${lost.reason}\n`;
  return lost.midLine ? `\n${line}` : line;
}

/**
 * The log file sink: lines are held and written in blocks, each through a fresh open of the
 * path (so a file or folder deleted, or moved away by logrotate, is simply made again), rotated
 * by size keeping `maxFiles` old files. No error leaves it: a block that cannot be written is
 * dropped, counted, and costs one warning on stderr per run; once the file can be written again
 * it says in the file how many lines were lost, and goes on. Everything is synchronous, so
 * nothing can fail later on a timer or in a promise.
 */
function recoveringFileSink(
  path: string,
  options: { maxSize: number; maxFiles: number },
): Sink & Disposable {
  const { maxSize, maxFiles } = options;
  // A block is at most a quarter of the file, so rotated files stay near --log-max-size.
  const blockChars = Math.min(LOG_BLOCK_CHARS, Math.floor(maxSize / 4));
  // A log that cannot even be opened now is a setup error: the caller exits 2 naming it.
  openLogFile(path).close();

  let held: string[] = [];
  let heldChars = 0;
  let lastWriteAt = Date.now();
  let lost: LostLines | null = null;
  // One warning per run: runs are counted by the end-of-run flushes.
  let run = 0;
  let warnedInRun = -1;

  const warn = (text: string) => {
    if (warnedInRun === run) return;
    warnedInRun = run;
    try {
      writeStderr(`warning: ${text}\n`);
    } catch {
      // No stderr either: nothing is left to tell.
    }
  };

  // Renames only: a rename moves a symlink itself, never the file it points to.
  const rotate = () => {
    for (let i = maxFiles - 1; i >= 1; i--) {
      try {
        Deno.renameSync(`${path}.${i}`, `${path}.${i + 1}`);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
    Deno.renameSync(path, `${path}.1`);
  };

  const write = (durable: boolean) => {
    lastWriteAt = Date.now();
    if (held.length === 0) return;
    const notice = lost === null ? "" : lostNotice(lost);
    const bytes = encoder.encode(notice + held.join(""));
    const noticeBytes = encoder.encode(notice).length;
    held = [];
    heldChars = 0;
    let done = 0;
    let file: Deno.FsFile | null = null;
    try {
      file = openLogFile(path);
      const size = file.statSync().size;
      if (size > 0 && size + bytes.length > maxSize) {
        file.close();
        file = null;
        try {
          rotate();
        } catch (error) {
          warn(
            `cannot rotate the log file ${quoted(path)}: ${
              logErrorText(error)
            } (it grows past its size)`,
          );
        }
        file = openLogFile(path);
      }
      while (done < bytes.length) done += file.writeSync(bytes.subarray(done));
      if (durable) file.syncDataSync();
      lost = null;
    } catch (error) {
      if (done < bytes.length) {
        const noticeWritten = done >= noticeBytes;
        lost = {
          lines: (noticeWritten || lost === null ? 0 : lost.lines) +
            countNewlines(bytes.subarray(Math.max(done, noticeBytes))),
          since: noticeWritten || lost === null ? new Date().toISOString() : lost.since,
          reason: logErrorText(error),
          midLine: done > 0 ? bytes[done - 1] !== 10 : lost?.midLine ?? false,
        };
      }
      warn(
        `cannot write the log file ${quoted(path)}: ${logErrorText(error)} ` +
          "(the run goes on; logging resumes when the file can be written)",
      );
    } finally {
      try {
        file?.close();
      } catch {
        // Closing can only fail for a file already closed.
      }
    }
  };

  const sink = (record: LogRecord) => {
    const line = fileFormat(record);
    held.push(line);
    heldChars += line.length;
    if (heldChars >= blockChars || record.timestamp - lastWriteAt >= LOG_HOLD_MS) write(false);
  };
  flushLogFile = () => {
    write(true);
    run++;
  };
  return Object.assign(sink, {
    [Symbol.dispose]: () => {
      // The last lines (quit, loop totals) belong to the last run: no second warning for them.
      if (run > 0) run--;
      write(true);
    },
  });
}

/** Writes out the log file's held lines; called at the end of every run. Never throws. */
let flushLogFile = () => {};

/**
 * Sets up LogTape: the console gets errors (`-q`), warnings and summaries (default), each
 * change (`-v`) or everything (`-vv`); the log file gets every change with a timestamp.
 */
export async function setUpLogging(options: Options): Promise<Reporter> {
  const { configure, getLogger } = await import("@logtape/logtape");
  const logger = getLogger(["treesync"]);
  const consoleLevels = ["error", "warning", "info", "debug"] as const;
  const consoleLowest = consoleLevels[options.verbosity]!;
  const consoleSink: Sink = (record) => {
    const levelOk = consoleLevels.indexOf(record.level as typeof consoleLevels[number]) <=
      consoleLevels.indexOf(consoleLowest);
    const isSummary = record.properties.summary === true && options.verbosity > 0;
    if (levelOk || isSummary) writeStderr(consoleFormat(record));
  };
  const sinks: Record<string, Sink> = { console: consoleSink };
  if (options.logPath !== null) {
    const fileSink = recoveringFileSink(options.logPath, {
      maxSize: options.logMaxBytes,
      maxFiles: options.logKeep,
    });
    sinks.file = options.verbosity >= 3
      ? fileSink
      : Object.assign((record: LogRecord) => record.level !== "debug" && fileSink(record), {
        [Symbol.dispose]: () => fileSink[Symbol.dispose](),
      });
  }
  await configure({
    reset: true,
    sinks,
    loggers: [
      { category: ["treesync"], sinks: Object.keys(sinks), lowestLevel: "debug" },
      { category: ["logtape", "meta"], sinks: ["console"], lowestLevel: "error" },
    ],
  });
  const debugOn = options.verbosity >= 3;
  // Changes go nowhere without -v or a log file: skip making their records at all.
  const changesShown = options.verbosity >= 2 || options.logPath !== null;
  return {
    change: (text) => changesShown && logger.info("{text}", { text }),
    debug: (text) => debugOn && logger.debug("{text}", { text }),
    warn: (text) => logger.warn("{text}", { text }),
    error: (text, error) => {
      logger.error("{text}", { text });
      if (debugOn && error instanceof Error && error.stack) writeStderr(`${error.stack}\n`);
    },
    summary: (text) => logger.info("{text}", { text, summary: true }),
  };
}

/** Writes out and closes the log sinks. Never throws: a log problem never decides an exit. */
export async function closeLogging(): Promise<void> {
  try {
    const { dispose } = await import("@logtape/logtape");
    await dispose();
  } catch (error) {
    try {
      writeStderr(`warning: cannot close the log: ${logErrorText(error)}\n`);
    } catch {
      // No stderr either.
    }
  }
}

// ================================================================================================
// Run
// ================================================================================================

/** Characters kept at each end of a long path or value shown in a message. */
const SHOWN_END_CHARS = 60;

/**
 * Cuts the middle out of a long text, keeping its first and last `keep` characters with `…`
 * between, so a message stays one short line. Whole code points: a surrogate pair is never
 * split.
 */
export function shortenMiddle(text: string, keep = SHOWN_END_CHARS): string {
  if (text.length <= 2 * keep + 1) return text;
  const chars = Array.from(text);
  if (chars.length <= 2 * keep + 1) return text;
  return `${chars.slice(0, keep).join("")}…${chars.slice(-keep).join("")}`;
}

/**
 * Shows a path (or any text a user gave) in a message: names with control characters are
 * quoted JSON-style, and long ones are cut in the middle ({@linkcode shortenMiddle}).
 */
export function displayPath(path: string): string {
  return shortenMiddle(listedPath(path));
}

/**
 * Shows a path in full on one line, for listings where the path is the information: the
 * `--dry-run` plan, `--verify` results, the change lines of `-v` and the log file.
 */
export function listedPath(path: string): string {
  // deno-lint-ignore no-control-regex
  return /[\x00-\x1f\x7f]/.test(path) ? JSON.stringify(path) : path;
}

/** A path or value in quotes for a message, made safe by {@linkcode displayPath}. */
function quoted(text: string): string {
  return `'${displayPath(text)}'`;
}

/** Shortens each quoted part of a message, as Deno's errors and node:util quote paths. */
function shortenQuoted(message: string): string {
  return message.replace(/'([^']*)'/g, (_, inner: string) => quoted(inner));
}

function describeAction(action: Action): string {
  const shown = listedPath(action.path === "" ? "." : action.path);
  switch (action.kind) {
    case "mkdir":
      return `mkdir ${shown}/`;
    case "rmdir":
      return `rmdir ${shown}/`;
    case "link":
      return `link ${shown} -> ${listedPath(action.entry!.target!)}`;
    case "move": {
      const slash = action.entry!.kind === "dir" ? "/" : "";
      return `move ${listedPath(action.from!)}${slash} -> ${shown}${slash}`;
    }
    case "copy":
    case "update":
      return `${action.kind} ${shown} (${formatBytes(action.entry!.size)})`;
    default:
      return `${action.kind} ${shown}`;
  }
}

/** Human-readable bytes: `512 B`, `1.5 KiB`, `3.2 GiB`; a fraction (a rate) is rounded. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  bytes = Math.round(bytes);
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function summaryLine(summary: RunSummary, label: string): string {
  const s = summary;
  return `${label}: ${s.copied} copied, ${s.updated} updated, ${s.moved} moved, ` +
    `${s.deleted} deleted, ${s.dirsCreated} folders created, ${s.dirsDeleted} folders deleted, ` +
    `${s.attrsUpdated} attributes fixed, ${s.failed} failed, ${formatBytes(s.bytesCopied)} ` +
    `copied in ${(s.durationMs / 1000).toFixed(2)} s`;
}

/** Controls shared by a run and whoever started it (the loop, signals, stdin). */
export interface RunControl {
  /** True once a stop was asked: finish the current file, save the record. */
  stopRequested: boolean;
  /** True once a second SIGINT came: abandon the current file now. */
  abortNow: boolean;
  /** The replica lock while it is held. */
  lock: ReplicaLock | null;
  /** Keep the lock between runs (the loop holds it for its whole life). */
  keepLock: boolean;
  /** Progress of the run under way, for `status` and the progress line. */
  progress: RunProgress;
  /** The run's workers, told when a stop is asked. */
  pool: WorkerPool | null;
}

/**
 * Asks the run under way to stop: after the file in flight (1: quit, the first signal) or at
 * once, abandoning it (2: a second SIGINT).
 */
export function requestStop(control: RunControl, level: 1 | 2): void {
  control.stopRequested = true;
  if (level === 2) control.abortNow = true;
  control.pool?.stop(level);
}

/** How far the run under way has come. */
export interface RunProgress {
  phase: "idle" | "scanning" | "hashing" | "copying";
  /** Entries scanned, or changes made. */
  done: number;
  /** Changes planned (0 while scanning). */
  total: number;
  bytes: number;
  totalBytes: number;
  /** The path being copied. */
  current: string;
  startedAt: number;
}

function idleProgress(): RunProgress {
  return {
    phase: "idle",
    done: 0,
    total: 0,
    bytes: 0,
    totalBytes: 0,
    current: "",
    startedAt: performance.now(),
  };
}

/** One line of progress: `copying 12/345, 1.2 GiB of 3.4 GiB, 512.0 MiB/s, ETA 5s, a/b`. */
export function progressText(p: RunProgress, now = performance.now()): string {
  if (p.phase === "scanning") return `scanning: ${p.done} entries`;
  if (p.phase === "hashing") return `hashing: ${p.done} files, ${formatBytes(p.bytes)}`;
  const seconds = Math.max((now - p.startedAt) / 1000, 0.001);
  const rate = p.bytes / seconds;
  const left = Math.max(p.totalBytes - p.bytes, 0);
  const eta = rate > 0 && left > 0 ? `, ETA ${formatDuration((left / rate) * 1000)}` : "";
  return `${p.phase} ${p.done}/${p.total}, ${formatBytes(p.bytes)} of ` +
    `${formatBytes(p.totalBytes)}, ${formatBytes(rate)}/s${eta}` +
    (p.current ? `, ${displayPath(p.current)}` : "");
}

/** A fresh {@linkcode RunControl}. */
export function newRunControl(): RunControl {
  return {
    stopRequested: false,
    abortNow: false,
    lock: null,
    keepLock: false,
    progress: idleProgress(),
    pool: null,
  };
}

/**
 * Draws one live status line on stderr while a run is under way: only on a terminal, never with
 * `-q`, never in the log file, and only once a run has lasted a second (short runs do not
 * flicker).
 *
 * @returns A function that stops it and clears the line.
 */
export function startProgressLine(
  control: RunControl,
  options: Pick<Options, "verbosity">,
): () => void {
  if (options.verbosity === 0 || !Deno.stderr.isTerminal()) return () => {};
  const draw = () => {
    const p = control.progress;
    if (p.phase === "idle" || performance.now() - p.startedAt < 1000) return;
    let width = 80;
    try {
      width = Deno.consoleSize().columns;
    } catch {
      // Not a console after all: keep 80.
    }
    writeStderr(`\r\x1b[2K${progressText(p).slice(0, width - 1)}`);
    progressLineShown = true;
  };
  const timer = setInterval(draw, 250);
  return () => {
    clearInterval(timer);
    if (progressLineShown) writeStderr("");
  };
}

function makePause(): () => Promise<void> {
  let last = performance.now();
  return async () => {
    const now = performance.now();
    if (now - last < 100) return; // a turn costs ~2 ms: take one ten times a second
    // A macrotask turn lets signal handlers, stdin and timers run between files.
    await new Promise((done) => setTimeout(done, 0));
    last = performance.now();
  };
}

/** Real path of `path`, or of its nearest existing ancestor with the rest appended. */
function realPathOrNearest(path: string): string {
  const missing: string[] = [];
  for (let current = path;; current = dirname(current)) {
    try {
      return join(Deno.realPathSync(current), ...missing.reverse());
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound) || current === dirname(current)) throw error;
      missing.push(current.slice(dirname(current).length).replace(/^\//, ""));
    }
  }
}

/** `device:inode` of an existing path and of each folder above it, nearest first. */
function folderIdentities(realPath: string): string[] {
  const identities: string[] = [];
  for (let path = realPath;; path = dirname(path)) {
    try {
      const info = Deno.statSync(path);
      identities.push(`${info.dev}:${info.ino}`);
    } catch {
      // A part of a replica path that does not exist yet.
    }
    if (path === dirname(path)) return identities;
  }
}

function isInside(inner: string, outer: string): boolean {
  return inner === outer || inner.startsWith(outer.endsWith("/") ? outer : `${outer}/`);
}

/**
 * Checks the two paths before anything is written: the source must be a folder, and neither
 * may be, or be inside, the other (compared by real path, so symlinks do not hide it).
 *
 * @throws {UsageError} When the paths cannot be mirrored.
 */
export function checkPaths(source: string, replica: string): void {
  let sourceInfo: Deno.FileInfo;
  try {
    sourceInfo = Deno.statSync(source);
  } catch (error) {
    throw new UsageError(
      error instanceof Deno.errors.NotFound
        ? `Source ${quoted(source)} does not exist: check the path, or whether its disk is mounted`
        : `Cannot read source ${quoted(source)}: ${errorText(error, true)}`,
    );
  }
  if (!sourceInfo.isDirectory) throw new UsageError(`Source ${quoted(source)} is not a folder`);
  const realSource = Deno.realPathSync(source);
  let realReplica: string;
  try {
    realReplica = realPathOrNearest(replica);
  } catch (error) {
    throw new UsageError(`Cannot use the replica ${quoted(replica)}: ${errorText(error, true)}`);
  }
  // Real paths catch symlinks; device and inode also catch bind mounts, where one folder has
  // two real paths.
  const sourceChain = folderIdentities(realSource);
  const replicaChain = folderIdentities(realReplica);
  const replicaExists = pathExists(replica);
  const refuse = (why: string) => {
    throw new UsageError(`Cannot mirror ${quoted(source)} into ${quoted(replica)}: ${why}`);
  };
  if (realSource === realReplica || (replicaExists && sourceChain[0] === replicaChain[0])) {
    refuse("they are the same folder");
  }
  if (isInside(realReplica, realSource) || replicaChain.includes(sourceChain[0]!)) {
    refuse("the replica is inside the source");
  }
  if (
    isInside(realSource, realReplica) ||
    (replicaExists && sourceChain.includes(replicaChain[0]!))
  ) {
    refuse("the source is inside the replica");
  }
  try {
    const replicaInfo = Deno.statSync(replica);
    if (!replicaInfo.isDirectory) {
      throw new UsageError(`Replica ${quoted(replica)} is not a folder`);
    }
  } catch (error) {
    if (error instanceof UsageError) throw error;
    if (!(error instanceof Deno.errors.NotFound)) {
      throw new UsageError(`Cannot use the replica ${quoted(replica)}: ${errorText(error, true)}`);
    }
  }
}

/** What one run needs besides its options. */
export interface RunDependencies {
  report: Reporter;
  control: RunControl;
  /** Answers the `--interactive` question; true deletes. */
  confirmDeletes: (count: number, sample: string[]) => boolean;
  isRoot: boolean;
}

/**
 * One pass: check, lock, scan both trees, plan, apply, save the record.
 *
 * @returns The summary; `failed` counts entries that could not be mirrored.
 * @throws {UsageError} For paths that cannot be mirrored (nothing changed).
 * @throws {RefusedError} When a safety check refuses (nothing deleted).
 */
export async function runOnce(options: Options, deps: RunDependencies): Promise<RunSummary> {
  const started = performance.now();
  const { report, control } = deps;
  // Every check that can refuse the run comes before its first write.
  checkPaths(options.source, options.replica);
  const sides = runSides(options);
  checkMeta(sides.replicaMeta);
  if (options.restore) checkMeta(sides.targetMeta);
  const writes = !options.dryRun;
  // Restoring needs a replica to restore from.
  if (options.restore) checkRestoreFrom(options.replica);
  const pool = new WorkerPool(options.jobs);
  control.pool = pool;
  let prepared: PreparedWrites | null = null;
  try {
    // An existing lock file is taken now (taking it writes nothing); a first run makes it later.
    if (writes) takeLock(control, sides.replicaMeta, options.restore ? "read" : "existing");
    control.progress = { ...idleProgress(), phase: "scanning" };
    const scanning = scanBoth(pool, { from: sides.fromRoot, to: sides.toRoot }, options.excludes);
    const recordLoad = { onCorrupt: (message: string) => report.warn(message) };
    // A record small enough to be harmless is read while the workers walk.
    const early = fileSize(sides.replicaMeta.record) <= RECORD_EAGER_BYTES
      ? loadRecord(sides.replicaMeta.record, { ...recordLoad, maxBytes: RECORD_EAGER_BYTES })
      : null;
    const { from, to } = await scanning;
    reportScans(report, options, { from, to });
    refuseUnsafe(options, { from, to });
    const record = early ?? loadRecord(sides.replicaMeta.record, {
      ...recordLoad,
      maxBytes: recordSizeCap(from.entries.size + to.entries.size),
    });
    if (await stopAsked(control)) return stoppedSummary(options, started);
    if (writes) {
      prepared = prepareWrites(options, sides, deps);
      // A replica this run made had no walk: its root is the folder just made.
      if (!to.entries.has("")) to.entries.set("", entryFromStat(Deno.statSync(sides.toRoot)));
    }

    const hashOptions = {
      checksum: options.checksum,
      // What the record knows of each side; restoring reads the replica and writes the source.
      fromHashes: options.restore ? record.replica : record.source,
      toHashes: options.restore ? record.source : record.replica,
      moves: !options.restore && options.deletes,
      deletes: options.deletes && !options.restore,
      restore: options.restore,
      overwriteNewer: options.overwriteNewer,
    };
    await hashWhatMatters(pool, { sides, from, to, hashOptions, options, deps });
    if (await stopAsked(control)) return stoppedSummary(options, started);
    const decided = decide(options, deps, { from, to, hashOptions });
    if (await stopAsked(control)) return stoppedSummary(options, started);
    const summary = options.dryRun
      ? printPlan(decided.plan, options.keepDeletedMs !== null)
      : await execute(decided.plan, {
        sides,
        from,
        to,
        record,
        prepared: prepared!,
        restore: options.restore,
        deps,
      });
    summary.failed += from.problems.length + to.problems.length + decided.plan.blocked.length;
    summary.durationMs = Math.round(performance.now() - started);
    summary.deletionsHeldBack = decided.heldBack;
    summary.maxDeleteHit = decided.maxDeleteHit;
    return summary;
  } finally {
    control.progress = idleProgress();
    control.pool = null;
    pool.close();
    if (!control.keepLock) {
      control.lock?.release();
      control.lock = null;
    }
    // Restoring leaves the source as it was found: the folders of ours this run made there
    // go again, if empty. Nothing else there is ever removed.
    removeEmptyFolders(prepared?.madeInTarget ?? []);
  }
}

/** Checks that a restore has a replica to restore from. */
function checkRestoreFrom(replica: string): void {
  let isFolder = false;
  try {
    isFolder = Deno.statSync(replica).isDirectory;
  } catch {
    // Missing or unreadable: nothing to restore from either way.
  }
  if (!isFolder) {
    throw new UsageError(`Replica ${quoted(replica)} is not a folder: nothing to restore from`);
  }
}

/** Removes folders, innermost (last) first, each only if it is empty. */
function removeEmptyFolders(folders: string[]): void {
  for (const folder of [...folders].reverse()) {
    try {
      Deno.removeSync(folder); // not recursive: a folder with anything in it stays
    } catch {
      // Not empty, or already gone: leave it.
    }
  }
}

/** The two trees of a run and where each keeps our own files. */
interface RunSides {
  fromRoot: string;
  toRoot: string;
  /** The replica's: lock and record. */
  replicaMeta: MetaPaths;
  /** The written tree's: temporary files and trash (the source's, when restoring). */
  targetMeta: MetaPaths;
}

function runSides(options: Options): RunSides {
  const [fromRoot, toRoot] = options.restore
    ? [options.replica, options.source]
    : [options.source, options.replica];
  // Files are written next to where they go, on the same file system, so the final rename
  // works: in the written tree's metadata folder (a top-level .treesync is never mirrored).
  return {
    fromRoot,
    toRoot,
    replicaMeta: metaPaths(options.replica),
    targetMeta: metaPaths(toRoot),
  };
}

function fileSize(path: string): number {
  try {
    return Deno.lstatSync(path).size;
  } catch {
    return 0;
  }
}

/**
 * Whether a stop was asked. Signal handlers run on the event loop, which the synchronous phases
 * (loading the record, planning) do not give back: a short wait lets a signal that came meanwhile
 * in.
 */
async function stopAsked(control: RunControl): Promise<boolean> {
  // A timer of a few ms (not 0) lets the event loop wait for, and deliver, a pending signal.
  await new Promise((done) => setTimeout(done, 5));
  return control.stopRequested;
}

function stoppedSummary(options: Options, started: number): RunSummary {
  const summary = emptySummary(options.dryRun);
  summary.durationMs = Math.round(performance.now() - started);
  return summary;
}

/** Takes the replica lock unless this process still holds it. */
function takeLock(control: RunControl, meta: MetaPaths, mode: LockMode): void {
  if (control.lock?.stillHeld()) return;
  control.lock?.release();
  control.lock = acquireLock(meta, mode);
}

function reportScans(
  report: Reporter,
  options: Options,
  scans: { from: WorkerScan; to: WorkerScan },
): void {
  const debugScan = options.verbosity >= 3;
  for (const [side, scan] of [["source", scans.from], ["target", scans.to]] as const) {
    for (const problem of scan.skipped) {
      report.warn(`${displayPath(problem.path)}: ${problem.message}`);
    }
    if (debugScan) {
      for (const [path, entry] of scan.entries) {
        report.debug(`scan ${side} ${entry.kind} ${displayPath(path || ".")}`);
      }
    }
  }
  for (const problem of [...scans.from.problems, ...scans.to.problems]) {
    if (problem.path !== "") report.error(`${displayPath(problem.path)}: ${problem.message}`);
  }
}

/**
 * The checks that need the walk, before anything is written: a tree that is the other's root
 * through a bind mount, a root that cannot be listed, an empty source over a full replica.
 */
function refuseUnsafe(options: Options, scans: { from: Scan; to: Scan }): void {
  const [fromName, toName] = options.restore ? ["replica", "source"] : ["source", "replica"];
  const [fromRoot, toRoot] = options.restore
    ? [options.replica, options.source]
    : [options.source, options.replica];
  const sides = [[scans.from, fromName, fromRoot], [scans.to, toName, toRoot]] as const;
  for (const [scan, name, root] of sides) {
    const rootProblem = scan.problems.find((problem) => problem.path === "");
    if (rootProblem) {
      const why = rootProblem.message.replace(/^Cannot list folder: /, "");
      throw new UsageError(`Cannot list the ${name} ${quoted(root)}: ${why}`);
    }
  }
  const nested = scans.from.nested ?? scans.to.nested;
  if (nested !== undefined) {
    const inside = scans.from.nested !== undefined ? `the ${toName} is` : `the ${fromName} is`;
    const host = scans.from.nested !== undefined ? fromName : toName;
    throw new UsageError(
      `Cannot mirror ${quoted(options.source)} into ${
        quoted(options.replica)
      }: ${inside} the folder ` +
        `${quoted(nested)} of the ${host} (a bind mount shows one folder twice)`,
    );
  }
  if (!options.restore && options.deletes && !options.allowEmptySource) {
    const { from, to } = scans;
    if (from.entries.size === 1 && from.problems.length === 0 && to.entries.size > 1) {
      throw new RefusedError(
        `Refusing to empty ${quoted(options.replica)}: the source ${
          quoted(options.source)
        } is empty ` +
          `(an unmounted disk looks like this). Pass --allow-empty-source if it is meant`,
      );
    }
  }
}

/** What a writing run set up: where files are written and kept, and what it made. */
interface PreparedWrites {
  tempDir: string;
  trashDir: string | null;
  /** The replica's metadata folder, checked again before the record is saved (not restoring). */
  metaIdentity: Identity | null;
  /** Our folders this run made in the written tree, when restoring (removed if left empty). */
  madeInTarget: string[];
}

/**
 * The first writes of a run, once every check has passed: the replica and our folders, the
 * lock, leftovers of a killed run, expired trash.
 */
function prepareWrites(options: Options, sides: RunSides, deps: RunDependencies): PreparedWrites {
  const { replicaMeta, targetMeta } = sides;
  if (!pathExists(options.replica)) {
    try {
      Deno.mkdirSync(options.replica, { recursive: true });
    } catch (error) {
      throw new UsageError(
        `Cannot create the replica ${quoted(options.replica)}: ${errorText(error, true)}`,
      );
    }
  }
  let metaIdentity: Identity | null = null;
  if (!options.restore) {
    // Restoring writes into the source only: the replica, read-only perhaps, is just read.
    metaIdentity = makeOwnFolder(replicaMeta.dir);
    takeLock(deps.control, replicaMeta, "create");
    deps.control.lock!.announce();
  }
  const madeInTarget: string[] = [];
  for (const folder of options.restore ? [targetMeta.dir, targetMeta.temp] : [targetMeta.temp]) {
    if (makeOwnFolder(folder).made) madeInTarget.push(folder);
  }
  if (!options.restore) {
    // Files left by a run that was killed mid-copy; the lock says no run is using them. In the
    // source (restoring) nothing is removed but what this run made.
    for (const leftover of Deno.readDirSync(targetMeta.temp)) {
      removeQuietly(`${targetMeta.temp}/${leftover.name}`);
    }
  }
  let trashDir: string | null = null;
  if (options.keepDeletedMs !== null) {
    for (const name of purgeTrash(targetMeta.trash, options.keepDeletedMs, new Date())) {
      deps.report.change(
        `purge trash ${name}/ (older than ${formatDuration(options.keepDeletedMs)})`,
      );
    }
    if (makeOwnFolder(targetMeta.trash).made && options.restore) {
      madeInTarget.push(targetMeta.trash);
    }
    trashDir = `${targetMeta.trash}/${trashFolderName(new Date())}`;
    makeOwnFolder(trashDir);
    madeInTarget.push(trashDir); // removed at the end if nothing went in
  }
  return {
    tempDir: targetMeta.temp,
    trashDir,
    metaIdentity: metaIdentity && { dev: metaIdentity.dev, ino: metaIdentity.ino },
    madeInTarget,
  };
}

/** Hashes the files whose SHA-256 would change a decision and is not known yet. */
async function hashWhatMatters(
  pool: WorkerPool,
  input: {
    sides: RunSides;
    from: Scan;
    to: Scan;
    hashOptions: Pick<PlanOptions, "checksum" | "fromHashes" | "toHashes" | "moves">;
    options: Options;
    deps: RunDependencies;
  },
): Promise<void> {
  const { sides, from, to, options, deps: { report, control } } = input;
  const wanted = hashesNeeded(from, to, input.hashOptions);
  if (wanted.from.length + wanted.to.length === 0) return;
  control.progress = { ...idleProgress(), phase: "hashing" };
  const debugScan = options.verbosity >= 3;
  const sideList = [["from", from, sides.fromRoot], ["to", to, sides.toRoot]] as const;
  for (const [side, scan, root] of sideList) {
    const files = wanted[side].map((path) => ({ path, size: scan.entries.get(path)!.size }));
    const outcomes = await hashInPool(pool, root, files, (count, bytes) => {
      control.progress.done += count;
      control.progress.bytes += bytes;
    });
    for (const [path, outcome] of outcomes) {
      const entry = scan.entries.get(path)!;
      if (debugScan) {
        report.debug(`hash ${side === "from" ? "source" : "target"} ${displayPath(path)}`);
      }
      if ("error" in outcome) {
        report.error(`${displayPath(path)}: Cannot hash: ${outcome.error}`);
      } else if (outcome.result && sameSignature(outcome.result.signature, entry)) {
        // A file that changed since the scan stays unhashed: the plan then copies it.
        entry.hash = outcome.result.hash;
        entry.hashedAtMs = outcome.result.hashedAtMs;
      }
    }
  }
}

/** Plans the run, then applies `--max-delete` and the `--interactive` answer to the plan. */
function decide(
  options: Options,
  deps: RunDependencies,
  input: {
    from: Scan;
    to: Scan;
    hashOptions: Omit<PlanOptions, "owners" | "explain">;
  },
): { plan: Plan; heldBack: number; maxDeleteHit: boolean } {
  const { report } = deps;
  const { from, to } = input;
  let plan = planMirror(from, to, {
    ...input.hashOptions,
    owners: deps.isRoot,
    ...(options.verbosity >= 3
      ? {
        explain: (path: string, why: string) =>
          report.debug(`keep ${displayPath(path || ".")}: ${why}`),
      }
      : {}),
  });
  for (const problem of plan.blocked) {
    report.error(`${displayPath(problem.path)}: ${problem.message}`);
  }
  if (plan.keptExtraneous > 0) {
    report.debug(`${plan.keptExtraneous} extraneous entries kept: deletions are off`);
  }
  let heldBack = 0;
  let maxDeleteHit = false;
  const deletions = plan.actions.filter((a) => a.kind === "delete" || a.kind === "rmdir");
  if (options.maxDelete && deletions.length > 0) {
    const allowed = deleteAllowance(options.maxDelete, to.entries.size - 1);
    if (deletions.length > allowed) {
      const limit = "count" in options.maxDelete
        ? `${options.maxDelete.count}`
        : `${options.maxDelete.percent}% = ${allowed} of ${to.entries.size - 1} entries`;
      report.error(
        `Deleting nothing: this run would delete ${deletions.length} entries, more than ` +
          `--max-delete ${limit}; copying the rest. Check the source, then raise the limit ` +
          `or run once without it`,
      );
      ({ plan, heldBack } = holdBackDeletions(plan));
      maxDeleteHit = true;
    }
  }
  if (options.interactive && deletions.length > 0 && !options.dryRun && !maxDeleteHit) {
    const sample = deletions.slice(0, 10).map((a) => displayPath(a.path));
    if (!deps.confirmDeletes(deletions.length, sample)) {
      report.warn(
        `Kept ${deletions.length} entries that would have been deleted; copying the rest`,
      );
      ({ plan, heldBack } = holdBackDeletions(plan));
    }
  }
  return { plan, heldBack, maxDeleteHit };
}

/** A dry run: prints the plan on stdout and counts it. */
function printPlan(plan: Plan, trash: boolean): RunSummary {
  for (const action of plan.actions) {
    if (action.kind === "dirattrs") continue;
    const toTrash = trash &&
      (action.kind === "delete" || action.kind === "update" ||
        (action.kind === "link" && action.reason !== "new"));
    writeStdout(`${describeAction(action)}${toTrash ? " (to trash)" : ""}\n`);
  }
  return countPlan(plan);
}

/** Applies the plan with the run's workers, then saves the record. */
async function execute(
  plan: Plan,
  input: {
    sides: RunSides;
    from: Scan;
    to: Scan;
    record: FileRecord;
    prepared: PreparedWrites;
    restore: boolean;
    deps: RunDependencies;
  },
): Promise<RunSummary> {
  const { sides, from, to, record, prepared, deps: { report, control, isRoot } } = input;
  let checkpointed = false;
  const checkpoint = (done: RecordChanges) => {
    const before = performance.now();
    try {
      expectIdentity(sides.replicaMeta.dir, prepared.metaIdentity!);
      saveRecord(sides.replicaMeta, nextRecord(record, { source: from, replica: to }, done));
      checkpointed = true;
    } catch (error) {
      report.warn(`Cannot save the record at a checkpoint: ${errorText(error)}`);
    }
    // Checkpoints take at most a twentieth of a run, however large the record.
    return Math.max(CHECKPOINT_MS, (performance.now() - before) * 20);
  };
  control.progress = {
    ...idleProgress(),
    phase: "copying",
    total: plan.actions.filter((a) => a.kind !== "dirattrs").length,
    totalBytes: plan.actions.reduce(
      (sum, a) => sum + (a.kind === "copy" || a.kind === "update" ? a.entry!.size : 0),
      0,
    ),
  };
  const result = await applyPlan(plan, {
    fromRoot: sides.fromRoot,
    toRoot: sides.toRoot,
    tempDir: prepared.tempDir,
    trashDir: prepared.trashDir,
    pool: control.pool,
    guard: new FolderGuard(sides.toRoot, to),
    onStart: (action) => control.progress.current = action.path,
    onBytes: (bytes) => control.progress.bytes += bytes,
    owners: isRoot,
    shouldStop: () => control.stopRequested,
    mustAbort: () => control.abortNow,
    pause: makePause(),
    onDone: (action) => {
      if (action.kind !== "dirattrs") control.progress.done++;
      if (action.kind === "dirattrs") report.debug(describeAction(action));
      else report.change(describeAction(action));
      report.debug(`  because: ${action.reason}`);
    },
    onFailed: (problem) => report.error(`${displayPath(problem.path)}: ${problem.message}`),
    ...(input.restore ? {} : { checkpoint }),
  });
  if (!input.restore) {
    const next = nextRecord(record, { source: from, replica: to }, result);
    if (checkpointed || !sameRecord(record, next)) {
      expectIdentity(sides.replicaMeta.dir, prepared.metaIdentity!);
      saveRecord(sides.replicaMeta, next);
    }
  }
  if (result.stopped) report.warn("Stopped before the end of the run; the record is saved");
  return result.summary;
}

function countPlan(plan: Plan): RunSummary {
  const summary = emptySummary(true);
  for (const action of plan.actions) {
    if (action.kind === "copy") summary.copied++, summary.bytesCopied += action.entry!.size;
    else if (action.kind === "update") summary.updated++, summary.bytesCopied += action.entry!.size;
    else if (action.kind === "link") summary[action.reason === "new" ? "copied" : "updated"]++;
    else if (action.kind === "delete") summary.deleted++;
    else if (action.kind === "mkdir") summary.dirsCreated++;
    else if (action.kind === "rmdir") summary.dirsDeleted++;
    else if (action.kind === "attrs") summary.attrsUpdated++;
    else if (action.kind === "move") summary.moved++;
  }
  return summary;
}

function writeStdout(text: string): void {
  writeOut(Deno.stdout, text);
}

// ================================================================================================
// Verify
// ================================================================================================

/** What `--verify` found. */
export interface VerifyResult {
  checked: number;
  /** Bytes read and hashed. */
  bytes: number;
  mismatched: string[];
  missing: string[];
  /** Files with no hash in the record: not checked. */
  unrecorded: string[];
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

function isExcludedRecordPath(path: string, exclude: ExcludeMatcher): boolean {
  return [path, ...ancestors(path).filter((p) => p !== "")].some((p, i) => exclude(p, i > 0));
}

// ================================================================================================
// Loop
// ================================================================================================

const LOOP_HELP = `Commands (type one and press Enter):
  now       start a run at once
  status    show the last run, the run in progress and when the next starts
  quit      finish the current file, save the record and exit (also q, exit)
  help      show this list`;

/** What a line typed into the loop asks for; an unknown one comes with its reply. */
export type LoopCommand =
  | { kind: "none" | "quit" | "now" | "status" | "help" }
  | { kind: "unknown"; reply: string };

/** Characters of an unknown command echoed back. */
const ECHOED_COMMAND_CHARS = 40;

/**
 * Reads one line typed into the loop. An unknown one is echoed in its reply cut to 40
 * characters, its control characters escaped: never raw escape sequences back to the terminal.
 * Pure.
 */
export function parseLoopCommand(line: string): LoopCommand {
  const word = line.trim().toLowerCase();
  if (word === "") return { kind: "none" };
  if (word === "quit" || word === "q" || word === "exit") return { kind: "quit" };
  if (word === "now" || word === "status") return { kind: word };
  if (word === "help" || word === "?") return { kind: "help" };
  const chars = Array.from(line.trim());
  const cut = chars.length > ECHOED_COMMAND_CHARS ? "…" : "";
  const shown = escapeControls(chars.slice(0, ECHOED_COMMAND_CHARS).join("")) + cut;
  return { kind: "unknown", reply: `Unknown command '${shown}'; type help for the list` };
}

/** Control characters (C0, DEL, C1) written as `\xNN`, so shown text cannot drive a terminal. */
export function escapeControls(text: string): string {
  // deno-lint-ignore no-control-regex
  const controls = /[\x00-\x1f\x7f-\x9f]/g;
  return text.replace(controls, (char) => `\\x${char.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/** The longest single timer the loop sets while it waits for the next run. */
export const WAIT_CHUNK_MS = 3_600_000;

/**
 * How long the loop sleeps before it looks at the clock again, waiting until `untilMs`: the
 * time left, but at most `chunkMs` (timers past 2^31-1 ms fire at once); 0 when it is time.
 * Pure.
 */
export function nextWaitMs(untilMs: number, nowMs: number, chunkMs = WAIT_CHUNK_MS): number {
  return Math.min(Math.max(0, untilMs - nowMs), chunkMs);
}

/** Totals over every run of a loop, logged when it exits. */
interface LoopTotals {
  runs: number;
  failedRuns: number;
  copied: number;
  updated: number;
  moved: number;
  deleted: number;
  bytesCopied: number;
  failed: number;
}

function addToTotals(totals: LoopTotals, summary: RunSummary): void {
  totals.copied += summary.copied;
  totals.updated += summary.updated;
  totals.moved += summary.moved;
  totals.deleted += summary.deleted;
  totals.bytesCopied += summary.bytesCopied;
  totals.failed += summary.failed;
}

/** `1h 2m 3s` from milliseconds. */
export function formatDuration(ms: number): string {
  let seconds = Math.round(ms / 1000);
  const parts: string[] = [];
  for (const [unit, size] of [["d", 86_400], ["h", 3_600], ["m", 60]] as const) {
    if (seconds >= size) {
      parts.push(`${Math.floor(seconds / size)}${unit}`);
      seconds %= size;
    }
  }
  if (seconds > 0 || parts.length === 0) parts.push(`${seconds}s`);
  return parts.join(" ");
}

/** Characters of a command line kept: the rest of a longer line (a file piped in) is dropped. */
const MAX_COMMAND_CHARS = 1024;

/**
 * Reads lines from stdin as they come and hands each to `onLine`, cut to
 * {@linkcode MAX_COMMAND_CHARS}; returns at end of file.
 */
async function readCommandLines(onLine: (line: string) => void): Promise<void> {
  const reader = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const parts = value.split("\n");
      for (let i = 0; i < parts.length; i++) {
        pending = (pending + parts[i]).slice(0, MAX_COMMAND_CHARS);
        if (i < parts.length - 1) {
          onLine(pending);
          pending = "";
        }
      }
    }
    if (pending !== "") onLine(pending);
  } catch {
    // A closed or broken stdin is the same as its end: the loop goes on without commands.
  }
}

/**
 * Runs a mirror every `options.intervalMs`, start to start, until `quit` or a signal. Stdin
 * takes commands; its end is not a quit (cron and systemd give none). The lock is held for the
 * loop's whole life.
 *
 * @returns 0 if the last run succeeded, 1 if it failed, 130 or 143 after a signal.
 */
async function runLoop(options: Options, report: Reporter): Promise<number> {
  const intervalMs = options.intervalMs!;
  const control = newRunControl();
  const startedAt = Date.now();
  const totals: LoopTotals = {
    runs: 0,
    failedRuns: 0,
    copied: 0,
    updated: 0,
    moved: 0,
    deleted: 0,
    bytesCopied: 0,
    failed: 0,
  };
  // Assigned inside closures, which TypeScript's narrowing does not follow.
  let lastSummary: RunSummary | null = null;
  let lastRunFailed = false;
  let running = false;
  let runAgain = false;
  let nextRunAt = startedAt;
  let exitCode: number | null = null;
  let wake = () => {};

  // The lock is held for the loop's life (each run takes it again if the replica was deleted
  // with it). A second loop on the same replica is refused now, if the lock file exists; on a
  // new replica the first run makes it.
  control.keepLock = true;
  const holdLock = () => {
    if (!options.dryRun) takeLock(control, metaPaths(options.replica), "existing");
  };

  // Paths that can never be mirrored are a usage error now; a source that is missing may be
  // a disk not yet mounted, so the loop starts and each run says so until it appears.
  try {
    checkPaths(options.source, options.replica);
  } catch (error) {
    const sourceMissing = !pathExists(options.source);
    if (!(error instanceof UsageError) || !sourceMissing) throw error;
    report.warn(`${error.message}; runs fail until it appears`);
  }
  holdLock();

  const onCommand = (line: string) => {
    const command = parseLoopCommand(line);
    if (command.kind === "quit") {
      report.summary(running ? "quit: finishing the current file" : "quit");
      requestStop(control, 1);
      wake();
    } else if (command.kind === "now") {
      if (running) {
        runAgain = true;
        writeStdout("A run is in progress; the next starts as soon as it ends\n");
      } else wake();
    } else if (command.kind === "status") {
      writeStdout(`${statusText()}\n`);
    } else if (command.kind === "help") {
      writeStdout(`${LOOP_HELP}\n`);
    } else if (command.kind === "unknown") {
      writeStdout(`${command.reply}\n`);
    }
  };
  const statusText = () => {
    const lines = [
      lastSummary
        ? summaryLine(lastSummary, lastRunFailed ? "last run (failed)" : "last run")
        : "last run: none yet",
    ];
    lines.push(
      running
        ? `run in progress: ${progressText(control.progress)}`
        : `next run in ${formatDuration(Math.max(0, nextRunAt - Date.now()))} ` +
          `(${new Date(nextRunAt).toISOString()})`,
    );
    lines.push(`runs: ${totals.runs}, uptime ${formatDuration(Date.now() - startedAt)}`);
    return lines.join("\n");
  };
  void readCommandLines(onCommand);
  const stopProgress = startProgressLine(control, options);

  const onSignal = (signal: "SIGINT" | "SIGTERM") => () => {
    if (signal === "SIGINT" && exitCode === ExitCode.Interrupted) {
      // A second Ctrl-C: stop now. Whatever was being copied stays in the temporary folder,
      // never under its final name, and the next run clears it.
      control.lock?.release();
      void closeLogging().finally(() => Deno.exit(ExitCode.Interrupted));
      return;
    }
    exitCode = signal === "SIGINT" ? ExitCode.Interrupted : ExitCode.Terminated;
    report.warn(`${signal}: finishing the current file, then exiting`);
    requestStop(control, 1);
    wake();
  };
  const handlers = { SIGINT: onSignal("SIGINT"), SIGTERM: onSignal("SIGTERM") } as const;
  for (const [signal, handler] of Object.entries(handlers)) {
    Deno.addSignalListener(signal as Deno.Signal, handler);
  }

  try {
    while (!control.stopRequested) {
      const runStartedAt = Date.now();
      running = true;
      totals.runs++;
      let summary: RunSummary;
      try {
        holdLock();
        summary = await runOnce(options, {
          report,
          control,
          isRoot: isRunningAsRoot(),
          confirmDeletes: () => false,
        });
      } catch (error) {
        // Another process holds the replica: two loops must not take turns on one replica.
        if (error instanceof LockHeldError) throw error;
        report.error(`Run ${totals.runs} failed: ${errorText(error)}`, error);
        summary = { ...emptySummary(options.dryRun), failed: 1 };
        summary.durationMs = Date.now() - runStartedAt;
      }
      running = false;
      lastSummary = summary;
      lastRunFailed = summary.failed > 0 || summary.maxDeleteHit;
      if (lastRunFailed) totals.failedRuns++;
      addToTotals(totals, summary);
      report.summary(summaryLine(summary, `run ${totals.runs}`));
      flushLogFile(); // a loop may idle for hours: its log should not
      if (options.json) writeStdout(`${JSON.stringify(summary)}\n`);
      if (control.stopRequested) break;

      nextRunAt = runStartedAt + intervalMs;
      const waitMs = nextRunAt - Date.now();
      if (waitMs <= 0) {
        report.warn(
          `Run ${totals.runs} took ${formatDuration(summary.durationMs)}, longer than the ` +
            `interval of ${formatDuration(intervalMs)}; starting the next one now`,
        );
        nextRunAt = Date.now();
      }
      if (runAgain) {
        runAgain = false;
        continue;
      }
      // Waited in chunks of at most an hour, each recomputed from the clock: a single timer
      // past 2^31-1 ms (~24.8 days) would fire at once. `now`, `quit` and signals wake it.
      await new Promise<void>((done) => {
        const tick = () => {
          const ms = nextWaitMs(nextRunAt, Date.now());
          if (ms > 0) timer = setTimeout(tick, ms);
          else done();
        };
        let timer = setTimeout(tick, nextWaitMs(nextRunAt, Date.now()));
        wake = () => {
          clearTimeout(timer);
          done();
        };
      });
      wake = () => {};
    }
  } finally {
    stopProgress();
    for (const [signal, handler] of Object.entries(handlers)) {
      Deno.removeSignalListener(signal as Deno.Signal, handler);
    }
    control.lock?.release();
    control.lock = null;
    report.summary(
      `loop totals: ${totals.runs} runs (${totals.failedRuns} failed), ${totals.copied} copied, ` +
        `${totals.updated} updated, ${totals.moved} moved, ${totals.deleted} deleted, ` +
        `${formatBytes(totals.bytesCopied)}, ${totals.failed} failures, ` +
        `uptime ${formatDuration(Date.now() - startedAt)}`,
    );
  }
  return exitCode ?? (lastRunFailed ? ExitCode.Failed : ExitCode.Ok);
}

/** Whether anything is at `path`, a dangling symlink included. */
export function pathExists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

// ================================================================================================
// Main
// ================================================================================================

/**
 * An error in a few words for a message.
 *
 * @param pathShown The message names the path already: leave out the call and path that
 *   Deno's messages end with (`File name too long: stat '/a/b'` becomes `File name too long`).
 */
function errorText(error: unknown, pathShown = false): string {
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.NotFound) return "no such file or folder";
  if (error instanceof Deno.errors.NotADirectory) return "a part of the path is not a folder";
  let text = error instanceof Error
    ? error.message.replace(/,? (?:os error \d+|\(os error \d+\))/, "").trim()
    : String(error);
  if (pathShown) text = text.replace(/: [a-z_]+ '.*'$/s, "");
  // Deno's messages quote the path they failed on, which may be thousands of characters long.
  return escapeControls(shortenQuoted(text));
}

function readAnswer(): string {
  const buffer = new Uint8Array(1);
  const bytes: number[] = [];
  while (true) {
    const count = Deno.stdin.readSync(buffer);
    if (count === null || count === 0 || buffer[0] === 10) break;
    bytes.push(buffer[0]!);
  }
  return new TextDecoder().decode(new Uint8Array(bytes)).trim();
}

function confirmOnTerminal(count: number, sample: string[]): boolean {
  writeStderr(`${count} entries would be deleted from the replica, among them:\n`);
  for (const path of sample) writeStderr(`  ${path}\n`);
  if (count > sample.length) writeStderr(`  ... and ${count - sample.length} more\n`);
  writeStderr("Delete them? [y/N] ");
  return /^y(es)?$/i.test(readAnswer());
}

function isRunningAsRoot(): boolean {
  try {
    return Deno.uid() === 0;
  } catch {
    return false;
  }
}

function exitCodeFor(summary: RunSummary): number {
  if (summary.maxDeleteHit) return ExitCode.Refused;
  // Deletions declined at -I leave a replica that does not match the source.
  return summary.failed > 0 || summary.deletionsHeldBack > 0 ? ExitCode.Failed : ExitCode.Ok;
}

async function runVerify(options: Options, report: Reporter): Promise<number> {
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
      exclude: compileExcludes(options.excludes),
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

async function runOneShot(options: Options, report: Reporter): Promise<number> {
  const control = newRunControl();
  let interrupted: number | null = null;
  const onSignal = (signal: "SIGINT" | "SIGTERM") => () => {
    requestStop(control, control.stopRequested && signal === "SIGINT" ? 2 : 1);
    interrupted = signal === "SIGINT" ? ExitCode.Interrupted : ExitCode.Terminated;
  };
  const handlers = { SIGINT: onSignal("SIGINT"), SIGTERM: onSignal("SIGTERM") } as const;
  for (const [signal, handler] of Object.entries(handlers)) {
    Deno.addSignalListener(signal as Deno.Signal, handler);
  }
  const stopProgress = options.interactive ? () => {} : startProgressLine(control, options);
  try {
    const summary = await runOnce(options, {
      report,
      control,
      isRoot: isRunningAsRoot(),
      confirmDeletes: confirmOnTerminal,
    });
    stopProgress();
    report.summary(
      summaryLine(summary, options.dryRun ? "dry run" : options.restore ? "restore" : "sync"),
    );
    if (options.json) writeStdout(`${JSON.stringify(summary)}\n`);
    return interrupted ?? exitCodeFor(summary);
  } finally {
    stopProgress();
    for (const [signal, handler] of Object.entries(handlers)) {
      Deno.removeSignalListener(signal as Deno.Signal, handler);
    }
  }
}

/**
 * Runs the command line and returns the exit code. Only this function reads the
 * environment and the terminal.
 */
export async function main(args: string[]): Promise<number> {
  let command: Command;
  try {
    command = parseCommandLine(args, readEnvironment(), Deno.cwd());
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    writeStderr(`treesync: ${error.message}\nTry 'treesync --help' for the options.\n`);
    return ExitCode.Usage;
  }
  if (command.kind === "help") {
    writeStdout(`${USAGE}\n`);
    return ExitCode.Ok;
  }
  if (command.kind === "version") {
    writeStdout(`treesync ${VERSION} (deno ${Deno.version.deno}, ${Deno.build.target})\n`);
    return ExitCode.Ok;
  }
  const { options } = command;
  if (options.interactive && !Deno.stdin.isTerminal()) {
    writeStderr("treesync: --interactive needs a terminal to ask on; run it by hand, or drop -I\n");
    return ExitCode.Usage;
  }
  let report: Reporter;
  try {
    report = await setUpLogging(options);
  } catch (error) {
    const shown = quoted(String(options.logPath));
    writeStderr(`treesync: Cannot open the log file ${shown}: ${errorText(error)}\n`);
    return ExitCode.Usage;
  }
  try {
    if (options.verify) return await runVerify(options, report);
    if (options.intervalMs !== null) return await runLoop(options, report);
    return await runOneShot(options, report);
  } catch (error) {
    if (error instanceof UsageError) {
      report.error(error.message);
      return ExitCode.Usage;
    }
    if (error instanceof RefusedError) {
      report.error(error.message);
      return ExitCode.Refused;
    }
    report.error(`Unexpected failure: ${errorText(error)}`, error);
    return ExitCode.Failed;
  } finally {
    await closeLogging();
  }
}

function readEnvironment(): Environment {
  const env: Environment = {};
  for (const name of ["TREESYNC_SOURCE", "TREESYNC_REPLICA", "TREESYNC_LOG"] as const) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

// In a worker this module only serves requests (import.meta.main is true there too).
if (IN_WORKER) serveRequests();
else if (import.meta.main) Deno.exit(await main(Deno.args));
