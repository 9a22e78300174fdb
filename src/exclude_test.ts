/**
 * `--include` and `--exclude` rules and `--exclude-from` lines: tables of patterns and paths, no
 * disk.
 *
 * @module
 */

import { deepStrictEqual, throws } from "node:assert/strict";
import { UsageError } from "./errors.ts";
import {
  compileFilters,
  type FilterRule,
  isExcludedRecordPath,
  parseExcludeFile,
} from "./exclude.ts";

/** Rules written as rsync writes them in a file: `+ *.c`, `- *`. */
function rules(...lines: string[]): FilterRule[] {
  return lines.map((line) => ({
    kind: line.startsWith("+ ") ? "include" : "exclude",
    pattern: line.slice(2),
  }));
}

Deno.test("compileFilters() reads globs like rsync and .gitignore", () => {
  const table: Array<[string, string, boolean, boolean]> = [
    // pattern, path, isDir, excluded
    ["*.tmp", "a.tmp", false, true],
    ["*.tmp", "deep/down/a.tmp", false, true],
    ["*.tmp", "a.tmp.keep", false, false],
    ["cache/", "x/cache", true, true],
    ["cache/", "x/cache", false, false],
    ["build/*.o", "build/main.o", false, true],
    ["build/*.o", "src/build/main.o", false, false],
    ["build/*.o", "build/sub/main.o", false, false],
    ["**/node_modules/", "node_modules", true, true],
    ["**/node_modules/", "a/b/node_modules", true, true],
    ["**/node_modules/", "a/node_modules", false, false],
    ["/top", "top", false, true],
    ["/top", "sub/top", false, false],
    ["a/**/z", "a/z", false, true],
    ["a/**/z", "a/b/c/z", false, true],
    ["file?.txt", "file1.txt", false, true],
    ["file?.txt", "file10.txt", false, false],
    ["[ab].c", "b.c", false, true],
    ["[!ab].c", "b.c", false, false],
    ["a.b", "axb", false, false],
  ];
  for (const [pattern, path, isDir, excluded] of table) {
    const matcher = compileFilters(rules(`- ${pattern}`));
    deepStrictEqual(matcher(path, isDir), excluded, `${pattern} ~ ${path}`);
  }
});

Deno.test("isExcludedRecordPath() excludes a recorded file below an excluded folder", () => {
  const table: Array<[string, string, boolean]> = [
    // pattern, recorded file, excluded
    ["cache/", "cache/a", true],
    ["cache/", "x/cache/deep/a", true],
    ["cache/", "cache", false],
    ["*.tmp", "a.tmp", true],
    ["*.tmp", "a.tmp/b", true],
    ["*.tmp", "a/b", false],
  ];
  for (const [pattern, path, excluded] of table) {
    const matcher = compileFilters(rules(`- ${pattern}`));
    deepStrictEqual(isExcludedRecordPath(path, matcher), excluded, `${pattern} ~ ${path}`);
  }
});

Deno.test("compileFilters() lets the first matching rule decide, as rsync does", () => {
  const table: Array<[string[], string, boolean, boolean]> = [
    // rules in order, path, isDir, excluded
    // An include before a broader exclude keeps what it matches; the exclude takes the rest.
    [["+ *.c", "- *"], "main.c", false, false],
    [["+ *.c", "- *"], "main.h", false, true],
    // ... and `*` matches folders too, so `src` is left out (and never walked).
    [["+ *.c", "- *"], "src", true, true],
    // An exclude first wins: the include after it never gets a say.
    [["- *.c", "+ keep.c"], "keep.c", false, true],
    [["- *.c", "+ keep.c"], "keep.h", false, false],
    // `+ */` keeps every folder, so the walk reaches the .c files below.
    [["+ */", "+ *.c", "- *"], "src", true, false],
    [["+ */", "+ *.c", "- *"], "src/deep/main.c", false, false],
    [["+ */", "+ *.c", "- *"], "src/deep/main.h", false, true],
    [["+ */", "+ *.c", "- *"], "src", false, true],
    // Anchored: only at the root.
    [["+ /docs/", "+ /docs/*.md", "- *"], "docs", true, false],
    [["+ /docs/", "+ /docs/*.md", "- *"], "docs/a.md", false, false],
    [["+ /docs/", "+ /docs/*.md", "- *"], "docs/a.txt", false, true],
    [["+ /docs/", "+ /docs/*.md", "- *"], "sub/docs", true, true],
    [["+ /top", "- top"], "top", false, false],
    [["+ /top", "- top"], "x/top", false, true],
    // Folders only: a file of the same name goes on to the next rule.
    [["+ build/", "- build*"], "build", true, false],
    [["+ build/", "- build*"], "build", false, true],
    [["+ build/", "- build*"], "build.log", false, true],
    // No rule matches: kept. Includes alone leave nothing out.
    [["+ *.c", "- *.o"], "notes.txt", false, false],
    [["+ *.c"], "notes.txt", false, false],
  ];
  for (const [lines, path, isDir, excluded] of table) {
    const matcher = compileFilters(rules(...lines));
    deepStrictEqual(matcher(path, isDir), excluded, `${lines.join(", ")} ~ ${path}`);
  }
});

