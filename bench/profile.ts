/**
 * Where a run's CPU goes: runs treesync once under `--cpu-prof` (the main thread and every
 * worker are profiled) and prints the self time of each thread, summed by area and by function,
 * as Markdown tables. Areas are named by the module a function comes from (see `AREAS`).
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

/** Areas by the file a function is in (first match wins); V8's own entries by name. */
const AREAS: Array<[RegExp, string]> = [
  [/\(garbage collector\)/, "GC"],
  [/\(program\)|\(idle\)|\(root\)/, "runtime (program, idle)"],
  [/walk\.ts|scan\.ts|exclude\.ts|workers\.ts/, "walk and unpacking"],
  [/recordfile|record\.ts|nextrecord\.ts/, "record"],
  [/order\.ts/, "merge (order)"],
  [/engine\.ts|mirror\.ts|plan\.ts|needs\.ts/, "planning"],
  [/run\.ts|apply\.ts|meta\.ts|files\.ts|guard|prepare\.ts/, "run, apply, own files"],
  [/ext:|node:|deno:/, "Deno and node built-ins"],
];

function areaOf(node: ProfileNode): string {
  const { functionName, url } = node.callFrame;
  const where = url === "" ? functionName : url;
  for (const [pattern, area] of AREAS) if (pattern.test(where)) return area;
  return url === "" ? "V8 (no script)" : "other";
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
  for (const file of [...Deno.readDirSync(dir)].map((entry) => entry.name).sort()) {
    if (!file.endsWith(".cpuprofile")) continue;
    const profile: CpuProfile = JSON.parse(Deno.readTextFileSync(`${dir}/${file}`));
    const thread = /worker-\d+/.exec(file)?.[0] ?? "main";
    const busy = selfTimes(profile, areaOf);
    busy.delete("runtime (program, idle)");
    const ms = [...busy.values()].reduce((sum, time) => sum + time, 0);
    threads.push(`${thread} ${ms.toFixed(0)} ms`);
    for (const [area, time] of selfTimes(profile, areaOf)) {
      const key = thread === "main" ? area : `${area} (workers)`;
      areas.set(key, (areas.get(key) ?? 0) + time);
    }
    for (const [name, time] of selfTimes(profile, nameOf)) {
      const key = thread === "main" ? name : `${name} (workers)`;
      functions.set(key, (functions.get(key) ?? 0) + time);
    }
  }
  console.log(`Threads, busy self time: ${threads.join(", ")}\n`);
  console.log(table("area", areas, top) + "\n");
  console.log(table("function", functions, top));
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
