import { attemptsAfter, EMPTY_PROGRESS, JOB_STATES, type Job, type JobAttempt, type JobProgress, type JobState, type JobTransition } from "../../domain/job.ts";
import { AlreadyExistsError } from "../../errors.ts";
import type { InsertResult, JobFilter, JobPage, NewJob, TransitionInput } from "../store.ts";
import type { SecretBox } from "../secret-box.ts";
import { sameDefinition } from "../sqlite/job-queries.ts";
import { priorityRank, splitSecrets, transitionFromRow, type TransitionRow } from "../sqlite/job-rows.ts";
import { createGroupInsert, insertsInBulk, type CreatedJob } from "./insert-jobs.ts";
import { pgJobRowReader, TARGET_PROVIDERS, targetHost, type PgJobRow } from "./job-rows.ts";
import { nextUpdateSeq, notifyUpdates, savepoint, type Sql } from "./sql.ts";

/**
 * Work done inside the transaction of a job change, so that it commits or rolls back with it: the schedule
 * run a job was created for, the webhook events (the outbox) announcing the change, the batch's bookkeeping.
 */
export interface JobHooks {
  afterInsert?(db: Sql, job: Job, input: NewJob, transition: JobTransition): Promise<void>;
  afterTransition?(db: Sql, job: Job, transition: JobTransition): Promise<void>;
  /**
   * The jobs a bulk group commit created (none with a schedule run or a batch), at once: their webhook events
   * in a few statements instead of a few per job. Without it, afterInsert runs for each.
   */
  afterInsertGroup?(db: Sql, created: readonly CreatedJob[]): Promise<void>;
}

/** What claiming needs to know about the cluster this daemon is part of. */
export interface JobClusterOptions {
  /** Written to the jobs this daemon claims (node_id), and checked when it moves them on (fencing). */
  nodeId: string;
  /** A claimed job's lease lasts this long unless renewed. */
  leaseMs: number;
  /** Most jobs running at once on one target host of this provider ("vsphere", "azure"), cluster-wide; undefined: no cap. */
  hostCap(provider: string): number | undefined;
}

/**
 * The database's clock in ms: leases are set here and renewed and expired by the cluster queries on this one
 * clock, so that a node whose clock is behind does not hand out leases that look expired to the others.
 */
const DB_NOW = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/** Two-key advisory lock classes (a space apart from sql.ts's one-key locks): a target host's and a batch's claims. */
const HOST_CLAIM_LOCK = 0x68760101;
const BATCH_CLAIM_LOCK = 0x68760102;

/** One claim attempt: a job taken, none runnable, or a candidate skipped because its host or batch is at its cap. */
export type ClaimAttempt = { job: Job; transition: JobTransition } | { skip: number } | undefined;

