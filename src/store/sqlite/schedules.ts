import type { Database } from "better-sqlite3";
import type { JobDefinition, JobState } from "../../domain/job.ts";
import type { MissedRunPolicy, OverlapPolicy, RunTrigger, Schedule, ScheduleRun } from "../../domain/schedule.ts";
import { InvalidArgumentError } from "../../errors.ts";
import type { ScheduleExportStore, ScheduleStore } from "../store.ts";
import type { Sync } from "../sync-store.ts";
import type { SecretBox } from "../secret-box.ts";
import { joinSecrets, splitSecrets } from "./job-rows.ts";
import { createScheduleExportQueries } from "./schedule-exports.ts";

/** Rows of schedules and of schedule runs joined with their jobs: also the PostgreSQL store's (the same columns). */
export interface ScheduleRow {
  id: string;
  name: string;
  description: string;
  cron: string;
  time_zone: string;
  job_template: string;
  secrets: string | null;
  enabled: number;
  tags: string;
  overlap_policy: string;
  missed_run_policy: string;
  keep_last: number;
  create_time: number;
  update_time: number;
  next_run_time: number | null;
  last_run_time: number | null;
  run_count: number;
}

/** A run with its job's or its batch's state and times (LEFT JOIN: null when skipped). */
export interface RunRow {
  pk: number;
  id: string;
  schedule_id: string;
  job_id: string | null;
  batch_id: string | null;
  trigger: string;
  scheduled_time: number;
  run_time: number;
  skipped_reason: string | null;
  state: string | null;
  start_time: number | null;
  end_time: number | null;
}

/** The synchronous shape of ScheduleStore, its exports included. */
export type ScheduleQueries = Omit<Sync<ScheduleStore>, "exports"> & { readonly exports: Sync<ScheduleExportStore> };

