// Cluster benchmark (npm run bench:cluster): several daemons on one PostgreSQL, against one daemon on SQLite.
// A measurement, not a test: it prints figures with PASS/MISS against the issue's targets and exits 0 unless
// something crashed. Real daemon processes (test/support/fake-daemon.ts, fake provider), one throw-away PostgreSQL
// cluster (a fresh database per cluster of daemons), grpc-js clients in this process.
//
//  (1) SubmitJob: calls/s with BENCH_CALLS calls of quick jobs (BENCH_IN_FLIGHT in flight, spread over the nodes)
//      and submit-to-running latency (BENCH_PACED_JOBS submits at BENCH_PACED_RATE/s, slots free: the RUNNING
//      transition's time in GetJobHistory minus the moment the client sent the call) for SQLite (1 daemon),
//      PostgreSQL 1 node and PostgreSQL 3 nodes; BENCH_ROUNDS fresh clusters per configuration, medians.
//  (2) Failover: 3 nodes, lease timeout BENCH_LEASE_S, a long job, kill -9 of the node running it; time until
//      GetJob (polled every 50 ms on a survivor) shows it RUNNING on another node. BENCH_FAILOVER_ROUNDS rounds.
//  (3) Stream delivery: BENCH_SUBSCRIBERS StreamJobUpdates subscribers (all jobs) spread over 3 nodes, BENCH_STREAM_JOBS
//      jobs submitted at BENCH_STREAM_RATE/s over the nodes; for every subscriber and every CREATED/STATE_CHANGED
//      update, receipt time minus the update's `time`.
//  (4) Coordination: 3 nodes x 4 slots run BENCH_COORD_JOBS jobs that each wait 1 s without CPU; wall time from the
//      first submit to the last job's end_time against the ideal (jobs / 12 slots x 1 s).
//
// Knobs (environment): BENCH_ROUNDS=2 BENCH_CALLS=2000 BENCH_IN_FLIGHT=32 BENCH_PACED_JOBS=200 BENCH_PACED_RATE=20
// BENCH_LEASE_S=5 BENCH_FAILOVER_ROUNDS=2 BENCH_SUBSCRIBERS=1000 BENCH_STREAM_JOBS=50 BENCH_STREAM_RATE=5
// BENCH_COORD_JOBS=240 BENCH_SKIP=submit,failover,stream,coordination (any of them).
import fs from "node:fs";
import os from "node:os";
import { create, toBinary } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import * as grpc from "@grpc/grpc-js";
import pg from "pg";
import { JobState } from "../../gen/hypervisord/v1/job_pb.js";
import { HypervisordService, JobEventKind, StreamJobUpdatesRequestSchema, type StreamJobUpdatesRequest } from "../../gen/hypervisord/v1/service_pb.js";
import { createGrpcJsClient, type GrpcJsClient } from "../support/clients.ts";
import { spawnDaemon, type DaemonProcess } from "../support/daemon-process.ts";
import { startPostgres, type Postgres } from "../support/postgres.ts";
import { tempDir } from "../support/temp-dir.ts";
import { cpuSeconds, envNumber, median } from "./bench-utils.ts";

const ROUNDS = envNumber("BENCH_ROUNDS", 2);
const CALLS = envNumber("BENCH_CALLS", 2000);
const WARMUP_CALLS = 100;
const IN_FLIGHT = envNumber("BENCH_IN_FLIGHT", 32);
const PACED_JOBS = envNumber("BENCH_PACED_JOBS", 200);
const PACED_RATE = envNumber("BENCH_PACED_RATE", 20);
const LEASE_S = envNumber("BENCH_LEASE_S", 5);
const FAILOVER_ROUNDS = envNumber("BENCH_FAILOVER_ROUNDS", 2);
const SUBSCRIBERS = envNumber("BENCH_SUBSCRIBERS", 1000);
const STREAM_JOBS = envNumber("BENCH_STREAM_JOBS", 50);
const STREAM_RATE = envNumber("BENCH_STREAM_RATE", 5);
const COORD_JOBS = envNumber("BENCH_COORD_JOBS", 240);
const SKIP = new Set((process.env.BENCH_SKIP ?? "").split(",").filter(Boolean));

const SLOTS = 4;
/** One key for every node: secrets stored by one node must open on the others. */
const KEY = Buffer.alloc(32, 11).toString("base64");
/** Quick jobs: an empty disk, no waiting; each job gets an output directory of its own (nodes share the root). */
const QUICK_VM = "bench?size=0&delayMs=0";
const PACED_VM = "web-01?size=1000&chunk=1000&delayMs=0";
const LONG_VM = "web-04?size=100000000&chunk=50000&delayMs=50";
const ONE_SECOND_VM = "web-01?size=1&chunk=1&delayMs=1000";
/** Subscriber streams per grpc-js connection (separate HTTP/2 connections, as separate clients would have). */
const STREAMS_PER_CONNECTION = 100;
const STREAM_PATH = `/${HypervisordService.typeName}/StreamJobUpdates`;

