import type * as OtelApi from "@opentelemetry/api";
import type { Logger } from "pino";

export interface TracingOptions {
  /** service.name of the spans (OTEL_SERVICE_NAME wins when set). */
  serviceName: string;
  /** service.version. */
  version: string;
  /** Where OTEL_* settings are read; default process.env. */
  env?: Readonly<Record<string, string | undefined>>;
  logger: Logger;
  /** BatchSpanProcessor delay between exports; default OTEL_BSP_SCHEDULE_DELAY, else 5000 ms. Short in tests. */
  scheduledDelayMs?: number;
  /** How long shutdown() waits for the last spans to be sent; default 2000 ms. */
  shutdownTimeoutMs?: number;
}

/** The SDK's parts the hook and the job tracer use: loaded together, only when tracing is on. */
export interface TracingSdk {
  readonly tracer: OtelApi.Tracer;
  /** @opentelemetry/api's values (SpanKind, SpanStatusCode, trace, ROOT_CONTEXT). */
  readonly api: typeof OtelApi;
  /** W3C tracecontext (traceparent, tracestate). */
  readonly propagator: OtelApi.TextMapPropagator;
  readonly logger: Logger;
  /** Sends the spans ended so far now. */
  forceFlush(): Promise<void>;
}

export interface Tracing {
  /** Undefined when tracing is off; then no OpenTelemetry module has been loaded. */
  readonly tracer: OtelApi.Tracer | undefined;
  readonly sdk: TracingSdk | undefined;
  /** Sends what is left (bounded by shutdownTimeoutMs) and stops. */
  shutdown(): Promise<void>;
}

export const TRACING_OFF: Tracing = { tracer: undefined, sdk: undefined, shutdown: async () => {} };

/**
 * OpenTelemetry tracing over OTLP/HTTP when OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
 * OTEL_EXPORTER_OTLP_ENDPOINT is set (and OTEL_SDK_DISABLED is not "true"). Otherwise nothing of
 * OpenTelemetry is imported and TRACING_OFF is returned: the hook and the job tracer are then no-ops.
 */
export async function initTracing(options: TracingOptions): Promise<Tracing> {
  const env = options.env ?? process.env;
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true") return TRACING_OFF;
  const endpoint = tracesEndpoint(env);
  if (!endpoint) return TRACING_OFF;
  const { startOtelSdk } = await import("./otel-sdk.ts");
  return startOtelSdk({ ...options, env, url: endpoint });
}

/** The signal-specific endpoint as it is; the general one with /v1/traces appended (as the OTLP spec says). */
export function tracesEndpoint(env: Readonly<Record<string, string | undefined>>): string | undefined {
  const specific = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  if (specific) return specific;
  const general = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  return general ? `${general.replace(/\/+$/, "")}/v1/traces` : undefined;
}