Deno.test("isExcludedRecordPath() leaves out a file below a folder no include kept", () => {
  const table: Array<[string[], string, boolean]> = [
    // rules in order, recorded file, excluded
    [["+ *.c", "- *"], "main.c", false],
    [["+ *.c", "- *"], "src/main.c", true],
    [["+ */", "+ *.c", "- *"], "src/main.c", false],
    [["+ */", "+ *.c", "- *"], "src/main.h", true],
    [["+ src/", "+ src/*.c", "- *"], "src/main.c", false],
    [["+ src/", "+ src/*.c", "- *"], "src/deep/main.c", true],
  ];
  for (const [lines, path, excluded] of table) {
    const matcher = compileFilters(rules(...lines));
    deepStrictEqual(isExcludedRecordPath(path, matcher), excluded, `${lines.join(", ")} ~ ${path}`);
  }
});

Deno.test("compileFilters() names the flag of a bad pattern", () => {
  throws(
    () => compileFilters(rules("- *.tmp", "+ [ab")),
    { name: UsageError.name, message: /^Invalid --include '\[ab': '\[' is not closed$/ },
  );
  throws(() => compileFilters(rules("- /")), {
    name: UsageError.name,
    message: /^Invalid --exclude '\/': /,
  });
});

Deno.test("parseExcludeFile() reads a pattern a line; skips blanks and # comments; + and - choose", () => {
  const text = [
    "# build output",
    "*.o",
    "",
    "   ",
    "  # an indented comment",
    "*.log\r",
    "+ keep.tmp",
    "- cache/",
    " spaced name ",
    "a#b",
    "-not-a-prefix",
    "",
  ].join("\n");
  deepStrictEqual(parseExcludeFile(text, "--exclude-from 'f'"), [
    { kind: "exclude", pattern: "*.o" },
    { kind: "exclude", pattern: "*.log" },
    { kind: "include", pattern: "keep.tmp" },
    { kind: "exclude", pattern: "cache/" },
    { kind: "exclude", pattern: " spaced name " },
    { kind: "exclude", pattern: "a#b" },
    { kind: "exclude", pattern: "-not-a-prefix" },
  ]);
  deepStrictEqual(parseExcludeFile("", "--exclude-from 'f'"), []);
});

Deno.test("parseExcludeFile() refuses a bad line, naming the file and the line", () => {
  const table: Array<[string, RegExp]> = [
    ["ok\n[ab", /^Invalid pattern '\[ab' on line 2 of --exclude-from 'f': '\[' is not closed$/],
    [
      "# c\r\n+ \r\n",
      /^Invalid pattern '\+ ' on line 2 of --exclude-from 'f': the pattern is empty$/,
    ],
    ["!", /^Cannot use line 1 of --exclude-from 'f': '!' \(clear the rules so far\)/],
  ];
  for (const [text, pattern] of table) {
    throws(() => parseExcludeFile(text, "--exclude-from 'f'"), {
      name: UsageError.name,
      message: pattern,
    });
  }
});

/** Names to try bracket classes on, each a file at the top of a tree. */
const CLASS_NAMES = [
  "a",
  "b",
  "x",
  "]x",
  "]",
  "!x",
  "^x",
  "-b",
  "a-b",
  "A-b",
  "1-b",
  "_-b",
  "2024-backup",
  "Zed",
  ":x",
  "[x",
  "\\x",
  "a]",
  "ax",
  "cx",
  "ab",
  " sp",
  "F0",
];

