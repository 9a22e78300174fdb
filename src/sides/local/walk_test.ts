import { deepStrictEqual, ok } from "node:assert/strict";
import { compareWalkOrder } from "../../order.ts";
import { withTemp, writeTree } from "../../test_helpers.ts";
import { FolderStream } from "./stream.ts";
import { foldersOf } from "../../test_helpers.ts";

async function walkAll(root: string, start = ""): Promise<Array<[string, string[]]>> {
  return await foldersOf(
    new FolderStream({ root, start, filters: [], skipMetaDir: true, avoid: [] }),
  );
}

Deno.test("FolderStream walks folder by folder in walk order, names by code point", async () => {
  await withTemp(async (dir) => {
    // Names UTF-16 order and byte order sort differently, and a folder next to "a-".
    writeTree(`${dir}/t`, {
      "a": { "z": "1", "b": { "c": "2" } },
      "a-": { "x": "3" },
      "a.txt": "4",
      "é": {},
      "z": "5",
      "\uFFFD": { "q": "6" },
      "😀": { "r": "7" },
      ".treesync": { "record": "ours" },
    });
    const folders = await walkAll(`${dir}/t`);
    deepStrictEqual(folders, [
      ["", ["a", "a-", "a.txt", "z", "é", "\uFFFD", "😀"]],
      ["a", ["b", "z"]],
      ["a/b", ["c"]],
      ["a-", ["x"]],
      ["é", []],
      ["\uFFFD", ["q"]],
      ["😀", ["r"]],
    ]);
    const paths = folders.map(([folder]) => folder);
    deepStrictEqual([...paths].sort(compareWalkOrder), paths);
    deepStrictEqual(await walkAll(`${dir}/t`, "a"), [["a", ["b", "z"]], ["a/b", ["c"]]]);
  });
});

Deno.test("FolderStream hands a large tree over in bounded batches, every entry once", async () => {
  await withTemp(async (dir) => {
    for (let d = 0; d < 30; d++) {
      const files: Record<string, string> = {};
      for (let i = 0; i < 400; i++) files[`f${i}`] = "";
      writeTree(`${dir}/t/d${d}`, files);
    }
    const folders = await walkAll(`${dir}/t`);
    deepStrictEqual(folders.length, 31);
    const total = folders.reduce((sum, [, names]) => sum + names.length, 0);
    deepStrictEqual(total, 30 + 30 * 400, "more than one batch of 4,096 entries, none lost");
  });
});

Deno.test({
  name: "FolderStream says which folder could not be listed, and walks on",
  // Root lists any folder: there is nothing to refuse.
  ignore: Deno.uid() === 0,
  fn: () =>
    withTemp(async (dir) => {
      writeTree(`${dir}/t`, { closed: { f: "x" }, open: { g: "y" } });
      Deno.chmodSync(`${dir}/t/closed`, 0);
      try {
        const stream = new FolderStream({
          root: `${dir}/t`,
          start: "",
          filters: [],
          skipMetaDir: true,
          avoid: [],
        });
        const seen: string[] = [];
        for (let listing = await stream.next(); listing; listing = await stream.next()) {
          seen.push(`${listing.folder}${listing.unlistable ? " (unlistable)" : ""}`);
        }
        stream.close();
        deepStrictEqual(seen, ["", "closed (unlistable)", "open"]);
      } finally {
        Deno.chmodSync(`${dir}/t/closed`, 0o755);
      }
    }),
});

Deno.test("FolderStream stops at the other tree's root", async () => {
  await withTemp(async (dir) => {
    writeTree(`${dir}/t`, { a: { inner: {} }, b: {} });
    const info = Deno.statSync(`${dir}/t/a/inner`);
    const stream = new FolderStream({
      root: `${dir}/t`,
      start: "",
      filters: [],
      skipMetaDir: true,
      avoid: [{ dev: info.dev, ino: info.ino! }],
    });
    let nested: string | undefined;
    for (let listing = await stream.next(); listing; listing = await stream.next()) {
      nested ??= listing.nested;
      ok(listing.folder !== "b", "the walk ends where it met the other root");
    }
    stream.close();
    deepStrictEqual(nested, "a/inner");
  });
});
