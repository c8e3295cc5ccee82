import { statfsSync } from "node:fs";
import path from "node:path";
import { HypervisordError, toHypervisordError } from "../errors.ts";

/** errno codes of a full disk or an exhausted quota. */
const FULL = new Set(["ENOSPC", "EDQUOT"]);

/**
 * A failed write, sync or rename of `file` as a HypervisordError whose message names the file ("writing
 * /exports/web-01/web-01-disk-1.vmdk.partial: ENOSPC: ..."). A full disk also says how much room is left
 * on that filesystem: the operator sees at once how much is missing. Not retryable: the disk stays full.
 */
export function diskError(err: unknown, action: string, file: string, detail?: string): HypervisordError {
  const mapped = toHypervisordError(err, `${action} ${file}${detail ? ` (${detail})` : ""}`);
  if (!isDiskFull(err)) return mapped;
  return new HypervisordError("RESOURCE_EXHAUSTED", `${mapped.message} (${freeSpace(path.dirname(file))})`, { cause: err });
}

function isDiskFull(err: unknown): boolean {
  for (let current = err, depth = 0; depth < 4 && current instanceof Error; depth++, current = current.cause) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string") return FULL.has(code);
  }
  return false;
}

/** "1.2 MiB free of 8 MiB on the filesystem of DIR": for messages about a full disk. */
export function freeSpace(dir: string): string {
  try {
    const fs = statfsSync(dir);
    return `${formatBytes(fs.bavail * fs.bsize)} free of ${formatBytes(fs.blocks * fs.bsize)} on the filesystem of ${dir}`;
  } catch (err) {
    return `the free space on ${dir} is unknown: ${(err as Error).message}`;
  }
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${units[unit]}`;
}
