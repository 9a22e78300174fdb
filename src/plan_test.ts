/**
 * Tests for the planner: tables of small scans, no disk.
 */

import { deepStrictEqual, match, ok } from "node:assert/strict";
import { type Action, planMirror, type Reason, reasonText, replacesData } from "./plan.ts";
import { countAction, emptySummary } from "./summary.ts";
import { hashesNeeded } from "./needs.ts";
import { type RecordEntry, type RecordMap } from "./record.ts";
import { type Entry, signatureOf } from "./scan.ts";
import { because, e, f, planDefaults, planned, RACY_CASES, scanOf, vouch } from "./test_helpers.ts";

// ------------------------------------------------------------------------------------------------
// Reasons
// ------------------------------------------------------------------------------------------------

Deno.test("reasonText() words every reason as -vv and the log show it", () => {
  const table: Array<[Reason, string]> = [
    [{ code: "new" }, "new"],
    [{ code: "type-changed" }, "type changed"],
    [{ code: "replaced", by: "dir" }, "replaced by a dir"],
    [{ code: "replaced", by: "symlink" }, "replaced by a symlink"],
    [{ code: "inside-replaced" }, "inside a folder replaced by another type"],
    [{ code: "not-in-source" }, "not in source"],
    [{ code: "link-target-differs" }, "symlink target differs"],
    [{ code: "folder-attrs-differ" }, "folder attributes differ"],
    [{ code: "size-differs", fromSize: 7, toSize: 3 }, "size differs (3 -> 7)"],
    [{ code: "content-differs" }, "content differs"],
    [{ code: "hash-differs" }, "content differs (SHA-256), size and mtime alike"],
    [{ code: "mtime-differs-same-hash" }, "mtime differs, same SHA-256"],
    [{ code: "mtime-differs" }, "mtime differs"],
    [{ code: "mode-or-owner-differs" }, "mode or owner differs"],
    [{ code: "folder-filled" }, "folder attributes"],
    [{ code: "same-folder-tree" }, "same folder tree"],
    [{ code: "same-content" }, "same size and SHA-256"],
  ];
  for (const [reason, text] of table) deepStrictEqual(reasonText(reason), text, reason.code);
});

Deno.test("planMirror() gives every action a reason code", () => {
  const table: Array<[string, Entry | undefined, Entry | undefined, string[]]> = [
    ["new file", e("file"), undefined, ["copy x: new"]],
    ["extraneous file", undefined, e("file"), ["delete x: not-in-source"]],
    ["size", f(7, "a"), f(3, "a"), ["update x: size-differs"]],
    ["mtime", e("file", { mtimeMs: 2 }), e("file"), ["update x: mtime-differs"]],
    ["mode", e("file", { mode: 0o600 }), e("file"), ["attrs x: mode-or-owner-differs"]],
    ["link", e("symlink", { target: "a" }), e("symlink"), ["link x: link-target-differs"]],
    ["file to link", e("symlink", { target: "a" }), e("file"), [
      "delete x: replaced",
      "link x: type-changed",
    ]],
  ];
  for (const [name, from, to, expected] of table) {
    const plan = planMirror(
      scanOf(from ? { x: from } : {}),
      scanOf(to ? { x: to } : {}),
      planDefaults,
    );
    deepStrictEqual(because(plan.actions), expected, name);
  }
  const sizes = planMirror(scanOf({ x: f(7, "a") }), scanOf({ x: f(3, "a") }), planDefaults);
  deepStrictEqual(sizes.actions[0]!.reason, { code: "size-differs", fromSize: 7, toSize: 3 });
  const replaced = planMirror(
    scanOf({ x: e("file") }),
    scanOf({ x: e("dir"), "x/in": e("file") }),
    planDefaults,
  );
  deepStrictEqual(because(replaced.actions), [
    "delete x/in: inside-replaced",
    "rmdir x: replaced",
    "copy x: type-changed",
  ]);
  deepStrictEqual(replaced.actions[1]!.reason, { code: "replaced", by: "file" });
});

