import type { Batch, BatchState } from "../domain/batch.ts";
import type { Job, JobDefinition, JobError, JobProgress, JobResult, JobState, JobTransition } from "../domain/job.ts";
import type { ApiKey, AuditEvent } from "../domain/access.ts";
import type { Profile } from "../domain/profile.ts";
import type { RunTrigger, Schedule, ScheduleExport, ScheduleRun } from "../domain/schedule.ts";
import type { ClusterStore } from "./cluster-store.ts";
import type { SecretBox } from "./secret-box.ts";
import type { DeliveryAttempt, DeliveryState, Webhook, WebhookDelivery, WebhookEvent } from "../domain/webhook.ts";

/**
 * Persistence of jobs, their history and their logs: SQLite (src/store/sqlite, embedded, one daemon) or
 * PostgreSQL (src/store/postgres, shared by several daemons). Asynchronous because PostgreSQL is networked;
 * SQLite resolves at once (its work is done synchronously before the promise is returned, so a caller that
 * does not await in between keeps its order of writes).
 *
 * Sequence numbers: callers pass `nextSeq` / `seq` from the update bus. A store that owns a cluster-wide
 * sequence (PostgreSQL) ignores them and assigns its own; the seq of a returned transition is the one to publish.
 */
export interface Store {
  readonly kind: string;
  /**
   * Inserts jobs and their "created" transitions in one transaction (group commit). Each item succeeds or
   * fails on its own; with a known requestId the existing job is returned instead (created: false).
   */
  insertJobs(inputs: readonly NewJob[]): Promise<InsertResult[]>;
  getJob(id: string): Promise<Job | undefined>;
  listJobs(filter: JobFilter): Promise<JobPage>;
  jobsInState(state: JobState): Promise<Job[]>;
  /**
   * Ended jobs that still have a checkpoint: files on record that were not removed yet (failed and cancelled
   * jobs), or something an earlier run holds on a hypervisor (also a completed job's snapshot whose removal
   * failed). The engine clears a final job's checkpoint once nothing is left, so this stays short however long the history.
   */
  endedJobsWithCheckpoint(): Promise<Job[]>;
  /** Sets (or, with null, clears) what the job still holds on the hypervisor (Job.pendingCleanup). */
  setPendingCleanup(id: string, text: string | null): Promise<void>;
  /** Jobs whose pending_cleanup is set (the snapshots-pending-removal gauge). */
  countPendingCleanup(): Promise<number>;
  countByState(): Promise<Record<JobState, number>>;
  /** Atomically picks the next runnable queued job (highest priority, then oldest) and marks it running. */
  claimNextJob(now: number, nextSeq: () => number): Promise<{ job: Job; transition: JobTransition } | undefined>;
  /** Moves a job from one of `from` to `to`; undefined when the job is not in one of `from` (nothing written). */
  transition(input: TransitionInput): Promise<{ job: Job; transition: JobTransition } | undefined>;
  saveProgress(id: string, progress: JobProgress): Promise<void>;
  loadCheckpoint(id: string): Promise<unknown>;
  /** `undefined` (or null) clears it. */
  saveCheckpoint(id: string, value: unknown): Promise<void>;
  /** Earliest time a queued job waits for (retry backoff), if any. */
  nextAttemptTime(): Promise<number | undefined>;
  transitionsAfter(seq: number, jobIds: readonly string[] | undefined, limit: number): Promise<JobTransition[]>;
  history(jobId: string): Promise<JobTransition[]>;
  maxTransitionSeq(): Promise<number>;
  /** Appends log entries (of any jobs) in one transaction; returns them with their ids, in order. */
  appendLogs(entries: readonly { jobId: string; entry: NewLogEntry }[]): Promise<LogEntry[]>;
  readLogs(jobId: string, query: LogQuery): Promise<{ entries: LogEntry[]; truncated: boolean }>;
  /** The highest job-update sequence number handed out so far may not exceed this (see UpdateBus). */
  getSeqReservation(): Promise<number>;
  setSeqReservation(value: number): Promise<void>;
  readonly schedules: ScheduleStore;
  readonly batches: BatchStore;
  readonly profiles: ProfileStore;
  readonly webhooks: WebhookStore;
  readonly apiKeys: ApiKeyStore;
  readonly audit: AuditStore;
  /** Called (after the commit) whenever webhook deliveries were enqueued: the dispatcher wakes up. */
  onWebhookEvents(listener: () => void): void;
  /** Present when several daemons share this store (PostgreSQL): leases, the shared update log, leadership. */
  readonly cluster?: ClusterStore;
  /** The key the store seals its secrets with, for other secrets kept in the database (a checkpoint's vSphere session). */
  readonly secretBox: SecretBox;
  close(): Promise<void>;
}

