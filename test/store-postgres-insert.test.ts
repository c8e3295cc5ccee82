import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type pg from "pg";
import type { JobDefinition } from "../src/domain/job.ts";
import type { Webhook } from "../src/domain/webhook.ts";
import { jobEvent } from "../src/domain/webhook-events.ts";
import { generateKey } from "../src/store/encryption-key.ts";
import { createJobQueries, type JobQueries } from "../src/store/postgres/job-queries.ts";
import { migrate } from "../src/store/postgres/migrations.ts";
import { createPostgresStore } from "../src/store/postgres/pg-store.ts";
import { createPool } from "../src/store/postgres/pool.ts";
import { savepoint, transaction, type Sql } from "../src/store/postgres/sql.ts";
import { createWebhookQueries } from "../src/store/postgres/webhooks.ts";
import { createSecretBox } from "../src/store/secret-box.ts";
import type { InsertResult, NewJob, Store } from "../src/store/store.ts";
import { postgresSkipReason, startPostgres, type Postgres } from "./support/postgres.ts";

const skip = postgresSkipReason();
if (skip) console.log(`# skipping the PostgreSQL bulk insert tests: ${skip}`);

const box = createSecretBox(generateKey());
const cluster = { nodeId: "node-a", leaseMs: 30_000, hostCap: () => undefined };
let postgres: Postgres;
const opened: { close(): Promise<void> }[] = [];

async function openStore(url: string): Promise<Store> {
  const store = await createPostgresStore({ url, ...cluster, maxLogBytesPerJob: 1 << 20, secretBox: box });
  opened.push(store);
  return store;
}

async function migratedPool(): Promise<pg.Pool> {
  const pool = createPool(await postgres.createDatabase());
  opened.push({ close: () => pool.end() });
  await migrate(pool);
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
  nextSeq: () => assert.fail("the PostgreSQL store takes seqs from update_seq"), ...extra,
});

const webhook = (id: string, events: string[], enabled = true): Webhook => ({
  id, url: `https://hooks.example/${id}`, events, headers: {}, secret: "whsec_dGVzdA==", timeoutMs: 5_000, maxAttempts: 3,
  enabled, source: "api", createTime: ids++, updateTime: 0,
});

/** Webhooks that want job.created (default events, explicitly), one that does not, one disabled. */
const WEBHOOKS = [webhook("wh-all", []), webhook("wh-created", ["job.created"]), webhook("wh-done", ["job.completed"]), webhook("wh-off", [], false)];

/**
 * The per-item path as it was before the bulk one: each job through insertOne in a savepoint of its own, its
 * job.created through the webhook outbox's enqueue (the hooks the PostgreSQL store gives insertOne).
 */
function perItemQueries(): { jobs: JobQueries; insert(pool: pg.Pool, inputs: readonly NewJob[]): Promise<InsertResult[]> } {
  const outbox = createWebhookQueries(box);
  const jobs = createJobQueries({
    async afterInsert(db, job, _input, transition) {
      const event = jobEvent(job, transition);
      if (event) await outbox.enqueue(db, event);
    },
  }, box, cluster);
  return {
    jobs,
    insert: (pool, inputs) => transaction(pool, async (db) => {
      const results: InsertResult[] = [];
      for (const input of inputs) {
        try {
          results.push({ ok: true, ...await savepoint(db, () => jobs.insertOne(db, input)) });
        } catch (error) {
          results.push({ ok: false, error });
        }
      }
      return results;
    }),
  };
}

/** What a database holds after inserts, without the values that differ by nature (pks' gaps, delivery ids and times). */
async function contents(pool: pg.Pool) {
  const jobs = (await pool.query("SELECT * FROM jobs ORDER BY pk")).rows.map(({ pk: _pk, secrets, ...row }) => ({ ...row, sealed: secrets !== null }));
  const labels = (await pool.query("SELECT l.key, l.value, j.id FROM job_labels l JOIN jobs j ON j.pk = l.job_pk ORDER BY j.pk, l.key")).rows;
  const transitions = (await pool.query("SELECT * FROM job_transitions ORDER BY seq")).rows;
  const deliveries = (await pool.query("SELECT webhook_id, event_type, payload, state, attempts FROM webhook_deliveries ORDER BY pk")).rows;
  return { jobs, labels, transitions, deliveries };
}

