import { ROLES, type ApiKey, type Role } from "../domain/access.ts";
import { InvalidArgumentError } from "../errors.ts";
import { hashApiKey, keyPrefix } from "./api-key.ts";

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
/** A key written in the file must be long enough not to be guessed; generated keys have 47 characters. */
const MIN_KEY_LENGTH = 24;
const KNOWN = new Set(["name", "key", "key_sha256", "role"]);

/**
 * The keys of `auth.api_keys` ({name, key | key_sha256, role} each), as ApiKey records with ids
 * "cfg-<name>" and source "config". Errors name the field, e.g. `auth.api_keys[1].role`.
 */
export function apiKeysFromConfig(records: readonly Record<string, unknown>[], field = "auth.api_keys", now = Date.now()): ApiKey[] {
  const names = new Set<string>();
  const hashes = new Set<string>();
  return records.map((record, i) => {
    const at = `${field}[${i}]`;
    for (const key of Object.keys(record)) if (!KNOWN.has(key)) throw new InvalidArgumentError(`${at}.${key}`, "unknown key (expected name, key or key_sha256, role)");
    const name = nameOf(record.name, `${at}.name`);
    if (names.has(name)) throw new InvalidArgumentError(`${at}.name`, `"${name}" is used twice`);
    names.add(name);
    const { keyHash, prefix } = secretOf(record, at);
    if (hashes.has(keyHash)) throw new InvalidArgumentError(at, "the same key is listed twice");
    hashes.add(keyHash);
    return { id: `cfg-${name}`, name, role: roleOf(record.role, `${at}.role`), keyHash, prefix, source: "config", createTime: now };
  });
}

/** A role name as a request or the file gives it; `field` names it in the error. */
export function roleOf(value: unknown, field: string): Role {
  const role = typeof value === "string" ? value.trim().toLowerCase() : "";
  if (!(ROLES as readonly string[]).includes(role)) {
    throw new InvalidArgumentError(field, `${value === undefined || value === "" ? "required" : `unknown role ${JSON.stringify(value)}`}: one of ${ROLES.join(", ")}`);
  }
  return role as Role;
}

function nameOf(value: unknown, field: string): string {
  const name = typeof value === "string" ? value.trim() : "";
  if (!NAME.test(name)) throw new InvalidArgumentError(field, "required: 1-63 letters, digits, '.', '_' or '-'");
  return name;
}

function secretOf(record: Record<string, unknown>, at: string): { keyHash: string; prefix: string } {
  const { key, key_sha256: sha256 } = record;
  if (key !== undefined && sha256 !== undefined) throw new InvalidArgumentError(at, "give key or key_sha256, not both");
  if (sha256 !== undefined) {
    const hex = typeof sha256 === "string" ? sha256.trim().toLowerCase() : "";
    if (!SHA256_HEX.test(hex)) throw new InvalidArgumentError(`${at}.key_sha256`, "expected the hex SHA-256 of the key (64 hex digits; e.g. printf %s \"$KEY\" | sha256sum)");
    // Only the hash is known: nothing of the key to show.
    return { keyHash: hex, prefix: "" };
  }
  if (typeof key !== "string" || key.trim() === "") throw new InvalidArgumentError(at, "key or key_sha256 is required");
  // The value itself is never echoed: it is a secret.
  if (key.trim().length < MIN_KEY_LENGTH) throw new InvalidArgumentError(`${at}.key`, `too short: at least ${MIN_KEY_LENGTH} characters (CreateApiKey makes good ones)`);
  return { keyHash: hashApiKey(key.trim()), prefix: keyPrefix(key.trim()) };
}
