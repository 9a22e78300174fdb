/**
 * Stopping on a signal, the same way in every mode: the first SIGINT or SIGTERM finishes the
 * file in flight, a second SIGINT abandons it at once; either way the run ends normally, saving
 * the record, and the exit code names the signal.
 *
 * @module
 */

import { ExitCode } from "./errors.ts";
import { type Reporter } from "./log.ts";
import { requestStop, type RunControl } from "./run.ts";

const STOP_SIGNALS = ["SIGINT", "SIGTERM"] as const;

/**
 * Listens for SIGINT and SIGTERM until the returned function is called. The first of either asks
 * `control` to stop after the file in flight; a SIGINT after that asks it to abandon that file
 * at once (its partial copy stays in `.treesync/tmp`, never under its final name). Each is
 * told on the console.
 *
 * @param onStop Called after each signal with the exit code it asks for: 130 for SIGINT, 143
 *   for SIGTERM (the last signal decides).
 * @returns A function that stops listening.
 */
export function listenForStops(
  control: RunControl,
  report: Reporter,
  onStop: (exitCode: number) => void,
): () => void {
  let stopping = false;
  const listeners = STOP_SIGNALS.map((signal) => {
    const listener = () => {
      const abandon = stopping && signal === "SIGINT";
      stopping = true;
      requestStop(control, abandon ? 2 : 1);
      report.warn(
        abandon
          ? `${signal} again: abandoning the current file, then exiting`
          : `${signal}: finishing the current file, then exiting`,
      );
      onStop(signal === "SIGINT" ? ExitCode.Interrupted : ExitCode.Terminated);
    };
    Deno.addSignalListener(signal, listener);
    return [signal, listener] as const;
  });
  return () => {
    for (const [signal, listener] of listeners) Deno.removeSignalListener(signal, listener);
  };
}
