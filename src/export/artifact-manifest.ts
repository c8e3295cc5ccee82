/**
 * The artifact manifest (`artifact-manifest.json`, Artifact Manifest v1.0): what an export
 * produced, in the shape the conversion tool hyper2kvm reads (its loader in
 * ssahani/hyper2kvm hyper2kvm/manifest/loader.py, schema in
 * docs/reference/artifact-manifest-v1.0.schema.json).
 *
 * Where hyper2kvm is stricter than a plain description of the export, we follow hyper2kvm:
 * - `output.format` is the format hyper2kvm converts the disks INTO (qemu-img -O), one of
 *   qcow2 / raw / vdi; hyper2kvm writes `<output.directory>/<disk id>.<format>`. The package
 *   the export itself produced (ovf, ova, ...) is named by `source.export_method` and
 *   `metadata.export_format` instead.
 * - `local_path` is written absolute: hyper2kvm resolves a relative one against its own
 *   working directory, not against the manifest.
 * - `mem_gb` is an integer >= 1 (rounded up from MiB; the exact figure is `metadata.memory_mib`).
 * - disk ids match ^[a-zA-Z0-9_-]+$ and checksums ^sha256:[a-f0-9]{64}$.
 */
import { createHash } from "node:crypto";
import fs, { type FileHandle } from "node:fs/promises";
import path from "node:path";
import { HypervisordError, InvalidArgumentError, NotFoundError, toHypervisordError } from "../errors.ts";
import { VERSION } from "../version.ts";
import { openRegularFile } from "../files/open-regular-file.ts";
import { writeFileAtomic } from "../files/write-file-atomic.ts";
import { UNRECORDED, type WrittenFiles } from "../files/written-files.ts";

export const ARTIFACT_MANIFEST_FILE = "artifact-manifest.json";
export const ARTIFACT_MANIFEST_VERSION = "1.0";

export const DISK_FORMATS = ["vmdk", "qcow2", "raw", "vdi", "vhd", "vhdx"] as const;
export type DiskFormat = (typeof DISK_FORMATS)[number];
/** Formats hyper2kvm can convert into: the values of `output.format`. */
export const TARGET_FORMATS = ["qcow2", "raw", "vdi"] as const;
export type TargetFormat = (typeof TARGET_FORMATS)[number];
/** What an export can produce; recorded as `metadata.export_format`. */
export const EXPORT_FORMATS = ["ovf", "ova", "qcow2", "raw", "vdi"] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];
export const OS_HINTS = ["linux", "windows", "freebsd", "other"] as const;
export type OsHint = (typeof OS_HINTS)[number];
export type Firmware = "bios" | "uefi";
export type DiskType = "boot" | "data";

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export interface ArtifactSource {
  provider: string;
  /** Managed object reference or instance UUID. */
  vm_id: string;
  vm_name: string;
  datacenter: string;
  /** ISO 8601 in UTC, e.g. 2026-01-21T18:30:00.000Z. */
  export_timestamp: string;
  /** e.g. "ovf-export", "ova-export". */
  export_method: string;
}

export interface ArtifactVm {
  cpu: number;
  mem_gb: number;
  firmware: Firmware;
  os_hint: OsHint;
  os_version: string;
  secureboot: boolean;
}

export interface ArtifactDisk {
  /** "disk-0", "disk-1", ... in controller order. */
  id: string;
  source_format: DiskFormat;
  bytes: number;
  /** Absolute when we write it; a relative one is resolved against output.directory. */
  local_path: string;
  /** "sha256:<64 lowercase hex>". */
  checksum: string;
  /** 0 = the boot disk. */
  boot_order_hint: number;
  disk_type: DiskType;
  /** The file's name in the export, for people (hyper2kvm shows it; defaults to id). */
  label?: string;
}

export interface ArtifactOutput {
  /** Absolute directory of the export; hyper2kvm also writes its converted disks here. */
  directory: string;
  format: TargetFormat;
}

export interface ArtifactManifest {
  manifest_version: typeof ARTIFACT_MANIFEST_VERSION;
  source: ArtifactSource;
  vm: ArtifactVm;
  disks: ArtifactDisk[];
  output: ArtifactOutput;
  notes: string[];
  metadata: Record<string, JsonValue>;
}

// ---------------------------------------------------------------------------------------------
// Building

