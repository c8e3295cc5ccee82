import { Command } from "commander";
import { ExportFormat } from "../../../gen/hypervisord/v1/job_pb.js";
import { GetCapabilitiesResponseSchema, GetStatusResponseSchema } from "../../../gen/hypervisord/v1/service_pb.js";
import { action } from "../context.ts";
import { duration, enumName, time } from "../format.ts";
import { examples } from "../help-examples.ts";
import type { CliIo } from "../io.ts";
import { keyValues, table } from "../table.ts";

export function daemonCommands(io: CliIo): Command[] {
  const status = new Command("status")
    .description("the daemon's version, uptime, queue and job counts")
    .addHelpText("after", examples("hyperctl status", "hyperctl --server grpc://backup-01:50051 status", "hyperctl status -o yaml"))
    .action(action(io, async (cli) => {
      const s = await cli.client().getStatus({});
      cli.out.result(GetStatusResponseSchema, s, () => {
        const c = s.jobCounts;
        const lines = keyValues([
          ["Server", cli.options.server],
          ["Version", s.version],
          ["Lifecycle", s.lifecycle],
          ["Started", `${time(s.startTime)} (up ${duration(s.uptimeSeconds)})`],
          ["Store", s.store],
          ["Running", `${s.running} of ${s.maxConcurrentJobs}`],
          ["Queue depth", String(s.queueDepth)],
          ["Jobs", c ? `${c.total} total: ${c.queued} queued, ${c.running} running, ${c.completed} completed, ${c.failed} failed, ${c.cancelled} cancelled` : "-"],
          ["Subscribers", String(s.subscribers)],
          ["Last seq", String(s.lastSeq)],
        ]);
        const providers = s.providers.filter((p) => Object.keys(p.counters).length > 0);
        if (providers.length === 0) return lines;
        return `${lines}\n\n${table(["PROVIDER", "COUNTERS"], providers.map((p) => [p.name, Object.entries(p.counters).map(([k, v]) => `${k}=${v}`).join(" ")]))}`;
      });
    }));

  const capabilities = new Command("capabilities")
    .description("providers, formats, conversions and output roots the daemon offers")
    .addHelpText("after", examples("hyperctl capabilities", "hyperctl capabilities --json | jq -r '.conversions[] | select(.available) | .format'"))
    .action(action(io, async (cli) => {
      const c = await cli.client().getCapabilities({});
      cli.out.result(GetCapabilitiesResponseSchema, c, () => [
        table(["PROVIDER", "RESUMABLE", "DISCOVERY"], c.providers.map((p) => [p.name, p.resumable ? "yes" : "no", p.discovery ? "yes" : "no"])),
        "",
        table(["CONVERSION", "AVAILABLE", "REASON"], c.conversions.map((v) => [v.format, v.available ? "yes" : "no", v.reason])),
        "",
        keyValues([
          ["Formats", c.formats.map((f) => enumName(ExportFormat, f)).join(", ")],
          ["Compressions", c.compressions.join(", ") || "-"],
          ["Priorities", c.priorities.join(", ")],
          ["Output roots", c.allowedOutputRoots.join(", ")],
        ]),
      ].join("\n"));
    }));

  return [status, capabilities];
}
