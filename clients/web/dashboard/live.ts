// One StreamJobUpdates of all jobs for the whole page: the active jobs with their latest progress,
// a counter of state changes that views reload on, and whether the daemon is reachable. A dropped
// stream is reopened with after_seq = the last seq seen, so the state changes missed meanwhile are
// replayed (also across a daemon restart).
import { Code, ConnectError } from "@connectrpc/connect";
import { backoffMs, sleep } from "../../core/backoff.ts";
import { isTerminal, JobEventKind, type Batch, type HypervisordClient, type Job, type StreamJobUpdatesResponse } from "../index.ts";

export type LinkStatus = "connecting" | "live" | "reconnecting" | "unauthenticated" | "failed";

export interface LiveState {
  status: LinkStatus;
  /** Failed attempts in a row while reconnecting. */
  attempt: number;
  /** When the next attempt starts (ms since epoch), while reconnecting. */
  retryAt: number;
  lastError: string;
  /** Queued and running jobs, with their latest progress. */
  active: ReadonlyMap<string, Job>;
  /** The last jobs seen ending (at most RECENTLY_ENDED), as they ended: views show them until their own reload. */
  ended: ReadonlyMap<string, Job>;
  /** Bumped by every job creation and state change: views that list jobs reload on it. */
  changes: number;
  /** The batches seen changing (BATCH_CHANGED) since the page opened, as they are now (at most RECENT_BATCHES). */
  batches: ReadonlyMap<string, Batch>;
  /** Bumped by every BATCH_CHANGED: views that list batches reload on it. */
  batchChanges: number;
}

export interface LiveJobs {
  getState(): LiveState;
  subscribe(listener: () => void): () => void;
  /** Retry now instead of waiting out the backoff. */
  retryNow(): void;
  close(): void;
}

const BACKOFF = { initialMs: 500, maxMs: 10_000 };
const RECENTLY_ENDED = 200;
const RECENT_BATCHES = 100;

/**
 * The newer of a job as last loaded (GetJob, ListJobs) and as the live stream has it: an ended job
 * is final whichever side has it; otherwise the stream is newer (its state and progress win).
 */
export function freshestJob(loaded: Job | undefined, live: Job | undefined): Job | undefined {
  if (!loaded || !live) return live ?? loaded;
  if (isTerminal(loaded.state)) return loaded;
  if (isTerminal(live.state)) return live;
  return { ...loaded, state: live.state, progress: live.progress, attempt: live.attempt, startTime: live.startTime ?? loaded.startTime };
}

export function createLiveJobs(client: HypervisordClient): LiveJobs {
  let state: LiveState = {
    status: "connecting", attempt: 0, retryAt: 0, lastError: "", active: new Map(), ended: new Map(), changes: 0, batches: new Map(), batchChanges: 0,
  };
  const listeners = new Set<() => void>();
  const closing = new AbortController();
  let wake: AbortController | undefined;
  const set = (patch: Partial<LiveState>) => {
    state = { ...state, ...patch };
    for (const listener of listeners) listener();
  };

  const apply = (update: StreamJobUpdatesResponse) => {
    if (update.kind === JobEventKind.SYNCED) return;
    if (update.kind === JobEventKind.BATCH_CHANGED) {
      if (!update.batch) return;
      // Re-inserted last, so that the oldest entries are the ones dropped.
      const batches = new Map([...state.batches].filter(([id]) => id !== update.batch!.id).slice(-(RECENT_BATCHES - 1)));
      set({ batches: batches.set(update.batch.id, update.batch), batchChanges: state.batchChanges + 1 });
      return;
    }
    const active = new Map(state.active);
    if (update.kind === JobEventKind.PROGRESS) {
      const job = active.get(update.jobId);
      if (job) active.set(update.jobId, { ...job, state: update.state, progress: update.progress });
      set({ active });
      return;
    }
    const job = update.job;
    let ended = state.ended;
    if (!job || isTerminal(update.state)) {
      active.delete(update.jobId);
      if (job) {
        const next = new Map([...state.ended].slice(-(RECENTLY_ENDED - 1)));
        ended = next.set(update.jobId, job);
      }
    } else {
      active.set(update.jobId, job);
    }
    set({ active, ended, changes: state.changes + 1 });
  };

  const run = async () => {
    let afterSeq: bigint | undefined;
    let failures = 0;
    const signal = closing.signal;
    while (!signal.aborted) {
      let error: ConnectError;
      try {
        for await (const update of client.streamJobUpdates({ jobIds: [], afterSeq }, { signal })) {
          if (state.status !== "live") set({ status: "live", attempt: 0, lastError: "", changes: state.changes + 1, batchChanges: state.batchChanges + 1 });
          failures = 0;
          if (afterSeq === undefined || update.seq > afterSeq) afterSeq = update.seq;
          apply(update);
        }
        error = new ConnectError("the daemon closed the update stream (shutting down?)", Code.Unavailable);
      } catch (err) {
        if (signal.aborted) return;
        error = ConnectError.from(err);
      }
      // A key is needed (the page asks for one and starts again), or this key may not watch jobs.
      if (error.code === Code.Unauthenticated) return set({ status: "unauthenticated", lastError: error.rawMessage });
      if (error.code === Code.PermissionDenied) return set({ status: "failed", lastError: error.rawMessage });
      // Anything else (unreachable, restarting, a proxy's error page) is retried with backoff.
      failures++;
      const delay = backoffMs(failures - 1, BACKOFF);
      set({ status: "reconnecting", attempt: failures, retryAt: Date.now() + delay, lastError: error.rawMessage });
      wake = new AbortController();
      // Cut short by retryNow() or close(); the loop condition tells which.
      await sleep(delay, AbortSignal.any([signal, wake.signal])).catch(() => undefined);
    }
  };
  void run();

  return {
    getState: () => state,
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    retryNow: () => wake?.abort(),
    close: () => closing.abort(),
  };
}
