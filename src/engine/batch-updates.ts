import type { Batch } from "../domain/batch.ts";
import type { UpdateBus } from "./update-bus.ts";
import { preciseNow, type JobUpdate } from "./update.ts";

export interface BatchUpdatesOptions {
  bus: UpdateBus;
  /** The batch as it is now (children's live progress included); undefined when it is gone. */
  read(id: string): Promise<Batch | undefined>;
  /** Whether the batch has ended (cheap: asked on every child's final transition). */
  hasEnded(id: string): Promise<boolean>;
  /** At most one BATCH_CHANGED per batch per interval while it runs; its creation and its end are sent at once. */
  intervalMs: number;
  /** The batch's last child ended (once per batch): metrics. */
  ended?(batch: Batch): void;
  /** A batch could not be read to be sent. */
  onError(err: unknown, batchId: string): void;
}

/** Batches whose end was sent, remembered so that two children ending together do not send it twice; the oldest are forgotten. */
const REMEMBERED_ENDS = 1000;

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
  const endsSent = new Set<string>();
  /** Reads under way; close() waits for them. */
  const reading = new Set<Promise<void>>();

  function publish(batch: Batch): void {
    last.set(batch.id, Date.now());
    if (batch.endTime !== undefined) last.delete(batch.id);
    bus.publish(batchUpdate(batch, bus.nextSeq()));
  }

  /** Runs a read in the background; errors go to onError. */
  function background(id: string, read: () => Promise<void>): void {
    const work = read().catch((err: unknown) => options.onError(err, id)).finally(() => reading.delete(work));
    reading.add(work);
  }

  async function send(id: string): Promise<void> {
    const batch = await options.read(id);
    // A read that was overtaken by the batch's end would show it running again after its final message.
    if (batch && !endsSent.has(id)) publish(batch);
  }

  /** The batch ended with a child's final transition: sent at once, and its end announced once. */
  async function sendEnd(id: string): Promise<void> {
    clearTimeout(trailing.get(id));
    trailing.delete(id);
    const batch = await options.read(id);
    if (!batch || endsSent.has(id)) return;
    endsSent.add(id);
    if (endsSent.size > REMEMBERED_ENDS) endsSent.delete(endsSent.values().next().value!);
    publish(batch);
    options.ended?.(batch);
  }

  /** At most one message per interval; changes within it go in one trailing message. */
  function throttled(id: string): void {
    if (trailing.has(id)) return;
    const wait = (last.get(id) ?? 0) + options.intervalMs - Date.now();
    if (wait <= 0) {
      last.set(id, Date.now());
      background(id, () => send(id));
      return;
    }
    const timer = setTimeout(() => {
      trailing.delete(id);
      background(id, () => send(id));
    }, wait);
    timer.unref();
    trailing.set(id, timer);
  }

  return {
    /** The batch was created: sent now. */
    created(batch: Batch): void {
      publish(batch);
    },
    /** A child changed state; `final` when it ended (the batch may have ended with it: then it is sent at once). */
    childChanged(id: string, final: boolean): void {
      if (!final) return throttled(id);
      background(id, async () => {
        if (await options.hasEnded(id)) await sendEnd(id);
        else throttled(id);
      });
    },
    /** Shutdown: pending trailing messages are dropped (a reconnecting subscriber gets the batch's state anew); reads under way finish. */
    async close(): Promise<void> {
      for (const timer of trailing.values()) clearTimeout(timer);
      trailing.clear();
      last.clear();
      await Promise.all(reading);
    },
  };
}