/** Bracket patterns, and the names of {@linkcode CLASS_NAMES} rsync 3.2 leaves out for each. */
const CLASS_TABLE: Array<[string, string[]]> = [
  ["[[:alpha:]]-b", ["a-b", "A-b"]],
  ["[[:digit:]]*", ["1-b", "2024-backup"]],
  ["[[:alpha:][:digit:]]-b", ["a-b", "A-b", "1-b"]],
  ["[[:upper:]]*", ["A-b", "Zed", "F0"]],
  ["[[:lower:]]-b", ["a-b"]],
  ["[[:alnum:]]", ["a", "b", "x"]],
  ["[[:space:]]*", [" sp"]],
  ["[[:punct:]]*", ["]x", "]", "!x", "^x", "-b", "_-b", ":x", "[x", "\\x"]],
  ["[[:xdigit:]]?", ["a]", "ax", "cx", "ab", "F0"]],
  ["[^[:alpha:]]*", [
    "]x",
    "]",
    "!x",
    "^x",
    "-b",
    "1-b",
    "_-b",
    "2024-backup",
    ":x",
    "[x",
    "\\x",
    " sp",
  ]],
  // A `]` first in a class is itself, after a negation too.
  ["[]]x", ["]x"]],
  ["[]x]", ["x", "]"]],
  ["[!]]*", CLASS_NAMES.filter((name) => !name.startsWith("]"))],
  ["a[]-b]*", ["a]", "ab"]],
  // Ranges, a `-` first or last, a range backwards (matches nothing), escapes.
  ["[!a-c]x", ["]x", "!x", "^x", ":x", "[x", "\\x"]],
  ["[a-]*", ["a", "-b", "a-b", "a]", "ax", "ab"]],
  ["[-a]*", ["a", "-b", "a-b", "a]", "ax", "ab"]],
  ["[z-a]*", []],
  ["[\\]]x", ["]x"]],
  ["[a\\-c]x", ["ax", "cx"]],
  // `[:` that does not close as `:]` is a plain `[`.
  ["[[:x]*", ["x", ":x", "[x"]],
  // A backslash outside a class takes the next character as it is, when there is a wildcard.
  ["\\[x", ["[x"]],
  ["*\\]", ["]", "a]"]],
];

Deno.test("compileFilters() reads bracket classes as rsync reads them", () => {
  for (const [pattern, excluded] of CLASS_TABLE) {
    const matcher = compileFilters(rules(`- ${pattern}`));
    const ours = CLASS_NAMES.filter((name) => matcher(name, false));
    deepStrictEqual(ours, CLASS_NAMES.filter((name) => excluded.includes(name)), pattern);
  }
});

Deno.test("compileFilters() refuses an unknown POSIX class, naming it and the known ones", () => {
  for (const pattern of ["[[:alpah:]]*", "x[[:word:]]"]) {
    throws(
      () => compileFilters(rules(`- ${pattern}`)),
      {
        name: UsageError.name,
        message: /^Invalid --exclude '.*': '\[:\w+:\]' is not a class \(use one of alnum, alpha, /,
      },
    );
  }
});

/** Whether rsync can be run here. */
const HAS_RSYNC = (() => {
  try {
    return new Deno.Command("rsync", { args: ["--version"], stdout: "null" }).outputSync().success;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "compileFilters() leaves out what rsync --exclude leaves out, pattern by pattern",
  ignore: !HAS_RSYNC,
  fn: () => {
    const root = Deno.makeTempDirSync();
    try {
      Deno.mkdirSync(`${root}/src`);
      for (const name of CLASS_NAMES) Deno.writeFileSync(`${root}/src/${name}`, new Uint8Array());
      CLASS_TABLE.forEach(([pattern], index) => {
        const to = `${root}/to${index}`;
        const copy = new Deno.Command("rsync", {
          args: ["-r", "--exclude", pattern, `${root}/src/`, `${to}/`],
        }).outputSync();
        deepStrictEqual(copy.success, true, `rsync --exclude ${pattern}`);
        const kept = new Set([...Deno.readDirSync(to)].map((entry) => entry.name));
        const matcher = compileFilters(rules(`- ${pattern}`));
        const ours = CLASS_NAMES.filter((name) => !matcher(name, false));
        deepStrictEqual(ours, CLASS_NAMES.filter((name) => kept.has(name)), pattern);
      });
    } finally {
      Deno.removeSync(root, { recursive: true });
    }
  },
});
