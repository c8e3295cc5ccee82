// The bench's page blob: a fixed VHD in Azurite with random 4 MiB extents written (random bytes) and holes between,
// its footer last, and the SHA-256 of the whole logical blob computed while it is made (no 1 GiB buffer).
import { createHash, randomBytes } from "node:crypto";
import { BlobSASPermissions, BlobServiceClient, StorageSharedKeyCredential, generateBlobSASQueryParameters } from "@azure/storage-blob";
import type { Azurite } from "../support/azurite.ts";

const MiB = 1024 * 1024;
const EXTENT = 4 * MiB;

export interface BenchBlob {
  /** Read SAS URL (a credential: print only origin + path). */
  url: string;
  /** Logical size: disk bytes + the 512-byte footer. */
  size: number;
  /** Bytes in the page list. */
  dataBytes: number;
  extents: number;
  sha256: string;
}

/** A fixed VHD footer (Microsoft's VHD spec) for `diskBytes` of disk. */
export function vhdFooter(diskBytes: number): Buffer {
  const footer = Buffer.alloc(512);
  footer.write("conectix", 0, "latin1");
  footer.writeUInt32BE(2, 8);
  footer.writeUInt32BE(0x0001_0000, 12);
  footer.writeBigUInt64BE(0xffff_ffff_ffff_ffffn, 16);
  footer.write("wa\0\0", 28, "latin1");
  footer.write("Wi2k", 36, "latin1");
  footer.writeBigUInt64BE(BigInt(diskBytes), 40);
  footer.writeBigUInt64BE(BigInt(diskBytes), 48);
  footer.writeUInt16BE(Math.min(65535, Math.floor(diskBytes / 512 / 16 / 63)), 56);
  footer.writeUInt8(16, 58);
  footer.writeUInt8(63, 59);
  footer.writeUInt32BE(2, 60);
  randomBytes(16).copy(footer, 68);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += footer[i]!;
  footer.writeUInt32BE(~sum >>> 0, 64);
  return footer;
}

/** `diskBytes` of disk (a multiple of 4 MiB) with `fraction` of its 4 MiB extents written, at random places. */
export async function makeBenchBlob(azurite: Azurite, options: { diskBytes: number; fraction: number; name?: string }): Promise<BenchBlob> {
  const { diskBytes, fraction } = options;
  const name = options.name ?? "bench-disk.vhd";
  const container = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient("bench");
  await container.createIfNotExists();
  const blob = container.getPageBlobClient(name);
  await blob.create(diskBytes + 512);
  const slots = diskBytes / EXTENT;
  const chosen = new Set<number>();
  while (chosen.size < Math.round(slots * fraction)) chosen.add(Math.floor(Math.random() * slots));
  const hash = createHash("sha256");
  const zeros = Buffer.alloc(EXTENT);
  for (let slot = 0; slot < slots; slot++) {
    if (!chosen.has(slot)) {
      hash.update(zeros);
      continue;
    }
    const data = randomBytes(EXTENT);
    await blob.uploadPages(data, slot * EXTENT, EXTENT);
    hash.update(data);
  }
  const footer = vhdFooter(diskBytes);
  await blob.uploadPages(footer, diskBytes, 512);
  hash.update(footer);
  const sas = generateBlobSASQueryParameters({
    containerName: "bench", blobName: name, permissions: BlobSASPermissions.parse("r"),
    startsOn: new Date(Date.now() - 3600_000), expiresOn: new Date(Date.now() + 6 * 3600_000),
  }, new StorageSharedKeyCredential(azurite.account, azurite.accountKey));
  return { url: `${blob.url}?${sas.toString()}`, size: diskBytes + 512, dataBytes: chosen.size * EXTENT + 512, extents: chosen.size, sha256: hash.digest("hex") };
}
