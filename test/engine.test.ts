import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, describe, test } from "node:test";
import { isFinal, type JobState } from "../src/domain/job.ts";
import { FailedPreconditionError, ResourceExhaustedError, UnavailableError } from "../src/errors.ts";
import pino from "pino";
import { createEngine } from "../src/engine/engine.ts";
import { openJobCheckpoint } from "../src/engine/job-files.ts";
import { initialSeq } from "../src/engine/update-bus.ts";
import { createProviderRegistry } from "../src/providers/registry.ts";
import { createSqliteStore } from "../src/store/sqlite/sqlite-store.ts";
import type { Store } from "../src/store/store.ts";
import { fakeDefinition, startEngine, TEST_ENGINE_OPTIONS, type Harness } from "./support/engine-harness.ts";
import { tempDir } from "./support/temp-dir.ts";
import { waitFor } from "./support/wait-for.ts";
import { fakeDiskBytes, fakeProviders } from "./support/fake-provider.ts";

const harnesses: Harness[] = [];
async function harness(...args: Parameters<typeof startEngine>): Promise<Harness> {
  const h = await startEngine(...args);
  harnesses.push(h);
  return h;
}
after(async () => {
  for (const h of harnesses) await h.close().catch(() => undefined);
});

const final = (h: Harness, id: string) => waitFor(`job ${id} to finish`, async () => {
  const job = await h.engine.getJob(id);
  return isFinal(job.state) && job;
});

describe("queue", () => {
  test("runs higher priorities first and FIFO within a priority", async () => {
    const h = await harness({ maxConcurrentJobs: 1 });
    const blocker = (await h.engine.submit(fakeDefinition(h.outputDir, "blocker?size=64&chunk=1&delayMs=20"), { actor: "test" })).job;
    await waitFor("blocker to run", async () => (await h.engine.getJob(blocker.id)).state === "running");
    const order = ["low", "normal", "high", "normal", "critical", "low"] as const;
    const ids = (await Promise.all(order.map((priority, i) =>
      h.engine.submit(fakeDefinition(h.outputDir, `p${i}?size=10&delayMs=0`, { priority }), { actor: "test" })))).map((r) => r.job.id);
    await h.engine.cancel(blocker.id, "", "test");
    for (const id of ids) await final(h, id);
    const started = (await Promise.all(ids.map(async (id, i) => ({ i, start: (await h.store.history(id)).find((t) => t.toState === "running")!.seq }))))
      .sort((a, b) => a.start - b.start)
      .map((x) => x.i);
    // critical(4), high(2), normal(1 then 3), low(0 then 5)
    assert.deepEqual(started, [4, 2, 1, 3, 0, 5]);
  });

  test("never runs more than max_concurrent jobs at once", async () => {
    const h = await harness({ maxConcurrentJobs: 2 });
    const ids = (await Promise.all(Array.from({ length: 6 }, (_, i) =>
      h.engine.submit(fakeDefinition(h.outputDir, `c${i}?size=4096&chunk=1024&delayMs=10`), { actor: "test" })))).map((r) => r.job.id);
    let peak = 0;
    const states = async () => Promise.all(ids.map(async (id) => (await h.engine.getJob(id)).state));
    while (!(await states()).every(isFinal)) {
      peak = Math.max(peak, (await h.engine.stats()).running, (await h.store.countByState()).running);
      await new Promise((r) => setTimeout(r, 2));
    }
    assert.equal(peak, 2);
    assert.deepEqual(await states(), ids.map(() => "completed"));
  });

  test("the same request_id returns the same job; a different definition under it is refused", async () => {
    const h = await harness();
    const def = fakeDefinition(h.outputDir, "idem?size=10", { requestId: "req-1", labels: { a: "1", b: "2" } });
    const first = await h.engine.submit(def, { actor: "test" });
    const again = await h.engine.submit({ ...def, labels: { b: "2", a: "1" } }, { actor: "test" });
    assert.equal(first.created, true);
    assert.equal(again.created, false);
    assert.equal(again.job.id, first.job.id);
    await assert.rejects(h.engine.submit({ ...def, vm: "other" }, { actor: "test" }), /request_id "req-1" was already used/);
  });
});

