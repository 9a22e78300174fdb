import { deepStrictEqual } from "node:assert/strict";
import { compareNames, compareWalkOrder, lockStep } from "./order.ts";

Deno.test("compareNames() orders by code point, as UTF-8 bytes do, not by UTF-16 code unit", () => {
  // [a, b, expected sign]; the UTF-16 order of the last rows is the other way round.
  const table: Array<[string, string, number]> = [
    ["a", "b", -1],
    ["a", "a", 0],
    ["a", "ab", -1],
    ["Z", "a", -1],
    ["a-", "a/", -1],
    ["z", "é", -1],
    ["é", "\u00e9\u0301", -1],
    ["\uFFFD", "😀", -1],
    ["\uE000", "𝄞", -1],
    ["😀", "😁", -1],
  ];
  for (const [a, b, expected] of table) {
    deepStrictEqual([a, b, Math.sign(compareNames(a, b))], [a, b, expected]);
    // 0 - expected: -0 for equal names would differ from the 0 compareNames gives.
    deepStrictEqual([b, a, Math.sign(compareNames(b, a))], [b, a, 0 - expected]);
  }
  const bytes = (s: string) => [...new TextEncoder().encode(s)];
  const names = ["😀", "\uFFFD", "é", "z", "a-", "a", "A", "\uE000", "a b"];
  const byBytes = [...names].sort((a, b) => {
    const [x, y] = [bytes(a), bytes(b)];
    for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
    return x.length - y.length;
  });
  deepStrictEqual([...names].sort(compareNames), byBytes);
});

Deno.test("compareWalkOrder() puts a folder's subtree right after it, before its next sibling", () => {
  const paths = ["a-", "a/z", "", "a", "é", "z", "a/b/c", "a/b", "a.txt", "😀/x", "😀", "\uFFFD"];
  deepStrictEqual([...paths].sort(compareWalkOrder), [
    "",
    "a",
    "a/b",
    "a/b/c",
    "a/z",
    "a-",
    "a.txt",
    "z",
    "é",
    "\uFFFD",
    "😀",
    "😀/x",
  ]);
  // As plain strings, "a-" and "a.txt" would come between "a" and "a/b".
  deepStrictEqual(["a/b", "a-", "a"].sort(), ["a", "a-", "a/b"]);
});

Deno.test("lockStep() pairs folders found on one side, on both, in walk order", async () => {
  const table: Array<{ first: string[]; second: string[]; pairs: string[] }> = [
    { first: [], second: [], pairs: [] },
    { first: [""], second: [], pairs: ["<"] },
    { first: [], second: [""], pairs: [">"] },
    { first: ["", "a", "a/b"], second: ["", "a"], pairs: ["=", "=", "<"] },
    // Only in the source ("a/x"), only in the replica ("a-"), names UTF-16 sorts otherwise.
    {
      first: ["", "a", "a/x", "é", "😀"],
      second: ["", "a", "a-", "z", "\uFFFD", "😀"],
      pairs: ["=", "=", "<", ">", ">", "<", ">", "="],
    },
  ];
  for (const { first, second, pairs } of table) {
    const sorted = (list: string[]) => [...list].sort(compareWalkOrder);
    deepStrictEqual(sorted(first), first, "the table's sides are in walk order");
    deepStrictEqual(sorted(second), second, "the table's sides are in walk order");
    const [l, r] = [[...first], [...second]];
    const seen: string[] = [];
    for await (
      const pair of lockStep<string, string>({
        first: () => Promise.resolve(l.shift() ?? null),
        second: () => Promise.resolve(r.shift() ?? null),
      }, { first: (x) => x, second: (x) => x })
    ) {
      seen.push(
        pair.first !== null && pair.second !== null ? "=" : pair.first !== null ? "<" : ">",
      );
    }
    deepStrictEqual(seen, pairs);
  }
});
