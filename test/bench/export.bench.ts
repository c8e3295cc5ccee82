// vSphere export benchmark (npm run bench:export). A measurement, not a test: it prints figures and
// ratios with PASS/MISS against the targets and exits 0 unless something crashed.
//
// One vcsim-export (../shared/vcsim, no rate limit); its first VM gets a BENCH_SIZE_MB (default 1024) MiB
// disk of random bytes. Three clients export that disk, in alternation for BENCH_ROUNDS (default 3) rounds:
//  (a) curl:        the limit. A lease is made here with the project's SOAP code (openSession, ExportVm,
//                   waitForLease); `curl -k -s -g -o FILE URL` of the disk's device URL is timed; then the lease is
//                   aborted (-g: the URL's path holds "[...]", which curl would otherwise read as a glob).
//  (b) govc:        `govc export.ovf -vm NAME DIR` (VMware's CLI: session, lease, download, descriptor), and
//                   `govc export.ovf -sha 256` (also writes a SHA-256 .mf: the like-for-like peer; printed, not a target).
//  (c) hypervisord: the real daemon (spawnDaemon), a vsphere job over gRPC (parallel_downloads default), timed
//                   from SubmitJob until GetJob (polled every 50 ms) says COMPLETED; result.duration_seconds is
//                   printed beside it, and the exported disk's SHA-256 is checked against the source's.
// Targets: hypervisord >= 0.9x curl, and faster than govc (medians, end-to-end wall time).
// Then (export-running.ts) the same VM exported running (through a snapshot) beside powered off (direct), target
// <= 1.1x, and a folder of 8 VMs (a second vcsim, -folder 1 -vm 4) as one batch beside one VM after another.
// BENCH_ONLY=running runs only these last rows.
// For diagnosis the daemon's own log splits each job: the time before the disk's download started (session,
// ExportVm, lease, HttpNfcLeaseGetManifest) and the download itself ("download finished" seconds).
// Throughput is MiB/s (1 MiB = 1048576 bytes) of the disk's size over the timed wall time.
// CPU seconds (user+sys) of the client (curl/govc/daemon) and of vcsim during each run are printed too, from /proc:
// on 2 cores they tell whose CPU was the limit.
import { execFile, execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import { once } from "node:events";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { pino } from "pino";
import { JobState } from "../../gen/hypervisord/v1/job_pb.js";
import { abortLease, waitForLease } from "../../src/providers/vsphere/lease.ts";
import { openSession } from "../../src/providers/vsphere/session.ts";
import { child, moRefOf } from "../../src/providers/vsphere/xml.ts";
import { createGrpcJsClient, type GrpcJsClient } from "../support/clients.ts";
import { spawnDaemon, type DaemonProcess } from "../support/daemon-process.ts";
import { tempDir } from "../support/temp-dir.ts";
import { buildGovc, startVcsim, type Vcsim, type VcsimVm } from "../support/vcsim.ts";
import { cpuSeconds, envNumber, fixed, median } from "./bench-utils.ts";
import { fleetRows, snapshotRows } from "./export-running.ts";

const MiB = 1024 * 1024;
const SIZE = Math.round(envNumber("BENCH_SIZE_MB", 1024) * MiB);
const ROUNDS = Math.round(envNumber("BENCH_ROUNDS", 3));
const TARGET_VS_CURL = 0.9;
const POLL_MS = 50;
const JOB_TIMEOUT_MS = 15 * 60_000;
/** The folder rows: VMs of FLEET_SIZE_MB (default 128) MiB each, in a folder of 8. */
const FLEET_SIZE = Math.round(envNumber("FLEET_SIZE_MB", 128) * MiB);
/** "running": only the running-VM and folder rows (issue 13), without curl and govc. */
const ONLY = process.env.BENCH_ONLY ?? "";

type Client = "curl" | "govc" | "govc -sha 256" | "hypervisord";
interface Run {
  round: number;
  client: Client;
  seconds: number;
  /** hypervisord only: the job's own result.duration_seconds. */
  jobSeconds?: number;
  /** hypervisord only, from its log: "export started" until the disk's "download started" (session, lease, manifest). */
  setupSeconds?: number;
  /** hypervisord only, from its log: the disk's "download finished" seconds (GET, SHA-256, writes, fdatasync). */
  downloadSeconds?: number;
  clientCpu: number;
  vcsimCpu: number;
  note?: string;
}

const execFileAsync = promisify(execFile);
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const mibps = (seconds: number) => SIZE / MiB / seconds;

/** BENCH_SIZE_MB of random bytes: 64 MiB of randomBytes repeated, each block starting with its own 8-byte counter. Returns the SHA-256. */
async function writeDisk(file: string): Promise<string> {
  const BLOCK = 64 * MiB;
  const block = randomBytes(Math.min(BLOCK, SIZE));
  const hash = createHash("sha256");
  const out = fs.createWriteStream(file, { highWaterMark: 4 * MiB });
  const put = async (chunk: Buffer) => {
    hash.update(chunk);
    if (!out.write(chunk)) await once(out, "drain");
  };
  for (let offset = 0, counter = 0n; offset < SIZE; offset += BLOCK, counter++) {
    const length = Math.min(BLOCK, SIZE - offset);
    const head = Buffer.alloc(Math.min(8, length));
    const counterBytes = Buffer.alloc(8);
    counterBytes.writeBigUInt64BE(counter ^ 0x9e3779b97f4a7c15n);
    counterBytes.copy(head, 0, 0, head.length);
    await put(head);
    if (length > 8) await put(block.subarray(8, length));
  }
  out.end();
  await once(out, "finish");
  return hash.digest("hex");
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 4 * MiB })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Runs `fn` and returns its wall time and the CPU seconds it cost: the child processes it waited for (or `pid`), and vcsim. */
async function measured(sim: Vcsim, fn: () => Promise<void>, pid?: number) {
  const cpu = () => (pid === undefined ? cpuSeconds("self", true) - cpuSeconds("self") : cpuSeconds(pid));
  const cpu0 = cpu();
  const sim0 = cpuSeconds(sim.child.pid!);
  const started = performance.now();
  await fn();
  const seconds = (performance.now() - started) / 1000;
  return { seconds, clientCpu: cpu() - cpu0, vcsimCpu: cpuSeconds(sim.child.pid!) - sim0 };
}

