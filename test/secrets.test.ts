// Secrets at rest, over the real wire and the real files: the daemon (test/support/fake-daemon.ts, i.e.
// src/run.ts) is spawned, webhooks, jobs and schedules with secrets are created through the API, and the
// database, its WAL and its shared memory are read as bytes. Then file modes under umask 000 and 022,
// the generated key, restarts, `hypervisord secrets rotate`, a database written in clear by an earlier
// version, and redaction (the audit log, ListWebhooks, logs).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, describe, test } from "node:test";
import Database from "better-sqlite3";
import pino from "pino";
import type { Webhook } from "../src/domain/webhook.ts";
import { redactUrl } from "../src/redact-url.ts";
import { generateKey, KEY_FILE } from "../src/store/encryption-key.ts";
import { createSecretBox, isSealed } from "../src/store/secret-box.ts";
import { createSqliteStore, DATABASE_FILE, openDatabase } from "../src/store/sqlite/sqlite-store.ts";
import { createStoredSecrets } from "../src/store/sqlite/stored-secrets.ts";
import { generateSecret, verifySignature } from "../src/webhooks/signing.ts";
import { postJson } from "./support/clients.ts";
import { assertRefusesToStart, spawnDaemon, type DaemonProcess, type SpawnOptions } from "./support/daemon-process.ts";
import { tempDir } from "./support/temp-dir.ts";
import { waitFor } from "./support/wait-for.ts";
import { startWebhookReceiver, type WebhookReceiver } from "./support/webhook-receiver.ts";

const ROOT = path.resolve(import.meta.dirname, "..");
const VSPHERE_PASSWORD = "vSphere-Pa55word-job-7f3a9c";
const TEMPLATE_PASSWORD = "vSphere-Pa55word-template-b81d2e";
const URL_PASSWORD = "Url-Pa55word-in-userinfo-c0ffee";
const QUERY_TOKEN = "query-token-5d6e7f8a9b";
const HEADER_VALUE = "header-value-secret-42aa17";
const WEBHOOK_SECRET = generateSecret();
/** Every secret the tests store; none may appear in a file of the data directory, nor in a log line. */
const SECRETS = [VSPHERE_PASSWORD, TEMPLATE_PASSWORD, URL_PASSWORD, QUERY_TOKEN, HEADER_VALUE, WEBHOOK_SECRET, WEBHOOK_SECRET.slice("whsec_".length)];

const daemons: DaemonProcess[] = [];
after(async () => {
  for (const daemon of daemons) await daemon.stop();
});

async function start(options: SpawnOptions): Promise<DaemonProcess> {
  const daemon = await spawnDaemon(options);
  daemons.push(daemon);
  return daemon;
}

async function stop(daemon: DaemonProcess): Promise<void> {
  assert.equal(await daemon.stop(), 0, "clean exit");
}

/** Runs with the process umask set to `mask` (the spawned daemon inherits it), then restores it. */
async function withUmask<T>(mask: number, run: () => Promise<T>): Promise<T> {
  const previous = process.umask(mask);
  try {
    return await run();
  } finally {
    process.umask(previous);
  }
}

/** A real HTTP receiver on 127.0.0.1 that records every request (its URL with the query) and answers 204. */
const startReceiver = () => startWebhookReceiver({ reply: 204 });

function configFile(yaml: string): string {
  const file = path.join(tempDir("config"), "hypervisord.yaml");
  fs.writeFileSync(file, yaml);
  return file;
}
/** Webhooks to the receiver on 127.0.0.1: private targets allowed, as in a test network. */
const ALLOW_LOOPBACK = ["--config", configFile("webhooks:\n  allow_private_targets: true\n")];

async function call(daemon: DaemonProcess, method: string, body: unknown): Promise<Record<string, any>> {
  const response = await postJson(daemon.httpUrl, method, body);
  assert.equal(response.status, 200, `${method}: ${JSON.stringify(response.body)}`);
  return response.body;
}

