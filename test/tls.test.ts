// TLS and mTLS on both listeners through the real daemon, with certificates made by the openssl CLI:
// gRPC (grpc-js), HTTPS JSON over HTTP/1.1 (undici) and over h2 (node:http2). Encryption at rest is in
// test/secrets.test.ts.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import http2 from "node:http2";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { Agent, fetch } from "undici";
import { HypervisordService } from "../gen/hypervisord/v1/service_pb.js";
import { CLIENT_CERT_HEADER, encodeClientCertificate } from "../src/auth/client-certificate.ts";
import { grpcServiceDefinition } from "../src/server/grpc-server.ts";
import { assertRefusesToStart, spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { tempDir } from "./support/temp-dir.ts";

const ADMIN_KEY = `hvd_tls-test-admin-key-${"k".repeat(26)}`;
const CLIENT_SUBJECT = "CN=backup-runner,O=Example";

const openssl = opensslVersion();
const skipTls = openssl ? false : "the openssl CLI is not installed (Debian package openssl): no certificates to test TLS with";
if (skipTls) console.log(`# skipping the TLS tests: ${skipTls}`);

function opensslVersion(): string | undefined {
  try {
    return execFileSync("openssl", ["version"], { encoding: "utf8" }).trim();
  } catch {
    return undefined;
  }
}

interface Pki {
  dir: string;
  ca: Buffer;
  serverCert: string;
  serverKey: string;
  clientCaFile: string;
  client: { cert: Buffer; key: Buffer };
  /** Signed by another CA: the daemon must not trust it. */
  stranger: { cert: Buffer; key: Buffer };
}

/** A CA, a server certificate for 127.0.0.1/localhost, and client certificates from that CA and from another. */
function makePki(): Pki {
  const dir = tempDir("pki");
  const run = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const ca = (name: string) => run("req", "-x509", ...ec, "-keyout", `${name}.key`, "-out", `${name}.pem`, "-days", "2", "-subj", `/CN=hypervisord test ${name}`);
  const leaf = (name: string, subject: string, signer: string, extensions: string) => {
    fs.writeFileSync(path.join(dir, `${name}.ext`), extensions);
    run("req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subject);
    run("x509", "-req", "-in", `${name}.csr`, "-CA", `${signer}.pem`, "-CAkey", `${signer}.key`, "-set_serial", String(Date.now()),
      "-out", `${name}.pem`, "-days", "2", "-extfile", `${name}.ext`);
  };
  ca("ca");
  ca("other-ca");
  leaf("server", "/CN=localhost", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n");
  leaf("client", "/CN=backup-runner/O=Example", "ca", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n");
  leaf("stranger", "/CN=stranger", "other-ca", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n");
  const read = (file: string) => fs.readFileSync(path.join(dir, file));
  return {
    dir,
    ca: read("ca.pem"),
    serverCert: path.join(dir, "server.pem"),
    serverKey: path.join(dir, "server.key"),
    clientCaFile: path.join(dir, "ca.pem"),
    client: { cert: read("client.pem"), key: read("client.key") },
    stranger: { cert: read("stranger.pem"), key: read("stranger.key") },
  };
}

function configFile(yaml: string): string {
  const file = path.join(tempDir("tls-config"), "hypervisord.yaml");
  fs.writeFileSync(file, yaml);
  return file;
}

const tlsConfig = (pki: Pki, extra = "") => configFile([
  "tls:",
  `  cert_file: ${pki.serverCert}`,
  `  key_file: ${pki.serverKey}`,
  extra,
  "auth:",
  "  api_keys:",
  `    - {name: root, key: ${ADMIN_KEY}, role: admin}`,
  "",
].join("\n"));

interface Outcome {
  code: number;
  details: string;
  response?: Record<string, any>;
}

/** grpc-js sends the target host as TLS server name, which may not be an IP address (RFC 6066): the certificate's DNS name is used. */
function grpcClient(address: string, credentials: grpc.ChannelCredentials) {
  const Ctor = grpc.makeGenericClientConstructor(grpcServiceDefinition(HypervisordService), "HypervisordService");
  const client = new Ctor(address, credentials, { "grpc.ssl_target_name_override": "localhost" }) as unknown as grpc.Client & Record<string, (...args: unknown[]) => any>;
  return {
    unary(name: string, request: object, headers: Record<string, string> = {}): Promise<Outcome> {
      const method = HypervisordService.methods.find((m) => m.name === name)!;
      const metadata = new grpc.Metadata();
      for (const [key, value] of Object.entries(headers)) metadata.set(key, value);
      return new Promise((resolve) => {
        client[name]!(create(method.input, request as never), metadata, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, response: Record<string, any>) =>
          resolve(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: "", response }));
      });
    },
    close: () => client.close(),
  };
}

const httpsUrl = (daemon: DaemonProcess) => `https://${daemon.httpAddress}`;

/** Connect JSON over HTTPS/1.1 with undici (its fetch with its Agent: the CA, and a client certificate when given). */
async function postHttps(daemon: DaemonProcess, method: string, body: unknown, connect: { ca: Buffer; cert?: Buffer; key?: Buffer }, headers: Record<string, string> = {}) {
  const dispatcher = new Agent({ connect });
  try {
    const response = await fetch(`${httpsUrl(daemon)}/hypervisord.v1.HypervisordService/${method}`, {
      method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body), dispatcher,
    });
    return { status: response.status, body: (await response.json()) as Record<string, any> };
  } finally {
    await dispatcher.close();
  }
}

/** Connect JSON over h2 with node:http2; also returns the protocol ALPN settled on. */
function postH2(daemon: DaemonProcess, method: string, body: unknown, options: http2.SecureClientSessionOptions, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; alpn: string | false | undefined; body: Record<string, any> }>((resolve, reject) => {
    const session = http2.connect(httpsUrl(daemon), options);
    session.once("error", reject);
    const request = session.request({
      ":method": "POST", ":path": `/hypervisord.v1.HypervisordService/${method}`, "content-type": "application/json", ...headers,
    });
    const chunks: Buffer[] = [];
    let status = 0;
    request.once("response", (h) => void (status = Number(h[":status"])));
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.once("error", reject);
    request.once("end", () => {
      const alpn = session.alpnProtocol;
      session.close();
      resolve({ status, alpn, body: JSON.parse(Buffer.concat(chunks).toString() || "{}") });
    });
    request.end(JSON.stringify(body));
  });
}

describe("TLS on both listeners", { skip: skipTls }, () => {
  let pki: Pki;
  let daemon: DaemonProcess;
  before(async () => {
    pki = makePki();
    daemon = await spawnDaemon({ args: ["--config", tlsConfig(pki)] });
  });
  after(() => daemon?.stop());

  test("gRPC over TLS with the CA as root; a plaintext client gets nowhere", async () => {
    const client = grpcClient(daemon.grpcAddress, grpc.credentials.createSsl(pki.ca));
    const plain = grpcClient(daemon.grpcAddress, grpc.credentials.createInsecure());
    try {
      const status = await client.unary("GetStatus", {}, { authorization: `Bearer ${ADMIN_KEY}` });
      assert.equal(status.code, grpc.status.OK, status.details);
      assert.equal((await client.unary("GetStatus", {})).code, grpc.status.UNAUTHENTICATED);
      assert.equal((await plain.unary("GetStatus", {}, { authorization: `Bearer ${ADMIN_KEY}` })).code, grpc.status.UNAVAILABLE);
    } finally {
      client.close();
      plain.close();
    }
  });

  test("HTTPS JSON over HTTP/1.1 (undici) and over h2 (node:http2); /healthz too; plain HTTP is refused", async () => {
    const h1 = await postHttps(daemon, "GetStatus", {}, { ca: pki.ca }, { "x-api-key": ADMIN_KEY });
    assert.equal(h1.status, 200, JSON.stringify(h1.body));
    assert.ok(h1.body.version);
    assert.equal((await postHttps(daemon, "GetStatus", {}, { ca: pki.ca })).status, 401);
    const h2 = await postH2(daemon, "GetStatus", {}, { ca: pki.ca }, { authorization: `Bearer ${ADMIN_KEY}` });
    assert.equal(h2.alpn, "h2");
    assert.equal(h2.status, 200, JSON.stringify(h2.body));
    assert.ok(h2.body.version);
    const dispatcher = new Agent({ connect: { ca: pki.ca } });
    try {
      const health = await fetch(`${httpsUrl(daemon)}/healthz`, { dispatcher });
      assert.deepEqual(await health.json(), { status: "SERVING" });
    } finally {
      await dispatcher.close();
    }
    await assert.rejects(globalThis.fetch(`http://${daemon.httpAddress}/healthz`), "plain HTTP to the TLS port");
  });

  test("an untrusted server certificate is refused by the client (the CA really is what makes it work)", async () => {
    await assert.rejects(postH2(daemon, "GetStatus", {}, {}), /self-signed|unable to verify|certificate/i);
  });

  test("a client-certificate header sent by a client is dropped, not believed", async () => {
    const forged = { [CLIENT_CERT_HEADER]: encodeClientCertificate({ subject: "CN=admin", fingerprint256: "AA:BB" }) };
    assert.equal((await postHttps(daemon, "GetStatus", {}, { ca: pki.ca }, forged)).status, 401);
  });
});

describe("mTLS: tls.require_client_cert", { skip: skipTls }, () => {
  let pki: Pki;
  let daemon: DaemonProcess;
  before(async () => {
    pki = makePki();
    daemon = await spawnDaemon({ args: ["--config", tlsConfig(pki, `  client_ca_file: ${pki.clientCaFile}\n  require_client_cert: true`)] });
  });
  after(() => daemon?.stop());

  test("gRPC: without a client certificate the handshake fails; with one the caller is authenticated by it (operator)", async () => {
    const anonymous = grpcClient(daemon.grpcAddress, grpc.credentials.createSsl(pki.ca));
    const stranger = grpcClient(daemon.grpcAddress, grpc.credentials.createSsl(pki.ca, pki.stranger.key, pki.stranger.cert));
    const client = grpcClient(daemon.grpcAddress, grpc.credentials.createSsl(pki.ca, pki.client.key, pki.client.cert));
    try {
      assert.equal((await anonymous.unary("GetStatus", {}, { authorization: `Bearer ${ADMIN_KEY}` })).code, grpc.status.UNAVAILABLE);
      assert.equal((await stranger.unary("GetStatus", {})).code, grpc.status.UNAVAILABLE);
      const status = await client.unary("GetStatus", {});
      assert.equal(status.code, grpc.status.OK, status.details);
      const submitted = await client.unary("SubmitJob", { definition: { provider: "fake", vm: "noop" } });
      assert.equal(submitted.code, grpc.status.OK, submitted.details);
      const denied = await client.unary("CreateApiKey", { name: "x", role: "viewer" });
      assert.equal(denied.code, grpc.status.PERMISSION_DENIED);
      assert.equal(denied.details, `role operator (client certificate "${CLIENT_SUBJECT}") may not call CreateApiKey: it needs the admin role`);
      // A key sent along wins over the certificate.
      assert.equal((await client.unary("ListApiKeys", {}, { authorization: `Bearer ${ADMIN_KEY}` })).code, grpc.status.OK);
    } finally {
      anonymous.close();
      stranger.close();
      client.close();
    }
  });

  test("HTTPS (HTTP/1.1 and h2): refused without a client certificate, authenticated with one", async () => {
    await assert.rejects(postHttps(daemon, "GetStatus", {}, { ca: pki.ca }, { "x-api-key": ADMIN_KEY }));
    await assert.rejects(postHttps(daemon, "GetStatus", {}, { ca: pki.ca, ...pki.stranger }));
    const withCert = { ca: pki.ca, ...pki.client };
    assert.equal((await postHttps(daemon, "GetStatus", {}, withCert)).status, 200);
    const denied = await postHttps(daemon, "CreateApiKey", { name: "x", role: "viewer" }, withCert);
    assert.equal(denied.status, 403);
    assert.match(denied.body.message, new RegExp(`client certificate "${CLIENT_SUBJECT}"`));
    const h2 = await postH2(daemon, "GetStatus", {}, withCert);
    assert.equal(h2.status, 200, JSON.stringify(h2.body));
    // The certificate cannot be claimed by header over a connection that has another.
    const forged = { [CLIENT_CERT_HEADER]: encodeClientCertificate({ subject: "CN=root", fingerprint256: "AA" }) };
    const stillOperator = await postHttps(daemon, "CreateApiKey", { name: "x", role: "viewer" }, withCert, forged);
    assert.match(stillOperator.body.message, new RegExp(`client certificate "${CLIENT_SUBJECT}"`));
  });
});

describe("mTLS optional: tls.client_ca_file without require_client_cert", { skip: skipTls }, () => {
  let pki: Pki;
  let daemon: DaemonProcess;
  before(async () => {
    pki = makePki();
    daemon = await spawnDaemon({ args: ["--config", tlsConfig(pki, `  client_ca_file: ${pki.clientCaFile}`)] });
  });
  after(() => daemon?.stop());

  test("a trusted certificate authenticates; no certificate or an untrusted one connects but needs a key (both transports)", async () => {
    const clients = {
      trusted: grpcClient(daemon.grpcAddress, grpc.credentials.createSsl(pki.ca, pki.client.key, pki.client.cert)),
      none: grpcClient(daemon.grpcAddress, grpc.credentials.createSsl(pki.ca)),
      stranger: grpcClient(daemon.grpcAddress, grpc.credentials.createSsl(pki.ca, pki.stranger.key, pki.stranger.cert)),
    };
    try {
      assert.equal((await clients.trusted.unary("SubmitJob", { definition: { provider: "fake", vm: "noop" } })).code, grpc.status.OK);
      assert.equal((await clients.none.unary("GetStatus", {})).code, grpc.status.UNAUTHENTICATED);
      assert.equal((await clients.none.unary("GetStatus", {}, { "x-api-key": ADMIN_KEY })).code, grpc.status.OK);
      assert.equal((await clients.stranger.unary("GetStatus", {})).code, grpc.status.UNAUTHENTICATED);
    } finally {
      for (const client of Object.values(clients)) client.close();
    }
    assert.equal((await postHttps(daemon, "GetStatus", {}, { ca: pki.ca, ...pki.client })).status, 200);
    assert.equal((await postH2(daemon, "GetStatus", {}, { ca: pki.ca, ...pki.client })).status, 200);
    assert.equal((await postHttps(daemon, "GetStatus", {}, { ca: pki.ca })).status, 401);
    assert.equal((await postHttps(daemon, "GetStatus", {}, { ca: pki.ca, ...pki.stranger })).status, 401);
  });
});

describe("TLS configuration errors stop the start", { skip: skipTls }, () => {
  test("require_client_cert without a client CA; a key that does not match the certificate", async () => {
    const pki = makePki();
    await assertRefusesToStart({ args: ["--config", tlsConfig(pki, "  require_client_cert: true")] }, /tls\.require_client_cert needs tls\.client_ca_file/);
    const mismatched = configFile(`tls:\n  cert_file: ${pki.serverCert}\n  key_file: ${path.join(pki.dir, "client.key")}\n`);
    await assertRefusesToStart({ args: ["--config", mismatched] }, /tls\.cert_file .*key values mismatch/);
  });
});
