import type { Logger } from "pino";
import { HypervisordError, type ErrorCode } from "../errors.ts";

export interface CallStatus {
  code: ErrorCode;
  /** The numeric status code, the same for gRPC and Connect. */
  number: number;
  message: string;
  /** When the caller may try again (a rate limit): sent as retry-after and grpc-retry-pushback-ms. */
  retryAfterMs?: number;
}

const CODE_NUMBERS: Record<ErrorCode, number> = {
  CANCELLED: 1,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
};

/**
 * The one mapping from failures to call statuses, used by both transports.
 * Unknown errors become INTERNAL with a generic message (logged with their
 * details), so that nothing internal, and no secret, leaks to callers.
 */
export function statusOf(err: unknown, logger: Logger, method: string): CallStatus {
  if (err instanceof HypervisordError) {
    const { retryAfterMs } = err as { retryAfterMs?: number };
    return { code: err.code, number: CODE_NUMBERS[err.code], message: boundedMessage(err.message), ...(retryAfterMs !== undefined && { retryAfterMs }) };
  }
  logger.error({ err, method }, "internal error in a call");
  return { code: "INTERNAL", number: CODE_NUMBERS.INTERNAL, message: "internal error; see the daemon log" };
}

/**
 * Status messages travel in a header (grpc-message, percent-encoded: up to 3 bytes per byte); C-core
 * clients refuse metadata over 8 KiB by default and report RESOURCE_EXHAUSTED instead of the status.
 * Messages that quote input cut it themselves (quoteInput); this is the backstop for all of them.
 */
const MAX_MESSAGE_BYTES = 1024;

export function boundedMessage(message: string): string {
  const bytes = Buffer.from(message);
  if (bytes.length <= MAX_MESSAGE_BYTES) return message;
  // Decoding a cut buffer ends a split character with U+FFFD; drop it.
  const head = bytes.subarray(0, MAX_MESSAGE_BYTES).toString("utf8").replace(/\uFFFD$/, "");
  return `${head}…(message cut, ${bytes.length} bytes)`;
}

/** Response headers / trailers of a status with a retry hint: Retry-After (HTTP, whole seconds) and grpc-retry-pushback-ms (gRFC A6). */
export function retryHeaders(status: CallStatus): Record<string, string> | undefined {
  if (status.retryAfterMs === undefined) return undefined;
  const ms = Math.max(1, Math.ceil(status.retryAfterMs));
  return { "retry-after": String(Math.ceil(ms / 1000)), "grpc-retry-pushback-ms": String(ms) };
}
