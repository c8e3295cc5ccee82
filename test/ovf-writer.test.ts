import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { XMLParser, XMLValidator } from "fast-xml-parser";
import { FailedPreconditionError, InvalidArgumentError } from "../src/errors.ts";
import { UNRECORDED } from "../src/files/written-files.ts";
import { writeManifest } from "../src/package/manifest.ts";
import { removeDevices } from "../src/package/ovf-devices.ts";
import { ovfDescriptor, OVF_DISK_FORMAT_URI, type OvfVm } from "../src/package/ovf-writer.ts";
import { writeOvaFromFiles } from "../src/package/ova-writer.ts";
import { validateOva } from "../src/package/validate-ova.ts";

const MiB = 1024 * 1024;

const WEB: OvfVm = {
  name: "web-01",
  cpu: 2,
  memoryMiB: 3584,
  firmware: "bios",
  osType: "Linux",
  description: "Exported from Azure VM /subscriptions/s1/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/web-01 by hypervisord",
  disks: [
    { fileName: "web-01-disk-1.vhd", fileSize: 64 * MiB + 512, capacityBytes: 64 * MiB, format: "vhd" },
    { fileName: "web-01-disk-2.vhd", fileSize: 128 * MiB + 512, capacityBytes: 128 * MiB, format: "vhd" },
  ],
  nics: [
    { name: "web-01-nic", network: "vnet1/default", macAddress: "00:0d:3a:12:34:56" },
    { name: "web-01-nic2", network: "vnet1/backend", macAddress: "00:0d:3a:12:34:57" },
    { name: "web-01-nic3", network: "vnet1/default" },
  ],
};

type Attributes = Record<string, string>;
interface Item { [rasd: string]: string }
interface Parsed {
  references: Attributes[];
  disks: Attributes[];
  networks: Attributes[];
  system: Attributes & { Name: string; AnnotationSection?: { Annotation: string } };
  os: Attributes;
  vssd: Record<string, string>;
  items: Item[];
  configs: Attributes[];
}

/** The descriptor through fast-xml-parser, attributes and element names keeping their prefixes. */
function parse(xml: string): Parsed {
  assert.equal(XMLValidator.validate(xml), true);
  const parser = new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: "@",
    parseTagValue: false,
    parseAttributeValue: false,
    htmlEntities: true, // numeric character references (&#9;) decoded as any XML parser does
    isArray: (name) => ["File", "Disk", "Network", "Item", "vmw:Config"].includes(name),
  });
  const envelope = parser.parse(xml).Envelope;
  assert.equal(envelope["@xmlns"], "http://schemas.dmtf.org/ovf/envelope/1");
  assert.equal(envelope["@xmlns:ovf"], "http://schemas.dmtf.org/ovf/envelope/1");
  assert.equal(envelope["@xmlns:rasd"], "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData");
  assert.equal(envelope["@xmlns:vssd"], "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData");
  assert.equal(envelope["@xmlns:vmw"], "http://www.vmware.com/schema/ovf");
  const system = envelope.VirtualSystem;
  const hardware = system.VirtualHardwareSection;
  return {
    references: envelope.References.File ?? [],
    disks: envelope.DiskSection.Disk ?? [],
    networks: envelope.NetworkSection?.Network ?? [],
    system,
    os: system.OperatingSystemSection,
    vssd: hardware.System,
    items: hardware.Item,
    configs: hardware["vmw:Config"] ?? [],
  };
}

const byType = (items: Item[], type: number) => items.filter((item) => item["rasd:ResourceType"] === String(type));

