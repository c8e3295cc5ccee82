import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { AzureConnection } from "../src/domain/job.ts";
import { HypervisordError } from "../src/errors.ts";
import { createArmClient, type ArmClient } from "../src/providers/azure/arm-client.ts";
import { createSnapshot, deleteSnapshot, grantAccess, revokeAccess } from "../src/providers/azure/compute.ts";
import { findVm, getVm, listVms } from "../src/providers/azure/discovery.ts";
import { retryAfterMs } from "../src/providers/azure/retry-after.ts";
import { createTokenCache, type TokenCache } from "../src/providers/azure/token.ts";
import { startAzureStandin, type AzureStandin } from "./support/azure-standin.ts";
import { startAzurite, type Azurite } from "./support/azurite.ts";

const SECRET = "s3cr3t-Value~with.chars_0123456789";
const TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT = "11111111-2222-3333-4444-555555555555";
const SUB = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

type Handler = (req: http.IncomingMessage, body: string, res: http.ServerResponse) => void;

interface MockServer {
  url: string;
  handle: Handler;
  tokenRequests: number;
  tokenForms: URLSearchParams[];
  armRequests: { method: string; url: string; authorization: string }[];
  expiresIn: number;
  tokenAnswer?: (res: http.ServerResponse) => boolean;
  close(): Promise<void>;
}

