import { setTimeout as sleep } from "node:timers/promises";
import { request, type Dispatcher } from "undici";
import { retryDelayMs } from "../backoff.ts";
import { HypervisordError, InvalidArgumentError, UnavailableError, toHypervisordError } from "../errors.ts";
import { formatBytes } from "../files/disk-error.ts";
import type { HostSlots } from "./host-slots.ts";
import { ConnectionCutError, rawGet, type RawTls, type ResponseHead } from "./raw-get.ts";
import { openPart, type PartFile } from "./part-file.ts";
import { createRateLimiter, type RateLimiter } from "./rate-limiter.ts";

export interface DownloadFile {
  /** e.g. "web-01-disk-1.vmdk": names the file in progress, logs and errors (the URL, whose path is a lease credential, never appears). */
  name: string;
  /** Absolute http(s) URL. */
  url: string;
  /** Absolute path of the file to write. */
  path: string;
  /** Expected size in bytes when known (from the lease or a HEAD); verified at the end. */
  size?: number;
  /** Also compute SHA-1 on the way (to compare with a server manifest that only has SHA-1). */
  sha1?: boolean;
  /**
   * Write the bytes at this offset of `path`, an existing file whose other regions belong to others (the
   * entries of an OVA being built): it is opened without truncation, and a restart or resume never
   * truncates it. Needs `size`; a body longer than `size` fails before a byte lands outside the region.
   */
  offset?: number;
}

export interface DownloadedFile {
  name: string;
  path: string;
  size: number;
  sha256: string;
  /** When requested with `sha1`. */
  sha1?: string;
}

export interface DownloadProgress {
  bytesDone: number;
  bytesTotal: number;
  filesDone: number;
  filesTotal: number;
  currentFile: string;
}

