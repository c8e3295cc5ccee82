// Bad input at the edges (issue 19): strict Connect JSON, bounded fields and messages, undecodable binary,
// over-long paths, and files that are not regular files. Over the real wire, against the real daemon.
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import fs from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import { SourceContextSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { GetJobRequestSchema, HypervisordService } from "../gen/hypervisord/v1/service_pb.js";
import { compileLimits, createRequestLimitsHook } from "../src/api/request-limits.ts";
import { createGrpcJsClient, postJson, streamJson, type GrpcJsClient } from "./support/clients.ts";
import { spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { tempDir } from "./support/temp-dir.ts";

const run = promisify(execFile);
const PYTHON = "/usr/bin/python3";
const MiB = 1024 * 1024;
const fakeVm = "web-01?size=1000&delayMs=0";

let d: DaemonProcess;
let c: GrpcJsClient;

before(async () => {
  d = await spawnDaemon();
  c = createGrpcJsClient(d.grpcAddress);
});
after(async () => {
  c?.close();
  if (d) assert.equal(await d.stop(), 0, "daemon exit code");
});

/** The gRPC error of a grpc-js unary call (fails the test when the call succeeds). */
async function grpcError(method: Parameters<GrpcJsClient["unary"]>[0], request: object): Promise<grpc.ServiceError> {
  return c.unary(method, request as never).then(
    () => assert.fail(`${method} should have failed`),
    (err: grpc.ServiceError) => err,
  );
}

describe("Connect JSON is strict: unknown fields and enum names are INVALID_ARGUMENT naming the field", () => {
  const refused: [string, string, unknown, string][] = [
    ["unknown field in a nested message", "SubmitJob", { definition: { provider: "fake", vm: fakeVm, compres: true } }, "definition.compres: unknown field"],
    ["unknown top-level field", "GetJob", { jobId: "x", bogus: 1 }, "bogus: unknown field"],
    ["unknown enum name", "SubmitJob", { definition: { provider: "fake", vm: fakeVm, format: "OVX" } },
      'definition.format: "OVX" is not one of EXPORT_FORMAT_OVF, EXPORT_FORMAT_OVA (or ovf, ova)'],
    ["unknown enum name in a list", "ListJobs", { states: ["queued", "DONE"] },
      'states[1]: "DONE" is not one of JOB_STATE_QUEUED, JOB_STATE_RUNNING, JOB_STATE_COMPLETED, JOB_STATE_FAILED, JOB_STATE_CANCELLED (or queued, running, completed, failed, cancelled)'],
    ["unknown field in a list item", "SubmitJobs", { definitions: [{ provider: "fake", vm: fakeVm }, { provider: "fake", vm: fakeVm, outputdir: "x" }] },
      "definitions[1].outputdir: unknown field"],
    ["wrong JSON type", "SubmitJob", { definition: { provider: "fake", vm: fakeVm, compress: "yes" } }, 'definition.compress: expected true or false, got "yes"'],
    ["number out of range", "SubmitJob", { definition: { provider: "fake", vm: fakeVm, parallelDownloads: 2 ** 40 } },
      "definition.parallel_downloads: expected an integer from -2147483648 to 2147483647, got 1099511627776"],
    ["label value not a string", "SubmitJob", { definition: { provider: "fake", vm: fakeVm, labels: { team: 7 } } }, 'definition.labels["team"]: expected a string, got 7'],
  ];
  for (const [title, method, body, message] of refused) {
    test(`${method}: ${title}`, async () => {
      const response = await postJson(d.httpUrl, method, body);
      assert.equal(response.status, 400, JSON.stringify(response.body));
      assert.equal(response.body.code, "invalid_argument");
      assert.equal(response.body.message, message);
    });
  }

  test("a body that is not JSON, and a huge unknown key and enum name, are refused with short messages", async () => {
    const notJson = await fetch(`${d.httpUrl}/hypervisord.v1.HypervisordService/GetJob`, { method: "POST", headers: { "content-type": "application/json" }, body: "{nope" });
    assert.equal(notJson.status, 400);
    const body = await notJson.json() as { code: string; message: string };
    assert.equal(body.code, "invalid_argument");
    assert.match(body.message, /^request body: not valid JSON/);

    const hugeKey = await postJson(d.httpUrl, "GetJob", { ["k".repeat(MiB)]: 1 });
    assert.equal(hugeKey.status, 400);
    assert.match(hugeKey.body.message, /^"k{64}"…\(1048576 bytes\): unknown field$/);
    const hugeEnum = await postJson(d.httpUrl, "SubmitJob", { definition: { provider: "fake", vm: fakeVm, format: "O".repeat(MiB) } });
    assert.equal(hugeEnum.status, 400);
    assert.ok(hugeEnum.body.message.length < 300, `message of ${hugeEnum.body.message.length} characters`);
    assert.match(hugeEnum.body.message, /^definition\.format: "O{64}"…\(1048576 bytes\) is not one of /);
  });

  test("enum names are accepted case-insensitively and without their prefix, and mean what they say", async () => {
    for (const format of ["OVA", "ova", "export_format_ova", "EXPORT_FORMAT_OVA"]) {
      const response = await postJson(d.httpUrl, "SubmitJob", { definition: { provider: "fake", vm: fakeVm, format } });
      assert.equal(response.status, 200, JSON.stringify(response.body));
      assert.equal(response.body.job.definition.format, "EXPORT_FORMAT_OVA", `format ${format}`);
    }
    const ovf = await postJson(d.httpUrl, "SubmitJob", { definition: { provider: "fake", vm: fakeVm, format: "ovf" } });
    assert.equal(ovf.body.job.definition.format, "EXPORT_FORMAT_OVF");
    const listed = await postJson(d.httpUrl, "ListJobs", { states: ["queued", "Running", "JOB_STATE_COMPLETED", "completed"] });
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    const vms = await postJson(d.httpUrl, "ListVMs", { provider: "fake", powerState: "powered_on" });
    assert.equal(vms.status, 200, JSON.stringify(vms.body));
  });

  test("a Connect stream with an unknown field ends with invalid_argument", async () => {
    await assert.rejects(async () => {
      for await (const _ of streamJson(d.httpUrl, "StreamJobUpdates", { jobIds: [], afterSeqq: "1" }, AbortSignal.timeout(10_000))) { /* drain */ }
    }, (err: Error & { code?: string }) => err.code === "invalid_argument" && err.message === "afterSeqq: unknown field");
  });

  test("the gRPC port keeps protobuf semantics: unknown fields are skipped", async () => {
    // GetJobRequest{job_id} followed by field 99 (varint 1), which this daemon does not know.
    const bytes = Buffer.concat([Buffer.from(toBinary(GetJobRequestSchema, create(GetJobRequestSchema, { jobId: "no-such-job" }))), Buffer.from([0x98, 0x06, 0x01])]);
    const err = await new Promise<grpc.ServiceError>((resolve, reject) => {
      c.raw.makeUnaryRequest("/hypervisord.v1.HypervisordService/GetJob", (b: Buffer) => b, (b: Buffer) => b, bytes, (e) => (e ? resolve(e) : reject(new Error("GetJob succeeded"))));
    });
    assert.equal(err.code, grpc.status.NOT_FOUND, err.details);
    // The same bytes as a Connect binary body: decoded, so the job is looked up.
    const response = await fetch(`${d.httpUrl}/hypervisord.v1.HypervisordService/GetJob`, { method: "POST", headers: { "content-type": "application/proto" }, body: bytes });
    assert.equal(response.status, 404);
  });
});

describe("undecodable protobuf binary on the HTTP port is INVALID_ARGUMENT", () => {
  // Field 1 (job_id), length-delimited, with a length far beyond the body.
  const GARBAGE = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02]);

  test("a garbage application/proto body: HTTP 400, invalid_argument, naming the request type", async () => {
    const response = await fetch(`${d.httpUrl}/hypervisord.v1.HypervisordService/GetJob`, { method: "POST", headers: { "content-type": "application/proto" }, body: GARBAGE });
    assert.equal(response.status, 400);
    const body = await response.json() as { code: string; message: string };
    assert.equal(body.code, "invalid_argument");
    assert.match(body.message, /^request: does not decode as hypervisord\.v1\.GetJobRequest: /);
  });

  test("the same garbage over gRPC (h2c) and gRPC-Web on the HTTP port: INVALID_ARGUMENT, as on the gRPC port", async () => {
    const envelope = Buffer.concat([Buffer.from([0, 0, 0, 0, GARBAGE.length]), GARBAGE]);
    const session = http2.connect(d.httpUrl);
    try {
      const status = await new Promise<Record<string, unknown>>((resolve, reject) => {
        const stream = session.request({ ":method": "POST", ":path": "/hypervisord.v1.HypervisordService/GetJob", "content-type": "application/grpc", te: "trailers" });
        let headers: Record<string, unknown> = {};
        stream.on("response", (h) => (headers = h));
        stream.on("trailers", (t) => (headers = { ...headers, ...t }));
        stream.on("data", () => {});
        stream.on("end", () => resolve(headers));
        stream.on("error", reject);
        stream.end(envelope);
      });
      assert.equal(status["grpc-status"], "3", JSON.stringify(status));
      assert.match(decodeURIComponent(String(status["grpc-message"])), /^request: does not decode as hypervisord\.v1\.GetJobRequest: /);
    } finally {
      session.close();
    }
    const web = await fetch(`${d.httpUrl}/hypervisord.v1.HypervisordService/GetJob`, { method: "POST", headers: { "content-type": "application/grpc-web+proto" }, body: envelope });
    const trailers = `${web.headers.get("grpc-status") ?? ""} ${Buffer.from(await web.arrayBuffer()).toString("latin1")}`;
    assert.match(trailers, /grpc-status:\s*3|^3 /, trailers);
  });

  test("a JSON body that is not UTF-8 is INVALID_ARGUMENT", async () => {
    const response = await fetch(`${d.httpUrl}/hypervisord.v1.HypervisordService/GetJob`, { method: "POST", headers: { "content-type": "application/json" }, body: Buffer.from([0x7b, 0xff, 0x7d]) });
    assert.equal(response.status, 400);
    assert.equal(((await response.json()) as { message: string }).message, "request body: not valid UTF-8");
  });

  test("a valid binary body still works", async () => {
    const bytes = toBinary(GetJobRequestSchema, create(GetJobRequestSchema, { jobId: "no-such-job" }));
    const response = await fetch(`${d.httpUrl}/hypervisord.v1.HypervisordService/GetJob`, { method: "POST", headers: { "content-type": "application/proto" }, body: bytes });
    assert.equal(response.status, 404);
  });
});

