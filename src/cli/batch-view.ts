/** How batches (one submission with a vm_selector, a job per VM) look in tables and lines. */
import { BatchState, type Batch, type BatchCounts, type BatchJob } from "../../gen/hypervisord/v1/batch_pb.js";
import type { VmSelector } from "../../gen/hypervisord/v1/job_pb.js";
import { PowerState } from "../../gen/hypervisord/v1/vm_pb.js";
import { bytes, duration, enumName, orDash, secondsBetween, time } from "./format.ts";
import { stateName } from "./job-view.ts";
import { keyValues, table } from "./table.ts";

export const BATCH_STATES: Record<string, BatchState> = {
  running: BatchState.RUNNING, completed: BatchState.COMPLETED, "partially-failed": BatchState.PARTIALLY_FAILED,
  failed: BatchState.FAILED, cancelled: BatchState.CANCELLED,
};

export function batchStateName(state: BatchState): string {
  return enumName(BatchState, state);
}

/** "2 completed, 1 running, 3 queued" (states with none left out); "0 VMs" for an empty count. */
export function countsText(counts: Omit<BatchCounts, "$typeName" | "$unknown"> | undefined): string {
  if (!counts) return "-";
  const parts = (["completed", "running", "queued", "failed", "cancelled"] as const)
    .filter((state) => counts[state] > 0)
    .map((state) => `${counts[state]} ${state}`);
  return parts.length ? parts.join(", ") : "0 VMs";
}

/** "4/6 done": ended children over all, the compact form for tables. */
export function doneText(counts: BatchCounts | undefined): string {
  if (!counts) return "-";
  return `${counts.completed + counts.failed + counts.cancelled}/${counts.total} done`;
}

function sizeText(done: bigint, total: bigint): string {
  return total > 0n ? `${bytes(done)} of ${bytes(total)}` : "-";
}

/** The batches table; `wide` (-o wide) adds max parallel, schedule, end time and duration. */
export function batchesTable(batches: readonly Batch[], wide = false): string {
  const headers = ["ID", "NAME", "STATE", "VMS", "COUNTS", "SIZE", "CREATED"];
  return table(wide ? [...headers, "MAX PARALLEL", "SCHEDULE", "ENDED", "DURATION"] : headers, batches.map((b) => {
    const row = [b.id, b.name || "-", batchStateName(b.state), doneText(b.counts), countsText(b.counts), sizeText(b.bytesDone, b.bytesTotal), time(b.createTime)];
    if (!wide) return row;
    const seconds = secondsBetween(b.createTime, b.endTime);
    return [...row, b.maxParallel > 0 ? String(b.maxParallel) : "-", orDash(b.scheduleId), time(b.endTime), seconds === undefined ? "-" : duration(seconds)];
  }));
}

export function batchJobsTable(jobs: readonly BatchJob[]): string {
  return table(["VM", "JOB", "STATE", "SIZE", "ERROR"], jobs.map((j) => [
    j.vmName || j.vm, j.jobId, stateName(j.state), sizeText(j.bytesDone, j.bytesTotal), j.error ? `${j.error.code}: ${j.error.message}` : "",
  ]));
}

/** What a selector selects: "folder /DC0/vm/web, name web-*, power powered-on". */
export function selectorText(s: VmSelector | undefined): string | undefined {
  if (!s) return undefined;
  const parts = [
    s.folder && `folder ${s.folder}${s.recursive === false ? " (not recursive)" : ""}`,
    s.nameGlob && `name ${s.nameGlob}`,
    s.powerStates.length > 0 && `power ${s.powerStates.map((p) => enumName(PowerState, p)).join("|")}`,
  ].filter(Boolean);
  return parts.join(", ");
}

export function batchDetails(batch: Batch): string {
  const seconds = secondsBetween(batch.createTime, batch.endTime);
  const details = keyValues([
    ["ID", batch.id],
    ["Name", orDash(batch.name)],
    ["State", batchStateName(batch.state)],
    ["Selector", selectorText(batch.definition?.vmSelector)],
    ["VMs", batch.counts ? `${batch.counts.total}: ${countsText(batch.counts)}` : undefined],
    ["Size", sizeText(batch.bytesDone, batch.bytesTotal)],
    ["Max parallel", batch.maxParallel > 0 ? String(batch.maxParallel) : undefined],
    ["Schedule", batch.scheduleId || undefined],
    ["Created", time(batch.createTime)],
    ["Ended", batch.endTime ? time(batch.endTime) : undefined],
    ["Duration", seconds === undefined ? undefined : duration(seconds)],
  ]);
  return batch.jobs.length ? `${details}\n\n${batchJobsTable(batch.jobs)}` : details;
}

/** The line printed when a watched batch ends: "batch b-1 completed in 12s: 6 completed". */
export function batchOutcomeLine(batch: Batch): string {
  const seconds = secondsBetween(batch.createTime, batch.endTime);
  const took = seconds === undefined ? "" : ` in ${duration(seconds)}`;
  const failed = batch.jobs.filter((j) => j.error).map((j) => j.vmName || j.vm);
  const which = failed.length ? `; not exported: ${failed.join(", ")}` : "";
  return `batch ${batch.id} ${batchStateName(batch.state)}${took}: ${countsText(batch.counts)}${which}`;
}

/** Exit code of a watched batch: 0 completed, 1 failed or partially failed, 2 cancelled. */
export function batchExitCode(batch: Batch): number {
  return batch.state === BatchState.COMPLETED ? 0 : batch.state === BatchState.CANCELLED ? 2 : 1;
}
