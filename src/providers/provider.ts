import type { Logger } from "pino";
import type { AzureConnection, JobDefinition, VSphereConnection } from "../domain/job.ts";
import type { VirtualMachine, VMQuery } from "../domain/vm.ts";
import type { Converter } from "../stages/converter.ts";
import type { ExportContext, ExportResult } from "../stages/export-context.ts";

// The job's context is the export stages' contract (the lower layer): re-exported because every provider takes it.
export type { ExportContext, ExportResult };

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
  /** Provider "azure": its connection. */
  azure?: AzureConnection;
  /** Inventory path, name, managed object reference or UUID (Azure: name, resourceGroup/name or resource id). */
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
