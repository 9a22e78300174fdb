/**
 * The command line: flags, paths and environment variables to the `Options` of one invocation,
 * every value checked before anything runs. Parsing is pure, but for telling whether a log path
 * is a folder; the `--exclude-from` files are read in one step after it, {@linkcode
 * readExcludeFiles}.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { errorText, UsageError } from "./errors.ts";
import { compileFilters, type FilterRule, parseExcludeFile } from "./exclude.ts";
import { quoted, shortenQuoted } from "./format.ts";
import { type DeleteLimit } from "./types.ts";
import {
  isDuration,
  MAX_JOBS,
  MAX_LOG_KEEP,
  parseCount,
  parseDeleteLimit,
  parseDuration,
  parseSize,
} from "./flagvalues.ts";
import { rsyncHint } from "./usage.ts";
import {
  chooseRemoteShell,
  DEFAULT_REMOTE_TREESYNC,
  DEFAULT_RSH,
  parseLocation,
  type RemoteLocation,
  splitRemoteShell,
} from "./remote/address.ts";
import { parseRate } from "./remote/pace.ts";

/** Everything one invocation was asked to do, after defaults and validation. */
export interface Options {
  /** Absolute path of the folder to mirror (as typed when it is `host:PATH`). */
  source: string;
  /** Absolute path of the mirror (as typed when it is `host:PATH`). */
  replica: string;
  /** The tree on another host, when SOURCE or REPLICA is `[user@]host:PATH`; else absent. */
  remote?: RemoteTree;
  /** The remote shell's words (`-e`, else `TREESYNC_RSH`, else `ssh`). */
  rsh: string[];
  /** The far end's program, as its login shell reads it (`--remote-treesync`). */
  remoteTreesync: string;
  /** `--bwlimit`: file data on the wire at most this many bytes a second; null for no limit. */
  bwlimit: number | null;
  /** `-z`: file data compressed on the wire. */
  compress: boolean;
  /** `--dry-run`: print the plan, change nothing. */
  dryRun: boolean;
  /** `--restore`: copy from the replica back into the source, deleting nothing. */
  restore: boolean;
  /** With `--restore`: also replace source files changed since the last sync. */
  overwriteNewer: boolean;
  /** `--checksum`: decide "changed" by content, not size and mtime. */
  checksum: boolean;
  /** `--verify`: re-hash the replica against its record, change nothing. */
  verify: boolean;
  /**
   * `--include` and `--exclude` rules in command-line order, each `--exclude-from` file's rules
   * at its place; the first that matches a path decides ({@linkcode compileFilters}).
   */
  filters: FilterRule[];
  /** False with `--no-delete`: nothing is ever deleted from the replica. */
  deletes: boolean;
  /**
   * `--adopt`: mirror over a replica with no treesync record (or one not adopted yet), deleting
   * what the source does not have. Without it such a run deletes nothing and exits 3.
   */
  adopt: boolean;
  /** `--interactive`: ask on the terminal before deleting anything. */
  interactive: boolean;
  /** `--allow-empty-source`: mirror an empty source over a non-empty replica. */
  allowEmptySource: boolean;
  /** Absolute path of the log file, or null for the console only. */
  logPath: string | null;
  /** The log file is rotated past this size (`--log-max-size`). */
  logMaxBytes: number;
  /** Rotated log files kept (`--log-keep`). */
  logKeep: number;
  /** `--json`: one JSON summary line on stdout after each run. */
  json: boolean;
  /** 0 errors only (`-q`), 1 default, 2 each change (`-v`), 3 each decision (`-vv`). */
  verbosity: number;
  /** Milliseconds between run starts, or null for one run (1h by default with `--watch`). */
  intervalMs: number | null;
  /** `--watch`: between the interval's full runs, file-system events start runs of what changed. */
  watch: boolean;
  /** With `--watch`: the quiet period after the last event before a run starts (`--watch-delay`). */
  watchDelayMs: number;
  /** With `--keep-deleted`: how long deleted and overwritten files stay in the trash. */
  keepDeletedMs: number | null;
  /** With `--max-delete`: the most entries one run may delete. */
  maxDelete: DeleteLimit | null;
  /** Files copied or hashed at once, each in a worker thread (`--jobs`). */
  jobs: number;
  /** `--sparse`: copies leave holes where a whole block is zeros. */
  sparse: boolean;
  /** `--hard-links`: source files sharing an inode share one in the replica. */
  hardLinks: boolean;
}

