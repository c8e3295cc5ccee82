import { createHash } from "node:crypto";
import fs from "node:fs";
import { open, rm, stat } from "node:fs/promises";
import path from "node:path";
import { CONVERT_FORMATS, type ConvertFormat } from "../domain/job.ts";
import { FailedPreconditionError, HypervisordError, InvalidArgumentError, toHypervisordError } from "../errors.ts";
import { freeSpace } from "../files/disk-error.ts";
import { publishPartial, startPartial, UNRECORDED } from "../files/written-files.ts";
import { checkFixedVhd } from "../package/vhd-footer.ts";
import { createHostSlots } from "../transfer/host-slots.ts";
import type { ConvertJob, ConvertResult, Converter, ConverterStats, DiskFormat, SourceFormat } from "./converter.ts";
import { checkSingleFileVmdk } from "./vmdk-check.ts";
import { createProgressParser, describeExit, runQemuImg, stderrTail, type QemuImgRun } from "./qemu-img.ts";

/** A request's format field, case-insensitive: "" means none (undefined); anything else must be a ConvertFormat. */
export function parseConvertFormat(value: string, field: string): ConvertFormat | undefined {
  const name = value.trim().toLowerCase();
  if (name === "") return undefined;
  if ((CONVERT_FORMATS as readonly string[]).includes(name)) return name as ConvertFormat;
  throw new InvalidArgumentError(field, `must be one of ${CONVERT_FORMATS.join(", ")}; got ${JSON.stringify(value)}`);
}

export interface ConverterOptions {
  /** Path of the qemu-img binary (see detectQemuImg). */
  qemuImg: string;
  /** Conversions and compares running at once, across every caller of this converter. */
  maxConcurrent: number;
  /** Between SIGTERM and SIGKILL when a run is aborted. Default 5 s. */
  killGraceMs?: number;
  logger?: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

export function createConverter(options: ConverterOptions): Converter {
  const { qemuImg, maxConcurrent, killGraceMs, logger } = options;
  if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1) {
    throw new InvalidArgumentError("maxConcurrent", `must be an integer >= 1, got ${maxConcurrent}`);
  }
  // One "host" of a FIFO semaphore whose waits respect the signal.
  const slots = createHostSlots(maxConcurrent);
  const counts: ConverterStats = { running: 0, waiting: 0 };

  const withSlot = async <T>(signal: AbortSignal, work: () => Promise<T>): Promise<T> => {
    counts.waiting++;
    let release: () => void;
    try {
      release = await slots.acquire("qemu-img", signal);
    } finally {
      counts.waiting--;
    }
    counts.running++;
    try {
      return await work();
    } finally {
      counts.running--;
      release();
    }
  };

  const run = (args: string[], signal: AbortSignal, onStdout?: (chunk: string) => void) =>
    runQemuImg(qemuImg, args, { signal, onStdout, killGraceMs });

