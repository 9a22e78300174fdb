/**
 * Tests for applying a plan: through the worker pool production uses, on real temporary
 * folders.
 */
import { deepStrictEqual, ok } from "node:assert/strict";
import { type ApplyContext, applyPlan, type CopyContext, copyFile, FolderGuard } from "./apply.ts";
import { identityOf } from "./files.ts";
import { type Action, planMirror } from "./plan.ts";
import {
  allocatedBytes,
  CAN_MAKE_HOLES,
  planDefaults,
  readTree,
  scanOfTree,
  sha256,
  withTemp,
  writeIslands,
  writeTree,
} from "./test_helpers.ts";
import { WorkerPool } from "./workers.ts";

/** Plans `from` over `to` and the context to apply it with, copying in `pool`. */
function setUp(dir: string, pool: WorkerPool) {
  const [from, to, tempDir] = [`${dir}/from`, `${dir}/to`, `${dir}/tmp`];
  Deno.mkdirSync(to, { recursive: true });
  Deno.mkdirSync(tempDir); // outside the tree, or the plan would delete it
  const toScan = scanOfTree(to);
  const plan = planMirror(scanOfTree(from), toScan, planDefaults);
  const context: ApplyContext = {
    fromRoot: from,
    toRoot: to,
    tempDir,
    tempIdentity: identityOf(tempDir)!,
    trashDir: null,
    trashIdentity: null,
    owners: false,
    sparse: false,
    pool,
    guard: new FolderGuard(to, toScan),
    shouldStop: () => false,
    mustAbort: () => false,
    pause: () => Promise.resolve(),
    onDone: () => {},
    onFailed: (problem) => {
      throw new Error(problem.message);
    },
  };
  return { plan, context };
}

Deno.test("applyPlan() copies through the worker pool and records the hash of what was written", async () => {
  const pool = new WorkerPool(2);
  try {
    await withTemp(async (dir) => {
      writeTree(`${dir}/from`, { a: "1", sub: { b: "22", link: { link: "a" } } });
      const { plan, context } = setUp(dir, pool);
      const result = await applyPlan(plan, context);
      deepStrictEqual(readTree(`${dir}/to`), readTree(`${dir}/from`));
      deepStrictEqual(
        result.written.get("sub/b")!.replica.hash,
        sha256(new TextEncoder().encode("22")),
      );
      deepStrictEqual(result.summary.copied, 3, "two files and a link");
      deepStrictEqual([...Deno.readDirSync(`${dir}/tmp`)].length, 0, "no temporary file is left");
    });
  } finally {
    pool.close();
  }
});

Deno.test("applyPlan() hands what is done so far to checkpoints between actions", async () => {
  const pool = new WorkerPool(1);
  try {
    await withTemp(async (dir) => {
      writeTree(`${dir}/from`, { a: "1", b: "22", c: "333", x: {} });
      const { plan, context } = setUp(dir, pool);
      // Copies run in batches: folder attributes wait for them, so the checkpoint before the
      // copy after them sees the copies before.
      const byPath = (path: string, kind = "copy") =>
        plan.actions.find((a) => a.path === path && a.kind === kind)!;
      const actions: Action[] = [byPath("a"), byPath("b"), byPath("x", "mkdir")];
      actions.push(byPath("x", "dirattrs"), byPath("c"));
      const seen: string[][] = [];
      await applyPlan({ ...plan, actions }, {
        ...context,
        firstCheckpointMs: 0,
        checkpoint: (done) => {
          seen.push([...done.written.keys()].sort());
          return 0;
        },
      });
      deepStrictEqual(seen, [[], [], [], [], ["a", "b"]]);
    });
  } finally {
    pool.close();
  }
});

/** What copyFile() needs to copy into `dir`, with its temporary files in `dir/tmp`. */
function copyContextIn(dir: string, fields: Partial<CopyContext> = {}): CopyContext {
  Deno.mkdirSync(`${dir}/tmp`, { recursive: true });
  return {
    tempDir: `${dir}/tmp`,
    tempIdentity: identityOf(`${dir}/tmp`)!,
    trashDir: null,
    trashIdentity: null,
    owners: false,
    sparse: false,
    toRoot: dir,
    parent: identityOf(dir),
    mustAbort: () => false,
    ...fields,
  };
}