describe("every string and repeated field is bounded, before any handler, and messages never echo unbounded input", () => {
  const over: [string, Parameters<GrpcJsClient["unary"]>[0], object, string][] = [
    ["a 1 MiB job id", "getJob", { jobId: "x".repeat(MiB) }, `job_id: at most 128 characters, got ${MiB}`],
    ["65 labels", "submitJob", { definition: { provider: "fake", vm: fakeVm, labels: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"])) } },
      "definition.labels: at most 64 entries, got 65"],
    ["a long label key", "submitJob", { definition: { provider: "fake", vm: fakeVm, labels: { ["k".repeat(100)]: "v" } } },
      "definition.labels: keys are at most 63 characters, got one of 100"],
    ["a long label value", "listJobs", { labels: { team: "v".repeat(300) } }, 'labels["team"]: at most 256 characters, got 300'],
    ["a long name in a batch", "submitJobs", { definitions: [{ provider: "fake", vm: fakeVm }, { provider: "fake", vm: fakeVm, name: "n".repeat(300) }] },
      "definitions[1].name: at most 256 characters, got 300"],
    ["a long request_id", "submitJob", { definition: { provider: "fake", vm: fakeVm, requestId: "r".repeat(257) } }, "definition.request_id: at most 256 characters, got 257"],
    ["a long vSphere password", "listVMs", { provider: "fake", vsphere: { url: "https://vc.example/sdk", password: "p".repeat(2000) } }, "vsphere.password: at most 1024 characters, got 2000"],
    ["a long cancel reason", "cancelJob", { jobId: "j", reason: "r".repeat(501) }, "reason: at most 500 characters, got 501"],
    ["a long cron", "createSchedule", { schedule: { cron: "*".repeat(129) } }, "schedule.cron: at most 128 characters, got 129"],
    ["a long webhook URL", "createWebhook", { webhook: { url: `https://h.example/${"p".repeat(3000)}` } }, "webhook.url: at most 2048 characters, got 3018"],
    ["33 webhook events", "createWebhook", { webhook: { url: "https://h.example/", events: Array.from({ length: 33 }, () => "job.failed") } },
      "webhook.events: at most 32 items, got 33"],
    ["a long webhook header value", "createWebhook", { webhook: { url: "https://h.example/", headers: { "x-a": "v".repeat(5000) } } },
      'webhook.headers["x-a"]: at most 4096 characters, got 5000'],
    ["33 update_mask paths", "updateWebhook", { id: "w", updateMask: { paths: Array.from({ length: 33 }, () => "url") } }, "update_mask.paths: at most 32 items, got 33"],
    ["a long description", "createProfile", { profile: { name: "p", description: "d".repeat(3000) } }, "profile.description: at most 2048 characters, got 3000"],
    ["a 5,000-character path", "validateOva", { path: `/${"a/".repeat(2500)}` }, "path: at most 4096 characters, got 5001"],
    ["a 129-character id of 2-byte characters", "getJobHistory", { jobId: "é".repeat(129) }, "job_id: at most 128 characters, got 129"],
  ];
  for (const [title, method, request, message] of over) {
    test(`${title} → INVALID_ARGUMENT naming the field and the limit`, async () => {
      const err = await grpcError(method, request);
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.details);
      assert.equal(err.details, message);
    });
  }

  test("the same refusal over Connect JSON, with the same message", async () => {
    const response = await postJson(d.httpUrl, "GetJob", { jobId: "x".repeat(MiB) });
    assert.equal(response.status, 400);
    assert.equal(response.body.message, `job_id: at most 128 characters, got ${MiB}`);
  });

  test("webhook events are de-duplicated", async () => {
    const { webhook } = await c.unary("createWebhook", { webhook: { url: "https://h.example/hook", events: ["job.failed", "job.completed", " job.failed", "job.completed"] } });
    assert.deepEqual(webhook?.events, ["job.failed", "job.completed"]);
  });

  test("every string field of every request has a limit, and a new one without a limit stops the start", () => {
    assert.doesNotThrow(() => createRequestLimitsHook(HypervisordService));
    assert.throws(() => compileLimits(SourceContextSchema), /google\.protobuf\.SourceContext\.file_name has no length limit/);
  });

  test("the C-core client (Python grpcio) gets INVALID_ARGUMENT for a 1 MiB id and NOT_FOUND for a 100-character one", async (t) => {
    if (!fs.existsSync(PYTHON)) {
      console.log(`skipping the C-core check: ${PYTHON} not found (install python3-grpcio)`);
      t.skip(`${PYTHON} not found`);
      return;
    }
    // GetJobRequest{job_id} encoded by hand: field 1, length-delimited; no generated stubs needed.
    const script = String.raw`
import grpc, json, sys
def encode(job_id):
    data = job_id.encode()
    n, head = len(data), b"\x0a"
    while True:
        if n < 0x80:
            head += bytes([n]); break
        head += bytes([(n & 0x7f) | 0x80]); n >>= 7
    return head + data
out = {}
with grpc.insecure_channel(sys.argv[1]) as channel:
    call = channel.unary_unary("/hypervisord.v1.HypervisordService/GetJob", request_serializer=encode, response_deserializer=lambda b: b)
    for name, job_id in (("huge", "x" * (1024 * 1024)), ("hundred", "y" * 100)):
        try:
            call(job_id, timeout=10)
            out[name] = {"code": "OK", "details": ""}
        except grpc.RpcError as err:
            out[name] = {"code": err.code().name, "details": err.details()}
print(json.dumps(out))
`;
    const probe = await run(PYTHON, ["-c", "import grpc"], { timeout: 30_000 }).then(() => undefined, (err: Error) => err.message);
    if (probe) {
      console.log(`skipping the C-core check: ${PYTHON} cannot import grpc (apt-get install python3-grpcio): ${probe}`);
      t.skip("python3-grpcio missing");
      return;
    }
    const { stdout } = await run(PYTHON, ["-c", script, d.grpcAddress], { timeout: 60_000 });
    const out = JSON.parse(stdout.trim()) as Record<string, { code: string; details: string }>;
    assert.deepEqual(out.huge, { code: "INVALID_ARGUMENT", details: `job_id: at most 128 characters, got ${MiB}` });
    assert.equal(out.hundred!.code, "NOT_FOUND", out.hundred!.details);
    assert.match(out.hundred!.details, /^job y{100} not found$/);
  });
});

describe("paths too long for the filesystem, and files that are not regular files", () => {
  let fifo = "";
  before(() => {
    fifo = path.join(d.outputRoot, "trap.ova");
    execFileSync("mkfifo", [fifo]);
    fs.mkdirSync(path.join(d.outputRoot, "a-directory.ova"));
    fs.writeFileSync(path.join(d.outputRoot, "plain.txt"), "x");
    fs.symlinkSync("loop-b", path.join(d.outputRoot, "loop-a"));
    fs.symlinkSync("loop-a", path.join(d.outputRoot, "loop-b"));
    fs.mkdirSync(path.join(d.outputRoot, "pkg"));
    execFileSync("mkfifo", [path.join(d.outputRoot, "pkg", "artifact-manifest.json")]);
  });

  const refused: [string, Parameters<GrpcJsClient["unary"]>[0], () => object, RegExp][] = [
    ["a 300-byte path component (ENAMETOOLONG)", "validateOva", () => ({ path: `${"n".repeat(300)}.ova` }), /^path: has a path component of 304 bytes \("n{64}"…\(304 bytes\)\); at most 255$/],
    ["a 300-byte output_dir component", "submitJob", () => ({ definition: { provider: "fake", vm: fakeVm, outputDir: `x/${"n".repeat(300)}` } }), /^definition\.output_dir: has a path component of 300 bytes/],
    ["a 300-byte output_dir component for ExtractOva", "extractOva", () => ({ path: "plain.txt", outputDir: "n".repeat(300) }), /^output_dir: has a path component of 300 bytes/],
    ["a loop of symbolic links (ELOOP)", "validateOva", () => ({ path: "loop-a" }), /loop-a has a loop of symbolic links$/],
    ["a path through a file (ENOTDIR)", "validateOva", () => ({ path: "plain.txt/x.ova" }), /^path: .*plain\.txt is not a directory$/],
    ["a directory", "validateOva", () => ({ path: "a-directory.ova" }), /a-directory\.ova is not a regular file \(a directory\)$/],
    ["a FIFO named as the artifact manifest", "verifyManifest", () => ({ path: "pkg/artifact-manifest.json" }), /artifact-manifest\.json is not a regular file \(a FIFO\)$/],
  ];
  for (const [title, method, request, pattern] of refused) {
    test(`${title} → INVALID_ARGUMENT`, async () => {
      const err = await grpcError(method, request());
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.details);
      assert.match(err.details, pattern);
    });
  }

  test("a Unix socket is refused", async () => {
    const socketPath = path.join(d.outputRoot, "sock.ova");
    const server = net.createServer().listen(socketPath);
    await new Promise((resolve) => server.once("listening", resolve));
    try {
      const err = await grpcError("validateOva", { path: "sock.ova" });
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.details);
      assert.match(err.details, /sock\.ova is not a regular file \(a socket\)$/);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test("a FIFO under an output root: 8 ValidateOva and 8 ExtractOva at once are refused promptly, and /health stays 200", async () => {
    const started = performance.now();
    const calls = Array.from({ length: 16 }, (_, i) => (i % 2 === 0
      ? grpcError("validateOva", { path: "trap.ova" })
      : grpcError("extractOva", { path: "trap.ova", outputDir: `extracted-${i}` })));
    const errors = await Promise.all(calls);
    const seconds = (performance.now() - started) / 1000;
    for (const err of errors) {
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.details);
      assert.equal(err.details, `${fifo} is not a regular file (a FIFO)`);
    }
    assert.ok(seconds < 5, `16 calls took ${seconds.toFixed(2)} s`);
    // File I/O still works: the health check stats the data dir and the output roots.
    const health = await fetch(`${d.httpUrl}/health`, { signal: AbortSignal.timeout(5_000) });
    assert.equal(health.status, 200, await health.text());
    assert.ok(!fs.existsSync(path.join(d.outputRoot, "extracted-1")), "nothing extracted");
  });
});
