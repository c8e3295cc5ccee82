// A batch against VMware's vCenter simulator (../shared/vcsim): a folder's powered-off VMs selected by
// folder and name glob, exported with real bytes, one child job per VM, max_parallel 1.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { BatchState } from "../gen/hypervisord/v1/batch_pb.js";
import { JobState } from "../gen/hypervisord/v1/job_pb.js";
import { PowerState } from "../gen/hypervisord/v1/vm_pb.js";
import type { GrpcJsClient } from "./support/clients.ts";
import type { DaemonProcess } from "./support/daemon-process.ts";
import { buildVcsim, type Vcsim } from "./support/vcsim.ts";
import { startVsphereDaemon, stopVsphereDaemon } from "./support/vsphere-daemon.ts";

let skipReason: string | undefined;
let daemon: DaemonProcess;
let client: GrpcJsClient;
let sim: Vcsim;

before(async () => {
  skipReason = (await buildVcsim()).reason;
  if (skipReason) {
    console.log(`skipping the vSphere batch test: ${skipReason}`);
    return;
  }
  ({ sim, daemon, client } = await startVsphereDaemon());
});

after(() => stopVsphereDaemon({ sim, daemon, client }));

describe("a batch against vcsim-export", () => {
  test("folder /DC0/vm with name_glob DC0_H0_*: one job per powered-off VM, byte-identical disks, never two at once", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const selected = sim.vms.filter((vm) => vm.name.startsWith("DC0_H0_")).sort((a, b) => (a.path < b.path ? -1 : 1));
    assert.ok(selected.length >= 2, `the simulator has ${sim.vms.map((vm) => vm.path).join(", ")}`);
    const sources = new Map(selected.map((vm) => {
      const bytes = randomBytes(2 * 1024 * 1024 + selected.indexOf(vm));
      fs.writeFileSync(vm.disks[0]!.file, bytes);
      return [vm.name, bytes] as const;
    }));
    const { batch, created } = await client.unary("submitJob", {
      definition: {
        provider: "vsphere", vsphere: { url: sim.url, username: "user", password: "pass", insecure: true }, outputDir: "fleet",
        vmSelector: { folder: "/DC0/vm", nameGlob: "DC0_H0_*", powerStates: [PowerState.POWERED_OFF] }, maxParallel: 1,
      },
    });
    assert.equal(created, true);
    assert.deepEqual(batch!.jobs.map((j) => j.vm), selected.map((vm) => vm.path));
    assert.equal(batch!.definition?.vsphere?.password, "", "the batch never shows the password");
    let maxRunning = 0;
    let done = batch!;
    for (const deadline = Date.now() + 90_000; ;) {
      done = (await client.unary("getBatch", { batchId: batch!.id })).batch!;
      maxRunning = Math.max(maxRunning, done.counts!.running);
      if (done.state !== BatchState.RUNNING) break;
      assert.ok(Date.now() < deadline, `batch still running: ${JSON.stringify(done.counts)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(done.state, BatchState.COMPLETED, JSON.stringify(done.jobs.map((j) => j.error?.message)));
    assert.equal(maxRunning, 1, "max_parallel 1");
    for (const child of done.jobs) {
      assert.equal(child.state, JobState.COMPLETED);
      const disk = fs.readFileSync(path.join(daemon.outputRoot, "fleet", child.vmName, `${child.vmName}-disk-1.vmdk`));
      assert.ok(disk.equals(sources.get(child.vmName)!), `${child.vmName}: the exported disk is the source's bytes`);
    }
    const total = [...sources.values()].reduce((sum, b) => sum + b.length, 0);
    assert.ok(Number(done.bytesDone) >= total, `bytes_done ${done.bytesDone} covers the ${total} disk bytes`);
  });
});
