import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { BatchState, type Batch } from "../../gen/hypervisord/v1/batch_pb.js";
import { JobState } from "../../gen/hypervisord/v1/job_pb.js";
import { JobEventKind, type HypervisordService, type StreamJobUpdatesResponse } from "../../gen/hypervisord/v1/service_pb.js";
import { backoffMs, sleep, type BackoffOptions } from "./backoff.ts";
import { isDroppedStream, isTerminal } from "./watch-job.ts";

export interface WatchBatchOptions {
  /** Stops watching (the batch goes on); watchBatch then rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Every update of the batch and its child jobs as it arrives (BATCH_CHANGED, snapshots, state changes, progress, SYNCED). */
  onUpdate?: (update: StreamJobUpdatesResponse) => void;
  /** The batch each time it is seen whole: from BATCH_CHANGED, and from GetBatch after each (re)connection. */
  onBatch?: (batch: Batch) => void;
  /** Called before each reconnection of a dropped stream. */
  onReconnect?: (info: { attempt: number; afterSeq: bigint | undefined; error: ConnectError }) => void;
  /** Consecutive failed reconnections before giving up (a received update resets the count). Default 10. */
  maxReconnects?: number;
  /** Backoff between reconnections. Default 200 ms doubling up to 5 s. */
  backoff?: BackoffOptions;
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
  const maxReconnects = options.maxReconnects ?? 10;
  const backoff = { initialMs: 200, maxMs: 5_000, ...options.backoff };
  const children = new Map<string, boolean>(); // job id -> ended
  const seen = (batch: Batch): Batch | undefined => {
    for (const job of batch.jobs) children.set(job.jobId, isTerminal(job.state));
    options.onBatch?.(batch);
    return isBatchTerminal(batch.state) ? batch : undefined;
  };
  const fetch = async () => seen((await client.getBatch({ batchId }, { signal })).batch!);
  let afterSeq: bigint | undefined;
  let failures = 0;
  for (;;) {
    let dropped: ConnectError;
    try {
      for await (const update of client.streamJobUpdates({ batchIds: [batchId], afterSeq }, { signal })) {
        failures = 0;
        if (afterSeq === undefined || update.seq > afterSeq) afterSeq = update.seq;
        options.onUpdate?.(update);
        let ended: Batch | undefined;
        if (update.kind === JobEventKind.BATCH_CHANGED && update.batch?.id === batchId) {
          ended = seen(update.batch);
        } else if (update.kind === JobEventKind.SYNCED) {
          ended = await fetch();
        } else if (children.has(update.jobId) && update.state !== JobState.UNSPECIFIED) {
          const wasEnded = children.get(update.jobId);
          children.set(update.jobId, isTerminal(update.state));
          if (!wasEnded && isTerminal(update.state) && [...children.values()].every(Boolean)) ended = await fetch();
        }
        if (ended) return ended;
      }
      dropped = new ConnectError(`update stream of batch ${batchId} ended before the batch did`, Code.Unavailable);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      dropped = ConnectError.from(err);
      if (!isDroppedStream(dropped)) throw dropped;
    }
    if (++failures > maxReconnects) throw dropped;
    options.onReconnect?.({ attempt: failures, afterSeq, error: dropped });
    await sleep(backoffMs(failures - 1, backoff), signal);
  }
}
