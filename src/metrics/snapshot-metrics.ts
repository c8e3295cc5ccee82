import { Counter, Gauge, type Registry } from "prom-client";
import type { SnapshotEvent } from "../providers/provider.ts";

/**
 * Snapshots of running VMs: made (by consistency), removed, removals that failed (each try), and the jobs whose
 * snapshot is still waiting for its removal (read from the store at each scrape, so it survives restarts).
 */
export function createSnapshotMetrics(registry: Registry, pendingRemovals?: () => Promise<number>): (event: SnapshotEvent) => void {
  const created = new Counter({
    name: "hypersdk_snapshots_created_total", help: "Snapshots of running VMs taken for an export, by consistency (application_consistent: quiesced)",
    labelNames: ["consistency"], registers: [registry],
  });
  for (const consistency of ["application_consistent", "crash_consistent"]) created.inc({ consistency }, 0);
  const removed = new Counter({ name: "hypersdk_snapshots_removed_total", help: "Snapshots made for exports and removed", registers: [registry] });
  const failures = new Counter({
    name: "hypersdk_snapshot_removal_failures_total", help: "RemoveSnapshot_Task tries that failed (each is retried: in the run, then in the background)", registers: [registry],
  });
  const pending: Gauge = new Gauge({
    name: "hypersdk_snapshots_pending_removal", help: "Jobs whose snapshot could not be removed yet (Job.pending_cleanup); the daemon keeps trying", registers: [registry],
    async collect() {
      if (pendingRemovals) pending.set(await pendingRemovals());
    },
  });
  return (event) => {
    if (event.kind === "created") created.inc({ consistency: event.consistency });
    else if (event.kind === "removed") removed.inc();
    else failures.inc();
  };
}
