import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import { request } from "undici";
import type { Job, JobDefinition, JobProgress } from "../src/domain/job.ts";
import type { Webhook, WebhookDelivery, WebhookEvent } from "../src/domain/webhook.ts";
import { InvalidArgumentError } from "../src/errors.ts";
import { generateKey } from "../src/store/encryption-key.ts";
import { createSecretBox } from "../src/store/secret-box.ts";
import { migrate } from "../src/store/sqlite/migrations.ts";
import { createWebhookQueries } from "../src/store/sqlite/webhooks.ts";
import type { WebhookStore } from "../src/store/store.ts";
import { toAsync, type Sync } from "../src/store/sync-store.ts";
import { createWebhookDispatcher, parseRetryAfter, type WebhookDispatcher, type WebhookDispatcherOptions } from "../src/webhooks/dispatcher.ts";
import { jobEvent, MAX_DISCOVERED_VMS, progressEvent, scheduleTriggeredEvent, testEvent, vmDiscoveredEvent } from "../src/domain/webhook-events.ts";
import { createProgressEvents } from "../src/webhooks/progress-events.ts";
import { generateSecret, parseSecret, signatureHeaders, verifySignature } from "../src/webhooks/signing.ts";
import { BlockedTargetError, blockedAddressKind, checkWebhookUrl, createGuardedAgent } from "../src/webhooks/ssrf-guard.ts";
import { tempDir } from "./support/temp-dir.ts";
import { waitFor } from "./support/wait-for.ts";
import { startWebhookReceiver, type ReceivedRequest, type Reply } from "./support/webhook-receiver.ts";

const tmp = tempDir("webhooks");
const databases: Database.Database[] = [];
const dispatchers: WebhookDispatcher[] = [];

after(async () => {
  for (const dispatcher of dispatchers) await dispatcher.stop();
  for (const db of databases) db.close();
});

// ---------------------------------------------------------------------------------------------
// Helpers: a store on a fresh database, webhooks, a recording logger (the HTTP receiver is test/support's).

function openStore() {
  const db = new Database(path.join(tmp, `db-${databases.length}.sqlite`));
  db.pragma("journal_mode = WAL");
  db.pragma("foreign_keys = ON");
  migrate(db);
  databases.push(db);
  return { db, store: createWebhookQueries(db, createSecretBox(generateKey())) };
}

/** The receiver of these tests answers 200 unless told otherwise; closed by test/support when the file ends. */
const startReceiver = (reply?: Reply, port?: number) => startWebhookReceiver({ reply, port });

/** A port nothing listens on (yet). */
async function freePort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const SECRET = generateSecret();

function makeWebhook(id: string, url: string, fields: Partial<Webhook> = {}): Webhook {
  return {
    id, url, events: [], headers: {}, secret: SECRET, timeoutMs: 2000, maxAttempts: 5, enabled: true, source: "api",
    createTime: 1_700_000_000_000, updateTime: 1_700_000_000_000, ...fields,
  };
}

function recordingLogger() {
  const lines: string[] = [];
  const log = (level: string) => (obj: object, msg: string) => void lines.push(`${level} ${msg} ${JSON.stringify(obj)}`);
  return { lines, logger: { info: log("info"), warn: log("warn"), error: log("error") } };
}

/**
 * The dispatcher gets the async store, as the daemon's SQLite store gives it (toAsync); the tests set up and
 * inspect the same database through the synchronous queries.
 */
function startDispatcher(options: Partial<Omit<WebhookDispatcherOptions, "store">> & { store: Sync<WebhookStore> }) {
  const { lines, logger } = recordingLogger();
  const dispatcher = createWebhookDispatcher({
    logger,
    allowPrivateTargets: true,
    pollIntervalMs: 1000,
    retry: { initialMs: 40, maxMs: 200 },
    circuit: { failureThreshold: 100, cooldownMs: 1000, maxCooldownMs: 1000 },
    ...options,
    store: toAsync<WebhookStore>(options.store),
  });
  dispatchers.push(dispatcher);
  dispatcher.start();
  return { dispatcher, logs: lines };
}

function sampleEvent(type: WebhookEvent["type"] = "job.completed", data: Record<string, unknown> = { job_id: "j-1" }): WebhookEvent {
  return { type, timestamp: "2024-05-01T12:00:00.000Z", data };
}

function settled(store: ReturnType<typeof openStore>["store"], id: string): Promise<WebhookDelivery> {
  return waitFor(`delivery ${id} to settle`, () => {
    const delivery = store.getDelivery(id);
    return delivery && delivery.state !== "pending" ? delivery : undefined;
  });
}