/** One server plays the token endpoint and ARM; each test sets `handle` for the ARM side. */
async function startMock(): Promise<MockServer> {
  const sockets = new Set<import("node:net").Socket>();
  const mock: MockServer = {
    url: "",
    handle: (_req, _body, res) => json(res, 500, { error: { code: "NotScripted", message: "no handler" } }),
    tokenRequests: 0,
    tokenForms: [],
    armRequests: [],
    expiresIn: 3600,
    close: async () => {},
  };
  let tokenSerial = 0;
  const server = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => (body += chunk));
    req.on("end", () => {
      if (req.url?.endsWith("/oauth2/v2.0/token")) {
        mock.tokenRequests++;
        const form = new URLSearchParams(body);
        mock.tokenForms.push(form);
        if (mock.tokenAnswer?.(res)) return;
        if (form.get("client_secret") !== SECRET) {
          return json(res, 401, {
            error: "invalid_client",
            error_description: `AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${CLIENT}'. (got ${form.get("client_secret")})\r\nTrace ID: 0000\r\nCorrelation ID: 1111`,
            error_codes: [7000215],
          });
        }
        // Served slowly, so that concurrent callers overlap with one request in flight.
        return setTimeout(() => json(res, 200, { token_type: "Bearer", expires_in: mock.expiresIn, access_token: `token-${++tokenSerial}` }), 50);
      }
      mock.armRequests.push({ method: req.method!, url: req.url!, authorization: req.headers.authorization ?? "" });
      mock.handle(req, body, res);
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  mock.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  mock.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return mock;
}

function json(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = body === undefined ? "" : JSON.stringify(body);
  res.writeHead(status, { ...(text ? { "content-type": "application/json" } : {}), ...headers });
  res.end(text);
}

function connectionOf(mock: { url: string }, overrides: Partial<AzureConnection> = {}): AzureConnection {
  return { tenantId: TENANT, clientId: CLIENT, clientSecret: SECRET, subscriptionId: SUB, resourceGroup: "", authorityHost: mock.url, resourceManager: mock.url, ...overrides };
}

function code(expected: string, includes: (string | RegExp)[] = [], excludes: string[] = []) {
  return (err: unknown) => {
    assert.ok(err instanceof HypervisordError, `not a HypervisordError: ${String(err)}`);
    assert.equal(err.code, expected, err.message);
    for (const part of includes) {
      if (typeof part === "string") assert.ok(err.message.includes(part), `"${part}" missing in: ${err.message}`);
      else assert.match(err.message, part);
    }
    for (const part of excludes) assert.ok(!err.message.includes(part), `"${part}" must not be in: ${err.message}`);
    return true;
  };
}

const signal = () => AbortSignal.timeout(20_000);

describe("token cache and ARM client against a scripted server", () => {
  let mock: MockServer;
  const warnings: { obj: object; msg: string }[] = [];
  const logger = { warn: (obj: object, msg: string) => warnings.push({ obj, msg }) };
  const fast = { backoff: { initialMs: 10, maxMs: 20 }, pollIntervalMs: 10, logger };
  let arm: ArmClient;

  before(async () => {
    mock = await startMock();
  });
  after(async () => {
    await mock.close();
  });

  const reset = () => {
    mock.tokenRequests = 0;
    mock.tokenForms = [];
    mock.armRequests = [];
    mock.expiresIn = 3600;
    mock.tokenAnswer = undefined;
    warnings.length = 0;
    arm = createArmClient(connectionOf(mock), createTokenCache(), fast);
  };

  test("token: client credentials form, one request for concurrent callers, cached until 5 min before expiry", async () => {
    reset();
    const tokens = createTokenCache();
    const c = connectionOf(mock);
    const got = await Promise.all([1, 2, 3].map(() => tokens.token(c, signal())));
    assert.deepEqual(new Set(got).size, 1);
    assert.equal(mock.tokenRequests, 1);
    const form = mock.tokenForms[0]!;
    assert.equal(form.get("grant_type"), "client_credentials");
    assert.equal(form.get("client_id"), CLIENT);
    assert.equal(form.get("scope"), `${mock.url}/.default`);
    assert.equal(await tokens.token(c, signal()), got[0]);
    assert.equal(mock.tokenRequests, 1);
    // Another secret is another identity: its own token.
    await assert.rejects(tokens.token({ ...c, clientSecret: "other" }, signal()), code("UNAUTHENTICATED"));
    assert.equal(mock.tokenRequests, 2);

    // A token that expires in under 5 minutes is never reused.
    mock.expiresIn = 200;
    const short = createTokenCache();
    const a = await short.token(c, signal());
    const b = await short.token(c, signal());
    assert.notEqual(a, b);
    assert.equal(mock.tokenRequests, 4);
  });

  test("token: a wrong secret is UNAUTHENTICATED with AAD's first line and never the secret", async () => {
    reset();
    const bad = "wr0ng-Secret-Value-42";
    const tokens = createTokenCache();
    await assert.rejects(tokens.token(connectionOf(mock, { clientSecret: bad }), signal()),
      code("UNAUTHENTICATED", ["AADSTS7000215", "invalid_client", CLIENT], [bad, "Trace ID"]));
  });

  test("token: a token endpoint that fails with 503 is UNAVAILABLE after its tries, a dead one names the host", async () => {
    reset();
    mock.tokenAnswer = (res) => (json(res, 503, { error: "temporarily_unavailable" }, { "retry-after": "0" }), true);
    await assert.rejects(createTokenCache({ maxTries: 2 }).token(connectionOf(mock), signal()), (err) => code("UNAVAILABLE")(err) && (err as HypervisordError).retryable);
    assert.equal(mock.tokenRequests, 2);
    const dead = await startMock();
    await dead.close();
    const host = new URL(dead.url).host;
    await assert.rejects(createTokenCache({ maxTries: 1 }).token(connectionOf(dead), signal()), code("UNAVAILABLE", [host]));
  });

  test("arm: the token is sent, the api-version added, 2xx bodies returned", async () => {
    reset();
    mock.handle = (req, _body, res) => json(res, 200, { seen: req.url });
    const got = await arm.request<{ seen: string }>("GET", `/subscriptions/${SUB}/resourceGroups/rg1`, { apiVersion: "2021-04-01", signal: signal(), what: "reading rg1" });
    assert.equal(got.status, 200);
    assert.equal(got.body.seen, `/subscriptions/${SUB}/resourceGroups/rg1?api-version=2021-04-01`);
    assert.match(mock.armRequests[0]!.authorization, /^Bearer token-\d+$/);
  });

  test("arm: 429 with Retry-After is retried and warned once; persistent 503 becomes UNAVAILABLE", async () => {
    reset();
    let calls = 0;
    mock.handle = (_req, _body, res) => (++calls <= 2 ? json(res, 429, { error: { code: "TooManyRequests", message: "slow down" } }, { "retry-after": "0" }) : json(res, 200, { ok: true }));
    const started = Date.now();
    const got = await arm.request<{ ok: boolean }>("GET", "/subscriptions/x", { signal: signal(), what: "reading x" });
    assert.equal(got.body.ok, true);
    assert.equal(calls, 3);
    assert.equal(warnings.length, 1);
    assert.ok(Date.now() - started < 5000);

    // Retry-After 1 is honoured (about a second between the two tries).
    calls = 0;
    const times: number[] = [];
    mock.handle = (_req, _body, res) => (times.push(Date.now()), ++calls === 1 ? json(res, 429, {}, { "retry-after": "1" }) : json(res, 200, {}));
    await arm.request("GET", "/subscriptions/x", { signal: signal(), what: "reading x" });
    assert.ok(times[1]! - times[0]! >= 900, `waited ${times[1]! - times[0]!} ms`);

    reset();
    calls = 0;
    mock.handle = (_req, _body, res) => (calls++, json(res, 503, { error: { code: "ServiceUnavailable", message: "busy" } }, { "retry-after": "0" }));
    await assert.rejects(arm.request("GET", "/subscriptions/x", { signal: signal(), what: "reading x" }),
      (err) => code("UNAVAILABLE", ["reading x", "503", "6 tries"])(err) && (err as HypervisordError).retryable);
    assert.equal(calls, 6);
  });

  test("arm: 403 AuthorizationFailed is PERMISSION_DENIED naming the action and what was done", async () => {
    reset();
    mock.handle = (_req, _body, res) => json(res, 403, { error: { code: "AuthorizationFailed", message: `The client '${CLIENT}' with object id '${CLIENT}' does not have authorization to perform action 'Microsoft.Compute/snapshots/write' over scope '/subscriptions/${SUB}/resourceGroups/rg1/providers/Microsoft.Compute/snapshots/hypervisord-x-osdisk' or the scope is invalid. If access was recently granted, please refresh your credentials.` } });
    await assert.rejects(arm.request("PUT", `/subscriptions/${SUB}/resourceGroups/rg1/providers/Microsoft.Compute/snapshots/hypervisord-x-osdisk`, { body: {}, signal: signal(), what: "creating snapshot hypervisord-x-osdisk in rg1" }),
      code("PERMISSION_DENIED", ["creating snapshot hypervisord-x-osdisk in rg1: the service principal lacks permission for Microsoft.Compute/snapshots/write (AuthorizationFailed"]));
  });

  test("arm: 404 is NOT_FOUND, 409 and 400 OperationNotAllowed FAILED_PRECONDITION, each with what and ARM's code", async () => {
    reset();
    let answer: [number, string] = [404, "ResourceNotFound"];
    mock.handle = (_req, _body, res) => json(res, answer[0], { error: { code: answer[1], message: `it says ${answer[1]}` } });
    const call = () => arm.request("GET", "/subscriptions/x/resourceGroups/rg9", { signal: signal(), what: "reading vm1 in rg9" });
    await assert.rejects(call(), code("NOT_FOUND", ["reading vm1 in rg9", "ResourceNotFound"]));
    answer = [404, "ResourceGroupNotFound"];
    await assert.rejects(call(), code("NOT_FOUND", ["ResourceGroupNotFound"]));
    answer = [409, "Conflict"];
    await assert.rejects(call(), code("FAILED_PRECONDITION", ["reading vm1 in rg9", "Conflict"]));
    answer = [400, "OperationNotAllowed"];
    await assert.rejects(call(), code("FAILED_PRECONDITION", ["OperationNotAllowed", "it says"]));
  });

  test("arm: a 401 InvalidAuthenticationToken drops the token and retries once; a second one is UNAUTHENTICATED", async () => {
    reset();
    let calls = 0;
    mock.handle = (_req, _body, res) => (++calls === 1 ? json(res, 401, { error: { code: "ExpiredAuthenticationToken", message: "The access token expiry UTC time is earlier than current UTC time." } }) : json(res, 200, {}));
    await arm.request("GET", "/subscriptions/x", { signal: signal(), what: "reading x" });
    assert.equal(mock.tokenRequests, 2);
    assert.notEqual(mock.armRequests[0]!.authorization, mock.armRequests[1]!.authorization);

    reset();
    mock.handle = (_req, _body, res) => json(res, 401, { error: { code: "InvalidAuthenticationToken", message: "The access token is invalid." } });
    await assert.rejects(arm.request("GET", "/subscriptions/x", { signal: signal(), what: "reading x" }), code("UNAUTHENTICATED", ["reading x", "InvalidAuthenticationToken"]));
    assert.equal(mock.armRequests.length, 2);
  });

  test("arm: a URL on another host is refused before the token is sent; a dead ARM is UNAVAILABLE naming the host", async () => {
    reset();
    await assert.rejects(arm.request("GET", "https://evil.example.com/steal?x", { signal: signal(), what: "following nextLink" }), code("FAILED_PRECONDITION", ["evil.example.com"]));
    assert.equal(mock.armRequests.length, 0);
    const dead = await startMock();
    await dead.close();
    const deadArm = createArmClient(connectionOf(dead, { authorityHost: mock.url }), createTokenCache(), { ...fast, maxTries: 2 });
    await assert.rejects(deadArm.request("GET", "/subscriptions/x", { signal: signal(), what: "reading x" }), code("UNAVAILABLE", ["reading x", new URL(dead.url).host]));
  });

  test("arm: an ARM that does not answer within the timeout is UNAVAILABLE naming the host; a GET is tried again", async () => {
    reset();
    let calls = 0;
    mock.handle = (_req, _body, res) => {
      // The first answer never comes (the socket is closed by mock.close() at the latest).
      if (++calls === 1) return;
      json(res, 200, { second: true });
    };
    const slow = createArmClient(connectionOf(mock), createTokenCache(), { ...fast, timeoutMs: 300 });
    assert.deepEqual((await slow.request("GET", "/subscriptions/x", { signal: signal(), what: "reading x" })).body, { second: true });
    calls = 0;
    mock.handle = () => {};
    const once = createArmClient(connectionOf(mock), createTokenCache(), { ...fast, timeoutMs: 300, maxTries: 2 });
    await assert.rejects(once.request("GET", "/subscriptions/x", { signal: signal(), what: "reading x" }),
      (err) => code("UNAVAILABLE", ["reading x", new URL(mock.url).host, "did not answer"])(err) && (err as HypervisordError).retryable);
    assert.equal(mock.armRequests.length, 4);
  });

  test("lro: POST polls Azure-AsyncOperation (Retry-After 0) until Succeeded, then takes the Location's body", async () => {
    reset();
    let polls = 0;
    mock.handle = (req, body, res) => {
      const url = new URL(req.url!, mock.url);
      if (req.method === "POST" && url.pathname.endsWith("/beginGetAccess")) {
        assert.deepEqual(JSON.parse(body), { access: "Read", durationInSeconds: 600 });
        return json(res, 202, undefined, { "azure-asyncoperation": `${mock.url}/subscriptions/${SUB}/providers/Microsoft.Compute/locations/westeurope/operations/op1?api-version=2024-03-02`, location: `${mock.url}/subscriptions/${SUB}/providers/Microsoft.Compute/locations/westeurope/operations/op1?monitor=true&api-version=2024-03-02`, "retry-after": "0" });
      }
      if (url.searchParams.get("monitor") === "true") return json(res, 200, { accessSAS: "https://md.blob/abc?sig=zzz" });
      if (url.pathname.endsWith("/operations/op1")) {
        return ++polls < 3 ? json(res, 200, { name: "op1", status: "InProgress" }, { "retry-after": "0" }) : json(res, 200, { name: "op1", status: "Succeeded", properties: { output: { accessSAS: "from-output" } } });
      }
      json(res, 500, {});
    };
    const out = await arm.longRunning<{ accessSAS: string }>("POST", `/subscriptions/${SUB}/resourceGroups/rg1/providers/Microsoft.Compute/disks/d1/beginGetAccess`, { apiVersion: "2024-03-02", body: { access: "Read", durationInSeconds: 600 }, signal: signal(), what: "granting access to d1" });
    assert.equal(out.accessSAS, "https://md.blob/abc?sig=zzz");
    assert.equal(polls, 3);
  });

  test("lro: PUT polls, then GETs the resource; a Failed operation is the mapped ARM error with what", async () => {
    reset();
    let state = "ok";
    mock.handle = (req, _body, res) => {
      const url = new URL(req.url!, mock.url);
      if (req.method === "PUT") return json(res, 201, { name: "s1", properties: { provisioningState: "Creating" } }, { "azure-asyncoperation": `${mock.url}/operations/op2`, "retry-after": "0" });
      if (url.pathname === "/operations/op2") {
        return state === "ok" ? json(res, 200, { status: "Succeeded" }) : json(res, 200, { status: "Failed", error: { code: "AuthorizationFailed", message: "does not have authorization to perform action 'Microsoft.Compute/disks/beginGetAccess/action' over scope '/x'" } });
      }
      if (req.method === "GET") return json(res, 200, { id: url.pathname, properties: { provisioningState: "Succeeded" } });
      json(res, 500, {});
    };
    const path = `/subscriptions/${SUB}/resourceGroups/rg1/providers/Microsoft.Compute/snapshots/s1`;
    const made = await arm.longRunning<{ id: string }>("PUT", path, { apiVersion: "2024-03-02", body: {}, signal: signal(), what: "creating snapshot s1 in rg1" });
    assert.equal(made.id, path);
    assert.equal(mock.armRequests.at(-1)!.method, "GET");
    assert.match(mock.armRequests.at(-1)!.url, /api-version=2024-03-02/);
    state = "fail";
    await assert.rejects(arm.longRunning("PUT", path, { apiVersion: "2024-03-02", body: {}, signal: signal(), what: "creating snapshot s1 in rg1" }),
      code("PERMISSION_DENIED", ["creating snapshot s1 in rg1", "Microsoft.Compute/disks/beginGetAccess/action"]));
  });

  test("lro: a PUT answered without an operation header is followed through provisioningState", async () => {
    reset();
    let gets = 0;
    mock.handle = (req, _body, res) => {
      if (req.method === "PUT") return json(res, 201, { id: "s2", properties: { provisioningState: "Creating" } }, { "retry-after": "0" });
      return json(res, 200, { id: "s2", properties: { provisioningState: ++gets < 3 ? "Updating" : "Succeeded", gets } });
    };
    const made = await arm.longRunning<{ properties: { gets: number } }>("PUT", "/subscriptions/x/s2", { apiVersion: "2024-03-02", body: {}, signal: signal(), what: "creating s2" });
    assert.equal(made.properties.gets, 3);
    mock.handle = (req, _body, res) => json(res, 200, { id: "s3", properties: { provisioningState: req.method === "PUT" ? "Creating" : "Failed" } });
    await assert.rejects(arm.longRunning("PUT", "/subscriptions/x/s3", { apiVersion: "2024-03-02", body: {}, signal: signal(), what: "creating s3" }), code("FAILED_PRECONDITION", ["creating s3", "Failed"]));
  });

  test("lro: DELETE polled through Location (202 then 204); an abort stops the polling at once", async () => {
    reset();
    let polls = 0;
    mock.handle = (req, _body, res) => {
      const url = new URL(req.url!, mock.url);
      if (req.method === "DELETE") return json(res, 202, undefined, { location: `${mock.url}/operations/op3`, "retry-after": "0" });
      if (url.pathname === "/operations/op3") return ++polls < 2 ? json(res, 202, undefined, { "retry-after": "0" }) : json(res, 204, undefined);
      json(res, 500, {});
    };
    assert.equal(await arm.longRunning("DELETE", "/subscriptions/x/snap", { apiVersion: "2024-03-02", signal: signal(), what: "deleting x" }), undefined);
    assert.equal(polls, 2);

    // An operation that never ends (Retry-After 30): the caller's abort ends the wait.
    mock.handle = (req, _body, res) => (req.method === "DELETE" ? json(res, 202, undefined, { location: `${mock.url}/operations/op4`, "retry-after": "30" }) : json(res, 202, undefined, { "retry-after": "30" }));
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => controller.abort(new Error("stop now")), 200);
    await assert.rejects(arm.longRunning("DELETE", "/subscriptions/x/snap", { apiVersion: "2024-03-02", signal: controller.signal, what: "deleting x" }), /stop now/);
    assert.ok(Date.now() - started < 5000);
  });
});

