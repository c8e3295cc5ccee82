import type { Database } from "better-sqlite3";
import type { ApiKey, Role } from "../../domain/access.ts";
import { AlreadyExistsError } from "../../errors.ts";
import type { ApiKeyStore } from "../store.ts";
import type { Sync } from "../sync-store.ts";

/** Also the PostgreSQL store's: the same columns (src/store/postgres/api-keys.ts). */
export interface ApiKeyRow {
  id: string;
  name: string;
  role: string;
  key_hash: string;
  prefix: string;
  source: string;
  create_time: number;
  last_used_time: number | null;
  expire_time: number | null;
  revoke_time: number | null;
}

export const apiKeyFromRow = (row: ApiKeyRow): ApiKey => ({
  id: row.id,
  name: row.name,
  role: row.role as Role,
  keyHash: row.key_hash,
  prefix: row.prefix,
  source: row.source as ApiKey["source"],
  createTime: row.create_time,
  lastUsedTime: row.last_used_time ?? undefined,
  expireTime: row.expire_time ?? undefined,
  revokeTime: row.revoke_time ?? undefined,
});

const toRow = (key: ApiKey): ApiKeyRow => ({
  id: key.id,
  name: key.name,
  role: key.role,
  key_hash: key.keyHash,
  prefix: key.prefix,
  source: key.source,
  create_time: key.createTime,
  last_used_time: key.lastUsedTime ?? null,
  expire_time: key.expireTime ?? null,
  revoke_time: key.revokeTime ?? null,
});

/** API keys (hashes only), from the API and the config file; every statement prepared once. */
export function createApiKeyQueries(db: Database): Sync<ApiKeyStore> {
  const insertRow = db.prepare(`INSERT INTO api_keys
    (id, name, role, key_hash, prefix, source, create_time, last_used_time, expire_time, revoke_time)
    VALUES (@id, @name, @role, @key_hash, @prefix, @source, @create_time, @last_used_time, @expire_time, @revoke_time)`);
  const byId = db.prepare<[string], ApiKeyRow>("SELECT * FROM api_keys WHERE id = ?");
  const byHash = db.prepare<[string], ApiKeyRow>("SELECT * FROM api_keys WHERE key_hash = ?");
  const all = db.prepare<[], ApiKeyRow>("SELECT * FROM api_keys ORDER BY create_time, id");
  const configRows = db.prepare<[], ApiKeyRow>("SELECT * FROM api_keys WHERE source = 'config'");
  const revokeRow = db.prepare("UPDATE api_keys SET revoke_time = ? WHERE id = ? AND revoke_time IS NULL");
  const touchRow = db.prepare("UPDATE api_keys SET last_used_time = ? WHERE id = ?");
  // A config key keeps its create time across restarts, and its last-used time while its key stays the same.
  const updateConfigRow = db.prepare(`UPDATE api_keys SET name = @name, role = @role, prefix = @prefix,
      last_used_time = CASE WHEN key_hash = @key_hash THEN last_used_time END, key_hash = @key_hash
    WHERE id = @id`);
  const deleteRow = db.prepare("DELETE FROM api_keys WHERE id = ?");
  const usable = db.prepare<[number], { count: number; nextExpiry: number | null }>(`SELECT count(*) AS count, min(expire_time) AS nextExpiry
    FROM api_keys WHERE revoke_time IS NULL AND (expire_time IS NULL OR expire_time > ?)`);
  // While no key exists, authentication asks for this count on every call (twice on gRPC): answered from memory
  // until the table is written or the first of the counted keys expires. Only this module writes the table.
  let usableCache: { count: number; from: number; until: number } | undefined;
  function countUsable(now: number): number {
    if (usableCache && now >= usableCache.from && now < usableCache.until) return usableCache.count;
    const { count, nextExpiry } = usable.get(now)!;
    usableCache = { count, from: now, until: nextExpiry ?? Infinity };
    return count;
  }

  /** The hash is UNIQUE: say which key holds it rather than surfacing a constraint error. */
  function checkHashFree(key: ApiKey, what: string): void {
    const holder = byHash.get(key.keyHash);
    if (holder && holder.id !== key.id) throw new AlreadyExistsError(`${what}: the same key is already API key ${holder.id} (${holder.name})`);
  }

  const syncConfig = db.transaction((keys: readonly ApiKey[]): void => {
    usableCache = undefined;
    const stale = new Map(configRows.all().map((row) => [row.id, row]));
    // Deleted first, so that a key moved to another name in the file can take its hash along.
    for (const key of keys) stale.delete(key.id);
    for (const id of stale.keys()) deleteRow.run(id);
    for (const key of keys) {
      checkHashFree(key, `auth.api_keys "${key.name}"`);
      const current = byId.get(key.id);
      if (current && current.source !== "config") throw new AlreadyExistsError(`auth.api_keys "${key.name}": id ${key.id} is taken by a key created through the API`);
      if (current) updateConfigRow.run(toRow({ ...key, source: "config" }));
      else insertRow.run(toRow({ ...key, source: "config" }));
    }
  });

  return {
    insert(key) {
      if (byId.get(key.id)) throw new AlreadyExistsError(`API key ${key.id} already exists`);
      checkHashFree(key, `API key ${key.id}`);
      usableCache = undefined;
      insertRow.run(toRow(key));
    },
    get(id) {
      const row = byId.get(id);
      return row && apiKeyFromRow(row);
    },
    byHash(keyHash) {
      const row = byHash.get(keyHash);
      return row && apiKeyFromRow(row);
    },
    list: () => all.all().map(apiKeyFromRow),
    revoke(id, time) {
      usableCache = undefined;
      return revokeRow.run(time, id).changes > 0;
    },
    touch: (id, time) => void touchRow.run(time, id),
    syncConfig,
    countUsable,
  };
}
