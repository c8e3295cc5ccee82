import { EMPTY_PROGRESS, type Job, type JobTransition } from "../../domain/job.ts";
import { AlreadyExistsError } from "../../errors.ts";
import type { SecretBox } from "../secret-box.ts";
import { sameDefinition } from "../sqlite/job-queries.ts";
import { priorityRank, splitSecrets } from "../sqlite/job-rows.ts";
import type { InsertResult, NewJob } from "../store.ts";
import { targetHost, type PgJobRow } from "./job-rows.ts";
import { notifyUpdates, UPDATE_SEQ_LOCK, type Sql } from "./sql.ts";

/** A job a group commit created, with the input it came from and its first transition. */
export interface CreatedJob {
  job: Job;
  input: NewJob;
  transition: JobTransition;
}

export interface GroupInsertOptions {
  secretBox: SecretBox;
  jobFromRow(row: PgJobRow): Job;
  /** In the group's transaction: the webhook events announcing the created jobs, at once. */
  afterInsertGroup(db: Sql, created: readonly CreatedJob[]): Promise<void>;
}

/** Whether a group can take the bulk path: no schedule run and no batch child, whose hooks work job by job. */
export const insertsInBulk = (inputs: readonly NewJob[]): boolean => inputs.every((input) => !input.scheduleRun && !input.batchId);

/** An item's row, prepared in JS (sealing its secrets) before any statement runs. */
interface PreparedRow {
  index: number;
  input: NewJob;
  requestId: string | null;
  definition: string;
  secrets: string | null;
}

/**
 * The group commit of SubmitJob in a handful of statements whatever the group's size (the per-item path spends
 * about ten round trips per job): one multi-row INSERT of the jobs, one of their labels, their seqs taken at once
 * under UPDATE_SEQ_LOCK, one INSERT of their transitions, their webhook events at once. Behaves as the per-item
 * path: the same jobs, pks and seqs in input order, a request_id already used returns its job (or the item's
 * ALREADY_EXISTS when the definition differs). Run it in a savepoint: a database error fails the whole group, and
 * the caller then inserts its items one by one so that the failing one fails alone.
 */
export function createGroupInsert(options: GroupInsertOptions) {
  const { secretBox, jobFromRow } = options;

  return async function insertGroup(db: Sql, inputs: readonly NewJob[]): Promise<InsertResult[]> {
    const results: (InsertResult | undefined)[] = inputs.map(() => undefined);
    const rows: PreparedRow[] = [];
    // The first item of each request_id inserts; the later ones of the group are answered with its job.
    const followers: { index: number; input: NewJob; requestId: string }[] = [];
    const leaders = new Set<string>();
    inputs.forEach((input, index) => {
      const requestId = input.definition.requestId ?? null;
      if (requestId !== null && leaders.has(requestId)) {
        followers.push({ index, input, requestId });
        return;
      }
      try {
        const split = splitSecrets(input.definition, secretBox);
        rows.push({ index, input, requestId, definition: split.definition, secrets: split.secrets });
        if (requestId !== null) leaders.add(requestId);
      } catch (error) {
        results[index] = { ok: false, error };
      }
    });

    const inserted = await insertRows(db, rows);
    // The request_ids another job holds (committed earlier, or by a concurrent daemon: ON CONFLICT waited for
    // it) and those of the group's followers, read in one query.
    const existingIds = new Set(rows.filter((r) => r.requestId !== null && !inserted.has(r.input.id)).map((r) => r.requestId!));
    const wanted = [...new Set([...existingIds, ...followers.map((f) => f.requestId)])];
    const holders = new Map<string, Job>();
    if (wanted.length > 0) {
      const { rows: found } = await db.query<PgJobRow>("SELECT * FROM jobs WHERE request_id = ANY ($1::text[])", [wanted]);
      for (const row of found) holders.set(row.request_id!, jobFromRow(row));
    }
    const answer = (index: number, input: NewJob, requestId: string) => {
      const job = holders.get(requestId);
      results[index] = !job
        ? { ok: false, error: new Error(`inserting job ${input.id}: request_id "${requestId}" conflicted with a job that is gone`) }
        : sameDefinition(job, input)
          ? { ok: true, job, created: false }
          : { ok: false, error: new AlreadyExistsError(`request_id "${requestId}" was already used for job ${job.id} with a different definition`) };
    };
    for (const row of rows) if (!inserted.has(row.input.id)) answer(row.index, row.input, row.requestId!);
    for (const { index, input, requestId } of followers) answer(index, input, requestId);

    const created = rows.filter((r) => inserted.has(r.input.id));
    if (created.length > 0) {
      await insertLabels(db, created.map((r) => ({ labels: r.input.definition.labels, pk: inserted.get(r.input.id)! })));
      const seqs = await nextUpdateSeqs(db, created.length);
      const transitions = created.map(({ input }, i): JobTransition => ({
        jobId: input.id, toState: "queued", reason: "submitted", actor: input.actor, time: input.createTime, seq: seqs[i]!,
      }));
      await insertTransitions(db, transitions);
      await notifyUpdates(db);
      const done = created.map(({ index, input }, i): CreatedJob & { index: number } => ({ index, input, job: newJob(input), transition: transitions[i]! }));
      await options.afterInsertGroup(db, done);
      for (const { index, job, transition } of done) results[index] = { ok: true, job, created: true, transition };
    }
    return results.map((result, i) => {
      if (!result) throw new Error(`inserting job ${inputs[i]!.id} in a group: the item got no outcome (a defect of the bulk path)`);
      return result;
    });
  };
}