/** Creates a webhook (secret, header, token in the URL), a job and a schedule with vSphere passwords; returns the ids. */
async function createSecrets(daemon: DaemonProcess, receiver: WebhookReceiver) {
  const created = await call(daemon, "CreateWebhook", {
    webhook: { url: `${receiver.url}?token=${QUERY_TOKEN}`, events: ["job.created"], headers: { "X-Api-Token": HEADER_VALUE }, secret: WEBHOOK_SECRET },
  });
  const job = await call(daemon, "SubmitJob", {
    definition: { provider: "fake", vm: "web-01?size=1000&delayMs=0", requestId: "secret-job", vsphere: { url: "https://vcenter.example.com/sdk", username: "backup", password: VSPHERE_PASSWORD } },
  });
  const schedule = await call(daemon, "CreateSchedule", {
    schedule: { name: "yearly", cron: "0 0 1 1 *", jobTemplate: { provider: "fake", vm: "web-02", vsphere: { url: "https://vcenter.example.com/sdk", username: "backup", password: TEMPLATE_PASSWORD } } },
  });
  return { webhookId: created.webhook.id as string, jobId: job.job.id as string, scheduleId: schedule.schedule.id as string };
}

/**
 * The base64 forms a secret can take inside any base64 text: encoded at each of the three byte
 * alignments, minus the characters that depend on the neighbouring bytes.
 */
function base64Forms(secret: string): string[] {
  return [0, 1, 2].map((offset) => {
    const encoded = Buffer.concat([Buffer.alloc(offset), Buffer.from(secret)]).toString("base64");
    return encoded.slice(Math.ceil((offset * 4) / 3) + 1, -4);
  });
}

/** Every file of the data directory (database, -wal, -shm, key, lock) scanned for each secret, as UTF-8 and as base64. */
function assertNoSecretInFiles(dataDir: string, secrets: readonly string[] = SECRETS): string[] {
  const files = fs.readdirSync(dataDir).map((name) => path.join(dataDir, name)).filter((file) => fs.statSync(file).isFile());
  for (const file of files) {
    const bytes = fs.readFileSync(file);
    for (const secret of secrets) {
      assert.equal(bytes.indexOf(secret), -1, `${secret} appears in clear in ${file}`);
      for (const form of base64Forms(secret)) assert.equal(bytes.indexOf(form), -1, `${secret} appears as base64 (${form}) in ${file}`);
    }
  }
  return files.map((file) => path.basename(file));
}

function assertNoSecretInLogs(daemon: DaemonProcess, secrets: readonly string[] = SECRETS): void {
  const logs = daemon.logs.join("\n");
  for (const secret of secrets) assert.ok(!logs.includes(secret), `${secret} appears in the daemon log`);
}

const modeOf = (file: string) => fs.statSync(file).mode & 0o777;

/** The mode of the data directory and of each file of it that exists. */
function assertModes(dataDir: string): void {
  assert.equal(modeOf(dataDir).toString(8), "700", "data directory");
  for (const name of [DATABASE_FILE, `${DATABASE_FILE}-wal`, `${DATABASE_FILE}-shm`, KEY_FILE, "hypervisord.pid"]) {
    const file = path.join(dataDir, name);
    if (fs.existsSync(file)) assert.equal(modeOf(file).toString(8), "600", name);
  }
}

/** TestWebhook: the receiver must get the full URL (token included), the header value, and a signature made with the stored secret. */
async function assertWebhookSecretsWork(daemon: DaemonProcess, receiver: WebhookReceiver, webhookId: string): Promise<void> {
  const before = receiver.requests.length;
  await call(daemon, "TestWebhook", { id: webhookId });
  const request = await waitFor("the test delivery", () => receiver.requests.slice(before).find((r) => r.body.includes("webhook.test")), 15_000, 50);
  assert.equal(request.url, `/hook?token=${QUERY_TOKEN}`, "delivered to the URL with its token");
  assert.equal(request.headers["x-api-token"], HEADER_VALUE);
  assert.ok(verifySignature(WEBHOOK_SECRET, request.headers, request.body), "signed with the stored secret");
}

function readKey(dataDir: string): string {
  return fs.readFileSync(path.join(dataDir, KEY_FILE), "utf8").trim();
}

/** The sealed cells of every secret column, read straight from the file. */
function sealedCells(dataDir: string): string[] {
  const db = new Database(path.join(dataDir, DATABASE_FILE), { readonly: true, fileMustExist: true });
  try {
    const column = (sql: string) => db.prepare(sql).pluck().all() as string[];
    return [
      ...column("SELECT secrets FROM jobs WHERE secrets IS NOT NULL"), ...column("SELECT secrets FROM schedules WHERE secrets IS NOT NULL"),
      ...column("SELECT url FROM webhooks"), ...column("SELECT headers FROM webhooks"), ...column("SELECT secret FROM webhooks"),
    ];
  } finally {
    db.close();
  }
}

