import fs from "node:fs";
import type http from "node:http";
import type http2 from "node:http2";
import { errorMessage } from "../errors.ts";

export type HealthStatus = "healthy" | "degraded" | "unhealthy";

export interface HealthCheckDeps {
  version: string;
  /** Milliseconds since the epoch. */
  startTime: number;
  /** Throws (or rejects) when the database is unusable (e.g. runs store.countByState()). */
  checkDatabase(): void | Promise<void>;
  queue(): QueueState | Promise<QueueState>;
  /** The data directory and the output roots: each must exist and be writable. */
  paths: readonly string[];
  /** A path with less free space than this is degraded. */
  minFreeBytes: number;
  memory?: { maxRssBytes?: number };
  /** Several daemons on one PostgreSQL: this node's lease renewal (src/cluster/lease-keeper.ts). */
  cluster?: { nodeId: string; leaseMs: number; lease(): { databaseReachable: boolean; lastRenewal?: number; lastError?: string } | undefined };
  /** A check that takes longer than this fails (e.g. statfs on a hung network mount). Default 2000. */
  timeoutMs?: number;
}

export interface QueueState {
  queued: number;
  running: number;
  lifecycle: string;
}

export interface DiskPathReport {
  path: string;
  status: HealthStatus;
  free_bytes: number;
  total_bytes: number;
  error?: string;
}

export interface HealthReport {
  status: HealthStatus;
  version: string;
  uptime_seconds: number;
  checks: {
    database: { status: HealthStatus; latency_ms: number; error?: string };
    queue: { status: HealthStatus; queued: number; running: number; lifecycle: string; latency_ms: number; error?: string };
    disk: { status: HealthStatus; latency_ms: number; paths: DiskPathReport[] };
    memory: { status: HealthStatus; rss_bytes: number; heap_used_bytes: number; heap_total_bytes: number; latency_ms: number };
    /** With a PostgreSQL store shared by several daemons. */
    cluster?: ClusterReport & { latency_ms: number };
  };
}

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;

const RANK: Record<HealthStatus, number> = { healthy: 0, degraded: 1, unhealthy: 2 };

export function worst(statuses: readonly HealthStatus[]): HealthStatus {
  return statuses.reduce<HealthStatus>((a, b) => (RANK[b] > RANK[a] ? b : a), "healthy");
}

/**
 * The daemon's health in detail, for GET /health and for the gRPC health service:
 * unhealthy (503) when it cannot do its work: the database fails, it is shutting down, a data or
 * output directory is missing or not writable; degraded (still 200) when it works but needs
 * attention: little free space, memory over its limit, still starting.
 */
export function createHealthCheck(deps: HealthCheckDeps) {
  const timeoutMs = deps.timeoutMs ?? 2000;

  async function check(): Promise<HealthReport> {
    const [database, queue, disk, memory] = await Promise.all([
      timed(() => checkDatabase(deps, timeoutMs)),
      timed(() => checkQueue(deps, timeoutMs)),
      timed(() => checkDisks(deps, timeoutMs)),
      timed(async () => checkMemory(deps)),
    ]);
    const cluster = deps.cluster && await timed(async () => checkCluster(deps.cluster!));
    const checks = { database, queue, disk, memory, ...(cluster ? { cluster } : {}) };
    return {
      status: worst(Object.values(checks).map((c) => c.status)),
      version: deps.version,
      uptime_seconds: Math.max(0, Math.round((Date.now() - deps.startTime) / 1000)),
      checks,
    };
  }

  return {
    check,
    async httpRoute(req: Request, res: Response): Promise<void> {
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD", "content-type": "application/json" });
        res.end(JSON.stringify({ error: "only GET and HEAD are allowed on /health" }));
        return;
      }
      const report = await check();
      res.writeHead(report.status === "unhealthy" ? 503 : 200, { "content-type": "application/json", "cache-control": "no-store" });
      res.end(req.method === "HEAD" ? "" : JSON.stringify(report));
    },
    /**
     * Runs the check every `intervalMs` and calls `listener` when the overall status changes (and
     * once with the first one): drive the gRPC health service with it. Returns the stop function.
     */
    watch(intervalMs: number, listener: (status: HealthStatus, report: HealthReport) => void): () => void {
      let last: HealthStatus | undefined;
      let stopped = false;
      let timer: NodeJS.Timeout | undefined;
      const tick = async () => {
        const report = await check();
        if (stopped) return;
        if (report.status !== last) listener((last = report.status), report);
        timer = setTimeout(tick, intervalMs);
        timer.unref();
      };
      void tick();
      return () => {
        stopped = true;
        clearTimeout(timer);
      };
    },
  };
}

