import { Command, Option } from "commander";
import type { BatchState } from "../../../gen/hypervisord/v1/batch_pb.js";
import { CancelBatchResponseSchema, GetBatchResponseSchema, ListBatchesResponseSchema } from "../../../gen/hypervisord/v1/service_pb.js";
import { BATCH_STATES, batchDetails, batchesTable, batchStateName, countsText } from "../batch-view.ts";
import { action } from "../context.ts";
import { examples } from "../help-examples.ts";
import type { CliIo } from "../io.ts";
import { resolveBatchId } from "../job-id.ts";
import { choice, intOption } from "../parse.ts";
import { followBatch } from "./watch-batch.ts";

/** `hyperctl batches ...`: the batches that submissions and schedule runs with a vm_selector made. */
export function batchesCommand(io: CliIo): Command {
  const batches = new Command("batches").description("batches: one submission or schedule run exporting several VMs, a job per VM");
  const byId = (name: string, description: string, lines: string[]) => new Command(name)
    .description(description)
    .argument("<batch>", "batch id, or any unique prefix of one")
    .addHelpText("after", examples(...lines));

  batches.addCommand(new Command("list")
    .description("list batches, newest first")
    .addOption(new Option("--state <state>", `${Object.keys(BATCH_STATES).join(", ")} (repeatable, or comma-separated)`)
      .choices(Object.keys(BATCH_STATES)) // listed by shell completion; the parser below also takes comma-separated lists
      .argParser((value: string, previous: BatchState[] = []) => [...previous, ...value.split(",").filter(Boolean).map(choice(BATCH_STATES, "--state"))]))
    .option("--schedule <id>", "only batches created by this schedule's runs")
    .option("--limit <n>", "at most this many batches (1-1000)", intOption(1, 1000), 50)
    .option("--page-token <token>", "the next page, as a previous call printed it")
    .addHelpText("after", examples("hyperctl batches list --state running", "hyperctl batches list --schedule nightly-web -o wide", "hyperctl batches list -q"))
    .action(action(io, async (cli, opts: { state?: BatchState[]; schedule?: string; limit: number; pageToken?: string }) => {
      const response = await cli.client().listBatches({
        states: opts.state ?? [], scheduleId: opts.schedule ?? "", pageSize: opts.limit, pageToken: opts.pageToken ?? "",
      });
      cli.out.result(ListBatchesResponseSchema, response, () => {
        if (cli.out.quiet) return response.batches.map((b) => b.id).join("\n");
        if (response.batches.length === 0) return "no batches";
        const more = response.nextPageToken
          ? `\n(${response.batches.length} of ${response.totalSize} batches; next page: --page-token ${response.nextPageToken})`
          : "";
        return batchesTable(response.batches, cli.out.wide) + more;
      });
    })));

  batches.addCommand(byId("get", "show a batch and its VMs' jobs", ["hyperctl batches get 0193a2b4", "hyperctl batches get 0193a2b4 -o yaml"]).action(action(io, async (cli, arg: string) => {
    const response = await cli.client().getBatch({ batchId: await resolveBatchId(cli.client(), arg) });
    cli.out.result(GetBatchResponseSchema, response, () => batchDetails(response.batch!));
  })));

  batches.addCommand(byId("cancel", "cancel every job of a batch that has not ended", ["hyperctl batches cancel 0193a2b4 --reason \"wrong folder\""])
    .option("--reason <text>", "recorded in each job's history")
    .action(action(io, async (cli, arg: string, opts: { reason?: string }) => {
      const response = await cli.client().cancelBatch({ batchId: await resolveBatchId(cli.client(), arg), reason: opts.reason ?? "" });
      const batch = response.batch!;
      cli.out.result(CancelBatchResponseSchema, response, () =>
        cli.out.quiet ? undefined : `batch ${batch.id} ${batchStateName(batch.state)}: ${countsText(batch.counts)}`);
    })));

  batches.addCommand(byId("watch", "follow a batch until it ends; exit code 0 completed, 1 failed or partially failed, 2 cancelled, 3 daemon unreachable",
    ["hyperctl batches watch 0193a2b4", "hyperctl batches watch 0193a2b4 -o json   # JSON lines, {\"batch\": ...} last"])
    .action(action(io, async (cli, arg: string) => followBatch(cli, await resolveBatchId(cli.client(), arg)))));

  return batches;
}
