// Defects a new user hit with vSphere exports (issue 15), through the real daemon against vcsim-export: a disk
// qemu-img cannot take, what a cancelled large export leaves, the vCenter password in messages, the artifact
// manifest's memory and format, and the file counts of a conversion.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ExportFormat, JobState } from "../gen/hypervisord/v1/job_pb.js";
import { findExecutable } from "../src/stages/qemu-img.ts";
import type { GrpcJsClient } from "./support/clients.ts";
import { spawnDaemonWithClient, type DaemonProcess } from "./support/daemon-process.ts";
import { tempDir } from "./support/temp-dir.ts";
import { buildVcsim, startVcsim, writeStreamOptimizedDisk, type Vcsim } from "./support/vcsim.ts";
import { hasBytes, isFinal, waitForJob } from "./support/wait-for-job.ts";

const MiB = 1024 * 1024;
const REMOVED = "removed what the job wrote";
const cleanups: (() => Promise<unknown> | void)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

let skipReason: string | undefined;
let daemon: DaemonProcess;
let client: GrpcJsClient;
const sims: Vcsim[] = [];

before(async () => {
  skipReason = (await buildVcsim()).reason;
  if (!skipReason && !findExecutable("qemu-img")) skipReason = "qemu-img not found on PATH (install qemu-utils)";
  if (skipReason) {
    console.log(`skipping the vSphere defect tests: ${skipReason}`);
    return;
  }
  ({ daemon, client } = await spawnDaemonWithClient({}, cleanups));
  cleanups.push(async () => {
    for (const sim of sims) await sim.stop();
  });
});

async function simulator(env: Record<string, string> = {}, args: string[] = []): Promise<Vcsim> {
  const sim = await startVcsim(args, env);
  sims.push(sim);
  return sim;
}
const connection = (sim: Vcsim, password = "pass") => ({ url: sim.url, username: "user", password, insecure: true });

/** Every path under `dir`, relative, sorted; [] when it does not exist. */
function tree(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[]).sort();
}

/** Disk space the files under `dir` take (allocated blocks, as du counts). */
function allocated(dir: string): number {
  return tree(dir).reduce((n, name) => n + fs.lstatSync(path.join(dir, name)).blocks * 512, 0);
}

async function logMessages(jobId: string): Promise<string[]> {
  return (await client.unary("getJobLogs", { jobId })).entries.map((e) => e.message);
}

