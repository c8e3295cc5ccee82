// Job.duration_seconds and Job.attempts over the real wire: every run of a job is counted, not only the last one,
// and the time queued between runs (retry backoff) is not. The attempts are kept with the transitions, and
// backfilled from them for jobs of a database made before the column existed.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, describe, test } from "node:test";
import Database from "better-sqlite3";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { JobState, type Job } from "../gen/hypervisord/v1/job_pb.js";
import { DATABASE_FILE } from "../src/store/sqlite/sqlite-store.ts";
import { respawnOptions, spawnDaemonWithClient } from "./support/daemon-process.ts";
import { tempDir } from "./support/temp-dir.ts";
import { hasBytes, isFinal, waitForJob } from "./support/wait-for-job.ts";

const cleanups: (() => Promise<unknown> | void)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

/** A short retry backoff, so that a job failing twice is quick; still long enough to show in the totals. */
function config(): string {
  const file = path.join(tempDir("attempts-config"), "hypervisord.yaml");
  fs.writeFileSync(file, "jobs:\n  retry_initial_backoff: 400ms\n  retry_max_backoff: 400ms\n");
  return file;
}

const ms = (t: Job["startTime"]) => (t ? timestampMs(t) : undefined);
const show = (job: Job) => job.attempts.map((a) => `#${a.attempt} ${JobState[a.outcome]} ${a.durationSeconds} s`).join(", ");

/** Each attempt's shape, and the totals, checked against each other. */
function assertConsistent(job: Job) {
  let sum = 0;
  for (const [i, a] of job.attempts.entries()) {
    assert.equal(a.attempt, i + 1);
    const seconds = (ms(a.endTime)! - ms(a.startTime)!) / 1000;
    assert.ok(Math.abs(a.durationSeconds - seconds) < 1e-9, `attempt ${a.attempt}: ${a.durationSeconds} s vs its times ${seconds} s`);
    sum += a.durationSeconds;
  }
  assert.ok(Math.abs(job.durationSeconds - sum) < 1e-9, `duration_seconds ${job.durationSeconds} is the sum of the attempts ${sum}`);
}

