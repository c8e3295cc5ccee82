// Batches: a definition with a vm_selector, one child job per VM. The engine API (what schedules call) in
// process, then the daemon over grpc-js and Connect JSON with the fake provider's /DC1 fleet folders.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import type { Batch } from "../src/domain/batch.ts";
import { BatchState, type Batch as BatchPb } from "../gen/hypervisord/v1/batch_pb.js";
import { JobState, type JobDefinitionSchema } from "../gen/hypervisord/v1/job_pb.js";
import { JobEventKind, type StreamJobUpdatesResponse } from "../gen/hypervisord/v1/service_pb.js";
import { PowerState as PowerStatePb } from "../gen/hypervisord/v1/vm_pb.js";
import type { Schedule } from "../src/domain/schedule.ts";
import type { PowerState } from "../src/domain/vm.ts";
import { HypervisordError } from "../src/errors.ts";
import { createGrpcJsClient, postJson, streamJson, type GrpcJsClient } from "./support/clients.ts";
import { spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { tempDir } from "./support/temp-dir.ts";
import { fakeDefinition, startEngine, type Harness } from "./support/engine-harness.ts";
import { waitFor } from "./support/wait-for.ts";
import { startWebhookReceiver, type WebhookReceiver } from "./support/webhook-receiver.ts";

const selector = (folder: string, extra: Partial<{ recursive: boolean; nameGlob: string; powerStates: PowerState[] }> = {}) =>
  ({ folder, recursive: true, powerStates: [], ...extra });

const ended = (h: Harness, id: string, timeoutMs = 20_000) =>
  waitFor(`batch ${id} to end`, async () => {
    const batch = await h.engine.getBatch(id);
    return batch.state !== "running" && batch;
  }, timeoutMs);

describe("engine.submitBatch", () => {
  let h: Harness;
  before(async () => {
    h = await startEngine({ maxConcurrentJobs: 4 });
  });
  after(() => h.close());

  test("a folder of 6 VMs (4 running): one batch, 6 ordinary children sorted by path, all completed, bytes summed", async () => {
    const definition = fakeDefinition(h.outputDir, "", { name: "fleet", vmSelector: selector("/DC1/vm/fleet") });
    const { batch, created } = await h.engine.submitBatch(definition, { actor: "test" });
    assert.equal(created, true);
    assert.equal(batch.state, "running");
    assert.equal(batch.name, "fleet");
    assert.equal(batch.counts.total, 6);
    assert.deepEqual(batch.jobs.map((j) => j.vmName), ["fleet-01", "fleet-02", "fleet-03", "fleet-04", "fleet-05", "fleet-06"]);
    assert.deepEqual(batch.jobs.map((j) => j.vm), batch.jobs.map((j) => `/DC1/vm/fleet/${j.vmName}`));
    const child = await h.engine.getJob(batch.jobs[0]!.jobId);
    assert.equal(child.batchId, batch.id);
    assert.equal(child.definition.vm, "/DC1/vm/fleet/fleet-01");
    assert.equal(child.definition.name, "fleet-01");
    assert.equal(child.definition.vmSelector, undefined);
    assert.equal(child.definition.maxParallel, undefined);
    const done = await ended(h, batch.id);
    assert.equal(done.state, "completed");
    assert.deepEqual(done.counts, { queued: 0, running: 0, completed: 6, failed: 0, cancelled: 0, total: 6 });
    assert.equal(done.bytesDone, 6 * 65536);
    assert.equal(done.bytesTotal, 6 * 65536);
    assert.ok(done.endTime! >= done.createTime);
    assert.equal((await h.store.listJobs({ batchId: batch.id, limit: 100 })).total, 6);
  });

  test("a schedule run: recorded in the batch's transaction with batch_id and no job_id; childDefinition sets each output_dir", async () => {
    const now = Date.now();
    const schedule = {
      id: "sched-1", name: "nightly", description: "", cron: "0 2 * * *", timeZone: "", jobTemplate: fakeDefinition(h.outputDir, ""),
      enabled: true, tags: {}, overlapPolicy: "allow", missedRunPolicy: "skip", createTime: now, updateTime: now, runCount: 0, keepLast: 0,
    } as Schedule;
    await h.store.schedules.insert(schedule);
    const definition = fakeDefinition(h.outputDir, "", { vmSelector: selector("/DC1/vm/tree") });
    const { batch } = await h.engine.submitBatch(definition, {
      actor: "scheduler", scheduleId: schedule.id, scheduleRun: { id: "run-1", trigger: "manual", scheduledTime: now },
      childDefinition: (child, vm) => ({ ...child, outputDir: `${h.outputDir}/${vm.name}/run-1` }),
    });
    assert.equal(batch.scheduleId, schedule.id);
    assert.deepEqual(batch.jobs.map((j) => j.vm), ["/DC1/vm/tree/sub/tree-02", "/DC1/vm/tree/tree-01"], "recursive by default, sorted by path");
    for (const j of batch.jobs) {
      const job = await h.engine.getJob(j.jobId);
      assert.equal(job.definition.outputDir, `${h.outputDir}/${j.vmName}/run-1`);
      assert.equal(job.scheduleId, schedule.id);
    }
    const runs = (await h.store.schedules.listRuns(schedule.id, { limit: 10 })).runs;
    assert.equal(runs.length, 1);
    assert.equal(runs[0]!.jobId, undefined);
    assert.equal((runs[0] as { batchId?: string }).batchId, batch.id, "the run names its batch");
    const after = (await h.store.schedules.get(schedule.id))!;
    assert.equal(after.runCount, 1);
    assert.ok(after.lastRunTime! >= now);
    await ended(h, batch.id);
  });

  test("two VMs of the same name in different folders write to different directories", async () => {
    const { batch } = await h.engine.submitBatch(fakeDefinition(h.outputDir, "", { vmSelector: selector("/DC1/vm/twins") }), { actor: "test" });
    assert.deepEqual(batch.jobs.map((j) => j.vm), ["/DC1/vm/twins/a/twins-02", "/DC1/vm/twins/b/twins-02"]);
    const dirs = await Promise.all(batch.jobs.map(async (j) => (await h.engine.getJob(j.jobId)).definition.outputDir));
    assert.equal(dirs[0], h.outputDir, "the first keeps the batch's output_dir");
    assert.match(dirs[1]!, /\/twins-02-[0-9a-f]{8}$/, "the second gets a directory of its own");
    const done = await ended(h, batch.id);
    assert.equal(done.state, "completed");
  });

  test("recursive false keeps only the folder's own VMs; power_states filters", async () => {
    const own = await h.engine.submitBatch(fakeDefinition(h.outputDir, "", { vmSelector: selector("/DC1/vm/tree", { recursive: false }) }), { actor: "test" });
    assert.deepEqual(own.batch.jobs.map((j) => j.vmName), ["tree-01"]);
    const on = await h.engine.submitBatch(fakeDefinition(h.outputDir, "", { vmSelector: selector("/DC1/vm/fleet", { powerStates: ["poweredOff"] }) }), { actor: "test" });
    assert.deepEqual(on.batch.jobs.map((j) => j.vmName), ["fleet-05", "fleet-06"]);
    const glob = await h.engine.submitBatch(fakeDefinition(h.outputDir, "", { vmSelector: selector("/DC1/vm/fleet", { nameGlob: "fleet-0?", powerStates: ["poweredOn", "suspended"] }) }), { actor: "test" });
    assert.deepEqual(glob.batch.jobs.map((j) => j.vmName), ["fleet-01", "fleet-02", "fleet-03", "fleet-04"]);
    await Promise.all([own, on, glob].map((s) => ended(h, s.batch.id)));
  });

  test("zero matches is INVALID_ARGUMENT naming the selector; nothing is written", async () => {
    const before = (await h.store.batches.list({ limit: 1000 })).total;
    await assert.rejects(
      h.engine.submitBatch(fakeDefinition(h.outputDir, "", { vmSelector: selector("/DC1/vm/nothing-here") }), { actor: "test" }),
      (err: HypervisordError) => err.code === "INVALID_ARGUMENT" && /^definition\.vm_selector: matches no VM \(folder "\/DC1\/vm\/nothing-here"/.test(err.message),
    );
    assert.equal((await h.store.batches.list({ limit: 1000 })).total, before);
  });

  test("the same request_id returns the same batch (created false); another definition with it is ALREADY_EXISTS", async () => {
    const definition = fakeDefinition(h.outputDir, "", { requestId: "batch-req-1", vmSelector: selector("/DC1/vm/mixed") });
    const first = await h.engine.submitBatch(definition, { actor: "test" });
    const again = await h.engine.submitBatch({ ...definition }, { actor: "test" });
    assert.equal(first.created, true);
    assert.equal(again.created, false);
    assert.equal(again.batch.id, first.batch.id);
    assert.equal(again.batch.counts.total, 3);
    await assert.rejects(h.engine.submitBatch({ ...definition, priority: "high" }, { actor: "test" }), (err: HypervisordError) => err.code === "ALREADY_EXISTS");
    const done = await ended(h, first.batch.id);
    assert.equal(done.state, "partially_failed");
    assert.equal(done.counts.failed, 1);
    assert.equal(done.jobs.find((j) => j.state === "failed")?.vmName, "mixed-02");
    assert.match(done.jobs.find((j) => j.state === "failed")?.error?.message ?? "", /fake failure/);
  });
});

describe("batches in the engine: recovery and the unfiltered update stream", () => {
  test("a CancelBatch cut short by a stop (reason recorded, children not yet cancelled) is finished at the next start", async () => {
    const first = await startEngine({ maxConcurrentJobs: 2 });
    const { batch } = await first.engine.submitBatch(fakeDefinition(first.outputDir, "", { vmSelector: selector("/DC1/vm/slow") }), { actor: "test" });
    await waitFor("two running children", async () => (await first.engine.getBatch(batch.id)).counts.running === 2);
    assert.equal(await first.store.batches.requestCancel(batch.id, "stopped mid-cancel"), true);
    await first.close();
    const second = await startEngine({ maxConcurrentJobs: 2 }, { dataDir: first.dataDir, outputDir: first.outputDir });
    try {
      const done = await second.engine.getBatch(batch.id);
      assert.equal(done.state, "cancelled");
      assert.equal(done.counts.cancelled, 6);
      assert.equal(done.cancelReason, "stopped mid-cancel");
      assert.ok(done.jobs.every((j) => j.error?.message.startsWith("stopped mid-cancel")));
      await assert.rejects(second.engine.cancelBatch(batch.id, "", "test"), (err: HypervisordError) => err.code === "FAILED_PRECONDITION");
    } finally {
      await second.close();
    }
  });

  test("watching everything: the running batch in the snapshot, then BATCH_CHANGED up to its final state", async () => {
    const h = await startEngine({ maxConcurrentJobs: 4, progressPublishIntervalMs: 50 });
    const controller = new AbortController();
    try {
      const { batch } = await h.engine.submitBatch(fakeDefinition(h.outputDir, "", { vmSelector: selector("/DC1/vm/slow", { nameGlob: "slow-0?", powerStates: ["poweredOn"] }) }), { actor: "test" });
      const snapshot: Batch[] = [];
      const live: Batch[] = [];
      let synced = false;
      for await (const updates of h.engine.watch([], undefined, controller.signal)) {
        for (const u of updates) {
          if (u.kind === "synced") synced = true;
          if (u.kind === "batch_changed") (synced ? live : snapshot).push(u.batch!);
        }
        if (live.at(-1)?.endTime !== undefined) break;
      }
      assert.deepEqual(snapshot.map((b) => [b.id, b.state]), [[batch.id, "running"]]);
      assert.ok(live.every((b) => b.id === batch.id));
      assert.equal(live.at(-1)!.state, "completed");
      assert.equal(live.at(-1)!.counts.completed, 2);
      assert.ok(live.some((b) => b.counts.running > 0 && b.bytesDone > 0), "a running state with live bytes went by");
    } finally {
      controller.abort();
      await h.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The daemon process: SubmitJob with a vm_selector, GetBatch, ListBatches, CancelBatch, ListJobs
// batch_id, StreamJobUpdates batch_ids, the batch.completed webhook, over grpc-js and Connect JSON.

type Definition = MessageInitShape<typeof JobDefinitionSchema>;
const INVALID = 3;
const isCode = (code: number, field: string) => (err: grpc.ServiceError) => {
  assert.equal(err.code, code, err.details);
  assert.ok(err.details.startsWith(`${field}: `), `"${err.details}" names ${field}`);
  return true;
};

interface Received {
  type: string;
  data: Record<string, any>;
}

/** The events the receiver got so far, parsed. */
const eventsOf = (receiver: WebhookReceiver) => receiver.requests.map((r) => JSON.parse(r.body) as Received);

/** Reads a server stream until `until` holds (then cancels it). */
function collect<T>(stream: grpc.ClientReadableStream<T>, until: (m: T) => boolean, timeoutMs = 30_000): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const messages: T[] = [];
    const timer = setTimeout(() => {
      stream.cancel();
      reject(new Error(`stream did not reach its end condition within ${timeoutMs} ms; got ${messages.length} messages`));
    }, timeoutMs);
    stream.on("data", (m: T) => {
      messages.push(m);
      if (until(m)) {
        clearTimeout(timer);
        stream.cancel();
        resolve(messages);
      }
    });
    stream.on("error", (err: grpc.ServiceError) => {
      clearTimeout(timer);
      if (err.code === 1) return; // our own cancel
      reject(err);
    });
  });
}

const FINAL_BATCH = [BatchState.COMPLETED, BatchState.PARTIALLY_FAILED, BatchState.FAILED, BatchState.CANCELLED];
const isBatchEnd = (u: StreamJobUpdatesResponse) => u.kind === JobEventKind.BATCH_CHANGED && FINAL_BATCH.includes(u.batch!.state);

describe("batches over the API", () => {
  let d: DaemonProcess;
  let c: GrpcJsClient;
  let receiver: WebhookReceiver;
  let outputs = 0;
  const def = (folder: string, extra: Definition = {}): Definition =>
    ({ provider: "fake", outputDir: `batch-${++outputs}`, vmSelector: { folder: `/DC1/vm/${folder}` }, ...extra }) as Definition;
  const submit = async (definition: Definition) => {
    const response = await c.unary("submitJob", { definition });
    assert.equal(response.job, undefined, "a batch's SubmitJobResponse has no job");
    return response;
  };
  const settled = async (id: string, timeoutMs = 30_000): Promise<BatchPb> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { batch } = await c.unary("getBatch", { batchId: id });
      if (FINAL_BATCH.includes(batch!.state)) return batch!;
      if (Date.now() > deadline) throw new Error(`batch ${id} still ${BatchState[batch!.state]}: ${JSON.stringify(batch!.counts)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  before(async () => {
    receiver = await startWebhookReceiver();
    const config = path.join(tempDir("batch-config"), "hypervisord.yaml");
    fs.writeFileSync(config, "jobs:\n  max_concurrent: 4\nwebhooks:\n  allow_private_targets: true\n");
    d = await spawnDaemon({ args: ["--config", config] });
    c = createGrpcJsClient(d.grpcAddress);
    await c.unary("createWebhook", { webhook: { url: receiver.url, events: ["batch.completed"] } });
  });
  after(async () => {
    c?.close();
    if (d) assert.equal(await d.stop(), 0, "daemon exit code");
  });

  test("a folder of 6 VMs (4 running): one batch of 6 ordinary jobs, all completed, counts and bytes right; ListJobs batch_id; batch.completed", async () => {
    const { batch, created } = await submit(def("fleet", { name: "fleet nightly", labels: { tier: "web" } }));
    assert.equal(created, true);
    assert.equal(batch!.name, "fleet nightly");
    assert.equal(batch!.counts?.total, 6);
    assert.equal(batch!.definition?.vm, "");
    assert.equal(batch!.definition?.vmSelector?.folder, "/DC1/vm/fleet");
    assert.deepEqual(batch!.jobs.map((j) => j.vm), [1, 2, 3, 4, 5, 6].map((n) => `/DC1/vm/fleet/fleet-0${n}`));
    const done = await settled(batch!.id);
    assert.equal(done.state, BatchState.COMPLETED);
    assert.deepEqual({ ...done.counts, $typeName: undefined }, { $typeName: undefined, queued: 0, running: 0, completed: 6, failed: 0, cancelled: 0, total: 6 });
    assert.equal(done.bytesDone, 6n * 65536n);
    assert.equal(done.bytesTotal, 6n * 65536n);
    assert.ok(done.endTime && done.createTime);
    assert.ok(done.jobs.every((j) => j.state === JobState.COMPLETED && j.bytesDone === 65536n && !j.error));

    const page = await c.unary("listJobs", { batchId: batch!.id, pageSize: 4 });
    assert.equal(page.totalSize, 6n);
    assert.equal(page.jobs.length, 4);
    assert.ok(page.jobs.every((j) => j.batchId === batch!.id && j.state === JobState.COMPLETED && j.definition?.labels.tier === "web"));
    const rest = await c.unary("listJobs", { batchId: batch!.id, pageSize: 4, pageToken: page.nextPageToken });
    assert.equal(rest.jobs.length, 2);
    assert.equal(new Set([...page.jobs, ...rest.jobs].map((j) => j.definition!.name)).size, 6);
    await assert.rejects(c.unary("listJobs", { pageSize: 4, pageToken: page.nextPageToken }), isCode(INVALID, "page_token"));
    const job = (await c.unary("getJob", { jobId: done.jobs[0]!.jobId })).job!;
    assert.equal(job.batchId, batch!.id);
    assert.equal(job.definition?.vm, "/DC1/vm/fleet/fleet-01");
    assert.equal(job.result?.files[0]?.size, 65536n);

    const event = await waitFor("the batch.completed webhook", () => eventsOf(receiver).find((r) => r.data.batch_id === batch!.id));
    assert.equal(event.type, "batch.completed");
    assert.equal(event.data.state, "completed");
    assert.deepEqual(event.data.counts, { queued: 0, running: 0, completed: 6, failed: 0, cancelled: 0, total: 6 });
    assert.deepEqual(event.data.failed_vms, []);
    assert.equal(event.data.bytes_done, 6 * 65536);
  });

  test("one child failing for good: partially_failed, the failed VM and its error in GetBatch (Connect JSON) and the webhook", async () => {
    const response = await postJson(d.httpUrl, "SubmitJob", { definition: { provider: "fake", outputDir: "json-mixed", vmSelector: { folder: "/DC1/vm/mixed" } } });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    const id = response.body.batch.id as string;
    assert.equal(response.body.created, true);
    assert.equal(response.body.job, undefined);
    await settled(id);
    const got = await postJson(d.httpUrl, "GetBatch", { batchId: id });
    assert.equal(got.body.batch.state, "BATCH_STATE_PARTIALLY_FAILED");
    assert.deepEqual(got.body.batch.counts, { queued: 0, running: 0, completed: 2, failed: 1, cancelled: 0, total: 3 });
    const failed = got.body.batch.jobs.filter((j: Record<string, any>) => j.state === "JOB_STATE_FAILED");
    assert.deepEqual(failed.map((j: Record<string, any>) => j.vmName), ["mixed-02"]);
    assert.equal(failed[0].error.code, "INTERNAL");
    // StreamJobUpdates over Connect JSON: the children's snapshots, then the batch as it is, then SYNCED.
    const controller = new AbortController();
    const streamed: Record<string, any>[] = [];
    for await (const message of streamJson(d.httpUrl, "StreamJobUpdates", { batchIds: [id] }, controller.signal)) {
      streamed.push(message);
      if (message.kind === "JOB_EVENT_KIND_SYNCED") break;
    }
    controller.abort();
    assert.deepEqual(streamed.map((m) => m.kind), [...Array(3).fill("JOB_EVENT_KIND_SNAPSHOT"), "JOB_EVENT_KIND_BATCH_CHANGED", "JOB_EVENT_KIND_SYNCED"]);
    assert.equal(streamed[3]!.batch.state, "BATCH_STATE_PARTIALLY_FAILED");
    assert.ok(streamed.slice(0, 3).every((m) => m.job.batchId === id));
    const event = await waitFor("batch.completed of the mixed batch", () => eventsOf(receiver).find((r) => r.data.batch_id === id));
    assert.equal(event.data.state, "partially_failed");
    assert.deepEqual(event.data.failed_vms.map((v: Record<string, any>) => [v.vm, v.state, v.error.code]), [["/DC1/vm/mixed/mixed-02", "failed", "INTERNAL"]]);
  });

  test("every child failing: failed", async () => {
    const { batch } = await submit(def("broken"));
    const done = await settled(batch!.id);
    assert.equal(done.state, BatchState.FAILED);
    assert.equal(done.counts?.failed, 2);
    assert.ok(done.jobs.every((j) => j.error?.code === "PERMISSION_DENIED"));
  });

  test("max_parallel 2 with 4 worker slots: never more than 2 of the batch's jobs run, and 2 do; StreamJobUpdates batch_ids ends on the final BATCH_CHANGED", async () => {
    const { batch } = await submit(def("slow", { maxParallel: 2, vmSelector: { folder: "/DC1/vm/slow", powerStates: [PowerStatePb.POWERED_OFF] } }));
    assert.equal(batch!.maxParallel, 2);
    assert.equal(batch!.counts?.total, 4);
    const stream = collect(c.stream("streamJobUpdates", { batchIds: [batch!.id] }), isBatchEnd);
    let sampledMax = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const { jobs } = await c.unary("listJobs", { batchId: batch!.id, states: [JobState.RUNNING] });
        sampledMax = Math.max(sampledMax, jobs.length);
        await new Promise((r) => setTimeout(r, 40));
      }
    })();
    const updates = await stream;
    sampling = false;
    await sampler;
    assert.ok(sampledMax <= 2, `ListJobs saw ${sampledMax} running`);
    assert.equal(sampledMax, 2, "the cap is used, not just respected");
    // From the stream: the children's own transitions, replayed in order, never have 3 running.
    const state = new Map<string, JobState>();
    let streamMax = 0;
    for (const u of updates) {
      if (u.jobId && u.kind !== JobEventKind.PROGRESS) state.set(u.jobId, u.state);
      if (u.kind === JobEventKind.BATCH_CHANGED) {
        assert.equal(u.batch!.id, batch!.id);
        assert.ok(u.batch!.counts!.running <= 2, `BATCH_CHANGED with ${u.batch!.counts!.running} running`);
      }
      streamMax = Math.max(streamMax, [...state.values()].filter((s) => s === JobState.RUNNING).length);
    }
    assert.ok(streamMax <= 2, `the stream showed ${streamMax} running`);
    const kinds = new Set(updates.map((u) => JobEventKind[u.kind]));
    for (const kind of ["SNAPSHOT", "SYNCED", "STATE_CHANGED", "BATCH_CHANGED"]) assert.ok(kinds.has(kind), `${kind} in ${[...kinds]}`);
    assert.ok(updates.filter((u) => u.jobId).every((u) => batch!.jobs.some((j) => j.jobId === u.jobId)), "only the batch's children");
    const last = updates[updates.length - 1]!;
    assert.equal(last.batch!.state, BatchState.COMPLETED);
    assert.equal(last.batch!.counts!.completed, 4);
    assert.equal(last.batch!.bytesDone, 4n * 3_000_000n);

    // A reconnect after the end, with after_seq from before it: the replay, then the batch's final state, then SYNCED.
    const firstSeq = updates.find((u) => u.kind === JobEventKind.STATE_CHANGED)!.seq;
    const again = await collect(c.stream("streamJobUpdates", { batchIds: [batch!.id], afterSeq: firstSeq }), (u) => u.kind === JobEventKind.SYNCED);
    assert.ok(again.some((u) => u.kind === JobEventKind.STATE_CHANGED && u.state === JobState.COMPLETED), "the replay has the completions");
    const final = again.filter((u) => u.kind === JobEventKind.BATCH_CHANGED).at(-1);
    assert.equal(final?.batch?.state, BatchState.COMPLETED);
  });

  test("CancelBatch: children cancelled, batch cancelled with its reason; again FAILED_PRECONDITION; unknown NOT_FOUND, empty INVALID_ARGUMENT", async () => {
    const { batch } = await submit(def("slow"));
    await waitFor("a running child", async () => (await c.unary("getBatch", { batchId: batch!.id })).batch!.counts!.running > 0);
    const { batch: cancelled } = await c.unary("cancelBatch", { batchId: batch!.id, reason: "maintenance window over" });
    assert.equal(cancelled!.state, BatchState.CANCELLED);
    assert.equal(cancelled!.counts?.cancelled, 6);
    assert.ok(cancelled!.endTime);
    for (const j of cancelled!.jobs) {
      const job = (await c.unary("getJob", { jobId: j.jobId })).job!;
      assert.equal(job.state, JobState.CANCELLED);
      assert.match(job.error?.message ?? "", /maintenance window over/);
    }
    await assert.rejects(c.unary("cancelBatch", { batchId: batch!.id }), (err: grpc.ServiceError) => err.code === 9 && /already ended \(cancelled\)/.test(err.details));
    await assert.rejects(c.unary("getBatch", { batchId: "0190c0de-0000-7000-8000-000000000000" }), (err: grpc.ServiceError) => err.code === 5);
    await assert.rejects(c.unary("getBatch", { batchId: " " }), isCode(INVALID, "batch_id"));
    await assert.rejects(c.unary("cancelBatch", { batchId: "" }), isCode(INVALID, "batch_id"));
    const event = await waitFor("batch.completed of the cancelled batch", () => eventsOf(receiver).find((r) => r.data.batch_id === batch!.id));
    assert.equal(event.data.state, "cancelled");
    assert.equal(event.data.cancel_reason, "maintenance window over");
    assert.equal(event.data.failed_vms.length, 6);
  });

  test("the same request_id returns the same batch (created false); a different definition with it is ALREADY_EXISTS", async () => {
    const definition = def("tree", { requestId: "nightly-2026-12-02" });
    const first = await submit(definition);
    const again = await submit(definition);
    assert.equal(first.created, true);
    assert.equal(again.created, false);
    assert.equal(again.batch!.id, first.batch!.id);
    await assert.rejects(c.unary("submitJob", { definition: { ...definition, priority: "high" } }), (err: grpc.ServiceError) => err.code === 6);
    await settled(first.batch!.id);
  });

  test("ListBatches: newest first, paged with total_size, states and schedule_id filters; bad input names the field", async () => {
    const all = await c.unary("listBatches", {});
    assert.ok(all.totalSize >= 6n);
    const created = all.batches.map((b) => Number(b.createTime!.seconds) * 1000 + b.createTime!.nanos / 1e6);
    assert.deepEqual(created, [...created].sort((a, b) => b - a), "newest first");
    const seen: string[] = [];
    let token = "";
    do {
      const page = await c.unary("listBatches", { pageSize: 2, pageToken: token });
      assert.ok(page.batches.length <= 2);
      assert.equal(page.totalSize, all.totalSize);
      seen.push(...page.batches.map((b) => b.id));
      token = page.nextPageToken;
    } while (token);
    assert.deepEqual(seen, all.batches.map((b) => b.id));
    const failedOnes = await c.unary("listBatches", { states: [BatchState.FAILED, BatchState.PARTIALLY_FAILED] });
    assert.equal(failedOnes.totalSize, 2n);
    assert.deepEqual(failedOnes.batches.map((b) => b.state).sort(), [BatchState.PARTIALLY_FAILED, BatchState.FAILED].sort());
    assert.equal((await c.unary("listBatches", { scheduleId: "no-such-schedule" })).totalSize, 0n);
    const first = await c.unary("listBatches", { pageSize: 1 });
    await assert.rejects(c.unary("listBatches", { pageSize: 1, pageToken: first.nextPageToken, states: [BatchState.FAILED] }), isCode(INVALID, "page_token"));
    await assert.rejects(c.unary("listBatches", { pageSize: 1001 }), isCode(INVALID, "page_size"));
    await assert.rejects(c.unary("listBatches", { states: [42 as BatchState] }), isCode(INVALID, "states[0]"));
  });

  test("hypersdk_batches_total counts the ended batches by final state", async () => {
    const text = await (await fetch(`${d.httpUrl}/metrics`)).text();
    const count = (state: string) => Number(new RegExp(`^hypersdk_batches_total\\{state="${state}"\\} (\\d+)$`, "m").exec(text)?.[1]);
    const listed = async (state: BatchState) => Number((await c.unary("listBatches", { states: [state] })).totalSize);
    assert.deepEqual(
      [count("completed"), count("partially_failed"), count("failed"), count("cancelled")],
      [await listed(BatchState.COMPLETED), await listed(BatchState.PARTIALLY_FAILED), await listed(BatchState.FAILED), await listed(BatchState.CANCELLED)],
    );
    assert.ok(count("completed") >= 3 && count("cancelled") === 1, text.split("\n").filter((l) => l.startsWith("hypersdk_batches")).join("\n"));
  });

  test("bad selectors are INVALID_ARGUMENT naming the field; nothing is created", async () => {
    const before = (await c.unary("listBatches", {})).totalSize;
    const bad = (definition: Definition, field: string) => assert.rejects(c.unary("submitJob", { definition }), isCode(INVALID, field));
    await bad({ provider: "fake", vmSelector: {} }, "definition.vm_selector");
    await bad({ provider: "fake", vmSelector: { folder: "/DC1/vm/fleet", powerStates: [PowerStatePb.POWERED_ON, 7 as PowerStatePb] } }, "definition.vm_selector.power_states[1]");
    await bad({ provider: "fake", vm: "web-01", vmSelector: { folder: "/DC1/vm/fleet" } }, "definition.vm_selector");
    await bad({ provider: "fake", vm: "web-01", maxParallel: 2 }, "definition.max_parallel");
    await bad({ provider: "fake", vmSelector: { folder: "/DC1/vm/fleet" }, maxParallel: 1001 }, "definition.max_parallel");
    await bad({ provider: "fake", vmSelector: { folder: "/DC1/vm/../vm" } }, "definition.vm_selector.folder");
    await bad({ provider: "fake", vmSelector: { folder: "/DC1/vm/empty-folder" } }, "definition.vm_selector");
    await bad({ provider: "fake", vmSelector: { folder: "/DC1/vm/fleet", nameGlob: "db-*" } }, "definition.vm_selector");
    const many = await c.unary("submitJobs", { definitions: [{ provider: "fake", vmSelector: { folder: "/DC1/vm/fleet" } }] });
    assert.equal(many.results[0]!.error?.code, "INVALID_ARGUMENT");
    assert.match(many.results[0]!.error?.message ?? "", /^definitions\[0\]\.vm_selector: .*SubmitJob/);
    await assert.rejects(c.unary("listJobs", { batchId: "x".repeat(129) }), isCode(INVALID, "batch_id"));
    await assert.rejects(collect(c.stream("streamJobUpdates", { batchIds: ["0190c0de-0000-7000-8000-000000000000"] }), () => true), (err: grpc.ServiceError) => err.code === 5);
    assert.equal((await c.unary("listBatches", {})).totalSize, before);
  });
});
