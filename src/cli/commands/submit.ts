import { create } from "@bufbuild/protobuf";
import { Command, Option } from "commander";
import { ExportFormat, JobDefinitionSchema } from "../../../gen/hypervisord/v1/job_pb.js";
import { SubmitJobResponseSchema, SubmitJobsResponseSchema } from "../../../gen/hypervisord/v1/service_pb.js";
import { addConnectionOptions, connectionOf, type ConnectionOptions } from "../connection-options.ts";
import { action } from "../context.ts";
import { readJobDefinitions } from "../definition-file.ts";
import type { CliIo } from "../io.ts";
import { stateName } from "../job-view.ts";
import { collect, intOption, keyValuePairs } from "../parse.ts";
import { table } from "../table.ts";
import { followJob } from "./watch.ts";

export interface ExportOptions extends ConnectionOptions {
  vm: string;
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
  watch?: boolean;
}

/** The export options shared by `export` and `schedules create` (the job template). */
export function addDefinitionOptions(command: Command): Command {
  return addConnectionOptions(command)
    .option("--output-dir <dir>", "where the package is written (under the daemon's allowed output roots)")
    .addOption(new Option("--format <format>", "package format").choices(["ovf", "ova"]))
    .option("--compress", "gzip the OVA (.ova.gz)")
    .option("--compression-level <n>", "gzip level 0-9 (default 6)", intOption(0, 9))
    .addOption(new Option("--convert <format>", "convert the disks with qemu-img").choices(["qcow2", "raw", "vdi"]))
    .option("--profile <name>", "take unset settings from this profile")
    .addOption(new Option("--priority <priority>", "queue priority").choices(["low", "normal", "high", "critical"]))
    .option("--label <key=value>", "label the job (repeatable)", collect)
    .option("--name <name>", "job name (default: the VM)")
    .option("--power-off", "power the VM off first when it is on")
    .option("--keep-partial", "keep what a failed or cancelled export wrote (its .partial files) instead of removing it");
}

/** The JobDefinition the options describe. */
export async function definitionOf(opts: ExportOptions, io: CliIo) {
  const vsphere = await connectionOf(opts, io);
  return create(JobDefinitionSchema, {
    vm: opts.vm,
    provider: opts.provider ?? "",
    ...(vsphere && { vsphere }),
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
  });
}

export function submitCommands(io: CliIo): Command[] {
  const exportCommand = addDefinitionOptions(new Command("export")
    .description("export a VM: submit a job, and with --watch follow it to its end")
    .requiredOption("--vm <vm>", "the VM: inventory path, name, moref or UUID"))
    .option("--request-id <id>", "idempotency key: the same id returns the job created the first time")
    .option("--watch", "follow the job; exit code as for `watch`")
    .action(action(io, async (cli, opts: ExportOptions) => {
      const definition = await definitionOf(opts, io);
      const response = await cli.client().submitJob({ definition });
      const job = response.job!;
      if (cli.out.format !== "table" && opts.watch) cli.out.streamed(SubmitJobResponseSchema, response, () => undefined);
      else cli.out.result(SubmitJobResponseSchema, response, () =>
        cli.out.quiet ? job.id : `job ${job.id} ${response.created ? "submitted" : "already submitted (same request id)"}: ${stateName(job.state)}`);
      return opts.watch ? followJob(cli, job.id) : 0;
    }));

  const submit = new Command("submit")
    .description("submit the jobs of a YAML or JSON file: one definition, a list, or {jobs: [...]} (proto field names)")
    .requiredOption("-f, --file <file>", "the job file")
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
