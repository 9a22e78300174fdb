/**
 * The features a peer greets with (`Hello`): the codecs, and this machine's id, so that two
 * ends on one kernel (a push to `localhost`, a container) know their trees' identities compare,
 * and the checks for trees inside each other apply as on one host.
 *
 * @module
 */

import { machineId } from "../sides/local/host.ts";
import { FEATURES } from "./frames.ts";

const KERNEL = "kernel=";

/** The features this end greets with. */
export function ourFeatures(): string[] {
  const boot = machineId();
  return boot === null ? [...FEATURES] : [...FEATURES, `${KERNEL}${boot}`];
}

/** Whether a peer that greeted with `features` runs on this kernel. */
export function onThisKernel(features: readonly string[]): boolean {
  const boot = machineId();
  return boot !== null && features.includes(`${KERNEL}${boot}`);
}
