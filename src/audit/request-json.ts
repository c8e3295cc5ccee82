import { isMessage, toJson, type DescMessage } from "@bufbuild/protobuf";
import { redactUrl, redactUrlsInText } from "../redact-url.ts";

export const REDACTED = "***";
/** Longer requests (a SubmitJobs of thousands) are stored as their size and the start of their JSON. */
export const MAX_REQUEST_JSON = 64 * 1024;

/**
 * Field names whose values never reach the audit log, compared in lower case without "_" and "-":
 * anything ending in password or secret, and key, apikey, authorization, token, cookie. A field named
 * `headers` keeps its header names; every value becomes "***".
 */
export function isSecretField(name: string): boolean {
  const n = name.toLowerCase().replace(/[-_]/g, "");
  return n.endsWith("password") || n.endsWith("secret") || SECRET_NAMES.has(n);
}

const SECRET_NAMES = new Set(["key", "apikey", "xapikey", "authorization", "token", "cookie"]);

/** A request as JSON without secrets: proto JSON (camelCase names, as Connect JSON callers write it) when it is a message of `schema`. */
export function requestJson(schema: DescMessage | undefined, request: unknown): string {
  const value = schema && isMessage(request, schema) ? toJson(schema, request) : plain(request);
  const json = JSON.stringify(redact(value)) ?? "null";
  if (json.length <= MAX_REQUEST_JSON) return json;
  // The start is escaped again inside the string: shortened until the whole fits.
  for (let keep = MAX_REQUEST_JSON - 100; ; keep = Math.floor(keep * 0.75)) {
    const truncated = JSON.stringify({ truncated: true, length: json.length, start: json.slice(0, keep) });
    if (truncated.length <= MAX_REQUEST_JSON) return truncated;
  }
}

/**
 * A copy of `value` with the values of secret fields replaced, at any depth; URLs redacted (see
 * redactUrl): the whole of a field named like url (a webhook's ?token= query), and the
 * scheme://user:password@ parts of any other text (a vsphere.url refused for carrying credentials).
 */
export function redact(value: unknown, name = ""): unknown {
  if (typeof value === "string") return isUrlField(name) ? redactUrl(value) : redactUrlsInText(value);
  if (Array.isArray(value)) return value.map((item) => redact(item, name));
  if (value === null || typeof value !== "object") return value;
  const out: Record<string, unknown> = {};
  for (const [field, fieldValue] of Object.entries(value)) {
    if (isSecretField(field)) out[field] = REDACTED;
    else if (field.toLowerCase() === "headers" && fieldValue !== null && typeof fieldValue === "object" && !Array.isArray(fieldValue)) {
      out[field] = Object.fromEntries(Object.keys(fieldValue).map((header) => [header, REDACTED]));
    } else out[field] = redact(fieldValue, field);
  }
  return out;
}

/** url, webhookUrl, callback_url ...: compared in lower case without "_" and "-". */
function isUrlField(name: string): boolean {
  return name.toLowerCase().replace(/[-_]/g, "").endsWith("url");
}

/** Something that is not a message (a test's plain object): JSON-safe, int64 bigints as strings like proto JSON. */
function plain(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value, (_key, v: unknown) => (typeof v === "bigint" ? v.toString() : v)) ?? "null");
}
