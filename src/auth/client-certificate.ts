import type { PeerCertificate } from "node:tls";

/** A verified client certificate, as handlers see it (CallContext.clientCertificate). */
export interface ClientCertificate {
  /** e.g. "CN=backup-runner,O=Example". */
  subject: string;
  /** SHA-256 fingerprint, colon-separated hex as Node gives it. */
  fingerprint256: string;
}

/**
 * Set by the HTTP server from the TLS socket on every request (any value a client sent is dropped), like
 * PEER_HEADER: connect-node shows handlers the headers only. The value is URI-encoded JSON, because a
 * subject may hold characters a header value cannot.
 */
export const CLIENT_CERT_HEADER = "x-hypervisord-client-cert";

/** The identity of a peer certificate; undefined when there is none (Node gives an empty object then). */
export function clientCertificateOf(peer: PeerCertificate | undefined | null): ClientCertificate | undefined {
  if (!peer || !peer.raw || !peer.fingerprint256) return undefined;
  return { subject: subjectText(peer.subject), fingerprint256: peer.fingerprint256 };
}

export function encodeClientCertificate(certificate: ClientCertificate): string {
  return encodeURIComponent(JSON.stringify(certificate));
}

/** The inverse of encodeClientCertificate, for connect-routes' CallContext. */
export function decodeClientCertificate(value: string | null | undefined): ClientCertificate | undefined {
  if (!value) return undefined;
  const parsed = JSON.parse(decodeURIComponent(value)) as ClientCertificate;
  return { subject: String(parsed.subject), fingerprint256: String(parsed.fingerprint256) };
}

/** "CN=a,O=b", attributes in the certificate's order (a repeated one joined with "+"). */
function subjectText(subject: PeerCertificate["subject"] | undefined): string {
  if (!subject) return "";
  return Object.entries(subject as unknown as Record<string, string | string[]>)
    .map(([name, value]) => `${name}=${Array.isArray(value) ? value.join("+") : value}`)
    .join(",");
}
