// Provider "azure" through the API, over the real wire (plain HTTP JSON and grpc-js to a spawned daemon): what
// SubmitJob, schedules, profiles, ListVMs/GetVM and batches do with definition.azure, the config's default
// connection, and where the client secret may go (the sealed secrets column, the token endpoint) and where not
// (responses, streams, audit, webhooks, the log, the definition JSON). The exports themselves are the provider's
// (test/azure-export.test.ts): nothing here depends on how a job's run ends.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import Database from "better-sqlite3";
import pino from "pino";
import type { JobDefinition } from "../src/domain/job.ts";
import type { VirtualMachine, VMQuery } from "../src/domain/vm.ts";
import { selectVMs } from "../src/engine/batch-select.ts";
import type { Provider } from "../src/providers/provider.ts";
import { KEY_FILE } from "../src/store/encryption-key.ts";
import { createSecretBox, isSealed } from "../src/store/secret-box.ts";
import { createSqliteStore, DATABASE_FILE } from "../src/store/sqlite/sqlite-store.ts";
import { postJson, streamJson } from "./support/clients.ts";
import { spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { tempDir } from "./support/temp-dir.ts";
import { waitFor } from "./support/wait-for.ts";
import { startWebhookReceiver, type WebhookReceiver } from "./support/webhook-receiver.ts";

const ROOT = path.resolve(import.meta.dirname, "..");
const SECRET = "s3cr3t-azure-value";
const DEFAULT_SECRET = "d3fault-azure-secret-value";
const TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT = "11111111-2222-3333-4444-555555555555";
const OTHER_CLIENT = "66666666-7777-8888-9999-000000000000";
const SUBSCRIPTION = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

/**
 * A token endpoint (and resource manager) on 127.0.0.1 that refuses every principal as Entra ID does for a
 * wrong secret, recording each request: a job or listing that reaches it fails at once, and what it sent shows
 * which connection the daemon used.
 */
interface Refuser {
  url: string;
  requests: { path: string; body: string }[];
  close(): Promise<void>;
}

async function startRefuser(): Promise<Refuser> {
  const requests: Refuser["requests"] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk.toString()));
    req.on("end", () => {
      requests.push({ path: req.url ?? "", body });
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify({
        error: "invalid_client",
        error_description: "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value.\r\nTrace ID: 0",
        error_codes: [7000215],
      }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

const daemons: DaemonProcess[] = [];
let refuser: Refuser;
let receiver: WebhookReceiver;
before(async () => {
  refuser = await startRefuser();
  receiver = await startWebhookReceiver({ reply: 204 });
});
after(async () => {
  for (const daemon of daemons) await daemon.stop();
  await refuser.close();
  await receiver.close();
});

function configFile(yaml: string): string {
  const file = path.join(tempDir("azure-config"), "hypervisord.yaml");
  fs.writeFileSync(file, yaml);
  return file;
}

/** A daemon without any azure.* default (the test process's HYPERVISORD_AZURE_* dropped), webhooks to loopback allowed. */
async function start(options: { dataDir?: string; outputRoot?: string; yaml?: string } = {}): Promise<DaemonProcess> {
  const env: Record<string, string> = {};
  for (const name of Object.keys(process.env)) if (name.startsWith("HYPERVISORD_AZURE_")) env[name] = "";
  const daemon = await spawnDaemon({
    dataDir: options.dataDir, outputRoot: options.outputRoot, env,
    args: ["--config", configFile(`webhooks:\n  allow_private_targets: true\n${options.yaml ?? ""}`)],
  });
  daemons.push(daemon);
  return daemon;
}

async function call(daemon: DaemonProcess, method: string, body: unknown): Promise<Record<string, any>> {
  const response = await postJson(daemon.httpUrl, method, body);
  assert.equal(response.status, 200, `${method}: ${JSON.stringify(response.body)}`);
  return response.body;
}

/** A refused call: its Connect error code and message. */
async function refused(daemon: DaemonProcess, method: string, body: unknown): Promise<{ code: string; message: string }> {
  const response = await postJson(daemon.httpUrl, method, body);
  assert.notEqual(response.status, 200, `${method} was accepted: ${JSON.stringify(response.body)}`);
  return { code: response.body.code, message: response.body.message };
}

function azure(overrides: Record<string, string> = {}): Record<string, string> {
  return {
    tenantId: TENANT, clientId: CLIENT, clientSecret: SECRET, subscriptionId: SUBSCRIPTION,
    authorityHost: refuser.url, resourceManager: refuser.url, ...overrides,
  };
}

function assertAbsent(text: string, where: string, secrets: readonly string[] = [SECRET]): void {
  for (const secret of secrets) assert.ok(!text.includes(secret), `${secret} appears in ${where}`);
}

describe("azure definitions at submission", () => {
  let daemon: DaemonProcess;
  before(async () => {
    daemon = await start();
  });

  const submit = (definition: Record<string, unknown>) => refused(daemon, "SubmitJob", { definition: { vm: "rg1/web-01", ...definition } });

  test("without a connection and no default: INVALID_ARGUMENT naming definition.azure.subscription_id", async () => {
    const error = await submit({ provider: "azure" });
    assert.equal(error.code, "invalid_argument");
    assert.match(error.message, /definition\.azure\.subscription_id: required: the daemon has no default Azure connection/);
  });

  test("each missing or malformed field is named", async () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ clientSecret: "" }, /definition\.azure\.client_secret: required/],
      [{ tenantId: "" }, /definition\.azure\.tenant_id: required/],
      [{ clientId: "not a guid!" }, /definition\.azure\.client_id: a GUID/],
      [{ authorityHost: "http://login.example.com" }, /definition\.azure\.authority_host: https required \(plain http only on a loopback address\)/],
      [{ resourceManager: "https://user:pw@management.example.com" }, /definition\.azure\.resource_manager: must not carry credentials/],
      [{ resourceGroup: "rg with spaces" }, /definition\.azure\.resource_group: not a resource group name/],
    ];
    for (const [overrides, message] of cases) {
      const error = await submit({ provider: "azure", azure: azure(overrides) });
      assert.equal(error.code, "invalid_argument", JSON.stringify(overrides));
      assert.match(error.message, message);
      assertAbsent(error.message, "an error message");
    }
  });

  test("half a connection (no subscription) is refused rather than silently replaced by the default", async () => {
    const error = await submit({ provider: "azure", azure: { resourceGroup: "rg1" } });
    assert.equal(error.code, "invalid_argument");
    assert.match(error.message, /definition\.azure\.subscription_id: required when azure is set/);
  });

  test("azure on another provider, and vsphere on provider azure, are refused naming the field", async () => {
    for (const provider of ["", "vsphere", "fake"]) {
      const error = await submit({ provider, azure: azure() });
      assert.equal(error.code, "invalid_argument", provider);
      assert.match(error.message, /^definition\.azure: is for provider "azure"/);
    }
    const error = await submit({ provider: "azure", azure: azure(), vsphere: { url: "https://vc.example.com/sdk", username: "u", password: "p" } });
    assert.equal(error.code, "invalid_argument");
    assert.match(error.message, /^definition\.vsphere: is for provider "vsphere"/);
  });

  test("a valid connection is accepted and shown checked (endpoints kept, resource group), without its secret", async () => {
    const { job } = await call(daemon, "SubmitJob", { definition: { provider: "azure", vm: "rg1/web-01", azure: azure({ resourceGroup: "rg1", authorityHost: `${refuser.url}/` }) } });
    assert.equal(job.definition.provider, "azure");
    assert.deepEqual(job.definition.azure, {
      tenantId: TENANT, clientId: CLIENT, clientSecret: "", subscriptionId: SUBSCRIPTION, resourceGroup: "rg1",
      authorityHost: refuser.url, resourceManager: refuser.url,
    });
    const got = await call(daemon, "GetJob", { jobId: job.id });
    assert.deepEqual(got.job.definition.azure, job.definition.azure);
    // Endpoints left empty are shown as the public cloud's.
    const { job: defaults } = await call(daemon, "SubmitJob", { definition: { provider: "azure", vm: "web-02", azure: azure({ authorityHost: "", resourceManager: "" }) } });
    assert.equal(defaults.definition.azure.authorityHost, "https://login.microsoftonline.com");
    assert.equal(defaults.definition.azure.resourceManager, "https://management.azure.com");
    for (const id of [job.id, defaults.id]) await call(daemon, "CancelJob", { jobId: id, reason: "test" }).catch(() => undefined);
  });

  test("SubmitJobs refuses a bad azure definition by index and accepts the good one", async () => {
    const { results } = await call(daemon, "SubmitJobs", {
      definitions: [
        { provider: "azure", vm: "web-01", azure: azure({ subscriptionId: "" }), requestId: "batch-a" },
        { provider: "azure", vm: "web-02", azure: azure(), requestId: "batch-b" },
      ],
    });
    assert.match(results[0].error.message, /definitions\[0\]\.azure\.(subscription_id|tenant_id)|azure\.subscription_id/);
    assert.ok(results[1].job?.id, JSON.stringify(results[1]));
  });

  test("profiles hold no connection", async () => {
    const error = await refused(daemon, "CreateProfile", { profile: { name: "az", settings: { azure: azure() } } });
    assert.equal(error.code, "invalid_argument");
    assert.match(error.message, /^profile\.settings\.azure: belongs to a job, not to a profile/);
    assertAbsent(error.message, "an error message");
  });

  test("ListVMs and GetVM: azure on provider vsphere refused; on provider azure the connection reaches the provider", async () => {
    const list = await refused(daemon, "ListVMs", { provider: "vsphere", azure: azure() });
    assert.equal(list.code, "invalid_argument");
    assert.match(list.message, /^azure: is for provider "azure"/);
    const get = await refused(daemon, "GetVM", { provider: "azure", vm: "web-01", vsphere: { url: "https://vc.example.com/sdk" } });
    assert.match(get.message, /^vsphere: is for provider "vsphere"/);
    // No default: without azure the provider names the missing connection.
    const none = await refused(daemon, "ListVMs", { provider: "azure" });
    assert.equal(none.code, "invalid_argument");
    assert.match(none.message, /azure\.subscription_id: required/);

    // With one: the token request carries this principal and its secret, and Entra ID's refusal comes back as UNAUTHENTICATED.
    const seen = refuser.requests.length;
    for (const [method, body] of [["ListVMs", { provider: "azure", azure: azure() }], ["GetVM", { provider: "azure", vm: "rg1/web-01", azure: azure() }]] as const) {
      const error = await refused(daemon, method, body);
      assert.equal(error.code, "unauthenticated", `${method}: ${error.message}`);
      assertAbsent(error.message, `the ${method} error`);
    }
    const tokenRequests = refuser.requests.slice(seen).filter((r) => r.path === `/${TENANT}/oauth2/v2.0/token`);
    assert.ok(tokenRequests.length >= 2, `token requests: ${JSON.stringify(refuser.requests.slice(seen).map((r) => r.path))}`);
    const form = new URLSearchParams(tokenRequests[0]!.body);
    assert.equal(form.get("client_id"), CLIENT);
    assert.equal(form.get("client_secret"), SECRET);
  });

  test("a batch's selector lists through the batch's own connection (the token endpoint sees its principal)", async () => {
    const seen = refuser.requests.length;
    const error = await refused(daemon, "SubmitJob", { definition: { provider: "azure", vmSelector: { folder: "rg1" }, azure: azure({ clientId: OTHER_CLIENT }) } });
    assert.equal(error.code, "unauthenticated", error.message);
    const tokenRequest = refuser.requests.slice(seen).find((r) => r.path.endsWith("/oauth2/v2.0/token"));
    assert.equal(new URLSearchParams(tokenRequest?.body ?? "").get("client_id"), OTHER_CLIENT);
  });

  test("nothing of the above left the secret in the log", () => {
    assertAbsent(daemon.logs.join("\n"), "the daemon log");
  });
});

