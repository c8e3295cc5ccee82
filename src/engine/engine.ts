import type { Logger } from "pino";
import { NOOP_JOB_TRACER, type JobTracer } from "./job-tracer.ts";
import { isFinal, type Job, type JobDefinition, type JobError, type JobProgress, type JobState, type JobTransition } from "../domain/job.ts";
import {
  FailedPreconditionError, JobCancelledError, NotFoundError, ShutdownError, UnavailableError, toHypervisordError,
  type HypervisordError,
} from "../errors.ts";
import type { Provider } from "../providers/provider.ts";
import type { ProviderRegistry } from "../providers/registry.ts";
import type { InsertResult, LogQuery, NewJob, Store, TransitionInput } from "../store/store.ts";
import { retryDelayMs } from "../backoff.ts";
import type { Batch } from "../domain/batch.ts";
import { createBatchEngine } from "./batch-engine.ts";
import { createCleanupRetry } from "./cleanup-retry.ts";
import { DEFAULT_CLEANUP_RETRY_MS, type CompiledEngineOptions } from "./engine-options.ts";
import { hasWrittenFiles, heldCheckpoint, writtenFilesNote, openJobCheckpoint, removeJobFiles } from "./job-files.ts";
import { createJobLogs } from "./job-logs.ts";
import { completedProgress, createProgressTracker } from "./progress-tracker.ts";
import { createUpdateBus } from "./update-bus.ts";
import { preciseNow, type JobUpdate } from "./update.ts";
import { uuidv7 } from "./uuid-v7.ts";
import { LeaseLostError } from "./lease-lost-error.ts";
import { transitionUpdate, watchJobs } from "./watch.ts";

export interface EngineDeps {
  store: Store;
  /** Where sequence numbers continue: `await initialSeq(store)` (update-bus.ts), read once before the engine is made. */
  initialSeq: number;
  providers: ProviderRegistry;
  logger: Logger;
  options: CompiledEngineOptions;
  /** Where job log records are copied for the daemon log. */
  logForward?: { write(line: string): unknown };
  /**
   * Told of every committed state change (after its transaction), of persisted progress and of finished downloads:
   * schedules, webhooks and metrics follow jobs this way. More can be added with engine.observe().
   */
  observers?: readonly JobObserver[];
  /** Spans of job attempts and their phases (tracing); none by default. */
  jobTracer?: JobTracer;
  /**
   * Several daemons share the store (src/cluster): this node's id (its claims and the fencing of its runs' state
   * changes) and the shared update log (see UpdateBusOptions.shared).
   */
  cluster?: { nodeId: string; updates: { append(update: JobUpdate): void; currentSeq(): number } };
}

export interface JobObserver {
  changed?(job: Job, transition: JobTransition): void;
  progressed?(job: Job, progress: JobProgress): void;
  /** A batch's last child ended (after its transition was committed and announced). */
  batchEnded?(batch: Batch): void;
  /** One file's download finished, in this many seconds of transfer (the disk download duration metric). */
  downloaded?(job: Job, seconds: number): void;
}

export type Lifecycle = "starting" | "running" | "draining" | "stopped";

export interface EngineStats {
  lifecycle: Lifecycle;
  running: number;
  counts: Record<JobState, number>;
  lastSeq: number;
  subscribers: number;
  maxConcurrentJobs: number;
}

interface RunningJob {
  controller: AbortController;
  progress(): JobProgress;
  /** Settles once the progress written so far is stored (and observers told). */
  progressSaved(): Promise<void>;
  done: Promise<void>;
}

export type Engine = ReturnType<typeof createEngine>;

/**
 * The job engine: a persistent priority queue worked by up to
 * `maxConcurrentJobs` runs at once, with cancellation, retries with backoff,
 * restart recovery and an update stream. Every state change is one store
 * transaction plus one published update carrying the same sequence number.
 */