describe("retries", () => {
  test("transient failures are retried with backoff and counted in attempt", async () => {
    const h = await harness();
    const { job } = await h.engine.submit(fakeDefinition(h.outputDir, "flaky?size=100&failTimes=2"), { actor: "test" });
    const done = await final(h, job.id);
    assert.equal(done.state, "completed");
    assert.equal(done.attempt, 3);
    assert.equal(done.error, undefined);
    const reasons = (await h.store.history(job.id)).map((t) => `${t.fromState ?? ""}>${t.toState}: ${t.reason}`);
    assert.equal(reasons.filter((r) => r.startsWith("running>queued: attempt")).length, 2, reasons.join("\n"));
    assert.match(reasons.join("\n"), /attempt 1 of 3 failed, retrying in [\d.]+ s: fake failure 1 of 2/);
  });

  test("a job that keeps failing stops after max_attempts with the last error", async () => {
    const h = await harness({ maxAttempts: 2 });
    const { job } = await h.engine.submit(fakeDefinition(h.outputDir, "down?failTimes=9"), { actor: "test" });
    const done = await final(h, job.id);
    assert.equal(done.state, "failed");
    assert.equal(done.attempt, 2);
    assert.deepEqual(done.error, { code: "UNAVAILABLE", message: "fake failure 2 of 9", retryable: true });
  });

  test("a permanent failure is not retried", async () => {
    const h = await harness();
    const { job } = await h.engine.submit(fakeDefinition(h.outputDir, "gone?failTimes=1&failCode=NOT_FOUND"), { actor: "test" });
    const done = await final(h, job.id);
    assert.equal(done.state, "failed");
    assert.equal(done.attempt, 1);
    assert.equal(done.error?.code, "NOT_FOUND");
  });
});

describe("cancellation", () => {
  test("a queued job is cancelled without ever running", async () => {
    const h = await harness({ maxConcurrentJobs: 1 });
    const blocker = (await h.engine.submit(fakeDefinition(h.outputDir, "blk?size=100&chunk=1&delayMs=10"), { actor: "test" })).job;
    const queued = (await h.engine.submit(fakeDefinition(h.outputDir, "q?size=10"), { actor: "test" })).job;
    const cancelled = await h.engine.cancel(queued.id, "not needed", "test");
    assert.equal(cancelled.state, "cancelled");
    assert.deepEqual(cancelled.error, { code: "CANCELLED", message: "not needed", retryable: false });
    await h.engine.cancel(blocker.id, "", "test");
    await waitFor("slot to free", async () => (await h.engine.stats()).running === 0);
    assert.equal((await h.engine.getJob(queued.id)).state, "cancelled");
    assert.equal((await h.store.history(queued.id)).some((t) => t.toState === "running"), false);
  });

  test("a running job's provider is aborted and the job stays cancelled", async () => {
    const h = await harness();
    const { job } = await h.engine.submit(fakeDefinition(h.outputDir, "long?size=100000&chunk=100&delayMs=5"), { actor: "test" });
    await waitFor("progress", async () => (await h.engine.getJob(job.id)).progress.bytesDone > 0);
    await h.engine.cancel(job.id, "", "test");
    await waitFor("provider to stop", async () => (await h.engine.stats()).running === 0, 2000);
    const after = await h.engine.getJob(job.id);
    assert.equal(after.state, "cancelled");
    assert.ok(after.progress.bytesDone < 100000);
    const logs = (await h.engine.readLogs(job.id, { afterId: 0, tail: 0, limit: 100 })).entries.map((e) => e.message);
    assert.ok(logs.includes("export stopped after cancel"), logs.join("\n"));
    await assert.rejects(h.engine.cancel(job.id, "", "test"), (err) => err instanceof FailedPreconditionError && /already cancelled/.test(err.message));
  });
});

