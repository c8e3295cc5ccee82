import { Command, Option } from "commander";
import { JobState } from "../../../gen/hypervisord/v1/job_pb.js";
import { MissedRunPolicy, OverlapPolicy, type Schedule, type ScheduleRun } from "../../../gen/hypervisord/v1/schedule_pb.js";
import {
  CreateScheduleResponseSchema, DeleteScheduleResponseSchema, DisableScheduleResponseSchema, EnableScheduleResponseSchema,
  GetScheduleResponseSchema, ListScheduleRunsResponseSchema, ListSchedulesResponseSchema, TriggerScheduleResponseSchema, UpdateScheduleResponseSchema,
} from "../../../gen/hypervisord/v1/service_pb.js";
import { action } from "../context.ts";
import { duration, enumName, orDash, time } from "../format.ts";
import { examples } from "../help-examples.ts";
import type { CliIo } from "../io.ts";
import { selectorText } from "../batch-view.ts";
import { stateName } from "../job-view.ts";
import { choice, collect, intOption, keyValuePairs } from "../parse.ts";
import { keyValues, table } from "../table.ts";
import { addDefinitionOptions, definitionOf, type ExportOptions } from "./submit.ts";

const OVERLAP: Record<string, OverlapPolicy> = { skip: OverlapPolicy.SKIP, queue: OverlapPolicy.QUEUE, allow: OverlapPolicy.ALLOW };
const MISSED: Record<string, MissedRunPolicy> = { skip: MissedRunPolicy.SKIP, "run-once": MissedRunPolicy.RUN_ONCE };
const KEEP_LAST_HELP = "keep the last N successful exports per VM, deleting older run directories (0-10000; 0 keeps all)";

function schedulesTable(schedules: readonly Schedule[]): string {
  return table(["ID", "NAME", "CRON", "TIME ZONE", "ENABLED", "NEXT RUN", "LAST RUN", "RUNS"], schedules.map((s) => [
    s.id, s.name, s.cron, s.timeZone || "UTC", s.enabled === false ? "no" : "yes", time(s.nextRunTime), time(s.lastRunTime), String(s.runCount),
  ]));
}

function scheduleDetails(s: Schedule): string {
  const t = s.jobTemplate;
  return keyValues([
    ["ID", s.id], ["Name", s.name], ["Description", s.description || undefined], ["Cron", s.cron], ["Time zone", s.timeZone || "UTC"],
    ["Enabled", s.enabled === false ? "no" : "yes"], ["Overlap", enumName(OverlapPolicy, s.overlapPolicy)], ["Missed runs", enumName(MissedRunPolicy, s.missedRunPolicy)],
    ["Keep last", s.keepLast > 0 ? `${s.keepLast} successful exports per VM` : "all exports"],
    ["VM", t?.vmSelector ? undefined : orDash(t?.vm)], ["VMs", selectorText(t?.vmSelector)],
    ["Max parallel", t?.maxParallel ? String(t.maxParallel) : undefined], ["Provider", orDash(t?.provider)], ["Output dir", t?.outputDir || undefined], ["Profile", t?.profile || undefined],
    ["Tags", Object.keys(s.tags).length > 0 ? Object.entries(s.tags).map(([k, v]) => `${k}=${v}`).join(", ") : undefined],
    ["Next run", time(s.nextRunTime)], ["Last run", time(s.lastRunTime)], ["Runs", String(s.runCount)],
    ["Created", time(s.createTime)], ["Updated", time(s.updateTime)],
  ]);
}

function runsTable(runs: readonly ScheduleRun[]): string {
  return table(["RUN", "TRIGGER", "SCHEDULED", "JOB", "STATE", "DURATION", "SKIPPED"], runs.map((r) => [
    r.id, r.trigger, time(r.scheduledTime), r.jobId || (r.batchId ? `batch ${r.batchId}` : "-"), r.state === JobState.UNSPECIFIED ? "-" : stateName(r.state),
    r.durationSeconds > 0 ? duration(r.durationSeconds) : "-", r.skippedReason,
  ]));
}

/** A schedule id as the daemon makes them, for the examples. */
const ID = "0193a2b4-5c1e-7d3f-9a2b-3c4d5e6f7a8b";