export interface DownloadOptions {
  /** The caller's Agent (TLS settings, keep-alive): for the HEAD requests of fetchSizes. */
  dispatcher: Dispatcher;
  /** TLS settings of the GETs, each on a connection of its own (raw-get.ts); default: verify the certificate. */
  tls?: RawTls;
  /** Sent with every request, e.g. a Cookie. */
  headers?: Record<string, string>;
  /** Files downloaded at once. */
  parallel: number;
  /** Bytes/s shared by all files of this call; 0 = unlimited. */
  bandwidthLimit: number;
  /** A cap on concurrent transfers per host shared across calls (jobs); a slot is held per HTTP request, not during backoff. */
  hostSlots?: HostSlots;
  /** Abort stops every transfer at once and rejects with `signal.reason`. */
  signal: AbortSignal;
  /**
   * Per file, for cut connections and retryable statuses (5xx, 408, 429): `maxAttempts` counts attempts in a
   * row that gained no bytes. Default: 5 attempts, backoff 1 s doubling to 30 s (+-20% jitter).
   */
  retry?: { maxAttempts: number; initialBackoffMs: number; maxBackoffMs: number };
  /** name -> bytes already on disk from an earlier run (a checkpoint). */
  resume?: Record<string, number>;
  /** Called at each file's checkpoints (about every second, and at its end): bytesDone counts fdatasync'ed bytes. */
  onProgress?(progress: DownloadProgress): void;
  /** Called when a file is complete, with the seconds its transfer took. */
  onFileDone?(file: { name: string; bytes: number; seconds: number }): void;
  /** Called at most every ~1 s per file and at the end, once the reported bytes are fdatasync'ed. */
  onCheckpoint?(name: string, bytesOnDisk: number): void;
  logger?: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

const DEFAULT_RETRY = { maxAttempts: 5, initialBackoffMs: 1000, maxBackoffMs: 30_000 };
/** Failures that mean "the connection was cut": resumed with Range whatever toHypervisordError makes of them. */
const CUT_CODES = new Set([new ConnectionCutError("").code]);

/**
 * Downloads `files` to their paths, `parallel` at a time, hashing (SHA-256) each byte as it is written.
 * Cut connections resume with `Range: bytes=N-` from the bytes on disk. The first file that fails for good
 * stops the others and its error is thrown once every transfer has stopped. Results are in input order.
 */
export async function downloadFiles(files: readonly DownloadFile[], options: DownloadOptions): Promise<DownloadedFile[]> {
  options.signal.throwIfAborted();
  validate(files, options);
  const failFast = new AbortController();
  const signal = AbortSignal.any([options.signal, failFast.signal]);
  const limiter = options.bandwidthLimit > 0 ? createRateLimiter(options.bandwidthLimit) : undefined;
  const progress = createProgress(files, options.onProgress);
  const results = new Array<DownloadedFile>(files.length);
  let next = 0;
  let failure: { error: unknown } | undefined;

  const worker = async () => {
    while (next < files.length && !signal.aborted) {
      const index = next++;
      try {
        results[index] = await downloadOne(files[index]!, index, { options, signal, limiter, progress });
      } catch (error) {
        failure ??= { error };
        failFast.abort(error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.parallel, files.length) }, worker));
  options.signal.throwIfAborted();
  if (failure) throw failure.error;
  return results;
}

/**
 * The size of each URL from a HEAD request (Content-Length), or undefined where the server gives none or the
 * request fails: sizes known before a download let the caller lay the bytes out (an OVA) in advance.
 */
export async function fetchSizes(urls: readonly string[], options: Pick<DownloadOptions, "dispatcher" | "headers" | "signal">): Promise<(number | undefined)[]> {
  return Promise.all(urls.map(async (url) => {
    try {
      const { statusCode, headers, body } = await request(url, { dispatcher: options.dispatcher, method: "HEAD", headers: options.headers, signal: options.signal });
      await body.dump();
      return statusCode === 200 ? numberHeader(headers["content-length"]) : undefined;
    } catch (err) {
      if (options.signal.aborted) throw options.signal.reason;
      return undefined;
    }
  }));
}

function validate(files: readonly DownloadFile[], options: DownloadOptions): void {
  if (!Number.isInteger(options.parallel) || options.parallel < 1) {
    throw new InvalidArgumentError("parallel", `must be an integer >= 1, got ${options.parallel}`);
  }
  if (!(options.bandwidthLimit >= 0)) {
    throw new InvalidArgumentError("bandwidthLimit", `must be >= 0 bytes/s, got ${options.bandwidthLimit}`);
  }
  files.forEach((file, i) => {
    if (!URL.canParse(file.url) || !/^https?:$/.test(new URL(file.url).protocol)) {
      throw new InvalidArgumentError(`files[${i}].url`, `not an absolute http(s) URL (${file.name})`);
    }
    if (file.offset !== undefined && !(Number.isSafeInteger(file.offset) && file.offset >= 0 && file.size !== undefined)) {
      throw new InvalidArgumentError(`files[${i}].offset`, `must be an integer >= 0, with size set (${file.name})`);
    }
  });
}

interface RunContext {
  options: DownloadOptions;
  /** The caller's signal, also aborted when another file of the call failed for good. */
  signal: AbortSignal;
  limiter: RateLimiter | undefined;
  progress: Progress;
}

/** What one file's attempts learn from the server. */
interface FileState {
  readonly file: DownloadFile;
  readonly index: number;
  readonly host: string;
  /** "downloading NAME from HOST": the prefix of every error message about this file. */
  readonly label: string;
  readonly part: PartFile;
  /** Size announced by the server (Content-Length of a 200, the total of a Content-Range). */
  total?: number;
  /** A strong ETag, sent back as If-Range so a changed file restarts instead of being spliced. */
  etag?: string;
}

async function downloadOne(file: DownloadFile, index: number, run: RunContext): Promise<DownloadedFile> {
  const { options, signal, progress } = run;
  const host = new URL(file.url).host;
  const label = `downloading ${file.name} from ${host}`;
  const retry = options.retry ?? DEFAULT_RETRY;
  const started = performance.now();
  /** Bytes written by this call, never decreasing (a restart lowers the position, not this). */
  let gained = 0;
  /**
   * The progress counts the bytes of a checkpoint (fdatasync'ed, what a restart keeps), not those merely
   * written: a daemon killed when the progress said N resumes from N or more, never from less.
   */
  let durable = 0;
  const reportDurable = (bytes: number) => {
    try {
      progress.written(index, bytes - durable);
    } catch (err) {
      throw toHypervisordError(err, `reporting the progress of ${file.name}`);
    }
    durable = bytes;
  };
  const part = await openPart(file, options.resume?.[file.name] ?? 0, {
    signal,
    logger: options.logger,
    onWritten: (delta) => {
      if (delta > 0) gained += delta;
    },
    onCheckpoint: (name, bytes) => {
      reportDurable(bytes);
      options.onCheckpoint?.(name, bytes);
    },
  });
  reportDurable(part.position); // the prefix kept from an earlier run is on disk already
  try {
    const state: FileState = { file, index, host, label, part };
    options.logger?.info({ file: file.name, host, fromByte: part.position, size: file.size }, "download started");
    let failures = 0;
    for (;;) {
      const gainedBefore = gained;
      try {
        const release = await options.hostSlots?.acquire(host, signal);
        try {
          await transferOnce(state, run);
        } finally {
          release?.();
        }
        break;
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        const error = transferError(err, label, part.position);
        if (!error.retryable) throw error;
        failures = gained > gainedBefore ? 1 : failures + 1;
        if (failures >= retry.maxAttempts) {
          throw new HypervisordError(error.code, `${error.message} (gave up after ${failures} attempts without progress)`, {
            cause: error.cause ?? error,
            retryable: true,
          });
        }
        const delayMs = retryDelayMs(failures, { initialMs: retry.initialBackoffMs, maxMs: retry.maxBackoffMs });
        options.logger?.warn({ file: file.name, host, attempt: failures, delayMs, bytesOnDisk: part.position, err: error.message }, "download interrupted, retrying");
        try {
          await sleep(delayMs, undefined, { signal });
        } catch (sleepError) {
          throw signal.aborted ? signal.reason : sleepError;
        }
      }
    }
    checkSize(state);
    const { sha256, sha1 } = await part.finish();
    progress.fileDone();
    const seconds = (performance.now() - started) / 1000;
    options.logger?.info({ file: file.name, host, bytes: part.position, seconds }, "download finished");
    options.onFileDone?.({ name: file.name, bytes: part.position, seconds });
    return { name: file.name, path: file.path, size: part.position, sha256, ...(sha1 ? { sha1 } : {}) };
  } finally {
    await part.close();
  }
}

/** One GET from the bytes on disk to the end (or to a cut). */
async function transferOnce(state: FileState, run: RunContext): Promise<void> {
  const { file, part, label } = state;
  const { options, signal, limiter } = run;
  const from = part.position;
  const headers: Record<string, string> = { ...options.headers };
  if (from > 0) {
    headers.range = `bytes=${from}-`;
    if (state.etag) headers["if-range"] = state.etag;
  }
  let length: number | undefined;
  let start = from;
  let head: ResponseHead;
  try {
    head = await rawGet(new URL(file.url), { headers, signal, tls: options.tls }, {
      start({ statusCode, headers: received }) {
        if (statusCode !== 200 && statusCode !== 206) return false; // judged below
        length = numberHeader(received["content-length"]);
        const etag = received.etag;
        if (etag && !etag.startsWith("W/")) state.etag = etag;
        if (statusCode === 206) {
          const range = parseContentRange(received["content-range"]);
          if (range?.start !== from) {
            throw new HypervisordError("INTERNAL", `${label}: asked for bytes=${from}- and got Content-Range ${received["content-range"]}`);
          }
          if (range.total !== undefined) state.total = range.total;
        } else {
          state.total = length;
        }
        if (file.size === undefined && state.total !== undefined) run.progress.total(state.index, state.total);
        if (statusCode === 200 && from > 0) {
          // The server ignored Range (or If-Range saw a changed file): its body starts at byte 0.
          options.logger?.warn({ file: file.name, host: state.host, bytesOnDisk: from }, "server answered 200 to a ranged request, restarting the file from 0");
          return part.restart().then(() => {
            start = 0;
            return true;
          });
        }
        return true;
      },
      region: () => part.region(),
      commit(bytes) {
        const room = part.commit(bytes);
        if (limiter) return limiter.take(bytes, signal).then(() => (room ? undefined : part.drained()));
        return room ? undefined : part.drained();
      },
    });
  } finally {
    // The bytes received before a cut are good: write them and let the writes in flight land, so the next
    // attempt starts from a settled position.
    await part.idle();
  }
  if (head.statusCode === 416) return rangeNotSatisfiable(state, run, head.headers);
  if (head.statusCode !== 200 && head.statusCode !== 206) throw statusError(label, head.statusCode, from);
  await part.settle();
  const received = part.position - start;
  if (length !== undefined && received < length) {
    throw new UnavailableError(`${label}: body ended after ${formatBytes(received)} of ${formatBytes(length)}`);
  }
}

/** 416 to `bytes=N-`: done when N is the file's size, else the file on disk is longer than the server's: restart. */
async function rangeNotSatisfiable(state: FileState, run: RunContext, headers: Record<string, string>): Promise<void> {
  const { file, part, label } = state;
  const total = parseContentRange(headers["content-range"])?.total ?? file.size ?? state.total;
  if (part.position > 0 && total === part.position) {
    state.total = total;
    return;
  }
  if (part.position === 0) throw new HypervisordError("INTERNAL", `${label}: HTTP 416 for a request from byte 0`);
  run.options.logger?.warn({ file: file.name, host: state.host, bytesOnDisk: part.position, serverSize: total }, "the server has fewer bytes than on disk, restarting the file from 0");
  const at = part.position;
  await part.restart();
  throw new UnavailableError(`${label}: HTTP 416 for bytes=${at}- (server size ${total ?? "unknown"}), restarting from 0`);
}

function checkSize(state: FileState): void {
  const { file, part, label } = state;
  if (file.size !== undefined && part.position !== file.size) {
    throw new HypervisordError("INTERNAL", `${label}: got ${part.position} bytes, expected ${file.size}`);
  }
  if (state.total !== undefined && part.position !== state.total) {
    throw new HypervisordError("INTERNAL", `${label}: got ${part.position} bytes, the server announced ${state.total}`);
  }
}

function statusError(label: string, status: number, from: number): HypervisordError {
  const at = from > 0 ? ` (from byte ${from})` : "";
  if (status === 404 || status === 410) {
    // An expired or aborted NFC lease answers 404: retrying the URL cannot help, the caller needs a new lease.
    return new UnavailableError(`${label}: HTTP ${status}${at}; the export lease may have expired`, { retryable: false });
  }
  if (status === 401 || status === 403) return new HypervisordError("PERMISSION_DENIED", `${label}: HTTP ${status}${at}`);
  if (status === 408 || status === 429 || status >= 500) return new UnavailableError(`${label}: HTTP ${status}${at}`);
  return new HypervisordError("INTERNAL", `${label}: unexpected HTTP ${status}${at}`);
}

function transferError(err: unknown, label: string, position: number): HypervisordError {
  if (err instanceof HypervisordError) return err;
  const code = errorCode(err);
  const text = err instanceof Error ? err.message : String(err);
  const described = code && !text.includes(code) ? `${code}: ${text}` : text;
  const message = `${label}: ${described}${position > 0 ? ` after ${formatBytes(position)}` : ""}`;
  if (code && CUT_CODES.has(code)) return new UnavailableError(message, { cause: err });
  const mapped = toHypervisordError(err);
  return new HypervisordError(mapped.code, message, { cause: err, retryable: mapped.retryable });
}

function errorCode(err: unknown): string | undefined {
  for (let current = err, depth = 0; depth < 4 && current instanceof Error; depth++, current = current.cause) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string") return code;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Progress and small helpers

interface Progress {
  written(index: number, delta: number): void;
  total(index: number, bytes: number): void;
  fileDone(): void;
}

function createProgress(files: readonly DownloadFile[], onProgress: DownloadOptions["onProgress"]): Progress {
  const totals = files.map((file) => file.size ?? 0);
  let bytesTotal = totals.reduce((a, b) => a + b, 0);
  let bytesDone = 0;
  let filesDone = 0;
  let currentFile = files[0]?.name ?? "";
  const report = () => onProgress?.({ bytesDone, bytesTotal, filesDone, filesTotal: files.length, currentFile });
  return {
    written(index, delta) {
      bytesDone += delta;
      currentFile = files[index]!.name;
      report();
    },
    total(index, bytes) {
      bytesTotal += bytes - totals[index]!;
      totals[index] = bytes;
    },
    fileDone() {
      filesDone++;
      report();
    },
  };
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function numberHeader(value: string | string[] | undefined): number | undefined {
  const text = header(value);
  return text !== undefined && /^\d+$/.test(text) ? Number(text) : undefined;
}

/** `bytes 100-199/1000`, `bytes 100-199/` + `*` (total unknown), or with a 416 `bytes ` + `*` + `/1000` (total only). */
function parseContentRange(value: string | undefined): { start?: number; total?: number } | undefined {
  const match = value && /^bytes (?:(\d+)-\d+|\*)\/(\d+|\*)$/.exec(value.trim());
  if (!match) return undefined;
  return {
    start: match[1] !== undefined ? Number(match[1]) : undefined,
    total: match[2] !== "*" ? Number(match[2]) : undefined,
  };
}
