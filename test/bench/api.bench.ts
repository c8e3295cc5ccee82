// API benchmark of hypervisord over gRPC (npm run bench:api). A measurement, not a test:
// it prints figures with PASS/MISS against the targets and exits 0 unless something crashed.
//
//  (a) limit:  a no-op grpc-js server (test/bench/noop-server.ts, own process) answering SubmitJob
//              with a constant response through the daemon's ServiceDefinition;
//  (b) daemon: the real daemon (spawnDaemon, fake providers, --max-concurrent-jobs 4) under the
//              same SubmitJob load; (a) and (b) alternate for ROUNDS rounds, medians are reported;
//  (c) fan-out: StreamJobUpdates delivery latency (receipt time - the update's `time`) to SUBSCRIBERS
//              concurrent subscribers, spread over CHANNELS separate grpc-js connections, while jobs are
//              submitted at each of RATES per second by another client. The bench process and the daemon share the
//              machine: the CPU of each over the window is printed, to tell whose limit was reached. The target is judged
//              with grpc-js subscribers (what a client uses); the first rate is run again with subscribers on plain
//              node:http2 (gRPC framing by hand, a few us per message): the bench's own receiving cost, per message, is
//              printed for both, and the second figure is the daemon's delivery with that cost mostly taken out.
//
// Knobs (environment): BENCH_ROUNDS=3 BENCH_DURATION_MS=5000 BENCH_WARMUP_MS=1500 BENCH_CONCURRENCY=64
// BENCH_SUBSCRIBERS=1000 BENCH_CHANNELS=10 BENCH_RATES=5,20 BENCH_SUBMIT_MS=5000 BENCH_STREAM_WARMUP_JOBS=5 BENCH_SKIP_UNARY=1
// BENCH_SKIP_STREAM=1 BENCH_FULL_DECODE=1 (decode stream messages with fromBinary instead of a lean reader)
// BENCH_STREAM_CLIENT=http2 (subscribers on plain node:http2 instead of grpc-js: a cheaper receiver, for diagnosis)
// BENCH_RECEIVER_REFERENCE=0 (skip the extra run of the first rate with the node:http2 receiver; see (c))
// BENCH_CONNECTION_WINDOW=<bytes> (HTTP/2 receive window of each subscriber connection; 0 = grpc-js default 64 KiB)
// BENCH_VM="bench?size=1&chunk=1&delayMs=600000" (fake VM of the submitted jobs; this one parks them, isolating SubmitJob).
// BENCH_DAEMON_NODE_ARGS="--cpu-prof --cpu-prof-dir DIR" (node options of every daemon spawned, for profiling: each measured
// window is then printed as "profile window" with the daemon's pid and its monotonic bounds in µs, the clock of a
// .cpuprofile's startTime and timeDeltas, so that a profile can be cut to the window).
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import http2 from "node:http2";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import * as grpc from "@grpc/grpc-js";
import {
  HypervisordService, JobEventKind, StreamJobUpdatesRequestSchema, StreamJobUpdatesResponseSchema, SubmitJobRequestSchema,
  type StreamJobUpdatesRequest, type SubmitJobRequest,
} from "../../gen/hypervisord/v1/service_pb.js";
import { createGrpcJsClient, type GrpcJsClient } from "../support/clients.ts";
import { spawnDaemon, type DaemonProcess } from "../support/daemon-process.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");

const envInt = (name: string, fallback: number) => {
  const value = process.env[name];
  return value !== undefined && value !== "" && Number.isFinite(Number(value)) ? Number(value) : fallback;
};
const ROUNDS = envInt("BENCH_ROUNDS", 3);
const DURATION_MS = envInt("BENCH_DURATION_MS", 5000);
const WARMUP_MS = envInt("BENCH_WARMUP_MS", 1500);
const CONCURRENCY = envInt("BENCH_CONCURRENCY", 64);
const SUBSCRIBERS = envInt("BENCH_SUBSCRIBERS", 1000);
const CHANNELS = envInt("BENCH_CHANNELS", 10);
/** Stream load: jobs submitted per second (each: CREATED, RUNNING, COMPLETED to every subscriber); the target is judged at the first. */
const RATES = (process.env.BENCH_RATES ?? process.env.BENCH_RATE ?? "5,20").split(",").map(Number).filter((n) => n > 0);
const SUBMIT_MS = envInt("BENCH_SUBMIT_MS", 5000);
const STREAM_WARMUP_JOBS = envInt("BENCH_STREAM_WARMUP_JOBS", 5);
const SKIP_UNARY = process.env.BENCH_SKIP_UNARY === "1";
const SKIP_STREAM = process.env.BENCH_SKIP_STREAM === "1";
const FULL_DECODE = process.env.BENCH_FULL_DECODE === "1";
const STREAM_CLIENT: StreamClient = process.env.BENCH_STREAM_CLIENT === "http2" ? "http2" : "grpc-js";
const RECEIVER_REFERENCE = process.env.BENCH_RECEIVER_REFERENCE !== "0" && STREAM_CLIENT !== "http2";
type StreamClient = "grpc-js" | "http2";
/**
 * HTTP/2 receive window of each subscriber connection. 1,000 real subscribers would have 1,000 connections with
 * 64 KiB windows each; the bench multiplexes them over CHANNELS connections, so by default each gets the windows
 * of the subscribers it carries (BENCH_CONNECTION_WINDOW=0: the library default, 64 KiB per connection).
 */
