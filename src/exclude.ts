/**
 * `--include` and `--exclude` rules: globs read the way rsync and `.gitignore` read them, tried
 * in order with the first match deciding, as rsync does; and the lines of a `--exclude-from`
 * file. Pure.
 *
 * @module
 */

import { UsageError } from "./errors.ts";
import { quoted } from "./format.ts";
import { isWithin } from "./paths.ts";

/** Says whether a relative path (folders flagged) is excluded from the mirror. */
export type ExcludeMatcher = (path: string, isDir: boolean) => boolean;

/**
 * One `--include` or `--exclude` rule. Plain data: the list travels to the scan workers as it
 * is and is compiled there.
 */
export interface FilterRule {
  /** Whether a match keeps the entry in (`--include`) or leaves it out (`--exclude`). */
  kind: "include" | "exclude";
  /** The pattern as given (rsync's syntax). */
  pattern: string;
}

/** A pattern ready to test: a regular expression and where it applies. */
interface CompiledPattern {
  /** A trailing slash: folders only. */
  dirOnly: boolean;
  /** A slash at the start or in the middle: matched against the whole path from the root. */
  anchored: boolean;
  regex: RegExp;
}

/**
 * Compiles rules into one matcher. Each path is tried against the rules in order and the first
 * that matches decides: an exclude leaves the path out, an include keeps it; a path no rule
 * matches is kept. A folder left out is not walked, so nothing below it is ever tried: an
 * include of `*.c` before `--exclude '*'` keeps no file below the root unless an include of
 * every folder comes first too, exactly as in rsync.
 *
 * Globs: a pattern without a slash matches a name at any depth; a slash at the start or in the
 * middle anchors it at the root; a trailing slash matches folders only. `*` and `?` stay within
 * one name, `**` crosses folders, `[abc]` is a class read as rsync reads it (`[!a-z]`,
 * `[]x]`, `[[:digit:]]`: {@linkcode readClass}).
 *
 * @throws {UsageError} For an empty pattern, an unclosed `[` or an unknown `[:name:]`, naming
 *   the flag.
 */
export function compileFilters(rules: readonly FilterRule[]): ExcludeMatcher {
  const compiled = rules.map((rule) => {
    const result = compilePattern(rule.pattern);
    if (typeof result === "string") {
      throw new UsageError(`Invalid --${rule.kind} ${quoted(rule.pattern)}: ${result}`);
    }
    return { ...result, exclude: rule.kind === "exclude" };
  });
  // Rules after the last exclude can only keep what would be kept anyway.
  const used = compiled.slice(0, compiled.findLastIndex((rule) => rule.exclude) + 1);
  if (used.length === 0) return () => false;
  return (path, isDir) => {
    const name = path.slice(path.lastIndexOf("/") + 1);
    for (const rule of used) {
      if (rule.dirOnly && !isDir) continue;
      if (rule.regex.test(rule.anchored ? path : name)) return rule.exclude;
    }
    return false;
  };
}

/** A pattern compiled, or what is wrong with it: it is empty, or a class is not readable. */
function compilePattern(pattern: string): CompiledPattern | string {
  let body = pattern;
  const dirOnly = body.endsWith("/");
  if (dirOnly) body = body.replace(/\/+$/, "");
  const anchored = body.includes("/");
  body = body.replace(/^\/+/, "");
  if (body === "") return "the pattern is empty";
  const source = globToRegex(body);
  if (source.problem !== undefined) return source.problem;
  return { dirOnly, anchored, regex: new RegExp(`^${source.regex}$`, "s") };
}

/**
 * The POSIX classes a bracket expression may hold, `[:name:]`, as the ASCII characters they
 * match (rsync matches bytes in the C locale's sense: nothing past ASCII is in any class).
 */
const POSIX_CLASSES: Record<string, string> = {
  alnum: "0-9A-Za-z",
  alpha: "A-Za-z",
  blank: " \\t",
  cntrl: "\\x00-\\x1f\\x7f",
  digit: "0-9",
  graph: "!-~",
  lower: "a-z",
  print: " -~",
  punct: "!-/:-@\\[-`{-~",
  space: " \\t-\\r",
  upper: "A-Z",
  xdigit: "0-9A-Fa-f",
};

/** The names of {@linkcode POSIX_CLASSES}, for a message. */
export const POSIX_CLASS_NAMES: string[] = Object.keys(POSIX_CLASSES);

/**
 * The glob as a regular expression's source, read as rsync's wildmatch reads it: `*` and `?`
 * within one name, `**` across folders, `[...]` a class (see {@linkcode readClass}), and a
 * backslash taking the next character literally, but only in a pattern with a wildcard in it
 * (one without is compared as it is, backslashes and all, as rsync does).
 */
