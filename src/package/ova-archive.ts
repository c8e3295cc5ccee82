import { pipeline as pipeStreams, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { extract as tarExtract, type Extract, type Header } from "tar-stream";
import { errorMessage, HypervisordError, toHypervisordError } from "../errors.ts";
import { openRegularFile } from "../files/open-regular-file.ts";
import { TAR_BLOCK } from "./tar-header.ts";

/**
 * Reading OVAs (plain or gzipped tars), shared by validate-ova.ts and extract-ova.ts: opening the file,
 * feeding tar-stream, and saying where a damaged archive breaks off. Entries are streamed, never held
 * whole in memory (disks can be tens of GiB).
 */

export interface OvaEntryDigest {
  name: string;
  size: number;
  sha256: string;
}

export interface OvaReadOptions {
  /** Abort stops reading (and writing: extractOva removes what it wrote) and rejects with `signal.reason`. */
  signal?: AbortSignal;
}

const IO_CHUNK = 1024 * 1024;
const GZIP_MAGIC = [0x1f, 0x8b];

/** The plain tar of an OVA file, gunzipped on the way when the file starts with the gzip magic bytes. */
export async function openOva(file: string, signal: AbortSignal | undefined): Promise<{ stream: Readable; compressed: boolean }> {
  const { handle } = await openRegularFile(file, signal);
  let compressed: boolean;
  try {
    const magic = Buffer.alloc(GZIP_MAGIC.length);
    const { bytesRead } = await handle.read(magic, 0, magic.length, 0);
    compressed = bytesRead === magic.length && GZIP_MAGIC.every((byte, i) => magic[i] === byte);
  } catch (err) {
    await handle.close();
    throw toHypervisordError(err, `reading ${file}`);
  }
  const raw = handle.createReadStream({ start: 0, highWaterMark: IO_CHUNK });
  if (!compressed) return { stream: raw, compressed };
  const gunzip = createGunzip({ chunkSize: IO_CHUNK });
  // Errors reach the reader through `gunzip`, which pipeline destroys with them; a reader that stops early
  // destroys `gunzip`, and pipeline then closes the file.
  pipeStreams(raw, gunzip, () => {});
  return { stream: gunzip, compressed };
}

export interface ArchiveFailure {
  error: unknown;
  /** Bytes of plain tar that reached tar-stream. */
  tarBytes: number;
}

/**
 * Feeds the tar to tar-stream while `consume` takes its entries. Returns the failure, or undefined when the
 * archive was read to its end; rejects only when `signal` aborted.
 */
export async function readArchive(
  stream: Readable,
  signal: AbortSignal | undefined,
  consume: (extract: Extract) => Promise<void>,
): Promise<ArchiveFailure | undefined> {
  const extract = tarExtract();
  let tarBytes = 0;
  async function* count(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      tarBytes += chunk.length;
      yield chunk;
    }
  }
  const [fed, consumed] = await Promise.allSettled([pipeline(stream, count, extract, signal ? { signal } : {}), consume(extract)]);
  signal?.throwIfAborted();
  const consumerError: unknown = consumed.status === "rejected" ? consumed.reason : undefined;
  const fedError: unknown = fed.status === "rejected" ? fed.reason : undefined;
  if (consumerError === undefined && fedError === undefined) return undefined;
  // A consumer that stops early (a refused entry, a failed write) makes the feed end in a premature close: the
  // consumer's error is the cause. Bad tar or gzip data fails the feed, and the consumer then only sees its
  // entry stream destroyed: the feed's error is the cause.
  const dataError = (fedError as { code?: unknown } | undefined)?.code === "ERR_STREAM_PREMATURE_CLOSE" ? undefined : fedError;
  const consumerFirst = consumerError !== undefined && (isReadError(consumerError) || dataError === undefined);
  return { error: consumerFirst ? consumerError : (dataError ?? fedError), tarBytes };
}

/** Where an entry's data starts in the plain tar, for the message when the archive breaks off in it. */
export interface EntryProgress {
  name: string;
  size: number;
  dataOffset: number;
  complete: boolean;
}

/** tar-stream gives the offset of an entry's (ustar) header block; its data follows. */
export function dataOffsetOf(source: { offset: number }): number {
  return source.offset + TAR_BLOCK;
}

/** Where the archive breaks off: in an entry's data (the bytes it holds of how many), or between entries. */
export function breakOff(failure: ArchiveFailure, seen: readonly EntryProgress[]): string {
  const { error, tarBytes } = failure;
  const reason = errorMessage(error);
  const last = seen.at(-1);
  if (!last) return `not a tar archive (${reason})`;
  if (last.complete) return `the archive breaks off after the entry ${last.name} (${reason})`;
  const held = Math.max(0, Math.min(last.size, tarBytes - last.dataOffset));
  return `${last.name}: the archive breaks off after ${held} of the entry's ${last.size} bytes (${reason})`;
}

/** A failure of reading the file or of writing (ours), as opposed to bad tar or gzip data. */
export function isReadError(err: unknown): boolean {
  return err instanceof HypervisordError || isSystemError(err);
}

/** The error to throw for a failed read: ours as is, the file's I/O mapped, bad data INVALID_ARGUMENT naming where. */
export function archiveError(failure: ArchiveFailure, file: string, seen: readonly EntryProgress[]): HypervisordError {
  if (isReadError(failure.error)) return toHypervisordError(failure.error, `reading ${file}`);
  const where = seen.length === 0 ? `is ${breakOff(failure, seen)}` : `is damaged: ${breakOff(failure, seen)}`;
  return new HypervisordError("INVALID_ARGUMENT", `${file} ${where}`, { cause: failure.error });
}

/** An error from a system call (reading the file, writing one) rather than from the tar or gzip data. */
export function isSystemError(err: unknown): boolean {
  return typeof (err as { syscall?: unknown } | undefined)?.syscall === "string";
}

/** GNU tar extracts a contiguous file ('7') as a regular one. */
export function isRegular(type: Header["type"]): boolean {
  return type === "file" || type === "contiguous-file";
}