/** Queries on schedules and their runs; every statement prepared once. `box` seals the job template's secrets (as a job's). */
export function createScheduleQueries(db: Database, box: SecretBox): ScheduleQueries {
  const toRow = (schedule: Schedule) => scheduleToRow(schedule, box);
  const fromRow = (row: ScheduleRow) => scheduleFromRow(row, box);
  const byId = db.prepare<[string], ScheduleRow>("SELECT * FROM schedules WHERE id = ?");
  const everyRow = db.prepare<[], ScheduleRow>("SELECT * FROM schedules ORDER BY create_time, id");
  const insertRow = db.prepare(`INSERT INTO schedules
    (id, name, description, cron, time_zone, job_template, secrets, enabled, tags, overlap_policy, missed_run_policy, keep_last,
     create_time, update_time, next_run_time, last_run_time, run_count)
    VALUES (@id, @name, @description, @cron, @time_zone, @job_template, @secrets, @enabled, @tags, @overlap_policy, @missed_run_policy, @keep_last,
     @create_time, @update_time, @next_run_time, @last_run_time, @run_count)`);
  const updateRow = db.prepare(`UPDATE schedules SET name = @name, description = @description, cron = @cron,
      time_zone = @time_zone, job_template = @job_template, secrets = @secrets, enabled = @enabled, tags = @tags,
      overlap_policy = @overlap_policy, missed_run_policy = @missed_run_policy, keep_last = @keep_last, update_time = @update_time,
      next_run_time = @next_run_time
    WHERE id = @id`);
  const deleteRow = db.prepare("DELETE FROM schedules WHERE id = ?");
  const deleteRuns = db.prepare("DELETE FROM schedule_runs WHERE schedule_id = ?");
  // The record of what retention may delete goes with its schedule; the directories themselves stay.
  const deleteExports = db.prepare("DELETE FROM schedule_exports WHERE schedule_id = ?");
  const updateNextRun = db.prepare("UPDATE schedules SET next_run_time = ? WHERE id = ?");
  const cursorOf = db.prepare<[string], { create_time: number }>("SELECT create_time FROM schedules WHERE id = ?");
  // Tags: every wanted (key, value) of @tags must be among the schedule's; one statement for any number of tags.
  const page = db.prepare<{ after_time: number | null; after_id: string; tags: string; limit: number }, ScheduleRow>(`
    SELECT * FROM schedules AS s
    WHERE (@after_time IS NULL OR (s.create_time, s.id) > (@after_time, @after_id))
      AND NOT EXISTS (SELECT 1 FROM json_each(@tags) AS want
        WHERE NOT EXISTS (SELECT 1 FROM json_each(s.tags) AS have WHERE have.key = want.key AND have.value = want.value))
    ORDER BY s.create_time, s.id
    LIMIT @limit`);
  const insertRun = db.prepare(`INSERT INTO schedule_runs (id, schedule_id, job_id, batch_id, trigger, scheduled_time, run_time, skipped_reason)
    VALUES (@id, @schedule_id, @job_id, @batch_id, @trigger, @scheduled_time, @run_time, @skipped_reason)`);
  const bumpRuns = db.prepare("UPDATE schedules SET run_count = run_count + 1, last_run_time = ? WHERE id = ?");
  const runPk = db.prepare<[string, string], { pk: number }>("SELECT pk FROM schedule_runs WHERE id = ? AND schedule_id = ?");
  // A batch's run takes the batch's state (see batchRunState) and lasts from its creation to its last child's end.
  const runPage = db.prepare<{ schedule_id: string; before: number | null; limit: number }, RunRow>(`
    SELECT r.*, COALESCE(j.state, b.state) AS state, COALESCE(j.start_time, b.create_time) AS start_time,
      COALESCE(j.end_time, b.end_time) AS end_time
    FROM schedule_runs AS r LEFT JOIN jobs AS j ON j.id = r.job_id LEFT JOIN batches AS b ON b.id = r.batch_id
    WHERE r.schedule_id = @schedule_id AND (@before IS NULL OR r.pk < @before)
    ORDER BY r.pk DESC
    LIMIT @limit`);
  // A batch's children count whether or not they carry the schedule id themselves.
  const activeJobs = db.prepare<{ schedule_id: string }, string>(`SELECT id FROM jobs
    WHERE (schedule_id = @schedule_id OR batch_id IN (SELECT id FROM batches WHERE schedule_id = @schedule_id))
      AND state IN ('queued', 'running') ORDER BY pk`).pluck();
  const batchSchedule = db.prepare<[string], string | null>("SELECT schedule_id FROM batches WHERE id = ?").pluck();

  const remove = db.transaction((id: string): boolean => {
    deleteRuns.run(id);
    deleteExports.run(id);
    return deleteRow.run(id).changes > 0;
  });

  // A savepoint when called inside the engine's job insert transaction, so the run commits with its job.
  const recordRun = db.transaction((run: Omit<ScheduleRun, "state" | "durationSeconds">): void => {
    insertRun.run({
      id: run.id,
      schedule_id: run.scheduleId,
      job_id: run.jobId ?? null,
      batch_id: run.batchId ?? null,
      trigger: run.trigger,
      scheduled_time: run.scheduledTime,
      run_time: run.runTime,
      skipped_reason: run.skippedReason ?? null,
    });
    bumpRuns.run(run.runTime, run.scheduleId);
  });

  function list(query: { limit: number; after?: string; tags?: Record<string, string> }) {
    let afterTime: number | null = null;
    if (query.after !== undefined) {
      const cursor = cursorOf.get(query.after);
      if (!cursor) throw deletedCursor("schedule", query.after);
      afterTime = cursor.create_time;
    }
    const rows = page.all({ after_time: afterTime, after_id: query.after ?? "", tags: JSON.stringify(query.tags ?? {}), limit: query.limit + 1 });
    const more = rows.length > query.limit;
    const schedules = (more ? rows.slice(0, query.limit) : rows).map(fromRow);
    return { schedules, next: more ? schedules[schedules.length - 1]!.id : undefined };
  }

  function listRuns(scheduleId: string, query: { limit: number; before?: string }) {
    let before: number | null = null;
    if (query.before !== undefined) {
      const cursor = runPk.get(query.before, scheduleId);
      if (!cursor) throw deletedCursor("run", query.before);
      before = cursor.pk;
    }
    const rows = runPage.all({ schedule_id: scheduleId, before, limit: query.limit + 1 });
    const more = rows.length > query.limit;
    const runs = (more ? rows.slice(0, query.limit) : rows).map(runFromRow);
    return { runs, next: more ? runs[runs.length - 1]!.id : undefined };
  }

  return {
    insert: (schedule) => void insertRow.run(toRow(schedule)),
    get(id) {
      const row = byId.get(id);
      return row && fromRow(row);
    },
    list,
    all: () => everyRow.all().map(fromRow),
    update: (schedule) => updateRow.run(toRow(schedule)).changes > 0,
    delete: remove,
    setNextRunTime: (id, time) => void updateNextRun.run(time ?? null, id),
    recordRun,
    listRuns,
    activeJobIds: (scheduleId) => activeJobs.all({ schedule_id: scheduleId }),
    scheduleOfBatch: (batchId) => batchSchedule.get(batchId) ?? undefined,
    exports: createScheduleExportQueries(db),
  };
}

