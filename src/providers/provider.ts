import type { Logger } from "pino";
import type { JobDefinition, JobProgress, JobResult, VSphereConnection } from "../domain/job.ts";
import type { VirtualMachine, VMQuery } from "../domain/vm.ts";
import type { Converter } from "../export/convert.ts";
import type { WrittenFiles } from "../files/written-files.ts";

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
  /**
   * Record every file and directory before creating it (see src/files/written-files.ts): when the job fails
   * for good or is cancelled, the engine removes what is recorded here, and only that (unless keep_partial).
   */
  readonly files: WrittenFiles;
  /** A file's transfer took this long (the disk download duration metric). */
  observeDownload?(seconds: number): void;
}

export type ExportResult = Omit<JobResult, "durationSeconds">;

/** Seals secrets a provider keeps in a checkpoint, with the daemon's secrets.encryption_key (the store's SecretBox). */
export interface SecretSealer {
  seal(plain: string): string;
  /** Throws when the value was altered or sealed with another key. */
  open(sealed: string): string;
}

/** What the daemon makes once and shares with every provider. */
export interface DaemonTools {
  /** qemu-img, capped across jobs; undefined when it is unavailable (jobs with convert_to are refused then). */
  converter?: Converter;
  /** The store's key (always present in the daemon; a generated one when none is configured): secrets in checkpoints are sealed with it. */
  secretBox?: SecretSealer;
  /** Snapshots of running VMs made, removed, or whose removal failed (the metrics). */
  onSnapshot?(event: SnapshotEvent): void;
}

/** A snapshot event of a provider, for the metrics. */
export type SnapshotEvent =
  | { kind: "created"; consistency: "application_consistent" | "crash_consistent" }
  | { kind: "removed" }
  | { kind: "removal_failed" };

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
  /**
   * Releases, best effort, what earlier runs of a job that will not run again still hold on the hypervisor
   * according to its checkpoint (an export lease of a process that was killed, or whose own release failed).
   * Returns what of the checkpoint must be kept to try again later (undefined when nothing is held any more).
   */
  releaseLeftovers?(job: { id: string; definition: JobDefinition }, checkpoint: unknown, logger: Logger): Promise<unknown>;
  /**
   * What a checkpoint of an ended job still holds on the hypervisor, as Job.pending_cleanup shows it (e.g. a
   * snapshot whose removal failed); undefined when nothing. Such a checkpoint is kept, a completed job's too, and
   * releaseLeftovers is called again (with backoff, and at every start) until it holds nothing.
   */
  pendingCleanup?(checkpoint: unknown): string | undefined;
  /** Counters for GetStatus (e.g. session reuse). */
  stats?(): Promise<Record<string, number>>;
  /** Releases sessions and connections; called once at shutdown. */
  close?(): Promise<void>;
}
