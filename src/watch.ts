/**
 * `--watch`: the source watched between the loop's full runs. Owns turning file-system events
 * into the folders a run must walk again, or into the need for a full run (pure), and the
 * watcher's life: started before a full run, given up with a warning on an error or past the
 * watch limit, never stopped silently. When runs start is the loop's business (loop.ts).
 *
 * Which folder an event marks: the folder holding the path it names. That folder's walk covers
 * the entry itself (a folder's own mode and mtime are decided in its parent), and everything
 * below a new or renamed folder: Deno adds the watch for a new folder when the event that
 * announces it comes, so files made there before that watch existed are found by the walk,
 * which starts after the event; files made after it raise events of their own. A rename marks
 * the folders on both sides of it. A mark at the top of the source, a rescan flag (Deno's
 * queue overflowed: events were lost), a watcher error and the source root replaced mean a full
 * run, with one warning where it is a fault.
 *
 * @module
 */

import { type Options } from "./cli.ts";
import { errorText } from "./errors.ts";
import { compileFilters, type ExcludeMatcher } from "./exclude.ts";
import { type Identity, identityOf, sameIdentity } from "./files.ts";
import { displayPath, formatDuration, quoted } from "./format.ts";
import { type Reporter } from "./log.ts";
import { compareWalkOrder } from "./order.ts";
import { ancestors, isWithin, parentOf } from "./paths.ts";
import { META_DIR } from "./scan.ts";

/** One file-system event, as `Deno.watchFs` gives it. */
export interface WatchEvent {
  /** What happened: `create`, `modify`, `remove`, `rename`, `access`, `any`, `other`. */
  kind: string;
  /** The absolute paths it concerns. */
  paths: string[];
  /** `rescan` when the kernel's queue overflowed and events were lost. */
  flag?: string | null;
}

/** How events are read: where the source is, and what the mirror leaves alone. */
export interface EventRules {
  /** The absolute paths the source is known by: as given, and its real path if different. */
  roots: string[];
  /** The `--include`/`--exclude` rules, compiled. */
  excluded: ExcludeMatcher;
  /** Whether a relative path is a folder now; asked only where the rules depend on it. */
  isFolder: (path: string) => boolean;
}

/** What a batch of events asks for. */
export interface Marks {
  /** Folders to walk again, relative to the source; `""` is its top. */
  folders: Set<string>;
  /** A rescan flag came: events were lost, and only a full run catches up. */
  lost: boolean;
  /** An event named the source root itself: whether it is still the same folder must be seen. */
  rootTouched: boolean;
}

/** Marks that ask for nothing. */
export function emptyMarks(): Marks {
  return { folders: new Set(), lost: false, rootTouched: false };
}

/**
 * Adds what `events` ask for to `marks`: for each path, the folder holding it, unless the path
 * is ours (`.treesync/` at the top) or left out by the rules, itself or through a folder above
 * it (a folder left out is not walked). A path outside the source is left alone: Deno sends
 * only events below the path watched, but for entries removed elsewhere (a folder moved out of
 * the source, still watched). Pure but for `rules.isFolder`.
 *
 * @returns `marks`, changed.
 */
export function markEvents(
  events: Iterable<WatchEvent>,
  rules: EventRules,
  marks: Marks = emptyMarks(),
): Marks {
  for (const event of events) {
    if (event.flag === "rescan") {
      marks.lost = true;
      continue;
    }
    for (const path of event.paths) {
      const relative = relativeToSource(path, rules.roots);
      if (relative === null || isOurs(relative)) continue;
      if (relative === "") {
        marks.rootTouched = true;
        marks.folders.add("");
        continue;
      }
      if (isLeftOut(relative, rules)) continue;
      marks.folders.add(parentOf(relative));
    }
  }
  return marks;
}

/** `path` relative to the first of `roots` that holds it; null when none does. Pure. */
export function relativeToSource(path: string, roots: readonly string[]): string | null {
  for (const root of roots) {
    if (path === root) return "";
    const prefix = root.endsWith("/") ? root : `${root}/`;
    if (path.startsWith(prefix)) return path.slice(prefix.length).replace(/\/+$/, "");
  }
  return null;
}

/** Whether a relative path is our `.treesync/` folder at the top, or in it. */
function isOurs(path: string): boolean {
  return path === META_DIR || path.startsWith(`${META_DIR}/`);
}

