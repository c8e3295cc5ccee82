import fs from "node:fs";
import path from "node:path";
import { lockDataDir } from "./data-dir-lock.ts";
import { describeKeySource, generateKey, KEY_FILE, loadEncryptionKey, NEW_KEY_FILE, syncDir, writeKeyFile, type EncryptionKeyOptions } from "./encryption-key.ts";
import { createSecretBox } from "./secret-box.ts";
import { DATABASE_FILE, openDatabase } from "./sqlite/sqlite-store.ts";
import { createStoredSecrets } from "./sqlite/stored-secrets.ts";

export interface RotateKeyOptions extends EncryptionKeyOptions {
  /**
   * Where the new key goes: a file that exists is read (a key made elsewhere), one that does not is
   * generated and written 0600. Required when the current key is configured (setting, environment or
   * key file): the daemon never writes where the operator keeps keys. Without it, the data directory's
   * encryption.key is replaced.
   */
  newKeyFile?: string;
}

export interface RotateKeyResult {
  /** Secret values re-encrypted. */
  values: number;
  /** The file holding the new key. */
  keyFile: string;
  /** What the operator must do next, one sentence each (never the key). */
  nextSteps: string[];
}

/**
 * Re-encrypts every stored secret with a new key in one transaction. Holds the data directory's lock
 * throughout, so it refuses to run while a daemon uses the directory, and no daemon starts meanwhile.
 * With the data directory's key, the new key is written to encryption.key.new before the commit and
 * renamed over encryption.key after it; a crash in between is finished at the next start (the key that
 * opens the database wins).
 */
export function rotateEncryptionKey(options: RotateKeyOptions): RotateKeyResult {
  const { dataDir } = options;
  if (!fs.existsSync(path.join(dataDir, DATABASE_FILE))) throw new Error(`${dataDir} holds no hypervisord database (${DATABASE_FILE}); check --data-dir`);
  const release = lockDataDir(dataDir);
  try {
    const db = openDatabase(dataDir);
    try {
      const stored = createStoredSecrets(db);
      const current = loadEncryptionKey(options, { mayGenerate: !stored.hasSealed(), opens: stored.keyOpens });
      if (!stored.keyOpens(current.box)) {
        throw new Error(`the stored secrets do not decrypt with ${current.source}: give the key they were written with; nothing was changed`);
      }
      const fromDataDir = current.dataDirFile !== undefined;
      if (!options.newKeyFile && !fromDataDir) {
        throw new Error(`the current key comes from ${describeKeySource(options)}: give --new-key-file FILE (the new key is written there, `
          + "or read from it when it exists) and then configure that file; nothing was changed");
      }
      const target = options.newKeyFile ? path.resolve(options.newKeyFile) : path.join(dataDir, NEW_KEY_FILE);
      let newKey: string;
      if (options.newKeyFile && fs.existsSync(target)) {
        newKey = fs.readFileSync(target, "utf8").trim();
      } else {
        newKey = generateKey();
        writeKeyFile(target, newKey);
      }
      const next = createSecretBox(newKey, `the new key file ${target}`);
      if (stored.keyOpens(next) && stored.hasSealed()) throw new Error(`${target} holds the current key: give a new one; nothing was changed`);
      const values = stored.reseal(current.box, next);
      if (!options.newKeyFile) {
        const file = path.join(dataDir, KEY_FILE);
        fs.renameSync(target, file);
        syncDir(dataDir);
        return { values, keyFile: file, nextSteps: ["the daemon uses the new key at its next start; backups of the database made before now still need the old key"] };
      }
      const nextSteps = [`configure secrets.encryption_key_file: ${target} (or --encryption-key-file / HYPERVISORD_ENCRYPTION_KEY_FILE) before starting the daemon`];
      if (options.key) nextSteps.push("remove secrets.encryption_key / HYPERVISORD_ENCRYPTION_KEY: it no longer opens the stored secrets");
      if (fromDataDir) nextSteps.push(`delete ${current.dataDirFile} once the new key is configured: it no longer opens the stored secrets`);
      return { values, keyFile: target, nextSteps };
    } finally {
      db.close();
    }
  } finally {
    release();
  }
}
