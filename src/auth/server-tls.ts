import fs from "node:fs";
import tls from "node:tls";

/** TLS for both listeners: PEM certificate chain and key; with `ca`, client certificates it signed authenticate callers. */
export interface ServerTls {
  cert: Buffer;
  key: Buffer;
  /** CA bundle for client certificates (mTLS); without it none are asked for. */
  ca?: Buffer;
  /** Refuse connections without a valid client certificate (needs `ca`). */
  requireClientCert: boolean;
}

export interface TlsFiles {
  certFile?: string;
  keyFile?: string;
  clientCaFile?: string;
  requireClientCert: boolean;
}

/** DaemonConfig.tls read and checked (files readable, key matching the certificate); undefined when TLS is off. */
export function loadServerTls(files: TlsFiles): ServerTls | undefined {
  const { certFile, keyFile, clientCaFile, requireClientCert } = files;
  if (!certFile && !keyFile) {
    if (clientCaFile || requireClientCert) throw new Error("tls.client_ca_file and tls.require_client_cert need tls.cert_file and tls.key_file");
    return undefined;
  }
  if (!certFile) throw new Error("tls.cert_file is required with tls.key_file");
  if (!keyFile) throw new Error("tls.key_file is required with tls.cert_file");
  if (requireClientCert && !clientCaFile) throw new Error("tls.require_client_cert needs tls.client_ca_file (the CA that signs the client certificates)");
  const loaded: ServerTls = {
    cert: readPem(certFile, "tls.cert_file"),
    key: readPem(keyFile, "tls.key_file"),
    ca: clientCaFile ? readPem(clientCaFile, "tls.client_ca_file") : undefined,
    requireClientCert,
  };
  try {
    tls.createSecureContext({ cert: loaded.cert, key: loaded.key, ca: loaded.ca });
  } catch (err) {
    throw new Error(`tls.cert_file ${certFile}, tls.key_file ${keyFile}${clientCaFile ? `, tls.client_ca_file ${clientCaFile}` : ""}: ${(err as Error).message}`, { cause: err });
  }
  return loaded;
}

function readPem(file: string, field: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new Error(`${field}: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
}
