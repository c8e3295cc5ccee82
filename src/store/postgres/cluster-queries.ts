import pg from "pg";
import type { Logger } from "pino";
import type { Job, JobTransition } from "../../domain/job.ts";
import type { ClusterStore, SharedUpdate } from "../cluster-store.ts";
import { nextUpdateSeq, notifyUpdates, SCHEDULER_LEADER_LOCK, transaction, UPDATES_CHANNEL, WEBHOOKS_CHANNEL, type Sql } from "./sql.ts";

/** What the cluster queries take from the job queries (src/store/postgres/job-queries.ts). */
export interface ClusterJobAccess {
  /** The jobs of these ids that exist, as the store reads them. */
  jobsById(db: Sql, ids: readonly string[]): Promise<Map<string, Job>>;
  transitionsAfter(db: Sql, seq: number, limit: number): Promise<JobTransition[]>;
  /** running -> queued with resume set (no attempt counted), as one more transition in `db`'s transaction. */
  requeue(db: Sql, jobId: string, reason: string): Promise<{ job: Job; transition: JobTransition } | undefined>;
}

export interface ClusterQueriesOptions {
  pool: pg.Pool;
  /** For the dedicated sessions: LISTEN, and the advisory lock a leader holds. */
  url: string;
  nodeId: string;
  leaseMs: number;
  jobs: ClusterJobAccess;
  logger?: Logger;
}

/** The database's clock in ms: leases are compared on one clock, whatever the nodes' clocks say. */
const DB_NOW = "(extract(epoch from clock_timestamp()) * 1000)::bigint";
const LISTEN_RETRY_MS = 1_000;
const LEADER_KEEPALIVE_MS = 2_000;

interface UpdateRow {
  seq: number;
  job_id: string;
  batch_id: string | null;
  kind: "progress" | "batch";
  payload: string;
  time: number;
}

