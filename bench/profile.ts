/**
 * Where a run's CPU goes: runs treesync once under `--cpu-prof` (the main thread and every
 * worker are profiled) and prints the self time of each thread, summed by area and by function,
 * as Markdown tables; idle time is left out. It also prints the CPU time each kind of thread
 * used (main, walker workers, V8's own helper threads), from `/proc` (Linux; Deno reads `/proc`
 * only with `--allow-all`, which the task gives, as treesync runs under `-A` here anyway). Areas are named by the module a function comes from
 * (see `AREAS`). Self time is sampled wall time on the thread: on a busy machine it runs above
 * the CPU time `/usr/bin/time` reports, so read the shares, not the milliseconds.
 *
 * ```sh
 * deno task profile SOURCE REPLICA            # profiles one run (a no-op when nothing changed)
 * deno task profile --top 40 SOURCE REPLICA   # more functions
 * deno task profile --read DIR                # only summarizes the profiles already in DIR
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";

const { values: flags, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    top: { type: "string", default: "25" },
    dir: { type: "string" },
    read: { type: "string" },
  },
});

/** One node of V8's `.cpuprofile` call tree. */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

/** V8's `.cpuprofile` JSON, as far as it is read here. */
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** What is not work: the thread waiting (a worker waits for its first message in an op). */
const IDLE = new Set(["(idle)", "(program)", "(root)", "op_worker_maybe_wait_for_debugger"]);

/** Areas by the file a function is in (first match wins). */
const AREAS: Array<[RegExp, string]> = [
  [/\/(walk|stream|walker)\.ts$/, "walk: packing, unpacking"],
  [/\/(scan|list|exclude|workers)\.ts$/, "walk: listing"],
  [/\/record[a-z]*\.ts$/, "record"],
  [/\/order\.ts$/, "merge (order)"],
  [/\/(engine|mirror|plan|needs|linkscope|changed|endplan|scope)\.ts$/, "planning"],
  [
    /\/(run[a-z]*|apply|meta|files|guard|prepare|summary|context|control|sides|store|tree[a-z]*|place|stage|attributes|trash)\.ts$/,
    "run, apply, own files",
  ],
  [/\/(log|output|format|terminal)\.ts$|logtape/, "log and output"],
  [/^(ext:|node:|deno:)|\/(ext|node)\//, "Deno and node built-ins"],
];

function areaOf(node: ProfileNode): string {
  const { functionName, url } = node.callFrame;
  if (IDLE.has(functionName)) return "idle";
  if (functionName === "(garbage collector)") return "GC";
  if (functionName.startsWith("op_")) return "Deno ops (system calls)";
  for (const [pattern, area] of AREAS) if (pattern.test(url)) return area;
  return url === "" ? "Deno and node built-ins" : "other";
}

function nameOf(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const file = url.split("/").pop() ?? "";
  return file === "" ? functionName : `${functionName || "(anonymous)"} ${file}:${lineNumber + 1}`;
}

/** Self time in ms by key, from each sample's time delta. */
function selfTimes(profile: CpuProfile, keyOf: (node: ProfileNode) => string): Map<string, number> {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const times = new Map<string, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]!);
    if (node === undefined) continue;
    const key = keyOf(node);
    times.set(key, (times.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  }
  return times;
}

function table(title: string, times: Map<string, number>, top: number): string {
  const total = [...times.values()].reduce((sum, ms) => sum + ms, 0);
  const rows = [...times].sort((a, b) => b[1] - a[1]).slice(0, top);
  const lines = [`| ${title} | ms | share |`, "|---|---:|---:|"];
  for (const [key, ms] of rows) {
    lines.push(`| ${key} | ${ms.toFixed(0)} | ${(100 * ms / total).toFixed(1)}% |`);
  }
  return lines.join("\n");
}

/**
 * Runs one profiled run into `dir`, and returns the CPU seconds each thread kind used (from
 * `/proc`, read every 10 ms while it runs, so a thread that ends keeps its last reading).
 */
