// Rate limiting (token buckets per client and RPC) and the audit log (hook, SQLite store, ListAuditEvents):
// units with a fake clock and a temp database, the hooks over the real gRPC and HTTP listeners, and the daemon.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import Database from "better-sqlite3";
import pino from "pino";
import {
  CancelJobRequestSchema, CreateWebhookRequestSchema, GetJobRequestSchema, HypervisordService, SubmitJobRequestSchema, SubmitJobsRequestSchema,
} from "../gen/hypervisord/v1/service_pb.js";
import { createAuditHandlers } from "../src/api/audit.ts";
import { withCallHooks, type Call, type CallHook, type Principal } from "../src/rpc/call-hooks.ts";
import type { ServiceHandlers } from "../src/rpc/handlers.ts";
import { createAuditHook, MUTATING_METHODS, principalName, resourceOf } from "../src/audit/audit-hook.ts";
import { MAX_REQUEST_JSON, requestJson } from "../src/audit/request-json.ts";
import { HypervisordError, InvalidArgumentError, NotFoundError } from "../src/errors.ts";
import { clientOf, createRateLimitHook, type RateLimitOptions } from "../src/ratelimit/rate-limit-hook.ts";
import { createTokenBuckets } from "../src/ratelimit/token-buckets.ts";
import { createGrpcServer } from "../src/server/grpc-server.ts";
import { createHttpServer } from "../src/server/http-server.ts";
import { createAuditQueries } from "../src/store/sqlite/audit.ts";
import { migrate } from "../src/store/sqlite/migrations.ts";
import type { AuditStore } from "../src/store/store.ts";
import { toAsync, type Sync } from "../src/store/sync-store.ts";
import { createGrpcJsClient, postJson, type GrpcJsClient } from "./support/clients.ts";
import { spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { tempDir } from "./support/temp-dir.ts";

const ROOT = path.resolve(import.meta.dirname, "..");
const silent = pino({ level: "silent" });

interface FakeCallOptions {
  principal?: Principal;
  peer?: string;
  transport?: "grpc" | "connect";
  headers?: Record<string, string>;
}

function fakeCall(method: string, request: unknown = {}, options: FakeCallOptions = {}): Call {
  const headers = options.headers ?? {};
  return {
    service: HypervisordService.typeName,
    method,
    streaming: false,
    request,
    start: performance.now(),
    principal: options.principal,
    context: {
      signal: new AbortController().signal,
      peer: options.peer ?? "127.0.0.1:40000",
      transport: options.transport ?? "grpc",
      header: (name) => headers[name],
    },
  };
}

const apiKey = (id: string, name = id): Principal => ({ kind: "api_key", id, name, role: "operator" });

/** A hook with a clock the test moves. */
function limiter(options: Omit<RateLimitOptions, "now">) {
  const clock = { ms: 1_000_000 };
  const hook = createRateLimitHook({ ...options, now: () => clock.ms });
  const attempt = (call: Call): HypervisordError | undefined => {
    try {
      void hook.before?.(call);
      return undefined;
    } catch (err) {
      assert.ok(err instanceof HypervisordError, String(err));
      return err;
    }
  };
  return { hook, clock, attempt };
}

describe("rate limiting: token buckets", () => {
  test("a burst passes, the next call is refused with RESOURCE_EXHAUSTED and a retry hint", () => {
    const { attempt } = limiter({ requestsPerSecond: 1, burst: 3 });
    for (let i = 0; i < 3; i++) assert.equal(attempt(fakeCall("ListJobs")), undefined, `call ${i + 1} of the burst`);
    const refused = attempt(fakeCall("ListJobs"));
    assert.equal(refused?.code, "RESOURCE_EXHAUSTED");
    assert.equal(refused?.message, "rate limit exceeded for ListJobs: retry in 1.0 s");
    assert.equal((refused as HypervisordError & { retryAfterMs: number }).retryAfterMs, 1000);
  });

  test("tokens refill at requests_per_second, never above burst", () => {
    const { attempt, clock } = limiter({ requestsPerSecond: 2, burst: 2 });
    assert.equal(attempt(fakeCall("GetJob")), undefined);
    assert.equal(attempt(fakeCall("GetJob")), undefined);
    clock.ms += 100;
    const early = attempt(fakeCall("GetJob"));
    assert.equal(early?.message, "rate limit exceeded for GetJob: retry in 0.4 s");
    assert.equal((early as HypervisordError & { retryAfterMs: number }).retryAfterMs, 400);
    clock.ms += 400;
    assert.equal(attempt(fakeCall("GetJob")), undefined, "one token after 500 ms at 2/s");
    assert.ok(attempt(fakeCall("GetJob")), "and only one");
    clock.ms += 60_000;
    assert.equal(attempt(fakeCall("GetJob")), undefined);
    assert.equal(attempt(fakeCall("GetJob")), undefined);
    assert.ok(attempt(fakeCall("GetJob")), "a long idle time refills to burst, not beyond");
  });

  test("an override has its own, stricter buckets; other RPCs share the default one", () => {
    const { attempt } = limiter({ requestsPerSecond: 100, burst: 100, overrides: { SubmitJob: { requests_per_second: 1, burst: 2 } } });
    assert.equal(attempt(fakeCall("SubmitJob")), undefined);
    assert.equal(attempt(fakeCall("SubmitJob")), undefined);
    assert.match(attempt(fakeCall("SubmitJob"))?.message ?? "", /^rate limit exceeded for SubmitJob: retry in 1\.0 s$/);
    for (let i = 0; i < 50; i++) assert.equal(attempt(fakeCall("ListJobs")), undefined, `ListJobs ${i} after SubmitJob ran out`);
    for (let i = 0; i < 50; i++) assert.equal(attempt(fakeCall("GetJob")), undefined, `GetJob ${i}`);
    assert.match(attempt(fakeCall("CancelJob"))?.message ?? "", /for CancelJob/, "ListJobs, GetJob and CancelJob share the default bucket of 100");
  });

  test("a field left out of an override takes the default; requests_per_second 0 makes that RPC unlimited", () => {
    const { attempt } = limiter({ requestsPerSecond: 1, burst: 2, overrides: { SubmitJob: { burst: 1 }, GetStatus: { requests_per_second: 0 }, ListJobs: null } });
    assert.equal(attempt(fakeCall("SubmitJob")), undefined);
    assert.ok(attempt(fakeCall("SubmitJob")), "burst 1 from the override");
    for (let i = 0; i < 100; i++) assert.equal(attempt(fakeCall("GetStatus")), undefined);
    assert.equal(attempt(fakeCall("ListJobs")), undefined);
    assert.equal(attempt(fakeCall("ListJobs")), undefined);
    assert.ok(attempt(fakeCall("ListJobs")), "ListJobs: null = own bucket with the default settings");
    assert.equal(attempt(fakeCall("GetJob")), undefined, "the default bucket was not touched by the overridden RPCs");
  });

  test("clients: API key or certificate by principal, else the address without port", () => {
    const { attempt } = limiter({ requestsPerSecond: 1, burst: 1 });
    const ip = "10.0.0.1:5000";
    assert.equal(attempt(fakeCall("GetJob", {}, { peer: ip, principal: apiKey("k1") })), undefined);
    assert.equal(attempt(fakeCall("GetJob", {}, { peer: ip, principal: apiKey("k2") })), undefined, "another key from the same address");
    assert.ok(attempt(fakeCall("GetJob", {}, { peer: "10.9.9.9:1", principal: apiKey("k1") })), "the same key from another address");
    assert.equal(attempt(fakeCall("GetJob", {}, { peer: ip })), undefined, "no principal: by address");
    assert.ok(attempt(fakeCall("GetJob", {}, { peer: "10.0.0.1:6000", principal: { kind: "anonymous", id: "anonymous", name: "anonymous", role: "admin" } })),
      "anonymous from the same address, another port: the same bucket");
    const cert: Principal = { kind: "client_certificate", id: "CN=backup", name: "CN=backup", role: "operator" };
    assert.equal(attempt(fakeCall("GetJob", {}, { peer: ip, principal: cert })), undefined);
    assert.ok(attempt(fakeCall("GetJob", {}, { peer: "10.0.0.2:1", principal: cert })));

    assert.equal(clientOf(fakeCall("GetJob", {}, { peer: "127.0.0.1:5000" })), "ip:127.0.0.1");
    assert.equal(clientOf(fakeCall("GetJob", {}, { peer: "::ffff:127.0.0.1:5000" })), "ip:127.0.0.1", "IPv4-mapped IPv6 as IPv4");
    assert.equal(clientOf(fakeCall("GetJob", {}, { peer: "::1:5000" })), "ip:::1");
    assert.equal(clientOf(fakeCall("GetJob", {}, { peer: "[2001:db8::7]:443" })), "ip:2001:db8::7");
    assert.equal(clientOf(fakeCall("GetJob", {}, { peer: "fe80::1" })), "ip:fe80::1", "no port");
    assert.equal(clientOf(fakeCall("GetJob", {}, { principal: apiKey("abc") })), "key:abc");
  });

  test("health checks (another service) are never limited", () => {
    const { attempt } = limiter({ requestsPerSecond: 1, burst: 1 });
    const check = (): Call => ({ ...fakeCall("Check"), service: "grpc.health.v1.Health" });
    for (let i = 0; i < 10; i++) assert.equal(attempt(check()), undefined);
    assert.equal(attempt(fakeCall("GetStatus")), undefined, "and they took nothing from the caller's bucket");
  });

  test("requests_per_second 0 disables it: an empty hook", () => {
    const hook = createRateLimitHook({ requestsPerSecond: 0, burst: 1 });
    assert.equal(hook.before, undefined);
    const { attempt } = limiter({ requestsPerSecond: 0, burst: 1, overrides: { SubmitJob: { requests_per_second: 1, burst: 1 } } });
    for (let i = 0; i < 100; i++) assert.equal(attempt(fakeCall("ListJobs")), undefined);
    assert.equal(attempt(fakeCall("SubmitJob")), undefined);
    assert.ok(attempt(fakeCall("SubmitJob")), "an override with its own rate still applies");
  });

  test("overrides are checked: the error names the field and lists the valid RPC names", () => {
    const limit = (overrides: RateLimitOptions["overrides"], more: Partial<RateLimitOptions> = {}) => () =>
      createRateLimitHook({ requestsPerSecond: 10, burst: 10, overrides, ...more });
    assert.throws(limit({ SubmitJobz: { burst: 1 } }), (err: Error) => {
      assert.match(err.message, /^rate_limit\.overrides\.SubmitJobz: unknown RPC "SubmitJobz"; valid names: /);
      for (const m of HypervisordService.methods) assert.ok(err.message.includes(m.name), `lists ${m.name}`);
      return true;
    });
    assert.throws(limit({ submit_job: {} }), /rate_limit\.overrides\.submit_job: unknown RPC/);
    assert.throws(limit({ SubmitJob: { requests_per_second: -1 } }), /^Error: rate_limit\.overrides\.SubmitJob\.requests_per_second: must be a number, 0 or more, got -1$/);
    assert.throws(limit({ SubmitJob: { requests_per_second: "5" } }), /rate_limit\.overrides\.SubmitJob\.requests_per_second: .*got "5"/);
    assert.throws(limit({ SubmitJob: { burst: 0 } }), /rate_limit\.overrides\.SubmitJob\.burst: must be a whole number, 1 or more, got 0/);
    assert.throws(limit({ SubmitJob: { burst: 1.5 } }), /rate_limit\.overrides\.SubmitJob\.burst/);
    assert.throws(limit({ SubmitJob: { rps: 5 } }), /rate_limit\.overrides\.SubmitJob\.rps: unknown field; valid fields: requests_per_second, burst/);
    assert.throws(limit({ SubmitJob: [] as never }), /rate_limit\.overrides\.SubmitJob: must be a map/);
    assert.throws(limit({}, { burst: 0 }), /^Error: rate_limit\.burst: /);
    assert.throws(limit({}, { requestsPerSecond: Number.NaN }), /^Error: rate_limit\.requests_per_second: /);
    assert.doesNotThrow(limit({ SubmitJob: { requests_per_second: 0.5, burst: 1 }, ListJobs: null }));
  });

  test("memory is bounded: idle buckets are dropped once refilled, and at most maxBuckets are kept", () => {
    const buckets = createTokenBuckets(1000);
    const spec = { burst: 5, perMs: 1 / 1000 };
    for (let i = 0; i < 500; i++) buckets.take(`ip:10.0.${i >> 8}.${i & 255}`, spec, 0);
    assert.equal(buckets.size, 500);
    // One token each, refilled after 1 s: each take drops up to two of the idle ones.
    for (let i = 0; i < 300; i++) buckets.take("ip:busy", spec, 2000 + i);
    assert.equal(buckets.size, 1, "only the busy client's bucket is left");

    const capped = createTokenBuckets(100);
    for (let i = 0; i < 10_000; i++) capped.take(`key:${i}`, spec, i);
    assert.ok(capped.size <= 100, `size ${capped.size}`);
  });

  test("a client pushed out by the cap starts again with a full bucket (the price of bounded memory)", () => {
    const { attempt } = limiter({ requestsPerSecond: 1, burst: 1, maxBuckets: 10 });
    assert.equal(attempt(fakeCall("GetJob", {}, { principal: apiKey("first") })), undefined);
    assert.ok(attempt(fakeCall("GetJob", {}, { principal: apiKey("first") })));
    for (let i = 0; i < 10; i++) attempt(fakeCall("GetJob", {}, { principal: apiKey(`other-${i}`) }));
    assert.equal(attempt(fakeCall("GetJob", {}, { principal: apiKey("first") })), undefined);
  });
});

/** The SQLite queries as they are (`store`, synchronous, for the assertions) and as the async AuditStore (`audit`, for the code under test). */
function tempAuditStore(): { store: Sync<AuditStore>; audit: AuditStore; db: Database.Database } {
  const db = new Database(path.join(tempDir("audit"), "audit.db"));
  migrate(db);
  const store = createAuditQueries(db);
  return { store, audit: { ...toAsync<AuditStore>(store), append: store.append }, db };
}

const event = (over: Partial<Parameters<AuditStore["append"]>[0]> = {}): Parameters<AuditStore["append"]>[0] => ({
  time: 1_700_000_000_000, principal: "anonymous", role: "admin", method: "SubmitJob", transport: "grpc", peer: "127.0.0.1:1",
  code: "OK", resource: "", requestJson: "{}", durationMs: 1.5, ...over,
});

describe("audit: SQLite store", () => {
  test("append and list newest first, paged by id", () => {
    const { store, db } = tempAuditStore();
    for (let i = 0; i < 5; i++) store.append(event({ time: 1000 + i, resource: `r${i}` }));
    const first = store.list({ limit: 2 });
    assert.deepEqual(first.events.map((e) => e.resource), ["r4", "r3"]);
    assert.equal(first.next, first.events[1]!.id);
    const second = store.list({ limit: 2, before: first.next });
    assert.deepEqual(second.events.map((e) => e.resource), ["r2", "r1"]);
    const last = store.list({ limit: 2, before: second.next });
    assert.deepEqual(last.events.map((e) => e.resource), ["r0"]);
    assert.equal(last.next, undefined);
    assert.deepEqual(store.list({ limit: 1 }).events[0], {
      id: 5, time: 1004, principal: "anonymous", role: "admin", method: "SubmitJob", transport: "grpc", peer: "127.0.0.1:1",
      code: "OK", resource: "r4", requestJson: "{}", durationMs: 1.5,
    });
    db.close();
  });

  test("filters: method, principal, since, combined", () => {
    const { store, db } = tempAuditStore();
    store.append(event({ time: 100, method: "SubmitJob", principal: "api_key:a (ci)" }));
    store.append(event({ time: 200, method: "CancelJob", principal: "api_key:a (ci)" }));
    store.append(event({ time: 300, method: "SubmitJob", principal: "anonymous" }));
    store.append(event({ time: 400, method: "CancelJob", principal: "anonymous" }));
    const times = (q: Partial<Parameters<AuditStore["list"]>[0]>) => store.list({ limit: 10, ...q }).events.map((e) => e.time);
    assert.deepEqual(times({}), [400, 300, 200, 100]);
    assert.deepEqual(times({ method: "SubmitJob" }), [300, 100]);
    assert.deepEqual(times({ principal: "api_key:a (ci)" }), [200, 100]);
    assert.deepEqual(times({ since: 200 }), [400, 300, 200]);
    assert.deepEqual(times({ method: "CancelJob", principal: "anonymous" }), [400]);
    assert.deepEqual(times({ method: "SubmitJob", since: 150 }), [300]);
    assert.deepEqual(times({ method: "SubmitJob", principal: "anonymous", since: 301 }), []);
    assert.deepEqual(times({ method: "SubmitJob", before: 3 }), [100]);
    db.close();
  });
});

describe("audit: hook", () => {
  test("every RPC named like a mutation is audited, and nothing else", () => {
    const names = HypervisordService.methods.map((m) => m.name);
    for (const name of MUTATING_METHODS) assert.ok(names.includes(name), `${name} is an RPC`);
    const mutation = /^(Submit|Cancel|Create|Update|Delete|Enable|Disable|Trigger|Test|Revoke|Extract)/;
    for (const name of names) assert.equal(MUTATING_METHODS.has(name), mutation.test(name), name);
  });

  test("one event per mutating call, with principal, role, transport, peer, code and resource; none for reads", () => {
    const { store, audit, db } = tempAuditStore();
    const hook = createAuditHook({ store: audit, logger: silent, now: () => 1_234_000 });
    const principal: Principal = { kind: "api_key", id: "k_1", name: "ci", role: "operator" };
    const cancel = fakeCall("CancelJob", create(CancelJobRequestSchema, { jobId: "job-7", reason: "no longer needed" }), { principal, transport: "connect", peer: "10.1.2.3:555" });
    hook.after!(cancel, { durationMs: 2.25 });
    hook.after!(fakeCall("GetJob", create(GetJobRequestSchema, { jobId: "job-7" }), { principal }), { durationMs: 1 });
    const events = store.list({ limit: 10 }).events;
    assert.equal(events.length, 1, "GetJob is not audited");
    assert.deepEqual({ ...events[0], id: 0 }, {
      id: 0, time: 1_234_000, principal: "api_key:k_1 (ci)", role: "operator", method: "CancelJob", transport: "connect", peer: "10.1.2.3:555",
      code: "OK", resource: "job-7", requestJson: JSON.stringify({ jobId: "job-7", reason: "no longer needed" }), durationMs: 2.25,
    });
    db.close();
  });

  test("refused and failed calls are recorded with their code; no principal is anonymous", () => {
    const { store, audit, db } = tempAuditStore();
    const hook = createAuditHook({ store: audit, logger: silent });
    const viewer: Principal = { kind: "api_key", id: "k_2", name: "dash", role: "viewer" };
    hook.after!(fakeCall("DeleteWebhook", { id: "wh_1" }, { principal: viewer }), { error: new HypervisordError("PERMISSION_DENIED", "viewer may not"), durationMs: 0.1 });
    hook.after!(fakeCall("SubmitJob", {}), { error: new HypervisordError("UNAUTHENTICATED", "missing API key"), durationMs: 0.1 });
    hook.after!(fakeCall("CancelJob", { jobId: "x" }), { error: new NotFoundError("job x not found"), durationMs: 0.1 });
    hook.after!(fakeCall("SubmitJob", {}), { error: new InvalidArgumentError("definition", "required"), durationMs: 0.1 });
    hook.after!(fakeCall("TriggerSchedule", { id: "s1" }), { error: new TypeError("bug"), durationMs: 0.1 });
    const events = store.list({ limit: 10 }).events.reverse();
    assert.deepEqual(events.map((e) => [e.method, e.code, e.principal, e.role, e.resource]), [
      ["DeleteWebhook", "PERMISSION_DENIED", "api_key:k_2 (dash)", "viewer", "wh_1"],
      ["SubmitJob", "UNAUTHENTICATED", "anonymous", "", ""],
      ["CancelJob", "NOT_FOUND", "anonymous", "", "x"],
      ["SubmitJob", "INVALID_ARGUMENT", "anonymous", "", ""],
      ["TriggerSchedule", "INTERNAL", "anonymous", "", "s1"],
    ]);
    db.close();
  });

  test("principal names", () => {
    assert.equal(principalName({ kind: "api_key", id: "k_9", name: "backup job", role: "operator" }), "api_key:k_9 (backup job)");
    assert.equal(principalName({ kind: "client_certificate", id: "CN=host-1,O=Example", name: "CN=host-1,O=Example", role: "operator" }), "client_certificate:CN=host-1,O=Example");
    assert.equal(principalName({ kind: "anonymous", id: "anonymous", name: "anonymous", role: "admin" }), "anonymous");
    assert.equal(principalName(undefined), "anonymous");
  });

  test("secrets never reach request_json: passwords, webhook secrets, header values, at any depth", () => {
    const submit = create(SubmitJobRequestSchema, {
      definition: { provider: "vsphere", vm: "/DC0/vm/web-01", vsphere: { url: "https://vc/sdk", username: "backup", password: "hunter2-vsphere" }, labels: { team: "ops" } },
    });
    const json = requestJson(SubmitJobRequestSchema, submit);
    assert.ok(!json.includes("hunter2"), json);
    assert.deepEqual(JSON.parse(json), {
      definition: { provider: "vsphere", vm: "/DC0/vm/web-01", vsphere: { url: "https://vc/sdk", username: "backup", password: "***" }, labels: { team: "ops" } },
    });
    const batch = create(SubmitJobsRequestSchema, { definitions: [{ vm: "a", vsphere: { password: "pw-one" } }, { vm: "b", vsphere: { password: "pw-two" } }] });
    const batchJson = requestJson(SubmitJobsRequestSchema, batch);
    assert.ok(!/pw-one|pw-two/.test(batchJson), batchJson);
    assert.equal((batchJson.match(/"\*\*\*"/g) ?? []).length, 2);

    const webhook = create(CreateWebhookRequestSchema, {
      webhook: { url: "https://hooks.example/x", secret: "whsec_c2VjcmV0", headers: { Authorization: "Bearer tok-123", "X-Team": "ops" } },
    });
    const webhookJson = JSON.parse(requestJson(CreateWebhookRequestSchema, webhook)) as { webhook: Record<string, unknown> };
    assert.deepEqual(webhookJson.webhook.headers, { Authorization: "***", "X-Team": "***" }, "header names stay, values go");
    assert.equal(webhookJson.webhook.secret, "***");
    assert.equal(webhookJson.webhook.url, "https://hooks.example/x");

    // Not a message of the schema (plain objects): JSON with bigints as strings, redacted the same way.
    assert.deepEqual(JSON.parse(requestJson(undefined, { size: 5n, nested: { api_key: "k", clientSecret: "s", keep: 1 } })), {
      size: "5", nested: { api_key: "***", clientSecret: "***", keep: 1 },
    });
  });

  test("a huge request is stored as its size and start, still JSON", () => {
    const definitions = Array.from({ length: 2000 }, (_, i) => ({ vm: `vm-${i}-${"x".repeat(40)}` }));
    const json = requestJson(SubmitJobsRequestSchema, create(SubmitJobsRequestSchema, { definitions }));
    assert.ok(json.length <= MAX_REQUEST_JSON, `${json.length}`);
    const parsed = JSON.parse(json) as { truncated: boolean; length: number; start: string };
    assert.equal(parsed.truncated, true);
    assert.ok(parsed.length > MAX_REQUEST_JSON);
    assert.ok(parsed.start.startsWith('{"definitions":[{"vm":"vm-0-'));
  });

  test("resource: the request's id, or what the response made when the hooks pass it on", () => {
    assert.equal(resourceOf({ jobId: "j1" }), "j1");
    assert.equal(resourceOf({ id: "sch_1", enabled: true }), "sch_1");
    assert.equal(resourceOf({ name: "nightly" }), "nightly");
    assert.equal(resourceOf({ profile: { name: "fast" } }), "fast", "UpdateProfile");
    assert.equal(resourceOf({ path: "/exports/a.ova", outputDir: "x" }), "/exports/a.ova", "ExtractOva");
    assert.equal(resourceOf({ definition: { vm: "web-01" } }), "", "SubmitJob: the job id is not in the request");
    assert.equal(resourceOf({ definition: { vm: "web-01" } }, { job: { id: "j9" }, created: true }), "j9");
    assert.equal(resourceOf({ schedule: { name: "n" } }, { schedule: { id: "sch_2" } }), "sch_2");
    assert.equal(resourceOf({}, { results: [{ job: { id: "a" } }, { error: {} }, { job: { id: "b" } }] }), "a,b", "SubmitJobs");
    assert.equal(resourceOf({ name: "ci" }, { apiKey: { id: "k_3" }, key: "hvd_..." }), "k_3");
  });

  test("a failing store is logged, never thrown into the call", () => {
    const lines: string[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(line) });
    const hook = createAuditHook({ store: { append: () => { throw new Error("disk I/O error"); }, flush: async () => {}, list: async () => ({ events: [] }) }, logger });
    assert.doesNotThrow(() => hook.after!(fakeCall("SubmitJob", {}), { durationMs: 1 }));
    assert.equal(lines.length, 1);
    const record = JSON.parse(lines[0]!) as { msg: string; method: string; err: { message: string } };
    assert.equal(record.msg, "could not write an audit event");
    assert.equal(record.method, "SubmitJob");
    assert.equal(record.err.message, "disk I/O error");
  });
});

