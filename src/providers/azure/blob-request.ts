import { getGlobalDispatcher, type Dispatcher } from "undici";
import { retryDelayMs } from "../../backoff.ts";
import { HypervisordError, UnavailableError, toHypervisordError } from "../../errors.ts";
import type { RateLimiter } from "../../transfer/rate-limiter.ts";
import { retryAfterMs, sleep } from "./retry-after.ts";

// The requests of the page-blob data path, on undici's dispatcher (keep-alive: a managed disk is read in
// thousands of ranged GETs, a TLS handshake each would cost more than the bytes of a small range).
// A SAS URL is a credential: messages name the blob and the host, never the URL.

/** Blob service version sent with every request: Get Page Ranges pages with NextMarker from 2020-10-02 on. */
export const STORAGE_VERSION = "2021-08-06";

export interface BlobRetry {
  /** Attempts in a row that gained nothing before giving up. */
  maxAttempts: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
}

export const DEFAULT_BLOB_RETRY: BlobRetry = { maxAttempts: 5, initialBackoffMs: 1000, maxBackoffMs: 30_000 };
/** The longest Retry-After honoured; a longer one is waited for this long (the next answer says again). */
const MAX_RETRY_AFTER_MS = 300_000;

/**
 * The SAS no longer opens the blob (403: expired or revoked by endGetAccess; 404: the grant is gone). Retrying the
 * URL cannot help; the job's next attempt grants a new access, hence retryable for the job, never retried here.
 */
export class AccessEndedError extends UnavailableError {
  constructor(message: string) {
    super(message, { retryable: true });
    this.name = "AccessEndedError";
  }
}

/** A status worth another try (408, 429, 5xx), with the server's Retry-After when it gave one. */
export class BlobBusyError extends UnavailableError {
  readonly retryAfterMs: number | undefined;

  constructor(message: string, retryAfterMs: number | undefined) {
    super(message);
    this.name = "BlobBusyError";
    this.retryAfterMs = retryAfterMs;
  }
}

/** "downloading web-disk-1.vhd from md-xyz.blob.core.windows.net": the prefix of every message about a blob. */
export function blobLabel(action: string, name: string, url: string): string {
  return `${action} ${name} from ${new URL(url).host}`;
}

/** The HypervisordError of a non-2xx answer from the blob service. */
export function blobStatusError(label: string, status: number, headers: Record<string, string | string[] | undefined>): HypervisordError {
  const code = headerOf(headers, "x-ms-error-code");
  const what = `HTTP ${status}${code ? ` ${code}` : ""}`;
  if (status === 403 || status === 404 || status === 410) {
    return new AccessEndedError(`${label}: the read access to the blob ended (${what}: the SAS expired or was revoked); a new access is needed`);
  }
  if (status === 408 || status === 429 || status >= 500) return new BlobBusyError(`${label}: ${what}`, cappedRetryAfter(headerOf(headers, "retry-after")));
  if (status === 416) return new HypervisordError("FAILED_PRECONDITION", `${label}: ${what}: the range is past the blob's end (did the blob shrink?)`);
  return new HypervisordError("FAILED_PRECONDITION", `${label}: unexpected ${what}`);
}

function cappedRetryAfter(header: string | undefined): number | undefined {
  const ms = retryAfterMs(header);
  return ms === undefined ? undefined : Math.min(MAX_RETRY_AFTER_MS, ms);
}

/** Any failure of an attempt as a HypervisordError naming the blob (network errors retryable), the URL scrubbed. */
export function blobError(err: unknown, label: string): HypervisordError {
  if (err instanceof HypervisordError) return err;
  const mapped = toHypervisordError(err);
  const code = nodeCode(err);
  const text = scrubSas(mapped.message);
  const message = `${label}: ${code && !text.includes(code) ? `${code}: ` : ""}${text}`;
  return new HypervisordError(mapped.code, message, { cause: err, retryable: mapped.retryable });
}

/** Whether another attempt of the same request may succeed. */
export function isRetryable(error: HypervisordError): boolean {
  return error.retryable && !(error instanceof AccessEndedError) && error.code === "UNAVAILABLE";
}

/** The wait before the next attempt: the server's Retry-After, else exponential backoff (`failures` in a row, 1-based). */
export function retryWait(error: HypervisordError, failures: number, retry: BlobRetry): number {
  if (error instanceof BlobBusyError && error.retryAfterMs !== undefined) return error.retryAfterMs;
  return retryDelayMs(failures, { initialMs: retry.initialBackoffMs, maxMs: retry.maxBackoffMs });
}

/** `attempt` until it succeeds, a failure is not retryable, or `maxAttempts` failed in a row. */
export async function withBlobRetries<T>(label: string, options: { signal: AbortSignal; retry?: BlobRetry; logger?: { warn(obj: object, msg: string): void } },
  attempt: () => Promise<T>): Promise<T> {
  const retry = options.retry ?? DEFAULT_BLOB_RETRY;
  for (let failures = 1; ; failures++) {
    try {
      return await attempt();
    } catch (err) {
      if (options.signal.aborted) throw options.signal.reason;
      const error = blobError(err, label);
      if (!isRetryable(error)) throw error;
      if (failures >= retry.maxAttempts) throw gaveUp(error, failures);
      const delayMs = retryWait(error, failures, retry);
      options.logger?.warn({ attempt: failures, delayMs, err: error.message }, "blob request failed, retrying");
      await sleep(delayMs, options.signal);
    }
  }
}

