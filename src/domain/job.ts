/** Domain types of jobs. Generated protobuf types stop at src/api; everything below uses these. */

import { redactUrl } from "../redact-url.ts";
import type { PowerState } from "./vm.ts";

export const JOB_STATES = ["queued", "running", "completed", "failed", "cancelled"] as const;
export type JobState = (typeof JOB_STATES)[number];

export const FINAL_STATES: ReadonlySet<JobState> = new Set(["completed", "failed", "cancelled"]);

export function isFinal(state: JobState): boolean {
  return FINAL_STATES.has(state);
}

export const PRIORITIES = ["low", "normal", "high", "critical"] as const;
export type Priority = (typeof PRIORITIES)[number];

/** Higher runs first. */
export const PRIORITY_RANK: Record<Priority, number> = { low: 0, normal: 1, high: 2, critical: 3 };

export const EXPORT_FORMATS = ["ovf", "ova"] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export const CONVERT_FORMATS = ["qcow2", "raw", "vdi"] as const;
export type ConvertFormat = (typeof CONVERT_FORMATS)[number];

/** Virtual devices that may be left out of the written OVF descriptor. */
export const REMOVABLE_DEVICES = ["cdrom", "floppy", "serial", "parallel", "usb", "sound"] as const;
export type RemovableDevice = (typeof REMOVABLE_DEVICES)[number];

export const MANIFEST_ALGORITHMS = ["sha256", "sha1"] as const;
export type ManifestAlgorithm = (typeof MANIFEST_ALGORITHMS)[number];

/** What to do with a powered-on VM: export a snapshot of it (default), power it off first, or refuse. */
export const RUNNING_VM_POLICIES = ["snapshot", "power_off", "fail"] as const;
export type RunningVmPolicy = (typeof RUNNING_VM_POLICIES)[number];

/** When the host cannot quiesce the guest: snapshot again without quiescing (default), or fail. */
export const QUIESCE_POLICIES = ["fallback", "fail"] as const;
export type QuiescePolicy = (typeof QUIESCE_POLICIES)[number];

/** "powered_off": the VM was off; "application_consistent": a quiesced snapshot; "crash_consistent": a snapshot without quiescing. */
export type Consistency = "powered_off" | "application_consistent" | "crash_consistent";

/** Which VMs a definition selects instead of naming one (each becomes a child job of a batch). */
export interface VmSelector {
  /** Inventory folder path ("/DC0/vm/production"). */
  folder?: string;
  /** Also the subfolders' VMs (default true). */
  recursive: boolean;
  /** Glob on the VM name. */
  nameGlob?: string;
  /** Empty: any power state. */
  powerStates: PowerState[];
}

export interface VSphereConnection {
  url: string;
  username: string;
  password: string;
  insecure: boolean;
  thumbprint: string;
}

/** A service principal of one subscription (provider "azure"); endpoints default to Azure's public cloud. */
export interface AzureConnection {
  tenantId: string;
  clientId: string;
  clientSecret: string;
  subscriptionId: string;
  /** Limits discovery and name lookups to one resource group; "" for the whole subscription. */
  resourceGroup: string;
  /** "" means https://login.microsoftonline.com. */
  authorityHost: string;
  /** "" means https://management.azure.com. */
  resourceManager: string;
}

export interface JobDefinition {
  name: string;
  provider: string;
  vm: string;
  vsphere?: VSphereConnection;
  /** Provider "azure": the subscription and credentials (else the daemon's default). */
  azure?: AzureConnection;
  /** Absolute, inside an allowed output root. */
  outputDir: string;
  format: ExportFormat;
  compress: boolean;
  compressionLevel: number;
  convertTo?: ConvertFormat;
  parallelDownloads: number;
  /** Bytes per second; 0 is unlimited. */
  bandwidthLimit: number;
  powerOff: boolean;
  priority: Priority;
  labels: Record<string, string>;
  requestId?: string;
  // Added after the first release: optional, so that definitions stored before them still load.
  /** Left out of the written descriptor; the VM is not changed. */
  removeDevices?: RemovableDevice[];
  includeImageFiles?: boolean;
  /** Default "sha256". */
  manifestAlgorithm?: ManifestAlgorithm;
  cleanupOvf?: boolean;
  /** Default true. */
  generateManifest?: boolean;
  /** qemu-img compare each converted disk with its source. */
  verify?: boolean;
  /** The profile whose settings filled the fields the submission left empty. */
  profile?: string;
  /** Keep what a failed or cancelled export wrote instead of removing it. */
  keepPartial?: boolean;
  /** Default "snapshot" ("power_off" when powerOff is set). */
  runningVmPolicy?: RunningVmPolicy;
  /** Quiesce the snapshot (default true). */
  quiesce?: boolean;
  /** Default "fallback". */
  quiescePolicy?: QuiescePolicy;
  /** Set on a batch's definition (vm is empty then); its child jobs have vm set and no selector. */
  vmSelector?: VmSelector;
  /** A batch's own cap on its running jobs; 0 or unset: none. */
  maxParallel?: number;
}