describe("the client secret stays in the sealed column", () => {
  test("no response, stream, audit event, webhook, log line or definition JSON holds it; UpdateSchedule keeps it; it survives a restart and a key rotation", async () => {
    const dataDir = path.join(tempDir("azure-secrets"), "data");
    const outputRoot = tempDir("azure-secrets-exports");
    let daemon = await start({ dataDir, outputRoot });
    await call(daemon, "CreateWebhook", { webhook: { url: `${receiver.url}?azure=1`, events: [] } });

    const { job } = await call(daemon, "SubmitJob", { definition: { provider: "azure", vm: "rg1/web-01", requestId: "az-secret-job", azure: azure() } });
    // The job's updates from the start (after_seq 0 replays them), as a watching client gets them.
    const streamed: string[] = [];
    const abort = new AbortController();
    const stream = (async () => {
      try {
        for await (const message of streamJson(daemon.httpUrl, "StreamJobUpdates", { jobIds: [job.id], afterSeq: 0 }, abort.signal)) streamed.push(JSON.stringify(message));
      } catch {
        // aborted
      }
    })();
    const { schedule } = await call(daemon, "CreateSchedule", {
      schedule: { name: "yearly-azure", cron: "0 0 1 1 *", jobTemplate: { provider: "azure", vm: "rg1/db-01", azure: azure() } },
    });
    assert.equal(schedule.jobTemplate.azure.clientSecret ?? "", "");

    const responses = [
      await call(daemon, "GetJob", { jobId: job.id }), await call(daemon, "ListJobs", {}),
      await call(daemon, "GetSchedule", { id: schedule.id }), await call(daemon, "ListSchedules", {}),
    ].map((body) => JSON.stringify(body));
    for (const text of responses) assertAbsent(text, "a response");
    assert.ok(responses[0]!.includes(CLIENT), "the response shows the connection (without the secret)");

    // UpdateSchedule with the template as GetSchedule shows it (no secret): the stored secret stays.
    const shown = (await call(daemon, "GetSchedule", { id: schedule.id })).schedule;
    await call(daemon, "UpdateSchedule", { id: schedule.id, schedule: { jobTemplate: { ...shown.jobTemplate, name: "renamed" } }, updateMask: "jobTemplate" });
    // Another principal without a secret is refused: a secret is never carried over to a different principal.
    const changed = await refused(daemon, "UpdateSchedule", {
      id: schedule.id, schedule: { jobTemplate: { ...shown.jobTemplate, azure: { ...shown.jobTemplate.azure, clientId: OTHER_CLIENT } } }, updateMask: "jobTemplate",
    });
    assert.match(changed.message, /schedule\.job_template\.azure\.client_secret: required/);

    // The job's run is the provider's business; wait until it has at least started, for the webhook and stream to have something.
    await waitFor("webhook deliveries", () => receiver.requests.find((r) => r.body.includes(job.id) && r.body.includes("job.created")), 15_000, 50);
    await waitFor("streamed updates", () => streamed.find((m) => m.includes(job.id)), 15_000, 50);
    abort.abort();
    await stream;
    for (const message of streamed) assertAbsent(message, "StreamJobUpdates");
    for (const request of receiver.requests) assertAbsent(`${request.url} ${JSON.stringify(request.headers)} ${request.body}`, "a webhook delivery");

    // Audit: the SubmitJob, CreateSchedule and UpdateSchedule requests are recorded with the secret blanked.
    const audit = await call(daemon, "ListAuditEvents", { pageSize: 100 });
    assertAbsent(JSON.stringify(audit), "the audit log");
    const submitted = (audit.events as { method: string; requestJson: string }[]).find((e) => e.method === "SubmitJob" && e.requestJson.includes("az-secret-job"));
    assert.ok(submitted, "the SubmitJob is audited");
    assert.equal(JSON.parse(submitted.requestJson).definition.azure.clientSecret, "***");

    await call(daemon, "CancelJob", { jobId: job.id, reason: "test" }).catch(() => undefined);
    assert.equal(await daemon.stop(), 0);
    assertAbsent(daemon.logs.join("\n"), "the daemon log");

    // The files: no secret anywhere in clear; the definitions hold the connection, the secrets columns are sealed.
    for (const name of fs.readdirSync(dataDir)) {
      const file = path.join(dataDir, name);
      if (fs.statSync(file).isFile()) assert.equal(fs.readFileSync(file).indexOf(SECRET), -1, `${SECRET} in clear in ${name}`);
    }
    const db = new Database(path.join(dataDir, DATABASE_FILE), { readonly: true, fileMustExist: true });
    try {
      const row = db.prepare("SELECT definition, secrets FROM jobs WHERE id = ?").get(job.id) as { definition: string; secrets: string };
      assert.equal(JSON.parse(row.definition).azure.clientSecret, "");
      assert.equal(JSON.parse(row.definition).azure.clientId, CLIENT);
      assert.ok(isSealed(row.secrets), "the job's secrets column is sealed");
      const template = db.prepare("SELECT job_template, secrets FROM schedules WHERE id = ?").get(schedule.id) as { job_template: string; secrets: string };
      assert.equal(JSON.parse(template.job_template).azure.clientSecret, "");
      assert.ok(isSealed(template.secrets), "the template's secrets column is sealed");
    } finally {
      db.close();
    }

    // Opened with the key (the store module, in this process): the secrets are there, the template's kept through the update.
    const store = createSqliteStore({ dataDir, maxLogBytesPerJob: 65_536, logger: pino({ level: "silent" }) });
    try {
      assert.equal((await store.getJob(job.id))?.definition.azure?.clientSecret, SECRET);
      const template = (await store.schedules.get(schedule.id))?.jobTemplate;
      assert.equal(template?.name, "renamed", "the update was applied");
      assert.equal(template?.azure?.clientSecret, SECRET);
    } finally {
      await store.close();
    }

    // After a restart, a run of the schedule is a job with the template's connection and secret.
    daemon = await start({ dataDir, outputRoot });
    // The stored secret is compared on resubmission: the same request is the same job, another secret is not.
    const again = await call(daemon, "SubmitJob", { definition: { provider: "azure", vm: "rg1/web-01", requestId: "az-secret-job", azure: azure() } });
    assert.equal(again.created ?? false, false);
    assert.equal(again.job.id, job.id);
    const otherSecret = await refused(daemon, "SubmitJob", { definition: { provider: "azure", vm: "rg1/web-01", requestId: "az-secret-job", azure: azure({ clientSecret: "another-secret" }) } });
    assert.equal(otherSecret.code, "already_exists");
    const triggered = await call(daemon, "TriggerSchedule", { id: schedule.id });
    assert.equal(triggered.job.definition.azure.clientId, CLIENT);
    assertAbsent(JSON.stringify(triggered), "TriggerSchedule's response");
    await call(daemon, "CancelJob", { jobId: triggered.job.id, reason: "test" }).catch(() => undefined);
    assert.equal(await daemon.stop(), 0);
    assertAbsent(daemon.logs.join("\n"), "the daemon log");
    const reopened = createSqliteStore({ dataDir, maxLogBytesPerJob: 65_536, logger: pino({ level: "silent" }) });
    try {
      assert.equal((await reopened.getJob(triggered.job.id))?.definition.azure?.clientSecret, SECRET);
    } finally {
      await reopened.close();
    }

    // Key rotation re-encrypts them with the rest: the new key opens them, the old one no longer does.
    const oldKey = fs.readFileSync(path.join(dataDir, KEY_FILE), "utf8").trim();
    const rotated = spawnSync(process.execPath, ["--import", "tsx", path.join(ROOT, "src/main.ts"), "secrets", "rotate", "--data-dir", dataDir], {
      cwd: ROOT, env: process.env, encoding: "utf8", timeout: 30_000,
    });
    assert.equal(rotated.status, 0, rotated.stderr);
    const rotatedStore = createSqliteStore({ dataDir, maxLogBytesPerJob: 65_536, logger: pino({ level: "silent" }) });
    try {
      assert.equal((await rotatedStore.getJob(job.id))?.definition.azure?.clientSecret, SECRET);
      assert.equal((await rotatedStore.schedules.get(schedule.id))?.jobTemplate.azure?.clientSecret, SECRET);
    } finally {
      await rotatedStore.close();
    }
    const db2 = new Database(path.join(dataDir, DATABASE_FILE), { readonly: true, fileMustExist: true });
    try {
      const sealed = db2.prepare("SELECT secrets FROM jobs WHERE id = ?").pluck().get(job.id) as string;
      assert.throws(() => createSecretBox(oldKey).open(sealed), /does not decrypt/);
    } finally {
      db2.close();
    }
  });
});

