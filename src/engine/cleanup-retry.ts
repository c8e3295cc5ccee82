/**
 * The daemon's retries of what ended jobs still hold on a hypervisor (a snapshot whose removal failed): armed when
 * something is left pending, every `initialMs` at first, doubling up to `maxMs` while something stays pending, back
 * to `initialMs` once nothing is. One round at a time; stop() at shutdown (the next start tries again anyway).
 */
export interface CleanupRetry {
  /** Schedules a round unless one is already scheduled or running. */
  arm(): void;
  stop(): void;
}

export function createCleanupRetry(options: {
  initialMs: number;
  maxMs: number;
  /** One round; resolves with whether something is still pending. */
  round(): Promise<boolean>;
  onError(err: unknown): void;
}): CleanupRetry {
  let timer: NodeJS.Timeout | undefined;
  let busy = false;
  let stopped = false;
  let delayMs = options.initialMs;

  async function fire(): Promise<void> {
    timer = undefined;
    busy = true;
    let pending = true;
    try {
      pending = await options.round();
    } catch (err) {
      options.onError(err);
    } finally {
      busy = false;
    }
    delayMs = pending ? Math.min(delayMs * 2, options.maxMs) : options.initialMs;
    if (pending) arm();
  }

  function arm(): void {
    if (timer || busy || stopped) return;
    timer = setTimeout(() => void fire(), delayMs);
    timer.unref();
  }

  return {
    arm,
    stop() {
      stopped = true;
      clearTimeout(timer);
      timer = undefined;
    },
  };
}
