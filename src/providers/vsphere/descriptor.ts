import { HypervisordError } from "../../errors.ts";
import type { VSphereSession } from "./session.ts";
import { child, children, element, textOf, type MoRef } from "./xml.ts";

export interface OvfFile {
  /** The lease device key the file came from. */
  deviceId: string;
  /** The file name as written next to the descriptor. */
  path: string;
  size: number;
}

/**
 * OvfManager.CreateDescriptor with the files as written (real sizes), so that
 * References, fileRefs and the NVRAM ExtraConfig point at what is on disk. `obj` is always the VM, also for
 * ExportSnapshot (cdp.snapshot then names the snapshot).
 */
export async function createDescriptor(session: VSphereSession, vm: MoRef, name: string, files: readonly OvfFile[], includeImageFiles: boolean, signal: AbortSignal, snapshot?: MoRef): Promise<string> {
  const ovfManager = session.content.ovfManager;
  if (!ovfManager) throw new HypervisordError("FAILED_PRECONDITION", `${session.soap.endpoint} has no OvfManager; cannot write an OVF descriptor`);
  const cdp = element([
    ["ovfFiles", files.map((f) => element([["deviceId", f.deviceId], ["path", f.path], ["size", f.size]]))],
    ["name", name],
    ["includeImageFiles", includeImageFiles],
    // A snapshot's export: the OVF describes the VM as the snapshot has it (the lease's device keys are the VM's).
    ["snapshot", snapshot],
  ]);
  const result = child(await session.call("CreateDescriptor", [["_this", ovfManager], ["obj", vm], ["cdp", cdp]], signal), "returnval");
  const errors = children(result, "error").map((e) => textOf(e, "localizedMessage") || e.type || "error");
  if (errors.length > 0) throw new HypervisordError("INTERNAL", `CreateDescriptor for ${vm.value} failed: ${errors.join("; ")}`);
  const descriptor = textOf(result, "ovfDescriptor");
  if (!descriptor) throw new HypervisordError("INTERNAL", `CreateDescriptor for ${vm.value} returned no descriptor`);
  return descriptor;
}
