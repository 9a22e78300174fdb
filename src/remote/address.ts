/**
 * Where a tree is, as the command line names it, and how the far end of a remote tree is
 * started: `[user@]host:PATH` against a local path by rsync's rule, the `--rsh` command split
 * into words as rsync splits it, and the command line of the remote shell. Pure: nothing here
 * starts a process or touches a file.
 *
 * rsync's rule, which this module follows: an argument is remote when a colon comes before the
 * first slash (`host:a/b`, `user@host:`); `./a:b`, `/x/a:b` and `a/b:c` are local. An IPv6
 * address is written in brackets (`[::1]:PATH`, `user@[fe80::1]:PATH`); brackets anywhere but
 * at the start of the host leave the argument local, as in rsync. An empty remote path
 * (`host:`) is the far end's login folder, as rsync turns it into `.` there. rsync's daemon
 * forms (`host::module`, `rsync://`) are refused: there is no daemon to speak to.
 *
 * @module
 */

import { UsageError } from "../errors.ts";

/** A tree on this host. */
export interface LocalLocation {
  /** Always `"local"`. */
  kind: "local";
  /** The path as given. */
  path: string;
}

/** A tree on another host, reached through the remote shell. */
export interface RemoteLocation {
  /** Always `"remote"`. */
  kind: "remote";
  /** The login name before `@`, when one was given (else the remote shell's default). */
  user?: string;
  /** The host name or address, IPv6 without its brackets. */
  host: string;
  /**
   * The path on the far end, relative to its login folder unless absolute; `.` for `host:`.
   * It travels inside the protocol, never on the remote command line.
   */
  path: string;
}

/** A command-line path: on this host or on another. */
export type Location = LocalLocation | RemoteLocation;

/** The remote shell when neither `--rsh` nor `TREESYNC_RSH` names one. */
export const DEFAULT_RSH = "ssh";

/** The far end's program when `--remote-treesync` names none. */
export const DEFAULT_REMOTE_TREESYNC = "treesync";

/** The split of `[user@]host:` off an argument, or null when the argument is local. */
interface HostSpec {
  user: string | null;
  host: string;
  rest: string;
}

/**
 * Finds `[user@]host:` at the start of `text` by rsync's scan: the first `:` or `/` ends the
 * host; a `/` first means local; the last `@` before it ends the user; `[` is allowed only
 * where the host starts and must close with `]` right before the `:`.
 */
function splitHostSpec(text: string): HostSpec | null {
  let hostStart = 0;
  let bracketed: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (char === "/") return null;
    if (char === ":") {
      const user = hostStart > 0 ? text.slice(0, hostStart - 1) : null;
      const host = bracketed ?? text.slice(hostStart, i);
      return { user, host, rest: text.slice(i + 1) };
    }
    if (char === "@") {
      hostStart = i + 1;
      bracketed = null;
    } else if (char === "[") {
      if (i !== hostStart) return null;
      const close = text.indexOf("]", i);
      const slash = text.indexOf("/", i);
      if (close < 0 || (slash >= 0 && slash < close)) return null;
      bracketed = text.slice(i + 1, close);
      if (bracketed === "" || text[close + 1] !== ":") return null;
      i = close;
    }
  }
  return null;
}

/**
 * Parses a SOURCE or REPLICA argument into a local path or a remote `[user@]host:PATH`.
 *
 * @throws {UsageError} rsync daemon forms, an empty host or user, a host starting with `-`.
 */
export function parseLocation(argument: string): Location {
  if (/^rsync:\/\//i.test(argument)) {
    throw new UsageError(
      `Cannot use '${argument}': rsync daemon URLs are not supported, write host:PATH (over ssh)`,
    );
  }
  const spec = splitHostSpec(argument);
  if (spec === null) return { kind: "local", path: argument };
  if (spec.rest.startsWith(":")) {
    throw new UsageError(
      `Cannot use '${argument}': 'host::module' is rsync daemon syntax, write host:PATH (over ssh)`,
    );
  }
  if (spec.host === "") {
    throw new UsageError(
      `Cannot use '${argument}': no host before ':' (write ./${argument} for a local path)`,
    );
  }
  if (spec.host.startsWith("-")) {
    throw new UsageError(`Cannot use '${argument}': a host name may not start with '-'`);
  }
  if (spec.user !== null && (spec.user === "" || spec.user.startsWith("-"))) {
    throw new UsageError(
      `Cannot use '${argument}': the user name before '@' is empty or starts with '-'`,
    );
  }
  const path = remotePath(spec.rest, argument);
  return spec.user === null
    ? { kind: "remote", host: spec.host, path }
    : { kind: "remote", user: spec.user, host: spec.host, path };
}

/**
 * A remote PATH as the far end takes it. Nothing empty: `host:` is the login's home. `~` and
 * `~/x` are the home and a path in it, as a remote shell would expand them for rsync (a
 * relative path is from the home already); `~user/x` would need a shell the path never goes
 * through, so it is refused rather than taken as a folder named `~user`.
 *
 * @throws {UsageError} `~user`.
 */