// ------------------------------------------------------------------------------------------------
// Decisions
// ------------------------------------------------------------------------------------------------

Deno.test("planMirror() decides each entry by type, size, mtime and mode", () => {
  const table: Array<[string, Entry | undefined, Entry | undefined, string[]]> = [
    ["new file", e("file", { size: 3 }), undefined, ["copy x"]],
    ["new folder", e("dir"), undefined, ["mkdir x"]],
    ["new symlink", e("symlink", { target: "t" }), undefined, ["link x"]],
    ["unchanged file", e("file", { size: 3 }), e("file", { size: 3 }), []],
    ["size differs", e("file", { size: 3 }), e("file", { size: 4 }), ["update x"]],
    ["mtime differs", e("file", { mtimeMs: 2 }), e("file", { mtimeMs: 1 }), ["update x"]],
    ["mode differs", e("file", { mode: 0o600 }), e("file"), ["attrs x"]],
    ["target differs", e("symlink", { target: "a" }), e("symlink", { target: "b" }), ["link x"]],
    ["same target", e("symlink", { target: "a" }), e("symlink", { target: "a" }), []],
    ["extraneous file", undefined, e("file"), ["delete x"]],
    ["extraneous folder", undefined, e("dir"), ["rmdir x"]],
    ["file to folder", e("dir"), e("file"), ["delete x", "mkdir x"]],
    ["folder to file", e("file"), e("dir"), ["rmdir x", "copy x"]],
    ["file to symlink", e("symlink", { target: "t" }), e("file"), ["delete x", "link x"]],
    ["symlink to file", e("file"), e("symlink", { target: "t" }), ["delete x", "copy x"]],
  ];
  for (const [name, from, to, expected] of table) {
    const plan = planMirror(
      scanOf(from ? { x: from } : {}),
      scanOf(to ? { x: to } : {}),
      planDefaults,
    );
    deepStrictEqual(planned(plan.actions), expected, name);
  }
});

Deno.test("planMirror() compares owners only when asked (root)", () => {
  const from = scanOf({ x: e("file", { uid: 1000 }) });
  const to = scanOf({ x: e("file") });
  deepStrictEqual(planned(planMirror(from, to, planDefaults).actions), []);
  deepStrictEqual(planned(planMirror(from, to, { ...planDefaults, owners: true }).actions), [
    "attrs x",
  ]);
});

Deno.test("planMirror() never plans to replace or delete a root", () => {
  // A root that is not a folder can only come from a scan gone wrong; it must not become a plan.
  const from = {
    entries: new Map([["", e("symlink", { target: "x" })], ["f", e("file")]]),
    problems: [],
    protectedPaths: [],
  };
  const plan = planMirror(from, scanOf({ old: e("file") }), planDefaults);
  ok(
    !plan.actions.some((a) => a.path === "" && a.kind !== "dirattrs"),
    "the root is left alone",
  );
  deepStrictEqual(plan.blocked.map((p) => p.path), ["."]);
});