async function profileRun(dir: string, args: string[]): Promise<Map<string, number>> {
  const sync = new URL("../sync.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--cpu-prof", `--cpu-prof-dir=${dir}`, "-A", sync, ...args],
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const seen = new Map<string, { kind: string; seconds: number }>();
  let done = false;
  const status = child.status.then((status) => (done = true, status));
  while (!done) {
    readThreads(child.pid, seen);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const { code } = await status;
  if (code !== 0) console.error(`treesync exited with ${code}`);
  const byKind = new Map<string, number>();
  for (const { kind, seconds } of seen.values()) {
    byKind.set(kind, (byKind.get(kind) ?? 0) + seconds);
  }
  return byKind;
}

/** Each thread's user + system CPU seconds so far, by thread id, with its kind. */
function readThreads(pid: number, seen: Map<string, { kind: string; seconds: number }>): void {
  const TICKS_PER_SECOND = 100;
  try {
    for (const { name: tid } of Deno.readDirSync(`/proc/${pid}/task`)) {
      try {
        const stat = Deno.readTextFileSync(`/proc/${pid}/task/${tid}/stat`);
        const comm = Deno.readTextFileSync(`/proc/${pid}/task/${tid}/comm`).trim();
        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        const seconds = (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
        const kind = tid === String(pid)
          ? "main"
          : comm.startsWith("v8:Prof")
          ? "profiler"
          : comm.replace(/-\d+$/, "").replace(/\s.*/, "");
        seen.set(tid, { kind, seconds });
      } catch {
        // The thread ended between the listing and the read.
      }
    }
  } catch {
    // The process ended.
  }
}

function summarize(dir: string, top: number): void {
  const areas = new Map<string, number>();
  const functions = new Map<string, number>();
  const threads: string[] = [];
  const add = (into: Map<string, number>, key: string, ms: number) =>
    into.set(key, (into.get(key) ?? 0) + ms);
  for (const file of [...Deno.readDirSync(dir)].map((entry) => entry.name).sort()) {
    if (!file.endsWith(".cpuprofile")) continue;
    let profile: CpuProfile;
    try {
      profile = JSON.parse(Deno.readTextFileSync(`${dir}/${file}`));
    } catch {
      // A worker ended by terminate() may leave its profile cut short.
      console.log(`(${file} is incomplete: left out)`);
      continue;
    }
    const where = /worker-\d+/.test(file) ? "workers" : "main";
    const byArea = selfTimes(profile, areaOf);
    byArea.delete("idle");
    const busy = [...byArea.values()].reduce((sum, ms) => sum + ms, 0);
    threads.push(`${/worker-\d+/.exec(file)?.[0] ?? "main"} ${busy.toFixed(0)} ms`);
    for (const [area, ms] of byArea) add(areas, `${area} (${where})`, ms);
    for (const [name, ms] of selfTimes(profile, nameOf)) {
      if (!IDLE.has(name)) add(functions, `${name} (${where})`, ms);
    }
  }
  console.log(`Busy self time by thread: ${threads.join(", ")}\n`);
  console.log(table("area (thread)", areas, top) + "\n");
  console.log(table("function (thread)", functions, top));
}

const top = Number(flags.top);
if (flags.read !== undefined) {
  summarize(flags.read, top);
} else {
  if (positionals.length < 2) {
    console.error(
      "Usage: deno task profile [--top N] [--dir DIR] SOURCE REPLICA [treesync options]",
    );
    Deno.exit(2);
  }
  const dir = flags.dir ?? Deno.makeTempDirSync({ prefix: "treesync-profile-" });
  const cpu = await profileRun(dir, positionals);
  const total = [...cpu.values()].reduce((sum, seconds) => sum + seconds, 0);
  const parts = [...cpu].sort((a, b) => b[1] - a[1]).map(([kind, s]) => `${kind} ${s.toFixed(2)}`);
  console.log(
    `\nCPU seconds by thread (under the profiler): ${parts.join(", ")}; total ${
      total.toFixed(2)
    }\n`,
  );
  summarize(dir, top);
  console.log(`\nProfiles in ${dir}`);
}