/** The policy in force for a powered-on VM (power_off is the older spelling of the power_off policy). */
export function runningVmPolicyOf(definition: JobDefinition): RunningVmPolicy {
  if (definition.runningVmPolicy) return definition.runningVmPolicy;
  return definition.powerOff ? "power_off" : "snapshot";
}

export interface JobProgress {
  phase: string;
  percent: number;
  bytesDone: number;
  bytesTotal: number;
  filesDone: number;
  filesTotal: number;
  currentFile: string;
  bytesPerSecond: number;
  etaSeconds: number;
}

export const EMPTY_PROGRESS: JobProgress = Object.freeze({
  phase: "",
  percent: 0,
  bytesDone: 0,
  bytesTotal: 0,
  filesDone: 0,
  filesTotal: 0,
  currentFile: "",
  bytesPerSecond: 0,
  etaSeconds: 0,
});

export interface ResultFile {
  path: string;
  size: number;
  sha256: string;
}

export interface JobResult {
  outputDir: string;
  ovfPath?: string;
  ovaPath?: string;
  manifestPath?: string;
  files: ResultFile[];
  durationSeconds: number;
  warnings: string[];
  /** Compressed / uncompressed size of a compressed OVA. */
  compressionRatio?: number;
  artifactManifestPath?: string;
  convertedDisks?: ConvertedDisk[];
  /** "streamed" or "files". */
  ovaMethod?: string;
  /** The guest's family ("linux", "windows", "freebsd", "other"), for metrics. */
  osHint?: string;
  consistency?: Consistency;
}

export interface ConvertedDisk {
  /** Relative to the result's outputDir, like `path`. */
  source: string;
  path: string;
  format: ConvertFormat;
  size: number;
  sha256: string;
  /** Set when verified. */
  verification?: "identical" | "different";
  verificationDetail?: string;
}

export interface JobError {
  code: string;
  message: string;
  retryable: boolean;
}

export interface Job {
  id: string;
  definition: JobDefinition;
  state: JobState;
  progress: JobProgress;
  result?: JobResult;
  error?: JobError;
  attempt: number;
  maxAttempts: number;
  /** Milliseconds since the epoch. */
  createTime: number;
  startTime?: number;
  endTime?: number;
  nextAttemptTime?: number;
  scheduleId?: string;
  /** Set for the child jobs of a batch. */
  batchId?: string;
  /** What the job still holds on the hypervisor that the daemon keeps trying to remove (e.g. a snapshot). */
  pendingCleanup?: string;
  /** The daemon (node id) that runs it or ran it last, when several share one PostgreSQL store. */
  nodeId?: string;
  /** Every run of the job, oldest first (kept by the store with the transitions that start and end them). */
  attempts: JobAttempt[];
}

/** One run: from a move to running to the next move out of it. */
export interface JobAttempt {
  /** 1 for the first run; a run resumed after a restart counts as a run of its own. */
  attempt: number;
  /** Milliseconds since the epoch. */
  startTime: number;
  /** Unset while the run goes on. */
  endTime?: number;
  /** The state the run moved the job to (queued: a retry or a resume later); unset while it runs. */
  outcome?: JobState;
  /** The reason of the transition that ended it. */
  reason?: string;
}

/** A run's length in seconds; a running one up to `now`. */
export function attemptSeconds(attempt: JobAttempt, now: number): number {
  return Math.max(0, (attempt.endTime ?? now) - attempt.startTime) / 1000;
}

/** Time spent running, over every attempt: the time queued between them (retry backoff) is not counted. */
export function jobDurationSeconds(job: Job, now: number): number {
  return job.attempts.reduce((sum, a) => sum + attemptSeconds(a, now), 0);
}

/** The attempts after a transition: a move to running starts one, the next move out of running ends it. */
export function attemptsAfter(attempts: readonly JobAttempt[], t: JobTransition): JobAttempt[] {
  if (t.toState === "running") return [...attempts, { attempt: attempts.length + 1, startTime: t.time }];
  const last = attempts[attempts.length - 1];
  if (t.fromState !== "running" || !last || last.endTime !== undefined) return [...attempts];
  return [...attempts.slice(0, -1), { ...last, endTime: t.time, outcome: t.toState, reason: t.reason }];
}

/** One state transition, as recorded in the job's history. */
export interface JobTransition {
  seq: number;
  jobId: string;
  fromState?: JobState;
  toState: JobState;
  reason: string;
  actor: string;
  time: number;
}

/** The definition without secrets: what responses, logs and webhooks may show. */
export function redactDefinition(definition: JobDefinition): JobDefinition {
  if (!definition.vsphere && !definition.azure) return definition;
  return {
    ...definition,
    // A URL with credentials in it (stored by an earlier version, which accepted them) is shown redacted too.
    ...(definition.vsphere ? { vsphere: { ...definition.vsphere, url: redactUrl(definition.vsphere.url), password: "" } } : {}),
    ...(definition.azure ? { azure: { ...definition.azure, clientSecret: "" } } : {}),
  };
}
