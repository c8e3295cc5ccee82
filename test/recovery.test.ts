import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, describe, test } from "node:test";
import { JobState } from "../gen/hypervisord/v1/job_pb.js";
import { respawnOptions, spawnDaemon, spawnDaemonWithClient, type DaemonProcess, type SpawnOptions } from "./support/daemon-process.ts";
import { waitForJob } from "./support/wait-for-job.ts";
import { fakeDiskBytes } from "./support/fake-provider.ts";

const cleanups: (() => Promise<unknown> | void)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

const start = (options: SpawnOptions = {}) => spawnDaemonWithClient(options, cleanups);

const SIZE = 3 * 1024 * 1024;
const show = (value: unknown) => JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v));

describe("restart recovery", () => {
  test("kill -9 mid-export: the job resumes from its checkpoint on restart, with identical bytes", async () => {
    const first = await start();
    const { job } = await first.client.unary("submitJob", {
      definition: { provider: "fake", vm: `crash?size=${SIZE}&chunk=65536&delayMs=15` },
    });
    const id = job!.id;
    await waitForJob(first.client, id, (j) => Number(j.progress?.bytesDone) > SIZE / 3, { what: "a third of the disk" });
    await first.daemon.kill();

    const second = await start(respawnOptions(first.daemon));
    const done = await waitForJob(second.client, id, (j) => j.state === JobState.COMPLETED || j.state === JobState.FAILED, { what: "completion" });
    assert.equal(done.state, JobState.COMPLETED, JSON.stringify(done.error));
    assert.equal(done.attempt, 1, "a resumed run is not a new attempt");
    const disk = fs.readFileSync(path.join(first.daemon.outputRoot, "crash", "crash-disk-1.img"));
    assert.ok(disk.equals(fakeDiskBytes(0, SIZE)), "the resumed disk is byte-identical");
    assert.equal(done.result!.files[0]!.sha256, createHash("sha256").update(disk).digest("hex"));

    const { transitions } = await second.client.unary("getJobHistory", { jobId: id });
    assert.ok(transitions.some((t) => t.actor === "recovery" && /resuming from its checkpoint/.test(t.reason)), show(transitions));
    const { entries } = await second.client.unary("getJobLogs", { jobId: id });
    const resumed = entries.find((e) => e.message === "resuming from checkpoint");
    assert.ok(resumed, entries.map((e) => e.message).join("\n"));
    assert.ok((JSON.parse(resumed.fieldsJson) as { offset: number }).offset > SIZE / 3, "resumed where it stopped, not from zero");
    assert.equal(await second.daemon.stop(), 0);
  });

  test("kill -9 with a provider that cannot resume: the job fails with a clear interrupted error", async () => {
    const first = await start();
    const { job } = await first.client.unary("submitJob", {
      definition: { provider: "fake-noresume", vm: `nores?size=${SIZE}&chunk=65536&delayMs=15` },
    });
    await waitForJob(first.client, job!.id, (j) => Number(j.progress?.bytesDone) > 0, { what: "progress" });
    await first.daemon.kill();
    const second = await start(respawnOptions(first.daemon));
    const { job: after } = await second.client.unary("getJob", { jobId: job!.id });
    assert.equal(after!.state, JobState.FAILED);
    assert.equal(after!.error!.code, "ABORTED");
    assert.match(after!.error!.message, /^interrupted: the daemon stopped while the job was running, and provider "fake-noresume" cannot resume/);
    assert.equal(await second.daemon.stop(), 0);
  });

  test("SIGTERM mid-export: exit 0 within 10 s, the job checkpoints and resumes on the next start", async () => {
    const first = await start();
    const { job } = await first.client.unary("submitJob", {
      definition: { provider: "fake", vm: `term?size=${SIZE}&chunk=65536&delayMs=15` },
    });
    await waitForJob(first.client, job!.id, (j) => Number(j.progress?.bytesDone) > 0, { what: "progress" });
    const began = Date.now();
    const code = await first.daemon.stop();
    assert.equal(code, 0);
    assert.ok(Date.now() - began < 10_000, `stopped in ${Date.now() - began} ms`);
    const second = await start(respawnOptions(first.daemon));
    const { transitions } = await second.client.unary("getJobHistory", { jobId: job!.id });
    assert.ok(transitions.some((t) => t.actor === "shutdown" && t.toState === JobState.QUEUED), show(transitions));
    const done = await waitForJob(second.client, job!.id, (j) => j.state === JobState.COMPLETED, { what: "completion" });
    assert.equal(done.attempt, 1);
    assert.ok(fs.readFileSync(path.join(first.daemon.outputRoot, "term", "term-disk-1.img")).equals(fakeDiskBytes(0, SIZE)));
    assert.equal(await second.daemon.stop(), 0);
  });

  test("a second daemon on the same data directory refuses to start and says why", async () => {
    const { daemon } = await start();
    await assert.rejects(spawnDaemon({ dataDir: daemon.dataDir }), /data directory .* is in use by another hypervisord \(pid \d+\)/);
    assert.equal(await daemon.stop(), 0);
  });
});

