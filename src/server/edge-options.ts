import type { ConnectionLimitOptions } from "./connection-limits.ts";

/** What both listeners enforce on connections and requests (the `server.*` settings). */
export interface EdgeOptions extends ConnectionLimitOptions {
  /** Largest request message (Connect body, gRPC or gRPC-Web message), refused with RESOURCE_EXHAUSTED as it is read. */
  maxRequestBytes: number;
  /** HTTP/2 streams open at once per connection (SETTINGS_MAX_CONCURRENT_STREAMS). */
  maxConcurrentStreams: number;
}

/** The defaults of the `server.*` settings (src/config/settings.ts says the same; test/edge-hardening.test.ts checks it). */
export const DEFAULT_EDGE_OPTIONS: EdgeOptions = {
  maxConnections: 1000,
  firstBytesTimeoutMs: 10_000,
  headersTimeoutMs: 30_000,
  idleTimeoutMs: 120_000,
  requestTimeoutMs: 60_000,
  keepaliveTimeMs: 60_000,
  keepaliveTimeoutMs: 20_000,
  streamResets: { burst: 200, perSecond: 20 },
  maxRequestBytes: 4 * 1024 * 1024,
  maxConcurrentStreams: 100,
};
