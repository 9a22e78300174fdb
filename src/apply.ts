/**
 * Applying actions: the dispatcher that turns each action of the plan into a change of the
 * tree written ({@linkcode TreeChanges}), copies in batches that read from one side and place
 * into the other, and keeps what was done for the summary and the record. It touches no file:
 * every change, and every check before it, is the writing side's.
 *
 * @module
 */

import { Batcher, type BatchLimits } from "./batch.ts";
import { errorText } from "./errors.ts";
import { type Action, ACTION_WORDS } from "./plan.ts";
import { type Problem, type Signature } from "./scan.ts";
import {
  type CopyItem,
  type CopyOutcome,
  type FileSource,
  type TreeChanges,
} from "./sides/writer.ts";
import { countAction, emptySummary, type RunSummary } from "./summary.ts";

export type { CopiedFile, CopyOutcome } from "./sides/writer.ts";

/** Where and how the {@linkcode Applier} writes, and whom it tells. */
export interface ApplyContext {
  /** The run's changes to the tree written. */
  changes: TreeChanges;
  /** Where copies read from: the other side's descriptor. */
  source: FileSource;
  /** Checked between actions: true stops after the current one. */
  shouldStop: () => boolean;
  /** Lets the event loop turn between actions (signals, stdin). */
  pause: () => Promise<void>;
  /** Called with each action done and the bytes it wrote. */
  onDone: (action: Action, bytes: number) => void;
  /** Called with each action that failed; the run goes on. */
  onFailed: (problem: Problem) => void;
  /** Called as a file is copied, with the bytes just written. */
  onBytes?: (bytes: number) => void;
  /** Called before each action, for the progress line. */
  onStart?: (action: Action) => void;
  /** Called with each copy's outcome as it comes back (a streamed run records it at once). */
  onSettled?: (action: Action, outcome: CopyOutcome) => void;
}

/** What a run changed in the replica, for the record. */
export interface RecordChanges {
  /** Replica files deleted. */
  deleted: Set<string>;
  /** Files whose content stayed but whose signature changed (moved, attributes set). */
  resigned: Map<string, Signature>;
  /** New path to old, for folders moved in the replica. */
  movedFolders: Map<string, string>;
}

/** What applying actions did, for the summary and the record. */
export interface ApplyResult extends RecordChanges {
  /** The counts for the summary. */
  summary: RunSummary;
  /** True when a stop was asked before the end. */
  stopped: boolean;
}

/**
 * Applies actions one at a time as they are decided: copies go to the workers in batches and
 * finish later (see {@linkcode Applier.drain}); every other action is done at once.
 */
export class Applier {
  /** What was done so far. */
  readonly result: ApplyResult = {
    summary: emptySummary(false),
    stopped: false,
    deleted: new Set(),
    resigned: new Map(),
    movedFolders: new Map(),
  };
  readonly #context: ApplyContext;
  readonly #copies: CopyBatches;

  /** Applies in `context`. */
  constructor(context: ApplyContext) {
    this.#context = context;
    this.#copies = new CopyBatches(context, this.result);
  }

  /**
   * Applies one action (a copy may still be in flight when this returns).
   *
   * @returns False once a stop was asked: the action was not applied.
   */
  async apply(action: Action): Promise<boolean> {
    const { context, result } = { context: this.#context, result: this.result };
    if (context.shouldStop()) {
      result.stopped = true;
      return false;
    }
    await context.pause();
    if (action.kind === "copy" || action.kind === "update") {
      context.onStart?.(action);
      await this.#copies.add(action);
      return true;
    }
    // Links, new folders and attribute fixes may overlap the copies in flight (none of them
    // touches a file being copied); deletions, moves and folder attributes wait for them.
    if (!OVERLAPPING.has(action.kind)) await this.#copies.drain();
    if (action.kind !== "dirattrs") context.onStart?.(action);
    try {
      if (applyOne(action, context.changes, result) === "recopy") {
        // A fresh copy replaces the name; the other hard links keep the old file untouched.
        await this.#copies.add({ ...action, kind: "update" });
        return true;
      }
      context.onDone(action, 0);
    } catch (error) {
      result.summary.failed++;
      context.onFailed({
        path: action.path,
        message: `Cannot ${ACTION_WORDS[action.kind]}: ${errorText(error)}`,
      });
    }
    return true;
  }

  /** Waits for every copy in flight. */
  drain(): Promise<void> {
    return this.#copies.drain();
  }
}

const OVERLAPPING = new Set<Action["kind"]>(["link", "attrs", "mkdir"]);

/**
 * Sends file copies to the writing side in batches ({@linkcode COPY_BATCH}), keeping at most
 * {@linkcode TreeChanges.copySlots} batches in flight, and records each outcome as it comes
 * back.
 */
class CopyBatches {
  readonly #context: ApplyContext;
  readonly #result: ApplyResult;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #batch = new Batcher<Action>(COPY_BATCH);

