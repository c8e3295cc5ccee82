import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { after, describe, test } from "node:test";
import pino from "pino";
import { HypervisordService } from "../gen/hypervisord/v1/service_pb.js";
import { withCallHooks } from "../src/rpc/call-hooks.ts";
import type { CallContext, ServiceHandlers } from "../src/rpc/handlers.ts";
import { EMPTY_PROGRESS, isFinal, type Job, type JobState, type JobTransition } from "../src/domain/job.ts";
import { createEngine } from "../src/engine/engine.ts";
import { initialSeq } from "../src/engine/update-bus.ts";
import { NotFoundError, UnavailableError } from "../src/errors.ts";
import { createMetrics } from "../src/metrics/metrics.ts";
import { startMetricsServer } from "../src/metrics/metrics-server.ts";
import { DEFAULT_EDGE_OPTIONS } from "../src/server/edge-options.ts";
import { createProviderRegistry } from "../src/providers/registry.ts";
import { createSqliteStore } from "../src/store/sqlite/sqlite-store.ts";
import { fakeDefinition, TEST_ENGINE_OPTIONS } from "./support/engine-harness.ts";
import { createFakeProvider } from "./support/fake-provider.ts";
import { tempDir } from "./support/temp-dir.ts";
import { waitFor } from "./support/wait-for.ts";

const ROOT = path.resolve(import.meta.dirname, "..");
const cleanups: (() => unknown)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

