/**
 * `--exclude` globs, read the way rsync and `.gitignore` read them. Pure.
 *
 * @module
 */

import { UsageError } from "./errors.ts";
import { quoted } from "./format.ts";
import { isWithin } from "./paths.ts";

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

/** Whether a recorded file, or any folder above it, is excluded (folders flagged as such). */
export function isExcludedRecordPath(path: string, exclude: ExcludeMatcher): boolean {
  const excludedFolder = { has: (folder: string) => folder !== "" && exclude(folder, true) };
  return exclude(path, false) || isWithin(path, excludedFolder, { below: true });
}
