import type { Logger } from "pino";
import type { JobDefinition, JobProgress, JobResult, VSphereConnection } from "../domain/job.ts";
import type { VirtualMachine, VMQuery } from "../domain/vm.ts";
import type { Converter } from "../export/convert.ts";

/** What the engine hands a provider for one run of one job. */
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
  /** A file's transfer took this long (the disk download duration metric). */
  observeDownload?(seconds: number): void;
}

export type ExportResult = Omit<JobResult, "durationSeconds">;

/** What the daemon makes once and shares with every provider. */
export interface DaemonTools {
  /** qemu-img, capped across jobs; undefined when it is unavailable (jobs with convert_to are refused then). */
  converter?: Converter;
}

export interface GetVMQuery {
  connection?: VSphereConnection;
  /** Inventory path, name, managed object reference or UUID. */
  vm: string;
}

/**
 * A hypervisor the daemon exports from. Errors thrown are HypervisordErrors;
 * those with `retryable` set are retried by the engine with backoff.
 */
export interface Provider {
  readonly name: string;
  /** Whether export() can continue from a saved checkpoint after an interruption. */
  readonly resumable: boolean;
  /** Checks a definition at submission; throws InvalidArgumentError naming the field. */
  validate?(definition: JobDefinition): void;
  listVMs?(query: VMQuery, signal: AbortSignal): Promise<VirtualMachine[]>;
  getVM?(query: GetVMQuery, signal: AbortSignal): Promise<VirtualMachine>;
  export(definition: JobDefinition, context: ExportContext): Promise<ExportResult>;
  /** Counters for GetStatus (e.g. session reuse). */
  stats?(): Promise<Record<string, number>>;
  /** Releases sessions and connections; called once at shutdown. */
  close?(): Promise<void>;
}
