import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { before, describe, test } from "node:test";
import { promisify } from "node:util";
import { HypervisordError, InvalidArgumentError } from "../src/errors.ts";
import type { ConvertFormat } from "../src/domain/job.ts";
import { createConverter, parseConvertFormat } from "../src/stages/disk-conversion.ts";
import { createProgressParser, detectQemuImg } from "../src/stages/qemu-img.ts";
import { tempDir } from "./support/temp-dir.ts";
import { waitFor } from "./support/wait-for.ts";

const MiB = 1024 * 1024;
const DISK_SIZE = 16 * MiB;
const qemu = await detectQemuImg();
const skipReason = qemu ? false : "qemu-img not found on PATH (install qemu-utils)";
const run = promisify(execFile);
const tmp = tempDir("convert");
const signal = new AbortController().signal; // never aborted: for the calls a test does not cancel


const file = (name: string) => path.join(tmp, name);
const sha256Of = (name: string) => createHash("sha256").update(fs.readFileSync(name)).digest("hex");

/** Random data with zero regions (whole and partial MiBs), so the sparse paths of each format are used too. */
function writeTestDisk(name: string): void {
  const data = randomBytes(DISK_SIZE);
  data.fill(0, 3 * MiB, 6 * MiB);
  data.fill(0, 9 * MiB + 4096, 10 * MiB + 12345);
  data.fill(0, 14 * MiB, DISK_SIZE);
  fs.writeFileSync(name, data);
}

/** A raw disk of `size` bytes of incompressible data, quick to write (one random MiB repeated). */
function writeBigRaw(name: string, size: number): void {
  const block = randomBytes(MiB);
  const fd = fs.openSync(name, "w");
  try {
    for (let offset = 0; offset < size; offset += MiB) fs.writeSync(fd, block, 0, MiB, offset);
  } finally {
    fs.closeSync(fd);
  }
}

