import os from "node:os";
import type { Logger } from "pino";
import type { JobDefinition } from "../../domain/job.ts";
import { FailedPreconditionError, toHypervisordError } from "../../errors.ts";
import { VERSION } from "../../version.ts";
import type { SnapshotEvent } from "../provider.ts";
import { VSphereFault } from "./faults.ts";
import { retrieveOne } from "./property-collector.ts";
import type { VSphereSession } from "./session.ts";
import { snapshotDescription, type SnapshotRecord } from "./snapshot-record.ts";
import { runTask } from "./tasks.ts";
import { children, moRefOf, textOf, type MoRef, type XmlNode } from "./xml.ts";

/** A snapshot's creation is waited for this long at most (quiescing a busy guest can take minutes). */
const CREATE_TIMEOUT_MS = 30 * 60_000;

/** Faults a host answers when it cannot quiesce the guest (VMware Tools missing, a freeze timing out, a pre-freeze script failing). */
const QUIESCE_FAULTS = new Set(["FilesystemQuiesceFault", "ApplicationQuiesceFault", "ToolsUnavailable"]);

export interface TakenSnapshot {
  snapshot: MoRef;
  quiesced: boolean;
  /** Set when quiescing failed and the snapshot was taken without (quiesce_policy "fallback"). */
  warning?: string;
}

/**
 * CreateSnapshot_Task without memory, quiesced unless the job says quiesce false. The caller has recorded the
 * snapshot's name in the checkpoint before this is called. When the host cannot quiesce, quiesce_policy decides:
 * "fallback" takes it again without quiescing (crash-consistent, with a warning), "fail" fails the job for good.
 */
export async function takeSnapshot(session: VSphereSession, vm: MoRef, record: SnapshotRecord, definition: JobDefinition, jobId: string, signal: AbortSignal): Promise<TakenSnapshot> {
  const description = snapshotDescription(jobId, definition.name, `${VERSION} on ${os.hostname()}, pid ${process.pid}`);
  // Not cut short by a cancel: a task the host goes on with after we stop waiting would make a snapshot that a
  // search by name right away cannot see yet. Waited for, then removed by moref like any other; `signal` is
  // checked once it exists. A shutdown that cannot wait that long leaves the job running: resumed after the start.
  const create = async (quiesce: boolean): Promise<MoRef> => {
    const result = await runTask(session, "CreateSnapshot_Task", vm, AbortSignal.timeout(CREATE_TIMEOUT_MS), [
      ["name", record.name], ["description", description], ["memory", false], ["quiesce", quiesce],
    ]);
    const snapshot = moRefOf(result);
    if (!snapshot?.value) throw new FailedPreconditionError(`CreateSnapshot_Task on ${vm.value} returned no snapshot`);
    return { type: "VirtualMachineSnapshot", value: snapshot.value };
  };
  const quiesce = definition.quiesce ?? true;
  try {
    return { snapshot: await create(quiesce), quiesced: quiesce };
  } catch (err) {
    if (!quiesce || !(err instanceof VSphereFault) || !QUIESCE_FAULTS.has(err.faultType)) throw err;
    signal.throwIfAborted();
    if ((definition.quiescePolicy ?? "fallback") === "fail") {
      throw new FailedPreconditionError(`VM "${record.vmName}" could not be quiesced for its snapshot (${err.faultType}), and quiesce_policy is "fail": `
        + 'fix VMware Tools in the guest, or set quiesce_policy "fallback" to accept a crash-consistent copy', { cause: err });
    }
    const warning = `VM "${record.vmName}" could not be quiesced (${err.faultType}); the snapshot was taken again without quiescing, `
      + 'so the export is crash-consistent, not application-consistent (quiesce_policy "fallback")';
    return { snapshot: await create(false), quiesced: false, warning };
  }
}

export interface FoundSnapshot {
  snapshot: MoRef;
  quiesced: boolean;
}