function remotePath(rest: string, argument: string): string {
  if (rest === "" || rest === "~") return ".";
  if (rest.startsWith("~/")) return rest.slice(2).replace(/^\/+/, "") || ".";
  if (rest.startsWith("~")) {
    throw new UsageError(
      `Cannot use '${argument}': '~user' is not expanded (the path never goes through a ` +
        "shell); write that user's home as an absolute path",
    );
  }
  return rest;
}

/**
 * Splits a remote-shell command into words as rsync splits `-e`: words are separated by
 * spaces only (a tab is part of a word); single or double quotes keep spaces in a word and may
 * start or stop anywhere in it; inside quotes, the same quote doubled (`'it''s'`) is one
 * literal quote; a backslash is an ordinary character, as in rsync (`a\ b` is two words,
 * `a\` and `b`). `''` alone is an empty word.
 *
 * @throws {UsageError} An unclosed quote, or a command with no words.
 */
export function splitRemoteShell(command: string): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < command.length) {
    if (command[i] === " ") {
      i++;
      continue;
    }
    let word = "";
    let quote: string | null = null;
    for (; i < command.length && (quote !== null || command[i] !== " "); i++) {
      const char = command[i]!;
      if (quote === null && (char === "'" || char === '"')) quote = char;
      else if (char === quote && command[i + 1] === quote) word += command[++i];
      else if (char === quote) quote = null;
      else word += char;
    }
    if (quote !== null) {
      throw new UsageError(`Missing closing ${quote} in remote shell command: ${command}`);
    }
    words.push(word);
  }
  if (words.length === 0) throw new UsageError("The remote shell command is empty");
  return words;
}

/** The remote shell to use: `--rsh`, else `TREESYNC_RSH` when set and not empty, else ssh. */
export function chooseRemoteShell(
  flag: string | undefined,
  environment: string | undefined,
): string {
  if (flag !== undefined) return flag;
  return environment !== undefined && environment !== "" ? environment : DEFAULT_RSH;
}

/** OpenSSH's options that take a value, as its `getopt` string has them. */
const SSH_OPTIONS_WITH_VALUE = new Set("BbcDEeFIiJLlmOoPpQRSWw");

/** One argument of an ssh command line, as its `getopt` reads it ({@linkcode sshArguments}). */
interface SshArgument {
  /** Where its first word is in the command. */
  index: number;
  /** Its words: an option word, with its value's word when that is the next one. */
  words: string[];
  /** Not an option (the first such word, or `--`): getopt would stop here. */
  operand?: true;
  /** Its option that takes a value (`o` of `-vo X`), where that is in the first word, the value. */
  valued?: { flag: string; at: number; value: string | undefined };
}

/** The arguments of an ssh command after the program, as ssh's `getopt` splits them. */
function* sshArguments(words: string[]): Generator<SshArgument> {
  for (let index = 1; index < words.length; index++) {
    const word = words[index]!;
    if (word === "--" || !word.startsWith("-") || word.length < 2) {
      yield { index, words: [word], operand: true };
      if (word === "--") return;
      continue;
    }
    let at = 1;
    while (at < word.length && !SSH_OPTIONS_WITH_VALUE.has(word[at]!)) at++;
    if (at === word.length) {
      yield { index, words: [word] };
      continue;
    }
    const joined = at + 1 < word.length;
    const taken = joined ? [word] : words.slice(index, index + 2);
    const value = joined ? word.slice(at + 1) : words[index + 1];
    yield { index, words: taken, valued: { flag: word[at]!, at, value } };
    index += taken.length - 1;
  }
}

/** The values given with `-o` in an ssh command line, in order (`-oX`, `-o X`, `-vo X`). */
function sshOptionValues(words: string[]): string[] {
  return [...sshArguments(words)].flatMap(({ valued }) =>
    valued?.flag === "o" && valued.value !== undefined ? [valued.value] : []
  );
}

/** Whether a remote-shell command is OpenSSH's `ssh` (by the program's name). */
export function isSsh(words: string[]): boolean {
  const program = words[0] ?? "";
  return program.slice(program.lastIndexOf("/") + 1) === "ssh";
}

/**
 * The `ssh` options an unattended run needs: never wait for a password, passphrase or
 * host-key question (fail at once with ssh's message); give up on a host that does not answer
 * within 30 s; and end a session whose peer stopped answering (a network gone, a host frozen)
 * after a minute of silence instead of hanging the run: ssh then exits, which is a lost
 * connection (exit 1, the next run finishes).
 */
export const SSH_DEFAULTS: ReadonlyArray<readonly [string, string]> = [
  ["BatchMode", "yes"],
  ["ConnectTimeout", "30"],
  ["ServerAliveInterval", "15"],
  ["ServerAliveCountMax", "4"],
];

/**
 * The options `ssh -G` printed (one `name value` a line, names in lower case): what ssh would
 * use for a host. A name given twice keeps its first value.
 */
