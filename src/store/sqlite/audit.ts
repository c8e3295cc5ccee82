import type { Database, Statement } from "better-sqlite3";
import type { AuditEvent } from "../../domain/access.ts";
import type { AuditStore } from "../store.ts";
import type { Sync } from "../sync-store.ts";

/** Also the PostgreSQL store's: the same columns (src/store/postgres/audit.ts). */
export interface AuditRow {
  id: number;
  time: number;
  principal: string;
  role: string;
  method: string;
  transport: string;
  peer: string;
  code: string;
  resource: string;
  request_json: string;
  duration_ms: number;
}

type ListQuery = Parameters<AuditStore["list"]>[0];

export const auditEventFromRow = (row: AuditRow): AuditEvent => ({
  id: row.id,
  time: row.time,
  principal: row.principal,
  role: row.role,
  method: row.method,
  transport: row.transport,
  peer: row.peer,
  code: row.code,
  resource: row.resource,
  requestJson: row.request_json,
  durationMs: row.duration_ms,
});

/** Filters by the columns that have an index ((method, id), (principal, id), (time)); each combination gets its own statement. */
const FILTERS = [
  { name: "method", sql: "method = @method" },
  { name: "principal", sql: "principal = @principal" },
  { name: "since", sql: "time >= @since" },
] as const;

/** The audit log: appended to once per mutating call, read newest first. */
export function createAuditQueries(db: Database): Sync<AuditStore> {
  const insert = db.prepare(`INSERT INTO audit_events (time, principal, role, method, transport, peer, code, resource, request_json, duration_ms)
    VALUES (@time, @principal, @role, @method, @transport, @peer, @code, @resource, @request_json, @duration_ms)`);
  // Prepared once per combination of filters used (at most 8), so that SQLite plans each with the index that fits.
  const lists = new Map<string, Statement<Record<string, unknown>, AuditRow>>();
  const listStatement = (query: ListQuery) => {
    const used = FILTERS.filter((f) => query[f.name] !== undefined);
    const key = used.map((f) => f.name).join(",");
    let statement = lists.get(key);
    if (!statement) {
      const where = ["id < @before", ...used.map((f) => f.sql)].join(" AND ");
      statement = db.prepare<Record<string, unknown>, AuditRow>(`SELECT * FROM audit_events WHERE ${where} ORDER BY id DESC LIMIT @limit`);
      lists.set(key, statement);
    }
    return statement;
  };

  // Group commit: events of one event-loop turn share one transaction (one commit instead of one per call;
  // the same trade as job submissions and job logs: a crash can lose the last turn's events).
  let pending: Omit<AuditEvent, "id">[] = [];
  const insertAll = db.transaction((events: readonly Omit<AuditEvent, "id">[]) => {
    for (const event of events) insertOne(event);
  });
  const flush = () => {
    if (pending.length === 0) return;
    const events = pending;
    pending = [];
    insertAll(events);
  };
  const insertOne = (event: Omit<AuditEvent, "id">) => {
    insert.run({
      time: event.time,
      principal: event.principal,
      role: event.role,
      method: event.method,
      transport: event.transport,
      peer: event.peer,
      code: event.code,
      resource: event.resource,
      request_json: event.requestJson,
      duration_ms: event.durationMs,
    });
  };
  const flushLater = () => {
    try {
      flush();
    } catch (err) {
      // The calls have returned already: report, never crash the daemon over its audit trail.
      process.emitWarning(`audit events could not be written: ${(err as Error).message}`);
    }
  };

  return {
    append(event) {
      pending.push(event);
      if (pending.length === 1) setImmediate(flushLater);
    },
    flush,
    list(query) {
      flush();
      const params: Record<string, unknown> = { before: query.before ?? Number.MAX_SAFE_INTEGER, limit: query.limit + 1 };
      for (const f of FILTERS) if (query[f.name] !== undefined) params[f.name] = query[f.name];
      const rows = listStatement(query).all(params);
      const more = rows.length > query.limit;
      const events = (more ? rows.slice(0, query.limit) : rows).map(auditEventFromRow);
      return { events, next: more ? events[events.length - 1]!.id : undefined };
    },
  };
}
