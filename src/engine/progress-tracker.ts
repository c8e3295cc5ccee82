import { EMPTY_PROGRESS, type JobProgress } from "../domain/job.ts";

export interface ProgressTrackerOptions {
  initial?: JobProgress;
  /** At most one publish per this interval; the latest values win. */
  publishIntervalMs: number;
  /** At most one store write per this interval. */
  persistIntervalMs: number;
  publish(progress: JobProgress): void;
  persist(progress: JobProgress): void;
}

/** Rate over a sliding window of this length. */
const RATE_WINDOW_MS = 5_000;

/**
 * Merges a provider's progress reports, derives percent, rate and ETA when the
 * provider does not give them, and throttles what reaches subscribers and the store.
 */
export function createProgressTracker(options: ProgressTrackerOptions) {
  let current: JobProgress = { ...(options.initial ?? EMPTY_PROGRESS) };
  const samples: { time: number; bytes: number }[] = [];
  // The first report waits one interval: the RUNNING update that starts a run already carries the progress.
  let lastPublish = Date.now();
  let lastPersist = 0;
  let timer: NodeJS.Timeout | undefined;
  let dirtyPersist = false;
  // A report that comes after the run's end (a provider's straggling callback) must not arm a timer that
  // writes to the store after the state change, or after the store has closed.
  let stopped = false;

  function derive(update: Partial<JobProgress>, now: number): JobProgress {
    const next = { ...current, ...update };
    if (update.bytesDone !== undefined) {
      samples.push({ time: now, bytes: next.bytesDone });
      while (samples.length > 2 && now - samples[0]!.time > RATE_WINDOW_MS) samples.shift();
    }
    if (update.bytesPerSecond === undefined && samples.length >= 2) {
      const first = samples[0]!;
      const elapsed = (now - first.time) / 1000;
      if (elapsed > 0) next.bytesPerSecond = Math.max(0, (next.bytesDone - first.bytes) / elapsed);
    }
    if (update.percent === undefined && next.bytesTotal > 0) {
      next.percent = Math.min(100, (100 * next.bytesDone) / next.bytesTotal);
    }
    if (update.etaSeconds === undefined) {
      const remaining = next.bytesTotal - next.bytesDone;
      next.etaSeconds = next.bytesPerSecond > 0 && remaining > 0 ? remaining / next.bytesPerSecond : 0;
    }
    return next;
  }

  function emit(now: number): void {
    timer = undefined;
    lastPublish = now;
    options.publish(current);
    if (dirtyPersist && now - lastPersist >= options.persistIntervalMs) {
      lastPersist = now;
      dirtyPersist = false;
      options.persist(current);
    }
  }

  return {
    get current(): JobProgress {
      return current;
    },
    update(update: Partial<JobProgress>): void {
      if (stopped) return;
      const now = Date.now();
      current = derive(update, now);
      dirtyPersist = true;
      const wait = options.publishIntervalMs - (now - lastPublish);
      if (wait <= 0) emit(now);
      else timer ??= setTimeout(() => emit(Date.now()), wait);
    },
    /** Stops timers; returns the final values for the caller to store with the state change. */
    stop(): JobProgress {
      stopped = true;
      clearTimeout(timer);
      timer = undefined;
      return current;
    },
  };
}

/**
 * What a completed job shows: every counted file and byte done. The counts are those of the run's last phase
 * (files downloaded, or disks converted); a phase may end without a last report (a conversion reports the disk
 * it starts, not the one it finished), and a completed job must not show "files 0/1".
 */
export function completedProgress(progress: JobProgress): JobProgress {
  return {
    ...progress, phase: "completed", percent: 100, etaSeconds: 0, bytesPerSecond: 0, currentFile: "",
    filesDone: Math.max(progress.filesDone, progress.filesTotal), bytesDone: Math.max(progress.bytesDone, progress.bytesTotal),
  };
}