function globToRegex(glob: string): { regex: string; problem?: string } {
  const wild = /[*?[]/.test(glob);
  let out = "";
  for (let i = 0; i < glob.length; i++) {
    let char = glob[i]!;
    if (char === "*" && glob[i + 1] === "*") {
      const slashFollows = glob[i + 2] === "/";
      out += slashFollows ? "(?:.*/)?" : ".*";
      i += slashFollows ? 2 : 1;
      continue;
    } else if (char === "*") {
      out += "[^/]*";
      continue;
    } else if (char === "?") {
      out += "[^/]";
      continue;
    } else if (char === "[") {
      const read = readClass(glob, i);
      if (typeof read === "string") return { regex: "", problem: read };
      out += read.regex;
      i = read.end;
      continue;
    } else if (char === "\\" && wild && i + 1 < glob.length) {
      char = glob[++i]!;
    }
    out += literal(char);
  }
  return { regex: out };
}

/**
 * Reads the bracket expression that starts at `glob[open]`, as rsync does: `!` or `^` first
 * negates; a `]` first (after the negation) is an ordinary character; `a-z` is a range (a `-`
 * first or last is itself); `[:alpha:]` and the other POSIX classes; a backslash takes the next
 * character as it is. A class never matches `/`.
 *
 * @returns The regular expression's class and where the expression ends (its `]`), or what is
 *   wrong: no closing `]`, or an unknown `[:name:]`.
 */
function readClass(glob: string, open: number): { regex: string; end: number } | string {
  let i = open + 1;
  const negated = glob[i] === "!" || glob[i] === "^";
  if (negated) i++;
  let items = "";
  let previous: string | null = null;
  for (let first = true;; first = false) {
    let char = glob[i];
    if (char === undefined) return "'[' is not closed";
    if (char === "]" && !first) break;
    if (char === "\\") {
      char = glob[++i];
      if (char === undefined) return "'[' is not closed";
      items += classChar(char);
      previous = char;
    } else if (
      char === "-" && previous !== null && glob[i + 1] !== undefined && glob[i + 1] !== "]"
    ) {
      let high = glob[++i]!;
      if (high === "\\") {
        high = glob[++i] ?? "";
        if (high === "") return "'[' is not closed";
      }
      // rsync matches a range backwards nothing, where a regular expression would throw.
      if (previous <= high) items += `${classChar(previous)}-${classChar(high)}`;
      previous = null;
    } else if (char === "[" && glob[i + 1] === ":" && isPosixClass(glob, i)) {
      const close = glob.indexOf("]", i + 2);
      const name = glob.slice(i + 2, close - 1);
      const members = POSIX_CLASSES[name];
      if (members === undefined) {
        return `'[:${name}:]' is not a class (use one of ${POSIX_CLASS_NAMES.join(", ")})`;
      }
      items += members;
      i = close;
      previous = null;
    } else {
      items += classChar(char);
      previous = char;
    }
    i++;
  }
  const regex = negated ? `[^/${items}]` : `(?!/)[${items}]`;
  return { regex, end: i };
}

/** Whether `[:` at `at` closes as `:]` at the first `]` after it (else the `[` is plain). */
function isPosixClass(glob: string, at: number): boolean {
  const close = glob.indexOf("]", at + 2);
  return close >= at + 3 && glob[close - 1] === ":";
}

/** One character as a member of a regular expression's class. */
function classChar(char: string): string {
  return `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

/** One character matched as itself. */
function literal(char: string): string {
  return char.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/**
 * Reads the text of a `--exclude-from` file into rules, in the file's order. One pattern a
 * line; a trailing `\r` is dropped; blank lines and lines whose first non-blank character is
 * `#` are skipped. A line starting `+ ` is an include of the rest, `- ` an exclude of the rest;
 * any other line is an exclude of the whole line, spaces kept.
 *
 * @param source How to name the file in a message: `--exclude-from 'list.txt'`.
 * @throws {UsageError} For a pattern `--exclude` would refuse, or a line `!` (rsync's "clear the
 *   rules so far", not supported), naming the file and the line.
 */
export function parseExcludeFile(text: string, source: string): FilterRule[] {
  const rules: FilterRule[] = [];
  text.split("\n").forEach((raw, index) => {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#")) return;
    const where = `line ${index + 1} of ${source}`;
    if (line === "!") {
      throw new UsageError(`Cannot use ${where}: '!' (clear the rules so far) is not supported`);
    }
    const prefix = /^([+-]) /.exec(line)?.[1];
    const rule: FilterRule = {
      kind: prefix === "+" ? "include" : "exclude",
      pattern: prefix === undefined ? line : line.slice(2),
    };
    const problem = compilePattern(rule.pattern);
    if (typeof problem === "string") {
      throw new UsageError(`Invalid pattern ${quoted(line)} on ${where}: ${problem}`);
    }
    rules.push(rule);
  });
  return rules;
}

/** Whether a recorded file, or any folder above it, is excluded (folders flagged as such). */
export function isExcludedRecordPath(path: string, exclude: ExcludeMatcher): boolean {
  const excludedFolder = { has: (folder: string) => folder !== "" && exclude(folder, true) };
  return exclude(path, false) || isWithin(path, excludedFolder, { below: true });
}
