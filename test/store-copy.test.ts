// `hypervisord store copy`: a SQLite daemon's store (made through the SQLite store's API) copied into
// PostgreSQL and read back through the PostgreSQL store modules with the SQLite daemon's key.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import type { ApiKey } from "../src/domain/access.ts";
import type { JobDefinition } from "../src/domain/job.ts";
import type { Schedule } from "../src/domain/schedule.ts";
import type { Webhook } from "../src/domain/webhook.ts";
import { copyStore, CopyStoreError } from "../src/store/copy-store.ts";
import Database from "better-sqlite3";
import { generateKey, KEY_FILE } from "../src/store/encryption-key.ts";
import { createPostgresStore } from "../src/store/postgres/pg-store.ts";
import { createPool } from "../src/store/postgres/pool.ts";
import { createSecretBox } from "../src/store/secret-box.ts";
import { DATABASE_FILE, createSqliteStore } from "../src/store/sqlite/sqlite-store.ts";
import { postgresSkipReason, startPostgres, type Postgres } from "./support/postgres.ts";
import { tempDir } from "./support/temp-dir.ts";

const ROOT = path.resolve(import.meta.dirname, "..");
const skip = postgresSkipReason();
if (skip) console.log(`# skipping the store copy tests: ${skip}`);

const tmp = tempDir("store-copy");
const pools: pg.Pool[] = [];
let postgres: Postgres;

before(async () => {
  if (!skip) postgres = await startPostgres();
});
after(async () => {
  for (const pool of pools) await pool.end();
  await postgres?.stop();
});

const T = 1_700_000_000_000;

function vsphereDefinition(name: string): JobDefinition {
  return {
    name, provider: "vsphere", vm: `/DC1/vm/${name}`, outputDir: path.join(tmp, "out", name), format: "ovf", compress: false, compressionLevel: 6,
    parallelDownloads: 4, bandwidthLimit: 0, powerOff: false, priority: "high", labels: { team: "blue" },
    vsphere: { url: "https://vc.example/sdk", username: "admin", password: "s3cret-password", insecure: false, thumbprint: "" },
  };
}

const webhook: Webhook = {
  id: "wh-1", url: "https://hooks.example/in?token=t0ken", events: ["job.completed"], headers: { authorization: "Bearer abc" },
  secret: "whsec_c2VjcmV0c2VjcmV0", timeoutMs: 5_000, maxAttempts: 3, enabled: true, source: "api", createTime: T, updateTime: T,
};

const schedule: Schedule = {
  id: "sched-1", name: "nightly", description: "every night", cron: "0 2 * * *", timeZone: "", jobTemplate: vsphereDefinition("tmpl"),
  enabled: true, tags: { env: "prod" }, overlapPolicy: "allow", missedRunPolicy: "skip", keepLast: 2, createTime: T, updateTime: T, runCount: 0,
};

const apiKey: ApiKey = { id: "key-1", name: "ci", role: "operator", keyHash: "ab".repeat(32), prefix: "hvk_ab", source: "api", createTime: T };

/** A SQLite daemon's data directory, filled through the SQLite store's API. */
async function sqliteDataDir(name: string): Promise<string> {
  const dataDir = path.join(tmp, name);
  const store = createSqliteStore({ dataDir, maxLogBytesPerJob: 1 << 20 });
  let seq = 0;
  const nextSeq = () => ++seq;
  const inserted = await store.insertJobs([1, 2, 3].map((n) => ({
    id: `job-${n}`, definition: vsphereDefinition(`vm-${n}`), maxAttempts: 3, createTime: T + n, nextSeq, actor: "test",
  })));
  assert.ok(inserted.every((r) => r.ok));
  const claimed = await store.claimNextJob(T + 10, nextSeq);
  assert.ok(claimed);
  await store.transition({ jobId: claimed.job.id, from: ["running"], to: "completed", seq: nextSeq(), time: T + 20, reason: "done", actor: "engine", endTime: T + 20 });
  assert.equal((await store.claimNextJob(T + 30, nextSeq))?.job.id, "job-2", "left running: the daemon stopped mid-job");
  await store.appendLogs([1, 2, 3].map((i) => ({ jobId: "job-1", entry: { time: T + i, level: "info", message: `line ${i}`, fields: { i } } })));
  await store.schedules.insert(schedule);
  await store.webhooks.insert(webhook);
  await store.webhooks.enqueue({ type: "job.completed", timestamp: new Date(T).toISOString(), data: { jobId: "job-1" } }, { now: T });
  await store.apiKeys.insert(apiKey);
  store.audit.append({ time: T, principal: "ci", role: "operator", method: "SubmitJob", transport: "grpc", peer: "127.0.0.1", code: "OK", resource: "job-1", requestJson: "{}", durationMs: 1.5 });
  await store.setSeqReservation(1_000);
  await store.close();
  return dataDir;
}

