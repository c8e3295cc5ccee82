// The rows of bench:azure, one function each, all of the same shape: run once into `target`, return what it cost.
// Another row (a whole daemon export) only needs to return a BenchRow too.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import path from "node:path";
import { cpuSeconds } from "./bench-utils.ts";
import type { Pinning } from "./export-pinning.ts";

export interface BenchRow {
  /** Wall-clock seconds of the transfer. */
  seconds: number;
  /** Body bytes that came over the wire. */
  bytesMoved: number;
  /** Client CPU seconds (user + system, every thread). */
  cpuSeconds: number;
  /** Of the file written (computed after the run, not timed). */
  sha256: string;
  /** Peak RSS of the client process, when known. */
  maxRssMiB?: number;
}

export interface RowContext {
  /** The blob's read SAS URL. */
  url: string;
  pinning: Pinning;
}

export type RowRunner = (context: RowContext, target: string) => Promise<BenchRow>;

const CLIENT = path.join(import.meta.dirname, "azure-client.ts");

/** (a) downloadPageBlobs in a child node process; CPU and time as the child measured them around the call. */
export const hypervisordRow: RowRunner = async (context, target) => {
  const result = await nodeClient(context, "hypervisord", target);
  const onDisk = await fileSha256(target);
  if (result.sha256 !== onDisk) throw new Error(`hypervisord returned SHA-256 ${result.sha256} but its file hashes to ${onDisk}`);
  return { ...result, sha256: onDisk };
};

/** (c) the naive ranges-only read (one GET per range in turn) in a child node process. */
export const rangesOnlyRow: RowRunner = async (context, target) => ({ ...(await nodeClient(context, "ranges", target)), sha256: await fileSha256(target) });

/** (b) `curl -s -o FILE '<sas>'`: the whole blob, holes included. CPU from this process's reaped-children counters. */
export const curlFullRow: RowRunner = async (context, target) => {
  const before = cpuSeconds("self", true) - cpuSeconds("self");
  const [command, args] = context.pinning.client("curl", ["-s", "-S", "--fail", "-o", target, "-w", "%{size_download} %{time_total}", context.url]);
  const out = await run(command, args, {});
  const cpu = cpuSeconds("self", true) - cpuSeconds("self") - before;
  const [bytes, seconds] = out.trim().split(" ").map(Number) as [number, number];
  return { seconds, bytesMoved: bytes, cpuSeconds: cpu, sha256: await fileSha256(target) };
};

async function nodeClient(context: RowContext, mode: string, target: string): Promise<Omit<BenchRow, "sha256"> & { sha256?: string }> {
  const [command, args] = context.pinning.client(process.execPath, ["--import", "tsx", CLIENT, mode, target]);
  const out = await run(command, args, { BENCH_SAS: context.url });
  return JSON.parse(out.trim().split("\n").at(-1)!) as Omit<BenchRow, "sha256"> & { sha256?: string };
}

function run(command: string, args: string[], env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
    child.on("error", reject);
    // The SAS is on curl's command line: a failure message shows the command's name only.
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`${path.basename(args.find((a) => a.endsWith(".ts")) ?? command)} exited with ${code}: ${err.replace(/sig=[^&\s']*/g, "sig=REDACTED").slice(-2000)}`))));
  });
}

export async function fileSha256(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file, { highWaterMark: 4 * 1024 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}
