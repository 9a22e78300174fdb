/**
 * The command line, read without running anything: tables of arguments and what they give.
 *
 * @module
 */

import { deepStrictEqual, ok, throws } from "node:assert/strict";
import { type Options, parseCommandLine, type ParsedOptions, readExcludeFiles } from "./cli.ts";
import { UsageError } from "./errors.ts";
import { formatDuration } from "./format.ts";
import { withTemp, writeTree } from "./test_helpers.ts";

/** The options of `treesync ARGS a b`, run from `cwd`, before any file is read. */
function options(args: string[], env = {}, cwd = "/work"): ParsedOptions {
  const command = parseCommandLine(args, env, cwd);
  ok(command.kind === "run", `not a run: ${command.kind}`);
  return command.options;
}

const DAY_MS = 86_400_000;

Deno.test("parseCommandLine() reads --interval as seconds or d/h/m/s units", () => {
  const table: Array<[string, number]> = [
    ["90", 90_000],
    ["45s", 45_000],
    ["5m", 300_000],
    ["1h30m", 5_400_000],
    ["2d", 172_800_000],
    ["1d2h3m4s", 93_784_000],
    ["30d", 30 * DAY_MS],
    ["365d", 365 * DAY_MS],
  ];
  for (const [text, ms] of table) {
    deepStrictEqual(options(["-i", text, "a", "b"]).intervalMs, ms, text);
  }
});

Deno.test("parseCommandLine() rejects any other duration, quoting the value", () => {
  for (const text of ["5x", "0", "-3", "1.5.2m", "", "0s", "m", "5m1h", "1.5m"]) {
    const quotedValue = new RegExp(`^Invalid duration '${text.replace(".", "\\.")}': `);
    throws(() => options([`--interval=${text}`, "a", "b"]), {
      name: UsageError.name,
      message: quotedValue,
    });
  }
});

Deno.test("parseCommandLine() allows --interval and --keep-deleted up to 365d", () => {
  deepStrictEqual(options(["--keep-deleted", "365d", "a", "b"]).keepDeletedMs, 365 * DAY_MS);
  const table: Array<[string[], RegExp]> = [
    [["-i", "366d"], /^Invalid --interval '366d': the most is 365d$/],
    [["-i", "8760h1s"], /^Invalid --interval '8760h1s': the most is 365d$/],
    [
      ["--keep-deleted", "99999999999d"],
      /^Invalid --keep-deleted '99999999999d': the most is 365d$/,
    ],
  ];
  for (const [args, pattern] of table) {
    throws(() => options([...args, "a", "b"]), { name: UsageError.name, message: pattern });
  }
});

Deno.test("parseCommandLine() takes paths from positionals, flags, aliases and environment", () => {
  deepStrictEqual([options(["a", "b"]).source, options(["a", "b"]).replica], [
    "/work/a",
    "/work/b",
  ]);
  const flagged = options(["-s", "/x", "-r", "y"]);
  deepStrictEqual([flagged.source, flagged.replica], ["/x", "/work/y"]);
  const aliased = options(["--src", "/x", "--dest", "/y", "--log_file", "logs/"]);
  deepStrictEqual([aliased.source, aliased.replica, aliased.logPath], [
    "/x",
    "/y",
    "/work/logs/treesync.log",
  ]);
  const fromEnv = options([], {
    TREESYNC_SOURCE: "/e/s",
    TREESYNC_REPLICA: "/e/r",
    TREESYNC_LOG: "/e/l",
  });
  deepStrictEqual([fromEnv.source, fromEnv.replica, fromEnv.logPath], ["/e/s", "/e/r", "/e/l"]);
  const flagsWin = options(["-s", "/f"], { TREESYNC_SOURCE: "/e/s", TREESYNC_REPLICA: "/e/r" });
  deepStrictEqual([flagsWin.source, flagsWin.replica], ["/f", "/e/r"]);
  deepStrictEqual(options(["--scan", "a", "b"]).dryRun, true);
  deepStrictEqual(options(["--no-delete", "a", "b"]).deletes, false);
  deepStrictEqual(options(["-vv", "a", "b"]).verbosity, 3);
  deepStrictEqual(options(["-q", "a", "b"]).verbosity, 0);
  deepStrictEqual(options(["--exclude", "*.tmp", "--exclude", "cache/", "a", "b"]).filters, [
    { kind: "exclude", pattern: "*.tmp" },
    { kind: "exclude", pattern: "cache/" },
  ]);
  deepStrictEqual(options(["--verify", "r"]).replica, "/work/r");
});