describe("the config's default connection", () => {
  test("a daemon with azure.* in its config accepts provider azure jobs without azure, and stores none", async () => {
    const daemon = await start({
      yaml: [
        "azure:", `  tenant_id: ${TENANT}`, `  client_id: ${CLIENT}`, `  client_secret: ${DEFAULT_SECRET}`, `  subscription_id: ${SUBSCRIPTION}`,
        `  authority_host: ${refuser.url}`, `  resource_manager: ${refuser.url}`, "",
      ].join("\n"),
    });
    const { job } = await call(daemon, "SubmitJob", { definition: { provider: "azure", vm: "rg1/web-01" } });
    assert.equal(job.definition.provider, "azure");
    assert.equal(job.definition.azure, undefined, "the default is not copied into the job (it follows the config)");
    // Its own connection still wins, and is checked as without a default.
    const own = await refused(daemon, "SubmitJob", { definition: { provider: "azure", vm: "web-01", azure: azure({ clientSecret: "" }) } });
    assert.match(own.message, /definition\.azure\.client_secret: required/);
    // Discovery uses the default too: its principal and secret reach the token endpoint.
    const seen = refuser.requests.length;
    const error = await refused(daemon, "ListVMs", { provider: "azure" });
    assert.equal(error.code, "unauthenticated", error.message);
    const token = refuser.requests.slice(seen).find((r) => r.path === `/${TENANT}/oauth2/v2.0/token`);
    assert.equal(new URLSearchParams(token?.body ?? "").get("client_secret"), DEFAULT_SECRET);
    await call(daemon, "CancelJob", { jobId: job.id, reason: "test" }).catch(() => undefined);
    assert.equal(await daemon.stop(), 0);
    assertAbsent(daemon.logs.join("\n"), "the daemon log", [DEFAULT_SECRET]);
  });
});

