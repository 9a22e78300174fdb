/**
 * What a streamed run works with ({@linkcode EngineContext}, {@linkcode ActionSink}) and what
 * the walk of a pair of trees leaves for the end of the run ({@linkcode WalkLeftovers}): the
 * types shared by the walk (`engine.ts`), the end-of-run planner (`endplan.ts`) and its
 * executor (`mirror.ts`). Types only, and one constructor.
 *
 * @module
 */

import { type Applier } from "./apply.ts";
import { type Options } from "./cli.ts";
import { type Reporter, type RunProgress } from "./log.ts";
import { type FolderRows, type NextRecord } from "./nextrecord.ts";
import { type Action, type Difference, type PlanOptions } from "./plan.ts";
import { type RecordRow, type RecordSource } from "./recordfile.ts";
import { type Entry } from "./scan.ts";
import { type FolderSource, type TreeReader } from "./sides/reader.ts";

/** An entry the walk found extraneous: deleted at the end, unless it moves or is kept. */
export interface PendingDeletion {
  /** The deletion (`delete` or `rmdir`), with its reason. */
  action: Action;
  /** The replica's entry as walked. */
  entry: Entry;
  /** What the record knew of it. */
  known?: RecordRow;
  /** For a folder: the record's rows of its subtree, by folder, while few enough to hold. */
  stash?: Map<string, Map<string, RecordRow>>;
}

/** A new source entry kept back until the deletions are known: it may be a move. */
export interface PendingNew {
  /** The creation (`mkdir` or `copy`). */
  action: Action;
}

/** What a streamed run does with each decided action: apply it, or print it (dry run). */
export interface ActionSink {
  /** Applies or prints one action; false once a stop was asked. */
  apply(action: Action): Promise<boolean>;
  /** Waits for copies in flight. */
  drain(): Promise<void>;
  /** The applier, when writing. */
  readonly applier: Applier | null;
}

/** Everything a streamed run works with. */
export interface EngineContext {
  /** The run's options. */
  options: Options;
  /** The planner's options for every folder (moves are the engine's own). */
  planOptions: Omit<PlanOptions, "fromHashes" | "toHashes">;
  /** Whether moves are looked for (mirroring with deletions). */
  moves: boolean;
  /**
   * Whether a new source folder may be a replica folder moved: the record knows a folder of its
   * source inode somewhere. Only those wait for the end of the run; any other is made and
   * filled in the walk that found it.
   */
  mayBeMoved: (entry: Entry) => boolean;
  /** The tree copied from and the tree copied to, as they are read. */
  trees: { from: TreeReader; to: TreeReader };
  /** What each tree is called in messages: `source` and `replica` (swapped restoring). */
  names: { from: string; to: string };
  /**
   * Where a replica path is now, when a dry run walks a folder it would move under the name it
   * would get: its files are read where they are.
   */
  locateTo?: (path: string) => string;
  /** Where the run's messages go. */
  report: Reporter;
  /** Where each decided action goes. */
  sink: ActionSink;
  /** The next record, when this run writes one. */
  next: NextRecord | null;
  /** The replica's folders (and the entries being changed) the folder guard checks against. */
  guardEntries: Map<string, Entry>;
  /** Folders whose copies are in flight: their rows wait for them. */
  pendingRows: Map<string, FolderRows>;
  /** With `--hard-links`: the first name of each source file with several, by inode. */
  linkGroups: Map<string, LinkGroup> | null;
  /**
   * With `--hard-links`: each replica file with several names met, by `dev:ino`, and the
   * source group its first name met keeps it for (`dev:ino` of the source file, or `one:PATH`
   * for a source file with one name). A later name of it from another group is split off.
   */
  replicaLinks: Map<string, string> | null;
  /** Where the progress line reads how far the run has come. */
  control: { progress: RunProgress };
  /** True once a stop was asked. */
  stopped: () => boolean;
}

/** The first name this run met of a source file with several names (`--hard-links`). */
export interface LinkGroup {
  /** Its path. */
  path: string;
  /** The replica file's inode there, unless this run copies it afresh. */
  replicaIno: number | null;
  /** Its folder's record rows (its row is final once its copy is back). */
  rows: Map<string, RecordRow> | null;
}

/** What the walk of a pair of trees leaves for the end of the run. */
export interface WalkLeftovers {
  /** Extraneous replica entries, in walk order: deleted at the end, unless they move. */
  deletions: PendingDeletion[];
  /** Replica folders that must stay: they hold entries left out (excluded, unreadable). */
  keptFolders: Set<string>;
  /** New source entries that may be moves, in walk order. */
  newEntries: PendingNew[];
  /** Creations that must wait for a deletion (a type change), in walk order. */
  afterDeletions: Action[];
  /** Names to make hard links of their first name, once every copy is done. */
  hardLinks: Action[];
  /** Folders whose attributes are set last, by path. */
  touchedFolders: Map<string, Entry>;
  /** Of those, what differed from the source's before the run (those are listed). */
  folderDiffers: Map<string, Difference[]>;
  /** Replica entries walked (for a `--max-delete` percentage). */
  replicaEntries: number;
}

/** A fresh set of leftovers. */
export function emptyLeftovers(): WalkLeftovers {
  return {
    deletions: [],
    keptFolders: new Set(),
    newEntries: [],
    afterDeletions: [],
    hardLinks: [],
    touchedFolders: new Map(),
    folderDiffers: new Map(),
    replicaEntries: 0,
  };
}

/** One pair of walks merged in lock-step, from a start folder down. */
export interface WalkPair {
  /** The walk of the tree copied from. */
  from: FolderSource;
  /** The walk of the tree copied to. */
  to: FolderSource;
  /** The record's rows, read folder by folder as the walk comes to them. */
  record: RecordSource;
  /**
   * The start folder's entries on each side (a missing side: the other's stands in); several
   * for a walk over several subtrees (in walk order, none inside another).
   */
  start: WalkStart | WalkStart[];
  /** New entries wait for the end (they may be moves); false once the end has come. */
  deferNew: boolean;
  /** Folder rows go into the draft (the main walk) or are patched in (the end's walks). */
  rows: "draft" | "patch";
}

/** A folder a walk starts at, and its entry on each side. */
export interface WalkStart {
  /** The folder, relative to the roots. */
  folder: string;
  /** Its entry in the tree copied from. */
  from: Entry | null;
  /** Its entry in the tree copied to, if it has it. */
  to: Entry | null;
  /**
   * Where the replica's side of `folder` is now, when it is still elsewhere: a folder a dry run
   * would move, walked where it is and listed under the name it would get.
   */
  toFolder?: string;
}
