import { Code, ConnectError } from "@connectrpc/connect";

/** hyperctl's exit codes; EXIT_CODES_HELP below lists them for `hyperctl --help`. */
export const EXIT = {
  OK: 0,
  /** An error (the daemon refused the call, a local file was unreadable), or the watched job or batch failed. */
  FAILED: 1,
  /** A usage error (commander's own code); also a watched job or batch that was cancelled. */
  USAGE: 2,
  CANCELLED: 2,
  /** The daemon could not be reached, or was lost while watching and not regained. */
  UNREACHABLE: 3,
  /** Ctrl-C while watching (the job goes on). */
  INTERRUPTED: 130,
} as const;

export const EXIT_CODES_HELP = `Exit codes:
  0    ok; the watched job or batch completed
  1    error: the daemon refused or failed the call, a local file could not be read; the watched job
       failed, or the watched batch failed or partially failed
  2    usage error (unknown command or option, bad value); the watched job or batch was cancelled
  3    the daemon could not be reached (connection refused, host not found, TLS), or it went away
       while watching and did not come back within a few seconds
  130  Ctrl-C while watching (the job or batch goes on)`;

/** A mistake in how hyperctl was called: exit code 2, like commander's own usage errors. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** A problem with a local input (a file that cannot be read or parsed): exit code 1. */
export class InputError extends Error {
  override name = "InputError";
}

/** The daemon went away while hyperctl followed something and did not come back in time: exit code 3. */
export class DaemonUnreachable extends Error {
  override name = "DaemonUnreachable";
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
  HPE_INVALID_CONSTANT: "the answer is not HTTP/1.1 (is it the gRPC listener? use grpc://host:port)",
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

/**
 * What went wrong on the way to the daemon, when the call never got its answer: hyperctl's own transport
 * failed with a Node error (ECONNREFUSED, ...). An error the daemon sent (it may be UNAVAILABLE too, e.g.
 * vCenter unreachable from the daemon) arrives as a status and carries no such cause: undefined then.
 */
export function transportProblem(error: ConnectError): string | undefined {
  const codes = causeCodes(error);
  if (codes.length === 0) return undefined;
  return codes.map((code) => NETWORK_CODES[code]).find(Boolean) ?? error.rawMessage;
}

/** The "cannot reach hypervisord at X: ..." line of a failure to reach the daemon. */
export function unreachableMessage(server: string, error: ConnectError): string {
  return `cannot reach hypervisord at ${server}: ${transportProblem(error) ?? error.rawMessage}`;
}

/** What the error message may mention about the call's target. */
export interface ErrorContext {
  server: string;
  /** Whether a key was sent: UNAUTHENTICATED then means a bad key rather than a missing one. */
  apiKeyGiven: boolean;
}

/** The one line hyperctl prints for a failure (without the "hyperctl: " prefix), and the exit code. */
export function describeError(error: unknown, { server, apiKeyGiven }: ErrorContext): { message: string; exitCode: number } {
  if (error instanceof UsageError) return { message: error.message, exitCode: EXIT.USAGE };
  if (error instanceof DaemonUnreachable) return { message: error.message, exitCode: EXIT.UNREACHABLE };
  if (!(error instanceof ConnectError)) return { message: error instanceof Error ? error.message : String(error), exitCode: EXIT.FAILED };
  const transport = transportProblem(error);
  if (transport) {
    const message = error.code === Code.Unavailable ? unreachableMessage(server, error) : `connection to hypervisord at ${server} failed: ${transport}`;
    return { message, exitCode: EXIT.UNREACHABLE };
  }
  // From here on the daemon answered: its message is passed through. Only UNAUTHENTICATED is about the caller's
  // API key (the daemon reports vCenter refusing its login as FAILED_PRECONDITION naming vSphere), so only it gets the hint.
  const raw = error.rawMessage;
  const message = ((): string => {
    switch (error.code) {
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
      default:
        return `${codeName(error.code)}: ${raw}`;
    }
  })();
  return { message, exitCode: EXIT.FAILED };
}

/** Code.ResourceExhausted -> "resource exhausted". */
function codeName(code: Code): string {
  return (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
}
