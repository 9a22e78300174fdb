/**
 * The tool's version: printed by `--version` and in the log's start line of every run.
 *
 * @module
 */

/** The tool's version. */
export const VERSION = "0.1.0";
