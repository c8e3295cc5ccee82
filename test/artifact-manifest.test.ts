import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { HypervisordError, InvalidArgumentError } from "../src/errors.ts";
import { buildArtifactManifest, osHintFromGuestId, writeArtifactManifest, type ArtifactManifestInput } from "../src/stages/artifact-manifest/build.ts";
import { ARTIFACT_MANIFEST_FILE, type ArtifactManifest } from "../src/stages/artifact-manifest/schema.ts";
import { parseArtifactManifest, validateArtifactManifest } from "../src/stages/artifact-manifest/validate.ts";
import { verifyArtifactManifest } from "../src/stages/artifact-manifest/verify.ts";
import { VERSION } from "../src/version.ts";
import { tempDir } from "./support/temp-dir.ts";

const tmp = tempDir("artifact-manifest");

let dirCount = 0;
function newDir(): string {
  const dir = path.join(tmp, `export-${++dirCount}`);
  fs.mkdirSync(dir);
  return dir;
}

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Writes real disk files into `dir` and returns the builder input describing them. */
function exportInto(dir: string, sizes: number[] = [1024 * 1024 + 17, 4096]): ArtifactManifestInput {
  const disks = sizes.map((size, index) => {
    const name = `web-01-disk-${index + 1}.vmdk`;
    const data = randomBytes(size);
    fs.writeFileSync(path.join(dir, name), data);
    return { name, path: name, size, sha256: sha256(data) };
  });
  return {
    source: { vmId: "vm-42", vmName: "web-01", datacenter: "DC0", exportedAt: new Date("2026-02-03T04:05:06.789Z") },
    vm: { cpu: 4, memoryMiB: 6144, firmware: "efi", secureBoot: true, guestId: "rhel8_64Guest", guestFullName: "Red Hat Enterprise Linux 8 (64-bit)" },
    disks,
    directory: dir,
    exportFormat: "ovf",
    notes: ["exported while powered off"],
    jobId: "job-7",
    labels: { team: "ops" },
    metadata: { conversions: [{ disk: "disk-0", format: "qcow2" }] },
    createdAt: new Date("2026-02-03T04:06:00.000Z"),
  };
}

function goodManifest(): ArtifactManifest {
  const dir = path.join(tmp, "not-written");
  return buildArtifactManifest({ ...exportInto(newDir()), directory: dir });
}

