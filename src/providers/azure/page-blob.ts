import { setMaxListeners } from "node:events";
import { Agent, type Dispatcher } from "undici";
import { InvalidArgumentError, type HypervisordError } from "../../errors.ts";
import { checkFixed, parseVhdFooter, type VhdFooter } from "../../package/vhd-footer.ts";
import type { HostSlots } from "../../transfer/host-slots.ts";
import { createRateLimiter, type RateLimiter } from "../../transfer/rate-limiter.ts";
import { DEFAULT_BLOB_RETRY, blobError, blobLabel, gaveUp, getRangeInto, isRetryable, retryWait, type BlobRetry } from "./blob-request.ts";
import { sleep } from "./retry-after.ts";
import { openBlobFile, type BlobFile } from "./page-blob-file.ts";
import { getPageRanges, planChunks, type ByteRange } from "./page-ranges.ts";

// A managed disk's read SAS serves a fixed VHD as a page blob (the disk's bytes, then a 512-byte footer). Only the
// ranges that hold data are fetched (Get Page Ranges), several ranged GETs in flight per disk, each written at its
// offset; the rest of the file stays a hole. The SHA-256 covers the whole logical blob, fed in offset order.

export { getPageRanges } from "./page-ranges.ts";

export interface PageBlobDisk {
  /** e.g. "web-01-disk-1.vhd": names the disk in logs, errors and checkpoints (the URL, a credential, never appears). */
  name: string;
  /** The read SAS URL of the disk or snapshot. */
  url: string;
  /** Absolute path of the file to write. */
  path: string;
}

export interface PageBlobOptions {
  /** Disks downloaded at once (default: all). */
  parallelDisks?: number;
  /** Range requests in flight per disk (default 8). */
  parallelRanges?: number;
  /** Bytes per range request, a multiple of 512 (default 4 MiB). Memory: about (parallelRanges + 2) x chunkBytes per disk. */
  chunkBytes?: number;
  /** Bytes/s shared by every disk of this call; 0 = unlimited. */
  bandwidthLimit: number;
  /** A cap on requests in flight per storage host, shared across calls (jobs); a slot is held per request, not during backoff. */
  hostSlots?: HostSlots;
  /** Abort stops every transfer at once and rejects with `signal.reason`. */
  signal: AbortSignal;
  /** name -> doneBelow from a checkpoint. */
  resume?: Record<string, number>;
  /**
   * For cut connections and retryable statuses (5xx, 408, 429; Retry-After honoured): `maxAttempts` counts the
   * attempts of one request in a row that gained no bytes. Default: 5 attempts, backoff 1 s doubling to 30 s.
   */
  retry?: BlobRetry;
  /** bytesDone: logical bytes (holes count) below the disks' checkpoints; dataBytes: bytes fetched so far. */
  onProgress?(progress: PageBlobProgress): void;
  /** About every second per disk and at its end, once the bytes below `doneBelow` are fdatasync'ed. */
  onCheckpoint?(name: string, doneBelow: number): void;
  onFileDone?(file: { name: string; bytes: number; seconds: number }): void;
  logger?: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

export interface PageBlobProgress {
  bytesDone: number;
  bytesTotal: number;
  dataBytes: number;
  filesDone: number;
  filesTotal: number;
  currentFile: string;
}

export interface DownloadedBlob {
  name: string;
  path: string;
  /** The blob's size: the VHD with its footer. */
  size: number;
  /** Of the whole file (holes as zeros). */
  sha256: string;
  /** Bytes fetched over the wire by this call (ranges, retries included). */
  dataBytes: number;
  footer: VhdFooter;
}

const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;
const DEFAULT_PARALLEL_RANGES = 8;
/**
 * Chunks held beyond those in flight, fetched but waiting for an earlier one before they can be hashed: a slow
 * request does not stall the others at once, and memory stays (parallelRanges + WINDOW_SLACK) x chunkBytes.
 */
const WINDOW_SLACK = 2;
/** Ranges closer than this are fetched in one request: a round trip costs more than a few KiB of zeros. */
const MERGE_GAP = 64 * 1024;

interface Settings {
  parallelRanges: number;
  chunkBytes: number;
  retry: BlobRetry;
}

interface RunContext {
  options: PageBlobOptions;
  settings: Settings;
  /** The caller's signal, also aborted when another disk failed for good. */
  signal: AbortSignal;
  dispatcher: Dispatcher;
  limiter: RateLimiter | undefined;
  progress: Progress;
}

/**
 * Downloads the page blobs to their paths, `parallelDisks` at a time. Results are in input order. The first disk
 * that fails for good stops the others, and its error is thrown once every transfer has stopped.
 */
export async function downloadPageBlobs(disks: readonly PageBlobDisk[], options: PageBlobOptions): Promise<DownloadedBlob[]> {
  options.signal.throwIfAborted();
  const settings = validate(disks, options);
  const failFast = new AbortController();
  const signal = AbortSignal.any([options.signal, failFast.signal]);
  setMaxListeners(0, signal); // a listener per request in flight
  // Keep-alive connections, one per request in flight: the ranges of a disk are many requests to one host.
  const dispatcher = new Agent({ keepAliveTimeout: 4000 });
  const run: RunContext = {
    options, settings, signal, dispatcher,
    limiter: options.bandwidthLimit > 0 ? createRateLimiter(options.bandwidthLimit) : undefined,
    progress: createProgress(disks, options.onProgress),
  };
  const results = new Array<DownloadedBlob>(disks.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (next < disks.length && !signal.aborted) {
      const index = next++;
      try {
        results[index] = await downloadOne(disks[index]!, index, run);
      } catch (error) {
        failure ??= { error };
        failFast.abort(error);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(options.parallelDisks ?? disks.length, disks.length) }, worker));
  } finally {
    await (failure || options.signal.aborted ? dispatcher.destroy() : dispatcher.close());
  }
  options.signal.throwIfAborted();
  if (failure) throw failure.error;
  return results;
}

