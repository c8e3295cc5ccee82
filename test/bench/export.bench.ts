// vSphere export benchmark (npm run bench:export). A measurement, not a test: it prints figures and
// ratios with PASS/MISS against the targets (issue 17) and exits 0 unless something crashed or a disk came out
// wrong; when govc, curl or the simulator cannot be had here, it says why and exits 0.
//
// Pinning (export-pinning.ts): with taskset and >= 2 CPUs the simulator (playing the ESXi host, which has CPUs of
// its own) runs on one core and every client (curl, govc, the daemon with all its threads) on another; the header
// says which, or why not (BENCH_PIN=0 turns it off).
//
// Rows (BENCH_ONLY=main,multidisk,memory,running,folder picks some; default all; BENCH_PROFILE=1, BENCH_PERF=1 add profiles):
//  main:       one vcsim-export (no rate limit); its first VM gets a BENCH_SIZE_MB (default 1024) MiB disk of random
//              bytes; four clients export it, in alternation for BENCH_ROUNDS (default 3) rounds:
//              curl -k of the disk's device URL (a lease made here with the project's SOAP code; the limit),
//              govc export.ovf, govc export.ovf -sha 256 (also a SHA-256 .mf: the like-for-like peer), and
//              hypervisord (the real daemon, a vsphere job over gRPC, timed from SubmitJob until GetJob, polled every
//              50 ms, says COMPLETED; SHA-256 .mf and the lease manifest check as by default; the exported disk's
//              SHA-256 checked against the source's). Per client: MiB/s, and client CPU seconds per GiB (curl/govc:
//              the child's rusage; the daemon: /proc/<pid>/stat over the run). Targets: hypervisord CPU/GiB <= govc's
//              (plain export.ovf), hypervisord >= 0.9x curl, faster than govc (medians).
//  multidisk:  export-multidisk.ts: 4 disks of 256 MiB, each download limited by VCSIM_EXPORT_RATE; target >= 3x govc.
//  memory:     export-memory.ts: the daemon's RSS growth exporting a BENCH_MEMORY_GB (default 10) GiB disk, < 64 MiB.
//  running, folder: export-running.ts: the VM exported running (through a snapshot) beside powered off, target
//              <= 1.1x; a folder of 8 VMs (a second vcsim, -folder 1 -vm 4) as one batch beside one VM after another.
//  profile:    export-profile.ts (BENCH_PROFILE=1): one more hypervisord export by a daemon under --cpu-prof; the top
//              10 self-time entries per thread.
//  perf:       export-perf.ts (BENCH_PERF=1): the same under `perf record -p` (every thread, native frames, the kernel).
// For diagnosis the daemon's own log splits each job: the time before the disk's download started (session,
// ExportVm, lease, HttpNfcLeaseGetManifest) and the download itself ("download finished" seconds).
// Throughput is MiB/s (1 MiB = 1048576 bytes) of the disk's size over the timed wall time; 1 GiB = 1024 MiB.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createGrpcJsClient, type GrpcJsClient } from "../support/clients.ts";
import { spawnDaemon, type DaemonProcess } from "../support/daemon-process.ts";
import { tempDir } from "../support/temp-dir.ts";
import { buildGovc, buildVcsim, startVcsim, type Vcsim, type VcsimVm } from "../support/vcsim.ts";
import { envNumber, fixed, median } from "./bench-utils.ts";
import { sha256File, writeRandomDisk } from "./export-disk-data.ts";
import { connection, exportedDisks, JOB_TIMEOUT_MS, runJob } from "./export-job.ts";
import { withExportLease } from "./export-lease.ts";
import { execPinned, measured, type Measured } from "./export-measure.ts";
import { memoryRows } from "./export-memory.ts";
import { multiDiskRows } from "./export-multidisk.ts";
import { createPinning, type Pinning } from "./export-pinning.ts";
import { perfRun } from "./export-perf.ts";
import { profileRun } from "./export-profile.ts";
import { fleetRows, snapshotRows } from "./export-running.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const SIZE = Math.round(envNumber("BENCH_SIZE_MB", 1024) * MiB);
const ROUNDS = Math.round(envNumber("BENCH_ROUNDS", 3));
const TARGET_VS_CURL = 0.9;
/** The folder rows: VMs of FLEET_SIZE_MB (default 128) MiB each, in a folder of 8. */
const FLEET_SIZE = Math.round(envNumber("FLEET_SIZE_MB", 128) * MiB);
const MULTIDISK_SIZE = Math.round(envNumber("BENCH_MULTIDISK_MB", 256) * MiB);
/** Bytes per second per download connection for the multi-disk rows (60 MB/s: 256 MiB in ~4.5 s). */
const MULTIDISK_RATE = Math.round(envNumber("BENCH_MULTIDISK_RATE", 60e6));
const MEMORY_SIZE = Math.round(envNumber("BENCH_MEMORY_GB", 10) * GiB);
const ROWS = ["main", "multidisk", "memory", "running", "folder"] as const;
type Row = (typeof ROWS)[number];
const ONLY = (process.env.BENCH_ONLY ?? "").split(",").map((s) => s.trim()).filter(Boolean);
const unknownRows = ONLY.filter((r) => !(ROWS as readonly string[]).includes(r));
const wanted = (row: Row) => ONLY.length === 0 || ONLY.includes(row);
const PROFILE = process.env.BENCH_PROFILE === "1";
const PERF = process.env.BENCH_PERF === "1";