describe("ovfDescriptor", () => {
  test("References, DiskSection, NetworkSection and the VirtualSystem carry the VM's figures", () => {
    const ovf = parse(ovfDescriptor(WEB));
    assert.deepEqual(ovf.references.map((f) => [f["@ovf:id"], f["@ovf:href"], f["@ovf:size"]]), [
      ["file1", "web-01-disk-1.vhd", String(64 * MiB + 512)],
      ["file2", "web-01-disk-2.vhd", String(128 * MiB + 512)],
    ]);
    assert.deepEqual(ovf.disks.map((d) => [d["@ovf:diskId"], d["@ovf:fileRef"], d["@ovf:capacity"], d["@ovf:capacityAllocationUnits"], d["@ovf:format"]]), [
      ["vmdisk1", "file1", String(64 * MiB), "byte", "http://go.microsoft.com/fwlink/?LinkId=137171"],
      ["vmdisk2", "file2", String(128 * MiB), "byte", "http://go.microsoft.com/fwlink/?LinkId=137171"],
    ]);
    // One Network per distinct network, in first-use order.
    assert.deepEqual(ovf.networks.map((n) => n["@ovf:name"]), ["vnet1/default", "vnet1/backend"]);

    assert.equal(ovf.system["@ovf:id"], "web-01");
    assert.equal(ovf.system.Name, "web-01");
    assert.match(ovf.system.AnnotationSection!.Annotation, /^Exported from Azure VM \/subscriptions\/s1\/.*web-01 by hypervisord$/);
    assert.deepEqual([ovf.os["@ovf:id"], ovf.os["@vmw:osType"]], ["101", "otherLinux64Guest"]);
    assert.equal(ovf.vssd["vssd:VirtualSystemType"], "vmx-14");
    assert.equal(ovf.vssd["vssd:VirtualSystemIdentifier"], "web-01");

    // CPU, memory, one controller, two disks, three NICs; InstanceIDs unique.
    assert.deepEqual(ovf.items.map((i) => Number(i["rasd:ResourceType"])), [3, 4, 6, 17, 17, 10, 10, 10]);
    assert.equal(new Set(ovf.items.map((i) => i["rasd:InstanceID"])).size, ovf.items.length);
    const [cpu] = byType(ovf.items, 3);
    assert.equal(cpu!["rasd:VirtualQuantity"], "2");
    const [memory] = byType(ovf.items, 4);
    assert.deepEqual([memory!["rasd:VirtualQuantity"], memory!["rasd:AllocationUnits"]], ["3584", "byte * 2^20"]);
    const [controller] = byType(ovf.items, 6);
    assert.equal(controller!["rasd:ResourceSubType"], "lsilogic");
    const disks = byType(ovf.items, 17);
    assert.deepEqual(disks.map((d) => [d["rasd:HostResource"], d["rasd:Parent"], d["rasd:AddressOnParent"]]), [
      ["ovf:/disk/vmdisk1", controller!["rasd:InstanceID"], "0"],
      ["ovf:/disk/vmdisk2", controller!["rasd:InstanceID"], "1"],
    ]);
    const nics = byType(ovf.items, 10);
    assert.deepEqual(nics.map((n) => [n["rasd:Connection"], n["rasd:Address"], n["rasd:AutomaticAllocation"], n["rasd:ResourceSubType"]]), [
      ["vnet1/default", "00:0d:3a:12:34:56", "true", "E1000"],
      ["vnet1/backend", "00:0d:3a:12:34:57", "true", "E1000"],
      ["vnet1/default", undefined, "true", "E1000"],
    ]);
    // BIOS: no firmware config at all (vSphere's default is BIOS).
    assert.deepEqual(ovf.configs, []);
  });

  test("rasd elements are in the CIM schema's order (ovftool refuses others)", () => {
    const xml = ovfDescriptor(WEB);
    for (const [, body] of xml.matchAll(/<Item>([\s\S]*?)<\/Item>/g)) {
      const names = [...body!.matchAll(/<rasd:(\w+)>/g)].map((m) => m[1]!);
      assert.deepEqual(names, [...names].sort(), body);
    }
  });

  test("EFI (gen2) writes VMware's firmware config, and secure boot when known", () => {
    const efi = parse(ovfDescriptor({ ...WEB, firmware: "efi" }));
    assert.deepEqual(efi.configs.map((c) => [c["@vmw:key"], c["@vmw:value"], c["@ovf:required"]]), [["firmware", "efi", "false"]]);
    const secure = parse(ovfDescriptor({ ...WEB, firmware: "efi", secureBoot: true }));
    assert.deepEqual(secure.configs.map((c) => [c["@vmw:key"], c["@vmw:value"]]), [["firmware", "efi"], ["uefi.secureBoot.enabled", "true"]]);
    // Secure boot without EFI means nothing: not written.
    assert.deepEqual(parse(ovfDescriptor({ ...WEB, firmware: "bios", secureBoot: true })).configs, []);
  });

  test("the OS type gives the CIM OS id and the VMware guest id; Windows gets SAS and E1000e", () => {
    const windows = parse(ovfDescriptor({ ...WEB, osType: "Windows" }));
    assert.deepEqual([windows.os["@ovf:id"], windows.os["@vmw:osType"]], ["103", "windows9Server64Guest"]);
    assert.equal(byType(windows.items, 6)[0]!["rasd:ResourceSubType"], "lsilogicsas");
    assert.deepEqual(byType(windows.items, 10).map((n) => n["rasd:ResourceSubType"]), ["E1000e", "E1000e", "E1000e"]);
    const other = parse(ovfDescriptor({ ...WEB, osType: "" }));
    assert.deepEqual([other.os["@ovf:id"], other.os["@vmw:osType"]], ["102", "otherGuest64"]);
    assert.equal(parse(ovfDescriptor({ ...WEB, osType: "linux" })).os["@ovf:id"], "101");
  });

  test("every format has its URI; streamOptimized VMDK is VMware's", () => {
    const formats = ["vhd", "vmdk", "qcow2", "raw"] as const;
    const ovf = parse(ovfDescriptor({ ...WEB, disks: formats.map((format, i) => ({ fileName: `d${i}.${format}`, fileSize: 1000 + i, capacityBytes: MiB, format })) }));
    assert.deepEqual(ovf.disks.map((d) => d["@ovf:format"]), formats.map((f) => OVF_DISK_FORMAT_URI[f]));
    assert.equal(OVF_DISK_FORMAT_URI.vmdk, "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized");
  });

  test("user-given names are escaped: the XML stays well-formed and the names read back as given", () => {
    const name = `a<b>&"c" 'd'\tend`;
    const vm: OvfVm = {
      ...WEB,
      name,
      description: "line1\r\nline2 </Annotation><Evil/>",
      disks: [{ fileName: `x&y "1".vhd`, fileSize: 1024, capacityBytes: 512, format: "vhd" }],
      nics: [{ name: "n<1>", network: `vnet"&<x>/sub'net`, macAddress: "00:0D:3A:AA:BB:CC" }],
    };
    const xml = ovfDescriptor(vm);
    assert.doesNotMatch(xml, /<Evil/);
    const ovf = parse(xml);
    assert.equal(ovf.system["@ovf:id"], name);
    assert.equal(ovf.system.Name, name);
    assert.equal(ovf.system.AnnotationSection!.Annotation, "line1\r\nline2 </Annotation><Evil/>");
    assert.equal(ovf.references[0]!["@ovf:href"], `x&y "1".vhd`);
    assert.equal(ovf.networks[0]!["@ovf:name"], `vnet"&<x>/sub'net`);
    assert.equal(byType(ovf.items, 10)[0]!["rasd:Connection"], `vnet"&<x>/sub'net`);
  });

  test("characters XML cannot hold become U+FFFD; a strict XML parser (Python's expat) reads the result", () => {
    const xml = ovfDescriptor({ ...WEB, name: "bad\u0001name\u0000\ud800x" });
    assert.equal(parse(xml).system.Name, "bad\ufffdname\ufffd\ufffdx");
    const python = spawnSync("python3", ["-c", [
      "import sys, json, xml.dom.minidom as m",
      "d = m.parseString(sys.stdin.buffer.read())",
      "vs = d.getElementsByTagName('VirtualSystem')[0]",
      "print(json.dumps([vs.getAttribute('ovf:id'), len(d.getElementsByTagName('Item'))]))",
    ].join("\n")], { input: xml, encoding: "utf8" });
    if (python.error) return; // no python3: fast-xml-parser's check above stands
    assert.equal(python.status, 0, python.stderr);
    assert.deepEqual(JSON.parse(python.stdout), ["bad\ufffdname\ufffd\ufffdx", 8]);
  });

  test("deterministic: the same VM gives the same bytes", () => {
    assert.equal(ovfDescriptor(structuredClone(WEB)), ovfDescriptor(structuredClone(WEB)));
  });

  test("more than 15 disks: another SCSI controller, unit 7 skipped; more than 60 refused", () => {
    const disks = Array.from({ length: 17 }, (_, i) => ({ fileName: `d${i}.vhd`, fileSize: 1024, capacityBytes: 512, format: "vhd" as const }));
    const ovf = parse(ovfDescriptor({ ...WEB, disks }));
    const controllers = byType(ovf.items, 6);
    assert.deepEqual(controllers.map((c) => c["rasd:Address"]), ["0", "1"]);
    const items = byType(ovf.items, 17);
    assert.deepEqual(items.map((d) => d["rasd:AddressOnParent"]), ["0", "1", "2", "3", "4", "5", "6", "8", "9", "10", "11", "12", "13", "14", "15", "0", "1"]);
    assert.deepEqual(new Set(items.slice(0, 15).map((d) => d["rasd:Parent"])), new Set([controllers[0]!["rasd:InstanceID"]]));
    assert.deepEqual(items.slice(15).map((d) => d["rasd:Parent"]), [controllers[1]!["rasd:InstanceID"], controllers[1]!["rasd:InstanceID"]]);
    const many = Array.from({ length: 61 }, (_, i) => ({ fileName: `d${i}.vhd`, fileSize: 1024, capacityBytes: 512, format: "vhd" as const }));
    assert.throws(() => ovfDescriptor({ ...WEB, disks: many }), (err) => err instanceof FailedPreconditionError && /61 disks/.test(err.message));
  });

  test("figures an importer would refuse are INVALID_ARGUMENT naming the field", () => {
    const refused = (vm: OvfVm, field: string) =>
      assert.throws(() => ovfDescriptor(vm), (err) => err instanceof InvalidArgumentError && err.field === field, field);
    const disk = WEB.disks[0]!;
    refused({ ...WEB, cpu: 0 }, "cpu");
    refused({ ...WEB, memoryMiB: 1.5 }, "memoryMiB");
    refused({ ...WEB, name: " " }, "name");
    refused({ ...WEB, disks: [{ ...disk, fileName: "../etc/passwd" }] }, "disks[0].fileName");
    refused({ ...WEB, disks: [{ ...disk, fileName: ".." }] }, "disks[0].fileName");
    refused({ ...WEB, disks: [disk, { ...disk }] }, "disks[1].fileName");
    refused({ ...WEB, disks: [{ ...disk, capacityBytes: 0 }] }, "disks[0].capacityBytes");
    refused({ ...WEB, disks: [{ ...disk, fileSize: -1 }] }, "disks[0].fileSize");
    refused({ ...WEB, nics: [{ name: "n", network: "v/s", macAddress: "00-0D-3A-12-34-56" }] }, "nics[0].macAddress");
  });

  test("removeDevices (remove_devices) reads the written Items: nothing removable, the descriptor unchanged", () => {
    const xml = ovfDescriptor(WEB);
    assert.deepEqual(removeDevices(xml, ["cdrom", "floppy", "usb", "sound", "serial", "parallel"]), { descriptor: xml, removed: [] });
  });
});

