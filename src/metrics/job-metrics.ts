import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { BATCH_STATES } from "../domain/batch.ts";
import { isFinal, type Job, type JobState, type JobTransition } from "../domain/job.ts";
import type { JobObserver } from "../engine/engine.ts";

/** Seconds: a small test VM takes seconds, a multi-TiB one hours. */
export const EXPORT_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400];

export type OsType = "linux" | "windows" | "other" | "unknown";

const FINAL_STATUSES = ["completed", "failed", "cancelled"] as const satisfies readonly JobState[];

export interface JobMetricsOptions {
  registry: Registry;
  /** Providers whose job series should exist (at 0) before their first job, so that rate() and ratios work from the start. */
  providers?: readonly string[];
  /** The guest OS of an exported VM, when something knows it; "unknown" otherwise. */
  osTypeOf?(job: Job): string | undefined;
}

/**
 * Follows the engine's committed state changes: finished jobs, their durations, exported VMs and
 * bytes, error codes and retries. Only transitions count, so a job is counted once whatever the
 * number of scrapes, and the engine needs no knowledge of metrics.
 */
export function createJobMetrics(options: JobMetricsOptions): JobObserver {
  const { registry } = options;
  const jobs = new Counter({
    name: "hypersdk_jobs_total", help: "Jobs that reached a final state, by status (completed, failed, cancelled) and provider",
    labelNames: ["status", "provider"], registers: [registry],
  });
  const durations = new Histogram({
    name: "hypersdk_job_duration_seconds", help: "Run time of the last attempt of jobs that finished while running (start to end), by final status and provider",
    labelNames: ["status", "provider"], buckets: EXPORT_BUCKETS, registers: [registry],
  });
  const vms = new Counter({
    name: "hypersdk_vms_exported_total", help: "VMs exported (completed jobs), by provider and guest OS family",
    labelNames: ["provider", "os_type"], registers: [registry],
  });
  const bytes = new Counter({
    name: "hypersdk_bytes_exported_total", help: "Bytes of the files written by completed jobs, by provider",
    labelNames: ["provider"], registers: [registry],
  });
  const speed = new Gauge({
    name: "hypersdk_export_speed_bytes_per_second", help: "Average speed of the last completed export (bytes written / run time), by provider",
    labelNames: ["provider"], registers: [registry],
  });
  const errors = new Counter({
    name: "hypersdk_errors_total", help: "Failed job attempts (retried or final), by error code (type) and provider",
    labelNames: ["type", "provider"], registers: [registry],
  });
  const retries = new Counter({
    name: "hypersdk_retry_attempts_total", help: "Retries scheduled after a failed attempt, by operation and provider",
    labelNames: ["operation", "provider"], registers: [registry],
  });
  const batches = new Counter({
    name: "hypersdk_batches_total", help: "Batches (one submission or schedule run over many VMs) that ended, by final state",
    labelNames: ["state"], registers: [registry],
  });
  for (const state of BATCH_STATES) if (state !== "running") batches.inc({ state }, 0);
  for (const provider of options.providers ?? []) {
    for (const status of FINAL_STATUSES) jobs.inc({ status, provider }, 0);
    bytes.inc({ provider }, 0);
    retries.inc({ operation: "export", provider }, 0);
  }

  function completed(job: Job, provider: string): void {
    vms.inc({ provider, os_type: normalizeOsType(options.osTypeOf?.(job)) });
    const result = job.result;
    if (!result) return;
    const total = result.files.reduce((sum, file) => sum + file.size, 0);
    bytes.inc({ provider }, total);
    if (result.durationSeconds > 0) speed.set({ provider }, total / result.durationSeconds);
  }

  return {
    batchEnded: (batch) => batches.inc({ state: batch.state }),
    changed(job: Job, transition: JobTransition): void {
      const provider = job.definition.provider;
      const fromRunning = transition.fromState === "running";
      // The engine's own retry after a failed attempt; shutdown and recovery requeue with other actors.
      if (fromRunning && transition.toState === "queued" && transition.actor === "engine") {
        retries.inc({ operation: "export", provider });
        if (job.error) errors.inc({ type: job.error.code, provider });
        return;
      }
      if (!isFinal(transition.toState)) return;
      const status = transition.toState;
      jobs.inc({ status, provider });
      if (fromRunning && job.startTime !== undefined && job.endTime !== undefined) {
        durations.observe({ status, provider }, Math.max(0, job.endTime - job.startTime) / 1000);
      }
      if (status === "failed" && job.error) errors.inc({ type: job.error.code, provider });
      if (status === "completed") completed(job, provider);
    },
  };
}

/** linux, windows or other; "unknown" when nothing says. Anything else (freebsd, solaris...) is "other". */
export function normalizeOsType(value: string | undefined): OsType {
  if (!value) return "unknown";
  const os = value.toLowerCase();
  return os === "linux" || os === "windows" || os === "unknown" ? os : "other";
}
