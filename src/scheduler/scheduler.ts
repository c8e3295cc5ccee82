import type { Logger } from "pino";
import type { RunTrigger, Schedule, ScheduleRun } from "../domain/schedule.ts";
import { uuidv7 } from "../engine/uuid-v7.ts";
import { NotFoundError, UnavailableError, errorMessage } from "../errors.ts";
import type { ScheduleStore } from "../store/store.ts";
import { parseCron, type ParsedCron } from "./cron.ts";

/** A run about to create a job or a batch; the engine records it in the insert transaction (NewJob/NewBatch.scheduleRun). */
export interface PlannedRun {
  id: string;
  trigger: RunTrigger;
  scheduledTime: number;
}

export interface SchedulerDeps {
  store: ScheduleStore;
  /** Creates the run's job (or batch, for a template with a vm_selector) from the schedule's template and records the run with it. */
  submit(schedule: Schedule, run: PlannedRun): Promise<SubmittedRun>;
  logger: Logger;
  now?: () => number;
}

/** What a run created: one job, or a batch of jobs (one per selected VM). */
export type SubmittedRun = { jobId: string; batchId?: undefined } | { batchId: string; jobId?: undefined };

export interface TriggerResult {
  /** As recorded; a run that created a job has no state yet here (the caller has the job). */
  run: ScheduleRun;
  jobId?: string;
  batchId?: string;
  /** Overlap policy "queue": the run waits for the active job and is recorded, under run.id, when its job is created. */
  queued?: boolean;
}

export interface SchedulerStats {
  schedules: number;
  enabled: number;
  /** Since start: runs that created a job, runs recorded as skipped, and cron times missed while down or stalled. */
  runs: number;
  skipped: number;
  missed: number;
}

export interface Scheduler {
  /** Loads every schedule, handles the runs missed while the daemon was down, and arms the timers. */
  start(): void;
  /** Clears every timer; no run starts afterwards. A run queued behind an active job is recorded as skipped. */
  stop(): void;
  /** After a schedule was created, updated, enabled, disabled or deleted: stores its next run time and re-arms it. */
  reschedule(id: string): void;
  /** Runs the schedule now, enabled or not; its overlap policy applies. */
  trigger(id: string, trigger?: RunTrigger): Promise<TriggerResult>;
  /** A job of this schedule (or of its batch) reached a final state: a run queued behind it (policy "queue") starts. */
  jobFinished(scheduleId: string, jobId: string): void;
  nextRunTime(id: string): number | undefined;
  stats(): SchedulerStats;
}

type Lifecycle = "IDLE" | "RUNNING" | "STOPPED";

interface Entry {
  id: string;
  enabled: boolean;
  /** Undefined when the stored expression or zone no longer parses (e.g. a zone gone from tzdata). */
  cron?: ParsedCron;
  /** The cron time the timer is for. */
  due?: number;
  timer?: NodeJS.Timeout;
  /** Runs whose submit has not returned: they count as active for the overlap policy. */
  submitting: Set<string>;
  /** Policy "queue": the one run waiting for the active job to finish. */
  pending?: PlannedRun;
}

/** setTimeout's longest delay; a later time is reached in several hops. */
const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;
/**
 * A timer this late means the process stalled or the machine slept: its time and the ones after it are
 * handled like runs missed while the daemon was down, instead of firing back to back.
 */
const LATE_GRACE_MS = 10_000;
/** Counting missed cron times stops here (a per-second cron down for a month would take minutes to count). */
const MISSED_COUNT_CAP = 1000;

/**
 * Fires schedules' runs at their cron times: one timer per enabled schedule, each next time computed from
 * the cron time just fired (not from now), so the schedule does not drift.
 */