describe("audit: ListAuditEvents handler", () => {
  test("page_size 1-1000 (0 = 100), newest first, opaque token bound to the filters", async () => {
    const { store, audit, db } = tempAuditStore();
    for (let i = 0; i < 150; i++) store.append(event({ time: 10_000 + i, method: i % 2 ? "CancelJob" : "SubmitJob" }));
    const { listAuditEvents } = createAuditHandlers(audit);
    const request = (over: Record<string, unknown> = {}) => ({ pageSize: 0, pageToken: "", method: "", principal: "", ...over }) as Parameters<typeof listAuditEvents>[0];
    const page = await listAuditEvents(request(), undefined as never);
    assert.equal(page.events?.length, 100);
    assert.equal(page.events![0]!.id, 150n);
    assert.ok(page.nextPageToken);
    const rest = await listAuditEvents(request({ pageToken: page.nextPageToken }), undefined as never);
    assert.equal(rest.events?.length, 50);
    assert.equal(rest.events![49]!.id, 1n);
    assert.equal(rest.nextPageToken, "");

    for (const pageSize of [-1, 1001]) {
      await assert.rejects(listAuditEvents(request({ pageSize }), undefined as never), (err: InvalidArgumentError) => err.field === "page_size" && err.code === "INVALID_ARGUMENT");
    }
    await assert.rejects(listAuditEvents(request({ method: "CancelJob", pageToken: page.nextPageToken }), undefined as never),
      (err: InvalidArgumentError) => err.field === "page_token", "a token from another query");
    await assert.rejects(listAuditEvents(request({ pageToken: "garbage" }), undefined as never), (err: InvalidArgumentError) => err.field === "page_token");

    const submits = await listAuditEvents(request({ method: "SubmitJob", pageSize: 1000 }), undefined as never);
    assert.equal(submits.events?.length, 75);
    assert.ok(submits.events!.every((e) => e.method === "SubmitJob"));
    const recent = await listAuditEvents(request({ since: timestampFromMs(10_140) }), undefined as never);
    assert.deepEqual(recent.events!.map((e) => Number(e.id)), [150, 149, 148, 147, 146, 145, 144, 143, 142, 141]);
    assert.equal(recent.events![0]!.time?.seconds, 10n);
    db.close();
  });
});

