/** Exponential backoff with jitter, and a sleep that an AbortSignal cuts short. No Node imports: used by the web client too. */

export interface BackoffOptions {
  /** First delay; doubled each attempt. Default 100 ms. */
  initialMs?: number;
  /** Longest delay. Default 2 s. */
  maxMs?: number;
}

/** Delay before retry number `attempt` (0-based): between half and all of min(max, initial * 2^attempt). */
export function backoffMs(attempt: number, { initialMs = 100, maxMs = 2_000 }: BackoffOptions = {}): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** attempt);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
