import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Command } from "commander";
import { ListAuditEventsResponseSchema } from "../../../gen/hypervisord/v1/service_pb.js";
import { action } from "../context.ts";
import { UsageError } from "../errors.ts";
import { time } from "../format.ts";
import { examples } from "../help-examples.ts";
import type { CliIo } from "../io.ts";
import { intOption } from "../parse.ts";
import { table } from "../table.ts";

/** "30m", "12h", "7d" ago, or an RFC 3339 time. */
function since(value: string): Date {
  const relative = /^(\d+)([mhd])$/.exec(value);
  if (relative) return new Date(Date.now() - Number(relative[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[relative[2] as "m" | "h" | "d"]);
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new UsageError(`--since: expected 30m, 12h, 7d or an RFC 3339 time, got "${value}"`);
  return date;
}

/** `hyperctl audit`: the audit log (who called what, when, with which outcome); admin only. */
export function auditCommand(io: CliIo): Command {
  return new Command("audit")
    .description("the audit log, newest first: who called which RPC, when, and the outcome (admin only)")
    .option("--method <rpc>", "only this RPC, e.g. SubmitJob")
    .option("--principal <who>", "only this caller, e.g. \"api_key:key_... (ci)\" or anonymous")
    .option("--since <when>", "only events from 30m, 12h, 7d ago or an RFC 3339 time on")
    .option("--limit <n>", "at most this many events (1-1000)", intOption(1, 1000), 100)
    .option("--page-token <token>", "the next page, as a previous call printed it")
    .addHelpText("after", examples("hyperctl audit --since 1h", "hyperctl audit --method CancelJob -o wide", "hyperctl audit --principal anonymous --json"))
    .action(action(io, async (cli, opts: { method?: string; principal?: string; since?: string; limit: number; pageToken?: string }) => {
      const response = await cli.client().listAuditEvents({
        method: opts.method ?? "", principal: opts.principal ?? "", pageSize: opts.limit, pageToken: opts.pageToken ?? "",
        ...(opts.since && { since: timestampFromDate(since(opts.since)) }),
      });
      cli.out.result(ListAuditEventsResponseSchema, response, () => {
        if (cli.out.quiet) return response.events.map((e) => String(e.id)).join("\n");
        if (response.events.length === 0) return "no audit events";
        const headers = ["TIME", "PRINCIPAL", "ROLE", "METHOD", "CODE", "RESOURCE", "DURATION"];
        const rows = response.events.map((e) => {
          const row = [time(e.time), e.principal, e.role || "-", e.method, e.code, e.resource || "-", `${e.durationMs.toFixed(1)} ms`];
          return cli.out.wide ? [...row, e.transport || "-", e.peer || "-"] : row;
        });
        const more = response.nextPageToken ? `\n(next page: --page-token ${response.nextPageToken})` : "";
        return table(cli.out.wide ? [...headers, "TRANSPORT", "PEER"] : headers, rows) + more;
      });
    }));
}
