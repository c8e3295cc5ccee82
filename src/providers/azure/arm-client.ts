import { checkAzureConnection } from "../../domain/azure-connection.ts";
import type { AzureConnection } from "../../domain/job.ts";
import { retryDelayMs } from "../../backoff.ts";
import { HypervisordError, UnavailableError, errorDetail, type ErrorCode } from "../../errors.ts";
import { retryAfterMs, sleep } from "./retry-after.ts";
import type { TokenCache } from "./token.ts";

export interface ArmClientOptions {
  /** Warned once per call that ARM throttles (429) or finds busy (5xx). */
  logger?: { warn(obj: object, msg: string): void };
  /** Tries of a request answered 429/500/502/503/504 or cut on the way (default 6). */
  maxTries?: number;
  /** Longest wait for one Retry-After (default 60 s). */
  maxRetryWaitMs?: number;
  /** Backoff when ARM gives no Retry-After (default 1 s doubling, at most 30 s). */
  backoff?: { initialMs: number; maxMs: number };
  /** Per HTTP request (default 60 s). */
  timeoutMs?: number;
  /** Wait between LRO polls when ARM gives no Retry-After (default 1 s). */
  pollIntervalMs?: number;
}

export interface ArmResponse<T> {
  status: number;
  body: T;
  headers: Headers;
}

export interface ArmRequestOptions {
  apiVersion?: string;
  body?: unknown;
  signal: AbortSignal;
  /** What the call does, for errors: "creating snapshot x in rg1". */
  what: string;
}

export interface ArmClient {
  readonly connection: AzureConnection;
  /** GET/PUT/POST/DELETE of an ARM path ("/subscriptions/..."), or an absolute URL on the resource manager host (nextLink, polling). */
  request<T>(method: string, pathOrUrl: string, options: ArmRequestOptions): Promise<ArmResponse<T>>;
  /**
   * A long-running operation: the first request, then polling Azure-AsyncOperation (or Location) honouring
   * Retry-After, until done; returns the final body (POST: the Location's answer, else the operation's output;
   * PUT: the resource as a GET reads it; DELETE: undefined).
   */
  longRunning<T>(method: string, path: string, options: ArmRequestOptions & { apiVersion: string }): Promise<T>;
}

/** An error ARM answered (or an LRO ended with): its HTTP status (0 for a failed operation) and ARM's code and message. */
export class ArmError extends HypervisordError {
  readonly status: number;
  readonly armCode: string;
  readonly armMessage: string;

  constructor(code: ErrorCode, message: string, details: { status: number; armCode: string; armMessage: string; retryable?: boolean }) {
    super(code, message, { retryable: details.retryable });
    this.name = "ArmError";
    this.status = details.status;
    this.armCode = details.armCode;
    this.armMessage = details.armMessage;
  }
}

interface ArmErrorBody {
  error?: { code?: string; message?: string };
}

const RETRIED_STATUSES = new Set([429, 500, 502, 503, 504]);
const TOKEN_REJECTED = new Set(["InvalidAuthenticationToken", "ExpiredAuthenticationToken", "InvalidAuthenticationTokenTenant"]);
const NOT_FOUND_CODES = new Set(["ResourceNotFound", "ResourceGroupNotFound", "NotFound", "SubscriptionNotFound", "ParentResourceNotFound"]);
/** Codes an operation's failure carries when Azure itself broke: worth another try. */
const TRANSIENT_CODES = new Set(["InternalServerError", "InternalOperationError", "ServerTimeout", "ServiceUnavailable", "TooManyRequests", "RetryableError"]);

/**
 * Azure Resource Manager over plain fetch (no SDK in the daemon: one dependency less, and every wire detail —
 * retries, Retry-After, LRO polling, error mapping — is ours to test). The bearer token goes to the resource
 * manager's origin only: a nextLink or polling URL elsewhere is refused.
 */