export function schedulesCommand(io: CliIo): Command {
  const schedules = new Command("schedules").description("recurring exports")
    .addHelpText("after", examples(
      `hyperctl schedules create nightly-web "0 2 * * *" --time-zone Europe/Berlin --vm /DC0/vm/web-01 --output-dir nightly`,
      "hyperctl schedules list",
      `hyperctl schedules disable ${ID}   # and enable again`,
      `hyperctl schedules runs ${ID}`,
    ));
  const byId = (name: string, description: string, lines: string[]) => new Command(name)
    .description(description)
    .argument("<id>", "schedule id")
    .addHelpText("after", examples(...lines.map((line) => `hyperctl schedules ${name} ${line}`)));

  schedules.addCommand(new Command("list").description("list schedules")
    .option("--tag <key=value>", "only schedules with this tag (repeatable)", collect)
    .option("--limit <n>", "at most this many (1-1000)", intOption(1, 1000), 100)
    .addHelpText("after", examples("hyperctl schedules list", "hyperctl schedules list --tag team=web -q   # ids only"))
    .action(action(io, async (cli, opts: { tag?: string[]; limit: number }) => {
      const response = await cli.client().listSchedules({ tags: keyValuePairs(opts.tag, "--tag"), pageSize: opts.limit });
      cli.out.result(ListSchedulesResponseSchema, response, () =>
        cli.out.quiet ? response.schedules.map((s) => s.id).join("\n") : response.schedules.length ? schedulesTable(response.schedules) : "no schedules");
    })));

  schedules.addCommand(byId("get", "show a schedule", [ID, `${ID} -o yaml`]).action(action(io, async (cli, id: string) => {
    const response = await cli.client().getSchedule({ id });
    cli.out.result(GetScheduleResponseSchema, response, () => scheduleDetails(response.schedule!));
  })));

  schedules.addCommand(addDefinitionOptions(new Command("create")
    .description("create a schedule that exports a VM (--vm), or every VM a selector matches (--folder, --name-glob), on a cron expression")
    .argument("<name>", "schedule name")
    .argument("<cron>", "5 fields, 6 with seconds first, or @daily-style; quote it"))
    .option("--time-zone <zone>", "IANA time zone of the cron expression (default UTC)")
    .option("--description <text>", "what the schedule is for")
    .option("--overlap <policy>", "while the previous run is going: skip, queue or allow", choice(OVERLAP, "--overlap"))
    .option("--missed <policy>", "runs missed while the daemon was down: skip or run-once", choice(MISSED, "--missed"))
    .option("--tag <key=value>", "tag the schedule (repeatable)", collect)
    .option("--keep-last <n>", KEEP_LAST_HELP, intOption(0, 10_000))
    .option("--disabled", "create it disabled")
    .addHelpText("after", examples(
      `hyperctl schedules create nightly-web "0 2 * * *" --vm /DC0/vm/web-01 --output-dir nightly --keep-last 7`,
      `hyperctl schedules create weekly-prod "@weekly" --folder /DC0/vm/prod --format ova --time-zone America/New_York`,
      `hyperctl schedules create hourly "0 * * * *" --vm web-02 --overlap skip --disabled`,
    ))
    .action(action(io, async (cli, name: string, cron: string, opts: ExportOptions & {
      timeZone?: string; description?: string; overlap?: OverlapPolicy; missed?: MissedRunPolicy; tag?: string[]; keepLast?: number; disabled?: boolean;
    }) => {
      const response = await cli.client().createSchedule({ schedule: {
        name, cron, timeZone: opts.timeZone ?? "", description: opts.description ?? "",
        jobTemplate: await definitionOf(opts, io),
        enabled: !opts.disabled,
        tags: keyValuePairs(opts.tag, "--tag"),
        overlapPolicy: opts.overlap ?? OverlapPolicy.UNSPECIFIED,
        missedRunPolicy: opts.missed ?? MissedRunPolicy.UNSPECIFIED,
        keepLast: opts.keepLast ?? 0,
      } });
      const s = response.schedule!;
      cli.out.result(CreateScheduleResponseSchema, response, () => (cli.out.quiet ? s.id : `schedule ${s.id} created; next run ${time(s.nextRunTime)}`));
    })));

  schedules.addCommand(byId("update", "change a schedule's name, cron, time zone, overlap policy, retention or enabled state",
    [`${ID} --cron "30 3 * * *" --time-zone Europe/Berlin`, `${ID} --keep-last 0   # keep every export`])
    .option("--name <name>", "new name")
    .option("--cron <expression>", "new cron expression")
    .option("--time-zone <zone>", "new time zone")
    .option("--description <text>", "new description")
    .option("--overlap <policy>", "skip, queue or allow", choice(OVERLAP, "--overlap"))
    .option("--keep-last <n>", KEEP_LAST_HELP, intOption(0, 10_000))
    .addOption(new Option("--enable", "enable it (the same as schedules enable)").conflicts("disable"))
    .option("--disable", "disable it (the same as schedules disable)")
    .action(action(io, async (cli, id: string, opts: {
      name?: string; cron?: string; timeZone?: string; description?: string; overlap?: OverlapPolicy; keepLast?: number; enable?: boolean; disable?: boolean;
    }) => {
      // Without an update_mask the daemon changes the fields given and leaves the rest; keep_last 0 looks
      // like "not given" on the wire, so then the mask names every field given.
      const given: [string, unknown][] = [["name", opts.name], ["cron", opts.cron], ["time_zone", opts.timeZone], ["description", opts.description],
        ["overlap_policy", opts.overlap], ["keep_last", opts.keepLast], ["enabled", opts.enable ?? (opts.disable ? false : undefined)]];
      const updateMask = opts.keepLast === 0 ? { paths: given.filter(([, value]) => value !== undefined).map(([path]) => path) } : undefined;
      const response = await cli.client().updateSchedule({ id, updateMask, schedule: {
        name: opts.name ?? "", cron: opts.cron ?? "", timeZone: opts.timeZone ?? "", description: opts.description ?? "",
        overlapPolicy: opts.overlap ?? OverlapPolicy.UNSPECIFIED,
        keepLast: opts.keepLast ?? 0,
        ...(opts.enable && { enabled: true }),
        ...(opts.disable && { enabled: false }),
      } });
      cli.out.result(UpdateScheduleResponseSchema, response, () => (cli.out.quiet ? undefined : scheduleDetails(response.schedule!)));
    })));

  schedules.addCommand(byId("enable", "enable a schedule: it runs again from its next cron time", [ID]).action(action(io, async (cli, id: string) => {
    const response = await cli.client().enableSchedule({ id });
    cli.out.result(EnableScheduleResponseSchema, response, () => (cli.out.quiet ? undefined : `schedule ${id} enabled; next run ${time(response.schedule?.nextRunTime)}`));
  })));

  schedules.addCommand(byId("disable", "disable a schedule: no runs until it is enabled (running jobs go on)", [ID]).action(action(io, async (cli, id: string) => {
    const response = await cli.client().disableSchedule({ id });
    cli.out.result(DisableScheduleResponseSchema, response, () => (cli.out.quiet ? undefined : `schedule ${id} disabled`));
  })));

  schedules.addCommand(byId("trigger", "run a schedule now (its overlap policy applies)", [ID]).action(action(io, async (cli, id: string) => {
    const response = await cli.client().triggerSchedule({ id });
    const run = response.run!;
    cli.out.result(TriggerScheduleResponseSchema, response, () => {
      if (response.job) return cli.out.quiet ? response.job.id : `run ${run.id}: job ${response.job.id} ${stateName(response.job.state)}`;
      if (run.batchId) return cli.out.quiet ? run.batchId : `run ${run.id}: batch ${run.batchId} (hyperctl batches get ${run.batchId})`;
      return cli.out.quiet ? undefined : `run ${run.id}: ${run.skippedReason ? `skipped (${run.skippedReason})` : "queued behind the running job"}`;
    });
  })));

  schedules.addCommand(byId("delete", "delete a schedule", [ID]).action(action(io, async (cli, id: string) => {
    const response = await cli.client().deleteSchedule({ id });
    cli.out.result(DeleteScheduleResponseSchema, response, () => (cli.out.quiet ? undefined : `schedule ${id} deleted`));
  })));

  schedules.addCommand(byId("runs", "a schedule's runs, newest first", [ID, `${ID} --limit 10 -o json`])
    .option("--limit <n>", "at most this many (1-1000)", intOption(1, 1000), 100)
    .action(action(io, async (cli, id: string, opts: { limit: number }) => {
      const response = await cli.client().listScheduleRuns({ scheduleId: id, pageSize: opts.limit });
      cli.out.result(ListScheduleRunsResponseSchema, response, () => (response.runs.length ? runsTable(response.runs) : "no runs yet"));
    })));

  return schedules;
}
