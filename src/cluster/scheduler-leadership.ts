import type { Logger } from "pino";
import type { Schedule } from "../domain/schedule.ts";
import type { Scheduler } from "../scheduler/scheduler.ts";
import type { ClusterStore } from "../store/cluster-store.ts";
import type { ScheduleStore } from "../store/store.ts";

/** How often a follower tries to take the lead, and the leader looks for schedules changed through other nodes. */
const POLL_MS = 500;

export interface ClusterScheduler extends Scheduler {
  isLeader(): boolean;
}

/**
 * Schedules in a cluster fire on one node only: the one holding the scheduler lock (a session advisory lock in
 * PostgreSQL). Followers try to take it twice a second; a leader that dies takes its session, and the lock, with
 * it. Each leadership term runs its own scheduler (started: it handles runs missed since the last leader, per the
 * schedule's missed-run policy). On followers, API calls go to a scheduler that is never started: it stores next run
 * times and runs manual triggers, but arms no timer. The leader re-reads schedules changed through other nodes.
 */
export function createClusterScheduler(options: { make(): Scheduler; cluster: ClusterStore; store: ScheduleStore; logger: Logger }): ClusterScheduler {
  const { cluster, store, logger } = options;
  const follower = options.make();
  let term: { scheduler: Scheduler; release(): Promise<void>; seen: Map<string, string> } | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let busy: Promise<void> | undefined;

  const current = () => term?.scheduler ?? follower;
  const version = (s: Schedule) => `${s.updateTime}:${s.enabled}`;

  async function tick(): Promise<void> {
    if (stopped) return;
    if (!term) {
      const lead = await cluster.tryLead("scheduler");
      if (!lead) return;
      if (stopped) return void (await lead.release());
      const scheduler = options.make();
      const seen = new Map((await store.all()).map((s) => [s.id, version(s)]));
      term = { scheduler, release: lead.release, seen };
      logger.info({ node_id: cluster.nodeId }, "this node leads the schedules now");
      void lead.released.then(() => {
        if (term?.scheduler !== scheduler) return;
        logger.warn("lost the scheduler lock (the database session ended); another node may lead now");
        scheduler.stop();
        term = undefined;
      });
      await scheduler.start();
      return;
    }
    // Schedules created, changed or deleted through other nodes.
    const now = new Map((await store.all()).map((s) => [s.id, version(s)]));
    for (const [id, v] of now) if (term.seen.get(id) !== v) await term.scheduler.reschedule(id);
    for (const id of term.seen.keys()) if (!now.has(id)) await term.scheduler.reschedule(id);
    term.seen = now;
  }

  function loop(): void {
    timer = setTimeout(() => {
      busy = tick()
        .catch((err: unknown) => logger.warn({ err: (err as Error).message }, "scheduler leadership round failed; trying again"))
        .finally(() => {
          busy = undefined;
          if (!stopped) loop();
        });
    }, POLL_MS);
  }

  return {
    async start() {
      busy = tick().catch((err: unknown) => logger.warn({ err: (err as Error).message }, "could not take part in scheduler leadership yet"));
      await busy;
      loop();
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
      const ending = term;
      term = undefined;
      ending?.scheduler.stop();
      void Promise.resolve(busy).then(() => ending?.release()).catch(() => undefined);
    },
    reschedule: (id) => current().reschedule(id),
    trigger: (id, trigger) => current().trigger(id, trigger),
    jobFinished: (scheduleId, jobId) => current().jobFinished(scheduleId, jobId),
    nextRunTime: (id) => current().nextRunTime(id),
    stats: () => current().stats(),
    isLeader: () => term !== undefined,
  };
}
