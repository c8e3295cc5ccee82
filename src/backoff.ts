export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
}

/**
 * Exponential backoff with +-20% jitter: initial, 2x, 4x ... never above maxMs (the jitter stays under the cap,
 * so that a configured maximum is one). `attempt` is the attempt that just failed (1-based). The jitter spreads the
 * retries of jobs that failed together (a vCenter restart) instead of sending them back at the same instant.
 */
export function retryDelayMs(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  const base = Math.min(options.maxMs, options.initialMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(Math.min(options.maxMs, base * (0.8 + 0.4 * random())));
}
