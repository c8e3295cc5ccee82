// A bench client in a process of its own, so that its CPU is its own (and it can be pinned): reads the SAS URL from
// BENCH_SAS, writes argv[3], prints one JSON line {seconds, bytesMoved, cpuSeconds, sha256?, maxRssMiB}.
//   hypervisord: downloadPageBlobs (ranges only, 8 in flight, SHA-256 on the way, sparse file, fdatasync)
//   ranges:      the naive ranges-only read: Get Page Ranges, then one GET per range in turn, each written at its offset
import { open } from "node:fs/promises";
import { downloadPageBlobs } from "../../src/providers/azure/page-blob.ts";

const [mode, target] = process.argv.slice(2) as [string, string];
const url = process.env.BENCH_SAS!;
const cpuBefore = process.cpuUsage();
const started = performance.now();
let bytesMoved = 0;
let sha256: string | undefined;

if (mode === "hypervisord") {
  const [result] = await downloadPageBlobs([{ name: "bench-disk.vhd", url, path: target }], {
    bandwidthLimit: 0,
    signal: new AbortController().signal,
    ...(process.env.BENCH_PARALLEL_RANGES ? { parallelRanges: Number(process.env.BENCH_PARALLEL_RANGES) } : {}),
  });
  bytesMoved = result!.dataBytes;
  sha256 = result!.sha256;
} else if (mode === "ranges") {
  const list = await fetch(`${url}&comp=pagelist`, { headers: { "x-ms-version": "2021-08-06" } });
  const size = Number(list.headers.get("x-ms-blob-content-length"));
  const xml = await list.text();
  const file = await open(target, "w");
  await file.truncate(size);
  for (const match of xml.matchAll(/<Start>(\d+)<\/Start><End>(\d+)<\/End>/g)) {
    const response = await fetch(url, { headers: { "x-ms-range": `bytes=${match[1]}-${match[2]}`, "x-ms-version": "2021-08-06" } });
    const body = Buffer.from(await response.arrayBuffer());
    await file.write(body, 0, body.length, Number(match[1]));
    bytesMoved += body.length;
  }
  await file.close();
} else {
  throw new Error(`unknown mode ${mode}`);
}

const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuBefore);
console.log(JSON.stringify({ seconds, bytesMoved, cpuSeconds: (cpu.user + cpu.system) / 1e6, sha256, maxRssMiB: process.resourceUsage().maxRSS / 1024 }));
