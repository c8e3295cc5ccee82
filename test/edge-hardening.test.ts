// The network edge before authentication, against the real daemon process over 127.0.0.1: connection
// deadlines (first bytes, headers, idle) on both listeners with and without TLS, the connection cap,
// request size limits, the key checked before a body is read (RSS stays flat), refused authentications
// throttled and audited per address, and HTTP/2 rapid reset. Bounded: at most a few hundred sockets.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import path from "node:path";
import tls from "node:tls";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import Database from "better-sqlite3";
import pino from "pino";
import { GetStatusRequestSchema, HypervisordService } from "../gen/hypervisord/v1/service_pb.js";
import type { CallContext } from "../src/rpc/handlers.ts";
import { createRefusalAudit } from "../src/audit/audit-hook.ts";
import { hashApiKey } from "../src/auth/api-key.ts";
import { createAuthHook } from "../src/auth/auth-hook.ts";
import { loadConfig } from "../src/config/load-config.ts";
import { HypervisordError } from "../src/errors.ts";
import { createAuthFailureLimit } from "../src/ratelimit/auth-failure-limit.ts";
import { createTokenBuckets } from "../src/ratelimit/token-buckets.ts";
import { DEFAULT_EDGE_OPTIONS } from "../src/server/edge-options.ts";
import { grpcServiceDefinition } from "../src/server/grpc-server.ts";
import { createApiKeyQueries } from "../src/store/sqlite/api-keys.ts";
import { createAuditQueries } from "../src/store/sqlite/audit.ts";
import { migrate } from "../src/store/sqlite/migrations.ts";
import { DATABASE_FILE } from "../src/store/sqlite/sqlite-store.ts";
import type { AuditStore } from "../src/store/store.ts";
import { toAsync } from "../src/store/sync-store.ts";
import { spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { tempDir } from "./support/temp-dir.ts";

const ADMIN_KEY = `hvd_edge-test-admin-key-${"k".repeat(24)}`;
const WRONG_KEY = `hvd_edge-test-wrong-key-${"w".repeat(24)}`;
const RPC = "/hypervisord.v1.HypervisordService";
/** Scheduling slack on a shared 2-core machine: deadlines are asserted as [deadline - 50 ms, deadline + SLACK]. */
const SLACK_MS = 2500;

const LIMITS = { firstBytesMs: 1000, headersMs: 2000, idleMs: 1500, maxConnections: 20, resetBurst: 50 };

/** Long deadlines, for the daemons whose tests open idle sockets and must not see them closed by a deadline meanwhile. */
const PATIENT = { firstBytesMs: 20_000, headersMs: 30_000 };

function configFile(lines: string[], deadlines: { firstBytesMs: number; headersMs: number } = LIMITS): string {
  const file = path.join(tempDir("edge-config"), "hypervisord.yaml");
  fs.writeFileSync(file, [
    "auth:",
    "  api_keys:",
    `    - {name: root, key: ${ADMIN_KEY}, role: admin}`,
    "server:",
    `  first_bytes_timeout: ${deadlines.firstBytesMs}ms`,
    `  headers_timeout: ${deadlines.headersMs}ms`,
    `  idle_timeout: ${LIMITS.idleMs}ms`,
    `  max_connections: ${LIMITS.maxConnections}`,
    `  stream_reset_burst: ${LIMITS.resetBurst}`,
    "  stream_reset_rate: 5",
    ...lines,
    "",
  ].join("\n"));
  return file;
}

const split = (address: string) => {
  const i = address.lastIndexOf(":");
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
};

interface OpenSocket {
  socket: net.Socket;
  /** Milliseconds from connect to close. */
  closed: Promise<number>;
}

/** A TCP connection that sends `send` (or nothing); `closed` resolves when the daemon closes it. */
async function openSocket(address: string, send?: string | Buffer): Promise<OpenSocket> {
  const socket = net.connect(split(address));
  socket.on("error", () => {});
  socket.resume();
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  const start = performance.now();
  if (send) socket.write(send);
  return { socket, closed: new Promise((resolve) => socket.once("close", () => resolve(performance.now() - start))) };
}

/** A TLS connection (handshake done) that then sends nothing. */
async function openTls(address: string, ca: Buffer, alpn: string[]): Promise<OpenSocket> {
  const socket = tls.connect({ ...split(address), ca, servername: "localhost", ALPNProtocols: alpn });
  socket.on("error", () => {});
  socket.resume();
  await new Promise<void>((resolve, reject) => socket.once("secureConnect", resolve).once("error", reject));
  const start = performance.now();
  return { socket, closed: new Promise((resolve) => socket.once("close", () => resolve(performance.now() - start))) };
}

async function assertClosedWithin(sockets: OpenSocket[], deadlineMs: number, what: string): Promise<void> {
  const times = await Promise.all(sockets.map((s) => Promise.race([s.closed, sleep(deadlineMs + SLACK_MS + 2000, Infinity)])));
  for (const ms of times) {
    assert.ok(ms <= deadlineMs + SLACK_MS, `${what}: closed after ${ms} ms, deadline ${deadlineMs} ms`);
    // grpc-js closes a connection without calls at the idle timeout (GOAWAY), which may come first.
    const earliest = Math.min(deadlineMs, LIMITS.idleMs) - 250;
    assert.ok(ms >= earliest, `${what}: closed after ${ms} ms, before its deadline of ${deadlineMs} ms`);
  }
}

function rssBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(match![1]) * 1024;
}

