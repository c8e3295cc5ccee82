import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

/** Encrypts secrets (vSphere passwords, webhook URLs, secrets and headers) before they are written to the database. */
export interface SecretBox {
  /** "v1:<base64 iv>:<base64 ciphertext and tag>", a new random IV each time. */
  seal(plain: string): string;
  /** The plain text of a sealed value; throws when it was altered or sealed with another key. */
  open(sealed: string): string;
}

const VERSION = "v1";
const IV_BYTES = 12;
const TAG_BYTES = 16;
const DEFAULT_KEY_NAME = "secrets.encryption_key";

/** Whether a stored value was written by a SecretBox (rather than in plain, by a version that did not encrypt it). */
export function isSealed(value: string): boolean {
  return value.startsWith(`${VERSION}:`);
}

/**
 * AES-256-GCM with `base64Key` (base64 of 32 bytes, e.g. `openssl rand -base64 32`). `keyName` says
 * where the key came from (a setting or a file), so that errors tell which key to fix.
 */
export function createSecretBox(base64Key: string, keyName = DEFAULT_KEY_NAME): SecretBox {
  const key = decodeKey(base64Key, keyName);
  return {
    seal(plain) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv("aes-256-gcm", key, iv);
      const body = Buffer.concat([cipher.update(plain, "utf8"), cipher.final(), cipher.getAuthTag()]);
      return `${VERSION}:${iv.toString("base64")}:${body.toString("base64")}`;
    },
    open(sealed) {
      const [version, ivText, bodyText, ...rest] = sealed.split(":");
      if (version !== VERSION || ivText === undefined || bodyText === undefined || rest.length > 0) {
        throw new Error(`a stored secret is not in the ${VERSION}:<iv>:<ciphertext> format; the database may be damaged`);
      }
      const iv = Buffer.from(ivText, "base64");
      const body = Buffer.from(bodyText, "base64");
      if (iv.length !== IV_BYTES || body.length < TAG_BYTES) throw new Error("a stored secret is truncated or damaged");
      const decipher = createDecipheriv("aes-256-gcm", key, iv);
      decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
      try {
        return Buffer.concat([decipher.update(body.subarray(0, body.length - TAG_BYTES)), decipher.final()]).toString("utf8");
      } catch (err) {
        throw new Error(`a stored secret does not decrypt: it was altered, or encrypted with another key than ${keyName}`, { cause: err });
      }
    },
  };
}

/** Never puts the key, or any part of it, into an error. */
function decodeKey(base64Key: string, keyName: string): Buffer {
  const text = base64Key.trim();
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) && !/^[A-Za-z0-9_-]*$/.test(text)) {
    throw new Error(`${keyName}: not base64; expected base64 of 32 random bytes (openssl rand -base64 32)`);
  }
  const key = Buffer.from(text, "base64");
  if (key.length !== 32) throw new Error(`${keyName}: decodes to ${key.length} bytes, expected 32 (openssl rand -base64 32)`);
  return key;
}
