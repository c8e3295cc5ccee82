import type { ApiKey } from "../domain/access.ts";
import type { ApiKeyStore } from "../store/store.ts";

/**
 * API key lookups of the auth hook, remembered for a short time: every call is authenticated (twice: at the
 * edge before its body is read, then in the call hooks), and a store lookup per call would cost a PostgreSQL
 * round trip. A hit is answered synchronously (not as a promise), so that an authenticated call costs no
 * turn of the microtask queue.
 *
 * Staleness: a key created or revoked through this daemon's API counts at once (invalidate()). A key revoked
 * by another daemon sharing the database, or a key that expires, still works here until its entry is older
 * than the TTL (1 s by default): the TTL bounds how long a revoked key stays usable in a cluster.
 */
export interface ApiKeyCache {
  /** The key with this hash (undefined when there is none): a plain value when looked up less than a TTL ago. */
  byHash(keyHash: string): ApiKey | undefined | Promise<ApiKey | undefined>;
  /** Usable keys (ApiKeyStore.countUsable): a plain value when counted less than a TTL ago. */
  countUsable(now: number): number | Promise<number>;
  /** Forgets everything: the next lookups read the store. */
  invalidate(): void;
}

export interface ApiKeyCacheOptions {
  ttlMs?: number;
  /** Monotonic milliseconds (performance.now() by default), for the TTL only: key expiry uses the caller's time. */
  clock?: () => number;
  /** Entries kept at most; past it the oldest go (wrong keys are remembered too, and a caller may send many). */
  maxEntries?: number;
}

export const DEFAULT_KEY_CACHE_TTL_MS = 1000;

export function createApiKeyCache(store: Pick<ApiKeyStore, "byHash" | "countUsable">, options: ApiKeyCacheOptions = {}): ApiKeyCache {
  const ttl = options.ttlMs ?? DEFAULT_KEY_CACHE_TTL_MS;
  const clock = options.clock ?? (() => performance.now());
  const maxEntries = options.maxEntries ?? 10_000;
  // Wrong keys are remembered as well: they cannot become right (a new key is random, and created here it invalidates).
  const keys = new Map<string, { key: ApiKey | undefined; at: number }>();
  // One store read per hash at a time: a burst of calls with a key not yet cached waits for the same read.
  const loading = new Map<string, Promise<ApiKey | undefined>>();
  let usable: { count: number; at: number } | undefined;
  let counting: Promise<number> | undefined;
  // A read begun before invalidate() must not put what it read back into the cache.
  let generation = 0;

  const fresh = (at: number) => clock() - at < ttl;

  return {
    byHash(keyHash) {
      const hit = keys.get(keyHash);
      if (hit && fresh(hit.at)) return hit.key;
      const pending = loading.get(keyHash);
      if (pending) return pending;
      const started = generation;
      const at = clock();
      const read = store.byHash(keyHash).then((key) => {
        if (started === generation) {
          keys.delete(keyHash);
          keys.set(keyHash, { key, at });
          if (keys.size > maxEntries) keys.delete(keys.keys().next().value!);
        }
        return key;
      }).finally(() => {
        if (loading.get(keyHash) === read) loading.delete(keyHash);
      });
      loading.set(keyHash, read);
      return read;
    },

    countUsable(now) {
      if (usable && fresh(usable.at)) return usable.count;
      if (counting) return counting;
      const started = generation;
      const at = clock();
      const read = store.countUsable(now).then((count) => {
        if (started === generation) usable = { count, at };
        return count;
      }).finally(() => {
        if (counting === read) counting = undefined;
      });
      counting = read;
      return read;
    },

    invalidate() {
      generation++;
      keys.clear();
      loading.clear();
      usable = undefined;
      counting = undefined;
    },
  };
}
