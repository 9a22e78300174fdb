/**
 * Measures streamed copies: two 256 MiB files (random bytes, and log-like text) copied by the
 * local writer from a `serve_main.ts` subprocess over a pipe, with and without `-z`, next to
 * the same copy from a tree on this host through the copy workers; each run's files removed
 * and the disk synced before the next. Not imported by anything: the figures behind the
 * design notes of streamed copies.
 *
 * ```sh
 * deno run -A src/remote/data_measure.ts [FOLDER]   # default: a folder under /tmp, kept
 * ```
 *
 * @module
 */

import { entryFromStat } from "../scan.ts";
import { type FileSource } from "../sides/reader.ts";
import { localFileSource } from "../sides/local/source.ts";
import { LocalTreeWriter } from "../sides/local/treewriter.ts";
import { WorkerPool } from "../sides/local/workers.ts";
import { connectRemoteTree } from "./client.ts";

const MiB = 1 << 20;
const FILES = ["noise", "text"];

/** Writes the two files once (kept for the next measure). */
function makeFiles(from: string): void {
  try {
    Deno.statSync(`${from}/text`);
    return;
  } catch {
    Deno.mkdirSync(from, { recursive: true });
  }
  const noise = new Uint8Array(256 * MiB);
  for (let at = 0; at < noise.length; at += 65536) {
    crypto.getRandomValues(noise.subarray(at, at + 65536));
  }
  Deno.writeFileSync(`${from}/noise`, noise);
  const line = new TextEncoder().encode(
    "2026-12-02 15:43:17 INFO request served path=/api/v1/items id=12345 ms=17\n",
  );
  const text = new Uint8Array(256 * MiB);
  for (let at = 0; at < text.length; at += line.length) {
    text.set(line.subarray(0, Math.min(line.length, text.length - at)), at);
  }
  Deno.writeFileSync(`${from}/text`, text);
}

/** Copies both files from `source` into a fresh folder; prints the rate. */
async function measure(base: string, label: string, source: FileSource, wire?: () => number) {
  const to = `${base}/to-${label}`;
  Deno.mkdirSync(to, { recursive: true });
  const pool = new WorkerPool(2);
  const writer = new LocalTreeWriter(to, { pool });
  writer.prepare({ cleanLeftovers: true, removeMadeFolders: false, trash: false, now: new Date() });
  const seen = new Map([["", entryFromStat(Deno.statSync(to))]]);
  const changes = writer.changes({ seen, owners: false, sparse: false });
  new Deno.Command("sync").outputSync();
  const start = performance.now();
  let copied = 0;
  await changes.copy(source, FILES.map((path) => ({ path, fresh: true })), {
    onEach: (_, outcome) => copied += "copied" in outcome ? 1 : 0,
  });
  const seconds = (performance.now() - start) / 1000;
  pool.close();
  Deno.removeSync(to, { recursive: true });
  const onWire = wire ? `, ${(wire() / MiB).toFixed(1)} MiB on the wire` : "";
  console.log(
    `${label}: ${copied}/${FILES.length} files, 512 MiB in ${seconds.toFixed(2)} s = ` +
      `${(512 / seconds).toFixed(0)} MiB/s${onWire}`,
  );
}

async function main(): Promise<void> {
  const base = Deno.args[0] ?? "/tmp/treesync-data-measure";
  const from = `${base}/from`;
  makeFiles(from);
  await measure(base, "local workers", localFileSource(from));
  for (const compress of [false, true]) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("./serve_main.ts", import.meta.url).pathname],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const client = await connectRemoteTree({
      input: child.stdout,
      output: child.stdin,
      path: from,
      compress,
    });
    const label = compress ? "pipe -z" : "pipe";
    await measure(base, label, client.fileSource(), () => client.wireBytes().received);
    await client.close();
    await child.status;
  }
}

if (import.meta.main) await main();
