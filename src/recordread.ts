/**
 * Reading a format-3 record (the layout is in `recordformat.ts`): {@linkcode openRecord} opens
 * the file and checks its ends, a cursor reads it block by block, each block checked before
 * {@linkcode BlockDecoder} decodes its rows; a version-2 record is seen as the same stream
 * ({@linkcode recordSourceFromV2}). The file calls are the cursor's.
 *
 * @module
 */

import { quoted } from "./format.ts";
import { compareNames, compareWalkOrder } from "./order.ts";
import { type FileRecord } from "./record.ts";
import {
  isRelativePath,
  type RecordBlock,
  type RecordRow,
  type RecordSource,
} from "./recordformat.ts";

/** Blocks as a {@linkcode RecordSource} meets them: one at a time, in walk order. */
export interface BlockCursor {
  /** The folder of the next block; null at the end, or once corrupt or closed. */
  nextFolder(): string | null;
  /** The rows of the next block (none if they turn out corrupt), moving past it. */
  takeRows(): RecordRow[];
  /** Moves past the next block without decoding its rows. */
  skip(): void;
  /** True once corruption was met. */
  readonly corrupt: boolean;
  /** The rows of all the blocks, read or not. */
  readonly rowCount: number;
  /** Lets go of what it reads from. */
  close(): void;
}

/** The walk-order rules of {@linkcode RecordSource}, over any cursor. */
export class WalkOrderSource implements RecordSource {
  #cursor: BlockCursor;
  #lastFolder: string | null = null;
  /** The rows of the last folder; as a map once asked for (blocks() hands out lists). */
  #lastRows: RecordRow[] = [];
  #lastMap: Map<string, RecordRow> | null = null;

  /** Reads the blocks `cursor` gives, in its order. */
  constructor(cursor: BlockCursor) {
    this.#cursor = cursor;
  }

  get corrupt(): boolean {
    return this.#cursor.corrupt;
  }

  get rowCount(): number {
    return this.#cursor.rowCount;
  }

  rowsOf(folder: string): Map<string, RecordRow> {
    const last = this.#lastFolder;
    if (last !== null) {
      const order = compareWalkOrder(folder, last);
      if (order === 0) return this.#lastMap ??= rowMap(this.#lastRows);
      if (order < 0) {
        throw new Error(
          `Cannot read the record's folder ${quoted(folder)} after ${quoted(last)}: ` +
            `folders must be read in walk order`,
        );
      }
    }
    let rows: RecordRow[] = [];
    for (let next = this.#cursor.nextFolder(); next !== null; next = this.#cursor.nextFolder()) {
      const order = compareWalkOrder(next, folder);
      if (order > 0) break;
      if (order === 0) {
        rows = this.#cursor.takeRows();
        break;
      }
      this.#cursor.skip();
    }
    this.#remember(folder, rows);
    return this.#lastMap = rowMap(rows);
  }

  *blocks(): Generator<RecordBlock> {
    for (let next = this.#cursor.nextFolder(); next !== null; next = this.#cursor.nextFolder()) {
      const rows = this.#cursor.takeRows();
      // A damaged block is not handed out: the record ends where it is.
      if (this.#cursor.corrupt) return;
      this.#remember(next, rows);
      yield { folder: next, rows };
    }
  }

  close(): void {
    this.#cursor.close();
  }

  #remember(folder: string, rows: RecordRow[]): void {
    this.#lastFolder = folder;
    this.#lastRows = rows;
    this.#lastMap = null;
  }
}

function rowMap(rows: RecordRow[]): Map<string, RecordRow> {
  const map = new Map<string, RecordRow>();
  for (const row of rows) map.set(row.name, row);
  return map;
}

/** Blocks held in memory, already in order. */
export class ArrayCursor implements BlockCursor {
  #blocks: RecordBlock[];
  #next = 0;
  /** True when these blocks stand for a record found corrupt. */
  readonly corrupt: boolean;
  /** The rows of all the blocks. */
  readonly rowCount: number;

  /** Hands out `blocks` in their order. */
  constructor(blocks: RecordBlock[], corrupt = false) {
    this.#blocks = blocks;
    this.corrupt = corrupt;
    this.rowCount = blocks.reduce((sum, block) => sum + block.rows.length, 0);
  }

  nextFolder(): string | null {
    return this.#blocks[this.#next]?.folder ?? null;
  }

  takeRows(): RecordRow[] {
    return this.#blocks[this.#next++]?.rows ?? [];
  }

  skip(): void {
    this.#next++;
  }

  close(): void {
    this.#next = this.#blocks.length;
  }
}

/** An empty source. */
export function emptyRecordSource(): RecordSource {
  return new WalkOrderSource(new ArrayCursor([]));
}

/**
 * A version-2 record (replica and source maps by relative path) as a {@linkcode RecordSource}
 * in walk order, for the one-time conversion: each path becomes a file row in its folder,
 * with the sides the record has of it (v2 kept no folders). Paths that cannot be in a tree
 * (empty parts, `.`, `..`) are left out. Pure: the entries are shared, not copied.
 */
export function recordSourceFromV2(record: FileRecord): RecordSource {
  const folders = new Map<string, Map<string, RecordRow>>();
  for (const side of ["source", "replica"] as const) {
    for (const [path, entry] of record[side]) {
      if (path === "" || !isRelativePath(path)) continue;
      const slash = path.lastIndexOf("/");
      const folder = slash < 0 ? "" : path.slice(0, slash);
      const name = path.slice(slash + 1);
      let rows = folders.get(folder);
      if (rows === undefined) folders.set(folder, rows = new Map());
      let row = rows.get(name);
      if (row === undefined) rows.set(name, row = { name, kind: "file" });
      row[side] = entry;
    }
  }
  const blocks = [...folders.keys()].sort(compareWalkOrder).map((folder) => ({
    folder,
    rows: [...folders.get(folder)!.values()].sort((a, b) => compareNames(a.name, b.name)),
  }));
  return new WalkOrderSource(new ArrayCursor(blocks));
}
