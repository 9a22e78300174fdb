/**
 * Tests for applying actions: through the worker pool production uses, on real temporary
 * folders.
 */
import { deepStrictEqual, ok } from "node:assert/strict";
import { Applier, type ApplyContext } from "./apply.ts";
import { identityOf } from "./files.ts";
import { type Action, planMirror } from "./plan.ts";
import { LocalTreeChanges } from "./sides/local/changes.ts";
import { placeCopy } from "./sides/local/place.ts";
import { localFileSource, openSourceFile } from "./sides/local/source.ts";
import { type CopyContext, stageCopy } from "./sides/local/stage.ts";
import { type CopiedFile, type CopyOutcome } from "./sides/writer.ts";
import {
  allocatedBytes,
  CAN_MAKE_HOLES,
  planDefaults,
  readTree,
  scanOfTree,
  sha256,
  tempSettingsIn,
  withTemp,
  writeIslands,
  writeTree,
} from "./test_helpers.ts";
import { WorkerPool } from "./sides/local/workers.ts";

/** Plans `from` over `to` and the context to apply it with, copying in `pool`. */
function setUp(dir: string, pool: WorkerPool) {
  const [from, to, tempDir] = [`${dir}/from`, `${dir}/to`, `${dir}/tmp`];
  Deno.mkdirSync(to, { recursive: true });
  Deno.mkdirSync(tempDir); // outside the tree, or the plan would delete it
  const toScan = scanOfTree(to);
  const plan = planMirror(scanOfTree(from), toScan, planDefaults);
  const settled = new Map<string, CopyOutcome>();
  const context: ApplyContext = {
    changes: new LocalTreeChanges(to, {
      settings: { seen: toScan.entries, owners: false, sparse: false },
      folders: {
        tempDir,
        tempIdentity: identityOf(tempDir)!,
        trashDir: null,
        trashIdentity: null,
      },
      pool,
    }),
    source: localFileSource(from),
    shouldStop: () => false,
    pause: () => Promise.resolve(),
    onDone: () => {},
    onFailed: (problem) => {
      throw new Error(problem.message);
    },
    onSettled: (action, outcome) => settled.set(action.path, outcome),
  };
  return { plan, context, settled };
}

/** Applies every action of `plan` in order, then waits for the copies. */
async function applyAll(plan: { actions: Action[] }, context: ApplyContext): Promise<Applier> {
  const applier = new Applier(context);
  for (const action of plan.actions) {
    if (!await applier.apply(action)) break;
  }
  await applier.drain();
  return applier;
}

Deno.test("Applier copies through the worker pool and records the hash of what was written", async () => {
  const pool = new WorkerPool(2);
  try {
    await withTemp(async (dir) => {
      writeTree(`${dir}/from`, { a: "1", sub: { b: "22", link: { link: "a" } } });
      const { plan, context, settled } = setUp(dir, pool);
      const applier = await applyAll(plan, context);
      deepStrictEqual(readTree(`${dir}/to`), readTree(`${dir}/from`));
      const copied = settled.get("sub/b");
      ok(copied !== undefined && "copied" in copied);
      deepStrictEqual(copied.copied.replica.hash, sha256(new TextEncoder().encode("22")));
      deepStrictEqual(applier.result.summary.copied, 3, "two files and a link");
      deepStrictEqual([...Deno.readDirSync(`${dir}/tmp`)].length, 0, "no temporary file is left");
    });
  } finally {
    pool.close();
  }
});

/** What copyFile() needs to copy into `dir`, with its temporary files in `dir/tmp`. */
function copyContextIn(dir: string, fields: Partial<CopyContext> = {}): CopyContext {
  return {
    ...tempSettingsIn(dir),
    parent: identityOf(dir),
    mustAbort: () => false,
    ...fields,
  };
}

/**
 * Copies one file of `dir` as a copy worker and the main thread do: staged through SHA-256
 * into a temporary file, then renamed into place.
 */
function copyFile(fromName: string, toName: string, context: CopyContext): CopiedFile | null {
  const dir = context.tempDir.slice(0, -"/tmp".length);
  const staged = stageCopy(() => openSourceFile(localFileSource(dir), fromName), context);
  return staged === null
    ? null
    : placeCopy(`${dir}/${toName}`, staged, { ...context, toRoot: dir });
}

Deno.test("copyFile() reads again a file that changes while it is read, and takes what was read", async () => {
  await withTemp((dir) => {
    Deno.writeFileSync(`${dir}/big`, new Uint8Array(3 << 20).fill(1));
    let appendsLeft = 1;
    const copied = copyFile("big", "copy", {
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

Deno.test("Applier never writes a new folder's files where its mkdir found a link", async () => {
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
      await applyAll(plan, { ...context, onFailed: (problem) => failed.push(problem.path) });
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
        const sparse = copyFile("source", "sparse", copyContextIn(dir, { sparse: true }));
        const full = copyFile("source", "full", copyContextIn(dir));
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
      const copied = copyFile("image", "copy", copyContextIn(dir, { sparse: true }));
      deepStrictEqual(copied?.replica.hash, sha256(bytes));
      deepStrictEqual(sha256(Deno.readFileSync(`${dir}/copy`)), sha256(bytes));
      ok(allocatedBytes(`${dir}/copy`) <= 64 << 10, "only the first and last blocks");
    });
  },
});
