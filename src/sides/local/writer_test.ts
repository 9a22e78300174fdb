/**
 * Tests for the local writing side: copies read through the reading side's descriptor, the
 * checks before every change, our folders made and removed again, the record's drafts.
 */
import * as fs from "node:fs";
import { deepStrictEqual, ok } from "node:assert/strict";
import { readTree, scanOfTree, withTemp, writeTree } from "../../test_helpers.ts";
import { WorkerPool } from "./workers.ts";
import { type CopyOutcome, type TreeChanges } from "../writer.ts";
import { localFileSource } from "./source.ts";
import { type CopyPool, type CopyRequest } from "./stage.ts";
import { LocalReplicaStore } from "./store.ts";
import { LocalTreeWriter } from "./treewriter.ts";

/** A writer of `dir/to`, prepared, with its run's changes; copy requests are kept in `sent`. */
function preparedWriter(dir: string, pool: WorkerPool, options: { restore?: boolean } = {}) {
  const to = `${dir}/to`;
  Deno.mkdirSync(to, { recursive: true });
  const sent: CopyRequest[] = [];
  const recording: CopyPool = {
    size: pool.size,
    copy: (request, report) => {
      sent.push(structuredClone(request));
      return pool.copy(request, report);
    },
  };
  const writer = new LocalTreeWriter(to, { pool, copies: recording });
  writer.prepare({
    cleanLeftovers: !options.restore,
    removeMadeFolders: options.restore ?? false,
    trash: false,
    now: new Date(),
  });
  const seen = scanOfTree(to).entries;
  const changes: TreeChanges = writer.changes({ seen, owners: false, sparse: false });
  return { to, writer, changes, sent };
}

Deno.test("a copy request names the reading side's descriptor, never the written tree's root", async () => {
  const pool = new WorkerPool(1);
  try {
    await withTemp(async (dir) => {
      writeTree(`${dir}/from`, { a: "1", b: "22" });
      const { to, changes, sent } = preparedWriter(dir, pool);
      const outcomes: CopyOutcome[] = [];
      await changes.copy(
        localFileSource(`${dir}/from`),
        [{ path: "a", fresh: true }, { path: "b", fresh: true }],
        { onEach: (_, outcome) => outcomes.push(outcome) },
      );
      deepStrictEqual(outcomes.filter((outcome) => "copied" in outcome).length, 2);
      deepStrictEqual(readTree(to), { a: "1", b: "22" });
      deepStrictEqual(sent.length, 1, "one batch");
      deepStrictEqual(sent[0]!.source, { kind: "local", root: `${dir}/from` });
      const words = JSON.stringify(sent[0]);
      ok(!words.includes(`"${to}"`), `the request names no root of the written tree: ${words}`);
    });
  } finally {
    pool.close();
  }
});

Deno.test("every change refuses the root itself and changes nothing", async () => {
  const pool = new WorkerPool(1);
  try {
    await withTemp((dir) => {
      const { to, changes } = preparedWriter(dir, pool);
      writeTree(to, { keep: "1" });
      const tries: Array<[string, () => unknown]> = [
        ["removeFile", () => changes.removeFile("")],
        ["removeFolder", () => changes.removeFolder("")],
        ["rename", () => changes.rename("keep", "")],
        ["makeFolder", () => changes.makeFolder("")],
      ];
      for (const [name, change] of tries) {
        let refused = "";
        try {
          change();
        } catch (error) {
          refused = (error as Error).message;
        }
        ok(refused.includes("the root itself"), `${name}: ${refused}`);
      }
      deepStrictEqual(readTree(to), { keep: "1" });
    });
  } finally {
    pool.close();
  }
});

Deno.test("a restore's folders of ours go again at its end when empty, never a folder in use", async () => {
  const pool = new WorkerPool(1);
  try {
    await withTemp((dir) => {
      const { to, writer } = preparedWriter(dir, pool, { restore: true });
      ok(Deno.statSync(`${to}/.treesync/tmp`).isDirectory, "made for the run");
      writer.removeMadeFolders();
      deepStrictEqual([...Deno.readDirSync(to)], [], "an empty .treesync/tmp goes, then .treesync");
      const again = preparedWriter(dir, pool, { restore: true });
      Deno.writeTextFileSync(`${to}/.treesync/tmp/someone's`, "x");
      again.writer.removeMadeFolders();
      deepStrictEqual(readTree(`${to}/.treesync`, false), { tmp: { "someone's": "x" } });
    });
  } finally {
    pool.close();
  }
});

Deno.test("the replica store puts a draft in place only as the record, and discards the rest", async () => {
  await withTemp((dir) => {
    const store = new LocalReplicaStore(`${dir}/replica`);
    store.prepare();
    Deno.mkdirSync(`${dir}/replica/.treesync/tmp`);
    const draft = store.createDraft();
    fs.writeSync(draft.fd, "rows");
    ok(!store.sameAsRecord(draft), "no record yet");
    store.commit(draft);
    deepStrictEqual(Deno.readTextFileSync(`${dir}/replica/.treesync/record`), "rows");
    const same = store.createDraft();
    fs.writeSync(same.fd, "rows");
    ok(store.sameAsRecord(same));
    store.discard(same);
    deepStrictEqual(readTree(`${dir}/replica/.treesync/tmp`), {}, "the drafts are gone");
    store.checkStillOurs();
  });
});