Deno.test("planMirror() with checksum decides by hash, the record vouching for the replica", () => {
  const same = "a".repeat(64);
  const other = "b".repeat(64);
  const replicaFile = e("file", { size: 5 });
  const table: Array<[string, Entry, Entry, RecordEntry | undefined, string[]]> = [
    [
      "same size and mtime, other content",
      e("file", { size: 5, hash: same }),
      e("file", { size: 5, hash: other }),
      undefined,
      ["update x"],
    ],
    [
      "same content, other mtime",
      e("file", { size: 5, mtimeMs: 9, hash: same }),
      e("file", { size: 5, hash: same }),
      undefined,
      ["attrs x"],
    ],
    [
      "record gives the replica's hash",
      e("file", { size: 5, hash: same }),
      replicaFile,
      vouch(replicaFile, same),
      [],
    ],
    [
      "a record with another mtime is stale",
      e("file", { size: 5, hash: same }),
      replicaFile,
      vouch(replicaFile, same, { mtimeMs: 999 }),
      ["update x"],
    ],
    [
      "a record with another ctime is stale",
      e("file", { size: 5, hash: same }),
      replicaFile,
      vouch(replicaFile, same, { ctimeMs: 2000 }),
      ["update x"],
    ],
    [
      "a record with another inode is stale",
      e("file", { size: 5, hash: same }),
      replicaFile,
      vouch(replicaFile, same, { ino: 1 }),
      ["update x"],
    ],
    [
      "a racily clean record is not trusted",
      e("file", { size: 5, hash: same }),
      replicaFile,
      vouch(replicaFile, same, { hashedAtMs: 1500 }),
      ["update x"],
    ],
  ];
  for (const [name, from, to, known, expected] of table) {
    const plan = planMirror(scanOf({ x: from }), scanOf({ x: to }), {
      ...planDefaults,
      checksum: true,
      ...(known ? { toHashes: new Map([["x", known]]) } : {}),
    });
    deepStrictEqual(planned(plan.actions), expected, name);
  }
});

Deno.test("planMirror() without checksum spares the copy when known hashes say the content is equal", () => {
  const hash = "d".repeat(64);
  const target = e("file", { size: 5, mtimeMs: 1000 });
  const plan = planMirror(
    scanOf({ x: e("file", { size: 5, mtimeMs: 2000, hash }) }),
    scanOf({ x: target }),
    {
      ...planDefaults,
      toHashes: new Map([["x", vouch(target, hash)]]),
    },
  );
  deepStrictEqual(because(plan.actions), ["attrs x: mtime-differs-same-hash"]);
});

Deno.test("planMirror() repairs a replica file whose hash shows other content, size and mtime alike", () => {
  const source = e("file", { size: 5 });
  const plan = planMirror(
    scanOf({ x: source }),
    scanOf({ x: e("file", { size: 5, hash: "b".repeat(64) }) }), // hashed this run
    { ...planDefaults, fromHashes: new Map([["x", vouch(source, "a".repeat(64))]]) },
  );
  deepStrictEqual(because(plan.actions), ["update x: hash-differs"]);
});

Deno.test("planMirror() orders actions so every step has what it needs", () => {
  const from = scanOf({ a: e("dir"), "a/b": e("dir"), "a/b/f": e("file"), x: e("file") });
  const to = scanOf({
    x: e("dir"),
    "x/y": e("dir"),
    "x/y/z": e("file"),
    old: e("dir"),
    "old/o": e("file"),
  });
  const plan = planMirror(from, to, planDefaults);
  deepStrictEqual(planned(plan.actions), [
    // the folder in the way goes first, deepest first
    "delete x/y/z",
    "rmdir x/y",
    "rmdir x",
    // then creations, parents first
    "mkdir a",
    "mkdir a/b",
    "copy a/b/f",
    "copy x",
    // then extraneous entries, deepest first
    "delete old/o",
    "rmdir old",
  ]);
  const attrs = plan.actions.filter((a) => a.kind === "dirattrs").map((a) => a.path);
  deepStrictEqual(attrs, ["a/b", "a", ""], "new and touched folders get their attributes last");
  deepStrictEqual(plan.actions.at(-1)!.kind, "dirattrs");
});

Deno.test("planMirror() without deletions keeps extraneous entries and folders in the way", () => {
  const from = scanOf({ f: e("file"), d: e("dir") });
  const to = scanOf({ f: e("dir"), "f/inner": e("file"), d: e("file"), extra: e("file") });
  const plan = planMirror(from, to, { ...planDefaults, deletes: false });
  deepStrictEqual(planned(plan.actions), [], "a file in the way is left too");
  deepStrictEqual(plan.blocked.map((p) => p.path), ["f", "d"]);
});

