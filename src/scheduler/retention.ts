import fs from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import type { ScheduleExport } from "../domain/schedule.ts";
import type { NewLogEntry, ScheduleStore } from "../store/store.ts";
import { RUN_DIR_NAME } from "./run-layout.ts";
import { errorMessage } from "../errors.ts";

export interface RetentionDeps {
  schedules: Pick<ScheduleStore, "get" | "exports">;
  /** Where a deletion is told on the job whose export it was (its log). */
  appendJobLog(jobId: string, entry: NewLogEntry): Promise<unknown>;
  allowedOutputRoots: readonly string[];
  logger: Logger;
  now?: () => number;
}

export interface RetentionStats {
  /** Run directories deleted since start. */
  deleted: number;
  /** Deletions refused (the recorded path no longer looks like the daemon's) or failed. */
  failed: number;
}

export interface Retention {
  /**
   * A job completed: when it was a schedule's export, that VM's older exports beyond keep_last go. Resolves
   * once that is done; never rejects (a failure is logged).
   */
  jobCompleted(jobId: string): Promise<void>;
  /** Looks at these VMs of a schedule (a run's exports were just recorded; one may have completed already). */
  check(keys: readonly { scheduleId: string; vmKey: string }[]): void;
  /**
   * Every schedule's VMs: at start, for completions the daemon did not get to handle before it stopped.
   * Resolves once they are queued (idle() waits for the deletions); rejects when they cannot be read.
   */
  sweep(): Promise<void>;
  /** Resolves once the work asked for so far is done (shutdown waits for it). */
  idle(): Promise<void>;
  stats(): RetentionStats;
}

/**
 * Keeps the last `keep_last` successful exports per VM of each schedule. Only directories recorded when a
 * run's job was created are deleted, and only once newer exports of the same VM have completed (a failed
 * run never counts, so it never costs an older good export). Deletions run one at a time, in order.
 */
export function createRetention(deps: RetentionDeps): Retention {
  const { schedules, logger } = deps;
  const now = deps.now ?? Date.now;
  const stats: RetentionStats = { deleted: 0, failed: 0 };
  let queue = Promise.resolve();

  function enqueue(scheduleId: string, vmKey: string): void {
    queue = queue.then(() => apply(scheduleId, vmKey)).catch((err: unknown) => {
      logger.error({ scheduleId, vm: vmKey, err }, `retention of schedule ${scheduleId}, VM ${vmKey} failed: ${errorMessage(err)}`);
    });
  }

  async function apply(scheduleId: string, vmKey: string): Promise<void> {
    const schedule = await schedules.get(scheduleId);
    // A deleted schedule, or keep_last 0: everything stays.
    if (!schedule || schedule.keepLast === 0) return;
    const older = (await schedules.exports.successful(scheduleId, vmKey)).slice(schedule.keepLast);
    for (const entry of older) await remove(entry, schedule.keepLast);
  }

  async function remove(entry: ScheduleExport, keepLast: number): Promise<void> {
    const refusal = await refusalOf(entry, deps.allowedOutputRoots);
    if (refusal === "gone") {
      await schedules.exports.markDeleted(entry.jobId, now());
      await tell(entry, "info", `retention: ${entry.dir} was already gone; recorded as deleted`);
      return;
    }
    if (refusal) {
      stats.failed++;
      await tell(entry, "warn", `retention: not deleting ${entry.dir}: ${refusal}`);
      return;
    }
    try {
      await fs.rm(entry.dir, { recursive: true });
    } catch (err) {
      stats.failed++;
      await tell(entry, "error", `retention: deleting ${entry.dir} failed: ${errorMessage(err)}`);
      return;
    }
    await schedules.exports.markDeleted(entry.jobId, now());
    stats.deleted++;
    await tell(entry, "info", `retention: deleted ${entry.dir} (schedule ${entry.scheduleId} keeps the last ${keepLast} successful exports of ${entry.vmKey})`);
  }

  /** The daemon log and the log of the job whose export it is. */
  async function tell(entry: ScheduleExport, level: "info" | "warn" | "error", message: string): Promise<void> {
    const fields = { scheduleId: entry.scheduleId, vm: entry.vmKey, dir: entry.dir, jobId: entry.jobId };
    logger[level](fields, message);
    try {
      await deps.appendJobLog(entry.jobId, { time: now(), level, message, fields });
    } catch (err) {
      // The job record may be gone (purged); the daemon log above has the line.
      logger.warn({ jobId: entry.jobId, err }, `retention: could not add to the log of job ${entry.jobId}: ${errorMessage(err)}`);
    }
  }

  return {
    jobCompleted(jobId) {
      // The lookup joins the queue too, so that idle() covers it (the engine's last completions at shutdown).
      queue = queue.then(async () => {
        const entry = await schedules.exports.byJob(jobId);
        if (entry) await apply(entry.scheduleId, entry.vmKey);
      }).catch((err: unknown) => {
        logger.error({ jobId, err }, `retention after job ${jobId} failed: ${errorMessage(err)}`);
      });
      return queue;
    },
    check(keys) {
      const seen = new Set<string>();
      for (const { scheduleId, vmKey } of keys) {
        const id = JSON.stringify([scheduleId, vmKey]);
        if (seen.has(id)) continue;
        seen.add(id);
        enqueue(scheduleId, vmKey);
      }
    },
    async sweep() {
      for (const { scheduleId, vmKey } of await schedules.exports.retainedKeys()) enqueue(scheduleId, vmKey);
    },
    idle: () => queue,
    stats: () => ({ ...stats }),
  };
}

/**
 * Why a recorded directory must not be deleted, "gone" when nothing is there, or undefined when it is
 * what the daemon wrote: a run directory named by the layout, right under `<output_dir>/<vm key>/`, inside
 * an allowed output root with no symbolic link on the way, itself a real directory (not a link).
 */
async function refusalOf(entry: ScheduleExport, roots: readonly string[]): Promise<string | undefined> {
  const { dir } = entry;
  if (!path.isAbsolute(dir) || path.normalize(dir) !== dir) return "the recorded path is not a normalized absolute path";
  if (!RUN_DIR_NAME.test(path.basename(dir))) return "its name is not a run directory's (YYYYMMDDTHHMMSSZ)";
  const vmDir = path.dirname(dir);
  if (path.basename(vmDir) !== entry.vmKey) return `it is not under the VM's directory ${entry.vmKey}`;
  const root = roots.find((r) => isBelow(dir, path.resolve(r)));
  if (!root) return `it is outside the allowed output roots (${roots.join(", ")})`;
  let stat;
  try {
    stat = await fs.lstat(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return "gone";
    throw err;
  }
  if (stat.isSymbolicLink()) return "it is a symbolic link";
  if (!stat.isDirectory()) return "it is not a directory";
  const [realRoot, realVmDir] = await Promise.all([fs.realpath(root), fs.realpath(vmDir)]);
  if (realVmDir !== path.join(realRoot, path.relative(path.resolve(root), vmDir))) {
    return `a symbolic link on the way leads to ${realVmDir}`;
  }
  return undefined;
}

/** Strictly inside `parent`. */
function isBelow(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel !== "" && rel !== ".." && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}