const grpcDefinition = grpcServiceDefinition(HypervisordService);

function grpcClient(address: string, credentials = grpc.credentials.createInsecure()) {
  const Ctor = grpc.makeGenericClientConstructor(grpcDefinition, "HypervisordService");
  return new Ctor(address, credentials, { "grpc.ssl_target_name_override": "localhost" }) as unknown as grpc.Client & Record<string, (...args: unknown[]) => any>;
}

/** GetStatus over gRPC: the status code (0 when it worked). */
function grpcGetStatus(client: ReturnType<typeof grpcClient>, key: string | undefined, paddingBytes = 0): Promise<{ code: number; details: string; metadata?: grpc.Metadata }> {
  const metadata = new grpc.Metadata();
  if (key) metadata.set("authorization", `Bearer ${key}`);
  const request = create(GetStatusRequestSchema);
  // An unknown field makes the message as big as wanted.
  if (paddingBytes) request.$unknown = [{ no: 1000, wireType: 2, data: lengthDelimited(paddingBytes) }];
  return new Promise((resolve) => {
    client.GetStatus!(request, metadata, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null) =>
      resolve(err ? { code: err.code, details: err.details, metadata: err.metadata } : { code: 0, details: "" }));
  });
}

/** A Connect JSON call with fetch. */
async function connectCall(daemon: DaemonProcess, method: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${daemon.httpUrl}${RPC}/${method}`, {
    method: "POST", headers: { "content-type": "application/json", ...headers }, body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? (JSON.parse(text) as Record<string, any>) : {} };
}

/** A gRPC message whose 5-byte prefix announces `announced` bytes, followed by `sent` zero bytes, over raw HTTP/2. */
function oversizeGrpc(url: string, announced: number, sent: number, key: string | null = ADMIN_KEY) {
  return new Promise<{ status: string | undefined; message: string | undefined }>((resolve, reject) => {
    const session = http2.connect(url);
    session.on("error", reject);
    const stream = session.request({
      ":method": "POST", ":path": `${RPC}/GetStatus`, "content-type": "application/grpc", te: "trailers", ...(key && { authorization: `Bearer ${key}` }),
    });
    let status: string | undefined;
    let message: string | undefined;
    const take = (headers: http2.IncomingHttpHeaders) => {
      status ??= headers["grpc-status"] as string | undefined;
      message ??= headers["grpc-message"] as string | undefined;
    };
    stream.on("response", take);
    stream.on("trailers", take);
    stream.on("error", () => {});
    stream.resume();
    stream.on("close", () => {
      session.close();
      resolve({ status, message: message && decodeURIComponent(message) });
    });
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(announced, 1);
    stream.write(prefix);
    const chunk = Buffer.alloc(64 * 1024);
    let left = sent;
    const pump = () => {
      while (left > 0 && !stream.destroyed) {
        left -= chunk.length;
        if (!stream.write(chunk)) return void stream.once("drain", pump);
      }
    };
    pump();
  });
}

/** Opens `count` streams on one HTTP/2 session and resets each at once; resolves with the GOAWAY code (if any) and the streams opened. */
async function rapidReset(url: string, path: string, count: number, headers: http2.OutgoingHttpHeaders = {}) {
  const session = http2.connect(url, { peerMaxConcurrentStreams: 10_000 });
  session.on("error", () => {});
  let goaway: number | undefined;
  // The server's count: the last stream it had taken when it sent GOAWAY (client streams are odd: 1, 3, 5...).
  let serverStreams: number | undefined;
  session.on("goaway", (code, lastStreamId) => {
    goaway = code;
    serverStreams = (lastStreamId + 1) / 2;
  });
  const closed = new Promise<boolean>((resolve) => session.once("close", () => resolve(true)));
  await new Promise<void>((resolve, reject) => session.once("connect", () => resolve()).once("error", reject));
  let opened = 0;
  for (; opened < count && !session.destroyed && !session.closed && goaway === undefined; opened++) {
    const stream = session.request({ ":method": "POST", ":path": path, ...headers }, { endStream: false });
    stream.on("error", () => {});
    stream.close(http2.constants.NGHTTP2_CANCEL);
    if (opened % 20 === 19) await new Promise((resolve) => setImmediate(resolve));
  }
  const wasClosed = await Promise.race([closed, sleep(3000, false)]);
  session.destroy();
  return { goaway, opened, serverStreams, closed: wasClosed };
}

describe("configuration of the edge", () => {
  test("the defaults of the server.* settings are DEFAULT_EDGE_OPTIONS; 4 MiB requests; refused-auth throttle 20 then 1/s", () => {
    const loaded = loadConfig([], {});
    assert.equal(loaded.kind, "run");
    if (loaded.kind !== "run") return;
    assert.deepEqual(loaded.config.server, DEFAULT_EDGE_OPTIONS);
    assert.equal(loaded.config.server.maxRequestBytes, 4 * 1024 * 1024);
    assert.deepEqual(loaded.config.rateLimit.authFailures, { perSecond: 1, burst: 20 });
  });
});

describe("refused authentications, in process (SQLite in memory, a clock the test moves)", () => {
  const context = (peer: string, headers: Record<string, string> = {}): CallContext => ({
    signal: new AbortController().signal, peer, transport: "connect", header: (name) => headers[name],
  });
  const codeOf = (err: HypervisordError | undefined) => err?.code ?? "OK";

  test("token buckets: wait() tells when a token is back and takes none", () => {
    const buckets = createTokenBuckets(10);
    const spec = { burst: 2, perMs: 1 / 1000 };
    assert.equal(buckets.wait("a", spec, 0), 0, "no bucket yet: a full one");
    buckets.take("a", spec, 0);
    buckets.take("a", spec, 0);
    assert.equal(buckets.wait("a", spec, 0), 1000);
    assert.equal(buckets.wait("a", spec, 0), 1000, "waiting took nothing");
    assert.equal(buckets.wait("a", spec, 1000), 0);
  });

  test("the auth hook: the burst of failures is UNAUTHENTICATED, then RESOURCE_EXHAUSTED per address before the key is looked at; a good key takes nothing; every refusal is reported", async () => {
    const db = new Database(":memory:");
    migrate(db);
    const keys = createApiKeyQueries(db);
    keys.insert({ id: "k1", name: "k1", role: "viewer", keyHash: hashApiKey("good-key"), prefix: "good-key", source: "api", createTime: 0 });
    const clock = { ms: 0 };
    const refused: string[] = [];
    const hook = createAuthHook({
      store: toAsync(keys), logger: pino({ level: "silent" }), mode: "required", failures: createAuthFailureLimit({ perSecond: 1, burst: 3, now: () => clock.ms }),
      onRefused: (method, ctx, error) => refused.push(`${method} ${ctx.peer} ${error.code}`),
    });
    const wrong = { authorization: "Bearer wrong-key" };
    const good = { "x-api-key": "good-key" };
    for (let i = 0; i < 5; i++) assert.equal(codeOf(await hook.check("GetStatus", context("127.0.0.1:1000", good))), "OK", "good keys take nothing");
    const codes: string[] = [];
    for (let i = 0; i < 5; i++) codes.push(codeOf(await hook.check("GetStatus", context("127.0.0.1:1001", wrong))));
    assert.deepEqual(codes, ["UNAUTHENTICATED", "UNAUTHENTICATED", "UNAUTHENTICATED", "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"]);
    const throttled = (await hook.check("GetStatus", context("127.0.0.1:2000", good))) as HypervisordError & { retryAfterMs?: number };
    assert.equal(throttled.code, "RESOURCE_EXHAUSTED", "the address is throttled, whatever the port and the key");
    assert.equal(throttled.retryAfterMs, 1000);
    assert.equal(codeOf(await hook.check("GetStatus", context("[::1]:1", wrong))), "UNAUTHENTICATED", "another address has its own allowance");
    clock.ms = 1000;
    assert.equal(codeOf(await hook.check("GetStatus", context("127.0.0.1:2001", good))), "OK", "a token is back");
    assert.deepEqual(refused.slice(0, 4), ["GetStatus 127.0.0.1:1001 UNAUTHENTICATED", "GetStatus 127.0.0.1:1001 UNAUTHENTICATED", "GetStatus 127.0.0.1:1001 UNAUTHENTICATED", "GetStatus 127.0.0.1:1001 RESOURCE_EXHAUSTED"]);
    assert.equal(refused.length, 7);
    // The hook itself refuses the same way (and a check that passed leaves the call to it).
    const call = { service: HypervisordService.typeName, method: "ListJobs", streaming: false, request: {}, context: context("10.0.0.1:5", wrong), start: 0 };
    // The wrong key is cached (as refused) by now: the hook refuses synchronously.
    assert.throws(() => hook.before!(call), (err: unknown) => err instanceof HypervisordError && err.code === "UNAUTHENTICATED");
  });

  test("the refusal audit: the first of an (address, RPC, code) at once, the rest of the window as one count; past max_keys, one entry for many addresses", () => {
    const db = new Database(":memory:");
    migrate(db);
    const store = createAuditQueries(db);
    const audit = createRefusalAudit({ store: { ...toAsync<AuditStore>(store), append: store.append }, logger: pino({ level: "silent" }), windowMs: 60_000, maxKeys: 2, now: () => 1_700_000_000_000 });
    const unauthenticated = new HypervisordError("UNAUTHENTICATED", "invalid API key");
    for (let i = 0; i < 100; i++) audit.record("GetStatus", context(`127.0.0.1:${1000 + i}`), unauthenticated);
    audit.record("SubmitJob", context("127.0.0.1:1"), unauthenticated);
    for (let i = 0; i < 5; i++) audit.record("GetStatus", context(`10.0.0.${i}:1`), unauthenticated);
    const list = () => store.list({ limit: 100 }).events.map((e) => ({ method: e.method, peer: e.peer, code: e.code, principal: e.principal, request: JSON.parse(e.requestJson) }));
    assert.deepEqual(list().reverse(), [
      { method: "GetStatus", peer: "127.0.0.1:1000", code: "UNAUTHENTICATED", principal: "anonymous", request: { refused: "invalid API key" } },
      { method: "SubmitJob", peer: "127.0.0.1:1", code: "UNAUTHENTICATED", principal: "anonymous", request: { refused: "invalid API key" } },
    ]);
    audit.close();
    const summaries = list().filter((e) => e.request.repeats !== undefined).map((e) => `${e.method} ${e.peer} ${e.request.repeats}`).sort();
    assert.deepEqual(summaries, ["GetStatus 127.0.0.1:1000 99", "GetStatus many addresses 5"]);
  });
});

describe("connection deadlines and request sizes (plain)", () => {
  let daemon: DaemonProcess;
  before(async () => {
    daemon = await spawnDaemon({ args: ["--config", configFile([])] });
  });
  after(() => daemon?.stop());

  test("sockets that send nothing are closed at server.first_bytes_timeout on both listeners", async () => {
    const sockets = await Promise.all([
      ...Array.from({ length: 5 }, () => openSocket(daemon.httpAddress)),
      ...Array.from({ length: 5 }, () => openSocket(daemon.grpcAddress)),
    ]);
    await assertClosedWithin(sockets, LIMITS.firstBytesMs, "silent socket");
  });

  test("a half-sent request is closed at server.headers_timeout: HTTP/1.1 headers, an HTTP/2 preface without a call (both listeners)", async () => {
    const sockets = await Promise.all([
      openSocket(daemon.httpAddress, "POST /hypervisord.v1.HypervisordService/GetStatus HTTP/1.1\r\nHost: x\r\nContent-Type: app"),
      openSocket(daemon.httpAddress, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
      openSocket(daemon.grpcAddress, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    ]);
    await assertClosedWithin(sockets, LIMITS.headersMs, "half-sent request");
  });

  test("an idle keep-alive connection is closed at server.idle_timeout (HTTP/1.1, h2c with GOAWAY); a live stream is not", async () => {
    const h1 = await openSocket(daemon.httpAddress, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    const h2 = http2.connect(daemon.httpUrl);
    h2.on("error", () => {});
    const goaway = new Promise<number>((resolve) => h2.once("goaway", resolve));
    const h2Closed = new Promise<number>((resolve) => h2.once("close", () => resolve(performance.now())));
    const h2Response = h2.request({ ":path": "/healthz" });
    h2Response.resume();
    await new Promise((resolve) => h2Response.once("end", resolve));
    const idleSince = performance.now();
    // A server stream over gRPC that outlives several idle timeouts.
    const client = grpcClient(daemon.grpcAddress);
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${ADMIN_KEY}`);
    const stream = client.StreamJobUpdates!(create(HypervisordService.method.streamJobUpdates.input, {}), metadata) as grpc.ClientReadableStream<unknown>;
    let streamEnded: string | undefined;
    stream.on("data", () => {});
    stream.on("error", (err: grpc.ServiceError) => void (streamEnded ??= `error ${err.code} ${err.details}`));
    stream.on("end", () => void (streamEnded ??= "end"));
    try {
      await assertClosedWithin([h1], LIMITS.idleMs, "idle HTTP/1.1 keep-alive");
      assert.equal(await goaway, http2.constants.NGHTTP2_NO_ERROR);
      const h2IdleMs = (await h2Closed) - idleSince;
      assert.ok(h2IdleMs <= LIMITS.idleMs + SLACK_MS, `h2c session closed after ${h2IdleMs} ms idle`);
      await sleep(Math.max(0, 3 * LIMITS.idleMs - (performance.now() - idleSince)));
      assert.equal(streamEnded, undefined, "the live StreamJobUpdates stream was cut");
    } finally {
      stream.cancel();
      client.close();
    }
  });

  test("oversize requests: Connect JSON 413-ish RESOURCE_EXHAUSTED, a gRPC message announced at 100 MiB on both listeners", async () => {
    const big = JSON.stringify({ unknownPadding: "x".repeat(5 * 1024 * 1024) });
    const json = await connectCall(daemon, "GetStatus", big, { "x-api-key": ADMIN_KEY });
    assert.equal(json.body.code, "resource_exhausted", JSON.stringify(json.body).slice(0, 300));
    const h2c = await oversizeGrpc(daemon.httpUrl, 100 * 1024 * 1024, 8 * 1024 * 1024);
    assert.equal(h2c.status, String(grpc.status.RESOURCE_EXHAUSTED), h2c.message);
    const grpcPort = await oversizeGrpc(`http://${daemon.grpcAddress}`, 100 * 1024 * 1024, 8 * 1024 * 1024);
    assert.equal(grpcPort.status, String(grpc.status.RESOURCE_EXHAUSTED), grpcPort.message);
    // Without a key, the key is checked first on both listeners: UNAUTHENTICATED, the message never read.
    for (const url of [daemon.httpUrl, `http://${daemon.grpcAddress}`]) {
      const unread = await oversizeGrpc(url, 100 * 1024 * 1024, 8 * 1024 * 1024, null);
      assert.equal(unread.status, String(grpc.status.UNAUTHENTICATED), `${url}: ${unread.message}`);
    }
    // A key never seen is looked up in the store (asynchronously): the message waits unread meanwhile, so the call is
    // UNAUTHENTICATED, not RESOURCE_EXHAUSTED (which reading the announced 100 MiB would have given first).
    for (const url of [daemon.httpUrl, `http://${daemon.grpcAddress}`]) {
      const unread = await oversizeGrpc(url, 100 * 1024 * 1024, 8 * 1024 * 1024, `hvd_unknown-${crypto.randomUUID()}`);
      assert.equal(unread.status, String(grpc.status.UNAUTHENTICATED), `${url}: ${unread.message}`);
    }
    // A real client and a message just over the limit.
    const client = grpcClient(daemon.grpcAddress);
    try {
      const refused = await grpcGetStatus(client, ADMIN_KEY, 4 * 1024 * 1024 + 1);
      assert.equal(refused.code, grpc.status.RESOURCE_EXHAUSTED, refused.details);
      assert.equal((await grpcGetStatus(client, ADMIN_KEY)).code, grpc.status.OK, "the connection still serves");
    } finally {
      client.close();
    }
  });

  test("a body without a key is not read: 256 MiB bodies are refused at once (401) and the daemon's RSS stays flat", async () => {
    const pid = daemon.child.pid!;
    const rssBefore = rssBytes(pid);
    for (let i = 0; i < 3; i++) {
      const outcome = await uploadWithoutKey(daemon.httpAddress, 256 * 1024 * 1024);
      assert.match(outcome.head, /^HTTP\/1\.1 401/, outcome.head);
      assert.ok(outcome.sent < 64 * 1024 * 1024, `the client could send ${outcome.sent} bytes before the answer`);
    }
    const grown = rssBytes(pid) - rssBefore;
    assert.ok(grown < 48 * 1024 * 1024, `RSS grew by ${(grown / 1048576).toFixed(1)} MiB`);
    // The same over h2c: gRPC gets a trailers-only UNAUTHENTICATED, Connect JSON a 401 with its error body,
    // and both streams are reset (NO_ERROR) with the body still unsent.
    const session = http2.connect(daemon.httpUrl);
    session.on("error", () => {});
    const refusedOverH2 = (contentType: string) => new Promise<{ headers: http2.IncomingHttpHeaders; body: string; rstCode: number }>((resolve) => {
      const stream = session.request({ ":method": "POST", ":path": `${RPC}/SubmitJob`, "content-type": contentType, te: "trailers" });
      let headers: http2.IncomingHttpHeaders = {};
      let body = "";
      stream.on("response", (h) => void (headers = h));
      stream.on("data", (chunk: Buffer) => void (body += chunk.toString()));
      stream.on("error", () => {});
      stream.on("close", () => resolve({ headers, body, rstCode: stream.rstCode ?? -1 }));
      stream.write(Buffer.alloc(64 * 1024));
    });
    try {
      const grpcRefusal = await refusedOverH2("application/grpc");
      assert.equal(grpcRefusal.headers["grpc-status"], String(grpc.status.UNAUTHENTICATED));
      const jsonRefusal = await refusedOverH2("application/json");
      assert.equal(jsonRefusal.headers[":status"], 401);
      assert.equal(JSON.parse(jsonRefusal.body).code, "unauthenticated", jsonRefusal.body);
      assert.equal(jsonRefusal.rstCode, http2.constants.NGHTTP2_NO_ERROR);
    } finally {
      session.close();
    }
  });
});

