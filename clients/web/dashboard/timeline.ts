// The last hour as the page saw it, for the charts: every update of the live stream (and a tick, so
// that quiet stretches are drawn too) records the aggregate throughput of the running jobs, how many
// run and how many wait, and each running job's own throughput. The daemon keeps no such history:
// what was not seen while a dashboard tab was open is not there (the charts show it as a gap).
import { JobState } from "../index.ts";
import type { Point } from "./chart-scale.ts";
import type { LiveJobs, LiveState } from "./live.ts";

export interface OverallSample {
  t: number;
  bytesPerSecond: number;
  running: number;
  queued: number;
}

export interface TimelineOptions {
  /** One overall sample per bucket (the last state seen in it). Default 2 s. */
  bucketMs?: number;
  /** One sample per job per bucket. Default 1 s. */
  jobBucketMs?: number;
  /** How far back samples are kept. Default one hour. */
  windowMs?: number;
  /** Jobs whose series are kept (the oldest dropped first). Default 100. */
  maxJobs?: number;
}

export interface Timeline {
  readonly bucketMs: number;
  readonly jobBucketMs: number;
  readonly windowMs: number;
  overall(): readonly OverallSample[];
  /** A job's throughput samples (bytes/s), oldest first; empty when it was not seen running. */
  job(jobId: string): readonly Point[];
  /** Records the state at `now`; jobs no longer running get a last sample of 0. */
  record(state: Pick<LiveState, "status" | "active">, now: number): void;
  /** Bumped by every record: the snapshot React re-renders on. */
  version(): number;
  subscribe(listener: () => void): () => void;
}

export function createTimeline(options: TimelineOptions = {}): Timeline {
  const bucketMs = options.bucketMs ?? 2_000;
  const jobBucketMs = options.jobBucketMs ?? 1_000;
  const windowMs = options.windowMs ?? 3_600_000;
  const maxJobs = options.maxJobs ?? 100;
  const overall: OverallSample[] = [];
  const jobs = new Map<string, Point[]>();
  const running = new Set<string>();
  const listeners = new Set<() => void>();
  let version = 0;

  /**
   * Puts a sample in its bucket: a later one in the same bucket replaces it (the latest state wins).
   * Never before the last sample (the clock may step back): the charts need the series in time order.
   */
  const put = <T extends { t: number }>(series: T[], sample: T, size: number) => {
    sample.t = Math.max(Math.floor(sample.t / size) * size, series.at(-1)?.t ?? -Infinity);
    if (series.at(-1)?.t === sample.t) series[series.length - 1] = sample;
    else series.push(sample);
    const oldest = sample.t - windowMs;
    let drop = 0;
    while (drop < series.length && series[drop]!.t < oldest) drop++;
    if (drop > 0) series.splice(0, drop);
  };

  const jobSeries = (jobId: string) => {
    let series = jobs.get(jobId);
    if (!series) {
      if (jobs.size >= maxJobs) jobs.delete(jobs.keys().next().value!);
      jobs.set(jobId, (series = []));
    }
    return series;
  };

  return {
    bucketMs,
    jobBucketMs,
    windowMs,
    overall: () => overall,
    job: (jobId) => jobs.get(jobId) ?? [],
    record(state, now) {
      // Offline, the active jobs are as they were when the stream dropped: recording them would draw a guess.
      if (state.status !== "live") return;
      let bytesPerSecond = 0;
      let runningCount = 0;
      let queued = 0;
      const seen = new Set<string>();
      for (const job of state.active.values()) {
        if (job.state === JobState.QUEUED) queued++;
        if (job.state !== JobState.RUNNING) continue;
        runningCount++;
        const rate = job.progress?.bytesPerSecond ?? 0;
        bytesPerSecond += rate;
        seen.add(job.id);
        running.add(job.id);
        put(jobSeries(job.id), { t: now, v: rate }, jobBucketMs);
      }
      for (const id of running) {
        if (seen.has(id)) continue;
        running.delete(id);
        // It ended or went back to the queue (a retry): its line drops to 0 rather than staying up.
        const series = jobs.get(id);
        if (series) put(series, { t: now, v: 0 }, jobBucketMs);
      }
      put(overall, { t: now, bytesPerSecond, running: runningCount, queued }, bucketMs);
      version++;
      for (const listener of listeners) listener();
    },
    version: () => version,
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

/** Records every change of the live state, and the state every bucket while nothing changes; returns the stop. */
export function followLive(timeline: Timeline, live: LiveJobs): () => void {
  const record = () => timeline.record(live.getState(), Date.now());
  const unsubscribe = live.subscribe(record);
  const timer = setInterval(record, timeline.bucketMs);
  return () => {
    unsubscribe();
    clearInterval(timer);
  };
}