function validate(disks: readonly PageBlobDisk[], options: PageBlobOptions): Settings {
  const positive = (field: string, value: number | undefined) => {
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 1)) throw new InvalidArgumentError(field, `must be an integer >= 1, got ${value}`);
  };
  positive("parallelDisks", options.parallelDisks);
  positive("parallelRanges", options.parallelRanges);
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  if (!(Number.isSafeInteger(chunkBytes) && chunkBytes >= 512 && chunkBytes % 512 === 0)) {
    throw new InvalidArgumentError("chunkBytes", `must be a positive multiple of 512, got ${chunkBytes}`);
  }
  if (!(options.bandwidthLimit >= 0)) throw new InvalidArgumentError("bandwidthLimit", `must be >= 0 bytes/s, got ${options.bandwidthLimit}`);
  const names = new Set<string>();
  disks.forEach((disk, i) => {
    if (!URL.canParse(disk.url) || !/^https?:$/.test(new URL(disk.url).protocol)) {
      throw new InvalidArgumentError(`disks[${i}].url`, `not an absolute http(s) URL (${disk.name})`);
    }
    if (names.has(disk.name)) throw new InvalidArgumentError(`disks[${i}].name`, `${disk.name} is given twice (names key the checkpoints)`);
    names.add(disk.name);
  });
  return { parallelRanges: options.parallelRanges ?? DEFAULT_PARALLEL_RANGES, chunkBytes, retry: options.retry ?? DEFAULT_BLOB_RETRY };
}

async function downloadOne(disk: PageBlobDisk, index: number, run: RunContext): Promise<DownloadedBlob> {
  const { options, signal, progress } = run;
  const host = new URL(disk.url).host;
  const label = blobLabel("downloading", disk.name, disk.url);
  const started = performance.now();
  const { size, ranges } = await getPageRanges(disk.url, signal, {
    name: disk.name, dispatcher: run.dispatcher, retry: run.settings.retry, hostSlots: options.hostSlots, logger: options.logger,
  });
  progress.total(index, size);
  const file = await openBlobFile({
    name: disk.name, path: disk.path, size,
    resumeAt: options.resume?.[disk.name] ?? 0,
    signal, logger: options.logger,
    onCheckpoint: (doneBelow) => {
      progress.done(index, doneBelow);
      options.onCheckpoint?.(disk.name, doneBelow);
    },
  });
  try {
    // Said at once: a checkpoint beyond what the file kept (the file is gone) must not outlive this run.
    progress.done(index, file.resumedAt);
    options.onCheckpoint?.(disk.name, file.resumedAt);
    const chunks = planChunks(ranges, { from: file.resumedAt, chunkBytes: run.settings.chunkBytes, mergeGap: MERGE_GAP });
    const fetched = { bytes: 0 };
    options.logger?.info({
      file: disk.name, host, size, fromByte: file.resumedAt, ranges: ranges.length, requests: chunks.length,
      dataBytes: ranges.reduce((n, r) => n + r.end - r.start, 0),
    }, "page blob download started");
    await fetchChunks(file, chunks, { disk, host, label, run, fetched });
    const { sha256, footer: last } = await file.finish();
    const footer = checkFixed(parseVhdFooter(last, disk.name), size, disk.name);
    progress.fileDone(index);
    const seconds = (performance.now() - started) / 1000;
    options.logger?.info({ file: disk.name, host, size, dataBytes: fetched.bytes, seconds }, "page blob download finished");
    options.onFileDone?.({ name: disk.name, bytes: size, seconds });
    return { name: disk.name, path: disk.path, size, sha256, dataBytes: fetched.bytes, footer };
  } finally {
    await file.close();
  }
}

