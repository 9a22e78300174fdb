/**
 * For the tests only: holds other processes' opening of one file until told, run as
 * `deno run --allow-ffi --allow-read=FILE src/test_lease.ts FILE` by `holdOpen` in
 * `test_helpers.ts`. It takes a write lease on FILE (`fcntl(F_SETLEASE, F_WRLCK)`, Linux): an
 * open of FILE by another process then waits until the lease is given up (or the kernel's
 * `/proc/sys/fs/lease-break-time` passes, 45 s by default), and the kernel tells this process
 * with SIGIO. Prints `held` once the lease is taken, `wanted` when another process opens FILE,
 * and gives the lease up when its stdin ends.
 *
 * @module
 */

import * as fs from "node:fs";

const F_SETLEASE = 1024;
const F_WRLCK = 1;
const F_UNLCK = 2;

function main(path: string): void {
  const libc = Deno.dlopen("libc.so.6", {
    fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  });
  const fd = fs.openSync(path, fs.constants.O_RDONLY);
  // SIGIO would end this process; listening for it keeps the lease in our hands.
  Deno.addSignalListener("SIGIO", () => console.log("wanted"));
  if (libc.symbols.fcntl(fd, F_SETLEASE, F_WRLCK) !== 0) {
    console.log(`cannot take a lease on '${path}'`);
    Deno.exit(1);
  }
  console.log("held");
  Deno.stdin.readable.pipeTo(new WritableStream()).finally(() => {
    libc.symbols.fcntl(fd, F_SETLEASE, F_UNLCK);
    fs.closeSync(fd);
    Deno.exit(0);
  });
}

if (import.meta.main) main(Deno.args[0]!);