function rotate(args: string[], env: Record<string, string> = {}) {
  const result = spawnSync(process.execPath, ["--import", "tsx", path.join(ROOT, "src/main.ts"), "secrets", "rotate", ...args], {
    cwd: ROOT, env: { ...process.env, ...env }, encoding: "utf8", timeout: 30_000,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe("secrets at rest", () => {
  test("every secret is encrypted: none in the database, WAL or shared memory, nor in the log; modes 0700/0600 under umask 000; the generated key survives a restart", async () => {
    const receiver = await startReceiver();
    const dataDir = path.join(tempDir("secrets"), "data");
    // The same output root after the restart: the default output_dir is part of the definition compared on resubmission.
    const options = { dataDir, outputRoot: tempDir("secrets-exports"), args: ALLOW_LOOPBACK };
    let daemon = await withUmask(0o000, () => start(options));

    // No key configured: one is generated in the data directory, 0600, and the log says where (never the key).
    const key = readKey(dataDir);
    assert.equal(Buffer.from(key, "base64").length, 32);
    assert.ok(daemon.logs.some((line) => line.includes("generated one") && line.includes(path.join(dataDir, KEY_FILE))), "the generation is logged");
    assert.ok(!daemon.logs.join("\n").includes(key), "the key is never logged");

    const { webhookId, jobId, scheduleId } = await createSecrets(daemon, receiver);
    // A job's creation is delivered to the full URL: the token is stored (sealed) and used.
    const delivered = await waitFor("job.created delivery", () => receiver.requests.find((r) => r.body.includes("job.created")), 15_000, 50);
    assert.equal(delivered.url, `/hook?token=${QUERY_TOKEN}`);

    // While the daemon runs: the WAL and shared memory exist, and no file holds a secret.
    const files = assertNoSecretInFiles(dataDir);
    assert.ok(files.includes(`${DATABASE_FILE}-wal`) && files.includes(`${DATABASE_FILE}-shm`), `WAL and SHM scanned too: ${files.join(", ")}`);
    assertModes(dataDir);
    for (const cell of sealedCells(dataDir)) assert.ok(isSealed(cell), `a secret column holds ${cell.slice(0, 20)}...`);
    await stop(daemon);
    assertNoSecretInFiles(dataDir);
    assertModes(dataDir);
    assertNoSecretInLogs(daemon);

    // Restart: the same key file is used (not regenerated), and every secret decrypts.
    daemon = await start(options);
    assert.equal(readKey(dataDir), key);
    assert.ok(!daemon.logs.some((line) => line.includes("generated one")));
    await assertWebhookSecretsWork(daemon, receiver, webhookId);
    assert.equal((await call(daemon, "GetJob", { jobId })).job.id, jobId);
    assert.equal((await call(daemon, "GetSchedule", { id: scheduleId })).schedule.id, scheduleId);
    // The job's password is the one submitted: resubmitting the same request is idempotent, another password is not.
    const again = await postJson(daemon.httpUrl, "SubmitJob", {
      definition: { provider: "fake", vm: "web-01?size=1000&delayMs=0", requestId: "secret-job", vsphere: { url: "https://vcenter.example.com/sdk", username: "backup", password: VSPHERE_PASSWORD } },
    });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.created ?? false, false);
    await stop(daemon);
    assertNoSecretInLogs(daemon);
  });

  test("modes under umask 022 too; a looser data directory and files left by an older version are tightened, with a warning", async () => {
    const dataDir = path.join(tempDir("modes"), "data");
    const daemon = await withUmask(0o022, () => start({ dataDir }));
    assertModes(dataDir);
    await stop(daemon);

    fs.chmodSync(dataDir, 0o755);
    fs.chmodSync(path.join(dataDir, DATABASE_FILE), 0o644);
    fs.chmodSync(path.join(dataDir, KEY_FILE), 0o644);
    const again = await withUmask(0o022, () => start({ dataDir }));
    assertModes(dataDir);
    const warnings = again.logs.filter((line) => line.includes("tightened to 0"));
    for (const what of [`data directory ${dataDir} was mode 0755`, `database ${path.join(dataDir, DATABASE_FILE)} was mode 0644`, `encryption key file ${path.join(dataDir, KEY_FILE)} was mode 0644`]) {
      assert.ok(warnings.some((line) => line.includes(what) && line.includes('"level":"warn"')), `a warning: ${what}`);
    }
    await stop(again);
  });

  test("a wrong or missing key stops the start, naming the key, and changes nothing", async () => {
    const receiver = await startReceiver();
    const dataDir = tempDir("wrong-key");
    const daemon = await start({ dataDir, args: ALLOW_LOOPBACK });
    await createSecrets(daemon, receiver);
    await stop(daemon);
    const before = sealedCells(dataDir);

    await assertRefusesToStart({ dataDir, env: { HYPERVISORD_ENCRYPTION_KEY: generateKey() } },
      /stored secrets do not decrypt with secrets\.encryption_key \(HYPERVISORD_ENCRYPTION_KEY\): they were encrypted with another key/);
    const keyFile = path.join(tempDir("other-key"), "key");
    fs.writeFileSync(keyFile, generateKey());
    await assertRefusesToStart({ dataDir, args: ["--encryption-key-file", keyFile] }, new RegExp(`do not decrypt with secrets\\.encryption_key_file ${keyFile}`));
    const key = readKey(dataDir);
    fs.rmSync(path.join(dataDir, KEY_FILE));
    await assertRefusesToStart({ dataDir }, /holds encrypted secrets but there is no key: .*encryption\.key does not exist/);
    assert.ok(!fs.existsSync(path.join(dataDir, KEY_FILE)), "no new key generated over encrypted secrets");
    assert.deepEqual(sealedCells(dataDir), before, "nothing was changed");

    // The same key given through the setting works: a key moved out of the data directory.
    const started = await start({ dataDir, env: { HYPERVISORD_ENCRYPTION_KEY: key } });
    assert.ok(!fs.existsSync(path.join(dataDir, KEY_FILE)), "a configured key: nothing generated");
    await stop(started);
  });

  test("rotation re-encrypts every secret: refused while the daemon runs; the old key no longer opens them, the new one does, after a restart", async () => {
    const receiver = await startReceiver();
    const dataDir = tempDir("rotate");
    let daemon = await start({ dataDir, args: ALLOW_LOOPBACK });
    const { webhookId, jobId } = await createSecrets(daemon, receiver);
    const running = rotate(["--data-dir", dataDir]);
    assert.equal(running.code, 1, running.stderr);
    assert.match(running.stderr, /in use by another hypervisord \(pid \d+\)/);
    await stop(daemon);

    const oldKey = readKey(dataDir);
    const oldCells = sealedCells(dataDir);
    // A checkpoint holding a value a provider sealed with the store's key (a vSphere lease's session cookie).
    const cookie = "vmware_soap_session=lease-session-cookie";
    const checkpointOf = () => {
      const db = new Database(path.join(dataDir, DATABASE_FILE), { fileMustExist: true });
      try {
        return db.prepare("SELECT checkpoint FROM jobs WHERE id = ?").pluck().get(jobId) as string;
      } finally {
        db.close();
      }
    };
    {
      const db = new Database(path.join(dataDir, DATABASE_FILE), { fileMustExist: true });
      const checkpoint = { provider: { lease: { lease: "session[1]lease", session: createSecretBox(oldKey).seal(cookie) } }, writtenFiles: [] };
      db.prepare("UPDATE jobs SET checkpoint = ? WHERE id = ?").run(JSON.stringify(checkpoint), jobId);
      db.close();
    }
    const rotated = rotate(["--data-dir", dataDir]);
    assert.equal(rotated.code, 0, rotated.stderr);
    assert.match(rotated.stdout, new RegExp(`re-encrypted ${oldCells.length + 1} stored secret values in .*; the new key is in ${path.join(dataDir, KEY_FILE)}`));
    const resealed = (JSON.parse(checkpointOf()) as { provider: { lease: { session: string } } }).provider.lease.session;
    assert.equal(createSecretBox(readKey(dataDir)).open(resealed), cookie, "the checkpoint's sealed value is re-encrypted with the new key");
    const newKey = readKey(dataDir);
    assert.notEqual(newKey, oldKey);
    assert.ok(!rotated.stdout.includes(newKey) && !rotated.stderr.includes(newKey), "the key is never printed");
    assert.equal(modeOf(path.join(dataDir, KEY_FILE)).toString(8), "600");
    assert.ok(!fs.existsSync(path.join(dataDir, `${KEY_FILE}.new`)));

    const oldBox = createSecretBox(oldKey);
    const newBox = createSecretBox(newKey);
    const cells = sealedCells(dataDir);
    assert.equal(cells.length, oldCells.length);
    for (const cell of cells) {
      assert.throws(() => oldBox.open(cell), /does not decrypt/);
      assert.doesNotThrow(() => newBox.open(cell));
    }
    assertNoSecretInFiles(dataDir);
    await assertRefusesToStart({ dataDir, env: { HYPERVISORD_ENCRYPTION_KEY: oldKey } }, /do not decrypt with secrets\.encryption_key/);

    daemon = await start({ dataDir, args: ALLOW_LOOPBACK });
    await assertWebhookSecretsWork(daemon, receiver, webhookId);
    assert.equal((await call(daemon, "GetJob", { jobId })).job.id, jobId);
    assert.equal((await call(daemon, "ListSchedules", {})).schedules.length, 1);
    await stop(daemon);
  });

  test("rotation of a configured key writes the new key to --new-key-file and says what to configure; without it, it refuses", async () => {
    const receiver = await startReceiver();
    const dataDir = tempDir("rotate-env");
    const oldKey = generateKey();
    const env = { HYPERVISORD_ENCRYPTION_KEY: oldKey };
    let daemon = await start({ dataDir, env, args: ALLOW_LOOPBACK });
    const { webhookId } = await createSecrets(daemon, receiver);
    await stop(daemon);
    assert.ok(!fs.existsSync(path.join(dataDir, KEY_FILE)));

    const refused = rotate(["--data-dir", dataDir], env);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /comes from secrets\.encryption_key \(HYPERVISORD_ENCRYPTION_KEY\): give --new-key-file FILE/);

    const newKeyFile = path.join(tempDir("credentials"), "hypervisord-key");
    const rotated = rotate(["--data-dir", dataDir, "--new-key-file", newKeyFile], env);
    assert.equal(rotated.code, 0, rotated.stderr);
    assert.match(rotated.stdout, /next: configure secrets\.encryption_key_file: .*hypervisord-key/);
    assert.match(rotated.stdout, /next: remove secrets\.encryption_key \/ HYPERVISORD_ENCRYPTION_KEY/);
    assert.equal(modeOf(newKeyFile).toString(8), "600");

    await assertRefusesToStart({ dataDir, env }, /do not decrypt with secrets\.encryption_key/);
    daemon = await start({ dataDir, args: [...ALLOW_LOOPBACK, "--encryption-key-file", newKeyFile] });
    await assertWebhookSecretsWork(daemon, receiver, webhookId);
    await stop(daemon);
  });

  test("a database written in clear by an earlier version is encrypted at start, leaving no clear copy in the files", async () => {
    const receiver = await startReceiver();
    const dataDir = tempDir("legacy");
    const daemon = await start({ dataDir, args: ALLOW_LOOPBACK });
    const { webhookId } = await createSecrets(daemon, receiver);
    await stop(daemon);

    // Rewrite the rows as the previous version stored them: every secret in clear, no key check, no key file.
    const box = createSecretBox(readKey(dataDir));
    const db = new Database(path.join(dataDir, DATABASE_FILE));
    for (const table of ["jobs", "schedules"]) {
      const rows = db.prepare(`SELECT rowid AS id, secrets FROM ${table} WHERE secrets IS NOT NULL`).all() as { id: number; secrets: string }[];
      for (const row of rows) db.prepare(`UPDATE ${table} SET secrets = ? WHERE rowid = ?`).run(box.open(row.secrets), row.id);
    }
    const hook = db.prepare("SELECT url, headers, secret FROM webhooks").get() as { url: string; headers: string; secret: string };
    db.prepare("UPDATE webhooks SET url = ?, headers = ?, secret = ?").run(box.open(hook.url), box.open(hook.headers), box.open(hook.secret));
    db.prepare("DELETE FROM meta WHERE key = 'secrets_key_check'").run();
    // Versions before the refusal of credentials in vsphere.url stored such a URL in the definition.
    db.prepare("UPDATE jobs SET definition = json_set(definition, '$.vsphere.url', ?)").run(`https://vcuser:${URL_PASSWORD}@vcenter.example.com/sdk`);
    db.close();
    fs.rmSync(path.join(dataDir, KEY_FILE));
    const plainCells = sealedCells(dataDir);
    assert.ok(plainCells.some((cell) => cell.includes(VSPHERE_PASSWORD)) && plainCells.some((cell) => cell.includes(QUERY_TOKEN)), "the legacy rows are in clear");
    // Closing the last connection checkpointed the WAL into the database file.
    assert.ok(fs.readFileSync(path.join(dataDir, DATABASE_FILE)).indexOf(URL_PASSWORD) >= 0, "the legacy URL password is in the file before the upgrade");

    const upgraded = await start({ dataDir, args: ALLOW_LOOPBACK });
    assert.ok(upgraded.logs.some((line) => line.includes("encrypted secrets stored in clear by an earlier version") && line.includes('"values":6')),
      upgraded.logs.filter((line) => line.includes("secret")).join("\n"));
    for (const cell of sealedCells(dataDir)) assert.ok(isSealed(cell));
    const stored = new Database(path.join(dataDir, DATABASE_FILE), { readonly: true });
    assert.equal(stored.prepare("SELECT json_extract(definition, '$.vsphere.url') FROM jobs").pluck().get(), "https://vcuser:REDACTED@vcenter.example.com/sdk");
    stored.close();
    // The clear values were overwritten in place (secure_delete) and the WAL emptied: no copy is left in any file.
    assertNoSecretInFiles(dataDir);
    await assertWebhookSecretsWork(upgraded, receiver, webhookId);
    await stop(upgraded);
    assertNoSecretInFiles(dataDir);
  });
});

describe("redaction", () => {
  test("ListWebhooks, GetWebhook, CreateWebhook and the audit log (refused calls included) show URLs redacted; deliveries carry no token", async () => {
    const receiver = await startReceiver();
    const dataDir = tempDir("redaction");
    const daemon = await start({ dataDir, args: ALLOW_LOOPBACK });
    const url = `${receiver.url}?token=${QUERY_TOKEN}&team=ops`;
    const redacted = `${receiver.url}?token=REDACTED&team=REDACTED`;
    const created = await call(daemon, "CreateWebhook", { webhook: { url, events: ["job.created"], headers: { "X-Api-Token": HEADER_VALUE } } });
    assert.equal(created.webhook.url, redacted);
    const id: string = created.webhook.id;
    assert.equal((await call(daemon, "GetWebhook", { id })).webhook.url, redacted);
    assert.deepEqual((await call(daemon, "ListWebhooks", {})).webhooks.map((w: { url: string }) => w.url), [redacted]);

    // An edit form sending back the URL it was shown keeps the stored one (the token still reaches the receiver).
    await call(daemon, "UpdateWebhook", { id, webhook: { url: redacted, events: ["job.created", "job.completed"] } });
    await call(daemon, "TestWebhook", { id });
    const test = await waitFor("the test delivery", () => receiver.requests.find((r) => r.body.includes("webhook.test")), 15_000, 50);
    assert.equal(test.url, `/hook?token=${QUERY_TOKEN}&team=ops`);
    const deliveries = await call(daemon, "ListWebhookDeliveries", { webhookId: id });
    assert.ok(deliveries.deliveries.length > 0);
    assert.ok(!JSON.stringify(deliveries).includes(QUERY_TOKEN), "delivery records carry no token");

    // Refused calls are audited with their request redacted too.
    const refusedUpdate = await postJson(daemon.httpUrl, "UpdateWebhook", { id, webhook: { url: `${receiver.url}?token=${QUERY_TOKEN}`, events: ["no.such.event"] } });
    assert.equal(refusedUpdate.status, 400);
    const userinfoUrl = `https://vcuser:${URL_PASSWORD}@vcenter.example.com/sdk`;
    const withUserinfo = await postJson(daemon.httpUrl, "SubmitJob", {
      definition: { provider: "fake", vm: "web-03?size=10&delayMs=0", vsphere: { url: userinfoUrl, username: "vcuser", password: VSPHERE_PASSWORD } },
    });
    // Refused: the password belongs in vsphere.password.
    assert.equal(withUserinfo.status, 400, JSON.stringify(withUserinfo.body));
    assert.equal(withUserinfo.body.code, "invalid_argument");
    assert.match(withUserinfo.body.message, /vsphere\.url/);
    assert.ok(!JSON.stringify(withUserinfo.body).includes(URL_PASSWORD), "the error does not echo the password");
    const audit = await call(daemon, "ListAuditEvents", {});
    const events = audit.events as { method: string; code: string; requestJson: string }[];
    const text = JSON.stringify(events);
    for (const secret of [QUERY_TOKEN, URL_PASSWORD, HEADER_VALUE, VSPHERE_PASSWORD]) assert.ok(!text.includes(secret), `${secret} in the audit log`);
    const createEvent = events.find((e) => e.method === "CreateWebhook")!;
    assert.match(createEvent.requestJson, /"url":"http:\/\/127\.0\.0\.1:\d+\/hook\?token=REDACTED&team=REDACTED"/);
    const refusedEvent = events.find((e) => e.method === "UpdateWebhook" && e.code !== "OK")!;
    assert.equal(refusedEvent.code, "INVALID_ARGUMENT");
    assert.match(refusedEvent.requestJson, /token=REDACTED/);
    const submitEvent = events.find((e) => e.method === "SubmitJob")!;
    assert.equal(submitEvent.code, "INVALID_ARGUMENT");
    assert.match(submitEvent.requestJson, /"url":"https:\/\/vcuser:REDACTED@vcenter\.example\.com\/sdk"/);
    await stop(daemon);
    assertNoSecretInLogs(daemon, [QUERY_TOKEN, URL_PASSWORD, HEADER_VALUE, VSPHERE_PASSWORD]);
    assertNoSecretInFiles(dataDir, [QUERY_TOKEN, URL_PASSWORD, HEADER_VALUE, VSPHERE_PASSWORD]);
  });
});

describe("an interrupted rotation", () => {
  /** The store opened in this process, its log lines captured. */
  function openStore(dataDir: string) {
    const lines: string[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(line) });
    const store = createSqliteStore({ dataDir, maxLogBytesPerJob: 65_536, logger });
    return { store, lines };
  }
  const webhook = (url: string): Webhook => ({
    id: "wh-1", url, events: [], headers: { "x-api-token": HEADER_VALUE }, secret: WEBHOOK_SECRET, timeoutMs: 1000, maxAttempts: 1,
    enabled: true, source: "api", createTime: 1, updateTime: 1,
  });

  test("a crash after the commit, before the rename: the next start takes encryption.key.new, which opens the database", async () => {
    const dataDir = tempDir("interrupted");
    const first = openStore(dataDir);
    await first.store.webhooks.insert(webhook(`http://127.0.0.1:9/hook?token=${QUERY_TOKEN}`));
    await first.store.close();
    // What rotate does up to its commit: the new key in encryption.key.new, the database re-encrypted with it.
    const oldBox = createSecretBox(readKey(dataDir));
    const newKey = generateKey();
    fs.writeFileSync(path.join(dataDir, `${KEY_FILE}.new`), `${newKey}\n`, { mode: 0o600 });
    const db = openDatabase(dataDir);
    createStoredSecrets(db).reseal(oldBox, createSecretBox(newKey));
    db.close();

    const second = openStore(dataDir);
    assert.ok(second.lines.some((line) => line.includes("encryption key: finished an interrupted rotation")), second.lines.join("\n"));
    assert.equal(readKey(dataDir), newKey);
    assert.ok(!fs.existsSync(path.join(dataDir, `${KEY_FILE}.new`)));
    assert.equal((await second.store.webhooks.get("wh-1"))?.url, `http://127.0.0.1:9/hook?token=${QUERY_TOKEN}`);
    await second.store.close();
  });

  test("a crash before the commit: encryption.key still opens the database and the unused new key is removed", async () => {
    const dataDir = tempDir("interrupted-early");
    const first = openStore(dataDir);
    await first.store.webhooks.insert(webhook("http://127.0.0.1:9/hook"));
    await first.store.close();
    const key = readKey(dataDir);
    fs.writeFileSync(path.join(dataDir, `${KEY_FILE}.new`), `${generateKey()}\n`, { mode: 0o600 });

    const second = openStore(dataDir);
    assert.ok(second.lines.some((line) => line.includes("removed the key of a rotation that did not commit")));
    assert.equal(readKey(dataDir), key);
    assert.ok(!fs.existsSync(path.join(dataDir, `${KEY_FILE}.new`)));
    assert.equal((await second.store.webhooks.get("wh-1"))?.secret, WEBHOOK_SECRET);
    await second.store.close();
  });
});

