import type { Store } from "../store/store.ts";
import type { HypervisordError } from "../errors.ts";
import { Subscription } from "./subscription.ts";
import type { JobUpdate } from "./update.ts";

/** Sequence numbers are reserved in blocks, so that they keep increasing across restarts without a write per update. */
const SEQ_BLOCK = 10_000;
/** Subscribers woken per event-loop turn; the rest in the next turns (see createWakeSlices). */
const WAKE_SLICE = 64;

export interface UpdateBus {
  /** The next daemon-wide sequence number. */
  nextSeq(): number;
  currentSeq(): number;
  publish(update: JobUpdate): void;
  /** Hands an update to this daemon's subscribers (what publish does alone; in a cluster, the shared log's reader calls it). */
  deliver(update: JobUpdate): void;
  /** Both empty (or undefined): every job and batch. */
  subscribe(jobIds: readonly string[] | undefined, batchIds?: readonly string[]): Subscription;
  subscriberCount(): number;
  /** Ends every subscription (with the error, if given). */
  close(error?: HypervisordError): void;
}

/** The highest sequence number a previous process may have handed out: what createUpdateBus starts after. */
export async function initialSeq(store: Store): Promise<number> {
  return Math.max(await store.getSeqReservation(), await store.maxTransitionSeq());
}

export interface UpdateBusOptions {
  /** From initialSeq(store), read once before the bus is made. */
  initialSeq: number;
  maxQueuedPerSubscriber: number;
  /**
   * Several daemons on one store: state changes are already in the store's shared log, other updates (progress,
   * batches) are appended to it here, and subscribers get every node's updates from its reader, through deliver(),
   * in the log's seq order. Sequence numbers are then the log's (nextSeq is a placeholder the store ignores).
   */
  shared?: { append(update: JobUpdate): void; currentSeq(): number };
  /** A reservation could not be written (the numbers after a restart may then repeat); a process warning by default. */
  onReservationError?(err: unknown): void;
}

export function createUpdateBus(store: Store, options: UpdateBusOptions): UpdateBus {
  // One block beyond what was persisted: a reservation written inside a transaction that rolled back
  // leaves at most one block of sequence numbers handed out but not recorded.
  let seq = options.initialSeq + SEQ_BLOCK;
  let reserved = seq;
  const subscribers = new Set<Subscription>();
  const ready = createWakeSlices(WAKE_SLICE);
  const reservationFailed = options.onReservationError
    ?? ((err: unknown) => process.emitWarning(`the update sequence reservation could not be written: ${(err as Error).message}`));

  const deliver = (update: JobUpdate) => {
    for (const subscriber of subscribers) {
      if (subscriber.wants(update)) subscriber.push(update);
    }
  };
  const { shared } = options;
  if (shared) {
    return {
      nextSeq: () => shared.currentSeq(),
      currentSeq: () => shared.currentSeq(),
      publish(update) {
        if (update.kind !== "created" && update.kind !== "state_changed") shared.append(update);
      },
      deliver,
      ...subscriptions(),
    };
  }

  function subscriptions() {
    return {
      subscribe(jobIds: readonly string[] | undefined, batchIds?: readonly string[]) {
        const filter = (jobIds?.length ?? 0) + (batchIds?.length ?? 0) > 0 ? { jobs: new Set(jobIds), batches: new Set(batchIds) } : undefined;
        const subscription = new Subscription(filter, options.maxQueuedPerSubscriber, (s) => subscribers.delete(s), ready);
        subscribers.add(subscription);
        return subscription;
      },
      subscriberCount: () => subscribers.size,
      close(error?: HypervisordError) {
        for (const subscriber of [...subscribers]) subscriber.close(error);
      },
    };
  }

  return {
    nextSeq() {
      seq++;
      if (seq > reserved) {
        reserved = seq + SEQ_BLOCK;
        // Not awaited: nextSeq is called inside store transactions, synchronously. SQLite has written it when
        // the call returns; a networked store writes it shortly after.
        void store.setSeqReservation(reserved).catch(reservationFailed);
      }
      return seq;
    },
    currentSeq: () => seq,
    publish: deliver,
    deliver,
    ...subscriptions(),
  };
}

/**
 * Wakes subscribers at most `slice` per event-loop turn, the rest in the turns after, in order. An update to
 * 1,000 subscribers is 1,000 gRPC writes, and HTTP/2 sends what was written only once the turn ends: woken all
 * at once, the first subscriber's bytes would wait for the last one's write, and the readers (another process,
 * another core) would get everything in one burst at the end. In slices, what is written goes out while the
 * next slice is written, and calls that arrive meanwhile are served between slices.
 */
function createWakeSlices(slice: number): (subscription: Subscription) => void {
  const deferred: Subscription[] = [];
  let wokenThisTurn = 0;
  let nextTurn: NodeJS.Immediate | undefined;
  const turn = () => {
    nextTurn = undefined;
    const woken = deferred.splice(0, slice);
    wokenThisTurn = woken.length;
    for (const subscription of woken) subscription.wake();
    // Once more if this turn woke any: the next one starts counting from zero.
    if (wokenThisTurn > 0) nextTurn = setImmediate(turn);
  };
  return (subscription) => {
    if (wokenThisTurn < slice && deferred.length === 0) {
      wokenThisTurn++;
      subscription.wake();
    } else deferred.push(subscription);
    nextTurn ??= setImmediate(turn);
  };
}
