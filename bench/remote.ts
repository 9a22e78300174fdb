/**
 * `deno task bench --remote`: treesync, rsync and rclone each mirror a local tree into a replica
 * "on another host" through one throwaway sshd on 127.0.0.1 (src/remote/test_sshd.ts), taking
 * turns, on a copy of /usr/share and on 200,000 generated files: first copy, no-op, 1 % change,
 * folder rename and verify. For every command: wall time (write-back of the replica included),
 * CPU of both ends, bytes on the wire each way and peak RSS of both ends.
 *
 * - treesync pushes: `sync.ts SRC 127.0.0.1:DST -e SSH --remote-treesync "FAR deno run … sync.ts"`;
 *   verify is `--verify 127.0.0.1:DST`.
 * - rsync: `rsync -a --delete -e SSH --rsync-path "FAR rsync" SRC/ 127.0.0.1:DST/`; verify is
 *   `rsync -a --delete --checksum --dry-run -i`, which hashes both ends and sends no file data.
 * - rclone: an sftp remote given by `RCLONE_CONFIG_BENCHFAR_*`, `rclone sync --links
 *   --sftp-disable-hashcheck`: by default rclone checks each uploaded file by running `md5sum`
 *   on the far end, one SSH command per file (~0.1 s each here: 56,000 files would take an hour
 *   and a half), where rsync checks its whole-file sum in the stream; size and time decide what
 *   to copy for both. The rename adds `--track-renames --track-renames-strategy modtime,leaf`
 *   (matching by hash would run `md5sum` per file again). Verify is `rclone check --one-way`,
 *   which compares hashes computed on the far end (`md5sum` over ssh) rather than `--download`,
 *   which would bring every file's data over the wire.
 *
 * Measuring: SSH is a wrapper that runs `ssh -E LOG -o LogLevel=VERBOSE …`, and the wire bytes
 * are the client's own count at exit ("Transferred: sent N, received M bytes"): exactly what
 * went through its socket, each way. The client's `/proc/PID/io` is not used: its rchar and wchar
 * add the plain bytes piped from the tool to the socket's, so they count about twice and mix the
 * directions, and read_bytes counts disk reads only. rclone speaks SSH in-process (no ssh
 * child), so for it the count is sshd's, logged at VERBOSE when each connection ends. FAR is a
 * wrapper that runs the far end under `/usr/bin/time` (peak RSS, CPU); sshd's sftp subsystem is
 * wrapped the same way for rclone (its `md5sum` commands are not).
 *
 * ```sh
 * deno task bench --remote --trees usr-share --runs 1
 * deno task bench --remote --tools rsync,rclone --scenarios initial,noop
 * deno task bench --remote --link 100mbit --timeout 600     # behind a 100 Mbit/s link
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { pathExists } from "../src/files.ts";
import { parseRate, shapeLoopback } from "./link.ts";
import { sshdUnavailable, startSshd, type TestSshd } from "../src/remote/test_sshd.ts";
import {
  changeOnePercent,
  ensureTree,
  have,
  inTurn,
  largestFolder,
  median,
  type Sample,
  seconds,
  sh,
  TIMER,
  TREES,
} from "./common.ts";

const SCENARIOS = ["initial", "noop", "change", "rename", "verify"];
const TOOLS = ["treesync", "rsync", "rclone"];
const SFTP_SERVERS = ["/usr/lib/openssh/sftp-server", "/usr/lib/sftp-server"];
const TIME = "/usr/bin/time";
/** How long the counters of a finished command may take to arrive (sshd logs after a close). */
const SETTLE_MS = 15_000;

/** The command line of `--remote`. */
interface Settings {
  trees: string[];
  scenarios: Set<string>;
  tools: string[];
  runs: number;
  dir: string;
  timeoutSeconds: number;
  baseline: string | undefined;
  /** `--link RATE`: loopback shaped to that rate (bench/link.ts). */
  link: string | undefined;
}

