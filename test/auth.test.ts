// Authentication and authorization through the real daemon: API keys from the config file and from
// CreateApiKey, over gRPC (grpc-js, metadata) and Connect JSON (fetch); the start-up rule; the role table
// against every RPC of the service. Plus the pure parts (config keys, start-up rule, loopback) directly.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { create, type DescMethod } from "@bufbuild/protobuf";
import Database from "better-sqlite3";
import { pino } from "pino";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { HypervisordService } from "../gen/hypervisord/v1/service_pb.js";
import type { Call } from "../src/rpc/call-hooks.ts";
import type { CallContext } from "../src/rpc/handlers.ts";
import { hashApiKey } from "../src/auth/api-key.ts";
import { createAuthHook, createRoleHook } from "../src/auth/auth-hook.ts";
import { createApiKeyCache } from "../src/auth/key-cache.ts";
import { roleAllows } from "../src/auth/roles.ts";
import { apiKeysFromConfig } from "../src/auth/config-keys.ts";
import { authStartupRule, isLoopback } from "../src/auth/startup-rule.ts";
import { ROLES, type Role } from "../src/domain/access.ts";
import { HypervisordError } from "../src/errors.ts";
import { grpcServiceDefinition } from "../src/server/grpc-server.ts";
import { createApiKeyQueries } from "../src/store/sqlite/api-keys.ts";
import { migrate } from "../src/store/sqlite/migrations.ts";
import type { ApiKeyStore } from "../src/store/store.ts";
import { toAsync, type Sync } from "../src/store/sync-store.ts";
import { postJson } from "./support/clients.ts";
import { assertRefusesToStart, spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { tempDir } from "./support/temp-dir.ts";

const KEYS = {
  admin: `hvd_admin-key-for-tests-${"a".repeat(24)}`,
  operator: `hvd_operator-key-for-tests-${"o".repeat(21)}`,
  viewer: `hvd_viewer-key-for-tests-${"v".repeat(23)}`,
};
const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");
const FAST_JOB = { definition: { provider: "fake", vm: "web-01?size=1000&delayMs=0" } };
const UNAUTHENTICATED = grpc.status.UNAUTHENTICATED;
const PERMISSION_DENIED = grpc.status.PERMISSION_DENIED;

interface Outcome {
  code: number;
  details: string;
  response?: Record<string, any>;
}

/** A grpc-js client of every method of HypervisordService, calls made with the metadata given (the shared test client sends none). */
function grpcClient(address: string, credentials = grpc.credentials.createInsecure()) {
  const Ctor = grpc.makeGenericClientConstructor(grpcServiceDefinition(HypervisordService), "HypervisordService");
  const client = new Ctor(address, credentials) as unknown as grpc.Client & Record<string, (...args: unknown[]) => any>;
  const metadataOf = (headers: Record<string, string>) => {
    const metadata = new grpc.Metadata();
    for (const [name, value] of Object.entries(headers)) metadata.set(name, value);
    return metadata;
  };
  /** A unary call's status; a stream's first message (then cancelled) or its status. */
  const call = (method: DescMethod, request: object, headers: Record<string, string> = {}): Promise<Outcome> => {
    const message = create(method.input, request as never);
    if (method.methodKind === "unary") {
      return new Promise((resolve) => {
        client[method.name]!(message, metadataOf(headers), { deadline: Date.now() + 15_000 }, (err: grpc.ServiceError | null, response: Record<string, any>) =>
          resolve(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: "", response }));
      });
    }
    return new Promise((resolve) => {
      const stream = client[method.name]!(message, metadataOf(headers), { deadline: Date.now() + 15_000 }) as grpc.ClientReadableStream<Record<string, any>>;
      stream.on("data", (response) => {
        resolve({ code: grpc.status.OK, details: "", response });
        stream.cancel();
      });
      // After a cancel, the CANCELLED error lands here too: the first outcome has been taken already.
      stream.on("error", (err: grpc.ServiceError) => resolve({ code: err.code, details: err.details }));
      stream.on("status", (status: grpc.StatusObject) => resolve({ code: status.code, details: status.details }));
    });
  };
  const method = (name: string) => HypervisordService.methods.find((m) => m.name === name)!;
  return {
    call,
    unary: (name: string, request: object, headers?: Record<string, string>) => call(method(name), request, headers),
    close: () => client.close(),
  };
}

