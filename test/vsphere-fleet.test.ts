// Whole folders against vcsim-export (../shared/vcsim), through the real daemon process: a folder of 6 VMs, 4 of
// them running, exported by one submission and by a schedule's run. Every VM's export is byte-identical to its
// disk, the running ones through a snapshot that is gone afterwards, and the batch's state and counts are right.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { BatchState, type Batch } from "../gen/hypervisord/v1/batch_pb.js";
import { JobState } from "../gen/hypervisord/v1/job_pb.js";
import { retrieveOne } from "../src/providers/vsphere/property-collector.ts";
import { openSession, type VSphereSession } from "../src/providers/vsphere/session.ts";
import { runTask } from "../src/providers/vsphere/tasks.ts";
import { createGrpcJsClient, type GrpcJsClient } from "./support/clients.ts";
import { spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { buildVcsim, startVcsim, type Vcsim, type VcsimVm } from "./support/vcsim.ts";

const DISK = 1024 * 1024;

let skipReason: string | undefined;
let daemon: DaemonProcess;
let client: GrpcJsClient;
let sim: Vcsim;
let session: VSphereSession;
/** The folder's VMs, by name, with the SHA-256 of the bytes written to their disk. */
const sums = new Map<string, string>();
let folder = "";

const connection = () => ({ url: sim.url, username: "user", password: "pass", insecure: true });
const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");
const moref = (vm: VcsimVm) => ({ type: "VirtualMachine", value: vm.moref });

before(async () => {
  skipReason = (await buildVcsim()).reason;
  if (skipReason) {
    console.log(`skipping the vSphere folder tests: ${skipReason}`);
    return;
  }
  // -folder 1 puts every VM in /F0/DC0/vm/F0: 3 in the cluster's resource pool and 3 on the standalone host.
  sim = await startVcsim(["-folder", "1", "-vm", "3", "-disk-kb", String(DISK / 1024)]);
  assert.equal(sim.vms.length, 6);
  folder = path.posix.dirname(sim.vms[0]!.path);
  assert.ok(sim.vms.every((vm) => path.posix.dirname(vm.path) === folder), "every VM in one folder");
  session = await openSession({ ...connection(), thumbprint: "" }, { maxConnections: 2, logger: pino({ level: "silent" }) }, AbortSignal.timeout(10_000));
  for (const [i, vm] of sim.vms.entries()) {
    const bytes = randomBytes(DISK);
    fs.writeFileSync(vm.disks[0]!.file, bytes);
    sums.set(vm.name, sha256(bytes));
    if (i < 4) await runTask(session, "PowerOnVM_Task", moref(vm), AbortSignal.timeout(10_000));
  }
  daemon = await spawnDaemon({ args: ["--max-concurrent-jobs", "3"] });
  client = createGrpcJsClient(daemon.grpcAddress);
});

after(async () => {
  client?.close();
  await session?.close();
  if (daemon) assert.equal(await daemon.stop(), 0);
  await sim?.stop();
});

async function waitForBatch(id: string, timeoutMs = 90_000): Promise<Batch> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { batch } = await client.unary("getBatch", { batchId: id });
    if (batch!.state !== BatchState.RUNNING) return batch!;
    if (Date.now() > deadline) assert.fail(`batch ${id} still running after ${timeoutMs} ms: ${JSON.stringify(batch!.counts)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Every child completed, its disk byte-identical to its VM's, consistent as its power state says, and no snapshot left. */
async function assertIdenticalExports(batch: Batch): Promise<string[]> {
  assert.equal(batch.state, BatchState.COMPLETED, JSON.stringify(batch.jobs.map((j) => [j.vmName, JobState[j.state], j.error?.message])));
  assert.deepEqual({ ...batch.counts, $typeName: undefined }, { $typeName: undefined, queued: 0, running: 0, completed: 6, failed: 0, cancelled: 0, total: 6 });
  assert.deepEqual(batch.jobs.map((j) => j.vmName).sort(), [...sums.keys()].sort(), "one child per VM of the folder");
  const disks: string[] = [];
  for (const child of batch.jobs) {
    const { job } = await client.unary("getJob", { jobId: child.jobId });
    assert.equal(job!.state, JobState.COMPLETED);
    assert.equal(job!.batchId, batch.id);
    const disk = job!.result!.files.find((f) => f.path.endsWith(".vmdk"))!;
    const file = path.join(job!.result!.outputDir, disk.path);
    assert.equal(sha256(fs.readFileSync(file)), sums.get(child.vmName), `${child.vmName}: the exported disk is the VM's`);
    const running = sim.vms.findIndex((vm) => vm.name === child.vmName) < 4;
    assert.equal(job!.result!.consistency, running ? "application_consistent" : "powered_off", child.vmName);
    disks.push(file);
  }
  assert.equal(Number(batch.bytesDone), 6 * DISK, "the batch's bytes are its children's");
  for (const vm of sim.vms) {
    const found = await retrieveOne(session, moref(vm), ["snapshot", "runtime.powerState"], AbortSignal.timeout(10_000));
    assert.equal(found?.props.get("snapshot"), undefined, `${vm.name} has no snapshot left`);
    assert.ok(fs.readdirSync(path.dirname(vm.disks[0]!.file)).every((f) => !f.includes("-snap-")), `${vm.name}: no frozen snapshot files`);
  }
  return disks;
}

describe("a folder of 6 VMs, 4 running", () => {
  test("one submission with vm_selector: a batch of 6 identical exports", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { batch, job, created } = await client.unary("submitJob", {
      definition: { vsphere: connection(), vmSelector: { folder }, outputDir: "fleet", maxParallel: 2 } as never,
    });
    assert.equal(job, undefined);
    assert.equal(created, true);
    assert.equal(batch!.counts!.total, 6);
    const ended = await waitForBatch(batch!.id);
    const disks = await assertIdenticalExports(ended);
    assert.ok(disks.every((d) => d.startsWith(path.join(daemon.outputRoot, "fleet") + path.sep)));
    const { batches } = await client.unary("listBatches", {});
    assert.ok(batches.some((b) => b.id === batch!.id && b.state === BatchState.COMPLETED));
  });

  test("a schedule's run with vm_selector: a batch, one directory per VM under its run time", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { schedule } = await client.unary("createSchedule", {
      schedule: { name: "nightly-folder", cron: "0 2 * * *", jobTemplate: { vsphere: connection(), vmSelector: { folder }, outputDir: "nightly" }, keepLast: 2 } as never,
    });
    const { run } = await client.unary("triggerSchedule", { id: schedule!.id });
    assert.ok(run!.batchId, "the run made a batch");
    const ended = await waitForBatch(run!.batchId);
    assert.equal(ended.scheduleId, schedule!.id);
    const disks = await assertIdenticalExports(ended);
    for (const disk of disks) {
      const relative = path.relative(path.join(daemon.outputRoot, "nightly"), disk).split(path.sep);
      assert.match(relative[1]!, /^\d{8}T\d{6}Z/, `<output_dir>/<vm>/<run time>/...: ${relative.join("/")}`);
    }
  });
});
