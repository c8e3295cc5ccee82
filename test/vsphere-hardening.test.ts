// vSphere robustness through the real daemon against vcsim-export (../shared/vcsim): a session that expires during
// an export, a vCenter that is down for a minute, leases left by a killed daemon or by a run that could not reach
// vCenter, and a refused vCenter login told apart from a refused API key.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import https from "node:https";
import net from "node:net";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import http from "node:http";
import Database from "better-sqlite3";
import { Agent } from "undici";
import { retryDelayMs } from "../src/backoff.ts";
import { toHypervisordError } from "../src/errors.ts";
import { createSoapClient } from "../src/providers/vsphere/soap-client.ts";
import { fakeDefinition, startEngine } from "./support/engine-harness.ts";
import { waitFor } from "./support/wait-for.ts";
import { JobState, type Job } from "../gen/hypervisord/v1/job_pb.js";
import { createGrpcJsClient, postJson, type GrpcJsClient } from "./support/clients.ts";
import { hasBytes, isFinal, waitForJob } from "./support/wait-for-job.ts";
import { respawnDaemon, spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { tempDir } from "./support/temp-dir.ts";
import { buildVcsim, startVcsim, type Vcsim } from "./support/vcsim.ts";

let skipReason: string | undefined;
let daemon: DaemonProcess;
let client: GrpcJsClient;
const sims: Vcsim[] = [];
/** Datastores of simulators killed with SIGKILL (only SIGTERM makes vcsim delete them). */
const leftDatastores: string[] = [];

function configFile(yaml: string): string {
  const file = path.join(tempDir("hardening-config"), "hypervisord.yaml");
  fs.writeFileSync(file, yaml);
  return file;
}

// Retries a little faster than the defaults (2 s doubling to 5 m), so that a minute of vCenter outage is covered
// in about a minute; the attempts and elapsed-time budget are the defaults (10, 15 m).
const FAST_RETRIES = configFile("jobs:\n  retry_initial_backoff: 1s\n  retry_max_backoff: 8s\n");

before(async () => {
  skipReason = (await buildVcsim()).reason;
  if (skipReason) {
    console.log(`skipping the vSphere hardening tests: ${skipReason}`);
    return;
  }
  daemon = await spawnDaemon({ args: ["--config", FAST_RETRIES] });
  client = createGrpcJsClient(daemon.grpcAddress);
});

after(async () => {
  client?.close();
  if (daemon) assert.equal(await daemon.stop(), 0);
  for (const sim of sims) await sim.stop();
  for (const dir of leftDatastores) fs.rmSync(dir, { recursive: true, force: true });
});

async function simulator(args: string[] = [], env: Record<string, string> = {}): Promise<Vcsim> {
  const sim = await startVcsim(args, env);
  sims.push(sim);
  return sim;
}

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

function fillDisk(file: string, bytes: Buffer): Buffer {
  fs.writeFileSync(file, bytes);
  return bytes;
}

/** The exports here are slowed on purpose: a minute to end. */
const SLOW = { timeoutMs: 60_000 };

const connection = (sim: Vcsim, password = "pass") => ({ url: sim.url, username: "user", password, insecure: true });

async function exportedDisk(outputRoot: string, dir: string, vmName: string): Promise<Buffer> {
  return fs.readFileSync(path.join(outputRoot, dir, vmName, `${vmName}-disk-1.vmdk`));
}

/** Daemon log records of the simulator at `url` whose message is `message`. */
function daemonRecords(d: DaemonProcess, url: string, message: string): Record<string, unknown>[] {
  const endpoint = new URL(url).host;
  return d.logs.filter((l) => l.includes(message) && l.includes(endpoint)).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The export lease recorded in a job's checkpoint (read from the database of a daemon that is not running). */
function recordedLease(dataDir: string, jobId: string): { lease: string; url: string; session?: string; sealed?: boolean } | undefined {
  const db = new Database(path.join(dataDir, "hypervisord.db"), { readonly: true });
  try {
    const row = db.prepare("SELECT checkpoint FROM jobs WHERE id = ?").get(jobId) as { checkpoint: string | null } | undefined;
    const find = (value: unknown): { lease: string; url: string; session?: string; sealed?: boolean } | undefined => {
      if (typeof value !== "object" || value === null) return undefined;
      const record = (value as { lease?: unknown }).lease;
      if (typeof record === "object" && record !== null && typeof (record as { lease?: unknown }).lease === "string") return record as { lease: string; url: string; session?: string; sealed?: boolean };
      for (const inner of Object.values(value)) {
        const found = find(inner);
        if (found) return found;
      }
      return undefined;
    };
    return row?.checkpoint ? find(JSON.parse(row.checkpoint)) : undefined;
  } finally {
    db.close();
  }
}

/** HTTP status of HEAD on a lease's NFC URL: 200 while the lease is held, 404 once it ended (completed, aborted or timed out). */
function leaseUrlStatus(sim: Vcsim, lease: string): Promise<number> {
  const url = new URL(`/nfc/export/${lease}/disk-0.vmdk`, sim.url);
  return new Promise((resolve, reject) => {
    const request = https.request(url, { method: "HEAD", rejectUnauthorized: false, timeout: 5_000 }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    request.on("error", reject);
    request.end();
  });
}

async function waitForStatus(sim: Vcsim, lease: string, status: number, timeoutMs: number): Promise<number> {
  const began = Date.now();
  while ((await leaseUrlStatus(sim, lease)) !== status) {
    if (Date.now() - began > timeoutMs) assert.fail(`lease ${lease} did not answer ${status} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return Date.now() - began;
}

describe("vSphere session expiry during an export", () => {
  test("a keep-alive under the lease timeout also keeps the session: no re-login, no warning, identical disk", async (t) => {
    if (skipReason) return t.skip(skipReason);
    // Sessions idle 2 s expire; the lease times out after 4 s, so HttpNfcLeaseProgress goes every second; the
    // export lasts about 6 s of NFC traffic, which is not session traffic.
    const sim = await simulator(["-session-idle-timeout", "2s"], { VCSIM_LEASE_TIMEOUT_S: "4", VCSIM_EXPORT_RATE: "500000" });
    const vm = sim.vms[0]!;
    const source = fillDisk(vm.disks[0]!.file, randomBytes(3_000_000));
    const { job } = await client.unary("submitJob", { definition: { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "idle-kept" } });
    const done = await waitForJob(client, job!.id, isFinal, SLOW);
    assert.equal(done.state, JobState.COMPLETED, done.error?.message);
    assert.ok(Number(done.result!.durationSeconds) > 4, `the export outlasted the session idle timeout (${done.result!.durationSeconds} s)`);
    assert.deepEqual(done.result!.warnings, []);
    assert.ok((await exportedDisk(daemon.outputRoot, "idle-kept", vm.name)).equals(source), "byte-identical");
    assert.deepEqual(daemonRecords(daemon, sim.url, "vSphere session logged in again"), [], "the session never expired");
  });

  test("a session that expires anyway (keep-alive slower than vCenter's idle timeout): COMPLETED with a warning, identical disk", async (t) => {
    if (skipReason) return t.skip(skipReason);
    // The default 300 s lease gets a keep-alive every 30 s; sessions here expire after 2 s idle, so the session
    // that holds the lease dies during the download, and HttpNfcLeaseComplete after the re-login finds no lease
    // (ManagedObjectNotFound). Every file matched the lease manifest: the job completes, and says so.
    const sim = await simulator(["-session-idle-timeout", "2s"], { VCSIM_EXPORT_RATE: "600000" });
    const vm = sim.vms[0]!;
    const source = fillDisk(vm.disks[0]!.file, randomBytes(3_000_000));
    const { job } = await client.unary("submitJob", { definition: { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "idle-expired" } });
    const done = await waitForJob(client, job!.id, isFinal, SLOW);
    assert.equal(done.state, JobState.COMPLETED, done.error?.message);
    assert.equal(done.result!.warnings.length, 1, done.result!.warnings.join("\n"));
    assert.match(done.result!.warnings[0]!,
      /^HttpNfcLeaseComplete failed after all 1 files were verified against the lease manifest: vSphere HttpNfcLeaseComplete at .* failed: ManagedObjectNotFound.*; the export is complete, and the lease is aborted or times out on the host$/);
    assert.ok((await exportedDisk(daemon.outputRoot, "idle-expired", vm.name)).equals(source), "byte-identical");
    assert.ok(daemonRecords(daemon, sim.url, "vSphere session logged in again").length > 0, "the session did expire during the export");
    const manifest = fs.readFileSync(path.join(daemon.outputRoot, "idle-expired", vm.name, `${vm.name}.mf`), "utf8");
    assert.match(manifest, new RegExp(`SHA256\\(${vm.name}-disk-1\\.vmdk\\)= ${sha256(source)}`));
  });
});

describe("vCenter down mid-export", () => {
  test("down 60 s (killed, then started again on the same port): retried, resumed from the bytes on disk, COMPLETED and identical", async (t) => {
    if (skipReason) return t.skip(skipReason);
    // "Down" as a vCenter restart looks to a client: connections refused for a minute, then a vCenter that knows
    // neither the old session nor the old lease, with the VM's disk unchanged. SIGKILL, because SIGTERM makes vcsim
    // delete its datastore; the new simulator's disk gets the same bytes (its datastore is a new directory).
    const env = { VCSIM_EXPORT_RATE: "1000000" };
    const first = await startVcsim([], env);
    const vm = first.vms[0]!;
    const size = 4 * 1024 * 1024;
    const source = fillDisk(vm.disks[0]!.file, randomBytes(size));
    const port = new URL(first.url).port;
    const { job } = await client.unary("submitJob", { definition: { provider: "vsphere", vm: vm.path, vsphere: connection(first), outputDir: "down" } });
    const jobId = job!.id;
    const before = Number((await waitForJob(client, jobId, hasBytes(size / 4), SLOW)).progress!.bytesDone);
    first.child.kill("SIGKILL");
    await first.stop();
    leftDatastores.push(path.dirname(path.dirname(vm.disks[0]!.file)));
    const downSince = Date.now();
    await new Promise((r) => setTimeout(r, 60_000));
    const second = await simulator(["-l", `127.0.0.1:${port}`], env);
    assert.equal(second.url, first.url, "the same vCenter address");
    fillDisk(second.vms.find((v) => v.path === vm.path)!.disks[0]!.file, source);

    const done = await waitForJob(client, jobId, isFinal, { timeoutMs: 45_000 });
    assert.equal(done.state, JobState.COMPLETED, done.error?.message);
    assert.ok((await exportedDisk(daemon.outputRoot, "down", vm.name)).equals(source), "byte-identical");
    assert.ok(done.attempt > 1 && done.attempt <= 10, `retried within the default budget (attempt ${done.attempt})`);
    const { transitions } = await client.unary("getJobHistory", { jobId });
    const retries = transitions.filter((tr) => /^attempt \d+ of 10 failed, retrying in/.test(tr.reason));
    assert.ok(retries.length >= 2, transitions.map((tr) => tr.reason).join("\n"));
    assert.ok(retries.some((tr) => /ECONNREFUSED|refused/.test(tr.reason)), "connection refused is retried");
    const lastRetry = Number(retries.at(-1)!.time!.seconds) * 1000;
    assert.ok(lastRetry - downSince > 50_000, "still retrying near the end of the outage");
    const { entries } = await client.unary("getJobLogs", { jobId });
    const starts = entries.filter((e) => e.message === "download started").map((e) => JSON.parse(e.fieldsJson) as { fromByte: number });
    // From the last checkpoint (saved every MiB or so), not from 0.
    assert.ok(starts.some((s) => s.fromByte > 0 && s.fromByte <= before), `resumed from the bytes on disk (${before} before the outage): ${JSON.stringify(starts)}`);
  });
});

describe("leases left behind", () => {
  test("kill -9 of the daemon mid-export: the restarted daemon aborts the lease the dead one held, then completes", async (t) => {
    if (skipReason) return t.skip(skipReason);
    // A 60 s lease timeout: the old lease ending within seconds of the restart is the abort, not the host's timeout.
    const sim = await simulator([], { VCSIM_EXPORT_RATE: "400000", VCSIM_LEASE_TIMEOUT_S: "60" });
    const vm = sim.vms[0]!;
    const source = fillDisk(vm.disks[0]!.file, randomBytes(3_000_000));
    const first = await spawnDaemon();
    const firstClient = createGrpcJsClient(first.grpcAddress);
    let jobId = "";
    try {
      const { job } = await firstClient.unary("submitJob", { definition: { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "killed" } });
      jobId = job!.id;
      await waitForJob(firstClient, jobId, hasBytes(500_000), SLOW);
    } finally {
      firstClient.close();
      await first.kill();
    }
    const record = recordedLease(first.dataDir, jobId);
    assert.ok(record, "the checkpoint records the lease");
    assert.equal(record.url, new URL(sim.url).href, "and the vCenter it belongs to");
    assert.equal(record.sealed, true, "and its session, sealed with the daemon's key");
    assert.ok(record.session && !/^[0-9a-f-]{36}$/.test(record.session), "no session cookie in clear");
    assert.equal(await leaseUrlStatus(sim, record.lease), 200, "the dead daemon's lease is still held");

    const second = await respawnDaemon(first);
    const secondClient = createGrpcJsClient(second.grpcAddress);
    try {
      const tookMs = await waitForStatus(sim, record.lease, 404, 20_000);
      const done = await waitForJob(secondClient, jobId, isFinal, SLOW);
      assert.equal(done.state, JobState.COMPLETED, done.error?.message);
      assert.ok((await exportedDisk(first.outputRoot, "killed", vm.name)).equals(source), "byte-identical");
      const { entries } = await secondClient.unary("getJobLogs", { jobId });
      assert.ok(entries.some((e) => e.message === "aborted the export lease an earlier run left" && e.fieldsJson.includes(record.lease)),
        `aborted (after ${tookMs} ms), not timed out: ${entries.map((e) => e.message).join(" | ")}`);
      assert.ok(second.logs.some((l) => l.includes("logged out the vSphere session an earlier run left behind")), "the dead daemon's session is logged out");
    } finally {
      secondClient.close();
      assert.equal(await second.stop(), 0);
    }
  });

  test("a job cancelled while vCenter cannot be reached keeps its lease on record; the next start aborts it", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const sim = await simulator([], { VCSIM_EXPORT_RATE: "300000", VCSIM_LEASE_TIMEOUT_S: "120" });
    // The daemon reaches vCenter through a TCP relay that the test can cut: vCenter unreachable for the daemon
    // while the simulator (and its lease) lives on. (A stopped simulator would still act on the abort once resumed.)
    const relay = await createRelay(new URL(sim.url).port);
    t.after(() => relay.close());
    const viaRelay = { ...connection(sim), url: sim.url.replace(/:\d+\//, `:${relay.port}/`) };
    const vm = sim.vms[0]!;
    fillDisk(vm.disks[0]!.file, randomBytes(3_000_000));
    const first = await spawnDaemon();
    const firstClient = createGrpcJsClient(first.grpcAddress);
    let jobId = "";
    try {
      const { job } = await firstClient.unary("submitJob", { definition: { provider: "vsphere", vm: vm.path, vsphere: viaRelay, outputDir: "cut" } });
      jobId = job!.id;
      await waitForJob(firstClient, jobId, hasBytes(300_000), SLOW);
      await relay.cut();
      const { job: cancelled } = await firstClient.unary("cancelJob", { jobId });
      assert.equal(cancelled!.state, JobState.CANCELLED);
      const deadline = Date.now() + 15_000;
      while (!first.logs.some((l) => l.includes("could not abort the export lease"))) {
        if (Date.now() > deadline) assert.fail("the cancelled run did not report its failed abort");
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      firstClient.close();
      // Killed, not stopped: a graceful stop logs the daemon's sessions out, and a lease goes with its session.
      await first.kill();
    }
    const record = recordedLease(first.dataDir, jobId);
    assert.ok(record, "the cancelled job's checkpoint still records the lease");
    assert.equal(await leaseUrlStatus(sim, record.lease), 200, "the lease is still held");

    await relay.restore();
    const second = await respawnDaemon(first);
    try {
      await waitForStatus(sim, record.lease, 404, 20_000);
      const deadline = Date.now() + 5_000;
      while (!second.logs.some((l) => l.includes("released the export lease of a job that will not run again"))) {
        if (Date.now() > deadline) assert.fail("the release is not logged");
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      assert.equal(await second.stop(), 0);
    }
    assert.equal(recordedLease(first.dataDir, jobId), undefined, "the record is dropped once the lease is released");
  });
});

/** A TCP relay on a fixed loopback port to `targetPort`; cut() refuses connections and drops the open ones, restore() listens again. */
async function createRelay(targetPort: string) {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(targetPort), "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => s.destroy());
      s.on("close", () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  const listen = (port: number) => new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  await listen(0);
  const port = (server.address() as net.AddressInfo).port;
  const cut = () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of sockets) s.destroy();
    return closed;
  };
  return { port, cut, restore: () => listen(port), close: () => (server.listening ? cut() : undefined) };
}

describe("a refused vCenter login and a refused API key", () => {
  test("wrong vCenter password: FAILED_PRECONDITION naming vSphere, not retried; wrong API key: UNAUTHENTICATED", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const key = `hvd_hardening-key-for-tests-${"h".repeat(24)}`;
    const keyed = await spawnDaemon({
      args: ["--config", configFile(`rate_limit:\n  requests_per_second: 0\nauth:\n  api_keys:\n    - {name: ops, key: ${key}, role: admin}\n`)],
    });
    t.after(async () => assert.equal(await keyed.stop(), 0));
    const sim = await simulator(["-username", "user", "-password", "pass"]);
    const auth = { authorization: `Bearer ${key}` };
    const password = "not-the-password-42";

    const wrongKey = await postJson(keyed.httpUrl, "ListVMs", { provider: "vsphere", vsphere: connection(sim) }, { authorization: `Bearer ${key.replace(/h$/, "x")}` });
    assert.equal(wrongKey.status, 401);
    assert.equal(wrongKey.body.code, "unauthenticated");

    const wrongPassword = await postJson(keyed.httpUrl, "ListVMs", { provider: "vsphere", vsphere: connection(sim, password) }, auth);
    assert.equal(wrongPassword.body.code, "failed_precondition", JSON.stringify(wrongPassword.body));
    assert.match(wrongPassword.body.message, /^vSphere login to https:\/\/127\.0\.0\.1:\d+\/sdk as user failed: incorrect user name or password$/);

    const submitted = await postJson(keyed.httpUrl, "SubmitJob",
      { definition: { provider: "vsphere", vm: sim.vms[0]!.path, vsphere: connection(sim, password), outputDir: "bad-login" } }, auth);
    const jobId = submitted.body.job.id as string;
    let job: Record<string, any>;
    for (const deadline = Date.now() + 20_000; ; await new Promise((r) => setTimeout(r, 100))) {
      job = (await postJson(keyed.httpUrl, "GetJob", { jobId }, auth)).body.job;
      if (["JOB_STATE_FAILED", "JOB_STATE_COMPLETED", "JOB_STATE_CANCELLED"].includes(job.state)) break;
      if (Date.now() > deadline) assert.fail(`job still ${job.state}`);
    }
    assert.equal(job.state, "JOB_STATE_FAILED");
    assert.equal(job.error.code, "FAILED_PRECONDITION");
    assert.match(job.error.message, /^vSphere login to .* as user failed: incorrect user name or password/);
    assert.equal(job.attempt ?? 1, 1, "a refused login is not retried");
    assert.ok(!keyed.logs.some((l) => l.includes(password)), "the password is in no log line");
  });
});

describe("retry budget and what is transient", () => {
  test("retrying stops at jobs.retry_max_elapsed before max_attempts, saying so", async () => {
    const h = await startEngine({ maxAttempts: 10, retryMaxElapsedMs: 400, retryInitialBackoffMs: 100, retryMaxBackoffMs: 150 });
    try {
      const { job } = await h.engine.submit(fakeDefinition(h.outputDir, "down?failTimes=50"), { actor: "test" });
      const done = await waitFor("the job to fail", async () => {
        const now = (await h.store.getJob(job.id))!;
        return now.state === "failed" && now;
      });
      assert.ok(done.attempt > 1 && done.attempt < 10, `retried, then stopped by the time budget (attempt ${done.attempt})`);
      const history = await h.store.history(job.id);
      const last = history.at(-1)!;
      assert.match(last.reason, /^fake failure \d+ of 50 \(after \d+ attempts\); not retried: jobs\.retry_max_elapsed \(0\.4 s\) since the first attempt is spent$/);
      const first = history.find((tr) => tr.toState === "running")!;
      assert.ok(last.time - first.time < 1_000, `within the budget and one more attempt (${last.time - first.time} ms)`);
    } finally {
      await h.close();
    }
  });

  test("backoff: exponential with jitter, never above retry_max_backoff", () => {
    const options = { initialMs: 2_000, maxMs: 300_000 };
    assert.deepEqual([1, 2, 3, 4].map((a) => retryDelayMs(a, options, () => 0.5)), [2_000, 4_000, 8_000, 16_000]);
    assert.equal(retryDelayMs(1, options, () => 0), 1_600, "-20%");
    assert.equal(retryDelayMs(1, options, () => 0.999), 2_399, "+20%");
    for (const attempt of [9, 10, 30, 1_000]) assert.equal(retryDelayMs(attempt, options, () => 0.999), 300_000, "capped, jitter included");
  });

  test("a vSphere endpoint that refuses, resets, answers 503 or forgets the session is transient; a refused login is not", async (t) => {
    const agent = new Agent();
    t.after(() => agent.close());
    const answers: Record<string, (res: http.ServerResponse, req: http.IncomingMessage) => void> = {
      "/busy": (res) => res.writeHead(503).end("vpxd is starting"),
      "/reset": (_res, req) => req.socket.destroy(),
      "/forgot": (res) => res.writeHead(500, { "content-type": "text/xml" }).end(soapFault("NotAuthenticated", "The session is not authenticated.")),
      "/login": (res) => res.writeHead(500, { "content-type": "text/xml" }).end(soapFault("InvalidLogin", "Cannot complete login due to an incorrect user name or password.")),
    };
    const server = http.createServer((req, res) => answers[req.url!]!(res, req));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    t.after(() => new Promise((resolve) => server.close(resolve)));
    const base = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    const outcome = async (url: string) => {
      try {
        await createSoapClient(new URL(url), agent).call("RetrieveServiceContent", [], AbortSignal.timeout(5_000));
        return "answered";
      } catch (err) {
        const e = toHypervisordError(err);
        return `${e.code} ${e.retryable}`;
      }
    };
    assert.equal(await outcome(`${base}/busy`), "UNAVAILABLE true");
    assert.equal(await outcome(`${base}/reset`), "UNAVAILABLE true");
    assert.equal(await outcome(`${base}/forgot`), "UNAVAILABLE true");
    assert.equal(await outcome(`${base}/login`), "FAILED_PRECONDITION false");
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    assert.equal(await outcome(`http://127.0.0.1:${port}/sdk`), "UNAVAILABLE true", "connection refused");
  });
});

function soapFault(type: string, text: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">`
    + `<soapenv:Body><soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>${text}</faultstring>`
    + `<detail><${type}Fault xmlns="urn:vim25" xsi:type="${type}"></${type}Fault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>`;
}
