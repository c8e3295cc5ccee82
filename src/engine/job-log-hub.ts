import type { LogEntry, Store } from "../store/store.ts";
import { NotFoundError } from "../errors.ts";
import { isFinal } from "../domain/job.ts";

type Listener = (entry: LogEntry | "end") => void;

/**
 * Live job log entries for followers (StreamJobLogs with follow). The engine
 * calls `entry` for every stored record and `end` when a job reaches a final state.
 */
export function createJobLogHub(store: Store) {
  const listeners = new Map<string, Set<Listener>>();

  function emit(jobId: string, value: LogEntry | "end"): void {
    for (const listener of listeners.get(jobId) ?? []) listener(value);
  }

  /** Stored entries after `afterId` (or the last `tail`), then, with follow, new ones until the job ends. */
  async function* follow(jobId: string, query: { afterId: number; tail: number; follow: boolean }, signal: AbortSignal): AsyncGenerator<LogEntry> {
    if (!store.getJob(jobId)) throw new NotFoundError(`job ${jobId} not found`);
    const live: (LogEntry | "end")[] = [];
    let wake: (() => void) | undefined;
    const listener: Listener = (value) => {
      live.push(value);
      wake?.();
    };
    const onAbort = () => wake?.();
    let set = listeners.get(jobId);
    if (!set) listeners.set(jobId, (set = new Set()));
    set.add(listener);
    signal.addEventListener("abort", onAbort);
    try {
      let lastId = query.afterId;
      let first = store.readLogs(jobId, { afterId: lastId, tail: query.tail, limit: 5000 }).entries;
      while (first.length > 0) {
        for (const entry of first) yield entry;
        lastId = first[first.length - 1]!.id;
        first = store.readLogs(jobId, { afterId: lastId, tail: 0, limit: 5000 }).entries;
      }
      if (!query.follow || isFinal(store.getJob(jobId)!.state)) return;
      while (!signal.aborted) {
        const value = live.shift();
        if (value === "end") {
          // The engine records the final state before the run's last log lines: read what came after.
          yield* store.readLogs(jobId, { afterId: lastId, tail: 0, limit: 5000 }).entries;
          return;
        }
        if (value) {
          if (value.id > lastId) {
            lastId = value.id;
            yield value;
          }
          continue;
        }
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      set.delete(listener);
      if (set.size === 0) listeners.delete(jobId);
    }
  }

  return {
    entry: (jobId: string, entry: LogEntry) => emit(jobId, entry),
    end: (jobId: string) => emit(jobId, "end"),
    follow,
  };
}

export type JobLogHub = ReturnType<typeof createJobLogHub>;