  return {
    async convert(job) {
      const sourceFormat = job.sourceFormat ?? formatFromName(job.source, ["vmdk", "raw", "vpc"], "sourceFormat");
      if (path.resolve(job.source) === path.resolve(job.target)) {
        throw new InvalidArgumentError("target", `must differ from the source (${job.target})`);
      }
      const vhdSize = await checkInput(job.source, sourceFormat);
      return withSlot(job.signal, async () => {
        try {
          const result = await convertOnce(job, sourceFormat, vhdSize, run);
          logger?.info({ source: path.basename(job.source), format: job.format, bytes: result.bytes, seconds: result.seconds }, "disk converted");
          return result;
        } catch (err) {
          if (!job.signal.aborted) logger?.warn({ source: path.basename(job.source), format: job.format, err }, "disk conversion failed");
          throw err;
        }
      });
    },

    async compare(a, b, { signal, aFormat, bFormat }) {
      const formatA = aFormat ?? formatFromName(a, ["vmdk", "vpc", ...CONVERT_FORMATS], "aFormat");
      const formatB = bFormat ?? formatFromName(b, ["vmdk", "vpc", ...CONVERT_FORMATS], "bFormat");
      const vhdSizeA = await checkInput(a, formatA);
      const vhdSizeB = await checkInput(b, formatB);
      return withSlot(signal, async () => {
        const operands = formatA === "vpc" || formatB === "vpc"
          ? ["--image-opts", imageOptions(a, formatA, vhdSizeA), imageOptions(b, formatB, vhdSizeB)]
          : ["-f", formatA, "-F", formatB, asOperand(a), asOperand(b)];
        const result = await run(["compare", ...operands], signal);
        if (result.code === 0) return { identical: true };
        if (result.code === 1) return { identical: false, detail: result.stdout.trim().split("\n", 1)[0] ?? "" };
        throw qemuImgError(`comparing ${path.basename(a)} with ${path.basename(b)}`, result);
      });
    },

    async info(file, { signal, format }) {
      const vhdSize = await checkInput(file, format);
      const operand = format === "vpc" ? ["--image-opts", imageOptions(file, format, vhdSize)] : [...(format ? ["-f", format] : []), asOperand(file)];
      const result = await run(["info", "--output=json", ...operand], signal);
      if (result.code !== 0) throw qemuImgError(`reading ${path.basename(file)}`, result);
      const parsed = JSON.parse(result.stdout) as { format: string; "virtual-size": number; "actual-size"?: number };
      // A VHD is read as a raw slice (see imageOptions): qemu says "raw", the file is a VHD.
      return { format: format === "vpc" ? "vpc" : parsed.format, virtualSize: parsed["virtual-size"], actualSize: parsed["actual-size"] };
    },

    stats: () => ({ ...counts }),
  };
}

type Run = (args: string[], signal: AbortSignal, onStdout?: (chunk: string) => void) => Promise<QemuImgRun>;

async function convertOnce(job: ConvertJob, sourceFormat: SourceFormat, vhdSize: number | undefined, run: Run): Promise<ConvertResult> {
  const { source, target, format, signal } = job;
  const written = job.written ?? UNRECORDED;
  const partial = startPartial(target, written);
  const started = performance.now();
  const progress = createProgressParser((percent) => job.onProgress?.(percent));
  try {
    // No -o: qemu-img's defaults (qcow2 compat 1.1, dynamic VDI, sparse raw) are what a hypervisor imports.
    const read = sourceFormat === "vpc" ? { flags: ["--image-opts"], operand: imageOptions(source, sourceFormat, vhdSize) } : { flags: ["-f", sourceFormat], operand: asOperand(source) };
    const result = await run(["convert", "-p", ...read.flags, "-O", format, read.operand, asOperand(partial)], signal, (chunk) => progress.push(chunk));
    if (result.code !== 0) throw qemuImgError(`converting ${path.basename(source)} to ${format}`, result, partial);
    progress.finish();
    const { bytes, sha256 } = await hashAndSync(partial, signal);
    await publishPartial(target, written);
    return { target, format, bytes, sha256, seconds: (performance.now() - started) / 1000 };
  } catch (err) {
    await rm(partial, { force: true });
    if (signal.aborted) throw signal.reason;
    throw toHypervisordError(err, `converting ${path.basename(source)} to ${format}`);
  }
}

/**
 * Absolute, so no name is read as something else: "-x" as an option (getopt permutes arguments), "nbd:host" or
 * "json:{...}" as a protocol (qemu looks for a protocol before the first "/").
 */
const asOperand = (file: string) => path.resolve(file);