/** Whether the rules leave `path` out, itself or through a folder above it. */
function isLeftOut(path: string, rules: EventRules): boolean {
  for (const folder of ancestors(path)) {
    if (folder !== "" && rules.excluded(folder, true)) return true;
  }
  const asFile = rules.excluded(path, false);
  const asFolder = rules.excluded(path, true);
  // Only a folder-only rule (`cache/`) needs to know what the path is now.
  return asFile === asFolder ? asFile : rules.isFolder(path) ? asFolder : asFile;
}

/** The most folders a watch run walks one by one; past it, one full run is cheaper. */
export const MAX_WATCH_FOLDERS = 256;

/** What the next watch run walks: the whole tree (and why), or some folders. */
export type WatchRun = { kind: "full"; why: string } | { kind: "folders"; folders: string[] };

/**
 * The run that pending changes ask for: the folders in walk order, none inside another; the
 * whole tree when its top is among them (a full run, so its safety checks apply: an emptied
 * source is refused, never mirrored) or when there are more than `maxFolders`. Pure.
 */
export function watchRunFor(
  folders: ReadonlySet<string>,
  maxFolders: number = MAX_WATCH_FOLDERS,
): WatchRun {
  if (folders.has("")) return { kind: "full", why: "a change at the top of the source" };
  const sorted = [...folders].sort(compareWalkOrder);
  const outermost: string[] = [];
  const kept = new Set<string>();
  for (const folder of sorted) {
    // In walk order a folder's subtree follows it, so an enclosing folder is already kept.
    if (isWithin(folder, kept)) continue;
    kept.add(folder);
    outermost.push(folder);
  }
  if (outermost.length > maxFolders) {
    return { kind: "full", why: `${outermost.length} folders changed` };
  }
  return { kind: "folders", folders: outermost };
}

/** What the watch of a loop knows: what `status` shows and when the next watch run is due. */
export interface WatchState {
  /** Whether the source is watched now. */
  watching: boolean;
  /** Why it is not, once starting or watching failed; null while it works. */
  off: string | null;
  /** Folders changed since the last run took them. */
  folders: Set<string>;
  /** Why a full run is pending, if one is. */
  full: string | null;
  /** When the first change pending was seen (`Date.now()` ms); null with none pending. */
  firstAt: number | null;
  /** When the last change pending was seen. */
  lastAt: number | null;
  /** The quiet period (`--watch-delay`). */
  delayMs: number;
  /** The interval of the full runs, for saying what happens while not watching. */
  intervalMs: number;
}

/** A watch state with nothing pending, not watching yet. */
export function newWatchState(delayMs: number, intervalMs: number): WatchState {
  return {
    watching: false,
    off: null,
    folders: new Set(),
    full: null,
    firstAt: null,
    lastAt: null,
    delayMs,
    intervalMs,
  };
}

/**
 * How many quiet periods a run waits at most after the first change pending: a source that
 * never falls quiet (a log written every second) is still mirrored.
 */
export const MAX_QUIET_PERIODS = 10;

/**
 * When the changes pending start a run: a quiet period after the last, but no later than
 * {@linkcode MAX_QUIET_PERIODS} quiet periods after the first; null with none pending. Pure.
 */
export function watchDueAt(state: WatchState): number | null {
  if (state.firstAt === null || state.lastAt === null) return null;
  return Math.min(state.lastAt + state.delayMs, state.firstAt + MAX_QUIET_PERIODS * state.delayMs);
}

/** Folders named in `status` and in the line before a watch run; the rest are counted. */
const FOLDERS_SHOWN = 3;

/** A few folders for a message: `a, b/c, d and 4 more`; the top shows as `.`. Pure. */
export function folderList(folders: readonly string[], shown = FOLDERS_SHOWN): string {
  const names = folders.slice(0, shown).map((folder) => displayPath(folder === "" ? "." : folder));
  const more = folders.length > shown ? ` and ${folders.length - shown} more` : "";
  return `${names.join(", ")}${more}`;
}

