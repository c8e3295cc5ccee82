// bench:export's multi-disk rows: one VM with 4 disks on a simulator that limits each download connection
// (VCSIM_EXPORT_RATE, as a real host's NFC stream is limited to roughly 100-150 MB/s), exported by hypervisord
// (its disks in parallel) and by govc export.ovf (one disk after another). Target: govc's wall time / hypervisord's >= 3.
// The disks: vcsim's own plus 3 made with `govc vm.disk.create` (vcsim creates their files in the VM's folder on
// the datastore), each filled with its own random bytes.
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import type { GrpcJsClient } from "../support/clients.ts";
import type { DaemonProcess } from "../support/daemon-process.ts";
import { startVcsim, type Vcsim } from "../support/vcsim.ts";
import { fixed, median } from "./bench-utils.ts";
import { sha256File, writeRandomDisk } from "./export-disk-data.ts";
import { connection, exportedDisks, JOB_TIMEOUT_MS, runJob } from "./export-job.ts";
import { withExportLease } from "./export-lease.ts";
import { execPinned, measured, type Measured } from "./export-measure.ts";
import type { Pinning } from "./export-pinning.ts";

const MiB = 1024 * 1024;
export const TARGET_MULTIDISK = 3;

export interface MultiDiskOptions {
  govc: string;
  pinning: Pinning;
  daemon: DaemonProcess;
  client: GrpcJsClient;
  work: string;
  rounds: number;
  disks: number;
  diskBytes: number;
  /** Bytes per second per download connection. */
  rate: number;
}

const govcEnv = (sim: Vcsim) => ({ ...process.env, GOVC_URL: sim.url, GOVC_USERNAME: "user", GOVC_PASSWORD: "pass", GOVC_INSECURE: "1" });

/** Gives the simulator's first VM `count - 1` more disks of `bytes`; returns the files behind all its disks, its own first. */
async function addDisks(sim: Vcsim, govc: string, count: number, bytes: number): Promise<string[]> {
  const vm = sim.vms[0]!;
  const files = [vm.disks[0]!.file];
  for (let i = 1; i < count; i++) {
    await promisify(execFile)(govc, ["vm.disk.create", "-vm", vm.path, "-name", `${vm.name}/bench-extra-${i}`, "-size", `${Math.ceil(bytes / MiB)}M`], { env: govcEnv(sim), timeout: 60_000 });
    const file = path.join(path.dirname(files[0]!), `bench-extra-${i}.vmdk`);
    if (!fs.existsSync(file)) throw new Error(`govc vm.disk.create made no ${file}: the simulator keeps its disks elsewhere`);
    files.push(file);
  }
  return files;
}

/**
 * Where the job's time went, from the daemon's log: the seconds before the first disk's download started (session,
 * ExportVm, the lease getting ready: the simulator hashes every file then, as a host does; the manifest), and how
 * far the disk downloads overlapped ("download started"/"download finished" per file: the sum of their seconds over
 * the span from the first start to the last finish; 4 = all side by side). The records may trail GetJob by a
 * moment: waits up to 2 s for all of them.
 */