const CONNECTION_WINDOW = envInt("BENCH_CONNECTION_WINDOW", Math.ceil(SUBSCRIBERS / CHANNELS) * 65_535);

const TARGET_RATIO = 0.8;
const TARGET_P99_MS = 100;
const DAEMON_ARGS = ["--max-concurrent-jobs", "4"];
const DAEMON_NODE_ARGS = (process.env.BENCH_DAEMON_NODE_ARGS ?? "").split(/\s+/).filter(Boolean);
/** The SubmitJob target: jobs queue behind 4 workers that stay busy (each parked job sleeps 10 min), so the API path is measured. */
const PARKED_VM = process.env.BENCH_VM || "bench?size=1&chunk=1&delayMs=600000";
/** Reported beside it: every submitted job also runs to completion at once, in the same daemon process. */
const RUN_NOW_VM = "bench?size=0&delayMs=0";
const SUBMIT_PATH = `/${HypervisordService.typeName}/SubmitJob`;
const STREAM_PATH = `/${HypervisordService.typeName}/StreamJobUpdates`;

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const nowMs = () => performance.timeOrigin + performance.now();
const round = (n: number, digits = 2) => (Number.isFinite(n) ? Number(n.toFixed(digits)) : n);

function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

function median(values: number[]): number {
  const finite = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (finite.length === 0) return NaN;
  const mid = Math.floor(finite.length / 2);
  return finite.length % 2 ? finite[mid]! : (finite[mid - 1]! + finite[mid]!) / 2;
}

function verdict(pass: boolean | undefined): string {
  return pass === undefined ? "N/A " : pass ? "PASS" : "MISS";
}

function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map((c) => (typeof c === "number" ? fmt(c) : c)))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => String(r[i] ?? "").length)));
  const line = (r: (string | number)[]) => `  ${r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]!) : String(c).padStart(widths[i]!))).join("  ")}`;
  return [line(cells[0]!), `  ${widths.map((w) => "-".repeat(w)).join("  ")}`, ...cells.slice(1).map(line)].join("\n");
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return "-";
  if (Number.isInteger(n)) return String(n);
  return Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2);
}

const log = (message: string) => process.stdout.write(`${message}\n`);
const pct = (partMs: number, wholeMs: number) => Math.max(0, (partMs / wholeMs) * 100);
const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

/** With BENCH_DAEMON_NODE_ARGS: where a measured window lies in the daemon's profile. */
function logProfileWindow(what: string, pid: number | undefined, fromUs: number, toUs: number, count: number): void {
  if (DAEMON_NODE_ARGS.length > 0) log(`  profile window: ${what}, pid ${pid}, monotonic us ${fromUs}..${toUs}, ${count} calls or messages`);
}

// ---------------------------------------------------------------------------------------------
// (a) the no-op server in its own process

interface NoopServer {
  address: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

async function spawnNoopServer(): Promise<NoopServer> {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(import.meta.dirname, "noop-server.ts")], {
    cwd: ROOT, stdio: ["pipe", "pipe", "pipe"],
  });
  children.add(child);
  const stderr: string[] = [];
  child.stderr!.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => {
    children.delete(child);
    resolve();
  }));
  const port = await new Promise<number>((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      try {
        const parsed = JSON.parse(line) as { port?: number };
        if (typeof parsed.port === "number") resolve(parsed.port);
      } catch {
        // not the port line
      }
    });
    void exited.then(() => reject(new Error(`noop server exited before printing its port:\n${stderr.join("")}`)));
    setTimeout(() => reject(new Error("noop server did not print its port within 30 s")), 30_000).unref();
  });
  return {
    address: `127.0.0.1:${port}`,
    child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

/** Every child started here, killed on the way out should something crash. */
const children = new Set<ChildProcess>();

// ---------------------------------------------------------------------------------------------
// Unary load: CONCURRENCY calls in flight, each issuing the next when it completes

interface LoadResult {
  /** CPU time of the bench (client) process and of the server process over the window, in % of one core. */
  clientCpuPct: number;
  serverCpuPct: number;
  /** CPU of everything else on the machine (other processes, e.g. a test run), in % of one core: the noise. */
  otherCpuPct: number;
  /** Server CPU time per completed call, microseconds: less sensitive to a noisy machine than calls/s. */
  serverCpuUsPerCall: number;
  calls: number;
  errors: number;
  firstError?: string;
  seconds: number;
  callsPerSec: number;
  p50: number;
  p99: number;
  max: number;
}

let requestCounter = 0;

function submitRequest(label: string, vm: string): SubmitJobRequest {
  return create(SubmitJobRequestSchema, {
    definition: { provider: "fake", vm, labels: { bench: label, n: String(++requestCounter) } },
  });
}

async function waitReady(client: grpc.Client, timeoutMs = 10_000): Promise<void> {
  await new Promise<void>((resolve, reject) =>
    client.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve())));
}

/** utime + stime of a process in ms, from /proc (Linux); NaN elsewhere. */
function processCpuMs(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // fields 14 and 15 of stat(5), at USER_HZ = 100
  } catch {
    return NaN;
  }
}

