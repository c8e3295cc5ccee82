import assert from "node:assert/strict";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { BlobSASPermissions, BlobServiceClient, StorageSharedKeyCredential, generateBlobSASQueryParameters, type ContainerClient } from "@azure/storage-blob";
import { HypervisordError } from "../src/errors.ts";
import { downloadPageBlobs, getPageRanges, type PageBlobDisk, type PageBlobOptions } from "../src/providers/azure/page-blob.ts";
import { parsePageList, planChunks } from "../src/providers/azure/page-ranges.ts";
import { createHostSlots } from "../src/transfer/host-slots.ts";
import { startAzurite, type Azurite } from "./support/azurite.ts";
import { tempDir } from "./support/temp-dir.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const tmp = tempDir("azure-page-blob");
let azurite: Azurite;
let container: ContainerClient;
const proxies: Proxy[] = [];

before(async () => {
  azurite = await startAzurite();
  container = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient("disks");
  await container.create();
});

after(async () => {
  for (const proxy of proxies) await proxy.close();
  await azurite?.stop();
});

// ---------------------------------------------------------------------------------------------
// Page blobs in Azurite: a fixed VHD (disk bytes, then a footer) with written extents and holes

/** A VHD footer per Microsoft's "Virtual Hard Disk Image Format Specification": a fixed disk of `diskBytes`. */
function vhdFooter(diskBytes: number, options: { badChecksum?: boolean } = {}): Buffer {
  const footer = Buffer.alloc(512);
  footer.write("conectix", 0, "latin1");
  footer.writeUInt32BE(2, 8); // features: reserved bit always set
  footer.writeUInt32BE(0x0001_0000, 12); // format version 1.0
  footer.writeBigUInt64BE(0xffff_ffff_ffff_ffffn, 16); // data offset: none for a fixed disk
  footer.writeUInt32BE(Math.floor((Date.now() - Date.UTC(2000, 0, 1)) / 1000), 24);
  footer.write("wa\0\0", 28, "latin1"); // creator application, as Azure writes it
  footer.writeUInt32BE(0x0007_0000, 32);
  footer.write("Wi2k", 36, "latin1");
  footer.writeBigUInt64BE(BigInt(diskBytes), 40); // original size
  footer.writeBigUInt64BE(BigInt(diskBytes), 48); // current size
  const sectors = Math.min(diskBytes / 512, 65535 * 16 * 255);
  const heads = 16;
  const perTrack = 63;
  footer.writeUInt16BE(Math.min(65535, Math.floor(sectors / heads / perTrack)), 56);
  footer.writeUInt8(heads, 58);
  footer.writeUInt8(perTrack, 59);
  footer.writeUInt32BE(2, 60); // disk type: fixed
  randomBytes(16).copy(footer, 68); // unique id
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += footer[i]!;
  footer.writeUInt32BE((~sum >>> 0) + (options.badChecksum ? 1 : 0) >>> 0, 64);
  return footer;
}

interface Extent {
  offset: number;
  length: number;
  /** Written as zeros: a data range in the page list whose bytes are all zero. */
  zeros?: boolean;
}

interface TestBlob {
  name: string;
  /** Read SAS URL straight to Azurite. */
  sas: string;
  /** The blob's bytes, as a full GET returns them. */
  bytes: Buffer;
  /** Bytes in the page list (the extents and the footer). */
  dataBytes: number;
}

/** A page blob of `diskBytes` + footer with `extents` written (random bytes unless zeros), the footer last. */
async function makeBlob(diskBytes: number, extents: Extent[], options: { badFooter?: boolean } = {}): Promise<TestBlob> {
  const name = `disk-${randomUUID()}.vhd`;
  const size = diskBytes + 512;
  const bytes = Buffer.alloc(size);
  const blob = container.getPageBlobClient(name);
  await blob.create(size);
  let dataBytes = 0;
  const put = async (offset: number, data: Buffer) => {
    data.copy(bytes, offset);
    dataBytes += data.length;
    for (let at = 0; at < data.length; at += 4 * MiB) {
      const piece = data.subarray(at, Math.min(data.length, at + 4 * MiB));
      await blob.uploadPages(piece, offset + at, piece.length);
    }
  };
  for (const extent of extents) await put(extent.offset, extent.zeros ? Buffer.alloc(extent.length) : randomBytes(extent.length));
  await put(diskBytes, options.badFooter ? randomBytes(512) : vhdFooter(diskBytes));
  return { name, sas: sasUrl(name), bytes, dataBytes };
}

