import type { Job, JobProgress } from "../domain/job.ts";
import { wantsEvent } from "../domain/webhook.ts";
import type { WebhookStore } from "../store/store.ts";
import { progressEvent } from "../domain/webhook-events.ts";

/** job.progress is opt-in and throttled: at most one event per job per interval, and none while no webhook asks for it. */
export function createProgressEvents(store: WebhookStore, intervalMs = 10_000) {
  const last = new Map<string, number>();
  return {
    progressed(job: Job, progress: JobProgress): void {
      const now = Date.now();
      if (now - (last.get(job.id) ?? 0) < intervalMs) return;
      if (!store.list().some((w) => w.enabled && wantsEvent(w.events, "job.progress"))) return;
      last.set(job.id, now);
      if (last.size > 10_000) last.delete(last.keys().next().value!);
      store.enqueue(progressEvent({ ...job, progress }));
    },
  };
}
