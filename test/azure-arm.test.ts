import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { AzureConnection } from "../src/domain/job.ts";
import { HypervisordError } from "../src/errors.ts";
import { createArmClient, type ArmClient } from "../src/providers/azure/arm-client.ts";
import { createTokenCache } from "../src/providers/azure/token.ts";

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
