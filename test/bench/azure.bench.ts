// bench:azure: the page-blob data path against Azurite (Microsoft's storage emulator, disk persistence in a temp dir).
// A 1 GiB page blob (BENCH_AZURE_MIB) with 25% of its 4 MiB extents written (random bytes, random places), read by
//   (a) hypervisord's downloadPageBlobs (ranges only, 8 requests in flight, SHA-256 on the way, sparse file, fdatasync),
//   (b) curl of the whole SAS URL (the naive full read: holes come over the wire as zeros),
//   (c) the naive ranges-only read: one GET per page range in turn, written at its offset,
// taking turns, BENCH_ROUNDS (3) rounds, medians. Azurite on one core, every client on another (taskset; BENCH_PIN=0
// disables). MB/s are of LOGICAL disk (the blob's size / seconds). A measurement, not a test.
//   npm run bench:azure
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startAzurite } from "../support/azurite.ts";
import { makeBenchBlob } from "./azure-blob.ts";
import { curlFullRow, hypervisordRow, rangesOnlyRow, type BenchRow, type RowRunner } from "./azure-rows.ts";
import { envNumber, fixed, median } from "./bench-utils.ts";
import { createPinning } from "./export-pinning.ts";

const MiB = 1024 * 1024;
const DISK_BYTES = envNumber("BENCH_AZURE_MIB", 1024) * MiB;
const ROUNDS = envNumber("BENCH_ROUNDS", 3);
const FRACTION = 0.25;

const ROWS: { name: string; run: RowRunner }[] = [
  { name: "hypervisord (downloadPageBlobs)", run: hypervisordRow },
  { name: "curl, whole blob", run: curlFullRow },
  { name: "ranges only, one GET at a time", run: rangesOnlyRow },
];

const pinning = createPinning();
const azurite = await startAzurite();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hypervisord-azure-bench-"));
try {
  pinning.pinSimulator(azurite.child.pid!);
  console.log(`bench:azure: ${pinning.description}`);
  const made = performance.now();
  const blob = await makeBenchBlob(azurite, { diskBytes: DISK_BYTES, fraction: FRACTION });
  const sas = new URL(blob.url);
  console.log(`page blob ${sas.origin}${sas.pathname}: ${blob.size} bytes, ${blob.extents} extents of 4 MiB written (${(blob.dataBytes / MiB).toFixed(1)} MiB of data), `
    + `made in ${((performance.now() - made) / 1000).toFixed(1)} s; Azurite with disk persistence; ${ROUNDS} rounds, rows taking turns\n`);

  const runs = new Map<string, BenchRow[]>(ROWS.map((row) => [row.name, []]));
  for (let round = 1; round <= ROUNDS; round++) {
    for (const row of ROWS) {
      const target = path.join(dir, "disk.vhd");
      fs.rmSync(target, { force: true });
      const result = await row.run({ url: blob.url, pinning }, target);
      const ok = result.sha256 === blob.sha256;
      runs.get(row.name)!.push(result);
      console.log(`round ${round} ${row.name}: ${result.seconds.toFixed(2)} s, ${(result.bytesMoved / MiB).toFixed(1)} MiB moved, `
        + `${result.cpuSeconds.toFixed(2)} CPU-s${result.maxRssMiB ? `, max RSS ${result.maxRssMiB.toFixed(0)} MiB` : ""}, sha256 ${ok ? "ok" : `MISMATCH ${result.sha256}`}`);
      if (!ok) process.exitCode = 1;
      fs.rmSync(target, { force: true });
    }
  }

  const summary = ROWS.map((row) => {
    const results = runs.get(row.name)!;
    const seconds = median(results.map((r) => r.seconds));
    return {
      name: row.name,
      seconds,
      mbps: blob.size / 1e6 / seconds,
      moved: median(results.map((r) => r.bytesMoved)),
      cpu: median(results.map((r) => r.cpuSeconds)),
      ok: results.every((r) => r.sha256 === blob.sha256),
    };
  });
  console.log(`\n| client | seconds | MB/s of logical disk | MiB moved | client CPU-s | sha256 |`);
  console.log(`| --- | ---: | ---: | ---: | ---: | --- |`);
  for (const s of summary) {
    console.log(`| ${s.name} | ${fixed(s.seconds, 2)} | ${fixed(s.mbps, 0)} | ${fixed(s.moved / MiB, 1)} | ${fixed(s.cpu, 2)} | ${s.ok ? "ok" : "MISMATCH"} |`);
  }
  const [hv, curl, ranges] = summary as [typeof summary[0], typeof summary[0], typeof summary[0]];
  console.log(`\nmedians of ${ROUNDS}: hypervisord ${fixed(curl.seconds / hv.seconds, 2)}x the speed of curl's full read `
    + `(${fixed(curl.moved / hv.moved, 1)}x fewer bytes moved), ${fixed(ranges.seconds / hv.seconds, 2)}x the speed of the sequential ranges-only read; `
    + `CPU-s ${fixed(hv.cpu, 2)} (hashes the whole logical ${(blob.size / MiB).toFixed(0)} MiB) vs curl ${fixed(curl.cpu, 2)} vs ranges-only ${fixed(ranges.cpu, 2)} (no hash)`);
} finally {
  await azurite.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
