/**
 * Measures the codecs `node:zlib` offers for `-z` on file data cut into `Data`-frame chunks:
 * ratio, compress and decompress speed, best of three rounds, on text and on random bytes.
 * Not imported by anything: the figures behind {@linkcode COMPRESSION}.
 *
 * ```sh
 * deno run --allow-read src/remote/codec_measure.ts [FILES...]   # default: text under /usr/share
 * ```
 *
 * @module
 */

import * as zlib from "node:zlib";
import { DATA_CHUNK } from "./frames.ts";
import { COMPRESSION } from "./pace.ts";

type Codec = {
  name: string;
  pack: (chunk: Uint8Array) => Uint8Array;
  unpack: (chunk: Uint8Array) => Uint8Array;
};

const { constants } = zlib;

/** The candidates, at low levels (a sync tool wants speed first). */
function codecs(): Codec[] {
  const brotli = (quality: number) => ({
    params: { [constants.BROTLI_PARAM_QUALITY]: quality },
  });
  const zstd = (level: number) => ({ params: { [constants.ZSTD_c_compressionLevel]: level } });
  return [
    ...[1, 6].map((level) => ({
      name: `deflate-raw ${level}`,
      pack: (chunk: Uint8Array) => zlib.deflateRawSync(chunk, { level }),
      unpack: (chunk: Uint8Array) => zlib.inflateRawSync(chunk),
    })),
    {
      name: "gzip 1",
      pack: (chunk) => zlib.gzipSync(chunk, { level: 1 }),
      unpack: (chunk) => zlib.gunzipSync(chunk),
    },
    ...[1, 4].map((quality) => ({
      name: `brotli ${quality}`,
      pack: (chunk: Uint8Array) => zlib.brotliCompressSync(chunk, brotli(quality)),
      unpack: (chunk: Uint8Array) => zlib.brotliDecompressSync(chunk),
    })),
    ...[1, 3].map((level) => ({
      name: `zstd ${level}`,
      pack: (chunk: Uint8Array) => zlib.zstdCompressSync(chunk, zstd(level)),
      unpack: (chunk: Uint8Array) => zlib.zstdDecompressSync(chunk),
    })),
  ];
}

/** Text files under /usr/share, up to 32 MiB. */
function defaultFiles(): string[] {
  const files: string[] = [];
  let total = 0;
  const walk = (folder: string) => {
    for (const entry of Deno.readDirSync(folder)) {
      if (total > 32 << 20) return;
      const path = `${folder}/${entry.name}`;
      if (entry.isDirectory) walk(path);
      else if (entry.isFile && /\.(txt|html|pm|py|h|conf|pl|sh)$/.test(entry.name)) {
        total += Deno.statSync(path).size;
        files.push(path);
      }
    }
  };
  walk("/usr/share");
  return files;
}

/** The files' bytes cut into chunks of `DATA_CHUNK`. */
function chunksOf(files: string[]): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (const file of files) {
    const bytes = Deno.readFileSync(file);
    for (let i = 0; i < bytes.length; i += DATA_CHUNK) {
      chunks.push(bytes.subarray(i, i + DATA_CHUNK));
    }
  }
  return chunks;
}

/** Seconds of the fastest of three runs of `work`. */
function best(work: () => void): number {
  let fastest = Infinity;
  for (let round = 0; round < 3; round++) {
    const start = performance.now();
    work();
    fastest = Math.min(fastest, (performance.now() - start) / 1000);
  }
  return fastest;
}

/** One line per codec: ratio and speeds in MiB/s. */
function measure(label: string, chunks: Uint8Array[]): void {
  const mib = chunks.reduce((sum, chunk) => sum + chunk.length, 0) / (1 << 20);
  console.log(`${label}: ${mib.toFixed(1)} MiB in ${chunks.length} chunks`);
  for (const codec of codecs()) {
    let packed: Uint8Array[] = [];
    const packing = best(() => packed = chunks.map(codec.pack));
    const unpacking = best(() => packed.forEach(codec.unpack));
    const ratio = packed.reduce((sum, chunk) => sum + chunk.length, 0) / (mib * (1 << 20));
    console.log(
      `  ${codec.name.padEnd(14)} ratio ${ratio.toFixed(3)}  compress ${
        (mib / packing).toFixed(0).padStart(4)
      } MiB/s  decompress ${(mib / unpacking).toFixed(0).padStart(4)} MiB/s`,
    );
  }
}

/** Runs the measurement on the files named, or on text under /usr/share. */
function main(): void {
  const files = Deno.args.length > 0 ? Deno.args : defaultFiles();
  measure("text", chunksOf(files));
  const random = new Uint8Array(16 << 20);
  for (let i = 0; i < random.length; i += 65_536) {
    crypto.getRandomValues(random.subarray(i, i + 65_536));
  }
  const randomChunks = Array.from(
    { length: 64 },
    (_, i) => random.subarray(i * DATA_CHUNK, (i + 1) * DATA_CHUNK),
  );
  measure("random", randomChunks);
  console.log(`-z uses ${COMPRESSION}`);
}

if (import.meta.main) main();