type GrpcClient = ReturnType<typeof grpcClient>;

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

function configFile(yaml: string): string {
  const file = path.join(tempDir("auth-config"), "hypervisord.yaml");
  // Rate limits would make the matrix below depend on its pace.
  fs.writeFileSync(file, `rate_limit:\n  requests_per_second: 0\n${yaml}`);
  return file;
}

const CONFIG_KEYS = [
  "auth:",
  "  api_keys:",
  `    - {name: root, key: ${KEYS.admin}, role: admin}`,
  `    - {name: ci, key_sha256: ${sha256(KEYS.operator)}, role: operator}`,
  `    - {name: dashboard, key: ${KEYS.viewer}, role: viewer}`,
].join("\n");

describe("start-up rule (through the daemon)", () => {
  test("refuses to start on a non-loopback address without any API key, saying why", async () => {
    const message = await assertRefusesToStart({ args: ["--grpc-listen", "0.0.0.0:0", "--config", configFile("")] },
      /listening on 0\.0\.0\.0:0 \(not loopback\) without any API key: create one in auth\.api_keys or set auth\.disabled: true/);
    assert.match(message, /daemon exited with 1 before ready/);
  });

  test("a config key with a bad role stops the start, naming the field", async () => {
    const config = configFile(`auth:\n  api_keys:\n    - {name: a, key: ${KEYS.admin}, role: admin}\n    - {name: b, key: ${KEYS.viewer}, role: root}\n`);
    await assertRefusesToStart({ args: ["--config", config] }, /auth\.api_keys\[1\]\.role: unknown role \\"root\\": one of admin, operator, viewer/);
  });

  test("auth.disabled: starts on 0.0.0.0 and every caller is an anonymous admin; a key that is sent is still checked", async (t) => {
    const daemon = await spawnDaemon({ args: ["--grpc-listen", "0.0.0.0:0", "--config", configFile("auth:\n  disabled: true\n")] });
    const client = grpcClient(daemon.grpcAddress);
    t.after(async () => {
      client.close();
      await daemon.stop();
    });
    assert.equal((await client.unary("GetStatus", {})).code, grpc.status.OK);
    assert.equal((await client.unary("ListApiKeys", {})).code, grpc.status.OK);
    const wrong = await client.unary("GetStatus", {}, bearer("hvd_not-a-key-at-all-0000000000000000000000"));
    assert.equal(wrong.code, UNAUTHENTICATED);
    assert.equal(wrong.details, "invalid API key");
  });

  test("loopback without keys: open until the first key exists, then keys are required (no restart)", async (t) => {
    const daemon = await spawnDaemon({ args: ["--config", configFile("")] });
    const client = grpcClient(daemon.grpcAddress);
    t.after(async () => {
      client.close();
      await daemon.stop();
    });
    assert.equal((await client.unary("GetStatus", {})).code, grpc.status.OK);
    const created = await client.unary("CreateApiKey", { name: "first", role: "admin" });
    assert.equal(created.code, grpc.status.OK, created.details);
    const anonymous = await client.unary("GetStatus", {});
    assert.equal(anonymous.code, UNAUTHENTICATED);
    assert.equal(anonymous.details, "missing API key: send authorization: Bearer <key> or x-api-key");
    assert.equal((await client.unary("GetStatus", {}, bearer(created.response!.key))).code, grpc.status.OK);
  });
});

