import pg from "pg";

/** What a query module runs its statements on: the pool, or a client inside a transaction. */
export interface Sql {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: readonly unknown[]): Promise<pg.QueryResult<R>>;
}

/**
 * Serializes every transaction that hands out update sequence numbers, until it commits: sequence numbers
 * are then committed in increasing order, so that a reader of `seq > N` never misses one committed later
 * (the cluster's update stream has no gaps). Held for the rest of the transaction only.
 */
export const UPDATE_SEQ_LOCK = 0x68760001;
/** Migrations run under this session lock, so that daemons starting together do not race. */
export const MIGRATION_LOCK = 0x68760002;
/** The schedule leader holds this session lock (see src/cluster). */
export const SCHEDULER_LEADER_LOCK = 0x68760003;
/** NOTIFY channel: updates (transitions, progress, batches) were committed; payload: the highest seq. */
export const UPDATES_CHANNEL = "hypervisord_updates";
/** NOTIFY channel: webhook deliveries were enqueued. */
export const WEBHOOKS_CHANNEL = "hypervisord_webhooks";

/** The next update sequence number, taken under UPDATE_SEQ_LOCK (call inside a transaction). */
export async function nextUpdateSeq(db: Sql): Promise<number> {
  await db.query("SELECT pg_advisory_xact_lock($1)", [UPDATE_SEQ_LOCK]);
  const { rows } = await db.query<{ seq: string }>("SELECT nextval('update_seq') AS seq");
  return Number(rows[0]!.seq);
}

/** Tells every daemon that updates up to `seq` were committed (delivered when the transaction commits). */
export async function notifyUpdates(db: Sql, seq: number): Promise<void> {
  await db.query("SELECT pg_notify($1, $2)", [UPDATES_CHANNEL, String(seq)]);
}

/** Runs `fn` in one transaction on one client of the pool: committed when it resolves, rolled back when it throws. */
export async function transaction<T>(pool: pg.Pool, fn: (db: Sql) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    try {
      const result = await fn(client);
      await client.query("COMMIT");
      return result;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw err;
    }
  } finally {
    client.release();
  }
}

/**
 * A savepoint inside a transaction: a failing `fn` rolls back its own statements only (one item of a group
 * commit), and the error goes to the caller.
 */
export async function savepoint<T>(db: Sql, fn: () => Promise<T>): Promise<T> {
  await db.query("SAVEPOINT item");
  try {
    const result = await fn();
    await db.query("RELEASE SAVEPOINT item");
    return result;
  } catch (err) {
    await db.query("ROLLBACK TO SAVEPOINT item");
    throw err;
  }
}

/** BIGINT columns come back as strings (pg's default); times and sizes fit in a double. */
export const num = (value: string | number | null | undefined): number | undefined => (value === null || value === undefined ? undefined : Number(value));