test("Retry-After: seconds, an HTTP date, absent or unreadable", () => {
  const now = Date.parse("2026-12-02T20:00:00Z");
  assert.equal(retryAfterMs("0", now), 0);
  assert.equal(retryAfterMs(" 7 ", now), 7000);
  assert.equal(retryAfterMs("Wed, 02 Dec 2026 20:00:30 GMT", now), 30_000);
  assert.equal(retryAfterMs("Wed, 02 Dec 2026 19:00:00 GMT", now), 0);
  assert.equal(retryAfterMs(null, now), undefined);
  assert.equal(retryAfterMs("soon", now), undefined);
});

test("discovery: a VM whose disk and NIC are gone (404) still lists with what the VM says; unmanaged disks are left out", async () => {
  const mock = await startMock();
  try {
    const rg = `/subscriptions/${SUB}/resourceGroups/rgx`;
    const vm = {
      id: `${rg}/providers/Microsoft.Compute/virtualMachines/old`, name: "old", location: "eastus",
      properties: {
        vmId: "0f0e0d0c-0000-4000-8000-000000000001",
        hardwareProfile: { vmSize: "Standard_Unknown" },
        storageProfile: {
          osDisk: { osType: "Windows", name: "old-os", diskSizeGB: 2, managedDisk: { id: `${rg}/providers/Microsoft.Compute/disks/old-os`, storageAccountType: "Premium_LRS" } },
          dataDisks: [
            { lun: 3, name: "classic", diskSizeGB: 1, vhd: { uri: "https://acct.blob.core.windows.net/vhds/classic.vhd" } },
            { lun: 1, name: "old-data", diskSizeGB: 1, managedDisk: { id: `${rg}/providers/Microsoft.Compute/disks/old-data`, storageAccountType: "Standard_LRS" } },
          ],
        },
        networkProfile: { networkInterfaces: [{ id: `${rg}/providers/Microsoft.Network/networkInterfaces/old-nic` }] },
      },
    };
    mock.handle = (req, _body, res) => {
      const path = new URL(req.url!, mock.url).pathname;
      // "ghost" is deleted between the listing and the read of its instance view.
      if (path.endsWith("/virtualMachines")) return json(res, 200, { value: [vm, { ...vm, id: vm.id.replace(/old$/, "ghost"), name: "ghost" }] });
      if (path.endsWith("/virtualMachines/old")) return json(res, 200, { ...vm, properties: { ...vm.properties, instanceView: { statuses: [{ code: "PowerState/deallocating" }] } } });
      if (path.endsWith("/disks/old-data")) return json(res, 200, { sku: { name: "StandardSSD_LRS" }, properties: { diskSizeBytes: 1536 * 1024 * 1024, diskState: "Reserved" } });
      if (path.endsWith("/vmSizes")) return json(res, 200, { value: [{ name: "Standard_B1s", numberOfCores: 1, memoryInMB: 1024 }] });
      json(res, 404, { error: { code: "ResourceNotFound", message: `The Resource '${path}' was not found.` } });
    };
    const arm = createArmClient(connectionOf(mock), createTokenCache(), {});
    const all = await listVms(arm, {}, signal());
    assert.deepEqual(all.map((vm) => vm.name), ["old"]);
    const listed = all[0]!;
    assert.equal(listed.path, "rgx/old");
    assert.equal(listed.powerState, "poweredOff");
    assert.equal(listed.guestOs, "Windows");
    assert.equal(listed.numCpu, 0);
    assert.deepEqual(listed.disks.map((d) => [d.label, d.capacityBytes, d.sku]), [["OS disk", 2 * 1024 ** 3, "Premium_LRS"], ["Data disk (LUN 1)", 1536 * 1024 * 1024, "StandardSSD_LRS"]]);
    assert.deepEqual(listed.nics, [{ label: "old-nic", network: "", macAddress: "" }]);
    const found = await findVm(arm, "old", signal());
    assert.equal(found.disks[0]!.diskState, undefined);
    assert.equal(found.disks[1]!.diskState, "Reserved");
  } finally {
    await mock.close();
  }
});