const TARGET_SUBMIT_RATIO = 0.5;
const TARGET_FAILOVER_EXTRA_MS = 5_000;
const TARGET_COORD_RATIO = 1.25;

// ---------------------------------------------------------------------------------------------
// Small helpers

const log = (message: string) => process.stdout.write(`${message}\n`);
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const nowMs = () => performance.timeOrigin + performance.now();
const timestampMs = (t: { seconds: bigint; nanos: number } | undefined) => (t ? Number(t.seconds) * 1000 + t.nanos / 1e6 : NaN);

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return "-";
  if (Number.isInteger(n)) return String(n);
  return Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2);
}

function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map((c) => (typeof c === "number" ? fmt(c) : c)))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => String(r[i] ?? "").length)));
  const line = (r: (string | number)[]) => `  ${r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]!) : String(c).padStart(widths[i]!))).join("  ")}`;
  return [line(cells[0]!), `  ${widths.map((w) => "-".repeat(w)).join("  ")}`, ...cells.slice(1).map(line)].join("\n");
}

const verdict = (pass: boolean | undefined) => (pass === undefined ? "N/A " : pass ? "PASS" : "MISS");

/** Busy CPU seconds of the whole machine (all cores), from /proc/stat. */
function machineBusySeconds(): number {
  try {
    const [, ...fields] = fs.readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/);
    const [user, nice, system, , , irq, softirq, steal] = fields.map(Number);
    return (user! + nice! + system! + irq! + softirq! + steal!) / 100;
  } catch {
    return NaN;
  }
}

/** The fields after the command name of /proc/PID/stat (field 3 onwards), or undefined for a process gone. */
function procStat(pid: number | string): string[] | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/** The postmaster of the bench's PostgreSQL: the postgres process started with its port. */
function postmasterPid(port: number): number | undefined {
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (argv[0]?.endsWith("/postgres") && argv.includes("-p") && argv[argv.indexOf("-p") + 1] === String(port)) return Number(entry);
    } catch {
      // gone between readdir and read
    }
  }
  return undefined;
}

/**
 * CPU seconds of the bench's PostgreSQL: the postmaster with the backends it has reaped (cutime, cstime) plus
 * its live children. Other users' PostgreSQL clusters on the machine are not counted.
 */
function postgresCpuSeconds(postmaster: number | undefined): number {
  if (postmaster === undefined) return NaN;
  let total = cpuSeconds(postmaster, true);
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = procStat(entry);
    // fields[1] is the ppid (stat field 4); utime and stime are fields 14 and 15.
    if (fields && Number(fields[1]) === postmaster) total += (Number(fields[11]) + Number(fields[12])) / 100;
  }
  return total;
}

let postmaster: number | undefined;

/** CPU use over a window, in % of one core: this process, the daemons, PostgreSQL, and everything else (other users). */
function cpuWindow(daemonPids: number[]) {
  const start = {
    self: process.cpuUsage(), daemons: daemonPids.map((pid) => cpuSeconds(pid)), postgres: postgresCpuSeconds(postmaster), machine: machineBusySeconds(), at: nowMs(),
  };
  return () => {
    const seconds = (nowMs() - start.at) / 1000;
    const self = process.cpuUsage(start.self);
    const selfS = (self.user + self.system) / 1e6;
    const daemonsS = daemonPids.reduce((sum, pid, i) => sum + cpuSeconds(pid) - start.daemons[i]!, 0);
    const postgresS = postgresCpuSeconds(postmaster) - start.postgres;
    const rest = machineBusySeconds() - start.machine - selfS - daemonsS - postgresS;
    return {
      benchPct: (selfS / seconds) * 100, daemonsPct: (daemonsS / seconds) * 100, postgresPct: (postgresS / seconds) * 100, othersPct: (Math.max(0, rest) / seconds) * 100,
    };
  };
}
type CpuUse = ReturnType<ReturnType<typeof cpuWindow>>;
const cpuText = (c: CpuUse) => `CPU % of a core: bench ${fmt(c.benchPct)}, daemons ${fmt(c.daemonsPct)}, PostgreSQL ${fmt(c.postgresPct)}, other users ${fmt(c.othersPct)}`;

// ---------------------------------------------------------------------------------------------
// Clusters of daemons

interface Node {
  id: string;
  daemon: DaemonProcess;
  client: GrpcJsClient;
}

interface Cluster {
  nodes: Node[];
  /** The database of a PostgreSQL cluster. */
  url?: string;
  stop(): Promise<void>;
}

/** Every daemon started and not yet stopped: stopped on the way out, should something crash. */
const live = new Set<DaemonProcess>();
let postgres: Postgres | undefined;

