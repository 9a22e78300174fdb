/**
 * Tests for reading a local tree through `TreeReader`, on real temporary folders.
 */

import assert from "node:assert/strict";
import { sha256, withTemp, writeTree } from "../../test_helpers.ts";
import { WorkerPool } from "./workers.ts";
import { type TreeWalk } from "../reader.ts";
import { localTree } from "./tree.ts";
import { foldersOf } from "../../test_helpers.ts";

const WHOLE: TreeWalk = { starts: [""], filters: [], avoid: [] };

Deno.test("localTree().walk() hands folders over in walk order, without the root's .treesync", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/t`, { b: { c: {} }, "a.txt": "1", a: { f: "2" }, ".treesync": { r: "" } });
    const pool = new WorkerPool(1);
    try {
      const tree = localTree(`${dir}/t`, { pool });
      const source = tree.walk(WHOLE);
      assert.deepEqual(await foldersOf(source), [
        ["", ["a", "a.txt", "b"]],
        ["a", ["f"]],
        ["b", ["c"]],
        ["b/c", []],
      ]);
      assert.equal(source.start?.ino, Deno.statSync(`${dir}/t`).ino);
    } finally {
      pool.close();
    }
  });
});

Deno.test("localTree().walk() walks several starts in one walk, a renamed subtree under its new name", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/t`, { old: { sub: { f: "1" } }, keep: { g: "2" }, other: { h: "3" } });
    const pool = new WorkerPool(1);
    try {
      const tree = localTree(`${dir}/t`, { pool });
      // In the walk order of the names handed over: "a" before "keep".
      const source = tree.walk({
        starts: ["old", "keep"],
        filters: [],
        avoid: [],
        renames: new Map([["old", "a"]]),
      });
      assert.deepEqual(await foldersOf(source), [
        ["a", ["sub"]],
        ["a/sub", ["f"]],
        ["keep", ["g"]],
      ]);
      // The first start's own entry, as it is where it is.
      assert.equal(source.start?.ino, Deno.lstatSync(`${dir}/t/old`).ino);
    } finally {
      pool.close();
    }
  });
});

Deno.test("localTree().walk() leaves out what the rules exclude, and its probe finds the other root", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/t`, { keep: { f: "1" }, cache: { inner: {} } });
    const inner = Deno.statSync(`${dir}/t/cache/inner`);
    const pool = new WorkerPool(1);
    try {
      const tree = localTree(`${dir}/t`, { pool });
      const excluded = tree.walk({
        ...WHOLE,
        filters: [{ kind: "exclude", pattern: "cache/" }],
      });
      const folders = await foldersOf(excluded);
      assert.deepEqual(folders, [["", ["keep"]], ["keep", ["f"]]]);
      const probing = tree.walk({
        ...WHOLE,
        avoid: [{ dev: inner.dev, ino: inner.ino! }],
        probe: true,
      });
      try {
        assert.equal(await probing.probed(), "cache/inner");
      } finally {
        probing.close();
      }
    } finally {
      pool.close();
    }
  });
});

Deno.test("localTree().entryAt() follows a root that is a link, and reads a link below it as a link", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/real`, { f: "x", link: { link: "f" }, sub: {} });
    Deno.symlinkSync(`${dir}/real`, `${dir}/root`);
    const pool = new WorkerPool(1);
    try {
      const tree = localTree(`${dir}/root`, { pool });
      const root = await tree.entryAt("");
      assert.equal(root?.kind, "dir");
      assert.equal(root?.ino, Deno.statSync(`${dir}/real`).ino);
      const link = await tree.entryAt("link");
      assert.equal(link?.kind, "symlink");
      assert.equal(link?.target, "f");
      assert.equal((await tree.entryAt("f"))?.size, 1);
      assert.equal((await tree.entryAt("sub"))?.kind, "dir");
      assert.equal(await tree.entryAt("missing"), null);
      assert.equal(await tree.entryAt("f/below"), null, "below a file, nothing is there");
      await assert.rejects(tree.entryAt("../real/f"), /not a path inside the tree/);
      await assert.rejects(tree.entryAt("/etc"), /not a path inside the tree/);
    } finally {
      pool.close();
    }
  });
});

