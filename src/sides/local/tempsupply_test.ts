/**
 * Temporary files made ahead in a worker for streamed copies: handed out open, each only if it
 * is still the inode made; the ones not used removed when the last batch ends.
 */

import assert from "node:assert/strict";
import * as fs from "node:fs";
import { identityOf } from "../../files.ts";
import { withTemp } from "../../test_helpers.ts";
import { type CopySettings, type MadeTemp } from "./stage.ts";
import { makeTemps, TEMPS_AT_ONCE, TempSupply } from "./tempsupply.ts";
import { WorkerPool } from "./workers.ts";

/** Copy settings over a tmp folder of ours at `dir/tmp`. */
function settingsIn(dir: string): CopySettings {
  Deno.mkdirSync(`${dir}/tmp`);
  return {
    tempDir: `${dir}/tmp`,
    tempIdentity: identityOf(`${dir}/tmp`)!,
    trashDir: null,
    trashIdentity: null,
    owners: false,
    sparse: false,
  };
}

function namesIn(folder: string): string[] {
  return [...Deno.readDirSync(folder)].map((entry) => entry.name).sort();
}

Deno.test("a worker makes empty temporary files in our tmp folder; the supply hands them out open", async () => {
  await withTemp(async (dir) => {
    const settings = settingsIn(dir);
    const pool = new WorkerPool(1);
    try {
      const supply = new TempSupply((s, count) => pool.makeTemps(s, count), settings);
      supply.begin();
      const { tempPath, fd } = await supply.take();
      fs.writeSync(fd, new TextEncoder().encode("streamed"));
      fs.closeSync(fd);
      assert.equal(Deno.readTextFileSync(tempPath), "streamed");
      assert.ok(tempPath.startsWith(`${dir}/tmp/`));
      assert.equal(namesIn(`${dir}/tmp`).length, TEMPS_AT_ONCE, "made ahead, in one request");
      fs.renameSync(tempPath, `${dir}/placed`);
      await supply.end();
      assert.deepEqual(namesIn(`${dir}/tmp`), [], "the ones not used are removed at the end");
      assert.equal(Deno.readTextFileSync(`${dir}/placed`), "streamed");
    } finally {
      pool.close();
    }
  });
});

Deno.test("a made temporary file replaced meanwhile is refused and left alone, nothing written", async () => {
  await withTemp(async (dir) => {
    const settings = settingsIn(dir);
    let made: MadeTemp[] = [];
    const supply = new TempSupply((s, count) => {
      made = makeTemps(s, count);
      return Promise.resolve(made);
    }, settings);
    supply.begin();
    const first = await supply.take();
    fs.closeSync(first.fd);
    // Someone swaps the next one for a file of theirs, the one after for a link, the next for
    // a fifo.
    const [, second, third, fourth] = made;
    Deno.renameSync(second!.tempPath, `${dir}/kept`);
    Deno.writeTextFileSync(second!.tempPath, "");
    Deno.removeSync(third!.tempPath);
    Deno.symlinkSync(`${dir}/victim`, third!.tempPath);
    Deno.writeTextFileSync(`${dir}/victim`, "");
    Deno.removeSync(fourth!.tempPath);
    const fifo = new Deno.Command("mkfifo", { args: [fourth!.tempPath] }).outputSync();
    assert.equal(fifo.code, 0);
    await assert.rejects(supply.take(), /changed by something else since it was made/);
    // With unscoped permissions O_NOFOLLOW refuses the link; with scoped ones Deno follows it,
    // and the inode opened is not the one made.
    await assert.rejects(supply.take(), /ELOOP|changed by something else/);
    // No reader: refused at once, not waited on.
    await assert.rejects(supply.take(), /ENXIO|changed by something else/);
    assert.equal(Deno.readTextFileSync(second!.tempPath), "");
    assert.equal(Deno.readTextFileSync(`${dir}/victim`), "");
    const fifth = await supply.take();
    fs.closeSync(fifth.fd);
    assert.equal(fifth.tempPath, made[4]!.tempPath);
    await supply.end();
  });
});

Deno.test("a worker refuses to make temporary files once our tmp folder is no longer ours", async () => {
  await withTemp(async (dir) => {
    const settings = settingsIn(dir);
    Deno.renameSync(`${dir}/tmp`, `${dir}/moved`);
    Deno.mkdirSync(`${dir}/tmp`);
    const pool = new WorkerPool(1);
    try {
      const supply = new TempSupply((s, count) => pool.makeTemps(s, count), settings);
      supply.begin();
      await assert.rejects(supply.take());
      await supply.end();
      assert.deepEqual(namesIn(`${dir}/tmp`), []);
    } finally {
      pool.close();
    }
  });
});
