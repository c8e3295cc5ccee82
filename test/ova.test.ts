import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import { createGzip } from "node:zlib";
import { pack as tarPack, type Header } from "tar-stream";
import { HypervisordError, InvalidArgumentError } from "../src/errors.ts";
import { extractOva } from "../src/package/extract-ova.ts";
import { manifestText } from "../src/package/manifest.ts";
import { ovaLayout, tarStream, writeOvaSkeleton, type OvaStreamEntry } from "../src/package/ova-layout.ts";
import { validateOva } from "../src/package/validate-ova.ts";
import { TAR_END, tarHeader, tarPadding } from "../src/package/tar-header.ts";
import { tempDir } from "./support/temp-dir.ts";

const KiB = 1024;
const GiB = 1024 * 1024 * 1024;
const MTIME = new Date("2024-05-06T07:08:09Z");
const tmp = tempDir("ova");
let counter = 0;


/** A fresh path under the test's temp dir. */
function temp(name: string): string {
  return path.join(tmp, `${++counter}-${name}`);
}

const run = promisify(execFile);

/** GNU tar with names printed as they are (no escaping of UTF-8). */
async function gnuTar(...args: string[]): Promise<string> {
  const { stdout } = await run("tar", ["--quoting-style=literal", ...args], { env: { ...process.env, LC_ALL: "C.UTF-8" } });
  return stdout;
}

/** `tar -tvf` as [name, size] pairs. */
async function listing(file: string): Promise<[string, number][]> {
  const lines = (await gnuTar("-tvf", file)).split("\n").filter(Boolean);
  return lines.map((line) => {
    const match = /^\S+ \S+ +(\d+) \S+ \S+ (.*)$/.exec(line);
    assert.ok(match, `unexpected tar -tv line: ${line}`);
    return [match[2]!, Number(match[1])];
  });
}

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

interface FileSpec {
  name: string;
  data: Buffer;
}

interface Reference {
  href: string;
  size?: number;
}

/** An OVF descriptor whose References list `files`, with the `ovf:` prefix as vSphere writes it. */
function descriptorXml(files: readonly Reference[]): string {
  const refs = files
    .map((file, i) => `    <File ovf:href="${file.href}" ovf:id="file${i + 1}"${file.size !== undefined ? ` ovf:size="${file.size}"` : ""}/>`)
    .join("\n");
  return `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References>
${refs}
  </References>
  <DiskSection><Info>Virtual disk information</Info></DiskSection>
  <VirtualSystem ovf:id="vm"><Info>A virtual machine</Info></VirtualSystem>
</Envelope>
`;
}

/** vm.ovf referencing `disks`, the disks, and vm.mf with their SHA-256 digests: a valid OVA's entries. */
function ovaFiles(disks: readonly FileSpec[], references: readonly Reference[] = disks.map((d) => ({ href: d.name, size: d.data.length }))): FileSpec[] {
  const descriptor = { name: "vm.ovf", data: Buffer.from(descriptorXml(references)) };
  const files = [descriptor, ...disks];
  const manifest = manifestText(files.map((file) => ({ path: file.name, sha256: sha256(file.data) })));
  return [...files, { name: "vm.mf", data: Buffer.from(manifest) }];
}

const disk1 = randomBytes(300 * KiB + 123);
const disk2 = randomBytes(1024 * KiB);
const goodFiles = ovaFiles([
  { name: "disk1.vmdk", data: disk1 },
  { name: "disk2.vmdk", data: disk2 },
]);

/** The way the export pipeline writes: layout, skeleton, then every entry's data at its offset, concurrently. */
async function writeOva(file: string, files: readonly FileSpec[]): Promise<void> {
  const layout = ovaLayout(
    files.map(({ name, data }) => ({ name, size: data.length })),
    MTIME,
  );
  const handle = await fsp.open(file, "w");
  try {
    await writeOvaSkeleton(handle, layout);
    await Promise.all(layout.entries.map((entry, i) => handle.write(files[i]!.data, 0, entry.size, entry.dataOffset)).reverse());
  } finally {
    await handle.close();
  }
}

/** A tar of `files` in the given order, without ovaLayout's checks (for misordered OVAs). */
function rawTar(files: readonly FileSpec[]): Buffer {
  const parts = files.flatMap(({ name, data }) => [tarHeader({ name, size: data.length, mtime: MTIME }), data, Buffer.alloc(tarPadding(data.length))]);
  return Buffer.concat([...parts, TAR_END]);
}