Deno.test("copyFile() reads again a file that changes while it is read, and takes what was read", async () => {
  await withTemp((dir) => {
    Deno.writeFileSync(`${dir}/big`, new Uint8Array(3 << 20).fill(1));
    let appendsLeft = 1;
    const copied = copyFile(`${dir}/big`, `${dir}/copy`, {
      ...copyContextIn(dir),
      // Runs between chunks of the copy: a writer appends once, mid-read.
      onBytes: () => {
        if (appendsLeft-- !== 1) return;
        using file = Deno.openSync(`${dir}/big`, { append: true });
        file.writeSync(new Uint8Array(10).fill(2));
      },
    });
    const bytes = Deno.readFileSync(`${dir}/copy`);
    deepStrictEqual(bytes.length, (3 << 20) + 10, "the second read took the whole file");
    ok(copied !== null);
    deepStrictEqual(copied.replica.hash, sha256(bytes));
    deepStrictEqual([...Deno.readDirSync(`${dir}/tmp`)].length, 0, "no temporary file is left");
  });
});

Deno.test("applyPlan() never writes a new folder's files where its mkdir found a link", async () => {
  // Regression: the mkdir of `nd` failed on a link planted after the walk, and the copy of
  // `nd/passwd` was renamed through it, overwriting the file outside.
  const pool = new WorkerPool(1);
  try {
    await withTemp(async (dir) => {
      writeTree(`${dir}/decoy`, { passwd: "outside" });
      writeTree(`${dir}/from`, { nd: { passwd: "attacker content" } });
      const { plan, context } = setUp(dir, pool);
      Deno.symlinkSync(`${dir}/decoy`, `${dir}/to/nd`);
      const failed: string[] = [];
      await applyPlan(plan, { ...context, onFailed: (problem) => failed.push(problem.path) });
      deepStrictEqual(Deno.readTextFileSync(`${dir}/decoy/passwd`), "outside");
      deepStrictEqual(
        [...new Set(failed)].sort(),
        ["nd", "nd/passwd"],
        "mkdir, its copy, its attributes",
      );
    });
  } finally {
    pool.close();
  }
});

Deno.test({
  name: "copyFile() with sparse leaves a hole for each whole block of zeros and hashes every byte",
  ignore: !CAN_MAKE_HOLES,
  fn: async () => {
    // Islands inside a block, across block edges, across the 1 MiB read chunks, one exact
    // block; each file ends in a hole: whole blocks (only the final truncate sets the size),
    // then a part of a block.
    const islands: Array<[number, number]> = [
      [0, 100],
      [3 * 4096 + 10, 5000],
      [(1 << 20) - 1, 2],
      [5 << 20, 4096],
    ];
    for (const size of [8 << 20, (8 << 20) + 123]) {
      await withTemp((dir) => {
        writeIslands(`${dir}/source`, size, islands);
        const bytes = Deno.readFileSync(`${dir}/source`);
        const sparse = copyFile(
          `${dir}/source`,
          `${dir}/sparse`,
          copyContextIn(dir, { sparse: true }),
        );
        const full = copyFile(`${dir}/source`, `${dir}/full`, copyContextIn(dir));
        for (const [name, copied] of [["sparse", sparse], ["full", full]] as const) {
          ok(copied !== null);
          deepStrictEqual(copied.replica.hash, sha256(bytes), `${name}: the hash is of every byte`);
          deepStrictEqual(Deno.statSync(`${dir}/${name}`).size, size, `${name}: the size is exact`);
          ok(sha256(Deno.readFileSync(`${dir}/${name}`)) === sha256(bytes), `${name}: bytes`);
        }
        // Six blocks hold data (0, 3-4, 255-256, 1280), and the part-block at the end.
        ok(
          allocatedBytes(`${dir}/sparse`) <= allocatedBytes(`${dir}/source`) + (16 << 10),
          `a sparse copy of ${size} bytes takes ${allocatedBytes(`${dir}/sparse`)} bytes`,
        );
        ok(allocatedBytes(`${dir}/full`) >= size, "a copy without sparse writes every block");
      });
    }
  },
});

Deno.test({
  name: "copyFile() with sparse also makes holes in a fully allocated file, as rsync -S does",
  ignore: !CAN_MAKE_HOLES,
  fn: async () => {
    await withTemp((dir) => {
      const bytes = new Uint8Array(2 << 20);
      bytes.fill(9, 0, 10);
      bytes.fill(9, bytes.length - 10);
      Deno.writeFileSync(`${dir}/image`, bytes); // every block written, zeros too
      ok(allocatedBytes(`${dir}/image`) >= bytes.length, "the source is fully allocated");
      const copied = copyFile(`${dir}/image`, `${dir}/copy`, copyContextIn(dir, { sparse: true }));
      deepStrictEqual(copied?.replica.hash, sha256(bytes));
      deepStrictEqual(sha256(Deno.readFileSync(`${dir}/copy`)), sha256(bytes));
      ok(allocatedBytes(`${dir}/copy`) <= 64 << 10, "only the first and last blocks");
    });
  },
});