/** Waits for the job log entry starting with `prefix` (the cleanup runs just after the final transition). */
async function logEntry(jobId: string, prefix: string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { entries } = await client.unary("getJobLogs", { jobId });
    const found = entries.find((e) => e.message.startsWith(prefix));
    if (found) return { message: found.message, fields: JSON.parse(found.fieldsJson) as Record<string, unknown> };
    if (Date.now() > deadline) throw new Error(`no "${prefix}" in the job log:\n${entries.map((e) => e.message).join("\n")}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A disk file of `size` bytes that starts with `head` (the rest: a repeated pattern, cheap to write). */
function writeDisk(file: string, head: Buffer | string, size: number): void {
  const fd = fs.openSync(file, "w");
  try {
    const block = Buffer.alloc(MiB, 0x5a);
    for (let offset = 0; offset < size; offset += MiB) fs.writeSync(fd, block, 0, Math.min(MiB, size - offset), offset);
    fs.writeSync(fd, Buffer.from(head), 0, Buffer.byteLength(head), 0);
  } finally {
    fs.closeSync(fd);
  }
}

describe("a disk that is not a single-file VMDK, with convert_to", () => {
  const cases = [
    { what: "a descriptor VMDK", head: '# Disk DescriptorFile\nversion=1\ncreateType="twoGbMaxExtentSparse"\nRW 8192 SPARSE "disk-s001.vmdk"\n', hex: '23 20 44 69 \\("# Di"\\)' },
    { what: "raw bytes named .vmdk", head: Buffer.from([0xeb, 0x63, 0x90, 0x00, 0x01]), hex: 'eb 63 90 00 \\("\\.c\\.\\."\\)' },
  ];
  for (const [i, c] of cases.entries()) {
    for (const format of [ExportFormat.OVA, ExportFormat.OVF]) {
      test(`${c.what}, ${ExportFormat[format]}: FAILED_PRECONDITION naming the file and its first bytes in hex, before packaging, nothing left`, async (t) => {
        if (skipReason) return t.skip(skipReason);
        const sim = await simulator();
        const vm = sim.vms[i]!;
        writeDisk(vm.disks[0]!.file, c.head, 2 * MiB);
        const outputDir = `not-vmdk-${i}-${ExportFormat[format]}`;
        const { job } = await client.unary("submitJob", { definition: { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir, format, convertTo: "qcow2" } });
        const ended = await waitForJob(client, job!.id, isFinal, { timeoutMs: 60_000 });
        assert.equal(ended.state, JobState.FAILED);
        assert.equal(ended.error!.code, "FAILED_PRECONDITION");
        assert.match(ended.error!.message, new RegExp(`^${vm.name}-disk-1\\.vmdk starts with ${c.hex}: not a single-file VMDK`));
        assert.equal(ended.attempt, 1, "not retried");
        await logEntry(job!.id, REMOVED);
        const messages = await logMessages(job!.id);
        assert.ok(!messages.some((m) => /OVA written|disk converted|export written/.test(m)), `nothing was packed or converted:\n${messages.join("\n")}`);
        assert.deepEqual(tree(path.join(daemon.outputRoot, outputDir)), [], "no OVA, no partial file, no directory left");
      });
    }
  }
});

describe("a cancelled export of a large disk", () => {
  const SIZE = 300 * MiB;
  for (const format of [ExportFormat.OVF, ExportFormat.OVA]) {
    test(`${ExportFormat[format]}, 300 MiB, cancelled mid-download: nothing the job wrote is left, an unrelated file stays, the error says so`, async (t) => {
      if (skipReason) return t.skip(skipReason);
      const sim = await simulator({ VCSIM_EXPORT_RATE: String(60 * MiB) });
      const vm = sim.vms[format === ExportFormat.OVF ? 2 : 3]!;
      writeDisk(vm.disks[0]!.file, "KDMV", SIZE);
      const outputDir = `cancel-large-${ExportFormat[format]}`;
      const out = path.join(daemon.outputRoot, outputDir);
      fs.mkdirSync(out);
      fs.writeFileSync(path.join(out, "notes.txt"), "not the job's");
      const { job } = await client.unary("submitJob", { definition: { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir, format, parallelDownloads: 4 } });
      const mid = await waitForJob(client, job!.id, hasBytes(80 * MiB), { timeoutMs: 60_000 });
      assert.ok(Number(mid.progress!.bytesDone) < SIZE, "cancelled mid-download");
      const { job: cancelled } = await client.unary("cancelJob", { jobId: job!.id, reason: "test" });
      assert.match(cancelled!.error!.message, /^test \(the \d+ files? it wrote (is|are) removed\)$/);
      const removed = await logEntry(job!.id, REMOVED);
      assert.ok((removed.fields.bytes_released as number) >= 80 * MiB, JSON.stringify(removed.fields));
      // Writes still in flight when the cancel came must not bring anything back.
      await new Promise((r) => setTimeout(r, 1000));
      assert.deepEqual(tree(out), ["notes.txt"]);
      assert.equal(allocated(out), fs.lstatSync(path.join(out, "notes.txt")).blocks * 512);
    });
  }
});

describe("artifact-manifest.json and the file counts of a completed export", () => {
  test("no conversion: exact memory (mem_mib; no rounded mem_gb), output.format the disks' own vmdk, files n/n", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const sim = await simulator();
    const vm = sim.vms[0]!;
    writeDisk(vm.disks[0]!.file, "KDMV", MiB);
    const { vm: facts } = await client.unary("getVM", { provider: "vsphere", vsphere: connection(sim), vm: vm.path });
    const memoryMiB = Number(facts!.memoryMb);
    assert.ok(memoryMiB > 0 && memoryMiB % 1024 !== 0, `vcsim's VMs have ${memoryMiB} MiB: no whole GiB`);
    const { job } = await client.unary("submitJob", { definition: { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "manifest-plain" } });
    const done = await waitForJob(client, job!.id, isFinal, { timeoutMs: 60_000 });
    assert.equal(done.state, JobState.COMPLETED, done.error?.message);
    const manifest = JSON.parse(fs.readFileSync(done.result!.artifactManifestPath, "utf8"));
    assert.equal(manifest.vm.mem_mib, memoryMiB);
    assert.equal("mem_gb" in manifest.vm, false, `no rounded mem_gb: ${JSON.stringify(manifest.vm)}`);
    assert.equal(manifest.output.format, "vmdk", "the disks were not converted");
    assert.deepEqual(manifest.disks.map((d: { source_format: string }) => d.source_format), ["vmdk"]);
    assert.equal(manifest.metadata.export_format, "ovf");
    const verified = await client.unary("verifyManifest", { path: done.result!.artifactManifestPath });
    assert.equal(verified.valid, true, verified.problems.join("; "));
    const { progress } = done;
    assert.equal(progress!.phase, "completed");
    assert.ok(progress!.filesTotal > 0 && progress!.filesDone === progress!.filesTotal, `files ${progress!.filesDone}/${progress!.filesTotal}`);
    assert.equal(progress!.bytesDone, progress!.bytesTotal);
  });

  test("convert_to qcow2 with verify: output.format qcow2, and the completed job shows files 1/1, not 0/1", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const sim = await simulator();
    const vm = sim.vms[1]!;
    writeStreamOptimizedDisk(vm, tempDir("defects-disk"), 2 * MiB);
    const { job } = await client.unary("submitJob", {
      definition: { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "manifest-qcow2", convertTo: "qcow2", verify: true },
    });
    const done = await waitForJob(client, job!.id, isFinal, { timeoutMs: 60_000 });
    assert.equal(done.state, JobState.COMPLETED, done.error?.message);
    assert.equal(done.result!.convertedDisks.length, 1);
    assert.equal(done.result!.convertedDisks[0]!.verification, "identical");
    const manifest = JSON.parse(fs.readFileSync(done.result!.artifactManifestPath, "utf8"));
    assert.equal(manifest.output.format, "qcow2");
    assert.deepEqual(manifest.disks.map((d: { source_format: string }) => d.source_format), ["qcow2"]);
    const { progress } = done;
    assert.equal(`${progress!.phase} ${progress!.filesDone}/${progress!.filesTotal}`, "completed 1/1");
    assert.equal(progress!.bytesDone, progress!.bytesTotal);
  });
});
