// The HTTP listener: Connect JSON with plain fetch, Connect streaming, every connect-node protocol, CORS, /healthz and 404.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { JobEventKind, type HypervisordService } from "../gen/hypervisord/v1/service_pb.js";
import { connectClients, postJson, streamJson } from "./support/clients.ts";
import { spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";

const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/;
const LONG = "size=100000000&chunk=100000&delayMs=50";

async function waitForJson(d: DaemonProcess, jobId: string, states: string[]): Promise<Record<string, any>> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const { status, body } = await postJson(d.httpUrl, "GetJob", { jobId });
    assert.equal(status, 200, JSON.stringify(body));
    if (states.includes(body.job.state)) return body.job;
    assert.ok(Date.now() < deadline, `job ${jobId} did not reach ${states} (is ${body.job.state})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Reads a Connect JSON stream (plain fetch) until `until` holds, then aborts it. */
async function readStream(d: DaemonProcess, method: string, body: unknown, until: (m: Record<string, any>) => boolean = () => false) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error("stream timed out after 20 s")), 20_000);
  const messages: Record<string, any>[] = [];
  let ended = true;
  try {
    for await (const message of streamJson(d.httpUrl, method, body, controller.signal)) {
      messages.push(message);
      if (until(message)) {
        ended = false;
        break;
      }
    }
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
  return { messages, ended };
}

describe("HTTP listener", () => {
  let d: DaemonProcess;
  let doneJobId = "";
  before(async () => {
    d = await spawnDaemon();
  });
  after(async () => {
    if (d) assert.equal(await d.stop(), 0, "daemon exit code");
  });

  test("Connect JSON with fetch: SubmitJob and GetJob, int64 as strings, zero values present", async () => {
    const submitted = await postJson(d.httpUrl, "SubmitJob", { definition: { provider: "fake", vm: "web-01?size=1000&delayMs=0", labels: { via: "json" } } });
    assert.equal(submitted.status, 200, JSON.stringify(submitted.body));
    assert.match(submitted.headers.get("content-type") ?? "", /^application\/json/);
    const job = submitted.body.job;
    assert.equal(submitted.body.created, true);
    assert.match(job.id, /^[0-9a-f-]{36}$/);
    assert.ok(["JOB_STATE_QUEUED", "JOB_STATE_RUNNING"].includes(job.state), job.state);
    assert.equal(job.definition.bandwidthLimit, "0", "int64 zero emitted as a string");
    assert.equal(job.definition.parallelDownloads, 4);
    assert.equal(job.definition.priority, "normal");
    assert.deepEqual(job.definition.labels, { via: "json" });
    assert.equal(typeof job.progress.bytesDone, "string");
    assert.match(job.createTime, RFC3339);
    const done = await waitForJson(d, job.id, ["JOB_STATE_COMPLETED", "JOB_STATE_FAILED"]);
    assert.equal(done.state, "JOB_STATE_COMPLETED", JSON.stringify(done.error));
    assert.equal(done.result.files[0].size, "1000");
    assert.equal(done.progress.bytesTotal, "1000");
    assert.equal(done.attempt, 1);
    assert.match(done.endTime, RFC3339);
    doneJobId = job.id;
  });

  test("Connect JSON with fetch: ListJobs and CancelJob", async () => {
    const list = await postJson(d.httpUrl, "ListJobs", { labels: { via: "json" }, pageSize: 10 });
    assert.equal(list.status, 200);
    assert.equal(list.body.totalSize, "1", "int64 total_size as a string");
    assert.equal(list.body.nextPageToken, "", "empty token present");
    assert.deepEqual(list.body.jobs.map((j: { id: string }) => j.id), [doneJobId]);
    const byState = await postJson(d.httpUrl, "ListJobs", { states: ["JOB_STATE_FAILED"] });
    assert.equal(byState.body.totalSize, "0");
    assert.deepEqual(byState.body.jobs, []);

    const long = await postJson(d.httpUrl, "SubmitJob", { definition: { provider: "fake", vm: `web-02?${LONG}` } });
    const cancelled = await postJson(d.httpUrl, "CancelJob", { jobId: long.body.job.id, reason: "via json" });
    assert.equal(cancelled.status, 200, JSON.stringify(cancelled.body));
    assert.equal(cancelled.body.job.state, "JOB_STATE_CANCELLED");
    // When the worker had already started, the message also says which files it removed.
    const { message, ...error } = cancelled.body.job.error;
    assert.deepEqual(error, { code: "CANCELLED", retryable: false });
    assert.match(message, /^via json( \(the \d+ files? it wrote (is|are) removed\))?$/);
    const again = await postJson(d.httpUrl, "CancelJob", { jobId: long.body.job.id });
    assert.equal(again.status, 400);
    assert.equal(again.body.code, "failed_precondition");
  });

  test("Connect JSON with fetch: GetStatus has every count, zeros included, as strings", async () => {
    // The cancelled job's worker leaves its slot asynchronously (it aborts the
    // transfer and cleans up its files first), so wait for `running` to reach 0.
    let { status, body } = await postJson(d.httpUrl, "GetStatus", {});
    for (let i = 0; i < 100 && body.running !== 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      ({ status, body } = await postJson(d.httpUrl, "GetStatus", {}));
    }
    assert.equal(status, 200);
    assert.deepEqual(Object.keys(body.jobCounts).sort(), ["cancelled", "completed", "failed", "queued", "running", "total"]);
    assert.ok(Object.values(body.jobCounts).every((v) => typeof v === "string"), JSON.stringify(body.jobCounts));
    assert.equal(body.jobCounts.failed, "0");
    assert.equal(body.jobCounts.completed, "1");
    assert.equal(body.jobCounts.cancelled, "1");
    assert.equal(body.jobCounts.total, "2");
    assert.equal(body.queueDepth, "0");
    assert.equal(typeof body.lastSeq, "string");
    assert.equal(body.running, 0);
    assert.equal(body.subscribers, 0);
    assert.equal(body.lifecycle, "running");
    assert.match(body.startTime, RFC3339);
  });

  test("Connect streaming JSON: StreamJobUpdates snapshot then SYNCED; StreamJobLogs ends", async () => {
    const updates = await readStream(d, "StreamJobUpdates", { jobIds: [doneJobId] }, (m) => m.kind === "JOB_EVENT_KIND_SYNCED");
    assert.equal(updates.ended, false);
    assert.deepEqual(updates.messages.map((m) => m.kind), ["JOB_EVENT_KIND_SNAPSHOT", "JOB_EVENT_KIND_SYNCED"]);
    const [snapshot, synced] = updates.messages as [Record<string, any>, Record<string, any>];
    assert.equal(snapshot.jobId, doneJobId);
    assert.equal(snapshot.state, "JOB_STATE_COMPLETED");
    assert.equal(snapshot.job.id, doneJobId);
    assert.equal(typeof synced.seq, "string");
    for (const m of updates.messages) assert.match(m.time, RFC3339, "update time is a valid RFC 3339 timestamp");

    const logs = await readStream(d, "StreamJobLogs", { jobId: doneJobId, follow: true });
    assert.equal(logs.ended, true, "the stream of a finished job ends by itself");
    assert.deepEqual(logs.messages.map((m) => m.entry.message), ["export started", "fake disk written", "export completed"]);
    assert.ok(logs.messages.every((m) => typeof m.entry.id === "string" && RFC3339.test(m.entry.time)));
  });

  describe("connect-node clients", () => {
    let clients: Record<string, Client<typeof HypervisordService>> = {};
    before(() => {
      clients = connectClients(d.httpUrl, d.grpcAddress);
    });
    for (const protocol of ["connectJson", "connectBinaryH2", "grpcWeb", "grpcOnHttpListener", "grpcOnGrpcListener"]) {
      test(`${protocol}: unary calls, an error code, and StreamJobUpdates to SYNCED`, async () => {
        const client = clients[protocol]!;
        assert.ok(client, `connectClients() has ${protocol}`);
        const status = await client.getStatus({});
        assert.equal(status.lifecycle, "running");
        assert.ok(status.jobCounts!.total >= 2n);
        const job = (await client.getJob({ jobId: doneJobId })).job!;
        assert.equal(job.definition?.labels.via, "json");
        assert.equal(job.result?.files[0]?.size, 1000n);
        await assert.rejects(client.getJob({ jobId: "" }), (err: unknown) => {
          assert.ok(err instanceof ConnectError);
          assert.equal(err.code, Code.InvalidArgument);
          assert.match(err.rawMessage, /^job_id: /);
          return true;
        });
        const controller = new AbortController();
        const timer = setTimeout(() => controller.abort(), 20_000);
        const kinds: JobEventKind[] = [];
        try {
          for await (const update of client.streamJobUpdates({ jobIds: [doneJobId] }, { signal: controller.signal })) {
            kinds.push(update.kind);
            if (update.kind === JobEventKind.SNAPSHOT) assert.equal(update.job?.id, doneJobId);
            if (update.kind === JobEventKind.SYNCED) break;
          }
        } finally {
          clearTimeout(timer);
          controller.abort();
        }
        assert.deepEqual(kinds, [JobEventKind.SNAPSHOT, JobEventKind.SYNCED]);
      });
    }
  });

  test("GET /healthz is 200 SERVING; other methods 405", async () => {
    const response = await fetch(`${d.httpUrl}/healthz`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /application\/json/);
    assert.deepEqual(await response.json(), { status: "SERVING" });
    const post = await fetch(`${d.httpUrl}/healthz`, { method: "POST" });
    await post.arrayBuffer();
    assert.equal(post.status, 405);
  });

  test("unknown paths are 404", async () => {
    for (const p of ["/nope", "/hypervisord.v1.HypervisordService/NoSuchMethod", "/other.Service/Call"]) {
      const response = await fetch(`${d.httpUrl}${p}`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
      await response.arrayBuffer();
      assert.equal(response.status, 404, p);
    }
    const get = await fetch(`${d.httpUrl}/nope`);
    assert.equal(get.status, 404);
    assert.equal(((await get.json()) as { code: string }).code, "not_found");
  });

  test("without cors_allowed_origins, a preflight is refused", async () => {
    const response = await preflight(d, "http://allowed.example");
    assert.equal(response.status, 403);
    assert.equal(response.headers.get("access-control-allow-origin"), null);
  });
});

function preflight(d: DaemonProcess, origin: string) {
  return fetch(`${d.httpUrl}/hypervisord.v1.HypervisordService/GetStatus`, {
    method: "OPTIONS",
    headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type,connect-protocol-version" },
  }).then(async (response) => (await response.arrayBuffer(), response));
}

describe("CORS", () => {
  let d: DaemonProcess;
  before(async () => {
    d = await spawnDaemon({ args: ["--cors-allowed-origin", "http://allowed.example"] });
  });
  after(async () => {
    if (d) assert.equal(await d.stop(), 0, "daemon exit code");
  });

  test("a preflight from the allowed origin gets 204 with the allow headers", async () => {
    const response = await preflight(d, "http://allowed.example");
    assert.equal(response.status, 204);
    assert.equal(response.headers.get("access-control-allow-origin"), "http://allowed.example");
    const allowedHeaders = (response.headers.get("access-control-allow-headers") ?? "").toLowerCase().split(/,\s*/);
    for (const h of ["content-type", "connect-protocol-version", "connect-timeout-ms", "x-grpc-web", "authorization"]) {
      assert.ok(allowedHeaders.includes(h), `allows ${h}: ${allowedHeaders.join(", ")}`);
    }
    assert.match(response.headers.get("access-control-allow-methods") ?? "", /POST/);
    assert.match(response.headers.get("vary") ?? "", /Origin/i);
  });

  test("a preflight from another origin gets 403 without allow-origin", async () => {
    const response = await preflight(d, "http://evil.example");
    assert.equal(response.status, 403);
    assert.equal(response.headers.get("access-control-allow-origin"), null);
    assert.equal(response.headers.get("access-control-allow-headers"), null);
  });

  test("an actual call carries allow-origin only for the allowed origin", async () => {
    const allowed = await postJson(d.httpUrl, "GetStatus", {}, { origin: "http://allowed.example" });
    assert.equal(allowed.status, 200);
    assert.equal(allowed.headers.get("access-control-allow-origin"), "http://allowed.example");
    assert.match(allowed.headers.get("access-control-expose-headers") ?? "", /grpc-status/i);
    const other = await postJson(d.httpUrl, "GetStatus", {}, { origin: "http://evil.example" });
    assert.equal(other.headers.get("access-control-allow-origin"), null);
  });
});
