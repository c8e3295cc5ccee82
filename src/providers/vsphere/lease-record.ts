import type { Logger } from "pino";
import type { SecretSealer } from "../provider.ts";
import { abortLease, type AbortOutcome } from "./lease.ts";
import { createSoapClient } from "./soap-client.ts";
import { recordedUrl, type VSphereSession } from "./session.ts";
import type { MoRef } from "./xml.ts";

/**
 * An export lease as the job's checkpoint records it while the lease is held, so that the next run (a retry, or a
 * resume after kill -9) or a restarted daemon can abort it instead of leaving it to time out on the host.
 */
export interface LeaseRecord {
  /** Moref value of the HttpNfcLease. */
  lease: string;
  /** SDK URL of the vCenter or host that holds it. */
  url: string;
  /**
   * The vmware_soap_session cookie of the session that made it: a lease is an object of its session, and no other
   * session (not even a new login of the same user) can abort it. Sealed with the daemon's encryption key when
   * the provider has one; it is worthless once that session is logged out, which the abort does.
   */
  session?: string;
  sealed?: boolean;
}

export function recordLease(session: VSphereSession, lease: MoRef, box: SecretSealer | undefined): LeaseRecord {
  const cookie = session.soap.cookie;
  return { lease: lease.value, url: recordedUrl(session), ...(cookie && { session: box ? box.seal(cookie) : cookie, sealed: box !== undefined }) };
}

/**
 * Aborts a recorded lease. In its own session when the record has one that is not the current one (an earlier
 * process, or an earlier login): that orphaned session is logged out afterwards, as vCenter caps sessions per user.
 * Otherwise, or when that session is gone, through the current session.
 */
export async function abortRecordedLease(record: LeaseRecord, current: VSphereSession, box: SecretSealer | undefined, logger: Logger): Promise<AbortOutcome> {
  const lease: MoRef = { type: "HttpNfcLease", value: record.lease };
  const cookie = openCookie(record, box, logger);
  if (cookie && cookie !== current.soap.cookie) {
    const orphan = createSoapClient(new URL(record.url), current.agent, 10_000, cookie);
    const result = await abortLease(orphan, lease);
    if (result.outcome !== "unreachable") {
      await orphan.call("Logout", [["_this", current.content.sessionManager]], AbortSignal.timeout(5_000)).then(
        () => logger.info({ lease: record.lease }, "logged out the vSphere session an earlier run left behind"),
        (err: unknown) => logger.debug({ err: (err as Error).message }, "the vSphere session an earlier run left behind had already ended"),
      );
    }
    if (result.outcome !== "gone") return result;
  }
  return abortLease(current, lease);
}

function openCookie(record: LeaseRecord, box: SecretSealer | undefined, logger: Logger): string | undefined {
  if (!record.session || !record.sealed) return record.session;
  if (!box) {
    logger.warn({ lease: record.lease }, "the recorded lease's session is sealed and the provider has no encryption key; trying the current session");
    return undefined;
  }
  try {
    return box.open(record.session);
  } catch (err) {
    logger.warn({ lease: record.lease, err: (err as Error).message }, "the recorded lease's session does not decrypt; trying the current session");
    return undefined;
  }
}