const CLIENTS = ["curl", "govc", "govc -sha 256", "hypervisord"] as const;
type Client = (typeof CLIENTS)[number];
interface Run extends Measured {
  round: number;
  client: Client;
  /** curl only: ExportVm until the lease was ready (the simulator hashes the disk then), outside curl's timing. */
  leaseSeconds?: number;
  /** hypervisord only: the job's own result.duration_seconds. */
  jobSeconds?: number;
  /** hypervisord only, from its log: "export started" until the disk's "download started" (session, lease, manifest). */
  setupSeconds?: number;
  /** hypervisord only, from its log: the disk's "download finished" seconds (GET, SHA-256, writes, fdatasync). */
  downloadSeconds?: number;
  note?: string;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const mibps = (seconds: number) => SIZE / MiB / seconds;
const perGiB = (cpu: number) => cpu / (SIZE / GiB);

// ---------------------------------------------------------------------------------------------
// The four clients

async function runCurl(round: number, sim: Vcsim, vm: VcsimVm, work: string, pinning: Pinning): Promise<Run> {
  const target = path.join(work, "curl-disk.vmdk");
  try {
    return await withExportLease(sim, vm, async (info, leaseSeconds) => {
      const disk = info.devices.find((d) => d.disk);
      if (!disk) throw new Error(`the lease lists no disk: ${JSON.stringify(info.devices)}`);
      // -g: the URL's path holds "[...]", which curl would otherwise read as a glob.
      const m = await measured(sim.child.pid!, () => execPinned(pinning, "curl", ["-k", "-s", "-S", "-f", "-g", "-o", target, disk.url], { timeout: JOB_TIMEOUT_MS }));
      const size = fs.statSync(target).size;
      if (size !== SIZE) throw new Error(`curl wrote ${size} bytes, expected ${SIZE}`);
      return { round, client: "curl", ...m, leaseSeconds };
    });
  } finally {
    fs.rmSync(target, { force: true });
  }
}

async function runGovc(round: number, sim: Vcsim, vm: VcsimVm, work: string, govc: string, pinning: Pinning, sha256 = false): Promise<Run> {
  const outDir = path.join(work, `govc-${round}`);
  try {
    const env = { ...process.env, GOVC_URL: sim.url, GOVC_USERNAME: "user", GOVC_PASSWORD: "pass", GOVC_INSECURE: "1" };
    const m = await measured(sim.child.pid!, () =>
      execPinned(pinning, govc, ["export.ovf", ...(sha256 ? ["-sha", "256"] : []), "-vm", vm.name, outDir], { env, timeout: JOB_TIMEOUT_MS }));
    const vmdks = findFiles(outDir, ".vmdk");
    const sizes = vmdks.map((f) => fs.statSync(f).size);
    if (!sizes.includes(SIZE)) throw new Error(`govc wrote no ${SIZE}-byte disk: ${JSON.stringify(vmdks.map((f, i) => [f, sizes[i]]))}`);
    if (sha256 && findFiles(outDir, ".mf").length === 0) throw new Error("govc -sha 256 wrote no .mf");
    return { round, client: sha256 ? "govc -sha 256" : "govc", ...m };
  } finally {
    fs.rmSync(outDir, { recursive: true, force: true });
  }
}

async function runDaemon(round: number, sim: Vcsim, vm: VcsimVm, daemon: DaemonProcess, client: GrpcJsClient, pinning: Pinning, sourceSha256: string): Promise<Run> {
  const outputDir = `bench-${round}`;
  let job: Awaited<ReturnType<typeof runJob>> | undefined;
  try {
    // Again before each run: a thread made by an unpinned one would escape (libuv's pool is made lazily).
    pinning.pinClient(daemon.child.pid!);
    const m = await measured(sim.child.pid!, async () => {
      job = await runJob(client, { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir, name: `bench-export-${round}-${Date.now()}` });
    }, daemon.child.pid!);
    const strays = pinning.strays(daemon.child.pid!);
    if (strays) console.log(`!!! ${strays} thread(s) of the daemon were off the client core after round ${round}: its CPU figure is not one core's`);
    const disk = exportedDisks(job!)[0];
    if (!disk) throw new Error(`job ${job!.id} lists no disk: ${JSON.stringify(job!.result!.files.map((f) => f.path))}`);
    const onDisk = sha256File(disk.file);
    let note = "sha256 ok";
    if (onDisk !== sourceSha256) {
      note = "SHA-256 MISMATCH";
      console.error(`\n!!!!! SHA-256 MISMATCH in round ${round}: the exported disk ${disk.file} has ${onDisk}, the source ${sourceSha256} !!!!!\n`);
      process.exitCode = 1;
    }
    if (disk.sha256 !== onDisk) {
      note += `; the job reports ${disk.sha256}`;
      console.error(`\n!!!!! round ${round}: the job reports sha256 ${disk.sha256} for ${disk.file}, the file has ${onDisk} !!!!!\n`);
      process.exitCode = 1;
    }
    return { round, client: "hypervisord", ...m, jobSeconds: job!.result!.durationSeconds, ...(await phases(daemon, job!.id)), note };
  } finally {
    fs.rmSync(path.join(daemon.outputRoot, outputDir), { recursive: true, force: true });
  }
}

/** Where the job's time went, from the daemon's pino lines (they may trail GetJob by a moment). */
async function phases(daemon: DaemonProcess, jobId: string): Promise<{ setupSeconds?: number; downloadSeconds?: number }> {
  for (let waited = 0; ; waited += 50) {
    const records = daemon.logs.filter((l) => l.includes(jobId)).map((l) => JSON.parse(l) as { msg: string; time: string | number; file?: string; seconds?: number });
    const at = (r: { time: string | number } | undefined) => (r === undefined ? NaN : new Date(r.time).getTime());
    const started = records.find((r) => r.msg === "export started");
    const diskStarted = records.find((r) => r.msg === "download started" && r.file?.endsWith(".vmdk"));
    const diskFinished = records.find((r) => r.msg === "download finished" && r.file?.endsWith(".vmdk"));
    if ((started && diskStarted && diskFinished) || waited >= 2000) {
      return { setupSeconds: (at(diskStarted) - at(started)) / 1000 || undefined, downloadSeconds: diskFinished?.seconds };
    }
    await sleep(50);
  }
}

function findFiles(dir: string, suffix: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(suffix)).map((f) => path.join(dir, f));
}

