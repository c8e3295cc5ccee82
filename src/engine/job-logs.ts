import pino, { type Logger } from "pino";
import { isFinal } from "../domain/job.ts";
import { NotFoundError } from "../errors.ts";
import { loggerOptions } from "../logging.ts";
import type { LogEntry, LogQuery, NewLogEntry, Store } from "../store/store.ts";

type Listener = (entry: LogEntry | "end") => void;

const NOT_FIELDS = new Set(["level", "time", "msg", "pid", "hostname", "job_id"]);

export interface JobLogsOptions {
  store: Store;
  level: string;
  /** Also write every record here (the daemon's own log). */
  forward?: { write(line: string): unknown };
  /** A group of entries could not be stored (they are lost; the daemon log has them when forwarded). */
  onWriteError(err: unknown, entries: number): void;
  /**
   * Followers also read the store this often when nothing arrived: several daemons share it, and the entries of a
   * job running on another node reach this one only there. Undefined: only this daemon writes logs.
   */
  pollMs?: number;
}

/**
 * Per-job logs: one pino logger whose children (one per job, `job_id` bound)
 * write to the daemon log and to the store. Records are buffered and stored
 * in one transaction per event-loop turn, one write after the other (entry ids
 * follow the order of logging); readers flush first and wait for it, so they
 * never miss a record already logged. Followers get new entries as they are stored.
 */
export function createJobLogs(options: JobLogsOptions) {
  const { store } = options;
  const pending: { jobId: string; entry: NewLogEntry }[] = [];
  const listeners = new Map<string, Set<Listener>>();
  let scheduled = false;
  /** The last write; settles once it and every write before it are done (a failed one reported, see onWriteError). */
  let lastWrite: Promise<void> = Promise.resolve();

  function emit(jobId: string, value: LogEntry | "end"): void {
    for (const listener of listeners.get(jobId) ?? []) listener(value);
  }

  /** Stores what is buffered, after the writes before it; resolves when everything logged so far is stored. */
  function flush(): Promise<void> {
    scheduled = false;
    if (pending.length === 0) return lastWrite;
    const batch = pending.splice(0);
    lastWrite = lastWrite.then(async () => {
      const stored = await store.appendLogs(batch);
      batch.forEach(({ jobId }, i) => emit(jobId, stored[i]!));
    }).catch((err: unknown) => options.onWriteError(err, batch.length));
    return lastWrite;
  }

  const base = pino(loggerOptions(options.level), {
    write(line: string) {
      options.forward?.write(line);
      const record = JSON.parse(line) as Record<string, unknown>;
      const fields: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(record)) if (!NOT_FIELDS.has(key)) fields[key] = value;
      pending.push({
        jobId: String(record.job_id),
        entry: {
          time: typeof record.time === "string" ? Date.parse(record.time) : Date.now(),
          level: String(record.level),
          message: typeof record.msg === "string" ? record.msg : "",
          fields,
        },
      });
      if (!scheduled) {
        scheduled = true;
        setImmediate(() => void flush());
      }
    },
  });

  async function read(jobId: string, query: LogQuery) {
    await flush();
    return store.readLogs(jobId, query);
  }

  /** Stored entries after `afterId` (or the last `tail`), then, with follow, new ones until the job ends. */
  async function* follow(jobId: string, query: { afterId: number; tail: number; follow: boolean }, signal: AbortSignal): AsyncGenerator<LogEntry> {
    if (!(await store.getJob(jobId))) throw new NotFoundError(`job ${jobId} not found`);
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
      let page = (await read(jobId, { afterId: lastId, tail: query.tail, limit: 5000 })).entries;
      while (page.length > 0) {
        yield* page;
        lastId = page[page.length - 1]!.id;
        page = (await read(jobId, { afterId: lastId, tail: 0, limit: 5000 })).entries;
      }
      if (!query.follow) return;
      if (isFinal((await store.getJob(jobId))!.state)) {
        // It may have ended while the pages were read: its last lines are stored by the next turn (see end()).
        await new Promise((resolve) => setImmediate(resolve));
        yield* (await read(jobId, { afterId: lastId, tail: 0, limit: 5000 })).entries;
        return;
      }
      while (!signal.aborted) {
        const value = live.shift();
        if (value === "end") {
          // The engine records the final state before the run's last log lines: read what came after.
          yield* (await read(jobId, { afterId: lastId, tail: 0, limit: 5000 })).entries;
          return;
        }
        if (value) {
          if (value.id > lastId) {
            lastId = value.id;
            yield value;
          }
          continue;
        }
        let poll: NodeJS.Timeout | undefined;
        const woken = await new Promise<boolean>((resolve) => {
          wake = () => resolve(true);
          if (options.pollMs !== undefined) poll = setTimeout(resolve, options.pollMs, false);
        });
        clearTimeout(poll);
        wake = undefined;
        if (!woken) {
          for (const entry of (await read(jobId, { afterId: lastId, tail: 0, limit: 5000 })).entries) {
            lastId = entry.id;
            yield entry;
          }
        }
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      set.delete(listener);
      if (set.size === 0) listeners.delete(jobId);
    }
  }

  return {
    /** The logger a job's run (and the engine, about that job) writes to. */
    logger: (jobId: string): Logger => base.child({ job_id: jobId }),
    read,
    follow,
    /**
     * The job reached a final state: followers finish. The run logs its last lines in the microtasks right after
     * its final transition is stored, so "end" waits for the next turn's write, which holds them.
     */
    end(jobId: string): void {
      setImmediate(() => void flush().then(() => emit(jobId, "end")));
    },
    flush,
  };
}

