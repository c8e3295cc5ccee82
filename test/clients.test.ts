// clients/node over both transports: Connect (http://, https://) and gRPC (grpc://, grpcs://). Auth header,
// deadline, retries against a fake server whose failures we control; watchJob against the real daemon,
// across a daemon restart.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { createHypervisordClient, parseServerUrl, type HypervisordClient, type NodeClientOptions } from "../clients/node/index.ts";
import { createHypervisordClient as createWebClient } from "../clients/web/index.ts";
import { JobState } from "../gen/hypervisord/v1/job_pb.js";
import { HypervisordService, JobEventKind, type StreamJobUpdatesResponse } from "../gen/hypervisord/v1/service_pb.js";
import { respawnDaemon, spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { tempDir } from "./support/temp-dir.ts";

/** A HypervisordService that answers GetStatus and refuses SubmitJob, recording what it received. */
function fakeService() {
  const state = { statusFailures: 0, statusDelayMs: 0, calls: [] as { method: string; authorization: string | null }[] };
  const impl: Partial<ServiceImpl<typeof HypervisordService>> = {
    async getStatus(_request, context) {
      state.calls.push({ method: "GetStatus", authorization: context.requestHeader.get("authorization") });
      if (state.statusFailures > 0) {
        state.statusFailures--;
        throw new ConnectError("warming up", Code.Unavailable);
      }
      if (state.statusDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, state.statusDelayMs));
      return { version: "fake-1" };
    },
    async submitJob(_request, context) {
      state.calls.push({ method: "SubmitJob", authorization: context.requestHeader.get("authorization") });
      throw new ConnectError("queue closed", Code.Unavailable);
    },
  };
  return { state, handler: connectNodeAdapter({ routes: (router) => router.service(HypervisordService, impl) }) };
}