// ---------------------------------------------------------------------------------------------

function machineContext(pinning: Pinning): Record<string, unknown> {
  const cpus = os.cpus();
  let curl = "";
  try {
    curl = execFileSync("curl", ["--version"], { encoding: "utf8" }).split("\n")[0]!;
  } catch {
    curl = "";
  }
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model,
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    memoryGiB: Number((os.totalmem() / 1024 ** 3).toFixed(1)),
    loadavg: os.loadavg().map((n) => Number(n.toFixed(2))),
    tmpdir: os.tmpdir(),
    curl,
    pinning: pinning.description,
  };
}

/** Why the bench cannot run here (printed, exit 0), or undefined. */
async function missingTool(context: Record<string, unknown>): Promise<{ reason?: string; govc?: string }> {
  const { binary, reason: noSim } = await buildVcsim();
  if (noSim) return { reason: `no vCenter simulator: ${noSim}` };
  // Simulators differ in what they charge where (tools/vcsim hashes every file when a lease gets ready; HYPERVISORD_VCSIM_BUILD picks another).
  console.log(`simulator: ${binary}`);
  if (wanted("main") && !context.curl) return { reason: "curl is missing (the main rows compare against it)" };
  if (!wanted("main") && !wanted("multidisk")) return {};
  const { govc, reason } = await buildGovc();
  if (reason || !govc) return { reason: `govc cannot be built here (the main and multidisk rows compare against it): ${reason ?? "build.sh --with-govc printed no govc path"}` };
  return { govc };
}

