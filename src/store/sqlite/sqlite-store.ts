import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import type { Store } from "../store.ts";
import { createJobQueries } from "./job-queries.ts";
import { createLogQueries } from "./logs.ts";
import { migrate } from "./migrations.ts";

export interface SqliteStoreOptions {
  dataDir: string;
  /** Per-job cap on stored log bytes. */
  maxLogBytesPerJob: number;
}

export const DATABASE_FILE = "hypervisord.db";

export function createSqliteStore(options: SqliteStoreOptions): Store {
  fs.mkdirSync(options.dataDir, { recursive: true });
  const db = new Database(path.join(options.dataDir, DATABASE_FILE));
  // WAL: readers never block the writer. synchronous=NORMAL in WAL mode keeps every
  // committed transaction across a process crash (kill -9); only an OS crash can lose the last ones.
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  migrate(db);

  const jobs = createJobQueries(db);
  const logs = createLogQueries(db, { maxBytesPerJob: options.maxLogBytesPerJob });
  const getMeta = db.prepare<[string], { value: string }>("SELECT value FROM meta WHERE key = ?");
  const setMeta = db.prepare("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");

  return {
    kind: "sqlite",
    insertJobs: jobs.insertMany,
    getJob: jobs.get,
    listJobs: jobs.list,
    jobsInState: jobs.inState,
    countByState: jobs.countByState,
    claimNextJob: jobs.claim,
    transition: jobs.transition,
    saveProgress: jobs.saveProgress,
    loadCheckpoint: jobs.loadCheckpoint,
    saveCheckpoint: jobs.saveCheckpoint,
    nextAttemptTime: jobs.nextAttemptTime,
    transitionsAfter: jobs.transitionsAfter,
    history: jobs.history,
    maxTransitionSeq: jobs.maxTransitionSeq,
    appendLogs: logs.appendMany,
    readLogs: logs.read,
    getSeqReservation: () => Number(getMeta.get("seq_reservation")?.value ?? 0),
    setSeqReservation: (value) => void setMeta.run("seq_reservation", String(value)),
    close: () => db.close(),
  };
}