// Moved from test/tls.test.ts with the encryption at rest; messages now name where the key came from.
describe("secret box", () => {
  const key = generateKey();
  const PASSWORD = VSPHERE_PASSWORD;

  test("round trip; a new IV each time; the v1:<iv>:<ciphertext+tag> format", () => {
    const box = createSecretBox(key);
    const a = box.seal(PASSWORD);
    const b = box.seal(PASSWORD);
    assert.notEqual(a, b);
    assert.match(a, /^v1:[A-Za-z0-9+/]{16}:[A-Za-z0-9+/=]+$/);
    assert.equal(Buffer.from(a.split(":")[1]!, "base64").length, 12);
    assert.ok(isSealed(a));
    assert.ok(!a.includes(PASSWORD));
    assert.equal(box.open(a), PASSWORD);
    assert.equal(box.open(box.seal("")), "");
    assert.equal(box.open(box.seal("pässwörd ✓")), "pässwörd ✓");
  });

  test("tampering and another key are detected, naming the key's source", () => {
    const box = createSecretBox(key, "the key file /data/encryption.key");
    const sealed = box.seal(PASSWORD);
    const [, iv, body] = sealed.split(":") as [string, string, string];
    const flip = (text: string, at: number) => {
      const bytes = Buffer.from(text, "base64");
      bytes[at] = bytes[at]! ^ 1;
      return bytes.toString("base64");
    };
    const bodyLength = Buffer.from(body, "base64").length;
    for (const altered of [`v1:${flip(iv, 0)}:${body}`, `v1:${iv}:${flip(body, 0)}`, `v1:${iv}:${flip(body, bodyLength - 1)}`]) {
      assert.throws(() => box.open(altered), /does not decrypt: it was altered, or encrypted with another key than the key file \/data\/encryption\.key/);
    }
    assert.throws(() => box.open(`v1:${iv}:${Buffer.from(body, "base64").subarray(0, 8).toString("base64")}`), /truncated or damaged/);
    assert.throws(() => box.open("v2:abc:def"), /not in the v1:<iv>:<ciphertext> format/);
    assert.throws(() => createSecretBox(generateKey()).open(sealed), /encrypted with another key than secrets\.encryption_key/);
  });

  test("a key that is not base64 of 32 bytes is refused, naming its source and never echoing the key", () => {
    const short = Buffer.alloc(16, 7).toString("base64");
    assert.throws(() => createSecretBox(short), (err: Error) => /^secrets\.encryption_key: decodes to 16 bytes, expected 32/.test(err.message) && !err.message.includes(short));
    assert.throws(() => createSecretBox("not base64 at all!", "secrets.encryption_key_file /etc/k"), /^Error: secrets\.encryption_key_file \/etc\/k: not base64/);
    assert.throws(() => createSecretBox(""), /secrets\.encryption_key: decodes to 0 bytes/);
  });
});

describe("redactUrl", () => {
  test("userinfo, query values and fragments are redacted; the rest stays recognisable", () => {
    const cases: [string, string][] = [
      ["https://vcuser:PASSWORD@vcenter.example.com/sdk", "https://vcuser:REDACTED@vcenter.example.com/sdk"],
      ["https://hooks.example.com/x?token=abc&team=ops", "https://hooks.example.com/x?token=REDACTED&team=REDACTED"],
      ["https://ghp_tokenAsUser@hooks.example.com/", "https://REDACTED@hooks.example.com/"],
      ["https://hooks.example.com/x?bare-token", "https://hooks.example.com/x?REDACTED"],
      ["https://hooks.example.com/x#fragment", "https://hooks.example.com/x#REDACTED"],
      ["https://hooks.example.com:8443/services/a", "https://hooks.example.com:8443/services/a"],
      ["not a URL, but https://u:pw@host/x and ftp://v:pw2@h inside", "not a URL, but https://u:REDACTED@host/x and ftp://v:REDACTED@h inside"],
    ];
    for (const [url, expected] of cases) assert.equal(redactUrl(url), expected, url);
  });
});