async function jobPhases(daemon: DaemonProcess, jobId: string, disks: number): Promise<{ setupSeconds: number; overlap: number }> {
  type LogRecord = { msg: string; time: string | number; file?: string; seconds?: number };
  const at = (r: LogRecord) => new Date(r.time).getTime();
  for (let waited = 0; ; waited += 50) {
    const records = daemon.logs.filter((l) => l.includes(jobId)).map((l) => JSON.parse(l) as LogRecord);
    const exportStarted = records.find((r) => r.msg === "export started");
    const started = records.filter((r) => r.msg === "download started" && r.file?.endsWith(".vmdk")).map(at);
    const finished = records.filter((r) => r.msg === "download finished" && r.file?.endsWith(".vmdk"));
    if (finished.length >= disks || waited >= 2000) {
      const span = (Math.max(...finished.map(at)) - Math.min(...started)) / 1000;
      return {
        setupSeconds: exportStarted ? (Math.min(...started) - at(exportStarted)) / 1000 : NaN,
        overlap: finished.reduce((sum, r) => sum + (r.seconds ?? NaN), 0) / span,
      };
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Which of the expected SHA-256s the files miss (any order: the file names differ between govc and hypervisord). */
function missing(files: string[], expected: string[]): string[] {
  const got = new Set(files.map(sha256File));
  return expected.filter((sum) => !got.has(sum));
}

export async function multiDiskRows(o: MultiDiskOptions) {
  const sim = await startVcsim([], { VCSIM_EXPORT_RATE: String(o.rate) });
  try {
    o.pinning.pinSimulator(sim.child.pid!);
    const vm = sim.vms[0]!;
    const files = await addDisks(sim, o.govc, o.disks, o.diskBytes);
    const sums = files.map((file) => writeRandomDisk(file, o.diskBytes));
    const total = o.disks * o.diskBytes;
    console.log(`\nmulti-disk: ${vm.name} with ${o.disks} disks of ${o.diskBytes / MiB} MiB (random bytes), the simulator limiting each download to ` +
      `${fixed(o.rate / 1e6)} MB/s (VCSIM_EXPORT_RATE=${o.rate}); hypervisord (parallel_downloads ${o.disks}) vs govc export.ovf (one disk after another)`);
    const leaseReady = await withExportLease(sim, vm, async (_, seconds) => seconds);
    const runs: ({ client: "govc" | "hypervisord"; ok: boolean } & Measured)[] = [];
    const overlaps: number[] = [];
    const setups: number[] = [];
    for (let round = 1; round <= o.rounds; round++) {
      const govcDir = path.join(o.work, `multidisk-govc-${round}`);
      const g = await measured(sim.child.pid!, () => execPinned(o.pinning, o.govc, ["export.ovf", "-vm", vm.path, govcDir], { env: govcEnv(sim), timeout: JOB_TIMEOUT_MS }));
      const govcDisks = fs.readdirSync(govcDir, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".vmdk")).map((f) => path.join(govcDir, f));
      const govcMissing = missing(govcDisks, sums);
      fs.rmSync(govcDir, { recursive: true, force: true });

      const outputDir = `multidisk-${round}`;
      o.pinning.pinClient(o.daemon.child.pid!);
      let job: Awaited<ReturnType<typeof runJob>> | undefined;
      const h = await measured(sim.child.pid!, async () => {
        job = await runJob(o.client, { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir, parallelDownloads: o.disks, name: `bench-multidisk-${round}-${Date.now()}` });
      }, o.daemon.child.pid!);
      const hvdMissing = missing(exportedDisks(job!).map((d) => d.file), sums);
      const phases = await jobPhases(o.daemon, job!.id, o.disks);
      overlaps.push(phases.overlap);
      setups.push(phases.setupSeconds);
      fs.rmSync(path.join(o.daemon.outputRoot, outputDir), { recursive: true, force: true });

      for (const [client, m, miss] of [["govc", g, govcMissing], ["hypervisord", h, hvdMissing]] as const) {
        runs.push({ client, ok: miss.length === 0, ...m });
        console.log(`multi-disk round ${round} ${client.padEnd(11)} ${fixed(m.seconds, 2).padStart(6)} s  ${fixed(total / MiB / m.seconds).padStart(7)} MiB/s` +
          `  cpu: client ${fixed(m.clientCpu, 2)} s, vcsim ${fixed(m.vcsimCpu, 2)} s${client === "hypervisord" ? `; log: ${fixed(setups.at(-1), 2)} s before the first download, downloads side by side ${fixed(overlaps.at(-1), 2)}x` : ""}  [${miss.length ? `${miss.length} disk(s) with a SHA-256 MISMATCH` : `${o.disks} disks sha256 ok`}]`);
        if (miss.length) process.exitCode = 1;
      }
    }
    const seconds = (client: "govc" | "hypervisord") => runs.filter((r) => r.client === client).map((r) => r.seconds);
    const govcSeconds = median(seconds("govc"));
    const hvdSeconds = median(seconds("hypervisord"));
    const ratio = govcSeconds / hvdSeconds;
    const floor = o.diskBytes / o.rate;
    console.log(`multi-disk, medians of ${o.rounds}: govc ${fixed(govcSeconds, 2)} s, hypervisord ${fixed(hvdSeconds, 2)} s (one disk at the rate limit alone: ${fixed(floor, 2)} s); ` +
      `govc/hypervisord = ${ratio.toFixed(2)} (target >= ${TARGET_MULTIDISK}): ${ratio >= TARGET_MULTIDISK ? "PASS" : "MISS"}`);
    const withoutLease = (govcSeconds - leaseReady) / (hvdSeconds - leaseReady);
    console.log(`  the simulator's lease took ${fixed(leaseReady, 2)} s to become ready (tools/vcsim hashes the ${o.disks} disks then; measured once, alone): ` +
      `the ratio without it ${withoutLease.toFixed(2)} (diagnosis, not the target)`);
    return {
      disks: o.disks, diskMiB: o.diskBytes / MiB, rateBytesPerSecond: o.rate, rounds: o.rounds,
      govcSeconds: seconds("govc").map((s) => Number(s.toFixed(2))), hypervisordSeconds: seconds("hypervisord").map((s) => Number(s.toFixed(2))),
      medianGovcSeconds: Number(govcSeconds.toFixed(2)), medianHypervisordSeconds: Number(hvdSeconds.toFixed(2)),
      leaseReadySeconds: Number(leaseReady.toFixed(2)), ratioWithoutLeaseReady: Number(withoutLease.toFixed(3)), hypervisordSecondsBeforeDownload: setups.map((v) => Number(v.toFixed(2))), hypervisordDownloadOverlap: overlaps.map((v) => Number(v.toFixed(2))), ratio: Number(ratio.toFixed(3)), target: TARGET_MULTIDISK, pass: ratio >= TARGET_MULTIDISK, mismatches: runs.filter((r) => !r.ok).length,
    };
  } finally {
    await sim.stop();
  }
}
