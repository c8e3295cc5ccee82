// The azure provider through the real daemon: ARM and token from the stand-in (test/support/azure-standin.ts), the
// disks' bytes from Azurite (Microsoft's storage emulator), conversion with the real qemu-img.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { JobState, type Job } from "../gen/hypervisord/v1/job_pb.js";
import { PowerState } from "../gen/hypervisord/v1/vm_pb.js";
import { startAzureStandin, type AzureStandin } from "./support/azure-standin.ts";
import { startAzurite, type Azurite } from "./support/azurite.ts";
import { createGrpcJsClient, type GrpcJsClient } from "./support/clients.ts";
import { respawnDaemon, spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { hasBytes, isFinal, waitForJob } from "./support/wait-for-job.ts";

const MiB = 1024 * 1024;
let azurite: Azurite;
let standin: AzureStandin;
let daemon: DaemonProcess;
let client: GrpcJsClient;
let vmCount = 0;

before(async () => {
  azurite = await startAzurite();
  standin = await startAzureStandin({ azurite });
  daemon = await spawnDaemon();
  client = createGrpcJsClient(daemon.grpcAddress);
});

after(async () => {
  client?.close();
  if (daemon) assert.equal(await daemon.stop(), 0);
  await standin?.close();
  await azurite?.stop();
});

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");
const fileSha256 = (file: string) => sha256(fs.readFileSync(file));
const connection = (overrides: Record<string, string> = {}) => {
  const c = standin.connection();
  return { ...c, ...overrides };
};

/** A VM with an OS disk (64 MiB, its first 8 MiB and two extents written) and a sparse 128 MiB data disk (three extents). */
async function makeVm(powerState: "running" | "deallocated" = "running", name = `vm-${++vmCount}`) {
  const os = `${name}-os`;
  const data = `${name}-data`;
  await standin.addDisk({
    name: os, sizeBytes: 64 * MiB, sku: "Premium_LRS", osType: "Linux", hyperVGeneration: "V2",
    writes: [{ offset: 0, data: randomBytes(8 * MiB) }, { offset: 20 * MiB, data: randomBytes(MiB) }, { offset: 63 * MiB, data: randomBytes(512 * 1024) }],
  });
  await standin.addDisk({
    name: data, sizeBytes: 128 * MiB, sku: "Standard_LRS",
    writes: [{ offset: 4 * MiB, data: randomBytes(2 * MiB) }, { offset: 64 * MiB + 4096, data: randomBytes(64 * 1024) }, { offset: 127 * MiB, data: randomBytes(MiB) }],
  });
  await standin.addVm({ name, powerState, osDisk: os, dataDisks: [{ lun: 0, disk: data }], nics: [{ name: `${name}-nic`, vnet: "vnet1", subnet: "default" }] });
  return { name, os, data, expected: [await standin.vhdBytes(os), await standin.vhdBytes(data)] };
}

async function submit(definition: Record<string, unknown>, on: GrpcJsClient = client): Promise<string> {
  const { job } = await on.unary("submitJob", { definition: { provider: "azure", azure: connection(), ...definition } as never });
  return job!.id;
}

async function run(definition: Record<string, unknown>, timeoutMs = 90_000): Promise<Job> {
  return waitForJob(client, await submit(definition), isFinal, { timeoutMs });
}

function assertNothingHeld(context: string): void {
  assert.deepEqual(standin.snapshots(), [], `${context}: no snapshot left`);
  assert.deepEqual(standin.grants(), [], `${context}: no read access left open`);
}

describe("Azure export (stand-in ARM + Azurite)", () => {
  test("a running VM with 2 disks: snapshots made and deleted, VHDs identical to the snapshot-time blobs, sparse, OVF + .mf + artifact manifest", async () => {
    const vm = await makeVm("running");
    const before = standin.counts.blobBytes;
    const jobId = await submit({ vm: vm.name, outputDir: "running" });
    // The VM keeps writing while it is exported: the package has the snapshot's bytes, not these.
    await waitForJob(client, jobId, (j) => j.progress?.phase === "downloading" || isFinal(j), { timeoutMs: 60_000 });
    await standin.writeDisk(vm.os, 0, Buffer.alloc(MiB, 0xee));
    const job = await waitForJob(client, jobId, isFinal, { timeoutMs: 90_000 });
    assert.equal(job.state, JobState.COMPLETED, job.error?.message);
    const dir = path.join(daemon.outputRoot, "running", vm.name);
    for (const [i, expected] of vm.expected.entries()) {
      const file = path.join(dir, `${vm.name}-disk-${i + 1}.vhd`);
      assert.equal(fileSha256(file), sha256(expected), `disk ${i + 1} identical to the blob at snapshot time`);
      const stat = fs.statSync(file);
      assert.ok(stat.blocks * 512 < stat.size / 2, `disk ${i + 1} is sparse: ${stat.blocks * 512} of ${stat.size} bytes allocated`);
    }
    const moved = standin.counts.blobBytes - before;
    assert.ok(moved < 30 * MiB, `only the written ranges moved: ${moved} bytes for 192 MiB of disks`);
    const ovf = fs.readFileSync(path.join(dir, `${vm.name}.ovf`), "utf8");
    assert.match(ovf, new RegExp(`${vm.name}-disk-2\\.vhd`));
    assert.match(ovf, /firmware.*efi|efi.*firmware/s, "gen2 -> EFI");
    const mf = fs.readFileSync(path.join(dir, `${vm.name}.mf`), "utf8");
    assert.match(mf, new RegExp(`SHA256\\(${vm.name}-disk-1\\.vhd\\)= ${sha256(vm.expected[0]!)}`));
    const artifact = JSON.parse(fs.readFileSync(path.join(dir, "artifact-manifest.json"), "utf8"));
    assert.equal(artifact.source.provider, "azure");
    assert.equal(artifact.vm.firmware, "uefi");
    assert.equal(job.result?.consistency, "crash_consistent");
    assertNothingHeld("after success");
    assert.ok(standin.requests.some((r) => r.method === "PUT" && /\/snapshots\/hypervisord-/.test(r.path)), "a snapshot was made");
  });

  test("qcow2 with verify: the converted disks are qemu-img compare identical; OVA holds the same VHDs", async () => {
    const vm = await makeVm("running");
    const job = await run({ vm: vm.name, outputDir: "qcow2", convertTo: "qcow2", verify: true });
    assert.equal(job.state, JobState.COMPLETED, job.error?.message);
    const dir = path.join(daemon.outputRoot, "qcow2", vm.name);
    const qcow2 = fs.readdirSync(dir).filter((f) => f.endsWith(".qcow2")).sort();
    assert.equal(qcow2.length, 2, fs.readdirSync(dir).join(","));
    for (const [i, file] of qcow2.entries()) {
      const raw = path.join(dir, `raw-${i}.img`);
      fs.writeFileSync(raw, vm.expected[i]!.subarray(0, vm.expected[i]!.length - 512));
      execFileSync("qemu-img", ["compare", "-f", "raw", "-F", "qcow2", raw, path.join(dir, file)]);
      fs.rmSync(raw);
    }
    assert.deepEqual(job.result?.convertedDisks.map((d) => `${d.verification} ${d.verificationDetail}`), ["identical ", "identical "]);

    const ova = await run({ vm: vm.name, outputDir: "ova", format: 2 });
    assert.equal(ova.state, JobState.COMPLETED, ova.error?.message);
    const listing = execFileSync("tar", ["-tvf", path.join(daemon.outputRoot, "ova", `${vm.name}.ova`)], { encoding: "utf8" });
    assert.match(listing.split("\n")[0]!, /\.ovf$/, "the descriptor comes first");
    const extracted = path.join(daemon.outputRoot, "ova-x");
    fs.mkdirSync(extracted);
    execFileSync("tar", ["-xf", path.join(daemon.outputRoot, "ova", `${vm.name}.ova`), "-C", extracted]);
    assert.equal(fileSha256(path.join(extracted, `${vm.name}-disk-2.vhd`)), sha256(vm.expected[1]!));
    assertNothingHeld("after conversion and OVA");
  });

  test("a deallocated VM is read directly: no snapshot, access ended", async () => {
    const vm = await makeVm("deallocated");
    const snapshotsBefore = standin.requests.filter((r) => r.method === "PUT" && r.path.includes("/snapshots/")).length;
    const job = await run({ vm: `rg1/${vm.name}`, outputDir: "deallocated" });
    assert.equal(job.state, JobState.COMPLETED, job.error?.message);
    assert.equal(standin.requests.filter((r) => r.method === "PUT" && r.path.includes("/snapshots/")).length, snapshotsBefore, "no snapshot made");
    assert.equal(job.result?.consistency, "powered_off");
    assert.equal(fileSha256(path.join(daemon.outputRoot, "deallocated", vm.name, `${vm.name}-disk-1.vhd`)), sha256(vm.expected[0]!));
    assertNothingHeld("after a direct export");
  });

  test("throttling (429 + Retry-After on ARM, 503 on the blobs) and cut downloads are survived", async () => {
    const vm = await makeVm("running");
    standin.faults.throttleArm(3, 1);
    standin.faults.throttleBlob(2, 1);
    standin.faults.cutBlob(512 * 1024, 3);
    try {
      const job = await run({ vm: vm.name, outputDir: "faults" });
      assert.equal(job.state, JobState.COMPLETED, job.error?.message);
      for (const [i, expected] of vm.expected.entries()) {
        assert.equal(fileSha256(path.join(daemon.outputRoot, "faults", vm.name, `${vm.name}-disk-${i + 1}.vhd`)), sha256(expected));
      }
      assert.ok(standin.requests.some((r) => r.status === 429), "ARM did throttle");
    } finally {
      standin.faults.reset();
    }
    assertNothingHeld("after faults");
  });

  test("a missing RBAC permission fails the job with PERMISSION_DENIED naming the action, and leaves nothing", async () => {
    const vm = await makeVm("running");
    standin.faults.deny("Microsoft.Compute/snapshots/beginGetAccess/action");
    try {
      const job = await run({ vm: vm.name, outputDir: "denied" });
      assert.equal(job.state, JobState.FAILED);
      assert.equal(job.error?.code, "PERMISSION_DENIED", job.error?.message);
      assert.match(job.error?.message ?? "", /Microsoft\.Compute\/snapshots\/beginGetAccess\/action/);
    } finally {
      standin.faults.reset();
    }
    assertNothingHeld("after a failure between snapshot and download");
    assert.ok(!fs.existsSync(path.join(daemon.outputRoot, "denied", vm.name)), "nothing written is left");
  });

  test("cancel during the download: snapshots deleted, access ended, files removed", async () => {
    const vm = await makeVm("running");
    standin.faults.blobBytesPerSecond = 2 * MiB;
    try {
      const jobId = await submit({ vm: vm.name, outputDir: "cancelled" });
      await waitForJob(client, jobId, hasBytes(1), { timeoutMs: 60_000 });
      await client.unary("cancelJob", { jobId });
      const job = await waitForJob(client, jobId, isFinal, { timeoutMs: 60_000 });
      assert.equal(job.state, JobState.CANCELLED);
    } finally {
      standin.faults.reset();
    }
    // The job is CANCELLED at once; its run then releases what it holds and the engine removes its files.
    const written = () => (fs.existsSync(path.join(daemon.outputRoot, "cancelled")) ? fs.readdirSync(path.join(daemon.outputRoot, "cancelled")) : []);
    await waitFor(() => standin.snapshots().length === 0 && standin.grants().length === 0 && written().length === 0, 30_000).catch(() => {});
    assertNothingHeld("after cancel");
    assert.deepEqual(written(), []);
  });

  test("kill -9 mid-download: the restarted daemon continues from the same snapshots to identical disks, and releases them", async () => {
    const vm = await makeVm("running");
    standin.faults.blobBytesPerSecond = 4 * MiB;
    const first = await spawnDaemon();
    const firstClient = createGrpcJsClient(first.grpcAddress);
    let jobId = "";
    try {
      jobId = await submit({ vm: vm.name, outputDir: "crash" }, firstClient);
      await waitForJob(firstClient, jobId, hasBytes(2 * MiB), { timeoutMs: 60_000 });
    } finally {
      firstClient.close();
    }
    const snapshotsAtCrash = standin.snapshots().map((s) => s.id).sort();
    assert.equal(snapshotsAtCrash.length, 2, "two snapshots held at the crash");
    standin.faults.blobBytesPerSecond = 0;
    const second = await respawnDaemon(first);
    const secondClient = createGrpcJsClient(second.grpcAddress);
    try {
      const job = await waitForJob(secondClient, jobId, isFinal, { timeoutMs: 90_000 });
      assert.equal(job.state, JobState.COMPLETED, job.error?.message);
      for (const [i, expected] of vm.expected.entries()) {
        assert.equal(fileSha256(path.join(first.outputRoot, "crash", vm.name, `${vm.name}-disk-${i + 1}.vhd`)), sha256(expected), `disk ${i + 1} identical after the restart`);
      }
      const { entries } = await secondClient.unary("getJobLogs", { jobId });
      assert.ok(entries.some((e) => /continuing from the snapshots/.test(e.message)), "the same snapshots were used");
      assertNothingHeld("after a crash and resume");
    } finally {
      secondClient.close();
      assert.equal(await second.stop(), 0);
    }
  });

  test("kill -9, then cancel after the restart: what the killed run held is released", async () => {
    const vm = await makeVm("running");
    standin.faults.blobBytesPerSecond = MiB;
    const first = await spawnDaemon();
    const firstClient = createGrpcJsClient(first.grpcAddress);
    let jobId = "";
    try {
      jobId = await submit({ vm: vm.name, outputDir: "crash-cancel" }, firstClient);
      await waitForJob(firstClient, jobId, hasBytes(1), { timeoutMs: 60_000 });
    } finally {
      firstClient.close();
    }
    const second = await respawnDaemon(first);
    const secondClient = createGrpcJsClient(second.grpcAddress);
    try {
      await secondClient.unary("cancelJob", { jobId });
      const job = await waitForJob(secondClient, jobId, isFinal, { timeoutMs: 60_000 });
      assert.equal(job.state, JobState.CANCELLED);
      standin.faults.reset();
      await waitFor(() => standin.snapshots().length === 0 && standin.grants().length === 0, 30_000);
      assertNothingHeld("after a crash and cancel");
    } finally {
      standin.faults.reset();
      secondClient.close();
      assert.equal(await second.stop(), 0);
    }
  });

  test("discovery: ListVMs and GetVM map size, disks, NICs and power state; wrong credentials UNAUTHENTICATED; unknown VM NOT_FOUND", async () => {
    const vm = await makeVm("running", "disco-1");
    const { vms } = await client.unary("listVMs", { provider: "azure", azure: connection(), namePattern: "disco-*" });
    assert.deepEqual(vms.map((v) => v.name), ["disco-1"]);
    const found = (await client.unary("getVM", { provider: "azure", azure: connection(), vm: `rg1/${vm.name}` })).vm!;
    assert.equal(found.provider, "azure");
    assert.equal(found.powerState, PowerState.POWERED_ON);
    assert.equal(found.path, `rg1/${vm.name}`);
    assert.equal(found.firmware, "efi");
    assert.ok(found.numCpu > 0 && Number(found.memoryMb) > 0 && found.size, `size mapped: ${found.size} ${found.numCpu} ${found.memoryMb}`);
    assert.deepEqual(found.disks.map((d) => [Number(d.capacityBytes), d.sku]), [[64 * MiB, "Premium_LRS"], [128 * MiB, "Standard_LRS"]]);
    assert.equal(found.nics.length, 1);
    assert.match(found.nics[0]!.macAddress, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    await assert.rejects(client.unary("getVM", { provider: "azure", azure: connection({ clientSecret: "wrong-secret-value" }), vm: vm.name }),
      (err: { code: number; details: string }) => err.code === 16 && !err.details.includes("wrong-secret-value"));
    await assert.rejects(client.unary("getVM", { provider: "azure", azure: connection(), vm: "rg1/no-such-vm" }), (err: { code: number }) => err.code === 5);
    const failed = await run({ vm: "rg1/no-such-vm", outputDir: "missing" });
    assert.equal(failed.error?.code, "NOT_FOUND", failed.error?.message);
  });
});

async function waitFor(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
