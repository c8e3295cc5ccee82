/** How jobs look in tables. */
import { ExportFormat, JobState, type Job, type JobProgress } from "../../gen/hypervisord/v1/job_pb.js";
import { bytes, duration, enumName, orDash, secondsBetween, time } from "./format.ts";
import { keyValues, table } from "./table.ts";

export function stateName(state: JobState): string {
  return enumName(JobState, state);
}

export function percent(progress: JobProgress | undefined): string {
  return progress ? `${progress.percent.toFixed(progress.percent >= 100 || progress.percent === 0 ? 0 : 1)}%` : "-";
}

/** How long the job ran (or has been running). */
export function jobDuration(job: Job): string {
  const seconds = job.result?.durationSeconds || secondsBetween(job.startTime, job.endTime);
  return seconds === undefined ? "-" : duration(seconds);
}

export function jobsTable(jobs: readonly Job[]): string {
  return table(
    ["ID", "NAME", "STATE", "PROGRESS", "SIZE", "CREATED", "DURATION"],
    jobs.map((job) => [
      job.id,
      job.definition?.name || job.definition?.vm || "-",
      stateName(job.state),
      percent(job.progress),
      job.progress && job.progress.bytesTotal > 0n ? bytes(job.progress.bytesTotal) : "-",
      time(job.createTime),
      jobDuration(job),
    ]),
  );
}

export function jobDetails(job: Job): string {
  const d = job.definition;
  const p = job.progress;
  const details = keyValues([
    ["ID", job.id],
    ["Name", orDash(d?.name)],
    ["VM", orDash(d?.vm)],
    ["Provider", orDash(d?.provider)],
    ["State", stateName(job.state)],
    ["Progress", p ? `${percent(p)}${p.phase ? ` (${p.phase})` : ""}, ${bytes(p.bytesDone)} of ${bytes(p.bytesTotal)}` : undefined],
    ["Attempt", job.maxAttempts ? `${job.attempt} of ${job.maxAttempts}` : String(job.attempt)],
    ["Format", d ? enumName(ExportFormat, d.format) : undefined],
    ["Output dir", d?.outputDir || undefined],
    ["Priority", d?.priority || undefined],
    ["Profile", d?.profile || undefined],
    ["Labels", d && Object.keys(d.labels).length > 0 ? Object.entries(d.labels).map(([k, v]) => `${k}=${v}`).join(", ") : undefined],
    ["Schedule", job.scheduleId || undefined],
    ["Batch", job.batchId || undefined],
    ["Running VM", d && (d.runningVmPolicy || d.quiesce === false || d.quiescePolicy)
      ? [d.runningVmPolicy, d.quiesce === false && "no quiesce", d.quiescePolicy && `quiesce ${d.quiescePolicy}`].filter(Boolean).join(", ")
      : undefined],
    ["Created", time(job.createTime)],
    ["Started", job.startTime ? time(job.startTime) : undefined],
    ["Ended", job.endTime ? time(job.endTime) : undefined],
    ["Next attempt", job.nextAttemptTime ? time(job.nextAttemptTime) : undefined],
    ["Duration", job.startTime ? jobDuration(job) : undefined],
    ["Error", job.error ? `${job.error.code}: ${job.error.message}` : undefined],
    ["Result", job.result ? job.result.ovaPath || job.result.ovfPath || job.result.outputDir : undefined],
    ["Consistency", job.result?.consistency ? job.result.consistency.replace(/_/g, "-") : undefined],
    ["Pending cleanup", job.pendingCleanup || undefined],
    ["Warnings", job.result && job.result.warnings.length > 0 ? job.result.warnings.join("; ") : undefined],
  ]);
  const files = job.result?.files ?? [];
  if (files.length === 0) return details;
  return `${details}\n\nFiles:\n${table(["PATH", "SIZE", "SHA256"], files.map((f) => [f.path, bytes(f.size), f.sha256 || "-"]))}`;
}

/** The one line printed when a job ends: "completed in 3.2s: /srv/exports/web-01". */
export function outcomeLine(job: Job): string {
  switch (job.state) {
    case JobState.COMPLETED:
      return `job ${job.id} completed in ${jobDuration(job)}: ${job.result?.ovaPath || job.result?.outputDir || "-"}`;
    case JobState.FAILED:
      return `job ${job.id} failed: ${job.error ? `${job.error.code}: ${job.error.message}` : "unknown error"}`;
    case JobState.CANCELLED:
      return `job ${job.id} cancelled`;
    default:
      return `job ${job.id} is ${stateName(job.state)}`;
  }
}

/** Exit code of `watch`: 0 completed, 1 failed, 2 cancelled. */
export function exitCodeOf(job: Job): number {
  return job.state === JobState.COMPLETED ? 0 : job.state === JobState.CANCELLED ? 2 : 1;
}