describe("batches over Azure paths (selectVMs, in process)", () => {
  const vm = (path: string): VirtualMachine => ({
    name: path.split("/").pop()!, path, moref: `/subscriptions/${SUBSCRIPTION}/resourceGroups/${path.split("/")[0]}/providers/Microsoft.Compute/virtualMachines/x`,
    uuid: "", instanceUuid: "", powerState: "poweredOn", guestOs: "Linux", numCpu: 2, memoryMb: 4096, firmware: "bios", disks: [], nics: [],
  });
  const queries: VMQuery[] = [];
  const provider: Provider = {
    name: "azure",
    resumable: true,
    listVMs: async (query) => {
      queries.push(query);
      return [vm("rg1/web-01"), vm("rg1/db-01"), vm("rg10/web-02"), vm("rg2/web-03")];
    },
    export: async () => assert.fail("not exported here"),
  };
  const connection = { tenantId: TENANT, clientId: CLIENT, clientSecret: SECRET, subscriptionId: SUBSCRIPTION, resourceGroup: "", authorityHost: "", resourceManager: "" };
  const definitionOf = (selector: JobDefinition["vmSelector"]): JobDefinition => ({
    name: "batch", provider: "azure", vm: "", azure: connection, vmSelector: selector, outputDir: "/tmp", format: "ovf", compress: false, compressionLevel: 6,
    parallelDownloads: 4, bandwidthLimit: 0, powerOff: false, priority: "normal", labels: {},
  });

  test("folder /rg1 selects the VMs of resource group rg1 (paths rg1/name, without a leading slash), and the batch's connection is the listing's", async () => {
    const picked = await selectVMs(provider, definitionOf({ folder: "/rg1", recursive: false, powerStates: [] }), "definition.vm_selector");
    assert.deepEqual(picked.map((v) => v.path), ["rg1/db-01", "rg1/web-01"]);
    assert.equal(queries.at(-1)?.azure, connection);
    assert.equal(queries.at(-1)?.folder, "/rg1");
    // Recursive (a resource group has no subfolders: the same VMs); the glob goes to the provider, which filters by name.
    const recursive = await selectVMs(provider, definitionOf({ folder: "/rg1", recursive: true, nameGlob: "web-*", powerStates: ["poweredOn"] }), "definition.vm_selector");
    assert.deepEqual(recursive.map((v) => v.path), ["rg1/db-01", "rg1/web-01"]);
    assert.equal(queries.at(-1)?.namePattern, "web-*");
    await assert.rejects(selectVMs(provider, definitionOf({ folder: "/rg3", recursive: true, powerStates: [] }), "definition.vm_selector"),
      /definition\.vm_selector: matches no VM \(folder "\/rg3"/);
  });
});
