/**
 * The file record, format 3 (`REPLICA/.treesync/record`): what the last runs knew of each
 * entry of both trees, kept as folder blocks in walk order, so that a run reads it folder by
 * folder as it walks the trees, and writes it the same way, without ever holding it whole.
 *
 * This module is the record's public face; the work is done below it:
 * - `recordformat.ts` the layout (documented there), its constants and the row types;
 * - `recordwrite.ts` writing it ({@linkcode RecordWriter}, over an encoder of byte buffers);
 * - `recorddecode.ts` decoding rows from a byte buffer;
 * - `recordread.ts` the record as a stream of folder blocks in walk order, and a version-2
 *   record seen as the same stream, for the one-time conversion ({@linkcode recordSourceFromV2});
 * - the record's files are opened and read by the side that holds them
 *   (`sides/local/recordfiles.ts`).
 *
 * @module
 */

export {
  blockCapBytes,
  type RecordBlock,
  recordCapBytes,
  type RecordRow,
  type RecordSource,
} from "./recordformat.ts";
export { RecordWriter } from "./recordwrite.ts";
export { emptyRecordSource, recordSourceFromV2 } from "./recordread.ts";
