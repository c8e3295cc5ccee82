// Packaging benchmark (npm run bench:package). A measurement, not a test: it prints figures and ratios with
// PASS/MISS against the targets and exits 0 unless something crashed.
//
// One vcsim-export; its first VM gets a BENCH_SIZE_MB (default 1024) MiB disk: each MiB is half random bytes,
// half a repeated text line, so gzip has something to do (a real disk is neither all zeros nor all noise).
// For BENCH_ROUNDS (default 3) rounds, in alternation:
//  (a) OVF only:         a daemon job, format OVF (download, SHA-256, descriptor, .mf), SubmitJob to COMPLETED.
//  (b) OVA streamed:     a daemon job, format OVA: the disk goes from the network into its region of the tar.
//  (c) OVA from files:   (a)'s time plus writeOvaFromFiles() of (a)'s OVF files into an .ova (what a two-step
//                        exporter does: download, then pack).
//  (d) OVA + gzip -6:    writeOvaFromFiles() of the same files with compression_level 6 (tar -> zlib -> file),
//      against           `tar -cf - FILES | gzip -6 > FILE` (GNU tar and gzip) of the same files.
// Targets: (b) within 1.1x the time of (a); (d) no slower than tar | gzip -6. Medians of wall time.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import { once } from "node:events";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { ExportFormat, JobState, type Job } from "../../gen/hypervisord/v1/job_pb.js";
import { writeOvaFromFiles } from "../../src/package/ova-writer.ts";
import { createGrpcJsClient, type GrpcJsClient } from "../support/clients.ts";
import { spawnDaemon } from "../support/daemon-process.ts";
import { tempDir } from "../support/temp-dir.ts";
import { startVcsim, type Vcsim, type VcsimVm } from "../support/vcsim.ts";
import { envNumber, fixed, median } from "./bench-utils.ts";

const MiB = 1024 * 1024;
const SIZE = Math.round(envNumber("BENCH_SIZE_MB", 1024) * MiB);
const ROUNDS = Math.round(envNumber("BENCH_ROUNDS", 3));
const TARGET_STREAMED = 1.1;
const execFileAsync = promisify(execFile);

type Label = "OVF only" | "OVA streamed" | "OVA from files" | "pack OVA (files -> tar)" | "OVA + gzip -6" | "tar | gzip -6";

async function writeDisk(file: string): Promise<void> {
  const text = Buffer.from("hypervisord package benchmark: a line of text that compresses like logs and binaries do.\n".repeat(8192)).subarray(0, MiB / 2);
  const out = fs.createWriteStream(file, { highWaterMark: 4 * MiB });
  for (let offset = 0; offset < SIZE; offset += MiB) {
    const block = Buffer.concat([randomBytes(MiB / 2), text]).subarray(0, Math.min(MiB, SIZE - offset));
    if (!out.write(block)) await once(out, "drain");
  }
  out.end();
  await once(out, "finish");
}

async function timed<T>(fn: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const started = performance.now();
  const value = await fn();
  return { seconds: (performance.now() - started) / 1000, value };
}