/** Queries on jobs, their labels and their transitions; each takes the executor first (the pool or a transaction's client). */
export function createJobQueries(hooks: JobHooks, secretBox: SecretBox, cluster: JobClusterOptions) {
  const jobFromRow = pgJobRowReader(secretBox);

  /** Records a transition under the next cluster-wide seq (taken last: the seq lock is held until commit) and announces it. */
  async function recordTransition(db: Sql, t: Omit<JobTransition, "seq">): Promise<JobTransition> {
    const seq = await nextUpdateSeq(db);
    await db.query(`INSERT INTO job_transitions (seq, job_id, from_state, to_state, reason, actor, time)
      VALUES ($1, $2, $3, $4, $5, $6, $7)`, [seq, t.jobId, t.fromState ?? null, t.toState, t.reason, t.actor, t.time]);
    await notifyUpdates(db);
    return { ...t, seq };
  }

  async function get(db: Sql, id: string): Promise<Job | undefined> {
    const { rows } = await db.query<PgJobRow>("SELECT * FROM jobs WHERE id = $1", [id]);
    return rows[0] && jobFromRow(rows[0]);
  }

  /**
   * One job (run it in a savepoint or a transaction of its own). A request_id already used returns that job;
   * ON CONFLICT waits for a concurrent insert of the same request_id to commit instead of failing on it.
   */
  async function insertOne(db: Sql, input: NewJob): Promise<{ job: Job; created: boolean; transition?: JobTransition }> {
    const { definition } = input;
    const split = splitSecrets(definition, secretBox);
    const inserted = await db.query<{ pk: number }>(`INSERT INTO jobs
      (id, request_id, name, provider, state, priority, definition, secrets, max_attempts, schedule_id, batch_id, batch_index, create_time, target_host)
      VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8, $9, $10, $11, $12, $13)
      ON CONFLICT (request_id) WHERE request_id IS NOT NULL DO NOTHING RETURNING pk`, [
      input.id, definition.requestId ?? null, definition.name, definition.provider, priorityRank(definition), split.definition,
      split.secrets, input.maxAttempts, input.scheduleId ?? null, input.batchId ?? null, input.batchIndex ?? null, input.createTime,
      targetHost(definition),
    ]);
    const pk = inserted.rows[0]?.pk;
    if (pk === undefined) {
      const { rows } = await db.query<PgJobRow>("SELECT * FROM jobs WHERE request_id = $1", [definition.requestId]);
      if (!rows[0]) throw new Error(`inserting job ${input.id}: request_id "${definition.requestId}" conflicted with a job that is gone`);
      const job = jobFromRow(rows[0]);
      if (!sameDefinition(job, input)) {
        throw new AlreadyExistsError(`request_id "${definition.requestId}" was already used for job ${job.id} with a different definition`);
      }
      return { job, created: false };
    }
    const labels = Object.entries(definition.labels);
    if (labels.length > 0) {
      await db.query("INSERT INTO job_labels (key, value, job_pk) SELECT k, v, $3 FROM unnest($1::text[], $2::text[]) AS l (k, v)",
        [labels.map(([k]) => k), labels.map(([, v]) => v), pk]);
    }
    const transition = await recordTransition(db, {
      jobId: input.id, toState: "queued", reason: "submitted", actor: input.actor, time: input.createTime,
    });
    const job: Job = {
      id: input.id, definition, state: "queued", progress: { ...EMPTY_PROGRESS }, attempt: 0,
      maxAttempts: input.maxAttempts, createTime: input.createTime, scheduleId: input.scheduleId, attempts: [],
      ...(input.batchId ? { batchId: input.batchId } : {}),
    };
    await hooks.afterInsert?.(db, job, input, transition);
    return { job, created: true, transition };
  }

  const insertGroup = createGroupInsert({
    secretBox,
    jobFromRow,
    afterInsertGroup: hooks.afterInsertGroup ?? (async (db, created) => {
      for (const { job, input, transition } of created) await hooks.afterInsert?.(db, job, input, transition);
    }),
  });

  /**
   * Group commit (run it in a transaction). The common group (SubmitJob calls: no schedule run, no batch child)
   * goes in bulk, in a savepoint; when that hits a database error, or for other groups, each job goes in a
   * savepoint of its own, so that a failing one rolls back alone.
   */
  async function insertMany(db: Sql, inputs: readonly NewJob[]): Promise<InsertResult[]> {
    if (insertsInBulk(inputs)) {
      try {
        return await savepoint(db, () => insertGroup(db, inputs));
      } catch {
        // The bulk statements cannot tell which item failed (a job id taken, a value the database refuses):
        // rolled back to the savepoint, the group goes again item by item, where that item's error is its own.
      }
    }
    const results: InsertResult[] = [];
    for (const input of inputs) {
      try {
        results.push({ ok: true, ...await savepoint(db, () => insertOne(db, input)) });
      } catch (error) {
        results.push({ ok: false, error });
      }
    }
    return results;
  }

  /**
   * One attempt at claiming (in a transaction of its own, so that a skipped candidate's locks go at once): the next
   * runnable queued job, by priority then age, that no other daemon is claiming (SKIP LOCKED). The SQL leaves out
   * batches at max_parallel and hosts at their cap as last committed; under the batch's and the host's advisory
   * locks the counts are taken again, since another daemon may have claimed one since.
   */
  async function claimAttempt(db: Sql, now: number, skipped: readonly number[]): Promise<ClaimAttempt> {
    const caps = TARGET_PROVIDERS.map((provider) => cluster.hostCap(provider) ?? null);
    // The hosts and batches at their caps are found once from the running jobs (a few), not once per queued row.
    const { rows } = await db.query<PgJobRow & { max_parallel: number | null }>(`WITH busy_hosts AS (
        SELECT target_host FROM jobs WHERE state = 'running' AND target_host IS NOT NULL GROUP BY target_host
        HAVING count(*) >= ($3::int[])[array_position($4::text[], split_part(target_host, ':', 1))]
      ), full_batches AS (
        SELECT r.batch_id FROM jobs AS r JOIN batches AS b ON b.id = r.batch_id
        WHERE r.state = 'running' AND b.max_parallel > 0 GROUP BY r.batch_id, b.max_parallel HAVING count(*) >= b.max_parallel
      )
      SELECT j.*, b.max_parallel FROM jobs AS j LEFT JOIN batches AS b ON b.id = j.batch_id
      WHERE j.state = 'queued' AND (j.next_attempt_time IS NULL OR j.next_attempt_time <= $1) AND NOT (j.pk = ANY ($2::bigint[]))
        AND (j.batch_id IS NULL OR j.batch_id NOT IN (SELECT batch_id FROM full_batches))
        AND (j.target_host IS NULL OR j.target_host NOT IN (SELECT target_host FROM busy_hosts))
      ORDER BY j.priority DESC, j.pk ASC LIMIT 1 FOR UPDATE OF j SKIP LOCKED`, [now, skipped, caps, TARGET_PROVIDERS]);
    const row = rows[0];
    if (!row) return undefined;
    // Always the batch's lock before the host's: two claimers never wait for each other in a cycle.
    if (row.batch_id && row.max_parallel && row.max_parallel > 0) {
      await db.query("SELECT pg_advisory_xact_lock($1, hashtext($2))", [BATCH_CLAIM_LOCK, row.batch_id]);
      if (await countRunning(db, "batch_id", row.batch_id) >= row.max_parallel) return { skip: row.pk };
    }
    const cap = row.target_host ? cluster.hostCap(row.target_host.slice(0, row.target_host.indexOf(":"))) : undefined;
    if (row.target_host && cap !== undefined) {
      await db.query("SELECT pg_advisory_xact_lock($1, hashtext($2))", [HOST_CLAIM_LOCK, row.target_host]);
      if (await countRunning(db, "target_host", row.target_host) >= cap) return { skip: row.pk };
    }
    const resumed = row.resume === 1 && row.attempt > 0;
    const t: Omit<JobTransition, "seq"> = {
      jobId: row.id, fromState: "queued", toState: "running",
      reason: resumed ? "resumed from checkpoint" : row.attempt > 0 ? `retry attempt ${row.attempt + 1}` : "started",
      actor: "engine", time: now,
    };
    const updated = await db.query<PgJobRow>(`UPDATE jobs SET state = 'running',
        attempt = CASE WHEN resume = 1 AND attempt > 0 THEN attempt ELSE attempt + 1 END,
        resume = 0, start_time = $2, next_attempt_time = NULL, error = NULL, attempts = $3, node_id = $4, lease_expires = ${DB_NOW} + $5
      WHERE pk = $1 RETURNING *`, [
      row.pk, now, JSON.stringify(attemptsAfter(JSON.parse(row.attempts) as JobAttempt[], { ...t, seq: 0 })), cluster.nodeId, cluster.leaseMs,
    ]);
    const transition = await recordTransition(db, t);
    const job = jobFromRow(updated.rows[0]!);
    await hooks.afterTransition?.(db, job, transition);
    return { job, transition };
  }

  async function countRunning(db: Sql, column: "batch_id" | "target_host", value: string): Promise<number> {
    const { rows } = await db.query<{ n: number }>(`SELECT count(*) AS n FROM jobs WHERE ${column} = $1 AND state = 'running'`, [value]);
    return rows[0]!.n;
  }

  /**
   * Run it in a transaction. With input.node, a running job moves only while that node holds it (node_id): a node
   * whose lease expired and whose job was requeued or taken by another must not end it. Leaving running ends the lease.
   */
  async function transition(db: Sql, input: TransitionInput): Promise<{ job: Job; transition: JobTransition } | undefined> {
    const { rows } = await db.query<PgJobRow>("SELECT * FROM jobs WHERE id = $1 FOR UPDATE", [input.jobId]);
    const row = rows[0];
    if (!row || !input.from.includes(row.state as JobState)) return undefined;
    if (input.node !== undefined && row.state === "running" && row.node_id !== input.node) return undefined;
    const values: unknown[] = [row.pk, input.to];
    const sets = ["state = $2"];
    const set = (column: string, value: unknown) => sets.push(`${column} = $${values.push(value)}`);
    if (input.error !== undefined) set("error", input.error && JSON.stringify(input.error));
    if (input.result !== undefined) set("result", JSON.stringify(input.result));
    if (input.progress !== undefined) set("progress", JSON.stringify(input.progress));
    if (input.endTime !== undefined) set("end_time", input.endTime);
    if (input.nextAttemptTime !== undefined) set("next_attempt_time", input.nextAttemptTime);
    if (input.resume !== undefined) set("resume", input.resume ? 1 : 0);
    if (input.checkpoint !== undefined) set("checkpoint", input.checkpoint == null ? null : JSON.stringify(input.checkpoint));
    else if (input.clearCheckpoint) set("checkpoint", null);
    if (input.pendingCleanup !== undefined) set("pending_cleanup", input.pendingCleanup);
    const t: Omit<JobTransition, "seq"> = {
      jobId: input.jobId, fromState: row.state as JobState, toState: input.to, reason: input.reason, actor: input.actor, time: input.time,
    };
    if (t.fromState === "running" || t.toState === "running") {
      set("attempts", JSON.stringify(attemptsAfter(JSON.parse(row.attempts) as JobAttempt[], { ...t, seq: 0 })));
    }
    if (t.toState === "running") {
      set("node_id", input.node ?? cluster.nodeId);
      sets.push(`lease_expires = ${DB_NOW} + $${values.push(cluster.leaseMs)}`);
    } else if (t.fromState === "running") {
      set("lease_expires", null);
    }
    const updated = await db.query<PgJobRow>(`UPDATE jobs SET ${sets.join(", ")} WHERE pk = $1 RETURNING *`, values);
    const recorded = await recordTransition(db, t);
    const job = jobFromRow(updated.rows[0]!);
    await hooks.afterTransition?.(db, job, recorded);
    return { job, transition: recorded };
  }

  async function list(db: Sql, filter: JobFilter): Promise<JobPage> {
    const where: string[] = [];
    const values: unknown[] = [];
    const param = (value: unknown) => `$${values.push(value)}`;
    if (filter.states && filter.states.length > 0) where.push(`state = ANY (${param(filter.states)}::text[])`);
    if (filter.provider) where.push(`provider = ${param(filter.provider)}`);
    if (filter.scheduleId) where.push(`schedule_id = ${param(filter.scheduleId)}`);
    if (filter.batchId) where.push(`batch_id = ${param(filter.batchId)}`);
    for (const [key, value] of Object.entries(filter.labels ?? {}).sort(([a], [b]) => a.localeCompare(b))) {
      where.push(`pk IN (SELECT job_pk FROM job_labels WHERE key = ${param(key)} AND value = ${param(value)})`);
    }
    if (filter.text) {
      // ILIKE ignores case; the pattern's own % _ and \ are escaped (backslash is ILIKE's escape) so that they match themselves.
      const pattern = param(`%${filter.text.replace(/[\\%_]/g, "\\$&")}%`);
      where.push(`(id ILIKE ${pattern} OR name ILIKE ${pattern} OR definition::json ->> 'vm' ILIKE ${pattern}
        OR definition::json ->> 'outputDir' ILIKE ${pattern} OR pk IN (SELECT job_pk FROM job_labels WHERE value ILIKE ${pattern}))`);
    }
    const whereSql = where.length > 0 ? `WHERE ${where.join(" AND ")}` : "";
    const total = (await db.query<{ n: number }>(`SELECT count(*) AS n FROM jobs ${whereSql}`, values)).rows[0]!.n;
    if (filter.before !== undefined) where.push(`pk < ${param(filter.before)}`);
    const pageSql = where.length > 0 ? `WHERE ${where.join(" AND ")}` : "";
    const { rows } = await db.query<PgJobRow>(`SELECT * FROM jobs ${pageSql} ORDER BY pk DESC LIMIT ${param(filter.limit + 1)}`, values);
    const more = rows.length > filter.limit;
    const page = more ? rows.slice(0, filter.limit) : rows;
    return { jobs: page.map(jobFromRow), nextCursor: more ? page[page.length - 1]!.pk : undefined, total };
  }

  async function transitionsAfter(db: Sql, seq: number, jobIds: readonly string[] | undefined, limit: number): Promise<JobTransition[]> {
    const { rows } = !jobIds || jobIds.length === 0
      ? await db.query<TransitionRow>("SELECT * FROM job_transitions WHERE seq > $1 ORDER BY seq LIMIT $2", [seq, limit])
      : await db.query<TransitionRow>("SELECT * FROM job_transitions WHERE seq > $1 AND job_id = ANY ($2::text[]) ORDER BY seq LIMIT $3",
        [seq, jobIds, limit]);
    return rows.map(transitionFromRow);
  }

  const jobs = async (db: Sql, sql: string, values: readonly unknown[] = []) => (await db.query<PgJobRow>(sql, values)).rows.map(jobFromRow);

  return {
    insertMany,
    insertOne,
    get,
    /** The jobs of these ids that exist. */
    async jobsById(db: Sql, ids: readonly string[]): Promise<Map<string, Job>> {
      const found = ids.length === 0 ? [] : await jobs(db, "SELECT * FROM jobs WHERE id = ANY ($1::text[])", [ids]);
      return new Map(found.map((job) => [job.id, job]));
    },
    list,
    claimAttempt,
    transition,
    transitionsAfter,
    inState: (db: Sql, state: JobState) => jobs(db, "SELECT * FROM jobs WHERE state = $1 ORDER BY pk", [state]),
    endedWithCheckpoint: (db: Sql) =>
      jobs(db, "SELECT * FROM jobs WHERE state IN ('completed', 'failed', 'cancelled') AND checkpoint IS NOT NULL ORDER BY pk"),
    async setPendingCleanup(db: Sql, id: string, text: string | null): Promise<void> {
      await db.query("UPDATE jobs SET pending_cleanup = $1 WHERE id = $2", [text, id]);
    },
    async countPendingCleanup(db: Sql): Promise<number> {
      return (await db.query<{ n: number }>("SELECT count(*) AS n FROM jobs WHERE pending_cleanup IS NOT NULL")).rows[0]!.n;
    },
    async countByState(db: Sql): Promise<Record<JobState, number>> {
      const counts = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>;
      const { rows } = await db.query<{ state: string; n: number }>("SELECT state, count(*) AS n FROM jobs GROUP BY state");
      for (const { state, n } of rows) counts[state as JobState] = n;
      return counts;
    },
    // Fencing: while a job runs, only the node that holds it writes its progress and checkpoint (a node that lost
    // its lease may still have writes in flight when another node resumes the job).
    async saveProgress(db: Sql, id: string, progress: JobProgress): Promise<void> {
      await db.query("UPDATE jobs SET progress = $1 WHERE id = $2 AND (state <> 'running' OR node_id = $3)", [JSON.stringify(progress), id, cluster.nodeId]);
    },
    async loadCheckpoint(db: Sql, id: string): Promise<unknown> {
      const { rows } = await db.query<{ checkpoint: string | null }>("SELECT checkpoint FROM jobs WHERE id = $1", [id]);
      return rows[0]?.checkpoint ? JSON.parse(rows[0].checkpoint) : undefined;
    },
    async saveCheckpoint(db: Sql, id: string, value: unknown): Promise<void> {
      await db.query("UPDATE jobs SET checkpoint = $1 WHERE id = $2 AND (state <> 'running' OR node_id = $3)",
        [value == null ? null : JSON.stringify(value), id, cluster.nodeId]);
    },
    async nextAttemptTime(db: Sql): Promise<number | undefined> {
      const { rows } = await db.query<{ t: number | null }>(
        "SELECT min(next_attempt_time) AS t FROM jobs WHERE state = 'queued' AND next_attempt_time IS NOT NULL");
      return rows[0]?.t ?? undefined;
    },
    history: async (db: Sql, jobId: string) =>
      (await db.query<TransitionRow>("SELECT * FROM job_transitions WHERE job_id = $1 ORDER BY seq", [jobId])).rows.map(transitionFromRow),
    async maxTransitionSeq(db: Sql): Promise<number> {
      return (await db.query<{ s: number | null }>("SELECT max(seq) AS s FROM job_transitions")).rows[0]?.s ?? 0;
    },
    async getMeta(db: Sql, key: string): Promise<string | undefined> {
      return (await db.query<{ value: string }>("SELECT value FROM meta WHERE key = $1", [key])).rows[0]?.value;
    },
    async setMeta(db: Sql, key: string, value: string): Promise<void> {
      await db.query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", [key, value]);
    },
  };
}

