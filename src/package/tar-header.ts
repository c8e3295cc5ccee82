import { InvalidArgumentError } from "../errors.ts";

/**
 * Tar headers written by hand, so that an OVA's layout is known before a byte of it is written (the export
 * pipeline downloads disks straight into the archive at precomputed offsets). The format is POSIX pax
 * (ustar blocks, plus an extended header `x` where ustar cannot say it), as `tar --format=pax` writes it.
 */

export const TAR_BLOCK = 512;

/** The end-of-archive marker: two zero blocks. Shared: never write into it. */
export const TAR_END: Buffer = Buffer.alloc(2 * TAR_BLOCK);

/** The largest size the 11-digit octal field holds (8 GiB - 1); larger sizes go in a pax `size` record. */
const MAX_USTAR_SIZE = 0o77777777777;
const MAX_USTAR_MTIME = 0o77777777777;
const NAME_FIELD = 100;
const PREFIX_FIELD = 155;
const PAX_DIR = "PaxHeaders/";
const OWNER = "root";

export interface TarEntry {
  /** Relative path inside the archive, "/"-separated, UTF-8. */
  name: string;
  /** Bytes of data that follow the header. */
  size: number;
  /** Default: now. Whole seconds are kept. */
  mtime?: Date;
  /** Permission bits; default 0o644. */
  mode?: number;
}

/**
 * Why `name` may not be a member of an archive we write or extract, or undefined when it is safe:
 * empty, absolute, a `..` segment, a backslash (a separator on Windows) or a NUL.
 */
export function entryNameProblem(name: string): string | undefined {
  if (name === "") return "is empty";
  if (name.includes("\0")) return "contains a NUL character";
  if (name.includes("\\")) return "contains a backslash";
  if (name.startsWith("/")) return "is an absolute path";
  if (name.split("/").includes("..")) return "has a .. segment";
  return undefined;
}

/**
 * The header block(s) of a regular file: one ustar block, preceded by a pax extended header when the name
 * does not fit ustar's name/prefix fields or is not ASCII (a `path` record), or when the size is 8 GiB or
 * more (a `size` record). As GNU tar does, the ustar size field is then 0: pax readers (GNU tar, bsdtar,
 * libarchive, Go, Python, tar-stream) take the pax size. Data and its padding are the caller's.
 */
export function tarHeader(entry: TarEntry): Buffer {
  const mtime = checkEntry(entry);
  const mode = entry.mode ?? 0o644;
  const fields = ustarNameFields(entry.name);
  const records: [string, string][] = [];
  if (!fields) records.push(["path", entry.name]);
  if (entry.size > MAX_USTAR_SIZE) records.push(["size", String(entry.size)]);
  const header = ustarBlock({
    ...(fields ?? { name: truncateUtf8(entry.name, NAME_FIELD), prefix: Buffer.alloc(0) }),
    size: entry.size > MAX_USTAR_SIZE ? 0 : entry.size,
    mtime,
    mode,
    typeflag: "0",
  });
  if (records.length === 0) return header;

  const pax = paxRecords(records);
  const paxHeader = ustarBlock({
    name: truncateUtf8(PAX_DIR + (entry.name.split("/").pop() ?? ""), NAME_FIELD),
    prefix: Buffer.alloc(0),
    size: pax.length,
    mtime,
    mode: 0o644,
    typeflag: "x",
  });
  return Buffer.concat([paxHeader, pax, Buffer.alloc(tarPadding(pax.length)), header]);
}