/** Busy CPU time of the whole machine in ms (all cores), from /proc/stat; NaN elsewhere. */
function machineBusyMs(): number {
  try {
    const [, ...fields] = fs.readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/);
    const [user, nice, system, , , irq, softirq, steal] = fields.map(Number);
    return ((user! + nice! + system! + irq! + softirq! + steal!) * 1000) / 100;
  } catch {
    return NaN;
  }
}

async function unaryLoad(client: GrpcJsClient, durationMs: number, concurrency: number, label: string, vm: string, serverPid?: number): Promise<LoadResult> {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const cpuStart = process.cpuUsage();
  const serverCpuStart = processCpuMs(serverPid);
  const machineStart = machineBusyMs();
  const start = process.hrtime.bigint();
  const windowStartUs = monotonicUs();
  const end = start + BigInt(durationMs) * 1_000_000n;
  const worker = async () => {
    while (process.hrtime.bigint() < end) {
      const request = submitRequest(label, vm);
      const t0 = process.hrtime.bigint();
      try {
        await client.unary("submitJob", request);
        latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (serverPid !== undefined) logProfileWindow(label, serverPid, windowStartUs, monotonicUs(), latencies.length);
  const cpu = process.cpuUsage(cpuStart);
  const serverCpuMs = processCpuMs(serverPid) - serverCpuStart;
  const sorted = Float64Array.from(latencies).sort();
  return {
    clientCpuPct: pct((cpu.user + cpu.system) / 1e3, seconds * 1000),
    serverCpuPct: pct(serverCpuMs, seconds * 1000),
    otherCpuPct: pct(machineBusyMs() - machineStart - (cpu.user + cpu.system) / 1e3 - serverCpuMs, seconds * 1000),
    serverCpuUsPerCall: (serverCpuMs * 1000) / latencies.length,
    calls: latencies.length, errors, firstError, seconds,
    callsPerSec: latencies.length / seconds,
    p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.length ? sorted[sorted.length - 1]! : NaN,
  };
}

async function measureTarget(address: string, label: string, serverPid: number | undefined, vm: string): Promise<LoadResult> {
  const client = createGrpcJsClient(address);
  try {
    await waitReady(client.raw);
    await unaryLoad(client, WARMUP_MS, CONCURRENCY, `${label}-warmup`, vm);
    return await unaryLoad(client, DURATION_MS, CONCURRENCY, label, vm, serverPid);
  } finally {
    client.close();
  }
}

interface DaemonRunExtra {
  queuedAfter: number;
  completedAfter: number;
}

async function daemonStatus(client: GrpcJsClient): Promise<DaemonRunExtra> {
  const status = await client.unary("getStatus", {});
  return { queuedAfter: Number(status.jobCounts?.queued ?? 0n), completedAfter: Number(status.jobCounts?.completed ?? 0n) };
}

function removeDaemonDirs(d: DaemonProcess): void {
  for (const dir of [d.dataDir, d.outputRoot]) fs.rmSync(dir, { recursive: true, force: true });
}

async function measureDaemon(round: number, label: string, vm: string): Promise<LoadResult & DaemonRunExtra> {
  const d = await spawnDaemon({ args: DAEMON_ARGS, nodeArgs: DAEMON_NODE_ARGS });
  children.add(d.child);
  try {
    const result = await measureTarget(d.grpcAddress, label, d.child.pid, vm);
    const statusClient = createGrpcJsClient(d.grpcAddress);
    const extra = await daemonStatus(statusClient).finally(() => statusClient.close());
    log(`  round ${round} ${label}: ${fmt(result.callsPerSec)} calls/s, p50 ${fmt(result.p50)} ms, p99 ${fmt(result.p99)} ms, errors ${result.errors}, CPU % of a core: client ${fmt(result.clientCpuPct)} server ${fmt(result.serverCpuPct)} others ${fmt(result.otherCpuPct)}; server ${fmt(result.serverCpuUsPerCall)} us CPU/call`
      + `${result.firstError ? ` (${result.firstError})` : ""}; jobs completed ${extra.completedAfter}, still queued ${extra.queuedAfter}`);
    return { ...result, ...extra };
  } finally {
    await d.stop();
    children.delete(d.child);
    removeDaemonDirs(d);
  }
}

async function unaryBench() {
  const noop: LoadResult[] = [];
  const daemon: (LoadResult & DaemonRunExtra)[] = [];
  const daemonRunNow: (LoadResult & DaemonRunExtra)[] = [];
  for (let r = 1; r <= ROUNDS; r++) {
    const server = await spawnNoopServer();
    try {
      const result = await measureTarget(server.address, "noop", server.child.pid, PARKED_VM);
      noop.push(result);
      log(`  round ${r} noop: ${fmt(result.callsPerSec)} calls/s, p50 ${fmt(result.p50)} ms, p99 ${fmt(result.p99)} ms, errors ${result.errors}, CPU % of a core: client ${fmt(result.clientCpuPct)} server ${fmt(result.serverCpuPct)} others ${fmt(result.otherCpuPct)}; server ${fmt(result.serverCpuUsPerCall)} us CPU/call`);
    } finally {
      await server.stop();
    }
    daemon.push(await measureDaemon(r, "daemon", PARKED_VM));
    daemonRunNow.push(await measureDaemon(r, "daemon, jobs run at once", RUN_NOW_VM));
  }
  const med = (rs: LoadResult[], k: "callsPerSec" | "p50" | "p99" | "serverCpuUsPerCall") => median(rs.map((x) => x[k]));
  const summarize = (rs: LoadResult[]) => ({
    callsPerSec: med(rs, "callsPerSec"), p50Ms: med(rs, "p50"), p99Ms: med(rs, "p99"), serverCpuUsPerCall: med(rs, "serverCpuUsPerCall"),
    otherCpuPct: rs.map((x) => x.otherCpuPct),
  });
  const summary = {
    noop: summarize(noop),
    daemon: summarize(daemon),
    daemonRunNow: summarize(daemonRunNow),
    ratio: 0,
    ratioRunNow: 0,
    /** noop server CPU per call / daemon CPU per call: the calls/s ratio if each server had a core of its own. */
    cpuCostRatio: 0,
    ratioPerRound: noop.map((n, i) => daemon[i]!.callsPerSec / n.callsPerSec),
    rounds: { noop, daemon, daemonRunNow },
  };
  summary.ratio = summary.daemon.callsPerSec / summary.noop.callsPerSec;
  summary.ratioRunNow = summary.daemonRunNow.callsPerSec / summary.noop.callsPerSec;
  summary.cpuCostRatio = summary.noop.serverCpuUsPerCall / summary.daemon.serverCpuUsPerCall;
  return summary;
}

// ---------------------------------------------------------------------------------------------
// (c) StreamJobUpdates fan-out

interface LeanUpdate {
  jobId: string;
  kind: number;
  /** Publish time, ms since the epoch (from the update's google.protobuf.Timestamp). */
  timeMs: number;
}

/** Reads only job_id, kind and time, skipping the embedded Job: the bench process decodes SUBSCRIBERS copies of every update. */
function decodeLean(bytes: Buffer): LeanUpdate {
  const reader = new BinaryReader(bytes);
  let jobId = "";
  let kind = 0;
  let timeMs = NaN;
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 2 && wireType === WireType.LengthDelimited) jobId = reader.string();
    else if (field === 3 && wireType === WireType.Varint) kind = reader.int32();
    else if (field === 7 && wireType === WireType.LengthDelimited) {
      const ts = new BinaryReader(reader.bytes());
      let seconds = 0;
      let nanos = 0;
      while (ts.pos < ts.len) {
        const [f, w] = ts.tag();
        if (f === 1 && w === WireType.Varint) seconds = Number(ts.int64());
        else if (f === 2 && w === WireType.Varint) nanos = ts.int32();
        else ts.skip(w);
      }
      timeMs = seconds * 1000 + nanos / 1e6;
    } else reader.skip(wireType);
  }
  return { jobId, kind, timeMs };
}

function decodeFull(bytes: Buffer): LeanUpdate {
  const m = fromBinary(StreamJobUpdatesResponseSchema, bytes);
  return { jobId: m.jobId, kind: m.kind, timeMs: m.time ? Number(m.time.seconds) * 1000 + m.time.nanos / 1e6 : NaN };
}

interface Subscriber {
  synced: boolean;
  error?: string;
  ended: boolean;
  created: Set<string>;
  stateChanged: number;
  cancel(): void;
}

/** A connection the subscribers' streams are spread over. */
interface StreamChannel {
  ready(): Promise<void>;
  /** Opens one StreamJobUpdates call; `onUpdate` gets each decoded message, `onClose` the end of the call (error or undefined). */
  open(onUpdate: (u: LeanUpdate) => void, onClose: (error: string | undefined) => void): () => void;
  close(): void;
}


function grpcJsChannel(address: string, index: number): StreamChannel {
  // A local subchannel pool per client (plus a distinct option value): really separate HTTP/2 connections.
  const client = new grpc.Client(address, grpc.credentials.createInsecure(), {
    "grpc.use_local_subchannel_pool": 1, "grpc.primary_user_agent": `hvd-bench-channel-${index}`,
    ...(CONNECTION_WINDOW > 0 ? { "grpc-node.flow_control_window": CONNECTION_WINDOW } : {}),
  });
  const request = create(StreamJobUpdatesRequestSchema, {});
  const serialize = (m: StreamJobUpdatesRequest) => Buffer.from(toBinary(StreamJobUpdatesRequestSchema, m));
  const deserialize = FULL_DECODE ? decodeFull : decodeLean;
  return {
    ready: () => waitReady(client),
    open(onUpdate, onClose) {
      const call = client.makeServerStreamRequest(STREAM_PATH, serialize, deserialize, request, new grpc.Metadata(), {});
      call.on("data", onUpdate);
      call.on("error", (err: grpc.ServiceError) => onClose(`${grpc.status[err.code] ?? err.code}: ${err.details || err.message}`));
      call.on("end", () => onClose(undefined));
      return () => call.cancel();
    },
    close: () => client.close(),
  };
}

/**
 * The same calls over plain node:http2 (gRPC framing by hand): a much cheaper receiver than grpc-js,
 * to tell the daemon's delivery cost from the bench client's (BENCH_STREAM_CLIENT=http2).
 */
function http2Channel(address: string): StreamChannel {
  const session = http2.connect(`http://${address}`);
  session.on("error", () => {});
  if (CONNECTION_WINDOW > 0) session.once("remoteSettings", () => session.setLocalWindowSize(CONNECTION_WINDOW));
  const body = Buffer.from(toBinary(StreamJobUpdatesRequestSchema, create(StreamJobUpdatesRequestSchema, {})));
  const frame = Buffer.alloc(5 + body.length);
  frame.writeUInt32BE(body.length, 1);
  body.copy(frame, 5);
  const decode = FULL_DECODE ? decodeFull : decodeLean;
  return {
    ready: () => (session.connecting ? new Promise((resolve) => session.once("connect", () => resolve())) : Promise.resolve()),
    open(onUpdate, onClose) {
      const req = session.request({ ":method": "POST", ":path": STREAM_PATH, "content-type": "application/grpc", te: "trailers" });
      let buffered: Buffer | undefined;
      let status: string | undefined;
      let closed = false;
      const finish = (error: string | undefined) => {
        if (!closed) {
          closed = true;
          onClose(error);
        }
      };
      req.on("response", (headers) => {
        if (headers["grpc-status"] !== undefined) status = `${headers["grpc-status"]}: ${headers["grpc-message"] ?? ""}`;
      });
      req.on("trailers", (trailers) => {
        status = `${trailers["grpc-status"]}: ${trailers["grpc-message"] ?? ""}`;
      });
      req.on("data", (chunk: Buffer) => {
        buffered = buffered ? Buffer.concat([buffered, chunk]) : chunk;
        while (buffered.length >= 5) {
          const length = buffered.readUInt32BE(1);
          if (buffered.length < 5 + length) break;
          onUpdate(decode(buffered.subarray(5, 5 + length)));
          buffered = buffered.subarray(5 + length);
        }
      });
      req.on("error", (err) => finish(err.message));
      req.on("close", () => finish(status === undefined || status.startsWith("0:") ? undefined : status));
      req.end(frame);
      return () => {
        closed = true;
        req.close(http2.constants.NGHTTP2_CANCEL);
      };
    },
    close: () => session.close(),
  };
}

async function streamBench(rate: number, client: StreamClient) {
  const d = await spawnDaemon({ args: DAEMON_ARGS, nodeArgs: DAEMON_NODE_ARGS });
  children.add(d.child);
  const channels: StreamChannel[] = [];
  const subscribers: Subscriber[] = [];
  const submitter = createGrpcJsClient(d.grpcAddress);
  let syncTimer: NodeJS.Timeout | undefined;
  try {
    for (let i = 0; i < CHANNELS; i++) channels.push(client === "http2" ? http2Channel(d.grpcAddress) : grpcJsChannel(d.grpcAddress, i));
    await Promise.all([...channels.map((c) => c.ready()), waitReady(submitter.raw)]);

    const deliveries: number[] = [];
    const deliveriesCreated: number[] = [];
    const deliveriesStateChanged: number[] = [];
    let syncedCount = 0;
    let failedCount = 0;
    let liveMessages = 0;
    let settle: () => void = () => {};
    const allSettled = new Promise<void>((resolve) => (settle = resolve));
    const checkSettled = () => {
      if (syncedCount + failedCount >= SUBSCRIBERS) settle();
    };

    // Deliveries of the warm-up jobs (first passes through every code path, JIT) are not measured.
    let measuring = false;
    const openStart = nowMs();
    for (let i = 0; i < SUBSCRIBERS; i++) {
      const s: Subscriber = { synced: false, ended: false, created: new Set(), stateChanged: 0, cancel: () => {} };
      subscribers.push(s);
      const onUpdate = (u: LeanUpdate) => {
        const received = nowMs();
        if (u.kind === JobEventKind.SYNCED) {
          if (!s.synced) {
            s.synced = true;
            syncedCount++;
            checkSettled();
          }
          return;
        }
        if (!measuring) return;
        if (s.synced) liveMessages++;
        if (u.kind === JobEventKind.CREATED || u.kind === JobEventKind.STATE_CHANGED) {
          const latency = received - u.timeMs;
          deliveries.push(latency);
          if (u.kind === JobEventKind.CREATED) {
            deliveriesCreated.push(latency);
            s.created.add(u.jobId);
          } else {
            deliveriesStateChanged.push(latency);
            s.stateChanged++;
          }
        }
      };
      const onClose = (error: string | undefined) => {
        if (s.ended) return; // cancelled by the bench
        s.error ??= error ?? "stream ended";
        if (!s.synced) {
          failedCount++;
          checkSettled();
        }
        s.ended = true;
      };
      s.cancel = channels[i % CHANNELS]!.open(onUpdate, onClose);
    }
    const syncTimeout = new Promise<"timeout">((resolve) => (syncTimer = setTimeout(resolve, 60_000, "timeout")));
    const settledHow = await Promise.race([allSettled.then(() => "settled" as const), syncTimeout]);
    clearTimeout(syncTimer);
    const syncMs = nowMs() - openStart;
    const active = subscribers.filter((s) => s.synced && !s.error);
    const streamErrors = countErrors(subscribers);
    log(`  ${syncedCount}/${SUBSCRIBERS} subscribers SYNCED in ${fmt(syncMs)} ms (${settledHow}); ${failedCount} failed before SYNCED`
      + (streamErrors.length ? `: ${streamErrors.map(([e, n]) => `${n}x ${e}`).join("; ")}` : ""));
    const statusBefore = await submitter.unary("getStatus", {});
    for (let i = 0; i < STREAM_WARMUP_JOBS && active.length > 0; i++) {
      await submitter.unary("submitJob", submitRequest("stream-warmup", RUN_NOW_VM));
      await sleep(1000 / rate);
    }
    await sleep(1000);
    measuring = true;

    const jobIds: string[] = [];
    let submitErrors = 0;
    let firstSubmitError: string | undefined;
    const submitLatencies: number[] = [];
    const jobs = active.length > 0 ? Math.max(1, Math.round((rate * SUBMIT_MS) / 1000)) : 0;
    const cpuStart = process.cpuUsage();
    const daemonCpuStart = processCpuMs(d.child.pid);
    const machineStart = machineBusyMs();
    const windowStart = nowMs();
    const windowStartUs = monotonicUs();
    if (jobs > 0) {
      const interval = 1000 / rate;
      const t0 = nowMs();
      const pending: Promise<void>[] = [];
      for (let i = 0; i < jobs; i++) {
        const wait = t0 + i * interval - nowMs();
        if (wait > 0) await sleep(wait);
        const started = process.hrtime.bigint();
        pending.push(submitter.unary("submitJob", submitRequest("stream", RUN_NOW_VM)).then(
          (response) => {
            submitLatencies.push(Number(process.hrtime.bigint() - started) / 1e6);
            if (response.job) jobIds.push(response.job.id);
          },
          (err: unknown) => {
            submitErrors++;
            firstSubmitError ??= (err as Error).message;
          },
        ));
      }
      await Promise.all(pending);
      // Every job runs at once (delayMs=0): wait until each active subscriber has its CREATED and both
      // STATE_CHANGED (running, completed) updates, or give up after 20 s.
      const drainDeadline = nowMs() + 20_000;
      const complete = () => active.every((s) => s.error !== undefined || (s.created.size >= jobIds.length && s.stateChanged >= 2 * jobIds.length));
      while (!complete() && nowMs() < drainDeadline) await sleep(50);
    }
    const windowMs = nowMs() - windowStart;
    logProfileWindow(`stream ${rate} jobs/s`, d.child.pid, windowStartUs, monotonicUs(), liveMessages);
    const cpu = process.cpuUsage(cpuStart);
    const clientCpuPct = pct((cpu.user + cpu.system) / 1e3, windowMs);
    const daemonCpuMs = processCpuMs(d.child.pid) - daemonCpuStart;
    const daemonCpuPct = pct(daemonCpuMs, windowMs);
    const otherCpuPct = pct(machineBusyMs() - machineStart - (cpu.user + cpu.system) / 1e3 - daemonCpuMs, windowMs);
    const statusAfter = await submitter.unary("getStatus", {});

    const sortedAll = Float64Array.from(deliveries).sort();
    const sortedCreated = Float64Array.from(deliveriesCreated).sort();
    const sortedChanged = Float64Array.from(deliveriesStateChanged).sort();
    const submitted = new Set(jobIds);
    const gotAllCreated = active.filter((s) => [...submitted].every((id) => s.created.has(id))).length;
    const createdCounts = subscribers.map((s) => [...s.created].filter((id) => submitted.has(id)).length);
    const lostAfterSync = subscribers.filter((s) => s.synced && s.error !== undefined);
    const stats = (sorted: Float64Array) => ({
      count: sorted.length, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99), maxMs: sorted.length ? sorted[sorted.length - 1]! : NaN,
    });
    return {
      subscribers: SUBSCRIBERS,
      channels: CHANNELS,
      client,
      /** The bench process's CPU per message received (all messages, PROGRESS included): its own receiving cost. */
      clientCpuUsPerMessage: ((cpu.user + cpu.system) / liveMessages),
      decode: FULL_DECODE ? "fromBinary" : "lean",
      synced: syncedCount,
      failedBeforeSync: failedCount,
      syncMs: syncMs,
      streamErrors: Object.fromEntries(streamErrors),
      lostAfterSync: lostAfterSync.length,
      daemonSubscribersBefore: statusBefore.subscribers,
      daemonSubscribersAfter: statusAfter.subscribers,
      windowMs,
      clientCpuPct,
      daemonCpuPct,
      otherCpuPct,
      liveMessages,
      daemonCpuUsPerMessage: (daemonCpuMs * 1000) / liveMessages,
      jobsSubmitted: jobIds.length,
      submitErrors,
      firstSubmitError,
      submitP50Ms: percentile(Float64Array.from(submitLatencies).sort(), 50),
      submitP99Ms: percentile(Float64Array.from(submitLatencies).sort(), 99),
      jobsCompleted: Number(statusAfter.jobCounts?.completed ?? 0n),
      expectedDeliveries: active.length * jobIds.length * 3,
      delivery: stats(sortedAll),
      deliveryCreated: stats(sortedCreated),
      deliveryStateChanged: stats(sortedChanged),
      subscribersWithAllCreated: gotAllCreated,
      createdPerSubscriberMin: createdCounts.length ? Math.min(...createdCounts) : 0,
      createdPerSubscriberMax: createdCounts.length ? Math.max(...createdCounts) : 0,
      everySubscriberGotEveryCreated: jobIds.length > 0 && gotAllCreated === SUBSCRIBERS,
    };
  } finally {
    clearTimeout(syncTimer);
    for (const s of subscribers) {
      s.ended = true;
      s.cancel();
    }
    for (const c of channels) c.close();
    submitter.close();
    await d.stop();
    children.delete(d.child);
    removeDaemonDirs(d);
  }
}

