import { setTimeout as sleep } from "node:timers/promises";

/** A byte budget shared by every transfer that takes from it. */
export interface RateLimiter {
  /** Resolves once `bytes` may pass; rejects (AbortError) when `signal` aborts while waiting. */
  take(bytes: number, signal: AbortSignal): Promise<void>;
}

/**
 * Token bucket refilled continuously at `bytesPerSecond`, holding at most a tenth of a second of
 * traffic. A taker may drive the bucket negative (a chunk bigger than the burst still passes) and then
 * sleeps until its debt is paid: later takers queue behind that debt, so concurrent transfers share
 * the rate instead of each getting it.
 */
export function createRateLimiter(bytesPerSecond: number, now: () => number = () => performance.now()): RateLimiter {
  if (!(bytesPerSecond > 0)) throw new RangeError(`bytesPerSecond must be > 0, got ${bytesPerSecond}`);
  const burst = bytesPerSecond / 10;
  let tokens = burst;
  let refilledAt = now();
  return {
    async take(bytes, signal) {
      signal.throwIfAborted();
      const t = now();
      tokens = Math.min(burst, tokens + ((t - refilledAt) * bytesPerSecond) / 1000);
      refilledAt = t;
      tokens -= bytes;
      if (tokens >= 0) return;
      await sleep((-tokens * 1000) / bytesPerSecond, undefined, { signal });
    },
  };
}
