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
  start(): Promise<void>;
  /** Clears every timer; no run starts afterwards. A run queued behind an active job is recorded as skipped. */
  stop(): void;
  /** After a schedule was created, updated, enabled, disabled or deleted: stores its next run time and re-arms it. */
  reschedule(id: string): Promise<void>;
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
  /** Bumped by every arm(): a timer that fired for an older arming finds it changed and does nothing. */
  epoch: number;
  /** Armed while the scheduler runs (by reschedule): start() leaves it alone, its schedule was read after start began. */
  live: boolean;
  /**
   * The schedule's decisions (overlap check, run record, next run time) one at a time: the store is awaited
   * between a check and the write it guards, so two firings or triggers must not interleave there.
   */
  lock: Promise<void>;
  /** Runs whose submit has not returned: they count as active for the overlap policy. */
  submitting: Set<string>;
  /** Policy "queue": the one run waiting for the active job to finish. */
  pending?: PlannedRun;
}

/** What the overlap policy made of a run: recorded (skipped or queued), or to be submitted (already in `submitting`). */
type Decision = { result: TriggerResult; submit?: undefined } | { submit: PlannedRun; result?: undefined };

/** setTimeout's longest delay; a later time is reached in several hops. */
const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;
/**
 * A timer this late means the process stalled or the machine slept: its time and the ones after it are
 * handled like runs missed while the daemon was down, instead of firing back to back.
 */
