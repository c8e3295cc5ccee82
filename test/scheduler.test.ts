import assert from "node:assert/strict";
import path from "node:path";
import { after, describe, test } from "node:test";
import Database from "better-sqlite3";
import pino from "pino";
import type { JobDefinition, JobState } from "../src/domain/job.ts";
import type { Schedule } from "../src/domain/schedule.ts";
import { uuidv7 } from "../src/engine/uuid-v7.ts";
import { InvalidArgumentError, NotFoundError, UnavailableError } from "../src/errors.ts";
import { parseCron } from "../src/scheduler/cron.ts";
import { createScheduler, type PlannedRun, type Scheduler } from "../src/scheduler/scheduler.ts";
import { generateKey } from "../src/store/encryption-key.ts";
import { createSecretBox } from "../src/store/secret-box.ts";
import { migrate } from "../src/store/sqlite/migrations.ts";
import { createScheduleQueries, type ScheduleQueries } from "../src/store/sqlite/schedules.ts";
import type { ScheduleExportStore, ScheduleStore } from "../src/store/store.ts";
import { toAsync } from "../src/store/sync-store.ts";
import { tempDir } from "./support/temp-dir.ts";
import { waitFor } from "./support/wait-for.ts";

const FIELDS = { cron: "schedule.cron", timeZone: "schedule.time_zone" };
const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());
const ms = (text: string) => Date.parse(text);
const sleep = (delayMs: number) => new Promise((resolve) => setTimeout(resolve, delayMs));

// --- fixtures: a temp database, and a fake engine that creates jobs the way the real one will ---

const cleanups: (() => void)[] = [];
after(() => {
  for (const cleanup of cleanups.reverse()) cleanup();
});

interface Fixture {
  db: Database.Database;
  store: ScheduleStore;
  jobs: FakeEngine;
  /** `store` replaces the fixture's (a wrapper that fails on purpose). */
  scheduler(options?: { now?: () => number; store?: ScheduleStore }): Scheduler;
}

function fixture(): Fixture {
  const dir = tempDir("scheduler");
  const db = new Database(path.join(dir, "test.db"));
  migrate(db);
  const queries = createScheduleQueries(db, createSecretBox(generateKey()));
  // The async store, as the daemon's SQLite store gives it (the fake engine's transaction needs the synchronous queries).
  const { exports, ...scheduleQueries } = queries;
  const store: ScheduleStore = { ...toAsync<Omit<ScheduleStore, "exports">>(scheduleQueries), exports: toAsync<ScheduleExportStore>(exports) };
  const jobs = fakeEngine(db, queries);
  const schedulers: Scheduler[] = [];
  cleanups.push(() => {
    for (const s of schedulers) s.stop();
    db.close();
  });
  return {
    db, store, jobs,
    scheduler(options = {}) {
      const s = createScheduler({ store: options.store ?? store, submit: jobs.submit, logger: pino({ level: "silent" }), now: options.now });
      schedulers.push(s);
      return s;
    },
  };
}

interface FakeEngine {
  submit(schedule: Schedule, run: PlannedRun): Promise<{ jobId: string }>;
  /** Makes every submit fail with this message (undefined: succeed). */
  failWith: string | undefined;
  ids(scheduleId: string): string[];
  finish(jobId: string, state: JobState, startTime: number, endTime: number): void;
  setState(jobId: string, state: JobState): void;
  submitted: { scheduleId: string; run: PlannedRun; password?: string }[];
}