describe("control plane against the Azure stand-in", () => {
  let azurite: Azurite;
  let standin: AzureStandin;
  let arm: ArmClient;
  let tokens: TokenCache;
  const warnings: string[] = [];
  const rg1 = "rg1";
  const MiB = 1024 * 1024;

  before(async () => {
    azurite = await startAzurite();
    standin = await startAzureStandin({ azurite, pageSize: 2 });
    await standin.addDisk({ name: "web-os", resourceGroup: rg1, sizeBytes: 4 * MiB, sku: "Premium_LRS", hyperVGeneration: "V2", osType: "Linux", writes: [{ offset: 0, data: Buffer.alloc(4096, 0x11) }] });
    await standin.addDisk({ name: "web-data", resourceGroup: rg1, sizeBytes: 8 * MiB, sku: "StandardSSD_LRS", writes: [{ offset: 2 * MiB, data: Buffer.alloc(8192, 0x22) }] });
    await standin.addVm({ name: "web", resourceGroup: rg1, location: "westeurope", size: "Standard_D2s_v3", powerState: "running", osDisk: "web-os",
      dataDisks: [{ lun: 0, disk: "web-data" }], nics: [{ name: "web-nic", macAddress: "00-0D-3A-11-22-33", vnet: "vnet1", subnet: "default" }] });
    await standin.addDisk({ name: "db-os", resourceGroup: rg1, sizeBytes: 2 * MiB, sku: "Standard_LRS", hyperVGeneration: "V1", osType: "Windows" });
    await standin.addVm({ name: "db", resourceGroup: rg1, location: "westeurope", size: "Standard_E2s_v3", powerState: "deallocated", osDisk: "db-os" });
    // The same name in another group: a bare name is ambiguous subscription-wide.
    await standin.addDisk({ name: "web-os", resourceGroup: "rg2", sizeBytes: 2 * MiB, sku: "Premium_LRS", osType: "Linux" });
    await standin.addVm({ name: "web", resourceGroup: "rg2", location: "northeurope", size: "Standard_B2s", powerState: "stopped", osDisk: "web-os", securityType: "TrustedLaunch" });
    tokens = createTokenCache();
    arm = createArmClient(standin.connection(), tokens, { logger: { warn: (_o, msg) => warnings.push(msg) }, pollIntervalMs: 20 });
  });
  after(async () => {
    await standin?.close();
    await azurite?.stop();
  });

  test("one token serves many calls; a wrong secret is UNAUTHENTICATED without the secret", async () => {
    const fresh = createArmClient(standin.connection(), createTokenCache(), {});
    const before = standin.counts.tokenRequests;
    const armBefore = standin.counts.armRequests;
    await Promise.all([listVms(fresh, {}, signal()), getVm(fresh, "rg1/web", signal())]);
    await getVm(fresh, "rg1/db", signal());
    await listVms(fresh, { folder: "rg1" }, signal());
    assert.equal(standin.counts.tokenRequests - before, 1);
    assert.ok(standin.counts.armRequests - armBefore > 10);

    const bad = "Not-The-Secret-8Q~x";
    const wrong = createArmClient(standin.connection({ clientSecret: bad }), createTokenCache(), {});
    await assert.rejects(listVms(wrong, {}, signal()), code("UNAUTHENTICATED", [standin.clientId], [bad, standin.clientSecret]));
  });

  test("list: the subscription over several pages, a resource group, a name glob and a power state", async () => {
    const pagesBefore = standin.requests.filter((r) => /virtualMachines$/i.test(r.path)).length;
    const seen = standin.requests.length;
    const all = await listVms(arm, {}, signal());
    assert.deepEqual(all.map((vm) => vm.path), ["rg1/db", "rg1/web", "rg2/web"]);
    // Subscription-wide, the power states come from a statusOnly listing, not from a GET per VM.
    assert.deepEqual(standin.requests.slice(seen).filter((r) => /\/virtualMachines\/[^/]+$/i.test(r.path)), []);
    assert.deepEqual(all.map((vm) => vm.powerState), ["poweredOff", "poweredOn", "poweredOff"]);
    // pageSize 2: the listing followed a nextLink.
    assert.ok(standin.requests.filter((r) => /virtualMachines$/i.test(r.path)).length - pagesBefore >= 2);
    assert.deepEqual((await listVms(arm, { folder: "rg1" }, signal())).map((vm) => vm.path), ["rg1/db", "rg1/web"]);
    assert.deepEqual((await listVms(arm, { namePattern: "W?b" }, signal())).map((vm) => vm.path), ["rg1/web", "rg2/web"]);
    assert.deepEqual((await listVms(arm, { powerState: "poweredOff" }, signal())).map((vm) => vm.path), ["rg1/db", "rg2/web"]);
    assert.deepEqual((await listVms(arm, { powerState: "poweredOn" }, signal())).map((vm) => vm.path), ["rg1/web"]);
    // A connection limited to rg2 sees nothing of rg1.
    const limited = createArmClient(standin.connection({ resourceGroup: "rg2" }), tokens, {});
    assert.deepEqual((await listVms(limited, {}, signal())).map((vm) => vm.path), ["rg2/web"]);
    assert.deepEqual(await listVms(limited, { folder: "rg1" }, signal()), []);
  });

  test("get: a VM with 2 disks and a NIC mapped right (size, firmware, SKU, sizes, MAC, vnet/subnet)", async () => {
    const vm = await getVm(arm, "rg1/web", signal());
    const id = `/subscriptions/${standin.subscriptionId}/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/web`;
    assert.equal(vm.moref.toLowerCase(), id.toLowerCase());
    assert.equal(vm.name, "web");
    assert.equal(vm.path, "rg1/web");
    assert.match(vm.uuid, /^[0-9a-f-]{36}$/i);
    assert.equal(vm.powerState, "poweredOn");
    assert.equal(vm.guestOs, "Linux");
    assert.equal(vm.numCpu, 2);
    assert.equal(vm.memoryMb, 8192);
    assert.equal(vm.firmware, "efi");
    assert.equal(vm.size, "Standard_D2s_v3");
    assert.equal(vm.location, "westeurope");
    assert.deepEqual(vm.disks.map((d) => [d.label, d.capacityBytes, d.sku]), [["OS disk", 4 * MiB, "Premium_LRS"], ["Data disk (LUN 0)", 8 * MiB, "StandardSSD_LRS"]]);
    assert.match(vm.disks[0]!.file, /\/Microsoft\.Compute\/disks\/web-os$/i);
    assert.deepEqual(vm.nics, [{ label: "web-nic", network: "vnet1/default", macAddress: "00:0d:3a:11:22:33" }]);

    const db = await findVm(arm, "rg1/db", signal());
    assert.equal(db.powerState, "poweredOff");
    assert.equal(db.firmware, "bios");
    assert.equal(db.osType, "Windows");
    assert.equal(db.memoryMiB, 16384);
    assert.equal(db.disks[0]!.diskState, "Reserved");
    assert.match(db.nics[0]?.macAddress ?? "", /^00:0d:3a(:[0-9a-f]{2}){3}$/);
    // Gen1 disk, but Trusted Launch: EFI.
    assert.equal((await findVm(arm, "rg2/web", signal())).firmware, "efi");
  });

  test("find: by resource id, by name in the connection's group, ambiguous names, NOT_FOUND", async () => {
    const byId = await findVm(arm, `/subscriptions/${standin.subscriptionId}/resourceGroups/rg2/providers/Microsoft.Compute/virtualMachines/web`, signal());
    assert.equal(byId.resourceGroup, "rg2");
    assert.equal(byId.size, "Standard_B2s");
    assert.equal((await findVm(arm, "db", signal())).resourceGroup, "rg1");
    await assert.rejects(findVm(arm, "web", signal()), code("FAILED_PRECONDITION", ["ambiguous", "rg1/web", "rg2/web"]));
    const inRg2 = createArmClient(standin.connection({ resourceGroup: "rg2" }), tokens, {});
    assert.equal((await findVm(inRg2, "web", signal())).location, "northeurope");
    await assert.rejects(findVm(arm, "nope", signal()), code("NOT_FOUND", ["nope"]));
    await assert.rejects(findVm(arm, "rg1/nope", signal()), code("NOT_FOUND", ["nope", "rg1"]));
    await assert.rejects(findVm(arm, "rg9/web", signal()), code("NOT_FOUND", ["rg9"]));
    await assert.rejects(findVm(arm, "/subscriptions/x/resourceGroups/rg1/providers/Microsoft.Compute/disks/web-os", signal()), code("INVALID_ARGUMENT"));
  });

  test("throttled ARM (429 + Retry-After) is survived; a missing permission is PERMISSION_DENIED naming the action", async () => {
    warnings.length = 0;
    standin.faults.throttleArm(3, 0);
    const vm = await getVm(arm, "rg1/web", signal());
    assert.equal(vm.disks.length, 2);
    assert.ok(warnings.length >= 1);
    assert.ok(standin.requests.some((r) => r.status === 429));

    standin.faults.deny("Microsoft.Compute/snapshots/write");
    try {
      const disk = (await findVm(arm, "rg1/web", signal())).disks[0]!;
      await assert.rejects(createSnapshot(arm, { name: "hypervisord-x-osdisk", resourceGroup: "rg1", location: "westeurope", sourceDiskId: disk.id, incremental: true }, signal()),
        code("PERMISSION_DENIED", ["creating snapshot hypervisord-x-osdisk in rg1", "Microsoft.Compute/snapshots/write", "AuthorizationFailed"]));
      assert.equal(standin.snapshots().length, 0);
    } finally {
      standin.faults.reset();
    }
  });

  test("snapshot create, grant (the SAS reads the blob), revoke, delete; deleting twice is gone", async () => {
    const vm = await findVm(arm, "rg1/web", signal());
    const data = vm.disks[1]!;
    const snap = await createSnapshot(arm, { name: "hypervisord-t1-lun0", resourceGroup: "rg1", location: vm.location, sourceDiskId: data.id, incremental: true }, signal());
    assert.match(snap.id, /\/snapshots\/hypervisord-t1-lun0$/i);
    assert.equal(snap.incremental, true);
    assert.deepEqual(standin.snapshots().map((s) => [s.name, s.sourceDiskId.toLowerCase(), s.incremental]), [["hypervisord-t1-lun0", data.id.toLowerCase(), true]]);

    // Written after the snapshot: the snapshot keeps its snapshot-time bytes.
    await standin.writeDisk("web-data", 2 * MiB, Buffer.alloc(512, 0x33), "rg1");
    const sas = await grantAccess(arm, snap.id, 600, signal());
    assert.equal(new URL(sas).origin, new URL(standin.blobProxy).origin);
    assert.equal(standin.grants().length, 1);
    const range = await fetch(sas, { headers: { range: `bytes=${2 * MiB}-${2 * MiB + 1023}`, "x-ms-version": "2021-08-06" } });
    assert.equal(range.status, 206);
    assert.deepEqual(Buffer.from(await range.arrayBuffer()), Buffer.alloc(1024, 0x22));

    assert.equal(await revokeAccess(arm, snap.id, signal()), "revoked");
    assert.equal(standin.grants().length, 0);
    const after = await fetch(sas, { headers: { range: "bytes=0-511", "x-ms-version": "2021-08-06" } });
    assert.ok(after.status >= 400, `the SAS still reads after endGetAccess (${after.status})`);
    await after.arrayBuffer();

    assert.equal(await deleteSnapshot(arm, snap.id, signal()), "deleted");
    assert.equal(standin.snapshots().length, 0);
    assert.equal(await deleteSnapshot(arm, snap.id, signal()), "gone");
    assert.equal(await revokeAccess(arm, snap.id, signal()), "gone");
  });

  test("an incremental snapshot refused falls back to a full one; a failing snapshot DELETE (500) is retried", async () => {
    const quick = createArmClient(standin.connection(), tokens, { backoff: { initialMs: 10, maxMs: 50 }, pollIntervalMs: 20 });
    const os = (await findVm(quick, "rg1/web", signal())).disks[0]!;
    standin.faults.refuseIncremental = true;
    try {
      const snap = await createSnapshot(quick, { name: "hypervisord-t2-os", resourceGroup: "rg1", location: "westeurope", sourceDiskId: os.id, incremental: true }, signal());
      assert.equal(snap.incremental, false);
      assert.deepEqual(standin.snapshots().map((s) => [s.name, s.incremental]), [["hypervisord-t2-os", false]]);
      standin.faults.failSnapshotDelete(2);
      assert.equal(await deleteSnapshot(quick, snap.id, signal()), "deleted");
      assert.equal(standin.snapshots().length, 0);
      assert.equal(standin.requests.filter((r) => r.method === "DELETE" && r.status === 500).length >= 2, true);
    } finally {
      standin.faults.reset();
    }
  });

  test("a disk read directly: grant on the managed disk of a deallocated VM, LRO with several polls", async () => {
    standin.faults.lroPolls = 3;
    try {
      const db = await findVm(arm, "rg1/db", signal());
      const sas = await grantAccess(arm, db.disks[0]!.id, 60, signal());
      const whole = await standin.vhdBytes("db-os", "rg1");
      const got = await fetch(sas, { headers: { range: `bytes=${whole.length - 512}-${whole.length - 1}`, "x-ms-version": "2021-08-06" } });
      assert.equal(got.status, 206);
      // The VHD footer ("conectix") ends the blob.
      assert.equal(Buffer.from(await got.arrayBuffer()).subarray(0, 8).toString("latin1"), "conectix");
      assert.equal(await revokeAccess(arm, db.disks[0]!.id, signal()), "revoked");
      assert.equal(standin.grants().length, 0);
    } finally {
      standin.faults.reset();
    }
  });
});
