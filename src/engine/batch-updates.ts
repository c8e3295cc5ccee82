import type { Batch } from "../domain/batch.ts";
import type { UpdateBus } from "./update-bus.ts";
import { preciseNow, type JobUpdate } from "./update.ts";

export interface BatchUpdatesOptions {
  bus: UpdateBus;
  /** The batch as it is now (children's live progress included); undefined when it is gone. */
  read(id: string): Batch | undefined;
  /** Whether the batch has ended (cheap: asked on every child's final transition). */
  hasEnded(id: string): boolean;
  /** At most one BATCH_CHANGED per batch per interval while it runs; its creation and its end are sent at once. */
  intervalMs: number;
  /** The batch's last child ended (once per batch): metrics. */
  ended?(batch: Batch): void;
}

/** A BATCH_CHANGED update; its seq is a fresh one, like a progress update's (no transition of its own is stored). */
export function batchUpdate(batch: Batch, seq: number): JobUpdate {
  return { seq, jobId: "", batchId: batch.id, kind: "batch_changed", batch, time: preciseNow() };
}

/**
 * Publishes whole batches on the update bus when their children change state. A batch of many VMs changes
 * often and each message carries every child, so changes within `intervalMs` of the last one are folded
 * into one trailing message; the batch's creation and its final state are never held back.
 */
export function createBatchUpdates(options: BatchUpdatesOptions) {
  const { bus } = options;
  const last = new Map<string, number>();
  const trailing = new Map<string, NodeJS.Timeout>();

  function send(id: string, known?: Batch): Batch | undefined {
    clearTimeout(trailing.get(id));
    trailing.delete(id);
    const batch = known ?? options.read(id);
    if (!batch) return undefined;
    last.set(id, Date.now());
    if (batch.endTime !== undefined) last.delete(id);
    bus.publish(batchUpdate(batch, bus.nextSeq()));
    return batch;
  }

  return {
    /** The batch was created: sent now. */
    created(batch: Batch): void {
      send(batch.id, batch);
    },
    /** A child changed state; `final` when it ended (the batch may have ended with it). */
    childChanged(id: string, final: boolean): void {
      if (final && options.hasEnded(id)) {
        const batch = send(id);
        if (batch) options.ended?.(batch);
        return;
      }
      if (trailing.has(id)) return;
      const wait = (last.get(id) ?? 0) + options.intervalMs - Date.now();
      if (wait <= 0) {
        send(id);
        return;
      }
      const timer = setTimeout(() => send(id), wait);
      timer.unref();
      trailing.set(id, timer);
    },
    /** Shutdown: pending trailing messages are dropped (a reconnecting subscriber gets the batch's state anew). */
    close(): void {
      for (const timer of trailing.values()) clearTimeout(timer);
      trailing.clear();
      last.clear();
    },
  };
}