Deno.test("parseCommandLine() rejects bad input with a message naming it", () => {
  const table: Array<[string[], RegExp]> = [
    [["--bogus", "a", "b"], /--bogus/],
    [["a"], /Missing REPLICA/],
    [[], /Missing REPLICA/],
    [["a", "b", "c"], /Too many paths: 'c'/],
    [["-s", "x", "a", "b"], /either as two paths/],
    [["--src", "x", "--source", "y", "r"], /--source is given twice/],
    [["--interval", "5x", "a", "b"], /'5x'/],
    [["--restore", "--verify", "a", "b"], /--restore and --verify/],
    [["--exclude", "/", "a", "b"], /the pattern is empty/],
    [["--exclude", "[ab", "a", "b"], /'\[' is not closed/],
    [["-q", "-v", "a", "b"], /--quiet and --verbose/],
    [["--log-keep", "0", "a", "b"], /--log-keep '0'/],
  ];
  for (const [args, pattern] of table) {
    throws(() => parseCommandLine(args, {}, "/w"), { name: UsageError.name, message: pattern });
  }
});

Deno.test("parseCommandLine() keeps --include, --exclude and --exclude-from in command-line order", () => {
  const args = ["--include", "*.c", "--exclude-from", "a.txt", "-n", "--exclude=*", "a", "b"];
  const more = ["--include=*/", "--exclude-from=/etc/b.txt", "--include", "*.h"];
  deepStrictEqual(options([...args, ...more]).filters, [
    { kind: "include", pattern: "*.c" },
    { kind: "exclude-from", path: "/work/a.txt", given: "a.txt" },
    { kind: "exclude", pattern: "*" },
    { kind: "include", pattern: "*/" },
    { kind: "exclude-from", path: "/etc/b.txt", given: "/etc/b.txt" },
    { kind: "include", pattern: "*.h" },
  ]);
  deepStrictEqual(options(["a", "b"]).filters, []);
});

Deno.test("parseCommandLine() refuses a bad --include or --exclude-from before reading any file", () => {
  const table: Array<[string[], RegExp]> = [
    [["--include", "[ab"], /^Invalid --include '\[ab': '\[' is not closed$/],
    [["--exclude-from", "missing.txt", "--include", "/"], /^Invalid --include '\/'/],
    [["--exclude-from", ""], /^Empty path for --exclude-from/],
    [["--exclude-from", "-"], /^Cannot read --exclude-from '-': standard input is not supported; /],
    [
      ["--exclude-from", "/dev/stdin"],
      /^Cannot read --exclude-from '\/dev\/stdin': standard input /,
    ],
  ];
  for (const [args, pattern] of table) {
    throws(() => options([...args, "a", "b"]), { name: UsageError.name, message: pattern });
  }
});

