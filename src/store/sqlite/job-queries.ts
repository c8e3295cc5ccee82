import type { Database, Statement } from "better-sqlite3";
import { attemptsAfter, EMPTY_PROGRESS, JOB_STATES, type Job, type JobAttempt, type JobProgress, type JobState, type JobTransition } from "../../domain/job.ts";
import { AlreadyExistsError } from "../../errors.ts";
import type { InsertResult, JobFilter, JobPage, NewJob, TransitionInput } from "../store.ts";
import type { SecretBox } from "../secret-box.ts";
import { jobRowReader, priorityRank, splitSecrets, transitionFromRow, type JobRow, type TransitionRow } from "./job-rows.ts";

/**
 * Work done inside the transaction of a job change, so that it commits or rolls back with it: the
 * schedule run a job was created for, and the webhook events (the outbox) announcing the change.
 */
export interface JobHooks {
  afterInsert?(job: Job, input: NewJob, transition: JobTransition): void;
  afterTransition?(job: Job, transition: JobTransition): void;
}

/** Queries on jobs, their labels and their transitions; every statement prepared once. */
export function createJobQueries(db: Database, hooks: JobHooks, secretBox: SecretBox) {
  const jobFromRow = jobRowReader(secretBox);
  const byId = db.prepare<[string], JobRow>("SELECT * FROM jobs WHERE id = ?");
  const byRequestId = db.prepare<[string], JobRow>("SELECT * FROM jobs WHERE request_id = ?");
  const insertJob = db.prepare(`INSERT INTO jobs
    (id, request_id, name, provider, state, priority, definition, secrets, max_attempts, schedule_id, batch_id, batch_index, create_time)
    VALUES (@id, @request_id, @name, @provider, 'queued', @priority, @definition, @secrets, @max_attempts, @schedule_id, @batch_id, @batch_index, @create_time)`);
  const insertLabel = db.prepare("INSERT INTO job_labels (key, value, job_pk) VALUES (?, ?, ?)");
  const insertTransition = db.prepare(`INSERT INTO job_transitions (seq, job_id, from_state, to_state, reason, actor, time)
    VALUES (@seq, @job_id, @from_state, @to_state, @reason, @actor, @time)`);
  // A batch's child waits while its batch already runs max_parallel jobs (counted on the jobs_batch index).
  const nextQueued = db.prepare<[number], JobRow>(`SELECT * FROM jobs AS j
    WHERE state = 'queued' AND (next_attempt_time IS NULL OR next_attempt_time <= ?)
      AND (batch_id IS NULL OR NOT EXISTS (SELECT 1 FROM batches AS b WHERE b.id = j.batch_id AND b.max_parallel > 0
        AND b.max_parallel <= (SELECT count(*) FROM jobs AS r WHERE r.batch_id = j.batch_id AND r.state = 'running')))
    ORDER BY priority DESC, pk ASC LIMIT 1`);
  const markRunning = db.prepare(`UPDATE jobs SET state = 'running',
      attempt = CASE WHEN resume = 1 AND attempt > 0 THEN attempt ELSE attempt + 1 END,
      resume = 0, start_time = @time, next_attempt_time = NULL, error = NULL, attempts = @attempts
    WHERE id = @id AND state = 'queued'`);
  const inState = db.prepare<[string], JobRow>("SELECT * FROM jobs WHERE state = ? ORDER BY pk");
  const endedWithCheckpoint = db.prepare<[], JobRow>("SELECT * FROM jobs WHERE state IN ('completed', 'failed', 'cancelled') AND checkpoint IS NOT NULL ORDER BY pk");
  const updatePendingCleanup = db.prepare("UPDATE jobs SET pending_cleanup = ? WHERE id = ?");
  const countPending = db.prepare<[], { n: number }>("SELECT count(*) AS n FROM jobs WHERE pending_cleanup IS NOT NULL");
  const countStates = db.prepare<[], { state: string; n: number }>("SELECT state, count(*) AS n FROM jobs GROUP BY state");
  const updateProgress = db.prepare("UPDATE jobs SET progress = ? WHERE id = ?");
  const getCheckpoint = db.prepare<[string], { checkpoint: string | null }>("SELECT checkpoint FROM jobs WHERE id = ?");
  const updateCheckpoint = db.prepare("UPDATE jobs SET checkpoint = ? WHERE id = ?");
  const earliestAttempt = db.prepare<[], { t: number | null }>(
    "SELECT min(next_attempt_time) AS t FROM jobs WHERE state = 'queued' AND next_attempt_time IS NOT NULL");
  const historyOf = db.prepare<[string], TransitionRow>("SELECT * FROM job_transitions WHERE job_id = ? ORDER BY seq");
  const allAfter = db.prepare<[number, number], TransitionRow>("SELECT * FROM job_transitions WHERE seq > ? ORDER BY seq LIMIT ?");
  const maxSeq = db.prepare<[], { s: number | null }>("SELECT max(seq) AS s FROM job_transitions");
  const dynamic = new Map<string, Statement>();

  /** Statements whose shape depends on the filter; the values are always bound. */
  function prepared(sql: string): Statement {
    let statement = dynamic.get(sql);
    if (!statement) {
      statement = db.prepare(sql);
      dynamic.set(sql, statement);
    }
    return statement;
  }

  function recordTransition(t: JobTransition): JobTransition {
    insertTransition.run({ seq: t.seq, job_id: t.jobId, from_state: t.fromState ?? null, to_state: t.toState, reason: t.reason, actor: t.actor, time: t.time });
    return t;
  }

  function get(id: string): Job | undefined {
    const row = byId.get(id);
    return row && jobFromRow(row);
  }

  /** One job; a savepoint inside insertMany's transaction, so that a failing item rolls back alone. */
  const insertOne = db.transaction((input: NewJob): { job: Job; created: boolean; transition?: JobTransition } => {
    const { definition } = input;
    if (definition.requestId) {
      const existing = byRequestId.get(definition.requestId);
      if (existing) {
        const job = jobFromRow(existing);
        if (!sameDefinition(job, input)) {
          throw new AlreadyExistsError(`request_id "${definition.requestId}" was already used for job ${job.id} with a different definition`);
        }
        return { job, created: false };
      }
    }
    const split = splitSecrets(definition, secretBox);
    const info = insertJob.run({
      id: input.id,
      request_id: definition.requestId ?? null,
      name: definition.name,
      provider: definition.provider,
      priority: priorityRank(definition),
      definition: split.definition,
      secrets: split.secrets,
      max_attempts: input.maxAttempts,
      schedule_id: input.scheduleId ?? null,
      batch_id: input.batchId ?? null,
      batch_index: input.batchIndex ?? null,
      create_time: input.createTime,
    });
    for (const [key, value] of Object.entries(definition.labels)) insertLabel.run(key, value, info.lastInsertRowid);
    const transition = recordTransition({
      seq: input.nextSeq(), jobId: input.id, toState: "queued", reason: "submitted", actor: input.actor, time: input.createTime,
    });
    const job: Job = {
      id: input.id, definition, state: "queued", progress: { ...EMPTY_PROGRESS }, attempt: 0,
      maxAttempts: input.maxAttempts, createTime: input.createTime, scheduleId: input.scheduleId, attempts: [],
      ...(input.batchId ? { batchId: input.batchId } : {}),
    };
    hooks.afterInsert?.(job, input, transition);
    return { job, created: true, transition };
  });

  const insertMany = db.transaction((inputs: readonly NewJob[]): InsertResult[] =>
    inputs.map((input) => {
      try {
        return { ok: true, ...insertOne(input) };
      } catch (error) {
        return { ok: false, error };
      }
    }));

  const claim = db.transaction((now: number, nextSeq: () => number) => {
    const row = nextQueued.get(now);
    if (!row) return undefined;
    const resumed = row.resume === 1 && row.attempt > 0;
    const transition: JobTransition = {
      seq: nextSeq(), jobId: row.id, fromState: "queued", toState: "running",
      reason: resumed ? "resumed from checkpoint" : row.attempt > 0 ? `retry attempt ${row.attempt + 1}` : "started",
      actor: "engine", time: now,
    };
    markRunning.run({ id: row.id, time: now, attempts: JSON.stringify(attemptsAfter(JSON.parse(row.attempts) as JobAttempt[], transition)) });
    recordTransition(transition);
    const job = get(row.id)!;
    hooks.afterTransition?.(job, transition);
    return { job, transition };
  });

  const transition = db.transaction((input: TransitionInput) => {
    const row = byId.get(input.jobId);
    if (!row || !input.from.includes(row.state as JobState)) return undefined;
    const sets = ["state = @to"];
    const params: Record<string, unknown> = { id: input.jobId, to: input.to };
    const set = (column: string, value: unknown) => {
      sets.push(`${column} = @${column}`);
      params[column] = value;
    };
    if (input.error !== undefined) set("error", input.error && JSON.stringify(input.error));
    if (input.result !== undefined) set("result", JSON.stringify(input.result));
    if (input.progress !== undefined) set("progress", JSON.stringify(input.progress));
    if (input.endTime !== undefined) set("end_time", input.endTime);
    if (input.nextAttemptTime !== undefined) set("next_attempt_time", input.nextAttemptTime);
    if (input.resume !== undefined) set("resume", input.resume ? 1 : 0);
    if (input.clearCheckpoint) set("checkpoint", null);
    if (input.checkpoint !== undefined) set("checkpoint", input.checkpoint == null ? null : JSON.stringify(input.checkpoint));
    if (input.pendingCleanup !== undefined) set("pending_cleanup", input.pendingCleanup);
    const t: JobTransition = {
      seq: input.seq, jobId: input.jobId, fromState: row.state as JobState, toState: input.to,
      reason: input.reason, actor: input.actor, time: input.time,
    };
    if (t.fromState === "running" || t.toState === "running") set("attempts", JSON.stringify(attemptsAfter(JSON.parse(row.attempts) as JobAttempt[], t)));
    prepared(`UPDATE jobs SET ${sets.join(", ")} WHERE id = @id`).run(params);
    recordTransition(t);
    const job = get(input.jobId)!;
    hooks.afterTransition?.(job, t);
    return { job, transition: t };
  });

  function list(filter: JobFilter): JobPage {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.states && filter.states.length > 0) {
      where.push(`state IN (${filter.states.map(() => "?").join(", ")})`);
      params.push(...filter.states);
    }
    if (filter.provider) {
      where.push("provider = ?");
      params.push(filter.provider);
    }
    if (filter.scheduleId) {
      where.push("schedule_id = ?");
      params.push(filter.scheduleId);
    }
    if (filter.batchId) {
      where.push("batch_id = ?");
      params.push(filter.batchId);
    }
    for (const [key, value] of Object.entries(filter.labels ?? {}).sort(([a], [b]) => a.localeCompare(b))) {
      where.push("pk IN (SELECT job_pk FROM job_labels WHERE key = ? AND value = ?)");
      params.push(key, value);
    }
    if (filter.text) {
      // LIKE ignores ASCII case; the pattern's own % _ and \ are escaped so that they match themselves.
      const pattern = `%${filter.text.replace(/[\\%_]/g, "\\$&")}%`;
      where.push(`(id LIKE ? ESCAPE '\\' OR name LIKE ? ESCAPE '\\' OR json_extract(definition, '$.vm') LIKE ? ESCAPE '\\'
        OR json_extract(definition, '$.outputDir') LIKE ? ESCAPE '\\'
        OR pk IN (SELECT job_pk FROM job_labels WHERE value LIKE ? ESCAPE '\\'))`);
      params.push(pattern, pattern, pattern, pattern, pattern);
    }
    const whereSql = where.length > 0 ? `WHERE ${where.join(" AND ")}` : "";
    const total = (prepared(`SELECT count(*) AS n FROM jobs ${whereSql}`).get(...params) as { n: number }).n;
    const pageWhere = filter.before !== undefined ? [...where, "pk < ?"] : where;
    const pageParams = filter.before !== undefined ? [...params, filter.before] : params;
    const pageSql = pageWhere.length > 0 ? `WHERE ${pageWhere.join(" AND ")}` : "";
    const rows = prepared(`SELECT * FROM jobs ${pageSql} ORDER BY pk DESC LIMIT ?`).all(...pageParams, filter.limit + 1) as JobRow[];
    const more = rows.length > filter.limit;
    const page = more ? rows.slice(0, filter.limit) : rows;
    return { jobs: page.map(jobFromRow), nextCursor: more ? page[page.length - 1]!.pk : undefined, total };
  }

  function transitionsAfter(seq: number, jobIds: readonly string[] | undefined, limit: number): JobTransition[] {
    if (!jobIds || jobIds.length === 0) return allAfter.all(seq, limit).map(transitionFromRow);
    const sql = `SELECT * FROM job_transitions WHERE seq > ? AND job_id IN (${jobIds.map(() => "?").join(", ")}) ORDER BY seq LIMIT ?`;
    return (prepared(sql).all(seq, ...jobIds, limit) as TransitionRow[]).map(transitionFromRow);
  }

  return {
    insertMany,
    /** One job, for callers that insert jobs inside their own transaction (a batch's children). */
    insertOne,
    get,
    list,
    claim,
    transition,
    transitionsAfter,
    inState: (state: JobState) => inState.all(state).map(jobFromRow),
    endedWithCheckpoint: () => endedWithCheckpoint.all().map(jobFromRow),
    setPendingCleanup: (id: string, text: string | null) => void updatePendingCleanup.run(text, id),
    countPendingCleanup: () => countPending.get()?.n ?? 0,
    countByState() {
      const counts = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>;
      for (const { state, n } of countStates.all()) counts[state as JobState] = n;
      return counts;
    },
    saveProgress: (id: string, progress: JobProgress) => void updateProgress.run(JSON.stringify(progress), id),
    loadCheckpoint(id: string): unknown {
      const row = getCheckpoint.get(id);
      return row?.checkpoint ? JSON.parse(row.checkpoint) : undefined;
    },
    saveCheckpoint: (id: string, value: unknown) => void updateCheckpoint.run(value == null ? null : JSON.stringify(value), id),
    nextAttemptTime: () => earliestAttempt.get()?.t ?? undefined,
    history: (jobId: string) => historyOf.all(jobId).map(transitionFromRow),
    maxTransitionSeq: () => maxSeq.get()?.s ?? 0,
  };
}

/** Idempotent resubmission must carry the same definition (secrets included). */
export function sameDefinition(existing: Job, input: NewJob): boolean {
  return stableJson(existing.definition) === stableJson(input.definition)
    && (existing.scheduleId ?? "") === (input.scheduleId ?? "");
}

function stableJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v);
}
