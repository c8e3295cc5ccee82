import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { before, describe, test } from "node:test";
import { promisify } from "node:util";
import { pino } from "pino";
import type { ConvertFormat, JobDefinition } from "../src/domain/job.ts";
import { HypervisordError } from "../src/errors.ts";
import { UNRECORDED } from "../src/files/written-files.ts";
import { VHD_FOOTER_SIZE, vhdChecksum } from "../src/package/vhd-footer.ts";
import type { Converter } from "../src/stages/converter.ts";
import { createConverter } from "../src/stages/disk-conversion.ts";
import type { ExportContext, ExportResult } from "../src/stages/export-context.ts";
import { checkConvertible, finishExport, type PackageArtifacts } from "../src/stages/finish-export.ts";
import { detectQemuImg } from "../src/stages/qemu-img.ts";
import { tempDir } from "./support/temp-dir.ts";

const MiB = 1024 * 1024;
/**
 * 33 MiB: a whole number of MiB (as Azure requires) whose CHS geometry (the VHD specification's algorithm:
 * 993 cylinders, 4 heads, 17 sectors) covers only 67,524 of its 67,584 sectors. qemu sizes a VHD by its
 * geometry unless told otherwise, which would drop the last 30 KiB.
 */
const DISK_SIZE = 33 * MiB;
const CHS_SIZE = 993 * 4 * 17 * 512;
const qemu = await detectQemuImg();
const skip = qemu ? false : "qemu-img not found on PATH (install qemu-utils)";
const run = promisify(execFile);
const tmp = tempDir("vhd-conversion");
const signal = new AbortController().signal; // never aborted
const file = (name: string) => path.join(tmp, name);
const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

/** The VHD specification's CHS geometry for a disk of `size` bytes ("CHS calculation" in its appendix). */
function geometry(size: number): { cylinders: number; heads: number; sectors: number } {
  const total = Math.min(size / 512, 65535 * 16 * 255);
  let sectors: number;
  let heads: number;
  let cylinderTimesHeads: number;
  if (total >= 65535 * 16 * 63) {
    sectors = 255;
    heads = 16;
    cylinderTimesHeads = Math.floor(total / sectors);
  } else {
    sectors = 17;
    cylinderTimesHeads = Math.floor(total / sectors);
    heads = Math.max(4, Math.floor((cylinderTimesHeads + 1023) / 1024));
    if (cylinderTimesHeads >= heads * 1024 || heads > 16) {
      sectors = 31;
      heads = 16;
      cylinderTimesHeads = Math.floor(total / sectors);
    }
    if (cylinderTimesHeads >= heads * 1024) {
      sectors = 63;
      heads = 16;
      cylinderTimesHeads = Math.floor(total / sectors);
    }
  }
  return { cylinders: Math.floor(cylinderTimesHeads / heads), heads, sectors };
}

/** A footer as Azure writes one: creator "wa", fixed (type 2) unless told, sizes and geometry of `size`. */
function footer(size: number, diskType = 2): Buffer {
  const f = Buffer.alloc(VHD_FOOTER_SIZE);
  f.write("conectix", 0, "latin1");
  f.writeUInt32BE(2, 8); // features: reserved bit
  f.writeUInt32BE(0x0001_0000, 12); // format version 1.0
  f.writeBigUInt64BE(diskType === 2 ? 0xffff_ffff_ffff_ffffn : 512n, 16); // data offset: none for a fixed disk
  f.write("wa\0\0", 28, "latin1");
  f.writeUInt32BE(0x0007_0000, 32);
  f.write("Wi2k", 36, "latin1");
  f.writeBigUInt64BE(BigInt(size), 40);
  f.writeBigUInt64BE(BigInt(size), 48);
  const chs = geometry(size);
  f.writeUInt16BE(chs.cylinders, 56);
  f[58] = chs.heads;
  f[59] = chs.sectors;
  f.writeUInt32BE(diskType, 60);
  randomBytes(16).copy(f, 68);
  f.writeUInt32BE(vhdChecksum(f), 64);
  return f;
}

/** Random data in a few places (the first and last sectors included), zeros elsewhere: `size` bytes of disk. */
function diskData(size: number): Buffer {
  const data = Buffer.alloc(size);
  randomBytes(MiB).copy(data, 0);
  randomBytes(3 * MiB + 4096).copy(data, 10 * MiB);
  randomBytes(64 * 1024).copy(data, size - 64 * 1024); // in the part CHS sizing would drop
  return data;
}

