import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { InvalidArgumentError } from "../errors.ts";

/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com): HMAC-SHA256 over
 * "<webhook-id>.<webhook-timestamp>.<body>" with the base64-decoded part of a "whsec_" secret,
 * sent as `webhook-signature: v1,<base64>`. Receivers may use verifySignature.
 */

const PREFIX = "whsec_";
/** The spec asks for keys of 24 to 64 bytes. */
const MIN_KEY_BYTES = 24;
const MAX_KEY_BYTES = 64;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export function generateSecret(): string {
  return PREFIX + randomBytes(32).toString("base64");
}

/** The HMAC key of a "whsec_<base64>" secret; `field` names the secret in the error of a malformed one. */
export function parseSecret(secret: string, field = "secret"): Buffer {
  if (!secret.startsWith(PREFIX)) throw new InvalidArgumentError(field, `must start with "${PREFIX}"`);
  const encoded = secret.slice(PREFIX.length);
  if (!BASE64.test(encoded)) throw new InvalidArgumentError(field, `the part after "${PREFIX}" must be standard base64`);
  const key = Buffer.from(encoded, "base64");
  if (key.length < MIN_KEY_BYTES || key.length > MAX_KEY_BYTES) {
    throw new InvalidArgumentError(field, `the key must be ${MIN_KEY_BYTES} to ${MAX_KEY_BYTES} bytes, got ${key.length}`);
  }
  return key;
}

/** The base64 HMAC-SHA256 signature of one message. */
function sign(key: Buffer, id: string, timestampSeconds: number, body: string | Buffer): string {
  return createHmac("sha256", key).update(`${id}.${timestampSeconds}.`).update(body).digest("base64");
}

/** The webhook-id, webhook-timestamp and webhook-signature headers of one attempt. */
export function signatureHeaders(secret: string, id: string, timestampSeconds: number, body: string | Buffer): Record<string, string> {
  return {
    "webhook-id": id,
    "webhook-timestamp": String(timestampSeconds),
    "webhook-signature": `v1,${sign(parseSecret(secret), id, timestampSeconds, body)}`,
  };
}

export type HeaderSource = Headers | Record<string, string | string[] | undefined>;

/**
 * Whether a received request carries a valid signature of `body` whose timestamp is within
 * `toleranceSeconds` of now (replay protection). The signature header may hold several
 * space-separated signatures (key rotation): one matching v1 signature is enough.
 */
export function verifySignature(
  secret: string,
  headers: HeaderSource,
  body: string | Buffer,
  toleranceSeconds = 300,
  nowSeconds = Math.floor(Date.now() / 1000),
): boolean {
  const id = header(headers, "webhook-id");
  const timestamp = header(headers, "webhook-timestamp");
  const signatures = header(headers, "webhook-signature");
  if (!id || !timestamp || !signatures || !/^\d+$/.test(timestamp)) return false;
  const seconds = Number(timestamp);
  if (Math.abs(nowSeconds - seconds) > toleranceSeconds) return false;
  const expected = Buffer.from(sign(parseSecret(secret), id, seconds, body), "base64");
  return signatures.split(" ").some((entry) => {
    const [version, value] = entry.split(",", 2);
    if (version !== "v1" || !value) return false;
    const given = Buffer.from(value, "base64");
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}

function header(headers: HeaderSource, name: string): string | undefined {
  if (headers instanceof Headers) return headers.get(name) ?? undefined;
  const value = headers[name];
  return Array.isArray(value) ? value.join(" ") : value;
}