Deno.test("planMirror() never deletes what a scan protects, nor the folders above it", () => {
  // `gone/keep.tmp` is excluded in the replica; `src-bad` could not be read in the source.
  const from = scanOf({}, ["src-bad"]);
  const to = scanOf(
    {
      gone: e("dir"),
      "gone/f": e("file"),
      "src-bad": e("dir"),
      "src-bad/f": e("file"),
      other: e("file"),
    },
    ["gone/keep.tmp"],
  );
  deepStrictEqual(planned(planMirror(from, to, planDefaults).actions), [
    "delete other",
    "delete gone/f",
  ]);
});

Deno.test("planMirror() does not replace a folder holding protected entries", () => {
  const from = scanOf({ d: e("file") });
  const to = scanOf({ d: e("dir") }, ["d/excluded.tmp"]);
  const plan = planMirror(from, to, planDefaults);
  deepStrictEqual(planned(plan.actions), []);
  deepStrictEqual(plan.blocked.map((p) => p.path), ["d"]);
});

Deno.test("planMirror() leaves every type change alone when restoring or without deletions", () => {
  // [name, `from` entries, `to` entries]: in each, `x` has another type on the two sides.
  const table: Array<[string, Record<string, Entry>, Record<string, Entry>]> = [
    ["a folder where the target has a file", { x: e("dir"), "x/in": e("file") }, { x: e("file") }],
    ["a file where the target has a folder", { x: e("file") }, {
      x: e("dir"),
      "x/mine": e("file"),
    }],
    ["a symlink where the target has a file", { x: e("symlink", { target: "t" }) }, {
      x: e("file"),
    }],
    ["a file where the target has a symlink", { x: e("file") }, {
      x: e("symlink", { target: "t" }),
    }],
    ["a folder where the target has a symlink", { x: e("dir"), "x/in": e("dir") }, {
      x: e("symlink", { target: "t" }),
    }],
  ];
  for (const [name, fromEntries, toEntries] of table) {
    for (const restore of [false, true]) {
      const plan = planMirror(scanOf(fromEntries), scanOf(toEntries), {
        ...planDefaults,
        deletes: false,
        restore,
        overwriteNewer: true, // does not apply to type changes
      });
      const label = `${name}${restore ? ", restoring" : ""}`;
      const touched = plan.actions.filter((a) => a.path === "x" || a.path.startsWith("x/"));
      deepStrictEqual(touched, [], `${label}: nothing at or below x`);
      deepStrictEqual(plan.blocked.map((p) => p.path), ["x"], label);
      match(
        plan.blocked[0]!.message,
        restore ? /^Not restored: .*never replaces/ : /^Not replaced: .*deletions are off/,
      );
    }
  }
});

// ------------------------------------------------------------------------------------------------
// Restoring
// ------------------------------------------------------------------------------------------------

