// The rows of bench:export for issue 13: a running VM exported through a snapshot beside the same VM exported
// powered off (direct), and a folder of VMs exported as one batch beside the same VMs exported one at a time.
// Called by export.bench.ts after its own table; prints its own lines and returns a JSON-able summary.
import fs from "node:fs";
import path from "node:path";
import { pino } from "pino";
import { BatchState } from "../../gen/hypervisord/v1/batch_pb.js";
import { JobState, type Job as JobPb } from "../../gen/hypervisord/v1/job_pb.js";
import { openSession } from "../../src/providers/vsphere/session.ts";
import { runTask } from "../../src/providers/vsphere/tasks.ts";
import type { GrpcJsClient } from "../support/clients.ts";
import type { DaemonProcess } from "../support/daemon-process.ts";
import type { Vcsim, VcsimVm } from "../support/vcsim.ts";
import { cpuSeconds, fixed, median } from "./bench-utils.ts";
import { sha256File, writeRandomDisk } from "./export-disk-data.ts";

const MiB = 1024 * 1024;
const POLL_MS = 50;
const TIMEOUT_MS = 15 * 60_000;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const logger = pino({ level: "warn" });
const connection = (sim: Vcsim) => ({ url: sim.url, username: "user", password: "pass", insecure: true, thumbprint: "" });

async function setPower(sim: Vcsim, vm: VcsimVm, on: boolean): Promise<void> {
  const signal = AbortSignal.timeout(60_000);
  const session = await openSession(connection(sim), { maxConnections: 2, logger }, signal);
  try {
    await runTask(session, on ? "PowerOnVM_Task" : "PowerOffVM_Task", { type: "VirtualMachine", value: vm.moref }, signal).catch((err: Error) => {
      if (!/InvalidPowerState|already/i.test(err.message)) throw err;
    });
  } finally {
    await session.close();
  }
}

async function exportOne(client: GrpcJsClient, sim: Vcsim, vm: VcsimVm, outputDir: string): Promise<{ seconds: number; job: JobPb }> {
  const started = performance.now();
  const { job: submitted } = await client.unary("submitJob", {
    definition: { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir, name: `bench-${vm.name}-${Date.now()}` } as never,
  });
  for (const deadline = Date.now() + TIMEOUT_MS; ;) {
    const { job } = await client.unary("getJob", { jobId: submitted!.id });
    if (job!.state === JobState.COMPLETED) return { seconds: (performance.now() - started) / 1000, job: job! };
    if (job!.state === JobState.FAILED || job!.state === JobState.CANCELLED) throw new Error(`job ${job!.id} ended ${JobState[job!.state]}: ${job!.error?.message}`);
    if (Date.now() > deadline) throw new Error(`job ${submitted!.id} did not end within ${TIMEOUT_MS} ms`);
    await sleep(POLL_MS);
  }
}

function diskSha256(job: JobPb): string {
  const disk = job.result!.files.find((f) => f.path.endsWith(".vmdk"));
  if (!disk) throw new Error(`job ${job.id} lists no disk`);
  return sha256File(path.join(job.result!.outputDir, disk.path));
}

type LogRecord = { msg: string; time: string | number; file?: string; seconds?: number };

/** The job's records in the daemon's pino output (they may trail GetJob by a moment: waits up to 2 s for `last`). */
async function jobRecords(daemon: DaemonProcess, jobId: string, last: RegExp): Promise<LogRecord[]> {
  for (let waited = 0; ; waited += 50) {
    const records = daemon.logs.filter((l) => l.includes(jobId)).map((l) => JSON.parse(l) as LogRecord);
    if (records.some((r) => last.test(r.msg)) || waited >= 2000) return records;
    await sleep(50);
  }
}

/** Seconds between the first records matching `from` and `to` (NaN when one is missing). */
function span(records: readonly LogRecord[], from: RegExp, to: RegExp): number {
  const a = records.find((r) => from.test(r.msg));
  const b = records.find((r) => to.test(r.msg));
  return a && b ? (new Date(b.time).getTime() - new Date(a.time).getTime()) / 1000 : NaN;
}

/**
 * The same VM (its disk already written, `sourceSha256`) exported powered off (direct) and running (snapshot),
 * alternating, `rounds` times each. Target: snapshot <= 1.1x direct (medians of wall time).
 */
