import { createHash } from "node:crypto";
import fs from "node:fs";
import { open, rm } from "node:fs/promises";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { diskError } from "../files/disk-error.ts";
import { publishPartial, startPartial, UNRECORDED, type WrittenFiles } from "../files/written-files.ts";
import { tarStream, writeOvaSkeleton, type OvaLayout } from "./ova-layout.ts";

export interface OvaFile {
  /** Entry name in the archive. */
  name: string;
  /** Absolute path of the file to copy in. */
  path: string;
  size: number;
}

export interface WrittenOva {
  path: string;
  /** Bytes of the file written (compressed when compressed). */
  size: number;
  /** Bytes of the tar (equal to size when not compressed). */
  tarSize: number;
  sha256: string;
}

/**
 * Builds `target` (an .ova, or an .ova.gz with `compressionLevel`) from files already on disk, in the given
 * order, as one sequential stream: tar -> gzip (zlib, in the thread pool) -> SHA-256 -> file. Written as
 * `target`'s partial name (see files/written-files.ts), synced and renamed, so `target` only ever appears complete.
 * A failed or aborted write removes its partial file: a stream through gzip cannot resume, the next attempt
 * starts it over.
 */
export async function writeOvaFromFiles(
  target: string,
  files: readonly OvaFile[],
  options: { compressionLevel?: number; signal: AbortSignal; written?: WrittenFiles },
): Promise<WrittenOva> {
  const written = options.written ?? UNRECORDED;
  const partial = startPartial(target, written);
  const hash = createHash("sha256");
  let tarSize = 0;
  let size = 0;
  const entries = files.map((f) => ({ name: f.name, size: f.size, data: fs.createReadStream(f.path, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer> }));
  const source = Readable.from(tarStream(entries));
  const countTar = new Transform({ transform(chunk: Buffer, _enc, done) { tarSize += chunk.length; done(null, chunk); } });
  const hashOut = new Transform({ transform(chunk: Buffer, _enc, done) { size += chunk.length; hash.update(chunk); done(null, chunk); } });
  const out = fs.createWriteStream(partial);
  try {
    const stages = options.compressionLevel === undefined
      ? [source, countTar, hashOut, out] as const
      : [source, countTar, createGzip({ level: options.compressionLevel, chunkSize: 256 * 1024 }), hashOut, out] as const;
    await pipeline(stages as unknown as [Readable, ...NodeJS.WritableStream[]], { signal: options.signal });
    await syncFile(partial);
    await publishPartial(target, written);
  } catch (err) {
    await rm(partial, { force: true });
    if (options.signal.aborted) throw options.signal.reason;
    throw diskError(err, "writing", partial);
  } finally {
    for (const entry of entries) (entry.data as fs.ReadStream).destroy();
  }
  return { path: target, size, tarSize, sha256: hash.digest("hex") };
}

/**
 * Creates (or, resuming, reuses) `file` laid out for `layout`: headers, padding and end blocks in place,
 * data regions left for positional writes. Returns whether the existing file was kept.
 */
export async function prepareOvaFile(file: string, layout: OvaLayout, reuse: boolean): Promise<boolean> {
  let kept = false;
  if (reuse) {
    try {
      kept = fs.statSync(file).size === layout.totalSize;
    } catch {
      kept = false;
    }
  }
  const handle = await open(file, kept ? "r+" : "w");
  try {
    await writeOvaSkeleton(handle, layout);
    await handle.datasync();
  } finally {
    await handle.close();
  }
  return kept;
}

/** Writes `data` at `offset` of `file` (the descriptor and manifest regions of a laid-out OVA). */
export async function writeAt(file: string, data: Buffer, offset: number): Promise<void> {
  try {
    const handle = await open(file, "r+");
    try {
      let written = 0;
      while (written < data.length) written += (await handle.write(data, written, data.length - written, offset + written)).bytesWritten;
    } finally {
      await handle.close();
    }
  } catch (err) {
    throw diskError(err, "writing", file);
  }
}

/** fdatasync of a file, before it is renamed into place. */
export async function syncFile(file: string): Promise<void> {
  const handle = await open(file, "r+");
  try {
    await handle.datasync();
  } finally {
    await handle.close();
  }
}
