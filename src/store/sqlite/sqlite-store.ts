import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import type { Job, JobTransition } from "../../domain/job.ts";
import { jobEvent, scheduleTriggeredEvent } from "../../webhooks/events.ts";
import type { SecretBox } from "../secret-box.ts";
import type { Store, WebhookStore } from "../store.ts";
import { createJobQueries } from "./job-queries.ts";
import { createLogQueries } from "./logs.ts";
import { createApiKeyQueries } from "./api-keys.ts";
import { createAuditQueries } from "./audit.ts";
import { migrate } from "./migrations.ts";
import { createProfileQueries } from "./profiles.ts";
import { createScheduleQueries } from "./schedules.ts";
import { createWebhookQueries } from "./webhooks.ts";

export interface SqliteStoreOptions {
  dataDir: string;
  /** Per-job cap on stored log bytes. */
  maxLogBytesPerJob: number;
  /** secrets.encryption_key: stored vSphere passwords are sealed with it; without it they are stored as before. */
  secretBox?: SecretBox;
}

export const DATABASE_FILE = "hypervisord.db";

export function createSqliteStore(options: SqliteStoreOptions): Store {
  fs.mkdirSync(options.dataDir, { recursive: true });
  const db = new Database(path.join(options.dataDir, DATABASE_FILE));
  // WAL: readers never block the writer. synchronous=NORMAL in WAL mode keeps every
  // committed transaction across a process crash (kill -9); only an OS crash can lose the last ones.
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  migrate(db);

  const schedules = createScheduleQueries(db, options.secretBox);
  const profiles = createProfileQueries(db);
  const outbox = createWebhookQueries(db);
  const webhookListeners: (() => void)[] = [];
  const webhooks: WebhookStore = {
    ...outbox,
    enqueue(event, options) {
      const deliveries = outbox.enqueue(event, options);
      // After the caller's transaction has committed (better-sqlite3 transactions are synchronous).
      if (deliveries.length > 0) setImmediate(() => webhookListeners.forEach((listener) => listener()));
      return deliveries;
    },
  };
  const announce = (job: Job, transition: JobTransition) => {
    const event = jobEvent(job, transition);
    if (event) webhooks.enqueue(event);
  };
  const jobs = createJobQueries(db, {
    afterInsert(job, input, transition) {
      if (input.scheduleRun && input.scheduleId) {
        const run = { ...input.scheduleRun, scheduleId: input.scheduleId, jobId: job.id, runTime: job.createTime };
        schedules.recordRun(run);
        webhooks.enqueue(scheduleTriggeredEvent({
          scheduleId: run.scheduleId, scheduleName: schedules.get(run.scheduleId)?.name ?? "", runId: run.id, trigger: run.trigger, jobId: job.id, scheduledTime: run.scheduledTime,
        }));
      }
      announce(job, transition);
    },
    afterTransition: announce,
  }, options.secretBox);
  const logs = createLogQueries(db, { maxBytesPerJob: options.maxLogBytesPerJob });
  const audit = createAuditQueries(db);
  const getMeta = db.prepare<[string], { value: string }>("SELECT value FROM meta WHERE key = ?");
  const setMeta = db.prepare("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");

  return {
    kind: "sqlite",
    insertJobs: jobs.insertMany,
    getJob: jobs.get,
    listJobs: jobs.list,
    jobsInState: jobs.inState,
    countByState: jobs.countByState,
    claimNextJob: jobs.claim,
    transition: jobs.transition,
    saveProgress: jobs.saveProgress,
    loadCheckpoint: jobs.loadCheckpoint,
    saveCheckpoint: jobs.saveCheckpoint,
    nextAttemptTime: jobs.nextAttemptTime,
    transitionsAfter: jobs.transitionsAfter,
    history: jobs.history,
    maxTransitionSeq: jobs.maxTransitionSeq,
    appendLogs: logs.appendMany,
    readLogs: logs.read,
    getSeqReservation: () => Number(getMeta.get("seq_reservation")?.value ?? 0),
    setSeqReservation: (value) => void setMeta.run("seq_reservation", String(value)),
    schedules,
    profiles,
    webhooks,
    apiKeys: createApiKeyQueries(db),
    audit,
    onWebhookEvents: (listener) => void webhookListeners.push(listener),
    close: () => {
      audit.flush();
      db.close();
    },
  };
}
