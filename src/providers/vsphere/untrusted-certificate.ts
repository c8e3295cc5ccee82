import net from "node:net";
import tls from "node:tls";
import { FailedPreconditionError } from "../../errors.ts";

/** How long the fingerprint probe may take: it only decorates an error, which must not wait long. */
const PROBE_TIMEOUT_MS = 5_000;

/** Node's "ab:cd:..." or "abcd..." as "AB:CD:...", the form vSphere and openssl print and `thumbprint` accepts. */
export function formatFingerprint(hex: string): string {
  return hex.replace(/:/g, "").toUpperCase().replace(/(..)(?=.)/g, "$1:");
}

/**
 * The SHA-256 fingerprint of the certificate `url`'s server presents, read over a connection that verifies
 * nothing and sends nothing: Node's verification error does not carry the certificate, and the user needs its
 * fingerprint to pin it. Undefined when the probe fails (the error is then given without it).
 */
export function probeFingerprint(url: URL, signal: AbortSignal): Promise<string | undefined> {
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = Number(url.port) || 443;
  return new Promise((resolve) => {
    const socket = tls.connect({ host, port, rejectUnauthorized: false, ...(net.isIP(host) ? {} : { servername: host }) });
    const done = (fingerprint: string | undefined) => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      socket.destroy();
      resolve(fingerprint);
    };
    const onAbort = () => done(undefined);
    const timer = setTimeout(onAbort, PROBE_TIMEOUT_MS);
    signal.addEventListener("abort", onAbort, { once: true });
    socket.once("secureConnect", () => {
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      done(fingerprint ? formatFingerprint(fingerprint) : undefined);
    });
    socket.once("error", () => done(undefined));
  });
}

/**
 * vSphere's certificate failed verification (self-signed, unknown CA, expired, wrong name): FAILED_PRECONDITION
 * naming both fixes, as the API field (insecure, thumbprint) and as hyperctl's flag, with the certificate's SHA-256
 * fingerprint ready to pass to --thumbprint once the user has checked it is the server's.
 */
export async function untrustedCertificateError(url: URL, problem: string, cause: unknown, signal: AbortSignal): Promise<FailedPreconditionError> {
  const fingerprint = await probeFingerprint(url, signal);
  const pin = fingerprint
    ? `--thumbprint ${fingerprint}, the certificate's SHA-256 fingerprint: check that it is the server's first`
    : "--thumbprint with its SHA-256 fingerprint";
  return new FailedPreconditionError(
    `the TLS certificate of ${url.host} is not trusted (${problem}); set insecure, or pin it with thumbprint (hyperctl: --insecure-vsphere, or ${pin})`,
    { cause },
  );
}