/** The `status` line of a watch: off and why, or what is pending and when it runs. Pure. */
export function watchStatusLine(state: WatchState, nowMs: number): string {
  if (!state.watching) {
    const why = state.off ?? "not started yet";
    return `watching: off (${why}); a full run every ${formatDuration(state.intervalMs)}`;
  }
  const due = watchDueAt(state);
  const when = due === null ? "" : `, run in ${formatDuration(Math.max(0, due - nowMs))}`;
  if (state.full !== null) return `watching: a full run pending (${state.full})${when}`;
  if (state.folders.size === 0) return "watching: no changes pending";
  const folders = [...state.folders].sort(compareWalkOrder);
  const count = folders.length === 1 ? "1 folder" : `${folders.length} folders`;
  return `watching: ${count} changed (${folderList(folders)})${when}`;
}

/** Why a full run is pending after a rescan flag. */
const LOST = "events were lost";

/** Changes pending, as a run takes them. */
export interface PendingChanges {
  /** Folders (relative to the source) in which something changed. */
  folders: Set<string>;
  /** Why a full run is needed, if one is. */
  full: string | null;
}

/** Whether an error of `Deno.watchFs` or its events is the inotify watch limit. */
export function isWatchLimit(error: unknown): boolean {
  const text = error instanceof Error ? error.message : String(error);
  return /watch limit|No space left on device|ENOSPC|os error 28/i.test(text);
}

/** An error of the watcher in a few words: the limit named, Deno's list of paths left out. */
export function watchErrorText(error: unknown): string {
  if (isWatchLimit(error)) {
    return "the inotify watch limit (fs.inotify.max_user_watches) is reached";
  }
  return errorText(error).replace(/\.? about \[.*\]$/s, "");
}

/**
 * The source's watcher for a loop: it marks changed folders in its {@linkcode WatchState} and
 * calls `onChange` when something new is pending. It is started before each full run while it
 * is off, so a failure costs at most one interval of watching.
 */
export class SourceWatch {
  /** What `status` shows; changes as events come. */
  readonly state: WatchState;
  readonly #source: string;
  readonly #report: Reporter;
  readonly #onChange: () => void;
  readonly #excluded: ExcludeMatcher;
  #watcher: Deno.FsWatcher | null = null;
  #root: Identity | null = null;
  #rules: EventRules | null = null;
  /** The last failure warned of, so that a retry failing the same way says nothing new. */
  #lastFailure: string | null = null;

  /** Watches `options.source`, reporting through `report` and calling `onChange` on news. */
  constructor(options: Options, report: Reporter, onChange: () => void) {
    this.state = newWatchState(options.watchDelayMs, options.intervalMs!);
    this.#source = options.source;
    this.#report = report;
    this.#onChange = onChange;
    this.#excluded = compileFilters(options.filters);
  }