describe("API keys (daemon on 0.0.0.0 with keys in the config file)", () => {
  let daemon: DaemonProcess;
  let client: GrpcClient;
  const secrets: string[] = [...Object.values(KEYS)];

  before(async () => {
    daemon = await spawnDaemon({ args: ["--grpc-listen", "0.0.0.0:0", "--config", configFile(CONFIG_KEYS)] });
    client = grpcClient(daemon.grpcAddress);
  });
  after(async () => {
    client.close();
    await daemon.stop();
  });

  test("no key: UNAUTHENTICATED (gRPC 16, HTTP 401) saying how to send one", async () => {
    const grpcOutcome = await client.unary("GetStatus", {});
    assert.equal(grpcOutcome.code, UNAUTHENTICATED);
    assert.equal(grpcOutcome.details, "missing API key: send authorization: Bearer <key> or x-api-key");
    const http = await postJson(daemon.httpUrl, "GetStatus", {});
    assert.equal(http.status, 401);
    assert.equal(http.body.code, "unauthenticated");
  });

  test("a wrong key, or a malformed authorization header: UNAUTHENTICATED", async () => {
    const wrong = await client.unary("GetStatus", {}, bearer(`${KEYS.admin}x`));
    assert.equal(wrong.code, UNAUTHENTICATED);
    assert.equal(wrong.details, "invalid API key");
    assert.equal((await postJson(daemon.httpUrl, "GetStatus", {}, { "x-api-key": "hvd_nope" })).status, 401);
    const basic = await client.unary("GetStatus", {}, { authorization: `Basic ${Buffer.from(`u:${KEYS.admin}`).toString("base64")}` });
    assert.equal(basic.code, UNAUTHENTICATED);
    assert.match(basic.details, /expected "Bearer <key>"/);
  });

  test("grpc.health.v1 needs no key (probes)", async () => {
    const Ctor = grpc.makeGenericClientConstructor(grpcServiceDefinition(Health), "Health");
    const health = new Ctor(daemon.grpcAddress, grpc.credentials.createInsecure()) as unknown as grpc.Client & Record<string, (...args: unknown[]) => any>;
    try {
      const check = Health.methods.find((m) => m.name === "Check")!;
      const response = await new Promise<any>((resolve, reject) =>
        health.Check!(create(check.input, { service: "" }), (err: Error | null, r: unknown) => (err ? reject(err) : resolve(r))));
      assert.equal(response.status, HealthCheckResponse_ServingStatus.SERVING);
    } finally {
      health.close();
    }
  });

  test("viewer: reads, but SubmitJob is PERMISSION_DENIED (gRPC 7, HTTP 403) naming the role and the RPC", async () => {
    assert.equal((await client.unary("GetStatus", {}, bearer(KEYS.viewer))).code, grpc.status.OK);
    const denied = await client.unary("SubmitJob", FAST_JOB, bearer(KEYS.viewer));
    assert.equal(denied.code, PERMISSION_DENIED);
    assert.match(denied.details, /^role viewer \(API key "dashboard"\) may not call SubmitJob: it needs the operator role or above$/);
    const http = await postJson(daemon.httpUrl, "SubmitJob", FAST_JOB, bearer(KEYS.viewer));
    assert.equal(http.status, 403);
    assert.equal(http.body.code, "permission_denied");
    assert.equal((await postJson(daemon.httpUrl, "ListJobs", {}, bearer(KEYS.viewer))).status, 200);
  });

  test("operator (a key_sha256 entry): SubmitJob works, CreateApiKey and ListAuditEvents are denied", async () => {
    const submitted = await client.unary("SubmitJob", FAST_JOB, bearer(KEYS.operator));
    assert.equal(submitted.code, grpc.status.OK, submitted.details);
    assert.ok(submitted.response!.job.id);
    const http = await postJson(daemon.httpUrl, "SubmitJob", FAST_JOB, bearer(KEYS.operator));
    assert.equal(http.status, 200, JSON.stringify(http.body));
    const denied = await client.unary("CreateApiKey", { name: "x", role: "viewer" }, bearer(KEYS.operator));
    assert.equal(denied.code, PERMISSION_DENIED);
    assert.match(denied.details, /role operator .* may not call CreateApiKey: it needs the admin role$/);
    assert.equal((await client.unary("ListAuditEvents", {}, bearer(KEYS.operator))).code, PERMISSION_DENIED);
  });

  test("the x-api-key header works on both transports", async () => {
    assert.equal((await client.unary("GetStatus", {}, { "x-api-key": KEYS.viewer })).code, grpc.status.OK);
    assert.equal((await postJson(daemon.httpUrl, "GetStatus", {}, { "x-api-key": KEYS.viewer })).status, 200);
    assert.equal((await postJson(daemon.httpUrl, "SubmitJob", FAST_JOB, { "x-api-key": KEYS.viewer })).status, 403);
  });

  test("admin: CreateApiKey returns the key once; it works; ListApiKeys shows neither key nor hash; RevokeApiKey ends it", async () => {
    const created = await client.unary("CreateApiKey", { name: "temp viewer", role: "viewer" }, bearer(KEYS.admin));
    assert.equal(created.code, grpc.status.OK, created.details);
    const key: string = created.response!.key;
    secrets.push(key);
    const record = created.response!.apiKey;
    assert.match(key, /^hvd_[A-Za-z0-9_-]{43}$/);
    assert.equal(record.prefix, key.slice(0, 12));
    assert.equal(record.role, "viewer");
    assert.equal(record.source, "api");

    assert.equal((await client.unary("GetStatus", {}, bearer(key))).code, grpc.status.OK);
    assert.equal((await postJson(daemon.httpUrl, "GetStatus", {}, { "x-api-key": key })).status, 200);
    assert.equal((await client.unary("SubmitJob", FAST_JOB, bearer(key))).code, PERMISSION_DENIED);

    const listed = await postJson(daemon.httpUrl, "ListApiKeys", {}, bearer(KEYS.admin));
    assert.equal(listed.status, 200);
    const text = JSON.stringify(listed.body);
    for (const secret of secrets) {
      assert.ok(!text.includes(secret), "a key in ListApiKeys");
      assert.ok(!text.includes(sha256(secret)), "a key hash in ListApiKeys");
    }
    const byName = Object.fromEntries(listed.body.apiKeys.map((k: any) => [k.name, k]));
    assert.deepEqual(Object.keys(byName).sort(), ["ci", "dashboard", "root", "temp viewer"]);
    assert.equal(byName.root.source, "config");
    assert.equal(byName.root.id, "cfg-root");
    assert.equal(byName.ci.prefix, "", "a key_sha256 entry has no prefix to show");
    assert.ok(byName["temp viewer"].lastUsedTime, "last_used_time is set once a key is used");

    const revoked = await client.unary("RevokeApiKey", { id: record.id }, bearer(KEYS.admin));
    assert.equal(revoked.code, grpc.status.OK, revoked.details);
    assert.ok(revoked.response!.apiKey.revokeTime);
    const after = await client.unary("GetStatus", {}, bearer(key));
    assert.equal(after.code, UNAUTHENTICATED);
    assert.equal(after.details, "invalid API key", "a revoked key reads like an unknown one");
    assert.equal((await postJson(daemon.httpUrl, "GetStatus", {}, bearer(key))).status, 401);
  });

  test("CreateApiKey and RevokeApiKey check their arguments", async () => {
    const badRole = await client.unary("CreateApiKey", { name: "x", role: "root" }, bearer(KEYS.admin));
    assert.equal(badRole.code, grpc.status.INVALID_ARGUMENT);
    assert.match(badRole.details, /^role: unknown role "root": one of admin, operator, viewer$/);
    const noName = await client.unary("CreateApiKey", { name: " ", role: "viewer" }, bearer(KEYS.admin));
    assert.equal(noName.code, grpc.status.INVALID_ARGUMENT);
    assert.match(noName.details, /^name: required/);
    const long = await client.unary("CreateApiKey", { name: "n".repeat(65), role: "viewer" }, bearer(KEYS.admin));
    assert.equal(long.code, grpc.status.INVALID_ARGUMENT);
    const past = await client.unary("CreateApiKey", { name: "x", role: "viewer", expireTime: timestampFromMs(Date.now() - 1000) }, bearer(KEYS.admin));
    assert.equal(past.code, grpc.status.INVALID_ARGUMENT);
    assert.match(past.details, /^expire_time: must be in the future$/);
    assert.equal((await client.unary("RevokeApiKey", { id: "key_nope" }, bearer(KEYS.admin))).code, grpc.status.NOT_FOUND);
    const config = await client.unary("RevokeApiKey", { id: "cfg-dashboard" }, bearer(KEYS.admin));
    assert.equal(config.code, grpc.status.FAILED_PRECONDITION);
    assert.match(config.details, /config file/);
  });

  test("a key past its expire_time is refused", async () => {
    const created = await client.unary("CreateApiKey", { name: "short", role: "viewer", expireTime: timestampFromMs(Date.now() + 1500) }, bearer(KEYS.admin));
    assert.equal(created.code, grpc.status.OK, created.details);
    secrets.push(created.response!.key);
    assert.equal((await client.unary("GetStatus", {}, bearer(created.response!.key))).code, grpc.status.OK);
    await new Promise((resolve) => setTimeout(resolve, 1600));
    const expired = await client.unary("GetStatus", {}, bearer(created.response!.key));
    assert.equal(expired.code, UNAUTHENTICATED);
    assert.match(expired.details, /expired/);
  });

  test("every role against every RPC: PERMISSION_DENIED exactly where the role table says so (gRPC, and Connect JSON for unary RPCs)", async () => {
    const mismatches: string[] = [];
    for (const role of ROLES) {
      for (const method of HypervisordService.methods) {
        const allowed = roleAllows(role, method.name);
        const outcome = await client.call(method, {}, bearer(KEYS[role]));
        if ((outcome.code === PERMISSION_DENIED) === allowed) mismatches.push(`${role} ${method.name} over gRPC: ${grpc.status[outcome.code]} ${outcome.details}`);
        if (method.methodKind !== "unary") continue;
        const http = await postJson(daemon.httpUrl, method.name, {}, bearer(KEYS[role]));
        if ((http.status === 403) === allowed) mismatches.push(`${role} ${method.name} over Connect: HTTP ${http.status} ${JSON.stringify(http.body)}`);
      }
    }
    assert.deepEqual(mismatches, []);
  });

  test("no key ever reaches the daemon's log", () => {
    const log = daemon.logs.join("\n");
    for (const secret of secrets) assert.ok(!log.includes(secret), `a key (${secret.slice(0, 12)}...) appears in the daemon log`);
  });
});

