/**
 * Tests for the end-of-run planner: tables of small leftovers, no disk.
 */

import { deepStrictEqual as assertEquals } from "node:assert/strict";
import {
  type ArrivalStep,
  type GateSettings,
  type MoveHashes,
  moveHashesNeeded,
  planArrivals,
  planFolderAttributes,
  planSettling,
  type SettlingStep,
} from "./endplan.ts";
import { emptyLeftovers, type PendingDeletion, type WalkLeftovers } from "./context.ts";
import { type Action } from "./plan.ts";
import { type Entry } from "./scan.ts";
import { e, vouch } from "./test_helpers.ts";

/** A pending deletion of `path` (a folder with a final `/`), with what the record knew. */
function gone(path: string, entry: Entry, known?: { sourceIno?: number }): PendingDeletion {
  const folder = entry.kind === "dir";
  const action: Action = {
    kind: folder ? "rmdir" : "delete",
    path,
    reason: { code: "not-in-source" },
  };
  const deletion: PendingDeletion = { action, entry };
  if (known?.sourceIno !== undefined) {
    deletion.known = {
      name: path.slice(path.lastIndexOf("/") + 1),
      kind: folder ? "dir" : "file",
      source: { ...vouch(e("dir", { ino: known.sourceIno }), ""), ino: known.sourceIno },
    };
  }
  return deletion;
}

/** A new source entry kept for the end. */
function made(path: string, entry: Entry): { action: Action } {
  const kind = entry.kind === "dir" ? "mkdir" : "copy";
  return { action: { kind, path, reason: { code: "new" }, entry } };
}

function leftovers(fields: Partial<WalkLeftovers>): WalkLeftovers {
  return { ...emptyLeftovers(), ...fields };
}

function hashes(from: Record<string, string>, to: Record<string, string>): MoveHashes {
  return { from: new Map(Object.entries(from)), to: new Map(Object.entries(to)) };
}

const NO_HASHES = hashes({}, {});

/** Each arrival step as one short line. */
function arrivals(steps: ArrivalStep[]): string[] {
  return steps.map((step) => {
    switch (step.kind) {
      case "move-folder":
      case "move-file":
        return `${step.kind} ${step.move.from} -> ${step.move.path}`;
      case "walk-moved":
      case "walk-new":
        return `${step.kind} ${step.folders.join(", ")}`;
      case "create":
        return `${step.action.kind} ${step.action.path}${step.unlessMoved ? " unless moved" : ""}`;
    }
  });
}

/** Each settling step as one short line. */
function settling(steps: SettlingStep[], left: WalkLeftovers): string[] {
  // The folder attributes are planned when the executor comes to them, as it does here.
  steps = steps.flatMap((step) =>
    step.kind === "attributes" ? planFolderAttributes(left, step.later) : [step]
  );
  return steps.map((step) => {
    const when = step.ifConfirmed ? " if confirmed" : "";
    switch (step.kind) {
      case "hardlink":
        return `hardlink ${step.action.path} = ${step.action.from}`;
      case "gate":
        return `gate ${step.verdict.kind}`;
      case "delete":
        return `${step.deletion.action.kind} ${step.deletion.action.path}${when}`;
      case "not-replaced":
        return `not-replaced ${step.path}`;
      case "replace":
        return `replace ${step.action.kind} ${step.action.path}${when}`;
      case "walk-new":
        return `walk-new ${step.folders.join(", ")}${when}`;
      case "folder-attrs":
        return `attrs ${step.action.path || "."}${when}`;
      case "attributes":
        return "attributes";
    }
  });
}

const GATE: GateSettings = { maxDelete: null, asks: false, unadopted: false, replica: "/r" };

Deno.test("planArrivals() moves a folder whose source inode the record knows at a folder going", () => {
  const source = e("dir", { ino: 42 });
  const left = leftovers({
    deletions: [gone("old", e("dir"), { sourceIno: 42 }), gone("old/f", e("file"))],
    newEntries: [made("new", source), made("other", e("dir"))],
  });
  assertEquals(arrivals(planArrivals(left, { moves: true, hashes: NO_HASHES })), [
    "move-folder old -> new",
    "walk-moved new",
    "mkdir new unless moved",
    "mkdir other",
    "walk-new new, other",
  ]);
  assertEquals(
    arrivals(planArrivals(left, { moves: false, hashes: NO_HASHES })),
    ["mkdir new", "mkdir other", "walk-new new, other"],
    "without moves, everything new is made",
  );
});