export function createEngine(deps: EngineDeps) {
  const { store, providers, logger, options } = deps;
  const nodeId = deps.cluster?.nodeId;
  const bus = createUpdateBus(store, {
    initialSeq: deps.initialSeq, maxQueuedPerSubscriber: options.maxQueuedUpdatesPerSubscriber, shared: deps.cluster?.updates,
    onReservationError: (err) => logger.error({ err }, "the update sequence reservation could not be stored; sequence numbers may repeat after a restart"),
  });
  const jobLogs = createJobLogs({
    store, level: options.jobLogLevel, forward: deps.logForward,
    onWriteError: (err, entries) => logger.error({ err, entries }, "job log entries could not be stored"),
    pollMs: deps.cluster ? 1_000 : undefined,
  });
  const jobLogger = jobLogs.logger;
  const observers = [...(deps.observers ?? [])];
  const running = new Map<string, RunningJob>();
  /** Jobs whose files are being removed (removeFiles); shutdown waits for them. */
  const fileRemovals = new Map<string, Promise<void>>();
  const pendingSubmits: { input: NewJob; settle(result: InsertResult): void }[] = [];
  /** Submission writes and pumps under way; shutdown waits for them. */
  const background = new Set<Promise<void>>();
  let lifecycle: Lifecycle = "starting";
  let wakeTimer: NodeJS.Timeout | undefined;
  /** One pump at a time (claims are awaited: two would claim more jobs than free slots); one asked for meanwhile runs after it. */
  let pumping = false;
  let pumpAgain = false;
  /** False while a cluster node cannot reach the database: it claims nothing (see src/cluster/lease-keeper.ts). */
  let claiming = true;

  /** Work no caller waits for: an error is logged, and shutdown waits for it to settle. */
  function track(what: string, work: Promise<void>): void {
    const settled = work.catch((err: unknown) => logger.error({ err }, `${what} failed`)).finally(() => background.delete(settled));
    background.add(settled);
  }

  function publish(job: Job, transition: JobTransition): void {
    bus.publish(transitionUpdate(transition, job));
    if (isFinal(job.state)) jobLogs.end(job.id);
    for (const observer of observers) observer.changed?.(job, transition);
    batches.childChanged(job, transition);
  }

  /** Applies a state change and announces it; undefined when the job was no longer in one of `from`. */
  async function move(input: Omit<TransitionInput, "seq" | "time">): Promise<Job | undefined> {
    const time = Date.now();
    const changed = await store.transition({ ...input, seq: bus.nextSeq(), time, endTime: input.endTime ?? (isFinal(input.to) ? time : undefined) });
    if (!changed) return undefined;
    publish(changed.job, changed.transition);
    return changed.job;
  }

  const batches = createBatchEngine({
    store, bus, providers, maxAttempts: options.maxAttempts, progressPublishIntervalMs: options.progressPublishIntervalMs,
    liveProgress: (id) => running.get(id)?.progress(), publish, cancelJob: (id, reason, actor) => cancel(id, reason, actor),
    assertAccepting, pump: () => pump(),
    ended: (batch) => observers.forEach((observer) => observer.batchEnded?.(batch)),
    onUpdateError: (err, batchId) => logger.error({ err, batch_id: batchId }, "could not read the batch to send its update"),
  });

  function assertAccepting(): void {
    if (lifecycle === "draining" || lifecycle === "stopped") throw new UnavailableError("the daemon is shutting down and accepts no new jobs");
  }

  /**
   * Queues a job. Submissions that arrive in the same event-loop turn are
   * written in one transaction (group commit): one commit instead of one per call.
   */
  async function submit(definition: JobDefinition, meta: { actor: string; scheduleId?: string; scheduleRun?: NewJob["scheduleRun"] }): Promise<{ job: Job; created: boolean }> {
    assertAccepting();
    return new Promise((resolve, reject) => {
      const input: NewJob = {
        id: uuidv7(), definition, maxAttempts: options.maxAttempts, createTime: Date.now(),
        scheduleId: meta.scheduleId, scheduleRun: meta.scheduleRun, nextSeq: bus.nextSeq, actor: meta.actor,
      };
      pendingSubmits.push({ input, settle: (result) => (result.ok ? resolve(result) : reject(result.error)) });
      if (pendingSubmits.length === 1) setImmediate(() => track("writing submitted jobs", flushSubmits()));
    });
  }

  /** Writes the turn's submissions with one insertJobs call. */
  async function flushSubmits(): Promise<void> {
    const batch = pendingSubmits.splice(0);
    let results: InsertResult[];
    try {
      results = await store.insertJobs(batch.map((b) => b.input));
    } catch (error) {
      results = batch.map(() => ({ ok: false, error }));
    }
    batch.forEach(({ settle }, i) => {
      const result = results[i]!;
      if (result.ok && result.created && result.transition) publish(result.job, result.transition);
      settle(result);
    });
    pump();
  }

  async function getJob(id: string): Promise<Job> {
    const job = await store.getJob(id);
    if (!job) throw new NotFoundError(`job ${id} not found`);
    const live = running.get(id);
    return live && job.state === "running" ? { ...job, progress: live.progress() } : job;
  }

  async function cancel(id: string, reason: string, actor: string): Promise<Job> {
    const job = await getJob(id);
    const why = reason || `cancelled by ${actor}`;
    const cancelled = isFinal(job.state) ? undefined : await move({
      jobId: id, from: ["queued", "running"], to: "cancelled", reason: why, actor,
      error: { code: "CANCELLED", message: why + await writtenFilesNote(store, id, job.definition.keepPartial), retryable: false }, nextAttemptTime: null,
    });
    if (!cancelled) {
      const now = (await store.getJob(id))!;
      throw new FailedPreconditionError(`job ${id} is already ${now.state}; only queued or running jobs can be cancelled`);
    }
    running.get(id)?.controller.abort(new JobCancelledError(why));
    jobLogger(id).info({ actor }, `job cancelled: ${why}`);
    if (!running.has(id)) ended(cancelled); // a running job's leftovers go once its run has stopped
    return cancelled;
  }

  /** Starts queued jobs while there are free slots, then arms a timer for the next retry that is due. */
  function pump(): void {
    if (pumping) {
      pumpAgain = true;
      return;
    }
    pumping = true;
    track("starting queued jobs", (async () => {
      try {
        do {
          pumpAgain = false;
          await pumpOnce();
        } while (pumpAgain);
      } finally {
        pumping = false;
      }
    })());
  }

  async function pumpOnce(): Promise<void> {
    if (lifecycle !== "running" || !claiming || running.size >= options.maxConcurrentJobs) return;
    while (lifecycle === "running" && claiming && running.size < options.maxConcurrentJobs) {
      const claimed = await store.claimNextJob(Date.now(), bus.nextSeq);
      if (!claimed) break;
      publish(claimed.job, claimed.transition);
      startRun(claimed.job);
    }
    const next = await store.nextAttemptTime();
    // Shutdown clears the timer: a pump that ends after it must not arm it again.
    if (lifecycle !== "running") return;
    clearTimeout(wakeTimer);
    if (next !== undefined) wakeTimer = setTimeout(pump, Math.max(0, next - Date.now()) + 5);
  }

  function startRun(job: Job): void {
    const controller = new AbortController();
    let progressSaved = Promise.resolve();
    const tracker = createProgressTracker({
      initial: job.progress,
      publishIntervalMs: options.progressPublishIntervalMs,
      persistIntervalMs: options.progressPersistIntervalMs,
      publish: (progress) => bus.publish({
        seq: bus.nextSeq(), jobId: job.id, ...(job.batchId ? { batchId: job.batchId } : {}), kind: "progress", state: "running", progress, time: preciseNow(),
      }),
      persist: (progress) => {
        // In order, each after the one before; the run waits for them before its last transition.
        progressSaved = progressSaved.then(async () => {
          await store.saveProgress(job.id, progress);
          for (const observer of observers) observer.progressed?.(job, progress);
        }).catch((err: unknown) => logger.warn({ err, job_id: job.id }, "could not store the job's progress"));
      },
    });
    const entry: RunningJob = { controller, progress: () => tracker.current, progressSaved: () => progressSaved, done: Promise.resolve() };
    running.set(job.id, entry);
    entry.done = run(job, controller, tracker, entry)
      .catch((err: unknown) => logger.error({ err, job_id: job.id }, "job runner failed"))
      .finally(() => {
        running.delete(job.id);
        pump();
      });
  }

  async function run(job: Job, controller: AbortController, tracker: ReturnType<typeof createProgressTracker>, entry: RunningJob): Promise<void> {
    const log = jobLogger(job.id);
    const provider = providers.get(job.definition.provider);
    const started = Date.now();
    const span = (deps.jobTracer ?? NOOP_JOB_TRACER).startJob(job, job.attempt);
    log.info({ attempt: job.attempt, max_attempts: job.maxAttempts, provider: job.definition.provider, vm: job.definition.vm }, "export started");
    const checkpoint = await openJobCheckpoint(store, job.id);
    try {
      if (!provider) throw new FailedPreconditionError(`provider "${job.definition.provider}" is not available in this daemon`);
      const result = await provider.export(job.definition, {
        jobId: job.id,
        attempt: job.attempt,
        signal: controller.signal,
        logger: log,
        progress: (update) => {
          if (controller.signal.aborted) return;
          if (update.phase) span.phaseChanged(update.phase);
          tracker.update(update);
        },
        loadCheckpoint: checkpoint.load,
        saveCheckpoint: checkpoint.save,
        files: checkpoint.files,
        observeDownload: (seconds) => observers.forEach((observer) => observer.downloaded?.(job, seconds)),
      });
      const progress = tracker.stop();
      const durationSeconds = (Date.now() - started) / 1000;
      // What the run could not release (a snapshot whose removal failed) stays on record, in the same transaction.
      const held = provider.pendingCleanup?.(checkpoint.load());
      // The last transition comes after every write of the run (a write that failed fails the job, below).
      await checkpoint.written();
      await entry.progressSaved();
      const done = await move({
        jobId: job.id, from: ["running"], to: "completed", reason: "export completed", actor: "engine", node: nodeId,
        result: { ...result, durationSeconds }, error: null,
        ...(held === undefined ? { clearCheckpoint: true } : { checkpoint: heldCheckpoint(checkpoint.load()), pendingCleanup: held }),
        progress: completedProgress(progress),
      });
      span.end();
      if (done && held !== undefined) cleanupRetry.arm();
      if (done) log.info({ duration_seconds: durationSeconds, files: result.files.length }, "export completed");
      else {
        log.warn("export finished after the job was cancelled; its result is not recorded");
        ended(job);
      }
    } catch (err) {
      const progress = tracker.stop();
      const reason: unknown = controller.signal.aborted ? controller.signal.reason : undefined;
      span.end(reason ?? err);
      // The ledger the cleanup reads must hold every file the run recorded.
      await checkpoint.written().catch((writeError: unknown) => log.error({ err: writeError }, "could not store the job's checkpoint"));
      await entry.progressSaved();
      if (reason instanceof JobCancelledError) {
        log.info("export stopped after cancel");
        ended(job);
      } else if (reason instanceof LeaseLostError) {
        // Another node owns the job now (or will, once the lease expires): nothing of it is ours to record or remove.
        log.warn(`export stopped: ${reason.message}`);
      } else if (reason instanceof ShutdownError) {
        await interrupt(job, provider, progress, "shutdown");
      } else {
        await fail(job, toHypervisordError(err), progress, log);
      }
    }
  }

  async function fail(job: Job, error: HypervisordError, progress: JobProgress, log: Logger): Promise<void> {
    if (error.code === "INTERNAL") logger.error({ err: error.cause ?? error, job_id: job.id }, "job failed with an internal error");
    const jobError: JobError = { code: error.code, message: error.message, retryable: error.retryable };
    const delayMs = retryDelayMs(job.attempt, { initialMs: options.retryInitialBackoffMs, maxMs: options.retryMaxBackoffMs });
    const retryable = error.retryable && job.attempt < job.maxAttempts;
    if (retryable && await retryBudgetLeft(job, delayMs)) {
      const why = `attempt ${job.attempt} of ${job.maxAttempts} failed, retrying in ${(delayMs / 1000).toFixed(1)} s: ${error.message}`;
      await move({ jobId: job.id, from: ["running"], to: "queued", reason: why, actor: "engine", node: nodeId, error: jobError, progress, nextAttemptTime: Date.now() + delayMs });
      log.warn({ code: error.code, attempt: job.attempt, delay_ms: delayMs }, why);
      return;
    }
    const attempts = job.attempt > 1 ? ` (after ${job.attempt} attempts)` : "";
    const budget = retryable ? `; not retried: jobs.retry_max_elapsed (${options.retryMaxElapsedMs! / 1000} s) since the first attempt is spent` : "";
    const kept = await writtenFilesNote(store, job.id, job.definition.keepPartial);
    await move({ jobId: job.id, from: ["running"], to: "failed", reason: `${error.message}${attempts}${budget}`, actor: "engine", node: nodeId, error: { ...jobError, message: jobError.message + kept }, progress });
    log.error({ code: error.code, attempt: job.attempt }, `export failed${attempts}${budget}: ${error.message}`);
    ended(job);
  }

  /**
   * Whether a retry after `delayMs` still starts within jobs.retry_max_elapsed of the job's first attempt (its
   * first move to running, from the history). Time the daemon itself was down is not the job's: a run resumed
   * after a restart (requeued by "recovery" or "shutdown") starts the budget again.
   */
  async function retryBudgetLeft(job: Job, delayMs: number): Promise<boolean> {
    if (!options.retryMaxElapsedMs) return true;
    const history = await store.history(job.id);
    const restarted = history.findLastIndex((t) => t.actor === "recovery" || t.actor === "shutdown");
    const budgetStart = history.slice(restarted + 1).find((t) => t.toState === "running")?.time ?? job.startTime ?? Date.now();
    return Date.now() + delayMs - budgetStart <= options.retryMaxElapsedMs;
  }

  /** A run stopped by shutdown or a crash: resumed later when the provider can, failed otherwise. */
  async function interrupt(job: Job, provider: Provider | undefined, progress: JobProgress, actor: "shutdown" | "recovery"): Promise<void> {
    const log = jobLogger(job.id);
    const what = actor === "shutdown" ? "the daemon shut down" : "the daemon stopped";
    if (provider?.resumable) {
      const why = actor === "shutdown"
        ? "interrupted by daemon shutdown; will resume from its checkpoint"
        : "recovered after the daemon stopped while it ran; resuming from its checkpoint";
      await move({ jobId: job.id, from: ["running"], to: "queued", reason: why, actor, node: nodeId, progress, resume: true });
      log.warn(why);
      return;
    }
    const message = `interrupted: ${what} while the job was running, and provider "${job.definition.provider}" cannot resume an export`;
    const kept = await writtenFilesNote(store, job.id, job.definition.keepPartial);
    await move({ jobId: job.id, from: ["running"], to: "failed", reason: message, actor, node: nodeId, progress, error: { code: "ABORTED", message: message + kept, retryable: false } });
    log.error(message);
    ended(job);
  }

  /**
   * What earlier runs of jobs that will not run again still hold on a hypervisor, by their checkpoint (an export
   * lease of a process that was killed, or whose own abort could not reach vCenter): released by the provider in
   * the background, best effort; on failure the record stays for the next start.
   */
  function releaseLeftovers(jobs: readonly Job[]): Promise<void> {
    return (async () => {
      for (const job of jobs) {
        try {
          const provider = providers.get(job.definition.provider);
          const checkpoint = (await openJobCheckpoint(store, job.id)).load();
          // A job that will not run again keeps of its provider's checkpoint only what is still held somewhere.
          const kept = checkpoint !== undefined && provider?.releaseLeftovers
            ? await provider.releaseLeftovers(job, checkpoint, logger.child({ job_id: job.id }))
            : undefined;
          // Opened again: the file ledger kept beside it may have changed meanwhile.
          const reopened = await openJobCheckpoint(store, job.id);
          reopened.save(kept);
          await reopened.written();
          const pending = kept === undefined ? undefined : provider?.pendingCleanup?.(kept);
          if (pending !== undefined || job.pendingCleanup !== undefined || checkpoint !== undefined) await store.setPendingCleanup(job.id, pending ?? null);
          if (pending !== undefined) cleanupRetry.arm();
        } catch (err) {
          logger.warn({ job_id: job.id, err: (err as Error).message }, "could not release what the job's last run left on the hypervisor; tried again at the next start");
        }
      }
    })();
  }

  /** The background retries of pending cleanups: one round over every ended job that still shows one. */
  const cleanupRetry = createCleanupRetry({
    initialMs: options.cleanupRetryInitialMs ?? DEFAULT_CLEANUP_RETRY_MS.initial,
    maxMs: options.cleanupRetryMaxMs ?? DEFAULT_CLEANUP_RETRY_MS.max,
    round: async () => {
      const pending = (await store.endedJobsWithCheckpoint()).filter((job) => job.pendingCleanup !== undefined);
      await releaseLeftovers(pending);
      for (const job of pending) if ((await store.getJob(job.id))?.pendingCleanup !== undefined) return true;
      return false;
    },
    onError: (err) => logger.warn({ err: (err as Error).message }, "retrying pending cleanups failed"),
  });

  /** A job failed for good or was cancelled, and no run of it is writing: what it left is released and removed. */
  function ended(job: Job): void {
    void releaseLeftovers([job]);
    removeFiles(job);
  }

  /**
   * Removes what the job wrote (see job-files.ts), or keeps it with keep_partial. Here, at the final
   * transition, for every provider alike: the ledger lives with the job, and a job that ends without a run
   * (cancelled while queued, failed at recovery, or ended just before a crash) is cleaned up the same way.
   */
  function removeFiles(job: Job): void {
    if (fileRemovals.has(job.id)) return;
    const removal = removeJobFiles(store, job.id, job.definition.keepPartial === true, jobLogger(job.id))
      .catch((err: unknown) => logger.error({ err, job_id: job.id }, "removing the files of an ended job failed"))
      .finally(() => fileRemovals.delete(job.id));
    fileRemovals.set(job.id, removal);
  }

  return {
    bus,
    /** Cluster: the jobs this node runs now. */
    runningIds: (): string[] => [...running.keys()],
    /** Cluster: stops a local run without recording anything (its lease is lost; another node resumes the job). */
    fence(jobId: string, reason: string): void {
      const run = running.get(jobId);
      if (run && !run.controller.signal.aborted) run.controller.abort(new LeaseLostError(reason));
    },
    /** Cluster: no claims while the database cannot be reached. */
    setClaiming(allowed: boolean): void {
      claiming = allowed;
    },
    /** Looks for claimable jobs now (another node queued or requeued one). */
    poke: (): void => pump(),
    /**
     * Cluster: an update of the shared log, from any node. Subscribers here get it; a job cancelled through another
     * node stops here if it runs here; a job queued elsewhere may be claimed here.
     */
    sharedUpdate(update: JobUpdate): void {
      bus.deliver(update);
      if (update.kind !== "created" && update.kind !== "state_changed") return;
      if (update.state === "cancelled") {
        const run = running.get(update.jobId);
        if (run && !run.controller.signal.aborted) run.controller.abort(new JobCancelledError(update.reason ?? "cancelled on another node"));
      }
      if (update.state && isFinal(update.state)) jobLogs.end(update.jobId);
      if (update.state === "queued") pump();
    },
    /** Recovers jobs a previous process left running, then starts working the queue. */
    async start(): Promise<void> {
      for (const job of await store.jobsInState("running")) {
        // In a cluster, only this node's own runs (a restart under the same node id); others' go when their leases expire.
        if (nodeId !== undefined && job.nodeId !== nodeId) continue;
        await interrupt(job, providers.get(job.definition.provider), job.progress, "recovery");
      }
      // Ended jobs that still have a checkpoint: files on record when the daemon stopped are removed now, and
      // what earlier runs hold on a hypervisor is released. Each clears its part; an empty checkpoint goes.
      const leftovers = await store.endedJobsWithCheckpoint();
      for (const job of leftovers) if (await hasWrittenFiles(store, job.id)) removeFiles(job);
      // One after the other: each may log in to its hypervisor.
      void releaseLeftovers(leftovers);
      await batches.finishCancels();
      lifecycle = "running";
      pump();
    },
    /** Adds an observer: one made after the engine (the scheduler, which submits through the engine) hears from then on. */
    observe(observer: JobObserver): void {
      observers.push(observer);
    },
    submit,
    cancel,
    getJob,
    /** A definition with a vm_selector: one child job per VM it matches now (see batch-engine.ts). */
    submitBatch: batches.submitBatch,
    getBatch: batches.getBatch,
    cancelBatch: batches.cancelBatch,
    listBatches: batches.listBatches,
    watch: (jobIds: readonly string[], afterSeq: number | undefined, signal: AbortSignal, batchIds: readonly string[] = []): AsyncGenerator<JobUpdate[]> =>
      watchJobs({ store, bus, liveProgress: (id) => running.get(id)?.progress(), batch: batches.getBatch,
        runningBatches: async () => (await batches.listBatches({ states: ["running"], limit: 1000 })).batches }, jobIds, afterSeq, signal, batchIds),
    async readLogs(jobId: string, query: LogQuery) {
      await getJob(jobId);
      return jobLogs.read(jobId, query);
    },
    followLogs: jobLogs.follow,
    async history(jobId: string): Promise<JobTransition[]> {
      await getJob(jobId);
      return store.history(jobId);
    },
    async stats(): Promise<EngineStats> {
      const counts = await store.countByState();
      return {
        lifecycle, running: running.size, counts, lastSeq: bus.currentSeq(),
        subscribers: bus.subscriberCount(), maxConcurrentJobs: options.maxConcurrentJobs,
      };
    },
    get lifecycle(): Lifecycle {
      return lifecycle;
    },
    /**
     * Stops taking work, asks running jobs to checkpoint and stop (ShutdownError),
     * waits up to `graceMs` for them, then ends every update stream. A job that
     * has not stopped by then stays RUNNING in the store and is recovered at the next start.
     */
    async shutdown(graceMs: number): Promise<void> {
      if (lifecycle === "stopped") return;
      lifecycle = "draining";
      clearTimeout(wakeTimer);
      cleanupRetry.stop();
      // Submissions being written and a pump under way finish first: a job they start is stopped with the others.
      await Promise.all(background);
      for (const job of running.values()) job.controller.abort(new ShutdownError());
      let timer: NodeJS.Timeout | undefined;
      const waited = await Promise.race([
        Promise.all([...running.values()].map((j) => j.done)).then(() => true),
        new Promise<false>((resolve) => (timer = setTimeout(resolve, graceMs, false))),
      ]);
      clearTimeout(timer);
      if (!waited) logger.warn({ still_running: [...running.keys()] }, "jobs did not stop within the grace period; they will be recovered at the next start");
      await Promise.all(fileRemovals.values());
      // Runs that stopped wrote their last transitions; what those started in the background settles too.
      await Promise.all(background);
      lifecycle = "stopped";
      await batches.close();
      await jobLogs.flush();
      bus.close(new UnavailableError("the daemon is shutting down; reconnect with after_seq to resume"));
    },
  };
}