async function startCluster(store: "sqlite" | "postgres", count: number, options: { leaseS?: number } = {}): Promise<Cluster> {
  const url = store === "postgres" ? await postgres!.createDatabase() : undefined;
  const outputRoot = tempDir("bench-cluster-out");
  const nodes: Node[] = [];
  const cluster: Cluster = {
    nodes,
    url,
    async stop() {
      for (const node of nodes) node.client.close();
      await Promise.all(nodes.map(async (node) => {
        await node.daemon.stop();
        live.delete(node.daemon);
      }));
    },
  };
  try {
    // One after the other: the first migrates the database, the others find the schema.
    for (let i = 0; i < count; i++) {
      const id = `node-${"abcdefgh"[i]}`;
      const daemon = await spawnDaemon({
        outputRoot,
        args: ["--max-concurrent-jobs", String(SLOTS), ...(url ? ["--store", url] : [])],
        env: url ? { HYPERVISORD_NODE_ID: id, HYPERVISORD_ENCRYPTION_KEY: KEY, HYPERVISORD_LEASE_TIMEOUT: `${options.leaseS ?? 30}s` } : {},
      });
      live.add(daemon);
      nodes.push({ id, daemon, client: createGrpcJsClient(daemon.grpcAddress) });
    }
    return cluster;
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}

const pidsOf = (cluster: Cluster) => cluster.nodes.map((n) => n.daemon.child.pid!);

let jobCounter = 0;
const submitRequest = (vm: string, label: string) => ({
  definition: { provider: "fake", vm, outputDir: `${label}/${++jobCounter}`, labels: { bench: label } },
});

async function status(node: Node) {
  const s = await node.client.unary("getStatus", {});
  const c = s.jobCounts;
  return { queued: Number(c?.queued ?? 0n), running: Number(c?.running ?? 0n), completed: Number(c?.completed ?? 0n), failed: Number(c?.failed ?? 0n) };
}

/** Waits until no job is queued or running (the store is shared: one node's counts are the cluster's); throws after timeoutMs. */
async function drained(node: Node, timeoutMs: number, what: string) {
  const deadline = nowMs() + timeoutMs;
  for (;;) {
    const s = await status(node);
    if (s.queued === 0 && s.running === 0) return s;
    if (nowMs() > deadline) throw new Error(`${what}: still ${s.queued} queued and ${s.running} running after ${timeoutMs} ms`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------
// (1) SubmitJob calls/s and submit-to-running latency

/**
 * Samples, every 50 ms, what the cluster's active database sessions are doing (pg_stat_activity: wait event and
 * the statement's start): where the SubmitJob path waits, e.g. on a lock, rather than on CPU.
 */
function sampleSessions(url: string) {
  const counts = new Map<string, number>();
  let samples = 0;
  let stopped = false;
  const client = new pg.Client({ connectionString: url });
  const running = (async () => {
    await client.connect();
    try {
      while (!stopped) {
        const { rows } = await client.query<{ wait: string; query: string }>(
          `SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS wait, left(regexp_replace(query, '\\s+', ' ', 'g'), 50) AS query
             FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()`);
        samples++;
        for (const row of rows) counts.set(`${row.wait} ${row.query}`, (counts.get(`${row.wait} ${row.query}`) ?? 0) + 1);
        await sleep(50);
      }
    } finally {
      await client.end();
    }
  })();
  return async () => {
    stopped = true;
    await running;
    /** The most frequent (wait, statement) pairs: average active sessions in that state over the window. */
    return { samples, top: [...counts].sort((a, b) => b[1] - a[1]).slice(0, 4).map(([what, n]) => ({ what, sessions: n / samples })) };
  };
}
type SessionSample = Awaited<ReturnType<ReturnType<typeof sampleSessions>>>;

interface ThroughputResult {
  sessions?: SessionSample;
  callsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  firstError?: string;
  cpu: CpuUse;
}

/** `total` SubmitJob calls, `inFlight` at a time, call i going to node i mod n. */
async function submitLoad(cluster: Cluster, total: number, vm: string, label: string): Promise<ThroughputResult> {
  const latencies: number[] = [];
  let next = 0;
  let errors = 0;
  let firstError: string | undefined;
  const cpu = cpuWindow(pidsOf(cluster));
  const sessions = cluster.url ? sampleSessions(cluster.url) : undefined;
  const start = nowMs();
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (next < total) {
      const node = cluster.nodes[next++ % cluster.nodes.length]!;
      const t0 = nowMs();
      try {
        await node.client.unary("submitJob", submitRequest(vm, label));
        latencies.push(nowMs() - t0);
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
      }
    }
  }));
  const seconds = (nowMs() - start) / 1000;
  const use = cpu();
  return {
    callsPerSec: latencies.length / seconds, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), errors, firstError, cpu: use,
    sessions: await sessions?.(),
  };
}

