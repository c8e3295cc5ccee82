import type http from "node:http";
import type http2 from "node:http2";
import { collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { CallHook } from "../rpc/call-hooks.ts";
import type { Job } from "../domain/job.ts";
import type { PowerState } from "../domain/vm.ts";
import type { JobObserver } from "../engine/engine.ts";
import { createApiMetrics } from "./api-metrics.ts";
import { createCumulativeCounter } from "./cumulative-counter.ts";
import { createJobMetrics, EXPORT_BUCKETS } from "./job-metrics.ts";
import { createSnapshotMetrics } from "./snapshot-metrics.ts";
import type { SnapshotEvent } from "../providers/provider.ts";
import { errorMessage } from "../errors.ts";

export type MetricsRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type MetricsResponse = http.ServerResponse | http2.Http2ServerResponse;

export interface MetricsDeps {
  /** Jobs waiting and jobs running now, read at each scrape. */
  jobCounts?(): Promise<{ queued: number; running: number }>;
  /** The webhook dispatcher's totals since start. */
  webhookStats?(): { delivered: number; failed: number; retried: number };
  /** The scheduler's totals since start: runs that created a job, and runs skipped. */
  schedulerStats?(): { runs: number; skipped: number };
  /** Schedule retention's totals since start: run directories deleted, and deletions refused or failed. */
  retentionStats?(): { deleted: number; failed: number };
  /** The guest OS family of an exported VM ("linux", "windows", other names count as "other"); "unknown" when undefined. */
  osTypeOf?(job: Job): string | undefined;
  /** Providers whose job series exist (at 0) before their first job. */
  providers?: readonly string[];
  /** Jobs whose snapshot removal is pending (Job.pending_cleanup), read at each scrape. */
  pendingSnapshotRemovals?(): Promise<number>;
}

export interface Metrics {
  readonly registry: Registry;
  /** Put first in the hook list: its `after` then runs last and sees refusals by every other hook. */
  readonly callHook: CallHook;
  readonly jobObserver: JobObserver;
  /** A full listing of a provider's inventory: sets the count per power state (absent states to 0). */
  vmsDiscovered(provider: string, vms: readonly { powerState: PowerState }[]): void;
  /** One disk's download, from its first request to its last byte. */
  observeDownload(provider: string, seconds: number): void;
  /** A snapshot of a running VM made, removed, or a removal that failed. */
  snapshotEvent(event: SnapshotEvent): void;
  render(): Promise<{ contentType: string; body: string }>;
  /** GET or HEAD /metrics; any other method gets 405. */
  httpRoute(req: MetricsRequest, res: MetricsResponse): Promise<void>;
}

/**
 * prom-client gauges whose "_total" suffix promtool's lint rejects (only counters may carry it). Each is
 * the sum of the per-type gauge of the same name without the suffix (e.g. sum(nodejs_active_handles)).
 */
const LINT_FAILING_DEFAULTS = ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"];

const POWER_STATES: readonly PowerState[] = ["poweredOn", "poweredOff", "suspended", "unknown"];

/** Seconds per disk: from a few MiB to a multi-TiB disk over a slow link. */
const DOWNLOAD_BUCKETS = EXPORT_BUCKETS;

/** The daemon's Prometheus metrics, in a registry of their own (never the global one), with the process defaults. */
export function createMetrics(deps: MetricsDeps = {}): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  for (const name of LINT_FAILING_DEFAULTS) registry.removeSingleMetric(name);
  const callHook = createApiMetrics(registry);
  const jobObserver = createJobMetrics({ registry, providers: deps.providers, osTypeOf: deps.osTypeOf });
  createQueueGauges(registry, deps.jobCounts);
  const snapshotEvent = createSnapshotMetrics(registry, deps.pendingSnapshotRemovals);
  createCumulativeCounter({
    name: "hypersdk_webhook_deliveries_total", help: "Webhook deliveries by result: delivered, failed (given up), retried (attempts followed by a retry)",
    registry, label: "result", values: ["delivered", "failed", "retried"], read: deps.webhookStats,
  });
  const schedulerStats = deps.schedulerStats;
  createCumulativeCounter({
    name: "hypersdk_schedule_runs_total", help: "Schedule runs by result: started (a job was created) or skipped",
    registry, label: "result", values: ["started", "skipped"],
    read: schedulerStats && (() => {
      const stats = schedulerStats();
      return { started: stats.runs, skipped: stats.skipped };
    }),
  });
  createCumulativeCounter({
    name: "hypersdk_retention_deletions_total",
    help: "Schedule retention: old run directories deleted, or failed (refused because the path is not the daemon's, or the removal failed)",
    registry, label: "result", values: ["deleted", "failed"], read: deps.retentionStats,
  });
  const discovered = new Gauge({
    name: "hypersdk_vms_discovered", help: "VMs in the last full inventory listing of a provider, by power state",
    labelNames: ["provider", "power_state"], registers: [registry],
  });
  const downloads = new Histogram({
    name: "hypersdk_disk_download_duration_seconds", help: "Duration of one disk's download, by provider",
    labelNames: ["provider"], buckets: DOWNLOAD_BUCKETS, registers: [registry],
  });

  async function render() {
    return { contentType: registry.contentType, body: await registry.metrics() };
  }

  return {
    registry,
    callHook,
    jobObserver,
    vmsDiscovered(provider, vms) {
      for (const state of POWER_STATES) {
        discovered.set({ provider, power_state: state }, vms.filter((vm) => vm.powerState === state).length);
      }
    },
    observeDownload(provider, seconds) {
      downloads.observe({ provider }, seconds);
    },
    snapshotEvent,
    render,
    httpRoute: (req, res) => serveMetrics(req, res, render),
  };
}

/** Read at each scrape; each gauge asks for itself (one cheap count query each) so that neither depends on the other's collection order. */
function createQueueGauges(registry: Registry, jobCounts: MetricsDeps["jobCounts"]): void {
  const active: Gauge = new Gauge({
    name: "hypersdk_active_jobs", help: "Jobs running now", registers: [registry],
    async collect() {
      if (jobCounts) active.set((await jobCounts()).running);
    },
  });
  const queued: Gauge = new Gauge({
    name: "hypersdk_queued_jobs", help: "Jobs queued (waiting for a slot or for their retry time)", registers: [registry],
    async collect() {
      if (jobCounts) queued.set((await jobCounts()).queued);
    },
  });
}

async function serveMetrics(req: MetricsRequest, res: MetricsResponse, render: Metrics["render"]): Promise<void> {
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" });
    res.end("only GET and HEAD are allowed on /metrics\n");
    return;
  }
  let page: { contentType: string; body: string };
  try {
    page = await render();
  } catch (err) {
    // A failed scrape must be seen as one (Prometheus marks the target down), not served half empty.
    res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
    res.end(`collecting metrics failed: ${errorMessage(err)}\n`);
    return;
  }
  res.writeHead(200, { "content-type": page.contentType, "cache-control": "no-store" });
  res.end(req.method === "HEAD" ? "" : page.body);
}
