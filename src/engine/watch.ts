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
  /** A batch as it is now; rejects with NOT_FOUND for an unknown id. */
  batch(id: string): Promise<Batch>;
  /** The running batches as they are now (the newest, a bounded number): a subscriber to everything gets them in its snapshot. */
  runningBatches(): Promise<Batch[]>;
}

/**
 * StreamJobUpdates: subscribe first (so nothing is missed), then either replay
 * the persisted state changes after `afterSeq` (when given) or send a snapshot of the jobs,
 * then a "synced" marker, then live updates newer than what was already sent.
 * Updates come in batches: everything queued for the subscriber at each wake-up.
 * Watched batches (`batchIds`) add their child jobs and their BATCH_CHANGED updates; the snapshot or the
 * replay ends with each watched batch as it is now (so that a reconnect never misses a batch's final state).
 * The snapshot is read after the subscription's sync point: a change committed while it is read may show in
 * it and come again as an update (at least once, never missed).
 */
export async function* watchJobs(deps: WatchDeps, jobIds: readonly string[], afterSeq: number | undefined, signal: AbortSignal, batchIds: readonly string[] = []): AsyncGenerator<JobUpdate[]> {
  const { store, bus } = deps;
  // Subscribed before anything is read: a change committed while the reads wait is then in the subscription.
  const subscription = bus.subscribe(jobIds, batchIds);
  const onAbort = () => subscription.close();
  signal.addEventListener("abort", onAbort);
  try {
    const syncSeq = bus.currentSeq();
    const jobs = await Promise.all(jobIds.map(async (id) => (await store.getJob(id)) ?? notFound(id)));
    const watchedBatches = await Promise.all(batchIds.map((id) => deps.batch(id)));
    const everything = jobIds.length === 0 && batchIds.length === 0;
    const childIds = watchedBatches.flatMap((b) => b.jobs.map((j) => j.jobId));
    if (afterSeq !== undefined) {
      const touched = new Set<string>();
      yield* replay(deps, everything ? [] : [...new Set([...jobIds, ...childIds])], afterSeq, syncSeq, touched);
      // Batches the replay touched (watching everything) or watched: their state now, after the replay.
      const now = everything
        ? (await Promise.all([...touched].map((id) => tryBatch(deps, id)))).flat()
        : await Promise.all(batchIds.map((id) => deps.batch(id)));
      if (now.length > 0) yield now.map((batch) => batchUpdate(batch, syncSeq));
    } else {
      const children = (await Promise.all(childIds.map((id) => store.getJob(id)))).flatMap((job) => job ?? []);
      const snapshot = everything ? [...await store.jobsInState("queued"), ...await store.jobsInState("running")] : [...jobs, ...children];
      if (snapshot.length > 0) yield snapshot.map((job) => snapshotUpdate(deps, job, syncSeq));
      const batches = everything ? await deps.runningBatches() : await Promise.all(batchIds.map((id) => deps.batch(id)));
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

async function tryBatch(deps: WatchDeps, id: string): Promise<Batch[]> {
  try {
    return [await deps.batch(id)];
  } catch (err) {
    if (err instanceof NotFoundError) return [];
    throw err;
  }
}

/** `touched` collects the batches of the replayed jobs. */
async function* replay(deps: WatchDeps, jobIds: readonly string[], afterSeq: number, upTo: number, touched: Set<string>): AsyncGenerator<JobUpdate[]> {
  let cursor = afterSeq;
  for (;;) {
    const page = (await deps.store.transitionsAfter(cursor, jobIds, REPLAY_PAGE)).filter((t) => t.seq <= upTo);
    const jobs = new Map<string, Job | undefined>();
    for (const id of new Set(page.map((t) => t.jobId))) jobs.set(id, await deps.store.getJob(id));
    const updates = page.map((transition) => transitionUpdate(transition, jobs.get(transition.jobId)));
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
