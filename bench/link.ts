/**
 * `deno task bench --remote --link RATE`: the loopback interface shaped to RATE (a token
 * bucket, `tc qdisc … tbf`), so that the far end is behind a link of a given speed, as a
 * backup host in another building is. Loopback carries both directions on one interface: RATE
 * is shared by what goes and what comes back. Every byte on `lo` is shaped while the bench runs
 * (the bench's own sshd is the only traffic there); the queue discipline is removed again
 * when the bench ends, and a `lo` that already has one is left alone (the bench refuses).
 *
 * @module
 */

/** A rate `tc` reads (`100mbit`, `1gbit`, `500kbit`): digits and a unit, bits a second. */
const RATE = /^[1-9][0-9]*(kbit|mbit|gbit)$/;

/** The shaped link, for the report. */
export interface ShapedLink {
  /** As given: `100mbit`. */
  rate: string;
  /** Bits a second. */
  bitsPerSecond: number;
  /** Takes the shaping off again. */
  remove(): void;
}

/**
 * Checks a `--link` value before anything starts.
 *
 * @throws {Error} When it is not a rate `tc` would read as we mean it.
 */
export function parseRate(rate: string): number {
  const match = RATE.exec(rate);
  if (!match) throw new Error(`--link '${rate}': give a rate such as 100mbit, 1gbit or 500kbit`);
  const scale = { kbit: 1e3, mbit: 1e6, gbit: 1e9 }[match[1] as "kbit" | "mbit" | "gbit"];
  return Number.parseInt(rate, 10) * scale;
}

function tc(args: string[]): Deno.CommandOutput {
  return new Deno.Command("tc", { args, stdout: "piped", stderr: "piped" }).outputSync();
}

/**
 * Shapes `lo` to `rate`. The bucket holds 2 ms of the rate, and at least 256 KiB: loopback
 * sends segments of up to 64 KiB (its MTU, and offloads join more), and a packet larger than
 * the bucket would never leave, stalling its connection. A packet waits at most 200 ms.
 *
 * @throws {Error} When `tc` is missing or refuses (not root, no `sch_tbf`), or `lo` is shaped
 *   already: the line says which.
 */
export function shapeLoopback(rate: string): ShapedLink {
  const bitsPerSecond = parseRate(rate);
  let shown: Deno.CommandOutput;
  try {
    shown = tc(["qdisc", "show", "dev", "lo"]);
  } catch {
    throw new Error("--link needs tc: apt-get install -y iproute2");
  }
  const current = new TextDecoder().decode(shown.stdout);
  if (!/^qdisc noqueue /.test(current)) {
    throw new Error(`--link: lo has a queue discipline already (${current.trim()}); remove it`);
  }
  const burstBytes = Math.max(256 * 1024, Math.ceil(bitsPerSecond / 8 / 500));
  const added = tc([
    ...["qdisc", "add", "dev", "lo", "root", "tbf"],
    ...["rate", rate, "burst", String(burstBytes), "latency", "200ms"],
  ]);
  if (!added.success) {
    const why = new TextDecoder().decode(added.stderr).trim();
    throw new Error(`--link: tc could not shape lo (${why}); it needs root and sch_tbf`);
  }
  let removed = false;
  const remove = () => {
    if (removed) return;
    removed = true;
    tc(["qdisc", "del", "dev", "lo", "root"]);
  };
  // A bench stopped by Ctrl-C or kill must not leave this machine's loopback slow.
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    Deno.addSignalListener(signal, () => {
      remove();
      Deno.exit(code);
    });
  }
  return { rate, bitsPerSecond, remove };
}