  /**
   * Starts watching unless it is already; when it cannot, warns (once for each kind of failure)
   * and leaves the loop to its full runs.
   *
   * @returns Whether the source is watched.
   */
  start(): boolean {
    if (this.#watcher) return true;
    const root = identityOf(this.#source);
    let watcher: Deno.FsWatcher;
    try {
      if (root === null) throw new Deno.errors.NotFound("the source does not exist");
      watcher = Deno.watchFs(this.#source, { recursive: true });
    } catch (error) {
      this.#off(error, `Cannot watch ${quoted(this.#source)}`);
      return false;
    }
    this.#root = root;
    this.#rules = {
      roots: this.#rootPaths(),
      excluded: this.#excluded,
      isFolder: (path) => this.#isFolder(path),
    };
    this.#watcher = watcher;
    if (this.#lastFailure !== null) {
      this.#report.summary(`watching ${quoted(this.#source)} again`);
    }
    this.#lastFailure = null;
    this.state.watching = true;
    this.state.off = null;
    void this.#read(watcher);
    return true;
  }

  /** Takes the changes pending for the run about to start, leaving none. */
  take(): PendingChanges {
    const { state } = this;
    const taken = { folders: state.folders, full: state.full };
    state.folders = new Set();
    state.full = null;
    state.firstAt = null;
    state.lastAt = null;
    return taken;
  }

  /**
   * Checks that the source root is still the folder being watched, before a run of some of its
   * folders: one replaced or removed asks for a full run (with a warning) and a new watch.
   *
   * @returns Whether it still is.
   */
  checkRoot(): boolean {
    if (!this.#watcher) return true;
    const now = identityOf(this.#source);
    if (sameIdentity(now, this.#root)) return true;
    const what = now === null ? "was removed" : "was replaced by another folder";
    this.#report.warn(
      `The source ${quoted(this.#source)} ${what}; a full run follows` +
        (now === null ? ", and watching waits until it is back" : ", watching the new one"),
    );
    this.#stopWatcher();
    const why = now === null ? "the source was removed" : "the source was replaced";
    this.state.off = why;
    this.#lastFailure = now === null ? "missing" : "replaced";
    this.#needFull(why);
    return false;
  }

  /** Asks for a full run after the quiet period: a watch run failed, and what it took is lost. */
  needFullRun(why: string): void {
    this.#needFull(why);
  }

  /** Stops watching for good (the loop is ending). */
  close(): void {
    this.#stopWatcher();
  }

  async #read(watcher: Deno.FsWatcher): Promise<void> {
    try {
      for await (const event of watcher) {
        if (this.#watcher !== watcher) return;
        this.#note(event);
      }
      if (this.#watcher === watcher) this.#fail(new Error("the watcher stopped"));
    } catch (error) {
      if (this.#watcher === watcher) this.#fail(error);
    }
  }

  #note(event: WatchEvent): void {
    const marks = markEvents([event], this.#rules!);
    if (marks.lost && this.state.full !== LOST) {
      // Deno flags each overflow: one warning for the full run they all ask for.
      this.#report.warn(
        `Events were lost watching ${quoted(this.#source)} (more came at once than its queue ` +
          `holds); a full run follows`,
      );
      this.#needFull(LOST);
    }
    if (marks.rootTouched && !this.checkRoot()) return;
    if (marks.folders.size === 0) return;
    const { state } = this;
    if (state.full !== null) {
      // A full run is coming: it walks these folders too, and the quiet period starts again.
      this.#touched();
      return;
    }
    for (const folder of marks.folders) state.folders.add(folder);
    if (state.folders.size > MAX_WATCH_FOLDERS * 4) {
      // Held no longer than they are useful: so many folders make a full run anyway.
      this.#needFull(`${state.folders.size} folders changed`);
      return;
    }
    this.#touched();
  }

  /** A full run is pending: the folders marked so far go with it. */
  #needFull(why: string): void {
    this.state.full ??= why;
    this.state.folders = new Set();
    this.#touched();
  }

  #touched(): void {
    const now = Date.now();
    this.state.firstAt ??= now;
    this.state.lastAt = now;
    this.#onChange();
  }

  /** The watcher failed while watching: say so, ask for a full run, watch again before it. */
  #fail(error: unknown): void {
    this.#stopWatcher();
    const limit = isWatchLimit(error);
    this.#off(
      error,
      `Watching ${quoted(this.#source)} failed`,
      limit ? "" : "; a full run follows, and watching starts again before it",
    );
    this.#needFull(limit ? "the watch limit was reached" : "the watcher failed");
  }

  /** Watching is off: one warning for each kind of failure, never a silent stop. */
  #off(error: unknown, what: string, then = ""): void {
    const text = watchErrorText(error);
    this.state.watching = false;
    this.state.off = text;
    const kind = isWatchLimit(error)
      ? "limit"
      : error instanceof Deno.errors.NotFound
      ? "missing"
      : text;
    if (kind === this.#lastFailure) return;
    this.#lastFailure = kind;
    const every = formatDuration(this.state.intervalMs);
    const fallback = isWatchLimit(error)
      ? `; falling back to a full run every ${every} alone (raise the limit, or leave out ` +
        `--watch)`
      : then || `; a full run every ${every} alone until watching starts again`;
    this.#report.warn(`${what}: ${text}${fallback}`);
  }

  #stopWatcher(): void {
    const watcher = this.#watcher;
    this.#watcher = null;
    this.state.watching = false;
    try {
      watcher?.close();
    } catch {
      // Closed already.
    }
  }

  /** The source as given, and as its real path when that differs (events may use either). */
  #rootPaths(): string[] {
    try {
      const real = Deno.realPathSync(this.#source);
      return real === this.#source ? [this.#source] : [this.#source, real];
    } catch {
      return [this.#source];
    }
  }

  #isFolder(path: string): boolean {
    try {
      return Deno.lstatSync(`${this.#source}/${path}`).isDirectory;
    } catch {
      return false;
    }
  }
}
