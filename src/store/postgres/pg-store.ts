import type { Logger } from "pino";
import type { Job, JobTransition } from "../../domain/job.ts";
import type { RunTrigger } from "../../domain/schedule.ts";
import { batchCompletedEvent, jobEvent, scheduleTriggeredEvent } from "../../domain/webhook-events.ts";
import type { SecretBox } from "../secret-box.ts";
import type { Store } from "../store.ts";
import { createApiKeyStore } from "./api-keys.ts";
import { createAuditStore } from "./audit.ts";
import { createBatchQueries, createBatchStore } from "./batches.ts";
import { createClusterQueries } from "./cluster-queries.ts";
import { createJobQueries, type JobClusterOptions } from "./job-queries.ts";
import { createLogQueries } from "./logs.ts";
import { migrate } from "./migrations.ts";
import { createPool } from "./pool.ts";
import { createProfileQueries, createProfileStore } from "./profiles.ts";
import { createScheduleQueries, createScheduleStore } from "./schedules.ts";
import { transaction, type Sql } from "./sql.ts";
import { checkKey } from "./stored-secrets.ts";
import { createWebhookQueries, createWebhookStore, type WebhookQueries } from "./webhooks.ts";

export interface PostgresStoreOptions extends JobClusterOptions {
  /** postgres://user@host:port/database */
  url: string;
  /** Per-job cap on stored log bytes. */
  maxLogBytesPerJob: number;
  /** The key of every daemon sharing the database (checked against what it already holds). */
  secretBox: SecretBox;
  /** Names the key in the error that refuses a key the database's secrets do not open. */
  keySource?: string;
  logger?: Logger;
  /** Connections of this daemon's pool (default 10). */
  poolSize?: number;
}

/**
 * The Store over a PostgreSQL database that several daemons may share: migrated at open (one daemon at a
 * time), the key checked against the secrets already stored, then the query modules composed as SQLite's are.
 * Sequence numbers are the database's (see Store): callers' nextSeq and seq are not used.
 */
