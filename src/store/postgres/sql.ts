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
/** NOTIFY channel: updates (transitions, progress, batches) were committed (no payload). */
export const UPDATES_CHANNEL = "hypervisord_updates";
/** NOTIFY channel: webhook deliveries were enqueued. */
export const WEBHOOKS_CHANNEL = "hypervisord_webhooks";

/** The next update sequence number, taken under UPDATE_SEQ_LOCK (call inside a transaction). */
export async function nextUpdateSeq(db: Sql): Promise<number> {
  await db.query("SELECT pg_advisory_xact_lock($1)", [UPDATE_SEQ_LOCK]);
  const { rows } = await db.query<{ seq: string }>("SELECT nextval('update_seq') AS seq");
  return Number(rows[0]!.seq);
}

/** Tells every daemon that updates were committed (delivered when the transaction commits). */
export async function notifyUpdates(db: Sql): Promise<void> {
  // One payload for all: PostgreSQL folds identical notifications of one transaction into one (a batch's 1,000
  // children, one wake-up); readers take whatever is after the seq they last read.
  await db.query("SELECT pg_notify($1, '')", [UPDATES_CHANNEL]);
}

/** Runs `fn` in one transaction on one client of the pool: committed when it resolves, rolled back when it throws. */
export async function transaction<T>(pool: pg.Pool, fn: (db: Sql) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  // A checked-out client whose connection breaks between two queries (PostgreSQL restarted) emits "error", which
  // unheard would end the process; heard, the next query fails and the broken client is destroyed at release.
  let broken: Error | undefined;
  const onError = (err: Error) => (broken = err);
  client.on("error", onError);
  try {
    await client.query("BEGIN");
    try {
      const result = await fn(client);
      await client.query("COMMIT");
      return result;
    } catch (err) {
      broken ??= await client.query("ROLLBACK").then(() => undefined, (rollbackError: Error) => rollbackError);
      throw err;
    }
  } finally {
    client.off("error", onError);
    client.release(broken);
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
