import { setTimeout as delay } from "node:timers/promises";

/**
 * A Retry-After header as milliseconds from `now`: delay-seconds ("0", "5") or an HTTP date; undefined when absent
 * or unreadable (the caller then uses its own backoff). A date in the past is 0.
 */
export function retryAfterMs(header: string | null | undefined, now: number = Date.now()): number | undefined {
  if (header === null || header === undefined || header.trim() === "") return undefined;
  const value = header.trim();
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Waits `ms`; an abort rejects with the signal's own reason (a job's cancel or deadline), not a generic AbortError. */
export async function sleep(ms: number, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted();
  try {
    await delay(ms, undefined, { signal });
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    throw err;
  }
}