/**
 * An image as an --image-opts operand (qemu's option syntax: a comma in a value is written ",,"), the file
 * protocol named so no name is read as another protocol. --image-opts applies to every image operand of the
 * command (and excludes -f/-F), so a compare with a VHD on one side gives both sides this way.
 *
 * A fixed VHD (checkInput made sure it is one) is the disk's bytes followed by its 512-byte footer: it is read as
 * a raw image cut to the footer's current size (`vhdSize`). Not through qemu's vpc driver: that one sizes a VHD
 * by its CHS geometry (a cylinder multiple, not the disk's size) unless the creator is one it knows (Hyper-V
 * "win ", Disk2vhd...), and Azure's "wa" is not one (force_size_calc=current_size would fix that); but it also
 * refuses any VHD over 2040 GiB ("File too large", qemu 7.2), and managed disks go to 32 TiB.
 */
function imageOptions(file: string, format: DiskFormat, vhdSize?: number): string {
  const driver = format === "vpc" ? `raw,size=${vhdSize}` : format;
  return `driver=${driver},file.driver=file,file.filename=${asOperand(file).replaceAll(",", ",,")}`;
}

/**
 * A failed qemu-img run: INTERNAL with the end of its stderr, or RESOURCE_EXHAUSTED when the disk is full,
 * naming the file written and the room left.
 */
function qemuImgError(context: string, run: QemuImgRun, output?: string): HypervisordError {
  const detail = stderrTail(run.stderr) || "no message";
  if (!/No space left on device|Disk quota exceeded/.test(run.stderr)) return new HypervisordError("INTERNAL", `${context}: qemu-img ${describeExit(run)}: ${detail}`);
  const where = output ? ` writing ${output} (${freeSpace(path.dirname(output))})` : "";
  return new HypervisordError("RESOURCE_EXHAUSTED", `${context}: qemu-img ${describeExit(run)}${where}: ${detail}`);
}

const FORMAT_BY_EXTENSION: Record<string, DiskFormat> = {
  ".vmdk": "vmdk",
  ".vhd": "vpc",
  ".qcow2": "qcow2",
  ".vdi": "vdi",
  ".raw": "raw",
  ".img": "raw",
};

function formatFromName<F extends DiskFormat>(file: string, allowed: readonly F[], field: string): F {
  const format = FORMAT_BY_EXTENSION[path.extname(file).toLowerCase()];
  if (format && (allowed as readonly string[]).includes(format)) return format as F;
  throw new InvalidArgumentError(field, `not given and not known from the name ${JSON.stringify(path.basename(file))}; one of ${allowed.join(", ")}`);
}

/**
 * The file must exist (NOT_FOUND) and be a regular file. A VMDK must be a single-file one (see vmdk-check.ts):
 * anything else qemu-img reads as a text descriptor, whose extent lines may name any file on this host. A VHD
 * must be a fixed one of whole sectors (see vhd-footer.ts; a differencing VHD names its parent file, and a
 * dynamic one is nothing a provider downloads): returns its size, the bytes before the footer.
 */
async function checkInput(file: string, format: DiskFormat | undefined): Promise<number | undefined> {
  const info = await stat(file).catch((err: unknown) => {
    throw toHypervisordError(err, `reading ${path.basename(file)}`);
  });
  if (!info.isFile()) throw new FailedPreconditionError(`${file} is not a regular file`);
  if (format === "vmdk") await checkSingleFileVmdk(file);
  if (format !== "vpc") return undefined;
  const { currentSize } = await checkFixedVhd(file, path.basename(file));
  if (currentSize % 512 !== 0) throw new FailedPreconditionError(`${path.basename(file)}: a VHD of ${currentSize} bytes, not a whole number of 512-byte sectors`);
  return currentSize;
}

const HASH_CHUNK = 1024 * 1024;

/** SHA-256 and size of `file`, read as a stream; then its data is flushed to disk, so the rename that follows publishes whole content. */
async function hashAndSync(file: string, signal: AbortSignal): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash("sha256");
  let bytes = 0;
  for await (const chunk of fs.createReadStream(file, { highWaterMark: HASH_CHUNK, signal })) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  const handle = await open(file, "r+");
  try {
    await handle.datasync();
  } finally {
    await handle.close();
  }
  return { bytes, sha256: hash.digest("hex") };
}
