// bench:export with BENCH_PROFILE=1: one more hypervisord export of the main disk, by a daemon of its own started
// with `node --cpu-prof` (so the profiler's cost stays out of the measured rows), stopped with SIGTERM (the
// profiles are written on its clean exit, one per thread), then the top self-time entries of each.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createGrpcJsClient } from "../support/clients.ts";
import { spawnDaemon } from "../support/daemon-process.ts";
import type { Vcsim, VcsimVm } from "../support/vcsim.ts";
import { fixed } from "./bench-utils.ts";
import { formatSummary, readProfile, summarizeProfiles, type ProfileWindow } from "./cpu-profile-top.ts";
import { sha256File } from "./export-disk-data.ts";
import { connection, exportedDisks, runJob } from "./export-job.ts";
import { measured } from "./export-measure.ts";
import type { Pinning } from "./export-pinning.ts";

const MiB = 1024 * 1024;
const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

export async function profileRun(sim: Vcsim, vm: VcsimVm, pinning: Pinning, sourceSha256: string, sizeBytes: number) {
  // Kept after the bench (printed), for DevTools or a second look; BENCH_PROFILE_DIR chooses where.
  // (Not tempDir: that one is removed when the bench ends.)
  const dir = process.env.BENCH_PROFILE_DIR ? path.resolve(process.env.BENCH_PROFILE_DIR) : fs.mkdtempSync(path.join(os.tmpdir(), "hvd-export-cpu-prof-"));
  fs.mkdirSync(dir, { recursive: true });
  const before = new Set(fs.readdirSync(dir));
  const daemon = await spawnDaemon({ nodeArgs: ["--cpu-prof", "--cpu-prof-dir", dir] });
  const client = createGrpcJsClient(daemon.grpcAddress);
  // The job's span on V8's clock: the profiles cover the daemon's whole life (start-up, tsx compiling the sources).
  const window: ProfileWindow = { fromUs: NaN, toUs: NaN };
  let code: number | null;
  let m;
  let ok = false;
  try {
    pinning.pinClient(daemon.child.pid!);
    let job: Awaited<ReturnType<typeof runJob>> | undefined;
    m = await measured(sim.child.pid!, async () => {
      window.fromUs = monotonicUs();
      job = await runJob(client, { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "profiled", name: `bench-profile-${Date.now()}` });
      window.toUs = monotonicUs();
    }, daemon.child.pid!);
    const disk = exportedDisks(job!)[0];
    ok = disk !== undefined && sha256File(disk.file) === sourceSha256;
    if (!ok) process.exitCode = 1;
  } finally {
    client.close();
    code = await daemon.stop();
    fs.rmSync(daemon.dataDir, { recursive: true, force: true });
    fs.rmSync(daemon.outputRoot, { recursive: true, force: true });
  }
  const files = fs.readdirSync(dir).filter((f) => f.endsWith(".cpuprofile") && !before.has(f)).map((f) => path.join(dir, f));
  console.log(`\nprofiled export (node --cpu-prof, its own daemon): ${fixed(m.seconds, 2)} s = ${fixed(sizeBytes / MiB / m.seconds)} MiB/s, ` +
    `daemon cpu ${fixed(m.clientCpu, 2)} s (with the profiler's cost) [${ok ? "sha256 ok" : "SHA-256 MISMATCH"}]; daemon exited with ${code}; ` +
    `${files.length} profile(s) in ${dir}`);
  if (files.length === 0) {
    console.log("no .cpuprofile written: the daemon did not exit cleanly");
    return { dir, files: [], exitCode: code };
  }
  // Largest first: the thread that did the most work.
  const profiles = files.map((file) => ({ file, profile: readProfile(file) })).sort((a, b) => fs.statSync(b.file).size - fs.statSync(a.file).size);
  console.log(`top self time within the job's span (SubmitJob until GetJob said COMPLETED: --from ${window.fromUs} --to ${window.toUs} on V8's clock), per JS thread ` +
    "(libuv's pool and V8's GC helpers are not sampled: the daemon's cpu above includes them):");
  const summaries = profiles.map(({ file, profile }) => ({ file, summary: summarizeProfiles([profile], 10, window) }));
  for (const { file, summary } of summaries) console.log(`\n${formatSummary(path.basename(file), summary)}`);
  const merged = profiles.length > 1 ? summarizeProfiles(profiles.map((p) => p.profile), 10, window) : undefined;
  if (merged) console.log(`\n${formatSummary(`all ${profiles.length} threads`, merged)}`);
  return {
    dir, exitCode: code, seconds: Number(m.seconds.toFixed(2)), window,
    threads: summaries.map(({ file, summary }) => ({
      file: path.basename(file), busyMs: Math.round(summary.busyMs),
      top: summary.top.map((e) => ({ function: e.functionName, at: e.location, selfMs: Number(e.selfMs.toFixed(1)), percent: Number(e.percent.toFixed(1)) })),
    })),
  };
}
