export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
}

/** Exponential backoff with +-20% jitter: initial, 2x, 4x ... capped at maxMs. `attempt` is the attempt that just failed (1-based). */
export function retryDelayMs(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  const base = Math.min(options.maxMs, options.initialMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.8 + 0.4 * random()));
}