describe("the package reader accepts a package with the written descriptor", () => {
  let dir: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "ovf-writer-"));
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  /** web-01.ovf, two small disks and web-01.mf in `dir`, packed as an OVA in that order. */
  async function writePackage(sub: string, sizeOf: (disk: { size: number }) => number): Promise<string> {
    const vmDir = path.join(dir, sub);
    await fs.mkdir(vmDir);
    const disks = [randomBytes(3 * 512), randomBytes(5 * 512)].map((data, i) => ({ name: `web-01-disk-${i + 1}.vhd`, data }));
    for (const disk of disks) await fs.writeFile(path.join(vmDir, disk.name), disk.data);
    const descriptor = ovfDescriptor({
      ...WEB,
      disks: disks.map((d) => ({ fileName: d.name, fileSize: sizeOf({ size: d.data.length }), capacityBytes: d.data.length - 512, format: "vhd" })),
    });
    await fs.writeFile(path.join(vmDir, "web-01.ovf"), descriptor);
    const sha256 = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");
    await writeManifest(path.join(vmDir, "web-01.mf"), [
      { path: "web-01.ovf", sha256: sha256(descriptor) },
      ...disks.map((d) => ({ path: d.name, sha256: sha256(d.data) })),
    ], "sha256", UNRECORDED);
    const names = ["web-01.ovf", ...disks.map((d) => d.name), "web-01.mf"];
    const files = await Promise.all(names.map(async (name) => ({ name, path: path.join(vmDir, name), size: (await fs.stat(path.join(vmDir, name))).size })));
    const ova = path.join(vmDir, "web-01.ova");
    await writeOvaFromFiles(ova, files, { signal: AbortSignal.timeout(10_000) });
    return ova;
  }

  test("validateOva (hyperctl ova validate): valid, every entry as the descriptor and manifest say", async () => {
    const ova = await writePackage("good", (d) => d.size);
    const validation = await validateOva(ova);
    assert.deepEqual(validation.problems, []);
    assert.equal(validation.valid, true);
    assert.deepEqual(validation.entries.map((e) => e.name), ["web-01.ovf", "web-01-disk-1.vhd", "web-01-disk-2.vhd", "web-01.mf"]);
  });

  test("a descriptor whose References size is wrong is reported (the check can fail)", async () => {
    const ova = await writePackage("bad", (d) => d.size + 512);
    const validation = await validateOva(ova);
    assert.equal(validation.valid, false);
    assert.match(validation.problems.join("\n"), /web-01-disk-1\.vhd: References gives its size as 2048 bytes, the entry has 1536 bytes/);
  });
});
