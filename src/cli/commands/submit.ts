import { create } from "@bufbuild/protobuf";
import { Command, InvalidArgumentError, Option } from "commander";
import { ExportFormat, JobDefinitionSchema, type JobDefinition } from "../../../gen/hypervisord/v1/job_pb.js";
import { SubmitJobResponseSchema, SubmitJobsResponseSchema } from "../../../gen/hypervisord/v1/service_pb.js";
import { MANIFEST_ALGORITHMS, REMOVABLE_DEVICES } from "../../domain/job.ts";
import { parseByteRate } from "../byte-rate.ts";
import { addConnectionOptions, connectionsOf, type ConnectionOptions } from "../connection-options.ts";
import { action, type Cli } from "../context.ts";
import { readJobDefinitions } from "../definition-file.ts";
import { UsageError } from "../errors.ts";
import { localOutputRoot, runLocally } from "../local-export.ts";
import { addSelectorOptions, selectorFields, type SelectorOptions } from "../selector-options.ts";
import type { CliIo } from "../io.ts";
import { batchJobsTable } from "../batch-view.ts";
import { stateName } from "../job-view.ts";
import { collect, intOption, keyValuePairs } from "../parse.ts";
import { table } from "../table.ts";
import { followJob } from "./watch.ts";
import { followBatch } from "./watch-batch.ts";

export interface ExportOptions extends ConnectionOptions, SelectorOptions {
  name?: string;
  outputDir?: string;
  format?: "ovf" | "ova";
  compress?: boolean;
  compressionLevel?: number;
  convert?: string;
  profile?: string;
  priority?: string;
  label?: string[];
  requestId?: string;
  powerOff?: boolean;
  keepPartial?: boolean;
  verify?: boolean;
  parallelDownloads?: number;
  bandwidthLimit?: bigint;
  cleanupOvf?: boolean;
  removeDevice?: string[];
  includeImageFiles?: boolean;
  manifestAlgorithm?: string;
  /** false with --no-generate-manifest. */
  generateManifest?: boolean;
  watch?: boolean;
  local?: boolean;
}

/** The export options shared by `export` and `schedules create` (the job template). */
export function addDefinitionOptions(command: Command): Command {
  return addSelectorOptions(addConnectionOptions(command))
    .option("--output-dir <dir>", "where the package is written: under the daemon's allowed output roots; with export --local a directory on this machine, relative to the current one (default: the current directory)")
    .addOption(new Option("--format <format>", "package format").choices(["ovf", "ova"]))
    .option("--compress", "gzip the OVA (.ova.gz)")
    .option("--compression-level <n>", "gzip level 0-9 (default 6)", intOption(0, 9))
    .addOption(new Option("--convert <format>", "convert the disks with qemu-img").choices(["qcow2", "raw", "vdi"]))
    .option("--profile <name>", "take unset settings from this profile")
    .addOption(new Option("--priority <priority>", "queue priority").choices(["low", "normal", "high", "critical"]))
    .option("--label <key=value>", "label the job (repeatable)", collect)
    .option("--name <name>", "job name (default: the VM)")
    .option("--power-off", "power the VM off first when it is on")
    .option("--keep-partial", "keep what a failed or cancelled export wrote (its .partial files) instead of removing it")
    .option("--verify", "with --convert: compare each converted disk with its source (qemu-img compare)")
    .option("--parallel-downloads <n>", "disks downloaded at once, 1-32 (default 4)", intOption(1, 32))
    .option("--bandwidth-limit <rate>", "bytes per second for the job's downloads together, e.g. 100MiB/s, 50MB/s, 1048576 (default: unlimited)", byteRateOption)
    .option("--cleanup-ovf", "with --format ova: remove the intermediate OVF files once the OVA is written")
    .addOption(new Option("--remove-device <kind>", "leave a device kind out of the written descriptor (repeatable; the VM is not changed)")
      .choices(REMOVABLE_DEVICES).argParser(repeatableChoice("--remove-device", REMOVABLE_DEVICES)))
    .option("--include-image-files", "also export attached ISO and floppy images")
    .addOption(new Option("--manifest-algorithm <algorithm>", "digest of the .mf manifest (default sha256; sha1 for older importers)").choices(MANIFEST_ALGORITHMS))
    .option("--no-generate-manifest", "do not write artifact-manifest.json beside the package");
}

