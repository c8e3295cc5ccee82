import type { Logger } from "pino";
import type { DaemonConfig } from "../config/load-config.ts";
import type { DaemonTools, Provider } from "../providers/provider.ts";
import { createAzureProvider } from "../providers/azure/azure-provider.ts";
import { createVSphereProvider } from "../providers/vsphere/vsphere-provider.ts";

/** The providers compiled into the daemon, from its configuration: here, not in providers/, which knows no config. */
export function builtinProviders(config: DaemonConfig, logger: Logger, tools: DaemonTools): Provider[] {
  return [
    createVSphereProvider({
      defaultConnection: config.defaultVSphere,
      maxConnections: config.vsphere.maxConnections,
      sessionIdleTimeoutMs: config.vsphere.sessionIdleTimeoutMs,
      maxTransfersPerHost: config.vsphere.maxTransfersPerHost,
      converter: tools.converter,
      secretBox: tools.secretBox,
      snapshots: {
        removeAttempts: config.vsphere.snapshotRemoveAttempts,
        removeBackoffMs: config.vsphere.snapshotRemoveBackoffMs,
        onEvent: tools.onSnapshot,
      },
      logger: logger.child({ provider: "vsphere" }),
    }),
    createAzureProvider({
      defaultConnection: config.defaultAzure,
      maxTransfersPerHost: config.azure.maxTransfersPerHost,
      accessDurationMs: config.azure.accessDurationMs,
      converter: tools.converter,
      secretBox: tools.secretBox,
      onSnapshot: tools.onSnapshot,
      logger: logger.child({ provider: "azure" }),
    }),
  ];
}
