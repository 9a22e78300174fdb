/**
 * Facts of this host that a peer "on another host" may share: the machine id
 * (`/etc/machine-id`), the same for two processes on one machine (a host reached as
 * `localhost`, or by another of its names), whose device and inode numbers then name the same
 * folders. (The kernel's boot id would also cover containers, but Deno lets only `--allow-all`
 * read `/proc`; a container with its own machine id counts as another host.)
 *
 * @module
 */

let id: string | null | undefined;

/** This machine's id (`/etc/machine-id`), or null where it cannot be read. */
export function machineId(): string | null {
  if (id === undefined) {
    try {
      id = Deno.readTextFileSync("/etc/machine-id").trim() || null;
    } catch {
      id = null;
    }
  }
  return id;
}
