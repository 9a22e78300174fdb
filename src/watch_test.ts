/**
 * `--watch`: events to folders by tables, without disk; then the real CLI watching real files,
 * every wait a poll for what it waits for.
 *
 * @module
 */

import { deepStrictEqual, match, ok } from "node:assert/strict";
import { compileFilters } from "./exclude.ts";
import { pathExists } from "./files.ts";
import {
  emptyMarks,
  type EventRules,
  folderList,
  isWatchLimit,
  markEvents,
  MAX_QUIET_PERIODS,
  newWatchState,
  relativeToSource,
  watchDueAt,
  watchErrorText,
  type WatchEvent,
  watchRunFor,
  type WatchState,
  watchStatusLine,
} from "./watch.ts";
import {
  CAN_HOLD_OPEN,
  holdOpen,
  readTree,
  RunningCli,
  snapshot,
  SYNC_FLAGS,
  SYNC_MODULE,
  withTemp,
  writeTree,
} from "./test_helpers.ts";

// ------------------------------------------------------------------------------------------------
// Events to folders (pure)
// ------------------------------------------------------------------------------------------------

/** A source at `/s` (really `/real/s`) with `--exclude cache/ --exclude '*.tmp'`. */
const RULES: EventRules = {
  roots: ["/s", "/real/s"],
  excluded: compileFilters([
    { kind: "exclude", pattern: "cache/" },
    { kind: "exclude", pattern: "*.tmp" },
  ]),
  isFolder: (path) => ["cache", "a/cache", "a/new", "x/sub.tmp"].includes(path),
};

function event(kind: string, ...paths: string[]): WatchEvent {
  return { kind, paths, flag: null };
}

Deno.test("markEvents() marks the folder holding each path, and leaves ours and excluded ones", () => {
  const table: Array<[string, WatchEvent[], string[]]> = [
    ["a file written", [event("modify", "/s/a/b/f")], ["a/b"]],
    ["a file at the top", [event("create", "/s/top")], [""]],
    ["a new folder: its parent, whose walk covers it all", [event("create", "/s/a/new")], ["a"]],
    ["a rename: both sides", [event("rename", "/s/a/old", "/s/b/new")], ["a", "b"]],
    ["a removal", [event("remove", "/s/a/b")], ["a"]],
    ["the folders of several events", [event("modify", "/s/a/f"), event("any", "/s/c/g")], [
      "a",
      "c",
    ]],
    ["our .treesync/ at the top", [event("create", "/s/.treesync/tmp/x")], []],
    ["our .treesync itself", [event("modify", "/s/.treesync")], []],
    ["a .treesync below the top is not ours", [event("create", "/s/a/.treesync/x")], [
      "a/.treesync",
    ]],
    ["below an excluded folder", [event("create", "/s/cache/sub/x")], []],
    ["an excluded folder itself", [event("modify", "/s/a/cache")], []],
    ["a file named like a folder-only rule", [event("modify", "/s/b/cache")], ["b"]],
    ["an excluded file", [event("modify", "/s/a/x.tmp")], []],
    ["below a folder a file rule leaves out", [event("create", "/s/x/sub.tmp/y")], []],
    ["the source by its real path", [event("modify", "/real/s/a/f")], ["a"]],
    ["outside the source (a folder moved out, still watched)", [event("remove", "/t/f")], []],
    ["a rename out of the source", [event("rename", "/s/a/f", "/t/f")], ["a"]],
  ];
  for (const [label, events, folders] of table) {
    const marks = markEvents(events, RULES);
    deepStrictEqual([...marks.folders].sort(), folders, label);
    deepStrictEqual(marks.lost, false, label);
  }
});

Deno.test("markEvents() turns a rescan flag into lost events, and notes the root named itself", () => {
  const rescan = markEvents([{ kind: "any", paths: ["/s"], flag: "rescan" }], RULES);
  deepStrictEqual(rescan, { ...emptyMarks(), lost: true });
  const root = markEvents([event("remove", "/s")], RULES);
  deepStrictEqual(root, { folders: new Set([""]), lost: false, rootTouched: true });
  // Marks add up over batches.
  const marks = markEvents([event("modify", "/s/a/f")], RULES);
  markEvents([event("modify", "/s/b/f")], RULES, marks);
  deepStrictEqual([...marks.folders], ["a", "b"]);
});

