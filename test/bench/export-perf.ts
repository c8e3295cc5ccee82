// bench:export with BENCH_PERF=1: one more hypervisord export of the main disk by a daemon of its own, sampled by
// `perf record -p` over the job (every thread: the main thread, libuv's pool, V8's GC helpers, the kernel's work for
// them; --cpu-prof sees only JS threads). Node runs with --perf-basic-prof-only-functions so JS frames have names.
// Prints the top 10 by self time (object, symbol) and the split by thread.
import { execFile, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { createGrpcJsClient } from "../support/clients.ts";
import { spawnDaemon } from "../support/daemon-process.ts";
import type { Vcsim, VcsimVm } from "../support/vcsim.ts";
import { fixed } from "./bench-utils.ts";
import { sha256File } from "./export-disk-data.ts";
import { connection, exportedDisks, runJob } from "./export-job.ts";
import { measured } from "./export-measure.ts";
import type { Pinning } from "./export-pinning.ts";

const MiB = 1024 * 1024;

/** The first `top` sample lines of `perf report --stdio` sorted by `sort` ("  63.85%  node  [.] sym"). */
async function report(data: string, sort: string, top: number): Promise<string[]> {
  const { stdout } = await promisify(execFile)("perf", ["report", "-i", data, "--no-children", "--sort", sort, "--stdio"], { maxBuffer: 64 * MiB, timeout: 120_000 });
  return stdout.split("\n").filter((l) => /^\s*\d+\.\d+%/.test(l)).slice(0, top).map((l) => l.trimEnd());
}

export async function perfRun(sim: Vcsim, vm: VcsimVm, pinning: Pinning, sourceSha256: string, sizeBytes: number) {
  try {
    execFileSync("perf", ["--version"], { stdio: "ignore" });
  } catch {
    const reason = "perf is missing (Debian linux-perf)";
    console.log(`\nperf: SKIPPED: ${reason}`);
    return { skipped: reason };
  }
  // Kept after the bench (printed) for `perf report -i`; BENCH_PROFILE_DIR chooses where.
  const dir = process.env.BENCH_PROFILE_DIR ? path.resolve(process.env.BENCH_PROFILE_DIR) : fs.mkdtempSync(path.join(os.tmpdir(), "hvd-export-perf-"));
  fs.mkdirSync(dir, { recursive: true });
  const data = path.join(dir, `export-${Date.now()}.perf.data`);
  const daemon = await spawnDaemon({ nodeArgs: ["--perf-basic-prof-only-functions"] });
  const pid = daemon.child.pid!;
  const client = createGrpcJsClient(daemon.grpcAddress);
  let ok = false;
  let m;
  try {
    pinning.pinClient(pid);
    const recorder = spawn("perf", ["record", "-F", "999", "-p", String(pid), "-o", data], { stdio: ["ignore", "ignore", "pipe"] });
    const stderr: string[] = [];
    recorder.stderr!.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
    const exited = once(recorder, "exit");
    // perf says nothing once attached: give it a moment before the job starts.
    await new Promise((resolve) => setTimeout(resolve, 500));
    let job: Awaited<ReturnType<typeof runJob>> | undefined;
    try {
      m = await measured(sim.child.pid!, async () => {
        job = await runJob(client, { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "perf", name: `bench-perf-${Date.now()}` });
      }, pid);
    } finally {
      recorder.kill("SIGINT");
      const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];
      if (!(code === 0 || signal === "SIGINT") || !fs.existsSync(data)) throw new Error(`perf record ended with ${code ?? signal}: ${stderr.join("").trim()}`);
    }
    const disk = exportedDisks(job!)[0];
    ok = disk !== undefined && sha256File(disk.file) === sourceSha256;
    if (!ok) process.exitCode = 1;
  } catch (err) {
    fs.rmSync(`/tmp/perf-${pid}.map`, { force: true });
    if (!process.env.BENCH_PROFILE_DIR) fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  } finally {
    client.close();
    await daemon.stop();
    fs.rmSync(daemon.dataDir, { recursive: true, force: true });
    fs.rmSync(daemon.outputRoot, { recursive: true, force: true });
  }
  // perf report resolves JS frames through the map node wrote; it is removed after.
  let symbols: string[];
  let threads: string[];
  try {
    symbols = await report(data, "dso,sym", 10);
    // Node's threads are all "node" by name: the thread id tells them apart, the main thread's is the pid.
    threads = (await report(data, "pid", 8)).map((l) => (l.includes(` ${pid}:`) ? `${l} (main thread)` : l));
  } finally {
    fs.rmSync(`/tmp/perf-${pid}.map`, { force: true });
  }
  console.log(`\nperf (its own daemon, node --perf-basic-prof-only-functions, perf record -F 999 -p): ${fixed(m.seconds, 2)} s = ${fixed(sizeBytes / MiB / m.seconds)} MiB/s, ` +
    `daemon cpu ${fixed(m.clientCpu, 2)} s [${ok ? "sha256 ok" : "SHA-256 MISMATCH"}]; ${data} (perf report -i FILE)`);
  console.log("top 10 self time, every thread of the daemon (object, symbol):");
  for (const l of symbols) console.log(l);
  console.log("by thread (tid:name):");
  for (const l of threads) console.log(l);
  return { data, seconds: Number(m.seconds.toFixed(2)), daemonCpu: Number(m.clientCpu.toFixed(2)), top: symbols.map((l) => l.trim()), threads: threads.map((l) => l.trim()) };
}