/** PostgreSQL's side of the cluster (see ClusterStore). */
export function createClusterQueries(options: ClusterQueriesOptions): ClusterStore {
  const { pool, nodeId, leaseMs, jobs } = options;

  async function updatesAfter(seq: number, limit: number): Promise<SharedUpdate[]> {
    const [transitions, others] = await Promise.all([
      jobs.transitionsAfter(pool, seq, limit),
      pool.query<UpdateRow>("SELECT * FROM job_updates WHERE seq > $1 ORDER BY seq LIMIT $2", [seq, limit]).then((r) => r.rows),
    ]);
    // A full page of one kind may end before the other's: keep both complete up to the lower of their last seqs.
    let upTo = Infinity;
    if (transitions.length === limit) upTo = Math.min(upTo, transitions[transitions.length - 1]!.seq);
    if (others.length === limit) upTo = Math.min(upTo, others[others.length - 1]!.seq);
    const kept = transitions.filter((t) => t.seq <= upTo);
    const byId = await jobs.jobsById(pool, [...new Set(kept.map((t) => t.jobId))]);
    const merged: SharedUpdate[] = [
      ...kept.map((transition): SharedUpdate => {
        const job = byId.get(transition.jobId);
        return { seq: transition.seq, jobId: transition.jobId, ...(job?.batchId ? { batchId: job.batchId } : {}), kind: "transition", transition, job, time: transition.time };
      }),
      ...others.filter((row) => row.seq <= upTo).map((row): SharedUpdate => ({
        seq: row.seq, jobId: row.job_id, ...(row.batch_id ? { batchId: row.batch_id } : {}), kind: row.kind, payload: JSON.parse(row.payload), time: row.time,
      })),
    ];
    return merged.sort((a, b) => a.seq - b.seq);
  }

  /** A dedicated session (not from the pool): LISTEN and session advisory locks live as long as it does. */
  async function session(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: options.url, keepAlive: true, application_name: `hypervisord ${nodeId}` });
    await client.connect();
    return client;
  }

  return {
    nodeId,
    leaseMs,

    async renewLeases(jobIds) {
      if (jobIds.length === 0) return new Set();
      const { rows } = await pool.query<{ id: string }>(
        `UPDATE jobs SET lease_expires = ${DB_NOW} + $3 WHERE id = ANY($1) AND state = 'running' AND node_id = $2 RETURNING id`,
        [jobIds, nodeId, leaseMs]);
      return new Set(rows.map((r) => r.id));
    },

    requeueExpired() {
      return transaction(pool, async (db) => {
        const { rows } = await db.query<{ id: string; node_id: string | null }>(
          `SELECT id, node_id FROM jobs WHERE state = 'running' AND lease_expires < ${DB_NOW} ORDER BY lease_expires FOR UPDATE SKIP LOCKED`);
        const moved: { job: Job; transition: JobTransition }[] = [];
        for (const row of rows) {
          const why = `node ${row.node_id ?? "(unknown)"} stopped renewing its lease (${leaseMs / 1000} s); resuming from the checkpoint on another node`;
          const changed = await jobs.requeue(db, row.id, why);
          if (changed) moved.push(changed);
        }
        return moved;
      });
    },

    appendUpdate(update) {
      return transaction(pool, async (db) => {
        const seq = await nextUpdateSeq(db);
        await db.query("INSERT INTO job_updates (seq, job_id, batch_id, kind, payload, time) VALUES ($1, $2, $3, $4, $5, $6)",
          [seq, update.jobId, update.batchId ?? null, update.kind, JSON.stringify(update.payload ?? null), update.time]);
        await notifyUpdates(db);
        return seq;
      });
    },

    updatesAfter,

    async lastUpdateSeq() {
      // Transactions that hand out seqs commit in seq order (UPDATE_SEQ_LOCK): every seq up to this max is committed.
      const { rows } = await pool.query<{ seq: number | null }>(
        "SELECT greatest((SELECT max(seq) FROM job_transitions), (SELECT max(seq) FROM job_updates)) AS seq");
      return rows[0]?.seq ?? 0;
    },

    async listen(channel, listener) {
      const name = channel === "updates" ? UPDATES_CHANNEL : WEBHOOKS_CHANNEL;
      let client: pg.Client | undefined;
      let stopped = false;
      let retry: NodeJS.Timeout | undefined;
      const connect = async (): Promise<void> => {
        try {
          const c = await session();
          c.on("notification", () => listener());
          c.on("error", (err) => {
            options.logger?.warn({ err: err.message, channel: name }, "lost the LISTEN session to PostgreSQL; reconnecting");
            void c.end().catch(() => undefined);
            if (client === c) client = undefined;
            if (!stopped) retry = setTimeout(() => void connect(), LISTEN_RETRY_MS);
          });
          await c.query(`LISTEN ${name}`);
          client = c;
          // Whatever was notified while no session listened is read now.
          listener();
        } catch (err) {
          options.logger?.warn({ err: (err as Error).message, channel: name }, "cannot LISTEN on PostgreSQL; retrying");
          if (!stopped) retry = setTimeout(() => void connect(), LISTEN_RETRY_MS);
        }
      };
      await connect();
      return async () => {
        stopped = true;
        clearTimeout(retry);
        await client?.end().catch(() => undefined);
      };
    },

    async tryLead() {
      const client = await session();
      let held = false;
      try {
        const { rows } = await client.query<{ taken: boolean }>("SELECT pg_try_advisory_lock($1) AS taken", [SCHEDULER_LEADER_LOCK]);
        held = rows[0]!.taken;
      } finally {
        if (!held) await client.end().catch(() => undefined);
      }
      if (!held) return undefined;
      // The lock lives as long as this session: a dead connection (PostgreSQL restarted, network lost) ends the
      // leadership here as it does there; a killed node's session is closed by its operating system.
      let keepalive: NodeJS.Timeout | undefined;
      const released = new Promise<unknown>((resolve) => {
        // "on", not "once": a session that breaks may report more than one error, and an unheard one ends the process.
        client.on("error", resolve);
        client.once("end", () => resolve(undefined));
        keepalive = setInterval(() => void client.query("SELECT 1").catch(resolve), LEADER_KEEPALIVE_MS);
      }).finally(() => clearInterval(keepalive));
      return {
        released,
        async release() {
          clearInterval(keepalive);
          await client.query("SELECT pg_advisory_unlock($1)", [SCHEDULER_LEADER_LOCK]).catch(() => undefined);
          await client.end().catch(() => undefined);
        },
      };
    },

    async runningByNode() {
      const { rows } = await pool.query<{ node_id: string | null; n: number }>(
        "SELECT node_id, count(*)::bigint AS n FROM jobs WHERE state = 'running' GROUP BY node_id");
      return Object.fromEntries(rows.map((r) => [r.node_id ?? "", r.n]));
    },

    async ping() {
      await pool.query("SELECT 1");
    },

    async pruneUpdates(before) {
      const { rowCount } = await pool.query("DELETE FROM job_updates WHERE time < $1", [before]);
      return rowCount ?? 0;
    },
  };
}