describe("buildArtifactManifest", () => {
  test("writes every key of the shape hyper2kvm reads", () => {
    const dir = newDir();
    const input = exportInto(dir);
    const manifest = buildArtifactManifest(input);
    assert.deepEqual(manifest, {
      manifest_version: "1.0",
      source: {
        provider: "vsphere",
        vm_id: "vm-42",
        vm_name: "web-01",
        datacenter: "DC0",
        export_timestamp: "2026-02-03T04:05:06.789Z",
        export_method: "ovf-export",
      },
      vm: { cpu: 4, mem_mib: 6144, mem_gb: 6, firmware: "uefi", os_hint: "linux", os_version: "Red Hat Enterprise Linux 8 (64-bit)", secureboot: true },
      disks: [
        {
          id: "disk-0",
          source_format: "vmdk",
          bytes: 1024 * 1024 + 17,
          local_path: path.join(dir, "web-01-disk-1.vmdk"),
          checksum: `sha256:${input.disks[0]!.sha256}`,
          boot_order_hint: 0,
          disk_type: "boot",
          label: "web-01-disk-1.vmdk",
        },
        {
          id: "disk-1",
          source_format: "vmdk",
          bytes: 4096,
          local_path: path.join(dir, "web-01-disk-2.vmdk"),
          checksum: `sha256:${input.disks[1]!.sha256}`,
          boot_order_hint: 1,
          disk_type: "data",
          label: "web-01-disk-2.vmdk",
        },
      ],
      output: { directory: dir, format: "vmdk" },
      notes: ["exported while powered off"],
      metadata: {
        conversions: [{ disk: "disk-0", format: "qcow2" }],
        hypervisord_version: VERSION,
        created_at: "2026-02-03T04:06:00.000Z",
        export_format: "ovf",
        memory_mib: 6144,
        job_id: "job-7",
        tags: { team: "ops" },
      },
    });
    assert.deepEqual(validateArtifactManifest(manifest), []);
  });

  test("bios, memory that is no whole GiB, upper-case hex, other formats and defaults", () => {
    const dir = newDir();
    const base = exportInto(dir, [512]);
    const manifest = buildArtifactManifest({
      ...base,
      source: { ...base.source, provider: "vsphere", exportMethod: "ova-export" },
      vm: { cpu: 1, memoryMiB: 512, firmware: "bios", secureBoot: false, guestId: "otherGuest" },
      disks: [{ ...base.disks[0]!, name: "a.IMG", sha256: base.disks[0]!.sha256.toUpperCase() }],
      exportFormat: "ova",
      notes: undefined,
      jobId: undefined,
      labels: undefined,
      metadata: undefined,
    });
    assert.equal(manifest.vm.mem_mib, 512);
    assert.equal("mem_gb" in manifest.vm, false, "512 MiB is no whole number of GiB: no rounded mem_gb");
    assert.equal(manifest.vm.firmware, "bios");
    assert.equal(manifest.vm.os_hint, "other");
    assert.equal(manifest.vm.os_version, "otherGuest", "no full name: the guest id");
    assert.equal(manifest.disks[0]!.source_format, "raw");
    assert.equal(manifest.disks[0]!.checksum, `sha256:${base.disks[0]!.sha256}`);
    assert.equal(manifest.source.export_method, "ova-export");
    assert.deepEqual(manifest.output, { directory: dir, format: "raw" });
    assert.deepEqual(manifest.notes, []);
    assert.equal("job_id" in manifest.metadata, false);
    assert.equal("tags" in manifest.metadata, false);
    assert.equal(manifest.metadata.export_format, "ova");
  });

  test("refuses input that would make an invalid manifest, naming the field", () => {
    const base = exportInto(newDir(), [16]);
    assert.throws(
      () => buildArtifactManifest({ ...base, disks: [{ ...base.disks[0]!, sha256: "abc" }] }),
      (err) => err instanceof InvalidArgumentError && err.field === "manifest" && /disks\[0\]\.checksum: expected "sha256:<64 hex>", got "sha256:abc"/.test(err.message),
    );
    assert.throws(
      () => buildArtifactManifest({ ...base, disks: [{ ...base.disks[0]!, name: "cdrom.iso" }] }),
      (err) => err instanceof InvalidArgumentError && err.field === "disks[0].format" && err.message.includes('"cdrom.iso"'),
    );
    assert.throws(
      () => buildArtifactManifest({ ...base, vm: { ...base.vm, cpu: 0 } }),
      (err) => err instanceof InvalidArgumentError && err.message.includes("vm.cpu: expected an integer >= 1, got 0"),
    );
  });
});

test("os_hint from the vSphere guest id", () => {
  const cases: [string, string][] = [
    ["windows9_64Guest", "windows"],
    ["windows2019srv_64Guest", "windows"],
    ["winNetStandardGuest", "windows"],
    ["ubuntu64Guest", "linux"],
    ["rhel8_64Guest", "linux"],
    ["debian11_64Guest", "linux"],
    ["centos7_64Guest", "linux"],
    ["sles15_64Guest", "linux"],
    ["other4xLinux64Guest", "linux"],
    ["oracleLinux8_64Guest", "linux"],
    ["vmwarePhoton64Guest", "linux"],
    ["amazonlinux2_64Guest", "linux"],
    ["freebsd13_64Guest", "freebsd"],
    ["darwin19_64Guest", "other"],
    ["solaris11_64Guest", "other"],
    ["otherGuest64", "other"],
    ["", "other"],
  ];
  for (const [guestId, hint] of cases) assert.equal(osHintFromGuestId(guestId), hint, guestId);
});

