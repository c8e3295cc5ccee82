import crypto from "node:crypto";
import type { Ctx } from "./context.ts";
import { keyOf, type DiskState, type NicState, type SnapshotState, type VmState } from "./state.ts";

/** Resources as ARM's REST API reference shows them (the wire shape: "properties" not flattened). */

export const idOf = (ctx: Ctx, rg: string, ns: string, type: string, name: string) =>
  `/subscriptions/${ctx.subscriptionId}/resourceGroups/${rg}/providers/${ns}/${type}/${name}`;

const gib = (bytes: number) => Math.ceil(bytes / 2 ** 30);
const tierOf = (sku: string) => (/^Premium/i.test(sku) ? "Premium" : /^StandardSSD/i.test(sku) ? "Standard" : /^Ultra/i.test(sku) ? "Ultra" : "Standard");

export function vmJson(ctx: Ctx, vm: VmState, withInstanceView: boolean): unknown {
  const os = ctx.state.disks.get(keyOf(vm.osDisk))!;
  const properties: Record<string, unknown> = {
    vmId: vm.vmId,
    hardwareProfile: { vmSize: vm.size },
    storageProfile: {
      imageReference: { publisher: "Canonical", offer: "ubuntu-24_04-lts", sku: "server", version: "latest", exactVersion: "24.04.202411030" },
      osDisk: {
        osType: os.osType ?? "Linux",
        name: os.name,
        createOption: "FromImage",
        caching: "ReadWrite",
        managedDisk: { storageAccountType: os.sku, id: os.id },
        deleteOption: "Delete",
        diskSizeGB: gib(os.sizeBytes),
      },
      dataDisks: vm.dataDisks.map(({ lun, disk }) => {
        const d = ctx.state.disks.get(keyOf(disk))!;
        return {
          lun,
          name: d.name,
          createOption: "Attach",
          caching: "None",
          managedDisk: { storageAccountType: d.sku, id: d.id },
          deleteOption: "Detach",
          diskSizeGB: gib(d.sizeBytes),
          toBeDetached: false,
        };
      }),
      diskControllerType: "SCSI",
    },
    osProfile: { computerName: vm.name, adminUsername: "azureuser", linuxConfiguration: { disablePasswordAuthentication: true }, secrets: [] },
    networkProfile: { networkInterfaces: vm.nics.map((id, i) => ({ id, properties: { primary: i === 0 } })) },
    diagnosticsProfile: { bootDiagnostics: { enabled: true } },
    provisioningState: "Succeeded",
    timeCreated: vm.timeCreated,
  };
  if (vm.securityType) {
    properties.securityProfile = { securityType: vm.securityType, uefiSettings: { secureBootEnabled: true, vTpmEnabled: true } };
  }
  if (withInstanceView) properties.instanceView = instanceView(ctx, vm);
  return { name: vm.name, id: vm.id, type: "Microsoft.Compute/virtualMachines", location: vm.location, tags: {}, properties };
}

const POWER_DISPLAY = { running: "VM running", deallocated: "VM deallocated", stopped: "VM stopped" } as const;

export function instanceView(ctx: Ctx, vm: VmState): unknown {
  const os = ctx.state.disks.get(keyOf(vm.osDisk))!;
  const time = new Date().toISOString();
  const diskNames = [os.name, ...vm.dataDisks.map((d) => ctx.state.disks.get(keyOf(d.disk))!.name)];
  return {
    computerName: vm.powerState === "running" ? vm.name : undefined,
    osName: vm.powerState === "running" ? (os.osType === "Windows" ? "Windows Server 2022 Datacenter" : "ubuntu") : undefined,
    hyperVGeneration: os.hyperVGeneration ?? "V1",
    disks: diskNames.map((name) => ({ name, statuses: [{ code: "ProvisioningState/succeeded", level: "Info", displayStatus: "Provisioning succeeded", time }] })),
    statuses: [
      { code: "ProvisioningState/succeeded", level: "Info", displayStatus: "Provisioning succeeded", time },
      { code: `PowerState/${vm.powerState}`, level: "Info", displayStatus: POWER_DISPLAY[vm.powerState] },
    ],
  };
}