/** Mimics the engine's NewJob.scheduleRun: the job row and its run record in one transaction. */
function fakeEngine(db: Database.Database, store: ScheduleQueries): FakeEngine {
  const insertJob = db.prepare(`INSERT INTO jobs (id, name, provider, state, priority, definition, max_attempts, schedule_id, create_time)
    VALUES (@id, @name, 'fake', 'queued', 1, '{}', 1, @schedule_id, @create_time)`);
  const create = db.transaction((schedule: Schedule, run: PlannedRun): string => {
    const id = uuidv7();
    const createTime = Date.now();
    insertJob.run({ id, name: schedule.jobTemplate.name, schedule_id: schedule.id, create_time: createTime });
    store.recordRun({ ...run, scheduleId: schedule.id, jobId: id, runTime: createTime });
    return id;
  });
  const engine: FakeEngine = {
    failWith: undefined,
    submitted: [],
    async submit(schedule, run) {
      const failure = engine.failWith;
      await sleep(1); // the real submit is asynchronous too
      if (failure) throw new Error(failure);
      engine.submitted.push({ scheduleId: schedule.id, run, password: schedule.jobTemplate.vsphere?.password });
      return { jobId: create(schedule, run) };
    },
    ids: (scheduleId) => db.prepare("SELECT id FROM jobs WHERE schedule_id = ? ORDER BY pk").pluck().all(scheduleId) as string[],
    finish(jobId, state, startTime, endTime) {
      db.prepare("UPDATE jobs SET state = ?, start_time = ?, end_time = ? WHERE id = ?").run(state, startTime, endTime, jobId);
    },
    setState(jobId, state) {
      db.prepare("UPDATE jobs SET state = ? WHERE id = ?").run(state, jobId);
    },
  };
  return engine;
}

function template(name = "nightly"): JobDefinition {
  return {
    name, provider: "vsphere", vm: "vm-42",
    vsphere: { url: "https://vc.example", username: "backup", password: "s3cret", insecure: false, thumbprint: "" },
    outputDir: "/exports/nightly", format: "ova", compress: false, compressionLevel: 6, parallelDownloads: 2,
    bandwidthLimit: 0, powerOff: false, priority: "normal", labels: { team: "infra" },
  };
}

let createClock = Date.now();
function schedule(overrides: Partial<Schedule> = {}): Schedule {
  const createTime = ++createClock;
  return {
    id: uuidv7(createTime), name: "nightly", description: "", cron: "0 2 * * *", timeZone: "", jobTemplate: template(),
    enabled: true, tags: {}, overlapPolicy: "skip", missedRunPolicy: "skip", keepLast: 0, createTime, updateTime: createTime,
    nextRunTime: undefined, lastRunTime: undefined, runCount: 0,
    ...overrides,
  };
}

