import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import type { JobDefinition } from "../domain/job.ts";
import { lockDataDir } from "./data-dir-lock.ts";
import { KEY_FILE } from "./encryption-key.ts";
import { targetHost } from "./postgres/job-rows.ts";
import { migrate as migratePostgres } from "./postgres/migrations.ts";
import { createPool } from "./postgres/pool.ts";
import { transaction, type Sql } from "./postgres/sql.ts";
import { keyOpens, plainSecretColumns } from "./postgres/stored-secrets.ts";
import { createSecretBox } from "./secret-box.ts";
import { migrate as migrateSqlite } from "./sqlite/migrations.ts";
import { DATABASE_FILE } from "./sqlite/sqlite-store.ts";

export interface CopyStoreOptions {
  /** The SQLite daemon's data directory (--from). */
  from: string;
  /** postgres://... (--to). */
  to: string;
  /** Empty the target's tables first instead of refusing a target that holds data (--force). */
  force?: boolean;
}

export interface CopyStoreResult {
  /** Rows copied per table, in the order they were copied. */
  tables: { table: string; rows: number }[];
  /** SQLite tables and columns the target has no place for (not copied). */
  skipped: { table: string; columns: string[] | "table" }[];
  /** Where update_seq now starts: above every sequence number the SQLite daemon handed out. */
  nextSeq: number;
  /** The SQLite daemon's key file, when it opens the copied secrets: they were copied sealed, and open with that key only. */
  keyFile?: string;
}

/** An error about one flag of `store copy`: the message names it. */
export class CopyStoreError extends Error {
  constructor(readonly flag: "--from" | "--to", message: string, options?: ErrorOptions) {
    super(`${flag}: ${message}`, options);
    this.name = "CopyStoreError";
  }
}

const BATCH_ROWS = 500;
/** Tables whose rows mean the target is in use; a target holding any of them is refused without --force. */
const IN_USE_TABLES = ["jobs", "schedules", "profiles", "webhooks", "api_keys", "audit_events"];
/** Each store keeps its own record of the migrations it applied. */
const NOT_COPIED = new Set(["schema_migrations"]);
/** meta key of the highest update sequence number the SQLite daemon may have handed out (sqlite-store.ts). */
const SEQ_RESERVATION = "seq_reservation";

/**
 * Copies a SQLite daemon's database into PostgreSQL, table by table and column by column (the same names
 * on both sides), in one PostgreSQL transaction: a failed copy leaves the target as it was. The SQLite data
 * directory is locked as a daemon locks it, so that nothing is written to it meanwhile.
 */
export async function copyStore(options: CopyStoreOptions): Promise<CopyStoreResult> {
  if (!/^postgres(ql)?:\/\//.test(options.to)) throw new CopyStoreError("--to", "expected a postgres:// (or postgresql://) URL");
  const file = path.join(options.from, DATABASE_FILE);
  if (!fs.existsSync(file)) throw new CopyStoreError("--from", `${file} does not exist (give the data directory of a hypervisord that used SQLite)`);
  let release: () => void;
  try {
    release = lockDataDir(options.from);
  } catch (err) {
    throw new CopyStoreError("--from", `${(err as Error).message}; stop it before copying`, { cause: err });
  }
  try {
    const source = openSource(file);
    try {
      return await copyInto(source, options);
    } finally {
      source.close();
    }
  } finally {
    release();
  }
}

/** Migrated first (an older version's database copies too), then read inside one read transaction. */
function openSource(file: string): Database.Database {
  let db: Database.Database;
  try {
    db = new Database(file, { fileMustExist: true });
  } catch (err) {
    throw new CopyStoreError("--from", `cannot open ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    db.pragma("busy_timeout = 5000");
    migrateSqlite(db);
  } catch (err) {
    db.close();
    throw new CopyStoreError("--from", `${file}: ${(err as Error).message}`, { cause: err });
  }
  return db;
}

async function copyInto(source: Database.Database, options: CopyStoreOptions): Promise<CopyStoreResult> {
  const pool = createPool(options.to, { max: 2, applicationName: "hypervisord store copy" });
  try {
    try {
      await migratePostgres(pool);
    } catch (err) {
      throw new CopyStoreError("--to", `${redactPassword(options.to)}: ${(err as Error).message}`, { cause: err });
    }
    const keyFile = path.join(options.from, KEY_FILE);
    // One read transaction: the rows of every table as of one moment.
    source.exec("BEGIN");
    try {
      return await transaction(pool, async (db) => {
        const result = await copyTables(source, db, options.force ?? false);
        const plain = await plainSecretColumns(db);
        if (plain.length > 0) {
          throw new CopyStoreError("--from", `${plain.join(", ")} hold secrets in clear, written by an older version: start this version's daemon on `
            + `${options.from} once (it encrypts them at start), stop it, then copy; nothing was written to the target`);
        }
        // Named only when it is the key the secrets were sealed with (a configured key may have replaced it).
        const opens = fs.existsSync(keyFile) && await keyOpens(db, createSecretBox(fs.readFileSync(keyFile, "utf8"), keyFile));
        return { ...result, ...(opens ? { keyFile } : {}) };
      });
    } finally {
      source.exec("COMMIT");
    }
  } finally {
    await pool.end();
  }
}

