/**
 * A real OpenSSH server for tests: `sshd` on 127.0.0.1 on a free port, with a throwaway host
 * key, client key and `authorized_keys` for the user running the tests, all in a temporary
 * folder that `stop()` removes. Key login only (`UsePAM no`, no passwords), `StrictModes no`
 * (the temporary folder is not the user's home). The client's words (`rsh`) trust exactly the
 * throwaway host key and never prompt.
 *
 * sshd run as root needs its privilege-separation folder `/run/sshd`; where it is missing, sshd
 * runs in a private mount namespace (`unshare -m`) in which a folder of the temporary one is
 * mounted on `/run`, so nothing outside the temporary folder changes. Where sshd cannot run,
 * {@linkcode sshdUnavailable} says why, so that tests `ignore:` themselves.
 *
 * @module
 */

const SSHD = "/usr/sbin/sshd";
const SSH = "ssh";
const HOST = "127.0.0.1";

/** A running test sshd. */
export interface TestSshd {
  /** Its port on 127.0.0.1. */
  port: number;
  /** The host to name: `127.0.0.1`. */
  host: string;
  /**
   * The remote shell's words: `ssh` with the port, the client key, a known-hosts file that
   * holds only this server's key, strict host-key checking and `BatchMode=yes`.
   */
  rsh: string[];
  /** The temporary folder it lives in. */
  folder: string;
  /** Stops the server and removes its folder. */
  stop(): Promise<void>;
}

/** What a caller may add to a test sshd (a benchmark, say); tests need none of it. */
export interface SshdOptions {
  /**
   * sshd_config lines put before the usual ones, so that they win (sshd keeps the first value
   * of a keyword): `LogLevel VERBOSE`, `Subsystem sftp …`.
   */
  config?: string[];
  /** Called with every line sshd logs, as it comes. */
  onLogLine?: (line: string) => void;
}

/** Whether a program is found, by absolute path or on PATH. */
function hasProgram(name: string): boolean {
  const folders = name.includes("/") ? [""] : (Deno.env.get("PATH") ?? "").split(":");
  return folders.some((folder) => {
    try {
      return Deno.statSync(folder === "" ? name : `${folder}/${name}`).isFile;
    } catch {
      return false;
    }
  });
}

/** Whether `/run/sshd` exists (a root sshd refuses to start without it). */
function hasPrivsepFolder(): boolean {
  try {
    return Deno.statSync("/run/sshd").isDirectory;
  } catch {
    return false;
  }
}

/** Whether this process may mount in a private mount namespace of its own. */
function canMountPrivately(): boolean {
  if (!hasProgram("unshare")) return false;
  const probe = 'mount --bind / "$1"';
  const args = ["-m", "--propagation", "private", "sh", "-c", probe, "sh", "/run"];
  try {
    const output = new Deno.Command("unshare", { args, stdout: "null", stderr: "null" })
      .outputSync();
    return output.success;
  } catch {
    return false;
  }
}

/**
 * Why a test sshd cannot run here, or null when it can (checked without starting sshd).
 * {@linkcode startSshd} still throws with sshd's own message if it fails after all.
 */
export function sshdUnavailable(): string | null {
  for (const program of [SSHD, SSH, "ssh-keygen"]) {
    if (!hasProgram(program)) return `${program} is not installed`;
  }
  if (Deno.uid() === 0 && !hasPrivsepFolder() && !canMountPrivately()) {
    return "/run/sshd is missing and no private mount namespace can be made (unshare -m)";
  }
  return null;
}

/** Runs a program to its end; its output, or an error with its message. */
async function run(program: string, args: string[]): Promise<string> {
  const output = await new Deno.Command(program, { args, stdin: "null" }).output();
  const text = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    throw new Error(`${program} failed: ${new TextDecoder().decode(output.stderr).trim()}`);
  }
  return text;
}

/**
 * A port from the dynamic range that nothing listens on now (per `/proc/net/tcp`, so that no
 * network permission is needed); a port taken before sshd binds it is tried again.
 */
function freePort(): number {
  const listening = new Set<number>();
  try {
    for (const line of Deno.readTextFileSync("/proc/net/tcp").split("\n").slice(1)) {
      const local = line.trim().split(/\s+/)[1];
      if (local !== undefined) listening.add(parseInt(local.split(":")[1] ?? "0", 16));
    }
  } catch {
    // No /proc: a taken port shows when sshd binds.
  }
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 40_000);
    if (!listening.has(port)) return port;
  }
}

/** The server's configuration: this folder's keys, key login only. */
function sshdConfig(folder: string, port: number, extra: string[] = []): string {
  return [
    ...extra,
    `Port ${port}`,
    `ListenAddress ${HOST}`,
    `HostKey ${folder}/host_key`,
    `AuthorizedKeysFile ${folder}/authorized_keys`,
    `PidFile ${folder}/sshd.pid`,
    "StrictModes no",
    "UsePAM no",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "PubkeyAuthentication yes",
    "PermitRootLogin prohibit-password",
    "LogLevel INFO",
    "",
  ].join("\n");
}

