import fs from "node:fs/promises";
import { FailedPreconditionError } from "../errors.ts";

/** A VHD's last 512 bytes (Microsoft's "Virtual Hard Disk Image Format Specification", the hard disk footer). */
export const VHD_FOOTER_SIZE = 512;

export interface VhdFooter {
  /** "fixed", "dynamic" or "differencing" (disk types 2, 3, 4). */
  diskType: "fixed" | "dynamic" | "differencing";
  /** Current size: the bytes the guest sees (the data before the footer of a fixed VHD). */
  currentSize: number;
  originalSize: number;
  /** The creator application, e.g. "win " (Hyper-V) or "wa\0\0" (Azure), trailing NULs and spaces removed. */
  creatorApp: string;
  uuid: string;
}

const DISK_TYPES: Record<number, VhdFooter["diskType"]> = { 2: "fixed", 3: "dynamic", 4: "differencing" };

/**
 * Parses and checks a footer: the "conectix" cookie, the format version 1.0 and the checksum (the one's
 * complement of the sum of all bytes but the checksum's own). Throws, saying which, when one is wrong.
 */
export function parseVhdFooter(footer: Buffer, what: string): VhdFooter {
  if (footer.length !== VHD_FOOTER_SIZE) throw invalid(what, `the footer is ${footer.length} bytes, not ${VHD_FOOTER_SIZE}`);
  const cookie = footer.subarray(0, 8).toString("latin1");
  if (cookie !== "conectix") throw invalid(what, `no VHD footer: its last 512 bytes start with ${JSON.stringify(cookie)}, not "conectix"`);
  const version = footer.readUInt32BE(12);
  if (version !== 0x0001_0000) throw invalid(what, `VHD format version 0x${version.toString(16)}, not 1.0`);
  const stored = footer.readUInt32BE(64);
  if (stored !== vhdChecksum(footer)) throw invalid(what, `the VHD footer's checksum is 0x${stored.toString(16)}, its bytes sum to 0x${vhdChecksum(footer).toString(16)}`);
  const type = DISK_TYPES[footer.readUInt32BE(60)];
  if (!type) throw invalid(what, `unknown VHD disk type ${footer.readUInt32BE(60)}`);
  const hex = footer.subarray(68, 84).toString("hex");
  return {
    diskType: type,
    originalSize: Number(footer.readBigUInt64BE(40)),
    currentSize: Number(footer.readBigUInt64BE(48)),
    creatorApp: footer.subarray(28, 32).toString("latin1").replace(/[\0 ]+$/, ""),
    uuid: `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`,
  };
}

/** The footer checksum: the one's complement of the byte sum, the checksum field (bytes 64-67) counted as zero. */
export function vhdChecksum(footer: Buffer): number {
  let sum = 0;
  for (let i = 0; i < VHD_FOOTER_SIZE; i++) if (i < 64 || i > 67) sum += footer[i]!;
  return ~sum >>> 0;
}

/**
 * A file that must be a fixed VHD (what Azure serves for a managed disk): the footer valid, of type fixed, and
 * its current size equal to the file's size less the footer.
 */
export async function checkFixedVhd(file: string, name: string): Promise<VhdFooter> {
  const handle = await fs.open(file, "r");
  try {
    const { size } = await handle.stat();
    if (size < VHD_FOOTER_SIZE) throw invalid(name, `${size} bytes, too short for a VHD`);
    const footer = Buffer.alloc(VHD_FOOTER_SIZE);
    await handle.read(footer, 0, VHD_FOOTER_SIZE, size - VHD_FOOTER_SIZE);
    return checkFixed(parseVhdFooter(footer, name), size, name);
  } finally {
    await handle.close();
  }
}

/** The checks of checkFixedVhd on a footer already read, for a file of `size` bytes. */
export function checkFixed(footer: VhdFooter, size: number, name: string): VhdFooter {
  if (footer.diskType !== "fixed") throw invalid(name, `a ${footer.diskType} VHD; a fixed VHD was expected`);
  if (footer.currentSize !== size - VHD_FOOTER_SIZE) {
    throw invalid(name, `the VHD footer says ${footer.currentSize} bytes of disk, the file holds ${size - VHD_FOOTER_SIZE} before its footer`);
  }
  return footer;
}

function invalid(what: string, problem: string): FailedPreconditionError {
  return new FailedPreconditionError(`${what}: ${problem}`);
}
