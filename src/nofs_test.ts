/**
 * The layering rule of the sides: above `src/sides/`, no module calls `Deno.*` or `node:fs` on a
 * path of a tree (SOURCE, REPLICA, anything in them, their `.treesync/`), directly or through the
 * small helpers of `files.ts`. The few file-system calls left there are listed here, each with
 * what it touches; a new one fails this test until it moves under `src/sides/` or is listed.
 *
 * @module
 */

import { deepStrictEqual } from "node:assert/strict";

/** File-system calls of Deno, and the `files.ts` helpers that make them. */
const FS_CALL = new RegExp(
  String.raw`\bDeno\.((?:readDir|readFile|readTextFile|writeFile|writeTextFile|stat|lstat|` +
    String.raw`realPath|open|create|mkdir|remove|rename|link|symlink|readLink|chmod|chown|` +
    String.raw`utime|truncate|copyFile|makeTempDir|makeTempFile)(?:Sync)?|watchFs|chdir)\(|` +
    String.raw`\bfs\.(\w+)\(|` +
    // A helper's definition is not a call.
    String.raw`(?<!function )\b(pathExists|identityOf|statOrNull|removeQuietly|expectIdentity)\(`,
  "g",
);

/** What each call left above the sides touches: none of them a tree path. */
const ALLOWED: Record<string, string> = {
  "sync.ts Deno.realPathSync": "the checkout and the current folder, for INIT_CWD",
  "sync.ts Deno.statSync": "INIT_CWD",
  "src/cli.ts Deno.statSync": "an --exclude-from file, the --log path",
  "src/cli.ts Deno.readFileSync": "an --exclude-from file",
  "src/log.ts statOrNull": "the log file",
  "src/log.ts Deno.openSync": "the log file",
  "src/log.ts Deno.mkdirSync": "the log file's folder",
  "src/log.ts Deno.renameSync": "the log file, rotated",
  "src/recordwrite.ts fs.writeSync": "a descriptor of a record draft the replica store opened",
  // The definitions, used by the log and by the local side:
  "src/files.ts Deno.removeSync": "removeQuietly()",
  "src/files.ts Deno.statSync": "identityOf(), statOrNull()",
  "src/files.ts Deno.lstatSync": "pathExists()",
  "src/files.ts identityOf": "expectIdentity()",
};

/** The modules above the sides: not tests, not under `src/sides/`, not the remote side's work. */
function modulesAbove(root: string, folder = "src"): string[] {
  const found: string[] = [];
  for (const item of Deno.readDirSync(`${root}/${folder}`)) {
    const path = `${folder}/${item.name}`;
    if (item.isDirectory) {
      // `src/remote/`: the side on another host (its transport and its test server).
      if (path !== "src/sides" && path !== "src/remote") found.push(...modulesAbove(root, path));
    } else if (item.name.endsWith(".ts") && !/(_test|test_helpers|test_lease)\.ts$/.test(path)) {
      found.push(path);
    }
  }
  return found;
}

Deno.test("no module above src/sides/ calls the file system on a tree path", () => {
  const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const calls = new Set<string>();
  for (const path of ["sync.ts", ...modulesAbove(root)]) {
    const text = Deno.readTextFileSync(`${root}/${path}`)
      // Comments name calls without making them.
      .replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
    for (const match of text.matchAll(FS_CALL)) {
      const name = match[1] ? `Deno.${match[1]}` : match[2] ? `fs.${match[2]}` : match[3];
      calls.add(`${path} ${name}`);
    }
  }
  const unexplained = [...calls].filter((call) => !(call in ALLOWED)).sort();
  deepStrictEqual(unexplained, [], "file-system calls above the sides: move them under sides/");
});
