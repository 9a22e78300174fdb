/**
 * Benchmarks treesync side by side with rsync and rclone (and `cp -a` for a first copy) in one
 * run, on a copy of /usr/share and on generated trees, and prints a Markdown table: for every
 * tool the median wall time, CPU time (user + system of its whole process tree) and peak RSS,
 * and treesync's ratios to the others. Installs nothing: `apt-get install -y rsync rclone` (a
 * missing tool is skipped with a line saying so).
 *
 * Fair by construction: each tool mirrors into its own replica; the tools take turns in a
 * rotating order (ABC, BCA, CAB, …) so none always runs on the coolest cache; every timed
 * command starts after a `sync` and includes its own write-back (`sync -f` on the replica's file
 * system, timed as part of it), so no tool pays for another's dirty pages.
 *
 * ```sh
 * deno task bench --trees tiny --scenarios initial,noop --runs 1   # a minute: does it work
 * deno task bench --trees usr-share                                 # every scenario, 3 runs
 * deno task bench --trees small,large --runs 5 --dir /var/tmp/bench
 * deno task bench --trees usr-share --scenarios noop --baseline /tmp/before   # before/after
 * deno task bench --remote --trees usr-share --runs 1     # through sshd on 127.0.0.1: remote.ts
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { pathExists } from "../src/files.ts";
import {
  changeOnePercent,
  content,
  ensureTree,
  have,
  inTurn,
  largestFolder,
  listFiles,
  median,
  type Sample,
  seconds,
  sh,
  TIMER,
  TREES,
  type TreeSpec,
} from "./common.ts";

// `--remote`: the same tools through one sshd on 127.0.0.1 instead (bench/remote.ts).
if (Deno.args.includes("--remote")) {
  const { benchRemote } = await import("./remote.ts");
  await benchRemote(Deno.args.filter((arg) => arg !== "--remote"));
  Deno.exit(0);
}

const ALL_SCENARIOS = "initial,noop,change,rename,checksum,verify,newdirs,adopt,resume,watch";
const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    trees: { type: "string", default: "usr-share,small,large,million" },
    runs: { type: "string", default: "3" },
    scenarios: { type: "string", default: ALL_SCENARIOS },
    dir: { type: "string", default: "/tmp/treesync-bench" },
    "max-seconds": { type: "string", default: "900" },
    timeout: { type: "string", default: "1800" },
    baseline: { type: "string" },
  },
});
const RUNS = Math.max(1, Number(flags.runs));
const SCENARIOS = new Set(flags.scenarios!.split(","));
for (const scenario of SCENARIOS) {
  if (!ALL_SCENARIOS.split(",").includes(scenario)) {
    throw new Error(`Unknown scenario '${scenario}': choose from ${ALL_SCENARIOS}`);
  }
}
const BENCH_DIR = flags.dir!;
/** A scenario starts no new repetition once it has used this many seconds (one always runs). */
const SCENARIO_BUDGET_S = Number(flags["max-seconds"]);
/** Any one timed command is stopped after this many seconds (and shows as exit 124). */
const COMMAND_TIMEOUT_S = Number(flags.timeout);
const SYNC_MODULE = new URL("../sync.ts", import.meta.url).pathname;
const SYNC_FLAGS: string[] = JSON.parse(
  Deno.readTextFileSync(new URL("../deno.json", import.meta.url)),
).tasks.sync.split(/\s+/).filter((word: string) =>
  word.startsWith("--allow-") || word.startsWith("--v8-flags")
);

// ------------------------------------------------------------------------------------------------
// One timed command
// ------------------------------------------------------------------------------------------------

