import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import Database from "better-sqlite3";
import pg from "pg";
import pino from "pino";
import type { JobDefinition } from "../src/domain/job.ts";
import type { Profile } from "../src/domain/profile.ts";
import type { Schedule } from "../src/domain/schedule.ts";
import { AlreadyExistsError, InvalidArgumentError } from "../src/errors.ts";
import { createScheduler, type PlannedRun, type Scheduler } from "../src/scheduler/scheduler.ts";
import { generateKey } from "../src/store/encryption-key.ts";
import { createPool } from "../src/store/postgres/pool.ts";
import { migrate as migratePostgres } from "../src/store/postgres/migrations.ts";
import { createProfileQueries, createProfileStore } from "../src/store/postgres/profiles.ts";
import { createScheduleQueries, createScheduleStore, type ScheduleQueries } from "../src/store/postgres/schedules.ts";
import { transaction } from "../src/store/postgres/sql.ts";
import { createSecretBox } from "../src/store/secret-box.ts";
import { migrate } from "../src/store/sqlite/migrations.ts";
import type { ProfileStore, ScheduleStore } from "../src/store/store.ts";
import { postgresSkipReason, startPostgres, type Postgres } from "./support/postgres.ts";
import { waitFor } from "./support/wait-for.ts";

const skip = postgresSkipReason();
if (skip) console.log(`# skipping the PostgreSQL schedule and profile store tests: ${skip}`);

const box = createSecretBox(generateKey());
const pools: pg.Pool[] = [];
let postgres: Postgres;

interface Fixture {
  pool: pg.Pool;
  queries: ScheduleQueries;
  store: ScheduleStore;
  profiles: ProfileStore;
  /** A job row with what the schedule queries read (state, schedule, batch, times); the rest as the jobs module requires. */
  addJob(id: string, fields?: { state?: string; scheduleId?: string; batchId?: string; startTime?: number; endTime?: number }): Promise<void>;
  addBatch(id: string, fields?: { scheduleId?: string; state?: string; createTime?: number; endTime?: number }): Promise<void>;
}

async function fixture(): Promise<Fixture> {
  const pool = createPool(await postgres.createDatabase());
  pools.push(pool);
  // The whole schema (every module's tables), as a daemon starts on it.
  await migratePostgres(pool);
  const queries = createScheduleQueries(box);
  return {
    pool, queries,
    store: createScheduleStore(pool, queries),
    profiles: createProfileStore(pool, createProfileQueries()),
    async addJob(id, fields = {}) {
      await pool.query(`INSERT INTO jobs (id, name, provider, state, priority, definition, max_attempts, schedule_id, batch_id, create_time, start_time, end_time)
        VALUES ($1, 'j', 'fake', $2, 1, '{}', 1, $3, $4, 0, $5, $6)`,
      [id, fields.state ?? "queued", fields.scheduleId ?? null, fields.batchId ?? null, fields.startTime ?? null, fields.endTime ?? null]);
    },
    async addBatch(id, fields = {}) {
      await pool.query(`INSERT INTO batches (id, name, definition, schedule_id, state, create_time, end_time)
        VALUES ($1, 'b', '{}', $2, $3, $4, $5)`,
      [id, fields.scheduleId ?? null, fields.state ?? "running", fields.createTime ?? 0, fields.endTime ?? null]);
    },
  };
}

function template(name = "nightly"): JobDefinition {
  return {
    name, provider: "vsphere", vm: "vm-42",
    vsphere: { url: "https://backup:url-s3cret@vc.example/sdk", username: "backup", password: "s3cret", insecure: false, thumbprint: "" },
    outputDir: "/exports/nightly", format: "ova", compress: false, compressionLevel: 6, parallelDownloads: 2,
    bandwidthLimit: 0, powerOff: false, priority: "normal", labels: { team: "infra" },
  };
}

