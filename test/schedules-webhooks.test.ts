// Schedules, profiles and webhooks through the real daemon process: a real HTTP receiver checks every
// signature; restarts and kill -9 show that schedules and undelivered events survive.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, describe, test } from "node:test";
import { ExportFormat, JobState, type Job } from "../gen/hypervisord/v1/job_pb.js";
import { OverlapPolicy } from "../gen/hypervisord/v1/schedule_pb.js";
import { DeliveryState } from "../gen/hypervisord/v1/webhook_pb.js";
import { createGrpcJsClient, type GrpcJsClient } from "./support/clients.ts";
import { respawnOptions, spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { tempDir } from "./support/temp-dir.ts";
import { waitFor } from "./support/wait-for.ts";
import { startWebhookReceiver, type WebhookReceiver } from "./support/webhook-receiver.ts";

const FINAL = [JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED];
const SECRET = `whsec_${Buffer.from("a config secret of 24+ bytes!!").toString("base64")}`;
const cleanups: (() => Promise<unknown> | unknown)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

// ---------------------------------------------------------------------------------------------
// A webhook receiver that verifies the Standard Webhooks signature of every request by itself.

interface Received {
  id: string;
  timestamp: number;
  type: string;
  data: Record<string, unknown>;
  body: string;
  signatureOk: boolean;
}

interface Receiver extends WebhookReceiver {
  received: Received[];
  /** Status to answer for the nth request (1-based); default 200. */
  status: (nth: number, body: Received) => number;
}

function verify(secret: string, id: string, timestamp: string, body: string, signature: string): boolean {
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const expected = createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64");
  return signature.split(" ").some((s) => s === `v1,${expected}`);
}

/** The shared receiver (test/support), each request checked against the secret of the moment it arrives. */
async function startReceiver(secretOf: () => string): Promise<Receiver> {
  const received: Received[] = [];
  const receiver: Receiver = Object.assign(await startWebhookReceiver({
    reply: ({ headers, body }) => {
      const id = String(headers["webhook-id"]);
      const timestamp = String(headers["webhook-timestamp"]);
      const parsed = JSON.parse(body) as { type: string; data: Record<string, unknown> };
      const entry = { id, timestamp: Number(timestamp), type: parsed.type, data: parsed.data, body, signatureOk: verify(secretOf(), id, timestamp, body, String(headers["webhook-signature"])) };
      received.push(entry);
      return receiver.status(received.length, entry);
    },
  }), { received, status: () => 200 });
  return receiver;
}

async function finished(client: GrpcJsClient, jobId: string): Promise<Job> {
  for (;;) {
    const { job } = await client.unary("getJob", { jobId });
    if (FINAL.includes(job!.state)) return job!;
    await new Promise((r) => setTimeout(r, 25));
  }
}

function configFile(lines: string): string {
  const file = path.join(tempDir("config"), "hypervisord.yaml");
  fs.writeFileSync(file, lines);
  return file;
}

async function daemonWith(config: string, dirs: { dataDir?: string; outputRoot?: string } = {}): Promise<{ daemon: DaemonProcess; client: GrpcJsClient }> {
  const daemon = await spawnDaemon({ ...dirs, args: ["--config", config] });
  const client = createGrpcJsClient(daemon.grpcAddress);
  cleanups.push(async () => {
    client.close();
    if (daemon.child.exitCode === null) await daemon.stop();
  });
  return { daemon, client };
}

const invalid = (field: string) => (err: { code: number; details: string }) => err.code === 3 && err.details.startsWith(`${field}: `);

// ---------------------------------------------------------------------------------------------

describe("schedules", () => {
  test("CRUD and validation: bad cron or time zone name the field; a partial update leaves enabled alone", async () => {
    const { client } = await daemonWith(configFile(""));
    const template = { provider: "fake", vm: "noop" };
    await assert.rejects(client.unary("createSchedule", { schedule: { cron: "61 * * * *", jobTemplate: template } }), invalid("schedule.cron"));
    await assert.rejects(client.unary("createSchedule", { schedule: { cron: "0 2 * * *", timeZone: "Mars/Olympus", jobTemplate: template } }), invalid("schedule.time_zone"));
    await assert.rejects(client.unary("createSchedule", { schedule: { cron: "0 2 * * *" } }), invalid("schedule.job_template"));
    await assert.rejects(client.unary("createSchedule", { schedule: { cron: "0 2 * * *", jobTemplate: { provider: "fake" } } }), invalid("schedule.job_template.vm"));

    const { schedule } = await client.unary("createSchedule", {
      schedule: { name: "nightly", cron: "0 30 2 * * *", timeZone: "Europe/Berlin", jobTemplate: template, tags: { team: "web" } },
    });
    assert.equal(schedule!.enabled, true);
    assert.ok(schedule!.nextRunTime, "an enabled schedule has a next run time");
    const next = new Date(Number(schedule!.nextRunTime!.seconds) * 1000);
    assert.equal(new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/Berlin", hour: "2-digit", minute: "2-digit" }).format(next), "02:30");

    const { schedule: renamed } = await client.unary("updateSchedule", { id: schedule!.id, schedule: { description: "the nightly run" } });
    assert.equal(renamed!.enabled, true, "an omitted enabled does not disable");
    assert.equal(renamed!.description, "the nightly run");
    assert.equal(renamed!.cron, "0 30 2 * * *");
    const { schedule: disabled } = await client.unary("disableSchedule", { id: schedule!.id });
    assert.equal(disabled!.enabled, false);
    assert.equal(disabled!.nextRunTime, undefined);
    const { schedule: masked } = await client.unary("updateSchedule", { id: schedule!.id, schedule: { enabled: true, cron: "0 3 * * *" }, updateMask: { paths: ["cron"] } });
    assert.equal(masked!.enabled, false, "only the masked path changes");
    assert.equal(masked!.cron, "0 3 * * *");
    const { schedules } = await client.unary("listSchedules", { tags: { team: "web" } });
    assert.deepEqual(schedules.map((s) => s.id), [schedule!.id]);
    await client.unary("deleteSchedule", { id: schedule!.id });
    await assert.rejects(client.unary("getSchedule", { id: schedule!.id }), (err: { code: number }) => err.code === 5);
  });

  test("a per-second cron creates jobs linked to the schedule, with run records; the schedule and its history survive a restart", async () => {
    const config = configFile("");
    const first = await daemonWith(config);
    const { schedule } = await first.client.unary("createSchedule", {
      schedule: { name: "every-second", cron: "* * * * * *", jobTemplate: { provider: "fake", vm: "noop" }, overlapPolicy: OverlapPolicy.ALLOW },
    });
    const id = schedule!.id;
    let listed: Awaited<ReturnType<typeof first.client.unary<"listScheduleRuns">>> | undefined;
    const deadline = Date.now() + 10_000;
    do {
      listed = await first.client.unary("listScheduleRuns", { scheduleId: id });
      await new Promise((r) => setTimeout(r, 100));
    } while (listed.runs.length < 3 && Date.now() < deadline);
    assert.ok(listed.runs.length >= 3, `runs: ${listed.runs.length}`);
    const times = listed.runs.map((r) => Number(r.scheduledTime!.seconds));
    assert.deepEqual(times, [...times].sort((a, b) => b - a), "newest first");
    const { jobs } = await first.client.unary("listJobs", { scheduleId: id });
    assert.ok(jobs.length >= 3 && jobs.every((j) => j.scheduleId === id));
    await first.client.unary("disableSchedule", { id });
    const before = await first.client.unary("getSchedule", { id });
    first.client.close();
    assert.equal(await first.daemon.stop(), 0);

    const second = await daemonWith(config, respawnOptions(first.daemon));
    const after = await second.client.unary("getSchedule", { id });
    assert.equal(after.schedule!.runCount, before.schedule!.runCount);
    assert.equal(after.schedule!.enabled, false);
    const again = await second.client.unary("listScheduleRuns", { scheduleId: id });
    assert.ok(again.runs.length >= listed.runs.length);
    const { schedule: enabled } = await second.client.unary("enableSchedule", { id });
    assert.ok(Number(enabled!.nextRunTime!.seconds) * 1000 >= Date.now() - 1000, "the next run is recomputed from now");
    await second.client.unary("disableSchedule", { id });
  });

  test("TriggerSchedule runs now; with overlap skip a run while the previous job runs is recorded as skipped", async () => {
    const { client } = await daemonWith(configFile(""));
    const { schedule } = await client.unary("createSchedule", {
      schedule: { cron: "0 0 1 1 *", jobTemplate: { provider: "fake", vm: "slow?size=1048576&chunk=65536&delayMs=100" }, overlapPolicy: OverlapPolicy.SKIP },
    });
    const first = await client.unary("triggerSchedule", { id: schedule!.id });
    assert.ok(first.job, "the first trigger creates a job");
    assert.equal(first.run!.trigger, "manual");
    const second = await client.unary("triggerSchedule", { id: schedule!.id });
    assert.equal(second.job, undefined);
    assert.match(second.run!.skippedReason, /still queued or running/);
    await client.unary("cancelJob", { jobId: first.job!.id });
    const { runs } = await client.unary("listScheduleRuns", { scheduleId: schedule!.id });
    assert.equal(runs.length, 2);
    assert.equal(runs[1]!.jobId, first.job!.id);
  });
});

describe("profiles", () => {
  test("a config profile and an API profile fill what the job leaves empty; the job's own fields win", async () => {
    const { client } = await daemonWith(configFile([
      "profiles:",
      "  prod-backup:",
      "    description: nightly",
      "    format: ova",
      "    compress: true",
      "    compression_level: 9",
      "    parallel_downloads: 8",
      "    labels: {tier: backup}",
    ].join("\n")));
    const { profiles } = await client.unary("listProfiles", {});
    assert.deepEqual(profiles.map((p) => [p.name, p.source]), [["prod-backup", "config"]]);
    const { job } = await client.unary("submitJob", { definition: { provider: "fake", vm: "noop", profile: "prod-backup", parallelDownloads: 2, labels: { team: "web" } } });
    const d = job!.definition!;
    assert.equal(d.format, ExportFormat.OVA);
    assert.equal(d.compress, true);
    assert.equal(d.compressionLevel, 9);
    assert.equal(d.parallelDownloads, 2, "the job's value wins");
    assert.deepEqual(d.labels, { team: "web", tier: "backup" });
    assert.equal(d.profile, "prod-backup");

    await assert.rejects(client.unary("updateProfile", { profile: { name: "prod-backup" } }), (err: { code: number }) => err.code === 9);
    await assert.rejects(client.unary("createProfile", { profile: { name: "bad", settings: { vm: "x" } } }), invalid("profile.settings.vm"));
    await assert.rejects(client.unary("createProfile", { profile: { name: "bad", settings: { compressionLevel: 12 } } }), invalid("profile.settings.compression_level"));
    await client.unary("createProfile", { profile: { name: "fast", settings: { parallelDownloads: 16, bandwidthLimit: 1000n } } });
    const { job: fast } = await client.unary("submitJob", { definition: { provider: "fake", vm: "noop", profile: "fast" } });
    assert.equal(fast!.definition!.parallelDownloads, 16);
    assert.equal(fast!.definition!.bandwidthLimit, 1000n);
    await assert.rejects(client.unary("submitJob", { definition: { provider: "fake", vm: "noop", profile: "nope" } }), invalid("definition.profile"));
    await client.unary("deleteProfile", { name: "fast" });
    await assert.rejects(client.unary("getProfile", { name: "fast" }), (err: { code: number }) => err.code === 5);
  });
});

describe("webhooks", () => {
  test("signed events for a job's life; the secret is shown once; 500 then 200 is retried with the same webhook-id", async () => {
    let secret = "";
    const receiver = await startReceiver(() => secret);
    receiver.status = (nth, body) => (body.type === "job.completed" && receiver.received.filter((r) => r.type === "job.completed").length === 1 ? 500 : 200);
    const { client } = await daemonWith(configFile("webhooks:\n  allow_private_targets: true\n"));
    const created = await client.unary("createWebhook", { webhook: { url: receiver.url, events: ["job.created", "job.started", "job.completed"], headers: { authorization: "Bearer s3cr3t" } } });
    secret = created.secret;
    assert.match(secret, /^whsec_[A-Za-z0-9+/=]+$/);
    const { webhook } = await client.unary("getWebhook", { id: created.webhook!.id });
    assert.equal(webhook!.secret, "", "never returned again");
    assert.deepEqual(webhook!.headers, { authorization: "***" });

    const { job } = await client.unary("submitJob", { definition: { provider: "fake", vm: "noop", vsphere: { url: "https://vc.example/sdk", username: "u", password: "hunter2-password" } } });
    await finished(client, job!.id);
    await waitFor("job.completed delivered after a retry", () => receiver.received.filter((r) => r.type === "job.completed").length >= 2, 15_000);
    const types = [...new Set(receiver.received.map((r) => r.type))];
    assert.deepEqual(types, ["job.created", "job.started", "job.completed"]);
    assert.ok(receiver.received.every((r) => r.signatureOk), "every signature verifies");
    assert.ok(receiver.received.every((r) => !r.body.includes("hunter2-password")), "no password in any body");
    const completed = receiver.received.filter((r) => r.type === "job.completed");
    assert.equal(completed[0]!.id, completed[1]!.id, "the same webhook-id on the retry");
    assert.equal(completed[1]!.data.job_id, job!.id);
    assert.equal(completed[1]!.data.state, "completed");

    const { deliveries } = await client.unary("listWebhookDeliveries", { webhookId: webhook!.id });
    const record = deliveries.find((d) => d.id === completed[0]!.id)!;
    assert.equal(record.state, DeliveryState.DELIVERED);
    assert.deepEqual(record.attempts.map((a) => a.statusCode), [500, 200]);

    const tested = await client.unary("testWebhook", { id: webhook!.id });
    assert.equal(tested.delivery!.state, DeliveryState.DELIVERED);
    assert.equal(receiver.received.at(-1)!.type, "webhook.test");
  });

  test("private targets are refused unless allowed; unknown events name the field", async () => {
    const { client } = await daemonWith(configFile(""));
    await assert.rejects(client.unary("createWebhook", { webhook: { url: "http://127.0.0.1:9/x" } }), invalid("webhook.url"));
    await assert.rejects(client.unary("createWebhook", { webhook: { url: "http://169.254.169.254/latest" } }), invalid("webhook.url"));
    await assert.rejects(client.unary("createWebhook", { webhook: { url: "https://hooks.example.com/x", events: ["job.exploded"] } }), invalid("webhook.events[0]"));
    await assert.rejects(client.unary("createWebhook", { webhook: { url: "ftp://hooks.example.com/x" } }), invalid("webhook.url"));
  });

  test("kill -9 after a job completed while the receiver was down: the event is delivered after the restart", async () => {
    const receiver = await startReceiver(() => SECRET);
    const port = receiver.port;
    const config = configFile([
      "webhooks:",
      "  allow_private_targets: true",
      "  endpoints:",
      "    - name: ops",
      `      url: ${receiver.url}`,
      `      secret: ${SECRET}`,
      "      events: [job.completed]",
    ].join("\n"));
    await receiver.close();
    const first = await daemonWith(config);
    const { job } = await first.client.unary("submitJob", { definition: { provider: "fake", vm: "noop" } });
    await finished(first.client, job!.id);
    const { deliveries } = await first.client.unary("listWebhookDeliveries", { webhookId: "cfg-ops" });
    assert.equal(deliveries[0]?.state, DeliveryState.PENDING, "not delivered while the receiver is down");
    first.client.close();
    await first.daemon.kill();

    receiver.port = port;
    await receiver.reopen();
    const second = await daemonWith(config, respawnOptions(first.daemon));
    const delivered = await waitFor("the job.completed event after the restart", () => receiver.received.find((r) => r.type === "job.completed"), 30_000);
    assert.equal(delivered.data.job_id, job!.id);
    assert.ok(delivered.signatureOk);
    const after = await second.client.unary("listWebhookDeliveries", { webhookId: "cfg-ops" });
    assert.equal(after.deliveries[0]!.state, DeliveryState.DELIVERED);
  });
});
