/**
 * The options of `export` and `schedules create` that say which VMs (one with --vm, or every VM a
 * selector matches: --folder, --name-glob, --power-state) and how a running VM is exported.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { type Command, InvalidArgumentError, Option } from "commander";
import type { JobDefinitionSchema } from "../../gen/hypervisord/v1/job_pb.js";
import { PowerState } from "../../gen/hypervisord/v1/vm_pb.js";
import { UsageError } from "./errors.ts";
import { choice, intOption } from "./parse.ts";

export interface SelectorOptions {
  vm?: string;
  folder?: string;
  nameGlob?: string;
  powerState?: PowerState[];
  /** false with --no-recursive (commander's default for a --no- flag is true). */
  recursive?: boolean;
  maxParallel?: number;
  runningVmPolicy?: string;
  /** true with --quiesce, false with --no-quiesce, unset with neither. */
  quiesce?: boolean;
  quiescePolicy?: string;
}

const POWER_STATES: Record<string, PowerState> = {
  on: PowerState.POWERED_ON, off: PowerState.POWERED_OFF, suspended: PowerState.SUSPENDED,
  "powered-on": PowerState.POWERED_ON, "powered-off": PowerState.POWERED_OFF,
};

/**
 * An option with fixed values that the shell completion lists (argChoices), accepting "power-off"
 * for "power_off" as the other options accept dashes for underscores.
 */
function policyOption(flags: string, description: string, values: string[]): Option {
  const option = new Option(flags, description).choices(values);
  return option.argParser((value: string) => {
    const normalized = value.toLowerCase().replace(/-/g, "_");
    if (!values.includes(normalized)) throw new InvalidArgumentError(`${option.long} must be one of ${values.join(", ")}, got "${value}"`);
    return normalized;
  });
}

export function addSelectorOptions(command: Command): Command {
  const powerState = choice(POWER_STATES, "--power-state");
  // Checked before the action, as commander checks a required option: the same "error: ..." line, hint and exit code 2.
  command.hook("preAction", (self) => {
    try {
      selectorFields(self.opts<SelectorOptions>());
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      self.error(`error: ${err.message}`, { exitCode: 2, code: "hyperctl.selector" });
    }
  });
  return command
    .option("--vm <vm>", "the VM: inventory path, name, moref or UUID (or select several with --folder/--name-glob)")
    .option("--folder <path>", "every VM in this inventory folder, e.g. /DC0/vm/production: one batch, a job per VM")
    .option("--name-glob <glob>", "every VM whose name matches, e.g. 'web-*' (with --folder: in that folder)")
    .option("--power-state <state>", "with a selector: only VMs on, off or suspended (repeatable)", (value: string, previous: PowerState[] = []) => [...previous, powerState(value)])
    .option("--no-recursive", "with --folder: not the VMs of its subfolders")
    .option("--max-parallel <n>", "with a selector: at most n of the batch's jobs at once (0-1000, 0: no limit of its own)", intOption(0, 1000))
    .addOption(policyOption("--running-vm-policy <policy>", "a powered-on VM: export a snapshot (default), power it off first, or fail", ["snapshot", "power_off", "fail"]))
    // --quiesce first: with both defined, commander leaves the value unset unless one is given (the daemon's default applies).
    .option("--quiesce", "snapshot with the guest's file systems quiesced (VMware Tools; the default)")
    .option("--no-quiesce", "snapshot without quiescing the guest (crash-consistent)")
    .addOption(policyOption("--quiesce-policy <policy>", "when the guest cannot be quiesced: fallback to a crash-consistent snapshot (default) or fail", ["fallback", "fail"]));
}

type DefinitionInit = MessageInitShape<typeof JobDefinitionSchema>;

/** The vm or vm_selector part of the definition, and the running-VM policy; usage errors name the options. */
export function selectorFields(opts: SelectorOptions): Pick<DefinitionInit, "vm" | "vmSelector" | "maxParallel" | "runningVmPolicy" | "quiesce" | "quiescePolicy"> {
  const selecting = Boolean(opts.folder || opts.nameGlob);
  if (opts.vm && selecting) throw new UsageError(`--vm names one VM; --folder and --name-glob select several: give one or the other`);
  if (!opts.vm && !selecting) throw new UsageError("required option '--vm <vm>' not specified (or select several VMs with --folder and/or --name-glob)");
  if (!selecting) {
    const stray = [opts.powerState && "--power-state", opts.recursive === false && "--no-recursive", opts.maxParallel !== undefined && "--max-parallel"].filter(Boolean);
    if (stray.length) throw new UsageError(`${stray.join(", ")}: only with --folder or --name-glob (a selector of several VMs)`);
  }
  if (opts.recursive === false && !opts.folder) throw new UsageError("--no-recursive: only with --folder");
  return {
    vm: opts.vm ?? "",
    ...(selecting && {
      vmSelector: {
        folder: opts.folder ?? "",
        nameGlob: opts.nameGlob ?? "",
        powerStates: opts.powerState ?? [],
        ...(opts.recursive === false && { recursive: false }),
      },
    }),
    maxParallel: opts.maxParallel ?? 0,
    runningVmPolicy: opts.runningVmPolicy ?? "",
    ...(opts.quiesce !== undefined && { quiesce: opts.quiesce }),
    quiescePolicy: opts.quiescePolicy ?? "",
  };
}