export interface ScheduleStore {
  insert(schedule: Schedule): Promise<void>;
  get(id: string): Promise<Schedule | undefined>;
  /** By create time then id; `after` is the id the previous page ended with. Only schedules having all `tags`. */
  list(query: { limit: number; after?: string; tags?: Record<string, string> }): Promise<{ schedules: Schedule[]; next?: string }>;
  /** Every schedule (the scheduler loads them at start). */
  all(): Promise<Schedule[]>;
  /** Replaces every field but id, createTime, lastRunTime and runCount. Returns false when the id is unknown. */
  update(schedule: Schedule): Promise<boolean>;
  /** The schedule and its run records. Jobs it created stay. */
  delete(id: string): Promise<boolean>;
  setNextRunTime(id: string, time: number | undefined): Promise<void>;
  /**
   * Records a run and bumps the schedule's run count and last run time. A run that creates a job is
   * recorded inside the job's insert transaction (NewJob.scheduleRun); a skipped run by this directly.
   */
  recordRun(run: Omit<ScheduleRun, "state" | "durationSeconds">): Promise<void>;
  /** Newest first; `before` is the run id the previous page ended with. State and duration come from the jobs. */
  listRuns(scheduleId: string, query: { limit: number; before?: string }): Promise<{ runs: ScheduleRun[]; next?: string }>;
  /** Jobs of this schedule that are queued or running, its batches' children included. */
  activeJobIds(scheduleId: string): Promise<string[]>;
  /** The schedule whose run created this batch, if any. */
  scheduleOfBatch(batchId: string): Promise<string | undefined>;
  /** The directories its runs wrote (retention). */
  readonly exports: ScheduleExportStore;
}

export interface ScheduleExportStore {
  /** When a run's jobs are created; a job already recorded is left as it is. */
  record(exports: readonly ScheduleExport[]): Promise<void>;
  byJob(jobId: string): Promise<ScheduleExport | undefined>;
  /** Whether some run already recorded this directory. */
  isRecorded(dir: string): Promise<boolean>;
  /** Exports of one VM whose job completed and that are not deleted, newest run first. */
  successful(scheduleId: string, vmKey: string): Promise<ScheduleExport[]>;
  /** False when it was already marked. */
  markDeleted(jobId: string, time: number): Promise<boolean>;
  /** Every (schedule, VM) with exports not deleted, of schedules with a keep_last (the sweep at start). */
  retainedKeys(): Promise<{ scheduleId: string; vmKey: string }[]>;
}

export interface BatchStore {
  /**
   * The batch, its child jobs (with their "created" transitions and job.created events) and the schedule
   * run that made it, in one transaction. A known request_id returns that batch (created: false), or
   * throws ALREADY_EXISTS when its definition differs.
   */
  insert(input: NewBatch): Promise<{ batch: Batch; created: boolean; children: { job: Job; transition: JobTransition }[] }>;
  /** Children's progress as last persisted (the engine overlays live progress). */
  get(id: string): Promise<Batch | undefined>;
  byRequestId(requestId: string): Promise<Batch | undefined>;
  /** Whether every child has ended (a one-row read, unlike get). */
  hasEnded(id: string): Promise<boolean>;
  /** Newest first. */
  list(filter: BatchFilter): Promise<{ batches: Batch[]; nextCursor?: number; total: number }>;
  /** Records CancelBatch's reason; false when the batch had already ended (nothing written). */
  requestCancel(id: string, reason: string): Promise<boolean>;
  /** Batches CancelBatch was called on whose children have not all ended (the daemon stopped in between). */
  cancelling(): Promise<Batch[]>;
}

export interface NewBatch {
  id: string;
  /** With vmSelector, vm empty. */
  definition: JobDefinition;
  scheduleId?: string;
  createTime: number;
  /** One per VM, in order; each with batchId set. */
  children: NewJob[];
  /** A schedule's run that creates this batch: recorded in the same transaction (job_id NULL, batch_id set). */
  scheduleRun?: { id: string; trigger: RunTrigger; scheduledTime: number };
}

export interface BatchFilter {
  states?: readonly BatchState[];
  scheduleId?: string;
  /** Only batches older than this cursor (from a previous page). */
  before?: number;
  limit: number;
}

export interface ApiKeyStore {
  insert(key: ApiKey): Promise<void>;
  get(id: string): Promise<ApiKey | undefined>;
  byHash(keyHash: string): Promise<ApiKey | undefined>;
  list(): Promise<ApiKey[]>;
  revoke(id: string, time: number): Promise<boolean>;
  touch(id: string, time: number): Promise<void>;
  /** Makes the config-file keys (source "config") exactly `keys`. */
  syncConfig(keys: readonly ApiKey[]): Promise<void>;
  /** Keys that are neither revoked nor expired at `now`. */
  countUsable(now: number): Promise<number>;
}

export interface AuditStore {
  /** Written with the other events of the same event-loop turn, in one transaction (see flush). */
  append(event: Omit<AuditEvent, "id">): void;
  /** Writes what append() has buffered now (list() and close do it too). */
  flush(): Promise<void>;
  /** Newest first; `before` is the id the previous page ended with. */
  list(query: { limit: number; before?: number; method?: string; principal?: string; since?: number }): Promise<{ events: AuditEvent[]; next?: number }>;
}

