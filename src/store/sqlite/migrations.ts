import type { Database } from "better-sqlite3";

interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Append-only: never edit a migration that has shipped; add the next number. */
const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "jobs, transitions, labels, logs, meta",
    sql: `
      CREATE TABLE jobs (
        pk INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        request_id TEXT,
        name TEXT NOT NULL,
        provider TEXT NOT NULL,
        state TEXT NOT NULL,
        priority INTEGER NOT NULL,
        definition TEXT NOT NULL,
        secrets TEXT,
        progress TEXT,
        result TEXT,
        error TEXT,
        attempt INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        resume INTEGER NOT NULL DEFAULT 0,
        checkpoint TEXT,
        schedule_id TEXT,
        create_time INTEGER NOT NULL,
        start_time INTEGER,
        end_time INTEGER,
        next_attempt_time INTEGER,
        log_bytes INTEGER NOT NULL DEFAULT 0,
        log_truncated INTEGER NOT NULL DEFAULT 0
      );
      -- The queue order; also serves every lookup by state.
      CREATE INDEX jobs_queue ON jobs (state, priority DESC, pk);
      CREATE INDEX jobs_create_time ON jobs (create_time);
      CREATE UNIQUE INDEX jobs_request_id ON jobs (request_id) WHERE request_id IS NOT NULL;
      CREATE INDEX jobs_schedule ON jobs (schedule_id, pk) WHERE schedule_id IS NOT NULL;

      CREATE TABLE job_labels (
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        job_pk INTEGER NOT NULL REFERENCES jobs (pk) ON DELETE CASCADE,
        PRIMARY KEY (key, value, job_pk)
      ) WITHOUT ROWID;

      CREATE TABLE job_transitions (
        seq INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        reason TEXT NOT NULL,
        actor TEXT NOT NULL,
        time INTEGER NOT NULL
      );
      CREATE INDEX job_transitions_job ON job_transitions (job_id, seq);

      CREATE TABLE job_logs (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL,
        time INTEGER NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL,
        fields TEXT NOT NULL,
        bytes INTEGER NOT NULL
      );
      CREATE INDEX job_logs_job ON job_logs (job_id, id);

      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    `,
  },
];

export function migrate(db: Database): number {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
  const applied = new Set(
    db.prepare("SELECT version FROM schema_migrations").pluck().all() as number[],
  );
  const newest = MIGRATIONS[MIGRATIONS.length - 1]!.version;
  const unknown = [...applied].filter((v) => v > newest);
  if (unknown.length > 0) {
    throw new Error(`the database has schema version ${Math.max(...unknown)}, newer than this daemon knows (${newest}); upgrade hypervisord`);
  }
  const record = db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)");
  for (const migration of MIGRATIONS) {
    if (applied.has(migration.version)) continue;
    db.transaction(() => {
      db.exec(migration.sql);
      record.run(migration.version, migration.name, Date.now());
    })();
  }
  return newest;
}
