/**
 * URLs shown or stored outside the secret columns (API responses, the audit log, logs) lose what may be
 * a credential: the userinfo password (`https://vcuser:REDACTED@host/sdk`; a lone user name, often a
 * token, becomes `https://REDACTED@host/`), every query value (`?token=REDACTED`; a bare `?abc` becomes
 * `?REDACTED`) and the fragment. Scheme, host, port, path and the query names stay, so that the URL is
 * still recognisable.
 */
export const REDACTED_PART = "REDACTED";

/** `url` redacted as above; text that is not a URL gets only its `scheme://user:password@` parts redacted. */
export function redactUrl(url: string): string {
  if (!URL.canParse(url)) return redactUrlsInText(url);
  const parsed = new URL(url);
  if (!parsed.username && !parsed.password && !parsed.search && !parsed.hash) return url;
  if (parsed.password) parsed.password = REDACTED_PART;
  else if (parsed.username) parsed.username = REDACTED_PART;
  if (parsed.search) {
    parsed.search = parsed.search.slice(1).split("&").map((pair) => {
      const equals = pair.indexOf("=");
      return equals < 0 ? (pair === "" ? "" : REDACTED_PART) : `${pair.slice(0, equals)}=${REDACTED_PART}`;
    }).join("&");
  }
  if (parsed.hash) parsed.hash = REDACTED_PART;
  return parsed.href;
}

/** `scheme://user:password@` anywhere in free text (a description, an error) becomes `scheme://user:REDACTED@`. */
export function redactUrlsInText(text: string): string {
  return text.replace(USERINFO_PASSWORD, `$1:${REDACTED_PART}@`);
}

const USERINFO_PASSWORD = /\b([a-z][a-z0-9+.-]*:\/\/[^\s/?#@:]*):[^\s/?#@]*@/gi;