Deno.test("planArrivals() keeps a folder that holds what is left out: it is no move", () => {
  const left = leftovers({
    deletions: [gone("old", e("dir"), { sourceIno: 7 })],
    newEntries: [made("new", e("dir", { ino: 7 }))],
    keptFolders: new Set(["old"]),
  });
  assertEquals(arrivals(planArrivals(left, { moves: true, hashes: NO_HASHES })), [
    "mkdir new",
    "walk-new new",
  ]);
});

Deno.test("planArrivals() moves files by size and SHA-256, a file of the same name first", () => {
  const table: Array<[string, WalkLeftovers, MoveHashes, string[]]> = [
    [
      "same content",
      leftovers({
        deletions: [gone("a.txt", e("file", { size: 5 }))],
        newEntries: [made("b.txt", e("file", { size: 5 }))],
      }),
      hashes({ "b.txt": "h" }, { "a.txt": "h" }),
      ["move-file a.txt -> b.txt"],
    ],
    [
      "other content",
      leftovers({
        deletions: [gone("a.txt", e("file", { size: 5 }))],
        newEntries: [made("b.txt", e("file", { size: 5 }))],
      }),
      hashes({ "b.txt": "h" }, { "a.txt": "other" }),
      ["copy b.txt"],
    ],
    [
      "the same name preferred, each replica file once",
      leftovers({
        deletions: [
          gone("x/one", e("file", { size: 5 })),
          gone("x/two", e("file", { size: 5 })),
        ],
        newEntries: [
          made("y/two", e("file", { size: 5 })),
          made("y/three", e("file", { size: 5 })),
          made("y/four", e("file", { size: 5 })),
        ],
      }),
      hashes({ "y/two": "h", "y/three": "h", "y/four": "h" }, { "x/one": "h", "x/two": "h" }),
      ["move-file x/two -> y/two", "move-file x/one -> y/three", "copy y/four"],
    ],
    [
      "a file inside a folder that moves is no candidate",
      leftovers({
        deletions: [
          gone("old", e("dir"), { sourceIno: 9 }),
          gone("old/f", e("file", { size: 5 })),
        ],
        newEntries: [made("new", e("dir", { ino: 9 })), made("g", e("file", { size: 5 }))],
      }),
      hashes({ g: "h" }, { "old/f": "h" }),
      [
        "move-folder old -> new",
        "walk-moved new",
        "mkdir new unless moved",
        "copy g",
        "walk-new new",
      ],
    ],
  ];
  for (const [name, left, found, expected] of table) {
    assertEquals(arrivals(planArrivals(left, { moves: true, hashes: found })), expected, name);
  }
});

Deno.test("moveHashesNeeded() asks only for files of sizes on both sides, outside moved folders", () => {
  const trusted = e("file", { size: 5 });
  const left = leftovers({
    deletions: [
      gone("old", e("dir"), { sourceIno: 3 }),
      gone("old/inside", e("file", { size: 5 })),
      gone("a", e("file", { size: 5 })),
      { ...gone("b", trusted), known: { name: "b", kind: "file", replica: vouch(trusted, "hb") } },
      gone("c", e("file", { size: 6 })),
    ],
    newEntries: [
      made("new", e("dir", { ino: 3 })),
      made("n5", e("file", { size: 5 })),
      made("n7", e("file", { size: 7 })),
    ],
  });
  const needs = moveHashesNeeded(left);
  assertEquals([...needs.from.keys()], ["n5"]);
  assertEquals([...needs.to.keys()], ["a"], "b's hash the record vouches for; c's size is alone");
  assertEquals([...needs.trusted], [["b", "hb"]]);
});

Deno.test("planSettling() deletes deepest first, then the type changes, then attributes deepest first", () => {
  const left = leftovers({
    deletions: [gone("d", e("dir")), gone("d/f", e("file")), gone("z", e("file"))],
    afterDeletions: [{
      kind: "mkdir",
      path: "t",
      reason: { code: "type-changed" },
      entry: e("dir"),
    }],
    touchedFolders: new Map([["", e("dir")], ["a", e("dir")], ["a/b", e("dir")], ["t", e("dir")]]),
    replicaEntries: 10,
  });
  assertEquals(settling(planSettling(left, { gate: GATE, movedAway: new Set() }), left), [
    "gate delete",
    "delete z",
    "delete d/f",
    "rmdir d",
    "replace mkdir t",
    "walk-new t",
    "attrs t",
    "attrs a/b",
    "attrs a",
    "attrs .",
  ]);
});

