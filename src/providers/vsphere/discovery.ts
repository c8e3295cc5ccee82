import type { PowerState, VirtualDisk, VirtualMachine, VirtualNic, VMQuery } from "../../domain/vm.ts";
import { FailedPreconditionError, NotFoundError } from "../../errors.ts";
import { VSphereFault } from "./faults.ts";
import { retrieveFromContainer, retrieveOne, type ObjectContent } from "./property-collector.ts";
import type { VSphereSession } from "./session.ts";
import { child, moRefOf, textOf, type MoRef, type XmlNode } from "./xml.ts";

const VM_PATHS = [
  "name", "parent", "parentVApp", "runtime.powerState", "config.uuid", "config.instanceUuid", "config.guestId",
  "config.guestFullName", "config.hardware.numCPU", "config.hardware.memoryMB", "config.firmware", "config.hardware.device",
] as const;

const CONTAINER_TYPES = ["Folder", "Datacenter", "VirtualApp"];

/** name and parent of every folder, datacenter and vApp: enough to build inventory paths. */
type Containers = Map<string, { name: string; parent?: string }>;

const key = (ref: MoRef) => `${ref.type}:${ref.value}`;

async function containers(session: VSphereSession, signal: AbortSignal): Promise<Containers> {
  const map: Containers = new Map();
  const specs = CONTAINER_TYPES.map((type) => ({ type, paths: ["name", "parent"] }));
  for await (const page of retrieveFromContainer(session, session.content.rootFolder, specs, signal)) {
    for (const o of page) {
      const parent = moRefOf(o.props.get("parent"));
      map.set(key(o.obj), { name: o.props.get("name")?.text ?? "", parent: parent && key(parent) });
    }
  }
  return map;
}

/** "/DC0/vm/web/web-01": names from the datacenter down, "/" in a name escaped as vSphere does (%2f). */
function inventoryPath(name: string, parent: string | undefined, all: Containers, root: MoRef): string {
  const parts = [name];
  for (let at = parent, depth = 0; at && at !== key(root) && depth < 64; depth++) {
    const entry = all.get(at);
    if (!entry) break;
    parts.unshift(entry.name);
    at = entry.parent;
  }
  return `/${parts.map((p) => p.replace(/%/g, "%25").replace(/\//g, "%2f")).join("/")}`;
}

function powerStateOf(value: string | undefined): PowerState {
  return value === "poweredOn" || value === "poweredOff" || value === "suspended" ? value : "unknown";
}

function devicesOf(val: XmlNode | undefined): { disks: VirtualDisk[]; nics: VirtualNic[] } {
  const disks: VirtualDisk[] = [];
  const nics: VirtualNic[] = [];
  for (const device of val?.children ?? []) {
    const label = textOf(child(device, "deviceInfo"), "label");
    if (device.type === "VirtualDisk") {
      const bytes = textOf(device, "capacityInBytes");
      disks.push({
        label,
        capacityBytes: bytes ? Number(bytes) : Number(textOf(device, "capacityInKB") || 0) * 1024,
        file: textOf(child(device, "backing"), "fileName"),
      });
    } else if (child(device, "macAddress")) {
      const backing = child(device, "backing");
      nics.push({
        label,
        network: textOf(backing, "deviceName") || textOf(child(backing, "port"), "portgroupKey"),
        macAddress: textOf(device, "macAddress"),
      });
    }
  }
  return { disks, nics };
}

function vmOf(o: ObjectContent, all: Containers, root: MoRef): VirtualMachine {
  const text = (p: string) => o.props.get(p)?.text ?? "";
  const parent = moRefOf(o.props.get("parent") ?? o.props.get("parentVApp"));
  const name = text("name");
  return {
    name,
    path: inventoryPath(name, parent && key(parent), all, root),
    moref: o.obj.value,
    uuid: text("config.uuid"),
    instanceUuid: text("config.instanceUuid"),
    powerState: powerStateOf(text("runtime.powerState")),
    guestOs: text("config.guestFullName") || text("config.guestId"),
    numCpu: Number(text("config.hardware.numCPU") || 0),
    memoryMb: Number(text("config.hardware.memoryMB") || 0),
    firmware: text("config.firmware") || "bios",
    ...devicesOf(o.props.get("config.hardware.device")),
  };
}

