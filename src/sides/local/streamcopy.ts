/**
 * Staging copies of files streamed from another host ({@linkcode StreamedFileSource}), on the
 * main thread: each file's bytes arrive chunk by chunk and go, as they come, through SHA-256
 * into a new temporary file in our `tmp/` folder made as a copy worker makes one (`stage.ts`),
 * which then gets the far end's attributes through its descriptor. A file whose bytes here do
 * not hash to what the far end read is refused; one that changed while the far end read it is
 * read again (twice at most). The caller renames each staged file into place (`place.ts`).
 * Several files are in flight at once ({@linkcode STREAMED_IN_FLIGHT}, across batches), so
 * a batch pipelines over the connection.
 *
 * @module
 */

import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { type Entry, type Signature } from "../../scan.ts";
import { Slots } from "../../slots.ts";
import { type StreamedFiles } from "../reader.ts";
import {
  checkRecordedHash,
  type CopyContext,
  type CopyRequest,
  type CopySettings,
  createTemp,
  discardTemp,
  failedOutcome,
  keptChanging,
  requireKnownParent,
  setStagedAttributes,
  STAGE_ATTEMPTS,
  type StagedCopy,
  type StageOutcome,
  TempWriter,
} from "./stage.ts";
import { type TempSupply } from "./tempsupply.ts";

/**
 * Files a writer streams at once, across all its batches: enough to keep a link with latency
 * busy with small files; each holds an open temporary file while it waits for its bytes.
 */
export const STREAMED_IN_FLIGHT = 64;

/** The files in flight that a file waits for before it starts (first come first). */
export class StreamSlots extends Slots {
  /** `count` files may be in flight at once. */
  constructor(count: number = STREAMED_IN_FLIGHT) {
    super(count);
  }
}

/** A batch of streamed copies: the files, where they go, and the slots they share. */
export interface StreamedBatch {
  /** Each file, what the folder it goes into must be, and (restoring) its bytes' SHA-256. */
  items: CopyRequest["items"];
  /** Our folders, owners, holes. */
  settings: CopySettings;
  /** The files in flight, shared by the writer's batches. */
  slots: StreamSlots;
  /** The stop asked so far: 1 skips the files not started, 2 abandons those in flight. */
  stopLevel: () => number;
  /** Temporary files made ahead in a worker; null: each is made here when its file starts. */
  temps: TempSupply | null;
}

/**
 * Stages a batch of streamed files, each once it has a slot, reporting bytes as they are
 * written and each file's outcome (by its index) as soon as it is known, in whatever order
 * they finish. Never rejects: a file's failure is its outcome.
 */
export async function stageStreamedBatch(
  files: StreamedFiles,
  batch: StreamedBatch,
  report: {
    onBytes?: (bytes: number) => void;
    onEach: (index: number, outcome: StageOutcome) => void;
  },
): Promise<void> {
  const context: CopyContext = {
    ...batch.settings,
    mustAbort: () => batch.stopLevel() === 2,
    ...(report.onBytes ? { onBytes: report.onBytes } : {}),
  };
  batch.temps?.begin();
  try {
    await stageEach(files, batch, { context, onEach: report.onEach });
  } finally {
    await batch.temps?.end();
  }
}

/** Stages each file of a batch once it has a slot; each file's failure is its outcome. */
async function stageEach(
  files: StreamedFiles,
  batch: StreamedBatch,
  input: { context: CopyContext; onEach: (index: number, outcome: StageOutcome) => void },
): Promise<void> {
  const { context } = input;
  await Promise.all(batch.items.map(async (item, index) => {
    await batch.slots.take();
    let outcome: StageOutcome = { skipped: true };
    try {
      if (batch.stopLevel() !== 0) return;
      const staged = await stageStreamed(files, item.path, {
        ...context,
        parent: item.parent,
        temps: batch.temps,
        ...(item.recordedHash === undefined ? {} : { recordedHash: item.recordedHash }),
      });
      if (staged !== null) outcome = { staged };
    } catch (error) {
      outcome = failedOutcome(error);
    } finally {
      batch.slots.give();
      input.onEach(index, outcome);
    }
  }));
}

/**
 * Stages one streamed file in a new temporary file of our tmp folder, with the rules of
 * `stageCopy`: the folder it goes into must be known, the temporary file is made exclusively
 * and removed on any failure, a file that changed while read is read again.
 *
 * @returns The file staged, or null if aborted.
 * @throws {Error} The far end could not read it, the bytes that arrived are not the ones it
 * read, or (restoring) they are not `recordedHash` ({@linkcode RefusedError}): nothing is kept.
 */
export async function stageStreamed(
  files: StreamedFiles,
  path: string,
  context: CopyContext & { recordedHash?: string; temps?: TempSupply | null },
): Promise<StagedCopy | null> {
  requireKnownParent(context);
  for (let attempt = 1;; attempt++) {
    const { tempPath, fd } = context.temps ? context.temps.take() : createTemp(context);
    let staged = false;
    try {
      const result = await copyStreamed(files, path, fd, context);
      if (result === null) return null;
      if (result === "changed") {
        if (attempt < STAGE_ATTEMPTS) continue;
        throw keptChanging();
      }
      checkRecordedHash(result.hash, context.recordedHash);
      staged = true;
      return { tempPath, ...result };
    } finally {
      fs.closeSync(fd);
      if (!staged) discardTemp(tempPath, context);
    }
  }
}

/**
 * Streams a file once into the temporary file `fd`, hashing what is written, and checks it
 * against what the far end read; then gives the file the far end's owner, mode and mtime.
 *
 * @returns The hash and the source as read; "changed" if it changed while the far end read it;
 * null if aborted.
 */
async function copyStreamed(
  files: StreamedFiles,
  path: string,
  fd: number,
  context: CopyContext,
): Promise<{ hash: string; read: Entry; written: Signature; readAtMs: number } | "changed" | null> {
  const readAtMs = Date.now();
  const writer = new TempWriter(fd, context);
  const hash = createHash("sha256");
  let received = 0;
  const end = await files.read(path, (chunk) => {
    writer.write(chunk);
    hash.update(chunk);
    received += chunk.length;
    context.onBytes?.(chunk.length);
    return !context.mustAbort();
  });
  if (end === null) return null;
  if (end.changed) return "changed";
  const ours = hash.digest("hex");
  if (ours !== end.hash || received !== end.entry.size) {
    const what = received === end.entry.size
      ? "the bytes that arrived do not match the SHA-256 of those the far end read"
      : `${received} bytes arrived of the ${end.entry.size} the far end read`;
    throw new Error(`${what} (damaged on the way?); nothing was placed`);
  }
  writer.finish();
  const written = setStagedAttributes(fd, end.entry, context);
  return { hash: ours, read: end.entry, written, readAtMs };
}