describe("validateArtifactManifest", () => {
  /** Applies `mutate` to a valid manifest and returns the problems. */
  function problemsAfter(mutate: (m: Record<string, any>) => void): string[] {
    const manifest = structuredClone(goodManifest()) as Record<string, any>;
    mutate(manifest);
    return validateArtifactManifest(manifest);
  }

  function assertProblem(mutate: (m: Record<string, any>) => void, expected: string | RegExp): void {
    const problems = problemsAfter(mutate);
    const found = problems.some((p) => (typeof expected === "string" ? p === expected : expected.test(p)));
    assert.ok(found, `expected ${expected} among ${JSON.stringify(problems)}`);
  }

  test("a built manifest is valid; non-objects are not", () => {
    assert.deepEqual(validateArtifactManifest(goodManifest()), []);
    assert.deepEqual(validateArtifactManifest(null), ["manifest: expected an object, got null"]);
    assert.deepEqual(validateArtifactManifest([]), ["manifest: expected an object, got an array"]);
  });

  test("manifest_version", () => {
    assertProblem((m) => delete m.manifest_version, 'manifest_version: missing, expected "1.0"');
    assertProblem((m) => (m.manifest_version = "2.0"), 'manifest_version: expected "1.0", got "2.0"');
    assertProblem((m) => (m.manifest_version = 1), 'manifest_version: expected "1.0", got 1');
  });

  test("output", () => {
    assertProblem((m) => (m.output.format = "ovf"), 'output.format: expected one of "vmdk", "qcow2", "raw", "vdi", "vhd", got "ovf"');
    assertProblem((m) => (m.output.format = "vhdx"), /^output\.format: expected one of .* got "vhdx"$/);
    // Written before output.format named the disks' own format: a conversion target for vmdk disks.
    assert.deepEqual(problemsAfter((m) => (m.output.format = "qcow2")), []);
    assertProblem((m) => (m.output.directory = "relative/dir"), 'output.directory: expected an absolute directory path, got "relative/dir"');
    assertProblem((m) => delete m.output, "output: missing, expected an object");
  });

  test("disks", () => {
    assertProblem((m) => (m.disks[1].source_format = "iso"), /^disks\[1\]\.source_format: expected one of "vmdk", "qcow2", "raw", "vdi", "vhd", "vhdx", got "iso"$/);
    const md5 = `md5:${"a".repeat(32)}`;
    assertProblem((m) => (m.disks[1].checksum = md5), `disks[1].checksum: expected "sha256:<64 hex>", got "${md5}"`);
    assertProblem((m) => (m.disks[0].checksum = m.disks[0].checksum.toUpperCase()), /^disks\[0\]\.checksum: expected "sha256:<64 hex>", got "SHA256:/);
    assertProblem((m) => (m.disks[0].checksum = `sha256:${"a".repeat(63)}`), /^disks\[0\]\.checksum: expected/);
    assertProblem((m) => (m.disks[1].id = "disk-0"), 'disks[1].id: duplicate "disk-0", already used by disks[0]');
    assertProblem((m) => (m.disks[0].id = "disk 0"), /^disks\[0\]\.id: expected letters, digits, - or _ .*got "disk 0"$/);
    assertProblem((m) => (m.disks[0].bytes = -1), "disks[0].bytes: expected an integer >= 0, got -1");
    assertProblem((m) => (m.disks[0].bytes = 1.5), "disks[0].bytes: expected an integer >= 0, got 1.5");
    assertProblem((m) => (m.disks[0].bytes = "10"), 'disks[0].bytes: expected an integer >= 0, got "10"');
    assertProblem((m) => delete m.disks[1].local_path, "disks[1].local_path: missing, expected a non-empty string");
    assertProblem((m) => (m.disks[1].disk_type = "swap"), 'disks[1].disk_type: expected one of "boot", "data", got "swap"');
    assertProblem((m) => (m.disks[1].boot_order_hint = -2), "disks[1].boot_order_hint: expected an integer >= 0, got -2");
    assertProblem((m) => (m.disks[0] = "disk"), 'disks[0]: expected an object, got "disk"');
    assertProblem((m) => (m.disks = []), "disks: expected a non-empty array, got an array");
    assertProblem((m) => delete m.disks, "disks: missing, expected a non-empty array");
  });

  test("an input disk where hyper2kvm would write its converted image", () => {
    assertProblem((m) => (m.disks[0].local_path = path.join(m.output.directory, "disk-0.vmdk")), /^disks\[0\]\.id: hyper2kvm would write its converted .*disk-0\.vmdk over an input disk/);
    assertProblem((m) => (m.disks[0].local_path = "disk-0.vmdk"), /^disks\[0\]\.id: hyper2kvm would write/);
  });

  test("source, vm, notes, metadata: required fields and types", () => {
    assertProblem((m) => delete m.source.vm_name, "source.vm_name: missing, expected a non-empty string");
    assertProblem((m) => (m.source.vm_id = 42), "source.vm_id: expected a non-empty string, got 42");
    assertProblem((m) => (m.source.export_timestamp = "yesterday"), /^source\.export_timestamp: expected an ISO 8601 UTC time .*got "yesterday"$/);
    assertProblem((m) => (m.source.export_timestamp = "2026-02-03T04:05:06+02:00"), /^source\.export_timestamp: expected/);
    assertProblem((m) => (m.vm.cpu = "4"), 'vm.cpu: expected an integer >= 1, got "4"');
    assertProblem((m) => (m.vm.mem_gb = 0.5), "vm.mem_gb: expected an integer >= 1, got 0.5");
    assertProblem((m) => (m.vm.mem_mib = 32.5), "vm.mem_mib: expected an integer >= 1, got 32.5");
    assertProblem((m) => (m.vm.mem_gb = 1), "vm.mem_gb: 1 GiB does not agree with vm.mem_mib 6144");
    assertProblem((m) => (delete m.vm.mem_gb, delete m.vm.mem_mib), /^vm\.mem_mib: missing/);
    assert.deepEqual(problemsAfter((m) => delete m.vm.mem_mib), [], "mem_gb alone (as written before mem_mib) is valid");
    assert.deepEqual(problemsAfter((m) => delete m.vm.mem_gb), [], "mem_mib alone is valid");
    assertProblem((m) => (m.vm.firmware = "efi"), 'vm.firmware: expected one of "bios", "uefi", got "efi"');
    assertProblem((m) => (m.vm.secureboot = "yes"), 'vm.secureboot: expected a boolean, got "yes"');
    assertProblem((m) => (m.vm.firmware = "bios"), 'vm.secureboot: true needs firmware "uefi", got firmware "bios"');
    assertProblem((m) => (m.vm.os_hint = "beos"), /^vm\.os_hint: expected one of "linux", "windows", "freebsd", "other", got "beos"$/);
    assertProblem((m) => (m.notes = "none"), 'notes: expected an array of strings, got "none"');
    assertProblem((m) => (m.notes = ["ok", 3]), "notes[1]: expected a string, got 3");
    assertProblem((m) => (m.metadata.tags = { team: 1 }), "metadata.tags.team: expected a string, got 1");
    assertProblem((m) => delete m.metadata, "metadata: missing, expected an object");
  });

  test("reports every problem at once", () => {
    const problems = problemsAfter((m) => {
      m.manifest_version = "0.9";
      m.disks[0].bytes = -1;
      m.disks[1].checksum = "x";
    });
    assert.equal(problems.length, 3, JSON.stringify(problems));
  });
});

describe("write and parse", () => {
  test("round trip through artifact-manifest.json", async () => {
    const dir = newDir();
    const manifest = buildArtifactManifest(exportInto(dir));
    const file = await writeArtifactManifest(dir, manifest);
    assert.equal(file, path.join(dir, ARTIFACT_MANIFEST_FILE));
    const text = fs.readFileSync(file, "utf8");
    assert.ok(text.startsWith('{\n  "manifest_version": "1.0",\n'), "pretty, manifest_version first");
    assert.ok(text.endsWith("}\n"), "trailing newline");
    assert.deepEqual(parseArtifactManifest(text), manifest);
    assert.deepEqual(fs.readdirSync(dir).filter((name) => name.includes("partial")), [], "no temp file left");
  });

  test("write refuses an invalid manifest and leaves no file", async () => {
    const dir = newDir();
    const manifest = buildArtifactManifest(exportInto(dir));
    const bad = { ...manifest, output: { ...manifest.output, format: "ova" } } as unknown as ArtifactManifest;
    await assert.rejects(writeArtifactManifest(dir, bad), (err) => err instanceof InvalidArgumentError && err.message.includes('output.format: expected one of "vmdk", "qcow2", "raw", "vdi", "vhd", got "ova"'));
    assert.equal(fs.existsSync(path.join(dir, ARTIFACT_MANIFEST_FILE)), false);
  });

  test("parse refuses bad JSON and invalid manifests", () => {
    assert.throws(() => parseArtifactManifest("{ not json"), (err) => err instanceof InvalidArgumentError && err.field === "manifest" && /^manifest: not valid JSON: /.test(err.message));
    assert.throws(() => parseArtifactManifest('{"manifest_version":"1.0"}'), (err) => err instanceof InvalidArgumentError && err.message.includes("disks: missing, expected a non-empty array"));
  });

  test("the checksums agree with the real sha256sum", async () => {
    const dir = newDir();
    const file = await writeArtifactManifest(dir, buildArtifactManifest(exportInto(dir, [3 * 1024 * 1024 + 5, 1, 0])));
    const manifest = parseArtifactManifest(fs.readFileSync(file, "utf8"));
    const lines = manifest.disks.map((d) => `${d.checksum.slice("sha256:".length)}  ${d.local_path}\n`).join("");
    const check = spawnSync("sha256sum", ["--check", "--strict", "-"], { input: lines, encoding: "utf8" });
    assert.equal(check.status, 0, `sha256sum --check: ${check.stdout}${check.stderr}`);
    assert.equal(check.stdout.trim().split("\n").filter((line) => line.endsWith(": OK")).length, 3);
  });
});

describe("verifyArtifactManifest", () => {
  async function written(sizes?: number[]): Promise<{ dir: string; file: string; manifest: ArtifactManifest }> {
    const dir = newDir();
    const manifest = buildArtifactManifest(exportInto(dir, sizes));
    return { dir, file: await writeArtifactManifest(dir, manifest), manifest };
  }

  test("every disk matches", async () => {
    const { dir, file, manifest } = await written();
    const result = await verifyArtifactManifest(file);
    assert.deepEqual(result, {
      valid: true,
      problems: [],
      disks: manifest.disks.map((d) => ({ id: d.id, path: path.join(dir, d.label!), expected: d.checksum, actual: d.checksum, bytes: d.bytes, ok: true })),
    });
  });

  test("a flipped byte is a checksum mismatch", async () => {
    const { file, manifest } = await written();
    const disk = manifest.disks[0]!;
    const handle = fs.openSync(disk.local_path, "r+");
    const byte = Buffer.alloc(1);
    fs.readSync(handle, byte, 0, 1, 700_000);
    byte[0] = byte[0]! ^ 0xff;
    fs.writeSync(handle, byte, 0, 1, 700_000);
    fs.closeSync(handle);
    const actual = `sha256:${sha256(fs.readFileSync(disk.local_path))}`;

    const result = await verifyArtifactManifest(file);
    assert.equal(result.valid, false);
    assert.deepEqual(result.disks[0], { id: "disk-0", path: disk.local_path, expected: disk.checksum, actual, bytes: disk.bytes, ok: false, problem: `checksum mismatch: manifest says ${disk.checksum}, ${disk.local_path} has ${actual}` });
    assert.equal(result.disks[1]!.ok, true, "the other disk is still fine");
    assert.deepEqual(result.problems, [`disks[0] (disk-0): checksum mismatch: manifest says ${disk.checksum}, ${disk.local_path} has ${actual}`]);
  });

  test("a missing file and a size mismatch are reported, not thrown", async () => {
    const { file, manifest } = await written();
    const [first, second] = manifest.disks as [typeof manifest.disks[0], typeof manifest.disks[0]];
    fs.rmSync(first.local_path);
    fs.appendFileSync(second.local_path, "x");

    const result = await verifyArtifactManifest(file);
    assert.equal(result.valid, false);
    assert.deepEqual(result.disks[0], { id: "disk-0", path: first.local_path, expected: first.checksum, ok: false, problem: `file not found: ${first.local_path}` });
    assert.deepEqual(result.disks[1], { id: "disk-1", path: second.local_path, expected: second.checksum, bytes: second.bytes + 1, ok: false, problem: `size mismatch: manifest says ${second.bytes} bytes, ${second.local_path} has ${second.bytes + 1}` });
    assert.deepEqual(result.problems, [`disks[0] (disk-0): file not found: ${first.local_path}`, `disks[1] (disk-1): size mismatch: manifest says ${second.bytes} bytes, ${second.local_path} has ${second.bytes + 1}`]);
  });

  test("relative paths use output.directory; a moved package uses the manifest's directory", async () => {
    const { dir, file, manifest } = await written([100, 200]);
    // A hand-written manifest elsewhere with a relative path: resolved against output.directory.
    const elsewhere = newDir();
    const relative = { ...manifest, disks: manifest.disks.map((d) => ({ ...d, local_path: d.label! })) };
    const relativeFile = await writeArtifactManifest(elsewhere, relative);
    const fromOutputDir = await verifyArtifactManifest(relativeFile);
    assert.equal(fromOutputDir.valid, true, fromOutputDir.problems.join("; "));
    assert.equal(fromOutputDir.disks[0]!.path, path.join(dir, manifest.disks[0]!.label!));

    // Move the whole package: output.directory is gone, the absolute paths under it follow the manifest.
    const moved = path.join(tmp, `moved-${dirCount}`);
    fs.renameSync(dir, moved);
    const result = await verifyArtifactManifest(path.join(moved, path.basename(file)));
    assert.equal(result.valid, true, result.problems.join("; "));
    assert.deepEqual(result.disks.map((d) => d.path), manifest.disks.map((d) => path.join(moved, d.label!)));
  });

  test("a missing or broken manifest throws with its path; an abort cancels", async () => {
    const missing = path.join(tmp, "nowhere", ARTIFACT_MANIFEST_FILE);
    await assert.rejects(verifyArtifactManifest(missing), (err) => err instanceof HypervisordError && err.code === "NOT_FOUND" && err.message.includes(missing));

    const dir = newDir();
    const broken = path.join(dir, ARTIFACT_MANIFEST_FILE);
    fs.writeFileSync(broken, '{"manifest_version": "1.0", "disks": [');
    await assert.rejects(verifyArtifactManifest(broken), (err) => err instanceof HypervisordError && err.code === "INVALID_ARGUMENT" && err.message.includes(broken) && err.message.includes("not valid JSON"));

    fs.writeFileSync(broken, JSON.stringify({ manifest_version: "2.0" }));
    await assert.rejects(verifyArtifactManifest(broken), (err) => err instanceof HypervisordError && err.code === "INVALID_ARGUMENT" && err.message.includes('manifest_version: expected "1.0", got "2.0"'));

    await assert.rejects(verifyArtifactManifest(dir), (err) => err instanceof HypervisordError && err.code === "INVALID_ARGUMENT" && err.message.includes(dir), "a directory is unreadable as a manifest");

    const { file } = await written([64]);
    await assert.rejects(verifyArtifactManifest(file, { signal: AbortSignal.abort() }), (err) => err instanceof HypervisordError && err.code === "CANCELLED");
  });
});
