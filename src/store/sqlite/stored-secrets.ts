import type { Database } from "better-sqlite3";
import type { JobDefinition } from "../../domain/job.ts";
import { redactUrl } from "../../redact-url.ts";
import { isSealed, type SecretBox } from "../secret-box.ts";
import { joinSecrets, splitSecrets } from "./job-rows.ts";

/**
 * Every column that holds a secret, sealed by the SecretBox: a job's and a schedule template's vSphere
 * password (JSON, apart from the definition), and a webhook's URL (its query may be a token), signing
 * secret and headers. A new secret column is added here, and the start-up pass and rotation follow.
 */
const SECRET_COLUMNS = [
  { table: "jobs", key: "pk", column: "secrets" },
  { table: "schedules", key: "id", column: "secrets" },
  { table: "webhooks", key: "id", column: "url" },
  { table: "webhooks", key: "id", column: "headers" },
  { table: "webhooks", key: "id", column: "secret" },
] as const;

/** meta row: a known text sealed with the current key, so that a wrong key is found at start, before any secret is needed. */
const KEY_CHECK = "secrets_key_check";
const KEY_CHECK_TEXT = "hypervisord secrets key check";

interface Cell {
  key: string | number;
  value: string;
}

export interface StoredSecrets {
  /** Whether anything in the database is encrypted: then only the key it was written with may be used. */
  hasSealed(): boolean;
  /**
   * Whether `box` opens the database's secrets: the key check, or (a database encrypted by a version
   * without it) the first sealed value of each column. True when nothing is encrypted yet.
   */
  keyOpens(box: SecretBox): boolean;
  /**
   * At start, in one transaction: refuses a key that does not open the database (before anything is
   * changed), then encrypts what older versions stored in clear (secret columns, and credentials in a
   * stored vsphere.url), and records the key check. Returns how many values were encrypted.
   */
  sealPlain(box: SecretBox, source: string): number;
  /**
   * Rotation: every secret opened with `from` and sealed with `to` (sealed values inside job checkpoints
   * too), and the key check, in one transaction
   * (all or nothing). A value that does not open with `from` stops it with the column named. Returns how
   * many values were re-encrypted.
   */
  reseal(from: SecretBox, to: SecretBox): number;
}

