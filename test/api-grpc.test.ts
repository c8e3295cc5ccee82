// Every RPC of hypervisord.v1.HypervisordService through a grpc-js client, plus grpc.health.v1 and server reflection.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import type { MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { Health, HealthCheckResponse_ServingStatus, type HealthCheckResponse } from "../gen/grpc/health/v1/health_pb.js";
import { ExportFormat, JobState, type JobDefinitionSchema } from "../gen/hypervisord/v1/job_pb.js";
import { JobEventKind, type ListVMsRequestSchema } from "../gen/hypervisord/v1/service_pb.js";
import { PowerState } from "../gen/hypervisord/v1/vm_pb.js";
import { VERSION } from "../src/version.ts";
import { createGrpcJsClient, type GrpcJsClient } from "./support/clients.ts";
import { spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { waitFor } from "./support/wait-for.ts";

type Definition = MessageInitShape<typeof JobDefinitionSchema>;
const ROOT = path.resolve(import.meta.dirname, "..");
const FAST = "size=1000&chunk=1000&delayMs=0";
const LONG = "size=100000000&chunk=100000&delayMs=50"; // ~50 s unless cancelled
const FINAL = [JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED];

let d: DaemonProcess;
let c: GrpcJsClient;
let outputs = 0;

/** A fake-provider job in its own output directory. */
const def = (vm: string, extra: Definition = {}): Definition => ({ provider: "fake", vm, outputDir: `out-${++outputs}`, ...extra });

const jobState = (id: string, states: JobState[]) => waitFor(`job ${id} in ${states}`, async () => {
  const { job } = await c.unary("getJob", { jobId: id });
  return states.includes(job!.state) && job!;
}, 30_000, 50);
const idle = () => waitFor("no queued or running jobs", async () => {
  const status = await c.unary("getStatus", {});
  return status.running === 0 && status.queueDepth === 0n && status;
}, 30_000, 50);

/** Reads a server stream until `until` holds (then cancels it), or it ends by itself. */
function collect<T>(stream: grpc.ClientReadableStream<T>, until: (m: T, all: T[]) => boolean = () => false, timeoutMs = 30_000) {
  return new Promise<{ messages: T[]; how: "until" | "end" | "error"; error?: grpc.ServiceError }>((resolve, reject) => {
    const messages: T[] = [];
    let done = false;
    const finish = (how: "until" | "end" | "error", error?: grpc.ServiceError) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ messages, how, error });
    };
    const timer = setTimeout(() => {
      done = true;
      stream.cancel();
      reject(new Error(`stream did not finish within ${timeoutMs} ms; got ${messages.length} messages`));
    }, timeoutMs);
    stream.on("data", (m: T) => {
      if (done) return;
      messages.push(m);
      if (until(m, messages)) {
        finish("until");
        stream.cancel();
      }
    });
    stream.on("error", (err: grpc.ServiceError) => finish("error", err));
    stream.on("end", () => finish("end"));
  });
}

