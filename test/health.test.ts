import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import type net from "node:net";
import path from "node:path";
import { after, describe, test } from "node:test";
import { createHealthCheck, type HealthCheckDeps, type HealthReport, type HealthStatus } from "../src/server/health-check.ts";
import { tempDir } from "./support/temp-dir.ts";

const cleanups: (() => unknown)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

const dataDir = tempDir("health-data");
const outputRoot = tempDir("health-out");

function deps(overrides: Partial<HealthCheckDeps> = {}): HealthCheckDeps {
  return {
    version: "1.2.3",
    startTime: Date.now() - 5_000,
    checkDatabase: () => undefined,
    queue: () => ({ queued: 3, running: 1, lifecycle: "running" }),
    paths: [dataDir, outputRoot],
    minFreeBytes: 0,
    ...overrides,
  };
}

/** Serves the check's route on a real listener and returns GET /health's status, headers and JSON. */
async function serve(check: ReturnType<typeof createHealthCheck>) {
  const server = http.createServer((req, res) => {
    if (req.url === "/health") return void check.httpRoute(req, res);
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  }));
  const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/health`;
  return {
    url,
    async get(): Promise<{ status: number; contentType: string | null; report: HealthReport }> {
      const res = await fetch(url);
      return { status: res.status, contentType: res.headers.get("content-type"), report: (await res.json()) as HealthReport };
    },
  };
}

describe("health check", () => {
  test("healthy: every check passes, with the report's full shape", async () => {
    const report = await createHealthCheck(deps()).check();
    assert.equal(report.status, "healthy");
    assert.equal(report.version, "1.2.3");
    assert.ok(report.uptime_seconds >= 5 && report.uptime_seconds < 60, `uptime ${report.uptime_seconds}`);
    assert.deepEqual(Object.keys(report).sort(), ["checks", "status", "uptime_seconds", "version"]);
    assert.deepEqual(Object.keys(report.checks).sort(), ["database", "disk", "memory", "queue"]);
    assert.deepEqual(report.checks.queue, { status: "healthy", queued: 3, running: 1, lifecycle: "running", latency_ms: report.checks.queue.latency_ms });
    assert.equal(report.checks.database.status, "healthy");
    assert.equal(report.checks.database.error, undefined);
    for (const check of Object.values(report.checks)) assert.ok(check.latency_ms >= 0 && check.latency_ms < 2000);
    assert.deepEqual(report.checks.disk.paths.map((p) => [p.path, p.status]), [[dataDir, "healthy"], [outputRoot, "healthy"]]);
    const memory = report.checks.memory;
    assert.equal(memory.status, "healthy");
    assert.ok(memory.rss_bytes > 0 && memory.heap_used_bytes > 0 && memory.heap_total_bytes >= memory.heap_used_bytes);
  });

  test("free and total space agree with df", async (t) => {
    const df = spawnSync("df", ["-B1", "--output=avail,size", outputRoot], { encoding: "utf8" });
    if (df.status !== 0) return t.skip(`df failed: ${df.stderr}`);
    const [avail, size] = df.stdout.trim().split("\n")[1]!.trim().split(/\s+/).map(Number);
    const { paths } = (await createHealthCheck(deps()).check()).checks.disk;
    const report = paths.find((p) => p.path === outputRoot)!;
    assert.equal(report.total_bytes, size);
    // Other processes write to the same file system between the two readings.
    assert.ok(Math.abs(report.free_bytes - avail!) < 256 * 1024 ** 2, `statfs ${report.free_bytes} vs df ${avail}`);
  });

  test("a database failure is unhealthy, and GET /health answers 503 with JSON", async () => {
    const check = createHealthCheck(deps({ checkDatabase: () => { throw new Error("SQLITE_CORRUPT: database disk image is malformed"); } }));
    const { status, contentType, report } = await (await serve(check)).get();
    assert.equal(status, 503);
    assert.equal(contentType, "application/json");
    assert.equal(report.status, "unhealthy");
    assert.equal(report.checks.database.status, "unhealthy");
    assert.match(report.checks.database.error!, /SQLITE_CORRUPT/);
    assert.equal(report.checks.queue.status, "healthy");
  });

  test("less free space than the minimum is degraded, still 200", async () => {
    const check = createHealthCheck(deps({ minFreeBytes: Number.MAX_SAFE_INTEGER }));
    const { status, report } = await (await serve(check)).get();
    assert.equal(status, 200);
    assert.equal(report.status, "degraded");
    assert.equal(report.checks.disk.status, "degraded");
    for (const p of report.checks.disk.paths) {
      assert.equal(p.status, "degraded");
      assert.ok(p.free_bytes > 0 && p.total_bytes >= p.free_bytes);
      assert.match(p.error!, /below the minimum/);
    }
  });

  test("a missing directory is unhealthy; the other paths are still reported", async () => {
    const missing = path.join(outputRoot, "gone");
    const report = await createHealthCheck(deps({ paths: [dataDir, missing] })).check();
    assert.equal(report.status, "unhealthy");
    assert.equal(report.checks.disk.status, "unhealthy");
    const [data, gone] = report.checks.disk.paths;
    assert.equal(data!.status, "healthy");
    assert.equal(gone!.path, missing);
    assert.equal(gone!.status, "unhealthy");
    assert.match(gone!.error!, /ENOENT/);
  });

  test("lifecycle: starting is degraded, draining and stopped are unhealthy", async () => {
    const statuses: Record<string, HealthStatus> = {};
    for (const lifecycle of ["starting", "running", "draining", "stopped"]) {
      const report = await createHealthCheck(deps({ queue: () => ({ queued: 0, running: 2, lifecycle }) })).check();
      assert.equal(report.checks.queue.lifecycle, lifecycle);
      statuses[lifecycle] = report.status;
    }
    assert.deepEqual(statuses, { starting: "degraded", running: "healthy", draining: "unhealthy", stopped: "unhealthy" });
  });

  test("a queue that cannot be read is unhealthy", async () => {
    const report = await createHealthCheck(deps({ queue: () => { throw new Error("The database connection is not open"); } })).check();
    assert.equal(report.checks.queue.status, "unhealthy");
    assert.match(report.checks.queue.error!, /not open/);
  });

  test("resident memory over the limit is degraded", async () => {
    const report = await createHealthCheck(deps({ memory: { maxRssBytes: 1024 } })).check();
    assert.equal(report.checks.memory.status, "degraded");
    assert.equal(report.status, "degraded");
  });

  test("HEAD has no body, other methods get 405", async () => {
    const { url } = await serve(createHealthCheck(deps()));
    const head = await fetch(url, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), "");
    const post = await fetch(url, { method: "POST", body: "{}" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
    await post.text();
  });

  test("watch reports the first status and each change, and stops", async () => {
    let broken = false;
    const check = createHealthCheck(deps({ checkDatabase: () => { if (broken) throw new Error("closed"); } }));
    const seen: HealthStatus[] = [];
    const stop = check.watch(5, (status) => seen.push(status));
    cleanups.push(stop);
    await until(() => seen.length === 1);
    broken = true;
    await until(() => seen.length === 2);
    broken = false;
    await until(() => seen.length === 3);
    stop();
    broken = true;
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(seen, ["healthy", "unhealthy", "healthy"]);
  });
});

async function until(predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