Deno.test("relativeToSource() takes the first root that holds the path", () => {
  const table: Array<[string, string[], string | null]> = [
    ["/s", ["/s"], ""],
    ["/s/a/b", ["/s"], "a/b"],
    ["/s/a/", ["/s"], "a"],
    ["/sx/a", ["/s"], null],
    ["/real/s/a", ["/s", "/real/s"], "a"],
    ["/a", ["/"], "a"],
  ];
  for (const [path, roots, relative] of table) {
    deepStrictEqual(relativeToSource(path, roots), relative, `${path} in ${roots}`);
  }
});

Deno.test("watchRunFor() walks the outermost folders, or the whole tree from the top or past a limit", () => {
  const table: Array<[string[], number, ReturnType<typeof watchRunFor>]> = [
    [["a"], 256, { kind: "folders", folders: ["a"] }],
    [["c", "a/b", "a"], 256, { kind: "folders", folders: ["a", "c"] }],
    [["a-", "a/z", "a"], 256, { kind: "folders", folders: ["a", "a-"] }],
    [["a", "ab"], 256, { kind: "folders", folders: ["a", "ab"] }],
    [["a", ""], 256, { kind: "full", why: "a change at the top of the source" }],
    [["a", "b", "c"], 2, { kind: "full", why: "3 folders changed" }],
    [["a", "a/b", "a/c"], 2, { kind: "folders", folders: ["a"] }],
  ];
  for (const [folders, max, run] of table) {
    deepStrictEqual(watchRunFor(new Set(folders), max), run, folders.join(" "));
  }
  const many = new Set(Array.from({ length: 300 }, (_, i) => `d${i}`));
  deepStrictEqual(watchRunFor(many), { kind: "full", why: "300 folders changed" });
});

const T = Date.UTC(2030, 0, 1, 12);

function watchState(fields: Partial<WatchState> = {}): WatchState {
  return { ...newWatchState(2_000, 3_600_000), watching: true, ...fields };
}

Deno.test("watchDueAt() waits a quiet period after the last change, at most ten after the first", () => {
  const table: Array<[Partial<WatchState>, number | null]> = [
    [{}, null],
    [{ firstAt: T, lastAt: T }, T + 2_000],
    [{ firstAt: T, lastAt: T + 5_000 }, T + 7_000],
    [{ firstAt: T, lastAt: T + 19_000 }, T + MAX_QUIET_PERIODS * 2_000],
    [{ firstAt: T, lastAt: T + 60_000 }, T + 20_000],
  ];
  for (const [fields, due] of table) {
    deepStrictEqual(watchDueAt(watchState(fields)), due, JSON.stringify(fields));
  }
});

Deno.test("watchStatusLine() shows what is pending and when it runs, or why nothing is watched", () => {
  const pending = { firstAt: T, lastAt: T };
  const table: Array<[Partial<WatchState>, string]> = [
    [{}, "watching: no changes pending"],
    [{ ...pending, folders: new Set(["docs"]) }, "watching: 1 folder changed (docs), run in 2s"],
    [
      { ...pending, folders: new Set(["z", "a/b", "a", "m\n", "q"]) },
      'watching: 5 folders changed (a, a/b, "m\\n" and 2 more), run in 2s',
    ],
    [
      { ...pending, full: "events were lost" },
      "watching: a full run pending (events were lost), run in 2s",
    ],
    [{ watching: false }, "watching: off (not started yet); a full run every 1h"],
    [
      { watching: false, off: "the inotify watch limit (fs.inotify.max_user_watches) is reached" },
      "watching: off (the inotify watch limit (fs.inotify.max_user_watches) is reached); a full " +
      "run every 1h",
    ],
  ];
  for (const [fields, line] of table) deepStrictEqual(watchStatusLine(watchState(fields), T), line);
  deepStrictEqual(folderList(["", "a"]), "., a");
});

Deno.test("isWatchLimit() and watchErrorText() name the inotify limit, and drop Deno's path list", () => {
  const limit = new Error('OS file watch limit reached. about ["/s/a"]');
  ok(isWatchLimit(limit));
  ok(isWatchLimit(new Error("No space left on device (os error 28)")));
  ok(!isWatchLimit(new Error("Permission denied (os error 13)")));
  deepStrictEqual(
    watchErrorText(limit),
    "the inotify watch limit (fs.inotify.max_user_watches) is reached",
  );
  deepStrictEqual(
    watchErrorText(new Error('Input/output error. about ["/s/a"]')),
    "Input/output error",
  );
});