/** A protobuf length-delimited field value of `n` bytes: its varint length and the bytes. */
function lengthDelimited(n: number): Uint8Array {
  const varint: number[] = [];
  for (let v = n; ; v = Math.floor(v / 128)) {
    if (v < 128) {
      varint.push(v);
      break;
    }
    varint.push((v % 128) | 128);
  }
  return Buffer.concat([Buffer.from(varint), Buffer.alloc(n)]);
}

/** Streams a Connect JSON body of `size` bytes without a key over HTTP/1.1 until the daemon answers or closes. */
function uploadWithoutKey(address: string, size: number): Promise<{ head: string; sent: number }> {
  return new Promise((resolve) => {
    const socket = net.connect(split(address));
    let head = "";
    let sent = 0;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve({ head: head.split("\r\n")[0] ?? "", sent });
    };
    socket.on("data", (chunk: Buffer) => {
      head += chunk.toString("latin1");
      if (head.includes("\r\n\r\n")) finish();
    });
    socket.on("error", finish);
    socket.on("close", finish);
    socket.once("connect", () => {
      socket.write(`POST ${RPC}/SubmitJob HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${size}\r\n\r\n`);
      const chunk = Buffer.alloc(256 * 1024, 0x20);
      const pump = () => {
        while (!done && sent < size) {
          sent += chunk.length;
          if (!socket.write(chunk)) return void socket.once("drain", pump);
        }
      };
      pump();
    });
  });
}

