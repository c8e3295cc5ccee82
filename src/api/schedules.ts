import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { JobState as JobStatePb, type JobDefinition as JobDefinitionPb } from "../../gen/hypervisord/v1/job_pb.js";
import {
  MissedRunPolicy as MissedRunPolicyPb, OverlapPolicy as OverlapPolicyPb,
  type Schedule as SchedulePb, type ScheduleRun as ScheduleRunPb,
} from "../../gen/hypervisord/v1/schedule_pb.js";
import type { HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import type { JobDefinition } from "../domain/job.ts";
import { MAX_KEEP_LAST, type MissedRunPolicy, type OverlapPolicy, type Schedule, type ScheduleRun } from "../domain/schedule.ts";
import type { Engine } from "../engine/engine.ts";
import { uuidv7 } from "../engine/uuid-v7.ts";
import { InvalidArgumentError, NotFoundError } from "../errors.ts";
import { parseCron } from "../scheduler/cron.ts";
import type { Scheduler } from "../scheduler/scheduler.ts";
import type { ScheduleStore } from "../store/store.ts";
import { definitionToPb, jobToPb, stateToPb } from "./job-to-pb.ts";
import type { ServiceHandlers } from "../rpc/handlers.ts";
import { definitionFromPb, intIn, labelsFromPb, type DefinitionRules } from "./job-definition.ts";
import { pageOf, pageTokenOf, pageSize } from "./page-token.ts";
import { allFields, fieldsToUpdate } from "./update-mask.ts";

type ScheduleHandlers = Pick<ServiceHandlers<typeof HypervisordService>,
  "createSchedule" | "getSchedule" | "listSchedules" | "updateSchedule" | "deleteSchedule" | "enableSchedule" | "disableSchedule" |
  "triggerSchedule" | "listScheduleRuns">;

const OVERLAP: Record<OverlapPolicy, OverlapPolicyPb> = { skip: OverlapPolicyPb.SKIP, queue: OverlapPolicyPb.QUEUE, allow: OverlapPolicyPb.ALLOW };
const MISSED: Record<MissedRunPolicy, MissedRunPolicyPb> = { skip: MissedRunPolicyPb.SKIP, run_once: MissedRunPolicyPb.RUN_ONCE };
/** Schedule fields an update may change (update_mask paths). */
const UPDATABLE = ["name", "description", "cron", "time_zone", "job_template", "enabled", "tags", "overlap_policy", "missed_run_policy", "keep_last"] as const;
type Updatable = (typeof UPDATABLE)[number];

export interface ScheduleDeps {
  store: ScheduleStore;
  scheduler: Scheduler;
  engine: Engine;
  rules: DefinitionRules;
}

export function createScheduleHandlers({ store, scheduler, engine, rules }: ScheduleDeps): ScheduleHandlers {
  const existing = async (id: string, field = "id") => {
    const trimmed = id.trim();
    if (!trimmed) throw new InvalidArgumentError(field, "required");
    const schedule = await store.get(trimmed);
    if (!schedule) throw new NotFoundError(`schedule ${trimmed} not found`);
    return schedule;
  };
  /** Re-arms the schedule and returns it as stored (with its next run time). */
  const saved = async (id: string) => {
    await scheduler.reschedule(id);
    return scheduleToPb((await store.get(id))!);
  };
  const setEnabled = async (id: string, enabled: boolean) => {
    const schedule = await existing(id);
    await store.update({ ...schedule, enabled, updateTime: Date.now() });
    return { schedule: await saved(schedule.id) };
  };

  return {
    async createSchedule(request) {
      const pb = request.schedule;
      if (!pb) throw new InvalidArgumentError("schedule", "required");
      const now = Date.now();
      const schedule = await applyFields({ id: uuidv7(), createTime: now, updateTime: now, runCount: 0 } as Schedule, pb, allFields(UPDATABLE), rules, true);
      await store.insert(schedule);
      return { schedule: await saved(schedule.id) };
    },

    async getSchedule(request) {
      return { schedule: scheduleToPb(await existing(request.id)) };
    },

    async listSchedules(request) {
      const limit = pageSize(request.pageSize, 100);
      const tags = labelsFromPb(request.tags, "tags");
      const after = pageOf(request.pageToken, "page_token");
      const page = await store.list({ limit, after, tags });
      return { schedules: page.schedules.map(scheduleToPb), nextPageToken: pageTokenOf(page.next) };
    },

    async updateSchedule(request) {
      const schedule = await existing(request.id);
      const pb = request.schedule;
      if (!pb) throw new InvalidArgumentError("schedule", "required");
      const fields = fieldsToUpdate(UPDATABLE, request.updateMask, () => givenFields(pb));
      const updated = await applyFields({ ...schedule, updateTime: Date.now() }, pb, fields, rules, false);
      await store.update(updated);
      return { schedule: await saved(schedule.id) };
    },

    async deleteSchedule(request) {
      const schedule = await existing(request.id);
      await store.delete(schedule.id);
      await scheduler.reschedule(schedule.id);
      return {};
    },

    async enableSchedule(request) {
      return setEnabled(request.id, true);
    },

    async disableSchedule(request) {
      return setEnabled(request.id, false);
    },

    async triggerSchedule(request) {
      const schedule = await existing(request.id);
      const { run, jobId } = await scheduler.trigger(schedule.id, "manual");
      const job = jobId ? await engine.getJob(jobId) : undefined;
      // A batch's run is running from its creation (ListScheduleRuns then follows the batch).
      return { run: runToPb({ ...run, state: job?.state ?? (run.batchId ? "running" : undefined) }), job: job && jobToPb(job) };
    },

    async listScheduleRuns(request) {
      const schedule = await existing(request.scheduleId, "schedule_id");
      const limit = pageSize(request.pageSize, 100);
      const page = await store.listRuns(schedule.id, { limit, before: pageOf(request.pageToken, "page_token") });
      return { runs: page.runs.map(runToPb), nextPageToken: pageTokenOf(page.next) };
    },
  };
}

/** The fields a request without an update_mask sets (an unset `enabled` stays as it is; keep_last 0 needs the mask). */
function givenFields(pb: SchedulePb): Record<Updatable, boolean> {
  return {
    name: pb.name.trim() !== "",
    description: pb.description.trim() !== "",
    cron: pb.cron.trim() !== "",
    time_zone: pb.timeZone.trim() !== "",
    job_template: pb.jobTemplate !== undefined,
    enabled: pb.enabled !== undefined,
    tags: Object.keys(pb.tags).length > 0,
    overlap_policy: pb.overlapPolicy !== OverlapPolicyPb.UNSPECIFIED,
    missed_run_policy: pb.missedRunPolicy !== MissedRunPolicyPb.UNSPECIFIED,
    keep_last: pb.keepLast !== 0,
  };
}

/** The schedule with the chosen fields taken from `pb`, each checked; errors name `schedule.<field>`. */
async function applyFields(base: Schedule, pb: SchedulePb, fields: Record<Updatable, boolean>, rules: DefinitionRules, creating: boolean): Promise<Schedule> {
  const next = { ...base };
  if (fields.name) next.name = boundedText(pb.name, "schedule.name", 256);
  if (fields.description) next.description = boundedText(pb.description, "schedule.description", 2048);
  if (fields.cron) next.cron = pb.cron.trim();
  if (fields.time_zone) next.timeZone = pb.timeZone.trim();
  if (fields.cron || fields.time_zone) {
    next.timeZone = parseCron(next.cron ?? "", next.timeZone ?? "", { cron: "schedule.cron", timeZone: "schedule.time_zone" }).timeZone;
  }
  if (fields.job_template) {
    if (!pb.jobTemplate) throw new InvalidArgumentError("schedule.job_template", "required: the job each run submits");
    if (pb.jobTemplate.requestId.trim()) throw new InvalidArgumentError("schedule.job_template.request_id", "must be empty: every run creates its own job");
    const template = await definitionFromPb(withStoredAzureSecret(pb.jobTemplate, base.jobTemplate), "schedule.job_template", rules);
    // The stored password stays when an update sends the template back without it (responses never carry it).
    if (template.vsphere && !template.vsphere.password && base.jobTemplate?.vsphere?.url === template.vsphere.url && base.jobTemplate.vsphere.username === template.vsphere.username) {
      template.vsphere.password = base.jobTemplate.vsphere.password;
    }
    next.jobTemplate = template;
  }
  if (fields.enabled) next.enabled = pb.enabled ?? true;
  if (fields.tags) next.tags = labelsFromPb(pb.tags, "schedule.tags");
  if (fields.overlap_policy) next.overlapPolicy = policy(OVERLAP, pb.overlapPolicy, "schedule.overlap_policy") ?? "skip";
  if (fields.missed_run_policy) next.missedRunPolicy = policy(MISSED, pb.missedRunPolicy, "schedule.missed_run_policy") ?? "skip";
  if (fields.keep_last) next.keepLast = intIn(pb.keepLast, 0, MAX_KEEP_LAST, "schedule.keep_last");
  if (creating) {
    if (!next.cron) throw new InvalidArgumentError("schedule.cron", "required, e.g. \"0 2 * * *\" (02:00 every day)");
    next.name ||= next.jobTemplate?.name ?? next.id;
    next.description ??= "";
    next.tags ??= {};
    next.timeZone ??= "";
    next.keepLast ??= 0;
  }
  return next;
}

/**
 * The template with the stored Azure client secret filled in when an update sends the same service principal
 * (tenant, client, subscription) back without it, as responses show it: checked before definitionFromPb,
 * which refuses an Azure connection without a secret. A changed principal needs its own secret.
 */
function withStoredAzureSecret(pb: JobDefinitionPb, stored: JobDefinition | undefined): JobDefinitionPb {
  const given = pb.azure;
  const kept = stored?.azure;
  if (!given || given.clientSecret || !kept?.clientSecret) return pb;
  const same = given.tenantId.trim() === kept.tenantId && given.clientId.trim() === kept.clientId && given.subscriptionId.trim() === kept.subscriptionId;
  return same ? { ...pb, azure: { ...given, clientSecret: kept.clientSecret } } : pb;
}

function policy<T extends string>(table: Record<T, number>, value: number, field: string): T | undefined {
  if (value === 0) return undefined;
  const found = (Object.entries(table) as [T, number][]).find(([, v]) => v === value);
  if (!found) throw new InvalidArgumentError(field, `unknown value ${value}`);
  return found[0];
}

function boundedText(value: string, field: string, max: number): string {
  const trimmed = value.trim();
  if (trimmed.length > max) throw new InvalidArgumentError(field, `at most ${max} characters, got ${trimmed.length}`);
  return trimmed;
}

export function scheduleToPb(s: Schedule): SchedulePb {
  return {
    $typeName: "hypervisord.v1.Schedule",
    id: s.id,
    name: s.name,
    description: s.description,
    cron: s.cron,
    timeZone: s.timeZone,
    jobTemplate: definitionToPb(s.jobTemplate),
    enabled: s.enabled,
    tags: s.tags,
    createTime: timestampFromMs(s.createTime),
    updateTime: timestampFromMs(s.updateTime),
    nextRunTime: s.enabled && s.nextRunTime !== undefined ? timestampFromMs(s.nextRunTime) : undefined,
    lastRunTime: s.lastRunTime !== undefined ? timestampFromMs(s.lastRunTime) : undefined,
    runCount: BigInt(s.runCount),
    overlapPolicy: OVERLAP[s.overlapPolicy],
    missedRunPolicy: MISSED[s.missedRunPolicy],
    keepLast: s.keepLast,
  };
}

export function runToPb(r: ScheduleRun): ScheduleRunPb {
  return {
    $typeName: "hypervisord.v1.ScheduleRun",
    id: r.id,
    scheduleId: r.scheduleId,
    jobId: r.jobId ?? "",
    trigger: r.trigger,
    scheduledTime: timestampFromMs(r.scheduledTime),
    runTime: timestampFromMs(r.runTime),
    state: r.state ? stateToPb(r.state) : JobStatePb.UNSPECIFIED,
    durationSeconds: r.durationSeconds ?? 0,
    skippedReason: r.skippedReason ?? "",
    batchId: r.batchId ?? "",
  };
}
