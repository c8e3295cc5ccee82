import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Agent } from "undici";
import { HypervisordError } from "../src/errors.ts";
import { downloadFiles, type DownloadFile, type DownloadOptions } from "../src/transfer/download.ts";
import { createHostSlots } from "../src/transfer/host-slots.ts";
import { tempDir } from "./support/temp-dir.ts";
import { waitFor } from "./support/wait-for.ts";

const MiB = 1024 * 1024;
const CHUNK = 64 * 1024;
const tmp = tempDir("download");
const agent = new Agent({ keepAliveTimeout: 1000 });
const servers: TestServer[] = [];

after(async () => {
  for (const server of servers) await server.close();
  await agent.close();
});

// ---------------------------------------------------------------------------------------------
// A real HTTP server serving in-memory files with Range support, and knobs to misbehave.

interface Behaviour {
  /** The first GET of each path: the socket is destroyed after this many body bytes. */
  cutAfter?: number;
  /** Answer 200 with the whole file whatever the Range header says. */
  ignoreRange?: boolean;
  /** A status to answer instead of the file, for the nth (1-based) request of a path. */
  status?(path: string, nth: number): number | undefined;
  /** Pause between 64 KiB chunks, so transfers last and overlap. */
  chunkDelayMs?: number;
  /** Never answer: the request waits for its headers until the client gives up. */
  stall?: boolean;
}

interface SeenRequest {
  path: string;
  range: string | undefined;
  status: number;
}

interface TestServer {
  origin: string;
  host: string;
  requests: SeenRequest[];
  /** Responses not closed yet. */
  readonly open: number;
  /** The most responses ever open at once. */
  readonly peakOpen: number;
  close(): Promise<void>;
}