export interface ArtifactSourceInput {
  /** Default "vsphere". */
  provider?: string;
  vmId: string;
  vmName: string;
  datacenter: string;
  exportedAt: Date;
  /** Default `<exportFormat>-export`, e.g. "ovf-export". */
  exportMethod?: string;
}

export interface ArtifactVmInput {
  cpu: number;
  memoryMiB: number;
  /** vSphere says "efi"; the manifest says "uefi". */
  firmware: "bios" | "efi" | "uefi";
  secureBoot: boolean;
  /** vSphere guestId, e.g. "rhel8_64Guest". */
  guestId: string;
  /** e.g. "Red Hat Enterprise Linux 8 (64-bit)"; the guestId when absent. */
  guestFullName?: string;
}

export interface ArtifactDiskInput {
  /** e.g. "web-01-disk-1.vmdk". */
  name: string;
  /** Absolute, or relative to `directory`. */
  path: string;
  size: number;
  /** 64 hex digits, without a "sha256:" prefix. */
  sha256: string;
  /** Default: from the file name's extension. */
  format?: DiskFormat;
}

export interface ArtifactManifestInput {
  source: ArtifactSourceInput;
  vm: ArtifactVmInput;
  /** In controller / boot order: the first is the boot disk. */
  disks: readonly ArtifactDiskInput[];
  /** Absolute directory the export wrote. */
  directory: string;
  /** What the export produced. */
  exportFormat: ExportFormat;
  /** What hyper2kvm should convert the disks into. Default "qcow2". */
  targetFormat?: TargetFormat;
  notes?: readonly string[];
  jobId?: string;
  /** Written as `metadata.tags` (hyper2kvm's name for user labels). */
  labels?: Readonly<Record<string, string>>;
  /** More metadata, e.g. `conversions`; the keys set here win over these. */
  metadata?: Readonly<Record<string, JsonValue>>;
  /** Default: now. */
  createdAt?: Date;
}

/** Builds the manifest from what an export produced; throws InvalidArgumentError("manifest", ...) when the result would not be valid. */
export function buildArtifactManifest(input: ArtifactManifestInput): ArtifactManifest {
  const manifest: ArtifactManifest = {
    manifest_version: ARTIFACT_MANIFEST_VERSION,
    source: buildSource(input.source, input.exportFormat),
    vm: buildVm(input.vm),
    disks: input.disks.map((disk, index) => buildDisk(disk, index, input.directory)),
    output: { directory: input.directory, format: input.targetFormat ?? "qcow2" },
    notes: [...(input.notes ?? [])],
    metadata: buildMetadata(input),
  };
  assertValid(manifest);
  return manifest;
}

function buildSource(source: ArtifactSourceInput, exportFormat: ExportFormat): ArtifactSource {
  return {
    provider: source.provider ?? "vsphere",
    vm_id: source.vmId,
    vm_name: source.vmName,
    datacenter: source.datacenter,
    export_timestamp: source.exportedAt.toISOString(),
    export_method: source.exportMethod ?? `${exportFormat}-export`,
  };
}

function buildVm(vm: ArtifactVmInput): ArtifactVm {
  return {
    cpu: vm.cpu,
    // hyper2kvm wants a whole number >= 1: round up, never give the guest less than it had.
    mem_gb: Math.max(1, Math.ceil(vm.memoryMiB / 1024)),
    firmware: vm.firmware === "bios" ? "bios" : "uefi",
    os_hint: osHintFromGuestId(vm.guestId),
    os_version: vm.guestFullName || vm.guestId,
    secureboot: vm.secureBoot,
  };
}

function buildDisk(disk: ArtifactDiskInput, index: number, directory: string): ArtifactDisk {
  return {
    id: `disk-${index}`,
    source_format: disk.format ?? diskFormatOf(disk.name, index),
    bytes: disk.size,
    local_path: path.resolve(directory, disk.path),
    checksum: `sha256:${disk.sha256.toLowerCase()}`,
    boot_order_hint: index,
    disk_type: index === 0 ? "boot" : "data",
    label: disk.name,
  };
}

function buildMetadata(input: ArtifactManifestInput): Record<string, JsonValue> {
  const metadata: Record<string, JsonValue> = {
    ...input.metadata,
    hypervisord_version: VERSION,
    created_at: (input.createdAt ?? new Date()).toISOString(),
    export_format: input.exportFormat,
    memory_mib: input.vm.memoryMiB,
  };
  if (input.jobId !== undefined) metadata.job_id = input.jobId;
  if (input.labels !== undefined) metadata.tags = { ...input.labels };
  return metadata;
}

