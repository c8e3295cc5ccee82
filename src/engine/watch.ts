import type { Job, JobProgress, JobTransition } from "../domain/job.ts";
import { NotFoundError } from "../errors.ts";
import type { Store } from "../store/store.ts";
import type { UpdateBus } from "./update-bus.ts";
import { preciseNow, type JobUpdate } from "./update.ts";

const REPLAY_PAGE = 500;

export interface WatchDeps {
  store: Store;
  bus: UpdateBus;
  /** Fresher progress than the store's for running jobs. */
  liveProgress(jobId: string): JobProgress | undefined;
}

/**
 * StreamJobUpdates: subscribe first (so nothing is missed), then either replay
 * the persisted state changes after `afterSeq` (when given) or send a snapshot of the jobs,
 * then a "synced" marker, then live updates newer than what was already sent.
 * Updates come in batches: everything queued for the subscriber at each wake-up.
 */
export async function* watchJobs(deps: WatchDeps, jobIds: readonly string[], afterSeq: number | undefined, signal: AbortSignal): AsyncGenerator<JobUpdate[]> {
  const { store, bus } = deps;
  const jobs = jobIds.map((id) => store.getJob(id) ?? notFound(id));
  const subscription = bus.subscribe(jobIds);
  const onAbort = () => subscription.close();
  signal.addEventListener("abort", onAbort);
  try {
    const syncSeq = bus.currentSeq();
    if (afterSeq !== undefined) {
      yield* replay(deps, jobIds, afterSeq, syncSeq);
    } else {
      const snapshot = jobIds.length > 0 ? jobs : [...store.jobsInState("queued"), ...store.jobsInState("running")];
      if (snapshot.length > 0) yield snapshot.map((job) => snapshotUpdate(deps, job, syncSeq));
    }
    subscription.markSynced(syncSeq);
    yield [{ seq: syncSeq, jobId: "", kind: "synced", time: preciseNow() }];
    for (;;) {
      const batch = await subscription.nextBatch();
      if (!batch) return;
      const fresh = batch.filter((u) => u.seq > syncSeq);
      if (fresh.length > 0) yield fresh;
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
    subscription.close();
  }
}

function notFound(id: string): never {
  throw new NotFoundError(`job ${id} not found`);
}

function snapshotUpdate(deps: WatchDeps, job: Job, seq: number): JobUpdate {
  const progress = deps.liveProgress(job.id) ?? job.progress;
  return { seq, jobId: job.id, kind: "snapshot", state: job.state, progress, job: { ...job, progress }, time: preciseNow() };
}

async function* replay(deps: WatchDeps, jobIds: readonly string[], afterSeq: number, upTo: number): AsyncGenerator<JobUpdate[]> {
  let cursor = afterSeq;
  for (;;) {
    const page = deps.store.transitionsAfter(cursor, jobIds, REPLAY_PAGE).filter((t) => t.seq <= upTo);
    const jobs = new Map<string, Job | undefined>();
    const job = (id: string) => {
      if (!jobs.has(id)) jobs.set(id, deps.store.getJob(id));
      return jobs.get(id);
    };
    if (page.length > 0) yield page.map((transition) => transitionUpdate(transition, job(transition.jobId)));
    if (page.length < REPLAY_PAGE) return;
    cursor = page[page.length - 1]!.seq;
  }
}

/** A state change as an update. `job` is the job as it is now. */
export function transitionUpdate(transition: JobTransition, job: Job | undefined): JobUpdate {
  return {
    seq: transition.seq,
    jobId: transition.jobId,
    kind: transition.fromState ? "state_changed" : "created",
    state: transition.toState,
    progress: job?.progress,
    job,
    time: transition.time,
    reason: transition.reason,
  };
}
