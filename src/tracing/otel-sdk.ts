// Loaded by initTracing only when tracing is on: everything OpenTelemetry is imported from here.
import * as api from "@opentelemetry/api";
import { ExportResultCode, W3CTraceContextPropagator } from "@opentelemetry/core";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, BatchSpanProcessor, type SpanExporter } from "@opentelemetry/sdk-trace-base";
import type { Logger } from "pino";
import type { Tracing, TracingOptions } from "./tracing.ts";

const PROTOCOLS = ["http/json", "http/protobuf"] as const;
type Protocol = (typeof PROTOCOLS)[number];

export interface OtelSdkOptions extends TracingOptions {
  env: Readonly<Record<string, string | undefined>>;
  /** Full URL spans are POSTed to. */
  url: string;
}

export async function startOtelSdk(options: OtelSdkOptions): Promise<Tracing> {
  const { env, logger } = options;
  const protocol = protocolOf(env);
  // The exporter retries a failed export until this deadline (OTLP default 10 s).
  const timeoutMillis = positiveInt(env, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") ?? positiveInt(env, "OTEL_EXPORTER_OTLP_TIMEOUT") ?? 10_000;
  const exporterOptions = { url: options.url, headers: headersOf(env), timeoutMillis };
  const exporter = protocol === "http/json"
    ? new (await import("@opentelemetry/exporter-trace-otlp-http")).OTLPTraceExporter(exporterOptions)
    : new (await import("@opentelemetry/exporter-trace-otlp-proto")).OTLPTraceExporter(exporterOptions);
  const processor = new BatchSpanProcessor(reportingFailures(exporter, logger, options.url), {
    scheduledDelayMillis: options.scheduledDelayMs ?? positiveInt(env, "OTEL_BSP_SCHEDULE_DELAY") ?? 5000,
    exportTimeoutMillis: timeoutMillis,
  });
  const serviceName = env.OTEL_SERVICE_NAME?.trim() || options.serviceName;
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": serviceName, "service.version": options.version }),
    spanProcessors: [processor],
  });
  // Not registered globally: the daemon passes its tracer around, and nothing else in the process is changed.
  const tracer = provider.getTracer("hypervisord", options.version);
  logger.info({ endpoint: options.url, protocol, service_name: serviceName }, "tracing on: spans are sent over OTLP/HTTP");
  let stopping: Promise<void> | undefined;
  return {
    tracer,
    sdk: { tracer, api, propagator: new W3CTraceContextPropagator(), logger, forceFlush: () => provider.forceFlush() },
    shutdown() {
      stopping ??= withTimeout(provider.shutdown(), options.shutdownTimeoutMs ?? 2000).then(
        (finished) => {
          if (!finished) logger.warn({ endpoint: options.url }, "tracing: the last spans were not sent in time; dropped");
        },
        // Stopping goes on: spans are not worth a failed shutdown.
        (err: unknown) => logger.warn({ err, endpoint: options.url }, "tracing: the last spans could not be sent; dropped"),
      );
      return stopping;
    },
  };
}

function protocolOf(env: Readonly<Record<string, string | undefined>>): Protocol {
  const name = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL?.trim() ? "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" : "OTEL_EXPORTER_OTLP_PROTOCOL";
  const value = env[name]?.trim() || "http/json";
  if (!(PROTOCOLS as readonly string[]).includes(value)) {
    throw new Error(`${name}=${value}: not supported; use ${PROTOCOLS.join(" or ")} (OTLP over gRPC is not built in)`);
  }
  return value as Protocol;
}

/** OTEL_EXPORTER_OTLP_[TRACES_]HEADERS: "name=value,name2=value2", URL-encoded. */
function headersOf(env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const list of [env.OTEL_EXPORTER_OTLP_HEADERS, env.OTEL_EXPORTER_OTLP_TRACES_HEADERS]) {
    for (const pair of (list ?? "").split(",")) {
      const eq = pair.indexOf("=");
      if (eq > 0) headers[decodeURIComponent(pair.slice(0, eq).trim())] = decodeURIComponent(pair.slice(eq + 1).trim());
    }
  }
  return headers;
}

function positiveInt(env: Readonly<Record<string, string | undefined>>, name: string): number | undefined {
  const value = env[name]?.trim();
  if (!value) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name}=${value}: must be a whole number of milliseconds, 1 or more`);
  return n;
}

/**
 * OpenTelemetry reports export failures to its own diag logger (silent unless registered globally):
 * they go to the daemon log instead, once when exports start failing and once when they recover.
 */
function reportingFailures(exporter: SpanExporter, logger: Logger, url: string): SpanExporter {
  let failing = false;
  return {
    export(spans, done) {
      exporter.export(spans, (result) => {
        const failed = result.code !== ExportResultCode.SUCCESS;
        if (failed && !failing) logger.warn({ err: result.error, endpoint: url, spans: spans.length }, "tracing: sending spans failed; they are dropped until the collector answers");
        if (!failed && failing) logger.info({ endpoint: url }, "tracing: sending spans works again");
        failing = failed;
        done(result);
      });
    },
    shutdown: () => exporter.shutdown(),
    forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve(),
  };
}

function withTimeout(promise: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
    timer.unref();
  });
  return Promise.race([promise.then(() => true), timeout]).finally(() => clearTimeout(timer));
}
