import { FailedPreconditionError, InvalidArgumentError } from "../errors.ts";

/**
 * An OVF 1.x descriptor (DMTF DSP0243 1.1) written from a VM's properties, for sources that have no
 * CreateDescriptor of their own (Azure). What importers read of it, and why it is written this way:
 * - rasd and vssd elements in the CIM schema's (alphabetical) order: ovftool validates the order.
 * - `vssd:VirtualSystemType` "vmx-14" (ESXi 6.7 and later): vSphere's OVF import picks the virtual hardware
 *   version from it, and UEFI secure boot needs version 13 or later; VirtualBox and virt-v2v ignore the value.
 * - SCSI controllers (ResourceType 6): "lsilogicsas" for Windows (its own driver since Windows Server 2008;
 *   the parallel LSI Logic one is gone), "lsilogic" otherwise; 15 disks each (unit 7 is the controller's).
 * - NICs (ResourceType 10) as E1000e for Windows and E1000 otherwise: drivers every guest has built in
 *   (Azure's own NICs are Hyper-V synthetic ones, nothing an importer can give).
 * - Memory in "byte * 2^20" (DSP0004's programmatic unit for MegaBytes, what vSphere writes).
 * - EFI as VMware's `<vmw:Config vmw:key="firmware" vmw:value="efi">` (ovf:required="false": others skip it).
 * No timestamps and no generated ids: the same VM gives the same bytes, so a resumed job writes what the first
 * attempt wrote (and the .mf digest of the descriptor stays right).
 */

export interface OvfDisk {
  /** The disk file's name in the package (References href), e.g. "web-01-disk-1.vhd". */
  fileName: string;
  /** Bytes of that file. */
  fileSize: number;
  /** Bytes the guest sees. */
  capacityBytes: number;
  format: OvfDiskFormat;
}

export type OvfDiskFormat = "vhd" | "vmdk" | "qcow2" | "raw";

export interface OvfNic {
  /** e.g. "web-01-nic". */
  name: string;
  /** The network it is connected to, e.g. "vnet1/default"; "" when none is known. */
  network: string;
  /** "00:0d:3a:12:34:56". */
  macAddress?: string;
}

export interface OvfVm {
  name: string;
  cpu: number;
  memoryMiB: number;
  firmware: "bios" | "efi";
  /** Written only with EFI. */
  secureBoot?: boolean;
  /** "Linux", "Windows" (Azure's osType; any case) or anything else (then "other 64-bit"). */
  osType: string;
  /** e.g. "Exported from Azure VM /subscriptions/.../web-01 by hypervisord". */
  description?: string;
  /** In boot order: the first is the boot disk. */
  disks: OvfDisk[];
  nics: OvfNic[];
}

/**
 * The ovf:format URI of each disk format. VHD and streamOptimized VMDK are the URIs VirtualBox and ovftool
 * recognise (VHD: the link to Microsoft's VHD specification); qcow2 is the one oVirt and DMTF's own examples
 * use. Raw has no URI anyone registered: we name qemu's documentation of the format so the file is at least
 * described, not claimed to be something else.
 */
export const OVF_DISK_FORMAT_URI: Record<OvfDiskFormat, string> = {
  vhd: "http://go.microsoft.com/fwlink/?LinkId=137171",
  vmdk: "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized",
  qcow2: "http://www.gnome.org/~markmc/qcow-image-format.html",
  raw: "https://www.qemu.org/docs/master/system/images.html#disk-image-file-formats",
};

/** The CIM_OperatingSystem OSType (DSP0004 ValueMap) and VMware guest id written for an OS family. */
const OPERATING_SYSTEMS: Record<"linux" | "windows" | "other", { cimId: number; description: string; vmwOsType: string }> = {
  // 101 "Linux 64-Bit"; otherLinux64Guest is known to every vSphere release.
  linux: { cimId: 101, description: "Linux (64-bit)", vmwOsType: "otherLinux64Guest" },
  // Azure does not say which Windows: 103 "Microsoft Windows Server 2008 R2", the newest 64-bit server id
  // VirtualBox maps; the vSphere id is Windows Server 2016 and later (vSphere 6.5+), what Azure images run.
  windows: { cimId: 103, description: "Microsoft Windows Server (64-bit)", vmwOsType: "windows9Server64Guest" },
  other: { cimId: 102, description: "Other (64-bit)", vmwOsType: "otherGuest64" },
};

