/**
 * Benchmarks treesync side by side with rsync, rclone and cp in one run, on a copy of
 * /usr/share and on generated trees, and prints a Markdown table of median wall times, ratios
 * and peak RSS. Installs nothing: `apt-get install -y rsync rclone` (a missing tool is skipped
 * with a line saying so).
 *
 * ```sh
 * deno task bench                                  # every tree, 3 runs each
 * deno task bench --trees usr-share,small --runs 5 --dir /var/tmp/bench
 * deno task bench --trees small --scenarios initial,noop
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { pathExists } from "../src/files.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    trees: { type: "string", default: "usr-share,small,large,tiny" },
    runs: { type: "string", default: "3" },
    scenarios: { type: "string", default: "initial,noop,change,rename,checksum,verify" },
    dir: { type: "string", default: "/tmp/treesync-bench" },
  },
});
const RUNS = Number(flags.runs);
const SCENARIOS = new Set(flags.scenarios!.split(","));
const BENCH_DIR = flags.dir!;
const SYNC_MODULE = new URL("../sync.ts", import.meta.url).pathname;
const SYNC_FLAGS: string[] = JSON.parse(
  Deno.readTextFileSync(new URL("../deno.json", import.meta.url)),
).tasks.sync.split(/\s+/).filter((word: string) =>
  word.startsWith("--allow-") || word.startsWith("--v8-flags")
);

/** One timed command: wall seconds and the peak RSS of its largest process, in MiB. */
interface Timing {
  seconds: number;
  rssMiB: number;
  code: number;
}

// getrusage(RUSAGE_CHILDREN) gives the peak RSS of the command, which no shell builtin does.
const TIMER = `import resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
wall = time.perf_counter() - start
sys.stderr.write(done.stderr.decode(errors="replace")[-2000:])
print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.returncode)`;

