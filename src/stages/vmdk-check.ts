import { open } from "node:fs/promises";
import path from "node:path";
import { FailedPreconditionError, toHypervisordError } from "../errors.ts";

/** Magic numbers of single-file VMDKs: hosted sparse (incl. streamOptimized) and ESX sparse. */
const VMDK_MAGICS = ["KDMV", "COWD"];
const SHOWN = 4;

/**
 * Refuses a VMDK that is not a single file, before anything reads it as a disk: qemu-img reads anything else as
 * a text descriptor, whose extent lines may name any file on this host (e.g. `RW 16 FLAT "/etc/shadow" 0`), and a
 * split or raw disk named .vmdk cannot be converted anyway. FAILED_PRECONDITION naming the file and its first
 * bytes, in hex and as text: `web-01-disk-1.vmdk starts with 23 20 44 69 ("# Di"): not a single-file VMDK ...`.
 */
export async function checkSingleFileVmdk(file: string): Promise<void> {
  const handle = await open(file, "r").catch((err: unknown) => {
    throw toHypervisordError(err, `reading ${path.basename(file)}`);
  });
  let head: Buffer;
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(SHOWN), 0, SHOWN, 0);
    head = buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
  const magic = head.toString("latin1");
  if (VMDK_MAGICS.includes(magic)) return;
  const what = head.length === 0 ? "is empty" : `starts with ${describeBytes(head)}`;
  throw new FailedPreconditionError(
    `${path.basename(file)} ${what}: not a single-file VMDK (expected "KDMV", a hosted sparse or streamOptimized VMDK, or "COWD", `
    + "an ESX sparse one); a descriptor, split or raw disk is refused: a descriptor can name other files",
  );
}

/** `23 20 44 69 ("# Di")`: hex, then the bytes as text with anything unprintable as a dot. */
export function describeBytes(bytes: Buffer): string {
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(" ");
  const text = [...bytes].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("");
  return `${hex} (${JSON.stringify(text)})`;
}
