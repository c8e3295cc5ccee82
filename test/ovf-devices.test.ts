import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { XMLParser } from "fast-xml-parser";
import { removeDevices } from "../src/package/ovf-devices.ts";

/** An Item as vSphere's OvfManager.CreateDescriptor writes it. */
const item = (name: string, type: number, subType = "", extra = "") => `      <Item${extra}>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>${name}</rasd:ElementName>
        <rasd:InstanceID>${type * 10}</rasd:InstanceID>${subType ? `\n        <rasd:ResourceSubType>${subType}</rasd:ResourceSubType>` : ""}
        <rasd:ResourceType>${type}</rasd:ResourceType>
      </Item>
`;

const DESCRIPTOR = `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf">
  <VirtualSystem ovf:id="web-01">
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
${item("2 virtual CPU(s)", 3)}${item("4096MB of memory", 4)}${item("IDE 0", 5)}${item("CD-ROM 1", 15, "vmware.cdrom.remotepassthrough", ' ovf:required="false"')}${item("Floppy drive 1", 14, "vmware.floppy.remotedevice")}${item("Serial port 1", 21, "vmware.serialport.device")}${item("Parallel port 1", 22)}${item("USB controller", 23, "vmware.usb.ehci")}${item("Sound card", 1, "vmware.soundcard.hdaudio")}${item("Video card", 24)}${item("Hard disk 1", 17)}${item("Network adapter 1", 10, "VmxNet3")}      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`;

const types = (xml: string) => {
  const parsed = new XMLParser({ removeNSPrefix: true }).parse(xml) as { Envelope: { VirtualSystem: { VirtualHardwareSection: { Item: { ResourceType: number }[] } } } };
  return parsed.Envelope.VirtualSystem.VirtualHardwareSection.Item.map((i) => i.ResourceType);
};

describe("removeDevices", () => {
  test("no kinds: the descriptor is returned unchanged", () => {
    assert.deepEqual(removeDevices(DESCRIPTOR, []), { descriptor: DESCRIPTOR, removed: [] });
  });

  test("cdrom and floppy: only those Items go, the rest is byte-for-byte the same", () => {
    const { descriptor, removed } = removeDevices(DESCRIPTOR, ["cdrom", "floppy"]);
    assert.deepEqual(removed, [{ kind: "cdrom", name: "CD-ROM 1" }, { kind: "floppy", name: "Floppy drive 1" }]);
    assert.deepEqual(types(descriptor), [3, 4, 5, 21, 22, 23, 1, 24, 17, 10]);
    assert.equal(descriptor, DESCRIPTOR.replace(item("CD-ROM 1", 15, "vmware.cdrom.remotepassthrough", ' ovf:required="false"'), "").replace(item("Floppy drive 1", 14, "vmware.floppy.remotedevice"), ""));
  });

  test("every kind: serial, parallel, USB and the sound card (ResourceType 1 with a sound subtype), not the video card", () => {
    const { descriptor, removed } = removeDevices(DESCRIPTOR, ["cdrom", "floppy", "serial", "parallel", "usb", "sound"]);
    assert.deepEqual(removed.map((r) => r.kind).sort(), ["cdrom", "floppy", "parallel", "serial", "sound", "usb"]);
    assert.deepEqual(types(descriptor), [3, 4, 5, 24, 17, 10]);
    assert.match(descriptor, /vmw:key="firmware"/);
  });

  test("Items under another namespace prefix (ovf:Item) are matched too", () => {
    const prefixed = DESCRIPTOR.replaceAll("<Item", "<ovf:Item").replaceAll("</Item>", "</ovf:Item>");
    const { removed } = removeDevices(prefixed, ["cdrom"]);
    assert.deepEqual(removed, [{ kind: "cdrom", name: "CD-ROM 1" }]);
  });
});
