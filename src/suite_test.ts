/**
 * The suite's own rule: `deno test --parallel` runs test files side by side in one process,
 * whose current folder they share, and a run in-process changes it (every change below a replica
 * folder is made from inside it, `sides/local/guard.ts` `inFolder`). A test file that runs the
 * engine in process must therefore be in the `test` task's second, sequential pass, or the
 * subprocesses other files start meanwhile inherit a folder that a test is about to delete.
 *
 * @module
 */

import { deepStrictEqual } from "node:assert/strict";

/** What a test file imports when it changes the process's current folder. */
const IN_PROCESS =
  /\/(run|apply|mirror|engine|changes|place|treewriter|guard|stage|attributes)\.ts"|inFolder|runOnce\(/;

function testFiles(folder: string): string[] {
  const found: string[] = [];
  for (const item of Deno.readDirSync(folder)) {
    const path = folder === "." ? item.name : `${folder}/${item.name}`;
    if (item.isDirectory) found.push(...testFiles(path));
    else if (item.name.endsWith("_test.ts")) found.push(path);
  }
  return found;
}

Deno.test("the test task runs every file that runs the engine in process in its sequential pass", () => {
  const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const task: string = JSON.parse(Deno.readTextFileSync(`${root}/deno.json`)).tasks.test;
  const [parallel, sequential] = task.split(" && ");
  const ignored = /--ignore=(\S+)/.exec(parallel!)?.[1]?.split(",") ?? [];
  const inProcess = [
    "sync_test.ts",
    ...testFiles(`${root}/src`).map((path) => path.slice(root.length + 1)),
  ].filter((path) =>
    path !== "src/suite_test.ts" &&
    IN_PROCESS.test(Deno.readTextFileSync(`${root}/${path}`))
  ).sort();
  deepStrictEqual(inProcess, [...ignored].sort(), "in process, so not in the parallel pass");
  for (const path of ignored) {
    deepStrictEqual(sequential!.includes(` ${path}`), true, `${path} runs in the second pass`);
  }
});