export interface ProfileStore {
  insert(profile: Profile): Promise<void>;
  get(name: string): Promise<Profile | undefined>;
  list(): Promise<Profile[]>;
  update(profile: Profile): Promise<boolean>;
  delete(name: string): Promise<boolean>;
}

export interface WebhookStore {
  insert(webhook: Webhook): Promise<void>;
  get(id: string): Promise<Webhook | undefined>;
  list(): Promise<Webhook[]>;
  update(webhook: Webhook): Promise<boolean>;
  /** The webhook; its delivery history stays readable until pruned. */
  delete(id: string): Promise<boolean>;
  /** Makes the config-file webhooks (source "config") exactly `webhooks`: inserted, updated, or deleted when gone. */
  syncConfig(webhooks: readonly Webhook[]): Promise<void>;
  /**
   * One pending delivery per enabled webhook that wants the event (wantsEvent), due now; returns them.
   * The stores call it inside the transaction of the change it announces, so the event and the change
   * commit together. `only` restricts it to one webhook (TestWebhook). `heldUntil`: the caller posts the
   * delivery itself at once (TestWebhook), so it is not due (for any daemon's dispatcher) before this time.
   */
  enqueue(event: WebhookEvent, options?: { only?: string; now?: number; heldUntil?: number }): Promise<WebhookDelivery[]>;
  /**
   * Pending deliveries due at `now`, oldest first, with their webhooks. A shared store claims them (SKIP LOCKED):
   * what one daemon got is not handed to another before its attempt is recorded or a claim timeout passes.
   */
  due(now: number, limit: number): Promise<{ delivery: WebhookDelivery; webhook: Webhook }[]>;
  /** Earliest next_attempt_time of a pending delivery. */
  nextDueTime(): Promise<number | undefined>;
  /** Moves a webhook's pending deliveries due before `until` to `until` (an open circuit), without counting attempts; returns how many. */
  postpone(webhookId: string, until: number): Promise<number>;
  /** Appends an attempt and moves the delivery (pending with a next time, delivered or failed). */
  recordAttempt(deliveryId: string, attempt: DeliveryAttempt, outcome: { state: DeliveryState; nextAttemptTime?: number }): Promise<void>;
  getDelivery(id: string): Promise<WebhookDelivery | undefined>;
  /** Newest first; `before` is the delivery id the previous page ended with. */
  listDeliveries(webhookId: string, query: { limit: number; before?: string }): Promise<{ deliveries: WebhookDelivery[]; next?: string }>;
}

export interface NewJob {
  id: string;
  definition: JobDefinition;
  maxAttempts: number;
  createTime: number;
  scheduleId?: string;
  /** Called only when a job is actually created, so that no sequence number is spent on a duplicate. */
  nextSeq: () => number;
  actor: string;
  /** A schedule's run that creates this job: recorded in the same transaction (with its schedule.triggered event). */
  scheduleRun?: { id: string; trigger: RunTrigger; scheduledTime: number };
  /** A batch's child: the batch and the VM's place in it. */
  batchId?: string;
  batchIndex?: number;
}

export type InsertResult =
  | { ok: true; job: Job; created: boolean; transition?: JobTransition }
  | { ok: false; error: unknown };

export interface TransitionInput {
  jobId: string;
  from: readonly JobState[];
  to: JobState;
  seq: number;
  time: number;
  reason: string;
  actor: string;
  /** null clears the column. */
  error?: JobError | null;
  result?: JobResult;
  progress?: JobProgress;
  endTime?: number | null;
  nextAttemptTime?: number | null;
  /** The next claim continues from the checkpoint and does not count as a new attempt. */
  resume?: boolean;
  clearCheckpoint?: boolean;
  /** Replaces the checkpoint in the same transaction (a completed job that still holds something keeps that part). */
  checkpoint?: unknown;
  /** null clears the column. */
  pendingCleanup?: string | null;
  /**
   * Fencing in a cluster: the change applies only while this node holds the job's lease (a node whose lease
   * expired and whose job another node took must not complete or fail it). Ignored by a single-daemon store.
   */
  node?: string;
}

export interface JobFilter {
  states?: readonly JobState[];
  labels?: Record<string, string>;
  provider?: string;
  scheduleId?: string;
  batchId?: string;
  /** Substring of the id, name, VM, output directory or a label value, ignoring ASCII case. */
  text?: string;
  /** Only jobs older than this cursor (from a previous page). */
  before?: number;
  limit: number;
}

export interface JobPage {
  jobs: Job[];
  /** Cursor of the next page, when there is one. */
  nextCursor?: number;
  total: number;
}

export interface NewLogEntry {
  time: number;
  level: string;
  message: string;
  fields: Record<string, unknown>;
}

export interface LogEntry extends NewLogEntry {
  id: number;
}

export interface LogQuery {
  afterId: number;
  /** Only the last N entries; 0 for all. */
  tail: number;
  limit: number;
}
