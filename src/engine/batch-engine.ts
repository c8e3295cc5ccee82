import path from "node:path";
import type { Batch } from "../domain/batch.ts";
import { isFinal, type Job, type JobDefinition, type JobProgress, type JobTransition } from "../domain/job.ts";
import type { RunTrigger } from "../domain/schedule.ts";
import type { VirtualMachine } from "../domain/vm.ts";
import { FailedPreconditionError, NotFoundError, quoteInput } from "../errors.ts";
import type { ProviderRegistry } from "../providers/registry.ts";
import type { BatchFilter, NewJob, Store } from "../store/store.ts";
import { createBatchUpdates } from "./batch-updates.ts";
import { createVmKeys, safeFileName } from "../domain/safe-file-name.ts";
import { childDefinitionOf, selectVMs } from "./batch-select.ts";
import type { UpdateBus } from "./update-bus.ts";
import { uuidv7 } from "./uuid-v7.ts";

export interface BatchMeta {
  actor: string;
  scheduleId?: string;
  /** A schedule's run that creates the batch: recorded in the batch's transaction (job_id NULL, batch_id set). */
  scheduleRun?: { id: string; trigger: RunTrigger; scheduledTime: number };
  /** Adjusts each child's definition (a schedule sets its output_dir per VM and run). */
  childDefinition?(child: JobDefinition, vm: VirtualMachine): JobDefinition | Promise<JobDefinition>;
  /** Aborts the VM listing (the caller went away). */
  signal?: AbortSignal;
  /** The field errors about the selector name; default "definition.vm_selector". */
  selectorField?: string;
}

export interface BatchEngineDeps {
  store: Store;
  bus: UpdateBus;
  providers: ProviderRegistry;
  maxAttempts: number;
  progressPublishIntervalMs: number;
  /** Live progress of a running job, fresher than the store's. */
  liveProgress(jobId: string): JobProgress | undefined;
  /** Announces a child's committed transition (the engine's publish). */
  publish(job: Job, transition: JobTransition): void;
  /** Cancels one job (the engine's cancel). */
  cancelJob(id: string, reason: string, actor: string): Promise<unknown>;
  assertAccepting(): void;
  /** Starts queued jobs. */
  pump(): void;
  /** A batch's last child ended (metrics). */
  ended?(batch: Batch): void;
  /** A batch's update could not be read to be sent. */
  onUpdateError(err: unknown, batchId: string): void;
}

/**
 * Batches: a definition with a vm_selector resolved to one ordinary child job per VM, written in one
 * transaction; their state, read from the children; CancelBatch; and BATCH_CHANGED updates.
 */