function sasUrl(name: string, options: { expired?: boolean } = {}): string {
  const now = Date.now();
  const sas = generateBlobSASQueryParameters({
    containerName: "disks",
    blobName: name,
    permissions: BlobSASPermissions.parse("r"),
    startsOn: new Date(now - 2 * 3600_000),
    expiresOn: new Date(options.expired ? now - 3600_000 : now + 3600_000),
  }, new StorageSharedKeyCredential(azurite.account, azurite.accountKey));
  return `${container.getPageBlobClient(name).url}?${sas.toString()}`;
}

/** The standard layout: 24 MiB of disk, four extents (one of them zeros), the rest holes. */
function standardExtents(): Extent[] {
  return [
    { offset: 0, length: 1 * MiB },
    { offset: 3 * MiB + 512, length: 2 * MiB + 4 * KiB }, // crosses a 4 MiB chunk boundary, unaligned start
    { offset: 10 * MiB, length: 512 * KiB, zeros: true },
    { offset: 16 * MiB, length: 3 * MiB },
    { offset: 23 * MiB, length: 8 * KiB },
  ];
}

// ---------------------------------------------------------------------------------------------
// A counting, misbehaving proxy in front of Azurite

interface Behaviour {
  /** The first ranged GET is cut (socket destroyed) after this many body bytes. */
  cutOnceAfter?: number;
  /** The next `count` ranged GETs answer `status` (with Retry-After when given). */
  busy?: { count: number; status: number; retryAfter?: string };
  /** Ranged GETs answer 403 (the access was revoked after the page list). */
  deny?: boolean;
  /** Page lists are split into pages of this many ranges, chained with NextMarker. */
  pageSize?: number;
  /** Pause before each ranged answer, so that requests overlap. */
  delayMs?: number;
}

interface Proxy {
  /** `sas` with Azurite's origin replaced by the proxy's. */
  via(sas: string): string;
  host: string;
  behaviour: Behaviour;
  /** Body bytes of ranged GETs passed to the client. */
  rangeBytes: number;
  ranges: string[];
  pageLists: string[];
  statuses: number[];
  open: number;
  peakOpen: number;
  close(): Promise<void>;
}

