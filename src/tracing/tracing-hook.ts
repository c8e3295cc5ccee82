import type { Span, TextMapGetter } from "@opentelemetry/api";
import type { Call, CallHook, CallOutcome } from "../rpc/call-hooks.ts";
import type { CallContext } from "../rpc/handlers.ts";
import { statusOf } from "../rpc/status.ts";
import { HypervisordError } from "../errors.ts";
import type { Tracing } from "./tracing.ts";

const HEADERS: TextMapGetter<CallContext> = {
  get: (context, name) => context.header(name),
  // Only get() is used by the W3C propagator.
  keys: () => [],
};

/**
 * A SERVER span per call, "hypervisord.v1.HypervisordService/<Method>", child of the caller's span when
 * the call carries `traceparent` (and `tracestate`), with the rpc.* attributes and the gRPC status code;
 * status ERROR when the call fails. Without tracing it is an empty hook (the integrator may leave it out).
 */
export function createTracingHook(tracing: Tracing): CallHook {
  const sdk = tracing.sdk;
  if (!sdk) return {};
  const { tracer, api, propagator } = sdk;
  // statusOf logs unknown errors: the transports already do, once.
  const quiet = sdk.logger.child({}, { level: "silent" });
  const spans = new WeakMap<Call, Span>();
  return {
    before(call) {
      const parent = propagator.extract(api.ROOT_CONTEXT, call.context, HEADERS);
      spans.set(call, tracer.startSpan(`${call.service}/${call.method}`, {
        kind: api.SpanKind.SERVER,
        attributes: {
          "rpc.system": call.context.transport === "grpc" ? "grpc" : "connect_rpc",
          "rpc.service": call.service,
          "rpc.method": call.method,
          "hypervisord.transport": call.context.transport,
        },
      }, parent));
    },
    after(call, outcome) {
      const span = spans.get(call);
      if (!span) return;
      const status = statusOfOutcome(call, outcome, quiet);
      // gRPC and Connect share the numbers; rpc.grpc.status_code is on every span whatever the transport.
      span.setAttribute("rpc.grpc.status_code", status.number);
      if (status.number !== 0) {
        span.setAttribute("hypervisord.status", status.code);
        span.setStatus({ code: api.SpanStatusCode.ERROR, message: `${status.code}: ${status.message}` });
      }
      if (call.principal) span.setAttribute("hypervisord.principal.kind", call.principal.kind);
      span.end();
    },
  };
}

function statusOfOutcome(call: Call, outcome: CallOutcome, quiet: Parameters<typeof statusOf>[1]) {
  if (outcome.error === undefined) return { code: "OK", number: 0, message: "" };
  // A stream the caller went away from ends with the signal's reason, which is no HypervisordError.
  if (call.context.signal.aborted && !(outcome.error instanceof HypervisordError)) return { code: "CANCELLED", number: 1, message: "cancelled by the caller" };
  return statusOf(outcome.error, quiet, call.method);
}