const EXTENSION_FORMATS: Record<string, DiskFormat> = {
  ".vmdk": "vmdk",
  ".qcow2": "qcow2",
  ".raw": "raw",
  ".img": "raw",
  ".vdi": "vdi",
  ".vhd": "vhd",
  ".vhdx": "vhdx",
};

function diskFormatOf(name: string, index: number): DiskFormat {
  const format = EXTENSION_FORMATS[path.extname(name).toLowerCase()];
  if (!format) {
    throw new InvalidArgumentError(`disks[${index}].format`, `cannot tell the format of "${name}" from its extension; pass one of ${DISK_FORMATS.join(", ")}`);
  }
  return format;
}

// vSphere guest ids (VirtualMachineGuestOsIdentifier) of Linux distributions whose id does not say "linux".
const LINUX_GUEST_PREFIXES = [
  "ubuntu", "rhel", "redhat", "centos", "debian", "sles", "suse", "opensuse", "fedora", "mandrake",
  "mandriva", "asianux", "coreos", "vmwarephoton", "nld", "oes", "sjds", "pardus", "fusionos",
];

/** The coarse OS family hyper2kvm branches on, from a vSphere guestId. */
export function osHintFromGuestId(guestId: string): OsHint {
  const id = guestId.toLowerCase();
  if (id.startsWith("win")) return "windows";
  if (id.startsWith("freebsd")) return "freebsd";
  if (id.includes("linux") || LINUX_GUEST_PREFIXES.some((prefix) => id.startsWith(prefix))) return "linux";
  return "other";
}

// ---------------------------------------------------------------------------------------------
// Validation: every problem, each with its JSON path, instead of stopping at the first.

const CHECKSUM = /^sha256:[a-f0-9]{64}$/;
const DISK_ID = /^[a-zA-Z0-9_-]+$/;
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;

type Problems = string[];
type JsonObject = Record<string, unknown>;

/** The problems that make `value` an invalid artifact manifest; empty when it is valid. Does not look at the disk files. */
export function validateArtifactManifest(value: unknown): string[] {
  const problems: Problems = [];
  const root = objectAt(problems, "manifest", value);
  if (!root) return problems;
  if (root.manifest_version !== ARTIFACT_MANIFEST_VERSION) {
    expected(problems, "manifest_version", `"${ARTIFACT_MANIFEST_VERSION}"`, root.manifest_version);
  }
  validateSource(problems, root.source);
  validateVm(problems, root.vm);
  const output = validateOutput(problems, root.output);
  const disks = validateDisks(problems, root.disks);
  if (output && disks) checkConversionTargets(problems, output, disks);
  validateNotes(problems, root.notes);
  validateMetadata(problems, root.metadata);
  return problems;
}

function validateSource(problems: Problems, value: unknown): void {
  const source = objectAt(problems, "source", value);
  if (!source) return;
  for (const key of ["provider", "vm_id", "vm_name", "export_method"]) {
    stringAt(problems, `source.${key}`, source[key], { nonEmpty: true });
  }
  stringAt(problems, "source.datacenter", source.datacenter, { nonEmpty: false });
  const timestamp = source.export_timestamp;
  if (typeof timestamp !== "string" || !ISO_UTC.test(timestamp) || Number.isNaN(Date.parse(timestamp))) {
    expected(problems, "source.export_timestamp", "an ISO 8601 UTC time like 2026-01-21T18:30:00Z", timestamp);
  }
}

function validateVm(problems: Problems, value: unknown): void {
  const vm = objectAt(problems, "vm", value);
  if (!vm) return;
  integerAt(problems, "vm.cpu", vm.cpu, 1);
  integerAt(problems, "vm.mem_gb", vm.mem_gb, 1);
  oneOf(problems, "vm.firmware", vm.firmware, ["bios", "uefi"]);
  oneOf(problems, "vm.os_hint", vm.os_hint, OS_HINTS);
  stringAt(problems, "vm.os_version", vm.os_version, { nonEmpty: true });
  if (typeof vm.secureboot !== "boolean") expected(problems, "vm.secureboot", "a boolean", vm.secureboot);
  if (vm.secureboot === true && vm.firmware === "bios") {
    problems.push(`vm.secureboot: true needs firmware "uefi", got firmware "bios"`);
  }
}