/** A fixed VHD (data + footer) at `name`; returns its data. */
function writeFixedVhd(name: string, size = DISK_SIZE): Buffer {
  const data = diskData(size);
  fs.writeFileSync(name, Buffer.concat([data, footer(size)]));
  return data;
}

function failedPrecondition(pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof HypervisordError, `expected a HypervisordError, got ${String(err)}`);
    assert.equal(err.code, "FAILED_PRECONDITION", err.message);
    assert.match(err.message, pattern);
    return true;
  };
}

async function virtualSize(target: string, format: string): Promise<number> {
  const { stdout } = await run(qemu!.path, ["info", "--output=json", "-f", format, target]);
  return (JSON.parse(stdout) as { "virtual-size": number })["virtual-size"];
}

describe("VHD (qemu's vpc) as a conversion source", { skip }, () => {
  let converter: Converter;
  // A comma in the name: --image-opts needs it written ",,".
  const vhd = file("web-01,disk-1.vhd");
  let data: Buffer;

  before(() => {
    converter = createConverter({ qemuImg: qemu!.path, maxConcurrent: 2 });
    data = writeFixedVhd(vhd);
  });

  test("the test disk is one qemu's default sizing gets wrong (so the checks below mean something)", async () => {
    assert.equal(geometry(DISK_SIZE).cylinders * geometry(DISK_SIZE).heads * geometry(DISK_SIZE).sectors * 512, CHS_SIZE);
    assert.notEqual(CHS_SIZE, DISK_SIZE);
    assert.equal(await virtualSize(vhd, "vpc"), CHS_SIZE);
  });

  test("info: the virtual size is the footer's current size", async () => {
    assert.deepEqual(await converter.info(vhd, { signal, format: "vpc" }).then((i) => [i.format, i.virtualSize]), ["vpc", DISK_SIZE]);
  });

  test("a 3 TiB fixed VHD (sparse) reads with its whole size, where qemu's vpc driver refuses anything over 2040 GiB", async (t) => {
    const size = 3 * 1024 ** 4;
    const big = file("big.vhd");
    const fd = fs.openSync(big, "w");
    try {
      fs.writeSync(fd, footer(size), 0, VHD_FOOTER_SIZE, size);
    } catch (err) {
      return t.skip(`this file system cannot hold a 3 TiB sparse file: ${(err as Error).message}`);
    } finally {
      fs.closeSync(fd);
    }
    try {
      await assert.rejects(run(qemu!.path, ["info", "-f", "vpc", big]), /File too large/);
      assert.equal((await converter.info(big, { signal, format: "vpc" })).virtualSize, size);
    } finally {
      fs.rmSync(big);
    }
  });

  for (const format of ["qcow2", "raw", "vdi"] as const satisfies readonly ConvertFormat[]) {
    test(`to ${format}: the format from the name, the size exact, qemu-img compare identical`, async () => {
      const target = file(`web-01,disk-1.${format}`);
      const percents: number[] = [];
      const result = await converter.convert({ source: vhd, target, format, signal, onProgress: (p) => percents.push(p) });
      assert.equal(result.format, format);
      assert.equal(percents.at(-1), 100);
      assert.equal(result.sha256, sha256(fs.readFileSync(target)));
      assert.equal(await virtualSize(target, format), DISK_SIZE);
      assert.deepEqual(await converter.compare(vhd, target, { signal }), { identical: true });
      assert.deepEqual(await converter.compare(target, vhd, { signal }), { identical: true });
      if (format === "raw") {
        // The VHD less its footer, byte for byte.
        const raw = fs.readFileSync(target);
        assert.equal(raw.length, DISK_SIZE);
        assert.equal(sha256(raw), sha256(data));
      }
    });
  }

  test("compare sees a difference in the last 30 KiB (the part geometry sizing would drop)", async () => {
    const changed = Buffer.from(data);
    changed[DISK_SIZE - 100] = changed[DISK_SIZE - 100]! ^ 0xff;
    const raw = file("changed.raw");
    fs.writeFileSync(raw, changed);
    const result = await converter.compare(vhd, raw, { signal });
    assert.equal(result.identical, false);
    assert.match(!result.identical ? result.detail : "", new RegExp(`Content mismatch at offset ${DISK_SIZE - 512}`));
  });

  test("a dynamic VHD (made by qemu-img) is refused with FAILED_PRECONDITION before qemu-img reads it", async () => {
    const dynamic = file("dynamic.vhd");
    await run(qemu!.path, ["create", "-q", "-f", "vpc", dynamic, "33M"]);
    await assert.rejects(converter.convert({ source: dynamic, target: file("dynamic.qcow2"), format: "qcow2", signal }), failedPrecondition(/dynamic\.vhd: a dynamic VHD; a fixed VHD was expected/));
    assert.equal(fs.existsSync(file("dynamic.qcow2")), false);
    await assert.rejects(converter.compare(dynamic, file("web-01,disk-1.qcow2"), { signal }), failedPrecondition(/a dynamic VHD/));
    await assert.rejects(checkConvertible([vhd, dynamic]), failedPrecondition(/dynamic\.vhd: a dynamic VHD/));
  });

  test("a differencing footer, a footer whose size is not the file's, a size of part sectors and no footer are refused", async () => {
    const differencing = file("differencing.vhd");
    fs.writeFileSync(differencing, Buffer.concat([Buffer.alloc(MiB), footer(MiB, 4)]));
    await assert.rejects(converter.convert({ source: differencing, target: file("differencing.raw"), format: "raw", signal }), failedPrecondition(/a differencing VHD/));
    const short = file("short.vhd");
    fs.writeFileSync(short, Buffer.concat([Buffer.alloc(MiB), footer(2 * MiB)]));
    await assert.rejects(converter.convert({ source: short, target: file("short.raw"), format: "raw", signal }), failedPrecondition(/says 2097152 bytes of disk, the file holds 1048576/));
    const odd = file("odd.vhd");
    fs.writeFileSync(odd, Buffer.concat([Buffer.alloc(1000), footer(1000)]));
    await assert.rejects(converter.convert({ source: odd, target: file("odd.raw"), format: "raw", signal }), failedPrecondition(/odd\.vhd: a VHD of 1000 bytes, not a whole number of 512-byte sectors/));
    const bare = file("bare.vhd");
    fs.writeFileSync(bare, Buffer.alloc(MiB));
    await assert.rejects(checkConvertible([bare]), failedPrecondition(/no VHD footer/));
  });

  test("checkConvertible accepts fixed VHDs", async () => {
    await checkConvertible([vhd]);
  });

  test("finishExport with convert_to and verify: VHD disks converted and compared identical", async () => {
    const dir = file("package");
    fs.mkdirSync(dir);
    const disks = [writeFixedVhd(path.join(dir, "web-01-disk-1.vhd")), writeFixedVhd(path.join(dir, "web-01-disk-2.vhd"), 2 * MiB)].map((d, i) => {
      const name = `web-01-disk-${i + 1}.vhd`;
      const p = path.join(dir, name);
      return { name, path: p, size: fs.statSync(p).size, sha256: sha256(fs.readFileSync(p)), data: d };
    });
    const context: ExportContext = {
      jobId: "job-vhd",
      attempt: 1,
      signal,
      logger: pino({ level: "silent" }),
      progress: () => {},
      loadCheckpoint: () => undefined,
      saveCheckpoint: () => {},
      files: UNRECORDED,
    };
    const definition = { format: "ovf", convertTo: "raw", verify: true, generateManifest: false } as JobDefinition;
    const artifacts = { disks: disks.map(({ data: _d, ...disk }) => disk), dir, intermediate: [] } as unknown as PackageArtifacts;
    const result: ExportResult = { outputDir: dir, files: [], warnings: [] } as unknown as ExportResult;
    const finished = await finishExport(result, artifacts, definition, context, { converter });
    assert.deepEqual(finished.warnings, []);
    assert.deepEqual(finished.convertedDisks!.map((c) => [c.source, c.path, c.verification]), [
      ["web-01-disk-1.vhd", "web-01-disk-1.raw", "identical"],
      ["web-01-disk-2.vhd", "web-01-disk-2.raw", "identical"],
    ]);
    disks.forEach((disk, i) => assert.equal(sha256(fs.readFileSync(path.join(dir, `web-01-disk-${i + 1}.raw`))), sha256(disk.data)));
  });
});
