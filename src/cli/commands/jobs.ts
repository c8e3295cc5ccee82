import { Command, Option } from "commander";
import { JobState, type LogEntry } from "../../../gen/hypervisord/v1/job_pb.js";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  CancelJobResponseSchema, GetJobHistoryResponseSchema, GetJobResponseSchema, ListJobsResponseSchema, StreamJobLogsResponseSchema,
} from "../../../gen/hypervisord/v1/service_pb.js";
import { action, Interrupted, type Cli } from "../context.ts";
import { describeError } from "../errors.ts";
import { localIso, time } from "../format.ts";
import { examples } from "../help-examples.ts";
import type { CliIo } from "../io.ts";
import { resolveBatchId, resolveJobId } from "../job-id.ts";
import { jobDetails, jobsTable, stateName } from "../job-view.ts";
import { choice, collect, intOption, keyValuePairs } from "../parse.ts";
import { table } from "../table.ts";
import { followJob } from "./watch.ts";

const STATES: Record<string, JobState> = {
  queued: JobState.QUEUED, running: JobState.RUNNING, completed: JobState.COMPLETED, failed: JobState.FAILED, cancelled: JobState.CANCELLED,
};

const JOB_ARGUMENT = "job id, or any unique prefix of one";

export function jobCommands(io: CliIo): Command[] {
  const get = new Command("get")
    .description("show a job")
    .argument("<job>", JOB_ARGUMENT)
    .addHelpText("after", examples("hyperctl get 0193a2b4", "hyperctl get 0193a2b4-5c1e-7d3f-9a2b-3c4d5e6f7a8b -o yaml"))
    .action(action(io, async (cli, arg: string) => {
      const response = await cli.client().getJob({ jobId: await resolveJobId(cli.client(), arg) });
      cli.out.result(GetJobResponseSchema, response, () => jobDetails(response.job!));
    }));

  const list = new Command("list")
    .description("list jobs, newest first")
    .addOption(new Option("--state <state>", "queued, running, completed, failed or cancelled (repeatable, or comma-separated)")
      .choices(Object.keys(STATES)) // listed by shell completion; the parser below also takes comma-separated lists
      .argParser((value: string, previous: JobState[] = []) => [...previous, ...value.split(",").filter(Boolean).map(choice(STATES, "--state"))]))
    .option("--label <key=value>", "only jobs with this label (repeatable)", collect)
    .option("--provider <name>", "only jobs of this provider")
    .option("--schedule <id>", "only jobs created by this schedule")
    .option("--batch <id>", "only the jobs of this batch (one per VM)")
    .option("--query <text>", "only jobs whose id, name, VM, output directory or a label value contains this text (ignoring case)")
    .option("--limit <n>", "at most this many jobs (1-1000)", intOption(1, 1000), 50)
    .addHelpText("after", examples(
      "hyperctl list --state running,queued",
      "hyperctl list --label team=web --limit 10 -o wide",
      "hyperctl list --batch 0193a2b4 -q",
      "hyperctl list --query web-01 --json",
    ))
    .action(action(io, async (cli, opts: { state?: JobState[]; label?: string[]; provider?: string; schedule?: string; batch?: string; query?: string; limit: number }) => {
      const batchId = opts.batch ? await resolveBatchId(cli.client(), opts.batch) : "";
      const response = await cli.client().listJobs({
        states: opts.state ?? [],
        labels: keyValuePairs(opts.label, "--label"),
        provider: opts.provider ?? "",
        scheduleId: opts.schedule ?? "",
        batchId,
        query: opts.query ?? "",
        pageSize: opts.limit,
      });
      cli.out.result(ListJobsResponseSchema, response, () => {
        if (cli.out.quiet) return response.jobs.map((j) => j.id).join("\n");
        if (response.jobs.length === 0) return "no jobs";
        const more = BigInt(response.jobs.length) < response.totalSize ? `\n(${response.jobs.length} of ${response.totalSize} jobs; see --limit)` : "";
        return jobsTable(response.jobs, cli.out.wide) + more;
      });
    }));

  const cancel = new Command("cancel")
    .description("cancel queued or running jobs")
    .argument("<job...>", "job ids, or unique prefixes of them")
    .option("--reason <text>", "recorded in the job's history")
    .addHelpText("after", examples("hyperctl cancel 0193a2b4", "hyperctl cancel 0193a2b4 0193a2c9 --reason \"maintenance window\""))
    .action(action(io, async (cli, jobIds: string[], opts: { reason?: string }) => {
      const responses = [];
      let failed = false;
      for (const jobId of jobIds) {
        try {
          responses.push(await cli.client().cancelJob({ jobId: await resolveJobId(cli.client(), jobId), reason: opts.reason ?? "" }));
        } catch (err) {
          failed = true;
          cli.out.warn(`hyperctl: cancel ${jobId}: ${describeError(err, { server: cli.options.server, apiKeyGiven: Boolean(cli.options.apiKey) }).message}`);
        }
      }
      cli.out.results(CancelJobResponseSchema, responses, (r) => (cli.out.quiet ? undefined : `job ${r.job!.id} ${stateName(r.job!.state)}`));
      return failed ? 1 : 0;
    }));

  const watch = new Command("watch")
    .description("follow a job until it ends; exit code 0 completed, 1 failed, 2 cancelled, 3 daemon unreachable (Ctrl-C stops watching, not the job)")
    .argument("<job>", JOB_ARGUMENT)
    .addHelpText("after", examples("hyperctl watch 0193a2b4", "hyperctl watch 0193a2b4 -o json   # JSON lines of the updates"))
    .action(action(io, async (cli, arg: string) => followJob(cli, await resolveJobId(cli.client(), arg))));

  const logs = new Command("logs")
    .description("print a job's log")
    .argument("<job>", JOB_ARGUMENT)
    .option("-f, --follow", "keep printing new entries until the job ends")
    .option("--tail <n>", "only the last n entries", intOption(0, 100_000), 0)
    .addHelpText("after", examples("hyperctl logs 0193a2b4 --tail 20", "hyperctl logs -f 0193a2b4", "hyperctl logs 0193a2b4 -o json | jq -r .entry.message"))
    .action(action(io, async (cli, arg: string, opts: { follow?: boolean; tail: number }) => printLogs(cli, await resolveJobId(cli.client(), arg), opts)));

  const history = new Command("history")
    .description("a job's state changes: from, to, why, who, when")
    .argument("<job>", JOB_ARGUMENT)
    .addHelpText("after", examples("hyperctl history 0193a2b4", "hyperctl history 0193a2b4 -o yaml"))
    .action(action(io, async (cli, arg: string) => {
      const response = await cli.client().getJobHistory({ jobId: await resolveJobId(cli.client(), arg) });
      cli.out.result(GetJobHistoryResponseSchema, response, () => table(["TIME", "FROM", "TO", "ACTOR", "REASON"], response.transitions.map((t) => [
        time(t.time), t.fromState ? stateName(t.fromState) : "-", stateName(t.toState), t.actor || "-", t.reason || "-",
      ])));
    }));

  return [get, list, cancel, watch, logs, history];
}

