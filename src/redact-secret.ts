/**
 * Secrets out of free text (error messages, log lines) that came from elsewhere, e.g. a vCenter's fault
 * string echoing the Login request. First by field, where a secret is known to stand whatever its value: a
 * `password=`/`password:` value, a `<password>` element (the SOAP Login body), an Authorization or Cookie
 * header, a session cookie, a URL's userinfo. Then, as a fallback, the whole secret where it stands as a word
 * of its own, and only a secret of at least MIN_SECRET_LENGTH characters: a plain substring replacement
 * blanked any text that happened to contain the password ("failed: *** user name or password").
 */
import { REDACTED_PART, redactUrlsInText } from "./redact-url.ts";

export const REDACTED_VALUE = "***";
/** Shorter secrets are only redacted by field: replacing them as words would blank ordinary text. */
export const MIN_SECRET_LENGTH = 4;

const FIELDS: [RegExp, string][] = [
  // password=..., password: ..., "password": "...", pwd=..., client_secret=... (a value up to a quote, space, or separator).
  [/\b((?:pass(?:word)?|pwd|(?:client[_-]?)?secret|token|api[_-]?key)\s*["']?\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s"',;&)<>]+)/gi, `$1${REDACTED_VALUE}`],
  // <password>...</password>, <vim25:password xsi:type="xsd:string">...</vim25:password>
  [/(<(?:[\w-]+:)?password\b[^>]*>)[^<]*(<\/(?:[\w-]+:)?password>)/gi, `$1${REDACTED_VALUE}$2`],
  // Authorization: Basic ..., Cookie: ... (to the end of the line)
  [/\b((?:authorization|proxy-authorization|cookie|set-cookie)\s*:\s*)[^\r\n]+/gi, `$1${REDACTED_VALUE}`],
  // vmware_soap_session="..." wherever it is quoted
  [/\b(vmware_soap_session\s*=\s*)("[^"]*"|[^\s;,]+)/gi, `$1${REDACTED_VALUE}`],
];

/** Foreign text: the secret fields redacted, then each of `secrets` where it stands as a word (redactSecretWords). */
export function redactSecrets(text: string, secrets: Iterable<string | undefined> = []): string {
  let out = redactUrlsInText(text);
  for (const [pattern, replacement] of FIELDS) out = out.replace(pattern, replacement);
  return redactSecretWords(out, secrets);
}

/**
 * Each of `secrets` (of MIN_SECRET_LENGTH or more) replaced where it stands as a word of its own; nothing else
 * changes (for output whose shape must stay, such as hyperctl's JSON, where the fields are the daemon's to redact).
 */
export function redactSecretWords(text: string, secrets: Iterable<string | undefined>): string {
  let out = text;
  for (const secret of secrets) {
    if (!secret || secret.length < MIN_SECRET_LENGTH || secret === REDACTED_VALUE || secret === REDACTED_PART) continue;
    out = out.replace(wholeWord(secret), REDACTED_VALUE);
  }
  return out;
}

/** The secret, not as part of a longer word: no letter, digit or _ right before or after it. */
function wholeWord(secret: string): RegExp {
  // Syntax characters only: the u flag refuses any other escape.
  const escaped = secret.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  return new RegExp(`(?<![\\p{L}\\p{N}_])${escaped}(?![\\p{L}\\p{N}_])`, "gu");
}
