// Schedules' run layout and retention through the real daemon, in process (so that a test provider can be
// switched to fail), over gRPC: <output_dir>/<vm>/<run time>/, keep_last per VM, nothing else touched.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { Writable } from "node:stream";
import { after, describe, test } from "node:test";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import pino from "pino";
import { BatchState } from "../gen/hypervisord/v1/batch_pb.js";
import { JobState } from "../gen/hypervisord/v1/job_pb.js";
import { OverlapPolicy, type ScheduleRun } from "../gen/hypervisord/v1/schedule_pb.js";
import { loadConfig } from "../src/config/load-config.ts";
import { startDaemon, type Daemon } from "../src/daemon/index.ts";
import { HypervisordError } from "../src/errors.ts";
import type { Provider } from "../src/providers/provider.ts";
import { runStamp } from "../src/scheduler/run-layout.ts";
import { createGrpcJsClient, type GrpcJsClient } from "./support/clients.ts";
import { tempDir } from "./support/temp-dir.ts";
import { createFakeProvider } from "./support/fake-provider.ts";
import { isFinal, waitForJob } from "./support/wait-for-job.ts";
import { waitFor } from "./support/wait-for.ts";

const RUN_DIR = /^\d{8}T\d{6}Z(-\d+)?$/;
const cleanups: (() => Promise<unknown> | unknown)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

/** The fake provider under another name whose exports fail, or hang until cancelled, when switched to. */
function switchableProvider(): Provider & { mode: "ok" | "fail" | "hang" } {
  const inner = createFakeProvider({ name: "switch" });
  const provider = {
    ...inner,
    mode: "ok" as "ok" | "fail" | "hang",
    export: (definition: Parameters<Provider["export"]>[0], context: Parameters<Provider["export"]>[1]) => {
      if (provider.mode === "fail") return Promise.reject(new HypervisordError("INTERNAL", "switched to fail"));
      if (provider.mode === "hang") {
        return new Promise<never>((_, reject) => context.signal.addEventListener("abort", () => reject(context.signal.reason), { once: true }));
      }
      return inner.export(definition, context);
    },
  };
  return provider;
}

interface Running {
  daemon: Daemon;
  client: GrpcJsClient;
  logs: string[];
  stop(): Promise<void>;
}

async function start(dataDir: string, outputRoot: string, provider: Provider): Promise<Running> {
  const command = loadConfig([
    "--data-dir", dataDir, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--allowed-output-root", outputRoot,
  ], { HYPERVISORD_RATE_LIMIT_RPS: "0" });
  assert.equal(command.kind, "run");
  const logs: string[] = [];
  const sink = new Writable({ write(chunk: Buffer, _encoding, done) { logs.push(...chunk.toString().split("\n").filter(Boolean)); done(); } });
  const logger = pino({ level: "info" }, sink);
  const daemon = await startDaemon({ config: command.config, providers: () => [createFakeProvider(), provider], logger });
  const client = createGrpcJsClient(daemon.grpcAddress);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    client.close();
    await daemon.stop();
  };
  cleanups.push(stop);
  return { daemon, client, logs, stop };
}

function template(outputDir: string, vm = "web-01", provider = "fake") {
  return { provider, vm, outputDir, format: 1 /* OVF */ };
}

async function createSchedule(client: GrpcJsClient, jobTemplate: object, keepLast: number, extra: object = {}) {
  // A cron time far away: every run here is a TriggerSchedule.
  const { schedule } = await client.unary("createSchedule", { schedule: { name: "nightly", cron: "0 0 1 1 *", jobTemplate, keepLast, ...extra } });
  return schedule!;
}

/** Triggers a run and waits for its job to end; returns the run and the job. */
async function runOnce(client: GrpcJsClient, scheduleId: string) {
  const { run, job } = await client.unary("triggerSchedule", { id: scheduleId });
  assert.ok(job, `run ${run!.id} created no job: ${run!.skippedReason}`);
  const ended = await waitForJob(client, job.id, isFinal);
  return { run: run!, job: ended };
}

function runDirs(vmDir: string): string[] {
  return fs.readdirSync(vmDir).filter((name) => RUN_DIR.test(name)).sort();
}

/** Retention runs after the completion is announced; give a deletion that should not happen the time to show. */
const settle = () => new Promise((r) => setTimeout(r, 300));

async function invalidArgument(call: Promise<unknown>, field: string): Promise<void> {
  await assert.rejects(call, (err: grpc.ServiceError) => {
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.message);
    assert.match(err.details, new RegExp(field.replace(/\./g, "\\.")));
    return true;
  });
}

