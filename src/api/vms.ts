import { create } from "@bufbuild/protobuf";
import type { HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import { PowerState as PowerStatePb, VirtualMachineSchema, type VirtualMachine as VirtualMachinePb } from "../../gen/hypervisord/v1/vm_pb.js";
import type { AzureConnection as AzureConnectionPb, VSphereConnection as VSphereConnectionPb } from "../../gen/hypervisord/v1/job_pb.js";
import type { VirtualMachine, VMQuery } from "../domain/vm.ts";
import { vmDiscoveredEvent } from "../domain/webhook-events.ts";
import { HypervisordError, InvalidArgumentError, quoteInput } from "../errors.ts";
import type { ProviderRegistry } from "../providers/registry.ts";
import type { ServiceHandlers } from "../rpc/handlers.ts";
import type { WebhookStore } from "../store/store.ts";
import type { WebhookDispatcher } from "../webhooks/dispatcher.ts";
import { AZURE_PROVIDER, azureFromPb, connectionFromPb, DEFAULT_PROVIDER } from "./job-definition.ts";
import { int64 } from "./pb-scalars.ts";
import { powerStateFromPb, powerStateToPb } from "./power-state.ts";

type VmHandlers = Pick<ServiceHandlers<typeof HypervisordService>, "listVMs" | "getVM">;

export interface VmDeps {
  providers: ProviderRegistry;
  /** Where a listing's vm.discovered event is queued, and the dispatcher woken for it. */
  webhookStore: Pick<WebhookStore, "enqueue">;
  webhooks: Pick<WebhookDispatcher, "wake">;
  /** An unfiltered ListVMs result: the whole inventory (the vms_discovered gauge). */
  onVmsListed?(provider: string, vms: readonly VirtualMachine[]): void;
}

/** Discovery: ListVMs and GetVM, through a provider that can list its inventory. */
export function createVmHandlers(deps: VmDeps): VmHandlers {
  const { providers } = deps;
  const discovery = (name: string, field: string) => {
    const provider = providers.get(name || DEFAULT_PROVIDER);
    if (!provider) throw new InvalidArgumentError(field, `unknown provider ${quoteInput(name || DEFAULT_PROVIDER)} (available: ${providers.list().map((p) => p.name).join(", ") || "none"})`);
    if (!provider.listVMs || !provider.getVM) throw new HypervisordError("UNIMPLEMENTED", `provider "${provider.name}" does not support discovery`);
    return provider as typeof provider & Required<Pick<typeof provider, "listVMs" | "getVM">>;
  };

  return {
    async listVMs(request, context) {
      const provider = discovery(request.provider, "provider");
      const namePattern = request.namePattern.trim();
      if (namePattern.length > 256) throw new InvalidArgumentError("name_pattern", "at most 256 characters");
      const powerState = request.powerState === PowerStatePb.UNSPECIFIED ? undefined
        : powerStateFromPb(request.powerState) ?? invalid("power_state", `unknown power state ${request.powerState}`);
      const vms = await provider.listVMs({
        ...connectionsOf(request, provider.name),
        namePattern: namePattern || undefined,
        folder: request.folder.trim() || undefined,
        powerState,
      }, context.signal);
      if (!namePattern && !request.folder.trim() && powerState === undefined) deps.onVmsListed?.(provider.name, vms);
      if (vms.length > 0) {
        await deps.webhookStore.enqueue(vmDiscoveredEvent(provider.name, vms));
        deps.webhooks.wake();
      }
      return { vms: vms.map((vm) => vmToPb(vm, provider.name)) };
    },

    async getVM(request, context) {
      const provider = discovery(request.provider, "provider");
      const vm = request.vm.trim();
      if (!vm) throw new InvalidArgumentError("vm", "required: an inventory path, name, managed object reference or UUID");
      const found = await provider.getVM({ ...connectionsOf(request, provider.name), vm }, context.signal);
      return { vm: vmToPb(found, provider.name) };
    },
  };
}

/**
 * A discovery request's connection: azure for provider "azure" (checked, or the default chosen, by the
 * provider), vsphere otherwise; the other one set is refused, naming it.
 */
function connectionsOf(request: { vsphere?: VSphereConnectionPb; azure?: AzureConnectionPb }, provider: string): Pick<VMQuery, "connection" | "azure"> {
  if (provider === AZURE_PROVIDER) {
    if (request.vsphere) throw new InvalidArgumentError("vsphere", "is for provider \"vsphere\"; Azure discovery takes azure (or the daemon's default)");
    return request.azure ? { azure: azureFromPb(request.azure, "azure") } : {};
  }
  if (request.azure) throw new InvalidArgumentError("azure", `is for provider "azure"; provider ${quoteInput(provider)} does not use it`);
  return request.vsphere ? { connection: connectionFromPb(request.vsphere, "vsphere") } : {};
}

export function vmToPb(vm: VirtualMachine, provider: string): VirtualMachinePb {
  return create(VirtualMachineSchema, {
    ...vm,
    memoryMb: int64(vm.memoryMb),
    powerState: powerStateToPb(vm.powerState),
    disks: vm.disks.map((d) => ({ ...d, capacityBytes: int64(d.capacityBytes) })),
    provider,
  });
}

function invalid(field: string, problem: string): never {
  throw new InvalidArgumentError(field, problem);
}