async function startProxy(behaviour: Behaviour = {}): Promise<Proxy> {
  const upstream = new http.Agent({ keepAlive: true });
  const proxy: Proxy = {
    via: (sas) => sas.replace(`http://${azurite.host}:${azurite.port}`, `http://127.0.0.1:${port}`),
    host: "",
    behaviour,
    rangeBytes: 0,
    ranges: [],
    pageLists: [],
    statuses: [],
    open: 0,
    peakOpen: 0,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      upstream.destroy();
    },
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const range = req.headers["x-ms-range"] as string | undefined;
    const answer = (status: number, headers: http.OutgoingHttpHeaders, body = "") => {
      proxy.statuses.push(status);
      res.writeHead(status, headers);
      res.end(body);
    };
    if (url.searchParams.get("comp") === "pagelist") {
      proxy.pageLists.push(url.searchParams.get("marker") ?? "");
      return void forward(req, (status, headers, body) => {
        const size = behaviour.pageSize;
        if (!size || status !== 200) return answer(status, headers, body.toString());
        // Azurite answers in one page: split it, the marker being the index of the next range.
        const all = [...body.toString().matchAll(/<PageRange>.*?<\/PageRange>/g)].map((m) => m[0]);
        const from = Number(url.searchParams.get("marker") ?? 0);
        const rest = from + size < all.length ? `<NextMarker>${from + size}</NextMarker>` : "<NextMarker />";
        const xml = `<?xml version="1.0" encoding="utf-8"?><PageList>${all.slice(from, from + size).join("")}${rest}</PageList>`;
        const { "transfer-encoding": _chunked, ...others } = headers;
        answer(200, { ...others, "content-length": Buffer.byteLength(xml) }, xml);
      });
    }
    if (range) proxy.ranges.push(range);
    proxy.open++;
    proxy.peakOpen = Math.max(proxy.peakOpen, proxy.open);
    res.on("close", () => proxy.open--);
    if (range && behaviour.deny) {
      return answer(403, { "x-ms-error-code": "AuthenticationFailed", "content-type": "application/xml" }, "<Error><Code>AuthenticationFailed</Code></Error>");
    }
    if (range && behaviour.busy && behaviour.busy.count > 0) {
      behaviour.busy.count--;
      const headers: http.OutgoingHttpHeaders = { "x-ms-error-code": "ServerBusy", "content-type": "application/xml" };
      if (behaviour.busy.retryAfter) headers["retry-after"] = behaviour.busy.retryAfter;
      return answer(behaviour.busy.status, headers, "<Error><Code>ServerBusy</Code></Error>");
    }
    const go = () => {
      const upstreamReq = http.request({ host: azurite.host, port: azurite.port, path: req.url, method: req.method, headers: req.headers, agent: upstream }, (up) => {
        proxy.statuses.push(up.statusCode!);
        res.writeHead(up.statusCode!, up.headers);
        let cutAt = range && up.statusCode === 206 ? behaviour.cutOnceAfter : undefined;
        if (cutAt !== undefined) behaviour.cutOnceAfter = undefined;
        up.on("data", (chunk: Buffer) => {
          if (res.destroyed) return;
          if (cutAt !== undefined && chunk.length >= cutAt) {
            proxy.rangeBytes += cutAt;
            res.write(chunk.subarray(0, cutAt), () => res.socket?.destroy());
            cutAt = undefined;
            up.destroy();
            return;
          }
          if (cutAt !== undefined) cutAt -= chunk.length;
          if (range && up.statusCode === 206) proxy.rangeBytes += chunk.length;
          if (!res.write(chunk)) {
            up.pause();
            res.once("drain", () => up.resume());
          }
        });
        up.on("end", () => res.end());
        up.on("error", () => res.destroy());
      });
      upstreamReq.on("error", () => res.destroy());
      req.pipe(upstreamReq);
    };
    if (range && behaviour.delayMs) setTimeout(go, behaviour.delayMs);
    else go();
  });

  /** A whole upstream answer (page lists are small). */
  const forward = (req: http.IncomingMessage, then: (status: number, headers: http.OutgoingHttpHeaders, body: Buffer) => void) => {
    const upstreamReq = http.request({ host: azurite.host, port: azurite.port, path: req.url, method: req.method, headers: req.headers, agent: upstream }, async (up) => {
      const parts: Buffer[] = [];
      for await (const chunk of up) parts.push(chunk as Buffer);
      then(up.statusCode!, up.headers, Buffer.concat(parts));
    });
    upstreamReq.on("error", () => req.socket.destroy());
    req.pipe(upstreamReq);
  };

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  proxy.host = `127.0.0.1:${port}`;
  proxies.push(proxy);
  return proxy;
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

function diskOf(blob: TestBlob, url: string, dir: string, name = "vm-disk-1.vhd"): PageBlobDisk {
  return { name, url, path: path.join(dir, name) };
}

function optionsOf(overrides: Partial<PageBlobOptions> = {}): PageBlobOptions {
  return {
    bandwidthLimit: 0,
    signal: new AbortController().signal,
    retry: { maxAttempts: 4, initialBackoffMs: 10, maxBackoffMs: 50 },
    ...overrides,
  };
}

/** The whole blob through its SAS URL, as a naive client reads it. */
async function fullGet(url: string): Promise<Buffer> {
  const response = await fetch(url);
  assert.equal(response.status, 200);
  return Buffer.from(await response.arrayBuffer());
}

// ---------------------------------------------------------------------------------------------

