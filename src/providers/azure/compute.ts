import { HypervisordError } from "../../errors.ts";
import { DISKS_API_VERSION } from "./api-versions.ts";
import { ArmError, type ArmClient } from "./arm-client.ts";

/**
 * Managed-disk operations of an export, each one ARM long-running operation. A resourceId is a disk
 * (".../Microsoft.Compute/disks/x") or a snapshot (".../Microsoft.Compute/snapshots/x").
 */

export interface SnapshotSpec {
  name: string;
  resourceGroup: string;
  location: string;
  sourceDiskId: string;
  /** Asked for; Azure refuses it for some disks (e.g. Ultra, or a region without it): a full snapshot is made then. */
  incremental: boolean;
}

/** Creates (or, under the same name, updates) a snapshot of a managed disk; `incremental` says what was made. */
export async function createSnapshot(arm: ArmClient, spec: SnapshotSpec, signal: AbortSignal): Promise<{ id: string; incremental: boolean }> {
  const path = `/subscriptions/${encodeURIComponent(arm.connection.subscriptionId)}/resourceGroups/${encodeURIComponent(spec.resourceGroup)}/providers/Microsoft.Compute/snapshots/${encodeURIComponent(spec.name)}`;
  const what = `creating snapshot ${spec.name} in ${spec.resourceGroup}`;
  const put = async (incremental: boolean) => {
    const body = {
      location: spec.location,
      sku: { name: "Standard_LRS" },
      properties: { creationData: { createOption: "Copy", sourceResourceId: spec.sourceDiskId }, incremental },
    };
    const made = await arm.longRunning<{ id?: string }>("PUT", path, { apiVersion: DISKS_API_VERSION, body, signal, what });
    return { id: made?.id || path, incremental };
  };
  if (!spec.incremental) return put(false);
  try {
    return await put(true);
  } catch (err) {
    if (err instanceof ArmError && err.status === 400 && /incremental/i.test(`${err.armCode} ${err.armMessage}`)) return put(false);
    throw err;
  }
}

/** Deletes a snapshot; "gone" when it no longer existed (deleted before, by us or anyone). */
export async function deleteSnapshot(arm: ArmClient, id: string, signal: AbortSignal): Promise<"deleted" | "gone"> {
  try {
    // ARM answers 204 to a DELETE of what does not exist, the same as some deletions: a GET tells them apart.
    await arm.request("GET", id, { apiVersion: DISKS_API_VERSION, signal, what: `reading ${describe(id)}` });
    await arm.longRunning<void>("DELETE", id, { apiVersion: DISKS_API_VERSION, signal, what: `deleting ${describe(id)}` });
    return "deleted";
  } catch (err) {
    if (err instanceof ArmError && err.code === "NOT_FOUND") return "gone";
    throw err;
  }
}

/** A read SAS URL of the disk's or snapshot's VHD page blob, valid `seconds`. The URL is a credential: never logged. */
export async function grantAccess(arm: ArmClient, resourceId: string, seconds: number, signal: AbortSignal): Promise<string> {
  const what = `granting read access to ${describe(resourceId)}`;
  const result = await arm.longRunning<{ accessSAS?: string }>("POST", `${resourceId}/beginGetAccess`, {
    apiVersion: DISKS_API_VERSION,
    body: { access: "Read", durationInSeconds: Math.max(1, Math.round(seconds)) },
    signal,
    what,
  });
  if (typeof result?.accessSAS !== "string" || !/^https?:\/\//.test(result.accessSAS)) {
    throw new HypervisordError("INTERNAL", `${what}: Azure's answer has no accessSAS URL`, { retryable: true });
  }
  return result.accessSAS;
}

/** Ends the access beginGetAccess opened (the SAS stops working); "gone" when the disk or snapshot no longer exists. */
export async function revokeAccess(arm: ArmClient, resourceId: string, signal: AbortSignal): Promise<"revoked" | "gone"> {
  try {
    await arm.longRunning<unknown>("POST", `${resourceId}/endGetAccess`, { apiVersion: DISKS_API_VERSION, signal, what: `ending read access to ${describe(resourceId)}` });
    return "revoked";
  } catch (err) {
    if (err instanceof ArmError && err.code === "NOT_FOUND") return "gone";
    throw err;
  }
}

/** "snapshot x in rg1" / "disk x in rg1", for errors. */
function describe(id: string): string {
  const kind = /\/snapshots\//i.test(id) ? "snapshot" : "disk";
  const group = /\/resourceGroups\/([^/]+)/i.exec(id)?.[1] ?? "?";
  return `${kind} ${id.slice(id.lastIndexOf("/") + 1)} in ${group}`;
}
