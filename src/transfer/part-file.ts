import { writeSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { HypervisordError, toHypervisordError } from "../errors.ts";
import { diskError } from "../files/disk-error.ts";
import { writeAll } from "../files/fs-utils.ts";
import { createHasher, type Digests, type Hasher } from "./hashing.ts";

// The file a download writes: position, running hash and checkpoints move together. download.ts owns the
// HTTP side (ranges, retries, statuses) and reads each body into the buffers given here.
//
// CPU per byte is the point (issue 17): the socket reads (TLS decrypts) the body straight into reused
// 128 KiB buffers (region/commit); each full buffer is hashed with one call per algorithm and written with
// one pwrite (synchronous: see issue()) before the socket fills the next. No copy, no Buffer per TLS record, no stream machinery.

/** The reads that hash a resumed prefix. */
const IO_CHUNK = 1024 * 1024;
/**
 * Bytes per write (and per hash update). Measured on 2 cores against vcsim, a 1 GiB export, alternating runs:
 * 128 KiB batches cost ~1.5 system CPU-s per GiB in the writes' copy into the page cache, 1 MiB batches ~3.1
 * (64 KiB: no better than 128; user time differs by < 0.3 s between them).
 */
const BATCH = 128 * 1024;
/** Writes through the thread pool (after a slow one) at once: libuv's pool has 4 threads, more would only queue. */
const WRITES_IN_FLIGHT = 4;
const BATCH_MAX_AGE_MS = 200;
/** A synchronous write slower than this blocked (dirty-page throttling, a slow disk)... */
const SLOW_WRITE_MS = 20;
/** ...and the file's writes use the thread pool for this long. */
const THREAD_POOL_AFTER_SLOW_MS = 5000;
const CHECKPOINT_INTERVAL_MS = 1000;

/** What of a DownloadFile the part file needs. */
export interface PartTarget {
  name: string;
  path: string;
  size?: number;
  sha1?: boolean;
  offset?: number;
}

export interface PartFile {
  /** Bytes on disk (written, not necessarily synced) and covered by the hash. */
  readonly position: number;
  /** Free space at the end of the current batch buffer: the socket reads the next body bytes straight into it. */
  region(): Buffer;
  /**
   * `bytes` landed at the start of the last region(). A full batch is hashed and written. Returns false when
   * the writes in flight are at their limit: wait for drained() before reading more. Throws once a write failed.
   */
  commit(bytes: number): boolean;
  /** Resolves once a write in flight landed (room for more), at once when there is room already. */
  drained(): Promise<void>;
  /** Writes what commit() gathered and resolves once no write is in flight: `position` is then final for the attempt. Never rejects. */
  idle(): Promise<void>;
  /** idle(), then throws the error of a failed write, if any. */
  settle(): Promise<void>;
  /** Truncates to 0 and restarts the hash. */
  restart(): Promise<void>;
  /** fdatasync, the final checkpoint, and the hex digests of the whole file. */
  finish(): Promise<Digests>;
  close(): Promise<void>;
}

export interface PartOptions {
  signal: AbortSignal;
  logger?: { warn(obj: object, msg: string): void };
  onWritten(delta: number): void;
  /** Called at most every ~1 s and at the end, once the reported bytes are fdatasync'ed. */
  onCheckpoint?(name: string, bytesOnDisk: number): void;
}

export async function openPart(file: PartTarget, resumeAt: number, options: PartOptions): Promise<PartFile> {
  const { handle, position: start } = await openAt(file, resumeAt, options);
  /** Where byte 0 of this file lies in `handle`; the region ends at base + size when an offset is given. */
  const base = file.offset ?? 0;
  const limit = file.offset !== undefined ? file.size : undefined;
  /** End of the bytes written without a gap: on disk (not necessarily synced). */
  let position = start;
  /** Where the next write goes; ahead of `position` while writes are in flight. The hash covers up to here. */
  let issued = start;
  let hash = createHasher(file.sha1 === true);
  /** Writes in flight, in file order. Their promises never reject: a failure sets `broken`. */
  const inflight: { end: number; done: boolean; settled: Promise<void> }[] = [];
  /** A failed write or fdatasync (the file no longer matches the hash) or a throwing callback: nothing more is written. */
  let broken: HypervisordError | undefined;
  let syncing: Promise<void> | undefined;
  let lastCheckpointAt = performance.now();
  /** Bumped by restart(), so a checkpoint taken before it is not reported after it. */
  let generation = 0;

  try {
    await hashPrefix(handle, hash, base, position, file.path, options.signal);
  } catch (err) {
    await handle.close();
    throw err;
  }
  if (position > 0) options.onWritten(position);

  const diskFailure = (err: unknown, action: string) => {
    const mapped = diskError(err, action, file.path, file.name);
    return mapped.retryable ? new HypervisordError(mapped.code, mapped.message, { cause: err }) : mapped;
  };

  const checkpoint = async () => {
    lastCheckpointAt = performance.now();
    const at = position;
    const taken = generation;
    try {
      await handle.datasync();
    } catch (err) {
      broken ??= diskFailure(err, "syncing");
      return;
    }
    if (taken !== generation) return;
    try {
      options.onCheckpoint?.(file.name, at);
    } catch (err) {
      broken ??= toHypervisordError(err, `saving the checkpoint of ${file.name}`);
    }
  };

  // Writes may complete out of order (thread pool): `position` moves over the completed prefix only.
  const advance = () => {
    const before = position;
    while (inflight[0]?.done) position = inflight.shift()!.end;
    if (position === before) return;
    try {
      options.onWritten(position - before);
    } catch (err) {
      // A throwing progress callback stops this file (the error is the download's) instead of rejecting a write nobody awaits.
      broken ??= toHypervisordError(err, `reporting the progress of ${file.name}`);
      return;
    }
    if (options.onCheckpoint && !syncing && performance.now() - lastCheckpointAt >= CHECKPOINT_INTERVAL_MS) {
      // Not awaited: writes go on while the kernel flushes; the bytes below `position` are covered by it.
      syncing = checkpoint().finally(() => {
        syncing = undefined;
      });
    }
  };

  /** Buffers of BATCH bytes whose write landed, for the next batches. */
  const free: Buffer[] = [];
  let batch: Buffer | undefined;
  let filled = 0;
  let batchStartedAt = 0;
  /** Until then, writes go through the thread pool (after a slow synchronous one). */
  let threadPoolUntil = 0;
  /** Resolved when a write lands; drained() waits on it. */
  let landed: { promise: Promise<void>; resolve: () => void } | undefined;

  const issue = () => {
    const buffer = batch!;
    const bytes = filled;
    batch = undefined;
    filled = 0;
    if (broken) return;
    if (limit !== undefined && issued + bytes > limit) {
      broken = new HypervisordError("INTERNAL", `${file.name}: the server sent more than the ${limit} bytes expected`);
      return;
    }
    const data = buffer.subarray(0, bytes);
    hash.update(data);
    const at = base + issued;
    const entry = { end: issued + bytes, done: false, settled: Promise.resolve() };
    issued = entry.end;
    inflight.push(entry);
    if (performance.now() >= threadPoolUntil) {
      // Written here, synchronously: the copy into the page cache costs the same on any thread, and the thread
      // pool's hand-offs (a wake-up and a context switch per write, four threads contending for the file) cost
      // more than the copy on this VM (bench:export: 3.6-3.9 against 4.5-6.1 CPU-s per GiB). A write that
      // blocks (the kernel throttling a writer of too many dirty pages) would stall the event loop: after one
      // slow write the file's next writes go through the thread pool for a while.
      const started = performance.now();
      try {
        writeFullySync(handle.fd, data, at);
      } catch (err) {
        broken ??= diskFailure(err, "writing");
        return;
      }
      if (performance.now() - started > SLOW_WRITE_MS) threadPoolUntil = performance.now() + THREAD_POOL_AFTER_SLOW_MS;
      entry.done = true;
      free.push(buffer);
      advance();
      return;
    }
    entry.settled = writeFully(handle, data, at).then(
      () => {
        entry.done = true;
        free.push(buffer);
        advance();
      },
      (err: unknown) => {
        broken ??= diskFailure(err, "writing");
      },
    ).finally(() => landed?.resolve());
  };

  const idle = async () => {
    if (filled > 0) issue();
    await Promise.all(inflight.map((entry) => entry.settled));
  };

  return {
    get position() {
      return position;
    },
    region() {
      batch ??= free.pop() ?? Buffer.allocUnsafeSlow(BATCH);
      return batch.subarray(filled);
    },
    commit(bytes) {
      if (broken) throw broken;
      if (filled === 0) batchStartedAt = performance.now();
      filled += bytes;
      // A slow stream (a host limiting each NFC connection) does not keep its bytes off the disk, and out of
      // the checkpoints, for long: a batch filling for more than BATCH_MAX_AGE_MS is written as it is.
      if (filled === BATCH || performance.now() - batchStartedAt >= BATCH_MAX_AGE_MS) issue();
      return inflight.length < WRITES_IN_FLIGHT;
    },
    drained() {
      if (inflight.length < WRITES_IN_FLIGHT || broken) return Promise.resolve();
      if (!landed) {
        let resolve!: () => void;
        const promise = new Promise<void>((r) => (resolve = r));
        landed = { promise, resolve: () => { landed = undefined; resolve(); } };
      }
      return landed.promise;
    },
    idle,
    async settle() {
      await idle();
      if (broken) throw broken;
    },
    async restart() {
      await idle();
      await syncing;
      generation++;
      if (file.offset === undefined) await handle.truncate(0);
      options.onWritten(-position);
      position = issued = 0;
      hash = createHasher(file.sha1 === true);
      options.onCheckpoint?.(file.name, 0);
    },
    async finish() {
      await idle();
      await syncing;
      if (broken) throw broken;
      try {
        await handle.datasync();
      } catch (err) {
        throw diskFailure(err, "syncing");
      }
      options.onCheckpoint?.(file.name, position);
      return hash.digest();
    },
    async close() {
      await idle();
      await syncing;
      await handle.close();
    },
  };
}

/** Opens the file, keeping the first `resumeAt` bytes of an earlier run (fewer if the file is shorter) and dropping anything beyond. */
async function openAt(file: PartTarget, resumeAt: number, options: PartOptions): Promise<{ handle: FileHandle; position: number }> {
  const context = `opening ${file.path} (${file.name})`;
  if (file.offset !== undefined) {
    // A region of a shared file, laid out by the caller: the checkpoint alone says how much of it is good.
    const handle = await openExisting(file.path, context);
    if (!handle) throw new HypervisordError("INTERNAL", `${context}: the file to write into does not exist`);
    return { handle, position: Math.min(resumeAt, file.size!) };
  }
  const existing = resumeAt > 0 ? await openExisting(file.path, context) : undefined;
  if (!existing) {
    if (resumeAt > 0) options.logger?.warn({ file: file.name, path: file.path, checkpoint: resumeAt }, "partial file is gone, starting over");
    try {
      return { handle: await open(file.path, "w"), position: 0 };
    } catch (err) {
      throw toHypervisordError(err, context);
    }
  }
  try {
    const { size } = await existing.stat();
    const position = Math.min(size, resumeAt);
    if (size < resumeAt) {
      options.logger?.warn({ file: file.name, path: file.path, checkpoint: resumeAt, size }, "partial file is shorter than its checkpoint, resuming from its size");
    }
    await existing.truncate(position);
    return { handle: existing, position };
  } catch (err) {
    await existing.close();
    throw toHypervisordError(err, context);
  }
}

/** The file opened for update, or undefined when it does not exist. */
async function openExisting(path: string, context: string): Promise<FileHandle | undefined> {
  try {
    return await open(path, "r+");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw toHypervisordError(err, context);
  }
}

/** After a restart the hash of the kept bytes is gone: read them once. */
async function hashPrefix(handle: FileHandle, hash: Hasher, base: number, length: number, path: string, signal: AbortSignal): Promise<void> {
  if (length === 0) return;
  const buffer = Buffer.allocUnsafe(Math.min(IO_CHUNK, length));
  for (let offset = 0; offset < length; ) {
    signal.throwIfAborted();
    const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, length - offset), base + offset);
    if (bytesRead === 0) throw new HypervisordError("INTERNAL", `${path} ended at byte ${offset} while hashing its first ${length} bytes`);
    hash.update(buffer.subarray(0, bytesRead));
    offset += bytesRead;
  }
}

/** pwrite(2) on this thread, the rest again after a short count (a disk filling up), until it errors. */
function writeFullySync(fd: number, data: Buffer, position: number): void {
  for (let written = 0; written < data.length; ) {
    const n = writeSync(fd, data, written, data.length - written, position + written);
    if (n === 0) throw Object.assign(new Error(`pwrite wrote nothing at byte ${position + written}`), { code: "EIO" });
    written += n;
  }
}

/** pwrite at `position`; libuv returns a short count (no error) when the disk fills mid-way, so write the rest until it errors. */
async function writeFully(handle: FileHandle, data: Buffer, position: number): Promise<void> {
  const { bytesWritten } = await handle.write(data, 0, data.length, position);
  if (bytesWritten < data.length) await writeAll(handle, data.subarray(bytesWritten), position + bytesWritten);
}
