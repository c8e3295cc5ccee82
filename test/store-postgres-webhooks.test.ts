import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import type { Webhook, WebhookEvent } from "../src/domain/webhook.ts";
import { AlreadyExistsError, NotFoundError } from "../src/errors.ts";
import { generateKey } from "../src/store/encryption-key.ts";
import { createPool } from "../src/store/postgres/pool.ts";
import { SCHEDULES_SCHEMA } from "../src/store/postgres/schedules.ts";
import { transaction, WEBHOOKS_CHANNEL } from "../src/store/postgres/sql.ts";
import { checkKey, hasSealed, KEY_CHECK, keyContext, keyOpens } from "../src/store/postgres/stored-secrets.ts";
import { CLAIM_MS, createWebhookQueries, createWebhookStore, WEBHOOKS_SCHEMA } from "../src/store/postgres/webhooks.ts";
import { createSecretBox } from "../src/store/secret-box.ts";
import type { WebhookStore } from "../src/store/store.ts";
import { postgresSkipReason, startPostgres, type Postgres } from "./support/postgres.ts";

const skip = postgresSkipReason();
if (skip) console.log(`# skipping the PostgreSQL webhook store tests: ${skip}`);

const box = createSecretBox(generateKey());
const pools: pg.Pool[] = [];
let postgres: Postgres;

/** A fresh database with the webhook tables; `count` pools on it, each its own WebhookStore. */
async function openStores(count = 1): Promise<{ url: string; pools: pg.Pool[]; stores: WebhookStore[] }> {
  const url = await postgres.createDatabase();
  const opened = Array.from({ length: count }, () => createPool(url));
  pools.push(...opened);
  await opened[0]!.query(WEBHOOKS_SCHEMA);
  return { url, pools: opened, stores: opened.map((pool) => createWebhookStore(pool, createWebhookQueries(box))) };
}

function webhook(id: string, overrides: Partial<Webhook> = {}): Webhook {
  return {
    id, url: `https://hooks.example/${id}?token=t0ken`, events: [], headers: { authorization: "Bearer abc" }, secret: "whsec_c2VjcmV0",
    timeoutMs: 5_000, maxAttempts: 5, enabled: true, source: "api", createTime: 1_000, updateTime: 1_000, ...overrides,
  };
}

const event = (type: WebhookEvent["type"] = "job.completed"): WebhookEvent => ({ type, timestamp: "2026-01-01T00:00:00.000Z", data: { jobId: "j1" } });

before(async () => {
  if (!skip) postgres = await startPostgres();
});
after(async () => {
  for (const pool of pools) await pool.end();
  await postgres?.stop();
});

