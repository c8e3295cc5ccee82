import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import type { ApiKey } from "../src/domain/access.ts";
import type { Batch } from "../src/domain/batch.ts";
import { EMPTY_PROGRESS, type Job, type JobDefinition, type JobState } from "../src/domain/job.ts";
import { AlreadyExistsError } from "../src/errors.ts";
import { generateKey } from "../src/store/encryption-key.ts";
import { createApiKeyStore } from "../src/store/postgres/api-keys.ts";
import { createAuditStore } from "../src/store/postgres/audit.ts";
import { createBatchQueries, createBatchStore, type BatchQueries } from "../src/store/postgres/batches.ts";
import { createJobQueries, type JobQueries } from "../src/store/postgres/job-queries.ts";
import { migrate } from "../src/store/postgres/migrations.ts";
import { createPool } from "../src/store/postgres/pool.ts";
import { createScheduleQueries } from "../src/store/postgres/schedules.ts";
import { transaction, type Sql } from "../src/store/postgres/sql.ts";
import { createSecretBox } from "../src/store/secret-box.ts";
import type { BatchStore, NewBatch, NewJob } from "../src/store/store.ts";
import { postgresSkipReason, startPostgres, type Postgres } from "./support/postgres.ts";

const skip = postgresSkipReason();
if (skip) console.log(`# skipping the PostgreSQL batch, API key and audit store tests: ${skip}`);

const box = createSecretBox(generateKey());
const pools: pg.Pool[] = [];
let postgres: Postgres;

/** A fresh database, migrated (or with only `schema`); `count` pools on it (each one daemon). */
async function openDatabase(schema?: string, count = 1): Promise<pg.Pool[]> {
  const url = await postgres.createDatabase();
  const opened = Array.from({ length: count }, () => createPool(url));
  pools.push(...opened);
  if (schema === undefined) await migrate(opened[0]!);
  else await opened[0]!.query(schema);
  return opened;
}

const definition = (overrides: Partial<JobDefinition> = {}): JobDefinition => ({
  name: "nightly", provider: "vsphere", vm: "",
  vsphere: { url: "https://vc.example/sdk", username: "admin", password: "s3cret-pw", insecure: false, thumbprint: "" },
  outputDir: "/exports/nightly", format: "ova", compress: false, compressionLevel: 6, parallelDownloads: 4, bandwidthLimit: 0,
  powerOff: false, priority: "normal", labels: {}, vmSelector: { folder: "/DC0/vm", recursive: true, powerStates: [] }, ...overrides,
});

interface BatchFixture {
  pools: pg.Pool[];
  jobs: JobQueries;
  queries: BatchQueries;
  stores: BatchStore[];
  ended: Batch[];
  /** Fails the insert of the child with this VM. */
  failOn?: string;
}

/**
 * Batch stores on one freshly migrated database, wired to the jobs and schedules modules as the PostgreSQL store
 * wires them: children through jobs' insertOne, their transitions' afterTransition reaching afterChildTransition.
 */
async function openBatches(count = 1): Promise<BatchFixture> {
  const opened = await openDatabase(undefined, count);
  const schedules = createScheduleQueries(box);
  const fixture: BatchFixture = { pools: opened, jobs: undefined!, queries: undefined!, stores: [], ended: [] };
  fixture.jobs = createJobQueries({
    afterTransition: (db, job, transition) => fixture.queries.afterChildTransition(db, job, transition),
  }, box, { nodeId: "node-1", leaseMs: 30_000, hostCap: () => undefined });
  fixture.queries = createBatchQueries({
    async insertJob(db, input) {
      if (input.definition.vm === fixture.failOn) throw new Error(`child ${input.definition.vm} refused`);
      return fixture.jobs.insertOne(db, input);
    },
    async recordScheduleRun(db, batch, input) {
      await schedules.recordRun(db, { ...input.scheduleRun!, scheduleId: input.scheduleId!, runTime: batch.createTime });
    },
    async batchEnded(_db, batch) {
      fixture.ended.push(batch);
    },
  }, box);
  fixture.stores = opened.map((pool) => createBatchStore(pool, fixture.queries));
  return fixture;
}

