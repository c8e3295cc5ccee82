import type { Logger } from "pino";
import type { VSphereConnection } from "../../domain/job.ts";
import { InvalidArgumentError, UnavailableError } from "../../errors.ts";
import type { Converter } from "../../export/convert.ts";
import { createHostSlots } from "../../export/download.ts";
import type { Provider, SecretSealer } from "../provider.ts";
import { getVM, listVMs } from "./discovery.ts";
import { exportVm, type ExportCheckpoint } from "./export-vm.ts";
import { abortRecordedLease } from "./lease-record.ts";
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
  logger: Logger;
}

export function createVSphereProvider(options: VSphereProviderOptions): Provider {
  const pool = createSessionPool({ maxConnections: options.maxConnections, idleTimeoutMs: options.sessionIdleTimeoutMs, logger: options.logger });
  const hostSlots = createHostSlots(options.maxTransfersPerHost);

  const connectionOf = (given: VSphereConnection | undefined, field: string): VSphereConnection => {
    if (given?.url) return given;
    if (options.defaultConnection) return options.defaultConnection;
    throw new InvalidArgumentError(`${field}.url`, "required: the daemon has no default vSphere connection configured");
  };

  return {
    name: "vsphere",
    resumable: true,
    listVMs: (query, signal) => pool.use(connectionOf(query.connection, "vsphere"), signal, (s) => listVMs(s, query, signal)),
    getVM: (query, signal) => pool.use(connectionOf(query.connection, "vsphere"), signal, (s) => getVM(s, query.vm, signal)),
    export: (definition, context) =>
      pool.use(connectionOf(definition.vsphere, "definition.vsphere"), context.signal,
        (s) => exportVm(s, definition, context, { hostSlots, converter: options.converter, secretBox: options.secretBox })),
    // The lease of a job that will not run again: aborted in its own session, the record dropped unless vCenter was unreachable.
    async releaseLeftovers(job, checkpoint, logger) {
      // Nothing else of the checkpoint is of use to a job that will not run again.
      const record = (checkpoint as ExportCheckpoint | undefined)?.lease;
      if (!record) return undefined;
      const ended = await pool.use(connectionOf(job.definition.vsphere, "definition.vsphere"), AbortSignal.timeout(60_000),
        (s) => abortRecordedLease(record, s, options.secretBox, logger));
      if (ended.outcome === "unreachable") throw new UnavailableError(`vSphere could not be reached to abort lease ${record.lease}: ${ended.why}`);
      logger.info({ lease: record.lease, outcome: ended.outcome }, "released the export lease of a job that will not run again");
      return undefined;
    },
    stats: async () => ({ ...(await pool.stats()) }),
    close: () => pool.closeAll(),
  };
}
