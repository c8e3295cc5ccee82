import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { AzureConnection } from "../../domain/job.ts";
import { HypervisordError, UnavailableError, errorDetail } from "../../errors.ts";
import { retryAfterMs } from "./retry-after.ts";

export interface TokenCacheOptions {
  /** Per token request (default 60 s); a token endpoint that does not answer is UNAVAILABLE. */
  timeoutMs?: number;
  /** A token is used until this long before it expires (default 5 min). */
  refreshBeforeMs?: number;
  /** Tries of a token request answered 429/5xx or cut (default 3). */
  maxTries?: number;
  now?: () => number;
}

export interface TokenCache {
  /** A bearer token for the connection's resource manager: cached, or fetched once however many callers wait for it. */
  token(connection: AzureConnection, signal: AbortSignal): Promise<string>;
  /** Drops the cached token (ARM said it is invalid or expired), so that the next token() fetches a new one. */
  invalidate(connection: AzureConnection): void;
}

interface Entry {
  /** The request in flight, shared by every caller that waits for it. */
  pending?: Promise<{ token: string; expiresAt: number }>;
  token?: string;
  expiresAt?: number;
}

/**
 * OAuth2 client credentials (a service principal) against Microsoft Entra ID's v2.0 token endpoint. Tokens live
 * in memory only, keyed by authority, tenant, client, a hash of the secret (a new secret gets a new token) and scope.
 */
export function createTokenCache(options: TokenCacheOptions = {}): TokenCache {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const refreshBeforeMs = options.refreshBeforeMs ?? 5 * 60_000;
  const maxTries = options.maxTries ?? 3;
  const now = options.now ?? Date.now;
  const entries = new Map<string, Entry>();

  return {
    async token(connection, signal) {
      signal.throwIfAborted();
      const key = keyOf(connection);
      let entry = entries.get(key);
      if (!entry) {
        // Jobs may each bring their own connection: expired identities are dropped so the cache does not grow forever.
        for (const [k, e] of entries) if (!e.pending && (e.expiresAt ?? 0) <= now()) entries.delete(k);
        entries.set(key, (entry = {}));
      }
      if (entry.token && entry.expiresAt! - refreshBeforeMs > now()) return entry.token;
      let pending = entry.pending;
      if (!pending) {
        const current = entry;
        // Not tied to one caller's signal: another caller may still want the answer after this one gave up.
        pending = current.pending = requestToken(connection, { timeoutMs, maxTries, now })
          .then((got) => {
            current.token = got.token;
            current.expiresAt = got.expiresAt;
            return got;
          })
          .finally(() => {
            current.pending = undefined;
          });
      }
      return (await abortable(pending, signal)).token;
    },
    invalidate(connection) {
      const entry = entries.get(keyOf(connection));
      if (entry) {
        entry.token = undefined;
        entry.expiresAt = undefined;
      }
    },
  };
}

function keyOf(c: AzureConnection): string {
  const secret = createHash("sha256").update(c.clientSecret).digest("hex");
  return [c.authorityHost, c.tenantId, c.clientId, secret, scopeOf(c)].join("\n");
}

function scopeOf(c: AzureConnection): string {
  return `${c.resourceManager.replace(/\/+$/, "")}/.default`;
}

async function requestToken(connection: AzureConnection, o: { timeoutMs: number; maxTries: number; now: () => number }): Promise<{ token: string; expiresAt: number }> {
  const url = `${connection.authorityHost.replace(/\/+$/, "")}/${encodeURIComponent(connection.tenantId)}/oauth2/v2.0/token`;
  const where = `the Azure token endpoint ${new URL(url).host}`;
  const form = new URLSearchParams({
    grant_type: "client_credentials",
    client_id: connection.clientId,
    client_secret: connection.clientSecret,
    scope: scopeOf(connection),
  });
  for (let attempt = 1; ; attempt++) {
    const deadline = AbortSignal.timeout(o.timeoutMs);
    let response: Response;
    let text: string;
    try {
      response = await fetch(url, { method: "POST", body: form, headers: { accept: "application/json" }, signal: deadline });
      text = await response.text();
    } catch (err) {
      const error = deadline.aborted
        ? new UnavailableError(`getting a token from ${where}: no answer within ${o.timeoutMs / 1000} s`)
        : new UnavailableError(`getting a token from ${where}: ${scrub(errorDetail(err), connection)}`);
      if (attempt >= o.maxTries) throw error;
      await sleep(1000 * attempt);
      continue;
    }
    const body = parseJson(text) as { access_token?: unknown; expires_in?: unknown; error?: unknown; error_description?: unknown } | undefined;
    if (response.ok && typeof body?.access_token === "string") {
      // expires_in is seconds (a number, or a string from some endpoints); an absent one is treated as 1 h, Entra's usual.
      const seconds = Number(body.expires_in ?? 3600);
      return { token: body.access_token, expiresAt: o.now() + (Number.isFinite(seconds) ? seconds : 3600) * 1000 };
    }
    if (response.status === 429 || response.status >= 500) {
      const error = new UnavailableError(`getting a token from ${where}: HTTP ${response.status}${describe(body, connection)}`);
      if (attempt >= o.maxTries) throw error;
      await sleep(Math.min(retryAfterMs(response.headers.get("retry-after"), o.now()) ?? 1000 * attempt, 30_000));
      continue;
    }
    if (response.ok) throw new HypervisordError("INTERNAL", `getting a token from ${where}: the answer has no access_token`);
    // 400/401 carry AADSTS errors (invalid_client, unauthorized_client, unknown tenant or application).
    throw new HypervisordError("UNAUTHENTICATED", `Azure rejected the service principal ${connection.clientId} of tenant ${connection.tenantId} (HTTP ${response.status}${describe(body, connection)})`);
  }
}

/** ": <error>: <first line of error_description>", without the secret should an endpoint ever echo it. */
function describe(body: { error?: unknown; error_description?: unknown } | undefined, connection: AzureConnection): string {
  if (!body) return "";
  const code = typeof body.error === "string" ? body.error : "";
  const description = typeof body.error_description === "string" ? body.error_description.split(/\r?\n/)[0]!.slice(0, 400) : "";
  const text = [code, description].filter(Boolean).join(": ");
  return text ? `: ${scrub(text, connection)}` : "";
}

function scrub(text: string, connection: AzureConnection): string {
  return connection.clientSecret ? text.split(connection.clientSecret).join("[REDACTED]") : text;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The promise, or the signal's reason as soon as it aborts (the promise itself keeps going for other waiters). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
