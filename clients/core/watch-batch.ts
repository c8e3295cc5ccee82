import type { Client } from "@connectrpc/connect";
import { BatchState, type Batch } from "../../gen/hypervisord/v1/batch_pb.js";
import { JobState } from "../../gen/hypervisord/v1/job_pb.js";
import { JobEventKind, type HypervisordService, type StreamJobUpdatesResponse } from "../../gen/hypervisord/v1/service_pb.js";
import { followUpdates, type FollowOptions } from "./follow-updates.ts";
import { isTerminal } from "./watch-job.ts";

/** Like watchJob's, without afterSeq: a batch is always followed from its current state. */
export interface WatchBatchOptions extends Omit<FollowOptions, "afterSeq"> {
  /** Every update of the batch and its child jobs as it arrives (BATCH_CHANGED, snapshots, state changes, progress, SYNCED). */
  onUpdate?: (update: StreamJobUpdatesResponse) => void;
  /** The batch each time it is seen whole: from BATCH_CHANGED, and from GetBatch after each (re)connection. */
  onBatch?: (batch: Batch) => void;
}

export function isBatchTerminal(state: BatchState): boolean {
  return state !== BatchState.RUNNING && state !== BatchState.UNSPECIFIED;
}

/**
 * Follows a batch over StreamJobUpdates (batch_ids) until it ends, and resolves with the final Batch.
 * A replay after a reconnection (after_seq) carries the children's state changes but not
 * necessarily the batch's own, so after every SYNCED marker the batch is read again with GetBatch;
 * the same when every child known has ended and no final BATCH_CHANGED has arrived yet.
 * Rejects with the call's error for anything else (NOT_FOUND for an unknown batch, ...).
 */
export async function watchBatch(client: Client<typeof HypervisordService>, batchId: string, options: WatchBatchOptions = {}): Promise<Batch> {
  const { signal } = options;
  const children = new Map<string, boolean>(); // job id -> ended
  const seen = (batch: Batch): Batch | undefined => {
    for (const job of batch.jobs) children.set(job.jobId, isTerminal(job.state));
    options.onBatch?.(batch);
    return isBatchTerminal(batch.state) ? batch : undefined;
  };
  const fetch = async () => seen((await client.getBatch({ batchId }, { signal })).batch!);
  return followUpdates(client, { batchIds: [batchId] }, { kind: "batch", id: batchId }, { ...options, afterSeq: undefined }, async (update) => {
    options.onUpdate?.(update);
    if (update.kind === JobEventKind.BATCH_CHANGED && update.batch?.id === batchId) return seen(update.batch);
    if (update.kind === JobEventKind.SYNCED) return fetch();
    if (children.has(update.jobId) && update.state !== JobState.UNSPECIFIED) {
      const wasEnded = children.get(update.jobId);
      children.set(update.jobId, isTerminal(update.state));
      if (!wasEnded && isTerminal(update.state) && [...children.values()].every(Boolean)) return fetch();
    }
    return undefined;
  });
}