export function grantOpen(ctx: Ctx, id: string): boolean {
  return ctx.state.grants.has(keyOf(id));
}

function diskState(ctx: Ctx, disk: DiskState): string {
  if (grantOpen(ctx, disk.id)) return "ActiveSAS";
  if (!disk.managedBy) return "Unattached";
  const vm = ctx.state.vms.get(keyOf(disk.managedBy));
  return vm?.powerState === "deallocated" ? "Reserved" : "Attached";
}

export function diskJson(ctx: Ctx, d: DiskState): unknown {
  return {
    name: d.name,
    id: d.id,
    type: "Microsoft.Compute/disks",
    location: d.location,
    ...(d.managedBy ? { managedBy: d.managedBy } : {}),
    sku: { name: d.sku, tier: tierOf(d.sku) },
    properties: {
      ...(d.osType ? { osType: d.osType } : {}),
      hyperVGeneration: d.hyperVGeneration ?? "V1",
      creationData: { createOption: d.osType ? "FromImage" : "Empty" },
      diskSizeGB: gib(d.sizeBytes),
      diskSizeBytes: d.sizeBytes,
      uniqueId: d.uniqueId,
      encryption: { type: "EncryptionAtRestWithPlatformKey" },
      networkAccessPolicy: "AllowAll",
      publicNetworkAccess: "Enabled",
      timeCreated: d.timeCreated,
      provisioningState: "Succeeded",
      diskState: diskState(ctx, d),
    },
  };
}

export function snapshotJson(ctx: Ctx, s: SnapshotState): unknown {
  return {
    name: s.name,
    id: s.id,
    type: "Microsoft.Compute/snapshots",
    location: s.location,
    sku: { name: "Standard_LRS", tier: "Standard" },
    properties: {
      ...(s.osType ? { osType: s.osType } : {}),
      ...(s.hyperVGeneration ? { hyperVGeneration: s.hyperVGeneration } : {}),
      creationData: { createOption: "Copy", sourceResourceId: s.sourceDiskId, sourceUniqueId: s.sourceUniqueId },
      diskSizeGB: gib(s.sizeBytes),
      diskSizeBytes: s.sizeBytes,
      uniqueId: s.uniqueId,
      encryption: { type: "EncryptionAtRestWithPlatformKey" },
      incremental: s.incremental,
      ...(s.incremental ? { completionPercent: s.provisioningState === "Succeeded" ? 100 : 0 } : {}),
      networkAccessPolicy: "AllowAll",
      publicNetworkAccess: "Enabled",
      timeCreated: s.timeCreated,
      provisioningState: s.provisioningState,
      diskState: grantOpen(ctx, s.id) ? "ActiveSAS" : "Unattached",
    },
  };
}

export function nicJson(ctx: Ctx, n: NicState): unknown {
  const subnetId = idOf(ctx, n.resourceGroup, "Microsoft.Network", "virtualNetworks", n.vnet) + `/subnets/${n.subnet}`;
  return {
    name: n.name,
    id: n.id,
    etag: `W/"${crypto.randomUUID()}"`,
    type: "Microsoft.Network/networkInterfaces",
    location: n.location,
    properties: {
      provisioningState: "Succeeded",
      resourceGuid: crypto.randomUUID(),
      ipConfigurations: [{
        name: "ipconfig1",
        id: `${n.id}/ipConfigurations/ipconfig1`,
        type: "Microsoft.Network/networkInterfaces/ipConfigurations",
        properties: {
          provisioningState: "Succeeded",
          privateIPAddress: "10.0.0.4",
          privateIPAllocationMethod: "Dynamic",
          subnet: { id: subnetId },
          primary: true,
          privateIPAddressVersion: "IPv4",
        },
      }],
      macAddress: n.macAddress,
      enableAcceleratedNetworking: false,
      enableIPForwarding: false,
      primary: true,
      virtualMachine: { id: n.vm },
      nicType: "Standard",
    },
  };
}
