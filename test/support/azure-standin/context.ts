import type { StandinState } from "./state.ts";

export interface Counts {
  tokenRequests: number;
  armRequests: number;
  blobRequests: number;
  blobBytes: number;
  pageListRequests: number;
  /** Bodies the blob proxy cut (faults.cutBlob). */
  blobCuts: number;
}

export interface FaultState {
  armThrottles: { left: number; retryAfterSeconds: number; match?: RegExp }[];
  denied: Set<string>;
  blobCuts: { afterBytes: number; left: number }[];
  blobThrottle: { left: number; retryAfterSeconds: number };
  blobBytesPerSecond: number;
  lroPolls: number;
  snapshotDeleteFailures: number;
  refuseIncremental: boolean;
}

/** What the token, ARM and blob faces share. */
export interface Ctx {
  tenantId: string;
  clientId: string;
  clientSecret: string;
  objectId: string;
  subscriptionId: string;
  /** Resource manager base URLs (http and https) a token may be asked for. */
  audiences: Set<string>;
  blobProxy: string;
  pageSize: number;
  state: StandinState;
  faults: FaultState;
  counts: Counts;
  requests: { method: string; path: string; apiVersion?: string; status: number }[];
}