async function exportJob(client: GrpcJsClient, sim: Vcsim, vm: VcsimVm, outputDir: string, format: ExportFormat): Promise<Job> {
  const { job } = await client.unary("submitJob", {
    definition: { provider: "vsphere", vm: vm.path, vsphere: { url: sim.url, username: "user", password: "pass", insecure: true }, outputDir, format, generateManifest: false } as never,
  });
  for (;;) {
    const current = (await client.unary("getJob", { jobId: job!.id })).job!;
    if (current.state === JobState.COMPLETED) return current;
    if (current.state === JobState.FAILED || current.state === JobState.CANCELLED) throw new Error(`job ${current.id}: ${JobState[current.state]} ${current.error?.message}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function main(): Promise<void> {
  console.log(`machine: ${JSON.stringify({ cpus: os.cpus().length, node: process.version, loadavg: os.loadavg().map((n) => Number(n.toFixed(2))) })}`);
  const work = tempDir("package-bench");
  const sim = await startVcsim();
  const daemon = await spawnDaemon();
  const client = createGrpcJsClient(daemon.grpcAddress);
  const times = new Map<Label, number[]>();
  const record = (label: Label, seconds: number) => times.set(label, [...(times.get(label) ?? []), seconds]);
  let ratio = NaN;
  try {
    const vm = sim.vms[0]!;
    await writeDisk(vm.disks[0]!.file);
    console.log(`vcsim ${sim.url}, VM ${vm.name}: ${SIZE / MiB} MiB disk (half random, half text); ${ROUNDS} rounds\n`);
    for (let round = 1; round <= ROUNDS; round++) {
      const ovf = await timed(() => exportJob(client, sim, vm, `ovf-${round}`, ExportFormat.OVF));
      record("OVF only", ovf.seconds);
      const streamed = await timed(() => exportJob(client, sim, vm, `ova-${round}`, ExportFormat.OVA));
      if (streamed.value.result!.ovaMethod !== "streamed") throw new Error(`the OVA was built ${streamed.value.result!.ovaMethod}, not streamed`);
      record("OVA streamed", streamed.seconds);

      const dir = ovf.value.result!.outputDir;
      const files = ovf.value.result!.files.map((f) => ({ name: f.path, path: path.join(dir, f.path), size: Number(f.size) }));
      const signal = AbortSignal.timeout(30 * 60_000);
      const pack = await timed(() => writeOvaFromFiles(path.join(work, "packed.ova"), files, { signal }));
      record("pack OVA (files -> tar)", pack.seconds);
      record("OVA from files", ovf.seconds + pack.seconds);
      const gz = await timed(() => writeOvaFromFiles(path.join(work, "packed.ova.gz"), files, { compressionLevel: 6, signal }));
      record("OVA + gzip -6", gz.seconds);
      ratio = gz.value.size / gz.value.tarSize;
      const cli = await timed(() => execFileAsync("bash", ["-c", 'tar -cf - -C "$1" "${@:3}" | gzip -6 > "$2"', "bash", dir, path.join(work, "cli.ova.gz"), ...files.map((f) => f.name)]));
      record("tar | gzip -6", cli.seconds);
      const cliSize = fs.statSync(path.join(work, "cli.ova.gz")).size;
      console.log(`round ${round}: OVF ${fixed(ovf.seconds, 2)} s, OVA streamed ${fixed(streamed.seconds, 2)} s, pack ${fixed(pack.seconds, 2)} s, ` +
        `OVA+gzip-6 ${fixed(gz.seconds, 2)} s (${gz.value.size} bytes), tar|gzip -6 ${fixed(cli.seconds, 2)} s (${cliSize} bytes)`);
      for (const name of [`ovf-${round}`, `ova-${round}`]) fs.rmSync(path.join(daemon.outputRoot, name), { recursive: true, force: true });
      for (const name of ["packed.ova", "packed.ova.gz", "cli.ova.gz"]) fs.rmSync(path.join(work, name), { force: true });
    }
  } finally {
    client.close();
    await daemon.stop();
    await sim.stop();
    fs.rmSync(work, { recursive: true, force: true });
    fs.rmSync(daemon.dataDir, { recursive: true, force: true });
    fs.rmSync(daemon.outputRoot, { recursive: true, force: true });
  }

  const m = (label: Label) => median(times.get(label) ?? []);
  console.log(`\nmedian wall time of ${ROUNDS} rounds, ${SIZE / MiB} MiB disk (MiB/s = disk MiB / s)`);
  for (const [label, values] of times) console.log(`  ${label.padEnd(24)} ${fixed(m(label), 2).padStart(7)} s  ${fixed(SIZE / MiB / m(label)).padStart(7)} MiB/s   [${values.map((v) => fixed(v, 2)).join(", ")}]`);
  const streamedVsOvf = m("OVA streamed") / m("OVF only");
  const filesVsOvf = m("OVA from files") / m("OVF only");
  const gzipVsCli = m("OVA + gzip -6") / m("tar | gzip -6");
  const verdict = (ok: boolean) => (ok ? "PASS" : "MISS");
  console.log("");
  console.log(`OVA streamed / OVF only = ${streamedVsOvf.toFixed(2)}x (target <= ${TARGET_STREAMED}x): ${verdict(streamedVsOvf <= TARGET_STREAMED)}`);
  console.log(`OVA from files / OVF only = ${filesVsOvf.toFixed(2)}x (for comparison)`);
  console.log(`OVA + gzip -6 / (tar | gzip -6) = ${gzipVsCli.toFixed(2)}x (target <= 1.0x, no slower): ${verdict(gzipVsCli <= 1)}; compression ratio ${ratio.toFixed(3)}`);
  console.log(JSON.stringify({
    bench: "package", sizeMiB: SIZE / MiB, rounds: ROUNDS,
    medianSeconds: Object.fromEntries([...times.keys()].map((k) => [k, Number(m(k).toFixed(3))])),
    ratio: { streamedVsOvf: Number(streamedVsOvf.toFixed(3)), filesVsOvf: Number(filesVsOvf.toFixed(3)), gzipVsCli: Number(gzipVsCli.toFixed(3)) },
    compressionRatio: Number(ratio.toFixed(4)),
    pass: { streamed: streamedVsOvf <= TARGET_STREAMED, gzip: gzipVsCli <= 1 },
  }));
}

try {
  await main();
} catch (err) {
  console.error(err);
  process.exitCode = 1;
}