Deno.test("planMirror() restoring keeps source files the last sync did not see as they are", () => {
  const hash = "a".repeat(64);
  const source = (fields: Partial<Entry> = {}) => e("file", { size: 3, ino: 7, ...fields });
  const seen = vouch(source(), hash); // the last sync's view of the source file
  // [name, replica's entry, source's entry, record's source entry, plan, with overwriteNewer]
  const table: Array<
    [string, Entry, Entry | undefined, RecordEntry | undefined, string[], string[]]
  > = [
    ["missing in the source", e("file", { size: 5 }), undefined, undefined, ["copy x"], [
      "copy x",
    ]],
    ["unchanged since the last sync", e("file", { size: 5 }), source(), seen, ["update x"], [
      "update x",
    ]],
    ["edited since", e("file", { size: 5 }), source({ mtimeMs: 9_000 }), seen, [], ["update x"]],
    [
      "edited with the mtime put back",
      e("file", { size: 5 }),
      source({ ctimeMs: 8_000 }),
      seen,
      [],
      [
        "update x",
      ],
    ],
    ["swapped in", e("file", { size: 5 }), source({ ino: 8 }), seen, [], ["update x"]],
    ["never synced", e("file", { size: 5 }), source(), undefined, [], ["update x"]],
    [
      "racily clean when synced",
      e("file", { size: 5 }),
      source(),
      { ...seen, hashedAtMs: 1_200 },
      [],
      [
        "update x",
      ],
    ],
    [
      "racily clean, this run's hash agrees",
      e("file", { size: 5 }),
      source({ hash }),
      {
        ...seen,
        hashedAtMs: 1_200,
      },
      ["update x"],
      ["update x"],
    ],
    [
      "racily clean, this run's hash differs",
      e("file", { size: 5 }),
      source({
        hash: "b".repeat(64),
      }),
      { ...seen, hashedAtMs: 1_200 },
      [],
      ["update x"],
    ],
    [
      "only the mode differs, edited since",
      e("file", { size: 3, mode: 0o600 }),
      source({
        mtimeMs: 1_000,
        ino: 9,
      }),
      seen,
      [],
      ["attrs x"],
    ],
    [
      "a symlink the record cannot know",
      e("symlink", { target: "a" }),
      e("symlink", {
        target: "b",
      }),
      undefined,
      [],
      ["link x"],
    ],
  ];
  for (const [name, replicaEntry, sourceEntry, known, expected, overwriting] of table) {
    for (const overwriteNewer of [false, true]) {
      const plan = planMirror(
        scanOf({ x: replicaEntry }),
        scanOf(sourceEntry ? { x: sourceEntry } : {}),
        {
          ...planDefaults,
          deletes: false,
          restore: true,
          overwriteNewer,
          ...(known ? { toHashes: new Map([["x", known]]) } : {}),
        },
      );
      const label = `${name}${overwriteNewer ? ", overwriting" : ""}`;
      deepStrictEqual(planned(plan.actions), overwriteNewer ? overwriting : expected, label);
      const kept = plan.blocked.map((p) => p.message).join("\n");
      if (planned(plan.actions).length === 0) match(kept, /^Kept: .*--overwrite-newer/);
      else deepStrictEqual(plan.blocked, [], label);
    }
  }
});

Deno.test("planMirror() restoring overwrites a source file only when the record can vouch for it", () => {
  // The rule of trustedHash(), ctime seconds included, decides whether the source file is as the
  // last sync left it; a hash taken this run settles it either way.
  const file = e("file", { size: 4, mtimeMs: 1_000, ctimeMs: 5_000 });
  const hash = "a".repeat(64);
  const table = RACY_CASES;
  const restoring = (source: Entry, known: RecordEntry) =>
    planned(
      planMirror(scanOf({ x: e("file", { size: 5 }) }), scanOf({ x: source }), {
        ...planDefaults,
        deletes: false,
        restore: true,
        toHashes: new Map([["x", known]]),
      }).actions,
    ).length > 0;
  for (const [name, fields, hashedAtMs, trusted] of table) {
    const entry = { ...file, ...fields };
    const known = { ...signatureOf(entry), hash, hashedAtMs };
    deepStrictEqual(restoring(entry, known), trusted, name);
    deepStrictEqual(restoring({ ...entry, hash }, known), true, `${name}, rehashed`);
    const other = { ...entry, hash: "b".repeat(64) };
    deepStrictEqual(restoring(other, known), false, `${name}, other content`);
  }
});

// ------------------------------------------------------------------------------------------------
// Hashes to read before planning
// ------------------------------------------------------------------------------------------------

