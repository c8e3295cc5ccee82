import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { createSecretBox, type SecretBox } from "./secret-box.ts";

/** The key generated at first start when none is configured, in the data directory. */
export const KEY_FILE = "encryption.key";
/** A rotation writes the new key here first and renames it over KEY_FILE once the database has committed. */
export const NEW_KEY_FILE = `${KEY_FILE}.new`;

/** Where the key comes from: secrets.encryption_key, else secrets.encryption_key_file, else <dataDir>/encryption.key. */
export interface EncryptionKeyOptions {
  dataDir: string;
  /** secrets.encryption_key (HYPERVISORD_ENCRYPTION_KEY): base64 of 32 bytes. */
  key?: string;
  /** secrets.encryption_key_file (--encryption-key-file): a file holding that base64 text (e.g. a systemd credential). */
  keyFile?: string;
}

export interface EncryptionKey {
  box: SecretBox;
  /** For messages: "secrets.encryption_key (HYPERVISORD_ENCRYPTION_KEY)", "secrets.encryption_key_file /etc/...", "the key file /data/encryption.key". */
  source: string;
  /** Set when the key is the data directory's file (the only key the daemon writes). */
  dataDirFile?: string;
  /** What happened to the data directory's file while loading, for the log (never the key). */
  event?: "generated" | "finished an interrupted rotation" | "removed the key of a rotation that did not commit";
}

export interface LoadKeyContext {
  /** False when the database already holds encrypted secrets: a new key would make them unreadable. */
  mayGenerate: boolean;
  /** Whether `box` opens the database's secrets (the key check); a wrong key is refused by the caller. */
  opens(box: SecretBox): boolean;
}

/** base64 of 32 random bytes: the format of every key the daemon reads. */
export function generateKey(): string {
  return randomBytes(32).toString("base64");
}

export function describeKeySource(options: EncryptionKeyOptions): string {
  if (options.key) return "secrets.encryption_key (HYPERVISORD_ENCRYPTION_KEY)";
  if (options.keyFile) return `secrets.encryption_key_file ${options.keyFile}`;
  return `the key file ${path.join(options.dataDir, KEY_FILE)}`;
}

/**
 * The configured key, else the data directory's key file, generated (0600, atomically) when the
 * database holds no encrypted secret yet. A rotation interrupted after its commit left the new key in
 * encryption.key.new: it is taken when it is the one that opens the database.
 */
export function loadEncryptionKey(options: EncryptionKeyOptions, context: LoadKeyContext): EncryptionKey {
  const source = describeKeySource(options);
  if (options.key && options.keyFile) {
    throw new Error("set secrets.encryption_key (HYPERVISORD_ENCRYPTION_KEY) or secrets.encryption_key_file (--encryption-key-file), not both");
  }
  if (options.key) return { box: createSecretBox(options.key, source), source };
  if (options.keyFile) return { box: createSecretBox(readKeyFile(options.keyFile, source), source), source };

  const file = path.join(options.dataDir, KEY_FILE);
  const pending = path.join(options.dataDir, NEW_KEY_FILE);
  if (!fs.existsSync(file)) {
    if (!context.mayGenerate) {
      throw new Error(`the database holds encrypted secrets but there is no key: ${file} does not exist and neither secrets.encryption_key_file `
        + "(--encryption-key-file) nor secrets.encryption_key (HYPERVISORD_ENCRYPTION_KEY) is set; configure the key they were written with");
    }
    fs.rmSync(pending, { force: true });
    const key = generateKey();
    writeKeyFile(file, key);
    return { box: createSecretBox(key, source), source, dataDirFile: file, event: "generated" };
  }
  const box = createSecretBox(readKeyFile(file, source), source);
  if (fs.existsSync(pending)) {
    if (context.opens(box)) {
      fs.rmSync(pending);
      return { box, source, dataDirFile: file, event: "removed the key of a rotation that did not commit" };
    }
    const newBox = createSecretBox(readKeyFile(pending, source), source);
    if (context.opens(newBox)) {
      fs.renameSync(pending, file);
      syncDir(options.dataDir);
      return { box: newBox, source, dataDirFile: file, event: "finished an interrupted rotation" };
    }
  }
  return { box, source, dataDirFile: file };
}

/** Reads a key file; a missing or unreadable one is an error naming it (never the content). */
function readKeyFile(file: string, source: string): string {
  try {
    return fs.readFileSync(file, "utf8").trim();
  } catch (err) {
    throw new Error(`${source}: cannot read the key: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
}

/**
 * Writes `base64Key` to `file`, mode 0600 whatever the umask, atomically: a temporary file is written,
 * flushed and renamed, so that a crash leaves the old key or the new one, never half of one.
 */
export function writeKeyFile(file: string, base64Key: string): void {
  const temporary = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(temporary, "wx", 0o600);
  try {
    fs.fchmodSync(fd, 0o600);
    fs.writeSync(fd, `${base64Key}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temporary, file);
  syncDir(path.dirname(file));
}

/** A rename survives a power loss once its directory is flushed. */
export function syncDir(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
