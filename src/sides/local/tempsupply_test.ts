/**
 * Temporary files made ahead in a worker for streamed copies: handed out open, each only if it
 * is still the inode made, else one made on the spot; the ones not used removed when the last
 * batch ends; a file never waits for the pool.
 */

import assert from "node:assert/strict";
import * as fs from "node:fs";
import { tempSettingsIn, withTemp } from "../../test_helpers.ts";
import { type MadeTemp } from "./stage.ts";
import { makeTemps, TEMPS_AT_ONCE, TempSupply } from "./tempsupply.ts";
import { WorkerPool } from "./workers.ts";

function namesIn(folder: string): string[] {
  return [...Deno.readDirSync(folder)].map((entry) => entry.name).sort();
}

Deno.test("a worker makes empty temporary files in our tmp folder; the supply hands them out open", async () => {
  await withTemp(async (dir) => {
    const settings = tempSettingsIn(dir);
    const pool = new WorkerPool(1);
    try {
      const supply = new TempSupply((s, count) => pool.makeTemps(s, count), settings);
      supply.begin();
      await supply.ready();
      assert.equal(namesIn(`${dir}/tmp`).length, TEMPS_AT_ONCE, "made ahead, in one request");
      const { tempPath, fd } = supply.take();
      fs.writeSync(fd, new TextEncoder().encode("streamed"));
      fs.closeSync(fd);
      assert.equal(Deno.readTextFileSync(tempPath), "streamed");
      assert.ok(tempPath.startsWith(`${dir}/tmp/`) && tempPath.includes("-w"), tempPath);
      fs.renameSync(tempPath, `${dir}/placed`);
      await supply.end();
      assert.deepEqual(namesIn(`${dir}/tmp`), [], "the ones not used are removed at the end");
      assert.equal(Deno.readTextFileSync(`${dir}/placed`), "streamed");
    } finally {
      pool.close();
    }
  });
});

Deno.test("a made temporary file replaced meanwhile is left alone and one is made on the spot", async () => {
  await withTemp(async (dir) => {
    const settings = tempSettingsIn(dir);
    let made: MadeTemp[] = [];
    const supply = new TempSupply((s, count) => {
      made = makeTemps(s, count);
      return Promise.resolve(made);
    }, settings);
    supply.begin();
    await supply.ready();
    fs.closeSync(supply.take().fd);
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
    for (const swapped of [second, third, fourth]) {
      // (A fifo with no reader is not waited on: O_NONBLOCK.)
      const taken = supply.take();
      assert.notEqual(taken.tempPath, swapped!.tempPath);
      assert.ok(!made.some((temp) => temp.tempPath === taken.tempPath), "made on the spot");
      fs.writeSync(taken.fd, new TextEncoder().encode("data"));
      fs.closeSync(taken.fd);
    }
    assert.equal(Deno.readTextFileSync(second!.tempPath), "");
    assert.equal(Deno.readTextFileSync(`${dir}/victim`), "");
    const fifth = supply.take();
    fs.closeSync(fifth.fd);
    assert.equal(fifth.tempPath, made[4]!.tempPath);
    await supply.end();
  });
});

Deno.test("a file never waits for a busy pool: with no file made ahead, it makes its own", async () => {
  await withTemp(async (dir) => {
    const settings = tempSettingsIn(dir);
    let answer: (made: MadeTemp[]) => void = () => {};
    const supply = new TempSupply(() => new Promise((go) => answer = go), settings);
    supply.begin();
    const taken = supply.take();
    fs.closeSync(taken.fd);
    assert.deepEqual(namesIn(`${dir}/tmp`), [taken.tempPath.slice(`${dir}/tmp/`.length)]);
    answer(makeTemps(settings, 2));
    await supply.ready();
    const next = supply.take();
    fs.closeSync(next.fd);
    assert.equal(namesIn(`${dir}/tmp`).length, 3);
    answer([]); // the request the last take made, below half a request's worth
    await supply.end();
    assert.equal(namesIn(`${dir}/tmp`).length, 2, "the one not used is removed");
  });
});

Deno.test("once our tmp folder is no longer ours, no temporary file is made, ahead or on the spot", async () => {
  await withTemp(async (dir) => {
    const settings = tempSettingsIn(dir);
    Deno.renameSync(`${dir}/tmp`, `${dir}/moved`);
    Deno.mkdirSync(`${dir}/tmp`);
    const pool = new WorkerPool(1);
    try {
      const supply = new TempSupply((s, count) => pool.makeTemps(s, count), settings);
      supply.begin();
      await supply.ready();
      assert.throws(() => supply.take());
      await supply.end();
      assert.deepEqual(namesIn(`${dir}/tmp`), []);
      assert.deepEqual(namesIn(`${dir}/moved`), []);
    } finally {
      pool.close();
    }
  });
});