function isInvalid(field: string, pattern: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(error)}`);
    assert.equal(error.field, field);
    assert.match(error.message, pattern);
    return true;
  };
}

function assertInvalid(fn: () => unknown, field: string, pattern: RegExp): void {
  assert.throws(fn, isInvalid(field, pattern));
}

async function assertRejectsInvalid(promise: Promise<unknown>, field: string, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, isInvalid(field, pattern));
}

// --- cron expressions ---

describe("parseCron", () => {
  test("errors name the request field and say what is wrong", () => {
    assertInvalid(() => parseCron("61 * * * *", "", FIELDS), "schedule.cron", /invalid cron expression "61 \* \* \* \*": Invalid value for minute: 61/);
    assertInvalid(() => parseCron("* * *", "", FIELDS), "schedule.cron", /expected 5 fields .* or 6 with seconds first, got 3/);
    assertInvalid(() => parseCron("", "", FIELDS), "schedule.cron", /got 0/);
    // croner's 7-field form (with a year) is not part of the API.
    assertInvalid(() => parseCron("0 0 0 * * * 2030", "", FIELDS), "schedule.cron", /got 7/);
    assertInvalid(() => parseCron("0 0 * * MON,FOO", "", FIELDS), "schedule.cron", /illegal characters/);
    assertInvalid(() => parseCron("@reboot", "", FIELDS), "schedule.cron", /@reboot is not supported/);
    assertInvalid(() => parseCron("0 0 30 2 *", "", FIELDS), "schedule.cron", /never fires/);
    assertInvalid(() => parseCron("0 2 * * *", "Mars/Olympus_Mons", FIELDS), "schedule.time_zone", /^schedule\.time_zone: unknown IANA time zone "Mars\/Olympus_Mons"$/);
    assertInvalid(() => parseCron("0 2 * * *", "+02:00", FIELDS), "schedule.time_zone", /unknown IANA time zone/);
  });

  test("an empty zone is UTC; zone names are canonicalised", () => {
    assert.equal(parseCron("0 2 * * *", "", FIELDS).timeZone, "UTC");
    assert.equal(parseCron("0 2 * * *", "europe/berlin", FIELDS).timeZone, "Europe/Berlin");
    const utc = parseCron("0 2 * * *", "", FIELDS);
    assert.equal(iso(utc.next(ms("2025-06-01T12:00:00Z"))), "2025-06-02T02:00:00.000Z");
  });

  test("5 fields (minutes) and 6 fields (seconds first); next is strictly after", () => {
    const five = parseCron("*/15 * * * *", "", FIELDS);
    assert.equal(iso(five.next(ms("2025-01-01T00:07:30Z"))), "2025-01-01T00:15:00.000Z");
    assert.equal(iso(five.next(ms("2025-01-01T00:15:00Z"))), "2025-01-01T00:30:00.000Z");
    const six = parseCron("30 */15 * * * *", "", FIELDS);
    assert.equal(iso(six.next(ms("2025-01-01T00:00:00Z"))), "2025-01-01T00:00:30.000Z");
    assert.equal(iso(six.next(ms("2025-01-01T00:00:30Z"))), "2025-01-01T00:15:30.000Z");
    const everySecond = parseCron("* * * * * *", "", FIELDS);
    assert.equal(everySecond.next(1000), 2000);
    assert.equal(everySecond.next(1999), 2000);
    assert.equal(iso(parseCron("@daily", "", FIELDS).next(ms("2025-01-01T05:00:00Z"))), "2025-01-02T00:00:00.000Z");
  });

  test("day-of-month and day-of-week are ORed, as in Vixie cron", () => {
    const cron = parseCron("0 0 1 * MON", "", FIELDS);
    const times: (string | undefined)[] = [];
    let t = ms("2025-03-28T12:00:00Z");
    for (let i = 0; i < 3; i++) times.push(iso((t = cron.next(t)!)));
    // Monday the 31st, Tuesday the 1st (day of month), Monday the 7th.
    assert.deepEqual(times, ["2025-03-31T00:00:00.000Z", "2025-04-01T00:00:00.000Z", "2025-04-07T00:00:00.000Z"]);
  });

  test("DST in Europe/Berlin: a fixed time in the spring gap runs after it; a repeated time runs once", () => {
    const cron = parseCron("0 30 2 * * *", "Europe/Berlin", FIELDS);
    const runs = (from: string, n: number) => {
      const out: (string | undefined)[] = [];
      let t = ms(from);
      for (let i = 0; i < n; i++) out.push(iso((t = cron.next(t)!)));
      return out;
    };
    // 2025-03-30 02:00 CET jumps to 03:00 CEST: 02:30 does not exist, the run is at 03:00 CEST (01:00Z).
    assert.deepEqual(runs("2025-03-28T12:00:00Z", 3), ["2025-03-29T01:30:00.000Z", "2025-03-30T01:00:00.000Z", "2025-03-31T00:30:00.000Z"]);
    // 2025-10-26 03:00 CEST falls back to 02:00 CET: 02:30 happens twice, the run is at the first (00:30Z) only.
    assert.deepEqual(runs("2025-10-25T12:00:00Z", 2), ["2025-10-26T00:30:00.000Z", "2025-10-27T01:30:00.000Z"]);
    // An interval job (a step in minutes) runs on both passes through the repeated hour.
    const interval = parseCron("0 */30 2 * * *", "Europe/Berlin", FIELDS);
    const autumn: (string | undefined)[] = [];
    let t = ms("2025-10-25T12:00:00Z");
    for (let i = 0; i < 4; i++) autumn.push(iso((t = interval.next(t)!)));
    assert.deepEqual(autumn, ["2025-10-26T00:00:00.000Z", "2025-10-26T00:30:00.000Z", "2025-10-26T01:00:00.000Z", "2025-10-26T01:30:00.000Z"]);
  });
});

// --- the store ---

describe("schedule store", () => {
  test("the template's password is kept in the secrets column, encrypted, never in the JSON", async () => {
    const { db, store } = fixture();
    const s = schedule({ tags: { env: "prod" } });
    await store.insert(s);
    const row = db.prepare("SELECT job_template, secrets FROM schedules WHERE id = ?").get(s.id) as { job_template: string; secrets: string };
    assert.doesNotMatch(row.job_template, /s3cret/);
    assert.match(row.secrets, /^v1:/);
    assert.doesNotMatch(row.secrets, /s3cret/);
    assert.deepEqual(await store.get(s.id), s);
  });

  test("update replaces all but id, create time, last run time and run count; delete takes the runs along", async () => {
    const { db, store } = fixture();
    const s = schedule();
    await store.insert(s);
    await store.recordRun({ id: uuidv7(), scheduleId: s.id, trigger: "manual", scheduledTime: 5, runTime: 6, skippedReason: "test" });
    const changed = { ...s, name: "weekly", cron: "0 3 * * 0", createTime: 1, runCount: 99, lastRunTime: 1, updateTime: s.updateTime + 1 };
    assert.equal(await store.update(changed), true);
    assert.deepEqual(await store.get(s.id), { ...changed, createTime: s.createTime, runCount: 1, lastRunTime: 6 });
    assert.equal(await store.update(schedule()), false);
    assert.equal(await store.delete(s.id), true);
    assert.equal(await store.get(s.id), undefined);
    assert.equal(db.prepare("SELECT count(*) FROM schedule_runs").pluck().get(), 0);
    assert.equal(await store.delete(s.id), false);
  });

  test("list pages by create time then id, and keeps schedules having all the given tags", async () => {
    const { store } = fixture();
    const time = Date.now();
    // Two with the same create time: the id breaks the tie.
    const made = [
      schedule({ id: "b", createTime: time, tags: { env: "prod", team: "infra" } }),
      schedule({ id: "a", createTime: time, tags: { env: "prod" } }),
      schedule({ id: "c", createTime: time + 1, tags: { env: "dev", team: "infra" } }),
      schedule({ id: "d", createTime: time + 2, tags: { env: "prod", team: "infra" } }),
    ];
    for (const s of made.slice().reverse()) await store.insert(s);
    const ids = async (query: Parameters<ScheduleStore["list"]>[0]) => {
      const page = await store.list(query);
      return { ids: page.schedules.map((s) => s.id), next: page.next };
    };
    assert.deepEqual(await ids({ limit: 3 }), { ids: ["a", "b", "c"], next: "c" });
    assert.deepEqual(await ids({ limit: 3, after: "c" }), { ids: ["d"], next: undefined });
    assert.deepEqual(await ids({ limit: 1, after: "a" }), { ids: ["b"], next: "b" });
    assert.deepEqual(await ids({ limit: 10, tags: { env: "prod", team: "infra" } }), { ids: ["b", "d"], next: undefined });
    assert.deepEqual(await ids({ limit: 1, tags: { env: "prod" } }), { ids: ["a"], next: "a" });
    assert.deepEqual(await ids({ limit: 1, tags: { env: "prod" }, after: "a" }), { ids: ["b"], next: "b" });
    assert.deepEqual(await ids({ limit: 10, tags: { team: "nobody" } }), { ids: [], next: undefined });
    assert.deepEqual((await store.all()).map((s) => s.id), ["a", "b", "c", "d"]);
    await assertRejectsInvalid(store.list({ limit: 1, after: "gone" }), "page_token", /\(gone\) no longer exists/);
  });

  test("runs: newest first, with the job's state and duration, in pages", async () => {
    const { db, store, jobs } = fixture();
    const s = schedule();
    await store.insert(s);
    const insertJob = db.prepare(`INSERT INTO jobs (id, name, provider, state, priority, definition, max_attempts, schedule_id, create_time)
      VALUES (?, 'j', 'fake', 'queued', 1, '{}', 1, ?, 0)`);
    const runIds: string[] = [];
    for (let i = 0; i < 5; i++) {
      const id = `run-${i}`;
      runIds.push(id);
      const skipped = i === 2;
      if (!skipped) insertJob.run(`job-${i}`, s.id);
      await store.recordRun({
        id, scheduleId: s.id, jobId: skipped ? undefined : `job-${i}`, trigger: "cron", scheduledTime: 1000 * i, runTime: 1000 * i + 5,
        skippedReason: skipped ? "previous run still queued or running (job job-1)" : undefined,
      });
    }
    jobs.finish("job-0", "completed", 10_000, 12_500);
    jobs.finish("job-1", "failed", 20_000, 20_250);
    jobs.setState("job-3", "running");
    assert.deepEqual((await store.get(s.id))!.runCount, 5);
    assert.deepEqual((await store.get(s.id))!.lastRunTime, 4005);
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
    await assertRejectsInvalid(store.listRuns("other", { limit: 1, before: "run-1" }), "page_token", /no longer exists/);
  });
});

// --- the scheduler ---

describe("scheduler: overlap policies and manual triggers", () => {
  test("skip: a run while the previous job is queued or running is recorded as skipped", async () => {
    const { store, jobs, scheduler } = fixture();
    const s = schedule({ overlapPolicy: "skip", enabled: false });
    await store.insert(s);
    const sched = scheduler();
    await sched.start();
    // A disabled schedule can still be triggered by hand.
    const first = await sched.trigger(s.id);
    assert.ok(first.jobId);
    assert.equal(first.run.trigger, "manual");
    assert.equal(first.run.jobId, first.jobId);
    assert.equal(jobs.submitted[0]!.password, "s3cret");
    const second = await sched.trigger(s.id);
    assert.equal(second.jobId, undefined);
    assert.equal(second.run.skippedReason, `previous run still queued or running (job ${first.jobId})`);
    jobs.setState(first.jobId, "running");
    assert.match((await sched.trigger(s.id)).run.skippedReason ?? "", /still queued or running/);
    jobs.finish(first.jobId, "completed", 1, 2);
    const fourth = await sched.trigger(s.id);
    assert.ok(fourth.jobId);
    assert.deepEqual(jobs.ids(s.id), [first.jobId, fourth.jobId]);
    const runs = (await store.listRuns(s.id, { limit: 10 })).runs;
    assert.deepEqual(runs.map((r) => r.jobId ? r.state : "skipped"), ["queued", "skipped", "skipped", "completed"]);
    assert.equal((await store.get(s.id))!.runCount, 4);
    assert.deepEqual(sched.stats(), { schedules: 1, enabled: 0, runs: 2, skipped: 2, missed: 0 });
  });

  test("skip also counts a run whose submit has not returned yet", async () => {
    const { store, scheduler } = fixture();
    const s = schedule({ overlapPolicy: "skip" });
    await store.insert(s);
    const sched = scheduler();
    await sched.start();
    const [a, b] = await Promise.all([sched.trigger(s.id), sched.trigger(s.id)]);
    assert.ok(a.jobId);
    assert.equal(b.run.skippedReason, `previous run still queued or running (run ${a.run.id} being submitted)`);
  });

  test("queue: one run waits for the active job and starts when it finishes; more are skipped", async () => {
    const { store, jobs, scheduler } = fixture();
    const s = schedule({ overlapPolicy: "queue" });
    await store.insert(s);
    const sched = scheduler();
    await sched.start();
    const first = await sched.trigger(s.id);
    const queued = await sched.trigger(s.id);
    assert.equal(queued.queued, true);
    assert.equal(queued.jobId, undefined);
    assert.equal(queued.run.skippedReason, undefined);
    const third = await sched.trigger(s.id);
    assert.equal(third.run.skippedReason, `previous run still queued or running (job ${first.jobId}); run ${queued.run.id} already waits for it`);
    assert.equal(jobs.ids(s.id).length, 1);

    // Another job of the schedule finishing is not enough while the first is still active.
    sched.jobFinished(s.id, "some-other-job");
    await sleep(20);
    assert.equal(jobs.ids(s.id).length, 1);

    jobs.finish(first.jobId!, "completed", 1, 2);
    sched.jobFinished(s.id, first.jobId!);
    const second = await waitFor("the queued run's job", () => jobs.ids(s.id)[1]);
    const runs = (await store.listRuns(s.id, { limit: 10 })).runs;
    // The queued run is recorded under the id trigger() returned, when its job is created.
    assert.deepEqual(runs.map((r) => [r.id, r.jobId]), [[queued.run.id, second], [third.run.id, undefined], [first.run.id, first.jobId]]);
  });

  test("queue: a run waiting behind a submit that fails starts right away", async () => {
    const { store, jobs, scheduler } = fixture();
    const s = schedule({ overlapPolicy: "queue" });
    await store.insert(s);
    const sched = scheduler();
    await sched.start();
    jobs.failWith = "provider vsphere is not registered";
    const failing = sched.trigger(s.id);
    const queued = await sched.trigger(s.id);
    assert.equal(queued.queued, true);
    jobs.failWith = undefined;
    assert.equal((await failing).run.skippedReason, "submitting the job failed: provider vsphere is not registered");
    await waitFor("the queued run's job", () => jobs.ids(s.id)[0]);
  });

  test("allow: every run creates a job", async () => {
    const { store, jobs, scheduler } = fixture();
    const s = schedule({ overlapPolicy: "allow" });
    await store.insert(s);
    const sched = scheduler();
    await sched.start();
    const results = await Promise.all([sched.trigger(s.id), sched.trigger(s.id), sched.trigger(s.id)]);
    assert.ok(results.every((r) => r.jobId));
    assert.equal(jobs.ids(s.id).length, 3);
    assert.deepEqual((await store.activeJobIds(s.id)).length, 3);
  });

  test("a failed submit is a skipped run with the error; unknown ids and a stopped scheduler are refused", async () => {
    const { store, jobs, scheduler } = fixture();
    const s = schedule();
    await store.insert(s);
    const sched = scheduler();
    await sched.start();
    jobs.failWith = "the daemon is draining";
    const result = await sched.trigger(s.id);
    assert.equal(result.run.skippedReason, "submitting the job failed: the daemon is draining");
    assert.equal((await store.listRuns(s.id, { limit: 10 })).runs[0]!.skippedReason, "submitting the job failed: the daemon is draining");
    assert.ok(sched.nextRunTime(s.id), "the schedule keeps its next run");
    jobs.failWith = undefined;
    assert.ok((await sched.trigger(s.id)).jobId);
    await assert.rejects(sched.trigger("nope"), NotFoundError);
    sched.stop();
    await assert.rejects(sched.trigger(s.id), UnavailableError);
  });
});

describe("scheduler: timers", { concurrency: true }, () => {
  test("a per-second cron fires at whole seconds, about 1 s apart, without drift", async () => {
    const { store, jobs, scheduler } = fixture();
    const s = schedule({ cron: "* * * * * *", overlapPolicy: "allow" });
    await store.insert(s);
    const sched = scheduler();
    await sched.start();
    const firstDue = sched.nextRunTime(s.id)!;
    assert.equal(firstDue % 1000, 0);
    assert.equal((await store.get(s.id))!.nextRunTime, firstDue);
    await waitFor("3 runs", () => jobs.ids(s.id).length >= 3, 6_000);
    sched.stop();
    const runs = (await store.listRuns(s.id, { limit: 10 })).runs.reverse();
    const scheduled = runs.map((r) => r.scheduledTime);
    assert.equal(scheduled[0], firstDue);
    for (let i = 1; i < scheduled.length; i++) assert.equal(scheduled[i]! - scheduled[i - 1]!, 1000);
    for (const run of runs) {
      assert.equal(run.trigger, "cron");
      const late = run.runTime - run.scheduledTime;
      assert.ok(late >= 0 && late < 500, `run ${run.id} started ${late} ms after its time`);
    }
    assert.equal(sched.stats().runs, runs.length);
  });

  test("disable stops firing, enable resumes", async () => {
    const { store, jobs, scheduler } = fixture();
    const s = schedule({ cron: "* * * * * *", overlapPolicy: "allow" });
    await store.insert(s);
    const sched = scheduler();
    await sched.start();
    await waitFor("a run", () => jobs.ids(s.id).length >= 1);
    await store.update({ ...(await store.get(s.id))!, enabled: false });
    await sched.reschedule(s.id);
    assert.equal(sched.nextRunTime(s.id), undefined);
    assert.equal((await store.get(s.id))!.nextRunTime, undefined);
    assert.deepEqual(sched.stats().enabled, 0);
    const count = jobs.ids(s.id).length;
    await sleep(1300);
    assert.equal(jobs.ids(s.id).length, count);
    await store.update({ ...(await store.get(s.id))!, enabled: true });
    await sched.reschedule(s.id);
    const next = sched.nextRunTime(s.id)!;
    assert.ok(next > Date.now() - 50 && next <= Date.now() + 1000);
    assert.equal((await store.get(s.id))!.nextRunTime, next);
    await waitFor("a run after enabling", () => jobs.ids(s.id).length > count, 3_000);
  });

  test("delete stops firing; stop stops everything", async () => {
    const { store, jobs, scheduler } = fixture();
    const deleted = schedule({ cron: "* * * * * *", overlapPolicy: "allow" });
    const kept = schedule({ cron: "* * * * * *", overlapPolicy: "allow" });
    await store.insert(deleted);
    await store.insert(kept);
    const sched = scheduler();
    await sched.start();
    assert.deepEqual(sched.stats(), { schedules: 2, enabled: 2, runs: 0, skipped: 0, missed: 0 });
    await store.delete(deleted.id);
    await sched.reschedule(deleted.id);
    assert.equal(sched.nextRunTime(deleted.id), undefined);
    assert.equal(sched.stats().schedules, 1);
    await waitFor("a run of the kept schedule", () => jobs.ids(kept.id).length >= 1);
    sched.stop();
    const count = jobs.ids(kept.id).length;
    await sleep(1300);
    assert.deepEqual(jobs.ids(deleted.id), []);
    assert.equal(jobs.ids(kept.id).length, count);
  });

  test("a run whose store read fails (database unreachable) is tried again for the same cron time", async () => {
    const { store, jobs, scheduler } = fixture();
    const s = schedule({ cron: "* * * * * *", overlapPolicy: "allow" });
    await store.insert(s);
    let failures = 1;
    const flaky: ScheduleStore = { ...store, get: (id) => (failures-- > 0 ? Promise.reject(new Error("connection terminated")) : store.get(id)) };
    const sched = scheduler({ store: flaky });
    await sched.start();
    const due = sched.nextRunTime(s.id)!;
    await waitFor("the run", () => jobs.ids(s.id).length >= 1, 10_000);
    sched.stop();
    const [first] = (await store.listRuns(s.id, { limit: 100 })).runs.reverse();
    assert.equal(first!.trigger, "cron");
    assert.equal(first!.scheduledTime, due, "the cron time that failed is the one run");
    assert.ok(first!.runTime - due >= 4_900, `run ${first!.runTime - due} ms after its time, after the retry delay`);
  });

  test("a timer far behind (process stalled, machine asleep) is a missed run, not a burst", async () => {
    const { store, jobs, scheduler } = fixture();
    const s = schedule({ cron: "* * * * * *", overlapPolicy: "allow", missedRunPolicy: "skip" });
    await store.insert(s);
    let skew = 0;
    const sched = scheduler({ now: () => Date.now() + skew });
    await sched.start();
    const due = sched.nextRunTime(s.id)!;
    skew = 60_000; // the timer set for `due` fires a minute "late"
    await waitFor("the missed run", async () => (await store.listRuns(s.id, { limit: 1 })).runs[0]);
    const [run] = (await store.listRuns(s.id, { limit: 10 })).runs;
    assert.equal(run!.trigger, "missed");
    assert.equal(run!.scheduledTime, due);
    assert.match(run!.skippedReason ?? "", /^missed while the daemon was stalled or asleep \(6\d runs\)$/);
    assert.ok(sched.nextRunTime(s.id)! > Date.now() + skew - 1000, "the next run is computed from now");
    await waitFor("the next run", () => jobs.ids(s.id).length >= 1, 3_000);
  });
});

describe("scheduler: restart and missed runs", () => {
  // A fixed clock: the restart happens at 12:03, cron "*/10 * * * *" was due at 12:00 and is next due at 12:10.
  const TEN_MINUTES = 600_000;
  const aligned = () => ms("2025-06-01T12:00:00Z");
  const now = () => ms("2025-06-01T12:03:00Z");

  /** Runs a scheduler, stops it, moves next_run_time into the past as if the daemon had been down, and starts a new one. */
  async function restartAfterDowntime(f: Fixture, s: Schedule, missedSince: number): Promise<Scheduler> {
    await f.store.insert(s);
    const first = f.scheduler({ now });
    await first.start();
    assert.equal(first.nextRunTime(s.id), aligned() + TEN_MINUTES);
    first.stop();
    await f.store.setNextRunTime(s.id, missedSince);
    const second = f.scheduler({ now });
    await second.start();
    return second;
  }

  test("policy skip: one skipped run for all the times missed, then the next from now", async () => {
    const f = fixture();
    const s = schedule({ cron: "*/10 * * * *", missedRunPolicy: "skip" });
    const missedSince = aligned() - 2 * TEN_MINUTES;
    const sched = await restartAfterDowntime(f, s, missedSince);
    const runs = (await f.store.listRuns(s.id, { limit: 10 })).runs;
    assert.equal(runs.length, 1);
    assert.equal(runs[0]!.trigger, "missed");
    assert.equal(runs[0]!.scheduledTime, missedSince);
    assert.equal(runs[0]!.skippedReason, "missed while the daemon was down (3 runs)");
    assert.equal(runs[0]!.jobId, undefined);
    assert.equal(sched.nextRunTime(s.id), aligned() + TEN_MINUTES);
    assert.equal((await f.store.get(s.id))!.nextRunTime, aligned() + TEN_MINUTES);
    assert.deepEqual(sched.stats(), { schedules: 1, enabled: 1, runs: 0, skipped: 1, missed: 3 });
  });

  test("policy run_once: one job for all the times missed", async () => {
    const f = fixture();
    const s = schedule({ cron: "*/10 * * * *", missedRunPolicy: "run_once" });
    const missedSince = aligned() - 5 * TEN_MINUTES;
    const sched = await restartAfterDowntime(f, s, missedSince);
    const [jobId] = await waitFor("the catch-up job", () => f.jobs.ids(s.id).length > 0 && f.jobs.ids(s.id));
    const runs = (await f.store.listRuns(s.id, { limit: 10 })).runs;
    assert.deepEqual(runs.map((r) => [r.trigger, r.scheduledTime, r.jobId, r.state]), [["missed", missedSince, jobId, "queued"]]);
    assert.equal(sched.stats().missed, 6);
    assert.equal(sched.nextRunTime(s.id), aligned() + TEN_MINUTES);
  });

  test("policy run_once: the overlap policy still applies to the catch-up run", async () => {
    const f = fixture();
    const s = schedule({ cron: "*/10 * * * *", missedRunPolicy: "run_once", overlapPolicy: "skip" });
    await f.store.insert(s);
    const before = f.scheduler({ now });
    await before.start();
    const { jobId } = await before.trigger(s.id);
    f.jobs.setState(jobId!, "running"); // still running across the restart
    before.stop();
    await f.store.setNextRunTime(s.id, aligned() - TEN_MINUTES);
    await f.scheduler({ now }).start();
    const [latest] = (await f.store.listRuns(s.id, { limit: 1 })).runs;
    assert.equal(latest!.trigger, "missed");
    assert.equal(latest!.skippedReason, `previous run still queued or running (job ${jobId})`);
  });

  test("a restart without downtime records nothing; a disabled schedule has no next run", async () => {
    const f = fixture();
    const on = schedule({ cron: "*/10 * * * *" });
    const off = schedule({ cron: "*/10 * * * *", enabled: false, nextRunTime: aligned() - TEN_MINUTES });
    await f.store.insert(on);
    await f.store.insert(off);
    const first = f.scheduler({ now });
    await first.start();
    first.stop();
    const second = f.scheduler({ now });
    await second.start();
    assert.deepEqual((await f.store.listRuns(on.id, { limit: 10 })).runs, []);
    assert.deepEqual((await f.store.listRuns(off.id, { limit: 10 })).runs, []);
    assert.equal(second.nextRunTime(on.id), aligned() + TEN_MINUTES);
    assert.equal((await f.store.get(off.id))!.nextRunTime, undefined);
    assert.equal(second.nextRunTime(off.id), undefined);
    assert.deepEqual(second.stats(), { schedules: 2, enabled: 1, runs: 0, skipped: 0, missed: 0 });
  });

  test("a queued run is recorded as skipped when the scheduler stops", async () => {
    const f = fixture();
    const s = schedule({ overlapPolicy: "queue" });
    await f.store.insert(s);
    const sched = f.scheduler();
    await sched.start();
    await sched.trigger(s.id);
    const queued = await sched.trigger(s.id);
    sched.stop();
    const [run] = (await f.store.listRuns(s.id, { limit: 1 })).runs;
    assert.equal(run!.id, queued.run.id);
    assert.equal(run!.skippedReason, "the daemon stopped before the queued run could start");
  });
});
