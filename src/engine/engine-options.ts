/**
 * The engine's options, in Temporal's worker-options pattern: plain settings as the configuration reads them
 * (the jobs.* keys, durations in ms), compiled once, here beside the engine, into what the engine runs with.
 */
export interface EngineOptions {
  maxConcurrentJobs: number;
  maxAttempts: number;
  /** No retry starts later than this after the job's first attempt started; undefined or 0: only maxAttempts limits. */
  retryMaxElapsedMs?: number;
  retryInitialBackoffMs: number;
  retryMaxBackoffMs: number;
  /** Retries of what ended jobs still hold on a hypervisor (pending_cleanup): first after this, doubling up to the max. */
  cleanupRetryInitialMs?: number;
  cleanupRetryMaxMs?: number;
  /** At most one progress update per job per this interval (jobs.progress_interval). */
  progressIntervalMs: number;
  maxQueuedUpdatesPerSubscriber: number;
  jobLogLevel: string;
}

export interface CompiledEngineOptions extends Omit<EngineOptions, "progressIntervalMs"> {
  progressPublishIntervalMs: number;
  /** Progress written to the store: less often than it is published, as every write is a transaction. */
  progressPersistIntervalMs: number;
}

/** The cleanup retries' first and longest waits when the options leave them out. */
export const DEFAULT_CLEANUP_RETRY_MS = { initial: 30_000, max: 300_000 } as const;

export function compileEngineOptions(options: EngineOptions): CompiledEngineOptions {
  const { progressIntervalMs, ...rest } = options;
  return { ...rest, progressPublishIntervalMs: progressIntervalMs, progressPersistIntervalMs: Math.max(1000, progressIntervalMs * 4) };
}