/** `hyperctl jobs list|get|...`: the same commands grouped as `batches ...` is, for who types the noun first. */
export function jobsCommand(io: CliIo): Command {
  const jobs = new Command("jobs").description("the job commands again, grouped: jobs list|get|cancel|watch|logs|history");
  for (const command of jobCommands(io)) jobs.addCommand(command);
  return jobs;
}

async function printLogs(cli: Cli, jobId: string, opts: { follow?: boolean; tail: number }): Promise<number> {
  const signal = opts.follow ? cli.interruptSignal() : undefined;
  try {
    const stream = cli.client().streamJobLogs({ jobId, tail: opts.tail, follow: opts.follow ?? false }, { signal });
    for await (const response of stream) {
      cli.out.streamed(StreamJobLogsResponseSchema, response, () => logLine(response.entry!));
    }
    return 0;
  } catch (err) {
    if (signal?.aborted && signal.reason instanceof Interrupted) return 130;
    throw err;
  }
}

/** "2026-01-02T15:04:05+01:00  INFO   message  key=value ..." */
function logLine(entry: LogEntry): string {
  let fields = "";
  if (entry.fieldsJson) {
    try {
      fields = Object.entries(JSON.parse(entry.fieldsJson) as Record<string, unknown>)
        .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
        .join(" ");
    } catch {
      fields = entry.fieldsJson; // not JSON after all: show it as it came
    }
  }
  return `${localIso(entry.time ? timestampDate(entry.time) : new Date())}  ${entry.level.toUpperCase().padEnd(5)}  ${entry.message}${fields ? `  ${fields}` : ""}`;
}
