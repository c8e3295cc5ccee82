import type { Logger } from "pino";
import type { VSphereConnection } from "../../domain/job.ts";
import { vsphereConnectionOf } from "../../domain/vsphere-connection.ts";
import { UnavailableError } from "../../errors.ts";
import type { Converter } from "../../stages/converter.ts";
import { createHostSlots } from "../../transfer/host-slots.ts";
import type { Provider, SecretSealer } from "../provider.ts";
import { getVM, listVMs } from "./discovery.ts";
import { exportVm, type ExportCheckpoint } from "./export-vm.ts";
import type { SnapshotSettings } from "./export-source.ts";
import { abortRecordedLease } from "./lease-record.ts";
import { removeSnapshot } from "./snapshot.ts";
import { pendingCleanupText } from "./snapshot-record.ts";
import { createSessionPool } from "./session-pool.ts";

export interface VSphereProviderOptions {
  /** Used when a request names no connection. */
  defaultConnection?: VSphereConnection;
  maxConnections: number;
  sessionIdleTimeoutMs: number;
  /** Concurrent NFC transfers per ESXi host, across all jobs (hosts throttle beyond ~8). */
  maxTransfersPerHost: number;
  /** qemu-img, shared by all jobs; undefined when it is unavailable. */
  converter?: Converter;
  /** Seals the session cookie of a held lease in the job's checkpoint (the daemon's encryption key). */
  secretBox?: SecretSealer;
  /** Removal of the snapshots of running VMs: tries within a run, and the metrics' events. */
  snapshots?: Partial<SnapshotSettings>;
  logger: Logger;
}

export function createVSphereProvider(options: VSphereProviderOptions): Provider {
  const pool = createSessionPool({ maxConnections: options.maxConnections, idleTimeoutMs: options.sessionIdleTimeoutMs, logger: options.logger });
  const hostSlots = createHostSlots(options.maxTransfersPerHost);
  const snapshots: SnapshotSettings = { removeAttempts: 5, removeBackoffMs: 1000, ...options.snapshots };

  const connectionOf = (given: VSphereConnection | undefined, field: string) => vsphereConnectionOf(given, options.defaultConnection, field);

  return {
    name: "vsphere",
    resumable: true,
    listVMs: (query, signal) => pool.use(connectionOf(query.connection, "vsphere"), signal, (s) => listVMs(s, query, signal)),
    getVM: (query, signal) => pool.use(connectionOf(query.connection, "vsphere"), signal, (s) => getVM(s, query.vm, signal)),
    export: (definition, context) =>
      pool.use(connectionOf(definition.vsphere, "definition.vsphere"), context.signal,
        (s) => exportVm(s, definition, context, { hostSlots, converter: options.converter, secretBox: options.secretBox, snapshots })),
    // What a job that will not run again still holds: its lease aborted in its own session (the record dropped unless
    // vCenter was unreachable), then its snapshot removed (the record kept, with why, while that fails).
    async releaseLeftovers(job, checkpoint, logger) {
      // Nothing else of the checkpoint is of use to a job that will not run again.
      const { lease, snapshot } = (checkpoint as ExportCheckpoint | undefined) ?? {};
      if (!lease && !snapshot) return undefined;
      const connection = connectionOf(job.definition.vsphere, "definition.vsphere");
      if (lease) {
        const ended = await pool.use(connection, AbortSignal.timeout(60_000), (s) => abortRecordedLease(lease, s, options.secretBox, logger));
        if (ended.outcome === "unreachable") throw new UnavailableError(`vSphere could not be reached to abort lease ${lease.lease}: ${ended.why}`);
        logger.info({ lease: lease.lease, outcome: ended.outcome }, "released the export lease of a job that will not run again");
      }
      if (!snapshot) return undefined;
      const removed = await pool.use(connection, AbortSignal.timeout(130_000), (s) => removeSnapshot(s, snapshot));
      if (removed.outcome === "failed") {
        snapshot.removeError = removed.why;
        snapshots.onEvent?.({ kind: "removal_failed" });
        logger.warn({ snapshot: snapshot.snapshot, name: snapshot.name, err: removed.why }, "could not remove the snapshot of a job that has ended; trying again later");
        return { files: {}, snapshot } satisfies ExportCheckpoint;
      }
      if (removed.outcome === "removed") snapshots.onEvent?.({ kind: "removed" });
      logger.info({ snapshot: snapshot.snapshot, name: snapshot.name, outcome: removed.outcome }, "removed the snapshot of a job that has ended");
      return undefined;
    },
    pendingCleanup(checkpoint) {
      const record = (checkpoint as ExportCheckpoint | undefined)?.snapshot;
      return record ? pendingCleanupText(record) : undefined;
    },
    stats: async () => ({ ...(await pool.stats()) }),
    close: () => pool.closeAll(),
  };
}
