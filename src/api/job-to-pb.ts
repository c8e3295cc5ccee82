import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  ExportFormat, JobAttemptSchema, JobDefinitionSchema, JobProgressSchema, JobSchema, JobState as JobStatePb, JobTransitionSchema, LogEntrySchema,
  type Job as JobPb, type JobAttempt as JobAttemptPb, type JobDefinition as JobDefinitionPb, type JobProgress as JobProgressPb, type JobTransition as JobTransitionPb,
  type LogEntry as LogEntryPb,
} from "../../gen/hypervisord/v1/job_pb.js";
import {
  attemptSeconds, jobDurationSeconds, redactDefinition, type Job, type JobAttempt, type JobDefinition, type JobProgress, type JobState,
  type JobTransition,
} from "../domain/job.ts";
import type { LogEntry } from "../store/store.ts";
import { int64, timestampOf } from "./pb-scalars.ts";
import { powerStateToPb } from "./power-state.ts";

/** Jobs, their definitions, progress, history and logs as protobuf messages (and job states back). */

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

/** Always redacted: no caller ever receives a secret back. */
export function definitionToPb(definition: JobDefinition): JobDefinitionPb {
  const d = redactDefinition(definition);
  return create(JobDefinitionSchema, {
    name: d.name,
    provider: d.provider,
    vm: d.vm,
    vsphere: d.vsphere,
    azure: d.azure,
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
      powerStates: d.vmSelector.powerStates.map((p) => powerStateToPb(p)),
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

/** `now` makes a running attempt count up to that moment. */
export function jobToPb(job: Job, now = Date.now()): JobPb {
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
    createTime: timestampOf(job.createTime),
    startTime: timestampOf(job.startTime),
    endTime: timestampOf(job.endTime),
    nextAttemptTime: job.state === "queued" ? timestampOf(job.nextAttemptTime) : undefined,
    scheduleId: job.scheduleId ?? "",
    batchId: job.batchId ?? "",
    pendingCleanup: job.pendingCleanup ?? "",
    nodeId: job.nodeId ?? "",
    durationSeconds: jobDurationSeconds(job, now),
    attempts: job.attempts.map((a) => attemptToPb(a, now)),
  });
}

function attemptToPb(a: JobAttempt, now: number): JobAttemptPb {
  return create(JobAttemptSchema, {
    attempt: a.attempt,
    startTime: timestampFromMs(a.startTime),
    endTime: timestampOf(a.endTime),
    durationSeconds: attemptSeconds(a, now),
    outcome: a.outcome ? stateToPb(a.outcome) : JobStatePb.UNSPECIFIED,
    reason: a.reason ?? "",
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

export function logEntryToPb(entry: LogEntry): LogEntryPb {
  return create(LogEntrySchema, {
    id: BigInt(entry.id),
    time: timestampFromMs(entry.time),
    level: entry.level,
    message: entry.message,
    fieldsJson: JSON.stringify(entry.fields),
  });
}