Deno.test("planSettling() leaves what moved and the folders that must stay", () => {
  const left = leftovers({
    deletions: [
      gone("moved", e("dir")),
      gone("moved/f", e("file")),
      gone("kept", e("dir")),
      gone("kept/gone", e("file")),
    ],
    keptFolders: new Set(["kept"]),
    replicaEntries: 10,
  });
  assertEquals(settling(planSettling(left, { gate: GATE, movedAway: new Set(["moved"]) }), left), [
    "gate delete",
    "delete kept/gone",
  ]);
});

Deno.test("planSettling() holds every deletion back past --max-delete, as a count or a share", () => {
  const deletions = ["a", "b", "c"].map((path) => gone(path, e("file")));
  const table: Array<[string, GateSettings["maxDelete"], number, string]> = [
    ["under the count", { count: 3 }, 10, "delete"],
    ["over the count", { count: 2 }, 10, "max-delete"],
    ["under the share", { percent: 30 }, 10, "delete"],
    ["over the share", { percent: 20 }, 10, "max-delete"],
  ];
  for (const [name, maxDelete, replicaEntries, kind] of table) {
    const left = leftovers({ deletions, replicaEntries });
    const steps = planSettling(left, { gate: { ...GATE, maxDelete }, movedAway: new Set() });
    const gate = steps.find((step) => step.kind === "gate")!;
    assertEquals(gate.kind === "gate" && gate.verdict.kind, kind, name);
    assertEquals(steps.filter((step) => step.kind === "delete").length, kind === "delete" ? 3 : 0);
  }
  const left = leftovers({ deletions, replicaEntries: 10 });
  const steps = planSettling(left, {
    gate: { ...GATE, maxDelete: { percent: 20 } },
    movedAway: new Set(),
  });
  assertEquals(steps[0]!.kind === "gate" && steps[0]!.verdict, {
    kind: "max-delete",
    count: 3,
    message: "Deleting nothing: this run would delete 3 entries, more than --max-delete " +
      "20% = 2 of 10 entries; copying the rest. Check the source, then raise the limit or run " +
      "once without it",
  });
});

Deno.test("planSettling() keeps everything in a replica not adopted, and lists it in walk order", () => {
  const left = leftovers({
    deletions: [gone("other", e("dir")), gone("other/important", e("file"))],
    afterDeletions: [{
      kind: "copy",
      path: "t",
      reason: { code: "type-changed" },
      entry: e("file"),
    }],
    touchedFolders: new Map([["", e("dir")], ["t", e("dir")]]),
  });
  const steps = planSettling(left, { gate: { ...GATE, unadopted: true }, movedAway: new Set() });
  assertEquals(settling(steps, left), ["gate unadopted", "attrs ."], "the type change waits too");
  const gate = steps[0]!;
  assertEquals(gate.kind === "gate" && gate.verdict.kind === "unadopted" && gate.verdict.kept, [
    "other/",
    "other/important",
  ]);
});

Deno.test("planSettling() with -I runs deletions and what needs them only if confirmed", () => {
  const left = leftovers({
    deletions: [{
      ...gone("t", e("file")),
      action: { kind: "delete", path: "t", reason: { code: "replaced", by: "dir" } },
    }],
    afterDeletions: [{
      kind: "mkdir",
      path: "t",
      reason: { code: "type-changed" },
      entry: e("dir"),
    }],
    touchedFolders: new Map([["", e("dir")], ["t", e("dir")]]),
    hardLinks: [{
      kind: "hardlink",
      path: "b",
      from: "a",
      reason: { code: "hard-linked" },
      entry: e("file"),
    }],
  });
  assertEquals(
    settling(planSettling(left, { gate: { ...GATE, asks: true }, movedAway: new Set() }), left),
    [
      "hardlink b = a",
      "gate ask",
      "delete t if confirmed",
      "replace mkdir t if confirmed",
      "walk-new t if confirmed",
      "attrs t if confirmed",
      "attrs .",
    ],
  );
});

Deno.test("planSettling() does not replace a folder that holds what is left out, and says so", () => {
  const left = leftovers({
    afterDeletions: [{
      kind: "copy",
      path: "k",
      reason: { code: "type-changed" },
      entry: e("file"),
    }],
    keptFolders: new Set(["k"]),
    touchedFolders: new Map([["", e("dir")], ["k", e("dir")]]),
  });
  assertEquals(settling(planSettling(left, { gate: GATE, movedAway: new Set() }), left), [
    "gate none",
    "not-replaced k",
    "attrs .",
  ]);
});
