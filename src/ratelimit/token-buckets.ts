/** How a bucket fills: `burst` tokens at most, `perMs` tokens added per millisecond. */
export interface BucketSpec {
  readonly burst: number;
  readonly perMs: number;
}

interface Bucket {
  tokens: number;
  /** When `tokens` was last computed, in the clock's milliseconds. */
  time: number;
  readonly spec: BucketSpec;
}

export interface TokenBuckets {
  /** Takes one token from the bucket `key`: 0 when taken, else the milliseconds until one is there. */
  take(key: string, spec: BucketSpec, now: number): number;
  /** The milliseconds until the bucket `key` has a token, taking none: 0 when it has one (or does not exist). */
  wait(key: string, spec: BucketSpec, now: number): number;
  readonly size: number;
}

/** Oldest buckets checked for idleness per take: bounded work, yet enough to drain idle ones faster than new ones come. */
const SWEEP_PER_TAKE = 2;

/**
 * Token buckets by key with bounded memory. A bucket that has refilled is the same as no bucket, so the
 * least recently used ones are dropped as soon as they are full again (checked on each take, no timer), and
 * when more than `maxBuckets` are in use at once the least recently used is dropped anyway: its client
 * then starts again with a full bucket, the price of the cap.
 */
export function createTokenBuckets(maxBuckets: number): TokenBuckets {
  // A Map iterates in insertion order; re-inserting on use keeps the least recently used first.
  const buckets = new Map<string, Bucket>();

  const refill = (bucket: Bucket, now: number) => {
    if (now > bucket.time) {
      bucket.tokens = Math.min(bucket.spec.burst, bucket.tokens + (now - bucket.time) * bucket.spec.perMs);
      bucket.time = now;
    }
  };

  const sweep = (now: number) => {
    let checked = 0;
    for (const [key, bucket] of buckets) {
      if (checked++ === SWEEP_PER_TAKE) break;
      refill(bucket, now);
      if (bucket.tokens < bucket.spec.burst) break;
      buckets.delete(key);
    }
  };

  return {
    take(key, spec, now) {
      // First, so that the bucket about to be used (full when new) is not taken for an idle one.
      sweep(now);
      let bucket = buckets.get(key);
      if (bucket) {
        buckets.delete(key);
        refill(bucket, now);
      } else {
        bucket = { tokens: spec.burst, time: now, spec };
      }
      buckets.set(key, bucket);
      if (buckets.size > maxBuckets) buckets.delete(buckets.keys().next().value!);
      if (bucket.tokens >= 1) {
        bucket.tokens -= 1;
        return 0;
      }
      return Math.ceil((1 - bucket.tokens) / spec.perMs);
    },
    wait(key, spec, now) {
      const bucket = buckets.get(key);
      if (!bucket) return 0;
      refill(bucket, now);
      return bucket.tokens >= 1 ? 0 : Math.ceil((1 - bucket.tokens) / spec.perMs);
    },
    get size() {
      return buckets.size;
    },
  };
}
