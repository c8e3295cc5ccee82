import type { RemovableDevice } from "../domain/job.ts";

/**
 * Which virtual hardware Items of an OVF descriptor are which device, by their CIM RASD ResourceType
 * (DMTF CIM_ResourceAllocationSettingData) and, for sound cards (ResourceType 1, "Other"), the
 * VMware ResourceSubType.
 */
const MATCHERS: Record<RemovableDevice, (type: string, subType: string) => boolean> = {
  floppy: (type) => type === "14",
  cdrom: (type) => type === "15" || type === "16",
  serial: (type) => type === "21",
  parallel: (type) => type === "22",
  usb: (type) => type === "23",
  sound: (type, subType) => type === "1" && /sound|audio|es1371|sb16/i.test(subType),
};

/** An `<Item>` of a VirtualHardwareSection (any namespace prefix); Items do not nest. */
const ITEM = /([ \t]*)<((?:[\w.-]+:)?Item)\b[^>]*>([\s\S]*?)<\/\2>[ \t]*\r?\n?/g;

export interface RemovedDevice {
  kind: RemovableDevice;
  /** The Item's ElementName, e.g. "CD-ROM 1". */
  name: string;
}

/**
 * The descriptor without the Items of the given device kinds. Text edits only (the rest of the XML is
 * byte-for-byte what the hypervisor wrote); the source VM is not touched.
 */
export function removeDevices(descriptor: string, kinds: readonly RemovableDevice[]): { descriptor: string; removed: RemovedDevice[] } {
  const removed: RemovedDevice[] = [];
  if (kinds.length === 0) return { descriptor, removed };
  const edited = descriptor.replace(ITEM, (whole, _indent: string, _tag: string, body: string) => {
    const type = rasd(body, "ResourceType");
    const subType = rasd(body, "ResourceSubType");
    const kind = kinds.find((k) => MATCHERS[k](type, subType));
    if (!kind) return whole;
    removed.push({ kind, name: rasd(body, "ElementName") || `ResourceType ${type}` });
    return "";
  });
  return { descriptor: edited, removed };
}

/** The text of a rasd:NAME element inside an Item (any prefix). */
function rasd(body: string, name: string): string {
  const match = new RegExp(`<(?:[\\w.-]+:)?${name}\\b[^>]*>([^<]*)</(?:[\\w.-]+:)?${name}>`).exec(body);
  return match?.[1]?.trim() ?? "";
}
