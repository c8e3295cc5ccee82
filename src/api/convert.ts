import { create } from "@bufbuild/protobuf";
import { TimestampSchema, timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  ExportFormat, JobDefinitionSchema, JobProgressSchema, JobSchema, JobState as JobStatePb, JobTransitionSchema, LogEntrySchema,
  type Job as JobPb, type JobDefinition as JobDefinitionPb, type JobProgress as JobProgressPb, type JobTransition as JobTransitionPb,
  type LogEntry as LogEntryPb,
} from "../../gen/hypervisord/v1/job_pb.js";
import { BatchSchema, BatchState as BatchStatePb, type Batch as BatchPb } from "../../gen/hypervisord/v1/batch_pb.js";
import { JobEventKind, StreamJobUpdatesResponseSchema, type StreamJobUpdatesResponse } from "../../gen/hypervisord/v1/service_pb.js";
import { PowerState as PowerStatePb, VirtualMachineSchema, type VirtualMachine as VirtualMachinePb } from "../../gen/hypervisord/v1/vm_pb.js";
import { redactDefinition, type Job, type JobDefinition, type JobProgress, type JobState, type JobTransition } from "../domain/job.ts";
import type { PowerState, VirtualMachine } from "../domain/vm.ts";
import type { Batch, BatchState } from "../domain/batch.ts";
import type { JobUpdate, JobUpdateKind } from "../engine/update.ts";
import type { LogEntry } from "../store/store.ts";

/** The one place where domain types become generated protobuf messages (and back, for enums). */

const STATE_TO_PB: Record<JobState, JobStatePb> = {
  queued: JobStatePb.QUEUED,
  running: JobStatePb.RUNNING,
  completed: JobStatePb.COMPLETED,
  failed: JobStatePb.FAILED,
  cancelled: JobStatePb.CANCELLED,
};

const PB_TO_STATE = new Map(Object.entries(STATE_TO_PB).map(([k, v]) => [v, k as JobState]));

export function stateToPb(state: JobState): JobStatePb {
  return STATE_TO_PB[state];
}

export function stateFromPb(state: JobStatePb): JobState | undefined {
  return PB_TO_STATE.get(state);
}

const KIND_TO_PB: Record<JobUpdateKind, JobEventKind> = {
  snapshot: JobEventKind.SNAPSHOT,
  created: JobEventKind.CREATED,
  state_changed: JobEventKind.STATE_CHANGED,
  progress: JobEventKind.PROGRESS,
  synced: JobEventKind.SYNCED,
  batch_changed: JobEventKind.BATCH_CHANGED,
};

const BATCH_STATE_TO_PB: Record<BatchState, BatchStatePb> = {
  running: BatchStatePb.RUNNING,
  completed: BatchStatePb.COMPLETED,
  partially_failed: BatchStatePb.PARTIALLY_FAILED,
  failed: BatchStatePb.FAILED,
  cancelled: BatchStatePb.CANCELLED,
};

export function batchStateFromPb(state: BatchStatePb): BatchState | undefined {
  return (Object.entries(BATCH_STATE_TO_PB) as [BatchState, BatchStatePb][]).find(([, v]) => v === state)?.[0];
}

const POWER_TO_PB: Record<PowerState, PowerStatePb> = {
  poweredOff: PowerStatePb.POWERED_OFF,
  poweredOn: PowerStatePb.POWERED_ON,
  suspended: PowerStatePb.SUSPENDED,
  unknown: PowerStatePb.UNSPECIFIED,
};

export function powerStateFromPb(state: PowerStatePb): PowerState | undefined {
  return (Object.entries(POWER_TO_PB) as [PowerState, PowerStatePb][]).find(([, v]) => v === state && v !== PowerStatePb.UNSPECIFIED)?.[0];
}

const ts = (ms: number | undefined) => (ms === undefined ? undefined : timestampFromMs(ms));

/** Like timestampFromMs, for times with a fractional millisecond (update times): nanos must be an integer on the wire. */
function preciseTimestamp(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  return create(TimestampSchema, { seconds: BigInt(seconds), nanos: Math.min(999_999_999, Math.round((ms - seconds * 1000) * 1e6)) });
}
const int64 = (n: number) => BigInt(Math.round(n));

/** Always redacted: no caller ever receives a secret back. */
export function definitionToPb(definition: JobDefinition): JobDefinitionPb {
  const d = redactDefinition(definition);
  return create(JobDefinitionSchema, {
    name: d.name,
    provider: d.provider,
    vm: d.vm,
    vsphere: d.vsphere,
    outputDir: d.outputDir,
    format: d.format === "ova" ? ExportFormat.OVA : ExportFormat.OVF,
    compress: d.compress,
    compressionLevel: d.compressionLevel,
    convertTo: d.convertTo ?? "",
    parallelDownloads: d.parallelDownloads,
    bandwidthLimit: int64(d.bandwidthLimit),
    powerOff: d.powerOff,
    priority: d.priority,
    labels: d.labels,
    requestId: d.requestId ?? "",
    removeDevices: d.removeDevices ?? [],
    includeImageFiles: d.includeImageFiles ?? false,
    manifestAlgorithm: d.manifestAlgorithm ?? "sha256",
    cleanupOvf: d.cleanupOvf ?? false,
    generateManifest: d.generateManifest ?? true,
    verify: d.verify ?? false,
    profile: d.profile ?? "",
    keepPartial: d.keepPartial ?? false,
    runningVmPolicy: d.runningVmPolicy ?? (d.powerOff ? "power_off" : "snapshot"),
    quiesce: d.quiesce ?? true,
    quiescePolicy: d.quiescePolicy ?? "fallback",
    vmSelector: d.vmSelector && {
      folder: d.vmSelector.folder ?? "",
      recursive: d.vmSelector.recursive,
      nameGlob: d.vmSelector.nameGlob ?? "",
      powerStates: d.vmSelector.powerStates.map((p) => POWER_TO_PB[p]),
    },
    maxParallel: d.maxParallel ?? 0,
  });
}