/** A tar made by tar-stream, for entries tarHeader refuses to write (unsafe names, links). */
async function packTar(file: string, entries: readonly { header: Partial<Header> & { name: string }; data?: Buffer }[]): Promise<void> {
  const pack = tarPack();
  for (const { header, data } of entries) pack.entry(header, data ?? Buffer.alloc(0));
  pack.finalize();
  await pipeline(pack, fs.createWriteStream(file));
}

async function gzipFile(source: string, dest: string): Promise<void> {
  await pipeline(fs.createReadStream(source), createGzip(), fs.createWriteStream(dest));
}

async function collect(chunks: AsyncIterable<Buffer>): Promise<Buffer> {
  const all: Buffer[] = [];
  for await (const chunk of chunks) all.push(chunk);
  return Buffer.concat(all);
}

/** `data` in chunks of odd sizes, as a network body would arrive. */
async function* chunked(data: Buffer): AsyncGenerator<Buffer> {
  for (let offset = 0, size = 1; offset < data.length; offset += size, size = size * 7 + 3) yield data.subarray(offset, offset + size);
}

function isCode(code: string, ...parts: string[]) {
  return (err: unknown) => {
    assert.ok(err instanceof HypervisordError, `expected a HypervisordError, got ${String(err)}`);
    assert.equal(err.code, code);
    for (const part of parts) assert.ok(err.message.includes(part), `"${err.message}" should mention ${part}`);
    return true;
  };
}

// ---------------------------------------------------------------------------------------------

describe("tarHeader", () => {
  test("GNU tar lists short, prefix-split, pax-path and UTF-8 names with their sizes", async () => {
    const entries: [string, number][] = [
      ["empty.txt", 0],
      ["one-block.bin", 512],
      ["just-over.bin", 513],
      [`${"d".repeat(60)}/${"n".repeat(80)}.vmdk`, 1000],
      [`${"x".repeat(150)}.vmdk`, 7],
      [`${"s".repeat(120)}/${"t".repeat(120)}`, 3],
      ["dir/disque-é-ü.vmdk", 2],
      [`a/${"y".repeat(995)}`, 1],
    ];
    const file = temp("names.tar");
    const parts = entries.flatMap(([name, size]) => [tarHeader({ name, size, mtime: MTIME }), randomBytes(size), Buffer.alloc(tarPadding(size))]);
    fs.writeFileSync(file, Buffer.concat([...parts, TAR_END]));

    assert.deepEqual(await listing(file), entries);
  });

  test("pax records count their own length digits", async () => {
    // Non-ASCII names always go in a pax `path` record; these lengths put the record across 99 -> 100+ bytes.
    const names = [90, 91, 92, 93, 94].map((n) => `é${"a".repeat(n - 2)}`);
    for (const name of names) {
      const header = tarHeader({ name, size: 0, mtime: MTIME });
      assert.equal(header.length, 3 * 512, name);
      const paxSize = parseInt(header.toString("ascii", 124, 135), 8);
      const record = header.subarray(512, 512 + paxSize);
      assert.equal(Number(record.toString().split(" ")[0]), record.length, `record ${JSON.stringify(record.toString())}`);
    }
    const file = temp("pax.tar");
    fs.writeFileSync(file, rawTar(names.map((name) => ({ name, data: Buffer.alloc(0) }))));
    assert.deepEqual(await listing(file), names.map((name) => [name, 0]));
  });

  test("refuses unsafe names, negative sizes and bad modes", () => {
    for (const name of ["", "../x", "a/../b", "/etc/x", "a\\b", "nul\0", "dir/"]) {
      assert.throws(() => tarHeader({ name, size: 0 }), InvalidArgumentError, JSON.stringify(name));
    }
    assert.throws(() => tarHeader({ name: "x", size: -1 }), InvalidArgumentError);
    assert.throws(() => tarHeader({ name: "x", size: 1.5 }), InvalidArgumentError);
    assert.throws(() => tarHeader({ name: "x", size: 0, mode: 0o10000 }), InvalidArgumentError);
  });
});

