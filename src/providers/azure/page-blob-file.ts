import { createHash, type Hash } from "node:crypto";
import { open, type FileHandle } from "node:fs/promises";
import { HypervisordError, toHypervisordError } from "../../errors.ts";
import { diskError } from "../../files/disk-error.ts";
import { writeAll } from "../../files/fs-utils.ts";
import { VHD_FOOTER_SIZE } from "../../package/vhd-footer.ts";

// The local file of a page blob: created at the blob's full size (sparse: ftruncate), data written at its offsets in
// any order, the SHA-256 of the whole logical blob fed in offset order (the holes from a zero buffer), and
// checkpoints of the offset below which everything is written and fdatasync'ed.

/** Shared, never written: holes are hashed from it and chunks compared with it. */
const ZEROS = Buffer.alloc(1024 * 1024);
/** The reads that hash a resumed prefix. */
const READ_CHUNK = 4 * 1024 * 1024;
const CHECKPOINT_INTERVAL_MS = 1000;

export interface BlobFile {
  /** Bytes below which the file is written and hashed (not necessarily synced yet). */
  readonly doneBelow: number;
  /** Where this run started: the checkpoint it resumed from, or 0. */
  readonly resumedAt: number;
  /** Writes `data` at `position` unless it is all zeros (the file holds zeros there already: a hole stays a hole). */
  write(data: Buffer, position: number): Promise<void>;
  /**
   * The data at `start` is written: hashes the hole up to it and the data, and moves doneBelow past it. Calls must
   * come in offset order. Takes a checkpoint (fdatasync, then onCheckpoint) when the last is a second old.
   */
  advance(start: number, data: Buffer): void;
  /** Hashes the hole to the end, syncs, reports the last checkpoint; the SHA-256 and the footer bytes. */
  finish(): Promise<{ sha256: string; footer: Buffer }>;
  close(): Promise<void>;
}

export interface BlobFileOptions {
  name: string;
  path: string;
  size: number;
  /** doneBelow of a checkpoint: the bytes before it are kept (and hashed from disk). */
  resumeAt: number;
  signal: AbortSignal;
  logger?: { warn(obj: object, msg: string): void };
  /** Called at most every ~1 s and at the end, after the bytes below `doneBelow` are fdatasync'ed. */
  onCheckpoint(doneBelow: number): void;
}

export async function openBlobFile(options: BlobFileOptions): Promise<BlobFile> {
  const { name, path, size } = options;
  const { handle, resumedAt } = await openSized(options);
  const hash = createHash("sha256");
  let doneBelow = resumedAt;
  let syncing: Promise<void> | undefined;
  let lastCheckpointAt = performance.now();
  /** A failed fdatasync: the checkpoint cannot be trusted, the download stops with it. */
  let broken: HypervisordError | undefined;

  try {
    await hashPrefix(handle, hash, resumedAt, options);
  } catch (err) {
    await handle.close();
    throw err;
  }

  const hashZeros = (length: number) => {
    for (let left = length; left > 0; left -= ZEROS.length) hash.update(left >= ZEROS.length ? ZEROS : ZEROS.subarray(0, left));
  };

  const checkpoint = async () => {
    lastCheckpointAt = performance.now();
    const at = doneBelow;
    try {
      await handle.datasync();
    } catch (err) {
      broken ??= diskError(err, "syncing", path, name);
      return;
    }
    try {
      options.onCheckpoint(at);
    } catch (err) {
      // Nobody awaits this checkpoint: its failure stops the download at the next chunk instead.
      broken ??= toHypervisordError(err, `saving the checkpoint of ${name}`);
    }
  };

  return {
    get doneBelow() {
      return doneBelow;
    },
    resumedAt,
    async write(data, position) {
      if (broken) throw broken;
      if (isZero(data)) return;
      try {
        await writeAll(handle, data, position);
      } catch (err) {
        // Not retryable as a transfer is: the disk stays full (the job's own retry policy decides).
        const mapped = diskError(err, "writing", path, name);
        throw mapped.retryable ? new HypervisordError(mapped.code, mapped.message, { cause: err }) : mapped;
      }
    },
    advance(start, data) {
      if (broken) throw broken;
      if (start < doneBelow) throw new HypervisordError("INTERNAL", `${name}: bytes at ${start} hashed after those up to ${doneBelow}`);
      hashZeros(start - doneBelow);
      hash.update(data);
      doneBelow = start + data.length;
      if (!syncing && performance.now() - lastCheckpointAt >= CHECKPOINT_INTERVAL_MS) {
        // Not awaited: writes go on while the kernel flushes; the bytes below `at` are covered by it.
        syncing = checkpoint().finally(() => {
          syncing = undefined;
        });
      }
    },
    async finish() {
      await syncing;
      if (broken) throw broken;
      hashZeros(size - doneBelow);
      doneBelow = size;
      try {
        await handle.datasync();
      } catch (err) {
        throw diskError(err, "syncing", path, name);
      }
      options.onCheckpoint(size);
      const footer = Buffer.alloc(Math.min(VHD_FOOTER_SIZE, size));
      await handle.read(footer, 0, footer.length, size - footer.length);
      return { sha256: hash.digest("hex"), footer };
    },
    async close() {
      await syncing;
      await handle.close();
    },
  };
}

/** Whether every byte of `data` is zero (compared with the shared zero buffer: memcmp, stops at the first difference). */
export function isZero(data: Buffer): boolean {
  for (let at = 0; at < data.length; at += ZEROS.length) {
    const piece = data.subarray(at, Math.min(data.length, at + ZEROS.length));
    if (!piece.equals(ZEROS.subarray(0, piece.length))) return false;
  }
  return true;
}

/**
 * Opens the file at the blob's size. A resumed file keeps its first `resumeAt` bytes; everything after is cut
 * off and grown back as a hole, so no byte of the earlier run survives where this run may find a hole.
 */
async function openSized(options: BlobFileOptions): Promise<{ handle: FileHandle; resumedAt: number }> {
  const { name, path, size } = options;
  const context = `opening ${path} (${name})`;
  let handle: FileHandle | undefined;
  let resumedAt = 0;
  try {
    if (options.resumeAt > 0) {
      try {
        handle = await open(path, "r+");
        const { size: onDisk } = await handle.stat();
        // Every run makes the file full-size at once: a shorter one is not what the checkpoint describes.
        if (onDisk >= Math.min(options.resumeAt, size)) resumedAt = Math.min(options.resumeAt, size);
        else options.logger?.warn({ file: name, path, checkpoint: options.resumeAt, size: onDisk }, "partial file is shorter than its checkpoint, starting over");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        options.logger?.warn({ file: name, path, checkpoint: options.resumeAt }, "partial file is gone, starting over");
      }
    }
    handle ??= await open(path, "w+");
    await handle.truncate(resumedAt);
    await handle.truncate(size);
    return { handle, resumedAt };
  } catch (err) {
    await handle?.close();
    throw toHypervisordError(err, context);
  }
}

async function hashPrefix(handle: FileHandle, hash: Hash, length: number, options: BlobFileOptions): Promise<void> {
  if (length === 0) return;
  const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK, length));
  for (let offset = 0; offset < length; ) {
    options.signal.throwIfAborted();
    const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, length - offset), offset);
    if (bytesRead === 0) throw new HypervisordError("INTERNAL", `${options.path} ended at byte ${offset} while hashing its first ${length} bytes`);
    hash.update(buffer.subarray(0, bytesRead));
    offset += bytesRead;
  }
}
