import pino from "pino";
import { Counter, Histogram, type Registry } from "prom-client";
import type { Call, CallHook, CallOutcome } from "../rpc/call-hooks.ts";
import { statusOf } from "../rpc/status.ts";
import { HypervisordError } from "../errors.ts";

/** Seconds: from a cached GetJob (sub-millisecond) to a slow ListVMs against a busy vCenter. */
const API_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** The transports already log the failures they map; this mapping must not log them a second time. */
const SILENT = pino({ enabled: false });

/**
 * The status name a caller saw, e.g. "OK", "INVALID_ARGUMENT": the same mapping as the transports
 * (statusOf). A stream that ended because its caller went away is "CANCELLED".
 */
export function statusCodeName(call: Call, error: unknown): string {
  if (error === undefined) return "OK";
  if (!(error instanceof HypervisordError) && call.context.signal.aborted) return "CANCELLED";
  return statusOf(error, SILENT, call.method).code;
}

/**
 * `hypersdk_api_requests_total{method,endpoint,status_code}` and
 * `hypersdk_api_request_duration_seconds{method,endpoint}`, where method is the transport
 * ("grpc" | "connect") and endpoint the RPC name: bounded labels, never URLs. Durations are of
 * unary calls only: a stream lasts as long as its subscriber stays, which says nothing of latency.
 */
export function createApiMetrics(registry: Registry): CallHook {
  const requests = new Counter({
    name: "hypersdk_api_requests_total",
    help: "API calls by transport (method), RPC name (endpoint) and final status code name",
    labelNames: ["method", "endpoint", "status_code"],
    registers: [registry],
  });
  const durations = new Histogram({
    name: "hypersdk_api_request_duration_seconds",
    help: "Duration of unary API calls, by transport (method) and RPC name (endpoint)",
    labelNames: ["method", "endpoint"],
    buckets: API_BUCKETS,
    registers: [registry],
  });
  return {
    after(call: Call, outcome: CallOutcome): void {
      const labels = { method: call.context.transport, endpoint: call.method };
      requests.inc({ ...labels, status_code: statusCodeName(call, outcome.error) });
      if (!call.streaming) durations.observe(labels, outcome.durationMs / 1000);
    },
  };
}
