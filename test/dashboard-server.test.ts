// The web dashboard served by the daemon's HTTP listener (src/server/dashboard.ts), from a fake Vite build in a
// temp dir: headers per kind of file, ETag and 304, gzip, HEAD, HTTP/2, what falls through to the RPCs, and that
// the files need no API key while the RPCs still do.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { postJson } from "./support/clients.ts";
import { spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { tempDir } from "./support/temp-dir.ts";

const CSP = "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";
const ADMIN_KEY = `hvd_dashboard-test-admin-key-${"k".repeat(20)}`;

interface FakeBuild {
  dir: string;
  files: Record<string, Buffer>;
}

/** A dist dir as Vite writes it (plus a dotdir that must stay private), next to a file that must never be reachable. */
function fakeBuild(): FakeBuild {
  const root = tempDir("dashboard");
  const dir = path.join(root, "dist");
  const files: Record<string, Buffer> = {
    "index.html": Buffer.from(`<!doctype html><html><head><title>hypervisord</title><script type="module" src="/assets/index-abc123.js"></script>`
      + `<link rel="stylesheet" href="/assets/index-def456.css"></head><body>${"<div id=\"app\"></div>\n".repeat(50)}</body></html>\n`),
    "assets/index-abc123.js": Buffer.from(`export function main() { return ${JSON.stringify("hypervisord ".repeat(200))}; }\n`),
    "assets/index-def456.css": Buffer.from("body { margin: 0; font-family: sans-serif; }\n".repeat(40)),
    "assets/logo-1a2b3c.png": randomBytes(2048),
    "favicon.svg": Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">${"<rect width=\"1\" height=\"1\"/>".repeat(30)}</svg>\n`),
    "a b.txt": Buffer.from("a file with a space in its name\n"),
    ".vite/manifest.json": Buffer.from("{}\n"),
  };
  for (const [name, body] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), body);
  }
  fs.writeFileSync(path.join(root, "secret.txt"), "outside the dist dir\n");
  return { dir, files };
}

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One HTTP/1.1 request on its own connection, the path sent as written (no URL normalisation) and the body not decoded. */
function request(httpUrl: string, target: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<RawResponse> {
  const { hostname, port } = new URL(httpUrl);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: hostname, port, path: target, method: options.method ?? "GET", headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(options.body);
  });
}

function readyRecord(daemon: DaemonProcess): Record<string, unknown> {
  return JSON.parse(daemon.logs.find((line) => line.includes('"hypervisord ready"'))!) as Record<string, unknown>;
}

function configFile(yaml: string): string {
  const file = path.join(tempDir("dashboard-config"), "hypervisord.yaml");
  fs.writeFileSync(file, yaml);
  return file;
}

describe("dashboard: a built dist dir", () => {
  let daemon: DaemonProcess;
  let build: FakeBuild;

  before(async () => {
    build = fakeBuild();
    daemon = await spawnDaemon({ env: { HYPERVISORD_DASHBOARD_DIR: build.dir } });
  });
  after(async () => {
    if (daemon) assert.equal(await daemon.stop(), 0, "daemon exit code");
  });

  test("the ready log names the dashboard URL; no warning", () => {
    assert.equal(readyRecord(daemon).dashboard_url, `${daemon.httpUrl}/`);
    assert.ok(!daemon.logs.some((line) => line.includes("dashboard not built")));
  });

  test("/ and /index.html: the HTML with no-cache, its security headers and a strong ETag", async () => {
    for (const target of ["/", "/index.html", "/?session=1"]) {
      const res = await request(daemon.httpUrl, target);
      assert.equal(res.status, 200, target);
      assert.deepEqual(res.body, build.files["index.html"], target);
      assert.equal(res.headers["content-type"], "text/html; charset=utf-8");
      assert.equal(res.headers["cache-control"], "no-cache");
      assert.equal(res.headers["content-security-policy"], CSP);
      assert.equal(res.headers["referrer-policy"], "no-referrer");
      assert.equal(res.headers["x-frame-options"], "DENY");
      assert.equal(res.headers["x-content-type-options"], "nosniff");
      assert.equal(res.headers.vary, "Accept-Encoding");
      assert.equal(res.headers["content-encoding"], undefined, "no Accept-Encoding: identity");
      assert.equal(res.headers["content-length"], String(build.files["index.html"]!.length));
      assert.match(res.headers.etag ?? "", /^"[A-Za-z0-9_-]{20,}"$/);
    }
  });

  test("content types and cache headers per kind of file; dotfiles are not served", async () => {
    const cases: [string, string, string, string][] = [
      ["/assets/index-abc123.js", "assets/index-abc123.js", "text/javascript; charset=utf-8", "public, max-age=31536000, immutable"],
      ["/assets/index-def456.css", "assets/index-def456.css", "text/css; charset=utf-8", "public, max-age=31536000, immutable"],
      ["/assets/logo-1a2b3c.png", "assets/logo-1a2b3c.png", "image/png", "public, max-age=31536000, immutable"],
      ["/favicon.svg", "favicon.svg", "image/svg+xml; charset=utf-8", "public, max-age=3600"],
      ["/a%20b.txt", "a b.txt", "text/plain; charset=utf-8", "public, max-age=3600"],
    ];
    for (const [target, file, type, cache] of cases) {
      const res = await request(daemon.httpUrl, target);
      assert.equal(res.status, 200, target);
      assert.deepEqual(res.body, build.files[file], target);
      assert.equal(res.headers["content-type"], type, target);
      assert.equal(res.headers["cache-control"], cache, target);
      assert.equal(res.headers["x-content-type-options"], "nosniff", target);
      assert.equal(res.headers["content-security-policy"], undefined, `${target}: the CSP is for HTML`);
    }
    assert.equal((await request(daemon.httpUrl, "/.vite/manifest.json")).status, 404);
  });

  test("ETag: a matching If-None-Match is 304 without a body; another ETag gets the file", async () => {
    const first = await request(daemon.httpUrl, "/assets/index-abc123.js");
    const etag = first.headers.etag!;
    const again = await request(daemon.httpUrl, "/assets/index-abc123.js", { headers: { "if-none-match": etag } });
    assert.equal(again.status, 304);
    assert.equal(again.body.length, 0);
    assert.equal(again.headers.etag, etag);
    assert.equal(again.headers["cache-control"], "public, max-age=31536000, immutable");
    assert.equal((await request(daemon.httpUrl, "/", { headers: { "if-none-match": `"other", W/${(await request(daemon.httpUrl, "/")).headers.etag}` } })).status, 304, "weak comparison, in a list");
    const changed = await request(daemon.httpUrl, "/assets/index-abc123.js", { headers: { "if-none-match": '"something-else"' } });
    assert.equal(changed.status, 200);
    assert.deepEqual(changed.body, build.files["assets/index-abc123.js"]);
    assert.notEqual((await request(daemon.httpUrl, "/favicon.svg")).headers.etag, etag, "the ETag follows the content");
  });

  test("gzip when accepted, decoding to the same bytes, with its own ETag; never for PNG; refused with q=0", async () => {
    for (const [target, file] of [["/", "index.html"], ["/assets/index-abc123.js", "assets/index-abc123.js"], ["/assets/index-def456.css", "assets/index-def456.css"], ["/favicon.svg", "favicon.svg"]] as const) {
      const identity = await request(daemon.httpUrl, target);
      const zipped = await request(daemon.httpUrl, target, { headers: { "accept-encoding": "gzip, deflate, br" } });
      assert.equal(zipped.status, 200, target);
      assert.equal(zipped.headers["content-encoding"], "gzip", target);
      assert.equal(zipped.headers.vary, "Accept-Encoding");
      assert.ok(zipped.body.length < build.files[file]!.length, `${target}: smaller`);
      assert.equal(zipped.headers["content-length"], String(zipped.body.length));
      assert.deepEqual(gunzipSync(zipped.body), build.files[file], target);
      assert.notEqual(zipped.headers.etag, identity.headers.etag, `${target}: one strong ETag per representation`);
      const notModified = await request(daemon.httpUrl, target, { headers: { "accept-encoding": "gzip", "if-none-match": zipped.headers.etag! } });
      assert.equal(notModified.status, 304, target);
    }
    const png = await request(daemon.httpUrl, "/assets/logo-1a2b3c.png", { headers: { "accept-encoding": "gzip" } });
    assert.equal(png.headers["content-encoding"], undefined);
    assert.equal(png.headers.vary, "Accept-Encoding");
    assert.deepEqual(png.body, build.files["assets/logo-1a2b3c.png"]);
    assert.equal((await request(daemon.httpUrl, "/", { headers: { "accept-encoding": "gzip;q=0, br" } })).headers["content-encoding"], undefined);
    assert.equal((await request(daemon.httpUrl, "/", { headers: { "accept-encoding": "*" } })).headers["content-encoding"], "gzip");
  });

  test("HEAD: the headers and Content-Length of the GET, no body", async () => {
    const get = await request(daemon.httpUrl, "/assets/index-abc123.js", { headers: { "accept-encoding": "gzip" } });
    const head = await request(daemon.httpUrl, "/assets/index-abc123.js", { method: "HEAD", headers: { "accept-encoding": "gzip" } });
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    for (const name of ["content-type", "content-length", "content-encoding", "etag", "cache-control", "vary"]) assert.equal(head.headers[name], get.headers[name], name);
    assert.equal(head.headers["content-length"], String(get.body.length));
  });

  test("HTTP/2 (h2c): the same file, gzip included", async () => {
    const session = http2.connect(daemon.httpUrl);
    try {
      const { headers, body } = await new Promise<{ headers: http2.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
        const stream = session.request({ ":path": "/assets/index-def456.css", "accept-encoding": "gzip" });
        const chunks: Buffer[] = [];
        let responseHeaders: http2.IncomingHttpHeaders = {};
        stream.on("response", (h) => (responseHeaders = h));
        stream.on("data", (chunk: Buffer) => chunks.push(chunk));
        stream.on("end", () => resolve({ headers: responseHeaders, body: Buffer.concat(chunks) }));
        stream.on("error", reject);
      });
      assert.equal(headers[":status"], 200);
      assert.equal(headers["content-encoding"], "gzip");
      assert.deepEqual(gunzipSync(body), build.files["assets/index-def456.css"]);
    } finally {
      await new Promise<void>((resolve) => session.close(() => resolve()));
    }
  });

  test("paths that leave the dist dir, or name nothing in it, fall through to the RPC fallback's 404", async () => {
    assert.equal((await request(daemon.httpUrl, "/secret.txt")).status, 404, "the fixture file is outside dist");
    for (const target of ["/../secret.txt", "/assets/../../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/assets/%2e%2e/%2e%2e/secret.txt", "//secret.txt", "/assets/", "/assets", "/nope.js", "/%zz"]) {
      const res = await request(daemon.httpUrl, target);
      assert.equal(res.status, 404, target);
      assert.equal(JSON.parse(res.body.toString()).code, "not_found", `${target}: from the RPC fallback`);
      assert.ok(!res.body.toString().includes("outside the dist dir"), target);
    }
  });

  test("POST never matches a file; /healthz and /metrics are not shadowed", async () => {
    const post = await request(daemon.httpUrl, "/index.html", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    assert.equal(post.status, 404);
    assert.equal(JSON.parse(post.body.toString()).code, "not_found");
    assert.equal((await request(daemon.httpUrl, "/healthz")).status, 200);
    assert.match((await request(daemon.httpUrl, "/metrics")).body.toString(), /^# HELP /m);
  });

  test("RPCs still work: Connect POST and Connect GET", async () => {
    const status = await postJson(daemon.httpUrl, "GetStatus", {});
    assert.equal(status.status, 200);
    assert.equal(status.body.lifecycle, "running");
    fs.writeFileSync(path.join(daemon.outputRoot, "junk.ova"), "not a tar archive");
    const message = encodeURIComponent(JSON.stringify({ path: "junk.ova" }));
    const get = await request(daemon.httpUrl, `/hypervisord.v1.HypervisordService/ValidateOva?connect=v1&encoding=json&message=${message}`);
    // The handler's own answer (not the fallback's not_found): the file is no tar archive.
    assert.equal(get.status, 400, get.body.toString());
    assert.match(String(get.headers["content-type"]), /^application\/json/);
    const body = JSON.parse(get.body.toString()) as { code: string; message: string };
    assert.equal(body.code, "invalid_argument");
    assert.match(body.message, /junk\.ova is not a tar archive/);
  });
});

describe("dashboard: not built, disabled, and with authentication on", () => {
  const daemons: DaemonProcess[] = [];
  let missing: DaemonProcess;
  let disabled: DaemonProcess;
  let authed: DaemonProcess;
  let missingDir: string;

  before(async () => {
    missingDir = path.join(tempDir("dashboard-missing"), "dist");
    const build = fakeBuild();
    const keys = configFile(`rate_limit:\n  requests_per_second: 0\nauth:\n  api_keys:\n    - {name: root, key: ${ADMIN_KEY}, role: admin}\ndashboard:\n  dir: ${build.dir}\n`);
    [missing, disabled, authed] = await Promise.all([
      spawnDaemon({ env: { HYPERVISORD_DASHBOARD_DIR: missingDir } }),
      spawnDaemon({ env: { HYPERVISORD_DASHBOARD_DIR: build.dir, HYPERVISORD_DASHBOARD_ENABLED: "false" } }),
      spawnDaemon({ args: ["--config", keys] }),
    ]);
    daemons.push(missing, disabled, authed);
  });
  after(async () => {
    for (const code of await Promise.all(daemons.map((d) => d.stop()))) assert.equal(code, 0, "daemon exit code");
  });

  test("missing dist: one warning naming the dir and npm run build; / is a no-cache 503 page saying how to build", async () => {
    const warnings = missing.logs.filter((line) => line.includes("dashboard not built"));
    assert.equal(warnings.length, 1);
    const record = JSON.parse(warnings[0]!) as { level: string; msg: string; dir: string };
    assert.equal(record.level, "warn");
    assert.equal(record.dir, missingDir);
    assert.ok(record.msg.includes(missingDir) && record.msg.includes("npm run build"), record.msg);
    assert.equal(readyRecord(missing).dashboard_url, undefined);
    for (const target of ["/", "/index.html"]) {
      const res = await request(missing.httpUrl, target);
      assert.equal(res.status, 503, target);
      assert.equal(res.headers["content-type"], "text/html; charset=utf-8");
      assert.equal(res.headers["cache-control"], "no-cache");
      assert.equal(res.headers["content-security-policy"], CSP);
      assert.match(res.body.toString(), /dashboard is not built/);
      assert.match(res.body.toString(), /npm run build/);
    }
    assert.equal((await request(missing.httpUrl, "/assets/index-abc123.js")).status, 404);
    assert.equal((await postJson(missing.httpUrl, "GetStatus", {})).status, 200);
  });

  test("dashboard.enabled false: nothing is served, / is the RPC fallback's 404", async () => {
    for (const target of ["/", "/index.html", "/assets/index-abc123.js"]) {
      const res = await request(disabled.httpUrl, target);
      assert.equal(res.status, 404, target);
      assert.equal(JSON.parse(res.body.toString()).code, "not_found");
    }
    assert.equal(readyRecord(disabled).dashboard_url, undefined);
    assert.ok(!disabled.logs.some((line) => line.includes("dashboard not built")));
  });

  test("authentication on: the page loads without a key; RPCs without one are 401 unauthenticated", async () => {
    const page = await request(authed.httpUrl, "/");
    assert.equal(page.status, 200);
    assert.match(page.body.toString(), /<title>hypervisord<\/title>/);
    assert.equal((await request(authed.httpUrl, "/assets/index-abc123.js")).status, 200);
    const anonymous = await postJson(authed.httpUrl, "GetStatus", {});
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.body.code, "unauthenticated");
    const message = encodeURIComponent(JSON.stringify({ path: "no-such.ova" }));
    const get = await request(authed.httpUrl, `/hypervisord.v1.HypervisordService/ValidateOva?connect=v1&encoding=json&message=${message}`);
    assert.equal(get.status, 401, "a Connect GET too");
    assert.equal((await postJson(authed.httpUrl, "GetStatus", {}, { authorization: `Bearer ${ADMIN_KEY}` })).status, 200);
  });
});
