import type pg from "pg";
import type { ApiKey } from "../../domain/access.ts";
import { AlreadyExistsError } from "../../errors.ts";
import type { ApiKeyStore } from "../store.ts";
import { apiKeyFromRow, type ApiKeyRow } from "../sqlite/api-keys.ts";
import { transaction, type Sql } from "./sql.ts";

export const API_KEYS_SCHEMA = `
  CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,            -- 'admin' | 'operator' | 'viewer'
    key_hash TEXT NOT NULL UNIQUE, -- hex SHA-256 of the key; the key itself is never stored
    prefix TEXT NOT NULL,
    source TEXT NOT NULL,          -- 'api' | 'config'
    create_time BIGINT NOT NULL,
    last_used_time BIGINT,
    expire_time BIGINT,
    revoke_time BIGINT
  );
`;

const INSERT = `INSERT INTO api_keys (id, name, role, key_hash, prefix, source, create_time, last_used_time, expire_time, revoke_time)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`;

const insertValues = (key: ApiKey) => [key.id, key.name, key.role, key.keyHash, key.prefix, key.source, key.createTime,
  key.lastUsedTime ?? null, key.expireTime ?? null, key.revokeTime ?? null];

/** PostgreSQL's unique_violation, with the constraint it names. */
const uniqueViolation = (err: unknown): string | undefined =>
  (err as { code?: string }).code === "23505" ? ((err as { constraint?: string }).constraint ?? "") : undefined;

/**
 * API keys (hashes only), from the API and the config file. Nothing is cached in the process: another daemon
 * sharing the database may revoke or add a key at any time, and the next call must see it.
 */
export function createApiKeyStore(pool: pg.Pool): ApiKeyStore {
  const byId = async (db: Sql, id: string) => (await db.query<ApiKeyRow>("SELECT * FROM api_keys WHERE id = $1", [id])).rows[0];
  const byHash = async (db: Sql, keyHash: string) => (await db.query<ApiKeyRow>("SELECT * FROM api_keys WHERE key_hash = $1", [keyHash])).rows[0];

  /** The hash is UNIQUE: say which key holds it rather than surfacing a constraint error. */
  async function checkHashFree(db: Sql, key: ApiKey, what: string): Promise<void> {
    const holder = await byHash(db, key.keyHash);
    if (holder && holder.id !== key.id) throw new AlreadyExistsError(`${what}: the same key is already API key ${holder.id} (${holder.name})`);
  }

  async function syncConfig(db: Sql, keys: readonly ApiKey[]): Promise<void> {
    // Daemons sharing the database sync the same file at start: one at a time, each seeing the other's result.
    // SHARE ROW EXCLUSIVE conflicts with itself and with writers, not with readers (authentication goes on).
    await db.query("LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE");
    const stale = new Set((await db.query<{ id: string }>("SELECT id FROM api_keys WHERE source = 'config'")).rows.map((row) => row.id));
    // Deleted first, so that a key moved to another name in the file can take its hash along.
    for (const key of keys) stale.delete(key.id);
    if (stale.size > 0) await db.query("DELETE FROM api_keys WHERE id = ANY($1)", [[...stale]]);
    for (const key of keys) {
      await checkHashFree(db, key, `auth.api_keys "${key.name}"`);
      const current = await byId(db, key.id);
      if (current && current.source !== "config") throw new AlreadyExistsError(`auth.api_keys "${key.name}": id ${key.id} is taken by a key created through the API`);
      if (current) {
        // A config key keeps its create time across restarts, and its last-used time while its key stays the same.
        await db.query(`UPDATE api_keys SET name = $2, role = $3, prefix = $4,
            last_used_time = CASE WHEN key_hash = $5 THEN last_used_time END, key_hash = $5
          WHERE id = $1`, [key.id, key.name, key.role, key.prefix, key.keyHash]);
      } else {
        await db.query(INSERT, insertValues({ ...key, source: "config" }));
      }
    }
  }

  return {
    async insert(key) {
      try {
        await pool.query(INSERT, insertValues(key));
      } catch (err) {
        // The constraints decide (another daemon may insert at the same moment); the message says which key is in the way.
        const constraint = uniqueViolation(err);
        if (constraint === "api_keys_pkey") throw new AlreadyExistsError(`API key ${key.id} already exists`);
        if (constraint !== undefined) await checkHashFree(pool, key, `API key ${key.id}`);
        throw err;
      }
    },
    async get(id) {
      const row = await byId(pool, id);
      return row && apiKeyFromRow(row);
    },
    async byHash(keyHash) {
      const row = await byHash(pool, keyHash);
      return row && apiKeyFromRow(row);
    },
    async list() {
      return (await pool.query<ApiKeyRow>("SELECT * FROM api_keys ORDER BY create_time, id")).rows.map(apiKeyFromRow);
    },
    async revoke(id, time) {
      return ((await pool.query("UPDATE api_keys SET revoke_time = $1 WHERE id = $2 AND revoke_time IS NULL", [time, id])).rowCount ?? 0) > 0;
    },
    async touch(id, time) {
      await pool.query("UPDATE api_keys SET last_used_time = $1 WHERE id = $2", [time, id]);
    },
    syncConfig: (keys) => transaction(pool, (db) => syncConfig(db, keys)),
    async countUsable(now) {
      const { rows } = await pool.query<{ count: number }>(`SELECT count(*) AS count FROM api_keys
        WHERE revoke_time IS NULL AND (expire_time IS NULL OR expire_time > $1)`, [now]);
      return rows[0]!.count;
    },
  };
}
