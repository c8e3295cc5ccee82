import path from "node:path";
import { errorMessage, InvalidArgumentError } from "../../errors.ts";
import { ARTIFACT_MANIFEST_VERSION, DISK_FORMATS, OS_HINTS, OUTPUT_FORMATS, type ArtifactManifest, type ArtifactOutput, type OutputFormat } from "./schema.ts";

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
  validateMemory(problems, vm);
  oneOf(problems, "vm.firmware", vm.firmware, ["bios", "uefi"]);
  oneOf(problems, "vm.os_hint", vm.os_hint, OS_HINTS);
  stringAt(problems, "vm.os_version", vm.os_version, { nonEmpty: true });
  if (typeof vm.secureboot !== "boolean") expected(problems, "vm.secureboot", "a boolean", vm.secureboot);
  if (vm.secureboot === true && vm.firmware === "bios") {
    problems.push(`vm.secureboot: true needs firmware "uefi", got firmware "bios"`);
  }
}

/** mem_mib (exact) or mem_gb (whole GiB, as hyper2kvm reads it), or both when they agree. */
function validateMemory(problems: Problems, vm: JsonObject): void {
  if (vm.mem_mib === undefined && vm.mem_gb === undefined) {
    problems.push("vm.mem_mib: missing, expected an integer >= 1 (or vm.mem_gb, a whole number of GiB)");
    return;
  }
  if (vm.mem_mib !== undefined) integerAt(problems, "vm.mem_mib", vm.mem_mib, 1);
  if (vm.mem_gb !== undefined) integerAt(problems, "vm.mem_gb", vm.mem_gb, 1);
  if (Number.isSafeInteger(vm.mem_mib) && Number.isSafeInteger(vm.mem_gb) && (vm.mem_gb as number) * 1024 !== vm.mem_mib) {
    problems.push(`vm.mem_gb: ${vm.mem_gb} GiB does not agree with vm.mem_mib ${vm.mem_mib}`);
  }
}

function validateOutput(problems: Problems, value: unknown): ArtifactOutput | undefined {
  const output = objectAt(problems, "output", value);
  if (!output) return undefined;
  const directory = output.directory;
  if (typeof directory !== "string" || !path.isAbsolute(directory)) {
    expected(problems, "output.directory", "an absolute directory path", directory);
  }
  if (!oneOf(problems, "output.format", output.format, OUTPUT_FORMATS) || typeof directory !== "string") return undefined;
  return { directory, format: output.format as OutputFormat };
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

export function assertValid(manifest: unknown): asserts manifest is ArtifactManifest {
  const problems = validateArtifactManifest(manifest);
  if (problems.length > 0) throw new InvalidArgumentError("manifest", problems.join("; "));
}


/** Parses and validates manifest text; InvalidArgumentError("manifest", ...) on bad JSON or any problem. */
export function parseArtifactManifest(text: string): ArtifactManifest {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError("manifest", `not valid JSON: ${errorMessage(err)}`);
  }
  assertValid(value);
  return value;
}
