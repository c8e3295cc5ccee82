import { create } from "@bufbuild/protobuf";
import { Command, Option } from "commander";
import { ExportFormat, JobDefinitionSchema } from "../../../gen/hypervisord/v1/job_pb.js";
import { SubmitJobResponseSchema, SubmitJobsResponseSchema } from "../../../gen/hypervisord/v1/service_pb.js";
import { addConnectionOptions, connectionOf, type ConnectionOptions } from "../connection-options.ts";
import { action } from "../context.ts";
import { readJobDefinitions } from "../definition-file.ts";
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
  watch?: boolean;
}

/** The export options shared by `export` and `schedules create` (the job template). */
export function addDefinitionOptions(command: Command): Command {
  return addSelectorOptions(addConnectionOptions(command))
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
    ...selectorFields(opts),
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
    .description("export a VM (--vm), or every VM a selector matches (--folder, --name-glob: a batch, one job per VM); with --watch follow it to its end"))
    .option("--request-id <id>", "idempotency key: the same id returns the job (or batch) created the first time")
    .option("--watch", "follow the job, or the batch (a line per VM and a total); exit code as for `watch`, for a batch 1 also when it partially failed")
    .action(action(io, async (cli, opts: ExportOptions) => {
      const definition = await definitionOf(opts, io);
      const response = await cli.client().submitJob({ definition });
      const again = response.created ? "submitted" : "already submitted (same request id)";
      // Watching with -o json/yaml: the response is the first JSON line, the updates follow.
      const streaming = cli.out.format !== "table" && opts.watch;
      if (streaming) cli.out.streamed(SubmitJobResponseSchema, response, () => undefined);
      if (response.batch) {
        const batch = response.batch;
        if (!streaming) cli.out.result(SubmitJobResponseSchema, response, () =>
          cli.out.quiet ? batch.id : `batch ${batch.id} ${again}: ${batch.jobs.length} VMs${opts.watch ? "" : `\n\n${batchJobsTable(batch.jobs)}`}`);
        return opts.watch ? followBatch(cli, batch.id) : 0;
      }
      const job = response.job!;
      if (!streaming) cli.out.result(SubmitJobResponseSchema, response, () =>
        cli.out.quiet ? job.id : `job ${job.id} ${again}: ${stateName(job.state)}`);
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