interface DiskRun {
  disk: PageBlobDisk;
  host: string;
  label: string;
  run: RunContext;
  fetched: { bytes: number };
}

/**
 * Fetches `chunks` (in offset order), parallelRanges at a time. Each chunk is written as soon as it is in; the hash
 * takes them in order, so a chunk that came early waits in its buffer: at most parallelRanges + WINDOW_SLACK
 * buffers per disk, after which the next request waits for the oldest one.
 */
async function fetchChunks(file: BlobFile, chunks: readonly ByteRange[], disk: DiskRun): Promise<void> {
  const { parallelRanges, chunkBytes } = disk.run.settings;
  const window = parallelRanges + WINDOW_SLACK;
  const stop = new AbortController();
  const signal = AbortSignal.any([disk.run.signal, stop.signal]);
  setMaxListeners(0, signal);
  /** Fetched and written, waiting to be hashed. */
  const ready = new Array<Buffer | undefined>(chunks.length);
  const free: Buffer[] = [];
  let head = 0;
  let next = 0;
  let waiters: (() => void)[] = [];
  let failure: { error: unknown } | undefined;
  const wakeAll = () => {
    const woken = waiters;
    waiters = [];
    for (const wake of woken) wake();
  };

  const advance = () => {
    while (head < chunks.length && ready[head]) {
      const chunk = chunks[head]!;
      const buffer = ready[head]!;
      ready[head] = undefined;
      file.advance(chunk.start, buffer.subarray(0, chunk.end - chunk.start));
      free.push(buffer);
      head++;
    }
    wakeAll();
  };

  const worker = async () => {
    for (;;) {
      while (next < chunks.length && next >= head + window && !signal.aborted) await new Promise<void>((resolve) => waiters.push(resolve));
      if (next >= chunks.length || signal.aborted) return;
      const index = next++;
      const chunk = chunks[index]!;
      const buffer = free.pop() ?? Buffer.allocUnsafeSlow(chunkBytes);
      const data = buffer.subarray(0, chunk.end - chunk.start);
      await fetchChunk(chunk, data, disk, signal);
      await file.write(data, chunk.start);
      ready[index] = buffer;
      advance();
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallelRanges, chunks.length) }, async () => {
    try {
      await worker();
    } catch (error) {
      failure ??= { error };
      stop.abort(error);
      wakeAll();
    }
  }));
  disk.run.signal.throwIfAborted();
  if (failure) throw failure.error;
}

/** One chunk into `data`: a cut resumes from the bytes received; retryable statuses wait (Retry-After) and try again. */
async function fetchChunk(chunk: ByteRange, data: Buffer, disk: DiskRun, signal: AbortSignal): Promise<void> {
  const { options, settings, dispatcher, limiter, progress } = disk.run;
  const url = new URL(disk.disk.url);
  let received = 0;
  let failures = 0;
  for (;;) {
    const before = received;
    try {
      const release = await options.hostSlots?.acquire(disk.host, signal);
      try {
        await getRangeInto(dispatcher, url, chunk.start + received, chunk.end, data.subarray(received), {
          signal, label: disk.label, limiter,
          onBytes: (bytes) => {
            received += bytes;
            disk.fetched.bytes += bytes;
            progress.fetched(bytes);
          },
        });
      } finally {
        release?.();
      }
      return;
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      const error: HypervisordError = blobError(err, disk.label);
      if (!isRetryable(error)) throw error;
      failures = received > before ? 1 : failures + 1;
      if (failures >= settings.retry.maxAttempts) throw gaveUp(error, failures);
      const delayMs = retryWait(error, failures, settings.retry);
      options.logger?.warn({
        file: disk.disk.name, host: disk.host, from: chunk.start + received, to: chunk.end, attempt: failures, delayMs, err: error.message,
      }, "range request interrupted, retrying");
      await sleep(delayMs, signal);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Progress

interface Progress {
  total(index: number, bytes: number): void;
  done(index: number, doneBelow: number): void;
  fetched(bytes: number): void;
  fileDone(index: number): void;
}

function createProgress(disks: readonly PageBlobDisk[], onProgress: PageBlobOptions["onProgress"]): Progress {
  const totals = disks.map(() => 0);
  const done = disks.map(() => 0);
  let dataBytes = 0;
  let filesDone = 0;
  let currentFile = disks[0]?.name ?? "";
  const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
  const report = () => onProgress?.({ bytesDone: sum(done), bytesTotal: sum(totals), dataBytes, filesDone, filesTotal: disks.length, currentFile });
  return {
    total(index, bytes) {
      totals[index] = bytes;
    },
    done(index, doneBelow) {
      done[index] = doneBelow;
      currentFile = disks[index]!.name;
      report();
    },
    fetched(bytes) {
      dataBytes += bytes;
    },
    fileDone(index) {
      filesDone++;
      currentFile = disks[index]!.name;
      report();
    },
  };
}
