import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { gzipSync } from "node:zlib";
import type { Logger } from "pino";
import type { NodeRequest, NodeResponse } from "./http-server.ts";

export interface DashboardOptions {
  /** The Vite build output (index.html, assets/...). */
  dir: string;
  logger: Logger;
}

/** Answers GET and HEAD of the dashboard's files; returns false, having written nothing, for any other request. */
export interface DashboardHandler {
  (req: NodeRequest, res: NodeResponse): boolean;
  /** False when the dir or its index.html is missing: `/` then answers 503 with how to build it. */
  readonly built: boolean;
}

interface Variant {
  body: Buffer;
  etag: string;
}

interface StaticFile {
  identity: Variant;
  /** The gzip representation, made on the first request that accepts it (undefined: not worth it). */
  gzip(): Variant | undefined;
  headers: Record<string, string>;
}

// The policy the dashboard is written for: its own scripts and styles only, RPCs to its own origin.
const HTML_HEADERS = {
  "content-security-policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".webmanifest": "application/manifest+json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".webp": "image/webp",
  ".ico": "image/x-icon",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".wasm": "application/wasm",
};
const COMPRESSIBLE = new Set([".html", ".js", ".mjs", ".css", ".svg", ".json", ".map", ".webmanifest", ".txt"]);

/** A guard against a dir pointed at something that is not a dashboard build (everything is held in memory). */
const MAX_TOTAL_BYTES = 64 * 1024 * 1024;

const NOT_BUILT_PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>hypervisord: dashboard not built</title></head>
<body>
<h1>The hypervisord dashboard is not built</h1>
<p>Build it in the hypervisord checkout with <code>npm run build</code>, then restart hypervisord.</p>
<p>The API is served on this port all the same.</p>
</body>
</html>
`;

/**
 * The built web dashboard, read into memory once at start (gzip made once per file, when first asked for), so that
 * serving it touches no disk and no path from a request ever reaches the file system: only the exact
 * names found at start match. Unauthenticated by design: the page must load to ask for an API key.
 */
export function createDashboardHandler(options: DashboardOptions): DashboardHandler {
  const dir = path.resolve(options.dir);
  const files = loadFiles(dir);
  const index = files.get("/index.html");
  if (index) files.set("/", index);
  else {
    options.logger.warn({ dir }, `dashboard not built: ${path.join(dir, "index.html")} is missing; run \`npm run build\` to build it, then restart hypervisord`);
    files.clear();
  }
  const notBuilt = index ? undefined : staticFile("/index.html", Buffer.from(NOT_BUILT_PAGE));

  const handle = (req: NodeRequest, res: NodeResponse): boolean => {
    if (req.method !== "GET" && req.method !== "HEAD") return false;
    const name = requestPath(req.url ?? "/");
    if (notBuilt && (name === "/" || name === "/index.html")) {
      send(req, res, notBuilt, 503);
      return true;
    }
    const file = name === undefined ? undefined : files.get(name);
    if (!file) return false;
    send(req, res, file, 200);
    return true;
  };
  return Object.assign(handle, { built: index !== undefined });
}

/** The decoded path without the query; undefined when it does not decode (it matches nothing then). */
function requestPath(url: string): string | undefined {
  const raw = url.split(/[?#]/, 1)[0]!;
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

function send(req: NodeRequest, res: NodeResponse, file: StaticFile, status: number): void {
  const gzip = acceptsGzip(req.headers["accept-encoding"]) ? file.gzip() : undefined;
  const variant = gzip ?? file.identity;
  for (const [name, value] of Object.entries(file.headers)) res.setHeader(name, value);
  // CORS may have set Vary: Origin already.
  const vary = res.getHeader("vary");
  res.setHeader("vary", vary ? `${String(vary)}, Accept-Encoding` : "Accept-Encoding");
  res.setHeader("etag", variant.etag);
  if (status === 200 && matchesEtag(req.headers["if-none-match"], variant.etag)) {
    res.writeHead(304);
    res.end();
    return;
  }
  if (gzip) res.setHeader("content-encoding", "gzip");
  res.setHeader("content-length", variant.body.length);
  res.writeHead(status);
  if (req.method === "HEAD") res.end();
  else res.end(variant.body);
}

/** Every regular file under `dir` by its URL path ("/assets/index-abc.js"); dotfiles and symbolic links are left out. */
function loadFiles(dir: string): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  let total = 0;
  const walk = (folder: string) => {
    for (const entry of fs.readdirSync(folder, { withFileTypes: true })) {
      if (entry.name.startsWith(".")) continue;
      const full = path.join(folder, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile()) {
        const body = fs.readFileSync(full);
        total += body.length;
        if (total > MAX_TOTAL_BYTES) throw new Error(`more than ${MAX_TOTAL_BYTES / 1024 / 1024} MiB of files: not a dashboard build`);
        const name = `/${path.relative(dir, full).split(path.sep).join("/")}`;
        files.set(name, staticFile(name, body));
      }
    }
  };
  try {
    walk(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" && files.size === 0) return files;
    throw new Error(`loading the dashboard from ${dir} (dashboard.dir; dashboard.enabled: false turns it off): ${(err as Error).message}`, { cause: err });
  }
  return files;
}

function staticFile(name: string, body: Buffer): StaticFile {
  const ext = path.extname(name).toLowerCase();
  const isHtml = ext === ".html";
  const hash = createHash("sha256").update(body).digest("base64url").slice(0, 32);
  // Compressed on first use, not at start: the source maps alone took ~150 ms of every daemon start.
  let gzip: Variant | undefined | null = COMPRESSIBLE.has(ext) ? undefined : null;
  return {
    identity: { body, etag: `"${hash}"` },
    gzip() {
      if (gzip === undefined) {
        const zipped = gzipSync(body, { level: 9 });
        // A strong ETag names one representation: the gzip one gets its own.
        gzip = zipped.length < body.length ? { body: zipped, etag: `"${hash}-gz"` } : null;
      }
      return gzip ?? undefined;
    },
    headers: {
      "content-type": TYPES[ext] ?? "application/octet-stream",
      // Vite puts content hashes in the names under assets/: they never change. index.html names them: always revalidated.
      "cache-control": name.startsWith("/assets/") ? "public, max-age=31536000, immutable" : isHtml ? "no-cache" : "public, max-age=3600",
      "x-content-type-options": "nosniff",
      ...(isHtml ? HTML_HEADERS : {}),
    },
  };
}

/** gzip unless refused: `gzip;q=0`, or not listed where `*;q=0` is. */
function acceptsGzip(header: string | undefined): boolean {
  if (!header) return false;
  let star: number | undefined;
  for (const part of header.split(",")) {
    const [token = "", ...params] = part.split(";").map((s) => s.trim().toLowerCase());
    const qParam = params.find((p) => p.startsWith("q="));
    const q = qParam ? Number(qParam.slice(2)) : 1;
    if (token === "gzip" || token === "x-gzip") return q > 0;
    if (token === "*") star = q;
  }
  return star !== undefined && star > 0;
}

/** If-None-Match uses the weak comparison: W/ is ignored; * matches any. */
function matchesEtag(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  return header.split(",").some((tag) => {
    const t = tag.trim();
    return t === "*" || t.replace(/^W\//, "") === etag;
  });
}
