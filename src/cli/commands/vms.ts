import { Command } from "commander";
import { PowerState, type VirtualMachine } from "../../../gen/hypervisord/v1/vm_pb.js";
import { GetVMResponseSchema, ListVMsResponseSchema } from "../../../gen/hypervisord/v1/service_pb.js";
import { addConnectionOptions, connectionsOf, type ConnectionOptions } from "../connection-options.ts";
import { action } from "../context.ts";
import { bytes, enumName } from "../format.ts";
import { examples } from "../help-examples.ts";
import type { CliIo } from "../io.ts";
import { choice } from "../parse.ts";
import { keyValues, table } from "../table.ts";

const POWER_STATES: Record<string, PowerState> = {
  "powered-on": PowerState.POWERED_ON, "powered-off": PowerState.POWERED_OFF, suspended: PowerState.SUSPENDED,
  on: PowerState.POWERED_ON, off: PowerState.POWERED_OFF,
};

function power(vm: VirtualMachine): string {
  return enumName(PowerState, vm.powerState);
}

export function vmsCommand(io: CliIo): Command {
  const vms = new Command("vms").description("a provider's inventory, through the daemon")
    .addHelpText("after", examples(
      "hyperctl vms list   # the daemon's configured vCenter",
      "hyperctl vms get /DC0/vm/web-01",
    ));

  vms.addCommand(addConnectionOptions(new Command("list")
    .description("list VMs")
    .option("--name-pattern <glob>", "only VMs whose name matches, e.g. 'web-*'")
    .option("--folder <path>", "only VMs under this inventory folder")
    .option("--power-state <state>", "on, off or suspended", choice(POWER_STATES, "--power-state"))
    .addHelpText("after", examples(
      "hyperctl vms list --folder /DC0/vm/production --power-state on",
      "hyperctl vms list --name-pattern 'web-*' -q   # inventory paths only",
      "hyperctl vms list --vsphere-url https://vc.example.com/sdk --username backup --password-stdin < pw.txt",
      "hyperctl vms list --vsphere-url https://vc.example.com/sdk --username backup --password-stdin \\\n      --thumbprint AB:CD:...:EF < pw.txt   # the SHA-256 an untrusted-certificate error prints",
      "HYPERVISORD_AZURE_CLIENT_SECRET=... hyperctl vms list --provider azure --azure-tenant-id <tenant> --azure-client-id <app> \\\n      --azure-subscription-id <subscription> --folder rg-prod   # Azure: --folder is a resource group",
    )))
    .action(action(io, async (cli, opts: ConnectionOptions & { namePattern?: string; folder?: string; powerState?: PowerState }) => {
      const connections = await connectionsOf(opts, io);
      const response = await cli.client().listVMs({
        provider: opts.provider ?? "",
        ...connections,
        namePattern: opts.namePattern ?? "",
        folder: opts.folder ?? "",
        powerState: opts.powerState ?? PowerState.UNSPECIFIED,
      });
      cli.out.result(ListVMsResponseSchema, response, () => {
        if (cli.out.quiet) return response.vms.map((vm) => vm.path || vm.name).join("\n");
        if (response.vms.length === 0) return "no VMs";
        return table(["NAME", "POWER", "CPU", "MEMORY", "GUEST", "PATH"], response.vms.map((vm) => [
          vm.name, power(vm), String(vm.numCpu), bytes(vm.memoryMb * 1024n * 1024n), vm.guestOs, vm.path,
        ]));
      });
    })));

  vms.addCommand(addConnectionOptions(new Command("get")
    .description("show a VM")
    .argument("<vm>", "inventory path, name, moref or UUID")
    .addHelpText("after", examples(
      "hyperctl vms get /DC0/vm/web-01",
      "hyperctl vms get vm-42 -o json",
      "hyperctl vms get 4213a1b2-... --vsphere-url https://esx-01.example.com/sdk --username root --password-stdin --insecure-vsphere < pw.txt",
      "hyperctl vms get rg-prod/web-01 --provider azure   # the daemon's azure.* connection; a name, resourceGroup/name or resource id",
    )))
    .action(action(io, async (cli, vm: string, opts: ConnectionOptions) => {
      const connections = await connectionsOf(opts, io);
      const response = await cli.client().getVM({ provider: opts.provider ?? "", ...connections, vm });
      cli.out.result(GetVMResponseSchema, response, () => {
        const v = response.vm!;
        const details = keyValues([
          ["Name", v.name], ["Path", v.path], ["Moref", v.moref], ["UUID", v.uuid], ["Instance UUID", v.instanceUuid],
          ["Power", power(v)], ["Guest OS", v.guestOs], ["CPUs", String(v.numCpu)], ["Memory", bytes(v.memoryMb * 1024n * 1024n)],
          ["Firmware", v.firmware], ["Size", v.size || undefined], ["Location", v.location || undefined], ["Provider", v.provider],
        ]);
        // Azure disks have a SKU (Premium_LRS ...); vSphere's none, and no empty column for them.
        const disks = v.disks.some((d) => d.sku)
          ? table(["DISK", "CAPACITY", "SKU", "FILE"], v.disks.map((d) => [d.label, bytes(d.capacityBytes), d.sku || "-", d.file]))
          : table(["DISK", "CAPACITY", "FILE"], v.disks.map((d) => [d.label, bytes(d.capacityBytes), d.file]));
        const nics = table(["NIC", "NETWORK", "MAC"], v.nics.map((n) => [n.label, n.network, n.macAddress]));
        return `${details}\n\n${disks}\n\n${nics}`;
      });
    })));

  return vms;
}