export function createArmClient(connection: AzureConnection, tokens: TokenCache, options: ArmClientOptions = {}): ArmClient {
  const checked = checkAzureConnection(connection, "azure");
  const base = new URL(checked.resourceManager);
  const maxTries = options.maxTries ?? 6;
  const maxRetryWaitMs = options.maxRetryWaitMs ?? 60_000;
  const backoff = options.backoff ?? { initialMs: 1000, maxMs: 30_000 };
  const timeoutMs = options.timeoutMs ?? 60_000;
  const pollIntervalMs = options.pollIntervalMs ?? 1000;

  function urlOf(pathOrUrl: string, apiVersion: string | undefined, what: string): URL {
    const url = /^https?:\/\//i.test(pathOrUrl) ? new URL(pathOrUrl) : new URL(base.pathname.replace(/\/+$/, "") + pathOrUrl, base);
    if (url.origin !== base.origin) {
      throw new HypervisordError("FAILED_PRECONDITION", `${what}: Azure pointed to ${url.origin}, not the resource manager ${base.origin}; not sending the token there`);
    }
    if (apiVersion && !url.searchParams.has("api-version")) url.searchParams.set("api-version", apiVersion);
    return url;
  }

  async function request<T>(method: string, pathOrUrl: string, o: ArmRequestOptions): Promise<ArmResponse<T>> {
    const url = urlOf(pathOrUrl, o.apiVersion, o.what);
    const where = `${method} ${url.pathname}`;
    let warned = false;
    let tokenRetried = false;
    for (let attempt = 1; ; attempt++) {
      o.signal.throwIfAborted();
      const token = await tokens.token(checked, o.signal);
      const deadline = AbortSignal.timeout(timeoutMs);
      let response: Response;
      let text: string;
      try {
        response = await fetch(url, {
          method,
          headers: { authorization: `Bearer ${token}`, accept: "application/json", ...(o.body === undefined ? {} : { "content-type": "application/json" }) },
          body: o.body === undefined ? undefined : JSON.stringify(o.body),
          signal: AbortSignal.any([o.signal, deadline]),
          // ARM does not redirect; following one could carry the token to another host.
          redirect: "manual",
        });
        text = await response.text();
      } catch (err) {
        if (o.signal.aborted) throw o.signal.reason;
        const error = deadline.aborted
          ? new UnavailableError(`${o.what}: Azure Resource Manager at ${base.host} did not answer ${where} within ${timeoutMs / 1000} s`)
          : new UnavailableError(`${o.what}: Azure Resource Manager at ${base.host} could not be reached (${errorDetail(err)})`, { cause: err });
        // A POST is not repeated blindly: the first one may have been carried out.
        if (method === "POST" || attempt >= maxTries) throw error;
        await sleep(retryDelayMs(attempt, backoff), o.signal);
        continue;
      }
      const body = text ? parseJson(text) : undefined;
      if (response.ok) return { status: response.status, body: body as T, headers: response.headers };
      const armCode = (body as ArmErrorBody | undefined)?.error?.code ?? "";
      if (response.status === 401 && TOKEN_REJECTED.has(armCode) && !tokenRetried) {
        tokenRetried = true;
        tokens.invalidate(checked);
        attempt--;
        continue;
      }
      if (RETRIED_STATUSES.has(response.status)) {
        if (attempt >= maxTries) {
          const said = (body as ArmErrorBody | undefined)?.error?.message?.replace(/\s+/g, " ").slice(0, 300);
          throw new UnavailableError(`${o.what}: Azure Resource Manager still answers HTTP ${response.status}${armCode ? ` (${armCode}${said ? `: ${said}` : ""})` : ""} to ${where} after ${attempt} tries`);
        }
        const waitMs = Math.min(retryAfterMs(response.headers.get("retry-after")) ?? retryDelayMs(attempt, backoff), maxRetryWaitMs);
        if (!warned) {
          warned = true;
          options.logger?.warn({ what: o.what, request: where, status: response.status, code: armCode || undefined, waitMs }, response.status === 429 ? "Azure Resource Manager throttles, retrying" : "Azure Resource Manager is busy, retrying");
        }
        await sleep(waitMs, o.signal);
        continue;
      }
      throw armErrorOf(response.status, (body as ArmErrorBody | undefined)?.error ?? { message: text.slice(0, 200) }, o.what);
    }
  }

  async function wait(headers: Headers, signal: AbortSignal): Promise<void> {
    const ms = retryAfterMs(headers.get("retry-after")) ?? pollIntervalMs;
    await sleep(Math.min(ms, maxRetryWaitMs), signal);
  }

  async function longRunning<T>(method: string, path: string, o: ArmRequestOptions & { apiVersion: string }): Promise<T> {
    const first = await request<unknown>(method, path, o);
    const asyncUrl = first.headers.get("azure-asyncoperation");
    const location = first.headers.get("location");
    const poll = { signal: o.signal, what: o.what };
    const read = { apiVersion: o.apiVersion, signal: o.signal, what: o.what };
    let output: unknown;
    let locationBody: unknown;
    let polled = false;
    let latest = first.body;
    if (asyncUrl) {
      polled = true;
      let headers = first.headers;
      for (;;) {
        await wait(headers, o.signal);
        const status = await request<OperationStatus>("GET", asyncUrl, poll);
        const state = status.body?.status ?? "";
        if (/^succeeded$/i.test(state)) {
          output = status.body?.properties?.output;
          break;
        }
        if (/^(failed|canceled|cancelled)$/i.test(state)) throw operationError(state, status.body?.error, o.what);
        headers = status.headers;
      }
    } else if (location && first.status === 202) {
      polled = true;
      let headers = first.headers;
      for (;;) {
        await wait(headers, o.signal);
        const status = await request<unknown>("GET", location, poll);
        if (status.status !== 202) {
          locationBody = status.body;
          break;
        }
        headers = status.headers;
      }
    } else if (method === "PUT" && first.status < 300) {
      // No operation to poll: the resource's provisioningState says when it is done.
      let state = provisioningState(latest);
      while (state && !/^(succeeded|failed|canceled)$/i.test(state)) {
        await wait(first.headers, o.signal);
        latest = (await request<unknown>("GET", path, read)).body;
        state = provisioningState(latest);
      }
      if (state && !/^succeeded$/i.test(state)) throw operationError(state, undefined, o.what);
    }
    if (method === "DELETE") return undefined as T;
    if (method === "PUT") return (polled ? (await request<T>("GET", path, read)).body : latest) as T;
    // POST (final-state-via: location): the Location's final answer when there is one.
    if (location && asyncUrl) {
      const final = await request<unknown>("GET", location, poll);
      if (final.status === 200 && final.body !== undefined) return final.body as T;
    }
    if (locationBody !== undefined) return locationBody as T;
    if (output !== undefined) return output as T;
    return first.body as T;
  }

  return { connection: checked, request, longRunning };
}

