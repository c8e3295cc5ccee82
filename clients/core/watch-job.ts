import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { JobState, type Job } from "../../gen/hypervisord/v1/job_pb.js";
import type { HypervisordService, StreamJobUpdatesResponse } from "../../gen/hypervisord/v1/service_pb.js";
import { backoffMs, sleep, type BackoffOptions } from "./backoff.ts";

export interface WatchJobOptions {
  /** Stops watching (the job goes on); watchJob then rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Every update of the job as it arrives (snapshot, state changes, progress), and the SYNCED marker. */
  onUpdate?: (update: StreamJobUpdatesResponse) => void;
  /** Called before each reconnection of a dropped stream. */
  onReconnect?: (info: { attempt: number; afterSeq: bigint | undefined; error: ConnectError }) => void;
  /** Start after this seq (replaying state changes after it) instead of with a snapshot. */
  afterSeq?: bigint;
  /** Consecutive failed reconnections before giving up (a received update resets the count). Default 10. */
  maxReconnects?: number;
  /** Backoff between reconnections. Default 200 ms doubling up to 5 s. */
  backoff?: BackoffOptions;
}

const TERMINAL: ReadonlySet<JobState> = new Set([JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED]);

export function isTerminal(state: JobState): boolean {
  return TERMINAL.has(state);
}

/**
 * Why a stream may end with the job still going, in which case it is resumed: the daemon is
 * unreachable or restarting (UNAVAILABLE), the connection was reset (ABORTED: ECONNRESET over
 * HTTP/1.1; CANCELED: the HTTP/2 stream reset when the daemon's session dies, which watchJob only
 * sees when its own signal did not abort), the subscriber fell too far behind (RESOURCE_EXHAUSTED:
 * the daemon says to resume with after_seq), or the connection broke mid-message (INTERNAL raised
 * by the transport with a Node network error as cause).
 */
export function isDroppedStream(error: ConnectError): boolean {
  if ([Code.Unavailable, Code.Aborted, Code.Canceled, Code.ResourceExhausted].includes(error.code)) return true;
  return error.code === Code.Internal && error.cause instanceof Error;
}

/**
 * Follows one job over StreamJobUpdates until it reaches COMPLETED, FAILED or CANCELLED and
 * resolves with that final Job. A dropped stream is reopened with `after_seq` = the last seq
 * seen, so the daemon replays every state change missed meanwhile (also across a daemon restart).
 * Rejects with the call's error for anything else (NOT_FOUND for an unknown job, ...).
 */
export async function watchJob(client: Client<typeof HypervisordService>, jobId: string, options: WatchJobOptions = {}): Promise<Job> {
  const { signal, onUpdate } = options;
  const maxReconnects = options.maxReconnects ?? 10;
  const backoff = { initialMs: 200, maxMs: 5_000, ...options.backoff };
  let afterSeq = options.afterSeq;
  let failures = 0;
  for (;;) {
    let dropped: ConnectError;
    try {
      for await (const update of client.streamJobUpdates({ jobIds: [jobId], afterSeq }, { signal })) {
        failures = 0;
        if (afterSeq === undefined || update.seq > afterSeq) afterSeq = update.seq;
        onUpdate?.(update);
        if (update.jobId === jobId && isTerminal(update.state)) {
          return update.job ?? (await client.getJob({ jobId }, { signal })).job!;
        }
      }
      // The daemon closed the stream without an error (it is shutting down): resume elsewhere/later.
      dropped = new ConnectError(`update stream of job ${jobId} ended before the job did`, Code.Unavailable);
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
