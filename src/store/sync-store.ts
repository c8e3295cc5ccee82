/**
 * The synchronous shape of an async store interface: what the embedded SQLite queries implement. `toAsync`
 * turns one into the interface; the work still happens synchronously, before the returned promise.
 */
export type Sync<T> = {
  [K in keyof T]: T[K] extends (...args: infer A) => Promise<infer R> ? (...args: A) => R : T[K];
};

export function toAsync<T extends object>(sync: Sync<T>): T {
  const wrapped: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(sync)) {
    wrapped[key] = typeof value === "function"
      ? (...args: unknown[]) => {
        try {
          return Promise.resolve((value as (...a: unknown[]) => unknown)(...args));
        } catch (err) {
          return Promise.reject(err);
        }
      }
      : value;
  }
  return wrapped as T;
}