interface LatencyResult {
  jobs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Jobs that never showed a RUNNING transition (failed to submit, or history without one). */
  missing: number;
}

/** PACED_JOBS submits at PACED_RATE/s over the nodes, free slots; the RUNNING transition's time minus the send time. */
async function submitToRunning(cluster: Cluster): Promise<LatencyResult> {
  const sent = new Map<string, number>();
  const t0 = nowMs();
  const calls: Promise<void>[] = [];
  for (let i = 0; i < PACED_JOBS; i++) {
    const wait = t0 + (i * 1000) / PACED_RATE - nowMs();
    if (wait > 0) await sleep(wait);
    const node = cluster.nodes[i % cluster.nodes.length]!;
    const at = nowMs();
    calls.push(node.client.unary("submitJob", submitRequest(PACED_VM, "paced")).then(({ job }) => void sent.set(job!.id, at)));
  }
  await Promise.all(calls);
  await drained(cluster.nodes[0]!, 120_000, "paced jobs");
  const latencies: number[] = [];
  for (const [jobId, at] of sent) {
    const { transitions } = await cluster.nodes[0]!.client.unary("getJobHistory", { jobId });
    const running = transitions.find((t) => t.toState === JobState.RUNNING);
    if (running) latencies.push(timestampMs(running.time) - at);
  }
  return { jobs: sent.size, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), maxMs: Math.max(...latencies), missing: PACED_JOBS - latencies.length };
}

interface SubmitConfig {
  name: string;
  store: "sqlite" | "postgres";
  nodes: number;
}

const SUBMIT_CONFIGS: SubmitConfig[] = [
  { name: "SQLite, 1 daemon", store: "sqlite", nodes: 1 },
  { name: "PostgreSQL, 1 node", store: "postgres", nodes: 1 },
  { name: "PostgreSQL, 3 nodes", store: "postgres", nodes: 3 },
];

async function submitBench() {
  const results: { config: SubmitConfig; rounds: ThroughputResult[]; latency?: LatencyResult }[] = [];
  for (const config of SUBMIT_CONFIGS) {
    const rounds: ThroughputResult[] = [];
    let latency: LatencyResult | undefined;
    for (let round = 1; round <= ROUNDS; round++) {
      const cluster = await startCluster(config.store, config.nodes);
      try {
        await submitLoad(cluster, WARMUP_CALLS, QUICK_VM, "warmup");
        const result = await submitLoad(cluster, CALLS, QUICK_VM, "throughput");
        rounds.push(result);
        const drainStart = nowMs();
        const after = await drained(cluster.nodes[0]!, 300_000, "throughput jobs");
        log(`  ${config.name}, round ${round}: ${fmt(result.callsPerSec)} calls/s, p50 ${fmt(result.p50Ms)} ms, p99 ${fmt(result.p99Ms)} ms, `
          + `errors ${result.errors}${result.firstError ? ` (${result.firstError})` : ""}; ${cpuText(result.cpu)}; `
          + `queue drained ${fmt((nowMs() - drainStart) / 1000)} s after the last call (${after.completed} completed, ${after.failed} failed)`);
        if (result.sessions) {
          log(`    database sessions during the calls (average active, ${result.sessions.samples} samples): `
            + result.sessions.top.map((t) => `${fmt(t.sessions)} ${t.what}`).join(" | "));
        }
        if (round === 1) {
          latency = await submitToRunning(cluster);
          log(`  ${config.name}, submit to RUNNING (${latency.jobs} jobs at ${PACED_RATE}/s): p50 ${fmt(latency.p50Ms)} ms, `
            + `p99 ${fmt(latency.p99Ms)} ms, max ${fmt(latency.maxMs)} ms${latency.missing ? `, ${latency.missing} without a RUNNING transition` : ""}`);
        }
      } finally {
        await cluster.stop();
      }
    }
    results.push({ config, rounds, latency });
  }
  return results.map(({ config, rounds, latency }) => ({
    name: config.name,
    callsPerSec: median(rounds.map((r) => r.callsPerSec)),
    callsPerSecRounds: rounds.map((r) => r.callsPerSec),
    callP50Ms: median(rounds.map((r) => r.p50Ms)),
    callP99Ms: median(rounds.map((r) => r.p99Ms)),
    errors: rounds.reduce((sum, r) => sum + r.errors, 0),
    latency,
  }));
}

// ---------------------------------------------------------------------------------------------
// (2) Failover after kill -9

