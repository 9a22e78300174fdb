import { deepStrictEqual } from "node:assert/strict";
import { Batcher, inBatches } from "./batch.ts";

Deno.test("inBatches() closes a batch at the item count or at the item that reaches the bytes", () => {
  const cases: Array<[string, number[], number[][]]> = [
    ["nothing", [], []],
    ["under both limits", [1, 1], [[1, 1]]],
    ["three items a batch", [1, 1, 1, 1, 1, 1, 1], [[1, 1, 1], [1, 1, 1], [1]]],
    ["bytes reached by the second item", [4, 6, 1], [[4, 6], [1]]],
    ["one item over the bytes alone", [50, 1, 1], [[50], [1, 1]]],
  ];
  for (const [name, sizes, expected] of cases) {
    const batches = inBatches(sizes, { limits: { items: 3, bytes: 10 }, bytesOf: (size) => size });
    deepStrictEqual(batches, expected, name);
  }
});

Deno.test("Batcher hands a full batch back from add(), and the rest from take()", () => {
  const batcher = new Batcher<string>({ items: 2, bytes: 1000 });
  deepStrictEqual(batcher.add("a", 1), null);
  deepStrictEqual(batcher.add("b", 1), ["a", "b"]);
  deepStrictEqual(batcher.add("c", 1), null);
  deepStrictEqual(batcher.take(), ["c"]);
  deepStrictEqual(batcher.take(), []);
});
