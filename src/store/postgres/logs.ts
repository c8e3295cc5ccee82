import type { LogEntry, LogQuery, NewLogEntry } from "../store.ts";
import type { Sql } from "./sql.ts";

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

/** Per-job logs, size-capped as in SQLite: once a job's log passes the cap, its oldest entries are dropped. */
export function createLogQueries(options: LogQueryOptions) {
  /** Drops the oldest entries until the job's log is back under 90% of the cap (each entry whose predecessors free too little). */
  async function trim(db: Sql, jobId: string, total: number): Promise<void> {
    const excess = total - Math.floor(options.maxBytesPerJob * 0.9);
    const { rows } = await db.query<{ last_id: number | null; freed: number | null }>(`SELECT max(id) AS last_id, max(freed) AS freed
      FROM (SELECT id, sum(bytes) OVER (ORDER BY id) AS freed, bytes FROM job_logs WHERE job_id = $1) AS o
      WHERE freed - bytes < $2`, [jobId, excess]);
    const { last_id: lastId, freed } = rows[0]!;
    if (lastId === null || freed === null) return;
    await db.query("DELETE FROM job_logs WHERE job_id = $1 AND id <= $2", [jobId, lastId]);
    await db.query("UPDATE jobs SET log_bytes = log_bytes - $1, log_truncated = 1 WHERE id = $2", [freed, jobId]);
  }

  return {
    /**
     * Run it in a transaction: the entries of one flush land together, in one INSERT (ids are handed out in the
     * entries' order). The jobs' byte counts are then updated one job at a time in id order, so that two flushes
     * sharing jobs lock their rows in the same order and never deadlock.
     */
    async appendMany(db: Sql, entries: readonly { jobId: string; entry: NewLogEntry }[]): Promise<LogEntry[]> {
      const fields = entries.map(({ entry }) => JSON.stringify(entry.fields));
      const bytes = entries.map(({ entry }, i) => Buffer.byteLength(entry.message) + Buffer.byteLength(fields[i]!) + 32);
      const { rows } = await db.query<{ id: number }>(`INSERT INTO job_logs (job_id, time, level, message, fields, bytes)
        SELECT job_id, time, level, message, fields, bytes
        FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::integer[]) WITH ORDINALITY
          AS e (job_id, time, level, message, fields, bytes, n)
        ORDER BY n RETURNING id`, [
        entries.map((e) => e.jobId), entries.map((e) => e.entry.time), entries.map((e) => e.entry.level), entries.map((e) => e.entry.message),
        fields, bytes,
      ]);
      const added = new Map<string, number>();
      entries.forEach(({ jobId }, i) => added.set(jobId, (added.get(jobId) ?? 0) + bytes[i]!));
      for (const jobId of [...added.keys()].sort()) {
        const updated = await db.query<{ log_bytes: number }>("UPDATE jobs SET log_bytes = log_bytes + $1 WHERE id = $2 RETURNING log_bytes",
          [added.get(jobId), jobId]);
        const total = updated.rows[0]?.log_bytes ?? 0;
        if (total > options.maxBytesPerJob) await trim(db, jobId, total);
      }
      const ids = rows.map((r) => r.id).sort((a, b) => a - b);
      return entries.map(({ entry }, i) => ({ ...entry, id: ids[i]! }));
    },
    async read(db: Sql, jobId: string, query: LogQuery): Promise<{ entries: LogEntry[]; truncated: boolean }> {
      const { rows } = query.tail > 0
        ? await db.query<LogRow>(`SELECT * FROM (SELECT id, time, level, message, fields FROM job_logs WHERE job_id = $1 AND id > $2
            ORDER BY id DESC LIMIT $3) AS t ORDER BY id`, [jobId, query.afterId, Math.min(query.tail, query.limit)])
        : await db.query<LogRow>("SELECT id, time, level, message, fields FROM job_logs WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT $3",
          [jobId, query.afterId, query.limit]);
      const flag = await db.query<{ log_truncated: number }>("SELECT log_truncated FROM jobs WHERE id = $1", [jobId]);
      return {
        entries: rows.map((r) => ({ id: r.id, time: r.time, level: r.level, message: r.message, fields: JSON.parse(r.fields) })),
        truncated: flag.rows[0]?.log_truncated === 1,
      };
    },
  };
}