function validateOutput(problems: Problems, value: unknown): ArtifactOutput | undefined {
  const output = objectAt(problems, "output", value);
  if (!output) return undefined;
  const directory = output.directory;
  if (typeof directory !== "string" || !path.isAbsolute(directory)) {
    expected(problems, "output.directory", "an absolute directory path", directory);
  }
  if (!oneOf(problems, "output.format", output.format, TARGET_FORMATS) || typeof directory !== "string") return undefined;
  return { directory, format: output.format as TargetFormat };
}

/** Returns the disks when the array itself is usable (for the cross-disk checks), even if some disk has problems. */
function validateDisks(problems: Problems, value: unknown): JsonObject[] | undefined {
  if (!Array.isArray(value) || value.length === 0) {
    expected(problems, "disks", "a non-empty array", value);
    return undefined;
  }
  const seen = new Map<string, number>();
  const disks: JsonObject[] = [];
  value.forEach((item: unknown, index) => {
    const disk = objectAt(problems, `disks[${index}]`, item);
    if (!disk) return;
    validateDisk(problems, `disks[${index}]`, disk);
    disks.push(disk);
    if (typeof disk.id !== "string") return;
    const first = seen.get(disk.id);
    if (first === undefined) seen.set(disk.id, index);
    else problems.push(`disks[${index}].id: duplicate "${disk.id}", already used by disks[${first}]`);
  });
  return disks;
}

function validateDisk(problems: Problems, at: string, disk: JsonObject): void {
  if (typeof disk.id !== "string" || !DISK_ID.test(disk.id)) {
    expected(problems, `${at}.id`, "letters, digits, - or _ (^[a-zA-Z0-9_-]+$)", disk.id);
  }
  oneOf(problems, `${at}.source_format`, disk.source_format, DISK_FORMATS);
  integerAt(problems, `${at}.bytes`, disk.bytes, 0);
  stringAt(problems, `${at}.local_path`, disk.local_path, { nonEmpty: true });
  if (typeof disk.checksum !== "string" || !CHECKSUM.test(disk.checksum)) {
    expected(problems, `${at}.checksum`, `"sha256:<64 hex>"`, disk.checksum);
  }
  integerAt(problems, `${at}.boot_order_hint`, disk.boot_order_hint, 0);
  oneOf(problems, `${at}.disk_type`, disk.disk_type, ["boot", "data"]);
  if (disk.label !== undefined) stringAt(problems, `${at}.label`, disk.label, { nonEmpty: false });
}

/**
 * hyper2kvm writes each converted disk to `<output.directory>/<id>.<output.format>`: refuse a
 * manifest where that is one of the input files, which the conversion would overwrite while reading it.
 */
function checkConversionTargets(problems: Problems, output: ArtifactOutput, disks: JsonObject[]): void {
  const inputs = new Set(disks.map((d) => (typeof d.local_path === "string" ? path.resolve(output.directory, d.local_path) : "")));
  disks.forEach((disk, index) => {
    if (typeof disk.id !== "string") return;
    const target = path.join(output.directory, `${disk.id}.${output.format}`);
    if (inputs.has(target)) {
      problems.push(`disks[${index}].id: hyper2kvm would write its converted ${target} over an input disk; rename the disk file or pick another output.format`);
    }
  });
}

function validateNotes(problems: Problems, value: unknown): void {
  if (!Array.isArray(value)) {
    expected(problems, "notes", "an array of strings", value);
    return;
  }
  value.forEach((note: unknown, index) => stringAt(problems, `notes[${index}]`, note, { nonEmpty: false }));
}

function validateMetadata(problems: Problems, value: unknown): void {
  const metadata = objectAt(problems, "metadata", value);
  if (!metadata) return;
  for (const key of ["hypervisord_version", "job_id", "created_at", "export_format"]) {
    if (key in metadata) stringAt(problems, `metadata.${key}`, metadata[key], { nonEmpty: false });
  }
  if (!("tags" in metadata)) return;
  const tags = objectAt(problems, "metadata.tags", metadata.tags);
  for (const [key, tag] of Object.entries(tags ?? {})) stringAt(problems, `metadata.tags.${key}`, tag, { nonEmpty: false });
}

