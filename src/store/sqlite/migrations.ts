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
  {
    version: 2,
    name: "schedules and their runs, profiles, webhooks and their delivery outbox",
    sql: `
      CREATE TABLE schedules (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        cron TEXT NOT NULL,
        time_zone TEXT NOT NULL,
        job_template TEXT NOT NULL,   -- JSON JobDefinition without its password
        secrets TEXT,                 -- the password, apart (as in jobs)
        enabled INTEGER NOT NULL,
        tags TEXT NOT NULL,           -- JSON object
        overlap_policy TEXT NOT NULL,
        missed_run_policy TEXT NOT NULL,
        create_time INTEGER NOT NULL,
        update_time INTEGER NOT NULL,
        next_run_time INTEGER,
        last_run_time INTEGER,
        run_count INTEGER NOT NULL DEFAULT 0
      );

      -- A run's state and duration are its job's (joined), never copied.
      CREATE TABLE schedule_runs (
        pk INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        schedule_id TEXT NOT NULL,
        job_id TEXT,
        trigger TEXT NOT NULL,
        scheduled_time INTEGER NOT NULL,
        run_time INTEGER NOT NULL,
        skipped_reason TEXT
      );
      CREATE INDEX schedule_runs_schedule ON schedule_runs (schedule_id, pk);
      CREATE INDEX schedule_runs_job ON schedule_runs (job_id) WHERE job_id IS NOT NULL;

      CREATE TABLE profiles (
        name TEXT PRIMARY KEY,
        description TEXT NOT NULL,
        settings TEXT NOT NULL,       -- JSON ProfileSettings
        create_time INTEGER NOT NULL,
        update_time INTEGER NOT NULL
      );

      CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        events TEXT NOT NULL,         -- JSON array
        headers TEXT NOT NULL,        -- JSON object
        secret TEXT NOT NULL,
        timeout_ms INTEGER NOT NULL,
        max_attempts INTEGER NOT NULL,
        enabled INTEGER NOT NULL,
        source TEXT NOT NULL,         -- 'api' | 'config'
        create_time INTEGER NOT NULL,
        update_time INTEGER NOT NULL
      );

      -- The outbox: one row per (event, webhook), written in the transaction of the change it announces.
      CREATE TABLE webhook_deliveries (
        pk INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,      -- the webhook-id header, stable across attempts
        webhook_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        payload TEXT NOT NULL,        -- the exact JSON body
        state TEXT NOT NULL,          -- 'pending' | 'delivered' | 'failed'
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_time INTEGER,    -- while pending
        create_time INTEGER NOT NULL
      );
      CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_time) WHERE state = 'pending';
      CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, pk);

      CREATE TABLE webhook_attempts (
        pk INTEGER PRIMARY KEY,
        delivery_pk INTEGER NOT NULL REFERENCES webhook_deliveries (pk) ON DELETE CASCADE,
        time INTEGER NOT NULL,
        status_code INTEGER NOT NULL,
        latency_ms REAL NOT NULL,
        error TEXT NOT NULL
      );
      CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_pk, pk);
    `,
  },
  {
    version: 3,
    name: "API keys (hashed) and the audit log",
    sql: `
      CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,           -- 'admin' | 'operator' | 'viewer'
        key_hash TEXT NOT NULL UNIQUE, -- hex SHA-256 of the key; the key itself is never stored
        prefix TEXT NOT NULL,
        source TEXT NOT NULL,         -- 'api' | 'config'
        create_time INTEGER NOT NULL,
        last_used_time INTEGER,
        expire_time INTEGER,
        revoke_time INTEGER
      );

      CREATE TABLE audit_events (
        id INTEGER PRIMARY KEY,
        time INTEGER NOT NULL,
        principal TEXT NOT NULL,
        role TEXT NOT NULL,
        method TEXT NOT NULL,
        transport TEXT NOT NULL,
        peer TEXT NOT NULL,
        code TEXT NOT NULL,
        resource TEXT NOT NULL,
        request_json TEXT NOT NULL,   -- without secrets
        duration_ms REAL NOT NULL
      );
      CREATE INDEX audit_events_time ON audit_events (time);
      CREATE INDEX audit_events_method ON audit_events (method, id);
      CREATE INDEX audit_events_principal ON audit_events (principal, id);
    `,
  },
  {
    version: 4,
    name: "batches: the child jobs of a definition with a VM selector",
    sql: `
      CREATE TABLE batches (
        pk INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        request_id TEXT UNIQUE,
        name TEXT NOT NULL,
        definition TEXT NOT NULL,     -- JSON JobDefinition with vm_selector, without its password
        max_parallel INTEGER NOT NULL DEFAULT 0,
        schedule_id TEXT,
        cancel_reason TEXT,           -- set by CancelBatch
        state TEXT NOT NULL DEFAULT 'running',  -- the final state, written with the last child's final transition
        create_time INTEGER NOT NULL,
        end_time INTEGER              -- set when every child job has ended
      );
      CREATE INDEX batches_schedule ON batches (schedule_id, pk) WHERE schedule_id IS NOT NULL;
      CREATE INDEX batches_state ON batches (state, pk);

      ALTER TABLE jobs ADD COLUMN batch_id TEXT;
      ALTER TABLE jobs ADD COLUMN batch_index INTEGER;  -- the VM's place in the batch (resolution order)
      CREATE INDEX jobs_batch ON jobs (batch_id, state) WHERE batch_id IS NOT NULL;
    `,
  },
  {
    version: 5,
    name: "what a job still holds on a hypervisor (a snapshot whose removal is pending)",
    sql: `
      ALTER TABLE jobs ADD COLUMN pending_cleanup TEXT;
    `,
  },
  {
    version: 6,
    name: "schedule retention: keep_last, the batch of a run, and the export directories runs wrote",
    sql: `
      ALTER TABLE schedules ADD COLUMN keep_last INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE schedule_runs ADD COLUMN batch_id TEXT;

      -- One row per job a schedule's run created: the directory it writes (and nothing else is ever deleted).
      CREATE TABLE schedule_exports (
        pk INTEGER PRIMARY KEY,
        schedule_id TEXT NOT NULL,
        vm_key TEXT NOT NULL,         -- the VM's directory name under the schedule's output_dir
        job_id TEXT NOT NULL UNIQUE,
        dir TEXT NOT NULL,            -- <output_dir>/<vm>/<run time>
        run_time INTEGER NOT NULL,
        completed_time INTEGER,       -- set when its job completed
        deleted_time INTEGER          -- set when retention removed it
      );
      CREATE INDEX schedule_exports_vm ON schedule_exports (schedule_id, vm_key, run_time);
      CREATE INDEX schedule_exports_dir ON schedule_exports (dir);  -- a new run's directory never reuses a recorded one
    `,
  },
  {
    version: 7,
    name: "a job's attempts (start, end, outcome of each run), kept with the transitions, backfilled from them",
    // JSON array of JobAttempt ({attempt, startTime, endTime?, outcome?, reason?}): ListJobs and the stream read it
    // with the row instead of the history. Each move to running starts one; the next move from running ends it.
    sql: `
      ALTER TABLE jobs ADD COLUMN attempts TEXT NOT NULL DEFAULT '[]';

      WITH starts AS (
        SELECT job_id, seq, time, row_number() OVER (PARTITION BY job_id ORDER BY seq) AS n
        FROM job_transitions WHERE to_state = 'running'
      ), attempts AS (
        SELECT s.job_id, s.n, json_patch(json_object('attempt', s.n, 'startTime', s.time), coalesce((
          SELECT json_object('endTime', e.time, 'outcome', e.to_state, 'reason', e.reason) FROM job_transitions AS e
          WHERE e.job_id = s.job_id AND e.seq > s.seq AND e.from_state = 'running' ORDER BY e.seq LIMIT 1), '{}')) AS a
        FROM starts AS s
      )
      UPDATE jobs SET attempts = (SELECT json_group_array(json(a.a) ORDER BY a.n) FROM attempts AS a WHERE a.job_id = jobs.id)
      WHERE id IN (SELECT job_id FROM starts);
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
