import fs from "node:fs";

/** Owner only: the data directory holds the database (with sealed secrets, the audit log) and the key. */
export const DIR_MODE = 0o700;
export const FILE_MODE = 0o600;

/**
 * Creates the data directory 0700 whatever the umask, or tightens an existing one that group or others
 * may read; returns a warning for each change, for the log.
 */
export function prepareDataDir(dir: string): string[] {
  fs.mkdirSync(dir, { recursive: true, mode: DIR_MODE });
  return [tighten(dir, DIR_MODE, "data directory")].filter((w) => w !== undefined);
}

/**
 * Makes `file` (created if missing, empty) mode 0600 whatever the umask, before SQLite or anyone opens it:
 * SQLite gives -wal and -shm the mode of the database file. Returns a warning when an existing file was
 * looser.
 */
export function secureFile(file: string, what: string): string | undefined {
  const fd = fs.openSync(file, fs.constants.O_CREAT | fs.constants.O_RDWR, FILE_MODE);
  fs.closeSync(fd);
  return tighten(file, FILE_MODE, what);
}

/** Tightens an existing file (-wal, -shm left by an older version); nothing when it does not exist. */
export function secureExistingFile(file: string, what: string): string | undefined {
  return fs.existsSync(file) ? tighten(file, FILE_MODE, what) : undefined;
}

function tighten(target: string, mode: number, what: string): string | undefined {
  const current = fs.statSync(target).mode & 0o777;
  if ((current & ~mode) === 0) return undefined;
  fs.chmodSync(target, mode);
  return `${what} ${target} was mode ${octal(current)}, readable by others than its owner: tightened to ${octal(mode)}`;
}

const octal = (mode: number) => `0${mode.toString(8).padStart(3, "0")}`;
