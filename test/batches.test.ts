// Batches: a definition with a vm_selector, one child job per VM. The engine API (what schedules call) in
// process, then the daemon over grpc-js and Connect JSON with the fake provider's /DC1 fleet folders.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Schedule } from "../src/domain/schedule.ts";
import type { PowerState } from "../src/domain/vm.ts";
import { HypervisordError } from "../src/errors.ts";
import { fakeDefinition, startEngine, waitFor, type Harness } from "./support/engine-harness.ts";

const selector = (folder: string, extra: Partial<{ recursive: boolean; nameGlob: string; powerStates: PowerState[] }> = {}) =>
  ({ folder, recursive: true, powerStates: [], ...extra });

const ended = (h: Harness, id: string, timeoutMs = 20_000) =>
  waitFor(`batch ${id} to end`, () => {
    const batch = h.engine.getBatch(id);
    return batch.state !== "running" && batch;
  }, timeoutMs);

describe("engine.submitBatch", () => {
  let h: Harness;
  before(() => {
    h = startEngine({ maxConcurrentJobs: 4 });
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
    const child = h.engine.getJob(batch.jobs[0]!.jobId);
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
    assert.equal(h.store.listJobs({ batchId: batch.id, limit: 100 }).total, 6);
  });

  test("a schedule run: recorded in the batch's transaction with batch_id and no job_id; childDefinition sets each output_dir", async () => {
    const now = Date.now();
    const schedule = {
      id: "sched-1", name: "nightly", description: "", cron: "0 2 * * *", timeZone: "", jobTemplate: fakeDefinition(h.outputDir, ""),
      enabled: true, tags: {}, overlapPolicy: "allow", missedRunPolicy: "skip", createTime: now, updateTime: now, runCount: 0, keepLast: 0,
    } as Schedule;
    h.store.schedules.insert(schedule);
    const definition = fakeDefinition(h.outputDir, "", { vmSelector: selector("/DC1/vm/tree") });
    const { batch } = await h.engine.submitBatch(definition, {
      actor: "scheduler", scheduleId: schedule.id, scheduleRun: { id: "run-1", trigger: "manual", scheduledTime: now },
      childDefinition: (child, vm) => ({ ...child, outputDir: `${h.outputDir}/${vm.name}/run-1` }),
    });
    assert.equal(batch.scheduleId, schedule.id);
    assert.deepEqual(batch.jobs.map((j) => j.vm), ["/DC1/vm/tree/sub/tree-02", "/DC1/vm/tree/tree-01"], "recursive by default, sorted by path");
    for (const j of batch.jobs) {
      const job = h.engine.getJob(j.jobId);
      assert.equal(job.definition.outputDir, `${h.outputDir}/${j.vmName}/run-1`);
      assert.equal(job.scheduleId, schedule.id);
    }
    const runs = h.store.schedules.listRuns(schedule.id, { limit: 10 }).runs;
    assert.equal(runs.length, 1);
    assert.equal(runs[0]!.jobId, undefined);
    assert.equal((runs[0] as { batchId?: string }).batchId, batch.id, "the run names its batch");
    const after = h.store.schedules.get(schedule.id)!;
    assert.equal(after.runCount, 1);
    assert.ok(after.lastRunTime! >= now);
    await ended(h, batch.id);
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
    const before = h.store.batches.list({ limit: 1000 }).total;
    await assert.rejects(
      h.engine.submitBatch(fakeDefinition(h.outputDir, "", { vmSelector: selector("/DC1/vm/nothing-here") }), { actor: "test" }),
      (err: HypervisordError) => err.code === "INVALID_ARGUMENT" && /^definition\.vm_selector: matches no VM \(folder "\/DC1\/vm\/nothing-here"/.test(err.message),
    );
    assert.equal(h.store.batches.list({ limit: 1000 }).total, before);
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