describe("PostgreSQL webhook store", { skip }, () => {
  test("webhooks: insert, get, list, update, delete; secrets sealed in the table", async () => {
    const { pools: [pool], stores: [store] } = await openStores();
    await store!.insert(webhook("w1"));
    await store!.insert(webhook("w0", { createTime: 500 }));
    await assert.rejects(store!.insert(webhook("w1")), AlreadyExistsError);
    assert.deepEqual(await store!.get("w1"), webhook("w1"));
    assert.deepEqual((await store!.list()).map((w) => w.id), ["w0", "w1"]);
    const { rows } = await pool!.query("SELECT url, headers, secret, enabled FROM webhooks WHERE id = 'w1'");
    for (const column of ["url", "headers", "secret"]) assert.match(rows[0][column], /^v1:/, `${column} is sealed`);
    assert.ok(!JSON.stringify(rows).includes("t0ken"));
    assert.equal(rows[0].enabled, 1);

    assert.equal(await store!.update(webhook("w1", { enabled: false, events: ["job.failed"], updateTime: 2_000 })), true);
    assert.equal(await store!.update(webhook("nope")), false);
    const updated = await store!.get("w1");
    assert.equal(updated?.enabled, false);
    assert.deepEqual(updated?.events, ["job.failed"]);
    assert.equal(updated?.createTime, 1_000, "the create time is not updated");
    assert.equal(await store!.delete("w1"), true);
    assert.equal(await store!.delete("w1"), false);
    assert.equal(await store!.get("w1"), undefined);
  });

  test("syncConfig inserts, updates, deletes config webhooks, leaves API ones, refuses a taken id; daemons starting together agree", async () => {
    const { stores: [a, b] } = await openStores(2);
    await a!.insert(webhook("api-1"));
    await Promise.all([a!.syncConfig([webhook("c1"), webhook("c2")]), b!.syncConfig([webhook("c1"), webhook("c2")])]);
    assert.deepEqual((await a!.list()).map((w) => `${w.id}:${w.source}`), ["api-1:api", "c1:config", "c2:config"]);
    await a!.syncConfig([webhook("c2", { url: "https://other.example/", updateTime: 9_000, createTime: 9_000 })]);
    const c2 = await a!.get("c2");
    assert.equal(c2?.url, "https://other.example/");
    assert.equal(c2?.createTime, 1_000, "an updated config webhook keeps its create time");
    assert.equal(await a!.get("c1"), undefined, "a config webhook gone from the file is deleted");
    await assert.rejects(a!.syncConfig([webhook("api-1")]), /taken by a webhook created through the API/);
    assert.equal((await a!.get("c2"))?.url, "https://other.example/", "a refused sync changes nothing");
  });

  test("enqueue: one delivery per enabled webhook that wants the event, NOTIFY at commit, nothing when rolled back", async () => {
    const { url, pools: [pool], stores: [store] } = await openStores();
    await store!.insert(webhook("all"));
    await store!.insert(webhook("failed-only", { events: ["job.failed"] }));
    await store!.insert(webhook("off", { enabled: false }));
    const listener = new pg.Client({ connectionString: url });
    await listener.connect();
    try {
      const notified: string[] = [];
      listener.on("notification", (n) => notified.push(n.channel));
      await listener.query(`LISTEN ${WEBHOOKS_CHANNEL}`);

      const deliveries = await store!.enqueue(event("job.completed"), { now: 5_000 });
      assert.deepEqual(deliveries.map((d) => d.webhookId), ["all"]);
      assert.match(deliveries[0]!.id, /^msg_[0-9a-f]{32}$/);
      assert.deepEqual(JSON.parse(deliveries[0]!.payload), { type: "job.completed", timestamp: "2026-01-01T00:00:00.000Z", data: { jobId: "j1" } });
      assert.deepEqual(await store!.getDelivery(deliveries[0]!.id), deliveries[0]);
      assert.deepEqual((await store!.enqueue(event("job.failed"), { now: 5_000 })).map((d) => d.webhookId).sort(), ["all", "failed-only"]);
      assert.deepEqual((await store!.enqueue(event("job.failed"), { now: 5_000, only: "failed-only" })).map((d) => d.webhookId), ["failed-only"]);
      assert.deepEqual(await store!.enqueue(event("job.progress"), { now: 5_000 }), [], "job.progress is opt-in");
      await waitUntil(() => notified.length === 3, "three NOTIFYs");

      const queries = createWebhookQueries(box);
      await assert.rejects(transaction(pool!, async (db) => {
        await queries.enqueue(db, event("job.completed"), { now: 6_000 });
        throw new Error("the change it announces failed");
      }), /the change it announces failed/);
      const { rows } = await pool!.query("SELECT count(*)::int AS n FROM webhook_deliveries");
      assert.equal(rows[0].n, 4, "a rolled-back enqueue leaves no delivery");
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(notified.length, 3, "and no NOTIFY");
    } finally {
      await listener.end();
    }
  });

  test("due claims: a claimed delivery is not handed out again until its attempt is recorded or the claim runs out", async () => {
    const { stores: [store] } = await openStores();
    await store!.insert(webhook("w1"));
    const [delivery] = await store!.enqueue(event(), { now: 1_000 });
    assert.deepEqual(await store!.due(999, 10), [], "not due before its time");
    const claimed = await store!.due(1_000, 10);
    assert.equal(claimed.length, 1);
    assert.equal(claimed[0]!.delivery.id, delivery!.id);
    assert.equal(claimed[0]!.delivery.nextAttemptTime, 1_000, "returned as it was due");
    assert.deepEqual(claimed[0]!.webhook, webhook("w1"));
    assert.deepEqual(await store!.due(2_000, 10), [], "claimed");
    assert.equal(await store!.nextDueTime(), 1_000 + CLAIM_MS);
    const expired = await store!.due(1_000 + CLAIM_MS, 10);
    assert.equal(expired.length, 1, "a claim that ran out (its daemon died) frees the delivery");

    await store!.recordAttempt(delivery!.id, { time: 3_000, statusCode: 503, latencyMs: 12.5, error: "HTTP 503" }, { state: "pending", nextAttemptTime: 4_000 });
    const retried = await store!.due(4_000, 10);
    assert.equal(retried.length, 1, "the recorded next attempt time replaces the claim");
    assert.deepEqual(retried[0]!.delivery.attempts, [{ time: 3_000, statusCode: 503, latencyMs: 12.5, error: "HTTP 503" }]);
    await store!.recordAttempt(delivery!.id, { time: 4_000, statusCode: 200, latencyMs: 3, error: "" }, { state: "delivered" });
    const done = await store!.getDelivery(delivery!.id);
    assert.equal(done?.state, "delivered");
    assert.equal(done?.nextAttemptTime, undefined);
    assert.equal(done?.attempts.length, 2);
    assert.deepEqual(await store!.due(Number.MAX_SAFE_INTEGER - CLAIM_MS, 10), []);
    assert.equal(await store!.nextDueTime(), undefined);
    await assert.rejects(store!.recordAttempt("msg_unknown", { time: 1, statusCode: 0, latencyMs: 0, error: "" }, { state: "failed" }), NotFoundError);
  });

  test("deliveries of disabled webhooks wait; postpone parks a webhook's deliveries; listDeliveries pages newest first", async () => {
    const { stores: [store] } = await openStores();
    await store!.insert(webhook("w1"));
    await store!.insert(webhook("w2"));
    for (let i = 0; i < 5; i++) await store!.enqueue(event(), { now: 1_000 + i, only: "w1" });
    await store!.enqueue(event(), { now: 1_000, only: "w2" });
    await store!.update(webhook("w2", { enabled: false }));
    assert.equal(await store!.postpone("w1", 1_003), 3, "only the deliveries due before the time move");
    const due = await store!.due(1_002, 10);
    assert.deepEqual(due.map((d) => d.webhook.id), [], "w1's are parked until 1003, w2 is disabled");
    assert.deepEqual((await store!.due(1_003, 10)).map((d) => d.delivery.createTime), [1_000, 1_001, 1_002, 1_003], "oldest first");

    const first = await store!.listDeliveries("w1", { limit: 2 });
    assert.deepEqual(first.deliveries.map((d) => d.createTime), [1_004, 1_003]);
    const second = await store!.listDeliveries("w1", { limit: 2, before: first.next });
    assert.deepEqual(second.deliveries.map((d) => d.createTime), [1_002, 1_001]);
    const third = await store!.listDeliveries("w1", { limit: 2, before: second.next });
    assert.deepEqual(third.deliveries.map((d) => d.createTime), [1_000]);
    assert.equal(third.next, undefined);
  });

  test("two daemons claiming 50 due deliveries at once get each exactly once", async () => {
    const { stores: [a, b] } = await openStores(2);
    await a!.insert(webhook("w1"));
    // Rounds of 50, each due a claim timeout after the last round's claims: a race that slips through once shows.
    for (let round = 0; round < 3; round++) {
      const now = 1_000 + round * 2 * CLAIM_MS;
      for (let i = 0; i < 50; i++) await a!.enqueue(event(), { now });
      const got = new Map<string, string[]>();
      const drain = async (name: string, store: WebhookStore) => {
        for (;;) {
          const batch = await store.due(now, 3);
          if (batch.length === 0) return;
          for (const { delivery } of batch) got.set(delivery.id, [...(got.get(delivery.id) ?? []), name]);
        }
      };
      await Promise.all([drain("a", a!), drain("b", b!), drain("a", a!), drain("b", b!)]);
      assert.equal(got.size, 50, `round ${round}`);
      assert.deepEqual([...got].filter(([, by]) => by.length > 1), [], `round ${round}: no delivery was handed out twice`);
      const byA = [...got.values()].filter((by) => by[0] === "a").length;
      assert.ok(byA > 0 && byA < 50, `round ${round}: both daemons claimed some (a: ${byA})`);
      for (const id of got.keys()) await a!.recordAttempt(id, { time: now, statusCode: 200, latencyMs: 1, error: "" }, { state: "delivered" });
    }
  });
});