export function parseSshConfig(text: string): Map<string, string> {
  const options = new Map<string, string>();
  for (const line of text.split("\n")) {
    const match = /^([a-z0-9]+) (.*)$/.exec(line.trim());
    if (match && !options.has(match[1]!)) options.set(match[1]!, match[2]!);
  }
  return options;
}

/**
 * The options whose values the configuration files gave: those where `ssh -G` with them
 * (`effective`) differs from `ssh -G` without them (`builtIn`, see {@linkcode
 * withoutConfigFiles}). Comparing two answers, not a table of defaults, because a build's
 * defaults differ (Debian's ssh waits 300 s between keepalives under `BatchMode`).
 */
export function configuredOptions(
  effective: Map<string, string>,
  builtIn: Map<string, string>,
): Map<string, string> {
  return new Map([...effective].filter(([name, value]) => builtIn.get(name) !== value));
}

/**
 * An ssh command that reads no configuration file: its `-F` options dropped, `-F /dev/null`
 * put first (ssh then reads neither `~/.ssh/config` nor the system's).
 */
export function withoutConfigFiles(words: string[]): string[] {
  const kept: string[] = [words[0]!, "-F", "/dev/null"];
  for (const { index, words: taken, operand, valued } of sshArguments(words)) {
    if (operand) return [...kept, ...words.slice(index)];
    if (valued?.flag !== "F") kept.push(...taken);
    else if (valued.at > 1) kept.push(taken[0]!.slice(0, valued.at));
  }
  return kept;
}

/**
 * Adds {@linkcode SSH_DEFAULTS} to an `ssh` command, each unless the command sets that option
 * itself (`-e 'ssh -o BatchMode=no'` brings the prompts back) or the user's ssh configuration
 * does (`configured`, see {@linkcode configuredOptions}: `ServerAliveInterval 60` in
 * `~/.ssh/config` is kept). Other remote shells are left as they are.
 */
export function withBatchDefaults(words: string[], configured?: Map<string, string>): string[] {
  if (!isSsh(words)) return words;
  const set = sshOptionValues(words).map((value) => value.trim().toLowerCase());
  const added = SSH_DEFAULTS.filter(([name]) => {
    const key = name.toLowerCase();
    if (set.some((value) => new RegExp(`^${key}(\\s|=|$)`).test(value))) return false;
    return !configured?.has(key);
  }).flatMap(([name, value]) => ["-o", `${name}=${value}`]);
  return [...words, ...added];
}

/** What starts the far end. */
export interface RemoteCommandOptions {
  /** The remote shell's words (see {@linkcode splitRemoteShell}). */
  rsh: string[];
  /** The far end (see {@linkcode parseLocation}). */
  remote: RemoteLocation;
  /**
   * The far end's program, as the remote login shell reads it (default `treesync`);
   * ` --serve` is appended.
   */
  remoteTreesync?: string;
  /** What the user's ssh configuration sets for this host ({@linkcode configuredOptions}). */
  configured?: Map<string, string>;
}

/**
 * The command line that starts the far end, as rsync builds it: the remote shell's words
 * (with {@linkcode withBatchDefaults}), `-l USER` when a user was given, the host, then the
 * remote command as one word. The tree's path is not on it: it travels inside the protocol.
 */
export function remoteCommand(options: RemoteCommandOptions): string[] {
  const { rsh, remote, remoteTreesync = DEFAULT_REMOTE_TREESYNC, configured } = options;
  const user = remote.user === undefined ? [] : ["-l", remote.user];
  const shell = withBatchDefaults(rsh, configured);
  return [...shell, ...user, remote.host, `${remoteTreesync} --serve`];
}

/** How the far end's start ended before it greeted. */
export interface FarEndExit {
  /** The far end, as the user named it (`user@host`). */
  host: string;
  /** The far end's program (`--remote-treesync`, default `treesync`). */
  remoteTreesync: string;
  /** The remote shell's exit code. */
  code: number;
  /** What the remote shell and the far end wrote to stderr. */
  stderr: string;
}

/**
 * One line saying why the far end did not start and what to do: treesync missing there
 * (the remote shell's 127, or "not found"), the remote shell failing to log in (ssh's 255,
 * with its last line and the BatchMode hint, even when that line says "No such file"), or
 * anything else with its last line.
 */
export function farEndFailure(exit: FarEndExit): string {
  const { host, remoteTreesync, code } = exit;
  const lines = exit.stderr.split("\n").map((line) => line.trim()).filter((line) => line !== "");
  const last = lines.at(-1) ?? "no message";
  // ssh's own failures are 255; the remote shell says 127 (or 126) for a missing program.
  if (code === 255) {
    return `Cannot log in to ${host}: ${last} (ssh runs with BatchMode=yes and asks nothing: ` +
      `use a key from ssh-agent and a known host key, or -e 'ssh -o BatchMode=no')`;
  }
  if (code === 127 || code === 126 || /not found|no such file/i.test(last)) {
    return `Cannot start '${remoteTreesync} --serve' on ${host} (${last}): install treesync ` +
      `there, or name it with --remote-treesync`;
  }
  return `The far end on ${host} stopped before it greeted (exit ${code}): ${last}`;
}
