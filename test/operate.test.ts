// Metrics and health through the real daemon: scraped over HTTP after real jobs, checked by promtool.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { JobState } from "../gen/hypervisord/v1/job_pb.js";
import { findExecutable } from "../src/stages/qemu-img.ts";
import { createGrpcJsClient, type GrpcJsClient } from "./support/clients.ts";
import { spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";

let daemon: DaemonProcess;
let client: GrpcJsClient;

before(async () => {
  daemon = await spawnDaemon();
  client = createGrpcJsClient(daemon.grpcAddress);
});

after(async () => {
  client?.close();
  if (daemon) assert.equal(await daemon.stop(), 0);
});

async function runToEnd(vm: string) {
  const { job } = await client.unary("submitJob", { definition: { provider: "fake", vm } });
  for (;;) {
    const current = (await client.unary("getJob", { jobId: job!.id })).job!;
    if ([JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED].includes(current.state)) return current;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The value of one sample line, e.g. sample(text, 'hypersdk_jobs_total{status="completed",provider="fake"}'). */
function sample(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  assert.ok(line, `no sample ${series} in:\n${text.split("\n").filter((l) => l.startsWith(series.split("{")[0]!)).join("\n")}`);
  return Number(line.split(" ")[1]);
}

describe("metrics and health of a running daemon", () => {
  test("/metrics after real jobs: job, byte, error and API request counts; promtool finds nothing to say", async () => {
    const done = await runToEnd("web-01?size=1048576&chunk=65536&delayMs=1");
    assert.equal(done.state, JobState.COMPLETED);
    const failed = await runToEnd("bad?failTimes=9&failCode=NOT_FOUND");
    assert.equal(failed.state, JobState.FAILED);
    await fetch(`${daemon.httpUrl}/hypervisord.v1.HypervisordService/GetStatus`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    await client.unary("getJob", { jobId: "no-such-job" }).catch(() => {});

    const response = await fetch(`${daemon.httpUrl}/metrics`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /text\/plain/);
    const text = await response.text();
    assert.equal(sample(text, 'hypersdk_jobs_total{status="completed",provider="fake"}'), 1);
    assert.equal(sample(text, 'hypersdk_jobs_total{status="failed",provider="fake"}'), 1);
    assert.equal(sample(text, 'hypersdk_errors_total{type="NOT_FOUND",provider="fake"}'), 1);
    assert.ok(sample(text, 'hypersdk_bytes_exported_total{provider="fake"}') >= 1048576);
    assert.ok(sample(text, 'hypersdk_api_requests_total{method="grpc",endpoint="SubmitJob",status_code="OK"}') >= 2);
    assert.equal(sample(text, 'hypersdk_api_requests_total{method="connect",endpoint="GetStatus",status_code="OK"}'), 1);
    assert.equal(sample(text, 'hypersdk_api_requests_total{method="grpc",endpoint="GetJob",status_code="NOT_FOUND"}'), 1);
    assert.ok(!/endpoint="\//.test(text), "endpoints are RPC names, never URLs");
    assert.equal(sample(text, "hypersdk_active_jobs"), 0);

    const promtool = findExecutable("promtool");
    if (!promtool) return console.log("skipping promtool check metrics: promtool not found (apt-get install prometheus)");
    const checked = spawnSync(promtool, ["check", "metrics"], { input: text, encoding: "utf8" });
    assert.equal(checked.status, 0, checked.stdout + checked.stderr);
    assert.equal((checked.stdout + checked.stderr).trim(), "");
  });

  test("/health says healthy with its checks; grpc.health.v1 agrees", async () => {
    const response = await fetch(`${daemon.httpUrl}/health`);
    assert.equal(response.status, 200);
    const report = await response.json() as { status: string; version: string; checks: Record<string, { status: string }> };
    assert.equal(report.status, "healthy", JSON.stringify(report));
    assert.deepEqual(Object.keys(report.checks).sort(), ["database", "disk", "memory", "queue"]);
    const health = await fetch(`${daemon.httpUrl}/healthz`);
    assert.equal(health.status, 200);
  });
});
