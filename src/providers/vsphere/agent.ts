import type { TLSSocket } from "node:tls";
import { Agent, buildConnector } from "undici";
import { FailedPreconditionError } from "../../errors.ts";
import type { RawTls } from "../../transfer/raw-get.ts";
import { formatFingerprint } from "./untrusted-certificate.ts";

export interface TlsPolicy {
  /** Skip certificate verification altogether. */
  insecure: boolean;
  /** Accept exactly the certificate with this SHA-1 or SHA-256 fingerprint (hex, colons optional). */
  thumbprint: string;
}

export interface AgentOptions extends TlsPolicy {
  /** Connections per origin (SOAP and NFC each count). */
  maxConnections: number;
}

export function normalizeThumbprint(value: string): string {
  return value.replace(/:/g, "").toLowerCase();
}

/**
 * A keep-alive undici Agent for one vSphere endpoint. With a thumbprint the
 * certificate is not verified against CAs but pinned: the handshake's peer
 * certificate must have that fingerprint, or the connection is closed.
 */
export function createVSphereAgent(options: AgentOptions): Agent {
  const tls = vsphereTls(options);
  // With a pin, no TLS session resumption: a resumed session shows no certificate to check.
  const connector = buildConnector({ rejectUnauthorized: tls.rejectUnauthorized, ...(tls.checkPeer ? { maxCachedSessions: 0 } : {}) });
  const connect: buildConnector.connector = (opts, callback) =>
    connector(opts, (err, socket) => {
      if (err || !tls.checkPeer || !socket) return callback(err as Error, socket as never);
      try {
        tls.checkPeer(socket as TLSSocket, opts.hostname);
      } catch (error) {
        socket.destroy();
        return callback(error as Error, null);
      }
      callback(null, socket);
    });
  return new Agent({ connect, connections: options.maxConnections, keepAliveTimeout: 30_000, keepAliveMaxTimeout: 300_000 });
}

/** The same TLS policy for connections made without the Agent (the disk downloads, src/transfer/raw-get.ts). */
export function vsphereTls(policy: TlsPolicy): RawTls {
  const pinned = normalizeThumbprint(policy.thumbprint);
  return {
    rejectUnauthorized: !policy.insecure && !pinned,
    ...(pinned ? {
      checkPeer(socket: TLSSocket, hostname: string) {
        const cert = socket.getPeerCertificate?.();
        const seen = [cert?.fingerprint256, cert?.fingerprint].filter(Boolean).map((f) => normalizeThumbprint(f!));
        if (!seen.includes(pinned)) {
          throw new FailedPreconditionError(`the TLS certificate of ${hostname} does not match the pinned thumbprint (it has SHA-256 ${seen[0] ? formatFingerprint(seen[0]) : "none"})`);
        }
      },
    } : {}),
  };
}