export async function snapshotRows(sim: Vcsim, vm: VcsimVm, daemon: DaemonProcess, client: GrpcJsClient, sourceSha256: string, sizeBytes: number, rounds: number) {
  const runs: { mode: "direct" | "snapshot"; seconds: number; snapshotSeconds: number; removeSeconds: number; downloadSeconds: number; cpu: number; ok: boolean }[] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const mode of ["direct", "snapshot"] as const) {
      await setPower(sim, vm, mode === "snapshot");
      const outputDir = `running-${mode}-${round}`;
      const cpu0 = cpuSeconds(daemon.child.pid!);
      const { seconds, job } = await exportOne(client, sim, vm, outputDir);
      const cpu = cpuSeconds(daemon.child.pid!) - cpu0;
      const ok = diskSha256(job) === sourceSha256;
      // Where the time went, from the daemon's log: CreateSnapshot_Task (the job's start until "snapshot taken"), the
      // disk's download, and RemoveSnapshot_Task (the package written until "snapshot removed").
      const records = await jobRecords(daemon, job.id, /^export completed$/);
      const snapshotSeconds = mode === "snapshot" ? span(records, /^export started$/, /^snapshot taken/) : 0;
      const removeSeconds = mode === "snapshot" ? span(records, /^export written$/, /^snapshot removed$/) : 0;
      const downloadSeconds = records.find((r) => r.msg === "download finished" && r.file?.endsWith(".vmdk"))?.seconds ?? NaN;
      runs.push({ mode, seconds, snapshotSeconds, removeSeconds, downloadSeconds, cpu, ok });
      console.log(`running-VM round ${round} ${mode.padEnd(8)} ${fixed(seconds, 2).padStart(6)} s  ${fixed(sizeBytes / MiB / seconds).padStart(7)} MiB/s  daemon cpu ${fixed(cpu, 2)} s` +
        `  download ${fixed(downloadSeconds, 2)} s  consistency ${job.result!.consistency || "-"}` +
        `${mode === "snapshot" ? `, snapshot taken after ${fixed(snapshotSeconds, 2)} s, removed in ${fixed(removeSeconds, 2)} s` : ""}  [${ok ? "sha256 ok" : "SHA-256 MISMATCH"}]`);
      if (!ok) process.exitCode = 1;
      fs.rmSync(path.join(daemon.outputRoot, outputDir), { recursive: true, force: true });
    }
  }
  await setPower(sim, vm, false);
  const of = (mode: "direct" | "snapshot", value: (r: (typeof runs)[number]) => number) => median(runs.filter((r) => r.mode === mode).map(value));
  const direct = of("direct", (r) => r.seconds);
  const snapshot = of("snapshot", (r) => r.seconds);
  const ratio = snapshot / direct;
  // vcsim's CreateSnapshot_Task copies every disk file whole (an ESXi host adds an empty delta disk instead), and
  // the kernel then writes that copy back while the download runs: shown apart, as the simulator's cost.
  const withoutCreate = of("snapshot", (r) => r.seconds - r.snapshotSeconds) / direct;
  const downloads = of("snapshot", (r) => r.downloadSeconds) / of("direct", (r) => r.downloadSeconds);
  console.log(`\nrunning VM through a snapshot vs powered off (direct), ${sizeBytes / MiB} MiB disk, medians of ${rounds}: ` +
    `direct ${fixed(direct, 2)} s, snapshot ${fixed(snapshot, 2)} s, overhead ${fixed(snapshot - direct, 2)} s, ratio ${ratio.toFixed(3)} (target <= 1.1): ${ratio <= 1.1 ? "PASS" : "MISS"}`);
  console.log(`  of which CreateSnapshot_Task ${fixed(of("snapshot", (r) => r.snapshotSeconds), 2)} s (vcsim copies the ${sizeBytes / MiB} MiB disk), RemoveSnapshot_Task ` +
    `${fixed(of("snapshot", (r) => r.removeSeconds), 2)} s; ratio without CreateSnapshot_Task ${withoutCreate.toFixed(3)}; download phase snapshot/direct ${downloads.toFixed(3)}`);
  return {
    directSeconds: runs.filter((r) => r.mode === "direct").map((r) => Number(r.seconds.toFixed(2))),
    snapshotSeconds: runs.filter((r) => r.mode === "snapshot").map((r) => Number(r.seconds.toFixed(2))),
    medianDirect: Number(direct.toFixed(2)), medianSnapshot: Number(snapshot.toFixed(2)),
    overheadSeconds: Number((snapshot - direct).toFixed(2)), ratio: Number(ratio.toFixed(3)), pass: ratio <= 1.1,
    createSnapshotSeconds: runs.filter((r) => r.mode === "snapshot").map((r) => Number(r.snapshotSeconds.toFixed(2))),
    removeSnapshotSeconds: runs.filter((r) => r.mode === "snapshot").map((r) => Number(r.removeSeconds.toFixed(2))),
    ratioWithoutCreateSnapshot: Number(withoutCreate.toFixed(3)), downloadPhaseRatio: Number(downloads.toFixed(3)),
    mismatches: runs.filter((r) => !r.ok).length,
  };
}