/** Listens on 127.0.0.1:0; close() ends open connections too, so that after() never waits. */
async function listen(server: http.Server | http2.Http2Server): Promise<{ address: string; close(): Promise<void> }> {
  const sockets = new Set<import("node:net").Socket>();
  server.on("connection", (socket: import("node:net").Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  server.on("secureConnection", (socket: import("node:net").Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as import("node:net").AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    }),
  };
}

const TRANSPORTS = [
  { name: "Connect over HTTP/1.1", url: (fake: { h1: string; h2: string }) => `http://${fake.h1}`, options: {} },
  { name: "Connect over h2c", url: (fake: { h1: string; h2: string }) => `http://${fake.h2}`, options: { httpVersion: "2" as const } },
  { name: "gRPC", url: (fake: { h1: string; h2: string }) => `grpc://${fake.h2}`, options: {} },
];

describe("node client against a fake server", () => {
  const { state, handler } = fakeService();
  const closers: (() => Promise<void>)[] = [];
  const clients: HypervisordClient[] = [];
  const fake = { h1: "", h2: "" };
  before(async () => {
    const h1 = await listen(http.createServer(handler));
    const h2 = await listen(http2.createServer(handler));
    closers.push(h1.close, h2.close);
    fake.h1 = h1.address;
    fake.h2 = h2.address;
  });
  after(async () => {
    for (const client of clients) client.close();
    await Promise.all(closers.map((close) => close()));
  });
  const client = (url: string, options: Partial<NodeClientOptions>) => {
    const c = createHypervisordClient({ url, ...options });
    clients.push(c);
    return c;
  };

  test("parseServerUrl picks the protocol from the scheme", () => {
    assert.deepEqual(parseServerUrl("http://h:1"), { protocol: "connect", baseUrl: "http://h:1", secure: false });
    assert.deepEqual(parseServerUrl("https://h:1/api/"), { protocol: "connect", baseUrl: "https://h:1/api", secure: true });
    assert.deepEqual(parseServerUrl("grpc://h:1"), { protocol: "grpc", baseUrl: "http://h:1", secure: false });
    assert.deepEqual(parseServerUrl("grpcs://h:1"), { protocol: "grpc", baseUrl: "https://h:1", secure: true });
    assert.deepEqual(parseServerUrl("127.0.0.1:8080"), { protocol: "connect", baseUrl: "http://127.0.0.1:8080", secure: false });
    assert.throws(() => parseServerUrl("ftp://h:1"), /unsupported scheme "ftp".*http, https .*grpc, grpcs/);
  });

  for (const transport of TRANSPORTS) {
    test(`${transport.name}: a unary call carries the API key as a bearer token`, async () => {
      state.calls.length = 0;
      const c = client(transport.url(fake), { apiKey: "hvd_test_key", ...transport.options });
      const status = await c.getStatus({});
      assert.equal(status.version, "fake-1");
      assert.deepEqual(state.calls, [{ method: "GetStatus", authorization: "Bearer hvd_test_key" }]);
      const anonymous = client(transport.url(fake), transport.options);
      await anonymous.getStatus({});
      assert.equal(state.calls[1]!.authorization, null, "no key, no header");
    });

    test(`${transport.name}: timeoutMs is the deadline of a unary call`, async () => {
      state.statusDelayMs = 3_000;
      try {
        const c = client(transport.url(fake), { timeoutMs: 200, ...transport.options });
        const started = Date.now();
        await assert.rejects(c.getStatus({}), (err: unknown) => err instanceof ConnectError && err.code === Code.DeadlineExceeded);
        assert.ok(Date.now() - started < 2_000, `gave up after ${Date.now() - started} ms`);
        // A per-call timeoutMs wins over the client's.
        state.statusDelayMs = 300;
        assert.equal((await c.getStatus({}, { timeoutMs: 5_000 })).version, "fake-1");
      } finally {
        state.statusDelayMs = 0;
      }
    });

    test(`${transport.name}: idempotent calls are retried on UNAVAILABLE, others are not`, async () => {
      const c = client(transport.url(fake), { retries: { retries: 3, initialMs: 20 }, ...transport.options });
      state.calls.length = 0;
      state.statusFailures = 2;
      assert.equal((await c.getStatus({})).version, "fake-1");
      assert.equal(state.calls.length, 3, "two failures, then the answer");

      state.calls.length = 0;
      await assert.rejects(c.submitJob({ definition: { vm: "x" } }), (err: unknown) => err instanceof ConnectError && err.code === Code.Unavailable);
      assert.equal(state.calls.length, 1, "SubmitJob is not idempotent: never repeated");

      state.calls.length = 0;
      state.statusFailures = 1;
      const noRetry = client(transport.url(fake), { retries: 0, ...transport.options });
      await assert.rejects(noRetry.getStatus({}), /warming up/);
      assert.equal(state.calls.length, 1);
      state.statusFailures = 0;
    });
  }

  test("the web client (fetch, Connect JSON) sends the key and retries like the node one", async () => {
    const web = createWebClient({ url: `http://${fake.h1}`, apiKey: "hvd_web_key", retries: { retries: 2, initialMs: 10 } });
    state.calls.length = 0;
    state.statusFailures = 1;
    assert.equal((await web.getStatus({})).version, "fake-1");
    assert.deepEqual(state.calls.map((c) => c.authorization), ["Bearer hvd_web_key", "Bearer hvd_web_key"]);
  });

  test("a refused connection is UNAVAILABLE with the Node error as cause (after the retries)", async () => {
    const dead = await listen(http.createServer());
    await dead.close();
    for (const url of [`http://${dead.address}`, `grpc://${dead.address}`]) {
      const c = client(url, { retries: { retries: 2, initialMs: 10 } });
      await assert.rejects(c.getStatus({}), (err: unknown) =>
        err instanceof ConnectError && err.code === Code.Unavailable && /ECONNREFUSED/.test(String((err.cause as Error)?.message ?? err.message)));
    }
  });
});

describe("node client over TLS", () => {
  let dir = "";
  let cert: Buffer;
  const closers: (() => Promise<void>)[] = [];
  const clients: HypervisordClient[] = [];
  let address = "";
  let skipReason = "";
  before(async () => {
    dir = tempDir("tls");
    try {
      execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem")], { stdio: "pipe" });
    } catch (err) {
      skipReason = `openssl could not make a certificate: ${(err as Error).message}`;
      return;
    }
    cert = fs.readFileSync(path.join(dir, "cert.pem"));
    const { handler } = fakeService();
    // One TLS port for HTTP/1.1 (https://) and HTTP/2 (grpcs://), chosen by ALPN.
    const server = http2.createSecureServer({ cert, key: fs.readFileSync(path.join(dir, "key.pem")), allowHTTP1: true }, handler);
    const listening = await listen(server);
    closers.push(listening.close);
    address = listening.address;
  });
  after(async () => {
    for (const client of clients) client.close();
    await Promise.all(closers.map((close) => close()));
  });

  for (const scheme of ["https", "grpcs"]) {
    test(`${scheme}://: verified with tls.ca, refused without, accepted with insecure`, async (t) => {
      if (skipReason) return t.skip(skipReason);
      const make = (tls: object) => {
        const c = createHypervisordClient({ url: `${scheme}://${address}`, tls, retries: 0 });
        clients.push(c);
        return c;
      };
      assert.equal((await make({ ca: cert }).getStatus({})).version, "fake-1");
      await assert.rejects(make({}).getStatus({}), (err: unknown) => err instanceof ConnectError && /self-signed|certificate/i.test(String((err.cause as Error)?.message ?? err.message)));
      assert.equal((await make({ insecure: true }).getStatus({})).version, "fake-1");
    });
  }
});

describe("watchJob against the daemon", () => {
  let d: DaemonProcess;
  const clients: HypervisordClient[] = [];
  before(async () => {
    d = await spawnDaemon();
  });
  after(async () => {
    for (const client of clients) client.close();
    if (d) assert.equal(await d.stop(), 0, "daemon exit code");
  });
  const urls = () => [["Connect", d.httpUrl], ["gRPC", `grpc://${d.grpcAddress}`]] as const;
  const client = (url: string) => {
    const c = createHypervisordClient({ url });
    clients.push(c);
    return c;
  };

  test("follows a job to COMPLETED over both transports, and rejects an unknown job with NOT_FOUND", async () => {
    for (const [name, url] of urls()) {
      const c = client(url);
      const { job } = await c.submitJob({ definition: { provider: "fake", vm: "web-01?size=1048576&chunk=65536&delayMs=20", outputDir: `follow-${name}` } });
      const updates: StreamJobUpdatesResponse[] = [];
      const final = await c.watchJob(job!.id, { onUpdate: (u) => updates.push(u), signal: AbortSignal.timeout(30_000) });
      assert.equal(final.state, JobState.COMPLETED, name);
      assert.equal(final.id, job!.id);
      assert.equal(final.result?.files[0]?.size, 1048576n);
      assert.equal(updates[0]!.kind, JobEventKind.SNAPSHOT, `${name}: a new subscriber starts with a snapshot`);
      assert.ok(updates.some((u) => u.kind === JobEventKind.SYNCED));
      assert.equal(updates.at(-1)!.state, JobState.COMPLETED);
      await assert.rejects(c.watchJob("01a20000-0000-7000-8000-000000000000"), (err: unknown) => err instanceof ConnectError && err.code === Code.NotFound);
    }
  });

  test("the web client (connect-web over fetch) has the same API", async () => {
    const web = createWebClient({ url: d.httpUrl });
    assert.equal((await web.getStatus({})).lifecycle, "running");
    const { job } = await web.submitJob({ definition: { provider: "fake", vm: "web-04?size=262144&chunk=65536&delayMs=20", outputDir: "web-client" } });
    const final = await web.watchJob(job!.id, { signal: AbortSignal.timeout(30_000) });
    assert.equal(final.state, JobState.COMPLETED);
    assert.throws(() => createWebClient({ url: "grpc://127.0.0.1:1" }), /Connect over http\(s\)/);
  });

  test("an aborted signal stops watching, not the job", async () => {
    const c = client(d.httpUrl);
    const { job } = await c.submitJob({ definition: { provider: "fake", vm: "web-02?size=100000000&chunk=65536&delayMs=50", outputDir: "abort" } });
    const controller = new AbortController();
    const watching = c.watchJob(job!.id, { signal: controller.signal, onUpdate: (u) => u.kind === JobEventKind.SYNCED && controller.abort(new Error("enough")) });
    await assert.rejects(watching, /enough/);
    assert.ok([JobState.QUEUED, JobState.RUNNING].includes((await c.getJob({ jobId: job!.id })).job!.state));
    await c.cancelJob({ jobId: job!.id });
  });

  for (const transport of ["Connect", "gRPC"] as const) {
    test(`${transport}: resumes with after_seq across a daemon restart and resolves with the final job`, async () => {
      const url = transport === "Connect" ? d.httpUrl : `grpc://${d.grpcAddress}`;
      const c = client(url);
      const size = 4 * 1024 * 1024;
      const { job } = await c.submitJob({ definition: { provider: "fake", vm: `web-03?size=${size}&chunk=65536&delayMs=40`, outputDir: `restart-${transport}` } });
      const updates: StreamJobUpdatesResponse[] = [];
      const reconnects: { afterSeq: bigint | undefined; code: Code }[] = [];
      let killedAfter = -1;
      let restarted: Promise<void> | undefined;
      const final = await c.watchJob(job!.id, {
        signal: AbortSignal.timeout(60_000),
        onUpdate(update) {
          updates.push(update);
          if (!restarted && update.state === JobState.RUNNING && (update.progress?.percent ?? 0) >= 10) {
            killedAfter = updates.length;
            restarted = (async () => {
              d = await respawnDaemon(d, { samePorts: true });
            })();
          }
        },
        onReconnect: ({ afterSeq, error }) => reconnects.push({ afterSeq, code: error.code }),
        backoff: { initialMs: 100, maxMs: 1_000 },
        maxReconnects: 40,
      });
      await restarted;
      assert.ok(killedAfter > 0, "the job was seen running before the kill");
      assert.equal(final.state, JobState.COMPLETED, JSON.stringify(final.error));
      assert.ok(reconnects.length >= 1, "the stream was dropped and reopened");
      const lastSeqBefore = updates[killedAfter - 1]!.seq;
      assert.ok(reconnects.every((r) => r.afterSeq !== undefined && r.afterSeq >= lastSeqBefore), "reconnected with after_seq = the last seq seen");
      const resumed = updates.slice(killedAfter);
      assert.ok(!resumed.some((u) => u.kind === JobEventKind.SNAPSHOT), "after_seq: state changes replayed, no snapshot");
      assert.ok(resumed.some((u) => u.kind === JobEventKind.STATE_CHANGED && u.seq > lastSeqBefore));
      const file = path.join(final.result!.outputDir, final.result!.files[0]!.path);
      assert.equal(fs.statSync(file).size, size, "the export resumed and finished");
    });
  }
});