describe("StreamJobUpdates resume", () => {
  test("a client that reconnects with after_seq gets every state change it missed, also across a restart", async () => {
    const first = await start();
    const live = first.client.stream("streamJobUpdates", {});
    let lastSeq = 0n;
    await new Promise<void>((resolve, reject) => {
      live.on("data", (u: any) => {
        lastSeq = u.seq;
        if (u.kind === 5) resolve(); // SYNCED
      });
      live.on("error", (err: any) => (err.code === 1 ? undefined : reject(err)));
    });
    live.cancel();

    // Missed while disconnected: two jobs run to the end.
    const a = (await first.client.unary("submitJob", { definition: { provider: "fake", vm: "a?size=1000&delayMs=0" } })).job!.id;
    const b = (await first.client.unary("submitJob", { definition: { provider: "fake", vm: "b?size=1000&delayMs=0" } })).job!.id;
    for (const id of [a, b]) await waitForJob(first.client, id, (j) => j.state === JobState.COMPLETED, { what: "completion" });
    assert.equal(await first.daemon.stop(), 0);

    const second = await start(respawnOptions(first.daemon));
    const c = (await second.client.unary("submitJob", { definition: { provider: "fake", vm: "c?size=1000&delayMs=0" } })).job!.id;
    await waitForJob(second.client, c, (j) => j.state === JobState.COMPLETED, { what: "completion" });

    const resumed = second.client.stream("streamJobUpdates", { afterSeq: lastSeq });
    const got: { seq: bigint; kind: number; jobId: string; state: number }[] = [];
    await new Promise<void>((resolve, reject) => {
      resumed.on("data", (u: any) => {
        got.push({ seq: u.seq, kind: u.kind, jobId: u.jobId, state: u.state });
        if (u.kind === 5) resolve();
      });
      resumed.on("error", reject);
    });
    resumed.cancel();
    const changes = got.filter((u) => u.kind !== 5).map((u) => `${[a, b, c].indexOf(u.jobId)}:${JobState[u.state]}`);
    const expected = [0, 1, 2].flatMap((i) => ["QUEUED", "RUNNING", "COMPLETED"].map((s) => `${i}:${s}`));
    assert.deepEqual([...changes].sort(), [...expected].sort(), "every state change of every job, once");
    for (const i of [0, 1, 2]) {
      const mine = changes.filter((x) => x.startsWith(`${i}:`));
      assert.deepEqual(mine, [`${i}:QUEUED`, `${i}:RUNNING`, `${i}:COMPLETED`], "in the order they happened");
    }
    for (let i = 1; i < got.length; i++) assert.ok(got[i]!.seq >= got[i - 1]!.seq, "seq never goes back");
    assert.ok(got[0]!.seq > lastSeq);
    assert.equal(await second.daemon.stop(), 0);
  });
});
