import type { Job, JobProgress } from "../domain/job.ts";
import { wantsEvent } from "../domain/webhook.ts";
import type { WebhookStore } from "../store/store.ts";
import { progressEvent } from "../domain/webhook-events.ts";
import { errorMessage } from "../errors.ts";

export interface ProgressEventsLogger {
  error(obj: object, msg: string): void;
}

/** job.progress is opt-in and throttled: at most one event per job per interval, and none while no webhook asks for it. */
export function createProgressEvents(store: WebhookStore, logger: ProgressEventsLogger, intervalMs = 10_000) {
  const last = new Map<string, number>();
  /** Jobs whose event is being looked at or enqueued: progress meanwhile adds none (the throttle is set after the lookup). */
  const busy = new Set<string>();

  async function send(job: Job, progress: JobProgress, now: number): Promise<void> {
    if (!(await store.list()).some((w) => w.enabled && wantsEvent(w.events, "job.progress"))) return;
    last.set(job.id, now);
    if (last.size > 10_000) last.delete(last.keys().next().value!);
    await store.enqueue(progressEvent({ ...job, progress }));
  }

  return {
    /** Called by the engine's observer, which cannot wait: the enqueue runs on its own and a failure is logged. */
    progressed(job: Job, progress: JobProgress): void {
      const now = Date.now();
      if (busy.has(job.id) || now - (last.get(job.id) ?? 0) < intervalMs) return;
      busy.add(job.id);
      send(job, progress, now)
        .catch((err: unknown) => logger.error({ jobId: job.id, err }, `job ${job.id}: enqueuing its job.progress event failed: ${errorMessage(err)}`))
        .finally(() => busy.delete(job.id));
    },
  };
}