const LATE_GRACE_MS = 10_000;
/** Counting missed cron times stops here (a per-second cron down for a month would take minutes to count). */
const MISSED_COUNT_CAP = 1000;
/** A timer whose run failed on the store (PostgreSQL unreachable) tries its cron time again after this. */
const FIRE_RETRY_MS = 5_000;

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
  // A function, not a comparison: TypeScript would keep its narrowing of `lifecycle` across an await.
  const stopped = () => lifecycle === "STOPPED";

  function entryOf(id: string): Entry {
    let entry = entries.get(id);
    if (!entry) {
      entry = { id, enabled: false, epoch: 0, live: false, lock: Promise.resolve(), submitting: new Set() };
      entries.set(id, entry);
    }
    return entry;
  }

  /**
   * (Re)reads a schedule into its entry, with its timer cleared. The entry object stays the same, so that
   * runs in flight, which hold it, see the queued run and the set of runs being submitted.
   */
  function load(schedule: Schedule): Entry {
    const entry = entryOf(schedule.id);
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

  /** Runs `work` once the entry's earlier decisions are done. */
  function exclusive<T>(entry: Entry, work: () => Promise<T>): Promise<T> {
    const result = entry.lock.then(work);
    // The caller gets the failure through `result`; the lock only waits for the work to settle.
    entry.lock = result.then(() => undefined, () => undefined);
    return result;
  }

  /** Work started from a timer or an observer, which cannot wait for it: a failure is logged. */
  function background(scheduleId: string, what: string, work: Promise<unknown>): void {
    work.catch((error: unknown) => logger.error({ scheduleId, err: error }, `schedule ${scheduleId}: ${what} failed: ${errorMessage(error)}`));
  }

  /** Stores the next run time and then, while running, sets the timer for it (call it holding the entry's lock). */
  async function arm(entry: Entry, due: number | undefined): Promise<void> {
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = undefined;
    entry.due = due;
    const epoch = ++entry.epoch;
    await store.setNextRunTime(entry.id, due);
    if (lifecycle !== "RUNNING" || entry.epoch !== epoch) return;
    entry.live = true;
    if (due !== undefined) setTimer(entry, due);
  }

  /** The timer for the cron time `due`, set to go off at `at` (a retry goes off after its due time). */
  function setTimer(entry: Entry, due: number, at = due): void {
    const delay = Math.min(Math.max(0, at - now()), MAX_TIMER_DELAY_MS);
    const epoch = entry.epoch;
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      background(entry.id, "the run", fire(entry, due, epoch));
    }, delay);
  }

  /**
   * A timer fired: the run is decided (and a skip recorded) and the next run time stored before the next
   * timer is set, so each cron time fires once; the run's job is submitted after that, as before. When the
   * store fails on the way, the same cron time is tried again later (rather than the schedule stopping).
   */
  async function fire(entry: Entry, due: number, epoch: number): Promise<void> {
    const started = await exclusive(entry, async () => {
      if (lifecycle !== "RUNNING" || !entry.cron || entry.epoch !== epoch) return undefined;
      try {
        return await fireHeld(entry, entry.cron, due);
      } catch (error) {
        // Still holding the lock: nothing re-armed the entry meanwhile.
        logger.error({ scheduleId: entry.id, err: error },
          `schedule ${entry.id}: its run of ${new Date(due).toISOString()} failed, trying again in ${FIRE_RETRY_MS / 1000} s: ${errorMessage(error)}`);
        entry.due = due;
        if (lifecycle === "RUNNING") setTimer(entry, due, now() + FIRE_RETRY_MS);
        return undefined;
      }
    });
    if (started) await submit(entry, started.schedule, started.planned);
  }

  /** fire() holding the entry's lock: the run to submit, if any. */
  async function fireHeld(entry: Entry, cron: ParsedCron, due: number): Promise<{ schedule: Schedule; planned: PlannedRun } | undefined> {
    const time = now();
    // A far date is reached in hops of MAX_TIMER_DELAY_MS; a timer may also fire a millisecond early.
    if (due > time) {
      setTimer(entry, due);
      return undefined;
    }
    const schedule = await store.get(entry.id);
    if (!schedule) {
      if (entries.get(entry.id) === entry) entries.delete(entry.id);
      return undefined;
    }
    const late = time - due > LATE_GRACE_MS;
    const planned = late
      ? await missed(entry, schedule, due, time, "stalled or asleep")
      : (await decide(entry, schedule, { id: uuidv7(time), trigger: "cron", scheduledTime: due })).submit;
    await armOrRelease(entry, cron.next(late ? time : due), planned);
    return planned && { schedule, planned };
  }

  /** arm(); a run decide() let through is let go again when the next run time cannot be stored (it is not submitted). */
  async function armOrRelease(entry: Entry, due: number | undefined, planned: PlannedRun | undefined): Promise<void> {
    try {
      await arm(entry, due);
    } catch (error) {
      if (planned) entry.submitting.delete(planned.id);
      throw error;
    }
  }

  /** The cron times from `first` (itself missed) up to `until`, under one run: skipped, or run once (returned to submit). */
  async function missed(entry: Entry, schedule: Schedule, first: number, until: number, why: string): Promise<PlannedRun | undefined> {
    const count = countDue(entry.cron!, first, until);
    counters.missed += count;
    const planned: PlannedRun = { id: uuidv7(until), trigger: "missed", scheduledTime: first };
    logger.warn({ scheduleId: schedule.id, missed: count, policy: schedule.missedRunPolicy },
      `schedule ${schedule.id} missed ${count} run(s) since ${new Date(first).toISOString()} while the daemon was ${why}`);
    if (schedule.missedRunPolicy === "run_once") return (await decide(entry, schedule, planned)).submit;
    const runs = count >= MISSED_COUNT_CAP ? `${MISSED_COUNT_CAP} or more runs` : count === 1 ? "1 run" : `${count} runs`;
    await skip(schedule.id, planned, `missed while the daemon was ${why} (${runs})`);
    return undefined;
  }

  function countDue(cron: ParsedCron, first: number, until: number): number {
    let count = 1;
    for (let time = cron.next(first); time !== undefined && time <= until && count < MISSED_COUNT_CAP; time = cron.next(time)) count++;
    return count;
  }

  /** One run under the overlap policy: to submit, queued behind the active job, or skipped (call it holding the entry's lock). */
  async function decide(entry: Entry, schedule: Schedule, planned: PlannedRun): Promise<Decision> {
    const active = schedule.overlapPolicy === "allow" ? undefined : await activeRun(entry);
    if (stopped()) return { result: { run: await skip(schedule.id, planned, "the daemon stopped before the run could start") } };
    if (active && schedule.overlapPolicy === "queue" && !entry.pending) {
      entry.pending = planned;
      logger.info({ scheduleId: schedule.id, runId: planned.id }, `schedule ${schedule.id}: run ${planned.id} waits for ${active}`);
      return { result: { run: { ...planned, scheduleId: schedule.id, runTime: now() }, queued: true } };
    }
    if (active) {
      const waiting = entry.pending ? `; run ${entry.pending.id} already waits for it` : "";
      return { result: { run: await skip(schedule.id, planned, `previous run still queued or running (${active})${waiting}`) } };
    }
    entry.submitting.add(planned.id);
    return { submit: planned };
  }

  /** The schedule's active job, or a run still being submitted, as "job <id>" / "run <id> being submitted". */
  async function activeRun(entry: Entry, finishedJobId?: string): Promise<string | undefined> {
    const jobId = (await store.activeJobIds(entry.id)).find((id) => id !== finishedJobId);
    if (jobId) return `job ${jobId}`;
    const [runId] = entry.submitting;
    return runId && `run ${runId} being submitted`;
  }

  /** Submits a run decide() let through (it is in `submitting` until this returns). */
  async function submit(entry: Entry, schedule: Schedule, planned: PlannedRun): Promise<TriggerResult> {
    try {
      const { jobId, batchId } = await deps.submit(schedule, planned);
      counters.runs++;
      const created = jobId !== undefined ? `job ${jobId}` : `batch ${batchId}`;
      logger.info({ scheduleId: schedule.id, runId: planned.id, jobId, batchId, trigger: planned.trigger }, `schedule ${schedule.id}: run ${planned.id} created ${created}`);
      return { run: { ...planned, scheduleId: schedule.id, jobId, batchId, runTime: now() }, jobId, batchId };
    } catch (error) {
      logger.error({ scheduleId: schedule.id, runId: planned.id, err: error }, `schedule ${schedule.id}: submitting run ${planned.id} failed: ${errorMessage(error)}`);
      return { run: await skip(schedule.id, planned, `submitting the job failed: ${errorMessage(error)}`) };
    } finally {
      entry.submitting.delete(planned.id);
      // A run queued behind this one starts now if this one created no job.
      background(entry.id, "the queued run", startPending(entry));
    }
  }

  async function startPending(entry: Entry, finishedJobId?: string): Promise<void> {
    const started = await exclusive(entry, async () => {
      if (!entry.pending || stopped() || await activeRun(entry, finishedJobId)) return undefined;
      // Read again after the await: stop() or a disable may have taken it meanwhile.
      const planned = entry.pending;
      if (!planned || stopped()) return undefined;
      entry.pending = undefined;
      const schedule = await store.get(entry.id);
      if (!schedule) return undefined;
      entry.submitting.add(planned.id);
      return { schedule, planned };
    });
    if (started) await submit(entry, started.schedule, started.planned);
  }

  async function skip(scheduleId: string, planned: PlannedRun, reason: string): Promise<ScheduleRun> {
    const run: ScheduleRun = { ...planned, scheduleId, runTime: now(), skippedReason: reason };
    // A schedule deleted while its run was being submitted keeps no run records.
    if (!entries.has(scheduleId)) return run;
    await store.recordRun(run);
    counters.skipped++;
    logger.info({ scheduleId, runId: planned.id, trigger: planned.trigger }, `schedule ${scheduleId}: run ${planned.id} skipped: ${reason}`);
    return run;
  }

  /** Takes the queued run at once (so that nothing starts it any more) and records it as skipped. */
  async function dropPending(entry: Entry, reason: string): Promise<void> {
    const planned = entry.pending;
    if (!planned) return;
    entry.pending = undefined;
    await skip(entry.id, planned, reason);
  }

  return {
    async start() {
      if (lifecycle !== "IDLE") throw new Error(`the scheduler cannot start: it is ${lifecycle.toLowerCase()}`);
      lifecycle = "RUNNING";
      for (const schedule of await store.all()) {
        const entry = entryOf(schedule.id);
        const late = await exclusive(entry, async () => {
          // Rescheduled (read again) since start began, or stopped meanwhile: nothing to do with this older read.
          if (entry.live || lifecycle !== "RUNNING") return undefined;
          load(schedule);
          if (!entry.enabled || !entry.cron) {
            if (schedule.nextRunTime !== undefined) await arm(entry, undefined);
            return undefined;
          }
          const time = now();
          const planned = schedule.nextRunTime !== undefined && schedule.nextRunTime < time
            ? await missed(entry, schedule, schedule.nextRunTime, time, "down")
            : undefined;
          await armOrRelease(entry, entry.cron.next(time), planned);
          return planned;
        });
        if (late) background(schedule.id, "the missed run", submit(entry, schedule, late));
      }
      logger.info({ schedules: entries.size }, "scheduler started");
    },

    stop() {
      if (lifecycle === "STOPPED") return;
      lifecycle = "STOPPED";
      for (const entry of entries.values()) {
        if (entry.timer) clearTimeout(entry.timer);
        entry.timer = undefined;
        background(entry.id, "recording the queued run as skipped", dropPending(entry, "the daemon stopped before the queued run could start"));
      }
    },

    async reschedule(id) {
      const entry = entryOf(id);
      await exclusive(entry, async () => {
        const schedule = await store.get(id);
        if (!schedule) {
          if (entry.timer) clearTimeout(entry.timer);
          entry.timer = undefined;
          entry.epoch++;
          if (entries.get(id) === entry) entries.delete(id);
          return;
        }
        // A reschedule that found it deleted may have dropped the entry while this one waited.
        entries.set(id, entry);
        load(schedule);
        if (!entry.enabled) await dropPending(entry, "the schedule was disabled before the queued run could start");
        await arm(entry, entry.enabled ? entry.cron?.next(now()) : undefined);
      });
    },

    async trigger(id, trigger = "manual") {
      if (lifecycle === "STOPPED") throw new UnavailableError("the scheduler is stopped");
      const schedule = await store.get(id);
      if (!schedule) throw new NotFoundError(`schedule ${id} not found`);
      const entry = entries.get(id) ?? load(schedule);
      const time = now();
      const planned: PlannedRun = { id: uuidv7(time), trigger, scheduledTime: time };
      const decision = await exclusive(entry, () => decide(entry, schedule, planned));
      return decision.result ?? submit(entry, schedule, decision.submit);
    },

    jobFinished(scheduleId, jobId) {
      const entry = entries.get(scheduleId);
      if (entry) background(scheduleId, "the queued run", startPending(entry, jobId));
    },

    nextRunTime: (id) => entries.get(id)?.due,

    stats() {
      let enabled = 0;
      for (const entry of entries.values()) if (entry.enabled) enabled++;
      return { schedules: entries.size, enabled, ...counters };
    },
  };
}
