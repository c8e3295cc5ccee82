import type { Database, Statement } from "better-sqlite3";
import { batchStateOf, countJobs, type Batch, type BatchJob } from "../../domain/batch.ts";
import { isFinal, type Job, type JobDefinition, type JobState, type JobTransition } from "../../domain/job.ts";
import { AlreadyExistsError } from "../../errors.ts";
import type { BatchFilter, BatchStore, NewBatch, NewJob } from "../store.ts";
import type { SecretBox } from "../secret-box.ts";
import type { Sync } from "../sync-store.ts";
import { splitSecrets } from "./job-rows.ts";

/** Also the PostgreSQL store's (the same columns). */
export interface BatchRow {
  pk: number;
  id: string;
  request_id: string | null;
  name: string;
  definition: string;
  max_parallel: number;
  schedule_id: string | null;
  cancel_reason: string | null;
  state: string;
  create_time: number;
  end_time: number | null;
}

/** What a batch shows of each child: read without the child's definition JSON or secrets. */
/** A batch's child as the batch reads it: also the PostgreSQL store's (the same columns). */
export interface ChildRow {
  id: string;
  name: string;
  state: string;
  vm: string | null;
  bytes_done: number | null;
  bytes_total: number | null;
  error: string | null;
}

export interface BatchHooks {
  /** Inserts one child (jobs' insertOne: its transition and job.created event) inside the batch's transaction. */
  insertJob(input: NewJob): { job: Job; created: boolean; transition?: JobTransition };
  /** The schedule run that made the batch (schedule_runs row, run count, schedule.triggered), in the same transaction. */
  recordScheduleRun?(batch: Batch, input: NewBatch): void;
  /** The last child ended: the batch.completed event, in the same transaction as that child's final transition. */
  batchEnded?(batch: Batch): void;
}