describe("refused authentications: throttled and audited per address", () => {
  let daemon: DaemonProcess;
  before(async () => {
    daemon = await spawnDaemon({ args: ["--config", configFile([])] });
  });
  after(() => daemon?.stop());

  test("400 wrong-key calls: UNAUTHENTICATED for the burst, then RESOURCE_EXHAUSTED with retry hints on both listeners; audited, collapsed", async () => {
    const codes = new Map<number, number>();
    let retryAfter: string | null = null;
    for (let i = 0; i < 400; i++) {
      const response = await connectCall(daemon, "GetStatus", {}, { authorization: `Bearer ${WRONG_KEY}` });
      codes.set(response.status, (codes.get(response.status) ?? 0) + 1);
      if (response.status === 429) retryAfter ??= response.headers.get("retry-after");
    }
    const unauthenticated = codes.get(401) ?? 0;
    assert.ok(unauthenticated >= 20 && unauthenticated <= 30, `401s: ${unauthenticated} (burst 20, then 1/s)`);
    assert.equal(unauthenticated + (codes.get(429) ?? 0), 400, JSON.stringify([...codes]));
    assert.ok(Number(retryAfter) >= 1, `retry-after: ${retryAfter}`);
    // The gRPC listener shares the address's allowance; a body-less check answers before any message.
    const client = grpcClient(daemon.grpcAddress);
    try {
      const throttled = await grpcGetStatus(client, WRONG_KEY);
      assert.equal(throttled.code, grpc.status.RESOURCE_EXHAUSTED, throttled.details);
      assert.ok(Number(throttled.metadata?.get("grpc-retry-pushback-ms")[0]) > 0, "grpc-retry-pushback-ms");
      // Even a good key waits while the address is throttled (keys cannot be tried at speed); then it works.
      await sleep(1100);
      assert.equal((await grpcGetStatus(client, ADMIN_KEY)).code, grpc.status.OK);
    } finally {
      client.close();
    }
    const events = await connectCall(daemon, "ListAuditEvents", { pageSize: 1000 }, { authorization: `Bearer ${ADMIN_KEY}` });
    assert.equal(events.status, 200, JSON.stringify(events.body));
    const refused = (events.body.events as Record<string, any>[]).filter((e) => e.principal === "anonymous");
    const shapes = new Set(refused.map((e) => `${e.method} ${e.code} ${e.transport}`));
    assert.ok(shapes.has("GetStatus UNAUTHENTICATED connect"), [...shapes].join("; "));
    assert.ok(shapes.has("GetStatus RESOURCE_EXHAUSTED connect"), [...shapes].join("; "));
    for (const e of refused) assert.match(e.peer, /^127\.0\.0\.1:\d+$/);
    assert.ok(refused.length <= 6, `identical refusals are collapsed: ${refused.length} events for 401 refusals`);
    // At shutdown the counts of the window are written: every refusal is accounted for.
    await daemon.stop();
    const db = new Database(path.join(daemon.dataDir, DATABASE_FILE), { readonly: true });
    try {
      const rows = db.prepare("SELECT code, transport, request_json FROM audit_events WHERE principal = 'anonymous'").all() as { code: string; transport: string; request_json: string }[];
      const total = rows.reduce((n, row) => n + 1 + ((JSON.parse(row.request_json) as { repeats?: number }).repeats ?? 0), 0) - rows.filter((r) => /repeats/.test(r.request_json)).length;
      // 400 over Connect and 1 over gRPC, collapsed together (same address, RPC and code).
      assert.equal(total, 401, JSON.stringify(rows));
      assert.ok(rows.every((r) => !r.request_json.includes(WRONG_KEY)), "the key sent is never stored");
    } finally {
      db.close();
    }
  });
});

