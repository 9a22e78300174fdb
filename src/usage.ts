/**
 * What the command line says to a user: the usage text (`--help`), and for an rsync flag given
 * to treesync, what it means in rsync and what treesync does instead. Plain text, no logic.
 *
 * @module
 */

/** The `--help` text: every flag, the paths and the exit codes. */
export const USAGE = `Usage: treesync [options] SOURCE REPLICA
       treesync --serve [--root DIR]

Mirror SOURCE into REPLICA: copy new and changed files, delete extraneous ones, keep folders,
symlinks, modes and mtimes. A file record in REPLICA/.treesync/ keeps each file's SHA-256.

Paths (flags win over the environment):
  -s, --source PATH       folder to mirror (alias --src; default $TREESYNC_SOURCE)
  -r, --replica PATH      the mirror (alias --dest; default $TREESYNC_REPLICA); not rsync's
                          -r: treesync always recurses

What to do:
  -n, --dry-run           print the itemized plan, change nothing (alias --scan)
      --restore           copy missing and differing files from REPLICA back into SOURCE;
                          never deletes anything, never replaces one type with another, and
                          keeps (and reports, exit 1) source files changed since the last sync
      --overwrite-newer   with --restore: replace those changed source files too
      --verify            re-hash every replica file against the record; change nothing
  -c, --checksum          decide "changed" by SHA-256 content instead of size and mtime
      --exclude GLOB      leave matching entries alone on both sides (repeatable):
                          'name' any depth, 'a/b' from the root, 'dir/' folders only, '**' any depth
      --include GLOB      keep what a later --exclude would leave out (repeatable). As in rsync,
                          the first --include or --exclude that matches decides, in command-line
                          order, and a folder left out is not walked: --include '*/' keeps them
      --exclude-from FILE --exclude each line of FILE, at this place in the order (repeatable);
                          skips blank lines and '#' comments; '+ GLOB' includes, '- GLOB' excludes
      --no-delete         never delete anything from the replica (the only --no- flag; an
                          entry whose type changed in the source is reported and left: exit 1)
      --adopt             mirror over a REPLICA that has no treesync record yet, deleting what
                          SOURCE lacks; without it such a run deletes nothing, copies, and exits 3
  -I, --interactive       ask on the terminal before deleting anything
      --allow-empty-source  mirror an empty SOURCE over a non-empty replica (deletes everything)
  -i, --interval DURATION run every DURATION (90, 45s, 5m, 1h30m, 2d; at most 365d) and read
                          commands on stdin
      --watch             also watch SOURCE: a change starts a run of the folders it touched once
                          SOURCE has been quiet for --watch-delay; a full run still comes every
                          --interval (default 1h with --watch)
      --watch-delay DURATION  the quiet period before a watch run (default 2s)
      --keep-deleted DURATION  move deleted and overwritten replica files to
                          REPLICA/.treesync/trash/ instead (with --restore, replaced source files
                          to SOURCE/.treesync/trash/), and purge them after DURATION (at most 365d)
  -j, --jobs N            files copied or hashed at once (default: the number of cores; at
                          most 64)
  -H, --hard-links        keep hard links: names of one source file become names of one
                          replica file (copied once, then linked), as rsync -H
  -S, --sparse            leave a hole for each whole block of zeros in a copied file (any
                          file, as rsync -S), so sparse files stay sparse in the replica
      --max-delete N|P%   if a run would delete more entries than N (or P% of the replica), delete
                          nothing, still copy, and exit 3

A tree on another host (one of SOURCE and REPLICA may be [USER@]HOST:PATH, as in rsync; a path
not starting with / is relative to the login's home there; [::1]:PATH for IPv6):
  -e, --rsh COMMAND       the remote shell (default $TREESYNC_RSH, else ssh; quote words with
                          spaces: -e 'ssh -p 2222'); ssh runs with BatchMode=yes (asks nothing)
      --remote-treesync PROGRAM  the far end's treesync, as its login shell reads it (default
                          treesync; ' --serve' is added)
      --bwlimit RATE      file data at most RATE a second (500K, 20M, 1.5M; K = 1024, KB = 1000;
                          no unit = K; 0 = no limit)
  -z, --compress          compress file data on the wire
      --serve             be the far end: serve this host's trees on stdin/stdout (the remote
                          shell starts it; nothing but the session goes to stdout)
      --root DIR          with --serve: open trees at or below DIR only (for a forced command
                          in authorized_keys: command="treesync --serve --root /srv/backup")
  A pull (HOST:PATH REPLICA) runs here and reads the far tree; --watch needs a local SOURCE.

Output:
  -l, --log PATH          also log to PATH (a folder or PATH/ means PATH/treesync.log; alias
                          --log_file; default $TREESYNC_LOG)
      --log-max-size SIZE rotate the log file past SIZE (default 10M; K, M, G suffixes)
      --log-keep N        rotated log files to keep (default 5, at most 100)
      --json              print one JSON summary line on stdout after each run
  -v, --verbose           print each change; twice (-vv) each entry scanned and each decision
  -q, --quiet             print errors only
  -h, --help              show this help
  -V, --version           show the version

SOURCE and REPLICA are given both as paths or both with -s/-r (or the variables), never mixed.
treesync mirrors the contents of SOURCE (as rsync SOURCE/ does), always recursively, and deletes
what SOURCE lacks. A colon before the first slash means HOST:PATH (write ./a:b for a local name
with a colon); both paths on other hosts are refused. An empty path ('', as an unset variable
gives) is refused: it would mean the current folder.

Exit codes: 0 replica matches, 1 it does not (entries failed or were kept, deletions declined at
-I, or --verify found mismatches or unrecorded files), 2 usage or setup error (nothing changed),
3 refused by a safety check (nothing deleted: --max-delete, an empty source, another run, or a
REPLICA without a record and no --adopt), 130/143 SIGINT/SIGTERM. A far end that cannot be
reached or started, or that refuses the tree, is exit 2 (nothing changed).`;

