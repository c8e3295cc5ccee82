import type { Job, JobDefinition, JobError, JobProgress, JobResult, JobState, JobTransition } from "../domain/job.ts";

/**
 * Persistence of jobs, their history and their logs. SQLite implements it
 * today (src/store/sqlite); a PostgreSQL backend for several daemons will
 * implement the same interface. Methods are synchronous because SQLite is
 * embedded; a networked backend would make them async behind the same names.
 */
export interface Store {
  readonly kind: string;
  /**
   * Inserts jobs and their "created" transitions in one transaction (group commit). Each item succeeds or
   * fails on its own; with a known requestId the existing job is returned instead (created: false).
   */
  insertJobs(inputs: readonly NewJob[]): InsertResult[];
  getJob(id: string): Job | undefined;
  listJobs(filter: JobFilter): JobPage;
  jobsInState(state: JobState): Job[];
  countByState(): Record<JobState, number>;
  /** Atomically picks the next runnable queued job (highest priority, then oldest) and marks it running. */
  claimNextJob(now: number, nextSeq: () => number): { job: Job; transition: JobTransition } | undefined;
  /** Moves a job from one of `from` to `to`; undefined when the job is not in one of `from` (nothing written). */
  transition(input: TransitionInput): { job: Job; transition: JobTransition } | undefined;
  saveProgress(id: string, progress: JobProgress): void;
  loadCheckpoint(id: string): unknown;
  saveCheckpoint(id: string, value: unknown): void;
  /** Earliest time a queued job waits for (retry backoff), if any. */
  nextAttemptTime(): number | undefined;
  transitionsAfter(seq: number, jobIds: readonly string[] | undefined, limit: number): JobTransition[];
  history(jobId: string): JobTransition[];
  maxTransitionSeq(): number;
  /** Appends log entries (of any jobs) in one transaction; returns them with their ids, in order. */
  appendLogs(entries: readonly { jobId: string; entry: NewLogEntry }[]): LogEntry[];
  readLogs(jobId: string, query: LogQuery): { entries: LogEntry[]; truncated: boolean };
  /** The highest job-update sequence number handed out so far may not exceed this (see UpdateBus). */
  getSeqReservation(): number;
  setSeqReservation(value: number): void;
  close(): void;
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
}

export interface JobFilter {
  states?: readonly JobState[];
  labels?: Record<string, string>;
  provider?: string;
  scheduleId?: string;
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
