import type pg from "pg";
import type { ScheduleExport } from "../../domain/schedule.ts";
import type { ScheduleExportStore } from "../store.ts";
import { transaction, type Sql } from "./sql.ts";

// The table is created with the schedules (SCHEDULES_SCHEMA in schedules.ts): one DDL for the schedule family.

interface ExportRow {
  schedule_id: string;
  vm_key: string;
  job_id: string;
  dir: string;
  run_time: number;
  completed_time: number | null;
  deleted_time: number | null;
}

// One statement for a whole run (arrays unnested in order), so its records land together; a job already
// recorded is left as it is (SQLite's INSERT OR IGNORE).
const RECORD = `INSERT INTO schedule_exports (schedule_id, vm_key, job_id, dir, run_time)
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])
  ON CONFLICT DO NOTHING`;
// completed_time follows the job's end (the job row is the truth; this keeps the record readable alone).
const SYNC_COMPLETED = `UPDATE schedule_exports AS e SET completed_time = j.end_time
  FROM jobs AS j
  WHERE j.id = e.job_id AND j.state = 'completed' AND e.schedule_id = $1 AND e.vm_key = $2 AND e.completed_time IS NULL`;
const KEPT = `SELECT e.* FROM schedule_exports AS e
  JOIN jobs AS j ON j.id = e.job_id AND j.state = 'completed'
  WHERE e.schedule_id = $1 AND e.vm_key = $2 AND e.deleted_time IS NULL
  ORDER BY e.run_time DESC, e.pk DESC`;
// Byte order (COLLATE "C"), as SQLite sorts, whatever the database's collation.
const KEYS = `SELECT DISTINCT e.schedule_id COLLATE "C" AS schedule_id, e.vm_key COLLATE "C" AS vm_key
  FROM schedule_exports AS e JOIN schedules AS s ON s.id = e.schedule_id AND s.keep_last > 0
  WHERE e.deleted_time IS NULL
  ORDER BY 1, 2`;

/**
 * The directories schedules' runs wrote (schedule_exports): recorded when the run's jobs are created, the
 * only directories retention ever deletes. Whether an export succeeded is read from its job's state, so a
 * job that completed before its row was written, or while no daemon was up, still counts.
 * Each query takes the executor first.
 */
export function createScheduleExportQueries() {
  return {
    async record(db: Sql, exports: readonly ScheduleExport[]): Promise<void> {
      if (exports.length === 0) return;
      await db.query(RECORD, [
        exports.map((e) => e.scheduleId), exports.map((e) => e.vmKey), exports.map((e) => e.jobId), exports.map((e) => e.dir),
        exports.map((e) => e.runTime),
      ]);
    },
    async byJob(db: Sql, jobId: string): Promise<ScheduleExport | undefined> {
      const { rows } = await db.query<ExportRow>("SELECT * FROM schedule_exports WHERE job_id = $1", [jobId]);
      return rows[0] && fromRow(rows[0]);
    },
    isRecorded: async (db: Sql, dir: string): Promise<boolean> =>
      (await db.query("SELECT 1 FROM schedule_exports WHERE dir = $1 LIMIT 1", [dir])).rows.length > 0,
    /** Brings completed_time up to date, then reads: call inside a transaction. */
    async successful(db: Sql, scheduleId: string, vmKey: string): Promise<ScheduleExport[]> {
      await db.query(SYNC_COMPLETED, [scheduleId, vmKey]);
      return (await db.query<ExportRow>(KEPT, [scheduleId, vmKey])).rows.map(fromRow);
    },
    markDeleted: async (db: Sql, jobId: string, time: number): Promise<boolean> =>
      ((await db.query("UPDATE schedule_exports SET deleted_time = $1 WHERE job_id = $2 AND deleted_time IS NULL", [time, jobId])).rowCount ?? 0) > 0,
    retainedKeys: async (db: Sql): Promise<{ scheduleId: string; vmKey: string }[]> =>
      (await db.query<{ schedule_id: string; vm_key: string }>(KEYS)).rows.map((row) => ({ scheduleId: row.schedule_id, vmKey: row.vm_key })),
  };
}

export type ScheduleExportQueries = ReturnType<typeof createScheduleExportQueries>;

/** The ScheduleExportStore over a pool. */
export function createScheduleExportStore(pool: pg.Pool, queries: ScheduleExportQueries): ScheduleExportStore {
  return {
    record: (exports) => queries.record(pool, exports),
    byJob: (jobId) => queries.byJob(pool, jobId),
    isRecorded: (dir) => queries.isRecorded(pool, dir),
    successful: (scheduleId, vmKey) => transaction(pool, (db) => queries.successful(db, scheduleId, vmKey)),
    markDeleted: (jobId, time) => queries.markDeleted(pool, jobId, time),
    retainedKeys: () => queries.retainedKeys(pool),
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