Deno.test("readExcludeFiles() puts each file's rules, in the file's order, at the file's place", async () => {
  await withTemp((dir) => {
    writeTree(dir, {
      "first.txt": "# build output\n*.o\n+ keep.tmp\r\n*.tmp\n",
      lists: { "second.txt": "cache/\n" },
    });
    const args = ["--exclude-from", "first.txt", "--include", "*/", "--exclude-from"];
    const more = [`${dir}/lists/second.txt`, "--exclude", "*", "--exclude-from", "first.txt"];
    const read: Options = readExcludeFiles(options([...args, ...more, "a", "b"], {}, dir));
    deepStrictEqual(read.filters, [
      { kind: "exclude", pattern: "*.o" },
      { kind: "include", pattern: "keep.tmp" },
      { kind: "exclude", pattern: "*.tmp" },
      { kind: "include", pattern: "*/" },
      { kind: "exclude", pattern: "cache/" },
      { kind: "exclude", pattern: "*" },
      { kind: "exclude", pattern: "*.o" },
      { kind: "include", pattern: "keep.tmp" },
      { kind: "exclude", pattern: "*.tmp" },
    ]);
    deepStrictEqual(read.replica, `${dir}/b`);
  });
});

Deno.test("readExcludeFiles() refuses a file it cannot read, a folder or a bad line, naming the file", async () => {
  await withTemp((dir) => {
    writeTree(dir, { folder: {}, "bad.txt": "ok\n[ab\n", "ok.txt": "*.o" });
    Deno.writeFileSync(`${dir}/binary.txt`, new Uint8Array([0x2a, 0xff, 0x0a]));
    const table: Array<[string, RegExp]> = [
      ["missing.txt", /^Cannot read --exclude-from 'missing.txt': no such file or folder$/],
      ["folder", /^Cannot read --exclude-from 'folder': it is a folder$/],
      ["binary.txt", /^Cannot read --exclude-from 'binary.txt': it is not UTF-8 text$/],
      ["bad.txt", /^Invalid pattern '\[ab' on line 2 of --exclude-from 'bad.txt': /],
    ];
    for (const [file, pattern] of table) {
      const parsed = options(
        ["--exclude-from", "ok.txt", "--exclude-from", file, "a", "b"],
        {},
        dir,
      );
      throws(() => readExcludeFiles(parsed), { name: UsageError.name, message: pattern });
    }
  });
});

Deno.test({
  name: "readExcludeFiles() refuses a file it may not read, naming the file",
  // Root reads it anyway.
  ignore: Deno.uid() === 0,
  fn: async () => {
    await withTemp((dir) => {
      writeTree(dir, { "ok.txt": "*.o", "locked.txt": "*.o" });
      Deno.chmodSync(`${dir}/locked.txt`, 0o000);
      const parsed = options(
        ["--exclude-from", "ok.txt", "--exclude-from", "locked.txt", "a", "b"],
        {},
        dir,
      );
      throws(() => readExcludeFiles(parsed), {
        name: UsageError.name,
        message: /^Cannot read --exclude-from 'locked.txt': permission denied$/,
      });
    });
  },
});

Deno.test("parseCommandLine() reads --max-delete as a count or a percentage", () => {
  const table: Array<[string, Options["maxDelete"]]> = [
    ["100", { count: 100 }],
    ["0", { count: 0 }],
    ["5%", { percent: 5 }],
    ["0.5%", { percent: 0.5 }],
  ];
  for (const [text, limit] of table) {
    deepStrictEqual(options(["--max-delete", text, "a", "b"]).maxDelete, limit, text);
  }
  for (const bad of ["-1", "5 %", "101%", "x", "", "1e3"]) {
    throws(() => options([`--max-delete=${bad}`, "a", "b"]), {
      name: UsageError.name,
      message: /--max-delete/,
    });
  }
});

Deno.test("parseCommandLine() refuses --no-X for every flag but --no-delete", () => {
  for (const flag of ["--no-verify", "--no-json", "--no-help", "--no-dry-run", "--no-checksum"]) {
    throws(
      () => options([flag, "a", "b"]),
      { name: UsageError.name, message: new RegExp(`^Unknown option '${flag}'$`) },
    );
  }
  deepStrictEqual(options(["--no-delete", "a", "b"]).deletes, false);
});