function parseSettings(args: string[]): Settings {
  const { values } = parseArgs({
    args,
    options: {
      trees: { type: "string", default: "usr-share,small" },
      runs: { type: "string", default: "3" },
      scenarios: { type: "string", default: SCENARIOS.join(",") },
      tools: { type: "string", default: TOOLS.join(",") },
      dir: { type: "string", default: "/tmp/treesync-bench" },
      timeout: { type: "string", default: "1800" },
      baseline: { type: "string" },
      link: { type: "string" },
    },
  });
  const settings: Settings = {
    trees: values.trees.split(","),
    scenarios: new Set(values.scenarios.split(",")),
    tools: values.tools.split(","),
    runs: Math.max(1, Number(values.runs)),
    dir: values.dir,
    timeoutSeconds: Number(values.timeout),
    baseline: values.baseline,
    link: values.link,
  };
  if (settings.link !== undefined) parseRate(settings.link);
  const check = (given: Iterable<string>, known: string[], what: string) => {
    for (const name of given) {
      if (!known.includes(name)) {
        throw new Error(`Unknown ${what} '${name}': choose from ${known.join(", ")}`);
      }
    }
  };
  check(settings.scenarios, SCENARIOS, "scenario");
  check(settings.tools, TOOLS, "tool");
  check(settings.trees, TREES.map((tree) => tree.name), "tree");
  return settings;
}

// ------------------------------------------------------------------------------------------------
// The meters: the ssh wrapper (wire bytes), the far wrapper (far RSS and CPU), sshd's log
// ------------------------------------------------------------------------------------------------

/** Where the wrappers live and write, and what sshd has logged. */
interface Meters {
  folder: string;
  /** The remote shell the ssh-speaking tools are given: one word, a script. */
  ssh: string;
  /** The far-end prefix: a script that runs its arguments under `/usr/bin/time`, if any. */
  far: string;
  /** Whether the far end is measured (`/usr/bin/time` exists). */
  farMeasured: boolean;
  /** sshd's log lines since the last {@linkcode resetMeters}. */
  sshdLog: string[];
}

/** Quotes a word for `sh`. */
function quote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

function writeScript(path: string, lines: string[]): void {
  Deno.writeTextFileSync(path, ["#!/bin/sh", ...lines, ""].join("\n"));
  Deno.chmodSync(path, 0o755);
}

/** The far wrapper: counts its starts, then runs its arguments under `/usr/bin/time`. */
function writeFarScript(folder: string, measured: boolean): string {
  const far = `${folder}/far`;
  writeScript(far, [
    `echo started >> ${quote(`${folder}/far-started`)}`,
    measured
      ? `exec ${TIME} -a -o ${quote(`${folder}/far-usage`)} -f '%M %U %S' "$@"`
      : 'exec "$@"',
  ]);
  return far;
}

/**
 * The ssh wrapper: the test sshd's client words, logging at VERBOSE to a file of its own (but
 * for `ssh -G`).
 */
function writeSshScript(folder: string, rsh: string[]): string {
  const ssh = `${folder}/ssh`;
  const [program, ...rest] = rsh.filter((word, at) =>
    !(word.startsWith("LogLevel=") || (word === "-o" && rsh[at + 1]?.startsWith("LogLevel=")))
  );
  const words = rest.map(quote).join(" ");
  writeScript(ssh, [
    // `ssh -G` (treesync asks what the configuration sets) connects nowhere: no log to count.
    `case " $* " in *" -G "*) exec ${program} ${words} "$@";; esac`,
    `exec ${program} -E "${folder}/wire/$$.log" -o LogLevel=VERBOSE ${words} "$@"`,
  ]);
  return ssh;
}

/** Starts the one sshd of the bench, its sftp subsystem under the far wrapper. */
async function startMeteredSshd(folder: string): Promise<{ sshd: TestSshd; meters: Meters }> {
  sh(`rm -rf ${quote(folder)}`);
  Deno.mkdirSync(`${folder}/wire`, { recursive: true });
  const farMeasured = pathExists(TIME);
  if (!farMeasured) {
    console.log(`bench: ${TIME} is missing (apt-get install -y time): far ends are not measured`);
  }
  const far = writeFarScript(folder, farMeasured);
  const sftpServer = SFTP_SERVERS.find((path) => pathExists(path));
  const sshdLog: string[] = [];
  const sshd = await startSshd({
    config: [
      "LogLevel VERBOSE",
      ...(sftpServer ? [`Subsystem sftp ${far} ${sftpServer}`] : []),
      "MaxStartups 100",
      "MaxSessions 100",
    ],
    onLogLine: (line) => sshdLog.push(line.trimEnd()),
  });
  const ssh = writeSshScript(folder, sshd.rsh);
  return { sshd, meters: { folder, ssh, far, farMeasured, sshdLog } };
}