// ---------------------------------------------------------------------------------------------
// The three clients

const logger = pino({ level: "warn" });
const connection = (sim: Vcsim) => ({ url: sim.url, username: "user", password: "pass", insecure: true, thumbprint: "" });

async function runCurl(round: number, sim: Vcsim, vm: VcsimVm, work: string): Promise<Run> {
  const signal = AbortSignal.timeout(JOB_TIMEOUT_MS);
  const session = await openSession(connection(sim), { maxConnections: 4, logger }, signal);
  const target = path.join(work, "curl-disk.vmdk");
  try {
    const lease = moRefOf(child(await session.call("ExportVm", [["_this", { type: "VirtualMachine", value: vm.moref }]], signal), "returnval"));
    if (!lease) throw new Error(`ExportVm on ${vm.moref} returned no lease`);
    try {
      const info = await waitForLease(session, lease, signal);
      const disk = info.devices.find((d) => d.disk);
      if (!disk) throw new Error(`the lease lists no disk: ${JSON.stringify(info.devices)}`);
      const m = await measured(sim, async () => {
        await execFileAsync("curl", ["-k", "-s", "-S", "-f", "-g", "-o", target, disk.url], { timeout: JOB_TIMEOUT_MS });
      });
      const size = fs.statSync(target).size;
      if (size !== SIZE) throw new Error(`curl wrote ${size} bytes, expected ${SIZE}`);
      return { round, client: "curl", ...m };
    } finally {
      await abortLease(session, lease);
    }
  } finally {
    await session.close();
    fs.rmSync(target, { force: true });
  }
}

