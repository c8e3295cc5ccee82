import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ExportFormat } from "../../gen/hypervisord/v1/job_pb.js";
import { ClusterStatusSchema, JobCountsSchema, type HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import { CONVERT_FORMATS, PRIORITIES } from "../domain/job.ts";
import type { Engine } from "../engine/engine.ts";
import type { ProviderRegistry } from "../providers/registry.ts";
import type { ServiceHandlers } from "../rpc/handlers.ts";
import type { Store } from "../store/store.ts";
import { VERSION } from "../version.ts";
import type { ClusterNodeStatus } from "../cluster/cluster.ts";

type SystemHandlers = Pick<ServiceHandlers<typeof HypervisordService>, "getStatus" | "getCapabilities">;

export interface SystemDeps {
  engine: Pick<Engine, "stats">;
  store: Pick<Store, "kind">;
  providers: ProviderRegistry;
  allowedOutputRoots: readonly string[];
  /** Per conversion format: why it cannot run here, or undefined when it can. */
  conversionUnavailable(format: string): string | undefined;
  startTime: number;
  /** A cluster node (PostgreSQL store): its id and how it sees the cluster. */
  cluster?: { nodeId: string; status(): Promise<ClusterNodeStatus> };
}

/** The daemon itself: GetStatus (version, uptime, queue, providers' counters) and GetCapabilities. */
export function createSystemHandlers(deps: SystemDeps): SystemHandlers {
  const { engine, providers } = deps;
  return {
    async getStatus() {
      const stats = await engine.stats();
      const counts = stats.counts;
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      return {
        version: VERSION,
        startTime: timestampFromMs(deps.startTime),
        uptimeSeconds: (Date.now() - deps.startTime) / 1000,
        jobCounts: create(JobCountsSchema, {
          queued: BigInt(counts.queued), running: BigInt(counts.running), completed: BigInt(counts.completed),
          failed: BigInt(counts.failed), cancelled: BigInt(counts.cancelled), total: BigInt(total),
        }),
        queueDepth: BigInt(counts.queued),
        running: stats.running,
        maxConcurrentJobs: stats.maxConcurrentJobs,
        lifecycle: stats.lifecycle,
        store: deps.store.kind,
        lastSeq: BigInt(stats.lastSeq),
        subscribers: stats.subscribers,
        nodeId: deps.cluster?.nodeId ?? "",
        cluster: deps.cluster && clusterStatus(await deps.cluster.status()),
        providers: await Promise.all(providers.list().filter((p) => p.stats).map(async (p) => ({
          name: p.name,
          counters: Object.fromEntries(Object.entries(await p.stats!()).map(([k, v]) => [k, BigInt(v)])),
        }))),
      };
    },

    async getCapabilities() {
      return {
        providers: providers.list().map((p) => ({ name: p.name, resumable: p.resumable, discovery: Boolean(p.listVMs && p.getVM) })),
        formats: [ExportFormat.OVF, ExportFormat.OVA],
        conversions: CONVERT_FORMATS.map((format) => {
          const reason = deps.conversionUnavailable(format);
          return { format, available: !reason, reason: reason ?? "" };
        }),
        compressions: ["gzip"],
        priorities: [...PRIORITIES],
        allowedOutputRoots: [...deps.allowedOutputRoots],
      };
    },
  };
}

function clusterStatus(status: ClusterNodeStatus) {
  return create(ClusterStatusSchema, {
    databaseReachable: status.databaseReachable,
    lastLeaseRenewal: status.lastLeaseRenewal === undefined ? undefined : timestampFromMs(status.lastLeaseRenewal),
    schedulerLeader: status.schedulerLeader,
    runningByNode: status.runningByNode,
  });
}
