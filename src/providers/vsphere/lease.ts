import { HypervisordError, UnavailableError, toHypervisordError } from "../../errors.ts";
import { VSphereFault } from "./faults.ts";
import { retrieveOne } from "./property-collector.ts";
import type { SoapClient } from "./soap-client.ts";
import type { VSphereSession } from "./session.ts";
import { child, children, textOf, type MoRef, type XmlNode } from "./xml.ts";

export interface LeaseDevice {
  key: string;
  /** With "*" replaced by the host the session talks to. */
  url: string;
  disk: boolean;
  targetId: string;
}

export interface LeaseInfo {
  devices: LeaseDevice[];
  /** Seconds without HttpNfcLeaseProgress after which the server expires the lease. */
  timeoutSeconds: number;
}

export interface ManifestEntry {
  key: string;
  sha1: string;
  size: number;
}

/** Waits for an HttpNfcLease to leave "initializing"; throws its error if it ends in "error". */
export async function waitForLease(session: VSphereSession, lease: MoRef, signal: AbortSignal): Promise<LeaseInfo> {
  // Polled from 25 ms, doubling to 1 s: a lease that gets ready within a second (the usual case) is seen
  // within tens of milliseconds of it, for a handful of small property reads.
  for (let delay = 25; ; delay = Math.min(delay * 2, 1000)) {
    const content = await retrieveOne(session, lease, ["state", "info", "error"], signal);
    const state = content?.props.get("state")?.text;
    if (state === "ready") return leaseInfoOf(content!.props.get("info"), session.soap.url.host);
    if (state === "error" || state === "done" || !content) {
      const message = textOf(content?.props.get("error"), "localizedMessage") || `lease is ${state ?? "gone"}`;
      throw new UnavailableError(`the export lease at ${session.soap.endpoint} failed: ${message}`);
    }
    await new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, delay);
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(signal.reason);
      }, { once: true });
    });
  }
}

export async function leaseState(session: VSphereSession, lease: MoRef, signal: AbortSignal): Promise<string> {
  return (await retrieveOne(session, lease, ["state"], signal))?.props.get("state")?.text ?? "gone";
}

function leaseInfoOf(info: XmlNode | undefined, host: string): LeaseInfo {
  if (!info) throw new HypervisordError("INTERNAL", "the export lease is ready but has no info");
  return {
    devices: children(info, "deviceUrl").map((d) => ({
      key: textOf(d, "key"),
      url: textOf(d, "url").replace("://*/", `://${host}/`).replace("://*:", `://${host.split(":")[0]}:`),
      disk: textOf(d, "disk") === "true",
      targetId: textOf(d, "targetId"),
    })),
    timeoutSeconds: Number(textOf(info, "leaseTimeout") || 300),
  };
}

/** The server's own checksums of the lease's files (when it offers them). */
export async function leaseManifest(session: VSphereSession, lease: MoRef, signal: AbortSignal): Promise<ManifestEntry[]> {
  const response = await session.call("HttpNfcLeaseGetManifest", [["_this", lease]], signal);
  return children(response, "returnval").map((e) => ({ key: textOf(e, "key"), sha1: textOf(e, "sha1").toLowerCase(), size: Number(textOf(e, "size") || 0) }));
}

/**
 * How often HttpNfcLeaseProgress is sent: a quarter of the lease timeout (three calls may fail before the lease
 * expires), at most 30 s. The same call is the session's only SOAP traffic while the disks stream over NFC, so it
 * also keeps the session from idling out: a lease is an object of the session that made it, and a session that
 * expires takes the lease with it (a new login cannot complete or abort it). The client cannot read vCenter's idle
 * timeout (30 min by default, 5-15 min on hardened vCenters): 30 s stays well under any such setting.
 */
export function keepAliveIntervalMs(timeoutSeconds: number): number {
  return Math.min(30_000, Math.max(500, (timeoutSeconds * 1000) / 4));
}

/**
 * Keeps a lease alive with HttpNfcLeaseProgress well inside its timeout, in the session that holds it, reporting
 * the real percentage. Returns the stop function.
 */
export function keepLeaseAlive(session: VSphereSession, lease: MoRef, timeoutSeconds: number, percent: () => number, onError: (err: unknown) => void): () => void {
  const everyMs = keepAliveIntervalMs(timeoutSeconds);
  const timer = setInterval(() => {
    const value = Math.max(0, Math.min(99, Math.floor(percent())));
    session.call("HttpNfcLeaseProgress", [["_this", lease], ["percent", value]], AbortSignal.timeout(everyMs * 2)).catch(onError);
  }, everyMs);
  return () => clearInterval(timer);
}

export async function completeLease(session: VSphereSession, lease: MoRef, signal: AbortSignal): Promise<void> {
  await session.call("HttpNfcLeaseComplete", [["_this", lease]], signal);
}

/**
 * What HttpNfcLeaseAbort achieved. "gone": the server does not know the lease in that session any more (it ended,
 * timed out, or its session ended), or refuses the abort for good: trying again cannot help. "unreachable": the
 * call did not get through (vCenter down): the lease may still be held and the abort is worth trying again.
 */
export type AbortOutcome = { outcome: "aborted" } | { outcome: "gone" | "unreachable"; why: string };

/** Faults that mean the lease is no longer held in the session that asked. */
const GONE_FAULTS = new Set(["ManagedObjectNotFound", "NotAuthenticated", "InvalidState"]);

/** HttpNfcLeaseAbort through a session, or a bare SOAP client in a recorded session (no re-login: a new session cannot see the lease). */
export async function abortLease(via: Pick<SoapClient, "call">, lease: MoRef): Promise<AbortOutcome> {
  try {
    await via.call("HttpNfcLeaseAbort", [["_this", lease]], AbortSignal.timeout(10_000));
    return { outcome: "aborted" };
  } catch (err) {
    const why = (err as Error).message;
    if (err instanceof VSphereFault && GONE_FAULTS.has(err.faultType)) return { outcome: "gone", why };
    return { outcome: toHypervisordError(err).retryable ? "unreachable" : "gone", why };
  }
}

export function describeFault(node: XmlNode | undefined): string {
  return textOf(node, "localizedMessage") || child(node, "fault")?.type || "unknown error";
}