function globToRegExp(glob: string): RegExp {
  const source = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${source}$`, "i");
}

/**
 * Every VM with its properties, paired by the object each property set belongs
 * to (never by position), with inventory paths built from the parent links.
 */
export async function listVMs(session: VSphereSession, query: VMQuery, signal: AbortSignal): Promise<VirtualMachine[]> {
  const all = await containers(session, signal);
  const pattern = query.namePattern ? globToRegExp(query.namePattern) : undefined;
  const folder = query.folder && `/${query.folder.replace(/^\/+|\/+$/g, "")}/`;
  const vms: VirtualMachine[] = [];
  for await (const page of retrieveFromContainer(session, session.content.rootFolder, [{ type: "VirtualMachine", paths: VM_PATHS }], signal)) {
    for (const o of page) {
      const vm = vmOf(o, all, session.content.rootFolder);
      if (pattern && !pattern.test(vm.name)) continue;
      if (folder && !vm.path.startsWith(folder)) continue;
      if (query.powerState && vm.powerState !== query.powerState) continue;
      vms.push(vm);
    }
  }
  return vms.sort((a, b) => a.path.localeCompare(b.path));
}

const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;
const MOREF = /^vm-\d+$/;

/** Finds a VM by inventory path, managed object reference, BIOS or instance UUID, or (unique) name. */
export async function findVM(session: VSphereSession, reference: string, signal: AbortSignal): Promise<MoRef> {
  const searchIndex = session.content.searchIndex;
  const found = (response: XmlNode) => moRefOf(child(response, "returnval"));
  let ref: MoRef | undefined;
  if (reference.startsWith("/")) {
    ref = found(await session.call("FindByInventoryPath", [["_this", searchIndex], ["inventoryPath", reference.slice(1)]], signal));
  } else if (UUID.test(reference)) {
    for (const instanceUuid of [false, true]) {
      ref ??= found(await session.call("FindByUuid", [["_this", searchIndex], ["uuid", reference], ["vmSearch", true], ["instanceUuid", instanceUuid]], signal));
    }
  } else if (MOREF.test(reference) && (await exists(session, { type: "VirtualMachine", value: reference }, signal))) {
    ref = { type: "VirtualMachine", value: reference };
  }
  if (ref && ref.type === "VirtualMachine") return ref;
  if (!reference.startsWith("/") && !UUID.test(reference)) {
    const named: ObjectContent[] = [];
    for await (const page of retrieveFromContainer(session, session.content.rootFolder, [{ type: "VirtualMachine", paths: ["name"] }], signal)) {
      named.push(...page.filter((o) => o.props.get("name")?.text === reference));
    }
    if (named.length === 1) return named[0]!.obj;
    if (named.length > 1) {
      throw new FailedPreconditionError(`${named.length} VMs are named "${reference}" (${named.map((o) => o.obj.value).join(", ")}); use the inventory path, moref or UUID`);
    }
  }
  throw new NotFoundError(`VM "${reference}" not found at ${session.soap.endpoint} (by inventory path, moref, UUID or name)`);
}

async function exists(session: VSphereSession, ref: MoRef, signal: AbortSignal): Promise<boolean> {
  try {
    return (await retrieveOne(session, ref, ["name"], signal)) !== undefined;
  } catch (err) {
    if (err instanceof VSphereFault && err.faultType === "ManagedObjectNotFound") return false;
    throw err;
  }
}

export async function getVM(session: VSphereSession, reference: string, signal: AbortSignal): Promise<VirtualMachine> {
  const ref = await findVM(session, reference, signal);
  const [content, all] = await Promise.all([retrieveOne(session, ref, VM_PATHS, signal), containers(session, signal)]);
  if (!content) throw new NotFoundError(`VM "${reference}" (${ref.value}) disappeared while it was read`);
  return vmOf(content, all, session.content.rootFolder);
}