/** Queries on batches; every statement prepared once. The batch's definition is stored without its secrets (its children keep theirs). */
export function createBatchQueries(db: Database, hooks: BatchHooks, box: SecretBox) {
  const byId = db.prepare<[string], BatchRow>("SELECT * FROM batches WHERE id = ?");
  const byRequest = db.prepare<[string], BatchRow>("SELECT * FROM batches WHERE request_id = ?");
  const insertRow = db.prepare(`INSERT INTO batches (id, request_id, name, definition, max_parallel, schedule_id, create_time)
    VALUES (@id, @request_id, @name, @definition, @max_parallel, @schedule_id, @create_time)`);
  const childrenOf = db.prepare<[string], ChildRow>(`SELECT id, name, state, json_extract(definition, '$.vm') AS vm,
      json_extract(progress, '$.bytesDone') AS bytes_done, json_extract(progress, '$.bytesTotal') AS bytes_total, error
    FROM jobs WHERE batch_id = ? ORDER BY batch_index`);
  const unended = db.prepare<[string], { n: number }>("SELECT count(*) AS n FROM jobs WHERE batch_id = ? AND state IN ('queued', 'running')");
  const markEnded = db.prepare("UPDATE batches SET state = ?, end_time = ? WHERE id = ? AND end_time IS NULL");
  const setCancel = db.prepare("UPDATE batches SET cancel_reason = ? WHERE id = ? AND end_time IS NULL");
  const cancellingRows = db.prepare<[], BatchRow>("SELECT * FROM batches WHERE cancel_reason IS NOT NULL AND end_time IS NULL ORDER BY pk");
  const endTimeOf = db.prepare<[string], { end_time: number | null }>("SELECT end_time FROM batches WHERE id = ?");
  const setRunBatch = db.prepare("UPDATE schedule_runs SET batch_id = ? WHERE id = ?");
  const dynamic = new Map<string, Statement>();
  const prepared = (sql: string): Statement => {
    let statement = dynamic.get(sql);
    if (!statement) dynamic.set(sql, (statement = db.prepare(sql)));
    return statement;
  };

  const batchFromChildren = (row: BatchRow): Batch => batchFromRow(row, childrenOf.all(row.id).map(childFromRow));

  const get = (id: string) => {
    const row = byId.get(id);
    return row && batchFromChildren(row);
  };

  const insert = db.transaction((input: NewBatch) => {
    const stored = splitSecrets(input.definition, box).definition;
    const requestId = input.definition.requestId;
    const existing = requestId ? byRequest.get(requestId) : undefined;
    if (existing) {
      // Compared without secrets: the batch keeps none (its children do).
      if (!sameJson(existing.definition, stored) || (existing.schedule_id ?? "") !== (input.scheduleId ?? "")) {
        throw new AlreadyExistsError(`request_id "${requestId}" was already used for batch ${existing.id} with a different definition`);
      }
      return { batch: batchFromChildren(existing), created: false, children: [] };
    }
    insertRow.run({
      id: input.id, request_id: requestId ?? null, name: input.definition.name, definition: stored,
      max_parallel: input.definition.maxParallel ?? 0, schedule_id: input.scheduleId ?? null, create_time: input.createTime,
    });
    const children = input.children.map((child) => {
      const inserted = hooks.insertJob(child);
      return { job: inserted.job, transition: inserted.transition! };
    });
    const batch = get(input.id)!;
    if (input.scheduleRun && input.scheduleId) {
      hooks.recordScheduleRun?.(batch, input);
      setRunBatch.run(input.id, input.scheduleRun.id);
    }
    return { batch, created: true, children };
  });

  function list(filter: BatchFilter) {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.states && filter.states.length > 0) {
      where.push(`state IN (${filter.states.map(() => "?").join(", ")})`);
      params.push(...filter.states);
    }
    if (filter.scheduleId) {
      where.push("schedule_id = ?");
      params.push(filter.scheduleId);
    }
    const whereSql = where.length > 0 ? `WHERE ${where.join(" AND ")}` : "";
    const total = (prepared(`SELECT count(*) AS n FROM batches ${whereSql}`).get(...params) as { n: number }).n;
    if (filter.before !== undefined) {
      where.push("pk < ?");
      params.push(filter.before);
    }
    const pageSql = where.length > 0 ? `WHERE ${where.join(" AND ")}` : "";
    const rows = prepared(`SELECT * FROM batches ${pageSql} ORDER BY pk DESC LIMIT ?`).all(...params, filter.limit + 1) as BatchRow[];
    const more = rows.length > filter.limit;
    const page = more ? rows.slice(0, filter.limit) : rows;
    return { batches: page.map(batchFromChildren), nextCursor: more ? page[page.length - 1]!.pk : undefined, total };
  }

  /**
   * Inside the transaction of a child's transition: when it was the batch's last child to end, the batch's
   * final state and end time are written and announced (batch.completed) in that same transaction.
   */
  function afterChildTransition(job: Job, transition: JobTransition): void {
    if (!job.batchId || !isFinal(transition.toState) || unended.get(job.batchId)!.n > 0) return;
    const row = byId.get(job.batchId);
    if (!row || row.end_time !== null) return;
    const batch = batchFromChildren(row);
    markEnded.run(batch.state, transition.time, batch.id);
    hooks.batchEnded?.({ ...batch, endTime: transition.time });
  }

  const store: Sync<BatchStore> = {
    insert,
    get,
    byRequestId(requestId) {
      const row = byRequest.get(requestId);
      return row && batchFromChildren(row);
    },
    hasEnded: (id) => (endTimeOf.get(id)?.end_time ?? null) !== null,
    list,
    requestCancel: (id, reason) => setCancel.run(reason, id).changes > 0,
    cancelling: () => cancellingRows.all().map(batchFromChildren),
  };
  return { store, afterChildTransition };
}

export function childFromRow(row: ChildRow): BatchJob {
  return {
    jobId: row.id,
    vm: row.vm ?? "",
    vmName: row.name,
    state: row.state as JobState,
    bytesDone: row.bytes_done ?? 0,
    bytesTotal: row.bytes_total ?? 0,
    ...(row.error && (row.state === "failed" || row.state === "cancelled") ? { error: JSON.parse(row.error) } : {}),
  };
}

/** Two JSON texts of definitions, equal whatever their key order. */
export function sameJson(a: string, b: string): boolean {
  const stable = (text: string) => JSON.stringify(JSON.parse(text), (_key, v: unknown) =>
    v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) : v);
  return stable(a) === stable(b);
}

/** A batch with its children (read with it or, for a page of batches, in one query). */
export function batchFromRow(row: BatchRow, jobs: BatchJob[]): Batch {
  const counts = countJobs(jobs);
  return {
    id: row.id,
    name: row.name,
    state: batchStateOf(counts, row.cancel_reason !== null),
    definition: JSON.parse(row.definition) as JobDefinition,
    counts,
    bytesDone: jobs.reduce((sum, j) => sum + j.bytesDone, 0),
    bytesTotal: jobs.reduce((sum, j) => sum + j.bytesTotal, 0),
    maxParallel: row.max_parallel,
    ...(row.schedule_id ? { scheduleId: row.schedule_id } : {}),
    createTime: row.create_time,
    ...(row.end_time !== null ? { endTime: row.end_time } : {}),
    ...(row.cancel_reason !== null ? { cancelReason: row.cancel_reason } : {}),
    jobs,
  };
}