/** An executable shell script standing in for qemu-img. */
function writeScript(name: string, body: string): string {
  fs.writeFileSync(file(name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return file(name);
}

function assertCode(code: string, pattern?: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof HypervisordError, `expected a HypervisordError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    return true;
  };
}

function assertNoOutput(target: string): void {
  assert.equal(fs.existsSync(target), false, `${target} exists`);
  assert.equal(fs.existsSync(`${target}.partial`), false, `${target}.partial exists`);
}

test("parseConvertFormat: empty is none, known formats pass, others are INVALID_ARGUMENT naming the field", () => {
  assert.equal(parseConvertFormat("", "definition.convert_format"), undefined);
  for (const format of ["qcow2", "raw", "vdi"]) assert.equal(parseConvertFormat(format, "f"), format);
  assert.throws(
    () => parseConvertFormat("vmdk", "definition.convert_format"),
    (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError);
      assert.equal(err.code, "INVALID_ARGUMENT");
      assert.equal(err.field, "definition.convert_format");
      assert.equal(err.message, 'definition.convert_format: must be one of qcow2, raw, vdi; got "vmdk"');
      return true;
    },
  );
  assert.equal(parseConvertFormat(" QCOW2 ", "f"), "qcow2");
  assert.throws(() => parseConvertFormat("qcow", "f"), /f: must be one of qcow2, raw, vdi; got "qcow"/);
});

test("progress parser: joins tokens split across chunks, increases by >= 0.5, ends at 100 once", () => {
  const seen: number[] = [];
  const parser = createProgressParser((p) => seen.push(p));
  parser.push("    (0.00/100%)\r    (12.");
  parser.push("34/100%)\r    (12.50/100%)\r");
  parser.push("    (12.90/100%)\r    (11.00/100%)\r    (40.00/100%)");
  assert.deepEqual(seen, [0, 12.34, 12.9]); // 12.50 is < 0.5 above 12.34; 11 goes back; 40 is not ended yet
  parser.push("\r    (100.00/100%)\r");
  parser.finish();
  assert.deepEqual(seen, [0, 12.34, 12.9, 40, 100]);
});

test("createConverter rejects a maxConcurrent below 1", () => {
  assert.throws(() => createConverter({ qemuImg: "/usr/bin/qemu-img", maxConcurrent: 0 }), InvalidArgumentError);
});

describe("qemu-img conversion", { skip: skipReason }, () => {
  const qemuImg = qemu?.path ?? "";
  const raw = file("disk.raw");
  const vmdk = file("disk.vmdk");

  before(async () => {
    writeTestDisk(raw);
    await run(qemuImg, ["convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, vmdk]);
  });

  test("detectQemuImg finds the binary and its version; an impostor is FAILED_PRECONDITION", async () => {
    assert.ok(qemu);
    assert.match(qemu.version, /^\d+\.\d+(\.\d+)?$/);
    assert.equal(await detectQemuImg(""), undefined);
    const dir = file("fake-bin");
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "qemu-img"), "#!/bin/sh\necho 'not qemu'\n", { mode: 0o755 });
    await assert.rejects(detectQemuImg(dir), assertCode("FAILED_PRECONDITION", /not qemu/));
  });

  for (const format of ["qcow2", "raw", "vdi"] as const satisfies readonly ConvertFormat[]) {
    test(`converts a streamOptimized VMDK to ${format}, identical to the original, with progress`, async () => {
      const converter = createConverter({ qemuImg, maxConcurrent: 2 });
      const target = file(`out.${format}`);
      const progress: number[] = [];
      const result = await converter.convert({ source: vmdk, target, format, signal, onProgress: (p) => progress.push(p) });

      assert.equal(result.target, target);
      assert.equal(result.format, format);
      assert.equal(result.bytes, fs.statSync(target).size);
      assert.equal(result.sha256, sha256Of(target));
      assert.ok(result.seconds > 0 && result.seconds < 60, `seconds ${result.seconds}`);
      assert.equal(fs.existsSync(`${target}.partial`), false);
      if (format === "raw") assert.equal(result.sha256, sha256Of(raw), "the raw result is the original, byte for byte");

      const info = await converter.info(target, { signal });
      assert.equal(info.format, format);
      assert.equal(info.virtualSize, DISK_SIZE);
      assert.deepEqual(await converter.compare(raw, target, { signal }), { identical: true });

      assert.ok(progress.length >= 2, `progress ${progress.join(" ")}`);
      assert.equal(progress.at(-1), 100);
      for (let i = 1; i < progress.length; i++) assert.ok(progress[i]! > progress[i - 1]!, `progress not increasing: ${progress.join(" ")}`);
      assert.deepEqual(converter.stats(), { running: 0, waiting: 0 });
    });
  }

  test("compare finds a one-byte difference and names its offset", async () => {
    const converter = createConverter({ qemuImg, maxConcurrent: 1 });
    const changed = file("changed.raw");
    fs.copyFileSync(raw, changed);
    const fd = fs.openSync(changed, "r+");
    const offset = 5 * MiB + 123;
    const byte = Buffer.alloc(1);
    fs.readSync(fd, byte, 0, 1, offset);
    fs.writeSync(fd, Buffer.of(byte[0]! ^ 0xff), 0, 1, offset);
    fs.closeSync(fd);

    assert.deepEqual(await converter.compare(vmdk, changed, { signal }), {
      identical: false,
      detail: `Content mismatch at offset ${5 * MiB}!`, // qemu-img names the 512-byte sector
    });
    assert.deepEqual(await converter.compare(vmdk, raw, { signal }), { identical: true });
  });

  test("at most maxConcurrent qemu-img processes run at once", async () => {
    const log = file("concurrency.log");
    // Each run lasts >= 300 ms, so runs that are allowed to overlap do.
    const wrapper = writeScript("qemu-img-logged", `echo start >> '${log}'\n'${qemuImg}' "$@"\nrc=$?\nsleep 0.3\necho end >> '${log}'\nexit $rc`);
    const peakOf = async (maxConcurrent: number) => {
      fs.writeFileSync(log, "");
      const converter = createConverter({ qemuImg: wrapper, maxConcurrent });
      await Promise.all(
        [1, 2, 3].map((n) => converter.convert({ source: vmdk, target: file(`concurrent-${maxConcurrent}-${n}.qcow2`), format: "qcow2", signal })),
      );
      let running = 0;
      let peak = 0;
      const events = fs.readFileSync(log, "utf8").trim().split("\n");
      for (const event of events) {
        running += event === "start" ? 1 : -1;
        peak = Math.max(peak, running);
      }
      assert.equal(events.length, 6);
      return peak;
    };
    assert.equal(await peakOf(1), 1);
    assert.equal(await peakOf(2), 2); // the log does see overlap when it is allowed
  });

  describe("abort", () => {
    const big = file("big.raw");
    before(() => writeBigRaw(big, 256 * MiB));

    test("mid-conversion: qemu-img is stopped, neither target nor .partial remains, rejects with the reason", async () => {
      const pids = file("pids.log");
      const wrapper = writeScript("qemu-img-pid", `echo $$ >> '${pids}'\nexec '${qemuImg}' "$@"`);
      const converter = createConverter({ qemuImg: wrapper, maxConcurrent: 1 });
      const controller = new AbortController();
      const reason = new Error("cancelled by the test");
      const target = file("aborted.qcow2");
      const seen: number[] = [];
      const conversion = converter.convert({
        source: big, sourceFormat: "raw", target, format: "qcow2", signal: controller.signal,
        onProgress: (p) => {
          seen.push(p);
          if (p > 0) controller.abort(reason);
        },
      });
      await assert.rejects(conversion, (err) => err === reason);
      assert.ok(seen.at(-1)! < 100, `aborted at ${seen.at(-1)}%`);
      assertNoOutput(target);
      const pid = Number(fs.readFileSync(pids, "utf8").trim());
      assert.throws(() => process.kill(pid, 0), { code: "ESRCH" }, "qemu-img still running");
      assert.deepEqual(converter.stats(), { running: 0, waiting: 0 });
    });

    test("while waiting for a slot: rejects with the reason, the running conversion goes on", async () => {
      const converter = createConverter({ qemuImg, maxConcurrent: 1 });
      const first = converter.convert({ source: big, sourceFormat: "raw", target: file("first.vdi"), format: "vdi", signal });
      const controller = new AbortController();
      const reason = new Error("no longer wanted");
      const target = file("queued.vdi");
      const queued = converter.convert({ source: big, sourceFormat: "raw", target, format: "vdi", signal: controller.signal });
      await waitFor("the second conversion to queue", () => converter.stats().waiting === 1);
      controller.abort(reason);
      await assert.rejects(queued, (err) => err === reason);
      assert.deepEqual(converter.stats(), { running: 1, waiting: 0 });
      assertNoOutput(target);
      const result = await first;
      assert.equal(result.bytes, fs.statSync(file("first.vdi")).size);
    });

    test("a qemu-img that ignores SIGTERM is killed after the grace", async () => {
      // Ignored signals stay ignored across exec: `sleep` ignores SIGTERM.
      const stubborn = writeScript("qemu-img-stubborn", "trap '' TERM\nexec sleep 30");
      const converter = createConverter({ qemuImg: stubborn, maxConcurrent: 1, killGraceMs: 200 });
      const reason = new Error("stop");
      const controller = new AbortController();
      setTimeout(() => controller.abort(reason), 100);
      const target = file("stubborn.qcow2");
      const started = performance.now();
      await assert.rejects(converter.convert({ source: raw, target, format: "qcow2", signal: controller.signal }), (err) => err === reason);
      const elapsed = performance.now() - started;
      assert.ok(elapsed >= 250 && elapsed < 5000, `took ${elapsed} ms`);
      assertNoOutput(target);
    });
  });

  test("a corrupt VMDK is INTERNAL with qemu-img's message and the file's name", async () => {
    const converter = createConverter({ qemuImg, maxConcurrent: 1 });
    const badHeader = file("bad-header.vmdk");
    fs.writeFileSync(badHeader, Buffer.concat([Buffer.from("KDMV"), randomBytes(MiB)]));
    await assert.rejects(
      converter.convert({ source: badHeader, target: file("bad-header.qcow2"), format: "qcow2", signal }),
      assertCode("INTERNAL", /^converting bad-header\.vmdk to qcow2: qemu-img exit 1: qemu-img: Could not open '.*bad-header\.vmdk': Unsupported VMDK version/),
    );
    assertNoOutput(file("bad-header.qcow2"));

    const truncated = file("truncated.vmdk");
    fs.writeFileSync(truncated, fs.readFileSync(vmdk).subarray(0, 300_000));
    await assert.rejects(
      converter.convert({ source: truncated, target: file("truncated.raw"), format: "raw", signal }),
      assertCode("INTERNAL", /converting truncated\.vmdk to raw: qemu-img exit 1: .*error while reading/),
    );
    assertNoOutput(file("truncated.raw"));

    await assert.rejects(converter.compare(badHeader, raw, { signal }), assertCode("INTERNAL", /comparing bad-header\.vmdk with disk\.raw: qemu-img exit 2/));
  });

  test("a VMDK that is not a single file (random bytes, a descriptor naming a host file) is refused before qemu-img reads it", async () => {
    const converter = createConverter({ qemuImg, maxConcurrent: 1 });
    const random = file("random.vmdk");
    fs.writeFileSync(random, randomBytes(MiB));
    await assert.rejects(
      converter.convert({ source: random, target: file("random.qcow2"), format: "qcow2", signal }),
      assertCode("FAILED_PRECONDITION", /^random\.vmdk starts with ([0-9a-f]{2} ){3}[0-9a-f]{2} \(".{4,8}"\): not a single-file VMDK/),
    );
    assertNoOutput(file("random.qcow2"));

    const descriptor = file("descriptor.vmdk");
    fs.writeFileSync(descriptor, `# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\nRW 2048 FLAT "${raw}" 0\n`);
    await assert.rejects(
      converter.convert({ source: descriptor, target: file("descriptor.raw"), format: "raw", signal }),
      assertCode("FAILED_PRECONDITION", /^descriptor\.vmdk starts with 23 20 44 69 \("# Di"\): not a single-file VMDK/),
    );
    assertNoOutput(file("descriptor.raw"));
  });

  test("a missing source is NOT_FOUND; a name without a known extension needs sourceFormat", async () => {
    const converter = createConverter({ qemuImg, maxConcurrent: 1 });
    await assert.rejects(
      converter.convert({ source: file("missing.vmdk"), target: file("missing.qcow2"), format: "qcow2", signal }),
      assertCode("NOT_FOUND", /missing\.vmdk/),
    );
    assertNoOutput(file("missing.qcow2"));
    await assert.rejects(
      converter.convert({ source: file("disk.bin"), target: file("bin.qcow2"), format: "qcow2", signal }),
      (err) => err instanceof InvalidArgumentError && err.field === "sourceFormat",
    );
    await assert.rejects(converter.convert({ source: raw, target: raw, format: "raw", signal }), InvalidArgumentError);
  });

  test("a full disk is RESOURCE_EXHAUSTED", async () => {
    // A stand-in: filling a real file system is not something a test may do to a shared machine.
    const full = writeScript("qemu-img-full", "echo 'qemu-img: error while writing at byte 2097152: No space left on device' >&2\nexit 1");
    const converter = createConverter({ qemuImg: full, maxConcurrent: 1 });
    await assert.rejects(
      converter.convert({ source: vmdk, target: file("full.qcow2"), format: "qcow2", signal }),
      assertCode("RESOURCE_EXHAUSTED", /converting disk\.vmdk to qcow2: .*No space left on device/),
    );
    assertNoOutput(file("full.qcow2"));
  });
});