describe("page ranges", () => {
  test("a PageList with NextMarker, End inclusive; chunks merge close ranges and split on the chunk grid", () => {
    const xml = `<?xml version="1.0" encoding="utf-8"?><PageList><PageRange><Start>0</Start><End>511</End></PageRange>`
      + `<PageRange><Start>1048576</Start><End>9437183</End></PageRange><NextMarker>2!abc&amp;d</NextMarker></PageList>`;
    assert.deepEqual(parsePageList(xml), { ranges: [{ start: 0, end: 512 }, { start: MiB, end: 9 * MiB }], nextMarker: "2!abc&d" });
    assert.deepEqual(parsePageList("<PageList><NextMarker /></PageList>"), { ranges: [] });
    assert.throws(() => parsePageList("<Error/>"), /not a PageList/);
    const ranges = [{ start: 0, end: 512 }, { start: 32 * KiB, end: 64 * KiB }, { start: 5 * MiB, end: 13 * MiB }];
    assert.deepEqual(planChunks(ranges, { from: 0, chunkBytes: 4 * MiB, mergeGap: 64 * KiB }), [
      { start: 0, end: 64 * KiB }, // 0-512 and 32-64 KiB: one request over the 31.5 KiB hole
      { start: 5 * MiB, end: 8 * MiB },
      { start: 8 * MiB, end: 12 * MiB },
      { start: 12 * MiB, end: 13 * MiB },
    ]);
    assert.deepEqual(planChunks(ranges, { from: 9 * MiB + 512, chunkBytes: 4 * MiB, mergeGap: 0 }), [
      { start: 9 * MiB + 512, end: 12 * MiB },
      { start: 12 * MiB, end: 13 * MiB },
    ]);
  });

  test("getPageRanges follows NextMarker, merges adjacent ranges and reports the blob's size", async () => {
    const blob = await makeBlob(8 * MiB, [{ offset: 0, length: 512 }, { offset: 512, length: 512 }, { offset: MiB, length: 4 * KiB }, { offset: 2 * MiB, length: 512 }]);
    const proxy = await startProxy({ pageSize: 2 });
    const { size, ranges } = await getPageRanges(proxy.via(blob.sas), AbortSignal.timeout(10_000));
    assert.equal(size, 8 * MiB + 512);
    assert.deepEqual(ranges, [{ start: 0, end: 1024 }, { start: MiB, end: MiB + 4 * KiB }, { start: 2 * MiB, end: 2 * MiB + 512 }, { start: 8 * MiB, end: 8 * MiB + 512 }]);
    // Azurite lists 5 ranges in one answer (it does not merge the two adjacent ones): 3 pages of 2.
    assert.deepEqual(proxy.pageLists, ["", "2", "4"]);
  });
});

