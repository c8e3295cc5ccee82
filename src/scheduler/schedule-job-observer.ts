import { isFinal } from "../domain/job.ts";
import type { JobObserver } from "../engine/engine.ts";
import type { ScheduleStore } from "../store/store.ts";
import type { Retention } from "./retention.ts";
import type { Scheduler } from "./scheduler.ts";

/**
 * What a schedule does when one of its jobs ends, a batch child's included: a run queued behind it may
 * start (overlap policy "queue"), and a completed export lets retention delete that VM's older ones. Added with
 * engine.observe() once the scheduler exists (it submits through the engine).
 */
export function createScheduleJobObserver(deps: {
  schedules: Pick<ScheduleStore, "scheduleOfBatch">;
  scheduler: Pick<Scheduler, "jobFinished">;
  retention: Retention;
}): JobObserver {
  return {
    changed(job) {
      if (!isFinal(job.state)) return;
      const scheduleId = job.scheduleId ?? (job.batchId ? deps.schedules.scheduleOfBatch(job.batchId) : undefined);
      if (!scheduleId) return;
      deps.scheduler.jobFinished(scheduleId, job.id);
      if (job.state === "completed") deps.retention.jobCompleted(job.id);
    },
  };
}
