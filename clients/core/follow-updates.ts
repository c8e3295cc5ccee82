import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { HypervisordService, StreamJobUpdatesResponse } from "../../gen/hypervisord/v1/service_pb.js";
import { backoffMs, sleep, type BackoffOptions } from "./backoff.ts";

export interface FollowOptions {
  /** Stops following; the follower then rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Called before each reconnection of a dropped stream. */
  onReconnect?: (info: { attempt: number; afterSeq: bigint | undefined; error: ConnectError }) => void;
  /** Start after this seq (replaying state changes after it) instead of with a snapshot. */
  afterSeq?: bigint;
  /** Consecutive failed reconnections before giving up (a received update resets the count). Default 10. */
  maxReconnects?: number;
  /** Backoff between reconnections. Default 200 ms doubling up to 5 s. */
  backoff?: BackoffOptions;
}

/**
 * Why a stream may end with the job still going, in which case it is resumed: the daemon is
 * unreachable or restarting (UNAVAILABLE), the connection was reset (ABORTED: ECONNRESET over
 * HTTP/1.1; CANCELED: the HTTP/2 stream reset when the daemon's session dies, which the follower only
 * sees when its own signal did not abort), the subscriber fell too far behind (RESOURCE_EXHAUSTED:
 * the daemon says to resume with after_seq), or the connection broke mid-message (INTERNAL raised
 * by the transport with a Node network error as cause).
 */
export function isDroppedStream(error: ConnectError): boolean {
  if ([Code.Unavailable, Code.Aborted, Code.Canceled, Code.ResourceExhausted].includes(error.code)) return true;
  return error.code === Code.Internal && error.cause instanceof Error;
}

/**
 * Reads StreamJobUpdates for `watched` and hands every update to `handle` until it returns a value, which
 * this resolves with. A dropped stream is reopened with `after_seq` = the last seq seen, so the daemon
 * replays every state change missed meanwhile (also across a daemon restart); `what` ("job 0190...")
 * names the followed thing in the error of a stream that ends without it. Any other error rejects.
 */
export async function followUpdates<T>(
  client: Client<typeof HypervisordService>, watched: { jobIds?: string[]; batchIds?: string[] }, what: { kind: string; id: string },
  options: FollowOptions, handle: (update: StreamJobUpdatesResponse) => Promise<T | undefined> | T | undefined,
): Promise<T> {
  const { signal } = options;
  const maxReconnects = options.maxReconnects ?? 10;
  const backoff = { initialMs: 200, maxMs: 5_000, ...options.backoff };
  let afterSeq = options.afterSeq;
  let failures = 0;
  for (;;) {
    let dropped: ConnectError;
    try {
      for await (const update of client.streamJobUpdates({ ...watched, afterSeq }, { signal })) {
        failures = 0;
        if (afterSeq === undefined || update.seq > afterSeq) afterSeq = update.seq;
        const done = await handle(update);
        if (done !== undefined) return done;
      }
      // The daemon closed the stream without an error (it is shutting down): resume elsewhere/later.
      dropped = new ConnectError(`update stream of ${what.kind} ${what.id} ended before the ${what.kind} did`, Code.Unavailable);
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