/**
 * A folder of VMs (a second vcsim started with `-folder 1`, so all of them sit in /F0/DC0/vm/F0), each with a
 * `sizeBytes` disk: exported one VM after another (the sum of one-VM exports), then as one batch (vm_selector on
 * the folder). Prints total MiB/s of both and their ratio.
 */
export async function fleetRows(sim: Vcsim, daemon: DaemonProcess, client: GrpcJsClient, sizeBytes: number) {
  const vms = [...sim.vms].sort((a, b) => a.path.localeCompare(b.path));
  const folder = path.posix.dirname(vms[0]!.path);
  const sums = new Map(vms.map((vm) => [vm.name, writeRandomDisk(vm.disks[0]!.file, sizeBytes)]));
  const total = vms.length * sizeBytes;
  let oneByOne = 0;
  let mismatches = 0;
  for (const vm of vms) {
    const { seconds, job } = await exportOne(client, sim, vm, `fleet-single-${vm.name}`);
    oneByOne += seconds;
    if (diskSha256(job) !== sums.get(vm.name)) mismatches++;
    fs.rmSync(path.join(daemon.outputRoot, `fleet-single-${vm.name}`), { recursive: true, force: true });
  }
  const started = performance.now();
  const { batch: created } = await client.unary("submitJob", {
    definition: { provider: "vsphere", vsphere: connection(sim), outputDir: "fleet-batch", name: "bench-fleet", vmSelector: { folder } } as never,
  });
  if (!created) throw new Error("SubmitJob with a vm_selector returned no batch");
  let batch = created;
  for (const deadline = Date.now() + TIMEOUT_MS; batch.state === BatchState.RUNNING;) {
    if (Date.now() > deadline) throw new Error(`batch ${batch.id} did not end within ${TIMEOUT_MS} ms`);
    await sleep(POLL_MS);
    batch = (await client.unary("getBatch", { batchId: created.id })).batch!;
  }
  const batchSeconds = (performance.now() - started) / 1000;
  if (batch.state !== BatchState.COMPLETED) throw new Error(`batch ${batch.id} ended ${BatchState[batch.state]}`);
  for (const child of batch.jobs) {
    const { job } = await client.unary("getJob", { jobId: child.jobId });
    if (diskSha256(job!) !== sums.get(child.vmName)) mismatches++;
  }
  fs.rmSync(path.join(daemon.outputRoot, "fleet-batch"), { recursive: true, force: true });
  if (mismatches) process.exitCode = 1;
  const single = total / MiB / oneByOne;
  const fleet = total / MiB / batchSeconds;
  console.log(`\nfolder of ${vms.length} VMs (${folder}), ${sizeBytes / MiB} MiB each: one VM after another ${fixed(oneByOne, 2)} s = ${fixed(single)} MiB/s; ` +
    `one batch ${fixed(batchSeconds, 2)} s = ${fixed(fleet)} MiB/s; batch/sequential = ${(fleet / single).toFixed(2)}${mismatches ? `; ${mismatches} SHA-256 MISMATCHES` : "; every disk sha256 ok"}`);
  return {
    vms: vms.length, sizeMiBEach: sizeBytes / MiB, sequentialSeconds: Number(oneByOne.toFixed(2)), batchSeconds: Number(batchSeconds.toFixed(2)),
    sequentialMiBps: Number(single.toFixed(1)), batchMiBps: Number(fleet.toFixed(1)), ratio: Number((fleet / single).toFixed(3)), mismatches,
  };
}
