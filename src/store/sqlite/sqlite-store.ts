import path from "node:path";
import Database from "better-sqlite3";
import type { Logger } from "pino";
import type { Job, JobTransition } from "../../domain/job.ts";
import { batchCompletedEvent, jobEvent, scheduleTriggeredEvent } from "../../domain/webhook-events.ts";
import { prepareDataDir, secureExistingFile, secureFile } from "../data-dir.ts";
import { KEY_FILE, loadEncryptionKey, type EncryptionKeyOptions } from "../encryption-key.ts";
import type { SecretBox } from "../secret-box.ts";
import type { AuditStore, BatchStore, ScheduleExportStore, ScheduleStore, Store, WebhookStore } from "../store.ts";
import { toAsync, type Sync } from "../sync-store.ts";
import { createBatchQueries } from "./batches.ts";
import { createJobQueries } from "./job-queries.ts";
import { createLogQueries } from "./logs.ts";
import { createApiKeyQueries } from "./api-keys.ts";
import { createAuditQueries } from "./audit.ts";
import { migrate } from "./migrations.ts";
import { createProfileQueries } from "./profiles.ts";
import { createScheduleQueries } from "./schedules.ts";
import { createStoredSecrets } from "./stored-secrets.ts";
import { createWebhookQueries } from "./webhooks.ts";

export interface SqliteStoreOptions {
  dataDir: string;
  /** Per-job cap on stored log bytes. */
  maxLogBytesPerJob: number;
  /**
   * The key every stored secret is sealed with: secrets.encryption_key or secrets.encryption_key_file,
   * else <dataDir>/encryption.key, generated at first start.
   */
  encryption?: Omit<EncryptionKeyOptions, "dataDir">;
  /** Where key generation, the encryption of old plain secrets and tightened file modes are reported. */
  logger?: Logger;
}

export const DATABASE_FILE = "hypervisord.db";

/**
 * Opens (creating it) the database of `dataDir`, migrated: the directory 0700, the database, its -wal
 * and -shm and the key file 0600 whatever the umask; looser modes left by an older version are
 * tightened with a warning.
 */
export function openDatabase(dataDir: string, logger?: Logger): Database.Database {
  const warnings = prepareDataDir(dataDir);
  const file = path.join(dataDir, DATABASE_FILE);
  // 0600 before SQLite opens it (SQLite would create it 0644 less the umask); -wal and -shm take its mode.
  warnings.push(...[
    secureFile(file, "database"), secureExistingFile(`${file}-wal`, "database WAL"), secureExistingFile(`${file}-shm`, "database shared memory"),
    secureExistingFile(path.join(dataDir, KEY_FILE), "encryption key file"),
  ].filter((w) => w !== undefined));
  for (const warning of warnings) logger?.warn(warning);
  const db = new Database(file);
  // WAL: readers never block the writer. synchronous=NORMAL in WAL mode keeps every
  // committed transaction across a process crash (kill -9); only an OS crash can lose the last ones.
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  try {
    migrate(db);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

/**
 * The SQLite store: its queries run synchronously (better-sqlite3) and `toAsync` gives them the async
 * Store interface; the hooks inside a transaction (schedule runs, webhook outbox, batch end) call the
 * synchronous queries directly.
 */
export function createSqliteStore(options: SqliteStoreOptions): Store {
  const db = openDatabase(options.dataDir, options.logger);
  let secretBox: SecretBox;
  try {
    const stored = createStoredSecrets(db);
    const key = loadEncryptionKey({ dataDir: options.dataDir, ...options.encryption }, { mayGenerate: !stored.hasSealed(), opens: stored.keyOpens });
    if (key.event === "generated") {
      options.logger?.warn({ key_file: key.dataDirFile }, "no encryption key configured: generated one (stored secrets are encrypted with it; "
        + "back it up or move it to a credential store, see README, Secrets: without it the stored passwords and webhook secrets are lost)");
    } else if (key.event) {
      options.logger?.warn({ key_file: key.dataDirFile }, `encryption key: ${key.event}`);
    }
    const sealed = stored.sealPlain(key.box, key.source);
    if (sealed > 0) options.logger?.info({ values: sealed, key: key.source }, "encrypted secrets stored in clear by an earlier version");
    secretBox = key.box;
  } catch (err) {
    db.close();
    throw err;
  }

  const schedules = createScheduleQueries(db, secretBox);
  const profiles = createProfileQueries(db);
  const outbox = createWebhookQueries(db, secretBox);
  const webhookListeners: (() => void)[] = [];
  const webhooks: Sync<WebhookStore> = {
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
    afterTransition(job, transition) {
      announce(job, transition);
      batches.afterChildTransition(job, transition);
    },
  }, secretBox);
  const batches = createBatchQueries(db, {
    insertJob: jobs.insertOne,
    recordScheduleRun(batch, input) {
      const run = { ...input.scheduleRun!, scheduleId: input.scheduleId!, runTime: input.createTime };
      schedules.recordRun(run);
      webhooks.enqueue(scheduleTriggeredEvent({
        scheduleId: run.scheduleId, scheduleName: schedules.get(run.scheduleId)?.name ?? "", runId: run.id, trigger: run.trigger, jobId: "", batchId: batch.id, scheduledTime: run.scheduledTime,
      }));
    },
    batchEnded: (batch) => void webhooks.enqueue(batchCompletedEvent(batch)),
  }, secretBox);
  const logs = createLogQueries(db, { maxBytesPerJob: options.maxLogBytesPerJob });
  const audit = createAuditQueries(db);
  const getMeta = db.prepare<[string], { value: string }>("SELECT value FROM meta WHERE key = ?");
  const setMeta = db.prepare("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");

  const { exports: scheduleExports, ...scheduleQueries } = schedules;
  const store = toAsync<Omit<Store, "onWebhookEvents">>({
    kind: "sqlite",
    insertJobs: jobs.insertMany,
    getJob: jobs.get,
    listJobs: jobs.list,
    jobsInState: jobs.inState,
    endedJobsWithCheckpoint: jobs.endedWithCheckpoint,
    setPendingCleanup: jobs.setPendingCleanup,
    countPendingCleanup: jobs.countPendingCleanup,
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
    schedules: { ...toAsync<Omit<ScheduleStore, "exports">>(scheduleQueries), exports: toAsync<ScheduleExportStore>(scheduleExports) },
    batches: toAsync<BatchStore>(batches.store),
    profiles: toAsync(profiles),
    webhooks: toAsync(webhooks),
    apiKeys: toAsync(createApiKeyQueries(db)),
    // append stays synchronous (it only buffers; the group commit writes the turn's events).
    audit: { ...toAsync<AuditStore>(audit), append: audit.append },
    secretBox,
    close: () => {
      audit.flush();
      db.close();
    },
  });
  // A registration, not a query: it stays synchronous.
  return { ...store, onWebhookEvents: (listener) => void webhookListeners.push(listener) };
}