async function failoverRound(round: number) {
  const cluster = await startCluster("postgres", 3, { leaseS: LEASE_S });
  try {
    const [first] = cluster.nodes as [Node];
    const { job } = await first.client.unary("submitJob", submitRequest(LONG_VM, "failover"));
    const jobId = job!.id;
    let runner = "";
    const runDeadline = nowMs() + 30_000;
    while (!runner) {
      const { job: j } = await first.client.unary("getJob", { jobId });
      if (j!.state === JobState.RUNNING && Number(j!.progress?.bytesDone ?? 0n) > 0) runner = j!.nodeId;
      else if (nowMs() > runDeadline) throw new Error(`failover round ${round}: job ${jobId} not running after 30 s (state ${JobState[j!.state]})`);
      else await sleep(50);
    }
    const victim = cluster.nodes.find((n) => n.id === runner);
    if (!victim) throw new Error(`failover round ${round}: job ${jobId} runs on unknown node "${runner}"`);
    const survivor = cluster.nodes.find((n) => n !== victim)!;
    const killedAt = nowMs();
    await victim.daemon.kill();
    victim.client.close();
    cluster.nodes.splice(cluster.nodes.indexOf(victim), 1);
    live.delete(victim.daemon);
    const deadline = killedAt + LEASE_S * 1000 + 30_000;
    for (;;) {
      const { job: j } = await survivor.client.unary("getJob", { jobId });
      if (j!.state === JobState.RUNNING && j!.nodeId !== victim.id) {
        const ms = nowMs() - killedAt;
        log(`  round ${round}: job ran on ${victim.id}, killed; RUNNING on ${j!.nodeId} ${fmt(ms)} ms later (attempt ${j!.attempt})`);
        return { ms, from: victim.id, to: j!.nodeId };
      }
      if (nowMs() > deadline) throw new Error(`failover round ${round}: job ${jobId} not running on another node ${deadline - killedAt} ms after the kill (state ${JobState[j!.state]}, node ${j!.nodeId})`);
      await sleep(50);
    }
  } finally {
    await cluster.stop();
  }
}

async function failoverBench() {
  const rounds: { ms: number; from: string; to: string }[] = [];
  for (let round = 1; round <= FAILOVER_ROUNDS; round++) rounds.push(await failoverRound(round));
  return { rounds, medianMs: median(rounds.map((r) => r.ms)), maxMs: Math.max(...rounds.map((r) => r.ms)) };
}

// ---------------------------------------------------------------------------------------------
// (3) StreamJobUpdates delivery to subscribers on 3 nodes

interface LeanUpdate {
  jobId: string;
  kind: number;
  state: number;
  /** The update's time, ms since the epoch. */
  timeMs: number;
}

/** Reads job_id, kind, state and time only, skipping the embedded Job: this process decodes SUBSCRIBERS copies of every update. */
function decodeLean(bytes: Buffer): LeanUpdate {
  const reader = new BinaryReader(bytes);
  const update: LeanUpdate = { jobId: "", kind: 0, state: 0, timeMs: NaN };
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 2 && wireType === WireType.LengthDelimited) update.jobId = reader.string();
    else if (field === 3 && wireType === WireType.Varint) update.kind = reader.int32();
    else if (field === 4 && wireType === WireType.Varint) update.state = reader.int32();
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
      update.timeMs = seconds * 1000 + nanos / 1e6;
    } else reader.skip(wireType);
  }
  return update;
}

interface Subscriber {
  node: string;
  synced: boolean;
  error?: string;
  created: Set<string>;
  stateChanged: number;
}

