import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ExportFormat, JobState as JobStatePb } from "../../gen/hypervisord/v1/job_pb.js";
import { JobCountsSchema, type HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import { PowerState as PowerStatePb } from "../../gen/hypervisord/v1/vm_pb.js";
import { CONVERT_FORMATS, PRIORITIES, type JobState, type VSphereConnection } from "../domain/job.ts";
import type { Engine } from "../engine/engine.ts";
import { HypervisordError, InvalidArgumentError, quoteInput } from "../errors.ts";
import type { ProviderRegistry } from "../providers/registry.ts";
import type { VirtualMachine } from "../domain/vm.ts";
import type { Store } from "../store/store.ts";
import { VERSION } from "../version.ts";
import { batchToPb, jobToPb, logEntryToPb, powerStateFromPb, stateFromPb, transitionToPb, updateToPb, vmToPb } from "./convert.ts";
import type { ServiceHandlers } from "../rpc/handlers.ts";
import {
  connectionFromPb, DEFAULT_PROVIDER, definitionFromPb, intIn, labelsFromPb, nonNegative, type DefinitionRules,
} from "./job-definition.ts";
import { createApiKeyHandlers } from "./api-keys.ts";
import { createAuditHandlers } from "./audit.ts";
import { batchIdOf, createBatchHandlers } from "./batches.ts";
import { createPackageHandlers } from "./packages.ts";
import { createProfileHandlers, type ProfileRegistry } from "./profiles.ts";
import { createScheduleHandlers } from "./schedules.ts";
import { createWebhookHandlers } from "./webhooks.ts";
import type { Scheduler } from "../scheduler/scheduler.ts";
import type { WebhookDispatcher } from "../webhooks/dispatcher.ts";
import { vmDiscoveredEvent } from "../domain/webhook-events.ts";
import { decodePageToken, encodePageToken, pageSize } from "./page-token.ts";

export interface ApiDeps {
  engine: Engine;
  store: Store;
  providers: ProviderRegistry;
  scheduler: Scheduler;
  webhooks: WebhookDispatcher;
  profiles: ProfileRegistry;
  allowedOutputRoots: readonly string[];
  /** allowedOutputRoots with symbolic links resolved (see realPaths): computed once by the daemon. */
  realOutputRoots: readonly string[];
  allowPrivateWebhookTargets: boolean;
  defaultVSphere?: VSphereConnection;
  /** Per conversion format: why it cannot run here, or undefined when it can. */
  conversionUnavailable(format: string): string | undefined;
  /** An unfiltered ListVMs result: the whole inventory (the vms_discovered gauge). */
  onVmsListed?(provider: string, vms: readonly VirtualMachine[]): void;
  startTime: number;
}

const MAX_BATCH = 1000;
const MAX_QUERY_CHARS = 200;

/** ListJobs' free-text filter; "" means none. */
function searchText(query: string): string {
  const chars = [...query].length;
  if (chars > MAX_QUERY_CHARS) throw new InvalidArgumentError("query", `at most ${MAX_QUERY_CHARS} characters, got ${chars}`);
  return query;
}

/** The HypervisordService, independent of transport (src/server adapts it to gRPC and Connect). */
export function createHypervisordApi(deps: ApiDeps): ServiceHandlers<typeof HypervisordService> {
  const { engine, providers } = deps;
  const rules: DefinitionRules = {
    providers, allowedOutputRoots: deps.allowedOutputRoots, realOutputRoots: deps.realOutputRoots, defaultVSphere: deps.defaultVSphere,
    conversionUnavailable: deps.conversionUnavailable,
    profile: (name) => deps.profiles.get(name),
  };

  const jobId = (value: string, field = "job_id") => {
    const id = value.trim();
    if (!id) throw new InvalidArgumentError(field, "required");
    if (id.length > 128) throw new InvalidArgumentError(field, "too long to be a job id");
    return id;
  };

  const discovery = (name: string, field: string) => {
    const provider = providers.get(name || DEFAULT_PROVIDER);
    if (!provider) throw new InvalidArgumentError(field, `unknown provider ${quoteInput(name || DEFAULT_PROVIDER)} (available: ${providers.list().map((p) => p.name).join(", ") || "none"})`);
    if (!provider.listVMs || !provider.getVM) throw new HypervisordError("UNIMPLEMENTED", `provider "${provider.name}" does not support discovery`);
    return provider as typeof provider & Required<Pick<typeof provider, "listVMs" | "getVM">>;
  };

  return {
    ...createPackageHandlers(deps.allowedOutputRoots, rules.realOutputRoots),
    ...createScheduleHandlers({ store: deps.store.schedules, scheduler: deps.scheduler, engine, rules }),
    ...createProfileHandlers(deps.profiles, rules),
    ...createWebhookHandlers({ store: deps.store.webhooks, dispatcher: deps.webhooks, allowPrivateTargets: deps.allowPrivateWebhookTargets }),
    ...createApiKeyHandlers(deps.store.apiKeys),
    ...createAuditHandlers(deps.store.audit),
    ...createBatchHandlers(engine),

    async submitJob(request, context) {
      const definition = definitionFromPb(request.definition, "definition", rules);
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
      // Every item is validated and queued on its own; the valid ones share one commit.
      const results = await Promise.all(request.definitions.map(async (pb, index) => {
        try {
          const definition = definitionFromPb(pb, `definitions[${index}]`, rules);
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
      return { job: jobToPb(engine.getJob(jobId(request.jobId))) };
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
      const page = deps.store.listJobs({ ...query, before, limit });
      return {
        jobs: page.jobs.map((j) => jobToPb(j.state === "running" ? engine.getJob(j.id) : j)),
        nextPageToken: page.nextCursor === undefined ? "" : encodePageToken(page.nextCursor, query),
        totalSize: BigInt(page.total),
      };
    },

    async cancelJob(request) {
      return { job: jobToPb(engine.cancel(jobId(request.jobId), request.reason.trim(), "api")) };
    },

    async getJobHistory(request) {
      return { transitions: engine.history(jobId(request.jobId)).map(transitionToPb) };
    },

    async *streamJobUpdates(request, context) {
      const ids = [...new Set(request.jobIds.map((id, i) => jobId(id, `job_ids[${i}]`)))];
      if (ids.length > 1000) throw new InvalidArgumentError("job_ids", `at most 1000 jobs per stream, got ${ids.length}`);
      const batchIds = [...new Set(request.batchIds.map((id, i) => batchIdOf(id, `batch_ids[${i}]`)))];
      if (batchIds.length > 100) throw new InvalidArgumentError("batch_ids", `at most 100 batches per stream, got ${batchIds.length}`);
      const afterSeq = request.afterSeq === undefined ? undefined : Number(request.afterSeq);
      for await (const batch of engine.watch(ids, afterSeq, context.signal, batchIds)) yield batch.map(updateToPb);
    },

    async getJobLogs(request) {
      const id = jobId(request.jobId);
      const limit = pageSize(request.pageSize, 1000, 5000);
      const tail = intIn(request.tail, 0, 100_000, "tail");
      const afterId = nonNegative(request.afterId, "after_id");
      const { entries, truncated } = engine.readLogs(id, { afterId, tail, limit });
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
      for await (const entry of engine.followLogs(jobId(request.jobId), query, context.signal)) yield { entry: logEntryToPb(entry) };
    },

    async getStatus() {
      const stats = engine.stats();
      const counts = stats.counts;
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      return {
        version: VERSION,
        startTime: timestampFromMs(deps.startTime),
        uptimeSeconds: (Date.now() - deps.startTime) / 1000,
        jobCounts: create(JobCountsSchema, {
          queued: BigInt(counts.queued), running: BigInt(counts.running), completed: BigInt(counts.completed),
          failed: BigInt(counts.failed), cancelled: BigInt(counts.cancelled), total: BigInt(total),
        }),
        queueDepth: BigInt(counts.queued),
        running: stats.running,
        maxConcurrentJobs: stats.maxConcurrentJobs,
        lifecycle: stats.lifecycle,
        store: deps.store.kind,
        lastSeq: BigInt(stats.lastSeq),
        subscribers: stats.subscribers,
        providers: await Promise.all(providers.list().filter((p) => p.stats).map(async (p) => ({
          name: p.name,
          counters: Object.fromEntries(Object.entries(await p.stats!()).map(([k, v]) => [k, BigInt(v)])),
        }))),
      };
    },

    async getCapabilities() {
      return {
        providers: providers.list().map((p) => ({ name: p.name, resumable: p.resumable, discovery: Boolean(p.listVMs && p.getVM) })),
        formats: [ExportFormat.OVF, ExportFormat.OVA],
        conversions: CONVERT_FORMATS.map((format) => {
          const reason = deps.conversionUnavailable(format);
          return { format, available: !reason, reason: reason ?? "" };
        }),
        compressions: ["gzip"],
        priorities: [...PRIORITIES],
        allowedOutputRoots: [...deps.allowedOutputRoots],
      };
    },

    async listVMs(request, context) {
      const provider = discovery(request.provider, "provider");
      const namePattern = request.namePattern.trim();
      if (namePattern.length > 256) throw new InvalidArgumentError("name_pattern", "at most 256 characters");
      const powerState = request.powerState === PowerStatePb.UNSPECIFIED ? undefined
        : powerStateFromPb(request.powerState) ?? invalid("power_state", `unknown power state ${request.powerState}`);
      const vms = await provider.listVMs({
        connection: request.vsphere && connectionFromPb(request.vsphere, "vsphere"),
        namePattern: namePattern || undefined,
        folder: request.folder.trim() || undefined,
        powerState,
      }, context.signal);
      if (!namePattern && !request.folder.trim() && powerState === undefined) deps.onVmsListed?.(provider.name, vms);
      if (vms.length > 0) {
        deps.store.webhooks.enqueue(vmDiscoveredEvent(provider.name, vms));
        deps.webhooks.wake();
      }
      return { vms: vms.map((vm) => vmToPb(vm, provider.name)) };
    },

    async getVM(request, context) {
      const provider = discovery(request.provider, "provider");
      const vm = request.vm.trim();
      if (!vm) throw new InvalidArgumentError("vm", "required: an inventory path, name, managed object reference or UUID");
      const found = await provider.getVM({ connection: request.vsphere && connectionFromPb(request.vsphere, "vsphere"), vm }, context.signal);
      return { vm: vmToPb(found, provider.name) };
    },
  };
}

function invalidState(state: JobStatePb, field: string): JobState {
  return invalid(field, `unknown job state ${state}; use JOB_STATE_QUEUED, _RUNNING, _COMPLETED, _FAILED or _CANCELLED`);
}

function invalid(field: string, problem: string): never {
  throw new InvalidArgumentError(field, problem);
}
