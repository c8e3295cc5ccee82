import type { LoadKeyContext } from "../encryption-key.ts";
import type { SecretBox } from "../secret-box.ts";
import type { Sql } from "./sql.ts";

/**
 * The columns that hold a secret sealed by the SecretBox, as in SQLite (src/store/sqlite/stored-secrets.ts).
 * Table and column names are constants, never input. PostgreSQL never held plain secrets (no version before
 * encryption wrote it; `store copy` copies sealed values as they are), so there is no sealing pass here.
 */
const SECRET_COLUMNS = [
  { table: "jobs", column: "secrets" },
  { table: "schedules", column: "secrets" },
  { table: "webhooks", column: "url" },
  { table: "webhooks", column: "headers" },
  { table: "webhooks", column: "secret" },
] as const;

/** meta row: a known text sealed with the key, so that a wrong key is found at start, before any secret is needed (SQLite's too). */
export const KEY_CHECK = "secrets_key_check";
const KEY_CHECK_TEXT = "hypervisord secrets key check";

/** The key check, or (a database copied from one written before the check existed) the first sealed value of each secret column. */
async function sealedSamples(db: Sql): Promise<string[]> {
  const { rows } = await db.query<{ value: string }>("SELECT value FROM meta WHERE key = $1", [KEY_CHECK]);
  if (rows[0]) return [rows[0].value];
  const samples: string[] = [];
  for (const { table, column } of SECRET_COLUMNS) {
    const result = await db.query<{ value: string }>(`SELECT ${column} AS value FROM ${table} WHERE ${column} LIKE 'v1:%' LIMIT 1`);
    if (result.rows[0]) samples.push(result.rows[0].value);
  }
  return samples;
}

function opensAll(box: SecretBox, samples: readonly string[]): boolean {
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

/** The secret columns holding a value that is not sealed (`store copy` from a database an older version wrote in clear), named "table.column". */
export async function plainSecretColumns(db: Sql): Promise<string[]> {
  const plain: string[] = [];
  for (const { table, column } of SECRET_COLUMNS) {
    const { rows } = await db.query(`SELECT 1 FROM ${table} WHERE ${column} IS NOT NULL AND ${column} NOT LIKE 'v1:%' LIMIT 1`);
    if (rows.length > 0) plain.push(`${table}.${column}`);
  }
  return plain;
}

/** Whether anything in the database is encrypted: then only the key it was written with may be used. */
export async function hasSealed(db: Sql): Promise<boolean> {
  return (await sealedSamples(db)).length > 0;
}

/** Whether `box` opens the database's secrets; true when nothing is encrypted yet. */
export async function keyOpens(db: Sql, box: SecretBox): Promise<boolean> {
  return opensAll(box, await sealedSamples(db));
}

/**
 * What loadEncryptionKey asks of the database (it is synchronous): the samples read once, up front.
 * A key the daemon would generate for an empty database is then pinned by `checkKey`.
 */
export async function keyContext(db: Sql): Promise<LoadKeyContext> {
  const samples = await sealedSamples(db);
  return { mayGenerate: samples.length === 0, opens: (box) => opensAll(box, samples) };
}

/**
 * At start: refuses a key that does not open the database's secrets, and records the key check when there
 * is none yet. Daemons of a cluster share one database and so one key: when two start together on an empty
 * database with different keys, the first check written wins (ON CONFLICT DO NOTHING waits for the other's
 * commit) and the other daemon is refused here.
 */
export async function checkKey(db: Sql, box: SecretBox, source: string): Promise<void> {
  const refuse = () => new Error(`the stored secrets do not decrypt with ${source}: they were encrypted with another key (or altered); `
    + "every daemon sharing this database must be given the same key (secrets.encryption_key or secrets.encryption_key_file, see README, Secrets)");
  if (!(await keyOpens(db, box))) throw refuse();
  await db.query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", [KEY_CHECK, box.seal(KEY_CHECK_TEXT)]);
  if (!(await keyOpens(db, box))) throw refuse();
}