export function gaveUp(error: HypervisordError, failures: number): HypervisordError {
  return new HypervisordError(error.code, `${error.message} (gave up after ${failures} attempts without progress)`, { cause: error.cause ?? error, retryable: true });
}

/** A request whose whole (small) body is wanted, e.g. a page list. Non-2xx answers throw blobStatusError. */
export async function blobRequest(url: URL, options: { method: "GET" | "HEAD"; signal: AbortSignal; dispatcher?: Dispatcher; label: string }): Promise<{ headers: Record<string, string>; body: Buffer }> {
  const dispatcher = options.dispatcher ?? getGlobalDispatcher();
  const response = await dispatcher.request({
    origin: url.origin,
    path: `${url.pathname}${url.search}`,
    method: options.method,
    headers: { "x-ms-version": STORAGE_VERSION },
    signal: options.signal,
  });
  const headers = flatHeaders(response.headers);
  if (response.statusCode < 200 || response.statusCode > 299) {
    await response.body.dump();
    throw blobStatusError(options.label, response.statusCode, headers);
  }
  return { headers, body: Buffer.from(await response.body.arrayBuffer()) };
}

export interface RangeGet {
  signal: AbortSignal;
  label: string;
  limiter?: RateLimiter;
  /** Body bytes landed in `target` (called before the promise settles, also when it then rejects). */
  onBytes(bytes: number): void;
}

/**
 * GETs bytes [start, end) of the blob into `target` (from its byte 0), through undici's dispatch API: the body
 * pieces are copied into the caller's buffer as they come, with no stream in between. Resolves once all the
 * bytes are in; rejects with a blobStatusError, a cut (the bytes reported by onBytes are good: the caller asks
 * for the rest), or `signal.reason`.
 */
export function getRangeInto(dispatcher: Dispatcher, url: URL, start: number, end: number, target: Buffer, options: RangeGet): Promise<void> {
  const { signal, label, limiter } = options;
  signal.throwIfAborted();
  const length = end - start;
  return new Promise<void>((resolve, reject) => {
    let controller: Dispatcher.DispatchController | undefined;
    let settled = false;
    let received = 0;
    let failure: HypervisordError | undefined;
    const finish = (error?: unknown) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      if (error !== undefined) {
        if (controller && !controller.aborted) controller.abort(error instanceof Error ? error : new Error(String(error)));
        reject(error);
      } else {
        resolve();
      }
    };
    const onAbort = () => finish(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });

    const request: Dispatcher.DispatchOptions = {
      origin: url.origin,
      path: `${url.pathname}${url.search}`,
      method: "GET",
      headers: { "x-ms-range": `bytes=${start}-${end - 1}`, "x-ms-version": STORAGE_VERSION },
    };
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        if (settled) c.abort(new Error("aborted"));
      },
      onResponseStart(_c, statusCode, headers) {
        if (statusCode !== 206) {
          // The error body is read to its end (the connection stays usable) and dropped: x-ms-error-code says it all.
          failure = statusCode === 200
            ? new HypervisordError("INTERNAL", `${label}: HTTP 200 to a request for bytes ${start}-${end - 1}: the server ignored the range`)
            : blobStatusError(label, statusCode, headers);
          if (statusCode === 200) finish(failure);
          return;
        }
        const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(headerOf(headers, "content-range")?.trim() ?? "");
        if (!range || Number(range[1]) !== start || Number(range[2]) !== end - 1) {
          finish(new HypervisordError("INTERNAL", `${label}: asked for bytes ${start}-${end - 1}, got Content-Range ${headerOf(headers, "content-range") ?? "(none)"}`));
        }
      },
      onResponseData(c, chunk) {
        if (failure || settled) return;
        if (received + chunk.length > length) {
          finish(new HypervisordError("INTERNAL", `${label}: more than the ${length} bytes asked for (bytes ${start}-${end - 1})`));
          return;
        }
        chunk.copy(target, received);
        received += chunk.length;
        options.onBytes(chunk.length);
        // undici hands an empty piece to a handler resumed mid-body: pausing for it again would resume, and be
        // handed another, in a loop of microtasks that starves the event loop.
        if (limiter && chunk.length > 0) {
          c.pause();
          limiter.take(chunk.length, signal).then(() => c.resume(), finish);
        }
      },
      onResponseEnd() {
        if (failure) finish(failure);
        else if (received < length) finish(new UnavailableError(`${label}: the body of bytes ${start}-${end - 1} ended after ${received} of ${length} bytes`));
        else finish();
      },
      onResponseError(_c, error) {
        finish(signal.aborted ? signal.reason : blobError(error, `${label} (bytes ${start + received}-${end - 1})`));
      },
    };
    try {
      dispatcher.dispatch(request, handler);
    } catch (error) {
      finish(blobError(error, label));
    }
  });
}

function headerOf(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function flatHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const flat: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) flat[name.toLowerCase()] = Array.isArray(value) ? value.join(", ") : value;
  return flat;
}

function nodeCode(err: unknown): string | undefined {
  for (let current = err, depth = 0; depth < 4 && current instanceof Error; depth++, current = current.cause) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string") return code;
  }
  return undefined;
}

/** A SAS signature that found its way into a message (an error quoting the URL) is replaced. */
export function scrubSas(text: string): string {
  return text.replace(/([?&]sig=)[^&\s"']*/gi, "$1REDACTED");
}
