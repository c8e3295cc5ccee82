import type { Batch } from "../domain/batch.ts";
import type { Job, JobProgress, JobTransition } from "../domain/job.ts";
import { NotFoundError } from "../errors.ts";
import type { Store } from "../store/store.ts";
import { batchUpdate } from "./batch-updates.ts";
import type { UpdateBus } from "./update-bus.ts";
import { preciseNow, type JobUpdate } from "./update.ts";

const REPLAY_PAGE = 500;

export interface WatchDeps {
  store: Store;
  bus: UpdateBus;
  /** Fresher progress than the store's for running jobs. */
  liveProgress(jobId: string): JobProgress | undefined;
  /** A batch as it is now; throws NOT_FOUND for an unknown id. */
  batch(id: string): Batch;
  /** The running batches as they are now (the newest, a bounded number): a subscriber to everything gets them in its snapshot. */
  runningBatches(): Batch[];
}

/**
 * StreamJobUpdates: subscribe first (so nothing is missed), then either replay
 * the persisted state changes after `afterSeq` (when given) or send a snapshot of the jobs,
 * then a "synced" marker, then live updates newer than what was already sent.
 * Updates come in batches: everything queued for the subscriber at each wake-up.
 * Watched batches (`batchIds`) add their child jobs and their BATCH_CHANGED updates; the snapshot or the
 * replay ends with each watched batch as it is now (so that a reconnect never misses a batch's final state).
 */
export async function* watchJobs(deps: WatchDeps, jobIds: readonly string[], afterSeq: number | undefined, signal: AbortSignal, batchIds: readonly string[] = []): AsyncGenerator<JobUpdate[]> {
  const { store, bus } = deps;
  const jobs = jobIds.map((id) => store.getJob(id) ?? notFound(id));
  const watchedBatches = batchIds.map((id) => deps.batch(id));
  const everything = jobIds.length === 0 && batchIds.length === 0;
  const childIds = watchedBatches.flatMap((b) => b.jobs.map((j) => j.jobId));
  const subscription = bus.subscribe(jobIds, batchIds);
  const onAbort = () => subscription.close();
  signal.addEventListener("abort", onAbort);
  try {
    const syncSeq = bus.currentSeq();
    if (afterSeq !== undefined) {
      const touched = new Set<string>();
      yield* replay(deps, everything ? [] : [...new Set([...jobIds, ...childIds])], afterSeq, syncSeq, touched);
      // Batches the replay touched (watching everything) or watched: their state now, after the replay.
      const now = everything ? [...touched].flatMap((id) => tryBatch(deps, id)) : batchIds.map((id) => deps.batch(id));
      if (now.length > 0) yield now.map((batch) => batchUpdate(batch, syncSeq));
    } else {
      const children = childIds.flatMap((id) => store.getJob(id) ?? []);
      const snapshot = everything ? [...store.jobsInState("queued"), ...store.jobsInState("running")] : [...jobs, ...children];
      if (snapshot.length > 0) yield snapshot.map((job) => snapshotUpdate(deps, job, syncSeq));
      const batches = everything ? deps.runningBatches() : batchIds.map((id) => deps.batch(id));
      if (batches.length > 0) yield batches.map((batch) => batchUpdate(batch, syncSeq));
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
  return { seq, jobId: job.id, ...(job.batchId ? { batchId: job.batchId } : {}), kind: "snapshot", state: job.state, progress, job: { ...job, progress }, time: preciseNow() };
}

function tryBatch(deps: WatchDeps, id: string): Batch[] {
  try {
    return [deps.batch(id)];
  } catch (err) {
    if (err instanceof NotFoundError) return [];
    throw err;
  }
}

/** `touched` collects the batches of the replayed jobs. */
async function* replay(deps: WatchDeps, jobIds: readonly string[], afterSeq: number, upTo: number, touched: Set<string>): AsyncGenerator<JobUpdate[]> {
  let cursor = afterSeq;
  for (;;) {
    const page = deps.store.transitionsAfter(cursor, jobIds, REPLAY_PAGE).filter((t) => t.seq <= upTo);
    const jobs = new Map<string, Job | undefined>();
    const job = (id: string) => {
      if (!jobs.has(id)) jobs.set(id, deps.store.getJob(id));
      return jobs.get(id);
    };
    const updates = page.map((transition) => transitionUpdate(transition, job(transition.jobId)));
    for (const update of updates) if (update.batchId) touched.add(update.batchId);
    if (updates.length > 0) yield updates;
    if (page.length < REPLAY_PAGE) return;
    cursor = page[page.length - 1]!.seq;
  }
}

/** A state change as an update. `job` is the job as it is now. */
export function transitionUpdate(transition: JobTransition, job: Job | undefined): JobUpdate {
  return {
    seq: transition.seq,
    jobId: transition.jobId,
    ...(job?.batchId ? { batchId: job.batchId } : {}),
    kind: transition.fromState ? "state_changed" : "created",
    state: transition.toState,
    progress: job?.progress,
    job,
    time: transition.time,
    reason: transition.reason,
  };
}
