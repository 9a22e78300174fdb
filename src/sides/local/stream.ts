/**
 * The reading end of a walk: starts a walker worker (`walker.ts`) on one tree and hands its
 * packed batches back one folder at a time, in walk order, telling the walker as each batch is
 * taken so that it stays a bounded number of batches ahead. The worker never loads this module.
 *
 * @module
 */

import { type Entry, type FolderListing, type Problem } from "../../scan.ts";
import { type FolderSource } from "../reader.ts";
import { type PackedListings, unpackListings, type WalkRequest } from "./walk.ts";

/** Walker workers this process started so far (each walk starts one): for `-vv`. */
let walkersStarted = 0;

/** How many walker workers this process has started, for the cost line of `-vv`. */
export function walkerStarts(): number {
  return walkersStarted;
}

/** One tree's walk as the main thread reads it: a folder at a time, in walk order. */
export class FolderStream implements FolderSource {
  /** The start folder's own entry, once the first batch came (null: it could not be read). */
  start: Entry | null = null;
  /** Special files skipped so far, for the warnings. */
  readonly skipped: Problem[] = [];
  readonly #worker: Worker | null;
  readonly #taken = new Int32Array(new SharedArrayBuffer(4));
  readonly #ready: FolderListing[] = [];
  #readyAt = 0;
  readonly #batches: PackedListings[] = [];
  #done = false;
  #error: Error | null = null;
  #wake: (() => void) | null = null;
  #first = true;
  readonly #probed: Promise<string | null>;
  #resolveProbe: (nested: string | null) => void = () => {};

  /** Folders listed under another name: the subtree at each key is handed over at its value. */
  readonly #renames: Map<string, string>;

  /**
   * Starts a walker worker on `request` (no request: an empty stream, for a missing tree).
   * With `renames`, the subtree of each start folder that is a key is listed under the value
   * instead, paths below it too (its own order is kept, since the prefix is common).
   */
  constructor(request: Omit<WalkRequest, "taken"> | null, renames = new Map<string, string>()) {
    this.#renames = renames;
    this.#probed = request?.probe
      ? new Promise((resolve) => this.#resolveProbe = resolve)
      : Promise.resolve(null);
    if (request === null) {
      this.#worker = null;
      this.#done = true;
      return;
    }
    this.#worker = new Worker(new URL("./walker.ts", import.meta.url), { type: "module" });
    walkersStarted++;
    this.#worker.onmessage = (event: MessageEvent) => this.#receive(event.data);
    this.#worker.onerror = (event) => {
      event.preventDefault();
      this.#error = new Error(event.message);
      this.#resolveProbe(null);
      this.#wakeUp();
    };
    const walk: WalkRequest = { ...request, taken: this.#taken.buffer as SharedArrayBuffer };
    this.#worker.postMessage(walk);
  }

  #receive(
    reply: { walked: PackedListings } | { probed: string | null } | { ok: boolean; error?: string },
  ): void {
    if ("probed" in reply) return this.#resolveProbe(reply.probed);
    if ("walked" in reply) this.#batches.push(reply.walked);
    else if (reply.ok) this.#done = true;
    else this.#error = new Error(reply.error ?? "the walk failed");
    this.#wakeUp();
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  /** A listing under the name its subtree is handed over at (see the constructor). */
  #renamed(listing: FolderListing): FolderListing {
    if (this.#renames.size === 0) return listing;
    for (const [from, to] of this.#renames) {
      if (listing.folder !== from && !listing.folder.startsWith(`${from}/`)) continue;
      const move = (path: string) =>
        path === from || path.startsWith(`${from}/`) ? to + path.slice(from.length) : path;
      return {
        ...listing,
        folder: move(listing.folder),
        problems: listing.problems.map((problem) => ({ ...problem, path: move(problem.path) })),
        protectedPaths: listing.protectedPaths.map(move),
      };
    }
    return listing;
  }

  /** The next folder in walk order, or null at the end of the tree. */
  async next(): Promise<FolderListing | null> {
    while (this.#readyAt >= this.#ready.length) {
      const batch = this.#batches.shift();
      if (batch !== undefined) {
        Atomics.add(this.#taken, 0, 1);
        Atomics.notify(this.#taken, 0);
        if (this.#first && batch.start) this.start = batch.start;
        this.#first = false;
        this.skipped.push(...batch.skipped);
        this.#ready.length = 0;
        this.#readyAt = 0;
        this.#ready.push(...unpackListings(batch).map((listing) => this.#renamed(listing)));
        continue;
      }
      if (this.#error) throw this.#error;
      if (this.#done) return null;
      await new Promise<void>((wake) => this.#wake = wake);
    }
    return this.#ready[this.#readyAt++]!;
  }

  /**
   * What the probe found (see {@linkcode WalkRequest.probe}): the folder of this tree that is the
   * other's root, or null. Resolves before the walk starts handing folders over.
   */
  probed(): Promise<string | null> {
    return this.#probed;
  }

  /** The next folder without taking it. */
  async peek(): Promise<FolderListing | null> {
    const next = await this.next();
    if (next !== null) this.#readyAt--;
    return next;
  }

  /** Ends the walker. */
  close(): void {
    this.#worker?.terminate();
  }
}