export function createBatchEngine(deps: BatchEngineDeps) {
  const { store, bus } = deps;
  const updates = createBatchUpdates({
    bus, read: (id) => find(id), hasEnded: (id) => store.batches.hasEnded(id), intervalMs: deps.progressPublishIntervalMs, ended: deps.ended,
    onError: deps.onUpdateError,
  });

  /** The stored batch with running children's live progress. */
  function live(batch: Batch): Batch {
    if (batch.counts.running === 0) return batch;
    const jobs = batch.jobs.map((j) => {
      const progress = j.state === "running" ? deps.liveProgress(j.jobId) : undefined;
      return progress ? { ...j, bytesDone: progress.bytesDone, bytesTotal: progress.bytesTotal } : j;
    });
    return { ...batch, jobs, bytesDone: jobs.reduce((s, j) => s + j.bytesDone, 0), bytesTotal: jobs.reduce((s, j) => s + j.bytesTotal, 0) };
  }

  async function find(id: string): Promise<Batch | undefined> {
    const batch = await store.batches.get(id);
    return batch && live(batch);
  }

  async function getBatch(id: string): Promise<Batch> {
    return (await find(id)) ?? notFound(id);
  }

  /**
   * Resolves the selector now and queues one child job per VM, the batch and (for a schedule) its run in
   * one transaction. The same request_id returns the batch it made (created: false) without listing VMs.
   */
  async function submitBatch(definition: JobDefinition, meta: BatchMeta): Promise<{ batch: Batch; created: boolean }> {
    deps.assertAccepting();
    const field = meta.selectorField ?? "definition.vm_selector";
    const known = definition.requestId ? await store.batches.byRequestId(definition.requestId) : undefined;
    let vms: VirtualMachine[] = [];
    if (!known) {
      const provider = deps.providers.get(definition.provider);
      // definitionFromPb checked it; a schedule's template may name a provider this daemon no longer has.
      if (!provider) throw new FailedPreconditionError(`provider ${quoteInput(definition.provider)} is not available in this daemon`);
      vms = await selectVMs(provider, definition, field, meta.signal);
      deps.assertAccepting();
    }
    const id = uuidv7();
    const createTime = Date.now();
    // Children write into the batch's output_dir, each under its VM's name: two VMs of the same name (in different
    // folders) would write into one directory, so the later ones get a directory of their own.
    const keyOf = createVmKeys();
    const children: NewJob[] = await Promise.all(vms.map(async (vm, index) => {
      const key = keyOf(vm);
      const child = childDefinitionOf(definition, vm, key === safeFileName(vm.name) ? undefined : path.join(definition.outputDir, key));
      return {
        id: uuidv7(), definition: meta.childDefinition ? await meta.childDefinition(child, vm) : child, maxAttempts: deps.maxAttempts,
        createTime, scheduleId: meta.scheduleId, nextSeq: bus.nextSeq, actor: meta.actor, batchId: id, batchIndex: index,
      };
    }));
    const inserted = await store.batches.insert({ id, definition, scheduleId: meta.scheduleId, createTime, children, scheduleRun: meta.scheduleRun });
    if (!inserted.created) return { batch: live(inserted.batch), created: false };
    for (const child of inserted.children) deps.publish(child.job, child.transition);
    updates.created(inserted.batch);
    deps.pump();
    return { batch: inserted.batch, created: true };
  }

  /** Cancels every child that has not ended; the batch ends cancelled. FAILED_PRECONDITION once it has ended. */
  async function cancelBatch(id: string, reason: string, actor: string): Promise<Batch> {
    const batch = await getBatch(id);
    const why = reason || `batch cancelled by ${actor}`;
    if (!(await store.batches.requestCancel(id, why))) {
      throw new FailedPreconditionError(`batch ${id} has already ended (${batch.state}); only a running batch can be cancelled`);
    }
    await cancelChildren((await store.batches.get(id))!, why, actor);
    return getBatch(id);
  }

  /** One after the other, each cancel committed and announced before the next. */
  async function cancelChildren(batch: Batch, why: string, actor: string): Promise<void> {
    for (const job of batch.jobs) {
      if (isFinal(job.state)) continue;
      try {
        await deps.cancelJob(job.jobId, why, actor);
      } catch (err) {
        // It ended meanwhile (its run finished): nothing left to cancel.
        if (!(err instanceof FailedPreconditionError)) throw err;
      }
    }
  }

  return {
    submitBatch,
    getBatch,
    cancelBatch,
    async listBatches(filter: BatchFilter) {
      const page = await store.batches.list(filter);
      return { ...page, batches: page.batches.map(live) };
    },
    /** A child's transition was published: the batch's update follows. */
    childChanged(job: Job, transition: JobTransition): void {
      if (job.batchId) updates.childChanged(job.batchId, isFinal(transition.toState));
    },
    /** At start: batches whose cancel was recorded but whose children were not all cancelled before the daemon stopped. */
    async finishCancels(): Promise<void> {
      for (const batch of await store.batches.cancelling()) await cancelChildren(batch, batch.cancelReason ?? "batch cancelled", "recovery");
    },
    close: updates.close,
  };
}

function notFound(id: string): never {
  throw new NotFoundError(`batch ${id} not found`);
}