describe("schedule keep_last", () => {
  test("0-10000 in Create and Update (with the update_mask path keep_last); returned by Get and List", async () => {
    const root = tempDir("ret-keep");
    const { client } = await start(tempDir("ret-data"), root, switchableProvider());
    const tpl = template(path.join(root, "a"));
    for (const bad of [-1, 10_001]) await invalidArgument(createSchedule(client, tpl, bad), "schedule.keep_last");
    const schedule = await createSchedule(client, tpl, 10_000);
    assert.equal(schedule.keepLast, 10_000);
    await invalidArgument(client.unary("updateSchedule", { id: schedule.id, schedule: { keepLast: -5 }, updateMask: { paths: ["keep_last"] } }), "schedule.keep_last");
    const updated = await client.unary("updateSchedule", { id: schedule.id, schedule: { keepLast: 0 }, updateMask: { paths: ["keep_last"] } });
    assert.equal(updated.schedule!.keepLast, 0);
    // Without a mask, a non-zero keep_last is an update; other fields stay.
    const unmasked = await client.unary("updateSchedule", { id: schedule.id, schedule: { keepLast: 7 } });
    assert.equal(unmasked.schedule!.keepLast, 7);
    assert.equal(unmasked.schedule!.name, "nightly");
    assert.equal((await client.unary("getSchedule", { id: schedule.id })).schedule!.keepLast, 7);
    const listed = (await client.unary("listSchedules", {})).schedules.find((s) => s.id === schedule.id);
    assert.equal(listed?.keepLast, 7);
  });
});

