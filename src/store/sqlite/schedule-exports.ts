import type { Database } from "better-sqlite3";
import type { ScheduleExport } from "../../domain/schedule.ts";
import type { ScheduleExportStore } from "../store.ts";
import type { Sync } from "../sync-store.ts";

interface ExportRow {
  schedule_id: string;
  vm_key: string;
  job_id: string;
  dir: string;
  run_time: number;
  completed_time: number | null;
  deleted_time: number | null;
}

/**
 * The directories schedules' runs wrote (schedule_exports): recorded when the run's job is created, the
 * only directories retention ever deletes. Whether an export succeeded is read from its job's state, so
 * a job that completed before its row was written, or while the daemon was down, still counts.
 */
export function createScheduleExportQueries(db: Database): Sync<ScheduleExportStore> {
  const insert = db.prepare(`INSERT OR IGNORE INTO schedule_exports (schedule_id, vm_key, job_id, dir, run_time)
    VALUES (@schedule_id, @vm_key, @job_id, @dir, @run_time)`);
  const byJob = db.prepare<[string], ExportRow>("SELECT * FROM schedule_exports WHERE job_id = ?");
  const byDir = db.prepare<[string], number>("SELECT 1 FROM schedule_exports WHERE dir = ? LIMIT 1").pluck();
  // completed_time follows the job's end (the job row is the truth; this keeps the record readable alone).
  const syncCompleted = db.prepare<[string, string]>(`UPDATE schedule_exports AS e
    SET completed_time = (SELECT j.end_time FROM jobs AS j WHERE j.id = e.job_id)
    WHERE e.schedule_id = ? AND e.vm_key = ? AND e.completed_time IS NULL
      AND EXISTS (SELECT 1 FROM jobs AS j WHERE j.id = e.job_id AND j.state = 'completed')`);
  const kept = db.prepare<[string, string], ExportRow>(`SELECT e.* FROM schedule_exports AS e
    JOIN jobs AS j ON j.id = e.job_id AND j.state = 'completed'
    WHERE e.schedule_id = ? AND e.vm_key = ? AND e.deleted_time IS NULL
    ORDER BY e.run_time DESC, e.pk DESC`);
  const markDeleted = db.prepare<[number, string]>("UPDATE schedule_exports SET deleted_time = ? WHERE job_id = ? AND deleted_time IS NULL");
  const keys = db.prepare<[], { schedule_id: string; vm_key: string }>(`SELECT DISTINCT e.schedule_id, e.vm_key
    FROM schedule_exports AS e JOIN schedules AS s ON s.id = e.schedule_id AND s.keep_last > 0
    WHERE e.deleted_time IS NULL ORDER BY e.schedule_id, e.vm_key`);

  const recordAll = db.transaction((exports: readonly ScheduleExport[]) => {
    for (const e of exports) insert.run({ schedule_id: e.scheduleId, vm_key: e.vmKey, job_id: e.jobId, dir: e.dir, run_time: e.runTime });
  });
  const successful = db.transaction((scheduleId: string, vmKey: string) => {
    syncCompleted.run(scheduleId, vmKey);
    return kept.all(scheduleId, vmKey).map(fromRow);
  });

  return {
    record: (exports) => recordAll(exports),
    byJob(jobId) {
      const row = byJob.get(jobId);
      return row && fromRow(row);
    },
    isRecorded: (dir) => byDir.get(dir) !== undefined,
    successful: (scheduleId, vmKey) => successful(scheduleId, vmKey),
    markDeleted: (jobId, time) => markDeleted.run(time, jobId).changes > 0,
    retainedKeys: () => keys.all().map((row) => ({ scheduleId: row.schedule_id, vmKey: row.vm_key })),
  };
}

function fromRow(row: ExportRow): ScheduleExport {
  return {
    scheduleId: row.schedule_id,
    vmKey: row.vm_key,
    jobId: row.job_id,
    dir: row.dir,
    runTime: row.run_time,
    completedTime: row.completed_time ?? undefined,
    deletedTime: row.deleted_time ?? undefined,
  };
}