/** A keyset cursor names a row; when that row is gone the page cannot be placed. */
export function deletedCursor(what: string, id: string): InvalidArgumentError {
  return new InvalidArgumentError("page_token", `the ${what} the previous page ended with (${id}) no longer exists; list again from the first page`);
}

function scheduleToRow(schedule: Schedule, box: SecretBox): ScheduleRow {
  const template = splitSecrets(schedule.jobTemplate, box);
  return {
    id: schedule.id,
    name: schedule.name,
    description: schedule.description,
    cron: schedule.cron,
    time_zone: schedule.timeZone,
    job_template: template.definition,
    secrets: template.secrets,
    enabled: schedule.enabled ? 1 : 0,
    tags: JSON.stringify(schedule.tags),
    overlap_policy: schedule.overlapPolicy,
    missed_run_policy: schedule.missedRunPolicy,
    keep_last: schedule.keepLast,
    create_time: schedule.createTime,
    update_time: schedule.updateTime,
    next_run_time: schedule.nextRunTime ?? null,
    last_run_time: schedule.lastRunTime ?? null,
    run_count: schedule.runCount,
  };
}

export function scheduleFromRow(row: ScheduleRow, box: SecretBox): Schedule {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    cron: row.cron,
    timeZone: row.time_zone,
    jobTemplate: joinSecrets(JSON.parse(row.job_template) as JobDefinition, row.secrets, box),
    enabled: row.enabled === 1,
    tags: JSON.parse(row.tags) as Record<string, string>,
    overlapPolicy: row.overlap_policy as OverlapPolicy,
    missedRunPolicy: row.missed_run_policy as MissedRunPolicy,
    keepLast: row.keep_last,
    createTime: row.create_time,
    updateTime: row.update_time,
    nextRunTime: row.next_run_time ?? undefined,
    lastRunTime: row.last_run_time ?? undefined,
    runCount: row.run_count,
  };
}

export function runFromRow(row: RunRow): ScheduleRun {
  return {
    id: row.id,
    scheduleId: row.schedule_id,
    jobId: row.job_id ?? undefined,
    ...(row.batch_id !== null && { batchId: row.batch_id }),
    trigger: row.trigger as RunTrigger,
    scheduledTime: row.scheduled_time,
    runTime: row.run_time,
    state: row.batch_id !== null && row.job_id === null ? batchRunState(row.state) : (row.state as JobState | null) ?? undefined,
    durationSeconds: row.start_time !== null && row.end_time !== null ? (row.end_time - row.start_time) / 1000 : undefined,
    skippedReason: row.skipped_reason ?? undefined,
  };
}

/**
 * A batch run's state as a job state (ScheduleRun.state is a JobState): running until every child has
 * ended, then completed or cancelled as the batch, and failed when any child failed (partially_failed too:
 * the run did not export everything; GetBatch has the counts).
 */
function batchRunState(state: string | null): JobState | undefined {
  switch (state) {
    case null: return undefined;
    case "running": return "running";
    case "completed": return "completed";
    case "cancelled": return "cancelled";
    default: return "failed";
  }
}