async function streamBench() {
  const cluster = await startCluster("postgres", 3);
  const connections: grpc.Client[] = [];
  const calls: grpc.ClientReadableStream<LeanUpdate>[] = [];
  const request = create(StreamJobUpdatesRequestSchema, {});
  const serialize = (m: StreamJobUpdatesRequest) => Buffer.from(toBinary(StreamJobUpdatesRequestSchema, m));
  const subscribers: Subscriber[] = [];
  /** Every measured delivery: the subscriber's node, the job, whether it was CREATED, the delay. */
  const deliveries: { node: string; jobId: string; created: boolean; ms: number }[] = [];
  let measuring = false;
  try {
    for (let i = 0; i < SUBSCRIBERS; i++) {
      const node = cluster.nodes[i % cluster.nodes.length]!;
      const perNode = Math.floor(i / cluster.nodes.length);
      if (perNode % STREAMS_PER_CONNECTION === 0) {
        // A local subchannel pool and a distinct option value: a separate HTTP/2 connection, with the receive
        // window its streams would have as separate clients.
        connections[i] = new grpc.Client(node.daemon.grpcAddress, grpc.credentials.createInsecure(), {
          "grpc.use_local_subchannel_pool": 1, "grpc.primary_user_agent": `hvd-bench-subscribers-${i}`,
          "grpc-node.flow_control_window": STREAMS_PER_CONNECTION * 65_535,
        });
      }
      const connection = connections[i - (perNode % STREAMS_PER_CONNECTION) * cluster.nodes.length]!;
      const subscriber: Subscriber = { node: node.id, synced: false, created: new Set(), stateChanged: 0 };
      subscribers.push(subscriber);
      const call = connection.makeServerStreamRequest(STREAM_PATH, serialize, decodeLean, request, new grpc.Metadata(), {});
      calls.push(call);
      call.on("data", (u: LeanUpdate) => {
        if (u.kind === JobEventKind.SYNCED) subscriber.synced = true;
        if (!measuring || (u.kind !== JobEventKind.CREATED && u.kind !== JobEventKind.STATE_CHANGED)) return;
        deliveries.push({ node: subscriber.node, jobId: u.jobId, created: u.kind === JobEventKind.CREATED, ms: nowMs() - u.timeMs });
        if (u.kind === JobEventKind.CREATED) subscriber.created.add(u.jobId);
        else subscriber.stateChanged++;
      });
      call.on("error", (err: grpc.ServiceError) => void (subscriber.error ??= `${grpc.status[err.code] ?? err.code}: ${err.details}`));
    }
    const openedAt = nowMs();
    while (subscribers.some((s) => !s.synced && !s.error) && nowMs() - openedAt < 60_000) await sleep(50);
    const synced = subscribers.filter((s) => s.synced && !s.error);
    log(`  ${synced.length}/${SUBSCRIBERS} subscribers SYNCED in ${fmt(nowMs() - openedAt)} ms `
      + `(${cluster.nodes.map((n) => `${subscribers.filter((s) => s.node === n.id).length} on ${n.id}`).join(", ")})`);
    measuring = true;
    const cpu = cpuWindow(pidsOf(cluster));
    const ids: string[] = [];
    /** The node that wrote each job's CREATED (the one submitted to). */
    const submittedOn = new Map<string, string>();
    const t0 = nowMs();
    for (let i = 0; i < STREAM_JOBS; i++) {
      const wait = t0 + (i * 1000) / STREAM_RATE - nowMs();
      if (wait > 0) await sleep(wait);
      const node = cluster.nodes[i % cluster.nodes.length]!;
      const { job } = await node.client.unary("submitJob", submitRequest(QUICK_VM, "stream"));
      ids.push(job!.id);
      submittedOn.set(job!.id, node.id);
    }
    const complete = (s: Subscriber) => s.error !== undefined || (s.created.size >= ids.length && s.stateChanged >= 2 * ids.length);
    const drainDeadline = nowMs() + 30_000;
    while (!synced.every(complete) && nowMs() < drainDeadline) await sleep(50);
    const use = cpu();
    const lost = subscribers.filter((s) => s.error !== undefined).length;
    const withEveryCreated = synced.filter((s) => ids.every((id) => s.created.has(id))).length;
    // The STATE_CHANGED updates (running, completed) are written by the node that ran the job.
    const ranOn = new Map<string, string>();
    for (const jobId of ids) ranOn.set(jobId, (await cluster.nodes[0]!.client.unary("getJob", { jobId })).job!.nodeId);
    const local = deliveries.filter((d) => d.node === (d.created ? submittedOn : ranOn).get(d.jobId)).map((d) => d.ms);
    const remote = deliveries.filter((d) => d.node !== (d.created ? submittedOn : ranOn).get(d.jobId)).map((d) => d.ms);
    const delays = deliveries.map((d) => d.ms);
    return {
      subscribers: SUBSCRIBERS, synced: synced.length, lost, jobs: ids.length, withEveryCreated,
      deliveries: delays.length, expected: synced.length * ids.length * 3,
      p50Ms: percentile(delays, 50), p99Ms: percentile(delays, 99), maxMs: percentile(delays, 100), cpu: use,
      /** Subscribers on the node that wrote the update, and on the other nodes (through PostgreSQL). */
      local: { count: local.length, p50Ms: percentile(local, 50), p99Ms: percentile(local, 99) },
      remote: { count: remote.length, p50Ms: percentile(remote, 50), p99Ms: percentile(remote, 99) },
      errors: [...new Set(subscribers.map((s) => s.error).filter(Boolean))],
    };
  } finally {
    measuring = false;
    for (const call of calls) call.cancel();
    for (const connection of connections) connection?.close();
    await cluster.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// (4) Coordination overhead

async function coordinationBench() {
  const cluster = await startCluster("postgres", 3);
  try {
    const ids: string[] = [];
    const cpu = cpuWindow(pidsOf(cluster));
    const t0 = nowMs();
    let next = 0;
    await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
      while (next < COORD_JOBS) {
        const node = cluster.nodes[next++ % cluster.nodes.length]!;
        const { job } = await node.client.unary("submitJob", submitRequest(ONE_SECOND_VM, "coordination"));
        ids.push(job!.id);
      }
    }));
    const submittedMs = nowMs() - t0;
    const end = await drained(cluster.nodes[0]!, 300_000, "coordination jobs");
    const use = cpu();
    let lastEnd = 0;
    const byNode = new Map<string, number>();
    // start_time to end_time of each job: the run's own length, to tell the provider's and engine's per-job cost
    // (a second job in a slot waits for it too) from gaps between a slot freeing and the next claim.
    const runMs: number[] = [];
    for (const jobId of ids) {
      const { job } = await cluster.nodes[0]!.client.unary("getJob", { jobId });
      lastEnd = Math.max(lastEnd, timestampMs(job!.endTime));
      runMs.push(timestampMs(job!.endTime) - timestampMs(job!.startTime));
      byNode.set(job!.nodeId, (byNode.get(job!.nodeId) ?? 0) + 1);
    }
    const idealMs = (COORD_JOBS / (cluster.nodes.length * SLOTS)) * 1000;
    const wallMs = lastEnd - t0;
    return {
      jobs: COORD_JOBS, completed: end.completed, failed: end.failed, submittedMs, wallMs, idealMs, ratio: wallMs / idealMs,
      runP50Ms: percentile(runMs, 50), runP99Ms: percentile(runMs, 99),
      /** What the wall time would be with no gap between jobs in a slot: jobs per slot x the median run. */
      noGapMs: (COORD_JOBS / (cluster.nodes.length * SLOTS)) * percentile(runMs, 50),
      byNode: Object.fromEntries([...byNode].sort()), cpu: use,
    };
  } finally {
    await cluster.stop();
  }
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const cpus = os.cpus();
  postgres = await startPostgres();
  postmaster = postmasterPid(postgres.port);
  const client = new pg.Client({ connectionString: postgres.url() });
  await client.connect();
  const pgVersion = (await client.query<{ server_version: string }>("SHOW server_version")).rows[0]!.server_version;
  await client.end();
  const machine = `${cpus.length} CPUs (${cpus[0]?.model ?? "?"}), node ${process.version}, ${os.platform()} ${os.release()}, PostgreSQL ${pgVersion}`;
  log("hypervisord cluster benchmark");
  log(`  machine: ${machine}; load average at start ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  log(`  the daemons, PostgreSQL and this bench client share these ${cpus.length} cores (and other users of the machine do too: see`
    + ` "other users" CPU). PostgreSQL is a throw-away cluster with fsync=off and synchronous_commit=off: commits cost no disk flush here.`);
  log(`  daemons: fake provider, --max-concurrent-jobs ${SLOTS} each; PostgreSQL nodes share one database, output root and encryption key`);
  log("");

  const submit = SKIP.has("submit") ? undefined : (log(`(1) SubmitJob: ${CALLS} calls of "${QUICK_VM}" (${IN_FLIGHT} in flight, after ${WARMUP_CALLS} warm-up), `
    + `${ROUNDS} fresh clusters per configuration; then ${PACED_JOBS} submits of "${PACED_VM}" at ${PACED_RATE}/s`), await submitBench());
  if (submit) log("");
  const failover = SKIP.has("failover") ? undefined : (log(`(2) failover: 3 nodes, lease timeout ${LEASE_S} s, "${LONG_VM}", kill -9 of the node running it`), await failoverBench());
  if (failover) log("");
  const stream = SKIP.has("stream") ? undefined : (log(`(3) StreamJobUpdates: ${SUBSCRIBERS} subscribers over 3 nodes, ${STREAM_JOBS} jobs "${QUICK_VM}" at ${STREAM_RATE}/s`), await streamBench());
  if (stream) log("");
  const coordination = SKIP.has("coordination") ? undefined : (log(`(4) coordination: 3 nodes x ${SLOTS} slots, ${COORD_JOBS} jobs "${ONE_SECOND_VM}"`), await coordinationBench());
  if (coordination) log("");

  log(`Results (load average now ${os.loadavg().map((l) => l.toFixed(2)).join(" ")})`);
  const sqlite = submit?.find((r) => r.name.startsWith("SQLite"));
  const pg1 = submit?.find((r) => r.name === "PostgreSQL, 1 node");
  if (submit) {
    log("");
    log(`SubmitJob, median of ${ROUNDS} rounds; submit to RUNNING from the paced phase`);
    log(table(["configuration", "calls/s", "rounds", "x SQLite", "call p50 ms", "call p99 ms", "errors", "to RUNNING p50 ms", "p99 ms"],
      submit.map((r) => [r.name, r.callsPerSec, r.callsPerSecRounds.map(fmt).join(", "), sqlite ? r.callsPerSec / sqlite.callsPerSec : NaN,
        r.callP50Ms, r.callP99Ms, r.errors, r.latency?.p50Ms ?? NaN, r.latency?.p99Ms ?? NaN])));
  }
  if (failover) {
    log("");
    log(`Failover: kill -9 to RUNNING on another node, ${failover.rounds.map((r) => `${fmt(r.ms)} ms (${r.from} -> ${r.to})`).join(", ")}; `
      + `median ${fmt(failover.medianMs)} ms, worst ${fmt(failover.maxMs)} ms (lease ${LEASE_S} s)`);
  }
  if (stream) {
    log("");
    log(`Stream delivery: ${stream.synced}/${stream.subscribers} subscribers synced, ${stream.lost} lost, ${stream.jobs} jobs, `
      + `${stream.deliveries}/${stream.expected} CREATED+STATE_CHANGED deliveries; p50 ${fmt(stream.p50Ms)} ms, p99 ${fmt(stream.p99Ms)} ms, `
      + `max ${fmt(stream.maxMs)} ms; ${stream.withEveryCreated} subscribers got every CREATED; ${cpuText(stream.cpu)}`
      + `${stream.errors.length ? `; stream errors: ${stream.errors.join("; ")}` : ""}`);
    log(`  subscribers on the node that wrote the update: ${stream.local.count} deliveries, p50 ${fmt(stream.local.p50Ms)} ms, p99 ${fmt(stream.local.p99Ms)} ms; `
      + `on another node: ${stream.remote.count}, p50 ${fmt(stream.remote.p50Ms)} ms, p99 ${fmt(stream.remote.p99Ms)} ms`);
    if (stream.cpu.benchPct >= 90) log("  note: this bench process was near a full core receiving the updates: part of the delay is its own queueing.");
  }
  if (coordination) {
    log("");
    log(`Coordination: ${coordination.completed} completed, ${coordination.failed} failed; submits took ${fmt(coordination.submittedMs)} ms; `
      + `first submit to last end_time ${fmt(coordination.wallMs / 1000)} s vs ideal ${fmt(coordination.idealMs / 1000)} s = ${fmt(coordination.ratio)}x; `
      + `jobs per node ${JSON.stringify(coordination.byNode)}; ${cpuText(coordination.cpu)}`);
    log(`  each job's run (start_time to end_time): p50 ${fmt(coordination.runP50Ms)} ms, p99 ${fmt(coordination.runP99Ms)} ms; `
      + `back to back in every slot that is ${fmt(coordination.noGapMs / 1000)} s: the rest of the wall time is submitting, claiming and gaps`);
  }

  const submitRatio = sqlite && pg1 ? pg1.callsPerSec / sqlite.callsPerSec : undefined;
  const submitPass = submitRatio === undefined ? undefined : submitRatio >= TARGET_SUBMIT_RATIO;
  const failoverLimit = LEASE_S * 1000 + TARGET_FAILOVER_EXTRA_MS;
  const failoverPass = failover ? failover.maxMs <= failoverLimit : undefined;
  const coordPass = coordination ? coordination.failed === 0 && coordination.ratio <= TARGET_COORD_RATIO : undefined;
  log("");
  log("Targets");
  log(table(["target", "measured", "verdict"], [
    [`PostgreSQL 1 node calls/s >= ${TARGET_SUBMIT_RATIO}x SQLite`, submitRatio === undefined ? "not run" : `${fmt(submitRatio)}x`, verdict(submitPass)],
    [`failover <= lease + ${TARGET_FAILOVER_EXTRA_MS / 1000} s (${failoverLimit / 1000} s), worst round`, failover ? `${fmt(failover.maxMs / 1000)} s` : "not run", verdict(failoverPass)],
    [`coordination wall time <= ${TARGET_COORD_RATIO}x ideal, none failed`, coordination ? `${fmt(coordination.ratio)}x` : "not run", verdict(coordPass)],
    ["stream delivery p99 (no target; figure)", stream ? `${fmt(stream.p99Ms)} ms` : "not run", "info"],
  ]));
  log("");
  log(JSON.stringify({
    bench: "cluster", machine,
    config: { rounds: ROUNDS, calls: CALLS, inFlight: IN_FLIGHT, pacedJobs: PACED_JOBS, pacedRate: PACED_RATE, leaseS: LEASE_S, subscribers: SUBSCRIBERS, streamJobs: STREAM_JOBS, streamRate: STREAM_RATE, coordJobs: COORD_JOBS },
    targets: { submitRatio: { target: TARGET_SUBMIT_RATIO, measured: submitRatio, pass: submitPass }, failoverMs: { target: failoverLimit, measured: failover?.maxMs, pass: failoverPass }, coordinationRatio: { target: TARGET_COORD_RATIO, measured: coordination?.ratio, pass: coordPass } },
    submit, failover, stream, coordination,
  }));
}

try {
  await main();
} catch (err) {
  process.stderr.write(`bench crashed: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
} finally {
  await Promise.all([...live].map((daemon) => daemon.kill()));
  await postgres?.stop();
}
