/**
 * Stopping on a signal, the same way in every mode: the first SIGINT or SIGTERM finishes the
 * file in flight, a second SIGINT abandons it at once; either way the run ends normally, saving
 * the record, and the exit code names the signal.
 *
 * One Ctrl-C can arrive as two SIGINTs: the terminal signals its whole foreground process
 * group, so under `deno task` (and any wrapper that forwards signals) treesync gets the
 * terminal's SIGINT and the wrapper's copy of it a few milliseconds apart. A SIGINT within
 * {@linkcode SAME_PRESS_MS} of the acknowledgement of the first is taken as that same press;
 * one after it (a key pressed again once the acknowledgement was read) abandons the file.
 *
 * @module
 */

import { ExitCode } from "./errors.ts";
import { type Reporter } from "./log.ts";
import { requestStop, type RunControl } from "./control.ts";

const STOP_SIGNALS = ["SIGINT", "SIGTERM"] as const;

/**
 * How long after a SIGINT was acknowledged another SIGINT counts as the same key press. A
 * wrapper's copy comes within milliseconds; the margin covers an event loop held up by a
 * synchronous phase, and is shorter than a person takes to read the line and press again.
 */
export const SAME_PRESS_MS = 1_000;

/**
 * Listens for SIGINT and SIGTERM until the returned function is called. The first of either asks
 * `control` to stop after the file in flight; a SIGINT after that (and, after a SIGINT, more than
 * {@linkcode SAME_PRESS_MS} later) asks it to abandon that file at once (its partial copy stays
 * in `.treesync/tmp`, never under its final name). Each is told on the console.
 *
 * @param onStop Called after each signal acted on with the exit code it asks for: 130 for
 *   SIGINT, 143 for SIGTERM (the last signal decides).
 * @returns A function that stops listening.
 */
export function listenForStops(
  control: RunControl,
  report: Reporter,
  onStop: (exitCode: number) => void,
): () => void {
  let stopping = false;
  /** When the last SIGINT was acknowledged; a copy of that press comes soon after. */
  let interruptedAt = -Infinity;
  const listeners = STOP_SIGNALS.map((signal) => {
    const listener = () => {
      const now = performance.now();
      if (signal === "SIGINT" && now - interruptedAt < SAME_PRESS_MS) {
        report.debug("SIGINT again at once: taken as the same key press");
        return;
      }
      const abandon = stopping && signal === "SIGINT";
      stopping = true;
      requestStop(control, abandon ? 2 : 1);
      report.warn(
        abandon
          ? `${signal} again: abandoning the current file, then exiting`
          : `${signal}: finishing the current file, then exiting` +
            (signal === "SIGINT" ? " (Ctrl-C again to abandon it)" : ""),
      );
      if (signal === "SIGINT") interruptedAt = performance.now();
      onStop(signal === "SIGINT" ? ExitCode.Interrupted : ExitCode.Terminated);
    };
    Deno.addSignalListener(signal, listener);
    return [signal, listener] as const;
  });
  return () => {
    for (const [signal, listener] of listeners) Deno.removeSignalListener(signal, listener);
  };
}
