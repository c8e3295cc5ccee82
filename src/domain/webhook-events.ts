import type { Batch } from "./batch.ts";
import type { Job, JobTransition } from "./job.ts";
import type { RunTrigger } from "./schedule.ts";
import type { PowerState } from "./vm.ts";
import type { WebhookEvent, WebhookEventType } from "./webhook.ts";

/**
 * The events webhooks receive. Payload fields are picked one by one (snake_case, like the API's JSON),
 * never spread from a definition: the vSphere connection and its password never reach a receiver.
 */

/** Most VMs listed in one vm.discovered event. */
export const MAX_DISCOVERED_VMS = 1000;

function event(type: WebhookEventType, time: number, data: Record<string, unknown>): WebhookEvent {
  return { type, timestamp: new Date(time).toISOString(), data };
}

/** The event a job transition announces, if any: a retry (running -> queued) announces none. */
export function jobEvent(job: Job, transition: JobTransition): WebhookEvent | undefined {
  const type = jobEventType(transition);
  if (!type) return undefined;
  const data: Record<string, unknown> = { ...jobData(job), state: transition.toState, reason: transition.reason };
  if (type === "job.completed" || type === "job.failed" || type === "job.cancelled") Object.assign(data, outcomeData(job));
  return event(type, transition.time, data);
}

function jobEventType(transition: JobTransition): WebhookEventType | undefined {
  const { fromState, toState } = transition;
  if (fromState === undefined) return toState === "queued" ? "job.created" : undefined;
  if (fromState === "queued" && toState === "running") return "job.started";
  if (fromState === toState) return undefined;
  if (toState === "completed") return "job.completed";
  if (toState === "failed") return "job.failed";
  if (toState === "cancelled") return "job.cancelled";
  return undefined;
}

function jobData(job: Job): Record<string, unknown> {
  const { definition } = job;
  const data: Record<string, unknown> = {
    job_id: job.id,
    job_name: definition.name,
    vm: definition.vm,
    provider: definition.provider,
    state: job.state,
    attempt: job.attempt,
    labels: { ...definition.labels },
  };
  if (job.scheduleId) data.schedule_id = job.scheduleId;
  return data;
}

function outcomeData(job: Job): Record<string, unknown> {
  const data: Record<string, unknown> = {};
  if (job.startTime !== undefined && job.endTime !== undefined) data.duration_seconds = (job.endTime - job.startTime) / 1000;
  const result = job.result;
  if (result) {
    data.output_dir = result.outputDir;
    if (result.ovfPath) data.ovf_path = result.ovfPath;
    if (result.ovaPath) data.ova_path = result.ovaPath;
    if (result.manifestPath) data.manifest_path = result.manifestPath;
    if (result.artifactManifestPath) data.artifact_manifest_path = result.artifactManifestPath;
    data.file_count = result.files.length;
    data.total_bytes = result.files.reduce((sum, file) => sum + file.size, 0);
  }
  if (job.error) data.error = { code: job.error.code, message: job.error.message };
  return data;
}

/** job.progress (opt-in): the job's progress now. */
export function progressEvent(job: Job, time = Date.now()): WebhookEvent {
  const { progress } = job;
  return event("job.progress", time, {
    ...jobData(job),
    phase: progress.phase,
    percent: progress.percent,
    bytes_done: progress.bytesDone,
    bytes_total: progress.bytesTotal,
    bytes_per_second: progress.bytesPerSecond,
    eta_seconds: progress.etaSeconds,
  });
}

export interface ScheduleTriggered {
  scheduleId: string;
  scheduleName: string;
  runId: string;
  trigger: RunTrigger;
  /** The job the run created ("" when it created a batch). */
  jobId: string;
  /** The batch the run created, when its template has a vm_selector. */
  batchId?: string;
  /** When the run was due (ms since the epoch). */
  scheduledTime: number;
}

export function scheduleTriggeredEvent(run: ScheduleTriggered, time = Date.now()): WebhookEvent {
  return event("schedule.triggered", time, {
    schedule_id: run.scheduleId,
    schedule_name: run.scheduleName,
    run_id: run.runId,
    trigger: run.trigger,
    job_id: run.jobId,
    ...(run.batchId ? { batch_id: run.batchId } : {}),
    scheduled_time: new Date(run.scheduledTime).toISOString(),
  });
}

/** Most failed VMs listed in one batch.completed event (`counts` has them all). */
export const MAX_FAILED_VMS = 1000;

/** batch.completed: a batch ended, whatever its final state, with its counts and the VMs that did not complete. */
export function batchCompletedEvent(batch: Batch, time = batch.endTime ?? Date.now()): WebhookEvent {
  const failed = batch.jobs.filter((j) => j.state === "failed" || j.state === "cancelled");
  const data: Record<string, unknown> = {
    batch_id: batch.id,
    batch_name: batch.name,
    state: batch.state,
    provider: batch.definition.provider,
    labels: { ...batch.definition.labels },
    counts: { ...batch.counts },
    bytes_done: batch.bytesDone,
    bytes_total: batch.bytesTotal,
    create_time: new Date(batch.createTime).toISOString(),
    end_time: new Date(time).toISOString(),
    failed_vms: failed.slice(0, MAX_FAILED_VMS).map((j) => ({
      job_id: j.jobId, vm: j.vm, vm_name: j.vmName, state: j.state,
      ...(j.error ? { error: { code: j.error.code, message: j.error.message } } : {}),
    })),
    failed_vms_truncated: failed.length > MAX_FAILED_VMS,
  };
  if (batch.scheduleId) data.schedule_id = batch.scheduleId;
  if (batch.cancelReason) data.cancel_reason = batch.cancelReason;
  return event("batch.completed", time, data);
}

export interface DiscoveredVm {
  name: string;
  path: string;
  moref: string;
  powerState: PowerState;
}

/** vm.discovered: the VMs a listing found (the first MAX_DISCOVERED_VMS of them; `count` is all). */
export function vmDiscoveredEvent(provider: string, vms: readonly DiscoveredVm[], time = Date.now()): WebhookEvent {
  return event("vm.discovered", time, {
    provider,
    count: vms.length,
    truncated: vms.length > MAX_DISCOVERED_VMS,
    vms: vms.slice(0, MAX_DISCOVERED_VMS).map((vm) => ({ name: vm.name, path: vm.path, moref: vm.moref, power_state: vm.powerState })),
  });
}

/** webhook.test: sent by TestWebhook to that webhook only. */
export function testEvent(webhookId: string, time = Date.now()): WebhookEvent {
  return event("webhook.test", time, { webhook_id: webhookId, message: "a test delivery from hypervisord" });
}
