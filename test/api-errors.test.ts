// Bad input to every RPC: the exact status code and a message naming the field, over grpc-js and over Connect JSON.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { create, toJson, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { JobState, type ExportFormat } from "../gen/hypervisord/v1/job_pb.js";
import { HypervisordService } from "../gen/hypervisord/v1/service_pb.js";
import type { PowerState } from "../gen/hypervisord/v1/vm_pb.js";
import { createGrpcJsClient, postJson, streamJson, type GrpcJsClient } from "./support/clients.ts";
import { spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { tempDir } from "./support/temp-dir.ts";

type Methods = typeof HypervisordService.method;
type In<K extends keyof Methods> = MessageInitShape<Methods[K]["input"]>;

interface Case {
  title: string;
  method: keyof Methods;
  request: () => unknown;
  code: grpc.status;
  /** INVALID_ARGUMENT: the field the message must start with; otherwise a pattern the message must match. */
  expect: string | RegExp;
}

/** HTTP status of a Connect error code. */
const HTTP: Partial<Record<grpc.status, number>> = {
  [grpc.status.INVALID_ARGUMENT]: 400, [grpc.status.NOT_FOUND]: 404, [grpc.status.ALREADY_EXISTS]: 409,
  [grpc.status.FAILED_PRECONDITION]: 400, [grpc.status.UNIMPLEMENTED]: 501,
};

let d: DaemonProcess;
let c: GrpcJsClient;
let outside = "";
let finishedJobId = "";
let otherQueryToken = "";
const unknownId = randomUUID();
const cases: Case[] = [];

function bad<K extends keyof Methods>(method: K, title: string, request: In<K> | (() => In<K>), code: grpc.status, expect: string | RegExp) {
  cases.push({ title, method, request: typeof request === "function" ? request : () => request, code, expect });
}

const INVALID = grpc.status.INVALID_ARGUMENT;
const NOT_FOUND = grpc.status.NOT_FOUND;
const sub = (definition: In<"submitJob">["definition"]) => ({ definition });
const fake = (extra: NonNullable<In<"submitJob">["definition"]>) => sub({ provider: "fake", vm: "web-01?size=1000&delayMs=0", ...extra });

bad("submitJob", "missing definition", {}, INVALID, "definition");
bad("submitJob", "missing vm", sub({ provider: "fake" }), INVALID, "definition.vm");
bad("submitJob", "blank vm", sub({ provider: "fake", vm: "  " }), INVALID, "definition.vm");
bad("submitJob", "unknown provider", fake({ provider: "nope" }), INVALID, "definition.provider");
bad("submitJob", "default provider vsphere without a connection (none configured)", sub({ vm: "web-01" }), INVALID, "definition.vsphere.url");
bad("submitJob", "absolute output_dir outside the root", fake({ outputDir: "/etc" }), INVALID, "definition.output_dir");
bad("submitJob", "relative output_dir escaping with ../..", fake({ outputDir: "../../etc" }), INVALID, "definition.output_dir");
bad("submitJob", "output_dir through a symlink leading outside", () => fake({ outputDir: "escape/sub" }), INVALID, "definition.output_dir");
bad("submitJob", "absolute output_dir that is a symlink leading outside", () => fake({ outputDir: path.join(d.outputRoot, "escape") }), INVALID, "definition.output_dir");
bad("submitJob", "compression_level 10", fake({ compress: true, compressionLevel: 10 }), INVALID, "definition.compression_level");
bad("submitJob", "compression_level -1", fake({ compress: true, compressionLevel: -1 }), INVALID, "definition.compression_level");
bad("submitJob", "parallel_downloads 33", fake({ parallelDownloads: 33 }), INVALID, "definition.parallel_downloads");
bad("submitJob", "negative bandwidth_limit", fake({ bandwidthLimit: -1n }), INVALID, "definition.bandwidth_limit");
bad("submitJob", "unknown priority", fake({ priority: "urgent" }), INVALID, "definition.priority");
bad("submitJob", "unknown convert_to", fake({ convertTo: "vmdk" }), INVALID, "definition.convert_to");
bad("submitJob", "unknown format number", fake({ format: 7 as ExportFormat }), INVALID, "definition.format");
bad("submitJob", "label key starting with '-'", fake({ labels: { "-bad": "x" } }), INVALID, 'definition.labels["-bad"]');
bad("submitJob", "label key with a space", fake({ labels: { "a b": "x" } }), INVALID, 'definition.labels["a b"]');
bad("submitJob", "control character in name", fake({ name: "a\u0001b" }), INVALID, "definition.name");
bad("submitJob", "vsphere.url not http(s)", fake({ vsphere: { url: "ftp://vc.example/sdk" } }), INVALID, "definition.vsphere.url");
bad("submitJob", "vsphere.url not a URL", fake({ vsphere: { url: "not a url" } }), INVALID, "definition.vsphere.url");
bad("submitJob", "vsphere.url with credentials", fake({ vsphere: { url: "https://u:p@vc.example/sdk" } }), INVALID, "definition.vsphere.url");
bad("submitJob", "bad thumbprint", fake({ vsphere: { url: "https://vc.example/sdk", thumbprint: "AB:CD:zz" } }), INVALID, "definition.vsphere.thumbprint");
bad("submitJob", "provider validation (fake size)", fake({ vm: "web-01?size=-5" }), INVALID, "definition.vm");
bad("submitJobs", "zero definitions", { definitions: [] }, INVALID, "definitions");
bad("submitJobs", "1001 definitions", { definitions: Array.from({ length: 1001 }, () => ({ provider: "fake", vm: "web-01" })) }, INVALID, "definitions");
for (const method of ["getJob", "cancelJob", "getJobHistory", "getJobLogs", "streamJobLogs"] as const) {
  bad(method, "empty job_id", { jobId: "" }, INVALID, "job_id");
  bad(method, "blank job_id", { jobId: "   " }, INVALID, "job_id");
  bad(method, "unknown job id", { jobId: unknownId }, NOT_FOUND, new RegExp(`job ${unknownId} not found`));
}
bad("getJob", "job_id too long", { jobId: "x".repeat(200) }, INVALID, "job_id");
bad("cancelJob", "finished job", () => ({ jobId: finishedJobId }), grpc.status.FAILED_PRECONDITION, /already completed/);
bad("listJobs", "invalid page_token", { pageToken: "not-a-token" }, INVALID, "page_token");
bad("listJobs", "page_token of another query", () => ({ pageToken: otherQueryToken, states: [JobState.COMPLETED] }), INVALID, "page_token");
bad("listJobs", "page_size 5000", { pageSize: 5000 }, INVALID, "page_size");
bad("listJobs", "page_size -1", { pageSize: -1 }, INVALID, "page_size");
bad("listJobs", "unknown JobState number", { states: [99 as JobState] }, INVALID, "states[0]");
bad("listJobs", "unknown JobState after a good one", { states: [JobState.COMPLETED, 42 as JobState] }, INVALID, "states[1]");
bad("listJobs", "JOB_STATE_UNSPECIFIED", { states: [JobState.UNSPECIFIED] }, INVALID, "states[0]");
bad("listJobs", "bad label key", { labels: { "bad key": "x" } }, INVALID, 'labels["bad key"]');
bad("listJobs", "query of 201 characters", { query: "x".repeat(201) }, INVALID, "query");
bad("getJobLogs", "negative after_id", () => ({ jobId: finishedJobId, afterId: -1n }), INVALID, "after_id");
bad("getJobLogs", "huge after_id", () => ({ jobId: finishedJobId, afterId: 2n ** 62n }), INVALID, "after_id");
bad("getJobLogs", "negative tail", () => ({ jobId: finishedJobId, tail: -1 }), INVALID, "tail");
bad("getJobLogs", "huge tail", () => ({ jobId: finishedJobId, tail: 1_000_000 }), INVALID, "tail");
bad("getJobLogs", "page_size 5001", () => ({ jobId: finishedJobId, pageSize: 5001 }), INVALID, "page_size");
bad("getJobLogs", "negative page_size", () => ({ jobId: finishedJobId, pageSize: -1 }), INVALID, "page_size");
bad("streamJobLogs", "negative after_id", () => ({ jobId: finishedJobId, afterId: -1n }), INVALID, "after_id");
bad("streamJobLogs", "negative tail", () => ({ jobId: finishedJobId, tail: -1 }), INVALID, "tail");
bad("streamJobUpdates", "unknown job id", { jobIds: [unknownId] }, NOT_FOUND, new RegExp(`job ${unknownId} not found`));
bad("streamJobUpdates", "unknown job id after a known one", () => ({ jobIds: [finishedJobId, unknownId] }), NOT_FOUND, new RegExp(unknownId));
bad("streamJobUpdates", "empty job id", { jobIds: [""] }, INVALID, "job_ids[0]");
bad("listVMs", "unknown provider", { provider: "nope" }, INVALID, "provider");
bad("listVMs", "default provider vsphere without a connection (none configured)", {}, INVALID, "vsphere.url");
bad("listVMs", "unknown power_state", { provider: "fake", powerState: 9 as PowerState }, INVALID, "power_state");
bad("listVMs", "name_pattern too long", { provider: "fake", namePattern: "x".repeat(300) }, INVALID, "name_pattern");
bad("listVMs", "bad vsphere.url", { provider: "fake", vsphere: { url: "ftp://vc" } }, INVALID, "vsphere.url");
bad("getVM", "unknown provider", { provider: "nope", vm: "web-01" }, INVALID, "provider");
bad("getVM", "missing vm", { provider: "fake" }, INVALID, "vm");
bad("getVM", "unknown vm", { provider: "fake", vm: "nope-01" }, NOT_FOUND, /nope-01/);

/** Unary result or stream end of a grpc-js call: the error, if any. */
async function grpcError(method: keyof Methods, request: unknown): Promise<grpc.ServiceError | undefined> {
  if (HypervisordService.method[method].methodKind === "unary") {
    return c.unary(method, request as never).then(() => undefined, (err: grpc.ServiceError) => err);
  }
  const stream = c.stream(method as "streamJobLogs", request as never);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.cancel();
      reject(new Error(`${method} neither failed nor ended within 15 s`));
    }, 15_000);
    stream.on("data", () => {});
    stream.on("error", (err: grpc.ServiceError) => (clearTimeout(timer), resolve(err)));
    stream.on("end", () => (clearTimeout(timer), resolve(undefined)));
  });
}

