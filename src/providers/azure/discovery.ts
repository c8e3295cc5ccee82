import type { PowerState, VirtualMachine, VMQuery } from "../../domain/vm.ts";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, quoteInput } from "../../errors.ts";
import { COMPUTE_API_VERSION, DISKS_API_VERSION, NETWORK_API_VERSION } from "./api-versions.ts";
import { ArmError, type ArmClient } from "./arm-client.ts";

export interface AzureVmDisk {
  role: "os" | "data";
  lun?: number;
  /** The managed disk's resource id. */
  id: string;
  name: string;
  resourceGroup: string;
  sizeBytes: number;
  sku: string;
  /** "Attached", "Reserved" (deallocated VM), "Unattached", "ActiveSAS" ...; undefined when the disk could not be read. */
  diskState?: string;
}

export interface AzureVmNic {
  name: string;
  /** "00:0d:3a:..." ("" when unknown). */
  macAddress: string;
  /** "vnet/subnet" of the primary IP configuration ("" when unknown). */
  network: string;
}

export interface AzureVm {
  id: string;
  name: string;
  resourceGroup: string;
  location: string;
  vmId: string;
  powerState: PowerState;
  size: string;
  osType: string;
  cpu: number;
  memoryMiB: number;
  firmware: "bios" | "efi";
  /** OS disk first, then data disks by LUN. */
  disks: AzureVmDisk[];
  nics: AzureVmNic[];
}

/** The parts of ARM's virtualMachines resource we read. */
interface ArmVm {
  id: string;
  name: string;
  location: string;
  properties?: {
    vmId?: string;
    hardwareProfile?: { vmSize?: string };
    securityProfile?: { securityType?: string };
    storageProfile?: {
      osDisk?: ArmVmDisk & { osType?: string };
      dataDisks?: (ArmVmDisk & { lun: number })[];
    };
    networkProfile?: { networkInterfaces?: { id: string; properties?: { primary?: boolean } }[] };
    instanceView?: { statuses?: { code?: string }[] };
  };
}

interface ArmVmDisk {
  name?: string;
  diskSizeGB?: number;
  managedDisk?: { id?: string; storageAccountType?: string };
}

interface ArmDisk {
  sku?: { name?: string };
  properties?: { diskSizeBytes?: number; diskSizeGB?: number; hyperVGeneration?: string; diskState?: string; osType?: string };
}

interface ArmNic {
  properties?: { macAddress?: string; ipConfigurations?: { properties?: { primary?: boolean; subnet?: { id?: string } } }[] };
}

interface ArmList<T> {
  value?: T[];
  nextLink?: string;
}

const GiB = 1024 ** 3;
/** Parallel ARM reads of one discovery (disks, NICs, instance views). */
const PARALLEL_READS = 6;
/** VM sizes change rarely; cached per resource manager, subscription and location. */
const SIZES_TTL_MS = 60 * 60_000;
const sizesCache = new Map<string, { at: number; sizes: Promise<Map<string, { cpu: number; memoryMiB: number }>> }>();

/** The VMs of the subscription (or of the connection's resource group, or of the query's folder = resource group), mapped. */
export async function listVms(arm: ArmClient, query: VMQuery, signal: AbortSignal): Promise<VirtualMachine[]> {
  const limit = arm.connection.resourceGroup;
  const group = query.folder?.replace(/^\/+|\/+$/g, "") || limit;
  // The connection's resource group is a limit: a folder outside it has nothing to show.
  if (limit && group.toLowerCase() !== limit.toLowerCase()) return [];
  const pattern = query.namePattern ? globToRegExp(query.namePattern) : undefined;
  const known = (vm: ArmVm) => vm.properties?.instanceView?.statuses;
  const raw = (await listArmVms(arm, group, signal)).filter((vm) =>
    (!pattern || pattern.test(vm.name)) && (!query.powerState || !known(vm) || powerStateOf(known(vm)!) === query.powerState));
  const vms = await mapLimit(raw, PARALLEL_READS, async (vm) => {
    try {
      return await completeVm(arm, vm, signal);
    } catch (err) {
      // Deleted between the listing and the read of its instance view: no longer there to list.
      if (!known(vm) && err instanceof ArmError && err.code === "NOT_FOUND" && /virtualMachines/i.test(err.armMessage)) return undefined;
      throw err;
    }
  });
  return vms
    .filter((vm) => vm !== undefined)
    .map(toVirtualMachine)
    .filter((vm) => !query.powerState || vm.powerState === query.powerState)
    .sort((a, b) => a.path.localeCompare(b.path));
}