async function main(): Promise<void> {
  const pinning = createPinning();
  const context = machineContext(pinning);
  console.log(`machine: ${JSON.stringify(context)}`);
  console.log(`${pinning.description}`);
  if (unknownRows.length) {
    console.error(`BENCH_ONLY names unknown rows ${unknownRows.join(",")} (known: ${ROWS.join(",")})`);
    process.exitCode = 2;
    return;
  }
  const { reason, govc } = await missingTool(context);
  if (reason) {
    console.log(`SKIPPED: ${reason}`);
    return;
  }

  const work = tempDir("export-bench");
  let sim: Vcsim | undefined;
  let daemon: DaemonProcess | undefined;
  let client: GrpcJsClient | undefined;
  const runs: Run[] = [];
  const results: Record<string, unknown> = {};
  try {
    sim = await startVcsim();
    pinning.pinSimulator(sim.child.pid!);
    const vm = sim.vms[0]!;
    const diskFile = vm.disks[0]!.file;
    let started = performance.now();
    const needsDisk = wanted("main") || wanted("running") || PROFILE || PERF;
    const sourceSha256 = needsDisk ? writeRandomDisk(diskFile, SIZE) : "";
    if (needsDisk) console.log(`vcsim ${sim.url} (pid ${sim.child.pid}), VM ${vm.name} (${vm.moref}); wrote ${SIZE / MiB} MiB into ${diskFile} in ${((performance.now() - started) / 1000).toFixed(1)} s, sha256 ${sourceSha256}`);

    started = performance.now();
    // Four jobs at once, so that the folder rows can run VMs side by side (the single-VM rows run one job at a time).
    daemon = await spawnDaemon({ args: ["--max-concurrent-jobs", "4"] });
    pinning.pinClient(daemon.child.pid!);
    client = createGrpcJsClient(daemon.grpcAddress);
    console.log(`daemon pid ${daemon.child.pid} ready in ${((performance.now() - started) / 1000).toFixed(1)} s; rows: ${ROWS.filter(wanted).join(", ")}${PROFILE ? ", profile" : ""}${PERF ? ", perf" : ""}; ` +
      `${ROUNDS} round(s); MiB/s = ${MiB} bytes/s\n`);

    for (let round = 1; round <= (wanted("main") ? ROUNDS : 0); round++) {
      for (const run of [
        () => runCurl(round, sim!, vm, work, pinning),
        () => runGovc(round, sim!, vm, work, govc!, pinning),
        () => runGovc(round, sim!, vm, work, govc!, pinning, true),
        () => runDaemon(round, sim!, vm, daemon!, client!, pinning, sourceSha256),
      ]) {
        const result = await run();
        runs.push(result);
        const lease = result.leaseSeconds !== undefined ? `, its lease was ready after ${fixed(result.leaseSeconds, 2)} s (untimed)` : "";
        const job = result.jobSeconds !== undefined
          ? `, job duration ${fixed(result.jobSeconds, 2)} s = ${fixed(mibps(result.jobSeconds))} MiB/s` +
            ` (before the download ${fixed(result.setupSeconds, 2)} s, download ${fixed(result.downloadSeconds, 2)} s = ${fixed(mibps(result.downloadSeconds ?? NaN))} MiB/s)`
          : "";
        console.log(
          `round ${round} ${result.client.padEnd(13)} ${fixed(result.seconds, 2).padStart(6)} s  ${fixed(mibps(result.seconds)).padStart(7)} MiB/s` +
            `  cpu: client ${fixed(result.clientCpu, 2)} s = ${fixed(perGiB(result.clientCpu), 2)} s/GiB, vcsim ${fixed(result.vcsimCpu, 2)} s${lease}${job}${result.note ? ` [${result.note}]` : ""}`,
        );
      }
    }
    if (runs.length > 0) results.main = report(runs);
    if (PROFILE) results.profile = await profileRun(sim, vm, pinning, sourceSha256, SIZE);
    if (PERF) results.perf = await perfRun(sim, vm, pinning, sourceSha256, SIZE);
    if (wanted("memory")) {
      results.memory = await memoryRows({ sim, vm: sim.vms[1]!, pinning, sizeBytes: MEMORY_SIZE });
    }
    if (wanted("running")) {
      console.log(`\nrunning VM (snapshot) vs powered off (direct): ${ROUNDS} rounds each, alternating`);
      pinning.pinClient(daemon.child.pid!);
      results.snapshotVsDirect = await snapshotRows(sim, vm, daemon, client, sourceSha256, SIZE, ROUNDS);
    }
    await sim.stop();
    sim = undefined;
    if (wanted("multidisk")) {
      pinning.pinClient(daemon.child.pid!);
      results.multiDisk = await multiDiskRows({ govc: govc!, pinning, daemon, client, work, rounds: ROUNDS, disks: 4, diskBytes: MULTIDISK_SIZE, rate: MULTIDISK_RATE });
    }
    if (wanted("folder")) {
      sim = await startVcsim(["-folder", "1", "-vm", "4"]);
      pinning.pinSimulator(sim.child.pid!);
      pinning.pinClient(daemon.child.pid!);
      results.folder = await fleetRows(sim, daemon, client, FLEET_SIZE);
    }
  } finally {
    client?.close();
    const code = await daemon?.stop();
    if (daemon && code !== 0) console.error(`the daemon exited with ${code}`);
    await sim?.stop();
    fs.rmSync(work, { recursive: true, force: true });
    if (daemon) {
      fs.rmSync(daemon.dataDir, { recursive: true, force: true });
      fs.rmSync(daemon.outputRoot, { recursive: true, force: true });
    }
  }
  console.log(JSON.stringify({
    bench: "export",
    machine: { cpus: context.cpus, node: context.node, loadavg: context.loadavg, pinning: pinning.description },
    sizeMiB: SIZE / MiB,
    rounds: ROUNDS,
    ...results,
    pass: Object.fromEntries(Object.entries(results).flatMap(([row, r]) => {
      const pass = (r as { pass?: unknown }).pass;
      return typeof pass === "object" && pass !== null ? Object.entries(pass).map(([k, v]) => [`${row}.${k}`, v]) : typeof pass === "boolean" ? [[row, pass]] : [];
    })),
  }));
}

