// What the job views derive from a Job message: the package format in one word, the time spent over
// all attempts, and the files count as the result has it. Pure, so test/dashboard-charts.test.ts checks them.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { ExportFormat, JobState, type Job, type JobDefinition } from "../index.ts";

/** "ova+gz+qcow2": the package, then its compression, then the disk conversion. */
export function jobFormat(definition: JobDefinition | undefined): string {
  if (!definition) return "–";
  return [definition.format === ExportFormat.OVA ? "ova" : "ovf", definition.compress && "gz", definition.convertTo].filter(Boolean).join("+");
}

/**
 * Seconds spent in all attempts (retry backoff not counted). A running attempt counts up to `now`, so the
 * value moves between reloads; from the daemon's duration_seconds when the attempts are not listed
 * (an older daemon); undefined for a job that never started.
 */
export function jobDuration(job: Job, now = Date.now()): number | undefined {
  if (job.attempts.length > 0) {
    return job.attempts.reduce((sum, a) => {
      if (a.endTime || !a.startTime) return sum + a.durationSeconds;
      return sum + Math.max(0, (now - timestampDate(a.startTime).getTime()) / 1000);
    }, 0);
  }
  if (job.durationSeconds > 0) return job.durationSeconds;
  if (!job.startTime) return undefined;
  const end = job.endTime ? timestampDate(job.endTime).getTime() : now;
  return Math.max(0, (end - timestampDate(job.startTime).getTime()) / 1000);
}

/**
 * Files done / total. A completed job counts what its result lists (the progress counter stops at the
 * provider's files and misses converted disks); otherwise the progress has the latest count.
 */
export function jobFiles(job: Job): { done: number; total: number } | undefined {
  if (job.state === JobState.COMPLETED && job.result) {
    const count = job.result.files.length + job.result.convertedDisks.filter((d) => !job.result!.files.some((f) => f.path === d.path)).length;
    return { done: count, total: count };
  }
  const progress = job.progress;
  return progress && progress.filesTotal > 0 ? { done: progress.filesDone, total: progress.filesTotal } : undefined;
}

/** Bytes per second over the whole export (the result's files over its duration), for a completed job. */
export function averageRate(job: Job): number | undefined {
  const result = job.result;
  if (job.state !== JobState.COMPLETED || !result || result.durationSeconds <= 0) return undefined;
  const bytes = Number(job.progress?.bytesTotal ?? 0n) || result.files.reduce((sum, f) => sum + Number(f.size), 0);
  return bytes > 0 ? bytes / result.durationSeconds : undefined;
}