/** Every RPC answers an empty response: the hooks are under test, over the real listeners. */
function emptyHandlers(): ServiceHandlers<typeof HypervisordService> {
  return new Proxy({}, { get: () => async () => ({}) }) as ServiceHandlers<typeof HypervisordService>;
}

describe("rate limiting and audit over the real gRPC and HTTP listeners (in process)", () => {
  let grpcServer: ReturnType<typeof createGrpcServer>;
  let httpServer: ReturnType<typeof createHttpServer>;
  let client: GrpcJsClient;
  let httpUrl = "";
  const audit = tempAuditStore();
  before(async () => {
    const hooks: CallHook[] = [
      createAuditHook({ store: audit.audit, logger: silent }),
      createRateLimitHook({ requestsPerSecond: 100, burst: 100, overrides: { GetStatus: { requests_per_second: 0.1, burst: 2 }, CancelJob: { requests_per_second: 0.1, burst: 1 } } }),
    ];
    const bindings = [{ service: HypervisordService, handlers: withCallHooks(HypervisordService, emptyHandlers(), hooks) as never }];
    grpcServer = createGrpcServer(bindings, silent);
    const grpcPort = await grpcServer.listen({ host: "127.0.0.1", port: 0 });
    httpServer = createHttpServer({ bindings, logger: silent, corsAllowedOrigins: [], isServing: () => true });
    httpUrl = `http://127.0.0.1:${await httpServer.listen({ host: "127.0.0.1", port: 0 })}`;
    client = createGrpcJsClient(`127.0.0.1:${grpcPort}`);
  });
  after(async () => {
    client?.close();
    await Promise.all([grpcServer?.close(1000), httpServer?.close(1000)]);
    audit.db.close();
  });

  test("over the limit: gRPC status 8 and HTTP 429, one bucket per client across both listeners", async () => {
    await client.unary("getStatus", {});
    await client.unary("getStatus", {});
    await assert.rejects(client.unary("getStatus", {}), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.match(err.details, /^rate limit exceeded for GetStatus: retry in \d+\.\d s$/);
      return true;
    });
    const http = await postJson(httpUrl, "GetStatus", {});
    assert.equal(http.status, 429);
    assert.equal(http.body.code, "resource_exhausted");
    assert.match(http.body.message, /rate limit exceeded for GetStatus/);
    assert.equal((await postJson(httpUrl, "ListJobs", {})).status, 200, "other RPCs use the default bucket");
  });

  test("a refused mutating call is audited with RESOURCE_EXHAUSTED", async () => {
    await client.unary("cancelJob", { jobId: "j-1" });
    const refused = await postJson(httpUrl, "CancelJob", { jobId: "j-2" });
    assert.equal(refused.status, 429);
    const events = audit.store.list({ limit: 10, method: "CancelJob" }).events;
    assert.deepEqual(events.map((e) => [e.code, e.transport, e.resource]), [["RESOURCE_EXHAUSTED", "connect", "j-2"], ["OK", "grpc", "j-1"]]);
    assert.match(events[0]!.peer, /^127\.0\.0\.1:\d+$/);
    assert.equal(audit.store.list({ limit: 10, method: "GetStatus" }).events.length, 0);
  });
});