async function startServer(files: Record<string, Buffer>, behaviour: Behaviour = {}): Promise<TestServer> {
  const requests: SeenRequest[] = [];
  const counts = new Map<string, number>();
  let open = 0;
  let peakOpen = 0;

  const server = http.createServer((req, res) => {
    const urlPath = new URL(req.url ?? "/", "http://x").pathname;
    const nth = (counts.get(urlPath) ?? 0) + 1;
    counts.set(urlPath, nth);
    open++;
    peakOpen = Math.max(peakOpen, open);
    res.on("close", () => open--);
    const seen: SeenRequest = { path: urlPath, range: req.headers.range, status: 0 };
    requests.push(seen);
    const reply = (status: number, headers: http.OutgoingHttpHeaders = {}) => {
      seen.status = status;
      res.writeHead(status, headers);
    };

    if (behaviour.stall) return;
    const data = files[urlPath];
    const forced = behaviour.status?.(urlPath, nth);
    if (!data || forced) {
      reply(forced ?? 404, { "content-type": "text/plain" });
      res.end("no\n");
      return;
    }
    let start = 0;
    const range = behaviour.ignoreRange ? undefined : req.headers.range;
    if (range) {
      start = Number(/^bytes=(\d+)-$/.exec(range)?.[1] ?? NaN);
      if (start >= data.length) {
        reply(416, { "content-range": `bytes */${data.length}` });
        res.end();
        return;
      }
      reply(206, { "content-length": data.length - start, "content-range": `bytes ${start}-${data.length - 1}/${data.length}` });
    } else {
      reply(200, { "content-length": data.length });
    }
    const cutAfter = nth === 1 ? behaviour.cutAfter : undefined;
    void send(res, data.subarray(start), cutAfter, behaviour.chunkDelayMs ?? 0);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  const handle: TestServer = {
    origin: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    requests,
    get open() {
      return open;
    },
    get peakOpen() {
      return peakOpen;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  servers.push(handle);
  return handle;
}

async function send(res: http.ServerResponse, body: Buffer, cutAfter: number | undefined, chunkDelayMs: number): Promise<void> {
  const end = Math.min(body.length, cutAfter ?? Infinity);
  for (let offset = 0; offset < end && !res.destroyed; offset += CHUNK) {
    if (offset > 0 && chunkDelayMs > 0) await sleep(chunkDelayMs);
    const chunk = body.subarray(offset, Math.min(end, offset + CHUNK));
    // The last chunk goes with end(): the response counts as open until the client has had every byte.
    if (offset + chunk.length === body.length) return void res.end(chunk);
    if (!res.write(chunk)) await drained(res);
  }
  if (res.destroyed) return;
  if (end === body.length) return void res.end(); // empty body
  // Cut: flush what was written, then drop the connection mid-body.
  await new Promise<void>((resolve) => res.write(Buffer.alloc(0), () => resolve()));
  res.socket?.destroy();
}

function drained(res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

// ---------------------------------------------------------------------------------------------
// Helpers

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

let dirCount = 0;
function freshDir(): string {
  const dir = path.join(tmp, `t${++dirCount}`);
  fs.mkdirSync(dir);
  return dir;
}

/** Files named disk-N.vmdk with random content of the given sizes, and the DownloadFiles for them. */
function makeFiles(server: TestServer, sources: Record<string, Buffer>, dir: string, withSize = true): DownloadFile[] {
  return Object.entries(sources).map(([urlPath, data]) => ({
    name: path.basename(urlPath),
    url: `${server.origin}${urlPath}`,
    path: path.join(dir, path.basename(urlPath)),
    size: withSize ? data.length : undefined,
  }));
}

function sourcesOf(...sizes: number[]): Record<string, Buffer> {
  return Object.fromEntries(sizes.map((size, i) => [`/nfc/export/lease-1/disk-${i}.vmdk`, randomBytes(size)]));
}

function options(overrides: Partial<DownloadOptions> = {}): DownloadOptions {
  return {
    dispatcher: agent,
    parallel: 2,
    bandwidthLimit: 0,
    signal: new AbortController().signal,
    retry: { maxAttempts: 3, initialBackoffMs: 10, maxBackoffMs: 50 },
    ...overrides,
  };
}

function assertSameBytes(files: DownloadFile[], sources: Record<string, Buffer>): void {
  for (const [urlPath, data] of Object.entries(sources)) {
    const file = files.find((f) => f.url.endsWith(urlPath))!;
    const written = fs.readFileSync(file.path);
    assert.equal(written.length, data.length, `${file.name} size`);
    assert.ok(written.equals(data), `${file.name} differs from the source`);
  }
}

function recordingLogger() {
  const warnings: string[] = [];
  return { warnings, logger: { info() {}, warn(_obj: object, msg: string) { warnings.push(msg); } } };
}

// ---------------------------------------------------------------------------------------------

describe("downloadFiles", () => {
  test("writes byte-identical files, in input order, with the SHA-256 of the source", async () => {
    const sources = sourcesOf(3 * MiB, 1.5 * MiB + 7, 0);
    const server = await startServer(sources);
    const files = makeFiles(server, sources, freshDir());
    delete files[1]!.size; // its size comes from Content-Length
    const checkpoints: [string, number][] = [];
    let last: Parameters<NonNullable<DownloadOptions["onProgress"]>>[0] | undefined;
    const results = await downloadFiles(files, options({
      onProgress: (p) => { last = p; },
      onCheckpoint: (name, bytes) => checkpoints.push([name, bytes]),
    }));
    assert.deepEqual(results.map((r) => r.name), files.map((f) => f.name));
    Object.values(sources).forEach((data, i) => {
      assert.equal(results[i]!.size, data.length);
      assert.equal(results[i]!.sha256, sha256(data));
      assert.equal(results[i]!.path, files[i]!.path);
    });
    assertSameBytes(files, sources);
    const total = 3 * MiB + 1.5 * MiB + 7;
    assert.deepEqual({ ...last, currentFile: undefined }, { bytesDone: total, bytesTotal: total, filesDone: 3, filesTotal: 3, currentFile: undefined });
    for (const file of files) {
      const mine = checkpoints.filter(([name]) => name === file.name);
      assert.deepEqual(mine.at(-1), [file.name, fs.statSync(file.path).size], `final checkpoint of ${file.name}`);
    }
    assert.ok(server.requests.every((r) => r.range === undefined));
  });

  test("checkpoints come about every second, in order, once their bytes are on disk", async () => {
    const sources = sourcesOf(4 * MiB);
    const data = Object.values(sources)[0]!;
    const server = await startServer(sources, { chunkDelayMs: 20 }); // ~1.3 s
    const files = makeFiles(server, sources, freshDir());
    const reported: number[] = [];
    await downloadFiles(files, options({
      onCheckpoint: (name, bytes) => {
        assert.equal(name, files[0]!.name);
        const onDisk = fs.readFileSync(files[0]!.path);
        assert.ok(onDisk.length >= bytes, `checkpoint ${bytes} beyond the ${onDisk.length} bytes on disk`);
        assert.ok(onDisk.subarray(0, bytes).equals(data.subarray(0, bytes)), `bytes below checkpoint ${bytes} differ`);
        reported.push(bytes);
      },
    }));
    assert.ok(reported.length >= 2 && reported.length <= 4, `checkpoints: ${reported.join(", ")}`);
    assert.ok(reported[0]! > 0 && reported[0]! < data.length);
    assert.deepEqual(reported, [...reported].sort((a, b) => a - b));
    assert.equal(reported.at(-1), data.length);
  });

  test("a throwing progress callback fails the download instead of crashing the process", async () => {
    const sources = sourcesOf(2 * MiB);
    const server = await startServer(sources);
    const files = makeFiles(server, sources, freshDir());
    await assert.rejects(
      downloadFiles(files, options({ onProgress: () => { throw new Error("observer bug"); } })),
      { code: "INTERNAL", message: /reporting the progress of disk-0\.vmdk: observer bug/ },
    );
  });

  test("never has more than `parallel` files in flight", async () => {
    const sources = sourcesOf(...Array.from({ length: 5 }, () => MiB));
    const server = await startServer(sources, { chunkDelayMs: 5 });
    const files = makeFiles(server, sources, freshDir());
    await downloadFiles(files, options({ parallel: 2 }));
    assertSameBytes(files, sources);
    assert.equal(server.requests.length, 5);
    assert.equal(server.peakOpen, 2);
  });

  test("a connection cut mid-body resumes with Range from the bytes written", async () => {
    const cut = MiB + 12345;
    const sources = sourcesOf(3 * MiB, 2 * MiB + 1);
    const server = await startServer(sources, { cutAfter: cut });
    const files = makeFiles(server, sources, freshDir());
    const results = await downloadFiles(files, options());
    assertSameBytes(files, sources);
    assert.deepEqual(results.map((r) => r.sha256), Object.values(sources).map(sha256));
    for (const urlPath of Object.keys(sources)) {
      const ranges = server.requests.filter((r) => r.path === urlPath).map((r) => r.range);
      assert.equal(ranges.length, 2, `${urlPath}: ${ranges.join(",")}`);
      assert.equal(ranges[0], undefined);
      const start = Number(/^bytes=(\d+)-$/.exec(ranges[1] ?? "")?.[1]);
      assert.ok(start > 0 && start <= cut, `resumed from ${ranges[1]}`);
    }
  });

  test("SHA-1 when asked, consistent with SHA-256 across a cut and a resume", async () => {
    const sources = sourcesOf(3 * MiB + 5, MiB);
    const server = await startServer(sources, { cutAfter: MiB + 777 });
    const files = makeFiles(server, sources, freshDir());
    files[0]!.sha1 = true;
    const results = await downloadFiles(files, options());
    assertSameBytes(files, sources);
    const [first, second] = Object.values(sources);
    assert.equal(results[0]!.sha256, sha256(first!));
    assert.equal(results[0]!.sha1, createHash("sha1").update(first!).digest("hex"));
    assert.equal(results[1]!.sha256, sha256(second!));
    assert.equal("sha1" in results[1]!, false);
  });

  test("a 503 is retried", async () => {
    const sources = sourcesOf(512 * 1024);
    const data = Object.values(sources)[0]!;
    const server = await startServer(sources, { status: (_path, nth) => (nth === 1 ? 503 : undefined) });
    const files = makeFiles(server, sources, freshDir());
    const [result] = await downloadFiles(files, options());
    assert.equal(result!.sha256, sha256(data));
    assert.deepEqual(server.requests.map((r) => r.status), [503, 200]);
  });

  test("a cut with no attempts left fails UNAVAILABLE and retryable, naming the file, host and bytes", async () => {
    const sources = sourcesOf(2 * MiB);
    const server = await startServer(sources, { cutAfter: MiB });
    const files = makeFiles(server, sources, freshDir());
    const err = await downloadFiles(files, options({ retry: { maxAttempts: 1, initialBackoffMs: 10, maxBackoffMs: 10 } })).then(
      () => assert.fail("expected a failure"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof HypervisordError, String(err));
    assert.equal(err.code, "UNAVAILABLE");
    assert.equal(err.retryable, true);
    assert.match(err.message, new RegExp(`^downloading disk-0\\.vmdk from ${server.host.replace(/\./g, "\\.")}: .+ after (1 MiB|\\d+(\\.\\d)? KiB)`));
  });

  test("a server that ignores Range after a cut makes the file restart from 0", async () => {
    const sources = sourcesOf(3 * MiB);
    const server = await startServer(sources, { cutAfter: MiB, ignoreRange: true });
    const files = makeFiles(server, sources, freshDir());
    const { warnings, logger } = recordingLogger();
    const checkpoints: number[] = [];
    const [result] = await downloadFiles(files, options({ logger, onCheckpoint: (_n, bytes) => checkpoints.push(bytes) }));
    assertSameBytes(files, sources);
    assert.equal(result!.sha256, sha256(Object.values(sources)[0]!));
    assert.deepEqual(server.requests.map((r) => [r.status, r.range !== undefined]), [[200, false], [200, true]]);
    assert.ok(warnings.some((w) => /restarting the file from 0/.test(w)), warnings.join("\n"));
    assert.equal(checkpoints.at(-1), 3 * MiB);
  });

  test("resume keeps the first N bytes on disk, drops what follows, and requests only the rest", async () => {
    const sources = sourcesOf(3 * MiB);
    const data = Object.values(sources)[0]!;
    const server = await startServer(sources);
    const files = makeFiles(server, sources, freshDir());
    const kept = 2 * MiB + 3;
    // Bytes past the checkpoint were written but never synced and reported: they must go, even past the file's end.
    fs.writeFileSync(files[0]!.path, Buffer.concat([data.subarray(0, kept), randomBytes(2 * MiB)]));
    const [result] = await downloadFiles(files, options({ resume: { [files[0]!.name]: kept } }));
    assert.deepEqual(server.requests.map((r) => [r.status, r.range]), [[206, `bytes=${kept}-`]]);
    assert.equal(result!.sha256, sha256(data));
    assertSameBytes(files, sources);
  });

  test("resume from a file shorter than its checkpoint continues from the real size", async () => {
    const sources = sourcesOf(2 * MiB);
    const data = Object.values(sources)[0]!;
    const server = await startServer(sources);
    const files = makeFiles(server, sources, freshDir());
    fs.writeFileSync(files[0]!.path, data.subarray(0, 500_000));
    const [result] = await downloadFiles(files, options({ resume: { [files[0]!.name]: MiB } }));
    assert.deepEqual(server.requests.map((r) => r.range), ["bytes=500000-"]);
    assert.equal(result!.sha256, sha256(data));
    assertSameBytes(files, sources);
  });

  test("resume of a complete file: the 416 for bytes=size- means done", async () => {
    const sources = sourcesOf(MiB + 1);
    const data = Object.values(sources)[0]!;
    const server = await startServer(sources);
    const files = makeFiles(server, sources, freshDir());
    fs.writeFileSync(files[0]!.path, data);
    const [result] = await downloadFiles(files, options({ resume: { [files[0]!.name]: data.length } }));
    assert.deepEqual(server.requests.map((r) => [r.status, r.range]), [[416, `bytes=${data.length}-`]]);
    assert.deepEqual({ size: result!.size, sha256: result!.sha256 }, { size: data.length, sha256: sha256(data) });
  });

  test("the bandwidth limit is shared by all files of the call", async () => {
    const sources = sourcesOf(MiB, MiB);
    const server = await startServer(sources);
    const files = makeFiles(server, sources, freshDir());
    const started = performance.now();
    await downloadFiles(files, options({ parallel: 2, bandwidthLimit: 4 * MiB }));
    const seconds = (performance.now() - started) / 1000;
    assertSameBytes(files, sources);
    // 2 MiB at 4 MiB/s with a 0.4 MiB burst: ~0.4 s. A bucket per file would take ~0.15 s.
    assert.ok(seconds >= 0.3, `took ${seconds.toFixed(3)} s`);
    assert.ok(seconds < 2, `took ${seconds.toFixed(3)} s`);
  });

  test("abort rejects promptly with the signal's reason and leaves no request open", async () => {
    const sources = sourcesOf(8 * MiB, 8 * MiB);
    const server = await startServer(sources, { chunkDelayMs: 20 }); // ~2.6 s if nobody stopped it
    const files = makeFiles(server, sources, freshDir());
    const controller = new AbortController();
    const reason = new HypervisordError("CANCELLED", "job cancelled by test");
    let abortedAt = 0;
    const download = downloadFiles(files, options({
      signal: controller.signal,
      onProgress: (p) => {
        if (p.bytesDone > 256 * 1024 && !controller.signal.aborted) {
          abortedAt = performance.now();
          controller.abort(reason);
        }
      },
    }));
    await assert.rejects(download, (err) => err === reason);
    const ms = performance.now() - abortedAt;
    assert.ok(ms < 1000, `rejected ${ms.toFixed(0)} ms after abort`);
    await waitFor("the server to see every request closed", () => server.open === 0, 1000);
    assert.equal(server.requests.length, 2);
  });

  test("abort while waiting for the response headers cancels the request", { timeout: 5000 }, async () => {
    const sources = sourcesOf(MiB);
    const server = await startServer(sources, { stall: true });
    const controller = new AbortController();
    const download = downloadFiles(makeFiles(server, sources, freshDir()), options({ signal: controller.signal }));
    await waitFor("the request to arrive", () => server.open === 1);
    const reason = new Error("shutdown");
    controller.abort(reason);
    await assert.rejects(download, (err) => err === reason);
    await waitFor("the server to see the request closed", () => server.open === 0, 1000);
  });

  test("abort during the retry backoff rejects at once", async () => {
    const sources = sourcesOf(MiB);
    const server = await startServer(sources, { status: () => 503 });
    const files = makeFiles(server, sources, freshDir());
    const controller = new AbortController();
    const download = downloadFiles(files, options({ signal: controller.signal, retry: { maxAttempts: 5, initialBackoffMs: 60_000, maxBackoffMs: 60_000 } }));
    await waitFor("the first request", () => server.requests.length === 1);
    const started = performance.now();
    controller.abort(new Error("stop"));
    await assert.rejects(download, /^Error: stop$/);
    assert.ok(performance.now() - started < 1000);
  });

  test("404 is UNAVAILABLE, not retried, and names the file and status", async () => {
    const sources = sourcesOf(MiB);
    const server = await startServer(sources, { status: () => 404 });
    const files = makeFiles(server, sources, freshDir());
    await assert.rejects(downloadFiles(files, options()), (err) => {
      assert.ok(err instanceof HypervisordError);
      assert.equal(err.code, "UNAVAILABLE");
      assert.equal(err.retryable, false);
      assert.match(err.message, /disk-0\.vmdk/);
      assert.match(err.message, /HTTP 404/);
      return true;
    });
    assert.equal(server.requests.length, 1);
  });

  test("403 is PERMISSION_DENIED", async () => {
    const sources = sourcesOf(MiB);
    const server = await startServer(sources, { status: () => 403 });
    await assert.rejects(downloadFiles(makeFiles(server, sources, freshDir()), options()), { code: "PERMISSION_DENIED", retryable: false });
    assert.equal(server.requests.length, 1);
  });

  test("500 twice then 200 succeeds through retries", async () => {
    const sources = sourcesOf(MiB);
    const server = await startServer(sources, { status: (_path, nth) => (nth <= 2 ? 500 : undefined) });
    const files = makeFiles(server, sources, freshDir());
    const { warnings, logger } = recordingLogger();
    const [result] = await downloadFiles(files, options({ logger }));
    assert.equal(result!.sha256, sha256(Object.values(sources)[0]!));
    assert.deepEqual(server.requests.map((r) => r.status), [500, 500, 200]);
    assert.equal(warnings.filter((w) => /retrying/.test(w)).length, 2);
  });

  test("retryable statuses give up after maxAttempts without progress", async () => {
    const sources = sourcesOf(MiB);
    const server = await startServer(sources, { status: () => 429 });
    await assert.rejects(downloadFiles(makeFiles(server, sources, freshDir()), options()), (err) => {
      assert.ok(err instanceof HypervisordError);
      assert.equal(err.code, "UNAVAILABLE");
      assert.match(err.message, /HTTP 429.*gave up after 3 attempts/);
      return true;
    });
    assert.equal(server.requests.length, 3);
  });

  test("a size that differs from the expected one is an INTERNAL error", async () => {
    const sources = sourcesOf(MiB);
    const server = await startServer(sources);
    const files = makeFiles(server, sources, freshDir());
    files[0]!.size = MiB + 1;
    await assert.rejects(downloadFiles(files, options()), (err) => {
      assert.ok(err instanceof HypervisordError);
      assert.equal(err.code, "INTERNAL");
      assert.equal(err.retryable, false);
      assert.match(err.message, /disk-0\.vmdk.*got 1048576 bytes, expected 1048577/);
      return true;
    });
  });

  test("hostSlots caps concurrent transfers to a host across calls", async () => {
    const sourcesA = sourcesOf(MiB, MiB, MiB);
    const sourcesB = Object.fromEntries(Object.entries(sourcesOf(MiB, MiB, MiB)).map(([p, d]) => [p.replace("lease-1", "lease-2"), d]));
    const server = await startServer({ ...sourcesA, ...sourcesB }, { chunkDelayMs: 5 });
    const hostSlots = createHostSlots(2);
    const filesA = makeFiles(server, sourcesA, freshDir());
    const filesB = makeFiles(server, sourcesB, freshDir());
    await Promise.all([
      downloadFiles(filesA, options({ parallel: 3, hostSlots })),
      downloadFiles(filesB, options({ parallel: 3, hostSlots })),
    ]);
    assertSameBytes(filesA, sourcesA);
    assertSameBytes(filesB, sourcesB);
    assert.equal(server.requests.length, 6);
    assert.equal(server.peakOpen, 2);
  });
});

describe("downloadFiles into regions of one file (offset)", () => {
  /** A shared file with a guard pattern around and between the regions, and the DownloadFiles that fill them. */
  function regions(server: TestServer, sources: Record<string, Buffer>, gap: number) {
    const target = path.join(freshDir(), "package.ova");
    const entries = Object.entries(sources);
    let offset = gap;
    const files: DownloadFile[] = entries.map(([urlPath, data]) => {
      const file = { name: path.basename(urlPath), url: `${server.origin}${urlPath}`, path: target, size: data.length, offset };
      offset += data.length + gap;
      return file;
    });
    fs.writeFileSync(target, Buffer.alloc(offset, 0xee));
    const expected = Buffer.alloc(offset, 0xee);
    files.forEach((f, i) => entries[i]![1].copy(expected, f.offset));
    return { target, files, expected };
  }

  test("parallel downloads write each file at its offset and leave the other bytes alone", async () => {
    const sources = sourcesOf(2 * MiB + 7, MiB, 3);
    const server = await startServer(sources);
    const { target, files, expected } = regions(server, sources, 1536);
    const results = await downloadFiles(files, options({ parallel: 3 }));
    assert.deepEqual(results.map((r) => r.sha256), Object.values(sources).map(sha256));
    assert.ok(fs.readFileSync(target).equals(expected));
  });

  test("a cut resumes with Range into the region, and a resume from a checkpoint re-hashes the region's prefix", async () => {
    const sources = sourcesOf(3 * MiB, 2 * MiB);
    const server = await startServer(sources, { cutAfter: MiB + 5 });
    const { target, files, expected } = regions(server, sources, 512);
    const results = await downloadFiles(files, options());
    assert.deepEqual(results.map((r) => r.sha256), Object.values(sources).map(sha256));
    assert.ok(fs.readFileSync(target).equals(expected));

    // A later run with checkpoints: only the rest is asked for, and the digest covers the whole region.
    const again = await startServer(sources);
    const rerun = files.map((f) => ({ ...f, url: f.url.replace(server.origin, again.origin) }));
    const kept = 2 * MiB;
    const [first] = await downloadFiles([rerun[0]!], options({ resume: { [rerun[0]!.name]: kept } }));
    assert.deepEqual(again.requests.map((r) => r.range), [`bytes=${kept}-`]);
    assert.equal(first!.sha256, sha256(Object.values(sources)[0]!));
    assert.ok(fs.readFileSync(target).equals(expected), "the file is unchanged and was not truncated");
  });

  test("a body longer than the region fails before writing past it", async () => {
    const sources = sourcesOf(MiB);
    const server = await startServer(sources);
    const { target, files, expected } = regions(server, sources, 512);
    const short = [{ ...files[0]!, size: MiB - 1000 }];
    await assert.rejects(downloadFiles(short, options()), (err: HypervisordError) => err.code === "INTERNAL" && /sent more than the 1047576 bytes expected/.test(err.message));
    const after = fs.readFileSync(target);
    assert.equal(after.length, expected.length);
    assert.ok(after.subarray(512 + MiB - 1000).every((byte) => byte === 0xee), "nothing past the region changed");
  });

  test("an offset without a size is refused", async () => {
    await assert.rejects(downloadFiles([{ name: "a", url: "http://127.0.0.1:1/a", path: "/tmp/x", offset: 10 }], options()),
      (err: HypervisordError) => err.code === "INVALID_ARGUMENT" && /files\[0\]\.offset: must be an integer >= 0, with size set/.test(err.message));
  });
});

describe("createHostSlots", () => {
  test("a waiter aborted in the queue rejects with the reason and gives its turn away", async () => {
    const slots = createHostSlots(1);
    const never = new AbortController().signal;
    const release = await slots.acquire("h:1", never);
    const leaving = new AbortController();
    const aborted = slots.acquire("h:1", leaving.signal);
    const next = slots.acquire("h:1", never);
    const other = await slots.acquire("h:2", never); // other hosts are not affected
    leaving.abort(new Error("gone"));
    await assert.rejects(aborted, /gone/);
    release();
    release(); // a second release is a no-op, not a second slot
    const releaseNext = await next;
    let third = false;
    void slots.acquire("h:1", never).then(() => { third = true; });
    await sleep(20);
    assert.equal(third, false);
    releaseNext();
    other();
    await waitFor("the third waiter", () => third);
  });
});