export type { DeleteLimit } from "./types.ts";

/**
 * The tree of a run on another host: where it is (`parseLocation`), and which of the two it is.
 * `host` is without `[...]` and without the user; `path` is relative to the far login's home
 * unless absolute.
 */
export type RemoteTree = RemoteLocation & { side: "source" | "replica" };
export { USAGE } from "./usage.ts";

/** A `--exclude-from` file named on the command line, not read yet. */
export interface ExcludeFile {
  /** Marks it as a file of rules, beside the rules themselves. */
  kind: "exclude-from";
  /** Absolute path. */
  path: string;
  /** The path as given, for messages. */
  given: string;
}

/** A run's options as the command line gives them: `--exclude-from` files named, not read. */
export type ParsedOptions = Omit<Options, "filters"> & { filters: Array<FilterRule | ExcludeFile> };

/** What the command line asked for. */
export type Command =
  | { kind: "help" }
  | { kind: "version" }
  | { kind: "run"; options: ParsedOptions }
  | {
    /** `--serve`: the far end of a remote tree, a session on stdin and stdout. */
    kind: "serve";
    /** `--root`: the absolute folder a client may open trees in (null: any). */
    root: string | null;
  };

/** Environment variables that give defaults for flags. */
export type Environment = Partial<
  Record<"TREESYNC_SOURCE" | "TREESYNC_REPLICA" | "TREESYNC_LOG" | "TREESYNC_RSH", string>
>;

