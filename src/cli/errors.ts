import { Code, ConnectError } from "@connectrpc/connect";

/** A mistake in how hyperctl was called: exit code 2, like commander's own usage errors. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** A problem with a local input (a file that cannot be read or parsed): exit code 1. */
export class InputError extends Error {
  override name = "InputError";
}

const NETWORK_CODES: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host not found (DNS lookup failed)",
  ETIMEDOUT: "connection timed out",
  ECONNRESET: "connection reset",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  EPROTO: "TLS handshake failed (is it an https:// or grpcs:// listener?)",
  DEPTH_ZERO_SELF_SIGNED_CERT: "self-signed certificate: pass --tls-ca FILE (or --insecure)",
  SELF_SIGNED_CERT_IN_CHAIN: "certificate signed by an unknown CA: pass --tls-ca FILE",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "certificate signed by an unknown CA: pass --tls-ca FILE",
  ERR_TLS_CERT_ALTNAME_INVALID: "the certificate does not name this host",
};

/** The Node error codes (ECONNREFUSED, ...) along an error's cause chain. */
function causeCodes(error: unknown): string[] {
  const codes: string[] = [];
  for (let e = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") codes.push(code);
  }
  return codes;
}

/** What the error message may mention about the call's target. */
export interface ErrorContext {
  server: string;
  /** Whether a key was sent: UNAUTHENTICATED then means a bad key rather than a missing one. */
  apiKeyGiven: boolean;
}

/** The one line hyperctl prints for a failure (without the "hyperctl: " prefix), and the exit code. */
export function describeError(error: unknown, { server, apiKeyGiven }: ErrorContext): { message: string; exitCode: number } {
  if (error instanceof UsageError) return { message: error.message, exitCode: 2 };
  if (!(error instanceof ConnectError)) return { message: error instanceof Error ? error.message : String(error), exitCode: 1 };
  const raw = error.rawMessage;
  const message = ((): string => {
    switch (error.code) {
      case Code.Unavailable: {
        const known = causeCodes(error).map((code) => NETWORK_CODES[code]).find(Boolean);
        return `cannot reach hypervisord at ${server}: ${known ?? raw}`;
      }
      case Code.Unauthenticated:
        return apiKeyGiven ? `unauthenticated: ${raw}: check --api-key or HYPERVISORD_API_KEY` : "unauthenticated: pass --api-key or set HYPERVISORD_API_KEY";
      case Code.PermissionDenied:
        return `permission denied: ${raw}`;
      case Code.DeadlineExceeded:
        return `hypervisord at ${server} did not answer in time (deadline exceeded; see --timeout)`;
      case Code.Unimplemented:
        return `hypervisord at ${server} does not implement this call (${raw}); it may be older than hyperctl`;
      case Code.InvalidArgument:
      case Code.NotFound:
      case Code.AlreadyExists:
      case Code.FailedPrecondition:
        return raw;
      default: {
        const known = causeCodes(error).map((code) => NETWORK_CODES[code]).find(Boolean);
        return known ? `connection to hypervisord at ${server} failed: ${known}` : `${codeName(error.code)}: ${raw}`;
      }
    }
  })();
  return { message, exitCode: 1 };
}

/** Code.ResourceExhausted -> "resource exhausted". */
function codeName(code: Code): string {
  return (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
}