function job(id: string, batchId: string, state: JobState, def: JobDefinition = definition()): Job {
  return { id, definition: def, state, progress: { ...EMPTY_PROGRESS }, attempt: 0, maxAttempts: 1, createTime: 1_000, batchId, attempts: [] };
}

function newBatch(id: string, vms: string[], overrides: Partial<NewBatch> = {}, def: JobDefinition = definition()): NewBatch {
  const children: NewJob[] = vms.map((vm, index) => ({
    id: `${id}-job-${index}`, definition: { ...def, vm, name: vm, vmSelector: undefined, requestId: undefined }, maxAttempts: 1,
    createTime: 1_000, nextSeq: () => 0, actor: "tester", batchId: id, batchIndex: index,
  }));
  return { id, definition: def, createTime: 1_000, children, ...overrides };
}

/** A child's final transition through the jobs module (its afterTransition hook ends the batch), in one transaction. */
async function endChild(fixture: BatchFixture, jobId: string, state: JobState, time: number): Promise<void> {
  const moved = await transaction(fixture.pools[0]!, (db) => fixture.jobs.transition(db, {
    jobId, from: ["queued", "running"], to: state, seq: 0, time, reason: state, actor: "engine", endTime: time,
    ...(state === "failed" ? { error: { code: "INTERNAL", message: "boom", retryable: false } } : {}),
  }));
  assert.ok(moved, `job ${jobId} moved to ${state}`);
}

/**
 * A child's final state written directly, then afterChildTransition in the same transaction: the batch's own
 * locking, whatever the jobs module serializes around it.
 */
async function endChildDirectly(db: Sql, queries: BatchQueries, jobId: string, batchId: string, state: JobState, time: number): Promise<void> {
  await db.query("UPDATE jobs SET state = $1 WHERE id = $2", [state, jobId]);
  await queries.afterChildTransition(db, job(jobId, batchId, state), { seq: 0, jobId, fromState: "running", toState: state, reason: state, actor: "engine", time });
}

const apiKey = (id: string, overrides: Partial<ApiKey> = {}): ApiKey => ({
  id, name: `key ${id}`, role: "operator", keyHash: `hash-${id}`, prefix: `hvk_${id}`, source: "api", createTime: 1_000, ...overrides,
});

