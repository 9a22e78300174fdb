/**
 * How fast and how small file data travels to or from a remote tree: `--bwlimit RATE` parsed
 * as rsync parses it, a token-bucket pacer that a byte stream goes through, and the codec of
 * `-z`. The pacer takes its clock and its sleep from the caller, so it is tested without time.
 *
 * Units, as rsync's `--bwlimit`: `K`, `M`, `G`, `T` and `KiB`, `MiB`… are powers of 1024;
 * `KB`, `MB`… are powers of 1000; `B` is bytes; a number with no unit is KiB (as in rsync and
 * rclone, so `--bwlimit=1000` means the same to all three); fractions are allowed (`1.5M`);
 * `0` means no limit. All are per second.
 *
 * @module
 */

import * as zlib from "node:zlib";
import { UsageError } from "../errors.ts";

const UNIT_POWERS: Record<string, number> = { b: 0, k: 1, m: 2, g: 3, t: 4 };

/** The smallest limit, as rsync's: 1 KiB a second. */
export const MIN_RATE = 1024;

/**
 * Bytes a second from a `--bwlimit` value; 0 for no limit.
 *
 * @throws {UsageError} Not a number with a known unit, or below {@linkcode MIN_RATE}.
 */
export function parseRate(text: string): number {
  const match = /^(\d+(?:\.\d*)?|\.\d+)([bkmgt]?)(b|ib)?$/i.exec(text.trim());
  const unit = (match?.[2] ?? "").toLowerCase();
  const suffix = (match?.[3] ?? "").toLowerCase();
  if (!match || (unit === "" && suffix !== "") || (unit === "b" && suffix !== "")) {
    throw new UsageError(
      `Invalid --bwlimit '${text}': write bytes a second as 500K, 20M or 1.5M (K = 1024, KB = 1000)`,
    );
  }
  const base = suffix === "b" ? 1000 : 1024;
  const bytes = Math.round(Number(match[1]) * base ** UNIT_POWERS[unit || "k"]!);
  if (bytes !== 0 && bytes < MIN_RATE) {
    throw new UsageError(`Invalid --bwlimit '${text}': the lowest limit is 1K (or 0 for none)`);
  }
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`Invalid --bwlimit '${text}': too large`);
  return bytes;
}

/** What a {@linkcode Pacer} needs from the world: a clock and a way to wait. */
export interface PacerOptions {
  /** The largest burst in bytes (default: an eighth of a second's worth, at least 1 KiB). */
  burst?: number;
  /** Milliseconds on a monotonic clock (default `performance.now`). */
  now?: () => number;
  /** Waits so many milliseconds (default a timer). */
  sleep?: (milliseconds: number) => Promise<void>;
}

/**
 * A token bucket: bytes may go while tokens last; tokens come back at the rate, up to the
 * burst. A chunk larger than the tokens left waits for what it lacks, so over any stretch the
 * bytes that went are at most the burst plus the rate times the time.
 */
export class Pacer {
  /** The burst, in bytes: also the largest chunk {@linkcode pacedStream} lets through. */
  readonly burst: number;
  readonly #rate: number;
  readonly #now: () => number;
  readonly #sleep: (milliseconds: number) => Promise<void>;
  #tokens: number;
  #updated: number;

  /** A pacer at `bytesPerSecond` (more than 0), with a full bucket. */
  constructor(bytesPerSecond: number, options: PacerOptions = {}) {
    if (!(bytesPerSecond > 0)) throw new RangeError(`A pacer needs a rate, not ${bytesPerSecond}`);
    this.#rate = bytesPerSecond;
    this.burst = Math.max(1024, Math.floor(options.burst ?? bytesPerSecond / 8));
    this.#now = options.now ?? (() => performance.now());
    this.#sleep = options.sleep ??
      ((milliseconds) => new Promise((resolve) => setTimeout(resolve, milliseconds)));
    this.#tokens = this.burst;
    this.#updated = this.#now();
  }

  /**
   * Takes `bytes` from the bucket.
   *
   * @returns How many milliseconds to wait before sending them (0: at once).
   */
  reserve(bytes: number): number {
    const now = this.#now();
    const refill = ((now - this.#updated) / 1000) * this.#rate;
    this.#tokens = Math.min(this.burst, this.#tokens + refill);
    this.#updated = now;
    this.#tokens -= bytes;
    return this.#tokens >= 0 ? 0 : (-this.#tokens / this.#rate) * 1000;
  }

  /** Waits until `bytes` may be sent. */
  async pace(bytes: number): Promise<void> {
    const wait = this.reserve(bytes);
    if (wait > 0) await this.#sleep(wait);
  }
}

/**
 * A stream that lets bytes through at the pacer's rate, in chunks of at most its burst (so a
 * 1 MiB chunk at 500K does not go as one burst).
 */
export function pacedStream(pacer: Pacer): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream({
    async transform(chunk, controller) {
      for (let offset = 0; offset < chunk.length; offset += pacer.burst) {
        const piece = chunk.subarray(offset, offset + pacer.burst);
        await pacer.pace(piece.length);
        controller.enqueue(piece);
      }
    },
  });
}

/**
 * The codec of `-z`: zstd at level 1 from `node:zlib` (`zstdCompressSync`), which Deno ships
 * (`CompressionStream` has no zstd). On text (256 KiB chunks) its output is as small as
 * brotli's at quality 1 and a quarter smaller than deflate's at level 1, at deflate's speed or
 * better; on data that does not compress (photos, archives) it runs ten times faster than
 * deflate. Figures: `src/remote/codec_measure.ts`.
 */
export const COMPRESSION = "zstd-1";

/** The compression level `-z` uses. */
const ZSTD_LEVEL = 1;

/** One chunk of file data compressed for a `Data` frame. */
export function compressChunk(chunk: Uint8Array): Uint8Array {
  return zlib.zstdCompressSync(chunk, {
    params: { [zlib.constants.ZSTD_c_compressionLevel]: ZSTD_LEVEL },
  });
}

/**
 * A `Data` frame's chunk unpacked, refusing to grow past `maxBytes` (a peer's small frame
 * must not become a huge buffer).
 *
 * @throws {RangeError} It would unpack to more than `maxBytes`.
 */
export function decompressChunk(chunk: Uint8Array, maxBytes: number): Uint8Array {
  return zlib.zstdDecompressSync(chunk, { maxOutputLength: maxBytes });
}