async function target(): Promise<{ url: string; pool: pg.Pool }> {
  const url = await postgres.createDatabase();
  const pool = createPool(url);
  pools.push(pool);
  return { url, pool };
}

/** Compared as JSON: a store may return an unset optional field as present and undefined. */
const asJson = (value: unknown): unknown => JSON.parse(JSON.stringify(value));

const count = async (pool: pg.Pool, table: string) => (await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]!.n;

describe("hypervisord store copy", { skip }, () => {
  let dataDir: string;
  before(async () => {
    if (!skip) dataDir = await sqliteDataDir("daemon");
  });

  test("every table is copied column by column; the PostgreSQL store reads it with the SQLite daemon's key; sequences continue", async () => {
    const { url, pool } = await target();
    const result = await copyStore({ from: dataDir, to: url });
    const rows = Object.fromEntries(result.tables.map((t) => [t.table, t.rows]));
    assert.deepEqual(
      { jobs: rows.jobs, job_labels: rows.job_labels, job_transitions: rows.job_transitions, job_logs: rows.job_logs, schedules: rows.schedules, webhooks: rows.webhooks, webhook_deliveries: rows.webhook_deliveries, api_keys: rows.api_keys, audit_events: rows.audit_events },
      { jobs: 3, job_labels: 3, job_transitions: 6, job_logs: 3, schedules: 1, webhooks: 1, webhook_deliveries: 1, api_keys: 1, audit_events: 1 });
    assert.deepEqual(result.skipped, [], "PostgreSQL has a column for every SQLite column");
    assert.ok(result.tables.findIndex((t) => t.table === "jobs") < result.tables.findIndex((t) => t.table === "job_labels"), "parents first");
    assert.equal(result.keyFile, path.join(dataDir, KEY_FILE));
    assert.equal(result.nextSeq, 1_001, "above the SQLite daemon's seq reservation");

    const box = createSecretBox(fs.readFileSync(result.keyFile!, "utf8"));
    const store = await createPostgresStore({ url, maxLogBytesPerJob: 1 << 20, secretBox: box, nodeId: "node-a", leaseMs: 30_000, hostCap: () => undefined });
    try {
      const job = await store.getJob("job-1");
      assert.equal(job?.state, "completed");
      assert.equal(job?.definition.vsphere?.password, "s3cret-password", "the sealed password opens with the SQLite daemon's key");
      assert.deepEqual(job?.definition.labels, { team: "blue" });
      assert.equal(job?.endTime, T + 20);
      assert.equal(job?.attempts[0]?.outcome, "completed");
      assert.deepEqual((await store.listJobs({ labels: { team: "blue" }, limit: 10 })).jobs.map((j) => `${j.id}:${j.state}`).sort(),
        ["job-1:completed", "job-2:running", "job-3:queued"]);
      assert.deepEqual((await store.history("job-1")).map((t) => t.toState), ["queued", "running", "completed"]);
      const logs = await store.readLogs("job-1", { afterId: 0, tail: 0, limit: 10 });
      assert.deepEqual(logs.entries.map((e) => [e.message, e.fields]), [["line 1", { i: 1 }], ["line 2", { i: 2 }], ["line 3", { i: 3 }]]);
      assert.deepEqual(await store.webhooks.get("wh-1"), webhook);
      assert.equal((await store.webhooks.listDeliveries("wh-1", { limit: 10 })).deliveries.length, 1);
      assert.deepEqual(asJson(await store.schedules.get("sched-1")), asJson(schedule));
      assert.deepEqual(asJson(await store.apiKeys.get("key-1")), asJson(apiKey));
      assert.deepEqual((await store.audit.list({ limit: 10 })).events.map((e) => [e.method, e.durationMs]), [["SubmitJob", 1.5]]);
    } finally {
      await store.close();
    }

    const { rows: jobs } = await pool.query("SELECT id, target_host, lease_expires FROM jobs ORDER BY pk");
    assert.deepEqual(jobs.map((j) => j.target_host), ["vsphere:vc.example", "vsphere:vc.example", "vsphere:vc.example"], "the host cap applies to copied jobs");
    assert.deepEqual(jobs.map((j) => j.lease_expires), [null, 0, null], "the job the SQLite daemon was running has an expired lease: a node recovers it");

    // Identities continue after the copied rows; update_seq after the reservation.
    const { rows: pk } = await pool.query(`INSERT INTO jobs (id, name, provider, state, priority, definition, max_attempts, create_time)
      VALUES ('job-new', 'n', 'fake', 'queued', 0, '{}', 1, 0) RETURNING pk`);
    assert.equal(pk[0].pk, 4);
    assert.equal((await pool.query("INSERT INTO job_logs (job_id, time, level, message, fields, bytes) VALUES ('x', 0, 'info', '', '{}', 0) RETURNING id")).rows[0].id, 4);
    assert.equal((await pool.query("SELECT nextval('update_seq') AS n")).rows[0].n, 1_001);
  });

  test("a target that holds data is refused (nothing written); --force empties it first", async () => {
    const { url, pool } = await target();
    await copyStore({ from: dataDir, to: url });
    await pool.query("DELETE FROM job_logs WHERE id = 1");
    await assert.rejects(copyStore({ from: dataDir, to: url }), (err: unknown) => {
      assert.ok(err instanceof CopyStoreError);
      assert.equal(err.flag, "--to");
      assert.match(err.message, /^--to: the target database already holds jobs \(3\), schedules \(1\), webhooks \(1\), api_keys \(1\), audit_events \(1\);.*--force/);
      return true;
    });
    assert.equal(await count(pool, "job_logs"), 2, "nothing changed");
    await pool.query("INSERT INTO job_updates (seq, job_id, kind, payload, time) VALUES (5000, 'job-1', 'progress', '{}', 0)");
    const result = await copyStore({ from: dataDir, to: url, force: true });
    assert.equal(result.tables.find((t) => t.table === "jobs")?.rows, 3);
    assert.equal(await count(pool, "jobs"), 3);
    assert.equal(await count(pool, "job_logs"), 3);
    assert.equal(await count(pool, "job_updates"), 0, "the cluster's own tables are emptied too");
  });

  test("errors name the flag", async () => {
    const { url } = await target();
    await assert.rejects(copyStore({ from: path.join(tmp, "nowhere"), to: url }), /^CopyStoreError: --from: .*hypervisord\.db does not exist/);
    await assert.rejects(copyStore({ from: dataDir, to: "mysql://x" }), /^CopyStoreError: --to: expected a postgres:\/\//);
    await assert.rejects(copyStore({ from: dataDir, to: postgres.url("no_such_db") }), /^CopyStoreError: --to: postgres:\/\/hv@127\.0\.0\.1:\d+\/no_such_db: .*does not exist/);
  });

  test("secrets an older version stored in clear are refused; a key file that does not open the secrets is not named; columns without a target are listed", async () => {
    const { url, pool } = await target();
    const plainDir = await sqliteDataDir("plain");
    const db = new Database(path.join(plainDir, DATABASE_FILE));
    db.prepare("UPDATE webhooks SET secret = 'whsec_plain'").run();
    db.close();
    await assert.rejects(copyStore({ from: plainDir, to: url }), /^CopyStoreError: --from: webhooks\.secret hold secrets in clear/);
    assert.equal(await count(pool, "jobs"), 0, "nothing was written");

    const otherKeyDir = await sqliteDataDir("other-key");
    fs.writeFileSync(path.join(otherKeyDir, KEY_FILE), `${generateKey()}\n`);
    const extra = new Database(path.join(otherKeyDir, DATABASE_FILE));
    extra.exec("ALTER TABLE jobs ADD COLUMN legacy TEXT; CREATE TABLE leftovers (x INTEGER); INSERT INTO leftovers VALUES (1)");
    extra.close();
    const result = await copyStore({ from: otherKeyDir, to: url });
    assert.equal(result.keyFile, undefined);
    assert.deepEqual(result.skipped, [{ table: "jobs", columns: ["legacy"] }, { table: "leftovers", columns: "table" }], "what has no target is said");
    assert.equal(await count(pool, "jobs"), 3);
  });

  test("over the CLI: counts per table and the key to give the PostgreSQL daemons; usage errors exit 2", async () => {
    const { url } = await target();
    const cli = (...args: string[]) => spawnSync(process.execPath, ["--import", "tsx", path.join(ROOT, "src/main.ts"), "store", ...args], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });
    const done = cli("copy", "--from", dataDir, `--to=${url}`);
    assert.equal(done.status, 0, done.stderr);
    assert.match(done.stdout, /^jobs +3 rows$/m);
    assert.match(done.stdout, /^webhook_deliveries +1 rows$/m);
    assert.match(done.stdout, /^update sequence continues at 1001$/m);
    assert.ok(done.stdout.includes(`the key file ${path.join(dataDir, KEY_FILE)}`), done.stdout);
    assert.ok(fs.existsSync(path.join(dataDir, DATABASE_FILE)));

    const again = cli("copy", "--from", dataDir, "--to", url);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /^hypervisord store copy: --to: the target database already holds jobs \(3\)/);
    assert.equal(cli("copy", "--from", dataDir, "--to", url, "--force").status, 0);

    const missing = cli("copy", "--from", dataDir);
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /--to: the PostgreSQL URL is required/);
    assert.equal(cli("move").status, 2);
  });
});