/** Clears every meter before a command. */
function resetMeters(meters: Meters): void {
  sh(`rm -f ${quote(meters.folder)}/wire/* ${quote(meters.folder)}/far-*`);
  meters.sshdLog.length = 0;
}

/** Bytes on the wire, from the near end's view. */
interface Wire {
  sent: number;
  received: number;
  /** False when some connection's count never came. */
  complete: boolean;
  /** How many connections there were, and how many of them counted. */
  connections: number;
  counted: number;
}

const TRANSFERRED = /Transferred: sent (\d+), received (\d+) bytes/;

/** The ssh clients' own counts, once every client that started has logged its count. */
async function clientWire(meters: Meters): Promise<Wire | null> {
  const read = () => {
    const logs = [...Deno.readDirSync(`${meters.folder}/wire`)].map((entry) =>
      Deno.readTextFileSync(`${meters.folder}/wire/${entry.name}`)
    );
    const counts = logs.map((log) => TRANSFERRED.exec(log)).filter((match) => match !== null);
    return { logs: logs.length, counts };
  };
  const ready = await settle(() => {
    const { logs, counts } = read();
    return logs > 0 && counts.length === logs;
  });
  const { logs, counts } = read();
  if (logs === 0) return null;
  return {
    sent: counts.reduce((sum, match) => sum + Number(match[1]), 0),
    received: counts.reduce((sum, match) => sum + Number(match[2]), 0),
    complete: ready,
    connections: logs,
    counted: counts.length,
  };
}

/**
 * sshd's counts (sent by the server is received by the client), once every connection opened has
 * ended. A client that sends a disconnect message ends without a count: then incomplete.
 */
async function serverWire(meters: Meters, sockets: SocketCounts): Promise<Wire> {
  const ports = (pattern: RegExp) =>
    meters.sshdLog.map((line) => pattern.exec(line)?.[1]).filter((port) => port !== undefined)
      .map(Number);
  const opened = () => ports(/^Connection from \S+ port (\d+)/);
  // sshd logs "Transferred" just before "Closing connection"; a reset connection logs neither.
  const closed = () =>
    ports(
      /^(?:Closing connection to|Connection reset by|Disconnected from user \S+) \S+ port (\d+)/,
    );
  await settle(() => opened().every((port) => closed().includes(port)));
  const counted = new Set(ports(/^Closing connection to \S+ port (\d+)/));
  const counts = meters.sshdLog.map((line) => TRANSFERRED.exec(line)).filter((match) =>
    match !== null
  );
  const uncounted = opened().filter((port) => !counted.has(port));
  const sampled = uncounted.map((port) => sockets.get(port)).filter((count) => count !== undefined);
  return {
    sent: counts.reduce((sum, match) => sum + Number(match[2]), 0) +
      sampled.reduce((sum, count) => sum + count.sent, 0),
    received: counts.reduce((sum, match) => sum + Number(match[1]), 0) +
      sampled.reduce((sum, count) => sum + count.received, 0),
    complete: sampled.length === uncounted.length,
    connections: opened().length,
    counted: counts.length + sampled.length,
  };
}

/** A connection's own TCP counters (sent, received), by the client's port. */
type SocketCounts = Map<number, { sent: number; received: number }>;

/**
 * Samples the client sockets to sshd's `port` every 100 ms with `ss` while a command runs: the
 * fallback for a connection that ends without sshd's count (reset by a client exiting), which
 * then misses only what it moved in its last 100 ms.
 */