describe("PostgreSQL stored secrets: a daemon with another key refuses to start", { skip }, () => {
  /** The secret columns' tables. The jobs table is a stand-in with its secret column until the jobs schema is committed. */
  async function openDatabase(): Promise<pg.Pool> {
    const pool = createPool(await postgres.createDatabase());
    pools.push(pool);
    await pool.query(`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE jobs (pk BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, secrets TEXT);
      ${SCHEDULES_SCHEMA} ${WEBHOOKS_SCHEMA}`);
    return pool;
  }

  test("an empty database takes any key; the first recorded wins and another is refused", async () => {
    const db = await openDatabase();
    const other = createSecretBox(generateKey(), "secrets.encryption_key_file /etc/other.key");
    assert.equal(await hasSealed(db), false);
    assert.equal(await keyOpens(db, other), true);
    const context = await keyContext(db);
    assert.equal(context.mayGenerate, true);
    assert.equal(context.opens(other), true);

    await Promise.all([checkKey(db, box, "the key"), checkKey(db, box, "the key")]);
    assert.equal(await hasSealed(db), true, "the key check was recorded");
    assert.equal((await keyContext(db)).mayGenerate, false);
    assert.equal(await keyOpens(db, box), true);
    assert.equal(await keyOpens(db, other), false);
    assert.equal((await keyContext(db)).opens(other), false);
    await assert.rejects(checkKey(db, other, "secrets.encryption_key_file /etc/other.key"),
      /do not decrypt with secrets.encryption_key_file \/etc\/other.key.*same key/);
  });

  test("daemons starting together on an empty database with different keys: one is refused", async () => {
    const db = await openDatabase();
    const keys = [box, createSecretBox(generateKey())];
    const results = await Promise.allSettled(keys.map((key, i) => checkKey(db, key, `key ${i}`)));
    assert.deepEqual(results.map((r) => r.status).sort(), ["fulfilled", "rejected"]);
  });

  test("a database without a key check (copied from an old one) is judged by its sealed values", async () => {
    const db = await openDatabase();
    const store = createWebhookStore(db, createWebhookQueries(box));
    await store.insert(webhook("w1"));
    assert.equal(await hasSealed(db), true);
    assert.equal(await keyOpens(db, createSecretBox(generateKey())), false);
    await assert.rejects(checkKey(db, createSecretBox(generateKey()), "a wrong key"), /a wrong key/);
    const { rows } = await db.query("SELECT count(*)::int AS n FROM meta WHERE key = $1", [KEY_CHECK]);
    assert.equal(rows[0].n, 0, "a refused key records nothing");
    await checkKey(db, box, "the key");
    assert.equal(await keyOpens(db, createSecretBox(generateKey())), false);
    assert.equal(await keyOpens(db, box), true);
  });
});

async function waitUntil(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