describe("role table", () => {
  const expectations: [Role, string, boolean][] = [
    ["viewer", "GetStatus", true], ["viewer", "StreamJobUpdates", true], ["viewer", "ValidateOva", true], ["viewer", "VerifyManifest", true],
    ["viewer", "ListWebhookDeliveries", true], ["viewer", "ListApiKeys", false], ["viewer", "ListAuditEvents", false],
    ["viewer", "ExtractOva", false], ["viewer", "CancelJob", false], ["viewer", "TestWebhook", false],
    ["operator", "SubmitJob", true], ["operator", "DeleteSchedule", true], ["operator", "ExtractOva", true],
    ["operator", "CreateApiKey", false], ["operator", "ListApiKeys", false], ["operator", "RevokeApiKey", false], ["operator", "ListAuditEvents", false],
    ["admin", "ListAuditEvents", true], ["admin", "RevokeApiKey", true],
    ["admin", "Check", false], // not an RPC of HypervisordService: nothing is granted by default
  ];
  for (const [role, method, allowed] of expectations) {
    test(`${role} ${allowed ? "may" : "may not"} call ${method}`, () => assert.equal(roleAllows(role, method), allowed));
  }

  test("every Get*/List*/Stream* RPC is readable by a viewer except the admin ones; every other RPC needs an operator", () => {
    for (const { name } of HypervisordService.methods) {
      const adminOnly = ["CreateApiKey", "ListApiKeys", "RevokeApiKey", "ListAuditEvents"].includes(name);
      const read = /^(Get|List|Stream)/.test(name) || ["ValidateOva", "VerifyManifest"].includes(name);
      assert.equal(roleAllows("viewer", name), read && !adminOnly, name);
      assert.equal(roleAllows("operator", name), !adminOnly, name);
      assert.equal(roleAllows("admin", name), true, name);
    }
  });
});