/** The flags `parseArgs` reads; their meaning is in `usage.ts`. */
const FLAGS = {
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
  include: { type: "string", multiple: true },
  "exclude-from": { type: "string", multiple: true },
  delete: { type: "boolean" },
  adopt: { type: "boolean" },
  interactive: { type: "boolean", short: "I" },
  "allow-empty-source": { type: "boolean" },
  interval: { type: "string", short: "i" },
  watch: { type: "boolean" },
  "watch-delay": { type: "string" },
  "keep-deleted": { type: "string" },
  "max-delete": { type: "string" },
  jobs: { type: "string", short: "j" },
  sparse: { type: "boolean", short: "S" },
  "hard-links": { type: "boolean", short: "H" },
  log: { type: "string", short: "l" },
  log_file: { type: "string" },
  "log-max-size": { type: "string" },
  "log-keep": { type: "string" },
  json: { type: "boolean" },
  rsh: { type: "string", short: "e" },
  "remote-treesync": { type: "string" },
  bwlimit: { type: "string" },
  compress: { type: "boolean", short: "z" },
  serve: { type: "boolean" },
  root: { type: "string" },
  verbose: { type: "boolean", short: "v", multiple: true },
  quiet: { type: "boolean", short: "q" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const;

/** The flags as given, before defaults and checks. */
type FlagValues = ReturnType<typeof readFlags>["values"];

/** The command line as `parseArgs` splits it, in order. */
type FlagToken = { kind: string; rawName?: string; name?: string; value?: string | undefined };

/** SOURCE and REPLICA as given (relative ones not yet resolved); no source for `--verify`. */
interface GivenPaths {
  source: string | undefined;
  replica: string;
}

/**
 * Parses the command line into a {@linkcode Command}.
 *
 * @param args The arguments after the program name.
 * @param env Defaults for the source, replica and log paths.
 * @param cwd The folder relative paths are resolved against.
 * @throws {UsageError} On an unknown flag, a bad value, or missing paths.
 */
export function parseCommandLine(args: string[], env: Environment, cwd: string): Command {
  const { values, positionals, tokens } = readFlags(args);
  checkOptionTokens(tokens);
  if (values.help) return { kind: "help" };
  if (values.version) return { kind: "version" };
  if (values.serve || values.root !== undefined) {
    return serveCommand(values, { positionals, tokens, cwd });
  }
  const paths = pickPaths(values, positionals, env);
  return { kind: "run", options: optionsFrom(values, paths, env, { cwd, tokens }) };
}

/**
 * Reads each `--exclude-from` file into its rules, at its place among the others: the one step
 * after {@linkcode parseCommandLine} that reads files. Called once per invocation, before
 * anything is written; the `--interval` loop keeps the rules read at its start.
 *
 * @throws {UsageError} For a file that is missing, unreadable, a folder or not UTF-8, or holds
 *   a bad pattern, naming the file.
 */
export function readExcludeFiles(options: ParsedOptions): Options {
  const filters = options.filters.flatMap((filter) =>
    filter.kind === "exclude-from" ? readExcludeFile(filter) : [filter]
  );
  return { ...options, filters };
}

/** One `--exclude-from` file's rules, in the file's order. */
function readExcludeFile(file: ExcludeFile): FilterRule[] {
  const source = `--exclude-from ${quoted(file.given)}`;
  let bytes: Uint8Array;
  try {
    // A fifo would block the read until someone writes to it, a device would be read forever.
    const kind = specialKind(Deno.statSync(file.path));
    if (kind !== null) throw new UsageError(`Cannot read ${source}: it is ${kind}, not a file`);
    bytes = Deno.readFileSync(file.path);
  } catch (error) {
    if (error instanceof UsageError) throw error;
    const why = error instanceof Deno.errors.IsADirectory
      ? "it is a folder"
      : errorText(error, true);
    throw new UsageError(`Cannot read ${source}: ${why}`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new UsageError(`Cannot read ${source}: it is not UTF-8 text`);
  }
  return parseExcludeFile(text, source);
}

/** What a path that is not a regular file or a folder is, for a message; null for those. */
function specialKind(info: Deno.FileInfo): string | null {
  if (info.isFifo) return "a fifo";
  if (info.isSocket) return "a socket";
  if (info.isCharDevice || info.isBlockDevice) return "a device";
  return null;
}

function readFlags(args: string[]) {
  try {
    return parseArgs({
      args,
      allowPositionals: true,
      allowNegative: true,
      strict: true,
      tokens: true,
      options: FLAGS,
    });
  } catch (error) {
    throw new UsageError(describeParseError(error));
  }
}

/**
 * SOURCE and REPLICA from the two positionals, `-s` and `-r` (or their aliases), or the
 * environment, in that order; an empty one is refused, never read as the current folder.
 */
function pickPaths(values: FlagValues, positionals: string[], env: Environment): GivenPaths {
  const verify = values.verify ?? false;
  const source = pickOne("source", [values.source, values.src]);
  const replica = pickOne("replica", [values.replica, values.dest]);
  let sourceArg: string | undefined;
  let replicaArg: string | undefined;
  if (positionals.length > 2) {
    const extra = positionals.slice(2);
    const more = extra.length > 3 ? ` and ${extra.length - 3} more` : "";
    throw new UsageError(`Too many paths: ${extra.slice(0, 3).map(quoted).join(" ")}${more}`);
  }
  // An empty path would resolve to the current folder: `treesync "$SRC" "$DEST"` with DEST
  // unset would mirror over wherever the script happens to run.
  const position = (index: number) =>
    positionals.length === 2 ? (index === 0 ? "the first path" : "the second path") : "the path";
  if (positionals.length === 2 && positionals[0] === "") {
    throw emptyPath("SOURCE", `${position(0)} is ''`);
  }
  if (positionals.at(-1) === "") throw emptyPath("REPLICA", `${position(1)} is ''`);
  if (positionals.length > 0 && (source !== undefined || replica !== undefined)) {
    throw mixedPaths({ source, replica, positionals });
  }
  if (positionals.length === 2) {
    [sourceArg, replicaArg] = positionals;
  } else if (positionals.length === 1) {
    // `--verify REPLICA` needs no source; one path alone is never half of a pair with a
    // variable, which a script may have set for another job.
    if (verify) replicaArg = positionals[0];
    else {
      pathFromEnv(env, "TREESYNC_REPLICA"); // set but empty: the likelier slip, named first
      throw new UsageError("Missing REPLICA: give SOURCE and REPLICA");
    }
  }
  sourceArg ??= source ?? (verify ? undefined : pathFromEnv(env, "TREESYNC_SOURCE"));
  replicaArg ??= replica ?? pathFromEnv(env, "TREESYNC_REPLICA");
  if (replicaArg === undefined) {
    throw new UsageError("Missing REPLICA: give SOURCE and REPLICA, or set TREESYNC_REPLICA");
  }
  if (sourceArg === undefined && !verify) {
    throw new UsageError("Missing SOURCE: give SOURCE and REPLICA, or set TREESYNC_SOURCE");
  }
  return { source: sourceArg, replica: replicaArg };
}

/**
 * `treesync --serve [--root DIR]`: the far end's command, started by the remote shell (or by an
 * `authorized_keys` forced command). It takes no paths and no other flag: the client names the
 * tree inside the session.
 */
function serveCommand(
  values: FlagValues,
  given: { positionals: string[]; tokens: FlagToken[]; cwd: string },
): Command {
  if (!values.serve) throw new UsageError("--root only applies to --serve");
  const other = given.tokens.find((token) =>
    token.kind === "option" && token.name !== "serve" && token.name !== "root"
  );
  if (other !== undefined) {
    throw new UsageError(`--serve takes only --root, not ${other.rawName}`);
  }
  if (given.positionals.length > 0) {
    throw new UsageError(
      `--serve takes no paths (the client names the tree), not ${quoted(given.positionals[0]!)}`,
    );
  }
  return {
    kind: "serve",
    root: values.root === undefined ? null : resolve(given.cwd, values.root),
  };
}

/**
 * The tree on another host among SOURCE and REPLICA, by rsync's `host:PATH` rule
 * (`parseLocation`); `./a:b` and `/x/a:b` stay local. Only one of them may be remote.
 */
function remoteTreeOf(paths: GivenPaths): RemoteTree | undefined {
  const source = paths.source === undefined ? null : parseLocation(paths.source);
  const replica = parseLocation(paths.replica);
  if (source?.kind === "remote" && replica.kind === "remote") {
    throw new UsageError(
      `Cannot mirror ${quoted(paths.source!)} into ${quoted(paths.replica)}: both are on other ` +
        "hosts; run treesync on one of them",
    );
  }
  if (source?.kind === "remote") return { ...source, side: "source" };
  if (replica.kind === "remote") return { ...replica, side: "replica" };
  return undefined;
}

/** The flags of a remote tree: how the far end is reached, and how file data travels. */
function remoteFlags(
  values: FlagValues,
  input: { remote: RemoteTree | undefined; env: Environment; watch: boolean },
): Pick<Options, "rsh" | "remoteTreesync" | "bwlimit" | "compress"> {
  const { remote, env } = input;
  if (remote === undefined) {
    const given = (["rsh", "remote-treesync", "bwlimit", "compress"] as const)
      .find((name) => values[name] !== undefined);
    if (given !== undefined) {
      const flag = given === "rsh" ? "-e/--rsh" : given === "compress" ? "-z" : `--${given}`;
      const why = given === "compress"
        ? "; between local folders there is nothing to compress"
        : "";
      throw new UsageError(`${flag} only applies to a remote SOURCE or REPLICA (host:PATH)${why}`);
    }
    return {
      rsh: [DEFAULT_RSH],
      remoteTreesync: DEFAULT_REMOTE_TREESYNC,
      bwlimit: null,
      compress: false,
    };
  }
  if (remote.side === "source" && input.watch) {
    throw new UsageError(
      "--watch watches a local source: run the watch on the source's host, with this one's " +
        "folder as a host:PATH replica",
    );
  }
  const remoteTreesync = values["remote-treesync"] ?? DEFAULT_REMOTE_TREESYNC;
  if (remoteTreesync.trim() === "") throw new UsageError("--remote-treesync is empty");
  const rate = values.bwlimit === undefined ? 0 : parseRate(values.bwlimit);
  return {
    rsh: splitRemoteShell(chooseRemoteShell(values.rsh, env.TREESYNC_RSH)),
    remoteTreesync,
    bwlimit: rate === 0 ? null : rate,
    compress: values.compress ?? false,
  };
}

/**
 * Positional paths beside `-s` or `-r`: refused, since `-r X Y` would quietly take Y as the
 * source (rsync's `-r` means recursive, and a mirror the wrong way round deletes the newer side).
 */
function mixedPaths(
  given: { source: string | undefined; replica: string | undefined; positionals: string[] },
): UsageError {
  const flag = given.replica !== undefined ? "-r" : "-s";
  const named = given.replica ?? given.source!;
  const recursive = flag === "-r"
    ? "; -r names the REPLICA here (treesync always recurses, rsync's -r is not needed)"
    : "";
  return new UsageError(
    `Give SOURCE and REPLICA either as two paths or both with -s and -r, not ` +
      `${given.positionals.map(quoted).join(" ")} beside ${flag} ${quoted(named)}${recursive}`,
  );
}

/** Every other flag, checked in the order of the usage text, with its default. */
function optionsFrom(
  values: FlagValues,
  paths: GivenPaths,
  env: Environment,
  { cwd, tokens }: { cwd: string; tokens: FlagToken[] },
): ParsedOptions {
  const { restore, verify, interactive } = checkModes(values);
  const { intervalMs, watch, watchDelayMs } = loopTimes(values, { restore, verify, interactive });
  const filters = filtersFrom(tokens, cwd);
  const logArg = pickOne("log", [values.log, values.log_file]) ?? pathFromEnv(env, "TREESYNC_LOG");
  const remote = remoteTreeOf(paths);
  // A remote side keeps its text as typed, for messages; its path travels inside the session.
  const local = (path: string, side: RemoteTree["side"]) =>
    remote?.side === side ? path : resolve(cwd, path);
  return {
    source: paths.source === undefined
      ? local(paths.replica, "replica")
      : local(paths.source, "source"),
    replica: local(paths.replica, "replica"),
    ...(remote === undefined ? {} : { remote }),
    ...remoteFlags(values, { remote, env, watch }),
    dryRun: (values["dry-run"] ?? false) || (values.scan ?? false),
    restore,
    overwriteNewer: values["overwrite-newer"] ?? false,
    checksum: values.checksum ?? false,
    verify,
    filters,
    deletes: values.delete ?? true,
    adopt: values.adopt ?? false,
    interactive,
    allowEmptySource: values["allow-empty-source"] ?? false,
    logPath: logArg === undefined ? null : resolveLogPath(cwd, logArg),
    logMaxBytes: parseSize(values["log-max-size"] ?? "10M", "--log-max-size"),
    logKeep: parseCount(values["log-keep"] ?? "5", "--log-keep", MAX_LOG_KEEP),
    json: values.json ?? false,
    verbosity: values.quiet ? 0 : 1 + (values.verbose?.length ?? 0),
    intervalMs,
    watch,
    watchDelayMs,
    keepDeletedMs: values["keep-deleted"] === undefined
      ? null
      : parseDuration(values["keep-deleted"], "--keep-deleted"),
    maxDelete: values["max-delete"] === undefined ? null : parseDeleteLimit(values["max-delete"]),
    jobs: values.jobs === undefined
      ? Math.min(MAX_JOBS, Math.max(1, navigator.hardwareConcurrency || 1))
      : parseCount(values.jobs, "--jobs", MAX_JOBS),
    sparse: values.sparse ?? false,
    hardLinks: values["hard-links"] ?? false,
  };
}

/**
 * `--include`, `--exclude` and `--exclude-from` in the order given, which `parseArgs` keeps only
 * in its tokens; every pattern is checked now, before anything runs.
 */
function filtersFrom(tokens: FlagToken[], cwd: string): Array<FilterRule | ExcludeFile> {
  const filters: Array<FilterRule | ExcludeFile> = [];
  for (const token of tokens) {
    if (token.kind !== "option" || token.value === undefined) continue;
    if (token.name === "include" || token.name === "exclude") {
      filters.push({ kind: token.name, pattern: token.value });
    } else if (token.name === "exclude-from") {
      if (token.value === "-" || /^\/dev\/(stdin|fd\/0)$/.test(token.value)) {
        throw new UsageError(
          `Cannot read --exclude-from ${quoted(token.value)}: standard input is not supported; ` +
            "write the rules to a file",
        );
      }
      filters.push({ kind: "exclude-from", path: resolve(cwd, token.value), given: token.value });
    }
  }
  compileFilters(filters.filter((filter) => filter.kind !== "exclude-from"));
  return filters;
}

/** Refuses flags that contradict each other: two modes, a flag of a mode not chosen. */
function checkModes(
  values: FlagValues,
): { restore: boolean; verify: boolean; interactive: boolean } {
  const restore = values.restore ?? false;
  const verify = values.verify ?? false;
  const modes = [restore && "--restore", verify && "--verify"].filter(Boolean);
  if (modes.length > 1) throw new UsageError(`Choose one of ${modes.join(" and ")}`);
  if (values["overwrite-newer"] && !restore) {
    throw new UsageError("--overwrite-newer only applies to --restore");
  }
  if (values.quiet && values.verbose) throw new UsageError("Choose one of --quiet and --verbose");
  if (values.adopt && (restore || verify || values.delete === false)) {
    const other = restore ? "--restore" : verify ? "--verify" : "--no-delete";
    throw new UsageError(`--adopt cannot be combined with ${other}, which never deletes`);
  }
  return { restore, verify, interactive: values.interactive ?? false };
}

/** The default `--interval` with `--watch`: the full run that catches what events miss. */
export const WATCH_INTERVAL_MS = 3_600_000;

/** The default `--watch-delay`. */
export const WATCH_DELAY_MS = 2_000;

/**
 * `--interval`, `--watch` and `--watch-delay`: the loop's times. Neither loop asks on a
 * terminal nor verifies; a watched loop never restores, since it watches what a restore writes.
 */
function loopTimes(
  values: FlagValues,
  modes: { restore: boolean; verify: boolean; interactive: boolean },
): { intervalMs: number | null; watch: boolean; watchDelayMs: number } {
  const watch = values.watch ?? false;
  if (values["watch-delay"] !== undefined && !watch) {
    throw new UsageError("--watch-delay only applies to --watch");
  }
  const loop = watch ? "--watch" : values.interval !== undefined ? "--interval" : null;
  const clash = modes.interactive
    ? "--interactive"
    : modes.verify
    ? "--verify"
    : modes.restore && watch
    ? "--restore"
    : null;
  if (loop !== null && clash !== null) {
    throw new UsageError(`${loop} cannot be combined with ${clash}`);
  }
  const intervalMs = values.interval === undefined
    ? (watch ? WATCH_INTERVAL_MS : null)
    : parseDuration(values.interval, "--interval");
  const watchDelayMs = values["watch-delay"] === undefined
    ? WATCH_DELAY_MS
    : parseDuration(values["watch-delay"], "--watch-delay");
  return { intervalMs, watch, watchDelayMs };
}

function describeParseError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  // node:util's messages end with advice for programmers ("To specify a positional argument
  // starting with a '-' ..."); the first sentence is the one that helps a user.
  const first = shortenQuoted(message.split(". ")[0]!.replace(/\.$/, ""));
  const unknown = /^Unknown option '(-[^']*)'/.exec(first)?.[1];
  const hint = unknown === undefined ? undefined : rsyncHint(unknown);
  return hint === undefined ? first : `${first} ${hint}`;
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
const PATH_OPTIONS = new Set([
  "source",
  "src",
  "replica",
  "dest",
  "log",
  "log_file",
  "exclude-from",
  "root",
]);

/**
 * Refuses what `parseArgs` lets through: `--no-X` for flags where "no" means nothing
 * (`--no-verify` would be a silent no-op), and an empty path after a path option.
 */
function checkOptionTokens(tokens: FlagToken[]): void {
  for (const token of tokens) {
    if (token.kind !== "option") continue;
    const rawName = token.rawName!;
    if (rawName.startsWith("--no-") && !NEGATABLE_OPTIONS.has(rawName)) {
      throw new UsageError(`Unknown option ${quoted(rawName)}`);
    }
    if (rawName === "--delete") {
      // Refused, not ignored: a no-op would teach that leaving it out keeps the replica's
      // extra files, which is rsync's rule and the one habit here that loses data.
      throw new UsageError(
        "--delete is not needed: treesync always deletes what SOURCE lacks; give --no-delete " +
          "to keep them, or leave --delete out",
      );
    }
    if (token.name === "interval" && rawName === "-i" && !isDuration(token.value ?? "")) {
      throw new UsageError(
        `-i is --interval here and ${quoted(token.value ?? "")} is not a duration (rsync's -i, ` +
          `itemize, is -v here)`,
      );
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
