import type { Logger } from "pino";
import type { AzureConnection } from "../../domain/job.ts";
import { HypervisordError } from "../../errors.ts";
import type { Converter } from "../../stages/converter.ts";
import type { Provider, SecretSealer, SnapshotEvent } from "../provider.ts";

export interface AzureProviderOptions {
  /** Used when a request names no connection. */
  defaultConnection?: AzureConnection;
  /** Concurrent range requests per storage host, across jobs. */
  maxTransfersPerHost: number;
  /** How long a read SAS is granted for (beginGetAccess durationInSeconds). */
  accessDurationMs: number;
  converter?: Converter;
  secretBox?: SecretSealer;
  onSnapshot?(event: SnapshotEvent): void;
  logger: Logger;
}

/** Exports Azure VMs (managed disks) through snapshots and read SAS URLs of their VHD page blobs. */
export function createAzureProvider(_options: AzureProviderOptions): Provider {
  const unimplemented = () => {
    throw new HypervisordError("UNIMPLEMENTED", "the azure provider is being built");
  };
  return {
    name: "azure",
    resumable: true,
    listVMs: async () => unimplemented(),
    getVM: async () => unimplemented(),
    export: async () => unimplemented(),
  };
}