const auditEvent = (method: string, principal = "alice", time = 1_000) => ({
  time, principal, role: "admin", method, transport: "grpc", peer: "127.0.0.1", code: "OK", resource: "job/j1", requestJson: "{}", durationMs: 1.25,
});

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe("PostgreSQL batch, API key and audit stores", { skip }, () => {
  before(async () => {
    postgres = await startPostgres();
  });
  after(async () => {
    for (const pool of pools) await pool.end();
    await postgres?.stop();
  });

  test("batches: insert with its children, get, byRequestId; the batch row keeps no secret", async () => {
    const { pools: [pool], stores: [store] } = await openBatches();
    const input = newBatch("b1", ["vm-a", "vm-b", "vm-c"], {}, definition({ requestId: "req-1", maxParallel: 2 }));
    const inserted = await store!.insert(input);
    assert.equal(inserted.created, true);
    assert.deepEqual(inserted.children.map((c) => [c.job.id, c.transition.toState]), [["b1-job-0", "queued"], ["b1-job-1", "queued"], ["b1-job-2", "queued"]]);
    const batch = inserted.batch;
    assert.equal(batch.state, "running");
    assert.equal(batch.maxParallel, 2);
    assert.deepEqual(batch.counts, { queued: 3, running: 0, completed: 0, failed: 0, cancelled: 0, total: 3 });
    assert.deepEqual(batch.jobs.map((j) => [j.jobId, j.vm, j.vmName]), [["b1-job-0", "vm-a", "vm-a"], ["b1-job-1", "vm-b", "vm-b"], ["b1-job-2", "vm-c", "vm-c"]]);
    assert.equal(batch.definition.vsphere?.password, "", "the batch's definition is stored without its password");

    const { rows } = await pool!.query("SELECT definition FROM batches WHERE id = 'b1'");
    assert.ok(!rows[0].definition.includes("s3cret-pw"));

    await pool!.query(`UPDATE jobs SET progress = $1 WHERE id = 'b1-job-1'`, [JSON.stringify({ ...EMPTY_PROGRESS, bytesDone: 300, bytesTotal: 1_000 })]);
    const read = await store!.get("b1");
    assert.deepEqual([read?.bytesDone, read?.bytesTotal], [300, 1_000]);
    assert.equal((await store!.byRequestId("req-1"))?.id, "b1");
    assert.equal(await store!.get("nope"), undefined);
    assert.equal(await store!.byRequestId("nope"), undefined);
  });

  test("batches: a known request_id returns its batch; a different definition is ALREADY_EXISTS", async () => {
    const { pools: [pool], stores: [store] } = await openBatches();
    await store!.insert(newBatch("b1", ["vm-a"], {}, definition({ requestId: "req-1" })));
    const again = await store!.insert(newBatch("b2", ["vm-a", "vm-b"], {}, definition({ requestId: "req-1" })));
    assert.equal(again.created, false);
    assert.equal(again.batch.id, "b1");
    assert.deepEqual(again.children, []);
    // The password is not part of the comparison (the batch keeps none).
    const otherPassword = definition({ requestId: "req-1" });
    otherPassword.vsphere!.password = "another";
    assert.equal((await store!.insert(newBatch("b3", ["vm-a"], {}, otherPassword))).created, false);
    await assert.rejects(store!.insert(newBatch("b4", ["vm-a"], {}, definition({ requestId: "req-1", outputDir: "/elsewhere" }))), AlreadyExistsError);
    await assert.rejects(store!.insert(newBatch("b5", ["vm-a"], { scheduleId: "s1" }, definition({ requestId: "req-1" }))), AlreadyExistsError);
    assert.deepEqual((await pool!.query("SELECT id FROM jobs ORDER BY pk")).rows.map((r) => r.id), ["b1-job-0"], "no child of a refused or repeated batch");
  });

  test("batches: a child that fails to insert rolls the whole batch back", async () => {
    const fixture = await openBatches();
    fixture.failOn = "vm-b";
    await assert.rejects(fixture.stores[0]!.insert(newBatch("b1", ["vm-a", "vm-b"])), /child vm-b refused/);
    assert.equal(await fixture.stores[0]!.get("b1"), undefined);
    assert.equal((await fixture.pools[0]!.query("SELECT count(*) AS n FROM jobs")).rows[0].n, 0);
  });

  test("batches: two daemons inserting one request_id at once create one batch", async () => {
    const { pools: opened, stores } = await openBatches(2);
    const results = await Promise.all(stores.map((store, i) => store.insert(newBatch(`b${i}`, ["vm-a", "vm-b"], {}, definition({ requestId: "same" })))));
    assert.deepEqual(results.map((r) => r.created).sort(), [false, true]);
    assert.equal(results[0]!.batch.id, results[1]!.batch.id);
    assert.equal((await opened[0]!.query("SELECT count(*) AS n FROM batches")).rows[0].n, 1);
    assert.equal((await opened[0]!.query("SELECT count(*) AS n FROM jobs")).rows[0].n, 2);
  });

  test("batches: a schedule's run is recorded with its batch, in the same transaction", async () => {
    const { pools: [pool], stores: [store] } = await openBatches();
    await store!.insert(newBatch("b1", ["vm-a"], { scheduleId: "s1", scheduleRun: { id: "run-1", trigger: "cron", scheduledTime: 900 } }));
    const { rows } = await pool!.query("SELECT schedule_id, batch_id, job_id, scheduled_time, run_time FROM schedule_runs");
    assert.deepEqual(rows, [{ schedule_id: "s1", batch_id: "b1", job_id: null, scheduled_time: 900, run_time: 1_000 }]);
  });

  test("batches: list by state and schedule, newest first, paged, with the total", async () => {
    const fixture = await openBatches();
    const { stores: [store] } = fixture;
    for (let i = 1; i <= 5; i++) await store!.insert(newBatch(`b${i}`, ["vm-a"], i % 2 === 0 ? { scheduleId: "s1" } : {}));
    await endChild(fixture, "b3-job-0", "completed", 5_000);

    const first = await store!.list({ limit: 2 });
    assert.deepEqual([first.batches.map((b) => b.id), first.total], [["b5", "b4"], 5]);
    const second = await store!.list({ limit: 2, before: first.nextCursor });
    assert.deepEqual([second.batches.map((b) => b.id), second.total], [["b3", "b2"], 5]);
    const last = await store!.list({ limit: 2, before: second.nextCursor });
    assert.deepEqual([last.batches.map((b) => b.id), last.nextCursor], [["b1"], undefined]);

    const scheduled = await store!.list({ limit: 10, scheduleId: "s1" });
    assert.deepEqual([scheduled.batches.map((b) => b.id), scheduled.total], [["b4", "b2"], 2]);
    const completed = await store!.list({ limit: 10, states: ["completed"] });
    assert.deepEqual([completed.batches.map((b) => b.id), completed.total], [["b3"], 1]);
    assert.equal((await store!.list({ limit: 10, states: ["running", "failed"] })).total, 4);
  });

  test("batches: the last child's final transition ends the batch once, with its state; cancel requests", async () => {
    const fixture = await openBatches();
    const { stores: [store] } = fixture;
    await store!.insert(newBatch("b1", ["vm-a", "vm-b"]));
    await store!.insert(newBatch("b2", ["vm-a"]));

    await endChild(fixture, "b1-job-0", "completed", 2_000);
    assert.equal(await store!.hasEnded("b1"), false);
    assert.equal(fixture.ended.length, 0, "not while a child runs");
    assert.equal(await store!.requestCancel("b1", "operator asked"), true);
    assert.deepEqual((await store!.cancelling()).map((b) => [b.id, b.cancelReason, b.state]), [["b1", "operator asked", "running"]]);

    await endChild(fixture, "b1-job-1", "cancelled", 3_000);
    assert.equal(await store!.hasEnded("b1"), true);
    assert.deepEqual(fixture.ended.map((b) => [b.id, b.state, b.endTime]), [["b1", "cancelled", 3_000]]);
    const ended = await store!.get("b1");
    assert.deepEqual([ended?.state, ended?.endTime, ended?.cancelReason], ["cancelled", 3_000, "operator asked"]);
    assert.equal((await store!.list({ limit: 10, states: ["cancelled"] })).total, 1, "the final state is written to the row");
    assert.deepEqual(await store!.cancelling(), []);
    assert.equal(await store!.requestCancel("b1", "again"), false, "an ended batch takes no cancel request");

    // A final transition reaching an ended batch again does not announce it again.
    await transaction(fixture.pools[0]!, (db) => endChildDirectly(db, fixture.queries, "b1-job-1", "b1", "cancelled", 4_000));
    assert.equal(fixture.ended.length, 1);

    await endChild(fixture, "b2-job-0", "failed", 5_000);
    const failed = await store!.get("b2");
    assert.equal(failed?.state, "failed");
    assert.equal(failed?.jobs[0]?.error?.message, "boom");
    assert.equal(await store!.hasEnded("nope"), false);
  });

  test("batches: the last two children ending at once on two daemons end the batch exactly once", async () => {
    const fixture = await openBatches(2);
    const { pools: [first, second], queries, stores: [store] } = fixture;
    await store!.insert(newBatch("b1", ["vm-a", "vm-b"]));
    const a = await first!.connect();
    const b = await second!.connect();
    try {
      await a.query("BEGIN");
      await b.query("BEGIN");
      // A's child ends and A looks at the batch while B's child is still running: not the last.
      await endChildDirectly(a, queries, "b1-job-0", "b1", "completed", 2_000);
      // B's child ends while A has not committed: B must wait for A rather than count A's child as running.
      const bDone = endChildDirectly(b, queries, "b1-job-1", "b1", "completed", 2_100);
      await waitForLockWait(first!);
      await a.query("COMMIT");
      await bDone;
      await b.query("COMMIT");
    } finally {
      a.release();
      b.release();
    }
    assert.deepEqual(fixture.ended.map((batch) => [batch.id, batch.state, batch.endTime]), [["b1", "completed", 2_100]]);
    assert.equal(await store!.hasEnded("b1"), true);
  });

  test("API keys: insert, get, byHash, list, revoke, touch; duplicates are ALREADY_EXISTS", async () => {
    const [pool] = await openDatabase();
    const store = createApiKeyStore(pool!);
    await store.insert(apiKey("k2", { createTime: 2_000, expireTime: 9_000 }));
    await store.insert(apiKey("k1"));
    await assert.rejects(store.insert(apiKey("k1", { keyHash: "other" })), (err: Error) => err instanceof AlreadyExistsError && /API key k1 already exists/.test(err.message));
    await assert.rejects(store.insert(apiKey("k3", { keyHash: "hash-k1" })), (err: Error) => err instanceof AlreadyExistsError && /already API key k1/.test(err.message));
    assert.deepEqual(await store.get("k2"), { ...apiKey("k2", { createTime: 2_000, expireTime: 9_000 }), lastUsedTime: undefined, revokeTime: undefined });
    assert.equal((await store.byHash("hash-k1"))?.id, "k1");
    assert.equal(await store.get("nope"), undefined);
    assert.deepEqual((await store.list()).map((k) => k.id), ["k1", "k2"]);

    await store.touch("k1", 5_000);
    assert.equal((await store.get("k1"))?.lastUsedTime, 5_000);
    assert.equal(await store.revoke("k1", 6_000), true);
    assert.equal(await store.revoke("k1", 7_000), false);
    assert.equal((await store.get("k1"))?.revokeTime, 6_000);
  });

  test("API keys: countUsable leaves out revoked and expired keys, and sees another daemon's revocation", async () => {
    const [poolA, poolB] = await openDatabase(undefined, 2);
    const daemonA = createApiKeyStore(poolA!);
    const daemonB = createApiKeyStore(poolB!);
    assert.equal(await daemonA.countUsable(1_000), 0);
    await daemonB.insert(apiKey("k1"));
    await daemonB.insert(apiKey("k2", { expireTime: 5_000 }));
    assert.equal(await daemonA.countUsable(1_000), 2, "a key another daemon added counts at once");
    assert.equal(await daemonA.countUsable(5_000), 1, "expired at its expire time");
    await daemonB.revoke("k1", 2_000);
    assert.equal(await daemonA.countUsable(3_000), 1, "a key another daemon revoked stops counting at once");
    assert.equal(await daemonA.countUsable(5_000), 0);
  });

  test("API keys: syncConfig inserts, updates (keeping create and last-used times while the key stays), deletes", async () => {
    const [pool] = await openDatabase();
    const store = createApiKeyStore(pool!);
    await store.insert(apiKey("api1"));
    const config = (id: string, overrides: Partial<ApiKey> = {}) => apiKey(id, { source: "config", createTime: 10_000, ...overrides });
    await store.syncConfig([config("c1"), config("c2")]);
    await store.touch("c1", 11_000);
    await store.touch("c2", 11_000);
    await store.syncConfig([config("c1", { role: "admin", createTime: 20_000 }), config("c2", { keyHash: "new-hash" })]);
    const c1 = await store.get("c1");
    assert.deepEqual([c1?.role, c1?.createTime, c1?.lastUsedTime], ["admin", 10_000, 11_000]);
    assert.equal((await store.get("c2"))?.lastUsedTime, undefined, "a new key starts unused");

    // c2 leaves the file and c3 takes its key in the same sync.
    await store.syncConfig([config("c1"), config("c3", { keyHash: "new-hash" })]);
    assert.deepEqual((await store.list()).map((k) => [k.id, k.source]), [["api1", "api"], ["c1", "config"], ["c3", "config"]]);

    await assert.rejects(store.syncConfig([config("api1")]), /id api1 is taken by a key created through the API/);
    await assert.rejects(store.syncConfig([config("c4", { keyHash: "hash-api1" })]), /already API key api1/);
    assert.deepEqual((await store.list()).map((k) => k.id), ["api1", "c1", "c3"], "a refused sync changes nothing");

  });

  test("API keys: two daemons syncing the same config file at once both succeed, one row per key", async () => {
    const opened = await openDatabase(undefined, 2);
    const keys = [apiKey("c1", { source: "config" }), apiKey("c2", { source: "config" })];
    await Promise.all(opened.map((pool) => createApiKeyStore(pool).syncConfig(keys)));
    assert.deepEqual((await createApiKeyStore(opened[0]!).list()).map((k) => [k.id, k.source]), [["c1", "config"], ["c2", "config"]]);
  });

  test("audit: the events of one turn are written in one statement; list flushes, newest first, filters and pages", async () => {
    const [pool] = await openDatabase();
    const audit = createAuditStore(pool!);
    audit.append(auditEvent("CreateJob"));
    audit.append(auditEvent("CancelJob", "bob"));
    audit.append(auditEvent("CreateJob", "bob", 2_000));
    await nextTurn();
    await audit.flush();
    const { rows } = await pool!.query("SELECT id, xmin::text AS xid FROM audit_events ORDER BY id");
    assert.equal(rows.length, 3);
    assert.equal(new Set(rows.map((r) => r.xid)).size, 1, "one turn, one transaction");
    audit.append(auditEvent("DeleteSchedule", "alice", 3_000));

    const all = await audit.list({ limit: 10 });
    assert.deepEqual(all.events.map((e) => e.method), ["DeleteSchedule", "CreateJob", "CancelJob", "CreateJob"], "list() writes what is pending first");
    assert.deepEqual(all.events[0], { ...auditEvent("DeleteSchedule", "alice", 3_000), id: all.events[0]!.id });
    assert.equal(all.next, undefined);

    const page = await audit.list({ limit: 2 });
    assert.deepEqual(page.events.map((e) => e.time), [3_000, 2_000]);
    const rest = await audit.list({ limit: 2, before: page.next });
    assert.deepEqual([rest.events.map((e) => e.method), rest.next], [["CancelJob", "CreateJob"], undefined]);

    assert.deepEqual((await audit.list({ limit: 10, method: "CreateJob" })).events.map((e) => e.principal), ["bob", "alice"]);
    assert.deepEqual((await audit.list({ limit: 10, principal: "bob", method: "CreateJob" })).events.map((e) => e.time), [2_000]);
    assert.deepEqual((await audit.list({ limit: 10, since: 2_000 })).events.map((e) => e.method), ["DeleteSchedule", "CreateJob"]);
  });

  test("audit: flush() awaits a write under way; ids follow append order across flushes", async () => {
    const [pool] = await openDatabase();
    const audit = createAuditStore(pool!);
    for (let i = 0; i < 50; i++) {
      audit.append(auditEvent(`M${i}`));
      if (i % 7 === 0) void audit.flush();
    }
    await audit.flush();
    const { rows } = await pool!.query("SELECT method FROM audit_events ORDER BY id");
    assert.deepEqual(rows.map((r) => r.method), Array.from({ length: 50 }, (_, i) => `M${i}`));
  });

  test("audit: a failed background write is logged, never an unhandled rejection; flush() rejects with context", async () => {
    // No audit_events table: every write fails.
    const [pool] = await openDatabase("SELECT 1");
    const logged: unknown[] = [];
    const audit = createAuditStore(pool!, { error: (obj: unknown) => void logged.push(obj) } as never);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => void unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      audit.append(auditEvent("CreateJob"));
      for (let i = 0; i < 50 && logged.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(logged.length, 1);
      assert.match(String((logged[0] as { err: Error }).err.message), /writing 1 audit event\(s\) failed: relation "audit_events" does not exist/);
      audit.append(auditEvent("CancelJob"));
      await assert.rejects(audit.flush(), /writing 1 audit event/);
      await nextTurn();
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});

/** Until some backend of the database waits for a lock (the test's second transaction is blocked). */
async function waitForLockWait(pool: pg.Pool): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const { rows } = await pool.query("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
    if (rows[0].n > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error("the second transaction never waited for the batch's row lock");
}
