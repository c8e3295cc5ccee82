// bench:export's memory row: a big disk (BENCH_MEMORY_GB, default 10 GiB; a sparse source with random MiBs in it)
// exported by a daemon of its own, fresh (a daemon that already exported would have grown its heap and buffers
// before the baseline, hiding that growth), while its RSS is sampled every 100 ms from /proc/<pid>/status.
// Target: the peak minus the idle RSS just before the job < 64 MiB. The kernel's own high-water mark (VmHWM, reset through clear_refs
// before the job when allowed) is read too, so that a spike between two samples is not missed.
import fs from "node:fs";
import os from "node:os";
import { createGrpcJsClient } from "../support/clients.ts";
import { spawnDaemon } from "../support/daemon-process.ts";
import type { Vcsim, VcsimVm } from "../support/vcsim.ts";
import { fixed } from "./bench-utils.ts";
import { sha256File, writeSparseDisk } from "./export-disk-data.ts";
import { connection, exportedDisks, runJob } from "./export-job.ts";
import { measured } from "./export-measure.ts";
import type { Pinning } from "./export-pinning.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
export const TARGET_RSS_GROWTH = 64 * MiB;
const SAMPLE_MS = 100;

/** VmRSS or VmHWM of a process in bytes (NaN when it is gone). */
function statusBytes(pid: number, field: "VmRSS" | "VmHWM"): number {
  try {
    const line = fs.readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith(`${field}:`));
    return Number(line!.split(/\s+/)[1]) * 1024;
  } catch {
    return NaN;
  }
}

/** Resets the process's VmHWM to its current RSS ("5" into clear_refs, Linux >= 4.0); false when not allowed. */
function resetHighWaterMark(pid: number): boolean {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

export interface MemoryOptions {
  sim: Vcsim;
  vm: VcsimVm;
  pinning: Pinning;
  sizeBytes: number;
}

export async function memoryRows(o: MemoryOptions) {
  const label = `memory: a ${fixed(o.sizeBytes / GiB, 2)} GiB disk`;
  // The output is written in full (the daemon does not keep holes); the source is sparse and needs ~nothing.
  const { bavail, bsize } = fs.statfsSync(os.tmpdir());
  const free = bavail * bsize;
  const needed = o.sizeBytes + GiB;
  if (free < needed) {
    const reason = `${os.tmpdir()} (the daemon's output root) has ${fixed(free / GiB, 1)} GiB free, the export needs ${fixed(needed / GiB, 1)} GiB (its size plus 1 GiB); set BENCH_MEMORY_GB lower`;
    console.log(`\n${label}: SKIPPED: ${reason}`);
    return { skipped: reason };
  }
  const diskFile = o.vm.disks[0]!.file;
  const outputDir = "memory";
  const daemon = await spawnDaemon();
  const client = createGrpcJsClient(daemon.grpcAddress);
  try {
    let started = performance.now();
    const sourceSha256 = writeSparseDisk(diskFile, o.sizeBytes);
    console.log(`\n${label} (sparse: a random MiB at every GiB and at the end) into ${diskFile} in ${fixed((performance.now() - started) / 1000, 1)} s, sha256 ${sourceSha256}`);

    const pid = daemon.child.pid!;
    o.pinning.pinClient(pid);
    const hwmReset = resetHighWaterMark(pid);
    const baseline = statusBytes(pid, "VmRSS");
    let peak = baseline;
    const samples: number[] = [];
    const timer = setInterval(() => {
      const rss = statusBytes(pid, "VmRSS");
      samples.push(rss);
      if (rss > peak) peak = rss;
    }, SAMPLE_MS);
    let job: Awaited<ReturnType<typeof runJob>> | undefined;
    let m;
    try {
      m = await measured(o.sim.child.pid!, async () => {
        job = await runJob(client, { provider: "vsphere", vm: o.vm.path, vsphere: connection(o.sim), outputDir, name: `bench-memory-${Date.now()}` });
      }, pid);
    } finally {
      clearInterval(timer);
    }
    const hwm = statusBytes(pid, "VmHWM");
    const after = statusBytes(pid, "VmRSS");
    const top = hwmReset && hwm > peak ? hwm : peak;
    const growth = top - baseline;
    const pass = growth < TARGET_RSS_GROWTH;

    started = performance.now();
    const disk = exportedDisks(job!)[0];
    if (!disk) throw new Error(`job ${job!.id} lists no disk`);
    const size = fs.statSync(disk.file).size;
    const onDisk = sha256File(disk.file);
    const ok = size === o.sizeBytes && onDisk === sourceSha256 && disk.sha256 === sourceSha256;
    if (!ok) process.exitCode = 1;
    const check = ok ? "size and sha256 ok" : `MISMATCH: ${size} bytes (expected ${o.sizeBytes}), file sha256 ${onDisk}, the job reports ${disk.sha256}`;
    const gib = o.sizeBytes / GiB;
    console.log(`${label} exported in ${fixed(m.seconds, 2)} s = ${fixed(o.sizeBytes / MiB / m.seconds)} MiB/s, daemon cpu ${fixed(m.clientCpu, 2)} s = ${fixed(m.clientCpu / gib, 2)} s/GiB, ` +
      `vcsim cpu ${fixed(m.vcsimCpu, 2)} s [${check}; checked in ${fixed((performance.now() - started) / 1000, 1)} s]`);
    console.log(`daemon RSS (a fresh daemon): ${fixed(baseline / MiB)} MiB idle before the job, peak ${fixed(peak / MiB)} MiB in ${samples.length} samples every ${SAMPLE_MS} ms` +
      `${hwmReset ? `, VmHWM ${fixed(hwm / MiB)} MiB` : " (VmHWM not reset: clear_refs not writable)"}, ${fixed(after / MiB)} MiB after; ` +
      `growth ${fixed(growth / MiB)} MiB (target < ${TARGET_RSS_GROWTH / MiB} MiB): ${pass ? "PASS" : "MISS"}`);
    return {
      sizeGiB: Number(gib.toFixed(3)), seconds: Number(m.seconds.toFixed(2)), mibps: Number((o.sizeBytes / MiB / m.seconds).toFixed(1)),
      daemonCpuPerGiB: Number((m.clientCpu / gib).toFixed(3)), baselineRssMiB: Number((baseline / MiB).toFixed(1)), peakRssMiB: Number((peak / MiB).toFixed(1)),
      vmHwmMiB: hwmReset ? Number((hwm / MiB).toFixed(1)) : undefined, growthMiB: Number((growth / MiB).toFixed(1)), targetMiB: TARGET_RSS_GROWTH / MiB, pass, ok,
    };
  } finally {
    client.close();
    const code = await daemon.stop();
    if (code !== 0) console.error(`the memory row's daemon exited with ${code}`);
    fs.rmSync(daemon.outputRoot, { recursive: true, force: true });
    fs.rmSync(daemon.dataDir, { recursive: true, force: true });
    fs.truncateSync(diskFile, 0);
  }
}
