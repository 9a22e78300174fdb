/**
 * `deno task install [FOLDER]`: puts a `treesync` launcher in FOLDER (default `/usr/local/bin`),
 * so that cron lines and systemd units can say `/usr/local/bin/treesync` where `deno compile`
 * cannot build the binary. The launcher is a shell script that runs this checkout's `sync.ts`
 * with the `sync` task's permission and V8 flags, read from `deno.json` here so that they cannot
 * drift, through this `deno` by its absolute path, and without the `Task sync …` line that
 * `deno task` prints. Paths given to it are relative to the caller's folder, and its exit code
 * is treesync's.
 *
 * It replaces only a launcher it made: any other file at the target (a compiled binary, another
 * tool, a link) is left alone and the install refused. Not part of the engine: nothing under
 * `src/` imports it.
 *
 * ```sh
 * deno task install               # /usr/local/bin/treesync
 * deno task install ~/.local/bin  # another folder
 * ```
 *
 * @module
 */

/** The first lines of every launcher this script writes: how it knows its own. */
export const LAUNCHER_MARK = "#!/bin/sh\n# treesync launcher, made by `deno task install`";

/** Where the launcher goes when no folder is given. */
export const DEFAULT_FOLDER = "/usr/local/bin";

const USAGE = `Usage: deno task install [FOLDER]

Puts a 'treesync' launcher in FOLDER (default ${DEFAULT_FOLDER}) that runs this checkout's
sync.ts with the 'sync' task's permissions. An existing FOLDER/treesync is replaced only if it is
a launcher made here before.`;

/** Exit codes, as treesync's: 0 installed, 1 it failed, 2 bad usage or refused. */
const Exit = { Ok: 0, Failed: 1, Usage: 2 } as const;

/** An install that must not go ahead; its message says why and what to do. */
export class InstallRefused extends Error {}

/**
 * The flags of the `sync` task in `deno.json`: the words between `deno run` and `sync.ts`
 * (permissions and `--v8-flags`), in their order. Pure.
 *
 * @throws {Error} When the task is not `deno run FLAGS… sync.ts`.
 */
export function syncTaskFlags(config: { tasks?: Record<string, unknown> }): string[] {
  const task = config.tasks?.sync;
  const words = typeof task === "string" ? task.trim().split(/\s+/) : [];
  const end = words.indexOf("sync.ts");
  if (words[0] !== "deno" || words[1] !== "run" || end < 0) {
    throw new Error("The 'sync' task in deno.json is not 'deno run FLAGS sync.ts'");
  }
  const flags = words.slice(2, end);
  const odd = flags.find((word) => !word.startsWith("--"));
  if (odd !== undefined) throw new Error(`The 'sync' task has a word that is no flag: ${odd}`);
  return flags;
}

/** Quotes one word for `sh`. Pure. */
export function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/** What a launcher is made of. */
export interface LauncherParts {
  /** The absolute path of the `deno` binary to run. */
  deno: string;
  /** The checkout's folder, absolute: its `sync.ts` and `deno.json`. */
  checkout: string;
  /** The `sync` task's flags. */
  flags: string[];
  /** Deno's cache folder when installing, for callers that have no `HOME` (systemd). */
  denoDir: string | null;
}

/** The launcher's text: a shell script that `exec`s treesync, keeping the caller's folder. Pure. */
export function launcherText(parts: LauncherParts): string {
  const { deno, checkout, flags, denoDir } = parts;
  const command = [
    deno,
    "run",
    "--quiet",
    "--config",
    `${checkout}/deno.json`,
    ...flags,
    `${checkout}/sync.ts`,
  ].map(shellQuote).join(" ");
  const cache = denoDir === null
    ? ""
    : `# Deno's cache as it was when installing: cron and systemd may give no HOME.\n` +
      `DENO_DIR=\${DENO_DIR:-${shellQuote(denoDir)}}\nexport DENO_DIR\n`;
  return `${LAUNCHER_MARK} from ${checkout}.\n` +
    `# It runs that checkout's sync.ts with the 'sync' task's flags; run the install there again\n` +
    `# after changing them. A compiled treesync binary may replace this file.\n` +
    cache +
    `exec ${command} "$@"\n`;
}