Deno.test("hashesNeeded() asks only for what would change a decision and is not known", () => {
  const from = scanOf({
    a: e("file", { size: 5 }),
    b: e("file", { size: 5 }),
    c: e("file", { size: 1 }),
    touched: e("file", { size: 3, mtimeMs: 5000 }),
    renamed: e("file", { size: 7 }),
    lonely: e("file", { size: 8 }),
  });
  const replicaA = e("file", { size: 5 });
  const replicaTouched = e("file", { size: 3 });
  const to = scanOf({
    a: replicaA,
    b: e("file", { size: 5 }),
    c: e("file", { size: 2 }),
    touched: replicaTouched,
    old: e("file", { size: 7 }),
    other: e("file", { size: 9 }),
  });
  const toHashes = new Map([["a", vouch(replicaA, "f".repeat(64))], [
    "touched",
    vouch(replicaTouched, "e".repeat(64)),
  ]]);
  deepStrictEqual(hashesNeeded(from, to, { checksum: true, toHashes }), {
    from: ["a", "b", "touched"],
    to: ["b"],
  });
  // `b` is not in the record: both sides are hashed, so the record ends with its hash.
  deepStrictEqual(hashesNeeded(from, to, { checksum: false, toHashes }), {
    from: ["b", "touched"],
    to: ["b"],
  });
  // The record saw `b` with another inode: swapped in, so both sides are hashed.
  const fromHashes = new Map([["b", vouch(e("file", { size: 5 }), "b".repeat(64))]]);
  deepStrictEqual(hashesNeeded(from, to, { checksum: false, toHashes, fromHashes }), {
    from: ["b", "touched"],
    to: ["b"],
  });
});

Deno.test("hashesNeeded() rechecks replica files the record cannot vouch for, and nothing else", () => {
  const hash = "c".repeat(64);
  const t = (fields: Partial<Entry> = {}) => e("file", { size: 4, ...fields });
  const targets = {
    recorded: t(),
    unknown: t(),
    unhashed: t(),
    damaged: t(),
    racy: t(),
    touchedRacy: t(),
    touchedUnknown: t(),
    extra: t(),
    extraRecorded: t(),
    grown: t(),
  };
  const sources: Record<string, Entry> = {};
  for (const name of Object.keys(targets)) {
    if (!name.startsWith("extra")) sources[name] = t();
  }
  sources.touchedRacy = t({ mtimeMs: 9_000 });
  sources.touchedUnknown = t({ mtimeMs: 9_000 });
  sources.grown = t({ size: 5 });
  const toHashes: RecordMap = new Map([
    ["recorded", vouch(targets.recorded, hash)],
    ["unhashed", { ...vouch(targets.unhashed, hash), hash: null }],
    ["damaged", vouch(targets.damaged, hash, { ctimeMs: 500 })], // changed since it was hashed
    ["racy", vouch(targets.racy, hash, { hashedAtMs: 1_100 })],
    ["touchedRacy", vouch(targets.touchedRacy, hash, { hashedAtMs: 1_100 })],
    ["extraRecorded", vouch(targets.extraRecorded, hash)],
    ["grown", vouch(targets.grown, hash, { hashedAtMs: 1_100 })],
  ]);
  // The source of `damaged` is known to the record: only the replica side needs reading.
  const fromHashes: RecordMap = new Map([["damaged", vouch(sources.damaged!, hash)]]);
  const from = scanOf(sources);
  const to = scanOf(targets);
  const sorted = (wanted: { from: string[]; to: string[] }) => ({
    from: wanted.from.sort(),
    to: wanted.to.sort(),
  });
  deepStrictEqual(sorted(hashesNeeded(from, to, { checksum: false, toHashes, fromHashes })), {
    from: ["touchedRacy", "unhashed", "unknown"],
    to: ["damaged", "touchedRacy", "unhashed", "unknown"],
  });
  // Without deletions, replica files that stay without a source get a hash too.
  const noDeletes = { checksum: false, toHashes, fromHashes, deletes: false };
  deepStrictEqual(sorted(hashesNeeded(from, to, noDeletes)).to, [
    "damaged",
    "extra",
    "touchedRacy",
    "unhashed",
    "unknown",
  ]);
  // Restoring, targets are source files: never hashed to complete the record, only to tell
  // whether one about to be overwritten changed since the last sync, or whether one the record
  // saw with another ctime (`damaged`: edited with size and mtime put back) differs.
  const restoring = { checksum: false, toHashes, fromHashes, restore: true };
  deepStrictEqual(sorted(hashesNeeded(from, to, restoring)), {
    from: ["touchedRacy"],
    to: ["damaged", "grown", "touchedRacy"],
  });
  deepStrictEqual(
    sorted(hashesNeeded(from, to, { ...restoring, overwriteNewer: true })).to,
    ["damaged", "touchedRacy"],
  );
});