describe("schedule run layout and retention", () => {
  test("keep_last 2 after 4 runs: the 2 newest run directories remain, nothing else under the root is touched", async () => {
    const root = tempDir("ret-four");
    const { client, daemon, logs } = await start(tempDir("ret-data"), root, switchableProvider());
    const out = path.join(root, "nightly");
    const vmDir = path.join(out, "web-01");
    // What a user put there: files and directories the daemon never recorded, one named like a run.
    fs.mkdirSync(path.join(vmDir, "19990101T000000Z"), { recursive: true });
    fs.writeFileSync(path.join(vmDir, "19990101T000000Z", "old.ovf"), "user's");
    fs.writeFileSync(path.join(vmDir, "NOTES.txt"), "user's");
    fs.mkdirSync(path.join(vmDir, "manual-copy"));
    fs.writeFileSync(path.join(root, "keep.txt"), "user's");
    fs.mkdirSync(path.join(root, "other", "web-01", "20200101T000000Z"), { recursive: true });

    const schedule = await createSchedule(client, template(out), 2);
    const runs: { run: ScheduleRun; dir: string; jobId: string }[] = [];
    for (let i = 0; i < 4; i++) {
      const { run, job } = await runOnce(client, schedule.id);
      assert.equal(job.state, JobState.COMPLETED, job.error?.message);
      const dir = job.definition!.outputDir;
      // <output_dir>/<vm>/<run time, UTC, YYYYMMDDTHHMMSSZ>[-n]/ with the package inside as usual.
      assert.equal(path.dirname(dir), vmDir);
      assert.match(path.basename(dir), RUN_DIR);
      assert.ok(path.basename(dir).startsWith(runStamp(timestampMs(run.scheduledTime!))), `${dir} vs run time ${runStamp(timestampMs(run.scheduledTime!))}`);
      assert.ok(fs.existsSync(path.join(dir, "web-01", "web-01-disk-1.img")), `package in ${dir}`);
      runs.push({ run, dir, jobId: job.id });
    }
    assert.equal(new Set(runs.map((r) => r.dir)).size, 4, "every run has its own directory (same second: a suffix)");

    await waitFor("the 2 oldest runs deleted", () => !fs.existsSync(runs[0]!.dir) && !fs.existsSync(runs[1]!.dir));
    await settle();
    assert.deepEqual(runDirs(vmDir), ["19990101T000000Z", ...runs.slice(2).map((r) => path.basename(r.dir))].sort());
    assert.ok(fs.existsSync(path.join(vmDir, "19990101T000000Z", "old.ovf")));
    assert.ok(fs.existsSync(path.join(vmDir, "NOTES.txt")));
    assert.ok(fs.existsSync(path.join(vmDir, "manual-copy")));
    assert.ok(fs.existsSync(path.join(root, "keep.txt")));
    assert.ok(fs.existsSync(path.join(root, "other", "web-01", "20200101T000000Z")));

    // Told in the daemon log (schedule, VM, directory), on the deleted export's job, and in the metrics.
    for (const { dir, jobId } of runs.slice(0, 2)) {
      const line = logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.dir === dir && String(l.msg).startsWith("retention: deleted"));
      assert.ok(line, `a daemon log line for ${dir}`);
      assert.equal(line.scheduleId, schedule.id);
      assert.equal(line.vm, "web-01");
      const { entries } = await client.unary("getJobLogs", { jobId });
      assert.ok(entries.some((e) => e.message.startsWith(`retention: deleted ${dir}`)), `job ${jobId} log tells the deletion`);
    }
    const metrics = await (await fetch(`http://${daemon.httpAddress}/metrics`)).text();
    assert.match(metrics, /^hypersdk_retention_deletions_total\{result="deleted"\} 2$/m);
  });

  test("a failed newest run deletes nothing; the next successful one does", async () => {
    const root = tempDir("ret-fail");
    const provider = switchableProvider();
    const { client } = await start(tempDir("ret-data"), root, provider);
    const out = path.join(root, "nightly");
    const schedule = await createSchedule(client, template(out, "db-07", "switch"), 1);
    const first = await runOnce(client, schedule.id);
    assert.equal(first.job.state, JobState.COMPLETED);

    provider.mode = "fail";
    const failed = await runOnce(client, schedule.id);
    assert.equal(failed.job.state, JobState.FAILED);
    await settle();
    assert.ok(fs.existsSync(first.job.definition!.outputDir), "the older good export stays");

    provider.mode = "ok";
    const third = await runOnce(client, schedule.id);
    assert.equal(third.job.state, JobState.COMPLETED);
    await waitFor("the first export deleted", () => !fs.existsSync(first.job.definition!.outputDir));
    assert.deepEqual(runDirs(path.join(out, "db-07")), [path.basename(third.job.definition!.outputDir)]);

    // A cancelled newest run does not count either.
    provider.mode = "hang";
    const { job } = await client.unary("triggerSchedule", { id: schedule.id });
    await client.unary("cancelJob", { jobId: job!.id });
    await waitForJob(client, job!.id, isFinal);
    await settle();
    assert.ok(fs.existsSync(third.job.definition!.outputDir));
  });

  test("keep_last 0 keeps every export; a lower keep_last set later applies at the next start", async () => {
    const root = tempDir("ret-zero");
    const dataDir = tempDir("ret-data");
    const provider = switchableProvider();
    const first = await start(dataDir, root, provider);
    const out = path.join(root, "nightly");
    const schedule = await createSchedule(first.client, template(out), 0);
    const dirs: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { job } = await runOnce(first.client, schedule.id);
      assert.equal(job.state, JobState.COMPLETED);
      dirs.push(job.definition!.outputDir);
    }
    await settle();
    assert.equal(runDirs(path.join(out, "web-01")).length, 3);
    // Changing keep_last deletes nothing by itself (deletion follows a completion) ...
    await first.client.unary("updateSchedule", { id: schedule.id, schedule: { keepLast: 1 }, updateMask: { paths: ["keep_last"] } });
    await settle();
    assert.equal(runDirs(path.join(out, "web-01")).length, 3);
    await first.stop();
    // ... and the sweep at start catches up, as after completions just before a crash.
    await start(dataDir, root, provider);
    await waitFor("two older exports deleted at start", () => runDirs(path.join(out, "web-01")).length === 1);
    assert.deepEqual(runDirs(path.join(out, "web-01")), [path.basename(dirs[2]!)]);
  });

  test("a recorded directory replaced by a symbolic link is refused, not followed", async () => {
    const root = tempDir("ret-link");
    const { client, logs } = await start(tempDir("ret-data"), root, switchableProvider());
    const out = path.join(root, "nightly");
    const schedule = await createSchedule(client, template(out), 1);
    const { job } = await runOnce(client, schedule.id);
    const dir = job.definition!.outputDir;
    // Someone swaps the export for a link to data of theirs.
    const theirs = path.join(root, "theirs");
    fs.mkdirSync(theirs);
    fs.writeFileSync(path.join(theirs, "precious"), "x");
    fs.rmSync(dir, { recursive: true });
    fs.symlinkSync(theirs, dir);
    await runOnce(client, schedule.id);
    await waitFor("the refusal logged", () => logs.some((l) => l.includes(`not deleting ${dir}: it is a symbolic link`)));
    assert.ok(fs.existsSync(path.join(theirs, "precious")));
    assert.ok(fs.lstatSync(dir).isSymbolicLink());
  });
});