/** Whether the file at `path` is a launcher this script wrote (a regular file, not a link). */
export function isOurLauncher(path: string): boolean {
  try {
    if (!Deno.lstatSync(path).isFile) return false;
    using file = Deno.openSync(path);
    const start = new Uint8Array(LAUNCHER_MARK.length);
    let got = 0;
    while (got < start.length) {
      const count = file.readSync(start.subarray(got));
      if (count === null) break;
      got += count;
    }
    return new TextDecoder().decode(start.subarray(0, got)) === LAUNCHER_MARK;
  } catch {
    return false;
  }
}

/**
 * Writes the launcher to `folder/treesync`: to a new file beside it first, made executable, then
 * renamed over the old launcher, so that a cron job starting meanwhile finds one or the other.
 *
 * @returns The launcher's path.
 * @throws {InstallRefused} When the folder is missing or something else is at the target.
 */
export function installLauncher(folder: string, parts: LauncherParts): string {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(folder);
  } catch {
    throw new InstallRefused(`Cannot install into '${folder}': no such folder (create it first)`);
  }
  if (!info.isDirectory) throw new InstallRefused(`Cannot install into '${folder}': not a folder`);
  const target = `${folder.replace(/\/+$/, "")}/treesync`;
  let existing: Deno.FileInfo | null = null;
  try {
    existing = Deno.lstatSync(target);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  if (existing !== null && !isOurLauncher(target)) {
    const what = existing.isSymlink ? "a link" : existing.isFile ? "a file" : "not a file";
    throw new InstallRefused(
      `Not replacing '${target}': it is ${what}, not a launcher this install made (a compiled ` +
        `treesync or another program?); remove it first, or install into another folder`,
    );
  }
  const draft = `${target}.install-${Deno.pid}`;
  try {
    Deno.writeTextFileSync(draft, launcherText(parts), { createNew: true, mode: 0o755 });
    Deno.chmodSync(draft, 0o755);
    Deno.renameSync(draft, target);
  } catch (error) {
    try {
      Deno.removeSync(draft);
    } catch {
      // Never made, or gone already.
    }
    throw error;
  }
  return target;
}

/** Deno's cache folder as `deno info` reports it; null when it cannot say. */
function denoCacheFolder(deno: string): string | null {
  try {
    const output = new Deno.Command(deno, { args: ["info", "--json"], stderr: "null" })
      .outputSync();
    if (!output.success) return null;
    const folder = JSON.parse(new TextDecoder().decode(output.stdout)).denoDir;
    return typeof folder === "string" && folder.startsWith("/") ? folder : null;
  } catch {
    return null;
  }
}

/** Installs as the command line asks; returns the exit code. */
export function main(args: string[]): number {
  if (args.includes("-h") || args.includes("--help")) {
    console.log(USAGE);
    return Exit.Ok;
  }
  if (args[0] === "") {
    // What an unset variable gives (`deno task install "$BIN"`): never the current folder.
    console.error(
      "install: the FOLDER is empty; name a folder, or give none for " + DEFAULT_FOLDER,
    );
    return Exit.Usage;
  }
  if (args.length > 1 || args.some((arg) => arg.startsWith("-"))) {
    console.error(`install: expected at most one FOLDER, got: ${args.join(" ")}\n\n${USAGE}`);
    return Exit.Usage;
  }
  // `deno task` runs in the checkout and names the caller's folder in INIT_CWD.
  const callerFolder = Deno.env.get("INIT_CWD") ?? Deno.cwd();
  const given = args[0] ?? DEFAULT_FOLDER;
  const folder = given.startsWith("/") ? given : `${callerFolder}/${given}`;
  const checkout = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  try {
    const config = JSON.parse(Deno.readTextFileSync(`${checkout}/deno.json`));
    const deno = Deno.execPath();
    const parts = { deno, checkout, flags: syncTaskFlags(config), denoDir: denoCacheFolder(deno) };
    const target = installLauncher(folder, parts);
    console.log(`installed ${target}: runs ${checkout}/sync.ts with ${deno}`);
    return Exit.Ok;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`install: ${message}`);
    return error instanceof InstallRefused ? Exit.Usage : Exit.Failed;
  }
}

if (import.meta.main) Deno.exit(main(Deno.args));
