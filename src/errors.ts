/**
 * The daemon's error type. Every failure that reaches a caller is one of these;
 * the API edge maps `code` to a gRPC / Connect status in one place
 * (src/rpc/status.ts). `retryable` tells the engine whether a job that failed
 * with this error may be tried again.
 */
export type ErrorCode =
  | "CANCELLED"
  | "INVALID_ARGUMENT"
  | "DEADLINE_EXCEEDED"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "PERMISSION_DENIED"
  | "RESOURCE_EXHAUSTED"
  | "FAILED_PRECONDITION"
  | "ABORTED"
  | "UNIMPLEMENTED"
  | "INTERNAL"
  | "UNAVAILABLE"
  | "UNAUTHENTICATED";

export interface ErrorOptions {
  cause?: unknown;
  retryable?: boolean;
}

export class HypervisordError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: ErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = "HypervisordError";
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

/** A request field is wrong; `field` is its path as named in the proto, e.g. `definition.output_dir`. */
export class InvalidArgumentError extends HypervisordError {
  readonly field: string;

  constructor(field: string, problem: string) {
    super("INVALID_ARGUMENT", `${field}: ${problem}`);
    this.name = "InvalidArgumentError";
    this.field = field;
  }
}

/**
 * A value that came from a caller, as an error message shows it: JSON-quoted, and cut after `max`
 * characters with its full size in bytes, so that no message (and no grpc-message header) carries
 * unbounded input.
 */
export function quoteInput(value: string, max = 64): string {
  if (value.length <= max) return JSON.stringify(value);
  // Cutting between the halves of a surrogate pair would leave a lone surrogate in the message.
  const cut = /[\uD800-\uDBFF]/.test(value[max - 1]!) ? max - 1 : max;
  return `${JSON.stringify(value.slice(0, cut))}…(${Buffer.byteLength(value)} bytes)`;
}

export class NotFoundError extends HypervisordError {
  constructor(message: string, options?: ErrorOptions) {
    super("NOT_FOUND", message, options);
    this.name = "NotFoundError";
  }
}

export class AlreadyExistsError extends HypervisordError {
  constructor(message: string) {
    super("ALREADY_EXISTS", message);
    this.name = "AlreadyExistsError";
  }
}

export class FailedPreconditionError extends HypervisordError {
  constructor(message: string, options?: ErrorOptions) {
    super("FAILED_PRECONDITION", message, options);
    this.name = "FailedPreconditionError";
  }
}

/** A dependency is down or the connection broke: transient, retried by default. */
export class UnavailableError extends HypervisordError {
  constructor(message: string, options: ErrorOptions = {}) {
    super("UNAVAILABLE", message, { retryable: true, ...options });
    this.name = "UnavailableError";
  }
}

export class ResourceExhaustedError extends HypervisordError {
  constructor(message: string) {
    super("RESOURCE_EXHAUSTED", message);
    this.name = "ResourceExhaustedError";
  }
}

/** Abort reason of a job cancelled by a caller. */
export class JobCancelledError extends HypervisordError {
  constructor(reason: string) {
    super("CANCELLED", reason);
    this.name = "JobCancelledError";
  }
}

/** Abort reason of the jobs still running when the daemon shuts down. */
export class ShutdownError extends HypervisordError {
  constructor() {
    super("UNAVAILABLE", "the daemon is shutting down");
    this.name = "ShutdownError";
  }
}

const NODE_NETWORK_CODES: Record<string, ErrorCode> = {
  ECONNRESET: "UNAVAILABLE",
  ECONNREFUSED: "UNAVAILABLE",
  ECONNABORTED: "UNAVAILABLE",
  EPIPE: "UNAVAILABLE",
  ETIMEDOUT: "UNAVAILABLE",
  EHOSTUNREACH: "UNAVAILABLE",
  ENETUNREACH: "UNAVAILABLE",
  EAI_AGAIN: "UNAVAILABLE",
  ENOTFOUND: "UNAVAILABLE",
  UND_ERR_SOCKET: "UNAVAILABLE",
  UND_ERR_CONNECT_TIMEOUT: "UNAVAILABLE",
  UND_ERR_HEADERS_TIMEOUT: "UNAVAILABLE",
  UND_ERR_BODY_TIMEOUT: "UNAVAILABLE",
  ENOSPC: "RESOURCE_EXHAUSTED",
  EDQUOT: "RESOURCE_EXHAUSTED",
  EACCES: "PERMISSION_DENIED",
  EPERM: "PERMISSION_DENIED",
  ENOENT: "NOT_FOUND",
};

/**
 * The one place where arbitrary failures become HypervisordErrors: network
 * failures are UNAVAILABLE and retryable, a full disk RESOURCE_EXHAUSTED,
 * anything unknown INTERNAL. The original error is kept as `cause`.
 */
export function toHypervisordError(err: unknown, context?: string): HypervisordError {
  if (err instanceof HypervisordError) return err;
  const message = errorMessage(err);
  const full = context ? `${context}: ${message}` : message;
  const nodeCode = errorCodeOf(err);
  if (err instanceof Error && err.name === "AbortError") {
    return new HypervisordError("CANCELLED", full, { cause: err });
  }
  const code = nodeCode ? NODE_NETWORK_CODES[nodeCode] : undefined;
  if (code) return new HypervisordError(code, full, { cause: err, retryable: code === "UNAVAILABLE" });
  return new HypervisordError("INTERNAL", full, { cause: err });
}

/** What a failure says, whatever was thrown: an Error's message, anything else as text. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * errorMessage plus what a bare message leaves out: the Node code ("fetch failed (ECONNREFUSED)") and the
 * cause's message when it differs, as a webhook delivery's failure is recorded.
 */
export function errorDetail(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  const cause = err.cause instanceof Error && err.cause.message !== err.message ? `: ${err.cause.message}` : "";
  return typeof code === "string" && !err.message.includes(code) ? `${err.message} (${code})${cause}` : `${err.message}${cause}`;
}

const CALLER_PATH_PROBLEMS: Record<string, string> = {
  ENAMETOOLONG: "is too long for the filesystem",
  ELOOP: "has a loop of symbolic links",
  ENOTDIR: "goes through something that is not a directory",
  // open() of a Unix socket.
  ENXIO: "is not a regular file (a socket)",
};

/**
 * What is wrong with a path a caller gave, from the error of a filesystem call on it, or undefined when the
 * error is not about the path. The path helpers (output-dir.ts, open-regular-file.ts) report these as
 * INVALID_ARGUMENT; elsewhere (an export writing its files) they stay what toHypervisordError makes them.
 */
export function callerPathProblem(err: unknown): string | undefined {
  const code = errorCodeOf(err);
  return code === undefined ? undefined : CALLER_PATH_PROBLEMS[code];
}

function errorCodeOf(err: unknown): string | undefined {
  let current: unknown = err;
  for (let depth = 0; depth < 4 && current instanceof Error; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string") return code;
    current = current.cause;
  }
  return undefined;
}