describe("shutdown and restart", () => {
  test("shutdown re-queues a resumable job and fails a non-resumable one; a new engine resumes", async () => {
    const h = await startEngine();
    const resumable = (await h.engine.submit(fakeDefinition(h.outputDir, "r1?size=200000&chunk=1000&delayMs=5"), { actor: "test" })).job;
    const plain = (await h.engine.submit(fakeDefinition(h.outputDir, "n1?size=200000&chunk=1000&delayMs=5", { provider: "fake-noresume" }), { actor: "test" })).job;
    await waitFor("both running with progress", async () =>
      (await h.engine.getJob(resumable.id)).progress.bytesDone > 0 && (await h.engine.getJob(plain.id)).progress.bytesDone > 0);
    const seqBefore = (await h.engine.stats()).lastSeq;
    await h.close();

    const store = createSqliteStore({ dataDir: h.dataDir, maxLogBytesPerJob: 64 * 1024 });
    assert.equal((await store.getJob(resumable.id))!.state, "queued");
    const failed = (await store.getJob(plain.id))!;
    assert.equal(failed.state, "failed");
    assert.equal(failed.error?.code, "ABORTED");
    assert.match(failed.error!.message, /interrupted: the daemon shut down .* cannot resume/);
    await store.close();

    const h2 = await harness({}, { dataDir: h.dataDir, outputDir: h.outputDir });
    const done = await final(h2, resumable.id);
    assert.equal(done.state, "completed");
    assert.equal(done.attempt, 1, "a resumed run is not a new attempt");
    const disk = fs.readFileSync(path.join(h.outputDir, "r1", "r1-disk-1.img"));
    assert.ok(disk.equals(fakeDiskBytes(0, 200000)), "resumed bytes are identical");
    const messages = (await h2.engine.readLogs(resumable.id, { afterId: 0, tail: 0, limit: 1000 })).entries.map((e) => e.message);
    assert.ok(messages.includes("resuming from checkpoint"), messages.join("\n"));
    const newSeqs = (await h2.store.history(resumable.id)).filter((t) => t.reason === "resumed from checkpoint").map((t) => t.seq);
    assert.ok(newSeqs.length === 1 && newSeqs[0]! > seqBefore, "sequence numbers keep increasing across restarts");
  });

  test("no new jobs while draining: UNAVAILABLE", async () => {
    const h = await startEngine();
    const stopping = h.engine.shutdown(1000);
    await assert.rejects(h.engine.submit(fakeDefinition(h.outputDir, "late"), { actor: "test" }), UnavailableError);
    await stopping;
    await h.store.close();
  });
});

describe("updates", () => {
  test("a subscriber gets a snapshot, SYNCED, then every state change in seq order", async () => {
    const h = await harness();
    const controller = new AbortController();
    const seen: { seq: number; kind: string; state?: JobState }[] = [];
    const watching = (async () => {
      for await (const batch of h.engine.watch([], undefined, controller.signal)) {
        for (const u of batch) {
          seen.push({ seq: u.seq, kind: u.kind, state: u.state });
          if (u.kind === "state_changed" && u.state === "completed") return;
        }
      }
    })();
    await waitFor("synced", () => seen.some((u) => u.kind === "synced"));
    await h.engine.submit(fakeDefinition(h.outputDir, "w?size=5000&chunk=500&delayMs=5"), { actor: "test" });
    await watching;
    controller.abort();
    const kinds = seen.filter((u) => u.kind !== "progress").map((u) => `${u.kind}:${u.state ?? ""}`);
    assert.deepEqual(kinds, ["synced:", "created:queued", "state_changed:running", "state_changed:completed"]);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i]!.seq > seen[i - 1]!.seq, `seq increases: ${JSON.stringify(seen)}`);
    assert.ok(seen.some((u) => u.kind === "progress"));
  });

  test("a subscriber that stops reading is cut off without slowing others or the engine", async () => {
    const h = await harness({ maxQueuedUpdatesPerSubscriber: 50, maxConcurrentJobs: 4 });
    const slow = h.engine.watch([], undefined, new AbortController().signal);
    await slow.next(); // SYNCED; then never read again
    const fast: string[] = [];
    const controller = new AbortController();
    const reading = (async () => {
      for await (const batch of h.engine.watch([], undefined, controller.signal)) {
        for (const u of batch) if (u.kind === "created") fast.push(u.jobId);
      }
    })();
    const syncedAt = (await h.engine.stats()).lastSeq;
    const ids: string[] = [];
    for (let i = 0; i < 60; i++) {
      ids.push((await h.engine.submit(fakeDefinition(h.outputDir, `s${i}?size=0`), { actor: "test" })).job.id);
      await new Promise((resolve) => setImmediate(resolve)); // the fast reader keeps up between submissions
    }
    await waitFor("fast subscriber to see every job", () => fast.length === ids.length);
    await assert.rejects(async () => {
      for (;;) if (!(await slow.next()).value) break;
    }, (err) => err instanceof ResourceExhaustedError && err.message.includes(`reconnect with after_seq=${syncedAt}`));
    controller.abort();
    await reading;
  });
});