/** The same call over Connect JSON with plain fetch: { code, message, http } of the error. */
async function connectError(method: keyof Methods, request: unknown) {
  const m = HypervisordService.method[method];
  const body = toJson(m.input, create(m.input, request as never));
  if (m.methodKind === "unary") {
    const response = await postJson(d.httpUrl, m.name, body);
    return { http: response.status, code: response.body.code as string | undefined, message: response.body.message as string | undefined };
  }
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 15_000);
  try {
    for await (const _ of streamJson(d.httpUrl, m.name, body, controller.signal)) { /* drain */ }
    return { http: 200, code: undefined, message: undefined };
  } catch (err) {
    const e = err as Error & { code?: string };
    return { http: 200, code: e.code, message: e.message };
  } finally {
    clearTimeout(timer);
  }
}

function checkMessage(message: string, kase: Case) {
  if (typeof kase.expect === "string") assert.ok(message.startsWith(`${kase.expect}: `), `message should name ${kase.expect}: ${message}`);
  else assert.match(message, kase.expect);
}

describe("bad input is refused with the right status, over grpc-js and Connect JSON", () => {
  before(async () => {
    d = await spawnDaemon();
    c = createGrpcJsClient(d.grpcAddress);
    outside = tempDir("outside");
    fs.symlinkSync(outside, path.join(d.outputRoot, "escape"));
    const a = (await c.unary("submitJob", { definition: { provider: "fake", vm: "web-01?size=1000&delayMs=0" } })).job!;
    await c.unary("submitJob", { definition: { provider: "fake", vm: "web-02?size=1000&delayMs=0" } });
    for (let i = 0; (await c.unary("getJob", { jobId: a.id })).job!.state !== JobState.COMPLETED; i++) {
      assert.ok(i < 600, "job did not complete within 30 s");
      await new Promise((r) => setTimeout(r, 50));
    }
    finishedJobId = a.id;
    otherQueryToken = (await c.unary("listJobs", { pageSize: 1 })).nextPageToken;
    assert.ok(otherQueryToken);
  });
  after(async () => {
    c?.close();
    if (d) assert.equal(await d.stop(), 0, "daemon exit code");
    if (outside) fs.rmSync(outside, { recursive: true, force: true });
  });

  for (const kase of cases) {
    test(`${HypervisordService.method[kase.method].name}: ${kase.title} → ${grpc.status[kase.code]}`, async () => {
      const request = kase.request();
      const err = await grpcError(kase.method, request);
      assert.ok(err, "grpc-js: the call should fail");
      assert.equal(grpc.status[err.code], grpc.status[kase.code], `grpc-js code; message: ${err.details}`);
      checkMessage(err.details, kase);
      const json = await connectError(kase.method, request);
      assert.equal(json.code, grpc.status[kase.code].toLowerCase(), `Connect JSON code; message: ${json.message}`);
      assert.equal(json.message, err.details, "same message on both transports");
      if (HypervisordService.method[kase.method].methodKind === "unary") assert.equal(json.http, HTTP[kase.code]);
    });
  }

  test("the symlink escape was not created on disk", () => {
    assert.deepEqual(fs.readdirSync(outside), []);
  });

  test("SubmitJobs with a bad item in the middle: per-item INVALID_ARGUMENT, the others created", async () => {
    const good = (vm: string) => ({ provider: "fake", vm: `${vm}?size=1000&delayMs=0` });
    const { results } = await c.unary("submitJobs", { definitions: [good("web-03"), { provider: "fake", vm: "web-04", parallelDownloads: 33 }, good("web-05")] });
    assert.deepEqual(results.map((r) => [r.index, Boolean(r.job), r.created, r.error?.code]),
      [[0, true, true, undefined], [1, false, false, "INVALID_ARGUMENT"], [2, true, true, undefined]]);
    assert.ok(results[1]!.error!.message.startsWith("definitions[1].parallel_downloads: "), results[1]!.error!.message);
    assert.equal(results[1]!.error!.retryable, false);

    const json = await postJson(d.httpUrl, "SubmitJobs", { definitions: [good("db-07"), { provider: "nope", vm: "db-08" }, good("db-09")] });
    assert.equal(json.status, 200);
    const items = json.body.results as Array<Record<string, any>>;
    assert.deepEqual(items.map((r) => [r.index, typeof r.job?.id, r.error?.code]),
      [[0, "string", undefined], [1, "undefined", "INVALID_ARGUMENT"], [2, "string", undefined]]);
    assert.ok((items[1]!.error.message as string).startsWith("definitions[1].provider: "), items[1]!.error.message);
    for (const item of [items[0]!, items[2]!]) assert.equal((await c.unary("getJob", { jobId: item.job.id })).job?.id, item.job.id);
  });

  test("Connect JSON: malformed JSON and unknown fields are invalid_argument", async () => {
    const response = await fetch(`${d.httpUrl}/hypervisord.v1.HypervisordService/GetJob`, {
      method: "POST", headers: { "content-type": "application/json" }, body: "{not json",
    });
    assert.equal(response.status, 400);
    assert.equal(((await response.json()) as { code: string }).code, "invalid_argument");
    const unknownField = await postJson(d.httpUrl, "GetJob", { jobIdentifier: "x" });
    assert.equal(unknownField.status, 400);
    assert.equal(unknownField.body.code, "invalid_argument");
  });

  test("gRPC: bytes that do not decode are INVALID_ARGUMENT naming the message type, unary and streaming", async () => {
    const garbage = () => Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]); // field 1, a length past the end
    const unary = await new Promise<grpc.ServiceError>((resolve, reject) => {
      c.raw.makeUnaryRequest("/hypervisord.v1.HypervisordService/GetJob", garbage, (b: Buffer) => b, null, (err) =>
        (err ? resolve(err) : reject(new Error("a garbage request succeeded"))));
    });
    assert.equal(unary.code, grpc.status.INVALID_ARGUMENT);
    assert.match(unary.details, /^request: does not decode as hypervisord\.v1\.GetJobRequest: /);
    const stream = c.raw.makeServerStreamRequest("/hypervisord.v1.HypervisordService/StreamJobUpdates", garbage, (b: Buffer) => b, null);
    const streamed = await new Promise<grpc.ServiceError>((resolve) => {
      stream.on("data", () => undefined);
      stream.on("error", resolve);
    });
    assert.equal(streamed.code, grpc.status.INVALID_ARGUMENT);
    assert.match(streamed.details, /^request: does not decode as hypervisord\.v1\.StreamJobUpdatesRequest: /);
  });

  test("after all the bad input the daemon still answers", async () => {
    const status = await c.unary("getStatus", {});
    assert.equal(status.lifecycle, "running");
    assert.ok(status.jobCounts!.total >= 4n);
    const json = await postJson(d.httpUrl, "GetStatus", {});
    assert.equal(json.status, 200);
    assert.equal(json.body.lifecycle, "running");
    assert.equal(d.child.exitCode, null, "daemon process still running");
    const internal = d.logs.filter((line) => line.includes("internal error in a call"));
    assert.deepEqual(internal, [], "no call ended as INTERNAL");
  });
});
