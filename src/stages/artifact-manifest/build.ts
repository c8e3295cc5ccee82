import path from "node:path";
import { InvalidArgumentError } from "../../errors.ts";
import { writeFileAtomic } from "../../files/write-file-atomic.ts";
import { UNRECORDED, type WrittenFiles } from "../../files/written-files.ts";
import { VERSION } from "../../version.ts";
import {
  ARTIFACT_MANIFEST_FILE,
  ARTIFACT_MANIFEST_VERSION,
  DISK_FORMATS,
  type ArtifactDisk,
  type ArtifactManifest,
  type ArtifactSource,
  type ArtifactVm,
  type DiskFormat,
  type ExportFormat,
  type JsonValue,
  type OsHint,
  type OutputFormat,
  OUTPUT_FORMATS,
} from "./schema.ts";
import { assertValid } from "./validate.ts";

// Building artifact-manifest.json from what an export produced (finish-export.ts), and writing it.

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
  const disks = input.disks.map((disk, index) => buildDisk(disk, index, input.directory));
  const manifest: ArtifactManifest = {
    manifest_version: ARTIFACT_MANIFEST_VERSION,
    source: buildSource(input.source, input.exportFormat),
    vm: buildVm(input.vm),
    disks,
    output: { directory: input.directory, format: outputFormatOf(disks) },
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
    mem_mib: vm.memoryMiB,
    // hyper2kvm takes only a whole number: left out when it would be a rounded one.
    ...(vm.memoryMiB % 1024 === 0 ? { mem_gb: vm.memoryMiB / 1024 } : {}),
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

/** The disks' own format; every disk of one export has the same. */
function outputFormatOf(disks: readonly ArtifactDisk[]): OutputFormat {
  const formats = [...new Set(disks.map((d) => d.source_format))];
  const format = formats[0];
  if (formats.length !== 1 || !(OUTPUT_FORMATS as readonly string[]).includes(format!)) {
    throw new InvalidArgumentError("disks", `must all be one of ${OUTPUT_FORMATS.join(", ")}, in one format; got ${formats.join(", ") || "none"}`);
  }
  return format as OutputFormat;
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

/** Validates, then writes `<dir>/artifact-manifest.json` atomically; returns its path. */
export async function writeArtifactManifest(dir: string, manifest: ArtifactManifest, files: WrittenFiles = UNRECORDED): Promise<string> {
  assertValid(manifest);
  const file = path.join(dir, ARTIFACT_MANIFEST_FILE);
  await writeFileAtomic(file, `${JSON.stringify(manifest, null, 2)}\n`, files);
  return file;
}
