import type { Logger } from "pino";
import { azureConnectionOf } from "../../domain/azure-connection.ts";
import { runningVmPolicyOf, type AzureConnection, type JobDefinition } from "../../domain/job.ts";
import { InvalidArgumentError } from "../../errors.ts";
import type { Converter } from "../../stages/converter.ts";
import { createHostSlots } from "../../transfer/host-slots.ts";
import type { Provider, SecretSealer, SnapshotEvent } from "../provider.ts";
import { createArmClient } from "./arm-client.ts";
import { getVm, listVms } from "./discovery.ts";
import { exportAzureVm, type AzureCheckpoint } from "./export-vm.ts";
import { pendingCleanup, releaseHeld, type ReleaseSettings } from "./held-resources.ts";
import { createTokenCache } from "./token.ts";

export interface AzureProviderOptions {
  /** Used when a request names no connection. */
  defaultConnection?: AzureConnection;
  /** Concurrent range requests per storage host, across jobs. */
  maxTransfersPerHost: number;
  /** How long a read SAS is granted for (beginGetAccess durationInSeconds); ended as soon as the disks are read. */
  accessDurationMs: number;
  converter?: Converter;
  secretBox?: SecretSealer;
  onSnapshot?(event: SnapshotEvent): void;
  /** Snapshot deletion tries within a run (default 5, 1 s doubling). */
  removeAttempts?: number;
  removeBackoffMs?: number;
  logger: Logger;
}

/** Exports Azure VMs (managed disks) through snapshots and read SAS URLs of their VHD page blobs. */
export function createAzureProvider(options: AzureProviderOptions): Provider {
  const tokens = createTokenCache();
  const hostSlots = createHostSlots(options.maxTransfersPerHost);
  const release: ReleaseSettings = { removeAttempts: options.removeAttempts ?? 5, removeBackoffMs: options.removeBackoffMs ?? 1000, onSnapshot: options.onSnapshot };
  const arm = (given: AzureConnection | undefined, field: string) =>
    createArmClient(azureConnectionOf(given, options.defaultConnection, field), tokens, { logger: options.logger });

  return {
    name: "azure",
    resumable: true,
    // The connection itself is checked at the API edge (job-definition.ts); here, what Azure cannot do.
    validate(definition: JobDefinition) {
      if (runningVmPolicyOf(definition) === "power_off") {
        throw new InvalidArgumentError("definition.running_vm_policy", "\"power_off\" is not supported for Azure: a running VM is exported through snapshots (\"snapshot\"), or refused (\"fail\"); deallocate it to export its disks directly");
      }
      if (definition.quiescePolicy === "fail" && definition.quiesce !== false) {
        throw new InvalidArgumentError("definition.quiesce_policy", "\"fail\" cannot be met: Azure managed-disk snapshots never quiesce the guest (they are crash-consistent)");
      }
    },
    listVMs: (query, signal) => listVms(arm(query.azure, "azure"), query, signal),
    getVM: (query, signal) => getVm(arm(query.azure, "azure"), query.vm, signal),
    export: (definition, context) =>
      exportAzureVm(arm(definition.azure, "definition.azure"), definition, context, {
        hostSlots, accessDurationMs: options.accessDurationMs, converter: options.converter, release,
      }),
    // A job that will not run again: its open accesses ended, then its snapshots deleted (the records kept, with why, while that fails).
    async releaseLeftovers(job, checkpoint, logger) {
      const held = checkpoint as AzureCheckpoint | undefined;
      if (!held?.grants?.length && !held?.snapshots?.length) return undefined;
      const pending = await releaseHeld(arm(job.definition.azure, "definition.azure"), held, release, logger, () => {});
      return pending ? { files: {}, grants: held.grants, snapshots: held.snapshots } satisfies AzureCheckpoint : undefined;
    },
    pendingCleanup: (checkpoint) => pendingCleanup(checkpoint as AzureCheckpoint | undefined),
  };
}
