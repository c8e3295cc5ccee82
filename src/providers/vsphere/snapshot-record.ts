import { recordedUrl, type VSphereSession } from "./session.ts";

/**
 * The snapshot a job makes of a running VM, as its checkpoint records it: written BEFORE CreateSnapshot_Task
 * (name and VM only), completed with the snapshot's moref once it exists, and dropped once it is removed. A run
 * that finds it continues from that snapshot; a job that will not run again has it removed (engine
 * releaseLeftovers), at its end and at every start until that works.
 *
 * Unlike a lease, a snapshot is an inventory object of the VM, not of the session that made it: any login of the
 * job's connection can remove it, so no session cookie is kept (one secret less in the store).
 */
export interface SnapshotRecord {
  /** `hypervisord-<job id>`: the only name this daemon ever removes by. */
  name: string;
  /** Moref value of the VM. */
  vm: string;
  vmName: string;
  /** SDK URL of the vCenter or host, without credentials (for messages, and to refuse another vCenter's moref). */
  url: string;
  /** Moref value of the VirtualMachineSnapshot, once CreateSnapshot_Task has returned it. */
  snapshot?: string;
  /** Whether the snapshot was quiesced (application-consistent). */
  quiesced?: boolean;
  /** Why the last removal failed; set while the removal is pending. */
  removeError?: string;
}

export function snapshotName(jobId: string): string {
  return `hypervisord-${jobId}`;
}

/** The record written before CreateSnapshot_Task. */
export function recordSnapshotStart(session: VSphereSession, jobId: string, vm: string, vmName: string): SnapshotRecord {
  return { name: snapshotName(jobId), vm, vmName, url: recordedUrl(session) };
}

/** The description CreateSnapshot_Task gets: who made the snapshot, so that an operator looking at the VM knows. */
export function snapshotDescription(jobId: string, jobName: string, daemon: string): string {
  return `Made by hypervisord (${daemon}) for export job ${jobId}${jobName ? ` "${jobName}"` : ""}; removed by it when the export ends.`;
}

/** Job.pending_cleanup while the removal is pending, e.g. `snapshot hypervisord-<id> (snapshot-67) on VM DC0_H0_VM0: ...; retrying`. */
export function pendingCleanupText(record: SnapshotRecord): string {
  const moref = record.snapshot ? ` (${record.snapshot})` : "";
  return `snapshot ${record.name}${moref} on VM ${record.vmName}: ${record.removeError ?? "removal pending"}; retrying`;
}
