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
  kind: "include" | "exclude";
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
 * one name, `**` crosses folders, `[abc]` is a class.
 *
 * @throws {UsageError} For an empty pattern or an unclosed `[`, naming the flag.
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

/** A pattern compiled, or what is wrong with it: it is empty, or a `[` is not closed. */
function compilePattern(pattern: string): CompiledPattern | string {
  let body = pattern;
  const dirOnly = body.endsWith("/");
  if (dirOnly) body = body.replace(/\/+$/, "");
  const anchored = body.includes("/");
  body = body.replace(/^\/+/, "");
  if (body === "") return "the pattern is empty";
  const source = globToRegex(body);
  if (source === null) return "'[' is not closed";
  return { dirOnly, anchored, regex: new RegExp(`^${source}$`, "s") };
}

/** The glob as a regular expression's source, or null when a `[` is not closed. */
function globToRegex(glob: string): string | null {
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
      if (close < 0) return null;
      const inside = glob.slice(i + 1, close).replace(/^!/, "^").replace(/\\/g, "\\\\");
      out += `[${inside}]`;
      i = close;
    } else {
      out += char.replace(/[.+^${}()|\\\]]/g, "\\$&");
    }
  }
  return out;
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
