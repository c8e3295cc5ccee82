import type { DescMethod } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { backoffMs, sleep, type BackoffOptions } from "./backoff.ts";

/** Sends the API key the way the daemon reads it: `authorization: Bearer <key>`. */
export function createAuthInterceptor(apiKey: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${apiKey}`);
    return next(req);
  };
}

export interface RetryOptions extends BackoffOptions {
  /** Retries after the first attempt. Default 3; 0 disables retrying. */
  retries?: number;
}

/**
 * Calls that change nothing on the daemon, so repeating one is safe: Get*, List*, and the
 * methods the proto marks NO_SIDE_EFFECTS (ValidateOva, VerifyManifest, the two streams).
 */
export function isIdempotent(method: DescMethod): boolean {
  return /^(Get|List)[A-Z]/.test(method.name) || method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS;
}

/**
 * Retries idempotent unary calls that fail with UNAVAILABLE (daemon restarting, connection
 * refused), with exponential backoff and jitter. The call's deadline (timeoutMs) covers every
 * attempt: the interceptor runs inside it and stops when its signal aborts. Streams are not
 * retried here (watchJob resumes StreamJobUpdates itself, with after_seq).
 */
export function createRetryInterceptor(options: RetryOptions = {}): Interceptor {
  const retries = options.retries ?? 3;
  return (next) => async (req) => {
    if (req.stream || retries <= 0 || !isIdempotent(req.method)) return next(req);
    for (let attempt = 0; ; attempt++) {
      try {
        return await next(req);
      } catch (err) {
        if (attempt >= retries || req.signal.aborted || ConnectError.from(err).code !== Code.Unavailable) throw err;
        await sleep(backoffMs(attempt, options), req.signal);
      }
    }
  };
}