/** The command that starts sshd in the foreground, logging to stderr. */
function sshdCommand(folder: string): { program: string; args: string[] } {
  const sshdArgs = ["-D", "-e", "-f", `${folder}/sshd_config`];
  if (Deno.uid() !== 0 || hasPrivsepFolder()) return { program: SSHD, args: sshdArgs };
  // A private mount namespace, in which this folder's `run` is /run: /run/sshd exists there.
  const script = 'mount --bind "$1" /run && shift && exec "$@"';
  return {
    program: "unshare",
    args: ["-m", "--propagation", "private", "sh", "-c", script, "sh", `${folder}/run`, SSHD]
      .concat(sshdArgs),
  };
}

/** The log sshd writes, read line by line: until it listens, then kept for messages. */
interface SshdLog {
  /** Resolves true once sshd listens, false when its log ends first. */
  listening: Promise<boolean>;
  /** Resolves when the log ends. */
  done: Promise<void>;
  /** The last lines, for messages. */
  lines: string[];
}

/** Reads sshd's stderr: "Server listening on" is the condition the start waits for. */
function readLog(
  stderr: ReadableStream<Uint8Array>,
  onLogLine?: (line: string) => void,
): SshdLog {
  const lines: string[] = [];
  let heard!: (listening: boolean) => void;
  const listening = new Promise<boolean>((resolve) => heard = resolve);
  const done = (async () => {
    let rest = "";
    for await (const text of stderr.pipeThrough(new TextDecoderStream())) {
      const parts = (rest + text).split("\n");
      rest = parts.pop()!;
      for (const line of parts) {
        lines.push(line);
        onLogLine?.(line);
        if (lines.length > 50) lines.shift();
        if (line.startsWith("Server listening on")) heard(true);
      }
    }
    if (rest !== "") lines.push(rest);
    heard(false);
  })();
  return { listening, done, lines };
}

/** Makes the throwaway keys in `folder`; the client's key is the one authorized. */
async function makeKeys(folder: string): Promise<void> {
  await Deno.mkdir(`${folder}/run/sshd`, { recursive: true });
  for (const key of ["host_key", "client_key"]) {
    await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", key, "-f", `${folder}/${key}`]);
  }
  await Deno.copyFile(`${folder}/client_key.pub`, `${folder}/authorized_keys`);
}

/** Writes the files that name the port: the server's configuration and the known host. */
async function writePortFiles(
  folder: string,
  port: number,
  options: SshdOptions,
): Promise<void> {
  const hostKey = (await Deno.readTextFile(`${folder}/host_key.pub`)).trim();
  await Deno.writeTextFile(`${folder}/known_hosts`, `[${HOST}]:${port} ${hostKey}\n`);
  await Deno.writeTextFile(`${folder}/sshd_config`, sshdConfig(folder, port, options.config));
}

/** The client's words for the server in `folder` on `port`. */
function clientWords(folder: string, port: number): string[] {
  return [
    SSH,
    "-F",
    "/dev/null",
    "-p",
    String(port),
    "-i",
    `${folder}/client_key`,
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    `UserKnownHostsFile=${folder}/known_hosts`,
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "BatchMode=yes",
    "-o",
    "LogLevel=ERROR",
  ];
}

/** Starts sshd once on a port picked now: the server, or why it did not start. */
async function startOnce(
  folder: string,
  options: SshdOptions,
): Promise<TestSshd | { failed: string }> {
  const port = freePort();
  await writePortFiles(folder, port, options);
  const { program, args } = sshdCommand(folder);
  const child = new Deno.Command(program, { args, stdin: "null", stdout: "null", stderr: "piped" })
    .spawn();
  const log = readLog(child.stderr, options.onLogLine);
  const end = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // It has exited already.
    }
    await child.status;
    await log.done;
  };
  // An sshd that neither listens nor exits is stopped, which ends its log.
  const deadline = setTimeout(() => end(), 30_000);
  const listening = await log.listening;
  clearTimeout(deadline);
  if (!listening) {
    await end();
    return { failed: log.lines.join(" / ") };
  }
  const stop = async () => {
    await end();
    await Deno.remove(folder, { recursive: true });
  };
  return { port, host: HOST, rsh: clientWords(folder, port), folder, stop };
}

/**
 * Starts a test sshd and waits until it listens (its log says so). A port taken between
 * picking and binding it is given up for another, up to five tries.
 *
 * @param options Extra configuration and a listener for sshd's log (none for tests).
 * @throws {Error} sshd could not start: the message holds its log.
 */
export async function startSshd(options: SshdOptions = {}): Promise<TestSshd> {
  const folder = await Deno.makeTempDir({ prefix: "treesync-sshd-" });
  try {
    await makeKeys(folder);
    let outcome: TestSshd | { failed: string } = { failed: "" };
    for (let attempt = 0; attempt < 5; attempt++) {
      outcome = await startOnce(folder, options);
      if (!("failed" in outcome) || !outcome.failed.includes("already in use")) break;
    }
    if ("failed" in outcome) throw new Error(`sshd could not start: ${outcome.failed}`);
    return outcome;
  } catch (error) {
    await Deno.remove(folder, { recursive: true }).catch(() => {});
    throw error;
  }
}
