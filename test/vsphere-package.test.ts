// OVA packaging, compression, manifests and conversion of vSphere exports: vcsim-export, the real daemon,
// GNU tar, gzip, sha256sum/sha1sum and qemu-img as the independent checkers.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ExportFormat, JobState, type Job } from "../gen/hypervisord/v1/job_pb.js";
import { findExecutable } from "../src/stages/qemu-img.ts";
import { createGrpcJsClient, type GrpcJsClient } from "./support/clients.ts";
import { respawnDaemon, spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { tempDir } from "./support/temp-dir.ts";
import { buildVcsim, startVcsim, writeStreamOptimizedDisk, type Vcsim, type VcsimVm } from "./support/vcsim.ts";
import { startVsphereDaemon, stopVsphereDaemon } from "./support/vsphere-daemon.ts";

const MiB = 1024 * 1024;
const FINAL = [JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED];
let skipReason: string | undefined;
let daemon: DaemonProcess;
let client: GrpcJsClient;
let sim: Vcsim;
const work = tempDir("package-work");

before(async () => {
  skipReason = (await buildVcsim()).reason;
  if (!skipReason && !findExecutable("qemu-img")) skipReason = "qemu-img not found on PATH (install qemu-utils)";
  if (skipReason) {
    console.log(`skipping the vSphere packaging tests: ${skipReason}`);
    return;
  }
  ({ sim, daemon, client } = await startVsphereDaemon());
});

after(() => stopVsphereDaemon({ sim, daemon, client }));

const connection = () => ({ url: sim.url, username: "user", password: "pass", insecure: true });
const run = (file: string, args: string[], options: { cwd?: string } = {}) => execFileSync(file, args, { encoding: "utf8", maxBuffer: 64 * MiB, ...options });

async function runJob(definition: Record<string, unknown>, c = client, timeoutMs = 120_000): Promise<Job> {
  const { job } = await c.unary("submitJob", { definition: { provider: "vsphere", vsphere: connection(), ...definition } as never });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const current = (await c.unary("getJob", { jobId: job!.id })).job!;
    if (FINAL.includes(current.state)) return current;
    if (Date.now() > deadline) throw new Error(`job ${job!.id} still ${JobState[current.state]} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** What an export of `vm` holds, in OVA order: every vcsim VM has an (empty) NVRAM file. */
const packageNames = (vm: VcsimVm) => [`${vm.name}.ovf`, `${vm.name}-disk-1.vmdk`, `${vm.name}.nvram`, `${vm.name}.mf`];
const payloadNames = (vm: VcsimVm) => packageNames(vm).slice(0, -1);

/** `tar -tvf` entries: [name, size] in archive order. */
function tarList(file: string): [string, number][] {
  return run("tar", ["-tvf", file]).trim().split("\n").map((line) => {
    const fields = line.trim().split(/\s+/);
    return [fields[5]!, Number(fields[2])];
  });
}

function sumsOf(tool: "sha256sum" | "sha1sum", dir: string, names: string[]): Record<string, string> {
  return Object.fromEntries(run(tool, names, { cwd: dir }).trim().split("\n").map((l) => [l.split(/\s+/)[1]!, l.split(/\s+/)[0]!]));
}

/** `SHA256(name)= hex` lines, exactly: one space, after `=` only. */
function parseMf(text: string, label: "SHA256" | "SHA1"): Record<string, string> {
  const lines = text.trimEnd().split("\n");
  const pattern = new RegExp(`^${label}\\(([^)]+)\\)= ([0-9a-f]+)$`);
  return Object.fromEntries(lines.map((l) => {
    const m = pattern.exec(l);
    assert.ok(m, `manifest line ${JSON.stringify(l)} is not "${label}(name)= hex"`);
    return [m[1]!, m[2]!];
  }));
}

describe("OVA export from vcsim", () => {
  test("a streamOptimized VMDK exported as a streamed OVA: GNU tar order and sizes, .mf agrees with sha256sum, ValidateOva, ExtractOva, qemu-img compare with the raw data", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const vm = sim.vms[0]!;
    const { raw, vmdk } = writeStreamOptimizedDisk(vm, work, 6 * MiB);
    const job = await runJob({ vm: vm.path, outputDir: "ova-streamed", format: ExportFormat.OVA });
    assert.equal(job.state, JobState.COMPLETED, job.error?.message);
    const ova = path.join(daemon.outputRoot, "ova-streamed", `${vm.name}.ova`);
    assert.equal(job.result!.ovaPath, ova);
    assert.equal(job.result!.ovaMethod, "streamed");
    assert.ok(!fs.existsSync(path.join(daemon.outputRoot, "ova-streamed", vm.name, `${vm.name}-disk-1.vmdk`)), "no intermediate .vmdk");
    assert.ok(!fs.existsSync(`${ova}.partial`));

    const entries = tarList(ova);
    assert.deepEqual(entries.map(([name]) => name), packageNames(vm), "ovf first, then the files in References order, then the mf");
    assert.equal(entries[1]![1], vmdk.length);
    assert.equal(Number(job.result!.files[0]!.size), fs.statSync(ova).size);

    const extracted = path.join(work, "tar-x");
    fs.mkdirSync(extracted);
    run("tar", ["-xf", ova, "-C", extracted]);
    assert.ok(fs.readFileSync(path.join(extracted, `${vm.name}-disk-1.vmdk`)).equals(vmdk), "the disk in the OVA is byte-identical to the source");
    const mf = parseMf(fs.readFileSync(path.join(extracted, `${vm.name}.mf`), "utf8"), "SHA256");
    assert.deepEqual(mf, sumsOf("sha256sum", extracted, payloadNames(vm)));
    const ovf = fs.readFileSync(path.join(extracted, `${vm.name}.ovf`), "utf8");
    assert.match(ovf, new RegExp(`ovf:href="${vm.name}-disk-1.vmdk"[^>]*ovf:size="${vmdk.length}"`));

    const validation = await client.unary("validateOva", { path: ova });
    assert.deepEqual(validation.problems, []);
    assert.equal(validation.valid, true);
    assert.equal(validation.compressed, false);

    const { files } = await client.unary("extractOva", { path: ova, outputDir: "ova-streamed/extracted" });
    assert.deepEqual(files.map((f) => f.name), entries.map(([name]) => name));
    const disk = path.join(daemon.outputRoot, "ova-streamed/extracted", `${vm.name}-disk-1.vmdk`);
    assert.equal(run("qemu-img", ["compare", "-f", "vmdk", "-F", "raw", disk, raw]).trim(), "Images are identical.");
  });

  test("OVA with convert_to qcow2 and verify: built from files (logged), qcow2 identical to the raw data, artifact manifest, cleanup_ovf", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const vm = sim.vms[1]!;
    const { raw } = writeStreamOptimizedDisk(vm, work, 4 * MiB);
    const job = await runJob({ vm: vm.path, outputDir: "ova-convert", format: ExportFormat.OVA, convertTo: "qcow2", verify: true, cleanupOvf: true });
    assert.equal(job.state, JobState.COMPLETED, job.error?.message);
    const result = job.result!;
    assert.equal(result.ovaMethod, "files");
    const [converted] = result.convertedDisks;
    assert.equal(converted?.format, "qcow2");
    assert.equal(converted.verification, "identical");
    const qcow2 = path.join(result.outputDir, converted.path);
    assert.equal(run("qemu-img", ["compare", "-f", "qcow2", "-F", "raw", qcow2, raw]).trim(), "Images are identical.");
    assert.equal(converted.sha256, sumsOf("sha256sum", path.dirname(qcow2), [path.basename(qcow2)])[path.basename(qcow2)]);

    const vmDir = path.join(daemon.outputRoot, "ova-convert", vm.name);
    assert.deepEqual(new Set(fs.readdirSync(vmDir)), new Set(["artifact-manifest.json", `${vm.name}-disk-1.qcow2`]), "cleanup_ovf removed the OVF files, kept the converted disk");
    assert.ok(result.files.every((f) => !f.path.endsWith(".vmdk")), "removed files are not listed");
    assert.equal(result.artifactManifestPath, path.join(vmDir, "artifact-manifest.json"));
    const manifest = JSON.parse(fs.readFileSync(result.artifactManifestPath, "utf8"));
    assert.equal(manifest.manifest_version, "1.0");
    assert.equal(manifest.disks[0].local_path, qcow2);
    assert.equal(manifest.disks[0].source_format, "qcow2");
    assert.equal(manifest.disks[0].checksum, `sha256:${converted.sha256}`);
    assert.equal(manifest.source.vm_name, vm.name);
    assert.equal(manifest.source.datacenter, "DC0");

    const { entries } = await client.unary("getJobLogs", { jobId: job.id, pageSize: 1000 });
    assert.ok(entries.some((e) => e.message.startsWith("OVA built from files") && e.fieldsJson.includes("convert_to")), "the job log says which path was taken and why");
    const verified = await client.unary("verifyManifest", { path: result.artifactManifestPath });
    assert.equal(verified.valid, true, verified.problems.join("; "));
  });

  test("compress: .ova.gz at levels 0, 1, 6 and 9 gunzips to a valid tar with the same disk; the ratio is reported", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const vm = sim.vms[2]!;
    const { vmdk } = writeStreamOptimizedDisk(vm, work, 2 * MiB);
    const sizes: number[] = [];
    for (const level of [0, 1, 6, 9]) {
      const job = await runJob({ vm: vm.path, outputDir: `gz-${level}`, format: ExportFormat.OVA, compress: true, compressionLevel: level, cleanupOvf: true });
      assert.equal(job.state, JobState.COMPLETED, job.error?.message);
      const gz = path.join(daemon.outputRoot, `gz-${level}`, `${vm.name}.ova.gz`);
      assert.equal(job.result!.ovaPath, gz);
      const tar = path.join(work, `level-${level}.ova`);
      fs.writeFileSync(tar, execFileSync("gzip", ["-dc", gz], { maxBuffer: 64 * MiB }));
      assert.deepEqual(tarList(tar).map(([name]) => name), packageNames(vm));
      const x = path.join(work, `level-${level}`);
      fs.mkdirSync(x);
      run("tar", ["-xf", tar, "-C", x]);
      assert.ok(fs.readFileSync(path.join(x, `${vm.name}-disk-1.vmdk`)).equals(vmdk), `level ${level}: identical disk`);
      const ratio = job.result!.compressionRatio;
      assert.ok(Math.abs(ratio - fs.statSync(gz).size / fs.statSync(tar).size) < 1e-9, `level ${level}: ratio ${ratio}`);
      const validation = await client.unary("validateOva", { path: gz });
      assert.equal(validation.compressed, true);
      assert.deepEqual(validation.problems, []);
      sizes.push(fs.statSync(gz).size);
      assert.ok(!fs.existsSync(path.join(daemon.outputRoot, `gz-${level}`, vm.name)), "cleanup_ovf removed the OVF directory");
    }
    assert.ok(sizes[0]! > sizes[1]! && sizes[1]! >= sizes[3]!, `level 0 stores, higher levels compress: ${sizes.join(", ")}`);
  });

  test("manifest_algorithm sha1 writes SHA1 lines that sha1sum agrees with", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const vm = sim.vms[3]!;
    writeStreamOptimizedDisk(vm, work, MiB);
    const job = await runJob({ vm: vm.path, outputDir: "sha1", manifestAlgorithm: "SHA1" });
    assert.equal(job.state, JobState.COMPLETED, job.error?.message);
    const dir = job.result!.outputDir;
    const mf = parseMf(fs.readFileSync(path.join(dir, `${vm.name}.mf`), "utf8"), "SHA1");
    assert.deepEqual(mf, sumsOf("sha1sum", dir, payloadNames(vm)));
  });

  test("an OVF export has an artifact manifest that VerifyManifest accepts, and a tampered disk is reported", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const vm = sim.vms[0]!;
    writeStreamOptimizedDisk(vm, work, MiB);
    const job = await runJob({ vm: vm.path, outputDir: "artifact", labels: { team: "platform" } });
    assert.equal(job.state, JobState.COMPLETED, job.error?.message);
    const file = job.result!.artifactManifestPath;
    const manifest = JSON.parse(fs.readFileSync(file, "utf8"));
    const disk = path.join(job.result!.outputDir, `${vm.name}-disk-1.vmdk`);
    assert.deepEqual(manifest.disks.map((d: { local_path: string; source_format: string; disk_type: string }) => [d.local_path, d.source_format, d.disk_type]), [[disk, "vmdk", "boot"]]);
    assert.equal(manifest.disks[0].checksum, `sha256:${sumsOf("sha256sum", path.dirname(disk), [path.basename(disk)])[path.basename(disk)]}`);
    assert.deepEqual(manifest.metadata.tags, { team: "platform" });
    assert.equal((await client.unary("verifyManifest", { path: file })).valid, true);

    const bytes = fs.readFileSync(disk);
    bytes[bytes.length - 1] ^= 0xff;
    fs.writeFileSync(disk, bytes);
    const tampered = await client.unary("verifyManifest", { path: file });
    assert.equal(tampered.valid, false);
    assert.match(tampered.problems.join("\n"), /disk-0.*checksum mismatch/);
    assert.equal(tampered.disks[0]!.ok, false);
  });

  test("paths outside the allowed output roots are refused with INVALID_ARGUMENT naming the field", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const invalid = (field: string) => (err: { code: number; details: string }) => err.code === 3 && err.details.startsWith(`${field}: `);
    await assert.rejects(client.unary("validateOva", { path: "/etc/passwd" }), invalid("path"));
    await assert.rejects(client.unary("validateOva", { path: "" }), invalid("path"));
    await assert.rejects(client.unary("extractOva", { path: "x.ova", outputDir: "../../outside" }), invalid("output_dir"));
    await assert.rejects(client.unary("verifyManifest", { path: "/etc/hostname" }), invalid("path"));
    await assert.rejects(client.unary("validateOva", { path: "no-such.ova" }), (err: { code: number }) => err.code === 5);
  });

  test("kill -9 mid streamed OVA: after a restart the export resumes into the same archive, and the result is identical", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const slow = await startVcsim([], { VCSIM_EXPORT_RATE: "600000" });
    try {
      const vm = slow.vms[0]!;
      const source = randomBytes(4 * MiB);
      fs.writeFileSync(vm.disks[0]!.file, source);
      const first = await spawnDaemon();
      const firstClient = createGrpcJsClient(first.grpcAddress);
      let jobId = "";
      try {
        const { job } = await firstClient.unary("submitJob", {
          definition: { provider: "vsphere", vm: vm.path, vsphere: { url: slow.url, username: "user", password: "pass", insecure: true }, outputDir: "crash-ova", format: ExportFormat.OVA },
        });
        jobId = job!.id;
        // Half way (about 3.5 s at 600 kB/s): checkpoints are fdatasync'ed every second, a loaded disk may take a while.
        for (let bytes = 0; bytes < 2 * MiB; ) bytes = Number((await firstClient.unary("getJob", { jobId })).job!.progress!.bytesDone);
      } finally {
        firstClient.close();
        await first.kill();
      }
      const second = await respawnDaemon(first);
      const secondClient = createGrpcJsClient(second.grpcAddress);
      try {
        let job: Job;
        do job = (await secondClient.unary("getJob", { jobId })).job!; while (!FINAL.includes(job.state) && (await new Promise((r) => setTimeout(r, 50, true))));
        assert.equal(job.state, JobState.COMPLETED, job.error?.message);
        const ova = path.join(first.outputRoot, "crash-ova", `${vm.name}.ova`);
        const x = path.join(work, "crash-x");
        fs.mkdirSync(x);
        run("tar", ["-xf", ova, "-C", x]);
        assert.ok(fs.readFileSync(path.join(x, `${vm.name}-disk-1.vmdk`)).equals(source), "identical after the restart");
        assert.deepEqual(parseMf(fs.readFileSync(path.join(x, `${vm.name}.mf`), "utf8"), "SHA256"), sumsOf("sha256sum", x, payloadNames(vm)));
        const { entries } = await secondClient.unary("getJobLogs", { jobId, pageSize: 1000 });
        const starts = entries.filter((e) => e.message === "download started").map((e) => JSON.parse(e.fieldsJson) as { fromByte: number });
        assert.ok(starts.some((s) => s.fromByte > 0), `the download continued inside the archive: ${JSON.stringify(starts)}`);
      } finally {
        secondClient.close();
        assert.equal(await second.stop(), 0);
      }
    } finally {
      await slow.stop();
    }
  });
});

describe("conversion without qemu-img", () => {
  test("a job with convert_to is refused with FAILED_PRECONDITION, and GetCapabilities says why", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const bare = await spawnDaemon({ env: { PATH: "/nonexistent" } });
    const c = createGrpcJsClient(bare.grpcAddress);
    try {
      const caps = await c.unary("getCapabilities", {});
      assert.deepEqual(caps.conversions.map((x) => [x.format, x.available]), [["qcow2", false], ["raw", false], ["vdi", false]]);
      assert.match(caps.conversions[0]!.reason, /qemu-img not found on PATH/);
      await assert.rejects(c.unary("submitJob", { definition: { vm: "x", vsphere: connection(), convertTo: "qcow2" } as never }),
        (err: { code: number; details: string }) => err.code === 9 && /definition\.convert_to: conversion to qcow2 is unavailable: qemu-img not found/.test(err.details));
    } finally {
      c.close();
      assert.equal(await bare.stop(), 0);
    }
  });
});
