/**
 * `--exclude` globs: tables of patterns and paths, no disk.
 *
 * @module
 */

import { compileExcludes, isExcludedRecordPath } from "./exclude.ts";
import { assertEquals } from "./test_helpers.ts";

Deno.test("compileExcludes() reads globs like rsync and .gitignore", () => {
  const table: Array<[string, string, boolean, boolean]> = [
    // pattern, path, isDir, excluded
    ["*.tmp", "a.tmp", false, true],
    ["*.tmp", "deep/down/a.tmp", false, true],
    ["*.tmp", "a.tmp.keep", false, false],
    ["cache/", "x/cache", true, true],
    ["cache/", "x/cache", false, false],
    ["build/*.o", "build/main.o", false, true],
    ["build/*.o", "src/build/main.o", false, false],
    ["build/*.o", "build/sub/main.o", false, false],
    ["**/node_modules/", "node_modules", true, true],
    ["**/node_modules/", "a/b/node_modules", true, true],
    ["**/node_modules/", "a/node_modules", false, false],
    ["/top", "top", false, true],
    ["/top", "sub/top", false, false],
    ["a/**/z", "a/z", false, true],
    ["a/**/z", "a/b/c/z", false, true],
    ["file?.txt", "file1.txt", false, true],
    ["file?.txt", "file10.txt", false, false],
    ["[ab].c", "b.c", false, true],
    ["[!ab].c", "b.c", false, false],
    ["a.b", "axb", false, false],
  ];
  for (const [pattern, path, isDir, excluded] of table) {
    assertEquals(compileExcludes([pattern])(path, isDir), excluded, `${pattern} ~ ${path}`);
  }
});

Deno.test("isExcludedRecordPath() excludes a recorded file below an excluded folder", () => {
  const table: Array<[string, string, boolean]> = [
    // pattern, recorded file, excluded
    ["cache/", "cache/a", true],
    ["cache/", "x/cache/deep/a", true],
    ["cache/", "cache", false],
    ["*.tmp", "a.tmp", true],
    ["*.tmp", "a.tmp/b", true],
    ["*.tmp", "a/b", false],
  ];
  for (const [pattern, path, excluded] of table) {
    const matcher = compileExcludes([pattern]);
    assertEquals(isExcludedRecordPath(path, matcher), excluded, `${pattern} ~ ${path}`);
  }
});
