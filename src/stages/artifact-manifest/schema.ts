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
