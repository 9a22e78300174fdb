import { deepStrictEqual } from "node:assert/strict";
import { bindMountPossible } from "./prepare.ts";

Deno.test("bindMountPossible() walks first only where two mounts could show one folder twice", () => {
  const mounts = ["/", "/proc", "/etc/hosts", "/mnt/disk", "/srv/view", "/home/a b"];
  const table: Array<[string, string, string, boolean, boolean]> = [
    ["one mount, no mount inside", "/srv/data", "/backup/data", true, false],
    ["different devices, no mount inside", "/mnt/disk/data", "/backup", false, false],
    ["the same device through two mounts", "/srv/data", "/srv/view/replica", true, true],
    ["the replica root is itself a mount", "/srv", "/srv/view", true, true],
    ["a mount point inside the source", "/", "/mnt/disk/replica", false, true],
    ["a mount point inside the replica", "/mnt/disk/s", "/srv", true, true],
    ["a name that only starts like a mount point", "/mnt/diskette", "/srv/x", true, false],
    ["a mount point with a space", "/home/a b/s", "/home/r", true, true],
  ];
  for (const [label, from, to, sameDevice, expected] of table) {
    const possible = bindMountPossible(mounts, { roots: { from, to }, sameDevice });
    deepStrictEqual([label, possible], [label, expected]);
  }
});
