import type { JobState as JobStatePb } from "../../gen/hypervisord/v1/job_pb.js";
import type { HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import type { JobState } from "../domain/job.ts";
import type { Engine } from "../engine/engine.ts";
import { HypervisordError, InvalidArgumentError } from "../errors.ts";
import type { ServiceHandlers } from "../rpc/handlers.ts";
import type { Store } from "../store/store.ts";
import { batchIdOf, batchToPb } from "./batches.ts";
import { definitionFromPb, intIn, labelsFromPb, nonNegative, type DefinitionRules } from "./job-definition.ts";
import { jobToPb, logEntryToPb, stateFromPb, transitionToPb } from "./job-to-pb.ts";
import { mapStream } from "./map-stream.ts";
import { decodePageToken, encodePageToken, pageSize } from "./page-token.ts";
import { updateToPb } from "./update-to-pb.ts";

type JobHandlers = Pick<ServiceHandlers<typeof HypervisordService>,
  "submitJob" | "submitJobs" | "getJob" | "listJobs" | "cancelJob" | "getJobHistory" | "streamJobUpdates" | "getJobLogs" | "streamJobLogs">;

export interface JobDeps {
  engine: Engine;
  store: Pick<Store, "listJobs">;
  rules: DefinitionRules;
}

const MAX_BATCH = 1000;
const MAX_QUERY_CHARS = 200;

/** A job id from a request: required, and short enough to be one. */
export function jobIdOf(value: string, field = "job_id"): string {
  const id = value.trim();
  if (!id) throw new InvalidArgumentError(field, "required");
  if (id.length > 128) throw new InvalidArgumentError(field, "too long to be a job id");
  return id;
}

/** Submission (one job, a batch of VMs, or many jobs at once), reading, cancelling, and the update and log streams. */
export function createJobHandlers({ engine, store, rules }: JobDeps): JobHandlers {
  return {
    async submitJob(request, context) {
      const definition = await definitionFromPb(request.definition, "definition", rules);
      if (definition.vmSelector) {
        const { batch, created } = await engine.submitBatch(definition, { actor: "api", signal: context.signal });
        return { batch: batchToPb(batch), created };
      }
      const { job, created } = await engine.submit(definition, { actor: "api" });
      return { job: jobToPb(job), created };
    },

    async submitJobs(request) {
      if (request.definitions.length === 0) throw new InvalidArgumentError("definitions", "at least one definition is required");
      if (request.definitions.length > MAX_BATCH) throw new InvalidArgumentError("definitions", `at most ${MAX_BATCH} per call, got ${request.definitions.length}`);
      // Every item is validated and queued on its own; the valid ones share one commit. All are checked first
      // (a profile is read from the store), so that the submissions still start together, in order.
      const checked = await Promise.allSettled(request.definitions.map((pb, index) => definitionFromPb(pb, `definitions[${index}]`, rules)));
      const results = await Promise.all(checked.map(async (outcome, index) => {
        try {
          if (outcome.status === "rejected") throw outcome.reason;
          const definition = outcome.value;
          // Each result carries one job; a batch (one job per VM) is submitted with SubmitJob.
          if (definition.vmSelector) throw new InvalidArgumentError(`definitions[${index}].vm_selector`, "a batch of VMs is submitted with SubmitJob, one per call");
          const { job, created } = await engine.submit(definition, { actor: "api" });
          return { index, job: jobToPb(job), created };
        } catch (err) {
          if (!(err instanceof HypervisordError) || err.code === "UNAVAILABLE") throw err;
          return { index, error: { code: err.code, message: err.message, retryable: err.retryable } };
        }
      }));
      return { results };
    },

    async getJob(request) {
      return { job: jobToPb(await engine.getJob(jobIdOf(request.jobId))) };
    },

    async listJobs(request) {
      const states = request.states.map((s, i) => stateFromPb(s) ?? invalidState(s, `states[${i}]`));
      const limit = pageSize(request.pageSize, 50);
      const labels = labelsFromPb(request.labels, "labels");
      const text = searchText(request.query);
      const batchId = request.batchId.trim() && batchIdOf(request.batchId);
      // The text and the batch join the page token's query only when set: tokens of queries without them keep their hash.
      const query = {
        states: [...new Set(states)].sort(), labels, provider: request.provider, scheduleId: request.scheduleId,
        ...(text ? { text } : {}), ...(batchId ? { batchId } : {}),
      };
      const before = decodePageToken(request.pageToken, query);
      const page = await store.listJobs({ ...query, before, limit });
      return {
        // A running job's live progress is the engine's; the others are as stored.
        jobs: await Promise.all(page.jobs.map(async (j) => jobToPb(j.state === "running" ? await engine.getJob(j.id) : j))),
        nextPageToken: page.nextCursor === undefined ? "" : encodePageToken(page.nextCursor, query),
        totalSize: BigInt(page.total),
      };
    },

    async cancelJob(request) {
      return { job: jobToPb(await engine.cancel(jobIdOf(request.jobId), request.reason.trim(), "api")) };
    },

    async getJobHistory(request) {
      return { transitions: (await engine.history(jobIdOf(request.jobId))).map(transitionToPb) };
    },

    streamJobUpdates(request, context) {
      const ids = [...new Set(request.jobIds.map((id, i) => jobIdOf(id, `job_ids[${i}]`)))];
      if (ids.length > 1000) throw new InvalidArgumentError("job_ids", `at most 1000 jobs per stream, got ${ids.length}`);
      const batchIds = [...new Set(request.batchIds.map((id, i) => batchIdOf(id, `batch_ids[${i}]`)))];
      if (batchIds.length > 100) throw new InvalidArgumentError("batch_ids", `at most 100 batches per stream, got ${batchIds.length}`);
      const afterSeq = request.afterSeq === undefined ? undefined : Number(request.afterSeq);
      return mapStream(engine.watch(ids, afterSeq, context.signal, batchIds), (batch) => batch.map(updateToPb));
    },

    async getJobLogs(request) {
      const id = jobIdOf(request.jobId);
      const limit = pageSize(request.pageSize, 1000, 5000);
      const tail = intIn(request.tail, 0, 100_000, "tail");
      const afterId = nonNegative(request.afterId, "after_id");
      const { entries, truncated } = await engine.readLogs(id, { afterId, tail, limit });
      return {
        entries: entries.map(logEntryToPb),
        nextAfterId: BigInt(entries.length > 0 ? entries[entries.length - 1]!.id : afterId),
        truncated,
      };
    },

    async *streamJobLogs(request, context) {
      const query = {
        afterId: nonNegative(request.afterId, "after_id"),
        tail: intIn(request.tail, 0, 100_000, "tail"),
        follow: request.follow,
      };
      for await (const entry of engine.followLogs(jobIdOf(request.jobId), query, context.signal)) yield { entry: logEntryToPb(entry) };
    },
  };
}

/** ListJobs' free-text filter; "" means none. */
function searchText(query: string): string {
  const chars = [...query].length;
  if (chars > MAX_QUERY_CHARS) throw new InvalidArgumentError("query", `at most ${MAX_QUERY_CHARS} characters, got ${chars}`);
  return query;
}

function invalidState(state: JobStatePb, field: string): JobState {
  throw new InvalidArgumentError(field, `unknown job state ${state}; use JOB_STATE_QUEUED, _RUNNING, _COMPLETED, _FAILED or _CANCELLED`);
}
