// Download benchmark: downloadFiles (stream + SHA-256 + writes + a final fdatasync) against
// `curl -s -o FILE URL` on the same local URL, to check that the pipeline is not the bottleneck.
// A measurement, not a test. curl does not sync, so "curl+sync" (curl, then fdatasync of the file)
// is the like-for-like figure; plain curl is printed beside it.
//
// The server runs in its own process (this file with --serve) so that neither client shares its
// event loop; it sends BENCH_SIZE_MIB (default 512) MiB generated in memory (1 MiB of random bytes
// repeated). The clients alternate for BENCH_ROUNDS (default 5) rounds; medians are reported.
//   node --import tsx test/bench/download.bench.ts
import { execFile, spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { randomBytes } from "node:crypto";
import { open } from "node:fs/promises";
import { PerformanceObserver } from "node:perf_hooks";
import { promisify } from "node:util";
import { Agent } from "undici";
import { downloadFiles } from "../../src/transfer/download.ts";

const MiB = 1024 * 1024;
const SIZE = Number(process.env.BENCH_SIZE_MIB || 512) * MiB;
const ROUNDS = Number(process.env.BENCH_ROUNDS || 5);

if (process.argv.includes("--serve")) serve();
else await bench();

function serve(): void {
  const block = randomBytes(MiB);
  const server = http.createServer(async (req, res) => {
    res.writeHead(200, { "content-length": SIZE, "content-type": "application/octet-stream" });
    for (let sent = 0; sent < SIZE && !res.destroyed; sent += MiB) {
      if (!res.write(block)) await new Promise((resolve) => res.once("drain", resolve));
    }
    res.end();
  });
  server.listen(0, "127.0.0.1", () => console.log((server.address() as AddressInfo).port));
}

async function bench(): Promise<void> {
  const child = spawn(process.execPath, [...process.execArgv, import.meta.filename, "--serve"], { stdio: ["ignore", "pipe", "inherit"] });
  const [line] = await readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]().next().then((r) => [r.value as string]);
  const url = `http://127.0.0.1:${Number(line)}/disk.vmdk`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hypervisord-download-bench-"));
  const agent = new Agent();
  const target = path.join(dir, "disk.vmdk");
  const mbps = (ms: number) => SIZE / 1e6 / (ms / 1000);
  const results = { downloadFiles: [] as number[], "curl+sync": [] as number[], curl: [] as number[] };
  // CPU seconds of this process (the client) and GC counts by kind, for downloadFiles runs only.
  const cpuPerRun: number[] = [];
  const gc = { minor: 0, major: 0, other: 0, ms: 0 };
  let counting = false;
  const observer = new PerformanceObserver((list) => {
    if (!counting) return;
    for (const entry of list.getEntries()) {
      const kind = (entry as { detail?: { kind?: number } }).detail?.kind;
      if (kind === 1) gc.minor++; // NODE_PERFORMANCE_GC_MINOR
      else if (kind === 4) gc.major++; // NODE_PERFORMANCE_GC_MAJOR
      else gc.other++;
      gc.ms += entry.duration;
    }
  });
  observer.observe({ entryTypes: ["gc"] });
  const curl = async (sync: boolean) => {
    const started = performance.now();
    await promisify(execFile)("curl", ["-s", "-o", target, url]);
    if (sync) {
      const handle = await open(target, "r+");
      await handle.datasync();
      await handle.close();
    }
    const ms = performance.now() - started;
    if (fs.statSync(target).size !== SIZE) throw new Error("curl wrote a short file");
    fs.rmSync(target);
    return mbps(ms);
  };
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      let started = performance.now();
      const cpuBefore = process.cpuUsage();
      counting = true;
      const [file] = await downloadFiles([{ name: "disk.vmdk", url, path: target, size: SIZE }], {
        dispatcher: agent, parallel: 1, bandwidthLimit: 0, signal: new AbortController().signal,
      });
      results.downloadFiles.push(mbps(performance.now() - started));
      const cpu = process.cpuUsage(cpuBefore);
      cpuPerRun.push((cpu.user + cpu.system) / 1e6);
      await new Promise((resolve) => setImmediate(resolve)); // let the observer see the last GCs
      counting = false;
      fs.rmSync(target);
      results["curl+sync"].push(await curl(true));
      results.curl.push(await curl(false));
      const figures = Object.entries(results).map(([name, values]) => `${name} ${values.at(-1)!.toFixed(0)} MB/s`).join(", ");
      console.log(`round ${round}: ${figures}, downloadFiles cpu ${cpuPerRun.at(-1)!.toFixed(2)} s (sha256 ${file!.sha256.slice(0, 12)}…)`);
    }
    const [ours, curlSync, curlPlain] = Object.values(results).map(median) as [number, number, number];
    console.log(
      `median of ${ROUNDS}, ${SIZE / MiB} MiB: downloadFiles ${ours.toFixed(0)} MB/s, curl+sync ${curlSync.toFixed(0)} MB/s, curl ${curlPlain.toFixed(0)} MB/s; ` +
        `ratio to curl+sync ${(ours / curlSync).toFixed(2)}, to curl ${(ours / curlPlain).toFixed(2)}`,
    );
    console.log(
      `downloadFiles: median cpu ${median(cpuPerRun).toFixed(2)} s per ${SIZE / MiB} MiB (process user+sys, incl. GC and thread-pool threads); ` +
        `GC over ${ROUNDS} runs: ${gc.minor} minor, ${gc.major} major, ${gc.other} other, ${gc.ms.toFixed(0)} ms total pause`,
    );
  } finally {
    observer.disconnect();
    child.kill();
    await agent.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