async function runGovc(round: number, sim: Vcsim, vm: VcsimVm, work: string, govc: string, sha256 = false): Promise<Run> {
  const outDir = path.join(work, `govc-${round}`);
  try {
    const env = { ...process.env, GOVC_URL: sim.url, GOVC_USERNAME: "user", GOVC_PASSWORD: "pass", GOVC_INSECURE: "1" };
    const m = await measured(sim, async () => {
      await execFileAsync(govc, ["export.ovf", ...(sha256 ? ["-sha", "256"] : []), "-vm", vm.name, outDir], { env, timeout: JOB_TIMEOUT_MS, maxBuffer: 64 * MiB });
    });
    const vmdks = findFiles(outDir, ".vmdk");
    const sizes = vmdks.map((f) => fs.statSync(f).size);
    if (!sizes.includes(SIZE)) throw new Error(`govc wrote no ${SIZE}-byte disk: ${JSON.stringify(vmdks.map((f, i) => [f, sizes[i]]))}`);
    if (sha256 && findFiles(outDir, ".mf").length === 0) throw new Error("govc -sha 256 wrote no .mf");
    return { round, client: sha256 ? "govc -sha 256" : "govc", ...m };
  } finally {
    fs.rmSync(outDir, { recursive: true, force: true });
  }
}

