// downloadFiles over src/transfer/raw-get.ts against a real node:http server that sends its bodies with
// Transfer-Encoding: chunked (no Content-Length), as a host streaming a disk of unknown size does.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { after, describe, test } from "node:test";
import { Agent } from "undici";
import { downloadFiles, type DownloadOptions } from "../src/transfer/download.ts";
import { tempDir } from "./support/temp-dir.ts";

const MiB = 1024 * 1024;
const tmp = tempDir("raw-get");
const agent = new Agent();
const servers: http.Server[] = [];

after(async () => {
  for (const server of servers) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  await agent.close();
});

/** Serves `data` chunked in pieces of odd sizes; honours `Range: bytes=N-` (206, still chunked); the first GET is cut after `cutAfter` bytes. */
async function chunkedServer(data: Buffer, cutAfter?: number): Promise<{ url: string; ranges: (string | undefined)[] }> {
  const ranges: (string | undefined)[] = [];
  const server = http.createServer(async (req, res) => {
    ranges.push(req.headers.range);
    const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? "")?.[1] ?? 0);
    if (start > 0) res.writeHead(206, { "content-range": `bytes ${start}-${data.length - 1}/${data.length}` });
    else res.writeHead(200);
    const end = ranges.length === 1 && cutAfter !== undefined ? cutAfter : data.length;
    for (let offset = start, piece = 1; offset < end; piece = (piece * 7 + 3) % 50_000 + 1) {
      const chunk = data.subarray(offset, Math.min(end, offset + piece));
      offset += chunk.length;
      if (!res.write(chunk)) await new Promise((resolve) => res.once("drain", resolve));
    }
    if (end < data.length) {
      await new Promise<void>((resolve) => res.write("", () => resolve()));
      res.socket?.destroy();
    } else {
      res.end();
    }
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/disk.vmdk`, ranges };
}

function options(overrides: Partial<DownloadOptions> = {}): DownloadOptions {
  return { dispatcher: agent, parallel: 1, bandwidthLimit: 0, signal: new AbortController().signal, retry: { maxAttempts: 3, initialBackoffMs: 10, maxBackoffMs: 50 }, ...overrides };
}

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

describe("downloads of chunked bodies (raw-get)", () => {
  test("a chunked body is decoded: the file and its SHA-256 are the source's", async () => {
    const data = randomBytes(3 * MiB + 12_345);
    const server = await chunkedServer(data);
    const file = path.join(tmp, "whole.vmdk");
    const [result] = await downloadFiles([{ name: "whole.vmdk", url: server.url, path: file }], options());
    assert.ok(fs.readFileSync(file).equals(data), "the file is the source's bytes");
    assert.equal(result!.size, data.length);
    assert.equal(result!.sha256, sha256(data));
  });

  test("a chunked body cut mid-way resumes with Range from the bytes written, to identical bytes", async () => {
    const data = randomBytes(2 * MiB + 777);
    const server = await chunkedServer(data, MiB + 4321);
    const file = path.join(tmp, "cut.vmdk");
    const [result] = await downloadFiles([{ name: "cut.vmdk", url: server.url, path: file, size: data.length, sha1: true }], options());
    assert.ok(fs.readFileSync(file).equals(data), "the file is the source's bytes");
    assert.equal(result!.sha256, sha256(data));
    assert.equal(result!.sha1, createHash("sha1").update(data).digest("hex"));
    assert.equal(server.ranges.length, 2, `requests: ${JSON.stringify(server.ranges)}`);
    assert.match(server.ranges[1] ?? "", /^bytes=\d+-$/);
    assert.ok(Number(/\d+/.exec(server.ranges[1]!)![0]) > 0, "the second request continued, not restarted");
  });

  test("a bandwidth limit paces a chunked body too", async () => {
    const data = randomBytes(MiB);
    const server = await chunkedServer(data);
    const file = path.join(tmp, "paced.vmdk");
    const started = performance.now();
    await downloadFiles([{ name: "paced.vmdk", url: server.url, path: file }], options({ bandwidthLimit: 2 * MiB }));
    const seconds = (performance.now() - started) / 1000;
    assert.ok(fs.readFileSync(file).equals(data));
    // 1 MiB at 2 MiB/s with a 0.2 MiB burst: ~0.4 s.
    assert.ok(seconds >= 0.3, `took ${seconds.toFixed(3)} s`);
  });
});
