import { ResourceExhaustedError } from "../errors.ts";
import { addressOf, type RateLimitedError } from "./rate-limit-hook.ts";
import { createTokenBuckets } from "./token-buckets.ts";

export interface AuthFailureLimitOptions {
  /** Refused authentications allowed per second per address, refilled continuously; 0 disables the limit. */
  perSecond: number;
  /** Refused authentications an address may have at once before it is throttled. */
  burst: number;
  /** Clock in milliseconds; default performance.now. */
  now?: () => number;
  /** Addresses kept at most; default 100,000. */
  maxAddresses?: number;
}

export interface AuthFailureLimit {
  /** The refusal for `peer` ("<address>:<port>") when its address has used up its failures, before its credentials are looked at. */
  check(peer: string): RateLimitedError | undefined;
  /** Counts a refused authentication from `peer`. */
  failed(peer: string): void;
}

const DEFAULT_MAX_ADDRESSES = 100_000;

/**
 * Throttles credential failures per peer address: each refused authentication takes a token; an address
 * without tokens is refused (RESOURCE_EXHAUSTED with a retry hint) before its key is even looked at, so
 * that keys cannot be tried at speed. Calls that authenticate take nothing. Clients behind one address
 * (a NAT, a proxy) share its allowance.
 */
export function createAuthFailureLimit(options: AuthFailureLimitOptions): AuthFailureLimit {
  if (options.perSecond === 0) return { check: () => undefined, failed: () => {} };
  const now = options.now ?? (() => performance.now());
  const spec = { burst: options.burst, perMs: options.perSecond / 1000 };
  const buckets = createTokenBuckets(options.maxAddresses ?? DEFAULT_MAX_ADDRESSES);
  return {
    check(peer) {
      const waitMs = buckets.wait(addressOf(peer), spec, now());
      if (waitMs === 0) return undefined;
      const seconds = Math.ceil(waitMs / 100) / 10;
      return Object.assign(
        new ResourceExhaustedError(`too many refused authentications from this address: retry in ${seconds.toFixed(1)} s`),
        { retryAfterMs: waitMs },
      );
    },
    failed(peer) {
      buckets.take(addressOf(peer), spec, now());
    },
  };
}