describe("schedule with a vm_selector", () => {
  test("each run is a batch with one directory per VM; a running batch is still running for overlap; retention per VM", async () => {
    const root = tempDir("ret-batch");
    const provider = switchableProvider();
    const { client } = await start(tempDir("ret-data"), root, provider);
    const out = path.join(root, "fleet");
    const jobTemplate = { provider: "switch", outputDir: out, format: 1, vmSelector: { folder: "/DC0/vm/web" } };
    const schedule = await createSchedule(client, jobTemplate, 2);
    const vms = ["web-01", "web-02", "web-03", "web-04", "web-05", "web-06"];

    const runBatch = async () => {
      const { run, job } = await client.unary("triggerSchedule", { id: schedule.id });
      assert.equal(job, undefined);
      assert.ok(run!.batchId, `run ${run!.id} made no batch: ${run!.skippedReason}`);
      return run!;
    };
    const ended = async (batchId: string) => {
      for (;;) {
        const { batch } = await client.unary("getBatch", { batchId });
        if (batch!.state !== BatchState.RUNNING) return batch!;
        await new Promise((r) => setTimeout(r, 50));
      }
    };

    // A batch whose exports hang: the next run is skipped while it runs (overlap SKIP), and its cancel deletes nothing.
    provider.mode = "hang";
    const hanging = await runBatch();
    const { run: skipped } = await client.unary("triggerSchedule", { id: schedule.id });
    assert.match(skipped!.skippedReason, /previous run still queued or running/);
    await client.unary("cancelBatch", { batchId: hanging.batchId });
    assert.equal((await ended(hanging.batchId)).state, BatchState.CANCELLED);
    provider.mode = "ok";

    const runs: { batchId: string; dirs: Map<string, string> }[] = [];
    for (let i = 0; i < 3; i++) {
      const run = await runBatch();
      const batch = await ended(run.batchId);
      assert.equal(batch.state, BatchState.COMPLETED);
      assert.equal(batch.jobs.length, 6);
      const dirs = new Map<string, string>();
      for (const child of batch.jobs) {
        const job = (await client.unary("getJob", { jobId: child.jobId })).job!;
        const dir = job.definition!.outputDir;
        assert.equal(path.dirname(path.dirname(dir)), out);
        assert.match(path.basename(dir), RUN_DIR);
        dirs.set(path.basename(path.dirname(dir)), dir);
      }
      assert.deepEqual([...dirs.keys()].sort(), vms, "one directory per VM, named after it");
      runs.push({ batchId: run.batchId, dirs });
    }

    const { runs: listed } = await client.unary("listScheduleRuns", { scheduleId: schedule.id });
    const byBatch = new Map(listed.filter((r) => r.batchId).map((r) => [r.batchId, r]));
    assert.equal(byBatch.get(hanging.batchId)?.state, JobState.CANCELLED);
    for (const { batchId } of runs) {
      assert.equal(byBatch.get(batchId)?.state, JobState.COMPLETED);
      assert.equal(byBatch.get(batchId)?.jobId, "");
    }

    // keep_last 2 per VM: the first successful run's directory of every VM goes, the last two stay.
    await waitFor("the oldest run deleted for every VM", () => vms.every((vm) => !fs.existsSync(runs[0]!.dirs.get(vm)!)));
    await settle();
    for (const vm of vms) {
      assert.deepEqual(runDirs(path.join(out, vm)), runs.slice(1).map((r) => path.basename(r.dirs.get(vm)!)).sort(), vm);
    }
  });

  test("overlap QUEUE: a run triggered while the previous batch runs starts as a batch when that batch ends", async () => {
    const root = tempDir("ret-queue");
    const provider = switchableProvider();
    const { client } = await start(tempDir("ret-data"), root, provider);
    const jobTemplate = { provider: "switch", outputDir: path.join(root, "fleet"), format: 1, vmSelector: { folder: "/DC0/vm/web" } };
    const schedule = await createSchedule(client, jobTemplate, 0, { overlapPolicy: OverlapPolicy.QUEUE });
    provider.mode = "hang";
    const { run: first } = await client.unary("triggerSchedule", { id: schedule.id });
    assert.ok(first!.batchId);
    const { run: queued } = await client.unary("triggerSchedule", { id: schedule.id });
    assert.equal(queued!.batchId, "");
    assert.equal(queued!.skippedReason, "");
    provider.mode = "ok";
    await client.unary("cancelBatch", { batchId: first!.batchId });
    const second = await waitFor("the queued run's batch", async () => {
      const { runs } = await client.unary("listScheduleRuns", { scheduleId: schedule.id });
      return runs.find((r) => r.id === queued!.id && r.batchId);
    });
    assert.notEqual(second.batchId, first!.batchId);
  });
});