// ------------------------------------------------------------------------------------------------
// The CLI watching
// ------------------------------------------------------------------------------------------------

/** Asks for `status` every 200 ms until its reply matches `pattern`. */
async function statusUntil(
  loop: RunningCli,
  pattern: RegExp,
  what: string,
  from = 0,
): Promise<void> {
  let askedAt = 0;
  await loop.waitFor(() => {
    if (Date.now() - askedAt > 200) {
      askedAt = Date.now();
      void loop.send("status");
    }
    return pattern.test(loop.stdout.slice(from));
  }, what);
}

/** Number of lines of stderr that match `pattern` (global, multiline). */
function count(text: string, pattern: RegExp): number {
  return text.match(pattern)?.length ?? 0;
}

Deno.test("watch: a change is mirrored without `now`, long before the interval's run", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a", docs: { old: "old" } });
    const loop = new RunningCli([
      "--watch",
      "--watch-delay",
      "1",
      "--interval",
      "1h",
      `${dir}/s`,
      `${dir}/r`,
    ]);
    await loop.waitFor(() => loop.runs === 1, "the first run");
    writeTree(`${dir}/s`, { docs: { new: "new", old: "changed" } });
    await loop.waitFor(() => loop.runs === 2, "a run started by the change");
    match(loop.stderr, /^watch run: 1 folder \(docs\)$/m);
    deepStrictEqual(readTree(`${dir}/r`), { a: "a", docs: { new: "new", old: "changed" } });
    // Modes and mtimes too, the folder's own included.
    deepStrictEqual(snapshot(`${dir}/r`), snapshot(`${dir}/s`));
    await loop.send("quit");
    deepStrictEqual(await loop.exitCode(), 0);
    match(loop.stderr, /^loop totals: 2 runs \(0 failed\)/m);
  });
});

Deno.test("watch: a burst of writes within the quiet period makes one run", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { logs: {}, data: {} });
    const loop = new RunningCli(["--watch", "--watch-delay", "2", `${dir}/s`, `${dir}/r`]);
    await loop.waitFor(() => loop.runs === 1, "the first run");
    for (let i = 0; i < 200; i++) {
      Deno.writeTextFileSync(`${dir}/s/logs/app.log`, `line ${i}\n`, { append: true });
      Deno.writeTextFileSync(`${dir}/s/data/f${i % 20}`, `${i}`);
    }
    await loop.waitFor(() => loop.runs === 2, "the run after the burst");
    deepStrictEqual(snapshot(`${dir}/r`), snapshot(`${dir}/s`));
    // Nothing is pending: no second run is coming for the same burst.
    await statusUntil(loop, /^watching: no changes pending$/m, "status");
    match(loop.stdout, /^runs: 2, /m);
    deepStrictEqual(count(loop.stderr, /^watch run: /gm), 1);
    match(loop.stderr, /^watch run: 2 folders \(data, logs\)$/m);
    await loop.send("quit");
    deepStrictEqual(await loop.exitCode(), 0);
  });
});