// --- The exposition format, read back -------------------------------------------------------

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseExposition(body: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of body.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(match, `not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, raw] of (match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key!] = raw!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    }
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** The value of the one sample with this name and these labels (among others); undefined when absent. */
function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.ok(found.length <= 1, `${name} ${JSON.stringify(labels)} matches ${found.length} samples`);
  return found[0]?.value;
}

async function scrape(metrics: ReturnType<typeof createMetrics>): Promise<Sample[]> {
  return parseExposition((await metrics.render()).body);
}

// --- Hand-built jobs and transitions ---------------------------------------------------------

let seq = 0;
function job(state: JobState, overrides: Partial<Job> = {}): Job {
  return {
    id: `job-${++seq}`, definition: fakeDefinition("/exports", "vm"), state, progress: EMPTY_PROGRESS,
    attempt: 1, maxAttempts: 3, createTime: 1_000, attempts: [], ...overrides,
  };
}

function transition(j: Job, fromState: JobState | undefined, actor = "engine"): JobTransition {
  return { seq: ++seq, jobId: j.id, fromState, toState: j.state, reason: "test", actor, time: j.endTime ?? 0 };
}

const hasPromtool = spawnSync("promtool", ["--version"]).status === 0;
const NO_PROMTOOL = "promtool not found (Debian package prometheus)";
if (!hasPromtool) console.log(`# skipping promtool checks: ${NO_PROMTOOL}`);

function promtool(args: string[], input?: string) {
  return spawnSync("promtool", args, { input, encoding: "utf8", cwd: ROOT });
}

describe("job metrics", () => {
  test("count final states, durations, bytes, speed, errors and retries from transitions", async () => {
    const metrics = createMetrics({ osTypeOf: (j) => j.definition.labels.os });
    const observe = metrics.jobObserver.changed!;

    const queued = job("queued");
    observe(queued, transition(queued, undefined, "api"));
    const done = job("completed", {
      definition: fakeDefinition("/exports", "web", { labels: { os: "Linux" } }), startTime: 10_000, endTime: 40_000,
      result: { outputDir: "/exports/web", files: [{ path: "a.vmdk", size: 1000, sha256: "" }, { path: "a.ovf", size: 200, sha256: "" }], durationSeconds: 30, warnings: [] },
    });
    observe(done, transition(done, "running"));
    const windows = job("completed", { definition: fakeDefinition("/exports", "win", { labels: { os: "freebsd" } }), startTime: 0, endTime: 1000 });
    observe(windows, transition(windows, "running"));
    const retried = job("queued", { startTime: 0, error: { code: "UNAVAILABLE", message: "cut", retryable: true } });
    observe(retried, transition(retried, "running", "engine"));
    const interrupted = job("queued", { startTime: 0 });
    observe(interrupted, transition(interrupted, "running", "shutdown"));
    const failed = job("failed", { startTime: 5_000, endTime: 6_500, error: { code: "UNAVAILABLE", message: "cut", retryable: true } });
    observe(failed, transition(failed, "running"));
    // Cancelled while waiting for a retry: it has a start time from its first attempt, but it did not end a run.
    const cancelled = job("cancelled", { startTime: 0, endTime: 99_000, error: { code: "CANCELLED", message: "by test", retryable: false } });
    observe(cancelled, transition(cancelled, "queued", "api"));

    const s = await scrape(metrics);
    assert.equal(valueOf(s, "hypersdk_jobs_total", { status: "completed", provider: "fake" }), 2);
    assert.equal(valueOf(s, "hypersdk_jobs_total", { status: "failed", provider: "fake" }), 1);
    assert.equal(valueOf(s, "hypersdk_jobs_total", { status: "cancelled", provider: "fake" }), 1);
    assert.equal(valueOf(s, "hypersdk_job_duration_seconds_count", { status: "completed", provider: "fake" }), 2);
    assert.equal(valueOf(s, "hypersdk_job_duration_seconds_sum", { status: "completed", provider: "fake" }), 31);
    assert.equal(valueOf(s, "hypersdk_job_duration_seconds_bucket", { status: "completed", provider: "fake", le: "15" }), 1);
    assert.equal(valueOf(s, "hypersdk_job_duration_seconds_bucket", { status: "completed", provider: "fake", le: "30" }), 2);
    assert.equal(valueOf(s, "hypersdk_job_duration_seconds_sum", { status: "failed", provider: "fake" }), 1.5);
    assert.equal(valueOf(s, "hypersdk_job_duration_seconds_count", { status: "cancelled", provider: "fake" }), undefined);
    assert.equal(valueOf(s, "hypersdk_vms_exported_total", { provider: "fake", os_type: "linux" }), 1);
    assert.equal(valueOf(s, "hypersdk_vms_exported_total", { provider: "fake", os_type: "other" }), 1);
    assert.equal(valueOf(s, "hypersdk_bytes_exported_total", { provider: "fake" }), 1200);
    assert.equal(valueOf(s, "hypersdk_export_speed_bytes_per_second", { provider: "fake" }), 40);
    // One retried attempt and one final failure; shutdown requeues and cancellations are not errors.
    assert.equal(valueOf(s, "hypersdk_errors_total", { type: "UNAVAILABLE", provider: "fake" }), 2);
    assert.equal(valueOf(s, "hypersdk_errors_total", { type: "CANCELLED", provider: "fake" }), undefined);
    assert.equal(valueOf(s, "hypersdk_retry_attempts_total", { operation: "export", provider: "fake" }), 1);
  });

  test("os_type is unknown without a resolver, and series of listed providers exist at 0", async () => {
    const metrics = createMetrics({ providers: ["vsphere"] });
    const done = job("completed", { startTime: 0, endTime: 1, result: { outputDir: "/x", files: [], durationSeconds: 0, warnings: [] } });
    metrics.jobObserver.changed!(done, transition(done, "running"));
    const s = await scrape(metrics);
    assert.equal(valueOf(s, "hypersdk_vms_exported_total", { provider: "fake", os_type: "unknown" }), 1);
    // A run of 0 s gives no speed rather than Infinity.
    assert.equal(valueOf(s, "hypersdk_export_speed_bytes_per_second", { provider: "fake" }), undefined);
    for (const status of ["completed", "failed", "cancelled"]) {
      assert.equal(valueOf(s, "hypersdk_jobs_total", { status, provider: "vsphere" }), 0);
    }
    assert.equal(valueOf(s, "hypersdk_retry_attempts_total", { operation: "export", provider: "vsphere" }), 0);
  });

  test("follow a real engine: two retryable failures, then completion", async () => {
    const metrics = createMetrics();
    const store = createSqliteStore({ dataDir: tempDir("metrics-engine"), maxLogBytesPerJob: 64 * 1024 });
    const engine = createEngine({
      store, providers: createProviderRegistry([createFakeProvider()]), logger: pino({ level: "silent" }),
      options: TEST_ENGINE_OPTIONS, observers: [metrics.jobObserver], initialSeq: await initialSeq(store),
    });
    cleanups.push(async () => {
      await engine.shutdown(2000);
      await store.close();
    });
    await engine.start();
    const { job: submitted } = await engine.submit(fakeDefinition(tempDir("metrics-out"), "web-01?size=5000&chunk=1000&delayMs=0&failTimes=2"), { actor: "test" });
    const finished = await waitFor("the job to finish", async () => {
      const current = await engine.getJob(submitted.id);
      return isFinal(current.state) && current;
    });
    assert.equal(finished.state, "completed");
    const s = await scrape(metrics);
    assert.equal(valueOf(s, "hypersdk_retry_attempts_total", { operation: "export", provider: "fake" }), 2);
    assert.equal(valueOf(s, "hypersdk_errors_total", { type: "UNAVAILABLE", provider: "fake" }), 2);
    assert.equal(valueOf(s, "hypersdk_jobs_total", { status: "completed", provider: "fake" }), 1);
    assert.equal(valueOf(s, "hypersdk_jobs_total", { status: "failed", provider: "fake" }), undefined);
    assert.equal(valueOf(s, "hypersdk_bytes_exported_total", { provider: "fake" }), 5000);
    assert.equal(valueOf(s, "hypersdk_job_duration_seconds_count", { status: "completed", provider: "fake" }), 1);
    const expected = (finished.endTime! - finished.startTime!) / 1000;
    assert.equal(valueOf(s, "hypersdk_job_duration_seconds_sum", { status: "completed", provider: "fake" }), expected);
  });
});

describe("API metrics", () => {
  function context(transport: "grpc" | "connect", signal = new AbortController().signal): CallContext {
    return { signal, peer: "127.0.0.1:1", transport, header: () => undefined };
  }

  test("count calls by transport, RPC and status name, and time unary calls only", async () => {
    const metrics = createMetrics();
    const handlers = {
      getJob: async (request: { jobId: string }) => {
        if (request.jobId === "missing") throw new NotFoundError("job missing not found");
        if (request.jobId === "bug") throw new TypeError("x is undefined");
        if (request.jobId === "down") throw new UnavailableError("vCenter unreachable");
        return {};
      },
      streamJobUpdates: async function* () {
        yield {};
        await new Promise(() => undefined);
      },
    };
    const api = withCallHooks(HypervisordService, handlers as unknown as ServiceHandlers<typeof HypervisordService>, [metrics.callHook]);
    const getJob = api.getJob as unknown as (request: { jobId: string }, context: CallContext) => Promise<unknown>;
    await getJob({ jobId: "a" }, context("grpc"));
    await getJob({ jobId: "b" }, context("grpc"));
    await getJob({ jobId: "c" }, context("connect"));
    await assert.rejects(getJob({ jobId: "missing" }, context("grpc")), NotFoundError);
    await assert.rejects(getJob({ jobId: "bug" }, context("connect")), TypeError);
    await assert.rejects(getJob({ jobId: "down" }, context("grpc")), UnavailableError);

    // A stream whose subscriber goes away.
    const controller = new AbortController();
    const stream = (api.streamJobUpdates as unknown as (r: unknown, c: CallContext) => AsyncGenerator<unknown>)({}, context("grpc", controller.signal));
    await stream.next();
    controller.abort();
    await stream.return(undefined);

    const s = await scrape(metrics);
    const calls = (method: string, endpoint: string, status_code: string) => valueOf(s, "hypersdk_api_requests_total", { method, endpoint, status_code });
    assert.equal(calls("grpc", "GetJob", "OK"), 2);
    assert.equal(calls("connect", "GetJob", "OK"), 1);
    assert.equal(calls("grpc", "GetJob", "NOT_FOUND"), 1);
    assert.equal(calls("connect", "GetJob", "INTERNAL"), 1);
    assert.equal(calls("grpc", "GetJob", "UNAVAILABLE"), 1);
    assert.equal(calls("grpc", "StreamJobUpdates", "CANCELLED"), 1);
    assert.equal(valueOf(s, "hypersdk_api_request_duration_seconds_count", { method: "grpc", endpoint: "GetJob" }), 4);
    assert.equal(valueOf(s, "hypersdk_api_request_duration_seconds_count", { method: "connect", endpoint: "GetJob" }), 2);
    assert.equal(valueOf(s, "hypersdk_api_request_duration_seconds_count", { method: "grpc", endpoint: "StreamJobUpdates" }), undefined);
    // Labels are bounded: nothing from the request (job ids, URLs) reaches them.
    assert.ok(s.every((sample) => !Object.values(sample.labels).some((v) => /missing|bug|down/.test(v))));
  });
});

describe("gauges and totals read at scrape time", () => {
  test("queue gauges, webhook and schedule totals, discovered VMs, download durations", async () => {
    let counts = { queued: 7, running: 2 };
    let webhooks = { delivered: 10, failed: 1, retried: 3 };
    let scheduler = { runs: 4, skipped: 0, missed: 9 };
    const metrics = createMetrics({ jobCounts: async () => counts, webhookStats: () => webhooks, schedulerStats: () => scheduler });
    const provider = createFakeProvider();
    metrics.vmsDiscovered("fake", await provider.listVMs!({}, AbortSignal.timeout(1000)));
    metrics.observeDownload("vsphere", 3);
    metrics.observeDownload("vsphere", 45);

    let s = await scrape(metrics);
    assert.equal(valueOf(s, "hypersdk_queued_jobs"), 7);
    assert.equal(valueOf(s, "hypersdk_active_jobs"), 2);
    assert.equal(valueOf(s, "hypersdk_webhook_deliveries_total", { result: "delivered" }), 10);
    assert.equal(valueOf(s, "hypersdk_webhook_deliveries_total", { result: "retried" }), 3);
    assert.equal(valueOf(s, "hypersdk_schedule_runs_total", { result: "started" }), 4);
    assert.equal(valueOf(s, "hypersdk_schedule_runs_total", { result: "skipped" }), 0);
    assert.equal(valueOf(s, "hypersdk_vms_discovered", { provider: "fake", power_state: "poweredOn" }), 4);
    assert.equal(valueOf(s, "hypersdk_vms_discovered", { provider: "fake", power_state: "poweredOff" }), 8);
    assert.equal(valueOf(s, "hypersdk_disk_download_duration_seconds_count", { provider: "vsphere" }), 2);
    assert.equal(valueOf(s, "hypersdk_disk_download_duration_seconds_sum", { provider: "vsphere" }), 48);
    assert.equal(valueOf(s, "hypersdk_disk_download_duration_seconds_bucket", { provider: "vsphere", le: "5" }), 1);

    // The sources' totals grow: the counters grow by as much, not by the totals again.
    counts = { queued: 0, running: 1 };
    webhooks = { delivered: 15, failed: 1, retried: 3 };
    scheduler = { runs: 5, skipped: 2, missed: 9 };
    metrics.vmsDiscovered("fake", [{ powerState: "suspended" }]);
    s = await scrape(metrics);
    assert.equal(valueOf(s, "hypersdk_queued_jobs"), 0);
    assert.equal(valueOf(s, "hypersdk_active_jobs"), 1);
    assert.equal(valueOf(s, "hypersdk_webhook_deliveries_total", { result: "delivered" }), 15);
    assert.equal(valueOf(s, "hypersdk_webhook_deliveries_total", { result: "failed" }), 1);
    assert.equal(valueOf(s, "hypersdk_schedule_runs_total", { result: "started" }), 5);
    assert.equal(valueOf(s, "hypersdk_schedule_runs_total", { result: "skipped" }), 2);
    assert.equal(valueOf(s, "hypersdk_vms_discovered", { provider: "fake", power_state: "poweredOn" }), 0);
    assert.equal(valueOf(s, "hypersdk_vms_discovered", { provider: "fake", power_state: "suspended" }), 1);

    // A source that starts over (recreated) counts from zero again instead of going backwards.
    webhooks = { delivered: 2, failed: 1, retried: 3 };
    s = await scrape(metrics);
    assert.equal(valueOf(s, "hypersdk_webhook_deliveries_total", { result: "delivered" }), 17);
  });

  test("without inputs the series still exist, at 0", async () => {
    const s = await scrape(createMetrics());
    assert.equal(valueOf(s, "hypersdk_active_jobs"), 0);
    assert.equal(valueOf(s, "hypersdk_queued_jobs"), 0);
    for (const result of ["delivered", "failed", "retried"]) assert.equal(valueOf(s, "hypersdk_webhook_deliveries_total", { result }), 0);
    for (const result of ["started", "skipped"]) assert.equal(valueOf(s, "hypersdk_schedule_runs_total", { result }), 0);
  });

  test("own registry, with the process defaults", async () => {
    const a = createMetrics();
    const b = createMetrics();
    assert.notEqual(a.registry, b.registry);
    const s = await scrape(a);
    for (const name of ["process_cpu_seconds_total", "process_resident_memory_bytes", "nodejs_heap_size_used_bytes", "nodejs_eventloop_lag_p99_seconds"]) {
      assert.ok(s.some((sample) => sample.name === name), `${name} missing`);
    }
  });

  test("promtool check metrics finds nothing to complain about", { skip: !hasPromtool && NO_PROMTOOL }, async () => {
    const metrics = createMetrics({ jobCounts: async () => ({ queued: 1, running: 1 }), webhookStats: () => ({ delivered: 1, failed: 1, retried: 1 }), schedulerStats: () => ({ runs: 1, skipped: 1 }) });
    const done = job("completed", { startTime: 0, endTime: 5000, result: { outputDir: "/x", files: [{ path: "a", size: 10, sha256: "" }], durationSeconds: 5, warnings: [] } });
    metrics.jobObserver.changed!(done, transition(done, "running"));
    const failed = job("failed", { startTime: 0, endTime: 5000, error: { code: "INTERNAL", message: "x", retryable: false } });
    metrics.jobObserver.changed!(failed, transition(failed, "running"));
    metrics.vmsDiscovered("fake", [{ powerState: "poweredOn" }]);
    metrics.observeDownload("fake", 1);
    const { body } = await metrics.render();
    assert.ok(body.includes("hypersdk_errors_total{"), "every family should have samples for the lint to see");
    const result = promtool(["check", "metrics"], body);
    assert.equal(`${result.stdout}${result.stderr}`, "");
    assert.equal(result.status, 0);
  });
});

describe("serving /metrics", () => {
  async function listen(server: http.Server): Promise<number> {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }));
    return (server.address() as net.AddressInfo).port;
  }

  test("the route answers GET and HEAD, refuses other methods, and fails a scrape whose inputs fail", async () => {
    let broken = false;
    const metrics = createMetrics({
      jobCounts: async () => {
        if (broken) throw new Error("The database connection is not open");
        return { queued: 3, running: 0 };
      },
    });
    const port = await listen(http.createServer((req, res) => void metrics.httpRoute(req, res)));
    const url = `http://127.0.0.1:${port}/metrics`;

    const get = await fetch(url);
    assert.equal(get.status, 200);
    assert.match(get.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
    assert.equal(valueOf(parseExposition(await get.text()), "hypersdk_queued_jobs"), 3);

    const head = await fetch(url, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), "");

    const post = await fetch(url, { method: "POST", body: "x" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
    await post.text();

    broken = true;
    const failed = await fetch(url);
    assert.equal(failed.status, 500);
    assert.match(await failed.text(), /database connection is not open/);
  });

  test("startMetricsServer serves /metrics only, and closes", async () => {
    const metrics = createMetrics({ jobCounts: async () => ({ queued: 0, running: 4 }) });
    // Short deadlines: the separate listener gets the same connection limits as the others.
    const edge = { ...DEFAULT_EDGE_OPTIONS, firstBytesTimeoutMs: 300, idleTimeoutMs: 300 };
    const server = await startMetricsServer({ host: "127.0.0.1", port: 0 }, metrics, pino({ level: "silent" }), edge);
    let closed = false;
    cleanups.push(() => (closed ? undefined : server.close()));
    const base = `http://127.0.0.1:${server.port}`;
    const ok = await fetch(`${base}/metrics?x=1`);
    assert.equal(ok.status, 200);
    assert.equal(valueOf(parseExposition(await ok.text()), "hypersdk_active_jobs"), 4);
    const missing = await fetch(`${base}/health`);
    assert.equal(missing.status, 404);
    await missing.text();
    const silent = net.connect(server.port, "127.0.0.1");
    const closedAfterMs = await new Promise<number>((resolve) => {
      const started = Date.now();
      silent.on("error", () => {}).once("close", () => resolve(Date.now() - started));
    });
    assert.ok(closedAfterMs < 3000, `a connection that sends nothing is closed after server.first_bytes_timeout (took ${closedAfterMs} ms)`);
    await server.close();
    closed = true;
    await assert.rejects(fetch(`${base}/metrics`));
  });
});

describe("deploy/: dashboards and alerts use only metrics the daemon exports", () => {
  const grafanaDir = path.join(ROOT, "deploy/grafana");
  const alertsFile = path.join(ROOT, "deploy/prometheus/alerts.yml");
  const dashboards = fs.readdirSync(grafanaDir).filter((f) => f.endsWith(".json"));

  /** Every PromQL expression of a dashboard: panel targets and query variables. */
  function expressions(file: string): string[] {
    const dashboard = JSON.parse(fs.readFileSync(path.join(grafanaDir, file), "utf8")) as {
      panels: { targets?: { expr: string }[] }[];
      templating: { list: { type: string; definition?: string }[] };
    };
    return [
      ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)),
      ...dashboard.templating.list.filter((v) => v.type === "query").map((v) => v.definition!),
    ];
  }

  function metricNames(text: string): Set<string> {
    return new Set([...text.matchAll(/\b(?:hypersdk|process|nodejs)_[a-z0-9_]+/g)].map(([m]) => m.replace(/_(bucket|sum|count)$/, "")));
  }

  async function exported(): Promise<Set<string>> {
    const metrics = createMetrics();
    const body = (await metrics.render()).body;
    return new Set([...body.matchAll(/^# TYPE (\S+)/gm)].map(([, name]) => name!));
  }

  test("there are three dashboards with a Prometheus data source variable", () => {
    assert.deepEqual(dashboards.sort(), ["exports.json", "job-performance.json", "overview.json"]);
    const uids = new Set<string>();
    for (const file of dashboards) {
      const d = JSON.parse(fs.readFileSync(path.join(grafanaDir, file), "utf8")) as {
        uid: string; title: string; schemaVersion: number; templating: { list: { name: string; type: string; query: unknown }[] };
        panels: { id: number; type: string; datasource?: { uid: string }; targets?: unknown[] }[];
      };
      assert.ok(d.uid && d.title && d.schemaVersion > 30, file);
      uids.add(d.uid);
      assert.ok(d.templating.list.some((v) => v.name === "datasource" && v.type === "datasource" && v.query === "prometheus"), file);
      const ids = d.panels.map((p) => p.id);
      assert.equal(new Set(ids).size, ids.length, `${file}: panel ids are unique`);
      for (const panel of d.panels.filter((p) => p.type !== "row")) {
        assert.equal(panel.datasource?.uid, "${datasource}", `${file}: panel ${panel.id}`);
        assert.ok(panel.targets && panel.targets.length > 0, `${file}: panel ${panel.id} has queries`);
      }
    }
    assert.equal(uids.size, dashboards.length);
  });

  test("every metric named in the dashboards and the alerts is exported", async () => {
    const names = await exported();
    const used = new Map<string, Set<string>>(dashboards.map((f) => [f, metricNames(expressions(f).join("\n"))]));
    used.set("alerts.yml", metricNames(fs.readFileSync(alertsFile, "utf8")));
    for (const [file, metricsUsed] of used) {
      assert.ok(metricsUsed.size > 3, `${file} names metrics`);
      const unknown = [...metricsUsed].filter((m) => !names.has(m));
      assert.deepEqual(unknown, [], `${file} uses metrics the daemon does not export`);
    }
  });

  test("promtool accepts the alerting rules, their unit tests, and every dashboard query", { skip: !hasPromtool && NO_PROMTOOL }, () => {
    const rules = promtool(["check", "rules", alertsFile]);
    assert.equal(rules.status, 0, rules.stdout + rules.stderr);
    const unit = promtool(["test", "rules", path.join(ROOT, "deploy/prometheus/alerts.test.yml")]);
    assert.equal(unit.status, 0, unit.stdout + unit.stderr);

    // Grafana's variables replaced by values, each query becomes a recording rule that promtool parses.
    const dir = tempDir("dashboard-rules");
    const lines = ["groups:", "  - name: dashboards", "    rules:"];
    dashboards.flatMap(expressions).filter((e) => !e.startsWith("label_values(")).forEach((expr, i) => {
      const promql = expr.replaceAll("$__rate_interval", "5m").replace(/\$(instance|provider)/g, ".*");
      lines.push(`      - record: dashboard:query_${i}`, `        expr: ${JSON.stringify(promql)}`);
    });
    fs.writeFileSync(path.join(dir, "dashboards.yml"), `${lines.join("\n")}\n`);
    const parsed = promtool(["check", "rules", path.join(dir, "dashboards.yml")]);
    assert.equal(parsed.status, 0, parsed.stdout + parsed.stderr);
  });
});

describe("deploy/hypervisord.service", () => {
  const hasSystemdAnalyze = spawnSync("systemd-analyze", ["--version"]).status === 0;
  test("systemd-analyze verify finds nothing to complain about", { skip: !hasSystemdAnalyze && "systemd-analyze not found (Debian package systemd)" }, () => {
    const result = spawnSync("systemd-analyze", ["verify", path.join(ROOT, "deploy/hypervisord.service")], { encoding: "utf8" });
    assert.equal(`${result.stdout}${result.stderr}`, "");
    assert.equal(result.status, 0);
  });
});