async function timed(command: string[]): Promise<Timing> {
  // Every tool starts with nothing left to write back: dirty pages from making a tree or from
  // the previous tool would otherwise slow down whoever comes next.
  sh("sync");
  const output = await new Deno.Command("python3", {
    args: ["-c", TIMER, ...command],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const [seconds, rssKiB, code] = new TextDecoder().decode(output.stdout).trim().split(" ")
    .map(Number);
  if (code !== 0) {
    const error = new TextDecoder().decode(output.stderr).trim().split("\n").slice(-3).join(" | ");
    console.error(`  ! ${command.slice(0, 3).join(" ")} … exited ${code}: ${error}`);
  }
  return { seconds: seconds!, rssMiB: rssKiB! / 1024, code: code! };
}

function have(tool: string): boolean {
  try {
    return new Deno.Command("sh", { args: ["-c", `command -v ${tool}`] }).outputSync().success;
  } catch {
    return false;
  }
}

function sh(script: string): void {
  const done = new Deno.Command("sh", { args: ["-c", script] }).outputSync();
  if (!done.success) throw new Error(`failed: ${script}\n${new TextDecoder().decode(done.stderr)}`);
}

// ------------------------------------------------------------------------------------------------
// Tools
// ------------------------------------------------------------------------------------------------

interface Tool {
  name: string;
  /** The command that mirrors `source` into `replica`. */
  sync(source: string, replica: string, scenario: string): string[];
}

const treesync: Tool = {
  name: "treesync",
  sync: (source, replica, scenario) => [
    Deno.execPath(),
    "run",
    "--quiet",
    ...SYNC_FLAGS,
    SYNC_MODULE,
    "-q",
    ...(scenario === "checksum" ? ["--checksum"] : []),
    ...(scenario === "verify" ? ["--verify", replica] : [source, replica]),
  ],
};
const allYardsticks: Tool[] = [
  {
    name: "rsync",
    sync: (source, replica, scenario) => [
      "rsync",
      "-a",
      "--delete",
      ...(scenario === "checksum" ? ["--checksum"] : []),
      `${source}/`,
      `${replica}/`,
    ],
  },
  {
    name: "rclone",
    sync: (source, replica, scenario) => [
      "rclone",
      "sync",
      "--links",
      ...(scenario === "rename" ? ["--track-renames"] : []),
      ...(scenario === "checksum" ? ["--checksum"] : []),
      source,
      replica,
    ],
  },
  { name: "cp", sync: (source, replica) => ["cp", "-a", source, replica] },
];
const yardsticks = allYardsticks.filter((tool) => {
  if (have(tool.name)) return true;
  console.log(
    `bench: ${tool.name} is not installed, skipping it (apt-get install -y ${tool.name})`,
  );
  return false;
});
const tools = [treesync, ...yardsticks];

// ------------------------------------------------------------------------------------------------
// Trees
// ------------------------------------------------------------------------------------------------

interface TreeSpec {
  name: string;
  describe: string;
  make(source: string): void;
  /** A folder of the tree to rename (at least 100 MB where the tree allows). */
  renameFolder?: string;
  scenarios: string[];
}

/** Cheap, varied bytes: a random block with a counter stamped in, so no two files are equal. */
function content(size: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(size);
  crypto.getRandomValues(bytes.subarray(0, Math.min(size, 65536)));
  for (let at = 65536; at < size; at += 65536) {
    bytes.copyWithin(at, 0, Math.min(65536, size - at));
  }
  new DataView(bytes.buffer).setUint32(0, seed >>> 0);
  for (let at = 4096; at + 4 <= size; at += 4096) {
    new DataView(bytes.buffer).setUint32(at, (seed * 2654435761 + at) >>> 0);
  }
  return bytes;
}

function makeFiles(
  root: string,
  options: { tops: number; folders: number; files: number; size: (i: number) => number },
) {
  let n = 0;
  for (let t = 0; t < options.tops; t++) {
    for (let f = 0; f < options.folders; f++) {
      const folder = `${root}/top${t}/dir${f}`;
      Deno.mkdirSync(folder, { recursive: true });
      for (let i = 0; i < options.files; i++, n++) {
        Deno.writeFileSync(`${folder}/file${i}.dat`, content(options.size(n), n));
      }
    }
  }
}

const TREES: TreeSpec[] = [
  {
    name: "usr-share",
    describe: "a copy of /usr/share",
    make: (source) => sh(`cp -a /usr/share '${source}'`),
    scenarios: ["initial", "noop", "change", "rename", "checksum", "verify"],
  },
  {
    name: "small",
    describe: "200,000 generated files of 1-16 KB",
    // 10 top folders of 100 folders of 200 files: a top folder is ~170 MB.
    make: (source) =>
      makeFiles(source, {
        tops: 10,
        folders: 100,
        files: 200,
        size: (i) => 1024 + (i * 7919) % 15360,
      }),
    renameFolder: "top3",
    scenarios: ["initial", "noop", "change", "rename", "checksum", "verify"],
  },
  {
    name: "large",
    describe: "4 files of 1 GB",
    make: (source) => {
      Deno.mkdirSync(`${source}/data`, { recursive: true });
      for (let i = 0; i < 4; i++) {
        using file = Deno.openSync(`${source}/data/big${i}.bin`, { write: true, create: true });
        for (let mib = 0; mib < 1000; mib++) file.writeSync(content(1 << 20, i * 1000 + mib));
      }
    },
    renameFolder: "data",
    scenarios: ["initial", "noop", "rename", "checksum", "verify"],
  },
  {
    name: "tiny",
    describe: "1,000,000 tiny files",
    make: (source) => makeFiles(source, { tops: 10, folders: 100, files: 1000, size: () => 16 }),
    scenarios: ["initial-once", "noop", "watch"],
  },
];

// ------------------------------------------------------------------------------------------------
// Scenarios
// ------------------------------------------------------------------------------------------------

interface Row {
  tree: string;
  scenario: string;
  tool: string;
  seconds: number;
  rssMiB: number;
}

const rows: Row[] = [];

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

async function measure(
  tree: string,
  scenario: string,
  tool: Tool,
  runs: number,
  prepare: (run: number) => string[] | void,
): Promise<void> {
  const timings: Timing[] = [];
  for (let run = 0; run < runs; run++) {
    const command = prepare(run) ??
      tool.sync(`${BENCH_DIR}/${tree}/source`, replicaOf(tree, tool), scenario);
    timings.push(await timed(command));
  }
  const row = {
    tree,
    scenario,
    tool: tool.name,
    seconds: median(timings.map((t) => t.seconds)),
    rssMiB: Math.max(...timings.map((t) => t.rssMiB)),
  };
  rows.push(row);
  console.log(
    `  ${scenario.padEnd(9)} ${tool.name.padEnd(9)} ${row.seconds.toFixed(3)} s  ${
      row.rssMiB.toFixed(0)
    } MiB`,
  );
}

function replicaOf(tree: string, tool: Tool): string {
  return `${BENCH_DIR}/${tree}/replica-${tool.name}`;
}

/** Changes, adds and deletes a third of 1 % of the files each, differently for each run. */
function changeOnePercent(source: string, run: number): void {
  const files: string[] = [];
  const walk = (folder: string) => {
    for (const item of Deno.readDirSync(folder)) {
      const path = `${folder}/${item.name}`;
      if (item.isDirectory) walk(path);
      else if (item.isFile) files.push(path);
    }
  };
  walk(source);
  files.sort();
  const share = Math.max(1, Math.round(files.length / 300));
  for (let i = 0; i < share; i++) {
    const pick = (offset: number) => files[(i * 7919 + run * 104729 + offset) % files.length]!;
    try {
      Deno.writeFileSync(pick(0), content(2048, run * 1_000_003 + i));
      Deno.removeSync(pick(13));
      Deno.writeFileSync(`${pick(29)}.added-${run}-${i}`, content(4096, run * 7 + i));
    } catch {
      // Picked twice, or already gone: one file fewer changed.
    }
  }
}

const mirrors = () => tools.filter((tool) => tool.name !== "cp");

async function benchTree(spec: TreeSpec): Promise<void> {
  const base = `${BENCH_DIR}/${spec.name}`;
  const source = `${base}/source`;
  if (!pathExists(`${base}/.made`)) {
    console.log(`bench: making ${spec.name} (${spec.describe}) in ${source}`);
    sh(`rm -rf '${base}'`);
    Deno.mkdirSync(base, { recursive: true });
    spec.make(source);
    Deno.writeTextFileSync(`${base}/.made`, new Date().toISOString());
  }
  console.log(`bench: ${spec.name}: ${spec.describe}`);
  const fresh = (tool: Tool) => sh(`rm -rf '${replicaOf(spec.name, tool)}'`);

  for (const scenario of spec.scenarios) {
    if (!SCENARIOS.has(scenario.replace("-once", ""))) continue;
    if (scenario === "initial" || scenario === "initial-once") {
      const runs = scenario === "initial" ? RUNS : 1;
      for (const tool of tools) {
        await measure(spec.name, "initial", tool, runs, () => fresh(tool));
      }
      for (const tool of tools.filter((t) => t.name === "cp")) fresh(tool);
    } else if (scenario === "noop") {
      for (const tool of mirrors()) await measure(spec.name, "noop", tool, RUNS, () => {});
    } else if (scenario === "change") {
      for (let run = 0; run < RUNS; run++) {
        changeOnePercent(source, run);
        for (const tool of mirrors()) await measure(spec.name, `change-${run}`, tool, 1, () => {});
      }
    } else if (scenario === "rename") {
      const folder = spec.renameFolder ?? largestFolder(source);
      for (let run = 0; run < RUNS; run++) {
        const [from, to] = run % 2 === 0
          ? [folder, `${folder}-renamed`]
          : [`${folder}-renamed`, folder];
        Deno.renameSync(`${source}/${from}`, `${source}/${to}`);
        for (const tool of mirrors()) {
          await measure(
            spec.name,
            `rename-${run}`,
            tool,
            1,
            () => tool.sync(source, replicaOf(spec.name, tool), "rename"),
          );
        }
      }
      if (RUNS % 2 === 1) {
        Deno.renameSync(`${source}/${folder}-renamed`, `${source}/${folder}`);
        for (const tool of mirrors()) {
          await timed(tool.sync(source, replicaOf(spec.name, tool), "noop"));
        }
      }
    } else if (scenario === "checksum") {
      // treesync's first --checksum run hashes what the record does not know; the second is
      // the one the target is about.
      await timed(treesync.sync(source, replicaOf(spec.name, treesync), "checksum"));
      for (const tool of mirrors().filter((t) => t.name !== "rclone")) {
        await measure(spec.name, "checksum", tool, RUNS, () => {});
      }
    } else if (scenario === "watch") {
      await measureWatch(spec.name, source);
    } else if (scenario === "verify") {
      await measure(spec.name, "verify", treesync, RUNS, () => {});
      const bytes = Number(
        new TextDecoder().decode(
          new Deno.Command("du", {
            args: ["-sb", "--exclude=.treesync", replicaOf(spec.name, treesync)],
          })
            .outputSync().stdout,
        ).split("\t")[0],
      );
      const row = rows.at(-1)!;
      console.log(`  verify throughput ${(bytes / row.seconds / 1e9).toFixed(2)} GB/s`);
      rows.push({ ...row, scenario: "verify-GB/s", seconds: bytes / row.seconds / 1e9 });
    }
  }
}

/**
 * The loop with `--watch` on a synced tree: once its first full run is done, one pass of the
 * interval loop (`now`), then one file changed in the source and the time until the replica has
 * it (the quiet period, 2 s by default, included). Peak RSS from the process's `VmHWM`.
 */
async function measureWatch(tree: string, source: string): Promise<void> {
  const replica = replicaOf(tree, treesync);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...SYNC_FLAGS, SYNC_MODULE, "--watch", source, replica],
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const pump = (async () => {
    for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) stderr += text;
  })();
  const runsDone = () => (stderr.match(/^(?:run|watch run) \d+: /gm) ?? []).length;
  const until = async (done: () => boolean, what: string) => {
    const deadline = performance.now() + 1_800_000;
    while (!done()) {
      if (performance.now() > deadline) throw new Error(`bench: watch: no ${what}:\n${stderr}`);
      await new Promise((wake) => setTimeout(wake, 5));
    }
  };
  const writer = child.stdin.getWriter();
  const peakMiB = () => {
    // Deno lets only -A read /proc; `cat` may.
    const status = new TextDecoder().decode(
      new Deno.Command("cat", { args: [`/proc/${child.pid}/status`] }).outputSync().stdout,
    );
    return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
  };
  try {
    await until(() => runsDone() >= 1, "first run");
    let start = performance.now();
    await writer.write(new TextEncoder().encode("now\n"));
    await until(() => runsDone() >= 2, "pass after 'now'");
    rows.push({
      tree,
      scenario: "loop pass",
      tool: "treesync",
      seconds: (performance.now() - start) / 1000,
      rssMiB: peakMiB(),
    });
    const file = `${source}/top5/dir50/file500.dat`;
    const text = `changed ${Date.now()}`;
    start = performance.now();
    Deno.writeTextFileSync(file, text);
    const mirrored = `${replica}/top5/dir50/file500.dat`;
    await until(() => {
      try {
        return Deno.readTextFileSync(mirrored) === text;
      } catch {
        return false;
      }
    }, "change mirrored");
    rows.push({
      tree,
      scenario: "watch: 1 file changed",
      tool: "treesync",
      seconds: (performance.now() - start) / 1000,
      rssMiB: peakMiB(),
    });
    for (const row of rows.slice(-2)) {
      console.log(
        `  ${row.scenario.padEnd(22)} treesync ${row.seconds.toFixed(3)} s  ${
          row.rssMiB.toFixed(0)
        } MiB`,
      );
    }
  } finally {
    await writer.write(new TextEncoder().encode("quit\n")).catch(() => {});
    await writer.close().catch(() => {});
    await child.status;
    await pump;
  }
}

