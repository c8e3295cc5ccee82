import type { Context, Span } from "@opentelemetry/api";
import { NOOP_JOB_TRACER, NOOP_PHASE_SPAN, type JobSpan, type JobTracer } from "../engine/job-tracer.ts";
import { HypervisordError, errorMessage } from "../errors.ts";
import type { Tracing, TracingSdk } from "./tracing.ts";

/**
 * Spans of job attempts: "hypervisord.job" with a child per phase, all with hypervisord.job_id. A job
 * span is the root of a trace of its own: a job starts in the engine after the SubmitJob call has
 * returned (or from a schedule, or after a restart), so it is neither that call's child nor linked to it.
 * Without tracing, one shared no-op object: nothing is allocated per job.
 */
export function jobTracer(tracing: Tracing): JobTracer {
  const sdk = tracing.sdk;
  return sdk ? { startJob: (job, attempt) => startJobSpan(sdk, job, attempt) } : NOOP_JOB_TRACER;
}

function startJobSpan(sdk: TracingSdk, job: Parameters<JobTracer["startJob"]>[0], attempt: number): JobSpan {
  const { tracer, api } = sdk;
  const jobId = { "hypervisord.job_id": job.id };
  const root = tracer.startSpan("hypervisord.job", {
    kind: api.SpanKind.INTERNAL,
    root: true,
    attributes: { ...jobId, "hypervisord.attempt": attempt, "hypervisord.provider": job.definition.provider, "hypervisord.vm": job.definition.vm },
  }, api.ROOT_CONTEXT);
  const rootContext = api.trace.setSpan(api.ROOT_CONTEXT, root);
  let current: { name: string; span: Span; context: Context } | undefined;
  let ended = false;

  const finish = (span: Span, error: unknown) => {
    if (error !== undefined) {
      const code = error instanceof HypervisordError ? error.code : "INTERNAL";
      span.setAttribute("hypervisord.error_code", code);
      span.setStatus({ code: api.SpanStatusCode.ERROR, message: errorMessage(error) });
    }
    span.end();
  };
  const endCurrent = (error?: unknown) => {
    if (current) finish(current.span, error);
    current = undefined;
  };

  return {
    phaseChanged(phase) {
      if (ended || current?.name === phase) return;
      endCurrent();
      const span = tracer.startSpan(phase, { attributes: { ...jobId, "hypervisord.phase": phase } }, rootContext);
      current = { name: phase, span, context: api.trace.setSpan(rootContext, span) };
    },
    phase(name, attributes) {
      if (ended) return NOOP_PHASE_SPAN;
      const span = tracer.startSpan(name, { attributes: { ...attributes, ...jobId, "hypervisord.phase": name } }, current?.context ?? rootContext);
      let open = true;
      return {
        end(error?: unknown) {
          if (!open) return;
          open = false;
          finish(span, error);
        },
      };
    },
    end(error) {
      if (ended) return;
      ended = true;
      endCurrent(error);
      finish(root, error);
    },
  };
}