// ------------------------------------------------------------------------------------------------
// Dry run and counts
// ------------------------------------------------------------------------------------------------

Deno.test("replacesData() marks what --keep-deleted sends to the trash", () => {
  const file = e("file");
  const link = e("symlink", { target: "t" });
  const table: Array<[Action, boolean]> = [
    [{ kind: "delete", path: "x", reason: { code: "not-in-source" } }, true],
    [{ kind: "delete", path: "x", reason: { code: "replaced", by: "dir" } }, true],
    [{ kind: "update", path: "x", reason: { code: "mtime-differs" }, entry: file }, true],
    [{ kind: "link", path: "x", reason: { code: "link-target-differs" }, entry: link }, true],
    // What a symlink of another type replaces went to the trash with its deletion, before.
    [{ kind: "link", path: "x", reason: { code: "type-changed" }, entry: link }, false],
    [{ kind: "link", path: "x", reason: { code: "new" }, entry: link }, false],
    [{ kind: "copy", path: "x", reason: { code: "new" }, entry: file }, false],
    [{ kind: "rmdir", path: "x", reason: { code: "not-in-source" } }, false],
    [{ kind: "attrs", path: "x", reason: { code: "mode-or-owner-differs" }, entry: file }, false],
    [{ kind: "move", path: "x", from: "y", reason: { code: "same-content" }, entry: file }, false],
  ];
  for (const [action, expected] of table) {
    deepStrictEqual(replacesData(action), expected, `${action.kind} ${action.reason.code}`);
  }
});

Deno.test("countAction() puts each action in its counter", () => {
  const file = e("file", { size: 10 });
  const link = e("symlink", { target: "t" });
  const table: Array<[Action, Partial<ReturnType<typeof emptySummary>>]> = [
    [{ kind: "copy", path: "x", reason: { code: "new" }, entry: file }, {
      copied: 1,
      bytesCopied: 10,
    }],
    [{ kind: "update", path: "x", reason: { code: "mtime-differs" }, entry: file }, {
      updated: 1,
      bytesCopied: 10,
    }],
    [{ kind: "link", path: "x", reason: { code: "new" }, entry: link }, { copied: 1 }],
    [{ kind: "link", path: "x", reason: { code: "type-changed" }, entry: link }, { updated: 1 }],
    [{ kind: "delete", path: "x", reason: { code: "not-in-source" } }, { deleted: 1 }],
    [{ kind: "mkdir", path: "x", reason: { code: "new" }, entry: e("dir") }, { dirsCreated: 1 }],
    [{ kind: "rmdir", path: "x", reason: { code: "not-in-source" } }, { dirsDeleted: 1 }],
    [{ kind: "attrs", path: "x", reason: { code: "mode-or-owner-differs" }, entry: file }, {
      attrsUpdated: 1,
    }],
    [{ kind: "move", path: "x", from: "y", reason: { code: "same-content" }, entry: file }, {
      moved: 1,
    }],
    [{ kind: "dirattrs", path: "x", reason: { code: "folder-filled" }, entry: e("dir") }, {}],
    // A folder whose attributes differed before the run is listed, and counted, as fixed.
    [{
      kind: "dirattrs",
      path: "x",
      reason: { code: "folder-attrs-differ" },
      entry: e("dir"),
      differs: ["mode"],
    }, { attrsUpdated: 1 }],
    // The replica's root, made before the walk, is no folder created in it.
    [{ kind: "mkdir", path: "", reason: { code: "new" }, entry: e("dir") }, {}],
  ];
  for (const [action, counts] of table) {
    const summary = emptySummary(false);
    countAction(summary, action, action.entry?.size ?? 0);
    deepStrictEqual(summary, { ...emptySummary(false), ...counts }, action.kind);
  }
});
