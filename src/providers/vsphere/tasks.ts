import { HypervisordError } from "../../errors.ts";
import { describeFault } from "./lease.ts";
import { retrieveOne } from "./property-collector.ts";
import type { VSphereSession } from "./session.ts";
import type { SoapParams } from "./soap-client.ts";
import { child, moRefOf, type MoRef } from "./xml.ts";

/** Starts a *_Task method and waits for the task to succeed; its error becomes the thrown message. */
export async function runTask(session: VSphereSession, method: string, target: MoRef, signal: AbortSignal, params: SoapParams = []): Promise<void> {
  const task = moRefOf(child(await session.call(method, [["_this", target], ...params], signal), "returnval"));
  if (!task) throw new HypervisordError("INTERNAL", `${method} returned no task`);
  for (let delay = 100; ; delay = Math.min(delay * 2, 1000)) {
    const info = await retrieveOne(session, task, ["info.state", "info.error"], signal);
    const state = info?.props.get("info.state")?.text;
    if (state === "success") return;
    if (state === "error") {
      throw new HypervisordError("FAILED_PRECONDITION", `${method} on ${target.value} failed: ${describeFault(info?.props.get("info.error"))}`);
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    if (signal.aborted) throw signal.reason;
  }
}