function byteRateOption(value: string): bigint {
  try {
    return parseByteRate(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** For a repeatable option with fixed values: each value checked, duplicates dropped. */
function repeatableChoice(option: string, values: readonly string[]) {
  return (value: string, previous: string[] = []): string[] => {
    const normalized = value.toLowerCase();
    if (!values.includes(normalized)) throw new InvalidArgumentError(`${option} must be one of ${values.join(", ")}, got "${value}"`);
    return previous.includes(normalized) ? previous : [...previous, normalized];
  };
}

/** Combinations the daemon would refuse, refused before any call, naming the options. */
function checkCombinations(opts: ExportOptions): void {
  // With --profile, convert_to (and so --verify's partner) may come from the profile.
  if (opts.verify && !opts.convert && !opts.profile) throw new UsageError("--verify needs --convert (it compares the converted disks with their sources)");
  if (opts.powerOff && opts.runningVmPolicy && opts.runningVmPolicy !== "power_off") {
    throw new UsageError(`--power-off contradicts --running-vm-policy ${opts.runningVmPolicy} (--power-off is --running-vm-policy power_off)`);
  }
}

/** The JobDefinition the options describe. */
export async function definitionOf(opts: ExportOptions, io: CliIo) {
  checkCombinations(opts);
  const connections = await connectionsOf(opts, io);
  return create(JobDefinitionSchema, {
    ...selectorFields(opts),
    provider: opts.provider ?? "",
    ...connections,
    outputDir: opts.outputDir ?? "",
    format: opts.format === "ova" ? ExportFormat.OVA : opts.format === "ovf" ? ExportFormat.OVF : ExportFormat.UNSPECIFIED,
    compress: opts.compress ?? false,
    ...(opts.compressionLevel !== undefined && { compressionLevel: opts.compressionLevel }),
    convertTo: opts.convert ?? "",
    profile: opts.profile ?? "",
    priority: opts.priority ?? "",
    labels: keyValuePairs(opts.label, "--label"),
    name: opts.name ?? "",
    requestId: opts.requestId ?? "",
    powerOff: opts.powerOff ?? false,
    keepPartial: opts.keepPartial ?? false,
    verify: opts.verify ?? false,
    parallelDownloads: opts.parallelDownloads ?? 0,
    bandwidthLimit: opts.bandwidthLimit ?? 0n,
    cleanupOvf: opts.cleanupOvf ?? false,
    removeDevices: opts.removeDevice ?? [],
    includeImageFiles: opts.includeImageFiles ?? false,
    manifestAlgorithm: opts.manifestAlgorithm ?? "",
    ...(opts.generateManifest === false && { generateManifest: false }),
  });
}

/**
 * Submits the definition and reports it; with `watch`, follows the job or batch to its end (the exit code of
 * `watch`). `created` hears how to cancel what was submitted (export --local cancels it on Ctrl-C).
 */
async function submitAndReport(cli: Cli, definition: JobDefinition, watch: boolean, created?: (cancel: () => Promise<unknown>) => void): Promise<number> {
  const client = cli.client();
  const response = await client.submitJob({ definition });
  const again = response.created ? "submitted" : "already submitted (same request id)";
  // Watching with -o json/yaml: the response is the first JSON line, the updates follow.
  const streaming = !cli.out.human && watch;
  if (streaming) cli.out.streamed(SubmitJobResponseSchema, response, () => undefined);
  const reason = "interrupted (Ctrl-C) while hyperctl export --local ran it";
  if (response.batch) {
    const batch = response.batch;
    created?.(() => client.cancelBatch({ batchId: batch.id, reason }));
    if (!streaming) cli.out.result(SubmitJobResponseSchema, response, () =>
      cli.out.quiet ? batch.id : `batch ${batch.id} ${again}: ${batch.jobs.length} VMs${watch ? "" : `\n\n${batchJobsTable(batch.jobs)}`}`);
    return watch ? followBatch(cli, batch.id) : 0;
  }
  const job = response.job!;
  created?.(() => client.cancelJob({ jobId: job.id, reason }));
  if (!streaming) cli.out.result(SubmitJobResponseSchema, response, () =>
    cli.out.quiet ? job.id : `job ${job.id} ${again}: ${stateName(job.state)}`);
  return watch ? followJob(cli, job.id) : 0;
}

const EXPORT_EXAMPLES = `
Examples:
  # one VM as an OVA, followed to its end; the password read from stdin, not the command line
  hyperctl export --vm /DC0/vm/web-01 --vsphere-url https://vc.example.com/sdk --username backup \\
    --password-stdin --format ova --watch < password.txt

  # no daemon: the export runs in this process and writes under ./exports/web-01/
  hyperctl export --local --vm web-01 --vsphere-url https://vc.example.com/sdk --username backup \\
    --password-stdin --output-dir ./exports < password.txt

  # converted to qcow2 and compared with the source; 2 disks at a time, at most 50 MiB/s
  hyperctl export --vm web-01 --convert qcow2 --verify --parallel-downloads 2 --bandwidth-limit 50MiB/s

  # a running VM: refuse rather than snapshot it; CD-ROM and USB left out of the descriptor
  hyperctl export --vm db-01 --running-vm-policy fail --remove-device cdrom --remove-device usb

  # every powered-on VM of a folder, one batch, 4 at a time
  hyperctl export --folder /DC0/vm/production --power-state on --max-parallel 4 --output-dir nightly --watch

  # an Azure VM (snapshotted when running); the client secret from the environment, not the command line
  HYPERVISORD_AZURE_CLIENT_SECRET=... hyperctl export --provider azure --vm rg-prod/web-01 \\
    --azure-tenant-id <tenant> --azure-client-id <app> --azure-subscription-id <subscription> --convert qcow2 --watch

--local: no daemon is needed or contacted (--server is ignored). The settings of a daemon's config
file do not apply; HYPERVISORD_VSPHERE_URL, _USERNAME, _PASSWORD, _INSECURE and _THUMBPRINT give the
default vSphere connection, HYPERVISORD_AZURE_TENANT_ID, _CLIENT_ID, _CLIENT_SECRET, _SUBSCRIPTION_ID
(and the other HYPERVISORD_AZURE_* variables) the default Azure one, HYPERVISORD_QEMU_IMG the qemu-img
to convert with. The job's state lives in a temporary directory that is removed at the end. Exit code: 0 completed, 1 failed, 2 cancelled (Ctrl-C
cancels the export and removes what it wrote; a second Ctrl-C quits at once).`;

const SUBMIT_EXAMPLES = `
Examples:
  # one job; job.yaml holds proto field names (snake_case or camelCase), e.g.
  #   vm: /DC0/vm/web-01
  #   output_dir: nightly
  #   format: ova
  #   bandwidth_limit: 100MiB/s
  #   remove_devices: [cdrom, usb]
  #   labels: {team: web}
  hyperctl submit -f job.yaml

  # several: a list of definitions, or {jobs: [...]}; one result per job, refused ones with their error
  hyperctl submit -f nightly.yaml -o json`;

export function submitCommands(io: CliIo): Command[] {
  const exportCommand = addDefinitionOptions(new Command("export")
    .description("export a VM (--vm), or every VM a selector matches (--folder, --name-glob: a batch, one job per VM); with --watch follow it to its end; with --local without a daemon"))
    .option("--request-id <id>", "idempotency key: the same id returns the job (or batch) created the first time")
    .option("--watch", "follow the job, or the batch (a line per VM and a total); exit code as for `watch`, for a batch 1 also when it partially failed")
    .option("--local", "run the export in this process, without a daemon, and follow it to its end (see below)")
    .addHelpText("after", EXPORT_EXAMPLES)
    .action(action(io, async (cli, opts: ExportOptions) => {
      if (!opts.local) return submitAndReport(cli, await definitionOf(opts, io), opts.watch ?? false);
      // Checked and read (a password from stdin) before anything is started.
      const outputRoot = localOutputRoot(opts);
      const definition = await definitionOf({ ...opts, outputDir: outputRoot }, io);
      return runLocally(cli, outputRoot, (local) => submitAndReport(local.cli, definition, true, local.cancelOnInterrupt));
    }));

  const submit = new Command("submit")
    .description("submit the jobs of a YAML or JSON file: one definition, a list, or {jobs: [...]} (proto field names)")
    .requiredOption("-f, --file <file>", "the job file")
    .addHelpText("after", SUBMIT_EXAMPLES)
    .action(action(io, async (cli, opts: { file: string }) => {
      const definitions = readJobDefinitions(opts.file);
      const response = await cli.client().submitJobs({ definitions });
      cli.out.result(SubmitJobsResponseSchema, response, () => {
        if (cli.out.quiet) return response.results.filter((r) => r.job).map((r) => r.job!.id).join("\n");
        return table(["#", "JOB", "STATE", "ERROR"], response.results.map((r) => [
          String(r.index),
          r.job?.id ?? "-",
          r.job ? stateName(r.job.state) : "refused",
          r.error ? `${r.error.code}: ${r.error.message}` : "",
        ]));
      });
      return response.results.some((r) => r.error) ? 1 : 0;
    }));

  return [exportCommand, submit];
}