/** Checks a received request's signature twice: with verifySignature, and by recomputing the HMAC here. */
function assertSigned(received: ReceivedRequest, secret = SECRET): void {
  assert.ok(verifySignature(secret, received.headers, received.body), "verifySignature accepts the request");
  const id = received.headers["webhook-id"] as string;
  const timestamp = received.headers["webhook-timestamp"] as string;
  const key = Buffer.from(secret.slice("whsec_".length), "base64");
  const expected = createHmac("sha256", key).update(`${id}.${timestamp}.${received.body}`).digest("base64");
  assert.equal(received.headers["webhook-signature"], `v1,${expected}`);
  assert.ok(Math.abs(Number(timestamp) - Date.now() / 1000) < 10, "timestamp is now, in seconds");
  assert.equal(received.headers["content-type"], "application/json");
  assert.match(received.headers["user-agent"] ?? "", /^hypervisord-webhooks\//);
}

// ---------------------------------------------------------------------------------------------

describe("signing", () => {
  test("generated secrets parse; malformed ones are refused with the field named", () => {
    const secret = generateSecret();
    assert.match(secret, /^whsec_[A-Za-z0-9+/]+=*$/);
    assert.equal(parseSecret(secret).length, 32);
    assert.notEqual(generateSecret(), secret);
    for (const bad of ["", "abc", "whsec_", "whsec_not base64!", `whsec_${Buffer.alloc(8).toString("base64")}`, `whsec_${Buffer.alloc(80).toString("base64")}`]) {
      assert.throws(() => parseSecret(bad, "webhook.secret"), (err: unknown) => err instanceof InvalidArgumentError && err.field === "webhook.secret", bad);
    }
  });

  test("signatures verify, several signatures are accepted, tampering and stale timestamps are not", () => {
    const secret = generateSecret();
    const body = '{"type":"webhook.test"}';
    const now = Math.floor(Date.now() / 1000);
    const headers = signatureHeaders(secret, "msg_1", now, body);
    assert.deepEqual(Object.keys(headers).sort(), ["webhook-id", "webhook-signature", "webhook-timestamp"]);
    assert.ok(verifySignature(secret, headers, body), "valid");
    assert.ok(verifySignature(secret, new Headers(headers), Buffer.from(body)), "valid from a Headers object");
    const other = signatureHeaders(generateSecret(), "msg_1", now, body)["webhook-signature"];
    assert.ok(verifySignature(secret, { ...headers, "webhook-signature": `${other} v2,abc ${headers["webhook-signature"]}` }, body), "one valid signature among several");
    assert.ok(!verifySignature(secret, { ...headers, "webhook-signature": other }, body), "signed with another key");
    assert.ok(!verifySignature(secret, headers, body.replace("test", "tost")), "tampered body");
    assert.ok(!verifySignature(secret, { ...headers, "webhook-id": "msg_2" }, body), "another id");
    const stale = signatureHeaders(secret, "msg_1", now - 600, body);
    assert.ok(!verifySignature(secret, stale, body), "stale timestamp");
    assert.ok(verifySignature(secret, stale, body, 900), "stale but within a wider tolerance");
  });
});

describe("webhook store", () => {
  test("webhooks round-trip; enqueue follows subscriptions and sees every change at once", () => {
    const { store } = openStore();
    const a = makeWebhook("a", "http://example.com/a", { headers: { "X-Token": "t" } });
    store.insert(a);
    assert.deepEqual(store.get("a"), a);
    assert.throws(() => store.insert(a), /already exists/);
    assert.equal(store.enqueue(sampleEvent("job.completed")).length, 1);
    assert.equal(store.enqueue(sampleEvent("job.progress")).length, 0, "job.progress is opt-in");

    // The cache of enabled webhooks follows inserts, updates and deletes.
    store.insert(makeWebhook("b", "http://example.com/b", { events: ["job.progress"] }));
    assert.deepEqual(store.enqueue(sampleEvent("job.progress")).map((d) => d.webhookId), ["b"]);
    assert.equal(store.update({ ...a, enabled: false }), true);
    assert.equal(store.enqueue(sampleEvent("job.completed")).length, 0);
    assert.equal(store.update(makeWebhook("nope", "http://example.com")), false);
    assert.equal(store.delete("b"), true);
    assert.equal(store.enqueue(sampleEvent("job.progress")).length, 0);
    assert.deepEqual(store.list().map((w) => w.id), ["a"]);
  });

  test("deliveries carry the exact payload, attempts and paging; deleted webhooks' deliveries are not due", () => {
    const { store } = openStore();
    store.insert(makeWebhook("a", "http://example.com/a"));
    store.insert(makeWebhook("b", "http://example.com/b"));
    const event = sampleEvent("job.failed", { job_id: "j-9", error: { code: "X", message: "boom" } });
    const created = store.enqueue(event, { now: 1000 });
    assert.equal(created.length, 2);
    assert.match(created[0]!.id, /^msg_[0-9a-f]{32}$/);
    assert.notEqual(created[0]!.id, created[1]!.id);
    assert.equal(created[0]!.payload, JSON.stringify({ type: event.type, timestamp: event.timestamp, data: event.data }));
    assert.deepEqual(store.enqueue(testEvent("b"), { only: "b", now: 1001 }).map((d) => d.webhookId), ["b"]);

    assert.equal(store.nextDueTime(), 1000);
    assert.equal(store.due(999, 10).length, 0);
    const due = store.due(2000, 10);
    assert.deepEqual(due.map((d) => [d.webhook.id, d.delivery.eventType]), [["a", "job.failed"], ["b", "job.failed"], ["b", "webhook.test"]]);
    assert.equal(due[0]!.webhook.url, "http://example.com/a");

    const first = created[0]!;
    store.recordAttempt(first.id, { time: 1500, statusCode: 500, latencyMs: 12.5, error: "HTTP 500" }, { state: "pending", nextAttemptTime: 5000 });
    store.recordAttempt(first.id, { time: 5000, statusCode: 200, latencyMs: 3, error: "" }, { state: "delivered" });
    const delivered = store.getDelivery(first.id)!;
    assert.equal(delivered.state, "delivered");
    assert.equal(delivered.nextAttemptTime, undefined);
    assert.deepEqual(delivered.attempts, [
      { time: 1500, statusCode: 500, latencyMs: 12.5, error: "HTTP 500" },
      { time: 5000, statusCode: 200, latencyMs: 3, error: "" },
    ]);
    assert.throws(() => store.recordAttempt("msg_unknown", { time: 1, statusCode: 0, latencyMs: 0, error: "" }, { state: "failed" }), /not found/);

    // Newest first, paged by delivery id.
    for (let i = 0; i < 3; i++) store.enqueue(sampleEvent("job.created", { i }), { now: 3000 + i });
    const page1 = store.listDeliveries("b", { limit: 2 });
    assert.deepEqual(page1.deliveries.map((d) => JSON.parse(d.payload).data.i), [2, 1]);
    const page2 = store.listDeliveries("b", { limit: 2, before: page1.next });
    assert.deepEqual(page2.deliveries.map((d) => d.eventType), ["job.created", "webhook.test"]);
    const page3 = store.listDeliveries("b", { limit: 2, before: page2.next });
    assert.deepEqual(page3.deliveries.map((d) => d.eventType), ["job.failed"]);
    assert.equal(page3.next, undefined);
    assert.equal(store.listDeliveries("a", { limit: 10 }).deliveries.find((d) => d.id === first.id)?.attempts.length, 2);

    // Deleting a webhook keeps its history but takes its deliveries out of the queue.
    store.delete("b");
    assert.ok(store.due(10_000, 100).every((d) => d.webhook.id === "a"), "only a's deliveries are due");
    assert.equal(store.listDeliveries("b", { limit: 10 }).deliveries.length, 5);
    store.delete("a");
    assert.deepEqual(store.due(10_000, 100), []);
    assert.equal(store.nextDueTime(), undefined);
  });

  test("enqueue inside a transaction that rolls back leaves no delivery", () => {
    const { db, store } = openStore();
    store.insert(makeWebhook("a", "http://example.com/a"));
    const announce = db.transaction(() => {
      assert.equal(store.enqueue(sampleEvent()).length, 1);
      throw new Error("the change failed");
    });
    assert.throws(announce, /the change failed/);
    assert.deepEqual(store.listDeliveries("a", { limit: 10 }).deliveries, []);
    assert.equal(store.nextDueTime(), undefined);
  });

  test("postpone moves only the webhook's pending deliveries due earlier", () => {
    const { store } = openStore();
    store.insert(makeWebhook("a", "http://example.com/a"));
    store.insert(makeWebhook("b", "http://example.com/b"));
    store.enqueue(sampleEvent(), { now: 1000 });
    assert.equal(store.postpone("a", 9000), 1);
    assert.deepEqual(store.due(5000, 10).map((d) => d.webhook.id), ["b"]);
    assert.deepEqual(store.due(9000, 10).map((d) => d.webhook.id), ["b", "a"]);
  });

  test("syncConfig makes the config webhooks exactly the given ones and leaves API webhooks alone", () => {
    const { store } = openStore();
    store.insert(makeWebhook("api-1", "http://example.com/api"));
    const cfg = (name: string, fields: Partial<Webhook> = {}) => makeWebhook(`cfg-${name}`, `http://example.com/${name}`, { source: "config", ...fields });
    store.syncConfig([cfg("one"), cfg("two")]);
    assert.deepEqual(store.list().map((w) => w.id).sort(), ["api-1", "cfg-one", "cfg-two"]);
    assert.equal(store.enqueue(sampleEvent()).length, 3);
    store.syncConfig([cfg("two", { url: "http://example.com/changed", updateTime: 1_800_000_000_000 })]);
    assert.deepEqual(store.list().map((w) => w.id).sort(), ["api-1", "cfg-two"]);
    assert.equal(store.get("cfg-two")?.url, "http://example.com/changed");
    assert.equal(store.get("cfg-two")?.updateTime, 1_800_000_000_000);
    assert.equal(store.enqueue(sampleEvent()).length, 2);
    assert.throws(() => store.syncConfig([{ ...cfg("x"), id: "api-1" }]), /taken by a webhook created through the API/);
  });
});

describe("events", () => {
  const PASSWORD = "hunter2-S3cret-pw";
  const definition: JobDefinition = {
    name: "nightly", provider: "vsphere", vm: "web-01",
    vsphere: { url: "https://vc.example.com/sdk", username: "admin@vsphere.local", password: PASSWORD, insecure: false, thumbprint: "" },
    outputDir: "/exports/web-01", format: "ova", compress: false, compressionLevel: 6, parallelDownloads: 2, bandwidthLimit: 0,
    powerOff: false, priority: "normal", labels: { team: "infra" },
  };
  const job: Job = {
    id: "job-1", definition, state: "completed", attempt: 1, maxAttempts: 3, createTime: 1000, startTime: 2000, endTime: 14_500, scheduleId: "sch-1", attempts: [],
    progress: { phase: "download", percent: 42, bytesDone: 420, bytesTotal: 1000, filesDone: 1, filesTotal: 2, currentFile: "disk", bytesPerSecond: 100, etaSeconds: 6 },
    result: {
      outputDir: "/exports/web-01", ovaPath: "/exports/web-01/web-01.ova", manifestPath: "/exports/web-01/web-01.mf", artifactManifestPath: "/exports/web-01/artifacts.json",
      files: [{ path: "a.vmdk", size: 100, sha256: "x" }, { path: "b.vmdk", size: 23, sha256: "y" }], durationSeconds: 12, warnings: [],
    },
  };
  const at = (fromState: Job["state"] | undefined, toState: Job["state"]) => ({ seq: 1, jobId: job.id, fromState, toState, reason: "r", actor: "engine", time: 20_000 });

  test("job transitions map to event types; retries announce nothing", () => {
    assert.equal(jobEvent({ ...job, state: "queued" }, at(undefined, "queued"))?.type, "job.created");
    assert.equal(jobEvent({ ...job, state: "running" }, at("queued", "running"))?.type, "job.started");
    assert.equal(jobEvent(job, at("running", "completed"))?.type, "job.completed");
    assert.equal(jobEvent({ ...job, state: "failed" }, at("running", "failed"))?.type, "job.failed");
    assert.equal(jobEvent({ ...job, state: "cancelled" }, at("queued", "cancelled"))?.type, "job.cancelled");
    assert.equal(jobEvent({ ...job, state: "queued" }, at("running", "queued")), undefined);
  });

  test("job.completed carries the outcome", () => {
    const event = jobEvent(job, at("running", "completed"))!;
    assert.equal(event.timestamp, new Date(20_000).toISOString());
    assert.deepEqual(event.data, {
      job_id: "job-1", job_name: "nightly", vm: "web-01", provider: "vsphere", state: "completed", reason: "r", attempt: 1,
      labels: { team: "infra" }, schedule_id: "sch-1", duration_seconds: 12.5, output_dir: "/exports/web-01",
      ova_path: "/exports/web-01/web-01.ova", manifest_path: "/exports/web-01/web-01.mf", artifact_manifest_path: "/exports/web-01/artifacts.json",
      file_count: 2, total_bytes: 123,
    });
    const failed = jobEvent({ ...job, state: "failed", result: undefined, error: { code: "UNAVAILABLE", message: "esx-01 down", retryable: true } }, at("running", "failed"))!;
    assert.deepEqual(failed.data.error, { code: "UNAVAILABLE", message: "esx-01 down" });
  });

  test("no event payload contains the password or the vSphere connection", () => {
    const events = [
      jobEvent({ ...job, state: "queued" }, at(undefined, "queued")),
      jobEvent({ ...job, state: "running" }, at("queued", "running")),
      jobEvent(job, at("running", "completed")),
      jobEvent({ ...job, state: "failed" }, at("running", "failed")),
      jobEvent({ ...job, state: "cancelled" }, at("running", "cancelled")),
      progressEvent(job, 5000),
    ];
    for (const event of events) {
      const text = JSON.stringify(event);
      assert.ok(!text.includes(PASSWORD), `${event?.type} leaks the password`);
      assert.ok(!text.includes("admin@vsphere.local") && !text.includes("vc.example.com"), `${event?.type} leaks the connection`);
    }
  });

  test("progress, schedule, discovery and test events", () => {
    assert.deepEqual(progressEvent(job, 5000), {
      type: "job.progress", timestamp: new Date(5000).toISOString(),
      data: {
        job_id: "job-1", job_name: "nightly", vm: "web-01", provider: "vsphere", state: "completed", attempt: 1, labels: { team: "infra" }, schedule_id: "sch-1",
        phase: "download", percent: 42, bytes_done: 420, bytes_total: 1000, bytes_per_second: 100, eta_seconds: 6,
      },
    });
    const triggered = scheduleTriggeredEvent({ scheduleId: "s", scheduleName: "nightly", runId: "r", trigger: "cron", jobId: "j", scheduledTime: 0 }, 1000);
    assert.deepEqual(triggered.data, { schedule_id: "s", schedule_name: "nightly", run_id: "r", trigger: "cron", job_id: "j", scheduled_time: "1970-01-01T00:00:00.000Z" });
    const vms = Array.from({ length: MAX_DISCOVERED_VMS + 5 }, (_, i) => ({ name: `vm-${i}`, path: `/dc/vm/vm-${i}`, moref: `vm-${i}`, powerState: "poweredOn" as const, numCpu: 2 }));
    const discovered = vmDiscoveredEvent("vsphere", vms);
    assert.equal(discovered.data.count, MAX_DISCOVERED_VMS + 5);
    assert.equal(discovered.data.truncated, true);
    assert.equal((discovered.data.vms as unknown[]).length, MAX_DISCOVERED_VMS);
    assert.deepEqual((discovered.data.vms as unknown[])[0], { name: "vm-0", path: "/dc/vm/vm-0", moref: "vm-0", power_state: "poweredOn" });
    assert.equal(testEvent("wh-1").type, "webhook.test");
    assert.equal(testEvent("wh-1").data.webhook_id, "wh-1");
  });
});

describe("progress events", () => {
  const job = { id: "job-p", definition: { name: "n", provider: "fake", vm: "vm-1", labels: {} }, state: "running", attempt: 1 } as unknown as Job;
  const progress = { phase: "download", percent: 10, bytesDone: 1, bytesTotal: 10, filesDone: 0, filesTotal: 1, currentFile: "", bytesPerSecond: 1, etaSeconds: 9 } as JobProgress;

  test("one event per job per interval, none while no webhook asks for job.progress; a failed enqueue is logged", async () => {
    const { store: queries } = openStore();
    queries.insert(makeWebhook("a", "http://example.com/a", { events: ["job.completed"] }));
    const { lines, logger } = recordingLogger();
    const events = createProgressEvents(toAsync<WebhookStore>(queries), logger, 60_000);
    const count = () => queries.listDeliveries("b", { limit: 10 }).deliveries.length;
    events.progressed(job, progress);
    await sleep(20);
    queries.insert(makeWebhook("b", "http://example.com/b", { events: ["job.progress"] }));
    // Nothing was sent while no webhook wanted it, so the interval did not start: this one goes out.
    events.progressed(job, progress);
    events.progressed(job, progress);
    await waitFor("the event", () => count() === 1);
    events.progressed(job, progress);
    await sleep(20);
    assert.equal(count(), 1, "one per interval");

    const failing: WebhookStore = { ...toAsync<WebhookStore>(queries), enqueue: () => Promise.reject(new Error("the database went away")) };
    createProgressEvents(failing, logger, 60_000).progressed(job, progress);
    await waitFor("the logged failure", () => lines.find((l) => l.startsWith("error ") && l.includes("the database went away")));
  });
});

describe("ssrf guard", () => {
  const refused = ["http://127.0.0.1:8080/x", "http://10.1.2.3/", "http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://localhost:9000/",
    "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/", "http://100.64.0.1/", "http://172.16.5.5/", "http://192.168.1.1/", "http://[fd00::1]/", "http://[fe80::1]/", "http://2130706433/"];

  test("validation: http(s) only, no credentials, no private targets unless allowed", () => {
    assert.equal(checkWebhookUrl("https://hooks.example.com/a?b=c", { allowPrivateTargets: false }).host, "hooks.example.com");
    const invalid = (url: string, allowPrivateTargets: boolean, pattern: RegExp) =>
      assert.throws(() => checkWebhookUrl(url, { allowPrivateTargets }, "webhook.url"),
        (err: unknown) => err instanceof InvalidArgumentError && err.field === "webhook.url" && pattern.test(err.message), url);
    invalid("not a url", true, /absolute URL/);
    invalid("ftp://example.com/", true, /http or https/);
    invalid("https://user:pw@example.com/", true, /credentials/);
    for (const url of refused) invalid(url, false, /allow_private_targets/);
    for (const url of refused) assert.ok(checkWebhookUrl(url, { allowPrivateTargets: true }), url);
  });

  test("each refused range is refused, and its allowed neighbours just outside it are not", () => {
    // [address, expected kind (a pattern) or undefined for allowed]: every range with addresses on both sides of its edges.
    const cases: [string, RegExp | undefined][] = [
      ["198.17.255.255", undefined], ["198.18.0.0", /^benchmarking$/], ["198.19.255.255", /^benchmarking$/], ["198.20.0.0", undefined],
      ["191.255.255.255", undefined], ["192.0.0.0", /^IETF protocol assignment$/], ["192.0.0.255", /^IETF protocol assignment$/], ["192.0.1.0", undefined],
      ["223.255.255.255", undefined], ["224.0.0.0", /^multicast$/], ["239.255.255.255", /^multicast$/],
      ["240.0.0.0", /^reserved$/], ["255.255.255.254", /^reserved$/], ["255.255.255.255", /^broadcast$/],
      ["feff:ffff::1", /^site-local/], ["ff00::", /^multicast$/], ["ff02::1", /^multicast$/], ["ffff:ffff::1", /^multicast$/],
      ["fe00::1", undefined], ["febf::1", /^link-local$/], ["fec0::", /^site-local \(deprecated\)$/],
      ["::ffff:224.0.0.1", /^multicast$/], ["::ffff:198.18.0.1", /^benchmarking$/], ["::ffff:8.8.8.8", undefined],
      // NAT64: the embedded IPv4 address decides; only the well-known /96 prefix embeds one there.
      ["64:ff9b::127.0.0.1", /^loopback \(embedded in NAT64 64:ff9b::\/96: 127\.0\.0\.1\)$/], ["64:ff9b::a9fe:a9fe", /^link-local \(embedded in NAT64/],
      ["64:ff9b::10.0.0.1", /^private \(embedded/], ["64:ff9b::198.18.0.1", /^benchmarking \(embedded/], ["64:ff9b::8.8.8.8", undefined], ["64:ff9b:1::7f00:1", undefined],
      // 6to4: the IPv4 address is the 32 bits after 2002:.
      ["2002:7f00:1::", /^loopback \(embedded in 6to4 2002::\/16: 127\.0\.0\.1\)$/], ["2002:a9fe:a9fe::1", /^link-local \(embedded in 6to4/],
      ["2002:c0a8:101:1::1", /^private \(embedded in 6to4 2002::\/16: 192\.168\.1\.1\)$/], ["2002:808:808::1", undefined], ["2003::1", undefined], ["2001:4860::8888", undefined],
      // IPv4-compatible ::a.b.c.d: all of ::/96 (deprecated), public embedded addresses included; :: and ::1 keep their own names.
      ["::127.0.0.1", /^IPv4-compatible/], ["::8.8.8.8", /^IPv4-compatible/], ["::0.0.0.2", /^IPv4-compatible/], ["::", /^unspecified$/], ["::1", /^loopback$/],
      ["::1:0:0", undefined], ["8.8.8.8", undefined],
    ];
    for (const [address, expected] of cases) {
      const kind = blockedAddressKind(address);
      if (expected) assert.match(kind ?? "allowed", expected, address);
      else assert.equal(kind, undefined, address);
    }
    // The same at create time, from the URL, in the form URL parsing normalises them to.
    for (const url of ["http://198.18.0.1/", "http://192.0.0.8/", "http://240.0.0.1/", "http://255.255.255.255/", "http://224.0.0.251/", "http://[ff02::1]/",
      "http://[64:ff9b::127.0.0.1]/", "http://[2002:7f00:1::]/", "http://[::127.0.0.1]/", "http://[fec0::1]/"]) {
      assert.throws(() => checkWebhookUrl(url, { allowPrivateTargets: false }, "webhook.url"),
        (err: unknown) => err instanceof InvalidArgumentError && err.field === "webhook.url" && /allow_private_targets/.test(err.message), url);
    }
    for (const url of ["http://198.20.0.1/", "http://[64:ff9b::808:808]/", "http://[2002:808:808::1]/"]) {
      assert.equal(checkWebhookUrl(url, { allowPrivateTargets: false }).protocol, "http:", url);
    }
  });

  test("connect time: refused addresses are never connected to, by IP or by a name resolving to one", async () => {
    const receiver = await startReceiver();
    const guarded = createGuardedAgent({ allowPrivateTargets: false });
    const open = createGuardedAgent({ allowPrivateTargets: true });
    try {
      const targets = [`http://127.0.0.1:${receiver.port}/`, `http://localhost:${receiver.port}/`, "http://10.255.255.1/", "http://169.254.169.254/", "http://[::1]/", "http://[::ffff:10.0.0.1]/",
        "http://198.18.0.1/", "http://[64:ff9b::7f00:1]:9/", "http://[2002:7f00:1::]/", "http://224.0.0.1/"];
      for (const url of targets) {
        const started = Date.now();
        await assert.rejects(request(url, { method: "POST", body: "{}", dispatcher: guarded }), (err: unknown) => {
          assert.ok(err instanceof BlockedTargetError, `${url}: ${String(err)}`);
          assert.match(err.message, /webhooks\.allow_private_targets/);
          return true;
        });
        assert.ok(Date.now() - started < 1000, `${url} refused at once`);
      }
      assert.equal(receiver.requests.length, 0);
      for (const url of [`http://127.0.0.1:${receiver.port}/`, `http://localhost:${receiver.port}/`]) {
        const { statusCode, body } = await request(url, { method: "POST", body: "{}", dispatcher: open });
        await body.dump();
        assert.equal(statusCode, 200);
      }
      assert.equal(receiver.requests.length, 2);
    } finally {
      await guarded.close();
      await open.close();
    }
  });

  test("the dispatcher records a refused target as a failed attempt, without retrying", async () => {
    const receiver = await startReceiver();
    const { store } = openStore();
    store.insert(makeWebhook("a", receiver.url));
    const { logs } = startDispatcher({ store, allowPrivateTargets: false });
    const [delivery] = store.enqueue(sampleEvent());
    const done = await settled(store, delivery!.id);
    assert.equal(done.state, "failed");
    assert.equal(done.attempts.length, 1);
    assert.equal(done.attempts[0]!.statusCode, 0);
    assert.match(done.attempts[0]!.error, /refusing to connect to 127\.0\.0\.1.*allow_private_targets/);
    assert.equal(receiver.requests.length, 0);
    assert.ok(!logs.join("\n").includes("/hook"), "the URL path is not logged");
  });
});

describe("dispatcher", () => {
  test("delivers signed requests with the webhook's headers, never logging secrets or header values", async () => {
    const receiver = await startReceiver();
    const { store } = openStore();
    store.insert(makeWebhook("a", receiver.url, { headers: { Authorization: "Bearer tok-12345", "X-Team": "infra-value", Host: "evil" } }));
    const { dispatcher, logs } = startDispatcher({ store });
    const [delivery] = store.enqueue(sampleEvent());
    dispatcher.wake();
    const done = await settled(store, delivery!.id);
    assert.equal(done.state, "delivered");
    assert.equal(done.attempts[0]!.statusCode, 200);
    const [received] = receiver.requests;
    assertSigned(received!);
    assert.equal(received!.body, delivery!.payload);
    assert.equal(received!.headers["webhook-id"], delivery!.id);
    assert.equal(received!.headers.authorization, "Bearer tok-12345");
    assert.equal(received!.headers["x-team"], "infra-value");
    assert.equal(received!.headers.host, `127.0.0.1:${receiver.port}`, "Host is not taken from the webhook's headers");
    const text = logs.join("\n");
    for (const secret of [SECRET, "tok-12345", "infra-value"]) assert.ok(!text.includes(secret), `logs contain ${secret}`);
    assert.equal(dispatcher.stats().delivered, 1);
  });

  test("500 then 200: delivered after one retry, same webhook-id, two attempts recorded", async () => {
    const receiver = await startReceiver((_req, res, nth) => res.writeHead(nth === 1 ? 500 : 200).end(nth === 1 ? "database\n  down" : ""));
    const { store } = openStore();
    store.insert(makeWebhook("a", receiver.url));
    const { dispatcher } = startDispatcher({ store });
    const [delivery] = store.enqueue(sampleEvent());
    dispatcher.wake();
    const done = await settled(store, delivery!.id);
    assert.equal(done.state, "delivered");
    assert.deepEqual(done.attempts.map((a) => a.statusCode), [500, 200]);
    assert.equal(done.attempts[0]!.error, "HTTP 500: database down");
    assert.ok(done.attempts.every((a) => a.latencyMs > 0 && a.latencyMs < 2000), "latencies measured");
    assert.ok(done.attempts[1]!.time - done.attempts[0]!.time >= 30, "backoff between attempts");
    assert.equal(receiver.requests.length, 2);
    for (const received of receiver.requests) assertSigned(received);
    assert.deepEqual(receiver.requests.map((r) => r.headers["webhook-id"]), [delivery!.id, delivery!.id]);
    assert.deepEqual(receiver.requests.map((r) => r.body), [delivery!.payload, delivery!.payload]);
    assert.deepEqual({ ...dispatcher.stats(), circuits: undefined }, { delivered: 1, failed: 0, retried: 1, inFlight: 0, circuits: undefined });
  });

  test("receiver down, then up: delivered", async () => {
    const port = await freePort();
    const { store } = openStore();
    store.insert(makeWebhook("a", `http://127.0.0.1:${port}/hook`, { maxAttempts: 50 }));
    const { dispatcher } = startDispatcher({ store });
    const [delivery] = store.enqueue(sampleEvent());
    dispatcher.wake();
    await waitFor("a failed attempt", () => (store.getDelivery(delivery!.id)?.attempts.length ?? 0) >= 1);
    const firstAttempt = store.getDelivery(delivery!.id)!.attempts[0]!;
    assert.equal(firstAttempt.statusCode, 0);
    assert.match(firstAttempt.error, /ECONNREFUSED/);
    const receiver = await startReceiver(undefined, port);
    const done = await settled(store, delivery!.id);
    assert.equal(done.state, "delivered");
    assert.equal(done.attempts.at(-1)!.statusCode, 200);
    assert.equal(receiver.requests.length, 1);
    assertSigned(receiver.requests[0]!);
  });

  test("410 and 400 fail at once, without retry", async () => {
    for (const status of [410, 400]) {
      const receiver = await startReceiver((_req, res) => res.writeHead(status).end());
      const { store } = openStore();
      store.insert(makeWebhook("a", receiver.url));
      const { dispatcher } = startDispatcher({ store });
      const [delivery] = store.enqueue(sampleEvent());
      dispatcher.wake();
      const done = await settled(store, delivery!.id);
      assert.equal(done.state, "failed");
      assert.deepEqual(done.attempts.map((a) => [a.statusCode, a.error]), [[status, `HTTP ${status}`]]);
      await sleep(150);
      assert.equal(receiver.requests.length, 1, `${status} is not retried`);
      assert.equal(dispatcher.stats().failed, 1);
    }
  });

  test("429 with Retry-After: 1 waits about a second before the next attempt", async () => {
    const receiver = await startReceiver((_req, res, nth) => (nth === 1 ? res.writeHead(429, { "retry-after": "1" }).end() : res.writeHead(204).end()));
    const { store } = openStore();
    store.insert(makeWebhook("a", receiver.url));
    const { dispatcher } = startDispatcher({ store });
    const [delivery] = store.enqueue(sampleEvent());
    dispatcher.wake();
    await waitFor("the first attempt", () => store.getDelivery(delivery!.id)?.attempts.length === 1);
    const pending = store.getDelivery(delivery!.id)!;
    assert.equal(pending.state, "pending");
    assert.ok(pending.nextAttemptTime! - pending.attempts[0]!.time >= 990, "next attempt scheduled after Retry-After");
    const done = await settled(store, delivery!.id);
    assert.equal(done.state, "delivered");
    const gap = receiver.requests[1]!.time - receiver.requests[0]!.time;
    assert.ok(gap >= 950, `second request ${gap} ms after the first`);
  });

  test("Retry-After: seconds or an HTTP date, capped", () => {
    const time = Date.parse("2024-05-01T12:00:00Z");
    assert.equal(parseRetryAfter("120", time, 3_600_000), 120_000);
    assert.equal(parseRetryAfter(["5", "9"], time, 3_600_000), 5000);
    assert.equal(parseRetryAfter("Wed, 01 May 2024 12:00:30 GMT", time, 3_600_000), 30_000);
    assert.equal(parseRetryAfter("Wed, 01 May 2024 11:00:00 GMT", time, 3_600_000), 0);
    assert.equal(parseRetryAfter("86400", time, 3_600_000), 3_600_000);
    assert.equal(parseRetryAfter("soon", time, 3_600_000), undefined);
    assert.equal(parseRetryAfter(undefined, time, 3_600_000), undefined);
  });

  test("a slow receiver times out without holding up other webhooks", async () => {
    const slow = await startReceiver((_req, res) => void setTimeout(() => res.writeHead(200).end(), 3000).unref());
    const fast = await startReceiver();
    const { store } = openStore();
    store.insert(makeWebhook("slow", slow.url, { timeoutMs: 500, maxAttempts: 1 }));
    store.insert(makeWebhook("fast", fast.url));
    const { dispatcher } = startDispatcher({ store });
    const slowId = store.enqueue(sampleEvent()).find((d) => d.webhookId === "slow")!.id;
    for (let i = 0; i < 3; i++) store.enqueue(sampleEvent("job.created", { i }), { only: "fast" });
    dispatcher.wake();
    await waitFor("the fast webhook's deliveries", () => fast.requests.length === 4);
    assert.equal(slow.requests.length, 1);
    assert.equal(store.getDelivery(slowId)!.attempts.length, 0, "the fast webhook did not wait for the slow one");
    const slowDelivery = await settled(store, slowId);
    assert.equal(slowDelivery.state, "failed");
    const [attempt] = slowDelivery.attempts;
    assert.equal(attempt!.statusCode, 0);
    assert.match(attempt!.error, /timed out after 500 ms/);
    assert.ok(attempt!.latencyMs >= 490 && attempt!.latencyMs < 2500, `latency ${attempt!.latencyMs}`);
  });

  test("a claiming store (as PostgreSQL's): what due() handed out is not asked for again; a busy webhook's deliveries wait here, not 60 s in the store", async () => {
    let open = 0;
    let peakOpen = 0;
    const receiver = await startReceiver((_req, res) => {
      open++;
      peakOpen = Math.max(peakOpen, open);
      res.on("close", () => open--);
      setTimeout(() => res.writeHead(200).end(), 30);
    });
    const { store: queries } = openStore();
    queries.insert(makeWebhook("a", receiver.url));
    const ids = new Set(Array.from({ length: 5 }, (_, i) => queries.enqueue(sampleEvent("job.created", { i }))[0]!.id));
    // Claimed deliveries stay claimed until their attempt is recorded (a claim that never times out here).
    const inner = toAsync<WebhookStore>(queries);
    const claimed = new Set<string>();
    const handedOut: string[] = [];
    const claiming: WebhookStore = {
      ...inner,
      async due(now, limit) {
        const free = (await inner.due(now, 1000)).filter((d) => !claimed.has(d.delivery.id)).slice(0, limit);
        for (const { delivery } of free) {
          claimed.add(delivery.id);
          handedOut.push(delivery.id);
        }
        return free;
      },
      async recordAttempt(id, attempt, outcome) {
        await inner.recordAttempt(id, attempt, outcome);
        claimed.delete(id);
      },
    };
    const { logger } = recordingLogger();
    const dispatcher = createWebhookDispatcher({ store: claiming, logger, allowPrivateTargets: true, pollIntervalMs: 60_000, maxInFlightPerWebhook: 1 });
    dispatchers.push(dispatcher);
    dispatcher.start();
    const started = Date.now();
    await waitFor("every delivery", () => [...ids].every((id) => queries.getDelivery(id)!.state === "delivered"), 5000);
    // One at a time, each once, one after the other: no poll interval (60 s) waited for.
    assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
    assert.equal(peakOpen, 1);
    assert.equal(receiver.requests.length, 5);
    assert.deepEqual(handedOut.slice().sort(), [...ids].sort(), "each delivery handed out once");
  });

  test("max attempts reached: failed after exactly max_attempts requests", async () => {
    const receiver = await startReceiver((_req, res) => res.writeHead(503).end());
    const { store } = openStore();
    store.insert(makeWebhook("a", receiver.url, { maxAttempts: 3 }));
    const { dispatcher } = startDispatcher({ store });
    const [delivery] = store.enqueue(sampleEvent());
    dispatcher.wake();
    const done = await settled(store, delivery!.id);
    assert.equal(done.state, "failed");
    assert.deepEqual(done.attempts.map((a) => a.statusCode), [503, 503, 503]);
    await sleep(300);
    assert.equal(receiver.requests.length, 3);
    assert.deepEqual({ ...dispatcher.stats(), circuits: undefined }, { delivered: 0, failed: 1, retried: 2, inFlight: 0, circuits: undefined });
  });

  test("the circuit opens after consecutive failures, pauses the webhook, reopens on a failed probe and closes on a good one", async () => {
    let healthy = false;
    let open = 0;
    let peakOpen = 0;
    const receiver = await startReceiver((_req, res) => {
      open++;
      peakOpen = Math.max(peakOpen, open);
      res.on("close", () => open--);
      setTimeout(() => res.writeHead(healthy ? 200 : 500).end(), 20);
    });
    const { store } = openStore();
    store.insert(makeWebhook("a", receiver.url, { maxAttempts: 100 }));
    const { dispatcher } = startDispatcher({
      store, maxInFlightPerWebhook: 2, retry: { initialMs: 10, maxMs: 10 },
      circuit: { failureThreshold: 3, cooldownMs: 600, maxCooldownMs: 5000 },
    });
    for (let i = 0; i < 3; i++) store.enqueue(sampleEvent("job.created", { i }));
    dispatcher.wake();
    const attempts = () => store.listDeliveries("a", { limit: 100 }).deliveries.reduce((n, d) => n + d.attempts.length, 0);

    await waitFor("the circuit to open", () => dispatcher.circuitState("a") === "open");
    const openedAt = Date.now();
    assert.deepEqual(dispatcher.stats().circuits, { a: "open" });
    assert.equal(peakOpen, 2, "two requests in flight per webhook");
    await waitFor("requests in flight to end", () => open === 0 && attempts() === receiver.requests.length);
    const attemptsAtOpen = attempts();
    assert.ok(attemptsAtOpen >= 3 && attemptsAtOpen <= 4, `${attemptsAtOpen} attempts when the circuit opened`);
    // Parked until the cooldown ends: not due, and no attempt counted.
    assert.ok(store.nextDueTime()! >= Date.now() + 200, "the deliveries are parked until the cooldown ends");
    await sleep(200);
    store.enqueue(sampleEvent("job.created", { i: 3 }));
    dispatcher.wake();
    await sleep(50);
    assert.equal(attempts(), attemptsAtOpen, "no attempt while open, not even of a new event");

    // Half-open: one probe (whatever is due), which fails: open again, for twice as long.
    peakOpen = 0;
    await waitFor("the probe", () => receiver.requests.length === attemptsAtOpen + 1, 3000);
    assert.ok(Date.now() - openedAt >= 550, "the probe waited for the cooldown");
    await waitFor("the probe's outcome", () => attempts() === attemptsAtOpen + 1);
    assert.equal(dispatcher.circuitState("a"), "open");
    const reopenedAt = Date.now();
    await sleep(100);
    assert.equal(receiver.requests.length, attemptsAtOpen + 1, "a single probe");
    assert.equal(peakOpen, 1);

    healthy = true;
    await waitFor("the circuit to close", () => dispatcher.circuitState("a") === "closed", 3000);
    assert.ok(Date.now() - reopenedAt >= 1100, "the second cooldown is doubled");
    await waitFor("every delivery", () => store.listDeliveries("a", { limit: 10 }).deliveries.every((d) => d.state === "delivered"));
    assert.equal(store.listDeliveries("a", { limit: 10 }).deliveries.length, 4);
  });

  test("test() sends webhook.test to that webhook only, at once, ignoring an open circuit", async () => {
    const receiver = await startReceiver((_req, res, nth) => res.writeHead(nth === 1 ? 500 : 200).end());
    const other = await startReceiver();
    const { store } = openStore();
    store.insert(makeWebhook("a", receiver.url, { events: ["job.completed"] }));
    store.insert(makeWebhook("b", other.url, { events: ["job.started"] }));
    store.insert(makeWebhook("off", other.url, { enabled: false }));
    const { dispatcher } = startDispatcher({ store, circuit: { failureThreshold: 1, cooldownMs: 60_000, maxCooldownMs: 60_000 } });
    store.enqueue(sampleEvent("job.completed"));
    dispatcher.wake();
    await waitFor("the circuit to open", () => dispatcher.circuitState("a") === "open");

    const delivery = await dispatcher.test("a");
    assert.equal(delivery.state, "delivered");
    assert.equal(delivery.eventType, "webhook.test");
    assert.equal(delivery.attempts.length, 1);
    assert.equal(delivery.attempts[0]!.statusCode, 200);
    assert.equal(receiver.requests.length, 2);
    assertSigned(receiver.requests[1]!);
    assert.equal(JSON.parse(receiver.requests[1]!.body).type, "webhook.test");
    assert.equal(dispatcher.circuitState("a"), "closed", "a good test closes the circuit");
    assert.equal(other.requests.length, 0);
    await assert.rejects(dispatcher.test("missing"), /not found/);
    await assert.rejects(dispatcher.test("off"), /disabled/);
  });

  test("stop() resolves promptly with a request in flight, leaving the delivery pending", async () => {
    const receiver = await startReceiver(() => undefined);
    const { store } = openStore();
    store.insert(makeWebhook("a", receiver.url, { timeoutMs: 30_000 }));
    const { dispatcher } = startDispatcher({ store });
    const [delivery] = store.enqueue(sampleEvent());
    dispatcher.wake();
    await waitFor("the request", () => receiver.requests.length === 1);
    assert.equal(dispatcher.stats().inFlight, 1);
    const started = Date.now();
    await dispatcher.stop();
    assert.ok(Date.now() - started < 500, `stop took ${Date.now() - started} ms`);
    const after = store.getDelivery(delivery!.id)!;
    assert.equal(after.state, "pending");
    assert.equal(after.attempts.length, 0);
    assert.equal(dispatcher.stats().inFlight, 0);
    await assert.rejects(dispatcher.test("a"), /stopping/);
  });
});