export type HealthCheck = ReturnType<typeof createHealthCheck>;

/** Runs one check and adds its duration (each check turns its own failures into an unhealthy status). */
async function timed<T extends { status: HealthStatus }>(run: () => Promise<T>): Promise<T & { latency_ms: number }> {
  const start = performance.now();
  const result = await run();
  return { ...result, latency_ms: Math.round((performance.now() - start) * 1000) / 1000 };
}

/** A database that does not answer within the timeout (a networked one) is as unusable as one that fails. */
async function checkDatabase(deps: HealthCheckDeps, timeoutMs: number): Promise<{ status: HealthStatus; error?: string }> {
  try {
    await withTimeout(Promise.resolve().then(() => deps.checkDatabase()), timeoutMs);
    return { status: "healthy" };
  } catch (err) {
    return { status: "unhealthy", error: `database: ${errorMessage(err)}` };
  }
}

/** Draining and stopped are unhealthy: no new job is accepted, so balancers and probes should look elsewhere. */
async function checkQueue(deps: HealthCheckDeps, timeoutMs: number) {
  try {
    const { queued, running, lifecycle } = await withTimeout(Promise.resolve().then(() => deps.queue()), timeoutMs);
    const status: HealthStatus = lifecycle === "running" ? "healthy" : lifecycle === "starting" ? "degraded" : "unhealthy";
    return { status, queued, running, lifecycle };
  } catch (err) {
    return { status: "unhealthy" as const, queued: 0, running: 0, lifecycle: "unknown", error: `queue: ${errorMessage(err)}` };
  }
}

async function checkDisks(deps: HealthCheckDeps, timeoutMs: number): Promise<{ status: HealthStatus; paths: DiskPathReport[] }> {
  const paths = await Promise.all(deps.paths.map((p) => checkPath(p, deps.minFreeBytes, timeoutMs)));
  return { status: worst(paths.map((p) => p.status)), paths };
}

async function checkPath(path: string, minFreeBytes: number, timeoutMs: number): Promise<DiskPathReport> {
  try {
    const stats = await withTimeout(
      fs.promises.access(path, fs.constants.R_OK | fs.constants.W_OK).then(() => fs.promises.statfs(path)),
      timeoutMs,
    );
    const free = stats.bavail * stats.bsize;
    const total = stats.blocks * stats.bsize;
    if (free < minFreeBytes) {
      return { path, status: "degraded", free_bytes: free, total_bytes: total, error: `${free} bytes free, below the minimum of ${minFreeBytes}` };
    }
    return { path, status: "healthy", free_bytes: free, total_bytes: total };
  } catch (err) {
    return { path, status: "unhealthy", free_bytes: 0, total_bytes: 0, error: errorMessage(err) };
  }
}

interface ClusterReport {
  status: HealthStatus;
  node_id: string;
  database_reachable: boolean;
  /** ISO time of the last lease renewal of this node's running jobs (every lease/3; also when it runs none). */
  last_lease_renewal?: string;
  lease_timeout_ms: number;
  error?: string;
}

/** Unhealthy when the leases could not be renewed for a lease timeout: another node may be resuming this node's jobs. */
function checkCluster(cluster: NonNullable<HealthCheckDeps["cluster"]>): ClusterReport {
  const lease = cluster.lease();
  const base = { node_id: cluster.nodeId, lease_timeout_ms: cluster.leaseMs, database_reachable: lease?.databaseReachable ?? false };
  if (!lease) return { ...base, status: "degraded", error: "the node has not joined the cluster yet" };
  const last = lease.lastRenewal;
  const overdue = last !== undefined && Date.now() - last > cluster.leaseMs;
  const status: HealthStatus = !lease.databaseReachable || overdue ? "unhealthy" : last === undefined ? "degraded" : "healthy";
  return {
    ...base, status,
    ...(last !== undefined ? { last_lease_renewal: new Date(last).toISOString() } : {}),
    ...(lease.lastError ? { error: `lease renewal: ${lease.lastError}` } : overdue ? { error: "lease renewal overdue" } : {}),
  };
}

function checkMemory(deps: HealthCheckDeps) {
  const usage = process.memoryUsage();
  const max = deps.memory?.maxRssBytes;
  return {
    status: (max !== undefined && usage.rss > max ? "degraded" : "healthy") as HealthStatus,
    rss_bytes: usage.rss,
    heap_used_bytes: usage.heapUsed,
    heap_total_bytes: usage.heapTotal,
  };
}

/** Settles with `work`, or fails after `ms` (the work itself cannot be cancelled: statfs is not). */
function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
