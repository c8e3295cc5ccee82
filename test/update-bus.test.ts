import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setImmediate as nextTurn } from "node:timers/promises";
import { createUpdateBus, initialSeq } from "../src/engine/update-bus.ts";
import type { JobUpdate } from "../src/engine/update.ts";
import type { Store } from "../src/store/store.ts";

/** The bus reads and writes only its sequence reservation. */
function seqStore(options: { reservation?: number; maxTransitionSeq?: number; failWrites?: boolean } = {}) {
  const state = { reservation: options.reservation ?? 0 };
  const store = {
    getSeqReservation: async () => state.reservation,
    maxTransitionSeq: async () => options.maxTransitionSeq ?? 0,
    setSeqReservation: async (seq: number) => {
      if (options.failWrites) throw new Error("disk full");
      state.reservation = seq;
    },
  } as unknown as Store;
  return Object.assign(store, { state });
}

const update = (seq: number, jobId = "job-1"): JobUpdate => ({ seq, jobId, kind: "state_changed", state: "running", time: Date.now() });

/** Every microtask that is already queued, and the ones they queue, without ending the event-loop turn. */
async function drainMicrotasks(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

describe("update bus: fan-out to many subscribers", () => {
  test("waiting readers are woken 64 per event-loop turn, in order, and every one gets every update", async () => {
    const bus = createUpdateBus(seqStore(), { initialSeq: 0, maxQueuedPerSubscriber: 100 });
    const count = 200;
    const received: number[][] = Array.from({ length: count }, () => []);
    const readers = Array.from({ length: count }, async (_, i) => {
      const subscription = bus.subscribe(undefined);
      for (;;) {
        const batch = await subscription.nextBatch();
        if (!batch) return;
        received[i]!.push(...batch.map((u) => u.seq));
      }
    });
    await drainMicrotasks(); // every reader waits in nextBatch()

    bus.publish(update(1));
    await drainMicrotasks();
    const got = () => received.filter((seqs) => seqs.length > 0).length;
    assert.equal(got(), 64, "the first slice is woken in the turn of the publish");
    assert.deepEqual(received.slice(0, 64).map((s) => s.length), Array(64).fill(1), "the first subscribers first");
    // Updates published while readers wait their turn are queued, and arrive with the first.
    bus.publish(update(2));
    await nextTurn();
    assert.equal(got(), 128, "the next slice in the next turn");
    while (got() < count) await nextTurn();
    await drainMicrotasks();
    bus.publish(update(3));
    for (let turn = 0; turn < 10 && received.some((seqs) => seqs.length < 3); turn++) await nextTurn();
    assert.deepEqual(received, Array.from({ length: count }, () => [1, 2, 3]), "no update lost or reordered");
    bus.close();
    await Promise.all(readers);
    assert.equal(bus.subscriberCount(), 0);
  });

  test("a single subscriber is woken in the turn of the publish", async () => {
    const bus = createUpdateBus(seqStore(), { initialSeq: 0, maxQueuedPerSubscriber: 100 });
    const subscription = bus.subscribe(["job-1"]);
    const next = subscription.nextBatch();
    await drainMicrotasks();
    bus.publish(update(7, "job-2"));
    bus.publish(update(8));
    await drainMicrotasks();
    assert.deepEqual((await Promise.race([next, Promise.resolve("not yet")]) as JobUpdate[]).map((u) => u.seq), [8]);
    bus.close();
  });
});

describe("update bus: sequence numbers", () => {
  test("start a block beyond the higher of the reservation and the last transition, and reserve the next block as they go", async () => {
    const store = seqStore({ reservation: 30_000, maxTransitionSeq: 25_000 });
    assert.equal(await initialSeq(store), 30_000);
    const bus = createUpdateBus(store, { initialSeq: await initialSeq(store), maxQueuedPerSubscriber: 10 });
    assert.equal(bus.currentSeq(), 40_000);
    assert.equal(bus.nextSeq(), 40_001);
    assert.equal(store.state.reservation, 50_001, "the reservation covers the next block, written when nextSeq returns");
    assert.equal(await initialSeq(seqStore({ reservation: 5, maxTransitionSeq: 70_000 })), 70_000);
  });

  test("a reservation that cannot be written is reported", async () => {
    const errors: unknown[] = [];
    const bus = createUpdateBus(seqStore({ failWrites: true }), { initialSeq: 0, maxQueuedPerSubscriber: 10, onReservationError: (err) => errors.push(err) });
    assert.equal(bus.nextSeq(), 10_001);
    await drainMicrotasks();
    assert.deepEqual(errors.map((e) => (e as Error).message), ["disk full"]);
  });
});
