import { HypervisordError } from "../../errors.ts";
import { VSphereFault } from "./faults.ts";
import { describeFault } from "./lease.ts";
import { retrieveOne } from "./property-collector.ts";
import type { VSphereSession } from "./session.ts";
import type { SoapParams } from "./soap-client.ts";
import { child, moRefOf, type MoRef, type XmlNode } from "./xml.ts";

/**
 * Starts a *_Task method and waits for the task to succeed; returns its `info.result` (e.g. the snapshot that
 * CreateSnapshot_Task made). A task that ends in error throws a VSphereFault carrying the task's fault type
 * (FileLocked, FilesystemQuiesceFault...), FAILED_PRECONDITION, with the fault's message.
 */
export async function runTask(session: VSphereSession, method: string, target: MoRef, signal: AbortSignal, params: SoapParams = []): Promise<XmlNode | undefined> {
  const task = moRefOf(child(await session.call(method, [["_this", target], ...params], signal), "returnval"));
  if (!task) throw new HypervisordError("INTERNAL", `${method} returned no task`);
  for (let delay = 100; ; delay = Math.min(delay * 2, 1000)) {
    const info = await retrieveOne(session, task, ["info.state", "info.error", "info.result"], signal);
    const state = info?.props.get("info.state")?.text;
    if (state === "success") return info?.props.get("info.result");
    if (state === "error") {
      const error = info?.props.get("info.error");
      const faultType = child(error, "fault")?.type ?? "TaskError";
      throw new VSphereFault(faultType, `${method} on ${target.value} failed: ${describeFault(error)}`, "FAILED_PRECONDITION", false);
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    if (signal.aborted) throw signal.reason;
  }
}
