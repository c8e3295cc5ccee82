import type pg from "pg";
import { API_KEYS_SCHEMA } from "./api-keys.ts";
import { AUDIT_SCHEMA } from "./audit.ts";
import { BATCHES_SCHEMA } from "./batches.ts";
import { JOBS_SCHEMA } from "./job-queries.ts";
import { PROFILES_SCHEMA } from "./profiles.ts";
import { SCHEDULES_SCHEMA } from "./schedules.ts";
import { MIGRATION_LOCK } from "./sql.ts";
import { WEBHOOKS_SCHEMA } from "./webhooks.ts";

interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * Append-only: never edit a migration that has shipped; add the next number. Version 1 is SQLite's final schema
 * (seven migrations there) plus the cluster's columns and tables, so that `store copy` moves rows column by column.
 */
const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "jobs, transitions, labels, logs, meta, schedules, profiles, webhooks, API keys, audit, batches; leases and the shared update log",
    sql: [JOBS_SCHEMA, SCHEDULES_SCHEMA, PROFILES_SCHEMA, WEBHOOKS_SCHEMA, API_KEYS_SCHEMA, AUDIT_SCHEMA, BATCHES_SCHEMA].join("\n"),
  },
];

/**
 * Brings the database to the newest schema this daemon knows, each migration in its own transaction. Daemons
 * starting together take turns on MIGRATION_LOCK (a session lock), so the second finds the work done. A database
 * migrated by a newer daemon is refused: this one would misread it. Returns the schema version.
 */
export async function migrate(pool: pg.Pool): Promise<number> {
  const client = await pool.connect();
  let failure: Error | undefined;
  // A connection that breaks while checked out reports "error" on the client: heard here, it fails the next query.
  const onError = (err: Error) => (failure ??= err);
  client.on("error", onError);
  try {
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`);
    const applied = new Set((await client.query<{ version: number }>("SELECT version FROM schema_migrations")).rows.map((r) => r.version));
    const newest = MIGRATIONS[MIGRATIONS.length - 1]!.version;
    const unknown = [...applied].filter((v) => v > newest);
    if (unknown.length > 0) {
      throw new Error(`the database has schema version ${Math.max(...unknown)}, newer than this daemon knows (${newest}); upgrade hypervisord`);
    }
    for (const migration of MIGRATIONS) {
      if (applied.has(migration.version)) continue;
      await client.query("BEGIN");
      try {
        await client.query(migration.sql);
        await client.query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
          [migration.version, migration.name, Date.now()]);
        await client.query("COMMIT");
      } catch (err) {
        await client.query("ROLLBACK");
        throw new Error(`applying PostgreSQL schema migration ${migration.version} (${migration.name}): ${(err as Error).message}`, { cause: err });
      }
    }
    await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK]);
    return newest;
  } catch (err) {
    failure = err as Error;
    throw err;
  } finally {
    // After a failure the session may still hold the lock: it is closed rather than returned to the pool.
    client.release(failure);
  }
}