describe("HypervisordService over grpc-js", () => {
  before(async () => {
    d = await spawnDaemon();
    c = createGrpcJsClient(d.grpcAddress);
  });
  after(async () => {
    c?.close();
    if (d) assert.equal(await d.stop(), 0, "daemon exit code");
  });

  let completedId = "";

  test("SubmitJob applies defaults, redacts the password and the job completes", async () => {
    const { job, created } = await c.unary("submitJob", {
      definition: def(`web-01?${FAST}`, { labels: { team: "ops" }, vsphere: { url: "https://vc.example/sdk", username: "u", password: "s3cret" } }),
    });
    assert.equal(created, true);
    assert.match(job!.id, /^[0-9a-f-]{36}$/);
    assert.ok([JobState.QUEUED, JobState.RUNNING].includes(job!.state), `state ${job!.state}`);
    const dd = job!.definition!;
    assert.equal(dd.provider, "fake");
    assert.equal(dd.name, `web-01?${FAST}`, "name defaults to the vm");
    assert.equal(dd.outputDir, path.join(d.outputRoot, `out-${outputs}`));
    assert.equal(dd.format, ExportFormat.OVF);
    assert.equal(dd.compressionLevel, 6);
    assert.equal(dd.parallelDownloads, 4);
    assert.equal(dd.priority, "normal");
    assert.deepEqual(dd.labels, { team: "ops" });
    assert.equal(dd.vsphere?.username, "u");
    assert.equal(dd.vsphere?.password, "", "password is write-only");
    assert.equal(job!.maxAttempts, 10);
    assert.ok(job!.createTime);
    const done = await jobState(job!.id, FINAL);
    assert.equal(done.state, JobState.COMPLETED, JSON.stringify(done.error));
    assert.equal(done.attempt, 1);
    assert.equal(done.progress?.percent, 100);
    assert.equal(done.result?.files.length, 1);
    assert.equal(done.result?.files[0]?.size, 1000n);
    assert.match(done.result?.files[0]?.sha256 ?? "", /^[0-9a-f]{64}$/);
    assert.ok(done.startTime && done.endTime);
    assert.equal(done.definition?.vsphere?.password, "");
    completedId = done.id;
    const got = await c.unary("getJob", { jobId: done.id });
    assert.equal(got.job?.id, done.id);
  });

  test("request_id: same definition returns the same job, a different one is ALREADY_EXISTS", async () => {
    const requestId = randomUUID();
    const definition = def(`web-02?${FAST}`, { requestId });
    const first = await c.unary("submitJob", { definition });
    const again = await c.unary("submitJob", { definition });
    assert.equal(first.created, true);
    assert.equal(again.created, false);
    assert.equal(again.job?.id, first.job?.id);
    await assert.rejects(c.unary("submitJob", { definition: { ...definition, vm: `web-03?${FAST}` } }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.ALREADY_EXISTS);
      assert.match(err.details, new RegExp(`request_id "${requestId}".*${first.job!.id}`));
      return true;
    });
  });

  test("SubmitJobs creates each valid item and reports per-item errors", async () => {
    const { results } = await c.unary("submitJobs", { definitions: [def(`web-04?${FAST}`), { provider: "fake", vm: "" }, def(`web-05?${FAST}`)] });
    assert.deepEqual(results.map((r) => r.index), [0, 1, 2]);
    assert.equal(results[1]!.job, undefined);
    assert.equal(results[1]!.error?.code, "INVALID_ARGUMENT");
    assert.match(results[1]!.error!.message, /^definitions\[1\]\.vm: required/);
    for (const r of [results[0]!, results[2]!]) {
      assert.equal(r.created, true);
      assert.equal(r.error, undefined);
      assert.equal((await c.unary("getJob", { jobId: r.job!.id })).job?.id, r.job!.id);
    }
    assert.notEqual(results[0]!.job!.id, results[2]!.job!.id);
  });

  test("ListJobs filters by label, provider and state, pages newest first with total_size", async () => {
    const suite = `list-${randomUUID().slice(0, 8)}`;
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const provider = i % 2 === 1 ? "fake-noresume" : "fake";
      ids.push((await c.unary("submitJob", { definition: def(`db-0${i + 7}?${FAST}`, { provider, labels: { suite, n: String(i) } }) })).job!.id);
    }
    await Promise.all(ids.map((id) => jobState(id, FINAL)));
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await c.unary("listJobs", { labels: { suite }, pageSize: 2, pageToken });
      assert.equal(page.totalSize, 5n);
      assert.ok(page.jobs.length <= 2);
      seen.push(...page.jobs.map((j) => j.id));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken && pages < 10);
    assert.equal(pages, 3);
    assert.deepEqual(seen, [...ids].reverse(), "newest first, every job once");
    const noresume = await c.unary("listJobs", { labels: { suite }, provider: "fake-noresume" });
    assert.deepEqual(noresume.jobs.map((j) => j.id), [ids[3], ids[1]]);
    assert.equal(noresume.totalSize, 2n);
    assert.equal(noresume.nextPageToken, "");
    const byTwoLabels = await c.unary("listJobs", { labels: { suite, n: "2" } });
    assert.deepEqual(byTwoLabels.jobs.map((j) => j.id), [ids[2]]);
    const completed = await c.unary("listJobs", { labels: { suite }, states: [JobState.COMPLETED] });
    assert.equal(completed.totalSize, 5n);
    const active = await c.unary("listJobs", { labels: { suite }, states: [JobState.QUEUED, JobState.RUNNING] });
    assert.equal(active.totalSize, 0n);
    assert.deepEqual(active.jobs, []);
    const all = await c.unary("listJobs", {});
    assert.ok(all.totalSize >= 5n);
  });

  test("ListJobs query: case-insensitive substring of id, name, VM, output_dir or a label value, ANDed with the filters; % and _ are literal", async () => {
    const tag = randomUUID().slice(0, 8);
    const submit = async (vm: string, extra: Definition) => (await c.unary("submitJob", { definition: def(`${vm}?${FAST}`, extra) })).job!.id;
    const byName = await submit("web-10", { name: `Nightly-${tag}-alpha` });
    const byVm = await submit(`vm${tag}x`, { name: "plain-1", provider: "fake-noresume" });
    const byDir = await submit("web-11", { name: "plain-2", outputDir: `dir-${tag}-x` });
    const byLabel = await submit("web-12", { name: "plain-3", labels: { owner: `team-${tag}` } });
    const percent = await submit("web-13", { name: `100%_${tag}` });
    const lookalike = await submit("web-14", { name: `100ab${tag}` });
    const other = await submit("web-15", { name: "unrelated" });
    const all = [byName, byVm, byDir, byLabel, percent, lookalike, other];
    await Promise.all(all.map((id) => jobState(id, FINAL)));
    const ids = async (request: Parameters<typeof c.unary<"listJobs">>[1]) => {
      const page = await c.unary("listJobs", request);
      return { ids: page.jobs.map((j) => j.id), total: page.totalSize, next: page.nextPageToken };
    };

    assert.deepEqual(await ids({ query: tag.toUpperCase() }), { ids: [lookalike, percent, byLabel, byDir, byVm, byName], total: 6n, next: "" });
    assert.deepEqual((await ids({ query: `nightly-${tag}` })).ids, [byName]);
    assert.deepEqual((await ids({ query: `VM${tag}` })).ids, [byVm]);
    assert.deepEqual((await ids({ query: `dir-${tag}` })).ids, [byDir]);
    assert.deepEqual((await ids({ query: `TEAM-${tag}` })).ids, [byLabel]);
    assert.deepEqual((await ids({ query: other.toUpperCase() })).ids, [other], "the job id");
    assert.deepEqual((await ids({ query: `0%_${tag}` })).ids, [percent], "% and _ match themselves, not any characters");
    assert.deepEqual(await ids({ query: `${tag}-nothing` }), { ids: [], total: 0n, next: "" });
    assert.deepEqual((await ids({ query: tag, provider: "fake-noresume" })).ids, [byVm], "ANDed with provider");
    assert.deepEqual((await ids({ query: tag, labels: { owner: `team-${tag}` } })).ids, [byLabel], "ANDed with labels");
    assert.deepEqual((await ids({ query: tag, states: [JobState.QUEUED] })).total, 0n, "ANDed with states");

    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await c.unary("listJobs", { query: tag, pageSize: 4, pageToken });
      assert.equal(page.totalSize, 6n);
      seen.push(...page.jobs.map((j) => j.id));
      pageToken = page.nextPageToken;
    } while (pageToken && seen.length < 20);
    assert.deepEqual(seen, [lookalike, percent, byLabel, byDir, byVm, byName], "pages of the query, every job once");
    const firstPage = await c.unary("listJobs", { query: tag, pageSize: 1 });
    await assert.rejects(c.unary("listJobs", { query: `${tag}x`, pageSize: 1, pageToken: firstPage.nextPageToken }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err.details, /^page_token: /);
      return true;
    });
    await assert.rejects(c.unary("listJobs", { pageSize: 1, pageToken: firstPage.nextPageToken }), /page_token/, "nor without the query");

    assert.equal((await ids({ query: "é".repeat(200) })).total, 0n, "200 characters are allowed");
    await assert.rejects(c.unary("listJobs", { query: "x".repeat(201) }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.equal(err.details, "query: at most 200 characters, got 201");
      return true;
    });
  });

  test("CancelJob cancels queued and running jobs; a finished job is FAILED_PRECONDITION", async () => {
    await idle();
    const a = (await c.unary("submitJob", { definition: def(`web-06?${LONG}`) })).job!;
    const b = (await c.unary("submitJob", { definition: def(`db-08?${LONG}`) })).job!;
    await jobState(a.id, [JobState.RUNNING]);
    await jobState(b.id, [JobState.RUNNING]);
    const q = (await c.unary("submitJob", { definition: def(`db-09?${LONG}`) })).job!;
    assert.equal(q.state, JobState.QUEUED, "both slots (max_concurrent_jobs 2) are busy");
    const cq = (await c.unary("cancelJob", { jobId: q.id, reason: "no longer needed" })).job!;
    assert.equal(cq.state, JobState.CANCELLED);
    assert.equal(cq.error?.code, "CANCELLED");
    assert.equal(cq.error?.message, "no longer needed");
    assert.equal(cq.attempt, 0, "never started");
    const ca = (await c.unary("cancelJob", { jobId: a.id })).job!;
    assert.equal(ca.state, JobState.CANCELLED);
    assert.ok(ca.endTime);
    assert.equal((await c.unary("getJob", { jobId: b.id })).job?.state, JobState.RUNNING, "the other job keeps running");
    assert.equal((await c.unary("cancelJob", { jobId: b.id, reason: "test over" })).job?.state, JobState.CANCELLED);
    await idle();
    for (const [id, state] of [[a.id, "cancelled"], [completedId, "completed"]] as const) {
      await assert.rejects(c.unary("cancelJob", { jobId: id }), (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
        assert.match(err.details, new RegExp(`job ${id} is already ${state}`));
        return true;
      });
    }
    const history = (await c.unary("getJobHistory", { jobId: a.id })).transitions;
    assert.deepEqual(history.map((t) => [t.fromState, t.toState, t.actor]), [
      [JobState.UNSPECIFIED, JobState.QUEUED, "api"], [JobState.QUEUED, JobState.RUNNING, "engine"], [JobState.RUNNING, JobState.CANCELLED, "api"],
    ]);
    assert.equal(history[2]!.reason, "cancelled by api");
    const logs = (await c.unary("getJobLogs", { jobId: a.id })).entries.map((e) => e.message);
    assert.ok(logs.includes("job cancelled: cancelled by api"), logs.join(" | "));
  });

  test("GetJobHistory of a completed job: submitted, started, completed with increasing seq", async () => {
    const { transitions } = await c.unary("getJobHistory", { jobId: completedId });
    assert.deepEqual(transitions.map((t) => [t.toState, t.reason]), [
      [JobState.QUEUED, "submitted"], [JobState.RUNNING, "started"], [JobState.COMPLETED, "export completed"],
    ]);
    assert.ok(transitions.every((t, i) => i === 0 || t.seq > transitions[i - 1]!.seq));
    assert.ok(transitions.every((t) => t.time));
  });

  test("StreamJobUpdates: snapshot, SYNCED, then live updates to a final state; after_seq replays", async () => {
    const job = (await c.unary("submitJob", { definition: def("web-01?size=1000000&chunk=100000&delayMs=200") })).job!;
    const { messages, how, error } = await collect(c.stream("streamJobUpdates", { jobIds: [job.id] }),
      (m) => m.kind === JobEventKind.STATE_CHANGED && FINAL.includes(m.state));
    assert.equal(how, "until", `stream error: ${error?.code} ${error?.details}`);
    assert.equal(messages[0]!.kind, JobEventKind.SNAPSHOT);
    assert.equal(messages[0]!.jobId, job.id);
    assert.equal(messages[0]!.job?.id, job.id);
    assert.ok([JobState.QUEUED, JobState.RUNNING].includes(messages[0]!.state));
    assert.equal(messages[1]!.kind, JobEventKind.SYNCED);
    assert.equal(messages[1]!.jobId, "");
    const live = messages.slice(2);
    assert.ok(live.every((m, i) => m.jobId === job.id && m.seq > (i === 0 ? messages[1]!.seq : live[i - 1]!.seq)), "live seq increases");
    assert.ok(live.some((m) => m.kind === JobEventKind.PROGRESS && m.progress?.bytesTotal === 1000000n), "progress updates");
    const last = live.at(-1)!;
    assert.equal(last.state, JobState.COMPLETED);
    assert.match(last.reason, /export completed/);
    assert.equal(last.job?.result?.files[0]?.size, 1000000n);

    const history = (await c.unary("getJobHistory", { jobId: job.id })).transitions;
    const replay = await collect(c.stream("streamJobUpdates", { jobIds: [job.id], afterSeq: history[0]!.seq - 1n }),
      (m) => m.kind === JobEventKind.SYNCED);
    assert.deepEqual(replay.messages.map((m) => [m.kind, m.state, m.seq]), [
      [JobEventKind.CREATED, JobState.QUEUED, history[0]!.seq],
      [JobEventKind.STATE_CHANGED, JobState.RUNNING, history[1]!.seq],
      [JobEventKind.STATE_CHANGED, JobState.COMPLETED, history[2]!.seq],
      [JobEventKind.SYNCED, JobState.UNSPECIFIED, replay.messages.at(-1)!.seq],
    ]);
  });

  test("GetJobLogs: all entries, tail, after_id paging", async () => {
    const all = await c.unary("getJobLogs", { jobId: completedId });
    const messages = all.entries.map((e) => e.message);
    assert.deepEqual(messages, ["export started", "fake disk written", "export completed"]);
    assert.equal(all.truncated, false);
    assert.equal(all.nextAfterId, all.entries.at(-1)!.id);
    assert.ok(all.entries.every((e, i) => e.level === "info" && e.time && (i === 0 || e.id > all.entries[i - 1]!.id)));
    assert.equal(JSON.parse(all.entries[0]!.fieldsJson).provider, "fake");
    const tail = await c.unary("getJobLogs", { jobId: completedId, tail: 1 });
    assert.deepEqual(tail.entries.map((e) => e.message), ["export completed"]);
    const paged: string[] = [];
    let afterId = 0n;
    for (let i = 0; i < 10; i++) {
      const page = await c.unary("getJobLogs", { jobId: completedId, afterId, pageSize: 1 });
      if (page.entries.length === 0) {
        assert.equal(page.nextAfterId, afterId, "nothing new: next_after_id echoes after_id");
        break;
      }
      assert.equal(page.entries.length, 1);
      paged.push(page.entries[0]!.message);
      afterId = page.nextAfterId;
    }
    assert.deepEqual(paged, messages);
  });

  test("StreamJobLogs: without follow returns the stored log; with follow it ends when the job ends", async () => {
    const stored = await collect(c.stream("streamJobLogs", { jobId: completedId }));
    assert.equal(stored.how, "end");
    assert.deepEqual(stored.messages.map((m) => m.entry?.message), ["export started", "fake disk written", "export completed"]);
    const tail = await collect(c.stream("streamJobLogs", { jobId: completedId, tail: 1, follow: true }));
    assert.equal(tail.how, "end", "follow on a finished job ends at once");
    assert.deepEqual(tail.messages.map((m) => m.entry?.message), ["export completed"]);

    const job = (await c.unary("submitJob", { definition: def("db-10?size=1000000&chunk=100000&delayMs=150") })).job!;
    const followed = await collect(c.stream("streamJobLogs", { jobId: job.id, follow: true }));
    assert.equal(followed.how, "end", `ended by itself, not ${followed.error?.message}`);
    assert.equal((await c.unary("getJob", { jobId: job.id })).job?.state, JobState.COMPLETED);
    const stream = followed.messages.map((m) => m.entry!.message);
    const storedNow = (await c.unary("getJobLogs", { jobId: job.id })).entries.map((e) => e.message);
    assert.ok(stream.includes("export started"));
    // A follower must see the whole log, including the final entry written as the job ends.
    assert.deepEqual(stream, storedNow, "followed entries equal the stored log");
    assert.equal(stream.at(-1), "export completed");
  });

  test("GetStatus counts every state, cancelled included", async () => {
    await idle();
    const status = await c.unary("getStatus", {});
    const counts = status.jobCounts!;
    const total = async (states: JobState[]) => (await c.unary("listJobs", { states, pageSize: 1 })).totalSize;
    assert.equal(counts.queued, 0n);
    assert.equal(counts.running, 0n);
    assert.equal(counts.cancelled, 3n, "three jobs cancelled above");
    assert.equal(counts.cancelled, await total([JobState.CANCELLED]));
    assert.equal(counts.completed, await total([JobState.COMPLETED]));
    assert.equal(counts.failed, await total([JobState.FAILED]));
    assert.equal(counts.total, counts.queued + counts.running + counts.completed + counts.failed + counts.cancelled);
    assert.equal(counts.total, await total([]));
    assert.equal(status.version, VERSION);
    assert.equal(status.queueDepth, 0n);
    assert.equal(status.running, 0);
    assert.equal(status.maxConcurrentJobs, 2);
    assert.equal(status.lifecycle, "running");
    // The same suite runs on PostgreSQL (test/api-postgres.test.ts).
    assert.equal(status.store, process.env.HYPERVISORD_TEST_STORE === "postgres" ? "postgres" : "sqlite");
    assert.ok(status.lastSeq > 0n);
    assert.ok(status.uptimeSeconds > 0);
    assert.ok(Number(status.startTime!.seconds) * 1000 <= Date.now());
  });

  test("GetCapabilities lists providers, formats, conversions, priorities and roots", async () => {
    const caps = await c.unary("getCapabilities", {});
    assert.deepEqual(caps.providers.map((p) => [p.name, p.resumable, p.discovery]), [["vsphere", true, true], ["azure", true, true], ["fake", true, true], ["fake-noresume", false, true]]);
    assert.deepEqual(caps.formats, [ExportFormat.OVF, ExportFormat.OVA]);
    assert.deepEqual(caps.conversions.map((x) => x.format), ["qcow2", "raw", "vdi"]);
    for (const conversion of caps.conversions) assert.equal(conversion.available, conversion.reason === "", JSON.stringify(conversion));
    assert.deepEqual(caps.compressions, ["gzip"]);
    assert.deepEqual(caps.priorities, ["low", "normal", "high", "critical"]);
    assert.deepEqual(caps.allowedOutputRoots, [d.outputRoot]);
  });

  test("ListVMs with name_pattern, folder and power_state filters", async () => {
    const names = async (request: MessageInitShape<typeof ListVMsRequestSchema>) =>
      (await c.unary("listVMs", { provider: "fake", ...request })).vms.map((vm) => vm.name);
    const all = await c.unary("listVMs", { provider: "fake" });
    assert.equal(all.vms.length, 12);
    assert.ok(all.vms.every((vm) => vm.provider === "fake" && vm.path.startsWith("/DC0/vm/") && vm.disks.length === 1));
    assert.deepEqual(await names({ namePattern: "web-*" }), ["web-01", "web-02", "web-03", "web-04", "web-05", "web-06"]);
    assert.deepEqual(await names({ namePattern: "db-1?" }), ["db-10", "db-11", "db-12"]);
    assert.deepEqual(await names({ folder: "/DC0/vm/db" }), ["db-07", "db-08", "db-09", "db-10", "db-11", "db-12"]);
    assert.deepEqual(await names({ powerState: PowerState.POWERED_ON }), ["web-01", "web-04", "db-07", "db-10"]);
    assert.deepEqual(await names({ namePattern: "web-*", powerState: PowerState.POWERED_ON }), ["web-01", "web-04"]);
    assert.deepEqual(await names({ namePattern: "nothing-*" }), []);
  });

  test("GetVM by name, path, moref and uuid; unknown VM is NOT_FOUND", async () => {
    const byName = (await c.unary("getVM", { provider: "fake", vm: "web-04" })).vm!;
    assert.equal(byName.path, "/DC0/vm/web/web-04");
    assert.equal(byName.powerState, PowerState.POWERED_ON);
    assert.equal(byName.provider, "fake");
    for (const ref of [byName.path, byName.moref, byName.uuid]) {
      assert.equal((await c.unary("getVM", { provider: "fake", vm: ref })).vm?.name, "web-04", ref);
    }
    await assert.rejects(c.unary("getVM", { provider: "fake", vm: "web-99" }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.NOT_FOUND);
      assert.match(err.details, /web-99/);
      return true;
    });
  });

  test("grpc.health.v1 Check", async () => {
    const health = createGrpcJsClient(d.grpcAddress, Health);
    const check = (service: string) => health.unary("check" as never, { service } as never) as unknown as Promise<HealthCheckResponse>;
    try {
      assert.equal((await check("")).status, HealthCheckResponse_ServingStatus.SERVING);
      assert.equal((await check("hypervisord.v1.HypervisordService")).status, HealthCheckResponse_ServingStatus.SERVING);
      await assert.rejects(check("no.such.Service"), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND);
    } finally {
      health.close();
    }
  });

  test("server reflection lists the services (buf curl)", async () => {
    const buf = path.join(ROOT, "node_modules/.bin/buf");
    const { stdout } = await promisify(execFile)(buf, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-services", `http://${d.grpcAddress}`],
      { cwd: ROOT, timeout: 60_000 });
    const services = stdout.split("\n").map((s) => s.trim()).filter(Boolean);
    assert.ok(services.includes("hypervisord.v1.HypervisordService"), stdout);
    assert.ok(services.includes("grpc.health.v1.Health"), stdout);
  });
});