const DISKS_PER_CONTROLLER = 15;
const MAX_CONTROLLERS = 4;
/** SCSI unit numbers a disk may take: the controller itself is unit 7. */
const SCSI_UNITS = Array.from({ length: 16 }, (_, i) => i).filter((unit) => unit !== 7);

/** The descriptor, as UTF-8 text. Throws InvalidArgumentError on figures an importer would refuse. */
export function ovfDescriptor(vm: OvfVm): string {
  check(vm);
  const family = osFamily(vm.osType);
  const os = OPERATING_SYSTEMS[family];
  const windows = family === "windows";
  const networks = [...new Set(vm.nics.map(networkOf))];

  let instance = 0;
  const items: string[] = [];
  const item = (fields: Record<string, string | number | undefined>) => {
    // rasd elements in the schema's order (alphabetical), InstanceID among them.
    const all: Record<string, string | number | undefined> = { ...fields, InstanceID: ++instance };
    const lines = Object.keys(all).sort().filter((key) => all[key] !== undefined)
      .map((key) => `        <rasd:${key}>${text(String(all[key]))}</rasd:${key}>`);
    items.push(`      <Item>\n${lines.join("\n")}\n      </Item>`);
    return instance;
  };

  item({ AllocationUnits: "hertz * 10^6", Description: "Number of Virtual CPUs", ElementName: `${vm.cpu} virtual CPU(s)`, ResourceType: 3, VirtualQuantity: vm.cpu });
  item({ AllocationUnits: "byte * 2^20", Description: "Memory Size", ElementName: `${vm.memoryMiB}MB of memory`, ResourceType: 4, VirtualQuantity: vm.memoryMiB });
  const controllers: number[] = [];
  for (let c = 0; c < Math.ceil(vm.disks.length / DISKS_PER_CONTROLLER); c++) {
    controllers.push(item({ Address: c, Description: "SCSI Controller", ElementName: `SCSI controller ${c}`, ResourceSubType: windows ? "lsilogicsas" : "lsilogic", ResourceType: 6 }));
  }
  vm.disks.forEach((_disk, i) => {
    item({
      AddressOnParent: SCSI_UNITS[i % DISKS_PER_CONTROLLER],
      ElementName: `Hard disk ${i + 1}`,
      HostResource: `ovf:/disk/vmdisk${i + 1}`,
      Parent: controllers[Math.floor(i / DISKS_PER_CONTROLLER)],
      ResourceType: 17,
    });
  });
  vm.nics.forEach((nic, i) => {
    item({
      Address: nic.macAddress,
      AddressOnParent: 7 + i,
      AutomaticAllocation: "true",
      Connection: networkOf(nic),
      Description: `${windows ? "E1000e" : "E1000"} ethernet adapter on "${networkOf(nic)}" (${nic.name})`,
      ElementName: `Network adapter ${i + 1}`,
      ResourceSubType: windows ? "E1000e" : "E1000",
      ResourceType: 10,
    });
  });
  const configs = vm.firmware === "efi"
    ? [
      `      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>`,
      ...(vm.secureBoot === undefined ? [] : [`      <vmw:Config ovf:required="false" vmw:key="uefi.secureBoot.enabled" vmw:value="${vm.secureBoot}"/>`]),
    ]
    : [];

  const lines = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<!-- Written by hypervisord from the source VM's properties -->`,
    `<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xml:lang="en-US">`,
    `  <References>`,
    ...vm.disks.map((disk, i) => `    <File ovf:href="${attribute(disk.fileName)}" ovf:id="file${i + 1}" ovf:size="${disk.fileSize}"/>`),
    `  </References>`,
    `  <DiskSection>`,
    `    <Info>Virtual disk information</Info>`,
    ...vm.disks.map((disk, i) =>
      `    <Disk ovf:capacity="${disk.capacityBytes}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk${i + 1}" ovf:fileRef="file${i + 1}" ovf:format="${attribute(OVF_DISK_FORMAT_URI[disk.format])}"/>`),
    `  </DiskSection>`,
    ...(networks.length === 0 ? [] : [
      `  <NetworkSection>`,
      `    <Info>The list of logical networks</Info>`,
      ...networks.map((network) => `    <Network ovf:name="${attribute(network)}">\n      <Description>The ${text(network)} network</Description>\n    </Network>`),
      `  </NetworkSection>`,
    ]),
    `  <VirtualSystem ovf:id="${attribute(vm.name)}">`,
    `    <Info>A virtual machine</Info>`,
    `    <Name>${text(vm.name)}</Name>`,
    ...(vm.description ? [`    <AnnotationSection>`, `      <Info>A human-readable annotation</Info>`, `      <Annotation>${text(vm.description)}</Annotation>`, `    </AnnotationSection>`] : []),
    `    <OperatingSystemSection ovf:id="${os.cimId}" vmw:osType="${os.vmwOsType}">`,
    `      <Info>The kind of installed guest operating system</Info>`,
    `      <Description>${text(os.description)}</Description>`,
    `    </OperatingSystemSection>`,
    `    <VirtualHardwareSection>`,
    `      <Info>Virtual hardware requirements</Info>`,
    `      <System>`,
    `        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>`,
    `        <vssd:InstanceID>0</vssd:InstanceID>`,
    `        <vssd:VirtualSystemIdentifier>${text(vm.name)}</vssd:VirtualSystemIdentifier>`,
    `        <vssd:VirtualSystemType>vmx-14</vssd:VirtualSystemType>`,
    `      </System>`,
    ...items,
    ...configs,
    `    </VirtualHardwareSection>`,
    `  </VirtualSystem>`,
    `</Envelope>`,
  ];
  return `${lines.join("\n")}\n`;
}

