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
  // Deno 2.9.6 applies --ignore only when the first input is a folder: a file named first
  // (`sync_test.ts src/`) quietly ran the in-process files in the parallel pass too.
  const inputs = parallel!.split(" ").filter((word) => word !== "" && !word.startsWith("-"))
    .slice(2);
  deepStrictEqual(
    inputs[0]?.endsWith("/"),
    true,
    `the parallel pass starts with a folder: ${inputs}`,
  );
});

Deno.test("the parallel pass of the test task runs no file of the sequential one", async () => {
  const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const task: string = JSON.parse(Deno.readTextFileSync(`${root}/deno.json`)).tasks.test;
  const parallel = task.split(" && ")[0]!.replace(/^deno test /, "");
  const ignored = /--ignore=(\S+)/.exec(parallel)?.[1]?.split(",") ?? [];
  // What Deno itself would run (a filter no test matches: each file still says it was read).
  const args = [
    ...parallel.split(" ").filter((word) => word !== ""),
    "--filter",
    "^$",
    "--reporter",
    "tap",
  ];
  const listed = await new Deno.Command(Deno.execPath(), {
    args: ["test", ...args.filter((word) => word !== "--parallel")],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(listed.stdout) + new TextDecoder().decode(listed.stderr);
  for (const path of ignored) deepStrictEqual(text.includes(path), false, `${path} is not run`);
});