Deno.test("parseCommandLine() caps --jobs and --log-keep, naming the value", () => {
  deepStrictEqual(options(["-j", "64", "a", "b"]).jobs, 64);
  const defaultJobs = options(["a", "b"]).jobs;
  ok(defaultJobs >= 1 && defaultJobs <= 64, `the default is within it: ${defaultJobs}`);
  deepStrictEqual(options(["--log-keep", "100", "a", "b"]).logKeep, 100);
  const table: Array<[string[], RegExp]> = [
    [["-j", "65"], /^Invalid --jobs '65': the most is 64$/],
    [["--jobs", "99999999999"], /^Invalid --jobs '99999999999': the most is 64$/],
    [["-j", "1000"], /'1000'/],
    [["--log-keep", "101"], /^Invalid --log-keep '101': the most is 100$/],
  ];
  for (const [args, pattern] of table) {
    throws(() => options([...args, "a", "b"]), { name: UsageError.name, message: pattern });
  }
});

Deno.test("parseCommandLine() reads -S and --sparse, off by default as in rsync", () => {
  deepStrictEqual(options(["a", "b"]).sparse, false);
  deepStrictEqual(options(["-S", "a", "b"]).sparse, true);
  deepStrictEqual(options(["--sparse", "--restore", "a", "b"]).sparse, true);
  throws(() => options(["--no-sparse", "a", "b"]), {
    name: UsageError.name,
    message: /^Unknown option/,
  });
});

Deno.test("parseCommandLine() reads --watch: a loop with a full run every hour unless told", () => {
  const table: Array<[string[], Pick<Options, "watch" | "intervalMs" | "watchDelayMs">]> = [
    [[], { watch: false, intervalMs: null, watchDelayMs: 2_000 }],
    [["--watch"], { watch: true, intervalMs: 3_600_000, watchDelayMs: 2_000 }],
    [["--watch", "-i", "5m", "--watch-delay", "10s"], {
      watch: true,
      intervalMs: 300_000,
      watchDelayMs: 10_000,
    }],
    [["--watch-delay=1", "--watch"], { watch: true, intervalMs: 3_600_000, watchDelayMs: 1_000 }],
    [["--watch", "--dry-run"], { watch: true, intervalMs: 3_600_000, watchDelayMs: 2_000 }],
  ];
  for (const [args, expected] of table) {
    const { watch, intervalMs, watchDelayMs } = options([...args, "a", "b"]);
    deepStrictEqual({ watch, intervalMs, watchDelayMs }, expected, args.join(" "));
  }
  // --restore writes into what --watch would watch; the interval loop may still restore.
  deepStrictEqual(options(["-i", "5m", "--restore", "a", "b"]).intervalMs, 300_000);
});

Deno.test("parseCommandLine() refuses --watch-delay without --watch, and --watch with -I, --verify or --restore", () => {
  const table: Array<[string[], RegExp]> = [
    [["--watch-delay", "5s"], /^--watch-delay only applies to --watch$/],
    [["-i", "5m", "--watch-delay", "5s"], /^--watch-delay only applies to --watch$/],
    [["--watch", "-I"], /^--watch cannot be combined with --interactive$/],
    [["--watch", "--verify"], /^--watch cannot be combined with --verify$/],
    [["--watch", "--restore"], /^--watch cannot be combined with --restore$/],
    [["-i", "5m", "-I"], /^--interval cannot be combined with --interactive$/],
    [["--watch", "--watch-delay", "0"], /^Invalid duration '0'/],
    [["--watch", "--watch-delay", "366d"], /^Invalid --watch-delay '366d': the most is 365d$/],
    [["--no-watch"], /^Unknown option '--no-watch'$/],
  ];
  for (const [args, pattern] of table) {
    throws(() => options([...args, "a", "b"]), { name: UsageError.name, message: pattern });
  }
});

Deno.test("formatDuration() prints the largest units", () => {
  const table: Array<[number, string]> = [
    [0, "0s"],
    [93_784_000, "1d 2h 3m 4s"],
    [3_600_000, "1h"],
  ];
  for (const [ms, text] of table) deepStrictEqual(formatDuration(ms), text, `${ms} ms`);
});