describe("downloadPageBlobs against Azurite", () => {
  test("only the data ranges are fetched; the file is sparse, identical to the blob, and hashed whole", async () => {
    const blob = await makeBlob(24 * MiB, standardExtents());
    const proxy = await startProxy();
    const dir = freshDir();
    const checkpoints: number[] = [];
    const progress: { bytesDone: number; bytesTotal: number; dataBytes: number; filesDone: number }[] = [];
    const done: string[] = [];
    const [result] = await downloadPageBlobs([diskOf(blob, proxy.via(blob.sas), dir)], optionsOf({
      chunkBytes: MiB,
      onCheckpoint: (_name, doneBelow) => checkpoints.push(doneBelow),
      onProgress: (p) => progress.push(p),
      onFileDone: (f) => done.push(f.name),
    }));
    const file = path.join(dir, "vm-disk-1.vhd");
    const written = fs.readFileSync(file);
    const full = await fullGet(blob.sas);
    assert.ok(full.equals(blob.bytes), "the full GET returns what was uploaded");
    assert.equal(sha256(written), sha256(full));
    assert.equal(result!.sha256, sha256(full));
    assert.equal(result!.size, 24 * MiB + 512);
    assert.equal(result!.footer.diskType, "fixed");
    assert.equal(result!.footer.currentSize, 24 * MiB);
    // Only the page ranges came over the wire (the 8 KiB extent and the footer are more than 64 KiB apart).
    assert.equal(proxy.rangeBytes, blob.dataBytes);
    assert.equal(result!.dataBytes, blob.dataBytes);
    assert.ok(proxy.ranges.every((r) => /^bytes=\d+-\d+$/.test(r)));
    // Holes are holes: allocated blocks cover the written data (the zero extent is not written), not the 24 MiB.
    const { blocks, size } = fs.statSync(file);
    assert.equal(size, 24 * MiB + 512);
    const allocated = blocks * 512;
    assert.ok(allocated < blob.dataBytes - 256 * KiB, `allocated ${allocated} bytes for ${blob.dataBytes} bytes of ranges (the zero range must stay a hole)`);
    assert.equal(checkpoints.at(-1), size);
    assert.deepEqual(progress.at(-1), { bytesDone: size, bytesTotal: size, dataBytes: blob.dataBytes, filesDone: 1, filesTotal: 1, currentFile: "vm-disk-1.vhd" });
    assert.deepEqual(done, ["vm-disk-1.vhd"]);
  });

  test("a connection cut mid-chunk is resumed from the bytes received, with a narrowed range", async () => {
    const blob = await makeBlob(8 * MiB, [{ offset: 0, length: 4 * MiB }]);
    const proxy = await startProxy({ cutOnceAfter: 300 * KiB });
    const dir = freshDir();
    const warnings: string[] = [];
    const [result] = await downloadPageBlobs([diskOf(blob, proxy.via(blob.sas), dir)], optionsOf({
      parallelRanges: 1,
      logger: { info() {}, warn: (_obj, msg) => warnings.push(msg) },
    }));
    assert.equal(result!.sha256, sha256(blob.bytes));
    assert.ok(fs.readFileSync(path.join(dir, "vm-disk-1.vhd")).equals(blob.bytes));
    assert.deepEqual(warnings, ["range request interrupted, retrying"]);
    // bytes=0-4194303 cut after 300 KiB, then the rest of that chunk only, then the footer.
    assert.equal(proxy.ranges[0], `bytes=0-${4 * MiB - 1}`);
    assert.equal(proxy.ranges[1], `bytes=${300 * KiB}-${4 * MiB - 1}`);
    assert.equal(proxy.rangeBytes, blob.dataBytes);
    assert.equal(result!.dataBytes, blob.dataBytes);
  });

  test("503 with Retry-After is waited out as the server says, then the download goes on", async () => {
    const blob = await makeBlob(4 * MiB, [{ offset: 0, length: MiB }]);
    const proxy = await startProxy({ busy: { count: 2, status: 503, retryAfter: "1" } });
    const started = performance.now();
    const [result] = await downloadPageBlobs([diskOf(blob, proxy.via(blob.sas), freshDir())], optionsOf({ parallelRanges: 1 }));
    const seconds = (performance.now() - started) / 1000;
    assert.equal(result!.sha256, sha256(blob.bytes));
    assert.deepEqual(proxy.statuses.filter((s) => s !== 200).slice(0, 4), [503, 503, 206, 206]);
    // The retry backoff alone is 10-50 ms: two waits of ~1 s mean the Retry-After was honoured.
    assert.ok(seconds >= 1.9, `took ${seconds.toFixed(2)} s`);
  });

  test("429 and 500 without Retry-After use the backoff; maxAttempts in a row ends it", async () => {
    const blob = await makeBlob(4 * MiB, [{ offset: 0, length: MiB }]);
    const proxy = await startProxy({ busy: { count: 3, status: 429 } });
    const [result] = await downloadPageBlobs([diskOf(blob, proxy.via(blob.sas), freshDir())], optionsOf({ parallelRanges: 1 }));
    assert.equal(result!.sha256, sha256(blob.bytes));
    proxy.behaviour.busy = { count: 100, status: 500 };
    await assert.rejects(downloadPageBlobs([diskOf(blob, proxy.via(blob.sas), freshDir())], optionsOf({ parallelRanges: 1 })), (err: HypervisordError) => {
      assert.equal(err.code, "UNAVAILABLE");
      assert.equal(err.retryable, true);
      assert.match(err.message, /downloading vm-disk-1\.vhd from 127\.0\.0\.1:\d+: HTTP 500 ServerBusy \(gave up after 4 attempts without progress\)/);
      return true;
    });
  });

  test("resume from a checkpoint: same SHA-256, only the ranges above the checkpoint fetched again", async () => {
    const blob = await makeBlob(16 * MiB, [{ offset: 0, length: 2 * MiB }, { offset: 5 * MiB, length: 3 * MiB }, { offset: 12 * MiB, length: 2 * MiB }]);
    const proxy = await startProxy();
    const dir = freshDir();
    const disk = diskOf(blob, proxy.via(blob.sas), dir);
    const controller = new AbortController();
    let saved = 0;
    // 4 MiB/s over ~7 MiB: the first checkpoint (after ~1 s) comes mid-way.
    await assert.rejects(downloadPageBlobs([disk], optionsOf({
      chunkBytes: 512 * KiB,
      bandwidthLimit: 4 * MiB,
      signal: controller.signal,
      onCheckpoint: (_name, doneBelow) => {
        if (doneBelow > 0 && saved === 0) {
          saved = doneBelow;
          controller.abort(new Error("killed"));
        }
      },
    })), /killed/);
    assert.ok(saved > 0 && saved < blob.bytes.length, `checkpoint at ${saved}`);
    // What the checkpoint covers is on disk as in the blob.
    assert.ok(fs.readFileSync(disk.path).subarray(0, saved).equals(blob.bytes.subarray(0, saved)));
    // A fresh proxy: bytes of the first run's requests still on their way are not counted.
    const second = await startProxy();
    const checkpoints: number[] = [];
    const [result] = await downloadPageBlobs([{ ...disk, url: second.via(blob.sas) }], optionsOf({ resume: { [disk.name]: saved }, onCheckpoint: (_n, at) => checkpoints.push(at) }));
    const again = second.rangeBytes;
    assert.equal(result!.sha256, sha256(blob.bytes));
    assert.ok(fs.readFileSync(disk.path).equals(blob.bytes));
    assert.equal(checkpoints[0], saved, "the run starts by confirming what it kept");
    const dataAbove = [[0, 2 * MiB], [5 * MiB, 8 * MiB], [12 * MiB, 14 * MiB], [16 * MiB, 16 * MiB + 512]]
      .reduce((n, [s, e]) => n + Math.max(0, e! - Math.max(s!, saved)), 0);
    assert.equal(again, dataAbove);
    assert.equal(result!.dataBytes, dataAbove);
    assert.ok(again < blob.dataBytes);
  });

  test("a checkpoint whose file is gone or shorter starts over, and says so in a checkpoint of 0", async () => {
    const blob = await makeBlob(4 * MiB, [{ offset: MiB, length: MiB }]);
    const dir = freshDir();
    const disk = diskOf(blob, blob.sas, dir);
    const checkpoints: number[] = [];
    const [result] = await downloadPageBlobs([disk], optionsOf({ resume: { [disk.name]: 2 * MiB }, onCheckpoint: (_n, at) => checkpoints.push(at) }));
    assert.equal(result!.sha256, sha256(blob.bytes));
    assert.equal(checkpoints[0], 0);
    assert.equal(result!.dataBytes, blob.dataBytes);
    // A file shorter than its checkpoint is not what the checkpoint describes either.
    fs.writeFileSync(disk.path, randomBytes(4 * KiB));
    checkpoints.length = 0;
    const [again] = await downloadPageBlobs([disk], optionsOf({ resume: { [disk.name]: 2 * MiB }, onCheckpoint: (_n, at) => checkpoints.push(at) }));
    assert.equal(again!.sha256, sha256(blob.bytes));
    assert.ok(fs.readFileSync(disk.path).equals(blob.bytes));
    assert.equal(checkpoints[0], 0);
  });

  test("an expired SAS and an access revoked mid-way are retryable errors that name the disk, never the signature", async () => {
    const blob = await makeBlob(4 * MiB, [{ offset: 0, length: MiB }]);
    const expired = sasUrl(blob.name, { expired: true });
    const sig = new URL(expired).searchParams.get("sig")!;
    const proxy = await startProxy();
    const check = (err: HypervisordError) => {
      assert.equal(err.code, "UNAVAILABLE");
      assert.equal(err.retryable, true);
      assert.match(err.message, /vm-disk-1\.vhd/);
      assert.match(err.message, /the read access to the blob ended \(HTTP 403/);
      assert.doesNotMatch(err.message, /sig=/);
      assert.ok(!err.message.includes(sig) && !err.message.includes(encodeURIComponent(sig)));
      return true;
    };
    await assert.rejects(downloadPageBlobs([diskOf(blob, proxy.via(expired), freshDir())], optionsOf()), check);
    assert.equal(proxy.pageLists.length, 1, "a 403 is not retried");
    proxy.behaviour.deny = true;
    await assert.rejects(downloadPageBlobs([diskOf(blob, proxy.via(blob.sas), freshDir())], optionsOf({ parallelRanges: 1 })), check);
    assert.equal(proxy.ranges.length, 1, "a 403 is not retried");
  });

  test("a blob without a valid VHD footer fails with FAILED_PRECONDITION", async () => {
    const blob = await makeBlob(2 * MiB, [{ offset: 0, length: 64 * KiB }], { badFooter: true });
    await assert.rejects(downloadPageBlobs([diskOf(blob, blob.sas, freshDir())], optionsOf()), (err: HypervisordError) => {
      assert.equal(err.code, "FAILED_PRECONDITION");
      assert.match(err.message, /vm-disk-1\.vhd: no VHD footer/);
      return true;
    });
  });

  test("the bandwidth limit is shared by all the disks of a call", async () => {
    const blobs = [await makeBlob(4 * MiB, [{ offset: 0, length: 2 * MiB }]), await makeBlob(4 * MiB, [{ offset: MiB, length: 2 * MiB }])];
    const dir = freshDir();
    const started = performance.now();
    const results = await downloadPageBlobs(blobs.map((b, i) => diskOf(b, b.sas, dir, `d${i}.vhd`)), optionsOf({ bandwidthLimit: 4 * MiB }));
    const seconds = (performance.now() - started) / 1000;
    results.forEach((r, i) => assert.equal(r.sha256, sha256(blobs[i]!.bytes)));
    // ~4 MiB at 4 MiB/s: about a second (the bucket starts with a tenth of a second of burst).
    assert.ok(seconds > 0.8 && seconds < 4, `4 MiB at 4 MiB/s took ${seconds.toFixed(2)} s`);
  });

  test("several disks in parallel under a per-host cap; the first failure stops the others", async () => {
    const blobs = await Promise.all([0, 1, 2].map(() => makeBlob(8 * MiB, [{ offset: 0, length: 2 * MiB }, { offset: 4 * MiB, length: 2 * MiB }])));
    const proxy = await startProxy({ delayMs: 20 });
    const dir = freshDir();
    const disks = blobs.map((b, i) => diskOf(b, proxy.via(b.sas), dir, `vm-disk-${i + 1}.vhd`));
    const progress: string[] = [];
    const results = await downloadPageBlobs(disks, optionsOf({
      chunkBytes: 512 * KiB,
      hostSlots: createHostSlots(3),
      onProgress: (p) => progress.push(p.currentFile),
    }));
    assert.deepEqual(results.map((r) => r.name), ["vm-disk-1.vhd", "vm-disk-2.vhd", "vm-disk-3.vhd"]);
    results.forEach((r, i) => assert.equal(r.sha256, sha256(blobs[i]!.bytes)));
    assert.equal(proxy.peakOpen, 3, "three requests at once across the disks, never more");
    assert.equal(new Set(progress).size, 3, "all disks reported progress");

    // One disk's access is revoked: the call fails with its error and the other disks stop.
    const revoked = sasUrl(blobs[1]!.name, { expired: true });
    const slow = await startProxy({ delayMs: 200 });
    const stopped = [
      diskOf(blobs[0]!, slow.via(blobs[0]!.sas), freshDir()),
      diskOf(blobs[1]!, revoked, freshDir(), "vm-disk-2.vhd"),
    ];
    const startedAt = performance.now();
    await assert.rejects(downloadPageBlobs(stopped, optionsOf({ chunkBytes: 512 * KiB, parallelRanges: 1 })), /vm-disk-2\.vhd.*read access/);
    assert.ok(performance.now() - startedAt < 2000, "the slow disk was stopped");
    assert.ok(slow.ranges.length < 9, `the slow disk made ${slow.ranges.length} of its 9 requests`);
  });
});
