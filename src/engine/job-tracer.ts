/*
 * What the engine tells a tracer about a job attempt. The contract lives here, beside its one caller, so that
 * the engine imports no tracing code; src/tracing implements it with OpenTelemetry (tracing/job-tracer.ts).
 */

/** Span attributes, e.g. `{ "hypervisord.file": "disk-1.vmdk" }`. */
export type PhaseAttributes = Readonly<Record<string, string | number | boolean>>;

export interface PhaseSpan {
  end(error?: unknown): void;
}

/** One attempt of one job. Every method is cheap and safe to call after end() (then it does nothing). */
export interface JobSpan {
  /**
   * Follows the progress `phase` strings ("connecting", "lease", "downloading", "packaging", "converting",
   * ...): a new name ends the open phase span and starts the next, as a child of the job span; the same
   * name again (every progress update repeats it) does nothing.
   */
  phaseChanged(phase: string): void;
  /**
   * A span of its own for one piece of work, e.g. `phase("download", { "hypervisord.file": "disk-1.vmdk" })`
   * per disk (they may overlap): a child of the open phaseChanged span, else of the job span.
   */
  phase(name: string, attributes?: PhaseAttributes): PhaseSpan;
  /** Ends the open phase (with the same error) and the job span. */
  end(error?: unknown): void;
}

export interface JobTracer {
  startJob(job: { id: string; definition: { provider: string; vm: string } }, attempt: number): JobSpan;
}

export const NOOP_PHASE_SPAN: PhaseSpan = { end() {} };
const NOOP_JOB_SPAN: JobSpan = { phaseChanged() {}, phase: () => NOOP_PHASE_SPAN, end() {} };
/** Without tracing (also the engine's default when it is given no tracer): one shared no-op span. */
export const NOOP_JOB_TRACER: JobTracer = { startJob: () => NOOP_JOB_SPAN };