function osFamily(osType: string): "linux" | "windows" | "other" {
  const name = osType.trim().toLowerCase();
  return name === "linux" || name === "windows" ? name : "other";
}

/** A NIC with no known network still needs a Connection: "VM Network", the name an importer maps from. */
const networkOf = (nic: OvfNic) => nic.network.trim() || "VM Network";

function check(vm: OvfVm): void {
  if (vm.name.trim() === "") throw new InvalidArgumentError("name", "must not be empty");
  positiveInteger(vm.cpu, "cpu");
  positiveInteger(vm.memoryMiB, "memoryMiB");
  if (vm.disks.length > DISKS_PER_CONTROLLER * MAX_CONTROLLERS) {
    throw new FailedPreconditionError(`${vm.name} has ${vm.disks.length} disks; an OVF descriptor holds at most ${DISKS_PER_CONTROLLER * MAX_CONTROLLERS} (${MAX_CONTROLLERS} SCSI controllers of ${DISKS_PER_CONTROLLER})`);
  }
  const names = new Set<string>();
  vm.disks.forEach((disk, i) => {
    // A References href is a path relative to the descriptor: one plain file name, so it stays in the package.
    if (disk.fileName === "" || disk.fileName === "." || disk.fileName === ".." || /[/\\]/.test(disk.fileName) || /[\0-\x1f]/.test(disk.fileName)) {
      throw new InvalidArgumentError(`disks[${i}].fileName`, `must be a plain file name, got ${JSON.stringify(disk.fileName)}`);
    }
    if (names.has(disk.fileName)) throw new InvalidArgumentError(`disks[${i}].fileName`, `${disk.fileName} is named twice`);
    names.add(disk.fileName);
    if (!(disk.format in OVF_DISK_FORMAT_URI)) throw new InvalidArgumentError(`disks[${i}].format`, `unknown format ${JSON.stringify(disk.format)}`);
    nonNegativeInteger(disk.fileSize, `disks[${i}].fileSize`);
    positiveInteger(disk.capacityBytes, `disks[${i}].capacityBytes`);
  });
  vm.nics.forEach((nic, i) => {
    if (nic.macAddress !== undefined && !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(nic.macAddress)) {
      throw new InvalidArgumentError(`nics[${i}].macAddress`, `must be six ":"-separated hex bytes, got ${JSON.stringify(nic.macAddress)}`);
    }
  });
}

function positiveInteger(value: number, field: string): void {
  if (!Number.isSafeInteger(value) || value < 1) throw new InvalidArgumentError(field, `must be a whole number >= 1, got ${value}`);
}

function nonNegativeInteger(value: number, field: string): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new InvalidArgumentError(field, `must be a whole number >= 0, got ${value}`);
}

/**
 * Characters XML 1.0 cannot hold at all (C0 controls but tab, CR and LF; lone surrogates; U+FFFE/U+FFFF) become
 * U+FFFD: a name from a user must not make the descriptor unreadable.
 */
const NOT_XML = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu;

/** Element content; CR as a reference, or the parser's line-end normalisation would turn it into LF. */
function text(value: string): string {
  return value.replace(NOT_XML, "\uFFFD").replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/\r/g, "&#13;");
}

/** A double-quoted attribute value; tab, CR and LF as references, or attribute normalisation would turn them into spaces. */
function attribute(value: string): string {
  return text(value).replace(/"/g, "&quot;").replace(/'/g, "&apos;").replace(/\t/g, "&#9;").replace(/\n/g, "&#10;");
}
