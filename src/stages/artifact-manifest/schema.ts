/**
 * The artifact manifest (`artifact-manifest.json`, Artifact Manifest v1.0): what an export
 * produced, in the shape the conversion tool hyper2kvm reads (its loader in
 * ssahani/hyper2kvm hyper2kvm/manifest/loader.py, schema in
 * docs/reference/artifact-manifest-v1.0.schema.json).
 *
 * Where hyper2kvm is stricter than a plain description of the export, we follow hyper2kvm:
 * - `local_path` is written absolute: hyper2kvm resolves a relative one against its own
 *   working directory, not against the manifest.
 * - disk ids match ^[a-zA-Z0-9_-]+$ and checksums ^sha256:[a-f0-9]{64}$.
 * - `mem_gb`, when present, is an integer >= 1 (hyper2kvm refuses anything else).
 * Where a rounded or assumed figure would misstate the export, we say what is true instead:
 * - memory: `vm.mem_mib` is the exact size; `vm.mem_gb` is written only when the memory is a
 *   whole number of GiB (a 32 MiB VM has no honest integer mem_gb; hyper2kvm reads it as optional).
 *   A manifest needs one of the two; both must agree.
 * - `output.format` is the format of the disks the manifest lists, as written: the format they
 *   were converted to (qcow2, raw, vdi), or vmdk (vSphere) or vhd (Azure) when the export did not convert them. The
 *   package the export produced (ovf, ova) is named by `source.export_method` and
 *   `metadata.export_format`. hyper2kvm reads output.format as a string (its default qcow2
 *   when absent). Manifests written before, with a conversion target there, stay valid.
 * Both are additions within v1.0 as hyper2kvm reads it (it accepts only "1.0"), so the version stays.
 */

export const ARTIFACT_MANIFEST_FILE = "artifact-manifest.json";
export const ARTIFACT_MANIFEST_VERSION = "1.0";

export const DISK_FORMATS = ["vmdk", "qcow2", "raw", "vdi", "vhd", "vhdx"] as const;
export type DiskFormat = (typeof DISK_FORMATS)[number];
/** The values of `output.format`: the listed disks' own format (see the header). */
export const OUTPUT_FORMATS = ["vmdk", "qcow2", "raw", "vdi", "vhd"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];
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
  /** Exact memory size. */
  mem_mib: number;
  /** Only when the memory is a whole number of GiB. */
  mem_gb?: number;
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
  /** The format of the listed disks. */
  format: OutputFormat;
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