function objectAt(problems: Problems, at: string, value: unknown): JsonObject | undefined {
  if (typeof value === "object" && value !== null && !Array.isArray(value)) return value as JsonObject;
  expected(problems, at, "an object", value);
  return undefined;
}

function stringAt(problems: Problems, at: string, value: unknown, { nonEmpty }: { nonEmpty: boolean }): void {
  if (typeof value === "string" && (!nonEmpty || value !== "")) return;
  expected(problems, at, nonEmpty ? "a non-empty string" : "a string", value);
}

function integerAt(problems: Problems, at: string, value: unknown, min: number): void {
  if (Number.isSafeInteger(value) && (value as number) >= min) return;
  expected(problems, at, `an integer >= ${min}`, value);
}

function oneOf(problems: Problems, at: string, value: unknown, allowed: readonly string[]): boolean {
  if (typeof value === "string" && allowed.includes(value)) return true;
  expected(problems, at, `one of ${allowed.map((a) => `"${a}"`).join(", ")}`, value);
  return false;
}

function expected(problems: Problems, at: string, what: string, value: unknown): void {
  problems.push(value === undefined ? `${at}: missing, expected ${what}` : `${at}: expected ${what}, got ${describe(value)}`);
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 76)}..."` : text;
}

function assertValid(manifest: unknown): asserts manifest is ArtifactManifest {
  const problems = validateArtifactManifest(manifest);
  if (problems.length > 0) throw new InvalidArgumentError("manifest", problems.join("; "));
}

// ---------------------------------------------------------------------------------------------
// Reading and writing