export function progressToPb(p: JobProgress): JobProgressPb {
  return create(JobProgressSchema, {
    phase: p.phase,
    percent: p.percent,
    bytesDone: int64(p.bytesDone),
    bytesTotal: int64(p.bytesTotal),
    filesDone: p.filesDone,
    filesTotal: p.filesTotal,
    currentFile: p.currentFile,
    bytesPerSecond: p.bytesPerSecond,
    etaSeconds: p.etaSeconds,
  });
}

export function jobToPb(job: Job): JobPb {
  return create(JobSchema, {
    id: job.id,
    definition: definitionToPb(job.definition),
    state: stateToPb(job.state),
    progress: progressToPb(job.progress),
    result: job.result && {
      outputDir: job.result.outputDir,
      ovfPath: job.result.ovfPath ?? "",
      ovaPath: job.result.ovaPath ?? "",
      manifestPath: job.result.manifestPath ?? "",
      files: job.result.files.map((f) => ({ path: f.path, size: int64(f.size), sha256: f.sha256 })),
      durationSeconds: job.result.durationSeconds,
      warnings: job.result.warnings,
      compressionRatio: job.result.compressionRatio ?? 0,
      artifactManifestPath: job.result.artifactManifestPath ?? "",
      convertedDisks: (job.result.convertedDisks ?? []).map((c) => ({ ...c, size: int64(c.size), verification: c.verification ?? "", verificationDetail: c.verificationDetail ?? "" })),
      ovaMethod: job.result.ovaMethod ?? "",
      consistency: job.result.consistency ?? "",
      applicationConsistent: job.result.consistency === "powered_off" || job.result.consistency === "application_consistent",
    },
    error: job.error,
    attempt: job.attempt,
    maxAttempts: job.maxAttempts,
    createTime: ts(job.createTime),
    startTime: ts(job.startTime),
    endTime: ts(job.endTime),
    nextAttemptTime: job.state === "queued" ? ts(job.nextAttemptTime) : undefined,
    scheduleId: job.scheduleId ?? "",
    batchId: job.batchId ?? "",
    pendingCleanup: job.pendingCleanup ?? "",
  });
}

export function transitionToPb(t: JobTransition): JobTransitionPb {
  return create(JobTransitionSchema, {
    seq: BigInt(t.seq),
    fromState: t.fromState ? stateToPb(t.fromState) : JobStatePb.UNSPECIFIED,
    toState: stateToPb(t.toState),
    reason: t.reason,
    actor: t.actor,
    time: timestampFromMs(t.time),
  });
}

const updateCache = new WeakMap<JobUpdate, StreamJobUpdatesResponse>();

/** Updates are shared by all subscribers: convert each once. */
export function updateToPb(update: JobUpdate): StreamJobUpdatesResponse {
  let message = updateCache.get(update);
  if (!message) {
    message = create(StreamJobUpdatesResponseSchema, {
      seq: BigInt(update.seq),
      jobId: update.jobId,
      kind: KIND_TO_PB[update.kind],
      state: update.state ? stateToPb(update.state) : JobStatePb.UNSPECIFIED,
      progress: update.progress && progressToPb(update.progress),
      job: update.job && jobToPb(update.job),
      time: preciseTimestamp(update.time),
      reason: update.reason ?? "",
      batch: update.batch && batchToPb(update.batch),
    });
    updateCache.set(update, message);
  }
  return message;
}

/** A batch with its children; the definition redacted like a job's. */
export function batchToPb(batch: Batch): BatchPb {
  return create(BatchSchema, {
    id: batch.id,
    name: batch.name,
    state: BATCH_STATE_TO_PB[batch.state],
    definition: definitionToPb(batch.definition),
    counts: batch.counts,
    bytesDone: int64(batch.bytesDone),
    bytesTotal: int64(batch.bytesTotal),
    maxParallel: batch.maxParallel,
    scheduleId: batch.scheduleId ?? "",
    createTime: ts(batch.createTime),
    endTime: ts(batch.endTime),
    jobs: batch.jobs.map((j) => ({
      jobId: j.jobId, vm: j.vm, vmName: j.vmName, state: stateToPb(j.state), bytesDone: int64(j.bytesDone), bytesTotal: int64(j.bytesTotal), error: j.error,
    })),
  });
}

export function logEntryToPb(entry: LogEntry): LogEntryPb {
  return create(LogEntrySchema, {
    id: BigInt(entry.id),
    time: timestampFromMs(entry.time),
    level: entry.level,
    message: entry.message,
    fieldsJson: JSON.stringify(entry.fields),
  });
}

export function vmToPb(vm: VirtualMachine, provider: string): VirtualMachinePb {
  return create(VirtualMachineSchema, {
    ...vm,
    memoryMb: int64(vm.memoryMb),
    powerState: POWER_TO_PB[vm.powerState],
    disks: vm.disks.map((d) => ({ ...d, capacityBytes: int64(d.capacityBytes) })),
    provider,
  });
}