/**
 * One INSERT for the group. pks follow the input order (as the per-item path gives them: the queue's order among
 * equal priorities) while the rows go in in request_id order, so that two daemons inserting the same request_ids
 * wait for each other in one order instead of deadlocking. Returns the pk of each job inserted, by id.
 */
async function insertRows(db: Sql, rows: readonly PreparedRow[]): Promise<Map<string, number>> {
  if (rows.length === 0) return new Map();
  const column = <T>(pick: (row: PreparedRow) => T) => rows.map(pick);
  const { rows: inserted } = await db.query<{ pk: number; id: string }>(`INSERT INTO jobs
      (pk, id, request_id, name, provider, state, priority, definition, secrets, max_attempts, schedule_id, create_time, target_host)
    SELECT pk, id, request_id, name, provider, 'queued', priority, definition, secrets, max_attempts, schedule_id, create_time, target_host
    FROM (
      SELECT nextval(pg_get_serial_sequence('jobs', 'pk')) AS pk, x.* FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
        $5::int[], $6::text[], $7::text[], $8::int[], $9::text[], $10::bigint[], $11::text[]) WITH ORDINALITY
        AS x (id, request_id, name, provider, priority, definition, secrets, max_attempts, schedule_id, create_time, target_host, n)
      ORDER BY x.n
    ) AS numbered
    ORDER BY request_id
    ON CONFLICT (request_id) WHERE request_id IS NOT NULL DO NOTHING RETURNING pk, id`, [
    column((r) => r.input.id), column((r) => r.requestId), column((r) => r.input.definition.name), column((r) => r.input.definition.provider),
    column((r) => priorityRank(r.input.definition)), column((r) => r.definition), column((r) => r.secrets),
    column((r) => r.input.maxAttempts), column((r) => r.input.scheduleId ?? null), column((r) => r.input.createTime),
    column((r) => targetHost(r.input.definition)),
  ]);
  return new Map(inserted.map((row) => [row.id, row.pk]));
}

async function insertLabels(db: Sql, jobs: readonly { labels: Record<string, string>; pk: number }[]): Promise<void> {
  const labels = jobs.flatMap(({ labels, pk }) => Object.entries(labels).map(([key, value]) => ({ key, value, pk })));
  if (labels.length === 0) return;
  await db.query("INSERT INTO job_labels (key, value, job_pk) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])",
    [labels.map((l) => l.key), labels.map((l) => l.value), labels.map((l) => l.pk)]);
}

/** `count` update seqs, ascending, under UPDATE_SEQ_LOCK (held until commit, as nextUpdateSeq's). */
async function nextUpdateSeqs(db: Sql, count: number): Promise<number[]> {
  await db.query("SELECT pg_advisory_xact_lock($1)", [UPDATE_SEQ_LOCK]);
  const { rows } = await db.query<{ seq: string }>("SELECT nextval('update_seq') AS seq FROM generate_series(1, $1)", [count]);
  return rows.map((row) => Number(row.seq)).sort((a, b) => a - b);
}

async function insertTransitions(db: Sql, transitions: readonly JobTransition[]): Promise<void> {
  await db.query(`INSERT INTO job_transitions (seq, job_id, from_state, to_state, reason, actor, time)
    SELECT seq, job_id, NULL, 'queued', reason, actor, time FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[])
      AS t (seq, job_id, reason, actor, time)`, [
    transitions.map((t) => t.seq), transitions.map((t) => t.jobId), transitions.map((t) => t.reason),
    transitions.map((t) => t.actor), transitions.map((t) => t.time),
  ]);
}

/** The Job a created row holds, as insertOne builds it. */
function newJob(input: NewJob): Job {
  return {
    id: input.id, definition: input.definition, state: "queued", progress: { ...EMPTY_PROGRESS }, attempt: 0,
    maxAttempts: input.maxAttempts, createTime: input.createTime, scheduleId: input.scheduleId, attempts: [],
  };
}