export async function createPostgresStore(options: PostgresStoreOptions): Promise<Store> {
  const pool = createPool(options.url, { max: options.poolSize, applicationName: `hypervisord ${options.nodeId}` });
  // An idle connection that breaks (PostgreSQL restarted) is dropped by the pool; unheard, the event would kill the process.
  pool.on("error", (err) => {
    const message = "a PostgreSQL connection of the pool failed; it is replaced";
    if (options.logger) options.logger.warn({ err: err.message }, message);
    else process.emitWarning(`${message}: ${err.message}`);
  });
  try {
    await migrate(pool);
    await checkKey(pool, options.secretBox, options.keySource ?? "the configured encryption key");
  } catch (err) {
    await pool.end();
    throw err;
  }
  const box = options.secretBox;

  // The webhook dispatcher is woken once the deliveries it will read are committed: after the transaction's
  // client goes back to the pool (commit, or a rollback that makes the wake-up a harmless no-op).
  const webhookListeners: (() => void)[] = [];
  const wakeDispatcher = () => setImmediate(() => webhookListeners.forEach((listener) => listener()));
  const awaitingRelease = new WeakSet<object>();
  pool.on("release", (_err, client) => {
    if (awaitingRelease.delete(client)) wakeDispatcher();
  });
  const outbox = createWebhookQueries(box);
  const enqueueMany: WebhookQueries["enqueueMany"] = async (db, events, enqueueOptions) => {
    const deliveries = await outbox.enqueueMany(db, events, enqueueOptions);
    if (deliveries.length > 0) {
      if (db === pool) wakeDispatcher();
      else awaitingRelease.add(db);
    }
    return deliveries;
  };
  const enqueue: WebhookQueries["enqueue"] = (db, event, enqueueOptions) => enqueueMany(db, [event], enqueueOptions);
  const webhookQueries: WebhookQueries = { ...outbox, enqueue, enqueueMany };

  const schedules = createScheduleQueries(box);
  const scheduleTriggered = async (db: Sql, run: { id: string; scheduleId: string; trigger: RunTrigger; scheduledTime: number },
    target: { jobId: string; batchId?: string }) => {
    const scheduleName = (await schedules.get(db, run.scheduleId))?.name ?? "";
    await enqueue(db, scheduleTriggeredEvent({
      scheduleId: run.scheduleId, scheduleName, runId: run.id, trigger: run.trigger, scheduledTime: run.scheduledTime, ...target,
    }));
  };
  const announce = async (db: Sql, job: Job, transition: JobTransition) => {
    const event = jobEvent(job, transition);
    if (event) await enqueue(db, event);
  };
  const jobs = createJobQueries({
    async afterInsert(db, job, input, transition) {
      if (input.scheduleRun && input.scheduleId) {
        const run = { ...input.scheduleRun, scheduleId: input.scheduleId, jobId: job.id, runTime: job.createTime };
        await schedules.recordRun(db, run);
        await scheduleTriggered(db, run, { jobId: job.id });
      }
      await announce(db, job, transition);
    },
    async afterInsertGroup(db, created) {
      await enqueueMany(db, created.flatMap(({ job, transition }) => jobEvent(job, transition) ?? []));
    },
    async afterTransition(db, job, transition) {
      await announce(db, job, transition);
      await batches.afterChildTransition(db, job, transition);
    },
  }, box, options);
  const batches = createBatchQueries({
    insertJob: jobs.insertOne,
    async recordScheduleRun(db, batch, input) {
      const run = { ...input.scheduleRun!, scheduleId: input.scheduleId!, runTime: input.createTime };
      await schedules.recordRun(db, run);
      await scheduleTriggered(db, run, { jobId: "", batchId: batch.id });
    },
    batchEnded: async (db, batch) => void await enqueue(db, batchCompletedEvent(batch)),
  }, box);
  const logs = createLogQueries({ maxBytesPerJob: options.maxLogBytesPerJob });
  const audit = createAuditStore(pool, options.logger);
  let closing: Promise<void> | undefined;

  return {
    kind: "postgres",
    insertJobs: async (inputs) => (inputs.length === 0 ? [] : transaction(pool, (db) => jobs.insertMany(db, inputs))),
    getJob: (id) => jobs.get(pool, id),
    listJobs: (filter) => jobs.list(pool, filter),
    jobsInState: (state) => jobs.inState(pool, state),
    endedJobsWithCheckpoint: () => jobs.endedWithCheckpoint(pool),
    setPendingCleanup: (id, text) => jobs.setPendingCleanup(pool, id, text),
    countPendingCleanup: () => jobs.countPendingCleanup(pool),
    countByState: () => jobs.countByState(pool),
    async claimNextJob(now) {
      // Each attempt in its own transaction: a candidate skipped at its host's or batch's cap releases its locks at once.
      const skipped: number[] = [];
      for (;;) {
        const attempt = await transaction(pool, (db) => jobs.claimAttempt(db, now, skipped));
        if (!attempt || !("skip" in attempt)) return attempt;
        skipped.push(attempt.skip);
      }
    },
    transition: (input) => transaction(pool, (db) => jobs.transition(db, input)),
    saveProgress: (id, progress) => jobs.saveProgress(pool, id, progress),
    loadCheckpoint: (id) => jobs.loadCheckpoint(pool, id),
    saveCheckpoint: (id, value) => jobs.saveCheckpoint(pool, id, value),
    nextAttemptTime: () => jobs.nextAttemptTime(pool),
    transitionsAfter: (seq, jobIds, limit) => jobs.transitionsAfter(pool, seq, jobIds, limit),
    history: (jobId) => jobs.history(pool, jobId),
    maxTransitionSeq: () => jobs.maxTransitionSeq(pool),
    appendLogs: async (entries) => (entries.length === 0 ? [] : transaction(pool, (db) => logs.appendMany(db, entries))),
    readLogs: (jobId, query) => logs.read(pool, jobId, query),
    getSeqReservation: async () => Number(await jobs.getMeta(pool, "seq_reservation") ?? 0),
    setSeqReservation: (value) => jobs.setMeta(pool, "seq_reservation", String(value)),
    schedules: createScheduleStore(pool, schedules),
    batches: createBatchStore(pool, batches),
    profiles: createProfileStore(pool, createProfileQueries()),
    webhooks: createWebhookStore(pool, webhookQueries),
    apiKeys: createApiKeyStore(pool),
    audit,
    onWebhookEvents: (listener) => void webhookListeners.push(listener),
    cluster: createClusterQueries({
      pool, url: options.url, nodeId: options.nodeId, leaseMs: options.leaseMs, logger: options.logger,
      jobs: {
        jobsById: jobs.jobsById,
        transitionsAfter: (db, seq, limit) => jobs.transitionsAfter(db, seq, undefined, limit),
        requeue: (db, jobId, reason) => jobs.transition(db, {
          jobId, from: ["running"], to: "queued", seq: 0, time: Date.now(), reason, actor: "recovery", resume: true,
        }),
      },
    }),
    secretBox: box,
    close() {
      // Once: a second call (a shutdown racing a failed start) waits for the first instead of ending the pool twice.
      closing ??= (async () => {
        try {
          await audit.flush();
        } finally {
          await pool.end();
        }
      })();
      return closing;
    },
  };
}
