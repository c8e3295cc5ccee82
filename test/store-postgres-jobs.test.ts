import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import type { JobDefinition, JobTransition } from "../src/domain/job.ts";
import { AlreadyExistsError } from "../src/errors.ts";
import { generateKey } from "../src/store/encryption-key.ts";
import { migrate } from "../src/store/postgres/migrations.ts";
import { createPostgresStore, type PostgresStoreOptions } from "../src/store/postgres/pg-store.ts";
import { createPool } from "../src/store/postgres/pool.ts";
import { createSecretBox } from "../src/store/secret-box.ts";
import type { NewJob, Store } from "../src/store/store.ts";
import { postgresSkipReason, startPostgres, type Postgres } from "./support/postgres.ts";

const skip = postgresSkipReason();
if (skip) console.log(`# skipping the PostgreSQL job store tests: ${skip}`);

const box = createSecretBox(generateKey());
let postgres: Postgres;
const opened: { close(): Promise<void> }[] = [];

/** A store (one daemon) on `url`; closed in after(). */
async function openStore(url: string, options: Partial<PostgresStoreOptions> = {}): Promise<Store> {
  const store = await createPostgresStore({
    url, nodeId: "node-a", leaseMs: 30_000, hostCap: () => undefined, maxLogBytesPerJob: 1 << 20, secretBox: box, ...options,
  });
  opened.push(store);
  return store;
}

/** A raw pool on `url` to read columns the Store does not show. */
function rawPool(url: string): pg.Pool {
  const pool = createPool(url);
  opened.push({ close: () => pool.end() });
  return pool;
}

const definition = (overrides: Partial<JobDefinition> = {}): JobDefinition => ({
  name: "web-01", provider: "vsphere", vm: "web-01",
  vsphere: { url: "https://admin:url-pw@vc1.example:8443/sdk", username: "admin", password: "s3cret-pw", insecure: false, thumbprint: "" },
  outputDir: "/exports/web-01", format: "ova", compress: false, compressionLevel: 6, parallelDownloads: 4, bandwidthLimit: 0,
  powerOff: false, priority: "normal", labels: {}, ...overrides,
});

let ids = 0;
const newJob = (overrides: Partial<JobDefinition> = {}, extra: Partial<NewJob> = {}): NewJob => ({
  id: `job-${++ids}`, definition: definition(overrides), maxAttempts: 3, createTime: 1_000 + ids, actor: "test",
  nextSeq: () => assert.fail("the PostgreSQL store takes seqs from update_seq, not from the caller"), ...extra,
});

async function insertOk(store: Store, ...inputs: NewJob[]) {
  const results = await store.insertJobs(inputs);
  return results.map((r) => {
    assert.ok(r.ok, `insert failed: ${r.ok ? "" : String(r.error)}`);
    return r;
  });
}

