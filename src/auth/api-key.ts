import { createHash, randomBytes } from "node:crypto";

/** Every key starts with this, so that secret scanners and people recognise one. */
export const KEY_PREFIX = "hvd_";
/** How many characters of a key are kept (ApiKey.prefix) to recognise it: "hvd_" and 8 more. */
const SHOWN_CHARS = 12;

/** A new key: "hvd_" and the base64url of 32 random bytes (256 bits). */
export function generateApiKey(): string {
  return KEY_PREFIX + randomBytes(32).toString("base64url");
}

/**
 * Hex SHA-256 of a key: what is stored and looked up. The keys are random 256-bit strings, so an
 * unsalted fast hash is enough (nothing to brute-force), and looking a key up by its hash leaks,
 * through timing, at most a hash prefix, from which no key can be found.
 */
export function hashApiKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

/** The key's first characters, shown in listings ("hvd_ab12cd34"). */
export function keyPrefix(key: string): string {
  return key.slice(0, SHOWN_CHARS);
}