/** Runs `command`, then writes back `replica`'s file system, and measures both as one. */
async function timed(command: string[], replica: string): Promise<Sample> {
  // Every tool starts with nothing left to write back: dirty pages from making a tree or from
  // the previous tool would otherwise slow down whoever comes next.
  sh("sync");
  const output = await new Deno.Command("python3", {
    args: ["-c", TIMER, String(COMMAND_TIMEOUT_S), replica, ...command],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const sample: Sample = JSON.parse(new TextDecoder().decode(output.stdout));
  if (sample.code !== 0) {
    const error = new TextDecoder().decode(output.stderr).trim().split("\n").slice(-3).join(" | ");
    console.error(`  ! ${command.slice(0, 3).join(" ")} … exited ${sample.code}: ${error}`);
  }
  return sample;
}

// ------------------------------------------------------------------------------------------------
// Tools
// ------------------------------------------------------------------------------------------------

interface Tool {
  name: string;
  /** The command that mirrors `source` into `replica` (or checks it, for `verify`). */
  sync(source: string, replica: string, scenario: string): string[];
}

/** treesync from the checkout whose entry is `module`. */
function treesyncAt(name: string, module: string): Tool {
  return {
    name,
    sync: (source, replica, scenario) => [
      Deno.execPath(),
      "run",
      "--quiet",
      ...SYNC_FLAGS,
      module,
      "-q",
      ...(scenario === "checksum" ? ["--checksum"] : []),
      ...(scenario === "verify" ? ["--verify", replica] : [source, replica]),
    ],
  };
}
const treesync = treesyncAt("treesync", SYNC_MODULE);
/**
 * `--baseline DIR`: treesync from another checkout (say, `git worktree add DIR main~3`) as one
 * more tool, so a change is measured before and after in the same run, in turn with the others.
 */
const baseline = flags.baseline ? treesyncAt("before", `${flags.baseline}/sync.ts`) : null;
const rsync: Tool = {
  name: "rsync",
  sync: (source, replica, scenario) => [
    "rsync",
    // verify: a dry run comparing content, which reads both sides.
    scenario === "verify" ? "-anc" : "-a",
    "--delete",
    ...(scenario === "checksum" ? ["--checksum"] : []),
    `${source}/`,
    `${replica}/`,
  ],
};
const rclone: Tool = {
  name: "rclone",
  sync: (source, replica, scenario) =>
    scenario === "verify" ? ["rclone", "check", "--one-way", source, replica] : [
      "rclone",
      "sync",
      "--links",
      ...(scenario === "rename" ? ["--track-renames"] : []),
      ...(scenario === "checksum" ? ["--checksum"] : []),
      source,
      replica,
    ],
};
/** A floor for the first copy only: no comparison, no record. */
const cp: Tool = { name: "cp", sync: (source, replica) => ["cp", "-a", source, replica] };

function installed(tool: Tool): boolean {
  if (have(tool.name)) return true;
  console.log(
    `bench: ${tool.name} is not installed, skipping it (apt-get install -y ${tool.name})`,
  );
  return false;
}
const yardsticks = [...(baseline ? [baseline] : []), ...[rsync, rclone, cp].filter(installed)];
/** The tools that mirror: every scenario but the first copy compares these. */
const mirrors = [treesync, ...yardsticks.filter((tool) => tool !== cp)];

// ------------------------------------------------------------------------------------------------
// Samples and repetitions
// ------------------------------------------------------------------------------------------------

interface Row {
  tree: string;
  scenario: string;
  tool: string;
  sample: Sample;
}

const rows: Row[] = [];

/** What every scenario of one tree works on. */
interface Bench {
  spec: TreeSpec;
  source: string;
}

function replicaOf(tree: string, tool: Tool): string {
  return `${BENCH_DIR}/${tree}/replica-${tool.name}`;
}

function fresh(bench: Bench, tool: Tool): void {
  sh(`rm -rf '${replicaOf(bench.spec.name, tool)}'`);
}

function record(bench: Bench, scenario: string, tool: Tool, sample: Sample): void {
  rows.push({ tree: bench.spec.name, scenario, tool: tool.name, sample });
  console.log(
    `  ${scenario.padEnd(9)} ${tool.name.padEnd(9)} ${seconds(sample.seconds).padStart(8)}` +
      ` (write-back ${seconds(sample.writeBack)})  CPU ${seconds(sample.cpu)}  ` +
      `${sample.rssMiB.toFixed(0)} MiB`,
  );
}

/** One repetition: each tool in its turn mirrors `source` into its replica, timed. */
async function round(
  bench: Bench,
  options: { scenario: string; tools: Tool[]; run: number; mode?: string },
): Promise<void> {
  for (const tool of inTurn(options.tools, options.run)) {
    const replica = replicaOf(bench.spec.name, tool);
    const command = tool.sync(bench.source, replica, options.mode ?? options.scenario);
    record(bench, options.scenario, tool, await timed(command, replica));
  }
}

/** Runs `body` for each repetition, starting none past the scenario's time budget. */
async function repeat(
  scenario: string,
  body: (run: number) => Promise<void>,
  runs = RUNS,
): Promise<void> {
  const start = performance.now();
  for (let run = 0; run < runs; run++) {
    if (run > 0 && (performance.now() - start) / 1000 > SCENARIO_BUDGET_S) {
      console.log(`  ${scenario}: ${run} of ${runs} runs, its ${SCENARIO_BUDGET_S} s are up`);
      return;
    }
    await body(run);
  }
}

/** Makes every mirror's replica a copy of the source, untimed, where it is missing. */
async function ensureReplicas(bench: Bench): Promise<void> {
  for (const tool of mirrors) {
    const replica = replicaOf(bench.spec.name, tool);
    if (!pathExists(replica)) await timed(tool.sync(bench.source, replica, "initial"), replica);
  }
}

/** Brings every mirror's replica up to date with the source, untimed. */
async function catchUp(bench: Bench): Promise<void> {
  for (const tool of mirrors) {
    const replica = replicaOf(bench.spec.name, tool);
    await timed(tool.sync(bench.source, replica, "noop"), replica);
  }
}

// ------------------------------------------------------------------------------------------------
// Scenarios
// ------------------------------------------------------------------------------------------------

/** The first copy into an empty replica, `cp -a` beside the mirrors as a floor. */
async function benchInitial(bench: Bench, runs: number): Promise<void> {
  const tools = [...mirrors, ...yardsticks.filter((tool) => tool === cp)];
  await repeat("initial", async (run) => {
    for (const tool of tools) fresh(bench, tool);
    await round(bench, { scenario: "initial", tools, run });
  }, runs);
  fresh(bench, cp);
}

/** A folder renamed, and renamed back on the next run (rclone with `--track-renames`). */
async function benchRename(bench: Bench): Promise<void> {
  const folder = bench.spec.renameFolder ?? largestFolder(bench.source);
  let renamed = false;
  await repeat("rename", async (run) => {
    const [from, to] = renamed ? [`${folder}-renamed`, folder] : [folder, `${folder}-renamed`];
    Deno.renameSync(`${bench.source}/${from}`, `${bench.source}/${to}`);
    renamed = !renamed;
    await round(bench, { scenario: "rename", tools: mirrors, run });
  });
  if (renamed) {
    Deno.renameSync(`${bench.source}/${folder}-renamed`, `${bench.source}/${folder}`);
    await catchUp(bench);
  }
}

/** A second content-compared run (treesync's first `--checksum` run hashes fresh copies). */
async function benchChecksum(bench: Bench): Promise<void> {
  const replica = replicaOf(bench.spec.name, treesync);
  await timed(treesync.sync(bench.source, replica, "checksum"), replica);
  await repeat("checksum", (run) => round(bench, { scenario: "checksum", tools: mirrors, run }));
}

/** treesync `--verify` (replica against its record) beside `rsync -anc` and `rclone check`. */
async function benchVerify(bench: Bench): Promise<void> {
  await repeat("verify", (run) => round(bench, { scenario: "verify", tools: mirrors, run }));
  const replica = replicaOf(bench.spec.name, treesync);
  const bytes = Number(sh(`du -sb --exclude=.treesync '${replica}'`).split("\t")[0]);
  const mine = rows.filter((row) =>
    row.tree === bench.spec.name && row.scenario === "verify" && row.tool === "treesync"
  );
  const rate = bytes / median(mine.map((row) => row.sample.seconds)) / 1e9;
  console.log(`  verify throughput ${rate.toFixed(2)} GB/s`);
}

/** 3,000 new folders of one file each under one existing folder, after a first sync. */
async function benchNewDirs(bench: Bench): Promise<void> {
  const parent = `${bench.source}/${bench.spec.renameFolder ?? largestFolder(bench.source)}`;
  const made: string[] = [];
  await repeat("newdirs", async (run) => {
    for (let i = 0; i < 3000; i++) {
      const folder = `${parent}/new-${run}-${i}`;
      Deno.mkdirSync(folder);
      Deno.writeFileSync(`${folder}/file.dat`, content(1024, run * 3000 + i));
      made.push(folder);
    }
    await round(bench, { scenario: "newdirs", tools: mirrors, run });
  });
  for (const folder of made) Deno.removeSync(folder, { recursive: true });
  await catchUp(bench);
}

/** A replica made by `cp -a`, then each tool's first run over it (an exact copy). */
async function benchAdopt(bench: Bench): Promise<void> {
  await repeat("adopt", async (run) => {
    for (const tool of mirrors) {
      fresh(bench, tool);
      sh(`cp -a '${bench.source}' '${replicaOf(bench.spec.name, tool)}'`);
    }
    await round(bench, { scenario: "adopt", tools: mirrors, run });
  });
}

/** Sizes of the source's files by relative path: a replica file counts once it has its size. */
function sizesOf(source: string): Map<string, number> {
  return new Map(
    listFiles(source).map((path) => [path.slice(source.length), Deno.lstatSync(path).size]),
  );
}

/** How many replica files are complete (a temporary or half-written one is not). */
function completeFiles(replica: string, sizes: Map<string, number>): number {
  let complete = 0;
  for (const path of listFiles(replica, ".treesync")) {
    const size = sizes.get(path.slice(replica.length));
    try {
      if (size !== undefined && Deno.lstatSync(path).size === size) complete++;
    } catch {
      // Renamed or removed by the tool while we looked.
    }
  }
  return complete;
}

/**
 * Starts `tool`'s first copy and stops it with SIGTERM once half the source's files are complete
 * in the replica (untimed). Returns how many files were complete when it was stopped, or null if it finished first.
 */
async function copyHalf(
  bench: Bench,
  tool: Tool,
  sizes: Map<string, number>,
): Promise<number | null> {
  const half = Math.ceil(sizes.size / 2);
  const replica = replicaOf(bench.spec.name, tool);
  const child = new Deno.Command(tool.sync(bench.source, replica, "initial")[0]!, {
    args: tool.sync(bench.source, replica, "initial").slice(1),
    stdout: "null",
    stderr: "null",
  }).spawn();
  let exited = false;
  const status = child.status.then(() => exited = true);
  const deadline = performance.now() + COMMAND_TIMEOUT_S * 1000;
  while (!exited && performance.now() < deadline) {
    if (pathExists(replica) && completeFiles(replica, sizes) >= half) break;
    await new Promise((wake) => setTimeout(wake, 20));
  }
  if (exited) return null;
  child.kill("SIGTERM");
  await status;
  return completeFiles(replica, sizes);
}

/** A first copy stopped at half way by each tool, then each tool finishing its own. */
async function benchResume(bench: Bench): Promise<void> {
  const sizes = sizesOf(bench.source);
  await repeat("resume", async (run) => {
    for (const tool of inTurn(mirrors, run)) {
      fresh(bench, tool);
      sh("sync");
      const complete = await copyHalf(bench, tool, sizes);
      console.log(
        complete === null
          ? `  resume: ${tool.name} finished before it could be stopped at half way`
          : `  resume: ${tool.name} stopped with ${complete} of ${sizes.size} files complete`,
      );
    }
    await round(bench, { scenario: "resume", tools: mirrors, run, mode: "initial" });
  });
}

/** User + system seconds of a running process so far, from `/proc` (through `cat`: Deno lets
 * only -A read `/proc`). */
function processCpu(pid: number): number {
  const stat = sh(`cat /proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(sh("getconf CLK_TCK").trim());
  return (Number(fields[11]) + Number(fields[12])) / ticks;
}

function processPeakMiB(pid: number): number {
  const status = sh(`cat /proc/${pid}/status`);
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

/**
 * The loop with `--watch` on a synced tree: once its first full run is done, one pass of the
 * interval loop (`now`), then one file changed in the source and the time until the replica has
 * it (the quiet period, 2 s by default, included). CPU and peak RSS are the loop process's own.
 */
async function benchWatch(bench: Bench): Promise<void> {
  const replica = replicaOf(bench.spec.name, treesync);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...SYNC_FLAGS, SYNC_MODULE, "--watch", bench.source, replica],
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
    const deadline = performance.now() + COMMAND_TIMEOUT_S * 1000;
    while (!done()) {
      if (performance.now() > deadline) throw new Error(`bench: watch: no ${what}:\n${stderr}`);
      await new Promise((wake) => setTimeout(wake, 5));
    }
  };
  const writer = child.stdin.getWriter();
  const sampleSince = (start: number, cpu: number): Sample => ({
    seconds: (performance.now() - start) / 1000,
    writeBack: 0,
    cpu: processCpu(child.pid) - cpu,
    rssMiB: processPeakMiB(child.pid),
    code: 0,
  });
  try {
    await until(() => runsDone() >= 1, "first run");
    let [start, cpu] = [performance.now(), processCpu(child.pid)];
    await writer.write(new TextEncoder().encode("now\n"));
    await until(() => runsDone() >= 2, "pass after 'now'");
    record(bench, "loop pass", treesync, sampleSince(start, cpu));
    const file = bench.spec.watchFile!;
    const text = `changed ${Date.now()}`;
    [start, cpu] = [performance.now(), processCpu(child.pid)];
    Deno.writeTextFileSync(`${bench.source}/${file}`, text);
    await until(() => {
      try {
        return Deno.readTextFileSync(`${replica}/${file}`) === text;
      } catch {
        return false;
      }
    }, "change mirrored");
    record(bench, "watch: 1 file changed", treesync, sampleSince(start, cpu));
  } finally {
    await writer.write(new TextEncoder().encode("quit\n")).catch(() => {});
    await writer.close().catch(() => {});
    await child.status;
    await pump;
  }
  await catchUp(bench);
}

async function benchScenario(bench: Bench, scenario: string): Promise<void> {
  if (scenario === "initial" || scenario === "initial-once") {
    return benchInitial(bench, scenario === "initial" ? RUNS : 1);
  }
  await ensureReplicas(bench);
  if (scenario === "noop") {
    await repeat("noop", (run) => round(bench, { scenario: "noop", tools: mirrors, run }));
  } else if (scenario === "change") {
    await repeat("change", (run) => {
      changeOnePercent(bench.source, run);
      return round(bench, { scenario: "change", tools: mirrors, run });
    });
  } else if (scenario === "rename") await benchRename(bench);
  else if (scenario === "checksum") await benchChecksum(bench);
  else if (scenario === "verify") await benchVerify(bench);
  else if (scenario === "newdirs") await benchNewDirs(bench);
  else if (scenario === "adopt") await benchAdopt(bench);
  else if (scenario === "resume") await benchResume(bench);
  else if (scenario === "watch") await benchWatch(bench);
}

async function benchTree(spec: TreeSpec): Promise<void> {
  const source = ensureTree(spec, `${BENCH_DIR}/${spec.name}`);
  const files = listFiles(source).length;
  console.log(`bench: ${spec.name}: ${spec.describe} (${files} files), in ${source}`);
  for (const scenario of spec.scenarios) {
    if (SCENARIOS.has(scenario.replace("-once", ""))) {
      await benchScenario({ spec, source }, scenario);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Report
// ------------------------------------------------------------------------------------------------

interface Summary {
  seconds: number;
  cpu: number;
  rssMiB: number;
}

function summarize(group: Row[], tool: string): Summary | undefined {
  const mine = group.filter((row) => row.tool === tool).map((row) => row.sample);
  if (mine.length === 0) return undefined;
  return {
    seconds: median(mine.map((sample) => sample.seconds)),
    cpu: median(mine.map((sample) => sample.cpu)),
    rssMiB: Math.max(...mine.map((sample) => sample.rssMiB)),
  };
}

function cell(summary: Summary | undefined): string {
  if (!summary) return "–";
  return `${seconds(summary.seconds)}, CPU ${seconds(summary.cpu)}, ${
    summary.rssMiB.toFixed(0)
  } MiB`;
}

function ratios(mine: Summary | undefined, others: (Summary | undefined)[], of: keyof Summary) {
  return others.map((theirs) =>
    mine && theirs && theirs[of] > 0 ? (mine[of] / theirs[of]).toFixed(2) : "–"
  ).join(" / ");
}

/** One Markdown row per tree and scenario: each tool's medians, and treesync's ratios. */
function report(): string {
  const others = mirrors.filter((tool) => tool !== treesync).map((tool) => tool.name);
  const columns = ["treesync", ...yardsticks.map((tool) => tool.name)];
  const versus = others.join(" / ");
  const lines = [
    `| tree | scenario | runs | ${
      columns.join(" | ")
    } | wall ratio to ${versus} | CPU ratio | RSS ratio |`,
    `|---|---|---:|${columns.map(() => "---").join("|")}|---:|---:|---:|`,
  ];
  const keyed = Map.groupBy(rows, (row) => `${row.tree}|${row.scenario}`);
  for (const [key, group] of keyed) {
    const [tree, scenario] = key.split("|");
    const mine = summarize(group, "treesync");
    const theirs = others.map((name) => summarize(group, name));
    const runs = group.filter((row) => row.tool === "treesync").length;
    lines.push(
      `| ${tree} | ${scenario} | ${runs} | ${
        columns.map((name) => cell(summarize(group, name)))
          .join(" | ")
      } | ${ratios(mine, theirs, "seconds")} | ${ratios(mine, theirs, "cpu")} | ${
        ratios(mine, theirs, "rssMiB")
      } |`,
    );
  }
  return lines.join("\n");
}

function versions(): string {
  const first = (script: string) => {
    try {
      return sh(script).split("\n")[0]!.trim();
    } catch {
      return "?";
    }
  };
  return [
    `Deno ${Deno.version.deno}`,
    ...yardsticks.filter((tool) => tool !== cp).map((tool) => first(`${tool.name} --version`)),
    `${navigator.hardwareConcurrency} cores`,
    `load ${first("cut -d' ' -f1-3 /proc/loadavg")}`,
    `${
      first(`mkdir -p '${BENCH_DIR}' && df --output=fstype '${BENCH_DIR}' | tail -1`)
    } at ${BENCH_DIR}`,
  ].join(", ");
}

const started = new Date();
const header = `bench ${started.toISOString()}: ${versions()}; ${RUNS} runs, tools in turn`;
console.log(header);
for (const name of flags.trees!.split(",")) {
  const spec = TREES.find((tree) => tree.name === name);
  if (!spec) {
    throw new Error(`Unknown tree '${name}': choose from ${TREES.map((t) => t.name).join(", ")}`);
  }
  await benchTree(spec);
}
const table = report();
const ended = `took ${((Date.now() - started.getTime()) / 60000).toFixed(1)} min`;
console.log(`\n${table}\n\n${ended}`);
Deno.mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
const stamp = started.toISOString().replace(/[:.]/g, "-");
Deno.writeTextFileSync(
  new URL(`./results/${stamp}.md`, import.meta.url),
  `${header}\n\n${table}\n\n${ended}\n`,
);
Deno.writeTextFileSync(new URL(`./results/${stamp}.json`, import.meta.url), JSON.stringify(rows));