/** Parses and validates manifest text; InvalidArgumentError("manifest", ...) on bad JSON or any problem. */
export function parseArtifactManifest(text: string): ArtifactManifest {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError("manifest", `not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  assertValid(value);
  return value;
}

/** Validates, then writes `<dir>/artifact-manifest.json` atomically; returns its path. */
export async function writeArtifactManifest(dir: string, manifest: ArtifactManifest, files: WrittenFiles = UNRECORDED): Promise<string> {
  assertValid(manifest);
  const file = path.join(dir, ARTIFACT_MANIFEST_FILE);
  await writeFileAtomic(file, `${JSON.stringify(manifest, null, 2)}\n`, files);
  return file;
}

// ---------------------------------------------------------------------------------------------
// Verification: re-hash every disk against the manifest.

export interface VerifiedDisk {
  id: string;
  /** The file actually checked (see resolveDiskPath). */
  path: string;
  /** The manifest's checksum. */
  expected: string;
  /** "sha256:<hex>" of the file, when it was hashed. */
  actual?: string;
  /** The file's size, when it exists. */
  bytes?: number;
  ok: boolean;
  problem?: string;
}

export interface ArtifactVerification {
  valid: boolean;
  disks: VerifiedDisk[];
  /** One line per failed disk, e.g. `disks[1] (disk-1): checksum mismatch: ...`. */
  problems: string[];
}

export interface VerifyOptions {
  signal?: AbortSignal;
  /** A disk whose resolved path this refuses is reported as a problem and never read (the daemon's output roots). */
  mayRead?(file: string): boolean;
}

/**
 * Reads and validates the manifest at `file`, then re-hashes every disk. Disk problems (missing,
 * wrong size, wrong checksum, unreadable) are reported, not thrown; a manifest that is missing
 * throws NOT_FOUND, one that cannot be read or is not a valid manifest INVALID_ARGUMENT, an abort CANCELLED.
 */
export async function verifyArtifactManifest(file: string, options: VerifyOptions = {}): Promise<ArtifactVerification> {
  const manifest = await readArtifactManifest(file);
  const outputDirExists = await isDirectory(manifest.output.directory);
  const packageDir = path.dirname(path.resolve(file));
  const disks: VerifiedDisk[] = [];
  for (const disk of manifest.disks) {
    if (options.signal?.aborted) throw toHypervisordError(options.signal.reason, `verifying ${file}`);
    const diskPath = resolveDiskPath(disk.local_path, manifest.output.directory, outputDirExists, packageDir);
    if (options.mayRead && !options.mayRead(diskPath)) {
      disks.push({ id: disk.id, path: diskPath, expected: disk.checksum, ok: false, problem: `${diskPath} is outside the allowed output roots; not read` });
      continue;
    }
    disks.push(await verifyDisk(disk, diskPath, options.signal));
  }
  const problems = disks.flatMap((d, index) => (d.problem ? [`disks[${index}] (${d.id}): ${d.problem}`] : []));
  return { valid: problems.length === 0, disks, problems };
}

/** A manifest lists a package's disks: far below this; a larger file is not one, and is not read into memory. */
const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;

async function readArtifactManifest(file: string): Promise<ArtifactManifest> {
  let text: string;
  try {
    const { handle, stats } = await openRegularFile(file);
    try {
      if (stats.size > MAX_MANIFEST_BYTES) throw new Error(`${stats.size} bytes; a manifest is at most ${MAX_MANIFEST_BYTES}`);
      text = await handle.readFile("utf8");
    } finally {
      await handle.close();
    }
  } catch (err) {
    if (err instanceof HypervisordError && err.code === "NOT_FOUND") throw new NotFoundError(`artifact manifest ${file} does not exist`, { cause: err });
    throw new HypervisordError("INVALID_ARGUMENT", `artifact manifest ${file} cannot be read: ${messageOf(err)}`, { cause: err });
  }
  try {
    return parseArtifactManifest(text);
  } catch (err) {
    throw new HypervisordError("INVALID_ARGUMENT", `artifact manifest ${file}: ${messageOf(err)}`, { cause: err });
  }
}

/**
 * Where to find a disk. While output.directory exists it is the base: a relative local_path is
 * resolved against it and an absolute one is used as is. When it is gone, the package was
 * moved (or copied elsewhere and the original deleted): the manifest's own directory takes its
 * place, for relative paths and for absolute ones under the old output.directory alike.
 */
export function resolveDiskPath(localPath: string, outputDir: string, outputDirExists: boolean, packageDir: string): string {
  if (outputDirExists) return path.resolve(outputDir, localPath);
  if (!path.isAbsolute(localPath)) return path.resolve(packageDir, localPath);
  const inside = path.relative(outputDir, localPath);
  const underOutputDir = inside !== "" && !inside.startsWith("..") && !path.isAbsolute(inside);
  return underOutputDir ? path.join(packageDir, inside) : localPath;
}

async function verifyDisk(disk: ArtifactDisk, diskPath: string, signal: AbortSignal | undefined): Promise<VerifiedDisk> {
  const result: VerifiedDisk = { id: disk.id, path: diskPath, expected: disk.checksum, ok: false };
  let opened: Awaited<ReturnType<typeof openRegularFile>>;
  try {
    // Opened once, as a regular file (a FIFO named by a manifest must not hang the call), then sized and hashed.
    opened = await openRegularFile(diskPath, signal);
  } catch (err) {
    if (signal?.aborted) throw toHypervisordError(signal.reason ?? err, `verifying ${diskPath}`);
    const notFound = err instanceof HypervisordError && err.code === "NOT_FOUND";
    return { ...result, problem: notFound ? `file not found: ${diskPath}` : messageOf(err) };
  }
  const { handle, stats } = opened;
  result.bytes = stats.size;
  if (result.bytes !== disk.bytes) {
    await handle.close();
    // A file of the wrong size cannot match: skip hashing what may be hundreds of GiB.
    return { ...result, problem: `size mismatch: manifest says ${disk.bytes} bytes, ${diskPath} has ${result.bytes}` };
  }
  try {
    result.actual = `sha256:${await sha256File(handle, signal)}`;
  } catch (err) {
    if (signal?.aborted) throw toHypervisordError(signal.reason ?? err, `verifying ${diskPath}`);
    return { ...result, problem: `cannot read ${diskPath}: ${messageOf(err)}` };
  }
  if (result.actual !== disk.checksum) {
    return { ...result, problem: `checksum mismatch: manifest says ${disk.checksum}, ${diskPath} has ${result.actual}` };
  }
  return { ...result, ok: true };
}

/** Reads the file to its end (closing it) and returns its SHA-256 in hex. */
async function sha256File(handle: FileHandle, signal: AbortSignal | undefined): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of handle.createReadStream({ signal, highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

async function isDirectory(dir: string): Promise<boolean> {
  try {
    return (await fs.stat(dir)).isDirectory();
  } catch (err) {
    if (errorCode(err) === "ENOENT" || errorCode(err) === "ENOTDIR") return false;
    throw toHypervisordError(err, `checking output directory ${dir}`);
  }
}

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