describe("PostgreSQL job store", { skip }, () => {
  before(async () => {
    postgres = await startPostgres();
  });
  after(async () => {
    for (const store of opened.reverse()) await store.close();
    await postgres?.stop();
  });

  test("migrations: two daemons migrating at once both succeed, the schema once; a newer schema is refused", async () => {
    const url = await postgres.createDatabase();
    const [a, b] = [rawPool(url), rawPool(url)];
    assert.deepEqual(await Promise.all([migrate(a), migrate(b)]), [1, 1]);
    assert.deepEqual((await a.query("SELECT version FROM schema_migrations")).rows, [{ version: 1 }]);
    assert.equal(await migrate(b), 1);
    await a.query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (2, 'from the future', 0)");
    await assert.rejects(migrate(b), /schema version 2, newer than this daemon knows \(1\)/);
    // The failed migrate released its session lock: another one can take it.
    await assert.rejects(migrate(a), /newer than this daemon knows/);
  });

  test("insert: group commit, request_id dedup, one failing item alone, secrets sealed, target host", async () => {
    const url = await postgres.createDatabase();
    const store = await openStore(url);
    const raw = rawPool(url);
    const first = newJob({ requestId: "req-1", labels: { team: "web" } });
    const plain = newJob({ provider: "azure", vsphere: undefined, azure: undefined });
    const [a, b] = await insertOk(store, first, plain);
    assert.equal(a!.ok && a.created, true);
    assert.ok(a!.ok && b!.ok);
    assert.ok(a.transition!.seq > 0 && b.transition!.seq > a.transition!.seq, "seqs from update_seq, increasing");

    const results = await store.insertJobs([
      { ...newJob({ requestId: "req-1", labels: { team: "web" } }) },
      newJob({ requestId: "req-1", name: "other" }),
      { ...newJob(), id: plain.id },
      newJob({ name: "after the failures" }),
    ]);
    assert.equal(results[0]!.ok && results[0].created, false);
    assert.equal(results[0]!.ok && results[0].job.id, first.id);
    assert.ok(!results[1]!.ok && results[1].error instanceof AlreadyExistsError);
    assert.ok(!results[2]!.ok && /duplicate key/.test(String(results[2].error)));
    assert.ok(results[3]!.ok && results[3].created, "the item after the failing ones commits");
    assert.equal((await store.listJobs({ limit: 10 })).total, 3);

    const job = await store.getJob(first.id);
    assert.equal(job?.definition.vsphere?.password, "s3cret-pw");
    assert.equal(job?.definition.vsphere?.url, "https://admin:url-pw@vc1.example:8443/sdk");
    assert.deepEqual(job?.definition.labels, { team: "web" });
    const { rows } = await raw.query("SELECT definition, secrets, target_host FROM jobs ORDER BY pk");
    assert.ok(!rows[0].definition.includes("s3cret-pw") && !rows[0].definition.includes("url-pw"));
    assert.match(rows[0].secrets, /^v1:/);
    assert.deepEqual(rows.map((r) => r.target_host), ["vsphere:vc1.example:8443", "azure:default", "vsphere:vc1.example:8443"]);
    assert.deepEqual((await store.history(first.id)).map((t) => [t.toState, t.reason]), [["queued", "submitted"]]);
  });

  test("two daemons at once: the same request_id makes one job; the same transition applies once", async () => {
    const url = await postgres.createDatabase();
    const stores = [await openStore(url, { nodeId: "a" }), await openStore(url, { nodeId: "b" })];
    for (let round = 0; round < 5; round++) {
      const inputs = stores.map(() => newJob({ requestId: `same-${round}` }));
      const results = (await Promise.all(stores.map((store, i) => store.insertJobs([inputs[i]!])))).flat();
      assert.ok(results.every((r) => r.ok), String(results.map((r) => !r.ok && r.error)));
      assert.deepEqual(results.map((r) => r.ok && r.created).sort(), [false, true]);
      assert.equal(new Set(results.map((r) => r.ok && r.job.id)).size, 1, "both name the one job");
      const jobId = results[0]!.ok ? results[0].job.id : "";
      const moved = await Promise.all(stores.map((store) =>
        store.transition({ jobId, from: ["queued"], to: "cancelled", seq: 0, time: 9_000, reason: "cancelled", actor: "t" })));
      assert.equal(moved.filter((m) => m !== undefined).length, 1, "the second sees the job cancelled already");
      assert.deepEqual((await stores[0]!.history(jobId)).map((t) => t.toState), ["queued", "cancelled"]);
    }
  });

  test("get and list: filters, text search, pages", async () => {
    const store = await openStore(await postgres.createDatabase());
    const jobs = [
      newJob({ name: "db-01", vm: "DB-01", labels: { team: "data", tier: "gold" } }),
      newJob({ name: "web_01", vm: "web-01", labels: { team: "web" } }),
      newJob({ name: "web-02", vm: "web-02", outputDir: "/exports/100%", labels: { team: "web" } }),
      newJob({ name: "az-01", provider: "azure", vsphere: undefined }, { scheduleId: "sched-1" }),
    ];
    await insertOk(store, ...jobs);
    await store.transition({ jobId: jobs[0]!.id, from: ["queued"], to: "cancelled", seq: 0, time: 5_000, reason: "x", actor: "t" });
    const names = async (filter: Parameters<Store["listJobs"]>[0]) => (await store.listJobs(filter)).jobs.map((j) => j.definition.name);
    assert.deepEqual(await names({ limit: 10 }), ["az-01", "web-02", "web_01", "db-01"]);
    assert.deepEqual(await names({ limit: 10, states: ["cancelled"] }), ["db-01"]);
    assert.deepEqual(await names({ limit: 10, labels: { team: "web" } }), ["web-02", "web_01"]);
    assert.deepEqual(await names({ limit: 10, labels: { team: "data", tier: "gold" } }), ["db-01"]);
    assert.deepEqual(await names({ limit: 10, provider: "azure" }), ["az-01"]);
    assert.deepEqual(await names({ limit: 10, scheduleId: "sched-1" }), ["az-01"]);
    assert.deepEqual(await names({ limit: 10, text: "db-0" }), ["db-01"], "the VM, ignoring case");
    assert.deepEqual(await names({ limit: 10, text: "GOLD" }), ["db-01"], "a label value");
    assert.deepEqual(await names({ limit: 10, text: "b_0" }), ["web_01"], "_ matches itself only");
    assert.deepEqual(await names({ limit: 10, text: "100%" }), ["web-02"], "the output directory; % matches itself only");
    const page1 = await store.listJobs({ limit: 3 });
    assert.equal(page1.total, 4);
    assert.ok(page1.nextCursor !== undefined);
    const page2 = await store.listJobs({ limit: 3, before: page1.nextCursor });
    assert.deepEqual(page2.jobs.map((j) => j.definition.name), ["db-01"]);
    assert.equal(page2.nextCursor, undefined);
    assert.equal(await store.getJob("nope"), undefined);
    assert.deepEqual((await store.countByState()).queued, 3);
  });

  test("claim: priority then age, retry times, node and lease, attempts; transition fencing", async () => {
    const url = await postgres.createDatabase();
    const store = await openStore(url, { nodeId: "node-a", leaseMs: 10_000 });
    const other = await openStore(url, { nodeId: "node-b" });
    const raw = rawPool(url);
    const low = newJob({ priority: "low" });
    const normal = newJob();
    const high = newJob({ priority: "high" });
    await insertOk(store, low, normal, high);
    await raw.query("UPDATE jobs SET next_attempt_time = 99999 WHERE id = $1", [high.id]);
    assert.equal(await store.nextAttemptTime(), 99999);

    const claimed = await store.claimNextJob(50_000, () => 0);
    assert.equal(claimed?.job.id, normal.id, "the high-priority job waits for its retry time");
    assert.equal(claimed.job.state, "running");
    assert.equal(claimed.job.attempt, 1);
    assert.equal(claimed.job.nodeId, "node-a");
    assert.deepEqual(claimed.job.attempts, [{ attempt: 1, startTime: 50_000 }]);
    assert.deepEqual([claimed.transition.fromState, claimed.transition.toState, claimed.transition.reason], ["queued", "running", "started"]);
    const lease = async (id: string) => (await raw.query("SELECT lease_expires FROM jobs WHERE id = $1", [id])).rows[0].lease_expires;
    const expires = await lease(normal.id);
    assert.ok(Math.abs(expires - (Date.now() + 10_000)) < 5_000, `lease on the database's clock: ${expires}`);
    assert.equal((await other.claimNextJob(100_000, () => 0))?.job.id, high.id, "due now, and ahead of the low one");

    const base = { jobId: normal.id, from: ["running" as const], seq: 0, time: 70_000, actor: "engine" };
    assert.equal(await store.transition({ ...base, to: "completed", reason: "done", node: "node-b" }), undefined, "not node-b's job");
    assert.equal((await store.getJob(normal.id))?.state, "running");
    const requeued = await store.transition({ ...base, to: "queued", reason: "interrupted", node: "node-a", resume: true });
    assert.equal(requeued?.job.state, "queued");
    assert.equal(await lease(normal.id), null, "leaving running ends the lease");
    assert.ok(requeued.transition.seq > claimed.transition.seq);
    const resumed = await other.claimNextJob(80_000, () => 0);
    assert.equal(resumed?.job.id, normal.id);
    assert.equal(resumed.transition.reason, "resumed from checkpoint");
    assert.equal(resumed.job.attempt, 1, "a resume is not a new attempt");
    assert.equal(resumed.job.nodeId, "node-b");
    assert.equal(await store.transition({ ...base, to: "failed", reason: "late", node: "node-a" }), undefined, "node-a lost it to node-b");
    const done = await other.transition({ ...base, to: "completed", reason: "done", node: "node-b", endTime: 90_000 });
    assert.equal(done?.job.endTime, 90_000);
    assert.deepEqual(done.job.attempts.map((a) => a.outcome), ["queued", "completed"]);
    assert.deepEqual((await store.history(normal.id)).map((t) => t.toState), ["queued", "running", "queued", "running", "completed"]);
    assert.equal((await store.claimNextJob(100_000, () => 0))?.job.id, low.id);
    assert.equal(await store.claimNextJob(100_000, () => 0), undefined);
  });

  test("checkpoints, progress, pending cleanup, jobs by state", async () => {
    const store = await openStore(await postgres.createDatabase());
    const [a, b] = [newJob(), newJob()];
    await insertOk(store, a, b);
    await store.saveCheckpoint(a.id, { disks: [{ name: "disk-1.vmdk", done: 512 }] });
    assert.deepEqual(await store.loadCheckpoint(a.id), { disks: [{ name: "disk-1.vmdk", done: 512 }] });
    await store.saveProgress(a.id, { ...(await store.getJob(a.id))!.progress, bytesDone: 7 });
    assert.equal((await store.getJob(a.id))?.progress.bytesDone, 7);
    await store.claimNextJob(10_000, () => 0);
    assert.deepEqual((await store.jobsInState("running")).map((j) => j.id), [a.id]);
    // Both given: the new checkpoint wins over the clearing (as in SQLite, where the later assignment does).
    const failed = await store.transition({
      jobId: a.id, from: ["running"], to: "failed", seq: 0, time: 20_000, reason: "boom", actor: "engine", endTime: 20_000,
      error: { code: "INTERNAL", message: "boom", retryable: false }, clearCheckpoint: true, checkpoint: { snapshot: "snap-1" },
      pendingCleanup: "snapshot snap-1 on vm-1",
    });
    assert.equal(failed?.job.pendingCleanup, "snapshot snap-1 on vm-1");
    assert.deepEqual(await store.loadCheckpoint(a.id), { snapshot: "snap-1" });
    assert.deepEqual((await store.endedJobsWithCheckpoint()).map((j) => j.id), [a.id]);
    assert.equal(await store.countPendingCleanup(), 1);
    await store.setPendingCleanup(a.id, null);
    await store.saveCheckpoint(a.id, undefined);
    assert.equal(await store.countPendingCleanup(), 0);
    assert.equal(await store.loadCheckpoint(a.id), undefined);
    assert.deepEqual(await store.endedJobsWithCheckpoint(), []);
  });

  test("claim: two daemons claiming at once take each job once (SKIP LOCKED)", async () => {
    const url = await postgres.createDatabase();
    const stores = [await openStore(url, { nodeId: "a" }), await openStore(url, { nodeId: "b" })];
    const inputs = Array.from({ length: 40 }, () => newJob());
    await insertOk(stores[0]!, ...inputs);
    const claims = await Promise.all(stores.flatMap((store) => Array.from({ length: 3 }, async () => {
      const got: string[] = [];
      for (let c = await store.claimNextJob(10_000, () => 0); c; c = await store.claimNextJob(10_000, () => 0)) got.push(c.job.id);
      return got;
    })));
    const all = claims.flat();
    assert.equal(all.length, 40);
    assert.deepEqual(new Set(all), new Set(inputs.map((i) => i.id)));
    assert.equal((await stores[1]!.countByState()).running, 40);
  });

  test("claim: the host cap holds across daemons; a batch's max_parallel too", async () => {
    const url = await postgres.createDatabase();
    const hostCap = (provider: string) => (provider === "vsphere" ? 2 : undefined);
    const stores = [await openStore(url, { nodeId: "a", hostCap }), await openStore(url, { nodeId: "b", hostCap })];
    const vc1 = Array.from({ length: 6 }, () => newJob());
    const vc2 = Array.from({ length: 3 }, () => newJob({ vsphere: { ...definition().vsphere!, url: "https://vc2.example/sdk" } }));
    const azure = Array.from({ length: 3 }, () => newJob({ provider: "azure", vsphere: undefined }));
    await insertOk(stores[0]!, ...vc1, ...vc2, ...azure);
    const claimAll = async (store: Store) => {
      const got: string[] = [];
      for (let c = await store.claimNextJob(10_000, () => 0); c; c = await store.claimNextJob(10_000, () => 0)) got.push(c.job.id);
      return got;
    };
    const claimed = (await Promise.all([...stores, ...stores].map(claimAll))).flat();
    const count = (group: NewJob[]) => claimed.filter((id) => group.some((j) => j.id === id)).length;
    assert.deepEqual([count(vc1), count(vc2), count(azure)], [2, 2, 3], "two per vSphere host, Azure uncapped");
    assert.equal(new Set(claimed).size, claimed.length);
    const running = claimed.find((id) => vc1.some((j) => j.id === id))!;
    await stores[0]!.transition({ jobId: running, from: ["running"], to: "completed", seq: 0, time: 20_000, reason: "done", actor: "t" });
    const next = await stores[1]!.claimNextJob(20_000, () => 0);
    assert.ok(next && vc1.some((j) => j.id === next.job.id), "a slot freed on vc1 is taken");

    const children = Array.from({ length: 3 }, (_, i) => newJob({ provider: "other", vsphere: undefined, vm: `vm-${i}` }, { batchId: "batch-1", batchIndex: i }));
    const { batch } = await stores[0]!.batches.insert({
      id: "batch-1", definition: definition({ provider: "other", vsphere: undefined, vm: "", maxParallel: 1 }), createTime: 30_000, children,
    });
    assert.equal(batch.jobs.length, 3);
    const batchClaims = (await Promise.all([...stores, ...stores].map(claimAll))).flat();
    assert.deepEqual(batchClaims.length, 1, "max_parallel 1");
  });

  test("seqs: committed in increasing order, so a reader of seq > N misses none", async () => {
    const url = await postgres.createDatabase();
    const stores = [await openStore(url, { nodeId: "a" }), await openStore(url, { nodeId: "b" })];
    const seen = new Map<number, JobTransition>();
    let last = 0;
    let writing = true;
    const reader = (async () => {
      while (writing) {
        const page = await stores[0]!.transitionsAfter(last, undefined, 1000);
        for (const t of page) seen.set(t.seq, t);
        if (page.length > 0) last = page[page.length - 1]!.seq;
      }
    })();
    const returned = (await Promise.all(stores.flatMap((store) => Array.from({ length: 4 }, async () => {
      const seqs: number[] = [];
      for (let i = 0; i < 10; i++) {
        const [r] = await store.insertJobs([newJob()]);
        assert.ok(r!.ok);
        seqs.push(r.transition!.seq);
        const claimed = await store.claimNextJob(10_000, () => 0);
        if (claimed) seqs.push(claimed.transition.seq);
      }
      return seqs;
    })))).flat();
    writing = false;
    await reader;
    for (const t of await stores[0]!.transitionsAfter(last, undefined, 1000)) seen.set(t.seq, t);
    assert.ok(returned.length >= 80, `${returned.length} transitions`);
    assert.deepEqual([...seen.keys()].sort((x, y) => x - y), [...returned].sort((x, y) => x - y), "the reader saw every seq, each once");
    assert.equal(await stores[1]!.maxTransitionSeq(), Math.max(...returned));
    const some = [...seen.values()].slice(0, 2).map((t) => t.jobId);
    assert.ok((await stores[1]!.transitionsAfter(0, some, 1000)).every((t) => some.includes(t.jobId)));
  });

  test("logs: append, read after/tail/limit, the per-job cap drops the oldest", async () => {
    const store = await openStore(await postgres.createDatabase(), { maxLogBytesPerJob: 2_000 });
    const [a, b] = [newJob(), newJob()];
    await insertOk(store, a, b);
    const entry = (i: number) => ({ time: i, level: "info", message: `line ${i} ${"x".repeat(60)}`, fields: { i } });
    const stored = await store.appendLogs([{ jobId: a.id, entry: entry(1) }, { jobId: b.id, entry: entry(2) }, { jobId: a.id, entry: entry(3) }]);
    assert.deepEqual(stored.map((e) => e.message.slice(0, 6)), ["line 1", "line 2", "line 3"]);
    assert.ok(stored[0]!.id < stored[1]!.id && stored[1]!.id < stored[2]!.id);
    const read = await store.readLogs(a.id, { afterId: 0, tail: 0, limit: 10 });
    assert.deepEqual(read.entries.map((e) => [e.id, e.fields]), [[stored[0]!.id, { i: 1 }], [stored[2]!.id, { i: 3 }]], "each entry got its own id");
    assert.equal(read.truncated, false);
    assert.deepEqual((await store.readLogs(a.id, { afterId: stored[0]!.id, tail: 0, limit: 10 })).entries.map((e) => e.time), [3]);

    // Each entry is ~110 bytes: 40 of them pass the 2000-byte cap, and the oldest go until 90% of it is left.
    await store.appendLogs(Array.from({ length: 40 }, (_, i) => ({ jobId: a.id, entry: entry(100 + i) })));
    const capped = await store.readLogs(a.id, { afterId: 0, tail: 0, limit: 100 });
    assert.equal(capped.truncated, true);
    assert.equal(capped.entries.at(-1)?.time, 139, "the newest stay");
    assert.ok(capped.entries.length < 20 && capped.entries[0]!.time > 100, `kept ${capped.entries.length}`);
    const bytes = capped.entries.reduce((sum, e) => sum + Buffer.byteLength(e.message) + Buffer.byteLength(JSON.stringify(e.fields)) + 32, 0);
    assert.ok(bytes <= 2_000, `${bytes} bytes kept`);
    assert.deepEqual((await store.readLogs(a.id, { afterId: 0, tail: 2, limit: 100 })).entries.map((e) => e.time), [138, 139]);
    assert.deepEqual((await store.readLogs(a.id, { afterId: 0, tail: 0, limit: 2 })).entries.length, 2);
    assert.equal((await store.readLogs(b.id, { afterId: 0, tail: 0, limit: 100 })).truncated, false, "the other job's log is untouched");
  });

  test("webhooks: a job change enqueues its event in the same transaction; listeners hear of it after the commit", async () => {
    const store = await openStore(await postgres.createDatabase());
    await store.webhooks.insert({
      id: "wh-1", url: "https://hooks.example/x", events: ["*"], headers: {}, secret: "whsec_abc", timeoutMs: 1000, maxAttempts: 3,
      enabled: true, source: "api", createTime: 1, updateTime: 1,
    });
    let woken = 0;
    let dueWhenWoken = -1;
    const heard = new Promise<void>((resolve) => store.onWebhookEvents(() => {
      woken++;
      void store.webhooks.due(Number.MAX_SAFE_INTEGER, 10).then((due) => {
        dueWhenWoken = due.length;
        resolve();
      });
    }));
    const job = newJob();
    await insertOk(store, job);
    await heard;
    assert.equal(woken, 1);
    assert.equal(dueWhenWoken, 1, "the delivery was committed when the listener ran");
    assert.equal((await store.webhooks.listDeliveries("wh-1", { limit: 10 })).deliveries[0]?.eventType, "job.created");
    assert.equal(await store.getSeqReservation(), 0);
    await store.setSeqReservation(42);
    assert.equal(await store.getSeqReservation(), 42);
    await Promise.all([store.close(), store.close()]);
    await assert.rejects(store.getJob(job.id), /pool/i, "closed");
  });
});
