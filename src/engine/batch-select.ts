import type { JobDefinition, VmSelector } from "../domain/job.ts";
import type { VirtualMachine } from "../domain/vm.ts";
import { InvalidArgumentError, quoteInput } from "../errors.ts";
import type { Provider } from "../providers/provider.ts";

/** Most VMs one batch may hold: a selector matching more is refused (narrow it, or split it over several batches). */
export const MAX_BATCH_JOBS = 10_000;

/**
 * The VMs a selector matches now, sorted by inventory path. The provider filters by folder (a path prefix,
 * so recursive), name glob and one power state; a non-recursive folder and several power states are
 * filtered here. Zero matches, or more than MAX_BATCH_JOBS, is INVALID_ARGUMENT naming `field`.
 */
export async function selectVMs(provider: Provider, definition: JobDefinition, field: string, signal?: AbortSignal): Promise<VirtualMachine[]> {
  const selector = definition.vmSelector;
  if (!selector) throw new InvalidArgumentError(field, "required: a batch selects its VMs with vm_selector");
  if (!provider.listVMs) throw new InvalidArgumentError(field, `provider ${quoteInput(provider.name)} cannot list VMs; name one VM in vm`);
  const vms = await provider.listVMs({
    connection: definition.vsphere,
    azure: definition.azure,
    namePattern: selector.nameGlob,
    folder: selector.folder,
    powerState: selector.powerStates.length === 1 ? selector.powerStates[0] : undefined,
  }, signal ?? AbortSignal.timeout(120_000));
  const prefix = selector.folder && `${selector.folder}/`;
  const picked = vms.filter((vm) =>
    (!prefix || (rooted(vm.path).startsWith(prefix) && (selector.recursive || parentOf(rooted(vm.path)) === selector.folder)))
    && (selector.powerStates.length === 0 || selector.powerStates.includes(vm.powerState)));
  if (picked.length === 0) throw new InvalidArgumentError(field, `matches no VM (${describeSelector(selector)})`);
  if (picked.length > MAX_BATCH_JOBS) {
    throw new InvalidArgumentError(field, `matches ${picked.length} VMs, more than ${MAX_BATCH_JOBS} per batch; narrow the folder or the name_glob`);
  }
  return picked.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * One child's definition: the batch's, for one VM (by inventory path), without the selector, the cap and the request
 * id; in `outputDir` when given (a VM whose name another VM of the batch has).
 */
export function childDefinitionOf(definition: JobDefinition, vm: VirtualMachine, outputDir?: string): JobDefinition {
  const { vmSelector: _selector, maxParallel: _cap, requestId: _request, ...rest } = definition;
  return { ...rest, vm: vm.path, name: vm.name, ...(outputDir ? { outputDir } : {}) };
}

/**
 * A VM's path with a leading "/", as selector folders are written: vSphere's inventory paths have one, Azure's
 * "resourceGroup/name" has none (folder "/rg1" selects "rg1/web-01").
 */
function rooted(path: string): string {
  return path.startsWith("/") ? path : `/${path}`;
}

function parentOf(path: string): string {
  return path.slice(0, path.lastIndexOf("/"));
}

function describeSelector(selector: VmSelector): string {
  const parts: string[] = [];
  if (selector.folder) parts.push(`folder ${quoteInput(selector.folder)}${selector.recursive ? " and its subfolders" : " only"}`);
  if (selector.nameGlob) parts.push(`name_glob ${quoteInput(selector.nameGlob)}`);
  if (selector.powerStates.length > 0) parts.push(`power_states ${selector.powerStates.join(", ")}`);
  return parts.join(", ");
}
