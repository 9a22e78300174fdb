/**
 * For the tests only: what the CLI tests of remote trees share. The far end's program (this
 * checkout, run by the deno running the tests), the environment the CLI needs to find `ssh`,
 * and a test that runs beside a throwaway sshd, ignored (never passed silently) where none can
 * start.
 *
 * @module
 */

import { CHECKOUT, type CliOptions, withTemp } from "../test_helpers.ts";
import { machineId } from "../sides/local/host.ts";
import { sshdUnavailable, startSshd, type TestSshd } from "./test_sshd.ts";

/** The far end's program in the tests: this checkout's `sync.ts`. */
export const FAR_TREESYNC = `${Deno.execPath()} run -A ${CHECKOUT}/sync.ts`;

/** What the CLI needs to find `ssh`: only PATH (the CLI's environment is cleared). */
export const WITH_PATH: CliOptions = {
  env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
};

const noSshd = sshdUnavailable();

/**
 * A test with its own sshd and temporary folder; ignored where sshd cannot run, or (`machineId`)
 * where this machine has no id for two ends to know they share it.
 */
export function sshdTest(
  name: string,
  fn: (sshd: TestSshd, dir: string) => Promise<void>,
  needs: { machineId?: boolean } = {},
): void {
  Deno.test({
    name,
    ignore: noSshd !== null || (needs.machineId === true && machineId() === null),
    fn: async () => {
      const sshd = await startSshd();
      try {
        await withTemp((dir) => fn(sshd, dir));
      } finally {
        await sshd.stop();
      }
    },
  });
}
