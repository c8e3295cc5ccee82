import { InvalidArgumentError } from "../errors.ts";

/** A cap on concurrent transfers per host, shared by every download (job) given the same instance. */
export interface HostSlots {
  /** Waits for a free slot on `host` (FIFO); resolves to the function that gives it back. Rejects with `signal.reason` on abort. */
  acquire(host: string, signal: AbortSignal): Promise<() => void>;
}

interface HostState {
  active: number;
  waiters: (() => void)[];
}

export function createHostSlots(maxPerHost: number): HostSlots {
  if (!Number.isInteger(maxPerHost) || maxPerHost < 1) {
    throw new InvalidArgumentError("maxPerHost", `must be an integer >= 1, got ${maxPerHost}`);
  }
  const hosts = new Map<string, HostState>();

  // Released once: a second call is a no-op, so a release in both a catch and a finally cannot free someone else's slot.
  const releaser = (host: string, state: HostState) => {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = state.waiters.shift();
      if (next) return next(); // the slot passes straight to the next waiter; `active` is unchanged
      state.active--;
      if (state.active === 0) hosts.delete(host);
    };
  };

  return {
    acquire(host, signal) {
      if (signal.aborted) return Promise.reject(signal.reason);
      let state = hosts.get(host);
      if (!state) {
        state = { active: 0, waiters: [] };
        hosts.set(host, state);
      }
      const current = state;
      if (current.active < maxPerHost) {
        current.active++;
        return Promise.resolve(releaser(host, current));
      }
      return new Promise((resolve, reject) => {
        const grant = () => {
          signal.removeEventListener("abort", onAbort);
          resolve(releaser(host, current));
        };
        const onAbort = () => {
          current.waiters.splice(current.waiters.indexOf(grant), 1);
          reject(signal.reason);
        };
        signal.addEventListener("abort", onAbort, { once: true });
        current.waiters.push(grant);
      });
    },
  };
}