describe("attempts and duration", () => {
  // 512 KiB at 64 KiB per 40 ms; the first two runs fail after 128 KiB (UNAVAILABLE: retried).
  const vm = "flaky?size=524288&chunk=65536&delayMs=40&failTimes=2&failAfter=131072";

  test("a job that fails twice and then succeeds: 3 attempts (QUEUED, QUEUED, COMPLETED), duration their sum", async () => {
    const { client } = await spawnDaemonWithClient({ args: ["--config", config()] }, cleanups);
    const { job } = await client.unary("submitJob", { definition: { provider: "fake", vm, outputDir: "flaky" } });
    const running = await waitForJob(client, job!.id, (j) => j.state === JobState.RUNNING && j.attempts.length === 1);
    assert.equal(running.attempts[0]!.outcome, JobState.UNSPECIFIED, "a running attempt has no outcome yet");
    assert.equal(running.attempts[0]!.endTime, undefined);
    const done = await waitForJob(client, job!.id, isFinal);
    assert.equal(done.state, JobState.COMPLETED, done.error?.message);
    assert.deepEqual(done.attempts.map((a) => a.outcome), [JobState.QUEUED, JobState.QUEUED, JobState.COMPLETED]);
    assert.match(done.attempts[0]!.reason, /attempt 1 of \d+ failed, retrying in .*fake failure 1 of 2/);
    assert.match(done.attempts[1]!.reason, /attempt 2 of \d+ failed, retrying in .*fake failure 2 of 2/);
    assertConsistent(done);
    // The first run wrote 2 chunks (>= 80 ms); the second resumed from them and failed at once; the third wrote
    // the other 6 (>= 240 ms).
    assert.ok(done.attempts[0]!.durationSeconds >= 0.07, show(done));
    assert.ok(done.attempts[2]!.durationSeconds >= 0.2, show(done));
    // The backoff between the runs (2 x 400 ms +-20%) is not counted: the total is below the wall-clock span.
    const span = (ms(done.endTime)! - ms(done.attempts[0]!.startTime)!) / 1000;
    assert.ok(done.durationSeconds < span - 0.6, `duration ${done.durationSeconds} s excludes the backoff of the ${span} s span`);
    // The result keeps the last attempt's time.
    assert.ok(Math.abs(done.result!.durationSeconds - done.attempts[2]!.durationSeconds) < 0.25,
      `result ${done.result!.durationSeconds} s vs last attempt ${done.attempts[2]!.durationSeconds} s`);
    // The attempts are the transitions into and out of running.
    const { transitions } = await client.unary("getJobHistory", { jobId: job!.id });
    const starts = transitions.filter((t) => t.toState === JobState.RUNNING).map((t) => ms(t.time));
    const ends = transitions.filter((t) => t.fromState === JobState.RUNNING).map((t) => ms(t.time));
    assert.deepEqual(done.attempts.map((a) => ms(a.startTime)), starts);
    assert.deepEqual(done.attempts.map((a) => ms(a.endTime)), ends);
    // ListJobs carries the same.
    const { jobs } = await client.unary("listJobs", { pageSize: 10 });
    const listed = jobs.find((j) => j.id === job!.id)!;
    assert.deepEqual(listed.attempts, done.attempts);
    assert.equal(listed.durationSeconds, done.durationSeconds);
  });

  test("a running attempt counts up to now", async () => {
    const { client } = await spawnDaemonWithClient({}, cleanups);
    const { job } = await client.unary("submitJob", { definition: { provider: "fake", vm: "slow?size=4194304&chunk=65536&delayMs=20", outputDir: "slow" } });
    await waitForJob(client, job!.id, hasBytes(65536));
    const first = (await client.unary("getJob", { jobId: job!.id })).job!;
    await new Promise((r) => setTimeout(r, 300));
    const later = (await client.unary("getJob", { jobId: job!.id })).job!;
    assert.equal(later.state, JobState.RUNNING);
    assert.ok(later.durationSeconds >= first.durationSeconds + 0.25, `${first.durationSeconds} s, then ${later.durationSeconds} s`);
    assert.equal(later.attempts[0]!.durationSeconds, later.durationSeconds);
    await client.unary("cancelJob", { jobId: job!.id, reason: "" });
    const cancelled = await waitForJob(client, job!.id, isFinal);
    assert.deepEqual(cancelled.attempts.map((a) => a.outcome), [JobState.CANCELLED]);
    assertConsistent(cancelled);
  });

  test("a database from before the attempts column: the attempts are backfilled from the transitions", async () => {
    const first = await spawnDaemonWithClient({ args: ["--config", config(), "--max-concurrent-jobs", "1"] }, cleanups);
    const { job } = await first.client.unary("submitJob", { definition: { provider: "fake", vm, outputDir: "backfill" } });
    // Queued behind the first (one slot), and cancelled there.
    const { job: never } = await first.client.unary("submitJob", { definition: { provider: "fake", vm: "later?size=1", outputDir: "never", priority: "low" } });
    await first.client.unary("cancelJob", { jobId: never!.id, reason: "" });
    const done = await waitForJob(first.client, job!.id, isFinal);
    assert.equal(await first.daemon.stop(), 0);
    // What a database of the previous version looks like: no attempts column, schema version 6.
    const db = new Database(path.join(first.daemon.dataDir, DATABASE_FILE));
    db.exec("ALTER TABLE jobs DROP COLUMN attempts; DELETE FROM schema_migrations WHERE version = 7");
    db.close();
    const second = await spawnDaemonWithClient(respawnOptions(first.daemon), cleanups);
    const { job: backfilled } = await second.client.unary("getJob", { jobId: job!.id });
    assert.deepEqual(backfilled!.attempts.map((a) => a.outcome), [JobState.QUEUED, JobState.QUEUED, JobState.COMPLETED]);
    assert.deepEqual(backfilled!.attempts, done.attempts);
    assert.equal(backfilled!.durationSeconds, done.durationSeconds);
    const { job: notRun } = await second.client.unary("getJob", { jobId: never!.id });
    assert.deepEqual(notRun!.attempts, [], "a job cancelled while queued never ran");
    assert.equal(notRun!.durationSeconds, 0);
  });
});