/** One VM as the API shows it; `ref` as findVm takes it. */
export async function getVm(arm: ArmClient, ref: string, signal: AbortSignal): Promise<VirtualMachine> {
  return toVirtualMachine(await findVm(arm, ref, signal));
}

/**
 * A VM by name (in the connection's resource group, else anywhere in the subscription: refused when ambiguous),
 * by `resourceGroup/name`, or by resource id, with its disks, NICs and size read.
 */
export async function findVm(arm: ArmClient, ref: string, signal: AbortSignal): Promise<AzureVm> {
  const value = ref.trim();
  if (!value) throw new InvalidArgumentError("vm", "required: an Azure VM name, resourceGroup/name or resource id");
  const { subscriptionId, resourceGroup } = arm.connection;
  if (value.startsWith("/")) {
    const match = /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/Microsoft\.Compute\/virtualMachines\/([^/]+)$/i.exec(value);
    if (!match) throw new InvalidArgumentError("vm", `${quoteInput(value)} is not a virtual machine resource id (/subscriptions/…/resourceGroups/…/providers/Microsoft.Compute/virtualMachines/…)`);
    return completeVm(arm, await readVm(arm, value, signal), signal);
  }
  const parts = value.split("/");
  if (parts.length === 2 && parts[0] && parts[1]) {
    return completeVm(arm, await readVm(arm, vmPath(subscriptionId, parts[0], parts[1]), signal), signal);
  }
  if (parts.length !== 1) throw new InvalidArgumentError("vm", `${quoteInput(value)} is neither a VM name, resourceGroup/name nor a resource id`);
  if (resourceGroup) return completeVm(arm, await readVm(arm, vmPath(subscriptionId, resourceGroup, value), signal), signal);
  const found = (await listArmVms(arm, "", signal, false)).filter((vm) => vm.name.toLowerCase() === value.toLowerCase());
  if (found.length === 0) throw new NotFoundError(`Azure VM ${quoteInput(value)} not found in subscription ${subscriptionId}`);
  if (found.length > 1) {
    const candidates = found.map((vm) => `${groupOf(vm.id)}/${vm.name}`).sort();
    throw new FailedPreconditionError(`Azure VM name ${quoteInput(value)} is ambiguous in subscription ${subscriptionId}: ${candidates.join(", ")}; name one as resourceGroup/name`);
  }
  return completeVm(arm, await readVm(arm, found[0]!.id, signal), signal);
}

/** The VM as the API's VirtualMachine: path "resourceGroup/name" (a batch's folder is a resource group), moref the resource id. */
export function toVirtualMachine(vm: AzureVm): VirtualMachine {
  return {
    name: vm.name,
    path: `${vm.resourceGroup}/${vm.name}`,
    moref: vm.id,
    uuid: vm.vmId,
    instanceUuid: "",
    powerState: vm.powerState,
    guestOs: vm.osType,
    numCpu: vm.cpu,
    memoryMb: vm.memoryMiB,
    firmware: vm.firmware,
    disks: vm.disks.map((d) => ({
      label: d.role === "os" ? "OS disk" : `Data disk (LUN ${d.lun})`,
      capacityBytes: d.sizeBytes,
      file: d.id,
      sku: d.sku,
    })),
    nics: vm.nics.map((n) => ({ label: n.name, network: n.network, macAddress: n.macAddress })),
    size: vm.size,
    location: vm.location,
  };
}

function vmPath(subscription: string, group: string, name: string): string {
  return `/subscriptions/${encodeURIComponent(subscription)}/resourceGroups/${encodeURIComponent(group)}/providers/Microsoft.Compute/virtualMachines/${encodeURIComponent(name)}`;
}

async function readVm(arm: ArmClient, id: string, signal: AbortSignal): Promise<ArmVm> {
  const { body } = await arm.request<ArmVm>("GET", `${id}?$expand=instanceView`, { apiVersion: COMPUTE_API_VERSION, signal, what: `reading Azure VM ${nameOf(id)} in ${groupOf(id)}` });
  return body;
}