describe("ovaLayout", () => {
  const specs: FileSpec[] = [
    { name: "vm.ovf", data: Buffer.from(descriptorXml([])) },
    { name: "empty.iso", data: Buffer.alloc(0) },
    { name: "one.bin", data: randomBytes(1) },
    { name: "block.bin", data: randomBytes(512) },
    { name: "more.bin", data: randomBytes(513) },
    { name: `${"long-".repeat(30)}disk.vmdk`, data: randomBytes(100 * KiB + 7) },
    { name: "vm.mf", data: Buffer.from("SHA256(vm.ovf)= 00\n") },
  ];

  test("skeleton + positional writes make an archive GNU tar extracts in input order", async () => {
    const file = temp("layout.ova");
    await writeOva(file, specs);
    const layout = ovaLayout(specs.map(({ name, data }) => ({ name, size: data.length })), MTIME);
    assert.equal(fs.statSync(file).size, layout.totalSize);
    assert.equal(layout.totalSize % 512, 0);

    assert.deepEqual((await gnuTar("-tf", file)).split("\n").filter(Boolean), specs.map((s) => s.name));
    const dir = temp("layout-extracted");
    fs.mkdirSync(dir);
    await gnuTar("-xf", file, "-C", dir);
    for (const spec of specs) assert.ok(fs.readFileSync(path.join(dir, spec.name)).equals(spec.data), spec.name);
  });

  test("tarStream yields the same bytes as the skeleton and positional writes", async () => {
    const file = temp("same.ova");
    await writeOva(file, specs);
    const streamed = await collect(
      tarStream(
        specs.map((spec, i): OvaStreamEntry => ({ name: spec.name, size: spec.data.length, data: i % 2 ? chunked(spec.data) : spec.data })),
        MTIME,
      ),
    );
    assert.ok(streamed.equals(fs.readFileSync(file)));
  });

  test("tarStream refuses data longer or shorter than the declared size", async () => {
    const entry = (size: number, data: Buffer | AsyncIterable<Buffer>) => [
      { name: "vm.ovf", size: 1, data: Buffer.from("x") },
      { name: "disk.vmdk", size, data },
    ];
    await assert.rejects(collect(tarStream(entry(10, chunked(randomBytes(11))))), isCode("INTERNAL", "disk.vmdk", "more than 10 bytes"));
    await assert.rejects(collect(tarStream(entry(10, chunked(randomBytes(9))))), isCode("INTERNAL", "disk.vmdk", "has 9 bytes"));
    await assert.rejects(collect(tarStream(entry(10, randomBytes(12)))), isCode("INTERNAL", "disk.vmdk", "has 12 bytes"));
  });

  test("refuses an OVA that does not start with its .ovf, repeats a name or is empty", () => {
    assert.throws(() => ovaLayout([{ name: "disk.vmdk", size: 1 }]), /starts with its \.ovf descriptor, got disk\.vmdk/);
    assert.throws(() => ovaLayout([{ name: "vm.ovf", size: 1 }, { name: "a", size: 1 }, { name: "a", size: 2 }]), /a appears twice/);
    assert.throws(() => ovaLayout([]), InvalidArgumentError);
  });

  test("a sparse 9 GiB entry: pax size read by GNU tar, tar-stream and validateOva", async () => {
    const big = 9 * GiB;
    // The entry's data region is never written (sparse): 9 GiB of zeros, whose SHA-256 is, from coreutils,
    // `head -c 9663676416 /dev/zero | sha256sum`:
    const bigSha256 = "cfbee1b311082090f6417b1026f9f83b2b3db46bc20ec64dff238d202c3782a6";
    const descriptor = Buffer.from(descriptorXml([{ href: "big.vmdk", size: big }]));
    const manifest = Buffer.from(manifestText([
      { path: "vm.ovf", sha256: sha256(descriptor) },
      { path: "big.vmdk", sha256: bigSha256 },
    ]));
    const layout = ovaLayout(
      [
        { name: "vm.ovf", size: descriptor.length },
        { name: "big.vmdk", size: big },
        { name: "vm.mf", size: manifest.length },
      ],
      MTIME,
    );
    assert.equal(layout.entries[1]!.header.length, 3 * 512, "pax header, its data block, ustar header");
    const file = temp("big.ova");
    const handle = await fsp.open(file, "w");
    try {
      await writeOvaSkeleton(handle, layout);
      await handle.write(descriptor, 0, descriptor.length, layout.entries[0]!.dataOffset);
      await handle.write(manifest, 0, manifest.length, layout.entries[2]!.dataOffset);
    } finally {
      await handle.close();
    }
    assert.equal(fs.statSync(file).size, layout.totalSize);
    assert.ok(fs.statSync(file).blocks * 512 < 1024 * 1024, "the file stays sparse");

    assert.deepEqual(await listing(file), [
      ["vm.ovf", descriptor.length],
      ["big.vmdk", big],
      ["vm.mf", manifest.length],
    ]);
    const validation = await validateOva(file);
    assert.deepEqual(validation.problems, []);
    assert.deepEqual(validation.entries[1], { name: "big.vmdk", size: 9663676416, sha256: bigSha256 });
  });
});

