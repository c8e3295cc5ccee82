// Schedules against the vCenter simulator (real exports, real bytes): the run layout with a real OVF
// package, keep_last 2 after 4 runs of one VM, and a folder schedule whose runs are batches.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { BatchState } from "../gen/hypervisord/v1/batch_pb.js";
import { ExportFormat, JobState } from "../gen/hypervisord/v1/job_pb.js";
import type { GrpcJsClient } from "./support/clients.ts";
import type { DaemonProcess } from "./support/daemon-process.ts";
import { isFinal, waitForJob } from "./support/wait-for-job.ts";
import { buildVcsim, type Vcsim } from "./support/vcsim.ts";
import { startVsphereDaemon, stopVsphereDaemon } from "./support/vsphere-daemon.ts";
import { waitFor } from "./support/wait-for.ts";

const RUN_DIR = /^\d{8}T\d{6}Z(-\d+)?$/;
let skipReason: string | undefined;
let sim: Vcsim;
let daemon: DaemonProcess;
let client: GrpcJsClient;
/** sha256 of each VM's disk as written into the simulator. */
const sources = new Map<string, string>();

before(async () => {
  skipReason = (await buildVcsim()).reason;
  if (skipReason) return void console.log(`skipping the vSphere retention tests: ${skipReason}`);
  ({ sim, daemon, client } = await startVsphereDaemon());
  for (const vm of sim.vms) {
    const bytes = randomBytes(256 * 1024);
    fs.writeFileSync(vm.disks[0]!.file, bytes);
    sources.set(vm.name, createHash("sha256").update(bytes).digest("hex"));
  }
});

after(() => stopVsphereDaemon({ sim, daemon, client }));

const connection = () => ({ url: sim.url, username: "user", password: "pass", insecure: true });
const sha256 = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex");
const runDirs = (vmDir: string) => fs.readdirSync(vmDir).filter((name) => RUN_DIR.test(name)).sort();

/** The OVF package of `vm` in a run directory holds the simulator's bytes. */
function assertPackage(dir: string, vmName: string): void {
  const pkg = path.join(dir, vmName);
  assert.ok(fs.existsSync(path.join(pkg, `${vmName}.ovf`)), `${pkg}/${vmName}.ovf`);
  assert.equal(sha256(path.join(pkg, `${vmName}-disk-1.vmdk`)), sources.get(vmName), `${vmName}'s disk in ${dir}`);
}

describe("schedule retention against vcsim", () => {
  test("keep_last 2 after 4 runs of one VM: the 2 newest packages remain, a user's file stays", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const vm = sim.vms[0]!;
    const out = path.join(daemon.outputRoot, "nightly");
    fs.mkdirSync(path.join(out, vm.name), { recursive: true });
    fs.writeFileSync(path.join(out, vm.name, "README.txt"), "the operator's");
    const { schedule } = await client.unary("createSchedule", { schedule: {
      name: "one VM", cron: "0 2 * * *", keepLast: 2,
      jobTemplate: { provider: "vsphere", vsphere: connection(), vm: vm.path, outputDir: out, format: ExportFormat.OVF },
    } });
    const dirs: string[] = [];
    for (let i = 0; i < 4; i++) {
      const { job } = await client.unary("triggerSchedule", { id: schedule!.id });
      const ended = await waitForJob(client, job!.id, isFinal, { timeoutMs: 120_000 });
      assert.equal(ended.state, JobState.COMPLETED, ended.error?.message);
      const dir = ended.definition!.outputDir;
      assert.equal(path.dirname(dir), path.join(out, vm.name));
      assert.match(path.basename(dir), RUN_DIR);
      assertPackage(dir, vm.name);
      dirs.push(dir);
    }
    await waitFor("the 2 oldest packages deleted", () => !fs.existsSync(dirs[0]!) && !fs.existsSync(dirs[1]!), 15_000);
    assert.deepEqual(runDirs(path.join(out, vm.name)), dirs.slice(2).map((d) => path.basename(d)));
    for (const dir of dirs.slice(2)) assertPackage(dir, vm.name);
    assert.equal(fs.readFileSync(path.join(out, vm.name, "README.txt"), "utf8"), "the operator's");
  });

  test("a folder schedule: every run a batch, one package per VM per run, keep_last 1 per VM", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const out = path.join(daemon.outputRoot, "fleet");
    const { schedule } = await client.unary("createSchedule", { schedule: {
      name: "fleet", cron: "0 2 * * *", keepLast: 1,
      jobTemplate: { provider: "vsphere", vsphere: connection(), vmSelector: { folder: "/DC0/vm" }, outputDir: out, format: ExportFormat.OVF },
    } });
    const names = sim.vms.map((vm) => vm.name).sort();
    const runs: Map<string, string>[] = [];
    for (let i = 0; i < 2; i++) {
      const { run } = await client.unary("triggerSchedule", { id: schedule!.id });
      assert.ok(run!.batchId, `no batch: ${run!.skippedReason}`);
      let batch;
      for (;;) {
        batch = (await client.unary("getBatch", { batchId: run!.batchId })).batch!;
        if (batch.state !== BatchState.RUNNING) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(batch.state, BatchState.COMPLETED);
      assert.equal(batch.counts?.completed, names.length);
      const dirs = new Map<string, string>();
      for (const child of batch.jobs) {
        const job = (await client.unary("getJob", { jobId: child.jobId })).job!;
        dirs.set(path.basename(path.dirname(job.definition!.outputDir)), job.definition!.outputDir);
      }
      assert.deepEqual([...dirs.keys()].sort(), names);
      runs.push(dirs);
    }
    await waitFor("the first run's packages deleted", () => names.every((name) => !fs.existsSync(runs[0]!.get(name)!)), 15_000);
    for (const name of names) {
      assert.deepEqual(runDirs(path.join(out, name)), [path.basename(runs[1]!.get(name)!)]);
      assertPackage(runs[1]!.get(name)!, name);
    }
  });
});