Deno.test({
  name: "watch: events lost to an overflowing queue make a full run, with one warning",
  ignore: !CAN_HOLD_OPEN,
  fn: async () => {
    await withTemp(async (dir) => {
      // Deno's watcher reads the kernel's events on a thread of its own into a queue of 1,024,
      // which the loop empties on its main thread. The log file is opened there, for each block
      // of lines written: held open, the main thread takes no event while a burst of thousands
      // is written, and Deno's queue overflows and sends a rescan flag in place of what it
      // dropped.
      writeTree(`${dir}/s`, { burst: {}, trigger: {} });
      const log = `${dir}/treesync.log`;
      const loop = new RunningCli([
        "--watch",
        "--watch-delay",
        "1",
        "--log",
        log,
        `${dir}/s`,
        `${dir}/r`,
      ]);
      await loop.waitFor(() => loop.runs === 1, "the first run");
      // Written and closed at the end of the run (a lease cannot be taken on an open file).
      await loop.waitFor(() => Deno.readTextFileSync(log).includes("run 1: "), "the log");
      const lost = /^warning: Events were lost watching /m;
      {
        await using held = await holdOpen(log);
        writeTree(`${dir}/s/trigger`, { t: "a run for this" });
        await loop.waitFor(() => held.wanted, "the watch run to open the log file");
        for (let i = 0; i < 2_000; i++) Deno.writeTextFileSync(`${dir}/s/burst/f${i}`, `${i}`);
      }
      await loop.waitFor(() => lost.test(loop.stderr), "the lost events to be told");
      const fullRun = "watch run: the whole tree (events were lost)\n";
      await loop.waitFor(() => {
        const at = loop.stderr.lastIndexOf(fullRun);
        return at >= 0 && /^run \d+: /m.test(loop.stderr.slice(at));
      }, "the full run after the lost events");
      const pattern = /^next full run in .*\nwatching: no changes pending$/m;
      await statusUntil(loop, pattern, "the end", loop.stdout.length);
      deepStrictEqual(
        count(loop.stderr, /^warning: Events were lost watching .*; a full run follows$/gm),
        count(loop.stderr, /^watch run: the whole tree \(events were lost\)$/gm),
        "one warning for each full run",
      );
      deepStrictEqual(snapshot(`${dir}/r`), snapshot(`${dir}/s`));
      await loop.send("quit");
      deepStrictEqual(await loop.exitCode(), 0);
    });
  },
});

Deno.test("watch: changes in an excluded folder or in .treesync/ start no run", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { keep: {}, cache: {}, ".treesync": {} });
    const loop = new RunningCli([
      "--watch",
      "--watch-delay",
      "1",
      "--exclude",
      "cache/",
      `${dir}/s`,
      `${dir}/r`,
    ]);
    await loop.waitFor(() => loop.runs === 1, "the first run");
    writeTree(`${dir}/s`, { cache: { x: "x", sub: { y: "y" } }, ".treesync": { z: "z" } });
    // A change that does count, after them: its run would carry any folder they had marked.
    writeTree(`${dir}/s`, { keep: { k: "k" } });
    await loop.waitFor(() => loop.runs === 2, "the run for keep/k");
    match(loop.stderr, /^watch run: 1 folder \(keep\)$/m);
    deepStrictEqual(readTree(`${dir}/r`), { keep: { k: "k" } });
    await statusUntil(loop, /^watching: no changes pending$/m, "status");
    match(loop.stdout, /^runs: 2, /m);
    await loop.send("quit");
    deepStrictEqual(await loop.exitCode(), 0);
  });
});

Deno.test("watch: status shows the folders changed and when they run; now runs them at once", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { docs: {}, src: { lib: {} } });
    const loop = new RunningCli(["--watch", "--watch-delay", "1h", `${dir}/s`, `${dir}/r`]);
    await loop.waitFor(() => loop.runs === 1, "the first run");
    writeTree(`${dir}/s`, { docs: { a: "a" }, src: { lib: { b: "b" } } });
    await statusUntil(
      loop,
      /^watching: 2 folders changed \(docs, src\/lib\), run in (59m \d+s|1h)$/m,
      "status to show both folders",
    );
    match(loop.stdout, /^next full run in (59m \d+s|1h) /m);
    await loop.send("now");
    await loop.waitFor(() => loop.runs === 2, "the run that `now` asked for");
    deepStrictEqual(readTree(`${dir}/r`), { docs: { a: "a" }, src: { lib: { b: "b" } } });
    await loop.send("quit");
    deepStrictEqual(await loop.exitCode(), 0);
    deepStrictEqual(count(loop.stderr, /^watch run: /gm), 0, "`now` is a full run");
  });
});