/** Zero bytes that follow `size` bytes of data, up to the next 512-byte block. */
export function tarPadding(size: number): number {
  return (TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK;
}

/** Validates the entry and returns its mtime in whole seconds. */
function checkEntry(entry: TarEntry): number {
  const problem = entryNameProblem(entry.name) ?? (entry.name.endsWith("/") ? "ends with /, which names a directory" : undefined);
  if (problem) throw new InvalidArgumentError("name", `${JSON.stringify(entry.name)} ${problem}`);
  if (!Number.isSafeInteger(entry.size) || entry.size < 0) {
    throw new InvalidArgumentError("size", `must be an integer >= 0, got ${entry.size} (${entry.name})`);
  }
  if (entry.mode !== undefined && !(Number.isInteger(entry.mode) && entry.mode >= 0 && entry.mode <= 0o7777)) {
    throw new InvalidArgumentError("mode", `must be permission bits within 0o7777, got ${entry.mode} (${entry.name})`);
  }
  const mtime = Math.floor((entry.mtime ?? new Date()).getTime() / 1000);
  if (!(mtime >= 0 && mtime <= MAX_USTAR_MTIME)) {
    throw new InvalidArgumentError("mtime", `must be between 1970 and 2242, got ${String(entry.mtime)} (${entry.name})`);
  }
  return mtime;
}

/**
 * The ustar name and prefix fields of an ASCII name: the name alone when it fits 100 bytes, else split at a
 * "/" into a prefix of <= 155 bytes and a name of <= 100. Undefined when neither works (a pax `path` then).
 */
function ustarNameFields(name: string): { name: Buffer; prefix: Buffer } | undefined {
  if (!/^[\x20-\x7e]*$/.test(name)) return undefined;
  if (name.length <= NAME_FIELD) return { name: Buffer.from(name), prefix: Buffer.alloc(0) };
  for (let slash = name.indexOf("/"); slash > 0; slash = name.indexOf("/", slash + 1)) {
    const rest = name.length - slash - 1;
    if (slash > PREFIX_FIELD) return undefined;
    if (rest > 0 && rest <= NAME_FIELD) return { name: Buffer.from(name.slice(slash + 1)), prefix: Buffer.from(name.slice(0, slash)) };
  }
  return undefined;
}

interface UstarFields {
  name: Buffer;
  prefix: Buffer;
  size: number;
  /** Seconds since the epoch. */
  mtime: number;
  mode: number;
  typeflag: "0" | "x";
}

/** One 512-byte ustar header block (POSIX.1-1988 layout), numbers in zero-padded octal. */
function ustarBlock(fields: UstarFields): Buffer {
  const block = Buffer.alloc(TAR_BLOCK);
  fields.name.copy(block, 0);
  block.write(octal(fields.mode, 8), 100, "ascii");
  block.write(octal(0, 8), 108, "ascii"); // uid
  block.write(octal(0, 8), 116, "ascii"); // gid
  block.write(octal(fields.size, 12), 124, "ascii");
  block.write(octal(fields.mtime, 12), 136, "ascii");
  block.write(fields.typeflag, 156, "ascii");
  block.write("ustar\0" + "00", 257, "ascii");
  if (fields.typeflag === "0") {
    block.write(OWNER, 265, "ascii"); // uname
    block.write(OWNER, 297, "ascii"); // gname
  }
  block.write(octal(0, 8), 329, "ascii"); // devmajor
  block.write(octal(0, 8), 337, "ascii"); // devminor
  fields.prefix.copy(block, 345);
  // The checksum is the sum of the block's bytes with its own field read as 8 spaces,
  // written as 6 octal digits, a NUL and a space (as GNU tar and bsdtar write it).
  block.fill(" ", 148, 156, "ascii");
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(octal(sum, 7) + " ", 148, "ascii");
  return block;
}

/** `value` as zero-padded octal digits filling a field of `width` bytes, the last one a NUL. */
function octal(value: number, width: number): string {
  const digits = value.toString(8).padStart(width - 1, "0");
  if (digits.length > width - 1) throw new RangeError(`${value} does not fit a ${width}-byte tar field`);
  return digits + "\0";
}

/**
 * The data of a pax extended header: records "<length> <key>=<value>\n", where <length> is the record's
 * byte length including its own digits (so adding a digit can lengthen the record by one more).
 */
function paxRecords(records: readonly [string, string][]): Buffer {
  return Buffer.concat(
    records.map(([key, value]) => {
      const body = Buffer.byteLength(` ${key}=${value}\n`);
      let length = body + String(body).length;
      if (String(length).length !== length - body) length = body + String(length).length;
      return Buffer.from(`${length} ${key}=${value}\n`);
    }),
  );
}

/** The UTF-8 bytes of `text`, cut to at most `max` bytes without splitting a character. */
function truncateUtf8(text: string, max: number): Buffer {
  const bytes = Buffer.from(text);
  if (bytes.length <= max) return bytes;
  let end = max;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}