const KEPT_ANYWAY = "treesync always keeps folders, symlinks, modes and mtimes (owners as root), " +
  "recursively; drop it";

const NO_PROGRESS_FLAG = "treesync shows a progress line on a terminal by itself, and writes " +
  "each file under a temporary name first; drop it";

const NO_UPDATE = "treesync makes REPLICA match SOURCE, newer replica files included; " +
  "--dry-run shows what it would replace";

/** rsync's flags that treesync does not take: what they are in rsync, what treesync does. */
const RSYNC_HINTS: Record<string, [string, string]> = {
  "-a": ["archive", KEPT_ANYWAY],
  "--archive": ["archive", KEPT_ANYWAY],
  "-t": ["times", KEPT_ANYWAY],
  "-p": ["perms", KEPT_ANYWAY],
  "-o": ["owner", KEPT_ANYWAY],
  "-g": ["group", KEPT_ANYWAY],
  "-D": ["devices", "treesync skips special files and says so; drop it"],
  "--recursive": ["recursive", "treesync always recurses; drop it"],
  "-P": ["progress and partial", NO_PROGRESS_FLAG],
  "--progress": ["progress", NO_PROGRESS_FLAG],
  "--partial": ["partial", NO_PROGRESS_FLAG],
  "-u": ["update", NO_UPDATE],
  "--update": ["update", NO_UPDATE],
  "--itemize-changes": ["itemize", "treesync prints each change with -v, the plan with -n"],
};

/** What to say about an rsync flag given to treesync, if anything. */
export function rsyncHint(option: string): string | undefined {
  if (/^--delete-/.test(option)) {
    return "(rsync's deletion timing): treesync always deletes what SOURCE lacks, after " +
      "copying; --no-delete keeps them";
  }
  const hint = RSYNC_HINTS[option];
  return hint && `(rsync's ${hint[0]}): ${hint[1]}`;
}
