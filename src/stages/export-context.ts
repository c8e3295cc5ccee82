import type { Logger } from "pino";
import type { JobProgress, JobResult } from "../domain/job.ts";
import type { WrittenFiles } from "../files/written-files.ts";

/**
 * What the engine hands a provider for one run of one job, and what the export stages after packaging
 * (finish-export.ts) use of it: defined here, below providers/, so that the stages never import a provider.
 */
export interface ExportContext {
  readonly jobId: string;
  /** 1 for the first run; retries count up. A resumed run keeps its attempt. */
  readonly attempt: number;
  /** Aborted on cancel (reason: JobCancelledError) or shutdown (reason: ShutdownError). */
  readonly signal: AbortSignal;
  /** The job's own logger; its records are kept with the job (GetJobLogs). */
  readonly logger: Logger;
  /** Report progress; fields left out keep their last value. Cheap: the engine throttles. */
  progress(update: Partial<JobProgress>): void;
  /** The checkpoint saved by an earlier run of this job (after a crash or a retry), if any. */
  loadCheckpoint<T>(): T | undefined;
  /** Persist where the export stands, so that a later run can resume from it. Synchronous and durable. */
  saveCheckpoint(value: unknown): void;
  /**
   * Record every file and directory before creating it (see src/files/written-files.ts): when the job fails
   * for good or is cancelled, the engine removes what is recorded here, and only that (unless keep_partial).
   */
  readonly files: WrittenFiles;
  /** A file's transfer took this long (the disk download duration metric). */
  observeDownload?(seconds: number): void;
}

export type ExportResult = Omit<JobResult, "durationSeconds">;
