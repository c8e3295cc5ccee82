import type { FileHandle } from "node:fs/promises";
import { HypervisordError, InvalidArgumentError, toHypervisordError } from "../errors.ts";
import { writeAll } from "../files/fs-utils.ts";
import { TAR_BLOCK, TAR_END, tarHeader, tarPadding } from "./tar-header.ts";

/**
 * An OVA is a tar: the .ovf descriptor first, then the files in the order of the descriptor's References,
 * then the .mf manifest (and a .cert). Every header's size and place follow from the entries' names and
 * sizes alone, so the layout is computed up front and the disks can be written into the archive at their
 * offsets, in parallel and in any order.
 */

export interface OvaEntry {
  name: string;
  size: number;
}

export interface OvaLayoutEntry extends OvaEntry {
  /** Where `header` goes. */
  headerOffset: number;
  /** Where the entry's `size` bytes of data go (headerOffset + header.length). */
  dataOffset: number;
  /** The tar header block(s) of the entry (a pax header too for long names and sizes >= 8 GiB). */
  header: Buffer;
}

export interface OvaLayout {
  /** In archive order. */
  entries: OvaLayoutEntry[];
  /** The archive's size, end-of-archive blocks included. */
  totalSize: number;
}

export interface OvaStreamEntry extends OvaEntry {
  data: AsyncIterable<Buffer> | Buffer;
}

const ZEROS = Buffer.alloc(TAR_BLOCK);

/**
 * The offsets of every header and data region of an OVA holding `entries`, in that order (the caller orders
 * them: .ovf, References order, .mf). All headers carry `mtime` (default: now): the same entries and mtime
 * give the same bytes, here and from tarStream.
 */
export function ovaLayout(entries: readonly OvaEntry[], mtime: Date = new Date()): OvaLayout {
  const order = createEntryOrderCheck();
  let offset = 0;
  const laid = entries.map(({ name, size }) => {
    order.next(name);
    const header = tarHeader({ name, size, mtime });
    const headerOffset = offset;
    const dataOffset = headerOffset + header.length;
    offset = dataOffset + size + tarPadding(size);
    return { name, size, headerOffset, dataOffset, header };
  });
  order.finish();
  return { entries: laid, totalSize: offset + TAR_END.length };
}

/**
 * Makes `handle`'s file an archive of `layout` whose data regions are left for the caller: sets its size to
 * `totalSize` (growing it sparsely) and writes every header, padding and the end-of-archive blocks. Data
 * already in the file is kept, so calling it again on a partly written archive (a resumed export) is safe.
 */
export async function writeOvaSkeleton(handle: FileHandle, layout: OvaLayout): Promise<void> {
  let writing = "sizing the archive";
  try {
    await handle.truncate(layout.totalSize);
    for (const entry of layout.entries) {
      writing = `writing the tar header of ${entry.name}`;
      await writeAll(handle, entry.header, entry.headerOffset);
      const padding = tarPadding(entry.size);
      if (padding > 0) await writeAll(handle, ZEROS.subarray(0, padding), entry.dataOffset + entry.size);
    }
    writing = "writing the end-of-archive blocks";
    await writeAll(handle, TAR_END, layout.totalSize - TAR_END.length);
  } catch (err) {
    throw toHypervisordError(err, writing);
  }
}

/**
 * The same archive as `ovaLayout` + `writeOvaSkeleton` + the data at its offsets, byte for byte, as a stream
 * (for `.ova.gz`: tarStream -> gzip -> file). Throws when an entry's data is longer or shorter than its size,
 * before yielding a byte beyond it.
 */
export async function* tarStream(
  entries: AsyncIterable<OvaStreamEntry> | Iterable<OvaStreamEntry>,
  mtime: Date = new Date(),
): AsyncGenerator<Buffer, void, undefined> {
  const order = createEntryOrderCheck();
  for await (const entry of entries) {
    order.next(entry.name);
    yield tarHeader({ name: entry.name, size: entry.size, mtime });
    yield* entryData(entry);
    const padding = tarPadding(entry.size);
    if (padding > 0) yield ZEROS.subarray(0, padding);
  }
  order.finish();
  yield TAR_END;
}

async function* entryData(entry: OvaStreamEntry): AsyncGenerator<Buffer, void, undefined> {
  if (Buffer.isBuffer(entry.data)) {
    if (entry.data.length !== entry.size) throw sizeMismatch(entry, `has ${entry.data.length} bytes`);
    yield entry.data;
    return;
  }
  let length = 0;
  for await (const chunk of entry.data) {
    length += chunk.length;
    if (length > entry.size) throw sizeMismatch(entry, `has more than ${entry.size} bytes`);
    yield chunk;
  }
  if (length !== entry.size) throw sizeMismatch(entry, `has ${length} bytes`);
}

function sizeMismatch(entry: OvaEntry, got: string): HypervisordError {
  return new HypervisordError("INTERNAL", `${entry.name}: the data ${got}, the entry declares ${entry.size}`);
}

interface EntryOrderCheck {
  /** Throws when `name` cannot come next. */
  next(name: string): void;
  /** Throws when there were no entries. */
  finish(): void;
}

/** Checks names as they come: the first is the .ovf descriptor, none repeats, and there is at least one. */
function createEntryOrderCheck(): EntryOrderCheck {
  const seen = new Set<string>();
  return {
    next(name) {
      if (seen.size === 0 && !name.toLowerCase().endsWith(".ovf")) {
        throw new InvalidArgumentError("entries", `an OVA starts with its .ovf descriptor, got ${name} first`);
      }
      if (seen.has(name)) throw new InvalidArgumentError("entries", `${name} appears twice`);
      seen.add(name);
    },
    finish() {
      if (seen.size === 0) throw new InvalidArgumentError("entries", "an OVA holds at least its .ovf descriptor");
    },
  };
}