/** Results comparable across two databases: errors by class and message. */
const outcomes = (results: InsertResult[]) =>
  results.map((r) => (r.ok ? r : { ok: false, error: (r.error as Error).constructor.name, message: (r.error as Error).message }));

/** A Sql that counts the statements run through it. */
function counting(db: Sql): Sql & { count: number } {
  const counted = { count: 0, query: (text: string, values?: readonly unknown[]) => (counted.count++, db.query(text, values)) };
  return counted as Sql & { count: number };
}

describe("PostgreSQL group commit in bulk", { skip }, () => {
  before(async () => {
    postgres = await startPostgres();
  });
  after(async () => {
    for (const resource of opened.reverse()) await resource.close();
    await postgres?.stop();
  });

  test("the bulk path gives the same jobs, transitions, labels, webhook deliveries and request_id answers as a savepoint per job", async () => {
    const [bulkPool, itemPool] = [await migratedPool(), await migratedPool()];
    const perItem = perItemQueries();
    const bulk = createJobQueries({
      async afterInsertGroup(db, created) {
        await outbox.enqueueMany(db, created.flatMap(({ job, transition }) => jobEvent(job, transition) ?? []));
      },
    }, box, cluster);
    const outbox = createWebhookQueries(box);
    for (const pool of [bulkPool, itemPool]) for (const w of WEBHOOKS) await outbox.insert(pool, w);

    const earlier = [newJob({ requestId: "req-same", name: "earlier" }), newJob({ requestId: "req-differs" })];
    const group = [
      newJob({ labels: { team: "web", env: "prod" } }),
      newJob({ requestId: "req-new", labels: { team: "db" } }),
      newJob({ requestId: "req-same", name: "earlier" }),
      newJob({ requestId: "req-differs", name: "another definition" }),
      newJob({ provider: "azure", vsphere: undefined, azure: {
        tenantId: "t", clientId: "c", clientSecret: "cs", subscriptionId: "sub-1", resourceGroup: "", authorityHost: "", resourceManager: "",
      } }),
      newJob({ requestId: "req-new", labels: { team: "db" } }),
      newJob({ requestId: "req-new", name: "differs from the group's first" }),
      newJob({ priority: "high" }, { scheduleId: "sched-1" }),
    ];
    const resultsOf = async (insert: (pool: pg.Pool, inputs: readonly NewJob[]) => Promise<InsertResult[]>, pool: pg.Pool) =>
      [...await insert(pool, earlier), ...await insert(pool, group)];
    const counted: number[] = [];
    const viaBulk = await resultsOf((pool, inputs) => transaction(pool, (db) => {
      const sql = counting(db);
      return bulk.insertMany(sql, inputs).finally(() => counted.push(sql.count));
    }), bulkPool);
    const viaItems = await resultsOf(perItem.insert, itemPool);

    assert.deepEqual(outcomes(viaBulk), outcomes(viaItems));
    assert.deepEqual(await contents(bulkPool), await contents(itemPool));
    // And what that is, so that two equally wrong paths do not pass.
    const results = viaBulk.slice(earlier.length);
    assert.deepEqual(results.map((r) => (r.ok ? (r.created ? "created" : "existing") : (r.error as Error).constructor.name)),
      ["created", "created", "existing", "AlreadyExistsError", "created", "existing", "AlreadyExistsError", "created"]);
    assert.ok(results[2]!.ok && results[2].job.id === earlier[0]!.id && results[5]!.ok && results[5].job.id === group[1]!.id);
    const seqs = results.flatMap((r) => (r.ok && r.transition ? [r.transition.seq] : []));
    assert.deepEqual(seqs, [3, 4, 5, 6], "seqs follow the input order");
    const { deliveries } = await contents(bulkPool);
    assert.deepEqual(deliveries.map((d) => `${d.webhook_id} ${d.event_type} ${JSON.parse(d.payload).data.job_id}`),
      [...earlier, group[0], group[1], group[4], group[7]].flatMap((job) => [`wh-all job.created ${job!.id}`, `wh-created job.created ${job!.id}`]));
    assert.ok(counted[1]! <= 14, `the group of ${group.length} took ${counted[1]} statements, not a handful`);
    const many = Array.from({ length: 200 }, (_, i) => newJob({ labels: { n: String(i) }, ...(i % 2 ? { requestId: `many-${i}` } : {}) }));
    let statements = 0;
    const manyResults = await transaction(bulkPool, async (db) => {
      const sql = counting(db);
      const inserted = await bulk.insertMany(sql, many);
      statements = sql.count;
      return inserted;
    });
    assert.ok(manyResults.every((r) => r.ok && r.created));
    assert.ok(statements <= 14, `200 jobs took ${statements} statements`);
  });

  test("through the store: a failing item fails alone (the group falls back to a savepoint per job)", async () => {
    const store = await openStore(await postgres.createDatabase());
    await store.webhooks.insert(webhook("wh-all", []));
    let woken = 0;
    store.onWebhookEvents(() => woken++);
    const [taken] = await store.insertJobs([newJob()]);
    assert.ok(taken!.ok);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(woken, 1, "the dispatcher is woken once the bulk group's deliveries are committed");
    const group = [newJob({ labels: { a: "1" } }), { ...newJob(), id: taken.job.id }, newJob({ requestId: "req-1" }), newJob({ requestId: "req-1" })];
    const results = await store.insertJobs(group);
    assert.ok(results[0]!.ok && results[0].created);
    assert.ok(!results[1]!.ok && /duplicate key/.test(String(results[1].error)), String(!results[1]!.ok && results[1].error));
    assert.ok(results[2]!.ok && results[2].created && results[3]!.ok && !results[3].created && results[3].job.id === group[2]!.id);
    const t0 = results[0]!.ok && results[0].transition!;
    const t2 = results[2]!.ok && results[2].transition!;
    assert.ok(t0 && t2 && t2.seq > t0.seq);
    assert.equal((await store.listJobs({ limit: 10 })).total, 3);
    assert.deepEqual((await store.getJob(group[0]!.id))?.definition.labels, { a: "1" });
    assert.equal((await store.webhooks.listDeliveries("wh-all", { limit: 10 })).deliveries.length, 3, "job.created of the three jobs, none of the failed one");
    assert.deepEqual((await store.history(group[2]!.id)).map((t) => t.reason), ["submitted"]);
  });

  test("two daemons inserting the same request_ids at once, in opposite orders: one job each, no error", async () => {
    const url = await postgres.createDatabase();
    const stores = [await openStore(url), await openStore(url)];
    for (let round = 0; round < 5; round++) {
      const requestIds = Array.from({ length: 20 }, (_, i) => `r${round}-${i}`);
      const groups = [requestIds, [...requestIds].reverse()].map((list) => list.map((requestId) => newJob({ requestId, name: requestId })));
      const results = await Promise.all(stores.map((store, i) => store.insertJobs(groups[i]!)));
      const flat = results.flat();
      assert.ok(flat.every((r) => r.ok), String(flat.map((r) => !r.ok && r.error).filter(Boolean)));
      const byRequest = new Map<string, string[]>();
      for (const r of flat) if (r.ok) byRequest.set(r.job.definition.requestId!, [...byRequest.get(r.job.definition.requestId!) ?? [], r.job.id]);
      for (const [requestId, jobIds] of byRequest) assert.equal(new Set(jobIds).size, 1, `${requestId}: one job for both daemons`);
      assert.equal(flat.filter((r) => r.ok && r.created).length, 20, "each request_id created once");
    }
    assert.equal((await stores[0]!.listJobs({ limit: 1 })).total, 100);
  });
});
