/** How jobs look in tables. */
import { ExportFormat, JobState, type ConvertedDisk, type Job, type JobAttempt, type JobProgress } from "../../gen/hypervisord/v1/job_pb.js";
import { EXIT } from "./errors.ts";
import { bytes, duration, enumName, orDash, secondsBetween, time } from "./format.ts";
import { keyValues, table } from "./table.ts";

export function stateName(state: JobState): string {
  return enumName(JobState, state);
}

export function percent(progress: JobProgress | undefined): string {
  return progress ? `${progress.percent.toFixed(progress.percent >= 100 || progress.percent === 0 ? 0 : 1)}%` : "-";
}

/**
 * How long the job ran (or has been running): every attempt's time together (Job.duration_seconds), so a job
 * that failed after 3 attempts shows all 3; from a daemon older than that field, the last run's.
 */
export function jobDuration(job: Job): string {
  const seconds = job.durationSeconds || job.result?.durationSeconds || secondsBetween(job.startTime, job.endTime);
  return seconds === undefined ? "-" : duration(seconds);
}

/** The jobs table; `wide` (-o wide) adds provider, attempt, priority, format, output dir, batch, schedule and error code. */
export function jobsTable(jobs: readonly Job[], wide = false): string {
  const headers = ["ID", "NAME", "STATE", "PROGRESS", "SIZE", "CREATED", "DURATION"];
  const wideHeaders = ["PROVIDER", "ATTEMPT", "PRIORITY", "FORMAT", "OUTPUT DIR", "BATCH", "SCHEDULE", "ERROR"];
  return table(
    wide ? [...headers, ...wideHeaders] : headers,
    jobs.map((job) => {
      const d = job.definition;
      const row = [
        job.id,
        d?.name || d?.vm || "-",
        stateName(job.state),
        percent(job.progress),
        job.progress && job.progress.bytesTotal > 0n ? bytes(job.progress.bytesTotal) : "-",
        time(job.createTime),
        jobDuration(job),
      ];
      if (!wide) return row;
      return [
        ...row,
        orDash(d?.provider),
        job.maxAttempts ? `${job.attempt}/${job.maxAttempts}` : String(job.attempt),
        orDash(d?.priority),
        d ? enumName(ExportFormat, d.format) : "-",
        orDash(job.result?.outputDir || d?.outputDir),
        orDash(job.batchId),
        orDash(job.scheduleId),
        orDash(job.error?.code),
      ];
    }),
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
    ["Progress", progressText(job)],
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
    ["Duration", job.startTime ? `${jobDuration(job)}${job.attempts.length > 1 ? ` (${job.attempts.length} attempts)` : ""}` : undefined],
    ["Error", job.error ? `${job.error.code}: ${job.error.message}` : undefined],
    ["Result", job.result ? job.result.ovaPath || job.result.ovfPath || job.result.outputDir : undefined],
    ["Consistency", job.result?.consistency ? job.result.consistency.replace(/_/g, "-") : undefined],
    ["Pending cleanup", job.pendingCleanup || undefined],
    ["Warnings", job.result && job.result.warnings.length > 0 ? job.result.warnings.join("; ") : undefined],
  ]);
  const files = job.result?.files ?? [];
  const converted = job.result?.convertedDisks ?? [];
  return [
    details,
    files.length > 0 && `Files:\n${table(["PATH", "SIZE", "SHA256"], files.map((f) => [f.path, bytes(f.size), f.sha256 || "-"]))}`,
    converted.length > 0 && `Converted disks:\n${convertedTable(converted)}`,
    job.attempts.length > 1 && `Attempts:\n${attemptsTable(job.attempts)}`,
  ].filter(Boolean).join("\n\n");
}

/**
 * Percent, phase, bytes and files while the job runs. Once it completed, the result's files are counted
 * instead of the last progress update's (which may be a later phase's count, such as conversion's "0 of 1").
 */
function progressText(job: Job): string | undefined {
  const p = job.progress;
  if (!p) return undefined;
  const result = job.result;
  if (job.state === JobState.COMPLETED && result) {
    const converted = result.convertedDisks.length > 0 ? `, ${result.convertedDisks.length} converted` : "";
    return `${percent(p)}, ${bytes(p.bytesTotal || p.bytesDone)}, ${result.files.length} ${result.files.length === 1 ? "file" : "files"}${converted}`;
  }
  const files = p.filesTotal > 0 ? `, files ${p.filesDone}/${p.filesTotal}` : "";
  return `${percent(p)}${p.phase ? ` (${p.phase})` : ""}, ${bytes(p.bytesDone)} of ${bytes(p.bytesTotal)}${files}`;
}

/** Converted disks with their `qemu-img compare` verification ("-" when not verified). */
function convertedTable(disks: readonly ConvertedDisk[]): string {
  return table(["SOURCE", "CONVERTED", "FORMAT", "SIZE", "VERIFIED", "SHA256"], disks.map((d) => [
    d.source, d.path, d.format, bytes(d.size),
    d.verification ? `${d.verification}${d.verificationDetail ? ` (${d.verificationDetail})` : ""}` : "-", d.sha256 || "-",
  ]));
}

/** Each run of the job: when, how long, how it ended ("requeued": a retry follows, or the daemon restarted). */
function attemptsTable(attempts: readonly JobAttempt[]): string {
  const outcome = (a: JobAttempt) => (a.outcome === JobState.UNSPECIFIED ? "running" : a.outcome === JobState.QUEUED ? "requeued" : stateName(a.outcome));
  return table(["ATTEMPT", "STARTED", "ENDED", "DURATION", "OUTCOME", "REASON"], attempts.map((a) => [
    String(a.attempt), time(a.startTime), time(a.endTime), duration(a.durationSeconds), outcome(a), a.reason || "-",
  ]));
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
  return job.state === JobState.COMPLETED ? EXIT.OK : job.state === JobState.CANCELLED ? EXIT.CANCELLED : EXIT.FAILED;
}