describe("the connection cap and HTTP/2 rapid reset (long first-bytes and headers deadlines)", () => {
  let daemon: DaemonProcess;
  before(async () => {
    daemon = await spawnDaemon({ args: ["--config", configFile([], PATIENT)] });
  });
  after(() => daemon?.stop());

  test("at server.max_connections the connection idle the longest is closed first, and a new real client is served", async () => {
    const cap = LIMITS.maxConnections;
    const idle: OpenSocket[] = [];
    for (let i = 0; i < cap + 5; i++) idle.push(await openSocket(daemon.httpAddress));
    const isClosed = (s: OpenSocket) => s.socket.destroyed || s.socket.readableEnded;
    await Promise.race([Promise.all(idle.slice(0, 5).map((s) => s.closed)), sleep(5000)]);
    await sleep(200);
    assert.deepEqual(idle.map(isClosed), idle.map((_, i) => i < 5), "the 5 oldest, and only they, are closed");
    const health = await fetch(`${daemon.httpUrl}/healthz`);
    assert.equal(health.status, 200);
    await Promise.race([idle[5]!.closed, sleep(5000)]);
    assert.ok(isClosed(idle[5]!), "the next oldest made room for the fetch");
    assert.ok(!isClosed(idle[cap + 4]!), "the newest are kept");

    const idleGrpc: OpenSocket[] = [];
    for (let i = 0; i < cap; i++) idleGrpc.push(await openSocket(daemon.grpcAddress));
    const client = grpcClient(daemon.grpcAddress);
    try {
      assert.equal((await grpcGetStatus(client, ADMIN_KEY)).code, grpc.status.OK);
      await Promise.race([idleGrpc[0]!.closed, sleep(5000)]);
      assert.ok(isClosed(idleGrpc[0]!), "the oldest idle gRPC socket made room");
      assert.ok(!isClosed(idleGrpc[cap - 1]!));
    } finally {
      client.close();
      for (const s of [...idle, ...idleGrpc]) s.socket.destroy();
    }
  });


  test("streams opened and reset at once: GOAWAY (ENHANCE_YOUR_CALM) past server.stream_reset_burst on the HTTP listener, the connection cut on the gRPC one; both keep serving", async () => {
    const http = await rapidReset(daemon.httpUrl, "/healthz", 1000);
    assert.equal(http.goaway, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, JSON.stringify(http));
    // Well before nghttp2's own limit (1000 resets, then GOAWAY INTERNAL_ERROR). Counted by the server (the GOAWAY's last
    // stream id): the client sends on until it reads the GOAWAY, more or fewer streams as the machine is loaded.
    assert.ok(http.serverStreams !== undefined && http.serverStreams < 500, `GOAWAY came after ${http.serverStreams} streams`);
    const grpcPort = await rapidReset(`http://${daemon.grpcAddress}`, `${RPC}/GetStatus`, 1000, { "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${ADMIN_KEY}` });
    assert.ok(grpcPort.closed, JSON.stringify(grpcPort));
    assert.ok(grpcPort.opened < 1000, `the gRPC connection was cut after ${grpcPort.opened} streams`);
    assert.equal((await fetch(`${daemon.httpUrl}/healthz`)).status, 200);
    const client = grpcClient(daemon.grpcAddress);
    try {
      assert.equal((await grpcGetStatus(client, ADMIN_KEY)).code, grpc.status.OK);
    } finally {
      client.close();
    }
  });
});

const openssl = (() => {
  try {
    return execFileSync("openssl", ["version"], { encoding: "utf8" }).trim();
  } catch {
    return undefined;
  }
})();
const skipTls = openssl ? false : "the openssl CLI is not installed (Debian package openssl): no certificates to test TLS with";
if (skipTls) console.log(`# skipping the TLS edge tests: ${skipTls}`);

describe("connection deadlines with TLS", { skip: skipTls }, () => {
  let daemon: DaemonProcess;
  let ca: Buffer;
  before(async () => {
    const dir = tempDir("edge-pki");
    const run = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=edge test ca");
    fs.writeFileSync(path.join(dir, "server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n");
    run("req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost");
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "1", "-out", "server.pem", "-days", "2", "-extfile", "server.ext");
    ca = fs.readFileSync(path.join(dir, "ca.pem"));
    daemon = await spawnDaemon({ args: ["--config", configFile(["tls:", `  cert_file: ${path.join(dir, "server.pem")}`, `  key_file: ${path.join(dir, "server.key")}`])] });
  });
  after(() => daemon?.stop());

  test("silent TCP sockets close at first_bytes_timeout, silent TLS sessions at headers_timeout, on both listeners", async () => {
    const silent = await Promise.all([openSocket(daemon.httpAddress), openSocket(daemon.grpcAddress)]);
    const handshaken = await Promise.all([
      openTls(daemon.httpAddress, ca, ["h2", "http/1.1"]),
      openTls(daemon.httpAddress, ca, ["http/1.1"]),
      openTls(daemon.grpcAddress, ca, ["h2"]),
    ]);
    await Promise.all([
      assertClosedWithin(silent, LIMITS.firstBytesMs, "silent socket (TLS listener)"),
      assertClosedWithin(handshaken, LIMITS.headersMs, "TLS session without a request"),
    ]);
  });

  test("real calls still work over TLS, and an idle h2 session gets GOAWAY at idle_timeout", async () => {
    const session = http2.connect(`https://${daemon.httpAddress}`, { ca, servername: "localhost" });
    session.on("error", () => {});
    const goaway = new Promise<number>((resolve) => session.once("goaway", resolve));
    const stream = session.request({ ":method": "POST", ":path": `${RPC}/GetStatus`, "content-type": "application/json", "x-api-key": ADMIN_KEY });
    let status = 0;
    stream.once("response", (h) => void (status = Number(h[":status"])));
    stream.resume();
    stream.end("{}");
    await new Promise((resolve) => stream.once("close", resolve));
    assert.equal(status, 200);
    const start = performance.now();
    assert.equal(await goaway, http2.constants.NGHTTP2_NO_ERROR);
    assert.ok(performance.now() - start <= LIMITS.idleMs + SLACK_MS);
    session.destroy();
    const client = grpcClient(daemon.grpcAddress, grpc.credentials.createSsl(ca));
    try {
      assert.equal((await grpcGetStatus(client, ADMIN_KEY)).code, grpc.status.OK);
    } finally {
      client.close();
    }
  });
});