function sampleSockets(port: number): { stop(): Promise<SocketCounts> } {
  const counts: SocketCounts = new Map();
  let running = true;
  const loop = (async () => {
    while (running) {
      const output = await new Deno.Command("ss", {
        args: ["-tinH", "state", "established", `dport = :${port}`],
        stdout: "piped",
        stderr: "null",
      }).output();
      let client = 0;
      for (const line of new TextDecoder().decode(output.stdout).split("\n")) {
        const socket = /^\S.*:(\d+)\s+\S+:\d+\s*$/.exec(line);
        if (socket) client = Number(socket[1]);
        const sent = /bytes_sent:(\d+)/.exec(line)?.[1];
        const received = /bytes_received:(\d+)/.exec(line)?.[1];
        if (client && (sent || received)) {
          counts.set(client, { sent: Number(sent ?? 0), received: Number(received ?? 0) });
        }
      }
      await new Promise((wake) => setTimeout(wake, 100));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return counts;
    },
  };
}

/** The far ends' peak RSS (MiB) and CPU, once every one that started has been reported. */
async function farUsage(meters: Meters): Promise<{ rssMiB: number; cpu: number } | null> {
  const lines = (name: string) => {
    try {
      return Deno.readTextFileSync(`${meters.folder}/${name}`).split("\n");
    } catch {
      return [];
    }
  };
  const usage = () => lines("far-usage").filter((line) => /^\d+ [\d.]+ [\d.]+$/.test(line));
  if (!meters.farMeasured) return null;
  await settle(() => usage().length >= lines("far-started").filter(Boolean).length);
  const rows = usage().map((line) => line.split(" ").map(Number));
  if (rows.length === 0) return null;
  return {
    rssMiB: Math.max(...rows.map((row) => row[0]!)) / 1024,
    cpu: rows.reduce((sum, row) => sum + row[1]! + row[2]!, 0),
  };
}

/** Waits until `done()` holds, up to {@linkcode SETTLE_MS}; whether it came to hold. */
async function settle(done: () => boolean): Promise<boolean> {
  const deadline = performance.now() + SETTLE_MS;
  while (!done()) {
    if (performance.now() > deadline) return false;
    await new Promise((wake) => setTimeout(wake, 20));
  }
  return true;
}

// ------------------------------------------------------------------------------------------------
// Tools
// ------------------------------------------------------------------------------------------------

/** A tool that mirrors a local tree to the far end. */
interface RemoteTool {
  name: string;
  /** The command that mirrors `source` into the far `replica` (or checks it, for `verify`). */
  command(source: string, replica: string, scenario: string): string[];
  /** Its environment, added to the bench's. */
  env?: Record<string, string>;
  /** Whose count of the wire bytes this tool's are. */
  wire: "ssh client" | "sshd";
}

/** The sync task's V8 flags, so near and far treesync run as the task runs it. */
function v8Flags(): string[] {
  const tasks = JSON.parse(Deno.readTextFileSync(new URL("../deno.json", import.meta.url))).tasks;
  return String(tasks.sync).split(/\s+/).filter((word) => word.startsWith("--v8-flags"));
}

/** treesync pushing from the checkout whose entry is `module`; its far end is the same one. */
function treesyncAt(name: string, module: string, meters: Meters): RemoteTool {
  const run = [Deno.execPath(), "run", "--quiet", ...v8Flags(), "-A", module];
  const far = [meters.far, ...run].join(" ");
  return {
    name,
    wire: "ssh client",
    command: (source, replica, scenario) => [
      ...run,
      "-q",
      "-e",
      meters.ssh,
      "--remote-treesync",
      far,
      ...(scenario === "verify" ? ["--verify", `127.0.0.1:${replica}`] : [
        source,
        `127.0.0.1:${replica}`,
      ]),
    ],
  };
}

function rsyncTool(meters: Meters): RemoteTool {
  return {
    name: "rsync",
    wire: "ssh client",
    command: (source, replica, scenario) => [
      "rsync",
      "-a",
      "--delete",
      ...(scenario === "verify" ? ["--checksum", "--dry-run", "-i"] : []),
      "-e",
      meters.ssh,
      `--rsync-path=${meters.far} rsync`,
      `${source}/`,
      `127.0.0.1:${replica}/`,
    ],
  };
}

function rcloneTool(sshd: TestSshd): RemoteTool {
  return {
    name: "rclone",
    wire: "sshd",
    env: {
      RCLONE_CONFIG_BENCHFAR_TYPE: "sftp",
      RCLONE_CONFIG_BENCHFAR_HOST: sshd.host,
      RCLONE_CONFIG_BENCHFAR_PORT: String(sshd.port),
      RCLONE_CONFIG_BENCHFAR_USER: sh("id -un").trim(),
      RCLONE_CONFIG_BENCHFAR_KEY_FILE: `${sshd.folder}/client_key`,
      RCLONE_CONFIG_BENCHFAR_KNOWN_HOSTS_FILE: `${sshd.folder}/known_hosts`,
      RCLONE_CONFIG: "/dev/null",
    },
    command: (source, replica, scenario) =>
      scenario === "verify" ? ["rclone", "check", "--one-way", source, `benchfar:${replica}`] : [
        "rclone",
        "sync",
        "--links",
        "--sftp-disable-hashcheck",
        ...(scenario === "rename"
          ? ["--track-renames", "--track-renames-strategy", "modtime,leaf"]
          : []),
        source,
        `benchfar:${replica}`,
      ],
  };
}

/** The tools asked for that are installed (a missing one is said and skipped). */
function chooseTools(settings: Settings, sshd: TestSshd, meters: Meters): RemoteTool[] {
  const tools: RemoteTool[] = [];
  for (const name of settings.tools) {
    if (name !== "treesync" && !have(name)) {
      console.log(`bench: ${name} is not installed, skipping it (apt-get install -y ${name})`);
    } else if (name === "rclone" && !SFTP_SERVERS.some((path) => pathExists(path))) {
      console.log(
        "bench: no sftp-server, skipping rclone (apt-get install -y openssh-sftp-server)",
      );
    } else if (name === "treesync") {
      tools.push(treesyncAt("treesync", new URL("../sync.ts", import.meta.url).pathname, meters));
    } else tools.push(name === "rsync" ? rsyncTool(meters) : rcloneTool(sshd));
  }
  if (settings.baseline) tools.push(treesyncAt("before", `${settings.baseline}/sync.ts`, meters));
  return tools;
}

// ------------------------------------------------------------------------------------------------
// One measured command
// ------------------------------------------------------------------------------------------------

/** One command through sshd: the near end's {@linkcode Sample}, the wire and the far end. */
interface RemoteSample extends Sample {
  wire: Wire | null;
  farRssMiB: number | null;
  farCpu: number | null;
  /** The last line of the command's stderr when it failed. */
  error?: string;
}

/** The timer's report, or a failed sample when the timer itself did not finish. */
function nearSample(output: Deno.CommandOutput): Sample {
  try {
    return JSON.parse(new TextDecoder().decode(output.stdout));
  } catch {
    return { seconds: 0, writeBack: 0, cpu: 0, rssMiB: 0, code: output.code || 1 };
  }
}

/** Runs one tool's command, timed with the replica's write-back, and reads every meter. */
async function measure(
  context: { meters: Meters; port: number; timeoutSeconds: number },
  tool: RemoteTool,
  command: string[],
  replica: string,
): Promise<RemoteSample> {
  sh("sync");
  resetMeters(context.meters);
  const sockets = tool.wire === "sshd" ? sampleSockets(context.port) : null;
  const output = await new Deno.Command("python3", {
    args: ["-c", TIMER, String(context.timeoutSeconds), replica, ...command],
    env: tool.env ?? {},
    stdout: "piped",
    stderr: "piped",
  }).output();
  const near = nearSample(output);
  const wire = sockets
    ? await serverWire(context.meters, await sockets.stop())
    : await clientWire(context.meters);
  const far = await farUsage(context.meters);
  const sample: RemoteSample = {
    ...near,
    wire,
    farRssMiB: far?.rssMiB ?? null,
    farCpu: far?.cpu ?? null,
  };
  if (near.code !== 0) {
    const lines = new TextDecoder().decode(output.stderr).trim().split("\n");
    sample.error = lines.findLast((line) => line.trim() !== "")?.trim() ?? "";
  }
  return sample;
}

// ------------------------------------------------------------------------------------------------
// Scenarios
// ------------------------------------------------------------------------------------------------

interface Row {
  tree: string;
  scenario: string;
  tool: string;
  sample: RemoteSample;
}

/** What the scenarios of one tree share. */
interface RemoteBench {
  tree: string;
  source: string;
  base: string;
  tools: RemoteTool[];
  runs: number;
  meters: Meters;
  /** sshd's port. */
  port: number;
  timeoutSeconds: number;
  rows: Row[];
}

function replicaOf(bench: RemoteBench, tool: RemoteTool): string {
  return `${bench.base}/remote-${tool.name}`;
}

function mebibytes(bytes: number): string {
  return bytes >= 1 << 30
    ? `${(bytes / (1 << 30)).toFixed(2)} GiB`
    : bytes >= 1 << 20
    ? `${(bytes / (1 << 20)).toFixed(1)} MiB`
    : `${(bytes / 1024).toFixed(1)} KiB`;
}

function wireText(wire: Wire | null): string {
  if (!wire) return "–";
  const missing = wire.complete
    ? ""
    : ` (${wire.connections - wire.counted} of ${wire.connections} connections uncounted)`;
  return `↑${mebibytes(wire.sent)} ↓${mebibytes(wire.received)}${missing}`;
}

function say(scenario: string, tool: string, sample: RemoteSample): void {
  const far = sample.farRssMiB === null
    ? "far –"
    : `far CPU ${seconds(sample.farCpu!)} ${sample.farRssMiB.toFixed(0)} MiB`;
  console.log(
    `  ${scenario.padEnd(8)} ${tool.padEnd(9)} ${seconds(sample.seconds).padStart(8)}` +
      `  CPU ${seconds(sample.cpu)} ${sample.rssMiB.toFixed(0)} MiB, ${far}, wire ${
        wireText(sample.wire)
      }` + (sample.error === undefined ? "" : `  FAILED (exit ${sample.code}): ${sample.error}`),
  );
}

/** One repetition: each tool in its turn, timed and metered. */
async function round(bench: RemoteBench, scenario: string, run: number): Promise<void> {
  for (const tool of inTurn(bench.tools, run)) {
    const replica = replicaOf(bench, tool);
    const sample = await measure(
      bench,
      tool,
      tool.command(bench.source, replica, scenario),
      replica,
    );
    bench.rows.push({ tree: bench.tree, scenario, tool: tool.name, sample });
    say(scenario, tool.name, sample);
  }
}

/** Brings every tool's replica up to date, untimed (made first where missing). */
async function catchUp(bench: RemoteBench, onlyMissing: boolean): Promise<void> {
  for (const tool of bench.tools) {
    const replica = replicaOf(bench, tool);
    if (onlyMissing && pathExists(replica)) continue;
    const sample = await measure(bench, tool, tool.command(bench.source, replica, "sync"), replica);
    if (sample.error !== undefined) console.log(`  (${tool.name} catching up: ${sample.error})`);
  }
}

async function benchInitial(bench: RemoteBench): Promise<void> {
  for (let run = 0; run < bench.runs; run++) {
    for (const tool of bench.tools) sh(`rm -rf ${quote(replicaOf(bench, tool))}`);
    await round(bench, "initial", run);
  }
}

/** A folder renamed, and renamed back on the next run. */
async function benchRename(bench: RemoteBench, folder: string): Promise<void> {
  let renamed = false;
  for (let run = 0; run < bench.runs; run++) {
    const [from, to] = renamed ? [`${folder}-renamed`, folder] : [folder, `${folder}-renamed`];
    Deno.renameSync(`${bench.source}/${from}`, `${bench.source}/${to}`);
    renamed = !renamed;
    await round(bench, "rename", run);
  }
  if (renamed) {
    Deno.renameSync(`${bench.source}/${folder}-renamed`, `${bench.source}/${folder}`);
    await catchUp(bench, false);
  }
}

async function benchScenario(bench: RemoteBench, scenario: string, folder: string) {
  if (scenario === "initial") return await benchInitial(bench);
  await catchUp(bench, true);
  if (scenario === "rename") return await benchRename(bench, folder);
  for (let run = 0; run < bench.runs; run++) {
    if (scenario === "change") changeOnePercent(bench.source, run);
    await round(bench, scenario, run);
  }
}

// ------------------------------------------------------------------------------------------------
// Report
// ------------------------------------------------------------------------------------------------

/** The medians (peaks for RSS) of one tool's runs of one scenario. */
interface Summary {
  runs: number;
  seconds: number;
  cpu: number;
  farCpu: number | null;
  rssMiB: number;
  farRssMiB: number | null;
  wire: Wire | null;
  error?: string;
}

function summarize(samples: RemoteSample[]): Summary {
  const failed = samples.find((sample) => sample.error !== undefined);
  const far = samples.filter((sample) => sample.farRssMiB !== null);
  const wires = samples.map((sample) => sample.wire).filter((wire) => wire !== null);
  return {
    runs: samples.length,
    seconds: median(samples.map((sample) => sample.seconds)),
    cpu: median(samples.map((sample) => sample.cpu)),
    farCpu: far.length ? median(far.map((sample) => sample.farCpu!)) : null,
    rssMiB: Math.max(...samples.map((sample) => sample.rssMiB)),
    farRssMiB: far.length ? Math.max(...far.map((sample) => sample.farRssMiB!)) : null,
    wire: wires.length
      ? {
        sent: median(wires.map((wire) => wire.sent)),
        received: median(wires.map((wire) => wire.received)),
        complete: wires.every((wire) => wire.complete),
        connections: median(wires.map((wire) => wire.connections)),
        counted: median(wires.map((wire) => wire.counted)),
      }
      : null,
    ...(failed ? { error: `exit ${failed.code}: ${failed.error}` } : {}),
  };
}

function wireTotal(summary: Summary | undefined): number | null {
  return summary?.wire ? summary.wire.sent + summary.wire.received : null;
}

function ratio(mine: number | null | undefined, theirs: number | null | undefined): string {
  return mine != null && theirs != null && theirs > 0 ? `${(mine / theirs).toFixed(3)}×` : "–";
}

/** The issue's targets for treesync against rsync in one scenario: met or missed, and why. */
function target(scenario: string, mine: Summary, rsync: Summary | undefined, treeBytes: number) {
  if (mine.error !== undefined) return "–";
  const wall = rsync ? mine.seconds / rsync.seconds : NaN;
  const bytes = (wireTotal(mine) ?? NaN) / (wireTotal(rsync) ?? NaN);
  const verdict = (met: boolean, text: string) => `${met ? "met" : "missed"}: ${text}`;
  if (scenario === "rename") {
    // Each half on its own: the time and the bytes are two targets.
    return [
      verdict(wall <= 0.05, "≤ 0.05× rsync's time"),
      verdict(bytes <= 0.01, "≤ 1 % of its bytes"),
    ].join("; ");
  }
  if (scenario === "verify") {
    const share = (wireTotal(mine) ?? Infinity) / treeBytes;
    return verdict(share < 0.01, `no file data: wire ${(share * 100).toFixed(2)} % of the tree`);
  }
  return verdict(wall <= 1, "≤ 1.0× rsync's time");
}

/** One Markdown row per tree, scenario and tool, treesync's with the issue's targets. */
function report(rows: Row[], treeBytes: Map<string, number>): string {
  const lines = [
    "| tree | scenario | tool | runs | wall | CPU near | CPU far | wire ↑ near→far | wire ↓ far→near " +
    "| RSS near | RSS far | wall ÷ rsync | wire ÷ rsync | target |",
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
  ];
  for (const [key, group] of Map.groupBy(rows, (row) => `${row.tree}|${row.scenario}`)) {
    const [tree, scenario] = key.split("|") as [string, string];
    const byTool = Map.groupBy(group, (row) => row.tool);
    const summaries = new Map(
      [...byTool].map(([tool, mine]) => [tool, summarize(mine.map((row) => row.sample))]),
    );
    const rsync = summaries.get("rsync");
    for (const [tool, summary] of summaries) {
      const cells = summary.error !== undefined
        ? [`FAILED (${summary.error.replaceAll("|", "\\|")})`, "", "", "", "", "", "", "", ""]
        : [
          seconds(summary.seconds),
          seconds(summary.cpu),
          summary.farCpu === null ? "–" : seconds(summary.farCpu),
          summary.wire ? mebibytes(summary.wire.sent) + (summary.wire.complete ? "" : " ?") : "–",
          summary.wire ? mebibytes(summary.wire.received) : "–",
          `${summary.rssMiB.toFixed(0)} MiB`,
          summary.farRssMiB === null ? "–" : `${summary.farRssMiB.toFixed(0)} MiB`,
          ratio(summary.seconds, rsync?.seconds),
          ratio(wireTotal(summary), wireTotal(rsync)),
        ];
      const goal = tool === "treesync" || tool === "before"
        ? target(scenario, summary, rsync, treeBytes.get(tree) ?? 0)
        : "";
      lines.push(
        `| ${tree} | ${scenario} | ${tool} | ${summary.runs} | ${cells.join(" | ")} | ${goal} |`,
      );
    }
  }
  return lines.join("\n");
}

function firstLine(script: string): string {
  try {
    return sh(script).split("\n")[0]!.trim();
  } catch {
    return "?";
  }
}

function versions(dir: string): string {
  return [
    `Deno ${Deno.version.deno}`,
    firstLine("rsync --version"),
    firstLine("rclone --version"),
    firstLine("ssh -V 2>&1"),
    `${navigator.hardwareConcurrency} cores`,
    `load ${firstLine("cut -d' ' -f1-3 /proc/loadavg")}`,
    `${firstLine(`mkdir -p '${dir}' && df --output=fstype '${dir}' | tail -1`)} at ${dir}`,
  ].join(", ");
}

// ------------------------------------------------------------------------------------------------
// Main
// ------------------------------------------------------------------------------------------------

/** Runs every scenario of one tree for every tool. */
async function benchTree(
  name: string,
  context: Omit<RemoteBench, "tree" | "source" | "base">,
  settings: Settings,
): Promise<number> {
  const spec = TREES.find((tree) => tree.name === name)!;
  const base = `${settings.dir}/${name}`;
  const source = ensureTree(spec, base);
  const bytes = Number(sh(`du -sb ${quote(source)}`).split("\t")[0]);
  console.log(`bench --remote: ${name}: ${spec.describe} (${mebibytes(bytes)}), in ${source}`);
  const folder = spec.renameFolder ?? largestFolder(source);
  const bench: RemoteBench = { ...context, tree: name, source, base };
  for (const scenario of SCENARIOS) {
    if (settings.scenarios.has(scenario)) await benchScenario(bench, scenario, folder);
  }
  return bytes;
}

/** `deno task bench --remote [options]`: the whole remote bench, reported and saved. */
export async function benchRemote(args: string[]): Promise<void> {
  const settings = parseSettings(args);
  const unavailable = sshdUnavailable();
  if (unavailable !== null) {
    console.error(`bench --remote: cannot start a test sshd: ${unavailable}`);
    Deno.exit(1);
  }
  const started = new Date();
  const link = settings.link === undefined ? null : shapeLoopback(settings.link);
  const header = `bench --remote ${started.toISOString()}: ${versions(settings.dir)}; ` +
    `${settings.runs} runs, tools in turn, one sshd on 127.0.0.1` +
    (link ? `, loopback shaped to ${link.rate} (both directions share it)` : "");
  console.log(header);
  const { sshd, meters } = await startMeteredSshd(`${settings.dir}/remote-meters`);
  const rows: Row[] = [];
  const treeBytes = new Map<string, number>();
  try {
    const tools = chooseTools(settings, sshd, meters);
    const context = {
      tools,
      runs: settings.runs,
      meters,
      port: sshd.port,
      timeoutSeconds: settings.timeoutSeconds,
      rows,
    };
    for (const tree of settings.trees) {
      treeBytes.set(tree, await benchTree(tree, context, settings));
    }
  } finally {
    await sshd.stop();
    link?.remove();
  }
  const table = report(rows, treeBytes);
  const ended = `took ${((Date.now() - started.getTime()) / 60000).toFixed(1)} min`;
  const notes =
    "Wire: bytes through the SSH socket each way (ssh's own count; sshd's for rclone);" +
    " ? = a connection's count never came. CPU near includes the ssh client; CPU far and RSS far" +
    " are the far tool's (rsync's server, treesync's far end, rclone's sftp-server) under " +
    "/usr/bin/time, sshd itself not included.";
  console.log(`\n${table}\n\n${notes}\n\n${ended}`);
  Deno.mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  const stamp = started.toISOString().replace(/[:.]/g, "-") + (link ? `-${link.rate}` : "");
  Deno.writeTextFileSync(
    new URL(`./results/${stamp}-remote.md`, import.meta.url),
    `${header}\n\n${table}\n\n${notes}\n\n${ended}\n`,
  );
  Deno.writeTextFileSync(
    new URL(`./results/${stamp}-remote.json`, import.meta.url),
    JSON.stringify(rows),
  );
}
