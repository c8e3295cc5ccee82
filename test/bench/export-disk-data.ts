// The disk contents bench:export serves from the simulator, and the SHA-256 checks of what was exported.
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";

const MiB = 1024 * 1024;
const BLOCK = 64 * MiB;

/**
 * `size` random bytes into `file`: one fresh 64 MiB randomBytes block repeated, each repetition starting with its
 * own 8-byte counter (so no two blocks are equal and each call gives other bytes). Returns their SHA-256.
 */
export function writeRandomDisk(file: string, size: number): string {
  const block = randomBytes(Math.min(BLOCK, size));
  const hash = createHash("sha256");
  const fd = fs.openSync(file, "w");
  try {
    for (let offset = 0, counter = 0n; offset < size; offset += BLOCK, counter++) {
      const chunk = block.subarray(0, Math.min(BLOCK, size - offset));
      const head = Buffer.alloc(8);
      head.writeBigUInt64BE(counter ^ 0x9e3779b97f4a7c15n);
      head.copy(chunk, 0, 0, Math.min(8, chunk.length));
      hash.update(chunk);
      fs.writeSync(fd, chunk, 0, chunk.length, offset);
    }
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest("hex");
}

/**
 * A sparse file of `size` bytes: holes (zeros) but for one random MiB at the start, one at every GiB and one at
 * the end, so that a copy that drops or shifts data shows in the SHA-256. The hash is taken here, over the zeros
 * too (~0.6 s per GiB), so that the source need not be read back. Returns it.
 */
export function writeSparseDisk(file: string, size: number): string {
  const data = new Map<number, Buffer>();
  for (let offset = 0; offset < size; offset += 1024 * MiB) data.set(offset, randomBytes(Math.min(MiB, size - offset)));
  const last = Math.max(0, Math.floor((size - MiB) / MiB) * MiB);
  if (!data.has(last)) data.set(last, randomBytes(Math.min(MiB, size - last)));
  const fd = fs.openSync(file, "w");
  try {
    fs.ftruncateSync(fd, size);
    for (const [offset, bytes] of data) fs.writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    fs.closeSync(fd);
  }
  const hash = createHash("sha256");
  const zeros = Buffer.alloc(MiB);
  for (let offset = 0; offset < size; offset += MiB) hash.update(data.get(offset) ?? zeros.subarray(0, Math.min(MiB, size - offset)));
  return hash.digest("hex");
}

export function sha256File(file: string): string {
  const hash = createHash("sha256");
  const fd = fs.openSync(file, "r");
  try {
    const buf = Buffer.alloc(8 * MiB);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) hash.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest("hex");
}