describe("config keys and the start-up rule", () => {
  test("apiKeysFromConfig: ids cfg-<name>, hashes only, errors naming the field", () => {
    const keys = apiKeysFromConfig([
      { name: "root", key: KEYS.admin, role: "admin" },
      { name: "ci", key_sha256: sha256(KEYS.operator).toUpperCase(), role: "Operator" },
    ]);
    assert.deepEqual(keys.map((k) => [k.id, k.role, k.keyHash, k.prefix, k.source]), [
      ["cfg-root", "admin", sha256(KEYS.admin), KEYS.admin.slice(0, 12), "config"],
      ["cfg-ci", "operator", sha256(KEYS.operator), "", "config"],
    ]);
    const fails = (records: Record<string, unknown>[], message: RegExp) => assert.throws(() => apiKeysFromConfig(records), message);
    fails([{ name: "a", key: KEYS.admin, role: "admin" }, { name: "b", key: KEYS.viewer, role: "boss" }], /^InvalidArgumentError: auth\.api_keys\[1\]\.role: unknown role "boss"/);
    fails([{ name: "a", key: KEYS.admin }], /auth\.api_keys\[0\]\.role: required/);
    fails([{ name: "a", key: "short", role: "admin" }], /auth\.api_keys\[0\]\.key: too short/);
    fails([{ name: "a", key_sha256: "abc", role: "admin" }], /auth\.api_keys\[0\]\.key_sha256: expected the hex SHA-256/);
    fails([{ name: "a", key: KEYS.admin, key_sha256: sha256(KEYS.admin), role: "admin" }], /auth\.api_keys\[0\]: give key or key_sha256, not both/);
    fails([{ name: "a", role: "admin" }], /auth\.api_keys\[0\]: key or key_sha256 is required/);
    fails([{ name: "a", key: KEYS.admin, role: "admin" }, { name: "a", key: KEYS.viewer, role: "admin" }], /auth\.api_keys\[1\]\.name: "a" is used twice/);
    fails([{ name: "a", key: KEYS.admin, role: "admin" }, { name: "b", key_sha256: sha256(KEYS.admin), role: "viewer" }], /auth\.api_keys\[1\]: the same key is listed twice/);
    fails([{ name: "a", key: KEYS.admin, role: "admin", expires: "never" }], /auth\.api_keys\[0\]\.expires: unknown key/);
    // The key never appears in an error.
    assert.throws(() => apiKeysFromConfig([{ name: "a", key: KEYS.admin, role: "boss" }]), (err: Error) => !err.message.includes(KEYS.admin));
  });

  test("authStartupRule", () => {
    const loopback = [{ host: "127.0.0.1", port: 50051 }, { host: "::1", port: 8080 }];
    const exposed = [{ host: "127.0.0.1", port: 8080 }, { host: "0.0.0.0", port: 50051 }];
    assert.equal(authStartupRule({ listeners: loopback, disabled: false, usableKeys: 0 }), "open-until-keys");
    assert.equal(authStartupRule({ listeners: loopback, disabled: false, usableKeys: 2 }), "open-until-keys");
    assert.equal(authStartupRule({ listeners: exposed, disabled: false, usableKeys: 1 }), "required");
    assert.equal(authStartupRule({ listeners: exposed, disabled: true, usableKeys: 0 }), "open");
    assert.throws(() => authStartupRule({ listeners: exposed, disabled: false, usableKeys: 0 }),
      { message: "listening on 0.0.0.0:50051 (not loopback) without any API key: create one in auth.api_keys or set auth.disabled: true" });
  });

  test("isLoopback", () => {
    for (const host of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "localhost"]) assert.ok(isLoopback(host), host);
    for (const host of ["0.0.0.0", "::", "", "10.0.0.1", "192.168.1.1", "example.com", "::ffff:10.0.0.1"]) assert.ok(!isLoopback(host), host);
  });
});