interface OperationStatus {
  status?: string;
  error?: { code?: string; message?: string };
  properties?: { output?: unknown };
}

function provisioningState(body: unknown): string | undefined {
  const state = (body as { properties?: { provisioningState?: unknown } } | undefined)?.properties?.provisioningState;
  return typeof state === "string" ? state : undefined;
}

function operationError(state: string, error: { code?: string; message?: string } | undefined, what: string): ArmError {
  if (!error?.code && /^cancel/i.test(state)) {
    return new ArmError("FAILED_PRECONDITION", `${what}: Azure canceled the operation`, { status: 0, armCode: "Canceled", armMessage: "" });
  }
  return armErrorOf(0, error ?? { code: state, message: `the operation ended ${state}` }, what);
}

/**
 * ARM's error (`{"error":{"code","message"}}`) as ours, `what` first. `status` is the HTTP status, 0 for an
 * operation that failed (then the code alone decides).
 */
export function armErrorOf(status: number, error: { code?: string; message?: string } | undefined, what: string): ArmError {
  const armCode = error?.code ?? "";
  const armMessage = (error?.message ?? "").replace(/\s+/g, " ").trim();
  const said = armMessage.length > 400 ? `${armMessage.slice(0, 400)}…` : armMessage;
  const details = { status, armCode, armMessage };
  const tail = `${armCode || `HTTP ${status}`}${said ? `: ${said}` : ""}`;
  if (status === 401 || (status === 0 && /AuthenticationToken/.test(armCode))) {
    return new ArmError("UNAUTHENTICATED", `${what}: Azure Resource Manager rejected the service principal's token (${tail})`, details);
  }
  if (status === 403 || /AuthorizationFailed$/.test(armCode)) {
    const action = /perform action(?:\(s\))? '([^']+)'/.exec(armMessage)?.[1];
    const lacks = action ? `the service principal lacks permission for ${action}` : "the service principal lacks a permission";
    return new ArmError("PERMISSION_DENIED", `${what}: ${lacks} (${tail})`, details);
  }
  if (status === 404 || NOT_FOUND_CODES.has(armCode)) {
    return new ArmError("NOT_FOUND", `${what}: not found (${tail})`, details);
  }
  if (status === 0 && TRANSIENT_CODES.has(armCode)) {
    return new ArmError("UNAVAILABLE", `${what}: the Azure operation failed (${tail})`, { ...details, retryable: true });
  }
  if (status >= 500) {
    return new ArmError("UNAVAILABLE", `${what}: Azure Resource Manager answered HTTP ${status} (${tail})`, { ...details, retryable: true });
  }
  // 409 conflicts, 400 OperationNotAllowed, quota, bad requests: the state or the request has to change first.
  return new ArmError("FAILED_PRECONDITION", `${what}: Azure refused (${tail})`, details);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