export function createScheduler(deps: SchedulerDeps): Scheduler {
  const { store, logger } = deps;
  const now = deps.now ?? Date.now;
  const entries = new Map<string, Entry>();
  const counters = { runs: 0, skipped: 0, missed: 0 };
  let lifecycle: Lifecycle = "IDLE";

  /**
   * (Re)reads a schedule into its entry, with its timer cleared. The entry object stays the same, so that
   * runs in flight, which hold it, see the queued run and the set of runs being submitted.
   */
  function load(schedule: Schedule): Entry {
    let entry = entries.get(schedule.id);
    if (!entry) {
      entry = { id: schedule.id, enabled: schedule.enabled, submitting: new Set() };
      entries.set(schedule.id, entry);
    }
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = undefined;
    entry.enabled = schedule.enabled;
    entry.cron = parsed(schedule);
    return entry;
  }

  function parsed(schedule: Schedule): ParsedCron | undefined {
    try {
      return parseCron(schedule.cron, schedule.timeZone, { cron: "cron", timeZone: "time_zone" });
    } catch (error) {
      logger.error({ scheduleId: schedule.id, err: error }, `schedule ${schedule.id} will not fire: ${errorMessage(error)}`);
      return undefined;
    }
  }

  /** Stores the next run time and, while running, sets the timer for it. */
  function arm(entry: Entry, due: number | undefined): void {
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = undefined;
    entry.due = due;
    store.setNextRunTime(entry.id, due);
    if (due !== undefined && lifecycle === "RUNNING") setTimer(entry, due);
  }

  function setTimer(entry: Entry, due: number): void {
    const delay = Math.min(Math.max(0, due - now()), MAX_TIMER_DELAY_MS);
    entry.timer = setTimeout(() => onTimer(entry, due), delay);
  }

  function onTimer(entry: Entry, due: number): void {
    entry.timer = undefined;
    if (lifecycle !== "RUNNING" || !entry.cron) return;
    const time = now();
    // A far date is reached in hops of MAX_TIMER_DELAY_MS; a timer may also fire a millisecond early.
    if (due > time) return setTimer(entry, due);
    const schedule = store.get(entry.id);
    if (!schedule) {
      entries.delete(entry.id);
      return;
    }
    if (time - due > LATE_GRACE_MS) {
      missed(entry, schedule, due, time, "stalled or asleep");
      return arm(entry, entry.cron.next(time));
    }
    run(entry, schedule, { id: uuidv7(time), trigger: "cron", scheduledTime: due })
      .catch((error: unknown) => logger.error({ scheduleId: entry.id, err: error }, `schedule ${entry.id}: run failed: ${errorMessage(error)}`));
    arm(entry, entry.cron.next(due));
  }

  /** The cron times from `first` (itself missed) up to `until`, under one run: skipped, or run once. */
  function missed(entry: Entry, schedule: Schedule, first: number, until: number, why: string): void {
    const count = countDue(entry.cron!, first, until);
    counters.missed += count;
    const planned: PlannedRun = { id: uuidv7(until), trigger: "missed", scheduledTime: first };
    logger.warn({ scheduleId: schedule.id, missed: count, policy: schedule.missedRunPolicy },
      `schedule ${schedule.id} missed ${count} run(s) since ${new Date(first).toISOString()} while the daemon was ${why}`);
    if (schedule.missedRunPolicy === "run_once") {
      run(entry, schedule, planned)
        .catch((error: unknown) => logger.error({ scheduleId: schedule.id, err: error }, `schedule ${schedule.id}: missed run failed: ${errorMessage(error)}`));
      return;
    }
    const runs = count >= MISSED_COUNT_CAP ? `${MISSED_COUNT_CAP} or more runs` : count === 1 ? "1 run" : `${count} runs`;
    skip(schedule.id, planned, `missed while the daemon was ${why} (${runs})`);
  }

  function countDue(cron: ParsedCron, first: number, until: number): number {
    let count = 1;
    for (let time = cron.next(first); time !== undefined && time <= until && count < MISSED_COUNT_CAP; time = cron.next(time)) count++;
    return count;
  }

  /** One run under the overlap policy: submitted, queued behind the active job, or skipped. */
  async function run(entry: Entry, schedule: Schedule, planned: PlannedRun): Promise<TriggerResult> {
    if (schedule.overlapPolicy !== "allow") {
      const active = activeRun(entry);
      if (active && schedule.overlapPolicy === "queue" && !entry.pending) {
        entry.pending = planned;
        logger.info({ scheduleId: schedule.id, runId: planned.id }, `schedule ${schedule.id}: run ${planned.id} waits for ${active}`);
        return { run: { ...planned, scheduleId: schedule.id, runTime: now() }, queued: true };
      }
      if (active) {
        const waiting = entry.pending ? `; run ${entry.pending.id} already waits for it` : "";
        return { run: skip(schedule.id, planned, `previous run still queued or running (${active})${waiting}`) };
      }
    }
    return submit(entry, schedule, planned);
  }

  /** The schedule's active job, or a run still being submitted, as "job <id>" / "run <id> being submitted". */
  function activeRun(entry: Entry, finishedJobId?: string): string | undefined {
    const jobId = store.activeJobIds(entry.id).find((id) => id !== finishedJobId);
    if (jobId) return `job ${jobId}`;
    const [runId] = entry.submitting;
    return runId && `run ${runId} being submitted`;
  }

  async function submit(entry: Entry, schedule: Schedule, planned: PlannedRun): Promise<TriggerResult> {
    entry.submitting.add(planned.id);
    try {
      const { jobId, batchId } = await deps.submit(schedule, planned);
      counters.runs++;
      const created = jobId !== undefined ? `job ${jobId}` : `batch ${batchId}`;
      logger.info({ scheduleId: schedule.id, runId: planned.id, jobId, batchId, trigger: planned.trigger }, `schedule ${schedule.id}: run ${planned.id} created ${created}`);
      return { run: { ...planned, scheduleId: schedule.id, jobId, batchId, runTime: now() }, jobId, batchId };
    } catch (error) {
      logger.error({ scheduleId: schedule.id, runId: planned.id, err: error }, `schedule ${schedule.id}: submitting run ${planned.id} failed: ${errorMessage(error)}`);
      return { run: skip(schedule.id, planned, `submitting the job failed: ${errorMessage(error)}`) };
    } finally {
      entry.submitting.delete(planned.id);
      // A run queued behind this one starts now if this one created no job.
      startPending(entry);
    }
  }

  function startPending(entry: Entry, finishedJobId?: string): void {
    const planned = entry.pending;
    if (!planned || lifecycle === "STOPPED" || activeRun(entry, finishedJobId)) return;
    entry.pending = undefined;
    const schedule = store.get(entry.id);
    if (!schedule) return;
    submit(entry, schedule, planned)
      .catch((error: unknown) => logger.error({ scheduleId: entry.id, err: error }, `schedule ${entry.id}: queued run failed: ${errorMessage(error)}`));
  }

  function skip(scheduleId: string, planned: PlannedRun, reason: string): ScheduleRun {
    const run: ScheduleRun = { ...planned, scheduleId, runTime: now(), skippedReason: reason };
    // A schedule deleted while its run was being submitted keeps no run records.
    if (!entries.has(scheduleId)) return run;
    store.recordRun(run);
    counters.skipped++;
    logger.info({ scheduleId, runId: planned.id, trigger: planned.trigger }, `schedule ${scheduleId}: run ${planned.id} skipped: ${reason}`);
    return run;
  }

  function dropPending(entry: Entry, reason: string): void {
    if (!entry.pending) return;
    skip(entry.id, entry.pending, reason);
    entry.pending = undefined;
  }

  return {
    start() {
      if (lifecycle !== "IDLE") throw new Error(`the scheduler cannot start: it is ${lifecycle.toLowerCase()}`);
      lifecycle = "RUNNING";
      for (const schedule of store.all()) {
        const entry = load(schedule);
        if (!entry.enabled || !entry.cron) {
          if (schedule.nextRunTime !== undefined) arm(entry, undefined);
          continue;
        }
        const time = now();
        if (schedule.nextRunTime !== undefined && schedule.nextRunTime < time) missed(entry, schedule, schedule.nextRunTime, time, "down");
        arm(entry, entry.cron.next(time));
      }
      logger.info({ schedules: entries.size }, "scheduler started");
    },

    stop() {
      if (lifecycle === "STOPPED") return;
      lifecycle = "STOPPED";
      for (const entry of entries.values()) {
        if (entry.timer) clearTimeout(entry.timer);
        entry.timer = undefined;
        dropPending(entry, "the daemon stopped before the queued run could start");
      }
    },

    reschedule(id) {
      const schedule = store.get(id);
      if (!schedule) {
        const old = entries.get(id);
        if (old?.timer) clearTimeout(old.timer);
        entries.delete(id);
        return;
      }
      const entry = load(schedule);
      if (!entry.enabled) dropPending(entry, "the schedule was disabled before the queued run could start");
      arm(entry, entry.enabled ? entry.cron?.next(now()) : undefined);
    },

    async trigger(id, trigger = "manual") {
      if (lifecycle === "STOPPED") throw new UnavailableError("the scheduler is stopped");
      const schedule = store.get(id);
      if (!schedule) throw new NotFoundError(`schedule ${id} not found`);
      const entry = entries.get(id) ?? load(schedule);
      const time = now();
      return run(entry, schedule, { id: uuidv7(time), trigger, scheduledTime: time });
    },

    jobFinished(scheduleId, jobId) {
      const entry = entries.get(scheduleId);
      if (entry) startPending(entry, jobId);
    },

    nextRunTime: (id) => entries.get(id)?.due,

    stats() {
      let enabled = 0;
      for (const entry of entries.values()) if (entry.enabled) enabled++;
      return { schedules: entries.size, enabled, ...counters };
    },
  };
}