async function copyTables(source: Database.Database, db: Sql, force: boolean): Promise<Omit<CopyStoreResult, "keyFile">> {
  const sourceTables = (source.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").pluck().all() as string[])
    .filter((table) => !NOT_COPIED.has(table));
  const targetColumns = await columnsOf(db);
  const skipped: CopyStoreResult["skipped"] = [];
  const plan: { table: string; columns: string[]; key: string[] }[] = [];
  for (const table of sourceTables) {
    const target = targetColumns.get(table);
    if (!target) {
      skipped.push({ table, columns: "table" });
      continue;
    }
    const info = source.prepare("SELECT name, pk FROM pragma_table_info(?) ORDER BY cid").all(table) as { name: string; pk: number }[];
    const missing = info.filter((c) => !target.has(c.name)).map((c) => c.name);
    if (missing.length > 0) skipped.push({ table, columns: missing });
    const key = info.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk).map((c) => c.name);
    plan.push({ table, columns: info.filter((c) => target.has(c.name)).map((c) => c.name), key });
  }
  const ordered = await parentsFirst(db, plan);

  if (!force) {
    const inUse: string[] = [];
    for (const table of IN_USE_TABLES.filter((t) => targetColumns.has(t))) {
      const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${ident(table)}`);
      if (rows[0]!.n > 0) inUse.push(`${table} (${rows[0]!.n})`);
    }
    if (inUse.length > 0) {
      throw new CopyStoreError("--to", `the target database already holds ${inUse.join(", ")}; copy into an empty database, or give --force to empty it first`);
    }
  }
  // Every table is emptied, the cluster's own too (its update log's seqs would collide with the restarted update_seq):
  // what a target not in use holds (meta, logs, profiles ...) is replaced, and with --force everything.
  const emptied = [...targetColumns.keys()].filter((table) => !NOT_COPIED.has(table));
  if (emptied.length > 0) await db.query(`TRUNCATE ${emptied.map(ident).join(", ")} RESTART IDENTITY CASCADE`);

  const tables: CopyStoreResult["tables"] = [];
  for (const { table, columns, key } of ordered) {
    tables.push({ table, rows: await copyTable(source, db, table, columns, key) });
  }
  await restartIdentities(db, ordered.map((p) => p.table));
  await fillClusterColumns(db);
  const nextSeq = await restartUpdateSeq(source, db, targetColumns.has("job_transitions"));
  return { tables, skipped, nextSeq };
}

/** Column names of the target's tables (the current schema; views aside). */
async function columnsOf(db: Sql): Promise<Map<string, Set<string>>> {
  const { rows } = await db.query<{ table_name: string; column_name: string }>(`SELECT c.table_name, c.column_name
    FROM information_schema.columns c JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
    WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' ORDER BY c.table_name, c.ordinal_position`);
  const byTable = new Map<string, Set<string>>();
  for (const row of rows) {
    let set = byTable.get(row.table_name);
    if (!set) byTable.set(row.table_name, (set = new Set()));
    set.add(row.column_name);
  }
  return byTable;
}

/** The tables ordered so that a table a foreign key points to is copied before the table holding the key. */
async function parentsFirst<T extends { table: string }>(db: Sql, plan: readonly T[]): Promise<T[]> {
  const { rows } = await db.query<{ child: string; parent: string }>(`SELECT c.relname AS child, p.relname AS parent
    FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid
    WHERE k.contype = 'f' AND k.connamespace = current_schema()::regnamespace`);
  const ordered: T[] = [];
  const placed = new Set<string>();
  const visiting = new Set<string>();
  const byTable = new Map(plan.map((p) => [p.table, p]));
  const visit = (entry: T) => {
    if (placed.has(entry.table) || visiting.has(entry.table)) return;
    visiting.add(entry.table);
    for (const { parent } of rows.filter((r) => r.child === entry.table && r.parent !== entry.table)) {
      const parentEntry = byTable.get(parent);
      if (parentEntry) visit(parentEntry);
    }
    placed.add(entry.table);
    ordered.push(entry);
  };
  for (const entry of plan) visit(entry);
  return ordered;
}

/**
 * Rows in batches of BATCH_ROWS, one multi-row INSERT each (bound parameters; the names come from both schemas),
 * in primary key order (WITHOUT ROWID tables have no rowid).
 */
async function copyTable(source: Database.Database, db: Sql, table: string, columns: readonly string[], key: readonly string[]): Promise<number> {
  if (columns.length === 0) return 0;
  const order = key.length > 0 ? ` ORDER BY ${key.map(ident).join(", ")}` : "";
  const select = source.prepare(`SELECT ${columns.map(ident).join(", ")} FROM ${ident(table)}${order}`).raw();
  const head = `INSERT INTO ${ident(table)} (${columns.map(ident).join(", ")}) OVERRIDING SYSTEM VALUE VALUES `;
  // PostgreSQL binds at most 65535 parameters per statement.
  const rowsPerInsert = Math.min(BATCH_ROWS, Math.floor(65_535 / columns.length));
  let batch: unknown[][] = [];
  let count = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    const values = batch.map((_, r) => `(${columns.map((_c, c) => `$${r * columns.length + c + 1}`).join(", ")})`).join(", ");
    try {
      await db.query(head + values, batch.flat());
    } catch (err) {
      throw new Error(`copying ${table} (rows ${count - batch.length + 1} to ${count}): ${(err as Error).message}`, { cause: err });
    }
    batch = [];
  };
  for (const row of select.iterate() as IterableIterator<unknown[]>) {
    batch.push(row);
    count++;
    if (batch.length === rowsPerInsert) await flush();
  }
  await flush();
  return count;
}

/**
 * The jobs columns only a cluster has, which SQLite has no source for: the host whose cap on running jobs
 * applies (from the definition, as the PostgreSQL store's insert sets it), and an expired lease for the jobs
 * the SQLite daemon was running, so that a node's lease keeper recovers them as a restarted daemon would.
 */
async function fillClusterColumns(db: Sql): Promise<void> {
  for (let after = 0; ;) {
    const { rows } = await db.query<{ pk: number; definition: string }>(
      "SELECT pk, definition FROM jobs WHERE pk > $1 AND target_host IS NULL ORDER BY pk LIMIT $2", [after, BATCH_ROWS]);
    if (rows.length === 0) break;
    after = rows[rows.length - 1]!.pk;
    const hosts = rows.map((row) => ({ pk: row.pk, host: targetHost(JSON.parse(row.definition) as JobDefinition) })).filter((r) => r.host !== null);
    await db.query("UPDATE jobs SET target_host = t.host FROM unnest($1::bigint[], $2::text[]) AS t (pk, host) WHERE jobs.pk = t.pk",
      [hosts.map((r) => r.pk), hosts.map((r) => r.host)]);
  }
  await db.query("UPDATE jobs SET lease_expires = 0 WHERE state = 'running' AND lease_expires IS NULL");
}

/** Every identity (or serial) column's sequence continues after the highest value copied. */
async function restartIdentities(db: Sql, tables: readonly string[]): Promise<void> {
  const { rows } = await db.query<{ table_name: string; column_name: string }>(`SELECT table_name, column_name FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name = ANY($1::text[]) AND pg_get_serial_sequence(quote_ident(table_name), column_name) IS NOT NULL`,
  [tables]);
  for (const { table_name: table, column_name: column } of rows) {
    await db.query(`SELECT setval(pg_get_serial_sequence($1, $2), COALESCE((SELECT max(${ident(column)}) FROM ${ident(table)}), 0) + 1, false)`,
      [ident(table), column]);
  }
}

/**
 * update_seq continues above every sequence number the SQLite daemon handed out: its transitions', and its
 * reservation (progress updates take numbers too, and a client resuming a stream must not see one again).
 */
async function restartUpdateSeq(source: Database.Database, db: Sql, hasTransitions: boolean): Promise<number> {
  const reserved = Number((source.prepare("SELECT value FROM meta WHERE key = ?").pluck().get(SEQ_RESERVATION) as string | undefined) ?? 0);
  const { rows } = hasTransitions
    ? await db.query<{ seq: number | null }>("SELECT max(seq) AS seq FROM job_transitions")
    : { rows: [{ seq: 0 }] };
  const next = Math.max(rows[0]?.seq ?? 0, Number.isFinite(reserved) ? reserved : 0) + 1;
  await db.query("SELECT setval('update_seq', $1, false)", [next]);
  return next;
}

/** A table or column name from the two schemas, quoted (never user input). */
function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** The target URL for messages, without its password. */
function redactPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "(the URL does not parse)";
  }
}
