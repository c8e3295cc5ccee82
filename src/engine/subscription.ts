import { ResourceExhaustedError, type HypervisordError } from "../errors.ts";
import type { JobUpdate } from "./update.ts";

/**
 * One subscriber's queue of updates. The engine pushes without ever waiting:
 * pending progress updates of a job are replaced by newer ones, and a
 * subscriber that falls more than `maxQueued` state changes behind is closed
 * with RESOURCE_EXHAUSTED (it can resume with after_seq). So a slow reader
 * never slows the engine or other subscribers.
 */
export class Subscription {
  private readonly queue: (JobUpdate | undefined)[] = [];
  private head = 0;
  private pending = 0;
  private readonly pendingProgress = new Map<string, number>();
  private waiter: (() => void) | undefined;
  /** Handed to `ready` and not woken yet: pushes meanwhile only queue. */
  private wakePending = false;
  private closed = false;
  private failure: HypervisordError | undefined;
  private lastDeliveredSeq = 0;

  constructor(
    /** Job ids and batch ids watched; undefined: everything. */
    private readonly filter: { jobs: ReadonlySet<string>; batches: ReadonlySet<string> } | undefined,
    private readonly maxQueued: number,
    private readonly onClose: (subscription: Subscription) => void,
    /** Called when a push finds the reader waiting; it calls wake(), now or a little later (the bus spreads wake-ups over turns). */
    private readonly ready: (subscription: Subscription) => void = (subscription) => subscription.wake(),
  ) {}

  /** The subscriber has everything up to `seq` (snapshot or replay): the resume point if it falls behind before reading more. */
  markSynced(seq: number): void {
    this.lastDeliveredSeq = Math.max(this.lastDeliveredSeq, seq);
  }

  wants(update: JobUpdate): boolean {
    if (!this.filter) return true;
    if (update.batchId !== undefined && this.filter.batches.has(update.batchId)) return true;
    return update.kind !== "batch_changed" && this.filter.jobs.has(update.jobId);
  }

  push(update: JobUpdate): void {
    if (this.closed) return;
    // A newer progress of a job, or a newer whole batch, replaces the one still queued.
    const replaceable = update.kind === "progress" ? update.jobId : update.kind === "batch_changed" ? `batch:${update.batchId}` : undefined;
    if (replaceable !== undefined) {
      const index = this.pendingProgress.get(replaceable);
      if (index !== undefined) {
        this.queue[index] = undefined;
        this.pending--;
      }
      this.pendingProgress.set(replaceable, this.queue.length);
    } else if (this.pending >= this.maxQueued) {
      this.close(new ResourceExhaustedError(
        `subscriber fell ${this.pending} updates behind; reconnect with after_seq=${this.lastDeliveredSeq}`));
      return;
    }
    this.queue.push(update);
    this.pending++;
    if (this.waiter && !this.wakePending) {
      this.wakePending = true;
      this.ready(this);
    }
  }

  /** Every queued update (at least one), or undefined once closed without error. Throws the close error. */
  async nextBatch(): Promise<JobUpdate[] | undefined> {
    for (;;) {
      const batch: JobUpdate[] = [];
      for (let update = this.shift(); update; update = this.shift()) batch.push(update);
      this.compact();
      if (batch.length > 0) return batch;
      if (this.failure) throw this.failure;
      if (this.closed) return undefined;
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
  }

  private shift(): JobUpdate | undefined {
    while (this.head < this.queue.length) {
      const index = this.head++;
      const update = this.queue[index];
      this.queue[index] = undefined;
      if (!update) continue;
      this.pending--;
      const key = update.kind === "progress" ? update.jobId : update.kind === "batch_changed" ? `batch:${update.batchId}` : undefined;
      if (key !== undefined && this.pendingProgress.get(key) === index) this.pendingProgress.delete(key);
      this.lastDeliveredSeq = update.seq;
      return update;
    }
    return undefined;
  }

  close(error?: HypervisordError): void {
    if (this.closed) return;
    this.closed = true;
    this.failure = error;
    if (error) {
      // Nothing more will be delivered: drop what is queued.
      this.queue.length = 0;
      this.head = 0;
      this.pending = 0;
    }
    this.onClose(this);
    this.wake();
  }

  /** Lets a waiting nextBatch() go on. */
  wake(): void {
    this.wakePending = false;
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }

  /** Drops delivered slots once they are most of the array; indexes of pending progress shift with them. */
  private compact(): void {
    if (this.head < 1024 || this.head * 2 < this.queue.length) return;
    this.queue.splice(0, this.head);
    for (const [jobId, index] of this.pendingProgress) this.pendingProgress.set(jobId, index - this.head);
    this.head = 0;
  }
}
