/**
 * The one order both walks, the record and every merge agree on: names by Unicode code point
 * (which is UTF-8 byte order, the order `ls` shows with `LC_ALL=C`), paths folder by folder. Pure.
 *
 * @module
 */

/**
 * Compares two names by code point, as their UTF-8 bytes compare. JavaScript's `<` compares
 * UTF-16 code units, which puts U+10000 and above (two surrogates, 0xD800–0xDFFF) before
 * U+E000–U+FFFF: an emoji before `"\uFFFD"`. Surrogates are moved above that range here.
 *
 * @returns A negative number when `a` sorts first, 0 when equal, positive otherwise.
 */
export function compareNames(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800) x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
    if (y >= 0xd800) y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    return x - y;
  }
  return a.length - b.length;
}

/**
 * Compares two relative paths in walk order: folder by folder, each name by
 * {@linkcode compareNames}, so a folder's whole subtree comes right after it and before its
 * next sibling: `"a"`, `"a/z"`, `"a-"` (as bytes, `"a-"` < `"a/"`; here the folder `a` wins).
 * The root `""` comes first.
 */
export function compareWalkOrder(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    let endA = a.indexOf("/", i);
    let endB = b.indexOf("/", j);
    if (endA < 0) endA = a.length;
    if (endB < 0) endB = b.length;
    const order = compareNames(a.slice(i, endA), b.slice(j, endB));
    if (order !== 0) return order;
    i = endA + 1;
    j = endB + 1;
  }
  const aDone = i >= a.length;
  const bDone = j >= b.length;
  return aDone === bDone ? 0 : aDone ? -1 : 1;
}

/** One step of a lock-step merge: the item of either sequence at the same key, or of one. */
export interface Paired<A, B> {
  /** The first sequence's item here, if it has one. */
  first: A | null;
  /** The second sequence's item here, if it has one. */
  second: B | null;
}

/**
 * Merges two sequences sorted by `keyOf` in walk order into pairs, one per key, in that order:
 * what rclone's `march` does with two listings. Pure.
 */
export async function* lockStep<A, B>(
  next: { first: () => Promise<A | null>; second: () => Promise<B | null> },
  keyOf: { first: (item: A) => string; second: (item: B) => string },
): AsyncGenerator<Paired<A, B>> {
  let first = await next.first();
  let second = await next.second();
  while (first !== null || second !== null) {
    const order = first === null
      ? 1
      : second === null
      ? -1
      : compareWalkOrder(keyOf.first(first), keyOf.second(second));
    yield { first: order <= 0 ? first : null, second: order >= 0 ? second : null };
    if (order <= 0) first = await next.first();
    if (order >= 0) second = await next.second();
  }
}