describe("ApiKeyStore (SQLite) and the hooks, in process", () => {
  // The SQLite queries as they are (synchronous); the hooks get them as the async ApiKeyStore (toAsync).
  const store = (): Sync<ApiKeyStore> => {
    const db = new Database(":memory:");
    migrate(db);
    return createApiKeyQueries(db);
  };
  const key = (id: string, secret: string, extra: Partial<Parameters<ApiKeyStore["insert"]>[0]> = {}) => ({
    id, name: id, role: "viewer" as const, keyHash: hashApiKey(secret), prefix: secret.slice(0, 12), source: "api" as const, createTime: 1000, ...extra,
  });

  test("syncConfig makes the config keys exactly the file's, keeping the API's; usable counts skip revoked and expired keys", () => {
    const keys = store();
    keys.insert(key("key_a", "secret-a"));
    keys.insert(key("key_b", "secret-b", { expireTime: 5000 }));
    keys.syncConfig(apiKeysFromConfig([{ name: "root", key: KEYS.admin, role: "admin" }, { name: "old", key: KEYS.viewer, role: "viewer" }], "auth.api_keys", 1000));
    keys.touch("cfg-root", 2000);
    assert.equal(keys.countUsable(4000), 4);
    assert.equal(keys.countUsable(5000), 3, "expired at its expire_time");
    keys.syncConfig(apiKeysFromConfig([{ name: "root", key: KEYS.admin, role: "operator" }], "auth.api_keys", 9000));
    assert.deepEqual(keys.list().map((k) => [k.id, k.role, k.source]), [["cfg-root", "operator", "config"], ["key_a", "viewer", "api"], ["key_b", "viewer", "api"]]);
    assert.equal(keys.get("cfg-root")!.createTime, 1000, "a config key keeps its create time across restarts");
    assert.equal(keys.get("cfg-root")!.lastUsedTime, 2000, "and its last use while the key stays the same");
    assert.equal(keys.byHash(hashApiKey(KEYS.viewer)), undefined, "a key removed from the file is gone");
    keys.syncConfig(apiKeysFromConfig([{ name: "root", key: KEYS.operator, role: "operator" }]));
    assert.equal(keys.get("cfg-root")!.lastUsedTime, undefined, "a new key has not been used");
    assert.equal(keys.revoke("key_a", 6000), true);
    assert.equal(keys.revoke("key_a", 7000), false, "already revoked");
    assert.equal(keys.get("key_a")!.revokeTime, 6000);
    assert.equal(keys.countUsable(6000), 1);
    assert.throws(() => keys.syncConfig(apiKeysFromConfig([{ name: "dup", key_sha256: hashApiKey("secret-b"), role: "admin" }])),
      /auth\.api_keys "dup": the same key is already API key key_b/);
    assert.throws(() => keys.insert(key("key_c", "secret-b")), /the same key is already API key key_b/);
  });

  test("the usable-key count (kept in memory between writes) follows inserts, revocations, config syncs and expiry", () => {
    const keys = store();
    assert.equal(keys.countUsable(1000), 0);
    keys.insert(key("key_a", "secret-a", { expireTime: 5000 }));
    assert.equal(keys.countUsable(1000), 1, "an insert counts at once");
    assert.equal(keys.countUsable(4999), 1);
    assert.equal(keys.countUsable(5000), 0, "expired at its expire_time");
    keys.insert(key("key_b", "secret-b"));
    assert.equal(keys.countUsable(5000), 1);
    assert.equal(keys.countUsable(3000), 2, "an earlier time is counted again (key_a was usable then)");
    keys.revoke("key_b", 6000);
    assert.equal(keys.countUsable(6000), 0, "a revocation counts at once");
    keys.syncConfig(apiKeysFromConfig([{ name: "root", key: KEYS.admin, role: "admin" }], "auth.api_keys", 1000));
    assert.equal(keys.countUsable(6000), 1, "so does a config sync");
  });

  const context = (headers: Record<string, string>, clientCertificate?: CallContext["clientCertificate"]): CallContext => ({
    signal: new AbortController().signal, peer: "127.0.0.1:1", transport: "grpc", header: (name) => headers[name], clientCertificate,
  });
  const call = (method: string, ctx: CallContext): Call => ({ service: HypervisordService.typeName, method, streaming: false, request: {}, context: ctx, start: 0 });
  const refusal = (code: string) => (err: unknown) => err instanceof HypervisordError && err.code === code;
  const logger = pino({ level: "silent" });

  test("last_used_time is written at most once a minute per key, without the call waiting for it", async () => {
    const keys = store();
    keys.insert(key("key_a", "secret-a"));
    const touches: number[] = [];
    const spied: ApiKeyStore = { ...toAsync(keys), touch: async (id, time) => void (touches.push(time), keys.touch(id, time)) };
    let now = 100_000;
    const hook = createAuthHook({ store: spied, logger, mode: "required", now: () => now });
    for (const t of [100_000, 130_000, 159_999, 160_000, 170_000, 400_000]) {
      now = t;
      await hook.before!(call("GetStatus", context({ "x-api-key": "secret-a" })));
    }
    assert.deepEqual(touches, [100_000, 160_000, 400_000]);
    assert.equal(keys.get("key_a")!.lastUsedTime, 400_000);
    // A failed write is logged, and the call goes on.
    const warnings: unknown[] = [];
    const failing: ApiKeyStore = { ...toAsync(keys), touch: () => Promise.reject(new Error("database is locked")) };
    const logged = createAuthHook({ store: failing, logger: { warn: (...args: unknown[]) => void warnings.push(args) }, mode: "required", now: () => 900_000 });
    const c = call("GetStatus", context({ "x-api-key": "secret-a" }));
    await logged.before!(c);
    assert.equal(c.principal?.id, "key_a");
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(warnings.length, 1);
  });

  test("the key cache: a hit is answered synchronously; a key revoked elsewhere works until the TTL, one revoked here (invalidate) stops at once", async () => {
    const keys = store();
    keys.insert(key("key_a", "secret-a"));
    keys.insert(key("key_b", "secret-b"));
    const clock = { ms: 0 };
    const reads: string[] = [];
    const counted = toAsync(keys);
    const cache = createApiKeyCache({ ...counted, byHash: (hash) => (reads.push(hash), counted.byHash(hash)) }, { ttlMs: 1000, clock: () => clock.ms });
    const hook = createAuthHook({ store: counted, keys: cache, logger, mode: "required", now: () => 10_000 });
    const withKey = (secret: string) => call("GetStatus", context({ "x-api-key": secret }));
    const first = hook.before!(withKey("secret-a"));
    assert.ok(first instanceof Promise, "a miss reads the store");
    await first;
    assert.equal(hook.before!(withKey("secret-a")), undefined, "a hit is no promise");
    assert.equal(hook.check("GetStatus", context({ "x-api-key": "secret-a" })), undefined, "nor is the edge check's");
    assert.equal(reads.length, 1);
    // Another daemon revokes key_a (the same database, not through this cache).
    keys.revoke("key_a", 10_000);
    clock.ms = 999;
    assert.equal(hook.before!(withKey("secret-a")), undefined, "still cached within the TTL");
    clock.ms = 1000;
    await assert.rejects(async () => hook.before!(withKey("secret-a")), refusal("UNAUTHENTICATED"), "read again once the TTL has passed");
    assert.throws(() => hook.before!(withKey("secret-a")), refusal("UNAUTHENTICATED"), "the revoked key is cached as refused");
    // A revocation through this daemon's API invalidates the cache: at once.
    await hook.before!(withKey("secret-b"));
    keys.revoke("key_b", 10_000);
    cache.invalidate();
    await assert.rejects(async () => hook.before!(withKey("secret-b")), refusal("UNAUTHENTICATED"));
    // Concurrent misses of one key share one read.
    cache.invalidate();
    reads.length = 0;
    await Promise.allSettled([hook.before!(withKey("secret-b")), hook.before!(withKey("secret-b")), hook.before!(withKey("secret-b"))]);
    assert.equal(reads.length, 1);
  });

  test("the hooks: principals by key, certificate or mode; refusals by role", async () => {
    const keys = store();
    const async = toAsync(keys);
    const cache = createApiKeyCache(async);
    const open = createAuthHook({ store: async, keys: cache, logger, mode: "open-until-keys" });
    const roles = createRoleHook();
    const run = async (hook: typeof open, method: string, ctx: CallContext) => {
      const c = call(method, ctx);
      await hook.before!(c);
      await roles.before!(c);
      return c.principal;
    };
    assert.equal((await run(open, "CreateApiKey", context({})))?.kind, "anonymous");
    keys.insert(key("key_v", "secret-v"));
    // As CreateApiKey does (the daemon wires it to invalidate the hook's cache).
    cache.invalidate();
    await assert.rejects(run(open, "GetStatus", context({})), refusal("UNAUTHENTICATED"), "a usable key closes open-until-keys");
    assert.deepEqual(await run(open, "GetStatus", context({ authorization: "bearer secret-v" })), { kind: "api_key", id: "key_v", name: "key_v", role: "viewer" });
    await assert.rejects(run(open, "CancelJob", context({ authorization: "Bearer secret-v" })), refusal("PERMISSION_DENIED"));
    const certificate = { subject: "CN=runner", fingerprint256: "AB:CD" };
    assert.deepEqual(await run(open, "SubmitJob", context({}, certificate)), { kind: "client_certificate", id: "CN=runner", name: "CN=runner", role: "operator" });
    const adminCertificates = createAuthHook({ store: async, logger, mode: "required", clientCertificateRole: "admin" });
    assert.equal((await run(adminCertificates, "ListAuditEvents", context({}, certificate)))?.role, "admin");
    const disabled = createAuthHook({ store: async, logger, mode: "open" });
    assert.equal((await run(disabled, "RevokeApiKey", context({})))?.kind, "anonymous");
    await assert.rejects(run(disabled, "GetStatus", context({ "x-api-key": "wrong" })), refusal("UNAUTHENTICATED"));
    // Health and other services are not the hooks' business.
    const health: Call = { ...call("Check", context({})), service: "grpc.health.v1.Health" };
    await createAuthHook({ store: async, logger, mode: "required" }).before!(health);
    roles.before!(health);
    assert.equal(health.principal, undefined);
    // Without the authentication hook before it, the role hook refuses everything.
    assert.throws(() => roles.before!(call("GetStatus", context({}))), /runs after createAuthHook/);
  });
});