/** Every VM of a resource group ("" for the subscription), following nextLink; `withStatuses`: power states joined in. */
async function listArmVms(arm: ArmClient, group: string, signal: AbortSignal, withStatuses = true): Promise<ArmVm[]> {
  const subscription = encodeURIComponent(arm.connection.subscriptionId);
  const what = group ? `listing the VMs of resource group ${group}` : `listing the VMs of subscription ${arm.connection.subscriptionId}`;
  // ARM's listings give instance views (power states) only with a $filter, or, subscription-wide, as a listing of
  // their own (statusOnly=true): joined by id here; completeVm reads the instance view of any VM still without one.
  if (group) return pages<ArmVm>(arm, `/subscriptions/${subscription}/resourceGroups/${encodeURIComponent(group)}/providers/Microsoft.Compute/virtualMachines`, what, signal);
  const all = `/subscriptions/${subscription}/providers/Microsoft.Compute/virtualMachines`;
  if (!withStatuses) return pages<ArmVm>(arm, all, what, signal);
  const [vms, statuses] = await Promise.all([pages<ArmVm>(arm, all, what, signal), pages<ArmVm>(arm, `${all}?statusOnly=true`, `${what} (power states)`, signal)]);
  const views = new Map(statuses.filter((s) => s.properties?.instanceView?.statuses).map((s) => [s.id.toLowerCase(), s.properties!.instanceView!]));
  return vms.map((vm) => {
    const view = vm.properties?.instanceView?.statuses ? undefined : views.get(vm.id.toLowerCase());
    return view ? { ...vm, properties: { ...vm.properties, instanceView: view } } : vm;
  });
}

/** Every item of an ARM listing, following nextLink. */
async function pages<T>(arm: ArmClient, first: string, what: string, signal: AbortSignal): Promise<T[]> {
  const items: T[] = [];
  let next: string | undefined = first;
  for (let page = 0; next; page++) {
    if (page >= 1000) throw new FailedPreconditionError(`${what}: more than 1000 pages; Azure's nextLink does not end`);
    const { body }: { body: ArmList<T> } = await arm.request<ArmList<T>>("GET", next, { apiVersion: COMPUTE_API_VERSION, signal, what });
    items.push(...(body?.value ?? []));
    next = body?.nextLink || undefined;
  }
  return items;
}

/** The VM with its power state (read when the listing left it out), disks, NICs and size figures. */
async function completeVm(arm: ArmClient, vm: ArmVm, signal: AbortSignal): Promise<AzureVm> {
  const withView = vm.properties?.instanceView?.statuses ? vm : await readVm(arm, vm.id, signal);
  const props = withView.properties ?? {};
  const storage = props.storageProfile ?? {};
  const osDisk = storage.osDisk;
  const diskRefs: { role: "os" | "data"; lun?: number; ref: ArmVmDisk }[] = [
    ...(osDisk ? [{ role: "os" as const, ref: osDisk }] : []),
    ...[...(storage.dataDisks ?? [])].sort((a, b) => a.lun - b.lun).map((d) => ({ role: "data" as const, lun: d.lun, ref: d })),
  ];
  // Unmanaged disks (a VHD in a storage account) have no managed disk to snapshot or grant access to: not listed.
  const managed = diskRefs.filter((d) => d.ref.managedDisk?.id);
  const nicRefs = props.networkProfile?.networkInterfaces ?? [];
  const size = props.hardwareProfile?.vmSize ?? "";
  const [disks, nics, sizes] = await Promise.all([
    mapLimit(managed, PARALLEL_READS, (d) => readDisk(arm, d, signal)),
    mapLimit(nicRefs, PARALLEL_READS, (n) => readNic(arm, n.id, signal)),
    size && withView.location ? vmSizes(arm, withView.location) : Promise.resolve(new Map<string, { cpu: number; memoryMiB: number }>()),
  ]);
  const figures = sizes.get(size.toLowerCase());
  const securityType = props.securityProfile?.securityType ?? "";
  const gen2 = disks.find((d) => d.disk.role === "os")?.hyperVGeneration?.toUpperCase() === "V2";
  return {
    id: withView.id,
    name: withView.name,
    resourceGroup: groupOf(withView.id),
    location: withView.location,
    vmId: props.vmId ?? "",
    powerState: powerStateOf(props.instanceView?.statuses ?? []),
    size,
    osType: osDisk?.osType ?? disks.find((d) => d.disk.role === "os")?.osType ?? "",
    cpu: figures?.cpu ?? 0,
    memoryMiB: figures?.memoryMiB ?? 0,
    firmware: gen2 || /^(TrustedLaunch|ConfidentialVM)$/i.test(securityType) ? "efi" : "bios",
    disks: disks.map((d) => d.disk),
    nics,
  };
}