describe("validateOva", () => {
  const good = temp("good.ova");
  const goodGz = temp("good.ova.gz");

  test("a good OVA is valid; its digests match sha256sum's of the files GNU tar extracts", async () => {
    await writeOva(good, goodFiles);
    const validation = await validateOva(good);
    assert.deepEqual(validation.problems, []);
    assert.equal(validation.valid, true);
    assert.equal(validation.compressed, false);
    assert.deepEqual(
      validation.entries,
      goodFiles.map(({ name, data }) => ({ name, size: data.length, sha256: sha256(data) })),
    );

    const dir = temp("good-extracted");
    fs.mkdirSync(dir);
    await gnuTar("-xf", good, "-C", dir);
    const { stdout } = await run("sha256sum", goodFiles.map((f) => f.name), { cwd: dir });
    const sums = stdout.split("\n").filter(Boolean).map((line) => line.split(/\s+\*?/));
    assert.deepEqual(sums, validation.entries.map((e) => [e.sha256, e.name]));
  });

  test("a gzipped OVA is valid and reported compressed", async () => {
    await writeOva(good, goodFiles);
    await gzipFile(good, goodGz);
    const validation = await validateOva(goodGz);
    assert.deepEqual(validation.problems, []);
    assert.equal(validation.compressed, true);
    assert.deepEqual(validation.entries.map((e) => e.name), goodFiles.map((f) => f.name));
  });

  test("a manifest of SHA1 lines in the lenient spelling is checked", async () => {
    const [descriptor, d1, d2] = goodFiles;
    const sha1 = (data: Buffer) => createHash("sha1").update(data).digest("hex");
    const manifest = [descriptor!, d1!, d2!].map((f) => `SHA1 (${f.name}) = ${sha1(f.data).toUpperCase()}\r\n`).join("");
    const file = temp("sha1.ova");
    await writeOva(file, [descriptor!, d1!, d2!, { name: "vm.mf", data: Buffer.from(manifest) }]);
    assert.deepEqual((await validateOva(file)).problems, []);

    const tampered = Buffer.from(d2!.data);
    tampered[10]! ^= 1;
    await writeOva(file, [descriptor!, d1!, { name: d2!.name, data: tampered }, { name: "vm.mf", data: Buffer.from(manifest) }]);
    assert.deepEqual((await validateOva(file)).problems, [`disk2.vmdk: SHA1 in the manifest is ${sha1(d2!.data)}, the entry's is ${sha1(tampered)}`]);
  });

  test("an archive cut in the middle of a disk names the entry and the bytes read", async () => {
    const file = temp("cut.ova");
    await writeOva(file, goodFiles);
    const layout = ovaLayout(goodFiles.map(({ name, data }) => ({ name, size: data.length })), MTIME);
    const disk = layout.entries[1]!;
    fs.truncateSync(file, disk.dataOffset + 1000);
    const validation = await validateOva(file);
    assert.equal(validation.valid, false);
    assert.deepEqual(validation.entries.map((e) => e.name), ["vm.ovf"]);
    assert.equal(validation.problems[0], `disk1.vmdk: the archive breaks off after 1000 of the entry's ${disk1.length} bytes (Unexpected end of data)`);
    assert.ok(validation.problems.includes(`References lists disk2.vmdk (${disk2.length} bytes) but the OVA has no such entry`));

    // The same behind a pax header (a name too long for ustar): the count starts at the data, not at the pax header.
    const longName = `${"long-".repeat(30)}disk.vmdk`;
    const long = ovaFiles([{ name: longName, data: disk1 }]);
    await writeOva(file, long);
    const longDisk = ovaLayout(long.map(({ name, data }) => ({ name, size: data.length })), MTIME).entries[1]!;
    assert.equal(longDisk.header.length, 3 * 512);
    fs.truncateSync(file, longDisk.dataOffset + 1000);
    assert.equal((await validateOva(file)).problems[0], `${longName}: the archive breaks off after 1000 of the entry's ${disk1.length} bytes (Unexpected end of data)`);
  });

  test("a gzipped archive cut short names the entry being read", async () => {
    await writeOva(good, goodFiles);
    await gzipFile(good, goodGz);
    const file = temp("cut.ova.gz");
    fs.writeFileSync(file, fs.readFileSync(goodGz).subarray(0, Math.floor(fs.statSync(goodGz).size / 2)));
    const validation = await validateOva(file);
    assert.equal(validation.compressed, true);
    assert.match(validation.problems[0] ?? "", /^disk2\.vmdk: the archive breaks off after \d+ of the entry's 1048576 bytes \(unexpected end of file\)$/);
  });

  test("a tampered byte is a SHA256 mismatch naming both digests", async () => {
    const tampered = Buffer.from(disk1);
    tampered[disk1.length - 1]! ^= 0xff;
    const files = goodFiles.map((f) => (f.name === "disk1.vmdk" ? { name: f.name, data: tampered } : f));
    const file = temp("tampered.ova");
    await writeOva(file, files);
    assert.deepEqual((await validateOva(file)).problems, [`disk1.vmdk: SHA256 in the manifest is ${sha256(disk1)}, the entry's is ${sha256(tampered)}`]);
  });

  test("a referenced file missing, a wrong size, References order", async () => {
    const disks = [
      { name: "disk1.vmdk", data: disk1 },
      { name: "disk2.vmdk", data: disk2 },
    ];
    const file = temp("refs.ova");
    await writeOva(file, ovaFiles(disks, [{ href: "disk1.vmdk", size: disk1.length + 1 }, { href: "disk2.vmdk" }, { href: "disk3.vmdk", size: 4096 }]));
    assert.deepEqual((await validateOva(file)).problems, [
      `disk1.vmdk: References gives its size as ${disk1.length + 1} bytes, the entry has ${disk1.length} bytes`,
      "References lists disk3.vmdk (4096 bytes) but the OVA has no such entry",
    ]);

    await writeOva(file, ovaFiles([disks[1]!, disks[0]!], disks.map((d) => ({ href: d.name }))));
    assert.deepEqual((await validateOva(file)).problems, ["disk2.vmdk comes before disk1.vmdk in the archive but after it in References"]);
  });

  test("the .ovf not first, an unreferenced entry, a file missing from the manifest", async () => {
    const [descriptor, d1, d2, manifest] = goodFiles;
    const file = temp("order.ova");
    fs.writeFileSync(file, rawTar([d1!, descriptor!, d2!, { name: "notes.txt", data: Buffer.from("hi") }, manifest!]));
    assert.deepEqual((await validateOva(file)).problems, [
      "the first entry is disk1.vmdk; an OVA starts with its .ovf descriptor (vm.ovf is entry 2)",
      "notes.txt is in the OVA but not in the References of vm.ovf",
      "vm.mf has no digest for notes.txt",
    ]);
  });

  test("unsafe names and links are problems", async () => {
    const file = temp("unsafe.ova");
    await packTar(file, [
      ...goodFiles.slice(0, 3).map(({ name, data }) => ({ header: { name, size: data.length }, data })),
      { header: { name: "../x", size: 1 }, data: Buffer.from("x") },
      { header: { name: "link", type: "symlink", linkname: "/etc/passwd" } },
      { header: goodFiles[3]!, data: goodFiles[3]!.data },
    ]);
    const { problems } = await validateOva(file);
    assert.ok(problems.includes('"../x" is an unsafe entry name: it has a .. segment'), problems.join("\n"));
    assert.ok(problems.includes("link is a symlink entry to /etc/passwd; an OVA holds only regular files"), problems.join("\n"));
  });

  test("a missing file is NOT_FOUND, a file that is no tar INVALID_ARGUMENT, both naming the path", async () => {
    const missing = temp("missing.ova");
    await assert.rejects(validateOva(missing), isCode("NOT_FOUND", missing));
    const text = temp("text.ova");
    fs.writeFileSync(text, "this is not a tar archive\n".repeat(40));
    await assert.rejects(validateOva(text), isCode("INVALID_ARGUMENT", text, "not a tar archive"));
    const short = temp("short.ova");
    fs.writeFileSync(short, "hi");
    await assert.rejects(validateOva(short), isCode("INVALID_ARGUMENT", short, "not a tar archive"));
  });
});

describe("extractOva", () => {
  const prefix = goodFiles.slice(0, 2).map(({ name, data }) => ({ header: { name, size: data.length }, data }));

  test("extracts a gzipped OVA", async () => {
    const ova = temp("extract.ova");
    const gz = temp("extract.ova.gz");
    await writeOva(ova, goodFiles);
    await gzipFile(ova, gz);
    const dest = temp("extract-dest");
    const { files } = await extractOva(gz, dest);
    assert.deepEqual(files, goodFiles.map(({ name, data }) => ({ name, size: data.length, sha256: sha256(data) })));
    assert.deepEqual(fs.readdirSync(dest).sort(), goodFiles.map((f) => f.name).sort());
    for (const { name, data } of goodFiles) assert.ok(fs.readFileSync(path.join(dest, name)).equals(data), name);
  });

  const hostile: [string, Partial<Header> & { name: string }, string][] = [
    ["a .. segment", { name: "../x", size: 1 }, 'entry "../x" is an unsafe name: it has a .. segment'],
    ["an absolute path", { name: "/etc/x", size: 1 }, 'entry "/etc/x" is an unsafe name: it is an absolute path'],
    ["a symlink", { name: "link", type: "symlink", linkname: "/etc/passwd" }, 'entry "link" is a symlink to /etc/passwd'],
    ["a hard link", { name: "hard", type: "link", linkname: "vm.ovf" }, 'entry "hard" is a link to vm.ovf'],
    ["a device", { name: "dev", type: "character-device", devmajor: 1, devminor: 3 }, 'entry "dev" is a character-device'],
  ];
  for (const [what, header, message] of hostile) {
    test(`refuses ${what} and leaves nothing behind`, async () => {
      const ova = temp("hostile.ova");
      await packTar(ova, [...prefix, { header, data: header.size ? Buffer.from("x") : undefined }]);
      const parent = temp("hostile");
      const dest = path.join(parent, "a", "b");
      await assert.rejects(extractOva(ova, dest), isCode("INVALID_ARGUMENT", ova, message));
      assert.equal(fs.existsSync(path.join(parent, "a")), false, "the directories it created are gone");
      assert.equal(fs.existsSync(path.join(parent, "x")), false);
    });
  }

  test("keeps what was in the destination, refuses to replace a file and to follow a symlinked directory out", async () => {
    const dest = temp("existing-dest");
    const outside = temp("outside");
    fs.mkdirSync(dest);
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(dest, "keep.txt"), "keep");
    fs.symlinkSync(outside, path.join(dest, "out"));

    const escaping = temp("escaping.ova");
    await packTar(escaping, [...prefix, { header: { name: "out/x", size: 1 }, data: Buffer.from("x") }]);
    await assert.rejects(extractOva(escaping, dest), isCode("INVALID_ARGUMENT", "out/x", `would be written to ${fs.realpathSync(outside)}`));
    assert.deepEqual(fs.readdirSync(outside), []);
    assert.deepEqual(fs.readdirSync(dest).sort(), ["keep.txt", "out"]);

    const replacing = temp("replacing.ova");
    await packTar(replacing, [...prefix, { header: { name: "keep.txt", size: 4 }, data: Buffer.from("new!") }]);
    await assert.rejects(extractOva(replacing, dest), isCode("ALREADY_EXISTS", "keep.txt"));
    assert.equal(fs.readFileSync(path.join(dest, "keep.txt"), "utf8"), "keep");
    assert.deepEqual(fs.readdirSync(dest).sort(), ["keep.txt", "out"]);
  });

  test("a truncated archive fails naming the entry, an abort rejects with its reason; both clean up", async () => {
    const ova = temp("cut-extract.ova");
    await writeOva(ova, goodFiles);
    const layout = ovaLayout(goodFiles.map(({ name, data }) => ({ name, size: data.length })), MTIME);
    fs.truncateSync(ova, layout.entries[2]!.dataOffset + 4096);
    const dest = temp("cut-dest");
    await assert.rejects(extractOva(ova, dest), isCode("INVALID_ARGUMENT", ova, `disk2.vmdk: the archive breaks off after 4096 of the entry's ${disk2.length} bytes`));
    assert.equal(fs.existsSync(dest), false);

    const whole = temp("abort.ova");
    fs.writeFileSync(whole, rawTar(goodFiles));
    const reason = new Error("stop");
    await assert.rejects(extractOva(whole, dest, { signal: AbortSignal.abort(reason) }), (err) => err === reason);
    assert.equal(fs.existsSync(dest), false);
  });
});
