import { runningVmPolicyOf, type Consistency, type JobDefinition, type RunningVmPolicy } from "../../domain/job.ts";
import { FailedPreconditionError, ShutdownError } from "../../errors.ts";
import type { ExportContext, SnapshotEvent } from "../provider.ts";
import type { ExportCheckpoint } from "./export-vm.ts";
import type { VSphereSession } from "./session.ts";
import { findSnapshot, removeSnapshotWithRetry, takeSnapshot } from "./snapshot.ts";
import { pendingCleanupText, recordSnapshotStart } from "./snapshot-record.ts";
import { runTask } from "./tasks.ts";
import type { MoRef } from "./xml.ts";

export interface SnapshotSettings {
  /** RemoveSnapshot_Task tries within a run before the removal is left to the daemon's background retries. */
  removeAttempts: number;
  /** Wait before the second try; doubles after each. */
  removeBackoffMs: number;
  onEvent?(event: SnapshotEvent): void;
}

/** What the disks are exported from: the VM itself, or a snapshot of it. */
export interface ExportSource {
  snapshot?: MoRef;
  consistency: Consistency;
  /** Quiescing failed and the snapshot is crash-consistent (quiesce_policy "fallback"). */
  warning?: string;
}

/**
 * Decides the source by power state and running_vm_policy. A powered-off VM is exported directly. A running (or
 * suspended: its disks are in use all the same) VM, with the "snapshot" policy, through the snapshot an earlier run of
 * this job made when it still exists (its content has not changed, so the bytes on disk stay valid), else through a
 * new one, recorded in the checkpoint before it is asked for. Any snapshot left in the checkpoint that is not used
 * is removed by dropSnapshot at the end of the run.
 */
export async function prepareSource(session: VSphereSession, vm: MoRef, vmName: string, powerState: string | undefined, definition: JobDefinition,
  checkpoint: ExportCheckpoint, context: ExportContext, settings: SnapshotSettings): Promise<ExportSource> {
  const policy = runningVmPolicyOf(definition);
  if (powerState === "poweredOff" || policy !== "snapshot") {
    if (powerState !== "poweredOff") await ensurePoweredOff(session, vm, vmName, powerState, policy, context);
    useSource(checkpoint, "vm", context);
    return { consistency: "powered_off" };
  }
  const recorded = checkpoint.snapshot;
  if (recorded && recorded.vm === vm.value) {
    const found = await findSnapshot(session, recorded, context.signal);
    if (found) {
      recorded.snapshot = found.snapshot.value;
      recorded.quiesced = found.quiesced;
      delete recorded.removeError;
      useSource(checkpoint, found.snapshot.value, context);
      context.logger.info({ snapshot: found.snapshot.value, name: recorded.name }, "continuing from the snapshot an earlier run of this job made");
      return { snapshot: found.snapshot, consistency: found.quiesced ? "application_consistent" : "crash_consistent" };
    }
    delete checkpoint.snapshot;
  } else if (recorded) {
    // The job's VM now resolves to another VM: the old snapshot is removed first, as nothing else would find it.
    await dropSnapshot(session, checkpoint, context, settings);
    if (checkpoint.snapshot) throw new FailedPreconditionError(`an earlier snapshot of this job (${checkpoint.snapshot.name}) could not be removed: ${checkpoint.snapshot.removeError}`, { retryable: true });
  }
  context.progress({ phase: "snapshot" });
  const record = recordSnapshotStart(session, context.jobId, vm.value, vmName);
  checkpoint.snapshot = record;
  context.saveCheckpoint(checkpoint);
  const taken = await takeSnapshot(session, vm, record, definition, context.jobId, context.signal);
  record.snapshot = taken.snapshot.value;
  record.quiesced = taken.quiesced;
  context.saveCheckpoint(checkpoint);
  const consistency: Consistency = taken.quiesced ? "application_consistent" : "crash_consistent";
  settings.onEvent?.({ kind: "created", consistency });
  // Cancelled or stopped while the snapshot was being made: it exists and is on record, and the run's end removes it.
  context.signal.throwIfAborted();
  if (taken.warning) context.logger.warn(taken.warning);
  context.logger.info({ snapshot: taken.snapshot.value, name: record.name, quiesced: taken.quiesced }, "snapshot taken; exporting its disks");
  useSource(checkpoint, taken.snapshot.value, context);
  return { snapshot: taken.snapshot, consistency, warning: taken.warning };
}

/** Bytes downloaded from another source are not resumed: the files start over (and a streamed OVA's layout with them). */
function useSource(checkpoint: ExportCheckpoint, source: string, context: ExportContext): void {
  if ((checkpoint.source ?? "vm") === source) return;
  if (Object.keys(checkpoint.files).length > 0) context.logger.info({ from: checkpoint.source ?? "vm", to: source }, "the export's source changed: files downloaded from the earlier one start over");
  checkpoint.files = {};
  delete checkpoint.ova;
  checkpoint.source = source;
  context.saveCheckpoint(checkpoint);
}

/**
 * Removes the checkpoint's snapshot at the end of a run (success, failure, cancel, shutdown), retried with backoff
 * (one try at shutdown: the grace period is short, and the resumed run continues from the snapshot). When it still
 * fails the record stays, with why: the job's warning is returned, and the daemon keeps trying (engine).
 */
export async function dropSnapshot(session: VSphereSession, checkpoint: ExportCheckpoint, context: ExportContext, settings: SnapshotSettings): Promise<string | undefined> {
  const record = checkpoint.snapshot;
  if (!record) return undefined;
  const shutdown = context.signal.aborted && context.signal.reason instanceof ShutdownError;
  const outcome = await removeSnapshotWithRetry(session, record, {
    attempts: shutdown ? 1 : settings.removeAttempts,
    backoffMs: settings.removeBackoffMs,
    logger: context.logger,
    onEvent: settings.onEvent,
    onRetry: (attempt, why) => {
      context.progress({ phase: "cleanup", currentFile: record.name });
      context.saveCheckpoint(checkpoint);
      context.logger.info({ attempt, err: why }, "retrying the snapshot's removal");
    },
  });
  if (outcome.outcome !== "failed") {
    delete checkpoint.snapshot;
    context.saveCheckpoint(checkpoint);
    return undefined;
  }
  context.saveCheckpoint(checkpoint);
  const warning = `the snapshot could not be removed yet: ${pendingCleanupText(record)} in the background (see the job's pending_cleanup)`;
  context.logger.warn(warning);
  return warning;
}

/** running_vm_policy "power_off" powers a running VM off first; "fail" refuses it. */
async function ensurePoweredOff(session: VSphereSession, vm: MoRef, name: string, state: string | undefined, policy: RunningVmPolicy, context: ExportContext): Promise<void> {
  if (state === "poweredOn" && policy === "power_off") {
    context.progress({ phase: "powering-off" });
    context.logger.info({ vm: vm.value }, "powering the VM off before export (running_vm_policy power_off)");
    await runTask(session, "PowerOffVM_Task", vm, context.signal);
    return;
  }
  throw new FailedPreconditionError(state === "poweredOn"
    ? `VM "${name}" is powered on and running_vm_policy is "${policy}"; use "snapshot" or "power_off", or shut it down`
    : `VM "${name}" is ${state ?? "in an unknown power state"}; only a powered-off VM can be exported with running_vm_policy "${policy}"`);
}
