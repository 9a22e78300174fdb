/**
 * Where a run's CPU goes: runs treesync once under `--cpu-prof` (the main thread and every
 * worker are profiled) and prints the self time of each thread, summed by area and by function,
 * as Markdown tables; idle time is left out. Areas are named by the module a function comes from
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
  [/\/walk\.ts$/, "walk: packing, unpacking"],
  [/\/(scan|exclude|workers)\.ts$/, "walk: listing"],
  [/\/record[a-z]*\.ts$/, "record"],
  [/\/order\.ts$/, "merge (order)"],
  [/\/(engine|mirror|plan|needs|linkscope)\.ts$/, "planning"],
  [/\/(run|apply|meta|files|guard|prepare|summary)\.ts$/, "run, apply, own files"],
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

/** Runs one profiled run into `dir`. */
async function profileRun(dir: string, args: string[]): Promise<void> {
  const sync = new URL("../sync.ts", import.meta.url).pathname;
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", "--cpu-prof", `--cpu-prof-dir=${dir}`, "-A", sync, ...args],
    stdout: "inherit",
    stderr: "inherit",
  });
  const { code } = await command.output();
  if (code !== 0) console.error(`treesync exited with ${code}`);
}

function summarize(dir: string, top: number): void {
  const areas = new Map<string, number>();
  const functions = new Map<string, number>();
  const threads: string[] = [];
  const add = (into: Map<string, number>, key: string, ms: number) =>
    into.set(key, (into.get(key) ?? 0) + ms);
  for (const file of [...Deno.readDirSync(dir)].map((entry) => entry.name).sort()) {
    if (!file.endsWith(".cpuprofile")) continue;
    const profile: CpuProfile = JSON.parse(Deno.readTextFileSync(`${dir}/${file}`));
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
  await profileRun(dir, positionals);
  summarize(dir, top);
  console.log(`\nProfiles in ${dir}`);
}
