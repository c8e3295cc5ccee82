import { isIP } from "node:net";
import { HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import type { Call, CallHook } from "../rpc/call-hooks.ts";
import { ResourceExhaustedError } from "../errors.ts";
import { createTokenBuckets, type BucketSpec } from "./token-buckets.ts";

export interface RateLimitOptions {
  /** Tokens per second per client; 0 leaves calls without an override unlimited. */
  requestsPerSecond: number;
  burst: number;
  /** By RPC name (`rate_limit.overrides` of the config, as written): own buckets; a field left out takes the default. */
  overrides?: Readonly<Record<string, Readonly<Record<string, unknown>> | null>>;
  /** Clock in milliseconds; default performance.now. */
  now?: () => number;
  /** Buckets kept at most (client x RPC); default 100,000 (about 15 MB). */
  maxBuckets?: number;
}

/** A refusal's hint, in milliseconds: the servers send it as `retry-after` (HTTP) and `grpc-retry-pushback-ms` (gRPC). */
export type RateLimitedError = ResourceExhaustedError & { readonly retryAfterMs: number };

interface CompiledRateLimits {
  fallback?: BucketSpec;
  /** By RPC name; undefined for an override that makes its RPC unlimited (requests_per_second: 0). */
  byMethod: Map<string, BucketSpec | undefined>;
}

const DEFAULT_MAX_BUCKETS = 100_000;
/** Bucket name of the calls without an override; RPC names cannot contain it. */
const FALLBACK = "*";
const OVERRIDE_FIELDS = new Set(["requests_per_second", "burst"]);

/**
 * Token buckets per client and RPC: the client is the API key or certificate of the principal the
 * authentication hook set, else the caller's address. An RPC with an override has buckets of its own;
 * every other RPC shares the client's default bucket. Runs after authentication (it needs the principal).
 */
export function createRateLimitHook(options: RateLimitOptions): CallHook {
  const limits = compileRateLimits(options);
  if (!limits.fallback && ![...limits.byMethod.values()].some(Boolean)) return {};
  const now = options.now ?? (() => performance.now());
  const buckets = createTokenBuckets(options.maxBuckets ?? DEFAULT_MAX_BUCKETS);
  return {
    before(call) {
      // The overrides name this service's RPCs; health checks (another service) are never limited.
      if (call.service !== HypervisordService.typeName) return;
      const override = limits.byMethod.has(call.method);
      const spec = override ? limits.byMethod.get(call.method) : limits.fallback;
      if (!spec) return;
      const waitMs = buckets.take(`${clientOf(call)} ${override ? call.method : FALLBACK}`, spec, now());
      if (waitMs > 0) throw rateLimited(call.method, waitMs);
    },
  };
}

/** "key:<id>" for an API key or a client certificate, else "ip:<address>" (without port; IPv4-mapped IPv6 as IPv4). */
export function clientOf(call: Pick<Call, "principal" | "context">): string {
  const principal = call.principal;
  if (principal && principal.kind !== "anonymous") return `key:${principal.id}`;
  return `ip:${addressOf(call.context.peer)}`;
}

/** Both transports give "<remoteAddress>:<remotePort>" (IPv6 without brackets): the port is what follows the last colon. */
export function addressOf(peer: string): string {
  let host = peer;
  if (host.startsWith("[")) {
    const end = host.indexOf("]");
    host = host.slice(1, end < 0 ? undefined : end);
  } else {
    const port = /:\d+$/.exec(host);
    if (port && isIP(host.slice(0, port.index))) host = host.slice(0, port.index);
  }
  return host.startsWith("::ffff:") && isIP(host.slice(7)) === 4 ? host.slice(7) : host;
}

function rateLimited(method: string, waitMs: number): RateLimitedError {
  const seconds = Math.ceil(waitMs / 100) / 10;
  return Object.assign(new ResourceExhaustedError(`rate limit exceeded for ${method}: retry in ${seconds.toFixed(1)} s`), { retryAfterMs: waitMs });
}

/** Checks the settings and turns them into bucket specs; errors name the config field. */
export function compileRateLimits(options: Pick<RateLimitOptions, "requestsPerSecond" | "burst" | "overrides">): CompiledRateLimits {
  const fallback = specOf(options.requestsPerSecond, options.burst, "rate_limit");
  const names = HypervisordService.methods.map((m) => m.name);
  const byMethod = new Map<string, BucketSpec | undefined>();
  for (const [name, override] of Object.entries(options.overrides ?? {})) {
    const field = `rate_limit.overrides.${name}`;
    if (!names.includes(name)) throw new Error(`${field}: unknown RPC "${name}"; valid names: ${names.join(", ")}`);
    if (override !== null && (typeof override !== "object" || Array.isArray(override))) {
      throw new Error(`${field}: must be a map with requests_per_second and/or burst`);
    }
    const given = override ?? {};
    for (const key of Object.keys(given)) {
      if (!OVERRIDE_FIELDS.has(key)) throw new Error(`${field}.${key}: unknown field; valid fields: ${[...OVERRIDE_FIELDS].join(", ")}`);
    }
    byMethod.set(name, specOf(given.requests_per_second ?? options.requestsPerSecond, given.burst ?? options.burst, field));
  }
  return { fallback, byMethod };
}

function specOf(requestsPerSecond: unknown, burst: unknown, field: string): BucketSpec | undefined {
  if (typeof requestsPerSecond !== "number" || !Number.isFinite(requestsPerSecond) || requestsPerSecond < 0) {
    throw new Error(`${field}.requests_per_second: must be a number, 0 or more, got ${JSON.stringify(requestsPerSecond)}`);
  }
  if (typeof burst !== "number" || !Number.isInteger(burst) || burst < 1) {
    throw new Error(`${field}.burst: must be a whole number, 1 or more, got ${JSON.stringify(burst)}`);
  }
  return requestsPerSecond === 0 ? undefined : { burst, perMs: requestsPerSecond / 1000 };
}