Deno.test("watch: the source root replaced makes a full run with a warning, then the new one is watched", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/s`, { a: "a" });
    const loop = new RunningCli(["--watch", "--watch-delay", "1", `${dir}/s`, `${dir}/r`]);
    await loop.waitFor(() => loop.runs === 1, "the first run");
    Deno.renameSync(`${dir}/s`, `${dir}/old`);
    writeTree(`${dir}/s`, { b: { c: "c" } });
    await loop.waitFor(() => loop.runs === 2, "the full run");
    match(
      loop.stderr,
      /^warning: The source '.*\/s' was (removed|replaced by another folder); a full run follows/m,
    );
    match(loop.stderr, /^watch run: the whole tree \(the source was (removed|replaced)\)$/m);
    match(loop.stderr, /^watching '.*\/s' again$/m);
    deepStrictEqual(readTree(`${dir}/r`), { b: { c: "c" } });
    writeTree(`${dir}/s`, { b: { d: "d" } });
    await loop.waitFor(() => loop.runs === 3, "a change in the new source");
    match(loop.stderr, /^watch run: 1 folder \(b\)$/m);
    deepStrictEqual(readTree(`${dir}/r`), { b: { c: "c", d: "d" } });
    await loop.send("quit");
    deepStrictEqual(await loop.exitCode(), 0);
  });
});

/** Whether a user namespace can be made here, in which the inotify watch limit can be lowered. */
const CAN_LIMIT_WATCHES = (() => {
  try {
    return new Deno.Command("unshare", {
      args: ["-U", "-r", "sh", "-c", "echo 4 > /proc/sys/user/max_inotify_watches"],
      stderr: "null",
    }).outputSync().success;
  } catch {
    return false;
  }
})();

/**
 * The CLI in a user namespace of its own whose inotify watch limit is `watches`: nothing outside
 * it feels the limit.
 */
function cliWithWatchLimit(watches: number, args: string[]): RunningCli {
  const script = `echo ${watches} > /proc/sys/user/max_inotify_watches && exec "$0" "$@"`;
  const child = new Deno.Command("unshare", {
    args: [
      "-U",
      "-r",
      "sh",
      "-c",
      script,
      Deno.execPath(),
      "run",
      "--quiet",
      ...SYNC_FLAGS,
      SYNC_MODULE,
      ...args,
    ],
    env: { NO_COLOR: "1" },
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return new RunningCli(child);
}

Deno.test({
  name: "watch: past the inotify watch limit it says so once and runs on every interval alone",
  ignore: !CAN_LIMIT_WATCHES,
  fn: async () => {
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { a: {}, b: {}, c: {}, d: {}, e: {}, f: "f" });
      const loop = cliWithWatchLimit(4, ["--watch", "-i", "1", `${dir}/s`, `${dir}/r`]);
      await loop.waitFor(() => loop.runs >= 1, "the first run");
      writeTree(`${dir}/s`, { a: { g: "g" } });
      await loop.waitFor(() => pathExists(`${dir}/r/a/g`), "an interval run to mirror a change");
      await loop.waitFor(() => loop.runs >= 3, "more interval runs");
      await statusUntil(loop, /^watching: off \(the inotify watch limit/m, "status");
      await loop.send("quit");
      deepStrictEqual(await loop.exitCode(), 0);
      deepStrictEqual(
        count(
          loop.stderr,
          /^warning: Cannot watch '.*\/s': the inotify watch limit \(fs\.inotify\.max_user_watches\) is reached; falling back to a full run every 1s alone/gm,
        ),
        1,
        `one warning, not one a run:\n${loop.stderr}`,
      );
      deepStrictEqual(count(loop.stderr, /^watch run: /gm), 0);
    });
  },
});

Deno.test({
  name:
    "watch: reaching the watch limit while watching is a warning and a full run, never a silent stop",
  ignore: !CAN_LIMIT_WATCHES,
  fn: async () => {
    await withTemp(async (dir) => {
      writeTree(`${dir}/s`, { a: {}, b: {} }); // three folders with the top: three watches
      const loop = cliWithWatchLimit(4, ["--watch", "--watch-delay", "1", `${dir}/s`, `${dir}/r`]);
      await loop.waitFor(() => loop.runs === 1, "the first run");
      writeTree(`${dir}/s`, { n1: { x: "1" }, n2: { y: "2" }, n3: { z: "3" } });
      await loop.waitFor(() => loop.runs === 2, "the full run");
      match(
        loop.stderr,
        /^warning: Watching '.*\/s' failed: the inotify watch limit \(fs\.inotify\.max_user_watches\) is reached; falling back to a full run every 1h alone/m,
      );
      match(loop.stderr, /^watch run: the whole tree \(the watch limit was reached\)$/m);
      deepStrictEqual(count(loop.stderr, /^warning: /gm), 1, loop.stderr);
      deepStrictEqual(readTree(`${dir}/r`), readTree(`${dir}/s`));
      await loop.send("quit");
      deepStrictEqual(await loop.exitCode(), 0);
    });
  },
});