function largestFolder(source: string): string {
  const out = new TextDecoder().decode(
    new Deno.Command("sh", { args: ["-c", `du -s '${source}'/* | sort -n | tail -1`] }).outputSync()
      .stdout,
  );
  return out.trim().split("\t")[1]!.slice(source.length + 1);
}

// ------------------------------------------------------------------------------------------------
// Report
// ------------------------------------------------------------------------------------------------

function report(): string {
  const lines = [
    `| tree | scenario | treesync | ${yardsticks.map((t) => t.name).join(" | ")} | ratio to ${
      yardsticks.filter((t) => t.name !== "cp").map((t) => t.name).join(" / ")
    } | treesync RSS |`,
    `|---|---|---:|${yardsticks.map(() => "---:").join("|")}|---:|---:|`,
  ];
  const keyed = new Map<string, Row[]>();
  for (const row of rows) {
    const scenario = row.scenario.replace(/-\d+$/, "");
    const key = `${row.tree}|${scenario}`;
    keyed.set(key, [...(keyed.get(key) ?? []), { ...row, scenario }]);
  }
  for (const [key, group] of keyed) {
    const [tree, scenario] = key.split("|");
    const seconds = (tool: string) => {
      const mine = group.filter((row) => row.tool === tool).map((row) => row.seconds);
      return mine.length ? median(mine) : NaN;
    };
    if (scenario === "verify-GB/s") {
      lines.push(
        `| ${tree} | verify throughput | ${seconds("treesync").toFixed(2)} GB/s |${
          yardsticks.map(() => "").join(" |")
        } | | |`,
      );
      continue;
    }
    const mine = seconds("treesync");
    const ratios = yardsticks.filter((t) => t.name !== "cp").map((t) => {
      const theirs = seconds(t.name);
      return Number.isNaN(theirs) ? "–" : (mine / theirs).toFixed(2);
    });
    const rss = Math.max(
      ...group.filter((row) => row.tool === "treesync").map((row) => row.rssMiB),
    );
    const cells = yardsticks.map((t) => {
      const value = seconds(t.name);
      const theirRss = Math.max(
        ...group.filter((row) => row.tool === t.name).map((row) => row.rssMiB),
      );
      return Number.isNaN(value) ? "–" : `${value.toFixed(2)} s (${theirRss.toFixed(0)} MiB)`;
    });
    lines.push(
      `| ${tree} | ${scenario} | ${mine.toFixed(2)} s | ${cells.join(" | ")} | ${
        ratios.join(" / ")
      } | ${rss.toFixed(0)} MiB |`,
    );
  }
  return lines.join("\n");
}

const started = new Date();
console.log(
  `bench: ${started.toISOString()}, ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}, ${RUNS} runs, data in ${BENCH_DIR}`,
);
for (const name of flags.trees!.split(",")) {
  const spec = TREES.find((tree) => tree.name === name);
  if (!spec) {
    throw new Error(`Unknown tree '${name}': choose from ${TREES.map((t) => t.name).join(", ")}`);
  }
  await benchTree(spec);
}
const table = report();
console.log(`\n${table}`);
Deno.mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
Deno.writeTextFileSync(
  new URL(`./results/${started.toISOString().replace(/[:.]/g, "-")}.md`, import.meta.url),
  `bench ${started.toISOString()}, ${navigator.hardwareConcurrency} cores\n\n${table}\n`,
);