test("a job's log is capped and reports truncation", async () => {
  const h = await harness();
  const { job } = await h.engine.submit(fakeDefinition(h.outputDir, "quiet?size=0"), { actor: "test" });
  await final(h, job.id);
  await h.store.appendLogs(Array.from({ length: 2000 }, (_, i) => ({
    jobId: job.id, entry: { time: Date.now(), level: "info", message: `line ${i} ${"x".repeat(100)}`, fields: { i } },
  })));
  const { entries, truncated } = await h.store.readLogs(job.id, { afterId: 0, tail: 0, limit: 5000 });
  assert.equal(truncated, true);
  const bytes = entries.reduce((n, e) => n + e.message.length + JSON.stringify(e.fields).length + 32, 0);
  assert.ok(bytes <= 64 * 1024, `kept ${bytes} bytes`);
  assert.equal(entries.at(-1)!.message.startsWith("line 1999 "), true, "the newest entries are kept");
});

/** Resolves after `ms`, on a timer: what a networked store's answer does. */
const later = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("a store that answers later (PostgreSQL's shape)", () => {
  test("pumps asked for while a claim is awaited never start more than max_concurrent jobs, and none is left queued", async () => {
    const sqlite = createSqliteStore({ dataDir: tempDir("engine-slow"), maxLogBytesPerJob: 64 * 1024 });
    let claims = 0;
    let claimsAtOnce = 0;
    const store: Store = {
      ...sqlite,
      async claimNextJob(now, nextSeq) {
        claims++;
        claimsAtOnce = Math.max(claimsAtOnce, claims);
        try {
          await later(3);
          return await sqlite.claimNextJob(now, nextSeq);
        } finally {
          claims--;
        }
      },
    };
    const engine = createEngine({
      store, providers: createProviderRegistry(fakeProviders()), logger: pino({ level: "silent" }),
      options: { ...TEST_ENGINE_OPTIONS, maxConcurrentJobs: 2 }, initialSeq: await initialSeq(store),
    });
    await engine.start();
    try {
      const outputDir = tempDir("engine-slow-out");
      // Submitted in different turns: each flush asks for a pump while the one before waits for its claim.
      const ids: string[] = [];
      for (let i = 0; i < 6; i++) {
        ids.push((await engine.submit(fakeDefinition(outputDir, `slow${i}?size=2048&chunk=512&delayMs=2`), { actor: "test" })).job.id);
      }
      let peak = 0;
      const states = async () => Promise.all(ids.map(async (id) => (await engine.getJob(id)).state));
      while (!(await states()).every(isFinal)) {
        peak = Math.max(peak, (await sqlite.countByState()).running);
        await later(1);
      }
      assert.equal(peak, 2, "two at a time");
      assert.equal(claimsAtOnce, 1, "one claim at a time");
      assert.deepEqual(await states(), ids.map(() => "completed"));
    } finally {
      await engine.shutdown(2000);
      await sqlite.close();
    }
  });

  test("checkpoint saves are written one at a time, in order, the last state last; a failed write fails the next save", async () => {
    const stored: unknown[] = [];
    let writing = 0;
    let overlapped = false;
    let fail = false;
    const store = {
      loadCheckpoint: async () => ({ provider: { step: 0 }, writtenFiles: ["/out/a"] }),
      async saveCheckpoint(_id: string, value: unknown) {
        overlapped ||= writing > 0;
        writing++;
        await later(2);
        writing--;
        if (fail) throw new Error("connection lost");
        stored.push(structuredClone(value));
      },
    } as unknown as Store;
    const checkpoint = await openJobCheckpoint(store, "job-1");
    assert.deepEqual(checkpoint.load(), { step: 0 });
    checkpoint.save({ step: 1 });
    checkpoint.files.add("/out/b");
    checkpoint.save({ step: 2 });
    assert.deepEqual(checkpoint.load(), { step: 2 }, "the run reads its own saves at once");
    await checkpoint.written();
    assert.equal(overlapped, false);
    assert.deepEqual(stored, [
      { provider: { step: 1 }, writtenFiles: ["/out/a"] },
      { provider: { step: 2 }, writtenFiles: ["/out/a", "/out/b"] },
    ], "the first save at once, the ones made meanwhile in one write of the latest state");

    fail = true;
    checkpoint.save({ step: 3 });
    await assert.rejects(checkpoint.written(), /connection lost/);
    assert.throws(() => checkpoint.files.add("/out/c"), /connection lost/);
  });
});
