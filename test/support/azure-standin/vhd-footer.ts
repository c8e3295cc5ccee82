import crypto from "node:crypto";

const VHD_EPOCH_MS = Date.UTC(2000, 0, 1);

/**
 * A fixed VHD's footer as Azure writes it after a managed disk's data ("Virtual Hard Disk Image Format
 * Specification", Microsoft, the hard disk footer): written here independently of src/package/vhd-footer.ts, so
 * that the parser is checked against a second reading of the spec rather than against itself.
 */
export function fixedVhdFooter(sizeBytes: number): Buffer {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % 512 !== 0) {
    throw new Error(`a fixed VHD's size must be a positive multiple of 512, not ${sizeBytes}`);
  }
  const footer = Buffer.alloc(512);
  footer.write("conectix", 0, "latin1");
  footer.writeUInt32BE(0x0000_0002, 8); // features: the reserved bit, always set
  footer.writeUInt32BE(0x0001_0000, 12); // file format version 1.0
  footer.writeBigUInt64BE(0xffff_ffff_ffff_ffffn, 16); // data offset: none for a fixed disk
  footer.writeUInt32BE(Math.floor((Date.now() - VHD_EPOCH_MS) / 1000) >>> 0, 24);
  footer.write("wa\0\0", 28, "latin1"); // creator application: Windows Azure
  footer.writeUInt32BE(0x0007_0000, 32); // creator version
  footer.write("Wi2k", 36, "latin1"); // creator host OS: Windows
  footer.writeBigUInt64BE(BigInt(sizeBytes), 40); // original size
  footer.writeBigUInt64BE(BigInt(sizeBytes), 48); // current size
  const { cylinders, heads, sectorsPerTrack } = chsGeometry(sizeBytes);
  footer.writeUInt16BE(cylinders, 56);
  footer.writeUInt8(heads, 58);
  footer.writeUInt8(sectorsPerTrack, 59);
  footer.writeUInt32BE(2, 60); // disk type: fixed
  crypto.randomFillSync(footer, 68, 16); // unique id
  footer.writeUInt8(0, 84); // saved state
  let sum = 0;
  for (let i = 0; i < 512; i++) if (i < 64 || i > 67) sum += footer[i]!;
  footer.writeUInt32BE(~sum >>> 0, 64);
  return footer;
}

/** The spec's CHS algorithm (appendix "CHS Calculation"), integer arithmetic as written there. */
export function chsGeometry(sizeBytes: number): { cylinders: number; heads: number; sectorsPerTrack: number } {
  let totalSectors = Math.floor(sizeBytes / 512);
  if (totalSectors > 65535 * 16 * 255) totalSectors = 65535 * 16 * 255;
  let sectorsPerTrack: number;
  let heads: number;
  let cylinderTimesHeads: number;
  if (totalSectors >= 65535 * 16 * 63) {
    sectorsPerTrack = 255;
    heads = 16;
    cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
  } else {
    sectorsPerTrack = 17;
    cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    heads = Math.floor((cylinderTimesHeads + 1023) / 1024);
    if (heads < 4) heads = 4;
    if (cylinderTimesHeads >= heads * 1024 || heads > 16) {
      sectorsPerTrack = 31;
      heads = 16;
      cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    }
    if (cylinderTimesHeads >= heads * 1024) {
      sectorsPerTrack = 63;
      heads = 16;
      cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    }
  }
  return { cylinders: Math.floor(cylinderTimesHeads / heads), heads, sectorsPerTrack };
}