let createClock = 1_700_000_000_000;
function schedule(overrides: Partial<Schedule> = {}): Schedule {
  const createTime = ++createClock;
  return {
    id: `s-${createTime}`, name: "nightly", description: "", cron: "0 2 * * *", timeZone: "", jobTemplate: template(),
    enabled: true, tags: {}, overlapPolicy: "skip", missedRunPolicy: "skip", keepLast: 0, createTime, updateTime: createTime,
    nextRunTime: undefined, lastRunTime: undefined, runCount: 0,
    ...overrides,
  };
}

async function assertInvalid(promise: Promise<unknown>, field: string, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(error)}`);
    assert.equal(error.field, field);
    assert.match(error.message, pattern);
    return true;
  });
}

describe("PostgreSQL schedule and profile stores", { skip }, () => {
  before(async () => {
    postgres = await startPostgres();
  });
  after(async () => {
    for (const pool of pools) await pool.end();
    // pool.end() resolves before its clients' sockets have closed: a server stopped meanwhile would kill them
    // ("terminating connection due to administrator command", uncaught on a client the pool no longer watches).
    const watcher = new pg.Client({ connectionString: postgres.url(), application_name: "watcher" });
    await watcher.connect();
    try {
      await waitFor("the pools' connections to close", async () =>
        (await watcher.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'hypervisord'")).rows[0].n === 0);
    } finally {
      await watcher.end();
    }
    await postgres.stop();
  });

  test("the tables have SQLite's final columns, in SQLite's order (store copy moves rows column by column)", async () => {
    const { pool } = await fixture();
    const sqlite = new Database(":memory:");
    try {
      migrate(sqlite);
      for (const table of ["schedules", "schedule_runs", "schedule_exports", "profiles"]) {
        const expected = (sqlite.prepare(`SELECT name FROM pragma_table_info(?) ORDER BY cid`).pluck().all(table) as string[]);
        const { rows } = await pool.query<{ column_name: string }>(
          "SELECT column_name FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position", [table]);
        assert.deepEqual(rows.map((row) => row.column_name), expected, table);
      }
    } finally {
      sqlite.close();
    }
  });

  test("the template's secrets are kept in the secrets column, sealed, never in the JSON; get gives the schedule back", async () => {
    const { pool, store } = await fixture();
    const s = schedule({ tags: { env: "prod" }, nextRunTime: 1_800_000_000_000, keepLast: 3 });
    await store.insert(s);
    const { rows } = await pool.query("SELECT job_template, secrets, enabled, tags FROM schedules WHERE id = $1", [s.id]);
    assert.doesNotMatch(rows[0].job_template, /s3cret/);
    assert.match(rows[0].secrets, /^v1:/);
    assert.doesNotMatch(rows[0].secrets, /s3cret/);
    assert.deepEqual(JSON.parse(box.open(rows[0].secrets)), { vsphere_password: "s3cret", vsphere_url: "https://backup:url-s3cret@vc.example/sdk" });
    assert.equal(rows[0].enabled, 1, "a flag is 0 or 1, as in SQLite");
    assert.equal(rows[0].tags, '{"env":"prod"}', "JSON is TEXT in SQLite's encoding");
    assert.deepEqual(await store.get(s.id), s);
    assert.equal(await store.get("nope"), undefined);
    const { vsphere: _, ...withoutVsphere } = template();
    const disabled = schedule({ enabled: false, jobTemplate: { ...withoutVsphere, provider: "fake" } });
    await store.insert(disabled);
    assert.equal((await pool.query("SELECT secrets FROM schedules WHERE id = $1", [disabled.id])).rows[0].secrets, null, "nothing to seal");
    assert.deepEqual(await store.get(disabled.id), disabled);
  });

  test("update replaces all but id, create time, last run time and run count; delete takes the runs and export records along", async () => {
    const { pool, store } = await fixture();
    const s = schedule();
    await store.insert(s);
    await store.recordRun({ id: "run-1", scheduleId: s.id, trigger: "manual", scheduledTime: 5, runTime: 6, skippedReason: "test" });
    await store.exports.record([{ scheduleId: s.id, vmKey: "vm-42", jobId: "job-1", dir: "/exports/nightly/vm-42/1", runTime: 5 }]);
    const changed: Schedule = {
      ...s, name: "weekly", cron: "0 3 * * 0", createTime: 1, runCount: 99, lastRunTime: 1, updateTime: s.updateTime + 1, keepLast: 7,
      nextRunTime: 42, tags: { env: "dev" }, enabled: false, overlapPolicy: "queue", missedRunPolicy: "run_once",
      jobTemplate: { ...template("weekly"), vsphere: { ...template().vsphere!, password: "n3w" } },
    };
    assert.equal(await store.update(changed), true);
    assert.deepEqual(await store.get(s.id), { ...changed, createTime: s.createTime, runCount: 1, lastRunTime: 6 });
    assert.equal(await store.update(schedule()), false);
    await store.setNextRunTime(s.id, 77);
    assert.equal((await store.get(s.id))!.nextRunTime, 77);
    await store.setNextRunTime(s.id, undefined);
    assert.equal((await store.get(s.id))!.nextRunTime, undefined);

    assert.equal(await store.delete(s.id), true);
    assert.equal(await store.get(s.id), undefined);
    assert.equal((await pool.query("SELECT count(*) AS n FROM schedule_runs")).rows[0].n, 0);
    assert.equal(await store.exports.byJob("job-1"), undefined);
    assert.equal(await store.delete(s.id), false);
  });

  test("list pages by create time then id (byte order, as SQLite), and keeps schedules having all the given tags", async () => {
    const { store } = await fixture();
    const time = 1_600_000_000_000;
    // Two with the same create time: the id breaks the tie, upper case before lower case as SQLite compares.
    const made = [
      schedule({ id: "B", createTime: time, tags: { env: "prod", team: "infra" } }),
      schedule({ id: "a", createTime: time, tags: { env: "prod" } }),
      schedule({ id: "c", createTime: time + 1, tags: { env: "dev", team: "infra" } }),
      schedule({ id: "d", createTime: time + 2, tags: { env: "prod", team: "infra" } }),
    ];
    for (const s of made.slice().reverse()) await store.insert(s);
    const ids = async (query: Parameters<ScheduleStore["list"]>[0]) => {
      const page = await store.list(query);
      return { ids: page.schedules.map((s) => s.id), next: page.next };
    };
    assert.deepEqual(await ids({ limit: 3 }), { ids: ["B", "a", "c"], next: "c" });
    assert.deepEqual(await ids({ limit: 3, after: "c" }), { ids: ["d"], next: undefined });
    assert.deepEqual(await ids({ limit: 1, after: "B" }), { ids: ["a"], next: "a" });
    assert.deepEqual(await ids({ limit: 10, tags: { env: "prod", team: "infra" } }), { ids: ["B", "d"], next: undefined });
    assert.deepEqual(await ids({ limit: 1, tags: { env: "prod" } }), { ids: ["B"], next: "B" });
    assert.deepEqual(await ids({ limit: 1, tags: { env: "prod" }, after: "B" }), { ids: ["a"], next: "a" });
    assert.deepEqual(await ids({ limit: 10, tags: { team: "nobody" } }), { ids: [], next: undefined });
    assert.deepEqual(await ids({ limit: 10, tags: { env: "prod'; --" } }), { ids: [], next: undefined });
    assert.deepEqual((await store.all()).map((s) => s.id), ["B", "a", "c", "d"]);
    assert.deepEqual((await store.all())[0], made[0], "whole schedules, times as numbers");
    await assertInvalid(store.list({ limit: 1, after: "gone" }), "page_token", /\(gone\) no longer exists/);
  });

  test("runs: newest first, with the job's state and duration, in pages; run count and last run time", async () => {
    const { store, addJob, pool } = await fixture();
    const s = schedule();
    await store.insert(s);
    for (let i = 0; i < 5; i++) {
      const skipped = i === 2;
      if (!skipped) await addJob(`job-${i}`, { scheduleId: s.id });
      await store.recordRun({
        id: `run-${i}`, scheduleId: s.id, jobId: skipped ? undefined : `job-${i}`, trigger: "cron", scheduledTime: 1000 * i, runTime: 1000 * i + 5,
        skippedReason: skipped ? "previous run still queued or running (job job-1)" : undefined,
      });
    }
    await pool.query("UPDATE jobs SET state = 'completed', start_time = 10000, end_time = 12500 WHERE id = 'job-0'");
    await pool.query("UPDATE jobs SET state = 'failed', start_time = 20000, end_time = 20250 WHERE id = 'job-1'");
    await pool.query("UPDATE jobs SET state = 'running' WHERE id = 'job-3'");
    assert.equal((await store.get(s.id))!.runCount, 5);
    assert.equal((await store.get(s.id))!.lastRunTime, 4005);
    assert.deepEqual(await store.activeJobIds(s.id), ["job-3", "job-4"]);

    const first = await store.listRuns(s.id, { limit: 2 });
    assert.deepEqual(first.runs.map((r) => [r.id, r.state, r.durationSeconds]), [["run-4", "queued", undefined], ["run-3", "running", undefined]]);
    assert.equal(first.next, "run-3");
    const second = await store.listRuns(s.id, { limit: 2, before: first.next });
    assert.deepEqual(second.runs, [
      { id: "run-2", scheduleId: s.id, jobId: undefined, trigger: "cron", scheduledTime: 2000, runTime: 2005, state: undefined, durationSeconds: undefined, skippedReason: "previous run still queued or running (job job-1)" },
      { id: "run-1", scheduleId: s.id, jobId: "job-1", trigger: "cron", scheduledTime: 1000, runTime: 1005, state: "failed", durationSeconds: 0.25, skippedReason: undefined },
    ]);
    const last = await store.listRuns(s.id, { limit: 2, before: second.next });
    assert.deepEqual(last.runs.map((r) => [r.id, r.state, r.durationSeconds]), [["run-0", "completed", 2.5]]);
    assert.equal(last.next, undefined);
    assert.deepEqual((await store.listRuns("other", { limit: 10 })).runs, []);
    await assertInvalid(store.listRuns("other", { limit: 1, before: "run-1" }), "page_token", /no longer exists/);
  });

  test("a batch's run takes the batch's state and times; its children are the schedule's active jobs", async () => {
    const { store, addJob, addBatch } = await fixture();
    const s = schedule();
    await store.insert(s);
    const batchRun = async (n: number, state: string, createTime: number, endTime?: number) => {
      await addBatch(`batch-${n}`, { scheduleId: s.id, state, createTime, endTime });
      await store.recordRun({ id: `run-${n}`, scheduleId: s.id, batchId: `batch-${n}`, trigger: "cron", scheduledTime: createTime, runTime: createTime });
    };
    await batchRun(0, "completed", 1_000, 4_000);
    await batchRun(1, "partially_failed", 5_000, 5_500);
    await batchRun(2, "cancelled", 6_000, 7_000);
    await batchRun(3, "running", 8_000);
    // Children of a schedule's batch need not carry the schedule id.
    await addJob("child-a", { batchId: "batch-3", state: "running" });
    await addJob("child-b", { batchId: "batch-3", state: "queued" });
    await addJob("child-c", { batchId: "batch-3", state: "completed" });
    await addJob("own", { scheduleId: s.id, state: "queued" });
    await addJob("stranger", { state: "queued" });

    const { runs } = await store.listRuns(s.id, { limit: 10 });
    assert.deepEqual(runs.map((r) => [r.id, r.jobId, r.batchId, r.state, r.durationSeconds]), [
      ["run-3", undefined, "batch-3", "running", undefined],
      ["run-2", undefined, "batch-2", "cancelled", 1],
      ["run-1", undefined, "batch-1", "failed", 0.5],
      ["run-0", undefined, "batch-0", "completed", 3],
    ]);
    assert.deepEqual(await store.activeJobIds(s.id), ["child-a", "child-b", "own"]);
    assert.equal(await store.scheduleOfBatch("batch-1"), s.id);
    await addBatch("adhoc");
    assert.equal(await store.scheduleOfBatch("adhoc"), undefined);
    assert.equal(await store.scheduleOfBatch("missing"), undefined);
  });

  test("a run recorded in its job's transaction commits or rolls back with it; a failing recordRun counts nothing", async () => {
    const { store, queries, pool, addJob } = await fixture();
    const s = schedule();
    await store.insert(s);
    const run = { id: "run-1", scheduleId: s.id, jobId: "job-1", trigger: "cron" as const, scheduledTime: 10, runTime: 11 };
    await assert.rejects(transaction(pool, async (db) => {
      await db.query(`INSERT INTO jobs (id, name, provider, state, priority, definition, max_attempts, schedule_id, create_time)
        VALUES ('job-1', 'j', 'fake', 'queued', 1, '{}', 1, $1, 0)`, [s.id]);
      await queries.recordRun(db, run);
      throw new Error("the job's insert failed after the run was recorded");
    }), /the job's insert failed/);
    assert.deepEqual((await store.listRuns(s.id, { limit: 10 })).runs, []);
    assert.equal((await store.get(s.id))!.runCount, 0);

    await addJob("job-1", { scheduleId: s.id });
    await transaction(pool, (db) => queries.recordRun(db, run));
    // The same run id again: the insert fails, and the bump of its transaction goes with it.
    await assert.rejects(store.recordRun({ ...run, runTime: 99 }), /schedule_runs_id_key/);
    const after = (await store.get(s.id))!;
    assert.deepEqual([after.runCount, after.lastRunTime], [1, 11]);
    assert.deepEqual((await store.listRuns(s.id, { limit: 10 })).runs.map((r) => [r.id, r.state]), [["run-1", "queued"]]);
  });

  test("two daemons recording runs of one schedule at once: every run is counted, the last run time is the latest", async () => {
    const { store, pool } = await fixture();
    const other = createPool(pool.options.connectionString!);
    pools.push(other);
    const stores = [store, createScheduleStore(other, createScheduleQueries(box))];
    const s = schedule();
    await store.insert(s);
    await Promise.all(Array.from({ length: 40 }, (_, i) => stores[i % 2]!.recordRun({
      id: `run-${i}`, scheduleId: s.id, trigger: "manual", scheduledTime: i, runTime: 1_000 + i, skippedReason: "overlap",
    })));
    const after = (await stores[1]!.get(s.id))!;
    assert.equal(after.runCount, 40);
    assert.equal(after.lastRunTime, 1_039, "the latest run, whichever committed last");
    assert.equal((await store.listRuns(s.id, { limit: 100 })).runs.length, 40);
  });

  test("a delete while another daemon records a run waits for it and takes the run along", async () => {
    const { store, queries, pool } = await fixture();
    const s = schedule();
    await store.insert(s);
    let recorded!: () => void;
    const isRecorded = new Promise<void>((resolve) => (recorded = resolve));
    let commit!: () => void;
    const committing = new Promise<void>((resolve) => (commit = resolve));
    const recording = transaction(pool, async (db) => {
      await queries.recordRun(db, { id: "run-1", scheduleId: s.id, trigger: "cron", scheduledTime: 1, runTime: 2, skippedReason: "overlap" });
      recorded();
      await committing;
    });
    await isRecorded;
    const deleting = store.delete(s.id);
    await new Promise((resolve) => setTimeout(resolve, 200)); // the delete is waiting on the schedule's row
    commit();
    await recording;
    assert.equal(await deleting, true);
    assert.equal((await pool.query("SELECT count(*) AS n FROM schedule_runs")).rows[0].n, 0, "no run is left without its schedule");
  });

  test("the scheduler on this store: overlap skip, a run's job in its transaction, missed runs at a restart", async () => {
    const { store, queries, pool } = await fixture();
    const aligned = Date.parse("2025-06-01T12:00:00Z");
    const now = () => Date.parse("2025-06-01T12:03:00Z");
    const TEN_MINUTES = 600_000;
    let jobs = 0;
    // As the engine does (NewJob.scheduleRun): the job row and its run record in one transaction.
    const submit = async (sch: Schedule, run: PlannedRun) => {
      const jobId = `job-${++jobs}`;
      await transaction(pool, async (db) => {
        await db.query(`INSERT INTO jobs (id, name, provider, state, priority, definition, max_attempts, schedule_id, create_time)
          VALUES ($1, 'j', 'fake', 'queued', 1, '{}', 1, $2, $3)`, [jobId, sch.id, now()]);
        await queries.recordRun(db, { ...run, scheduleId: sch.id, jobId, runTime: now() });
      });
      return { jobId };
    };
    const schedulers: Scheduler[] = [];
    const start = async () => {
      const scheduler = createScheduler({ store, submit, logger: pino({ level: "silent" }), now });
      schedulers.push(scheduler);
      await scheduler.start();
      return scheduler;
    };
    try {
      const s = schedule({ cron: "*/10 * * * *", overlapPolicy: "skip", missedRunPolicy: "skip" });
      await store.insert(s);
      const first = await start();
      assert.equal(first.nextRunTime(s.id), aligned + TEN_MINUTES);
      assert.equal((await store.get(s.id))!.nextRunTime, aligned + TEN_MINUTES, "the next run time is stored");
      const manual = await first.trigger(s.id);
      assert.equal(manual.jobId, "job-1");
      const skipped = await first.trigger(s.id);
      assert.equal(skipped.run.skippedReason, "previous run still queued or running (job job-1)");
      await pool.query("UPDATE jobs SET state = 'completed', start_time = 1, end_time = 2 WHERE id = 'job-1'");
      assert.equal((await first.trigger(s.id)).jobId, "job-2");
      first.stop();

      // Down for three cron times: one skipped "missed" run for them all, then the next from now.
      await store.setNextRunTime(s.id, aligned - 2 * TEN_MINUTES);
      const second = await start();
      const { runs } = await store.listRuns(s.id, { limit: 10 });
      assert.deepEqual(runs.map((r) => [r.trigger, r.jobId, r.state, r.skippedReason]), [
        ["missed", undefined, undefined, "missed while the daemon was down (3 runs)"],
        ["manual", "job-2", "queued", undefined],
        ["manual", undefined, undefined, "previous run still queued or running (job job-1)"],
        ["manual", "job-1", "completed", undefined],
      ]);
      assert.equal((await store.get(s.id))!.runCount, 4);
      assert.equal((await store.get(s.id))!.nextRunTime, aligned + TEN_MINUTES);
      assert.deepEqual(second.stats(), { schedules: 1, enabled: 1, runs: 0, skipped: 1, missed: 3 });
    } finally {
      for (const scheduler of schedulers) scheduler.stop();
    }
  });

  test("exports: recorded once per job; successful ones follow their job's completion, newest run first, until marked deleted", async () => {
    const { store, addJob, pool } = await fixture();
    const kept = schedule({ keepLast: 2 });
    const keepAll = schedule({ keepLast: 0 });
    await store.insert(kept);
    await store.insert(keepAll);
    const dir = (vm: string, run: number) => `/exports/${vm}/${run}`;
    const exp = (jobId: string, vmKey: string, runTime: number, scheduleId = kept.id) => ({ scheduleId, vmKey, jobId, dir: dir(vmKey, runTime), runTime });
    await store.exports.record([exp("j1", "vm-a", 100), exp("j2", "vm-b", 100)]);
    await store.exports.record([exp("j3", "vm-a", 200), exp("j1", "vm-a", 999)]); // j1 again: left as it was
    await store.exports.record([exp("j4", "vm-a", 300), exp("j5", "vm-c", 300, keepAll.id)]);
    await store.exports.record([]);
    assert.deepEqual(await store.exports.byJob("j1"), { ...exp("j1", "vm-a", 100), completedTime: undefined, deletedTime: undefined });
    assert.equal(await store.exports.byJob("nope"), undefined);
    assert.equal(await store.exports.isRecorded(dir("vm-a", 200)), true);
    assert.equal(await store.exports.isRecorded(dir("vm-a", 999)), false);

    // j1 completed (even before anyone looked), j3 failed, j4 completed later; j2 is still running.
    await addJob("j1", { state: "completed", startTime: 100, endTime: 150 });
    await addJob("j2", { state: "running", startTime: 100 });
    await addJob("j3", { state: "failed", startTime: 200, endTime: 210 });
    await addJob("j4", { state: "queued" });
    await addJob("j5", { state: "completed", startTime: 300, endTime: 330 });
    assert.deepEqual((await store.exports.successful(kept.id, "vm-a")).map((e) => [e.jobId, e.completedTime]), [["j1", 150]]);
    assert.equal((await store.exports.byJob("j1"))!.completedTime, 150, "the record keeps the completion time");
    await pool.query("UPDATE jobs SET state = 'completed', start_time = 300, end_time = 360 WHERE id = 'j4'");
    assert.deepEqual((await store.exports.successful(kept.id, "vm-a")).map((e) => [e.jobId, e.completedTime]), [["j4", 360], ["j1", 150]]);
    assert.deepEqual(await store.exports.successful(kept.id, "vm-b"), []);

    // Only schedules with a keep_last, only exports not deleted.
    assert.deepEqual(await store.exports.retainedKeys(), [{ scheduleId: kept.id, vmKey: "vm-a" }, { scheduleId: kept.id, vmKey: "vm-b" }]);
    assert.equal(await store.exports.markDeleted("j1", 500), true);
    assert.equal(await store.exports.markDeleted("j1", 600), false, "already marked");
    assert.equal((await store.exports.byJob("j1"))!.deletedTime, 500);
    assert.deepEqual((await store.exports.successful(kept.id, "vm-a")).map((e) => e.jobId), ["j4"]);
    assert.equal(await store.exports.isRecorded(dir("vm-a", 100)), true, "a deleted directory stays recorded: never reused");
    await store.exports.markDeleted("j2", 500);
    assert.deepEqual(await store.exports.retainedKeys(), [{ scheduleId: kept.id, vmKey: "vm-a" }]);
  });

  test("profiles: insert, get, list by name (byte order), update, delete; a taken name is ALREADY_EXISTS", async () => {
    const { profiles, pool } = await fixture();
    const profile = (name: string, overrides: Partial<Profile> = {}): Profile => ({
      name, description: `the ${name} profile`, settings: { format: "ova", compress: true, labels: { tier: "gold" } }, source: "api",
      createTime: 1_000, updateTime: 1_000, ...overrides,
    });
    await profiles.insert(profile("fast"));
    await profiles.insert(profile("Archive", { settings: {} }));
    await assert.rejects(profiles.insert(profile("fast")), (error: unknown) => {
      assert.ok(error instanceof AlreadyExistsError, String(error));
      assert.match(error.message, /profile "fast" already exists/);
      return true;
    });
    assert.deepEqual(await profiles.get("fast"), profile("fast"));
    assert.equal(await profiles.get("slow"), undefined);
    assert.deepEqual((await profiles.list()).map((p) => p.name), ["Archive", "fast"]);
    assert.equal((await pool.query("SELECT settings FROM profiles WHERE name = 'fast'")).rows[0].settings,
      '{"format":"ova","compress":true,"labels":{"tier":"gold"}}');

    const changed = profile("fast", { description: "changed", settings: { priority: "high" }, createTime: 5, updateTime: 2_000 });
    assert.equal(await profiles.update(changed), true);
    assert.deepEqual(await profiles.get("fast"), { ...changed, createTime: 1_000 }, "the create time stays");
    assert.equal(await profiles.update(profile("slow")), false);
    assert.equal(await profiles.delete("fast"), true);
    assert.equal(await profiles.delete("fast"), false);
    assert.deepEqual((await profiles.list()).map((p) => p.name), ["Archive"]);
  });
});
