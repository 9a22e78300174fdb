/**
 * Small value types shared by the command line and the engine, so that the pure planners need
 * not import the command line.
 *
 * @module
 */

/** A `--max-delete` limit: a count of entries, or a share of the replica's entries. */
export type DeleteLimit = { count: number } | { percent: number };