// Through the daemon: runs once src/daemon/ uses the hooks (the integrator's step).
const daemonSource = fs.readdirSync(path.join(ROOT, "src/daemon")).map((file) => fs.readFileSync(path.join(ROOT, "src/daemon", file), "utf8")).join("\n");
const wired = daemonSource.includes("createRateLimitHook") && daemonSource.includes("createAuditHook");
const WAITING = wired ? false : "waiting for daemon wiring: src/daemon/ does not use createRateLimitHook and createAuditHook yet";
if (WAITING) console.log(`# ratelimit-audit daemon tests skipped: ${WAITING}`);
const passesResponse = /response\?: unknown/.test(fs.readFileSync(path.join(ROOT, "src/rpc/call-hooks.ts"), "utf8"));
const RESPONSE_WAITING = passesResponse ? false : "waiting for CallOutcome.response in src/rpc/call-hooks.ts (the id a Submit*/Create* call made)";

describe("rate limiting and audit in the daemon", { skip: WAITING }, () => {
  let d: DaemonProcess;
  let c: GrpcJsClient;
  before(async () => {
    const configFile = path.join(tempDir("config"), "hypervisord.yaml");
    fs.writeFileSync(configFile, [
      "rate_limit:",
      "  requests_per_second: 50",
      "  burst: 100",
      "  overrides:",
      "    GetStatus: {requests_per_second: 0.2, burst: 2}",
      "",
    ].join("\n"));
    d = await spawnDaemon({ args: ["--config", configFile] });
    c = createGrpcJsClient(d.grpcAddress);
  });
  after(async () => {
    c?.close();
    if (d) assert.equal(await d.stop(), 0, "daemon exit code");
  });

  test("a burst over the limit: RESOURCE_EXHAUSTED with retry-after over gRPC, 429 with Retry-After over HTTP", async () => {
    await c.unary("getStatus", {});
    await c.unary("getStatus", {});
    await assert.rejects(c.unary("getStatus", {}), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.match(err.details, /^rate limit exceeded for GetStatus: retry in \d+\.\d s$/);
      const pushback = Number(err.metadata.get("grpc-retry-pushback-ms")[0]);
      assert.ok(pushback > 0 && pushback <= 5000, `grpc-retry-pushback-ms ${pushback}`);
      const retryAfter = Number(err.metadata.get("retry-after")[0]);
      assert.ok(retryAfter >= 1 && retryAfter <= 5, `retry-after ${retryAfter}`);
      return true;
    });
    const response = await fetch(`${d.httpUrl}/hypervisord.v1.HypervisordService/GetStatus`, {
      method: "POST", headers: { "content-type": "application/json" }, body: "{}",
    });
    assert.equal(response.status, 429);
    const retryAfter = Number(response.headers.get("retry-after"));
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 5, `Retry-After ${response.headers.get("retry-after")}`);
    const body = (await response.json()) as { code: string; message: string };
    assert.equal(body.code, "resource_exhausted");
  });

  test("SubmitJob and CancelJob are audited with principal, peer and code; GetJob is not; passwords never stored", async () => {
    const submitted = await c.unary("submitJob", { definition: { provider: "fake", vm: "audit-01?size=100000000&chunk=100000&delayMs=50" } });
    await c.unary("getJob", { jobId: submitted.job!.id });
    await c.unary("cancelJob", { jobId: submitted.job!.id, reason: "audit test" });
    await assert.rejects(c.unary("cancelJob", { jobId: "00000000-0000-7000-8000-000000000000" }), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND);
    const password = "pw-never-in-the-audit-log";
    await c.unary("submitJob", {
      definition: { provider: "vsphere", vm: "/DC0/vm/x", vsphere: { url: "https://127.0.0.1:9/sdk", username: "u", password, insecure: true } },
    }).catch(() => undefined);

    const { events } = await c.unary("listAuditEvents", { pageSize: 100 });
    const byMethod = (m: string) => events.filter((e) => e.method === m);
    assert.equal(byMethod("GetJob").length, 0);
    const [notFound, cancelled] = byMethod("CancelJob");
    assert.equal(cancelled?.code, "OK");
    assert.equal(cancelled?.resource, submitted.job!.id);
    assert.equal(notFound?.code, "NOT_FOUND");
    const submits = byMethod("SubmitJob");
    assert.equal(submits.length, 2);
    for (const e of [...submits, cancelled!]) {
      assert.equal(e.principal, "anonymous");
      assert.equal(e.transport, "grpc");
      assert.match(e.peer, /^127\.0\.0\.1:\d+$/);
      assert.ok(e.time && e.time.seconds > 0n);
      assert.ok(e.durationMs >= 0);
    }
    assert.ok(submits.some((e) => e.requestJson.includes('"password":"***"')), "the vsphere submission is recorded, redacted");
    for (const e of events) assert.ok(!e.requestJson.includes(password), `${e.method}: ${e.requestJson}`);
    assert.ok(!fs.readFileSync(path.join(d.dataDir, "hypervisord.db")).includes(password), "not in the database file either");
  });

  test("SubmitJob's event names the job it created (taken from the response)", { skip: RESPONSE_WAITING }, async () => {
    const submitted = await c.unary("submitJob", { definition: { provider: "fake", vm: "audit-02?size=1000&delayMs=0" } });
    const { events } = await c.unary("listAuditEvents", { method: "SubmitJob", pageSize: 1 });
    assert.equal(events[0]?.resource, submitted.job!.id);
  });

  test("ListAuditEvents: paging and filters", async () => {
    const all = await c.unary("listAuditEvents", { pageSize: 1000 });
    assert.ok(all.events.length >= 4);
    const ids = all.events.map((e) => e.id);
    assert.deepEqual(ids, [...ids].sort((a, b) => (a > b ? -1 : 1)), "newest first");
    const seen: bigint[] = [];
    let pageToken = "";
    do {
      const page = await c.unary("listAuditEvents", { pageSize: 1, pageToken });
      assert.ok(page.events.length <= 1);
      seen.push(...page.events.map((e) => e.id));
      pageToken = page.nextPageToken;
    } while (pageToken);
    assert.deepEqual(seen, ids);
    const submits = await c.unary("listAuditEvents", { method: "SubmitJob" });
    assert.ok(submits.events.length >= 2 && submits.events.every((e) => e.method === "SubmitJob"));
    const anonymous = await c.unary("listAuditEvents", { principal: "anonymous" });
    assert.equal(anonymous.events.length, all.events.length);
    assert.equal((await c.unary("listAuditEvents", { principal: "api_key:nobody (x)" })).events.length, 0);
    const future = await c.unary("listAuditEvents", { since: timestampFromMs(Date.now() + 3_600_000) });
    assert.equal(future.events.length, 0);
    await assert.rejects(c.unary("listAuditEvents", { pageSize: 1001 }), (err: grpc.ServiceError) =>
      err.code === grpc.status.INVALID_ARGUMENT && err.details.startsWith("page_size"));
  });
});