Deno.test("localTree().identity() of a missing root is null, and its walk of nothing is empty", async () => {
  await withTemp(async (dir) => {
    const pool = new WorkerPool(1);
    try {
      const missing = localTree(`${dir}/none`, { pool });
      assert.equal(await missing.identity(), null);
      assert.equal(await missing.entryAt(""), null);
      const source = missing.walk(null);
      assert.deepEqual(await foldersOf(source), []);
      assert.equal(source.start, null);
      assert.equal(await source.probed(), null);
      Deno.mkdirSync(`${dir}/there`);
      const info = Deno.statSync(`${dir}/there`);
      assert.deepEqual(await localTree(`${dir}/there`, { pool }).identity(), {
        dev: info.dev,
        ino: info.ino,
      });
    } finally {
      pool.close();
    }
  });
});

Deno.test("localTree().hash() hashes files in the pool, and says why one could not be", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/t`, { a: "hello", sub: { b: "" }, link: { link: "a" } });
    const pool = new WorkerPool(2);
    try {
      const tree = localTree(`${dir}/t`, { pool });
      const batches: Array<[number, number]> = [];
      const outcomes = await tree.hash(
        [{ path: "a", size: 5 }, { path: "sub/b", size: 0 }, { path: "link", size: 0 }, {
          path: "gone",
          size: 3,
        }],
        (files, bytes) => batches.push([files, bytes]),
      );
      const a = outcomes.get("a");
      assert.ok(a && "result" in a && a.result !== null);
      assert.equal(a.result.hash, sha256(new TextEncoder().encode("hello")));
      assert.equal(a.result.signature.ino, Deno.lstatSync(`${dir}/t/a`).ino);
      const b = outcomes.get("sub/b");
      assert.ok(b && "result" in b && b.result !== null);
      assert.equal(b.result.hash, sha256(new Uint8Array()));
      const link = outcomes.get("link");
      assert.ok(link && "error" in link, "a link is not read through");
      assert.match(link.error, /no longer a regular file/);
      assert.ok(outcomes.get("gone") && "error" in outcomes.get("gone")!);
      assert.deepEqual(batches, [[4, 8]]);
    } finally {
      pool.close();
    }
  });
});

Deno.test("localTree().hash() gives no hash for a file that grew while it was read", async () => {
  await withTemp(async (dir) => {
    Deno.mkdirSync(`${dir}/t`);
    // A sparse file takes no disk, and is long enough to read that appends land during the read.
    const path = `${dir}/t/growing`;
    Deno.writeFileSync(path, new Uint8Array());
    Deno.truncateSync(path, 128 << 20);
    const pool = new WorkerPool(1);
    try {
      const tree = localTree(`${dir}/t`, { pool });
      let settled = false;
      const hashing = tree.hash([{ path: "growing", size: 128 << 20 }]).finally(() => {
        settled = true;
      });
      using file = Deno.openSync(path, { append: true });
      while (!settled) {
        file.writeSync(new Uint8Array([1]));
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      const outcome = (await hashing).get("growing");
      assert.ok(outcome && "result" in outcome, "a change is no error");
      assert.equal(outcome.result, null);
    } finally {
      pool.close();
    }
  });
});

Deno.test("a walker worker loads only the walk: not the module that starts it, nor the copy code", async () => {
  // Regression: the walker ran workers.ts, which imports the walk that starts it, and apply.ts.
  const walker = new URL("./walker.ts", import.meta.url);
  const info = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", walker.href],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.equal(info.code, 0);
  const graph = JSON.parse(new TextDecoder().decode(info.stdout)) as {
    modules: Array<{ specifier: string }>;
  };
  const loaded = graph.modules.map((module) => new URL(module.specifier).pathname);
  const src = new URL("../../", import.meta.url).pathname;
  for (const module of ["sides/local/stream.ts", "sides/local/tree.ts", "workers.ts", "apply.ts"]) {
    assert.ok(!loaded.includes(`${src}${module}`), `the walker loads ${module}`);
  }
  assert.ok(loaded.includes(`${src}sides/local/walk.ts`));
});