function countErrors(subscribers: Subscriber[]): [string, number][] {
  const counts = new Map<string, number>();
  for (const s of subscribers) if (s.error) counts.set(s.error, (counts.get(s.error) ?? 0) + 1);
  return [...counts];
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const cpus = os.cpus();
  const machine = {
    cpus: cpus.length, cpuModel: cpus[0]?.model ?? "?", node: process.version, platform: `${os.platform()} ${os.release()}`,
    loadavgAtStart: os.loadavg().map((l) => round(l)),
  };
  log("hypervisord API benchmark");
  log(`  machine: ${machine.cpus} CPUs (${machine.cpuModel}), node ${machine.node}, ${machine.platform}, load average ${machine.loadavgAtStart.join(" ")}`);
  log(`  unary: ${ROUNDS} rounds x (noop, daemon), ${CONCURRENCY} calls in flight, ${WARMUP_MS} ms warm-up + ${DURATION_MS} ms measured; `
    + `a fresh daemon (${DAEMON_ARGS.join(" ")}) and noop server per round; jobs: fake "${PARKED_VM}" (queued behind busy workers), then "${RUN_NOW_VM}" (run at once)`);
  log(`  stream: ${SUBSCRIBERS} subscribers over ${CHANNELS} ${STREAM_CLIENT} channels (HTTP/2 window ${CONNECTION_WINDOW || "default"} B each), `
    + `${RATES.join(" and ")} jobs/s for ${SUBMIT_MS} ms after ${STREAM_WARMUP_JOBS} warm-up jobs, ${FULL_DECODE ? "fromBinary" : "lean"} decode`
    + `${RECEIVER_REFERENCE && RATES.length > 0 ? `; then ${RATES[0]} jobs/s again with node:http2 subscribers (the receiving cost apart)` : ""}`);
  log("");

  let unary: Awaited<ReturnType<typeof unaryBench>> | undefined;
  if (!SKIP_UNARY) {
    log(`(a)+(b) SubmitJob ${SUBMIT_PATH}`);
    unary = await unaryBench();
    log("");
  }
  const streams: (Awaited<ReturnType<typeof streamBench>> & { rate: number })[] = [];
  const runs: [number, StreamClient][] = SKIP_STREAM ? [] : RATES.map((rate) => [rate, STREAM_CLIENT]);
  if (runs.length > 0 && RECEIVER_REFERENCE) runs.push([RATES[0]!, "http2"]);
  for (const [rate, client] of runs) {
    log(`(c) ${STREAM_PATH} fan-out, ${rate} jobs/s, ${client} subscribers`);
    streams.push({ rate, ...(await streamBench(rate, client)) });
    log("");
  }
  const stream = streams[0];
  const reference = RECEIVER_REFERENCE ? streams.find((x) => x.client === "http2") : undefined;

  const ratioPass = unary ? unary.ratio >= TARGET_RATIO : undefined;
  const p99Pass = stream && stream.delivery.count > 0 ? stream.delivery.p99Ms < TARGET_P99_MS : stream ? false : undefined;
  const createdPass = stream ? stream.everySubscriberGotEveryCreated : undefined;

  log(`Results (machine: ${machine.cpus} CPUs, node ${machine.node}; load average now ${os.loadavg().map((l) => round(l)).join(" ")})`);
  if (unary) {
    log("");
    log(`SubmitJob, median of ${ROUNDS} rounds (per-round daemon/noop ratio: ${unary.ratioPerRound.map((r) => fmt(r)).join(", ")})`);
    log(table(["server", "calls/s", "p50 ms", "p99 ms", "server CPU us/call"], [
      ["(a) noop grpc-js (limit)", unary.noop.callsPerSec, unary.noop.p50Ms, unary.noop.p99Ms, unary.noop.serverCpuUsPerCall],
      ["(b) daemon", unary.daemon.callsPerSec, unary.daemon.p50Ms, unary.daemon.p99Ms, unary.daemon.serverCpuUsPerCall],
      ["(b') daemon, jobs run at once", unary.daemonRunNow.callsPerSec, unary.daemonRunNow.p50Ms, unary.daemonRunNow.p99Ms, unary.daemonRunNow.serverCpuUsPerCall],
    ]));
    log(`  (b') runs every submitted job to completion in the same process while it answers: ${fmt(unary.ratioRunNow)} of the limit`);
    log(`  server CPU per call, noop/daemon: ${fmt(unary.cpuCostRatio)} (the calls/s ratio were each server CPU-bound on a core of its own; less noisy)`);
    log(`  others' CPU during the rounds (% of a core; the noise): noop ${unary.noop.otherCpuPct.map((x) => fmt(x)).join(", ")}; `
      + `daemon ${unary.daemon.otherCpuPct.map((x) => fmt(x)).join(", ")}`);
  }
  for (const stream of streams) {
    log("");
    log(`StreamJobUpdates at ${stream.rate} jobs/s, ${stream.client} subscribers: ${stream.synced}/${stream.subscribers} subscribers synced, ${stream.jobsSubmitted} jobs submitted, `
      + `${stream.delivery.count}/${stream.expectedDeliveries} CREATED+STATE_CHANGED deliveries measured; `
      + `over the ${fmt(stream.windowMs / 1000)} s submit+drain window CPU % of a core: bench ${fmt(stream.clientCpuPct)}, daemon ${fmt(stream.daemonCpuPct)}, others ${fmt(stream.otherCpuPct)} `
      + `(${fmt(stream.daemonCpuUsPerMessage)} us of daemon CPU per live message, ${stream.liveMessages} messages incl. PROGRESS)`);
    log(`  the bench's own receiving cost: ${fmt(stream.clientCpuUsPerMessage)} us of bench CPU per message received (${stream.client}, ${stream.decode} decode; `
      + "the submitting client's few calls included)");
    log(table(["delivery latency", "count", "p50 ms", "p99 ms", "max ms"], [
      ["all", stream.delivery.count, stream.delivery.p50Ms, stream.delivery.p99Ms, stream.delivery.maxMs],
      ["CREATED", stream.deliveryCreated.count, stream.deliveryCreated.p50Ms, stream.deliveryCreated.p99Ms, stream.deliveryCreated.maxMs],
      ["STATE_CHANGED", stream.deliveryStateChanged.count, stream.deliveryStateChanged.p50Ms, stream.deliveryStateChanged.p99Ms, stream.deliveryStateChanged.maxMs],
    ]));
    if (stream.clientCpuPct >= 90) {
      log(`  note: the bench process itself was at ${fmt(stream.clientCpuPct)}% CPU receiving ${stream.liveMessages} messages: part of this latency `
        + "is queueing in the bench client (BENCH_STREAM_CLIENT=http2 receives on plain node:http2, much cheaper).");
    }
    if (stream.daemonCpuPct >= 90) log(`  note: the daemon was CPU-bound (${fmt(stream.daemonCpuPct)}% of a core) during the window.`);
    if (Object.keys(stream.streamErrors).length > 0) {
      log(`  stream errors: ${Object.entries(stream.streamErrors).map(([e, n]) => `${n}x ${e}`).join("; ")}`);
    }
  }
  log("");
  log("Targets");
  log(table(["target", "measured", "verdict"], [
    [`(b)/(a) calls/s >= ${TARGET_RATIO}`, unary ? fmt(unary.ratio) : "not run", verdict(ratioPass)],
    [`delivery p99 < ${TARGET_P99_MS} ms (${stream?.rate ?? "-"} jobs/s)`, stream ? (stream.delivery.count > 0 ? `${fmt(stream.delivery.p99Ms)} ms` : "no deliveries") : "not run", verdict(p99Pass)],
    ...streams.slice(1).filter((x) => x !== reference).map((x) => [`  for reference, ${x.rate} jobs/s`, `${fmt(x.delivery.p99Ms)} ms`, "info"]),
    ...(reference ? [[`  ${reference.rate} jobs/s, node:http2 receiver (${fmt(reference.clientCpuUsPerMessage)} vs ${fmt(stream!.clientCpuUsPerMessage)} us/msg)`,
      `${fmt(reference.delivery.p99Ms)} ms (p50 ${fmt(reference.delivery.p50Ms)})`, "info"]] : []),
    ["every subscriber got every CREATED", stream ? `${stream.subscribersWithAllCreated}/${stream.subscribers} subscribers (${stream.createdPerSubscriberMin}-${stream.createdPerSubscriberMax} of ${stream.jobsSubmitted})` : "not run", verdict(createdPass)],
  ]));
  log("");
  log(JSON.stringify({
    bench: "api",
    machine,
    config: {
      rounds: ROUNDS, durationMs: DURATION_MS, warmupMs: WARMUP_MS, concurrency: CONCURRENCY, vm: PARKED_VM, runNowVm: RUN_NOW_VM, daemonArgs: DAEMON_ARGS,
      subscribers: SUBSCRIBERS, channels: CHANNELS, streamClient: STREAM_CLIENT, receiverReference: RECEIVER_REFERENCE, connectionWindow: CONNECTION_WINDOW,
      decode: FULL_DECODE ? "fromBinary" : "lean", rates: RATES, submitMs: SUBMIT_MS,
    },
    targets: {
      ratio: { target: TARGET_RATIO, measured: unary?.ratio, pass: ratioPass },
      deliveryP99Ms: { target: TARGET_P99_MS, measured: stream?.delivery.p99Ms, pass: p99Pass },
      everySubscriberGotEveryCreated: { measured: stream?.everySubscriberGotEveryCreated, pass: createdPass },
    },
    unary,
    streams,
  }));
}

try {
  await main();
} catch (err) {
  process.stderr.write(`bench crashed: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
} finally {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
}