// With API keys: a viewer's refused mutation is in the log under its key. Runs once auth and audit are wired.
const authWired = wired && daemonSource.includes("createAuthHook") && daemonSource.includes("createRoleHook");
const AUTH_WAITING = authWired ? false : "waiting for daemon wiring: src/daemon/ does not use createAuthHook, createRoleHook and createAuditHook yet";

describe("audit in the daemon with API keys", { skip: AUTH_WAITING }, () => {
  const ADMIN = "hvd_admin_key_for_the_audit_test_0001";
  const VIEWER = "hvd_viewer_key_for_the_audit_test_0001";
  let d: DaemonProcess;
  before(async () => {
    const configFile = path.join(tempDir("config"), "hypervisord.yaml");
    fs.writeFileSync(configFile, [
      "auth:",
      "  api_keys:",
      `    - {name: ops, key: ${ADMIN}, role: admin}`,
      `    - {name: dash, key: ${VIEWER}, role: viewer}`,
      "",
    ].join("\n"));
    d = await spawnDaemon({ args: ["--config", configFile] });
  });
  after(async () => {
    if (d) assert.equal(await d.stop(), 0, "daemon exit code");
  });

  test("PERMISSION_DENIED attempts are recorded with the key that made them; keys never appear", async () => {
    const denied = await postJson(d.httpUrl, "CancelJob", { jobId: "j-1" }, { authorization: `Bearer ${VIEWER}` });
    assert.equal(denied.status, 403, JSON.stringify(denied.body));
    assert.equal((await postJson(d.httpUrl, "GetJob", { jobId: "j-1" }, { "x-api-key": VIEWER })).status, 404);
    const list = await postJson(d.httpUrl, "ListAuditEvents", {}, { "x-api-key": ADMIN });
    assert.equal(list.status, 200, JSON.stringify(list.body));
    const events = list.body.events as Record<string, string>[];
    assert.deepEqual(events.map((e) => [e.method, e.code, e.principal, e.role, e.transport, e.resource]), [
      ["CancelJob", "PERMISSION_DENIED", "api_key:cfg-dash (dash)", "viewer", "connect", "j-1"],
    ]);
    for (const e of events) assert.ok(!JSON.stringify(e).includes("hvd_"), JSON.stringify(e));
    const asViewer = await postJson(d.httpUrl, "ListAuditEvents", {}, { "x-api-key": VIEWER });
    assert.equal(asViewer.status, 403, "the audit log is for admins");
  });
});