/**
 * The recorded snapshot in the VM's snapshot tree: by its moref, or (when the run that made it was killed before
 * CreateSnapshot_Task returned) by its exact name. Nothing else is ever matched. undefined: it is gone (or the VM is).
 */
export async function findSnapshot(session: VSphereSession, record: SnapshotRecord, signal: AbortSignal): Promise<FoundSnapshot | undefined> {
  let found;
  try {
    found = await retrieveOne(session, { type: "VirtualMachine", value: record.vm }, ["snapshot"], signal);
  } catch (err) {
    if (err instanceof VSphereFault && err.faultType === "ManagedObjectNotFound") return undefined;
    throw err;
  }
  const info = found?.props.get("snapshot");
  const match = (tree: XmlNode): boolean => {
    const moref = moRefOf(children(tree, "snapshot")[0]);
    return record.snapshot ? moref?.value === record.snapshot : textOf(tree, "name") === record.name;
  };
  const stack = [...children(info, "rootSnapshotList")];
  while (stack.length > 0) {
    const tree = stack.pop()!;
    if (match(tree)) {
      return { snapshot: { type: "VirtualMachineSnapshot", value: moRefOf(children(tree, "snapshot")[0])!.value }, quiesced: textOf(tree, "quiesced") === "true" };
    }
    stack.push(...children(tree, "childSnapshotList"));
  }
  return undefined;
}

export type RemoveOutcome = { outcome: "removed" | "gone" } | { outcome: "failed"; why: string };

/**
 * RemoveSnapshot_Task (removeChildren false: a snapshot an operator took meanwhile under ours stays;
 * consolidate true: the delta is merged back). Found first by moref or name, so that nothing else is removed.
 */
export async function removeSnapshot(session: VSphereSession, record: SnapshotRecord, timeoutMs = 120_000): Promise<RemoveOutcome> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const found = await findSnapshot(session, record, signal);
    if (!found) return { outcome: "gone" };
    record.snapshot = found.snapshot.value;
    await runTask(session, "RemoveSnapshot_Task", found.snapshot, signal, [["removeChildren", false], ["consolidate", true]]);
    return { outcome: "removed" };
  } catch (err) {
    if (err instanceof VSphereFault && (err.faultType === "ManagedObjectNotFound" || err.faultType === "NotFound")) return { outcome: "gone" };
    const fault = err instanceof VSphereFault ? err.faultType : toHypervisordError(err).message;
    return { outcome: "failed", why: `RemoveSnapshot_Task failed: ${fault}` };
  }
}

export interface RemoveRetryOptions {
  attempts: number;
  /** Wait before the second try; doubles after each. */
  backoffMs: number;
  logger: Logger;
  onEvent?(event: SnapshotEvent): void;
  /** Before each wait: the job shows its cleanup phase. */
  onRetry?(attempt: number, why: string): void;
}

/** Removal retried with backoff within a run; the last outcome (the record's removeError set when it failed). */
export async function removeSnapshotWithRetry(session: VSphereSession, record: SnapshotRecord, options: RemoveRetryOptions): Promise<RemoveOutcome> {
  let delay = options.backoffMs;
  for (let attempt = 1; ; attempt++) {
    const result = await removeSnapshot(session, record);
    if (result.outcome !== "failed") {
      if (result.outcome === "removed") options.onEvent?.({ kind: "removed" });
      options.logger.info({ snapshot: record.snapshot, name: record.name, outcome: result.outcome }, result.outcome === "removed" ? "snapshot removed" : "the snapshot was already gone");
      delete record.removeError;
      return result;
    }
    record.removeError = result.why;
    options.onEvent?.({ kind: "removal_failed" });
    options.logger.warn({ snapshot: record.snapshot, name: record.name, attempt, attempts: options.attempts, err: result.why }, "snapshot removal failed");
    if (attempt >= options.attempts) return result;
    options.onRetry?.(attempt, result.why);
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay *= 2;
  }
}