export type JobQueries = ReturnType<typeof createJobQueries>;

/**
 * SQLite's final jobs, job_labels, job_transitions, job_logs and meta (same columns, so that `store copy` copies
 * them column by column), plus what a cluster needs: the node running a job and its lease, the host whose cap
 * applies, the cluster-wide update sequence and the shared log of progress and batch updates.
 */
export const JOBS_SCHEMA = `
  CREATE TABLE jobs (
    pk BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
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
    create_time BIGINT NOT NULL,
    start_time BIGINT,
    end_time BIGINT,
    next_attempt_time BIGINT,
    log_bytes BIGINT NOT NULL DEFAULT 0,
    log_truncated INTEGER NOT NULL DEFAULT 0,
    batch_id TEXT,
    batch_index INTEGER,
    pending_cleanup TEXT,
    attempts TEXT NOT NULL DEFAULT '[]',
    node_id TEXT,                 -- the daemon that runs it, or ran it last
    lease_expires BIGINT,         -- ms; set while running, renewed by its node
    target_host TEXT              -- 'vsphere:<host>' / 'azure:<subscription>' whose cap on running jobs applies
  );
  -- The queue order; also serves every lookup by state.
  CREATE INDEX jobs_queue ON jobs (state, priority DESC, pk);
  CREATE INDEX jobs_create_time ON jobs (create_time);
  CREATE UNIQUE INDEX jobs_request_id ON jobs (request_id) WHERE request_id IS NOT NULL;
  CREATE INDEX jobs_schedule ON jobs (schedule_id, pk) WHERE schedule_id IS NOT NULL;
  CREATE INDEX jobs_batch ON jobs (batch_id, state) WHERE batch_id IS NOT NULL;
  -- Expired leases.
  CREATE INDEX jobs_lease ON jobs (state, lease_expires);
  -- Running jobs per host (the claim's cap).
  CREATE INDEX jobs_target_host ON jobs (target_host, state) WHERE target_host IS NOT NULL;

  CREATE TABLE job_labels (
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    job_pk BIGINT NOT NULL REFERENCES jobs (pk) ON DELETE CASCADE,
    PRIMARY KEY (key, value, job_pk)
  );

  -- Every update (transitions here, progress and batch updates in job_updates) takes its seq from here.
  CREATE SEQUENCE update_seq;

  CREATE TABLE job_transitions (
    seq BIGINT PRIMARY KEY,
    job_id TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    time BIGINT NOT NULL
  );
  CREATE INDEX job_transitions_job ON job_transitions (job_id, seq);

  -- Progress and batch updates of the cluster's stream (JSON payload).
  CREATE TABLE job_updates (
    seq BIGINT PRIMARY KEY,
    job_id TEXT NOT NULL,
    batch_id TEXT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    time DOUBLE PRECISION NOT NULL
  );
  CREATE INDEX job_updates_time ON job_updates (time);

  CREATE TABLE job_logs (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    job_id TEXT NOT NULL,
    time BIGINT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    fields TEXT NOT NULL,
    bytes INTEGER NOT NULL
  );
  CREATE INDEX job_logs_job ON job_logs (job_id, id);

  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
`;
