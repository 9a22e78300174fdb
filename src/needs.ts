/**
 * Which files must be hashed before the plan is made: those whose SHA-256 would change a
 * decision and is not known yet, and no others, so a no-op run reads nothing. Pure.
 *
 * @module
 */

import { hashesForPair, type PairHashNeed } from "./changed.ts";
import { type PlanOptions } from "./plan.ts";
import { hashLookup, recordedAsIs } from "./record.ts";
import { type Scan } from "./scan.ts";

/**
 * Lists the files to hash before planning, those whose SHA-256 would change a decision and is
 * not known yet:
 *
 * - with `--checksum`, both sides of every same-size pair;
 * - a same-size pair whose mtime differs, when the target's hash is known (equal content then
 *   needs no copy): the source side, and the target too if the record has its hash but cannot
 *   trust it yet (see {@linkcode trustedHash});
 * - both sides of a pair that size and mtime call unchanged but whose source the record saw
 *   with another inode or ctime (an edit with the mtime put back);
 * - both sides of a pair that size and mtime call unchanged but whose target the record does
 *   not know as it is (an interrupted run, a replica made by another tool, damage with the mtime
 *   put back), so that after a run every target file has a hash in the record; without
 *   deletions, also the target files that stay without a source;
 * - restoring, a target the plan may overwrite whose recorded hash cannot be trusted yet, to
 *   tell whether it changed since the last sync; and both sides of a pair that size and mtime
 *   call unchanged but whose target (a source file) the record saw with another inode or ctime.
 *
 * Restoring, targets are source files and are never hashed just to complete the record. A
 * hash the record has for a file as it is now is never read again just because it is not yet
 * trusted: a no-op run reads nothing. Pure.
 */
export function hashesNeeded(
  from: Scan,
  to: Scan,
  options: HashNeedOptions,
): { from: string[]; to: string[] } {
  const need: HashNeed = {
    from,
    to,
    options,
    fromHash: hashLookup(options.fromHashes),
    toHash: hashLookup(options.toHashes),
    wanted: { from: new Set(), to: new Set() },
  };
  for (const [path, source] of from.entries) {
    if (source.kind !== "file") continue;
    const target = to.entries.get(path);
    if (target?.kind === "file") hashesForPair(path, { source, target }, need);
  }
  if (!options.restore && options.deletes === false) hashesForLeftFiles(need);
  return { from: [...need.wanted.from], to: [...need.wanted.to] };
}

/** How {@linkcode hashesNeeded} decides: as {@linkcode planMirror} will. */
export type HashNeedOptions =
  & Pick<PlanOptions, "checksum" | "fromHashes" | "toHashes" | "overwriteNewer">
  & { deletes?: boolean; restore?: boolean };

/** What {@linkcode hashesNeeded} looks at, and the paths it wants hashed. */
interface HashNeed extends PairHashNeed {
  from: Scan;
  to: Scan;
  options: HashNeedOptions;
}

/** Replica files that stay without a source file get a hash too: `--verify` can check them. */
function hashesForLeftFiles(need: HashNeed): void {
  for (const [path, target] of need.to.entries) {
    if (target.kind !== "file" || need.from.entries.get(path)?.kind === "file") continue;
    if (!recordedAsIs(need.options.toHashes?.get(path), target)) need.wanted.to.add(path);
  }
}