async function readDisk(arm: ArmClient, d: { role: "os" | "data"; lun?: number; ref: ArmVmDisk }, signal: AbortSignal): Promise<{ disk: AzureVmDisk; hyperVGeneration?: string; osType?: string }> {
  const id = d.ref.managedDisk!.id!;
  const known: AzureVmDisk = {
    role: d.role,
    ...(d.lun === undefined ? {} : { lun: d.lun }),
    id,
    name: d.ref.name || nameOf(id),
    resourceGroup: groupOf(id),
    sizeBytes: (d.ref.diskSizeGB ?? 0) * GiB,
    sku: d.ref.managedDisk?.storageAccountType ?? "",
  };
  let body: ArmDisk;
  try {
    ({ body } = await arm.request<ArmDisk>("GET", id, { apiVersion: DISKS_API_VERSION, signal, what: `reading disk ${nameOf(id)} in ${groupOf(id)}` }));
  } catch (err) {
    // A disk deleted under a listing: the VM still lists, with what the VM says of it.
    if (err instanceof ArmError && err.code === "NOT_FOUND") return { disk: known };
    throw err;
  }
  const p = body?.properties ?? {};
  const sizeBytes = p.diskSizeBytes ?? (p.diskSizeGB === undefined ? known.sizeBytes : p.diskSizeGB * GiB);
  return {
    disk: { ...known, sizeBytes, sku: body?.sku?.name ?? known.sku, ...(p.diskState ? { diskState: p.diskState } : {}) },
    hyperVGeneration: p.hyperVGeneration,
    osType: p.osType,
  };
}

async function readNic(arm: ArmClient, id: string, signal: AbortSignal): Promise<AzureVmNic> {
  const name = nameOf(id);
  let body: ArmNic;
  try {
    ({ body } = await arm.request<ArmNic>("GET", id, { apiVersion: NETWORK_API_VERSION, signal, what: `reading network interface ${name} in ${groupOf(id)}` }));
  } catch (err) {
    if (err instanceof ArmError && err.code === "NOT_FOUND") return { name, macAddress: "", network: "" };
    throw err;
  }
  const configs = body?.properties?.ipConfigurations ?? [];
  const primary = configs.find((c) => c.properties?.primary) ?? configs[0];
  const subnet = /\/virtualNetworks\/([^/]+)\/subnets\/([^/]+)$/i.exec(primary?.properties?.subnet?.id ?? "");
  return { name, macAddress: macOf(body?.properties?.macAddress ?? ""), network: subnet ? `${subnet[1]}/${subnet[2]}` : "" };
}

/** The location's VM sizes (CPUs, memory), by lower-case name. */
function vmSizes(arm: ArmClient, location: string): Promise<Map<string, { cpu: number; memoryMiB: number }>> {
  const key = `${arm.connection.resourceManager}\n${arm.connection.subscriptionId}\n${location.toLowerCase()}`;
  const cached = sizesCache.get(key);
  if (cached && Date.now() - cached.at < SIZES_TTL_MS) return cached.sizes;
  const sizes = (async () => {
    const path = `/subscriptions/${encodeURIComponent(arm.connection.subscriptionId)}/providers/Microsoft.Compute/locations/${encodeURIComponent(location)}/vmSizes`;
    // Shared by every discovery that waits for it: bound by its own deadline, not by the first caller's signal.
    const { body } = await arm.request<ArmList<{ name?: string; numberOfCores?: number; memoryInMB?: number }>>("GET", path, { apiVersion: COMPUTE_API_VERSION, signal: AbortSignal.timeout(5 * 60_000), what: `reading the VM sizes of ${location}` });
    return new Map((body?.value ?? []).filter((s) => s.name).map((s) => [s.name!.toLowerCase(), { cpu: s.numberOfCores ?? 0, memoryMiB: s.memoryInMB ?? 0 }]));
  })();
  sizesCache.set(key, { at: Date.now(), sizes });
  // A failed read is not kept: the next discovery tries again.
  sizes.catch(() => {
    if (sizesCache.get(key)?.sizes === sizes) sizesCache.delete(key);
  });
  return sizes;
}

function powerStateOf(statuses: { code?: string }[]): PowerState {
  const code = statuses.map((s) => s.code ?? "").find((c) => c.startsWith("PowerState/"));
  const state = code?.slice("PowerState/".length).toLowerCase();
  if (state === "running" || state === "starting") return "poweredOn";
  if (state === "deallocated" || state === "deallocating" || state === "stopped" || state === "stopping") return "poweredOff";
  return "unknown";
}

/** ARM's "00-0D-3A-12-34-56" as "00:0d:3a:12:34:56". */
function macOf(value: string): string {
  return value.replace(/-/g, ":").toLowerCase();
}

function groupOf(id: string): string {
  return /\/resourceGroups\/([^/]+)/i.exec(id)?.[1] ?? "";
}

function nameOf(id: string): string {
  return id.slice(id.lastIndexOf("/") + 1);
}

function globToRegExp(glob: string): RegExp {
  const source = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${source}$`, "i");
}

/** fn over items, at most `limit` at a time, results in order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
