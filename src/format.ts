/**
 * How things are shown to a person: byte counts, durations, local times, and paths kept to one
 * short line (control characters escaped, long paths cut in the middle). Pure but for the local
 * time zone.
 *
 * @module
 */

/** Characters kept at each end of a long path or value shown in a message. */
const SHOWN_END_CHARS = 60;

/**
 * Cuts the middle out of a long text, keeping its first and last `keep` characters with `…`
 * between, so a message stays one short line. Whole code points: a surrogate pair is never
 * split.
 */
export function shortenMiddle(text: string, keep = SHOWN_END_CHARS): string {
  if (text.length <= 2 * keep + 1) return text;
  const chars = Array.from(text);
  if (chars.length <= 2 * keep + 1) return text;
  return `${chars.slice(0, keep).join("")}…${chars.slice(-keep).join("")}`;
}

/**
 * Shows a path (or any text a user gave) in a message: names with control characters are
 * quoted JSON-style, and long ones are cut in the middle ({@linkcode shortenMiddle}).
 */
export function displayPath(path: string): string {
  return shortenMiddle(listedPath(path));
}

/**
 * Shows a path in full on one line, for listings where the path is the information: the
 * `--dry-run` plan, `--verify` results, the change lines of `-v` and the log file.
 */
export function listedPath(path: string): string {
  // deno-lint-ignore no-control-regex
  return /[\x00-\x1f\x7f]/.test(path) ? JSON.stringify(path) : path;
}

/** A path or value in quotes for a message, made safe by {@linkcode displayPath}. */
export function quoted(text: string): string {
  return `'${displayPath(text)}'`;
}

/** Shortens each quoted part of a message, as Deno's errors and node:util quote paths. */
export function shortenQuoted(message: string): string {
  return message.replace(/'([^']*)'/g, (_, inner: string) => quoted(inner));
}

/** Human-readable bytes: `512 B`, `1.5 KiB`, `3.2 GiB`; a fraction (a rate) is rounded. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  bytes = Math.round(bytes);
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/**
 * A moment as people read it, in the local time zone with its offset:
 * `2026-12-02 10:15:00 +01:00`. `offsetMinutes` (east of UTC) defaults to the zone's offset at
 * that moment; given, the function is pure.
 */
export function localTime(ms: number, offsetMinutes?: number): string {
  const [day, time] = localParts(ms, offsetMinutes);
  return `${day} ${time.slice(0, 8)} ${time.slice(12)}`;
}

/**
 * A moment for a log line: ISO 8601 in the local time zone with its offset and milliseconds,
 * `2026-12-02T10:15:00.123+01:00`, which tools parse as they parse UTC's `Z` form.
 */
export function localTimestamp(ms: number, offsetMinutes?: number): string {
  const [day, time] = localParts(ms, offsetMinutes);
  return `${day}T${time}`;
}

/** The local day and `HH:MM:SS.mmm+HH:MM` of a moment. */
function localParts(ms: number, offsetMinutes?: number): [string, string] {
  const offset = offsetMinutes ?? -new Date(ms).getTimezoneOffset();
  const shifted = new Date(ms + offset * 60_000).toISOString();
  const sign = offset < 0 ? "-" : "+";
  const hours = String(Math.floor(Math.abs(offset) / 60)).padStart(2, "0");
  const minutes = String(Math.abs(offset) % 60).padStart(2, "0");
  return [shifted.slice(0, 10), `${shifted.slice(11, 23)}${sign}${hours}:${minutes}`];
}

/** Control characters (C0, DEL, C1) written as `\xNN`, so shown text cannot drive a terminal. */
export function escapeControls(text: string): string {
  // deno-lint-ignore no-control-regex
  const controls = /[\x00-\x1f\x7f-\x9f]/g;
  return text.replace(controls, (char) => `\\x${char.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/** `1h 2m 3s` from milliseconds. */
export function formatDuration(ms: number): string {
  let seconds = Math.round(ms / 1000);
  const parts: string[] = [];
  for (const [unit, size] of [["d", 86_400], ["h", 3_600], ["m", 60]] as const) {
    if (seconds >= size) {
      parts.push(`${Math.floor(seconds / size)}${unit}`);
      seconds %= size;
    }
  }
  if (seconds > 0 || parts.length === 0) parts.push(`${seconds}s`);
  return parts.join(" ");
}

/**
 * A count with its noun in the right number: `1 folder`, `2 folders`, `0 entries`. The plural
 * adds `s` unless given (`counted(n, "entry", "entries")`).
 */
export function counted(count: number, noun: string, plural = `${noun}s`): string {
  return `${count} ${count === 1 ? noun : plural}`;
}