async function runDaemon(round: number, sim: Vcsim, vm: VcsimVm, daemon: DaemonProcess, client: GrpcJsClient, sourceSha256: string): Promise<Run> {
  const outputDir = `bench-${round}`;
  let job: Awaited<ReturnType<typeof pollJob>> | undefined;
  try {
    const m = await measured(sim, async () => {
      const { job: submitted } = await client.unary("submitJob", {
        definition: { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir, name: `bench-export-${round}-${Date.now()}` } as never,
      });
      job = await pollJob(client, submitted!.id);
    }, daemon.child.pid!);
    if (job!.state !== JobState.COMPLETED) throw new Error(`job ${job!.id} ended ${JobState[job!.state]}: ${job!.error?.message}`);
    const diskName = job!.result!.files.find((f) => f.path.endsWith(".vmdk"))?.path;
    if (!diskName) throw new Error(`job ${job!.id} lists no disk: ${JSON.stringify(job!.result!.files.map((f) => f.path))}`);
    const diskPath = path.join(job!.result!.outputDir, diskName);
    const onDisk = await sha256File(diskPath);
    let note = "sha256 ok";
    if (onDisk !== sourceSha256) {
      note = "SHA-256 MISMATCH";
      console.error(`\n!!!!! SHA-256 MISMATCH in round ${round}: the exported disk ${diskPath} has ${onDisk}, the source ${sourceSha256} !!!!!\n`);
      process.exitCode = 1;
    }
    const reported = job!.result!.files.find((f) => f.path === diskName)?.sha256;
    if (reported !== onDisk) {
      note += `; the job reports ${reported}`;
      console.error(`\n!!!!! round ${round}: the job reports sha256 ${reported} for ${diskName}, the file has ${onDisk} !!!!!\n`);
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

async function pollJob(client: GrpcJsClient, id: string) {
  const deadline = Date.now() + JOB_TIMEOUT_MS;
  for (;;) {
    const { job } = await client.unary("getJob", { jobId: id });
    if (job!.state === JobState.COMPLETED || job!.state === JobState.FAILED || job!.state === JobState.CANCELLED) return job!;
    if (Date.now() > deadline) throw new Error(`job ${id} still ${JobState[job!.state]} after ${JOB_TIMEOUT_MS} ms`);
    await sleep(POLL_MS);
  }
}

function findFiles(dir: string, suffix: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith(suffix))
    .map((e) => path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name));
}

// ---------------------------------------------------------------------------------------------

function machineContext(): Record<string, unknown> {
  const cpus = os.cpus();
  let curl = "";
  try {
    curl = execFileSync("curl", ["--version"], { encoding: "utf8" }).split("\n")[0]!;
  } catch {
    curl = "unavailable";
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
  };
}

async function main(): Promise<void> {
  const context = machineContext();
  console.log(`machine: ${JSON.stringify(context)}`);
  const { govc, reason } = await buildGovc();
  if (reason || !govc) throw new Error(reason ?? "build.sh --with-govc printed no govc path");

  const work = tempDir("export-bench");
  let sim: Vcsim | undefined;
  let daemon: DaemonProcess | undefined;
  let client: GrpcJsClient | undefined;
  const runs: Run[] = [];
  let running: Awaited<ReturnType<typeof snapshotRows>> | undefined;
  let fleet: Awaited<ReturnType<typeof fleetRows>> | undefined;
  try {
    sim = await startVcsim();
    const vm = sim.vms[0]!;
    const diskFile = vm.disks[0]!.file;
    let started = performance.now();
    const sourceSha256 = await writeDisk(diskFile);
    console.log(`vcsim ${sim.url}, VM ${vm.name} (${vm.moref}); wrote ${SIZE / MiB} MiB into ${diskFile} in ${((performance.now() - started) / 1000).toFixed(1)} s, sha256 ${sourceSha256}`);

    started = performance.now();
    // Four jobs at once, so that the folder rows can run VMs side by side (the single-VM rows run one job at a time).
    daemon = await spawnDaemon({ args: ["--max-concurrent-jobs", "4"] });
    client = createGrpcJsClient(daemon.grpcAddress);
    console.log(`daemon pid ${daemon.child.pid} ready in ${((performance.now() - started) / 1000).toFixed(1)} s; ${ROUNDS} rounds of curl, govc, hypervisord; MiB/s = ${MiB} bytes/s\n`);

    for (let round = 1; round <= (ONLY === "running" ? 0 : ROUNDS); round++) {
      for (const run of [
        () => runCurl(round, sim!, vm, work),
        () => runGovc(round, sim!, vm, work, govc),
        () => runGovc(round, sim!, vm, work, govc, true),
        () => runDaemon(round, sim!, vm, daemon!, client!, sourceSha256),
      ]) {
        const result = await run();
        runs.push(result);
        const job = result.jobSeconds !== undefined
          ? `, job duration ${fixed(result.jobSeconds, 2)} s = ${fixed(mibps(result.jobSeconds))} MiB/s` +
            ` (before the download ${fixed(result.setupSeconds, 2)} s, download ${fixed(result.downloadSeconds, 2)} s = ${fixed(mibps(result.downloadSeconds ?? NaN))} MiB/s)`
          : "";
        console.log(
          `round ${round} ${result.client.padEnd(11)} ${fixed(result.seconds, 2).padStart(6)} s  ${fixed(mibps(result.seconds)).padStart(7)} MiB/s` +
            `  cpu: client ${fixed(result.clientCpu, 2)} s, vcsim ${fixed(result.vcsimCpu, 2)} s${job}${result.note ? ` [${result.note}]` : ""}`,
        );
      }
    }
    console.log(`\nrunning VM (snapshot) vs powered off (direct): ${ROUNDS} rounds each, alternating`);
    running = await snapshotRows(sim, vm, daemon, client, sourceSha256, SIZE, ROUNDS);
    await sim.stop();
    sim = await startVcsim(["-folder", "1", "-vm", "4"]);
    fleet = await fleetRows(sim, daemon, client, FLEET_SIZE);
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
  if (runs.length > 0) report(runs, context);
  console.log(JSON.stringify({ bench: "export-running", sizeMiB: SIZE / MiB, rounds: ROUNDS, snapshotVsDirect: running, folder: fleet }));
}

function report(runs: Run[], context: Record<string, unknown>): void {
  const of = (client: Client) => runs.filter((r) => r.client === client);
  const rate = (client: Client) => of(client).map((r) => mibps(r.seconds));
  const curl = median(rate("curl"));
  const govc = median(rate("govc"));
  const hvd = median(rate("hypervisord"));
  const hvdJob = median(of("hypervisord").map((r) => mibps(r.jobSeconds!)));

  const header = ["client", ...Array.from({ length: ROUNDS }, (_, i) => `round ${i + 1}`), "median MiB/s", "median s", "client cpu s", "vcsim cpu s"];
  const rows: string[][] = [];
  const row = (label: string, values: number[], seconds: number[], clientCpu: number[], vcsimCpu: number[]) =>
    rows.push([label, ...values.map((v) => fixed(v)), fixed(median(values)), fixed(median(seconds), 2), fixed(median(clientCpu), 2), fixed(median(vcsimCpu), 2)]);
  for (const client of ["curl", "govc", "govc -sha 256", "hypervisord"] as const) {
    row(client, rate(client), of(client).map((r) => r.seconds), of(client).map((r) => r.clientCpu), of(client).map((r) => r.vcsimCpu));
  }
  row("hvd (job duration)", of("hypervisord").map((r) => mibps(r.jobSeconds!)), of("hypervisord").map((r) => r.jobSeconds!), [], []);
  // Diagnosis, not a target: the disk's download alone (log), and the time before it started (session, lease, manifest).
  const downloads = of("hypervisord").map((r) => r.downloadSeconds ?? NaN);
  row("hvd (download phase)", downloads.map(mibps), downloads, [], []);
  const setups = of("hypervisord").map((r) => r.setupSeconds ?? NaN);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  console.log(`\nthroughput in MiB/s (1 MiB = 1048576 bytes) of a ${SIZE / MiB} MiB disk, wall time per run; ${ROUNDS} rounds`);
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const r of rows) console.log(line(r));
  console.log(`hypervisord before its download started (session, ExportVm, lease, HttpNfcLeaseGetManifest): ${setups.map((v) => fixed(v, 2)).join(", ")} s`);

  const vsCurl = hvd / curl;
  const vsGovc = hvd / govc;
  const verdict = (ok: boolean) => (ok ? "PASS" : "MISS");
  console.log("");
  console.log(`hypervisord/curl = ${vsCurl.toFixed(2)} (target >= ${TARGET_VS_CURL}): ${verdict(vsCurl >= TARGET_VS_CURL)}` +
    `   [job duration: ${(hvdJob / curl).toFixed(2)}]`);
  console.log(`hypervisord/govc = ${vsGovc.toFixed(2)} (target > 1, faster than govc): ${verdict(vsGovc > 1)}` +
    `   [job duration: ${(hvdJob / govc).toFixed(2)}]`);
  const govcSha = median(rate("govc -sha 256"));
  console.log(`hypervisord/(govc -sha 256) = ${(hvd / govcSha).toFixed(2)} (like for like: both write a SHA-256 .mf; not a target)`);
  const mismatches = of("hypervisord").filter((r) => r.note !== "sha256 ok").length;
  if (mismatches) console.log(`!!! ${mismatches} hypervisord run(s) with a SHA-256 mismatch`);

  console.log(JSON.stringify({
    bench: "export",
    unit: "MiB/s",
    sizeMiB: SIZE / MiB,
    rounds: ROUNDS,
    machine: { cpus: context.cpus, node: context.node, loadavg: context.loadavg },
    perRound: Object.fromEntries((["curl", "govc", "govc -sha 256", "hypervisord"] as const).map((c) => [c, rate(c).map((v) => Number(v.toFixed(1)))])),
    hypervisordJobDuration: of("hypervisord").map((r) => Number(mibps(r.jobSeconds!).toFixed(1))),
    hypervisordDownloadPhase: downloads.map((v) => Number(mibps(v).toFixed(1))),
    hypervisordSecondsBeforeDownload: setups.map((v) => Number(v.toFixed(2))),
    median: {
      curl: Number(curl.toFixed(1)), govc: Number(govc.toFixed(1)), govcSha256: Number(govcSha.toFixed(1)), hypervisord: Number(hvd.toFixed(1)),
      hypervisordJobDuration: Number(hvdJob.toFixed(1)), hypervisordDownloadPhase: Number(median(downloads.map(mibps)).toFixed(1)),
    },
    ratio: { hypervisordVsCurl: Number(vsCurl.toFixed(3)), hypervisordVsGovc: Number(vsGovc.toFixed(3)), hypervisordVsGovcSha256: Number((hvd / govcSha).toFixed(3)) },
    target: { vsCurl: TARGET_VS_CURL, vsGovc: 1 },
    pass: { vsCurl: vsCurl >= TARGET_VS_CURL, vsGovc: vsGovc > 1 },
    sha256Mismatches: mismatches,
  }));
}

try {
  await main();
} catch (err) {
  console.error(err);
  process.exitCode = 1;
}
