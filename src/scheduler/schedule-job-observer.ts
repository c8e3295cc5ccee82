import type { Logger } from "pino";
import { isFinal, type Job } from "../domain/job.ts";
import type { JobObserver } from "../engine/engine.ts";
import { errorMessage } from "../errors.ts";
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
  logger: Pick<Logger, "error">;
}): JobObserver {
  /** A batch child without its schedule id needs a lookup: the observer cannot wait for it, so it runs on its own. */
  async function ended(job: Job): Promise<void> {
    const scheduleId = job.scheduleId ?? (job.batchId ? await deps.schedules.scheduleOfBatch(job.batchId) : undefined);
    if (!scheduleId) return;
    deps.scheduler.jobFinished(scheduleId, job.id);
    // Never rejects: retention logs its own failures.
    if (job.state === "completed") await deps.retention.jobCompleted(job.id);
  }

  return {
    changed(job) {
      if (!isFinal(job.state)) return;
      ended(job).catch((err: unknown) => {
        deps.logger.error({ jobId: job.id, batchId: job.batchId, err }, `job ${job.id} ended: finding its schedule failed: ${errorMessage(err)}`);
      });
    },
  };
}
