import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import type { SnapshotEvent } from "../provider.ts";
import type { ArmClient } from "./arm-client.ts";
import { deleteSnapshot, revokeAccess } from "./compute.ts";

/**
 * What an Azure export holds in the subscription while it runs, as its checkpoint records it: each snapshot is
 * written down BEFORE it is asked for (its id follows from its name), each read access before beginGetAccess. A
 * run ends every access and deletes every snapshot on record when it ends (success, failure, cancel, shutdown);
 * a process that was killed leaves the records, and the next run (or, for a job that will not run again, the
 * daemon's background cleanup) releases them.
 */
export interface HeldResources {
  /** Managed-disk snapshots this job made (resource ids), with why the last removal failed. */
  snapshots?: { id: string; disk: string; removeError?: string }[];
  /** Disks or snapshots (resource ids) with a read access (SAS) granted to this job. */
  grants?: string[];
}

export interface ReleaseSettings {
  /** Tries per snapshot removal within a run (1 at shutdown). */
  removeAttempts: number;
  removeBackoffMs: number;
  onSnapshot?(event: SnapshotEvent): void;
}

/** `hypervisord-<job id>-<n>`: the only names this daemon deletes snapshots by. */
export function snapshotName(jobId: string, index: number): string {
  return `hypervisord-${jobId}-${index + 1}`;
}

/**
 * Ends every recorded access, then deletes every recorded snapshot (Azure refuses to delete a snapshot whose
 * SAS is still open). Each record is dropped once its resource is gone; `save` persists the records after each
 * change. Returns what is still held, as Job.pending_cleanup words it, or undefined when nothing is.
 */
export async function releaseHeld(arm: ArmClient, held: HeldResources, settings: ReleaseSettings, logger: Logger, save: () => void): Promise<string | undefined> {
  for (const id of [...(held.grants ?? [])]) {
    try {
      const outcome = await revokeAccess(arm, id, AbortSignal.timeout(120_000));
      held.grants = held.grants!.filter((g) => g !== id);
      save();
      logger.info({ resource: id, outcome }, "read access ended");
    } catch (err) {
      logger.warn({ resource: id, err: (err as Error).message }, "could not end the read access; trying again later");
    }
  }
  if ((held.grants ?? []).length > 0) {
    for (const snapshot of held.snapshots ?? []) snapshot.removeError = "waiting for its read access to end";
    save();
    return pendingCleanup(held);
  }
  delete held.grants;
  for (const snapshot of [...(held.snapshots ?? [])]) {
    const removed = await deleteWithRetry(arm, snapshot.id, settings, logger);
    if (removed.ok) {
      held.snapshots = held.snapshots!.filter((s) => s !== snapshot);
      if (removed.outcome === "deleted") settings.onSnapshot?.({ kind: "removed" });
      logger.info({ snapshot: snapshot.id, outcome: removed.outcome }, "snapshot deleted");
    } else {
      snapshot.removeError = removed.why;
      settings.onSnapshot?.({ kind: "removal_failed" });
      logger.warn({ snapshot: snapshot.id, err: removed.why }, "could not delete the snapshot; trying again later");
    }
    save();
  }
  if ((held.snapshots ?? []).length === 0) delete held.snapshots;
  save();
  return pendingCleanup(held);
}

async function deleteWithRetry(arm: ArmClient, id: string, settings: ReleaseSettings, logger: Logger): Promise<{ ok: true; outcome: "deleted" | "gone" } | { ok: false; why: string }> {
  let why = "";
  for (let attempt = 1; attempt <= settings.removeAttempts; attempt++) {
    if (attempt > 1) {
      logger.info({ snapshot: id, attempt, err: why }, "retrying the snapshot's deletion");
      await sleep(settings.removeBackoffMs * 2 ** (attempt - 2));
    }
    try {
      return { ok: true, outcome: await deleteSnapshot(arm, id, AbortSignal.timeout(300_000)) };
    } catch (err) {
      why = (err as Error).message;
    }
  }
  return { ok: false, why };
}

/** e.g. `snapshot hypervisord-<job>-1 of disk web-01-os: <why>; retrying`; undefined when nothing is held. */
export function pendingCleanup(held: HeldResources | undefined): string | undefined {
  const parts = [
    ...(held?.grants ?? []).map((id) => `read access to ${lastSegment(id)}`),
    ...(held?.snapshots ?? []).map((s) => `snapshot ${lastSegment(s.id)} of disk ${lastSegment(s.disk)}${s.removeError ? `: ${s.removeError}` : ""}`),
  ];
  return parts.length > 0 ? `${parts.join("; ")}; retrying` : undefined;
}

function lastSegment(id: string): string {
  return id.slice(id.lastIndexOf("/") + 1);
}
