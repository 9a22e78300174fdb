/**
 * What the benchmarks share (`bench.ts` on one host, `remote.ts` through sshd): the timer of one
 * command, the trees and how they are made, and the 1 % change.
 *
 * @module
 */

import { pathExists } from "../src/files.ts";

/** One timed command: wall seconds (write-back included), CPU seconds, peak RSS in MiB. */
export interface Sample {
  seconds: number;
  /** The part of `seconds` spent in `sync -f` on the replica after the command. */
  writeBack: number;
  /** User + system time of the command and every process it waited for. */
  cpu: number;
  /** Peak RSS of the largest process of the command. */
  rssMiB: number;
  code: number;
}

// getrusage(RUSAGE_CHILDREN) sums user and system time over the whole waited-for process tree
// (rsync's forked receiver, treesync's worker threads) and gives the largest peak RSS, which no
// shell builtin does. `sync -f` runs inside the same timer, so its wait is the tool's.
export const TIMER = `import json, resource, subprocess, sys, time
timeout, replica, command = float(sys.argv[1]), sys.argv[2], sys.argv[3:]
start = time.perf_counter()
try:
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
    code, err = done.returncode, done.stderr
except subprocess.TimeoutExpired as expired:
    code, err = 124, (expired.stderr or b"") + b" timed out"
copied = time.perf_counter()
if subprocess.run(["sync", "-f", replica], stderr=subprocess.DEVNULL).returncode != 0:
    subprocess.run(["sync"])
end = time.perf_counter()
use = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stderr.write(err.decode(errors="replace")[-2000:])
print(json.dumps({"seconds": end - start, "writeBack": end - copied,
    "cpu": use.ru_utime + use.ru_stime, "rssMiB": use.ru_maxrss / 1024, "code": code}))`;

/** Whether `tool` is on PATH. */
export function have(tool: string): boolean {
  try {
    return new Deno.Command("sh", { args: ["-c", `command -v ${tool}`] }).outputSync().success;
  } catch {
    return false;
  }
}

/** Runs a shell script to its end; its output, or an error with its message. */
export function sh(script: string): string {
  const done = new Deno.Command("sh", { args: ["-c", script] }).outputSync();
  if (!done.success) throw new Error(`failed: ${script}\n${new TextDecoder().decode(done.stderr)}`);
  return new TextDecoder().decode(done.stdout);
}

/** The tools in the order of repetition `run`: ABC, BCA, CAB, … */
export function inTurn<T>(list: T[], run: number): T[] {
  const shift = run % list.length;
  return [...list.slice(shift), ...list.slice(0, shift)];
}

/** A tree to benchmark on: how to make it, and what to do with it. */
export interface TreeSpec {
  name: string;
  /** Also the mark of a made tree: a tree made from another description is made again. */
  describe: string;
  make(source: string): void;
  /** A folder of the tree to rename (the largest top folder if not given). */
  renameFolder?: string;
  /** A file the `watch` scenario changes. */
  watchFile?: string;
  scenarios: string[];
}

/** Cheap, varied bytes: a random block with a counter stamped in, so no two files are equal. */
export function content(size: number, seed: number): Uint8Array {
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

/** Makes `tops` × `folders` folders of `files` files each under `root`. */
export function makeFiles(
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

const EVERY = ["initial", "noop", "change", "rename", "checksum", "verify", "newdirs", "adopt"];
/** Every tree the benches know, by name. */
export const TREES: TreeSpec[] = [
  {
    name: "tiny",
    describe: "2,000 generated files of 1-16 KB",
    make: (source) =>
      makeFiles(source, {
        tops: 2,
        folders: 10,
        files: 100,
        size: (i) => 1024 + (i * 7919) % 15360,
      }),
    renameFolder: "top1",
    watchFile: "top1/dir5/file50.dat",
    scenarios: [...EVERY, "resume", "watch"],
  },
  {
    name: "usr-share",
    describe: "a copy of /usr/share",
    make: (source) => sh(`cp -a /usr/share '${source}'`),
    scenarios: [...EVERY, "resume"],
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
    scenarios: [...EVERY, "resume"],
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
    scenarios: ["initial", "noop", "rename", "checksum", "verify", "adopt", "resume"],
  },
  {
    name: "million",
    describe: "1,000,000 generated files of 16 bytes",
    make: (source) => makeFiles(source, { tops: 10, folders: 100, files: 1000, size: () => 16 }),
    watchFile: "top5/dir50/file500.dat",
    scenarios: ["initial-once", "noop", "newdirs", "watch"],
  },
];

/** The median of `values` (not empty). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Seconds for a table: `1.23 s`, `12.3 s`. */
export function seconds(value: number): string {
  return `${value.toFixed(value < 10 ? 2 : 1)} s`;
}

/** Every file under `root`, sorted, leaving out the top folder `skipTop`. */
export function listFiles(root: string, skipTop = ""): string[] {
  const files: string[] = [];
  const walk = (folder: string) => {
    let items: Deno.DirEntry[];
    try {
      items = [...Deno.readDirSync(folder)];
    } catch {
      return; // Renamed or removed by the tool while we looked.
    }
    for (const item of items) {
      const path = `${folder}/${item.name}`;
      if (item.isDirectory && !(folder === root && item.name === skipTop)) walk(path);
      else if (item.isFile) files.push(path);
    }
  };
  walk(root);
  return files.sort();
}

/** The largest top folder of `source`, by `du`. */
export function largestFolder(source: string): string {
  const out = sh(`du -s '${source}'/*/ | sort -n | tail -1`);
  return out.trim().split("\t")[1]!.replace(/\/$/, "").slice(source.length + 1);
}

/** Changes, adds and deletes a third of 1 % of the files each (at most 1,000 each). */
export function changeOnePercent(source: string, run: number): void {
  const files = listFiles(source);
  const share = Math.min(1000, Math.max(1, Math.round(files.length / 300)));
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

/**
 * Makes `spec`'s tree in `base/source` unless the one there was made from the same description
 * (`base/.made`); returns the source folder.
 */
export function ensureTree(spec: TreeSpec, base: string): string {
  const source = `${base}/source`;
  const made = `${base}/.made`;
  if (!pathExists(made) || Deno.readTextFileSync(made).split("\n")[0] !== spec.describe) {
    console.log(`bench: making ${spec.name} (${spec.describe}) in ${source}`);
    sh(`rm -rf '${base}'`);
    Deno.mkdirSync(base, { recursive: true });
    spec.make(source);
    Deno.writeTextFileSync(made, `${spec.describe}\n${new Date().toISOString()}\n`);
  }
  return source;
}
