import type { Database } from "better-sqlite3";
import type { LogEntry, LogQuery, NewLogEntry } from "../store.ts";

interface LogRow {
  id: number;
  time: number;
  level: string;
  message: string;
  fields: string;
}

export interface LogQueryOptions {
  /** Per-job cap on stored log bytes; the oldest entries go first. */
  maxBytesPerJob: number;
}

/** Per-job logs, size-capped: once a job's log passes the cap, its oldest entries are dropped. */
export function createLogQueries(db: Database, options: LogQueryOptions) {
  const insert = db.prepare("INSERT INTO job_logs (job_id, time, level, message, fields, bytes) VALUES (?, ?, ?, ?, ?, ?)");
  const addBytes = db.prepare<[number, string], { log_bytes: number }>(
    "UPDATE jobs SET log_bytes = log_bytes + ? WHERE id = ? RETURNING log_bytes");
  const oldest = db.prepare<[string, number], { id: number; bytes: number }>(
    "SELECT id, bytes FROM job_logs WHERE job_id = ? ORDER BY id LIMIT ?");
  const deleteUpTo = db.prepare("DELETE FROM job_logs WHERE job_id = ? AND id <= ?");
  const markTruncated = db.prepare("UPDATE jobs SET log_bytes = log_bytes - ?, log_truncated = 1 WHERE id = ?");
  const after = db.prepare<[string, number, number], LogRow>(
    "SELECT id, time, level, message, fields FROM job_logs WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?");
  const lastN = db.prepare<[string, number, number], LogRow>(
    `SELECT * FROM (SELECT id, time, level, message, fields FROM job_logs WHERE job_id = ? AND id > ? ORDER BY id DESC LIMIT ?)
     ORDER BY id`);
  const truncated = db.prepare<[string], { log_truncated: number }>("SELECT log_truncated FROM jobs WHERE id = ?");

  /** Drops the oldest entries until the job's log is back under 90% of the cap. */
  function trim(jobId: string, total: number): void {
    const target = Math.floor(options.maxBytesPerJob * 0.9);
    let excess = total - target;
    let freed = 0;
    let lastId = 0;
    for (const row of oldest.iterate(jobId, 10_000)) {
      if (excess <= 0) break;
      excess -= row.bytes;
      freed += row.bytes;
      lastId = row.id;
    }
    if (lastId === 0) return;
    deleteUpTo.run(jobId, lastId);
    markTruncated.run(freed, jobId);
  }

  function appendOne(jobId: string, entry: NewLogEntry): LogEntry {
    const fields = JSON.stringify(entry.fields);
    const bytes = Buffer.byteLength(entry.message) + Buffer.byteLength(fields) + 32;
    const info = insert.run(jobId, entry.time, entry.level, entry.message, fields, bytes);
    const total = addBytes.get(bytes, jobId)?.log_bytes ?? 0;
    if (total > options.maxBytesPerJob) trim(jobId, total);
    return { ...entry, id: Number(info.lastInsertRowid) };
  }

  const appendMany = db.transaction((entries: readonly { jobId: string; entry: NewLogEntry }[]) =>
    entries.map(({ jobId, entry }) => appendOne(jobId, entry)));

  function read(jobId: string, query: LogQuery): { entries: LogEntry[]; truncated: boolean } {
    const rows = query.tail > 0
      ? lastN.all(jobId, query.afterId, Math.min(query.tail, query.limit))
      : after.all(jobId, query.afterId, query.limit);
    return {
      entries: rows.map((r) => ({ id: r.id, time: r.time, level: r.level, message: r.message, fields: JSON.parse(r.fields) })),
      truncated: truncated.get(jobId)?.log_truncated === 1,
    };
  }

  return { appendMany, read };
}