/** The main table and its targets; returns the figures for the JSON line. */
function report(runs: Run[]) {
  const of = (client: Client) => runs.filter((r) => r.client === client);
  const rate = (client: Client) => of(client).map((r) => mibps(r.seconds));
  const cpuPerGiB = (client: Client) => of(client).map((r) => perGiB(r.clientCpu));
  const med = (client: Client) => ({ mibps: median(rate(client)), cpuPerGiB: median(cpuPerGiB(client)), vcsimCpu: median(of(client).map((r) => r.vcsimCpu)) });
  const curl = med("curl");
  const govc = med("govc");
  const govcSha = med("govc -sha 256");
  const hvd = med("hypervisord");
  const hvdJob = median(of("hypervisord").map((r) => mibps(r.jobSeconds!)));

  const rounds = Array.from({ length: ROUNDS }, (_, i) => i + 1);
  const header = ["client", "MiB/s", "s", "cpu s/GiB", "vcsim cpu s", ...rounds.map((i) => `r${i} MiB/s`), ...rounds.map((i) => `r${i} cpu s/GiB`)];
  const rows: string[][] = [];
  for (const client of CLIENTS) {
    const m = med(client);
    rows.push([client, fixed(m.mibps), fixed(median(of(client).map((r) => r.seconds)), 2), fixed(m.cpuPerGiB, 2), fixed(m.vcsimCpu, 2),
      ...rate(client).map((v) => fixed(v)), ...cpuPerGiB(client).map((v) => fixed(v, 2))]);
  }
  // Diagnosis, not a target: the job's own duration, the disk's download alone (log), and the time before it started.
  const jobSeconds = of("hypervisord").map((r) => r.jobSeconds!);
  rows.push(["hvd (job duration)", fixed(hvdJob), fixed(median(jobSeconds), 2), "", "", ...jobSeconds.map((s) => fixed(mibps(s)))]);
  const downloads = of("hypervisord").map((r) => r.downloadSeconds ?? NaN);
  rows.push(["hvd (download phase)", fixed(median(downloads.map(mibps))), fixed(median(downloads), 2), "", "", ...downloads.map((s) => fixed(mibps(s)))]);
  const setups = of("hypervisord").map((r) => r.setupSeconds ?? NaN);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => header.map((_, i) => (i === 0 ? (cells[i] ?? "").padEnd(widths[i]!) : (cells[i] ?? "").padStart(widths[i]!))).join("  ");
  console.log(`\nmedians of ${ROUNDS} round(s), a ${SIZE / MiB} MiB disk; MiB/s over the wall time; client cpu = user+sys seconds per GiB ` +
    `(curl/govc: the child's rusage; hypervisord: the daemon's /proc over the run)`);
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const r of rows) console.log(line(r));
  const leases = of("curl").map((r) => r.leaseSeconds ?? NaN);
  console.log(`hypervisord before its download started (session, ExportVm, lease, HttpNfcLeaseGetManifest): ${setups.map((v) => fixed(v, 2)).join(", ")} s; ` +
    `the simulator's lease getting ready (tools/vcsim hashes the disk then, SHA-1 and SHA-256; timed on curl's lease, which curl's figure leaves out; ` +
    `govc and hypervisord pay it): ${leases.map((v) => fixed(v, 2)).join(", ")} s`);

  // Diagnosis, not a target: curl's figure leaves out the lease getting ready, which govc's and hypervisord's include.
  const curlWithLease = median(of("curl").map((r) => mibps(r.seconds + (r.leaseSeconds ?? NaN))));
  const vsCurl = hvd.mibps / curl.mibps;
  const vsGovc = hvd.mibps / govc.mibps;
  const cpuVsGovc = hvd.cpuPerGiB / govc.cpuPerGiB;
  const pass = { cpuPerGiB: hvd.cpuPerGiB <= govc.cpuPerGiB, vsCurl: vsCurl >= TARGET_VS_CURL, vsGovc: vsGovc > 1 };
  const verdict = (ok: boolean) => (ok ? "PASS" : "MISS");
  console.log("");
  console.log(`hypervisord cpu/GiB ${fixed(hvd.cpuPerGiB, 2)} s vs govc ${fixed(govc.cpuPerGiB, 2)} s = ${cpuVsGovc.toFixed(2)}x (target <= govc's): ${verdict(pass.cpuPerGiB)}` +
    `   [govc -sha 256 ${fixed(govcSha.cpuPerGiB, 2)} s, curl ${fixed(curl.cpuPerGiB, 2)} s]`);
  console.log(`hypervisord/curl = ${vsCurl.toFixed(2)} (target >= ${TARGET_VS_CURL}): ${verdict(pass.vsCurl)}   [job duration: ${(hvdJob / curl.mibps).toFixed(2)}; ` +
    `vs curl with its lease's readiness added (${fixed(curlWithLease)} MiB/s): ${(hvd.mibps / curlWithLease).toFixed(2)}]`);
  console.log(`hypervisord/govc = ${vsGovc.toFixed(2)} (target > 1, faster than govc): ${verdict(pass.vsGovc)}   [job duration: ${(hvdJob / govc.mibps).toFixed(2)}]`);
  console.log(`hypervisord/(govc -sha 256) = ${(hvd.mibps / govcSha.mibps).toFixed(2)} (like for like: both write a SHA-256 .mf; not a target)`);
  const mismatches = of("hypervisord").filter((r) => r.note !== "sha256 ok").length;
  if (mismatches) console.log(`!!! ${mismatches} hypervisord run(s) with a SHA-256 mismatch`);
  const round1 = (v: number) => Number(v.toFixed(1));
  const round3 = (v: number) => Number(v.toFixed(3));
  return {
    unit: "MiB/s",
    perRound: Object.fromEntries(CLIENTS.map((c) => [c, rate(c).map(round1)])),
    cpuPerGiBPerRound: Object.fromEntries(CLIENTS.map((c) => [c, cpuPerGiB(c).map(round3)])),
    vcsimCpuPerRound: Object.fromEntries(CLIENTS.map((c) => [c, of(c).map((r) => round3(r.vcsimCpu))])),
    hypervisordJobDuration: jobSeconds.map((v) => round1(mibps(v))),
    hypervisordDownloadPhase: downloads.map((v) => round1(mibps(v))),
    hypervisordSecondsBeforeDownload: setups.map((v) => Number(v.toFixed(2))),
    leaseReadySeconds: leases.map((v) => Number(v.toFixed(2))),
    median: {
      curl: round1(curl.mibps), govc: round1(govc.mibps), govcSha256: round1(govcSha.mibps), hypervisord: round1(hvd.mibps),
      hypervisordJobDuration: round1(hvdJob), hypervisordDownloadPhase: round1(median(downloads.map(mibps))),
    },
    medianCpuPerGiB: { curl: round3(curl.cpuPerGiB), govc: round3(govc.cpuPerGiB), govcSha256: round3(govcSha.cpuPerGiB), hypervisord: round3(hvd.cpuPerGiB) },
    curlWithLeaseReady: round1(curlWithLease),
    ratio: { hypervisordVsCurl: round3(vsCurl), hypervisordVsCurlWithLeaseReady: round3(hvd.mibps / curlWithLease), hypervisordVsGovc: round3(vsGovc), hypervisordVsGovcSha256: round3(hvd.mibps / govcSha.mibps), cpuPerGiBVsGovc: round3(cpuVsGovc) },
    target: { vsCurl: TARGET_VS_CURL, vsGovc: 1, cpuPerGiBVsGovc: 1 },
    pass,
    sha256Mismatches: mismatches,
  };
}

try {
  await main();
} catch (err) {
  console.error(err);
  process.exitCode = 1;
}
