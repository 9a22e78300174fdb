/**
 * Where a run's decided actions go: to the applier of a writing run (counted in the progress
 * totals, each change line printed as it is done), or to the printer of a dry run (each line
 * printed through the reporter, each action counted). Both print the same change lines.
 *
 * @module
 */

import { Applier, type ApplyContext } from "./apply.ts";
import { type Options } from "./cli.ts";
import { type ActionSink } from "./context.ts";
import { type RunControl } from "./control.ts";
import { displayPath } from "./format.ts";
import { describeAction, isListed, printPlanned, type Reporter, type RunProgress } from "./log.ts";
import { type Action, reasonText, replacesData } from "./plan.ts";
import { type PreparedWrites } from "./prepare.ts";
import { type TreeReader } from "./sides/reader.ts";
import { countAction, emptySummary, type RunSummary } from "./summary.ts";
import { type Entry } from "./scan.ts";

/**
 * The sink of a run and the summary it keeps: the applier's, writing with `prepared`, or the
 * printer's, in a dry run.
 */
export function runSink(
  options: Options,
  input: {
    /** The tree copies read from. */
    from: TreeReader;
    deps: SinkDependencies;
    prepared: PreparedWrites | null;
    guardEntries: Map<string, Entry>;
    onSettled: NonNullable<ApplyContext["onSettled"]>;
  },
): { sink: ActionSink; summary: () => RunSummary } {
  const { from, deps, prepared, guardEntries, onSettled } = input;
  if (prepared) {
    const applier = new Applier(
      applyContext(options, { from, deps, prepared, guardEntries, onSettled }),
    );
    return { sink: applySink(applier, deps.control), summary: () => applier.result.summary };
  }
  const counts = emptySummary(true);
  const trash = options.keepDeletedMs !== null;
  const sink = printSink(counts, { trash, control: deps.control, report: deps.report });
  return { sink, summary: () => counts };
}

/** What a run's sink needs besides its options. */
export interface SinkDependencies {
  /** Where the change lines and failures go. */
  report: Reporter;
  /** The stop flags and the progress the sink updates. */
  control: RunControl;
  /** Running as root: owners are kept. */
  isRoot: boolean;
}

function makePause(): () => Promise<void> {
  let last = performance.now();
  return async () => {
    const now = performance.now();
    if (now - last < 100) return; // a turn costs ~2 ms: take one ten times a second
    // A macrotask turn lets signal handlers, stdin and timers run between files.
    await new Promise((done) => setTimeout(done, 0));
    last = performance.now();
  };
}

/** Where and how the applier writes, and what it reports. */
function applyContext(
  options: Options,
  input: {
    from: TreeReader;
    deps: SinkDependencies;
    prepared: PreparedWrites;
    guardEntries: Map<string, Entry>;
    onSettled: ApplyContext["onSettled"];
  },
): ApplyContext {
  const { from, deps: { report, control, isRoot }, prepared, guardEntries } = input;
  return {
    changes: prepared.writer.changes({
      seen: guardEntries,
      owners: isRoot,
      sparse: options.sparse,
    }),
    // Asked for when a copy starts, not before: a run with nothing to copy never needs it.
    get source() {
      return from.fileSource();
    },
    onStart: (action) => control.progress.current = action.path,
    onBytes: (bytes) => control.progress.bytes += bytes,
    shouldStop: () => control.stopRequested,
    pause: makePause(),
    onDone: (action) => {
      if (action.kind !== "dirattrs") control.progress.done++;
      const line = changeLine(action, options.keepDeletedMs !== null);
      if (isListed(action)) report.change(line);
      else report.debug(line);
      report.debug(`  because: ${reasonText(action.reason)}`);
    },
    onFailed: (problem) => report.error(`${displayPath(problem.path)}: ${problem.message}`),
    ...(input.onSettled ? { onSettled: input.onSettled } : {}),
  };
}

/** A dry run's sink: each action printed (on stdout, through the reporter) and counted. */
function printSink(
  counts: RunSummary,
  input: { trash: boolean; control: RunControl; report: Reporter },
): ActionSink {
  return {
    applier: null,
    drain: () => Promise.resolve(),
    apply: (action) => {
      if (input.control.stopRequested) return Promise.resolve(false);
      if (isListed(action)) printPlanned(input.report, changeLine(action, input.trash));
      countAction(counts, action, action.entry?.size ?? 0);
      return Promise.resolve(true);
    },
  };
}

/**
 * An action's change line, the same in a dry run and a real one: with `--keep-deleted`, what
 * goes to the trash says so.
 */
function changeLine(action: Action, trash: boolean): string {
  return `${describeAction(action)}${trash && replacesData(action) ? " (to trash)" : ""}`;
}

/** The sink of a writing run: actions go to the applier, and count in the progress totals. */
export function applySink(applier: Applier, control: { progress: RunProgress }): ActionSink {
  return {
    applier,
    apply: (action) => {
      if (action.kind !== "dirattrs") control.progress.total++;
      if (action.kind === "copy" || action.kind === "update") {
        control.progress.totalBytes += action.entry!.size;
      }
      return applier.apply(action);
    },
    drain: () => applier.drain(),
  };
}
