import type { Store } from "../store/store.ts";
import type { HypervisordError } from "../errors.ts";
import { Subscription } from "./subscription.ts";
import type { JobUpdate } from "./update.ts";

/** Sequence numbers are reserved in blocks, so that they keep increasing across restarts without a write per update. */
const SEQ_BLOCK = 10_000;

export interface UpdateBus {
  /** The next daemon-wide sequence number. */
  nextSeq(): number;
  currentSeq(): number;
  publish(update: JobUpdate): void;
  /** Both empty (or undefined): every job and batch. */
  subscribe(jobIds: readonly string[] | undefined, batchIds?: readonly string[]): Subscription;
  subscriberCount(): number;
  /** Ends every subscription (with the error, if given). */
  close(error?: HypervisordError): void;
}

export function createUpdateBus(store: Store, options: { maxQueuedPerSubscriber: number }): UpdateBus {
  // One block beyond what was persisted: a reservation written inside a transaction that rolled back
  // leaves at most one block of sequence numbers handed out but not recorded.
  let seq = Math.max(store.getSeqReservation(), store.maxTransitionSeq()) + SEQ_BLOCK;
  let reserved = seq;
  const subscribers = new Set<Subscription>();

  return {
    nextSeq() {
      seq++;
      if (seq > reserved) {
        reserved = seq + SEQ_BLOCK;
        store.setSeqReservation(reserved);
      }
      return seq;
    },
    currentSeq: () => seq,
    publish(update) {
      for (const subscriber of subscribers) {
        if (subscriber.wants(update)) subscriber.push(update);
      }
    },
    subscribe(jobIds, batchIds) {
      const filter = (jobIds?.length ?? 0) + (batchIds?.length ?? 0) > 0 ? { jobs: new Set(jobIds), batches: new Set(batchIds) } : undefined;
      const subscription = new Subscription(filter, options.maxQueuedPerSubscriber, (s) => subscribers.delete(s));
      subscribers.add(subscription);
      return subscription;
    },
    subscriberCount: () => subscribers.size,
    close(error) {
      for (const subscriber of [...subscribers]) subscriber.close(error);
    },
  };
}