  constructor(context: ApplyContext, result: ApplyResult) {
    this.#context = context;
    this.#result = result;
  }

  /** Adds a copy; sends the batch once it is full. */
  async add(action: Action): Promise<void> {
    const full = this.#batch.add(action, action.entry!.size);
    if (full) await this.#send(full);
  }

  /** Sends what is batched and waits for every copy in flight. */
  async drain(): Promise<void> {
    await this.#send(this.#batch.take());
    while (this.#inFlight.size > 0) await Promise.race(this.#inFlight);
  }

  async #send(actions: Action[]): Promise<void> {
    if (actions.length === 0) return;
    const context = this.#context;
    while (this.#inFlight.size >= context.changes.copySlots) await Promise.race(this.#inFlight);
    const done = context.changes.copy(context.source, actions.map(copyItem), {
      onBytes: (bytes) => context.onBytes?.(bytes),
      onEach: (i, outcome) => this.#settle(actions[i]!, outcome),
    });
    const tracked = done.finally(() => this.#inFlight.delete(tracked));
    this.#inFlight.add(tracked);
  }

  #settle(action: Action, outcome: CopyOutcome): void {
    const { summary } = this.#result;
    this.#context.onSettled?.(action, outcome);
    if ("copied" in outcome) {
      countAction(summary, action, outcome.copied.replica.size);
      this.#context.onDone(action, outcome.copied.replica.size);
    } else if ("error" in outcome) {
      summary.failed++;
      this.#context.onFailed({
        path: action.path,
        message: outcome.refused
          ? outcome.error
          : `Cannot ${ACTION_WORDS[action.kind]}: ${outcome.error}`,
      });
    } else this.#result.stopped = true;
  }
}

/** A copy action as the writing side takes it. */
function copyItem(action: Action): CopyItem {
  return {
    path: action.path,
    fresh: action.kind === "copy",
    ...(action.recordedHash === undefined ? {} : { recordedHash: action.recordedHash }),
    ...(action.replacing === undefined ? {} : { replacing: action.replacing }),
  };
}

/**
 * Applies one action that is not a file copy; the writing side checks the folder it happens
 * in first.
 *
 * @returns "recopy" when a file with other hard links must be copied afresh instead of having
 * its attributes changed (the other names, maybe outside the tree, keep theirs).
 */
function applyOne(action: Action, changes: TreeChanges, result: ApplyResult): "recopy" | void {
  const { path } = action;
  switch (action.kind) {
    case "rmdir":
      changes.removeFolder(path);
      break;
    case "delete":
      changes.removeFile(path);
      result.deleted.add(path);
      break;
    case "mkdir":
      changes.makeFolder(path);
      break;
    case "link":
      changes.symlink(path, action.entry!);
      break;
    case "attrs":
      if (!resign(action, changes, result)) return "recopy";
      break;
    case "move": {
      changes.rename(action.from!, path);
      const isFolder = action.entry!.kind === "dir";
      if (isFolder) result.movedFolders.set(path, action.from!);
      const recopy = !isFolder && !resign(action, changes, result);
      countAction(result.summary, action, 0);
      return recopy ? "recopy" : undefined;
    }
    case "dirattrs":
      changes.setFolderAttributes(path, action.entry!);
      break;
    case "hardlink":
      changes.hardLink(path, action.from!);
      break;
    default:
      throw new Error(`${action.kind} is not applied here`);
  }
  countAction(result.summary, action, 0);
}

/**
 * Sets a file's attributes and keeps its new signature for the record.
 *
 * @returns False when it has other hard links (left as it is).
 */
function resign(action: Action, changes: TreeChanges, result: ApplyResult): boolean {
  const resigned = changes.setFileAttributes(action.path, action.entry!);
  if (resigned === null) return false;
  result.resigned.set(action.path, resigned);
  return true;
}

/**
 * How many copies go to the writing side at once: enough that a message per batch costs
 * nothing, little enough that every worker stays busy to the end (hash batches, which only
 * read, are larger: `sides/local/workers.ts`).
 */
export const COPY_BATCH: BatchLimits = { items: 64, bytes: 16 << 20 };
