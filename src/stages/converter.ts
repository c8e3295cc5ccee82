import type { ConvertFormat } from "../domain/job.ts";
import type { WrittenFiles } from "../files/written-files.ts";

// What the export stages and providers need of qemu-img; disk-conversion.ts implements it.

/**
 * Formats a conversion reads. Only formats that cannot name other files: a qcow2 with a backing file, or a
 * VMDK descriptor naming extents, would make qemu-img read whatever host file the (remote) image names.
 * "vpc" is qemu's name for VHD, read only as a fixed VHD (a differencing one names its parent).
 */
export type SourceFormat = "vmdk" | "raw" | "vpc";
/** Formats `compare` and `info` read. */
export type DiskFormat = SourceFormat | ConvertFormat;

export interface ConvertJob {
  /** The disk to read, e.g. a downloaded streamOptimized VMDK. */
  source: string;
  /** Default: from the file name (.vmdk, .vhd, .raw/.img). qemu-img never probes: probing trusts the image's own header. */
  sourceFormat?: SourceFormat;
  /** Written under a partial name (`${target}.partial` by default), then renamed: `target` only ever appears complete. */
  target: string;
  /** Where the partial file and `target` are recorded as the job's (for the cleanup of a failed job); default: nowhere. */
  written?: WrittenFiles;
  format: ConvertFormat;
  /** Abort stops qemu-img (SIGTERM, then SIGKILL), removes the partial file and rejects with `signal.reason`. */
  signal: AbortSignal;
  /** Increasing percentages, >= 0.5 apart, ending with 100 on success. Must not throw (a throw fails the job). */
  onProgress?(percent: number): void;
}

export interface ConvertResult {
  target: string;
  format: ConvertFormat;
  /** Size of the target file. */
  bytes: number;
  /** SHA-256 (hex) of the target file. */
  sha256: string;
  /** From qemu-img's start to the target in place (time waiting for a slot excluded). */
  seconds: number;
}

export interface CompareOptions {
  signal: AbortSignal;
  /** Default: from the file name (.vmdk, .vhd, .qcow2, .vdi, .raw/.img). */
  aFormat?: DiskFormat;
  bFormat?: DiskFormat;
}

/** `detail` is qemu-img's first line, e.g. "Content mismatch at offset 1048576!". */
export type CompareResult = { identical: true } | { identical: false; detail: string };

export interface DiskInfo {
  format: string;
  virtualSize: number;
  /** Bytes allocated on the host file system, when qemu-img reports it. */
  actualSize?: number;
}

export interface ConverterStats {
  /** qemu-img conversions and compares running now. */
  running: number;
  /** Waiting for a slot. */
  waiting: number;
}

export interface Converter {
  convert(job: ConvertJob): Promise<ConvertResult>;
  compare(a: string, b: string, options: CompareOptions): Promise<CompareResult>;
  /** `qemu-img info`: cheap, so it takes no slot. Probes the format unless `format` is given. */
  info(file: string, options: { signal: AbortSignal; format?: DiskFormat }): Promise<DiskInfo>;
  stats(): ConverterStats;
}