/** The secret columns of `db` as a whole; every statement prepared once. Table and column names come from constants, never from input. */
export function createStoredSecrets(db: Database): StoredSecrets {
  const columns = SECRET_COLUMNS.map(({ table, key, column }) => ({
    name: `${table}.${column}`,
    cells: db.prepare<[], Cell>(`SELECT ${key} AS key, ${column} AS value FROM ${table} WHERE ${column} IS NOT NULL`),
    plainCells: db.prepare<[], Cell>(`SELECT ${key} AS key, ${column} AS value FROM ${table} WHERE ${column} IS NOT NULL AND ${column} NOT LIKE 'v1:%'`),
    firstSealed: db.prepare<[], Cell>(`SELECT ${key} AS key, ${column} AS value FROM ${table} WHERE ${column} LIKE 'v1:%' LIMIT 1`),
    write: db.prepare(`UPDATE ${table} SET ${column} = ? WHERE ${key} = ?`),
  }));
  // Jobs and schedule templates whose vsphere.url may carry credentials (https://user:password@host), as
  // versions that accepted them stored it: splitSecrets moves such a URL into the sealed secrets.
  const urlCredentials = ([["jobs", "pk", "definition"], ["schedules", "id", "job_template"]] as const).map(([table, key, column]) => ({
    candidates: db.prepare<[], { key: string | number; definition: string; secrets: string | null }>(
      `SELECT ${key} AS key, ${column} AS definition, secrets FROM ${table} WHERE ${column} LIKE '%@%' AND json_extract(${column}, '$.vsphere.url') LIKE '%@%'`),
    write: db.prepare(`UPDATE ${table} SET ${column} = ?, secrets = ? WHERE ${key} = ?`),
  }));
  // Checkpoints may hold values the providers sealed with the store's key (a vSphere lease's session).
  const sealedCheckpoints = db.prepare<[], { pk: number; checkpoint: string }>(`SELECT pk, checkpoint FROM jobs WHERE checkpoint LIKE '%"v1:%'`);
  const writeCheckpoint = db.prepare("UPDATE jobs SET checkpoint = ? WHERE pk = ?");
  const getKeyCheck = db.prepare<[string], string>("SELECT value FROM meta WHERE key = ?").pluck();
  const putKeyCheck = db.prepare("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
  const keyCheck = () => getKeyCheck.get(KEY_CHECK);
  const setKeyCheck = (box: SecretBox) => void putKeyCheck.run(KEY_CHECK, box.seal(KEY_CHECK_TEXT));

  function keyOpens(box: SecretBox): boolean {
    const check = keyCheck();
    const samples = check !== undefined ? [check] : columns.flatMap((q) => q.firstSealed.all().map((c) => c.value));
    return samples.every((sealed) => {
      try {
        box.open(sealed);
        return true;
      } catch {
        // Altered or another key: either way this box does not open the database.
        return false;
      }
    });
  }

  const sealPass = db.transaction((box: SecretBox, source: string): number => {
    if (!keyOpens(box)) {
      throw new Error(`the stored secrets do not decrypt with ${source}: they were encrypted with another key (or altered); `
        + "configure the key they were written with (see README, Secrets); nothing was changed");
    }
    let sealed = 0;
    for (const q of columns) {
      for (const cell of q.plainCells.all()) {
        q.write.run(box.seal(cell.value), cell.key);
        sealed++;
      }
    }
    for (const q of urlCredentials) {
      for (const row of q.candidates.all()) {
        const definition = JSON.parse(row.definition) as JobDefinition;
        if (!definition.vsphere || redactUrl(definition.vsphere.url) === definition.vsphere.url) continue;
        const split = splitSecrets(joinSecrets(definition, row.secrets, box), box);
        q.write.run(split.definition, split.secrets, row.key);
        sealed++;
      }
    }
    if (keyCheck() === undefined) setKeyCheck(box);
    return sealed;
  });

  const resealPass = db.transaction((from: SecretBox, to: SecretBox): number => {
    let count = 0;
    for (const q of columns) {
      for (const cell of q.cells.all()) {
        let plain: string;
        try {
          plain = isSealed(cell.value) ? from.open(cell.value) : cell.value;
        } catch (err) {
          throw new Error(`${q.name} of ${cell.key}: ${(err as Error).message}; nothing was changed`, { cause: err });
        }
        q.write.run(to.seal(plain), cell.key);
        count++;
      }
    }
    for (const row of sealedCheckpoints.all()) {
      let resealed = 0;
      const checkpoint = JSON.stringify(JSON.parse(row.checkpoint), (_key, value: unknown) => {
        if (typeof value !== "string" || !isSealed(value)) return value;
        // One that does not open was sealed with a key from before the last rotation: of no use, left as it is.
        const plain = tryOpen(from, value);
        if (plain === undefined) return value;
        resealed++;
        return to.seal(plain);
      });
      if (resealed > 0) writeCheckpoint.run(checkpoint, row.pk);
      count += resealed;
    }
    setKeyCheck(to);
    return count;
  });

  return {
    hasSealed: () => keyCheck() !== undefined || columns.some((q) => q.firstSealed.get() !== undefined),
    keyOpens,
    sealPlain(box, source) {
      const hasPlain = columns.some((q) => q.plainCells.get() !== undefined) || urlCredentials.some((q) => q.candidates.get() !== undefined);
      return hasPlain ? scrubbing(db, () => sealPass.immediate(box, source)) : sealPass.immediate(box, source);
    },
    reseal: (from, to) => scrubbing(db, () => resealPass.immediate(from, to)),
  };
}

function tryOpen(box: SecretBox, sealed: string): string | undefined {
  try {
    return box.open(sealed);
  } catch {
    return undefined; // the caller keeps the value as it is
  }
}

/**
 * Runs `rewrite` so that the values it replaces leave no copy behind: secure_delete zeroes the freed
 * space of the rewritten pages, and the checkpoint copies the new pages over the old ones and empties
 * the WAL, which held the pages as they were. Otherwise a plain password (or a value sealed with the old
 * key) would stay readable in the file after it was encrypted.
 */
function scrubbing<T>(db: Database, rewrite: () => T): T {
  const previous = db.pragma("secure_delete", { simple: true }) as number;
  db.pragma("secure_delete = ON");
  try {
    const result = rewrite();
    db.pragma("wal_checkpoint(TRUNCATE)");
    return result;
  } finally {
    db.pragma(`secure_delete = ${previous ? "ON" : "OFF"}`);
  }
}
