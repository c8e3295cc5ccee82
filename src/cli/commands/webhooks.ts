import { Command, Option } from "commander";
import { DeliveryState, type Webhook, type WebhookDelivery } from "../../../gen/hypervisord/v1/webhook_pb.js";
import {
  CreateWebhookResponseSchema, DeleteWebhookResponseSchema, GetWebhookResponseSchema, ListWebhookDeliveriesResponseSchema,
  ListWebhooksResponseSchema, TestWebhookResponseSchema, UpdateWebhookResponseSchema,
} from "../../../gen/hypervisord/v1/service_pb.js";
import { action, type Cli } from "../context.ts";
import { enumName, time } from "../format.ts";
import { examples } from "../help-examples.ts";
import type { CliIo } from "../io.ts";
import { collect, intOption, keyValuePairs } from "../parse.ts";
import { keyValues, table } from "../table.ts";

interface WebhookOptions {
  header?: string[];
  secret?: string;
  timeout?: number;
  maxAttempts?: number;
}

function webhooksTable(webhooks: readonly Webhook[]): string {
  return table(["ID", "URL", "EVENTS", "ENABLED", "CIRCUIT", "SOURCE"], webhooks.map((w) => [
    w.id, w.url, w.events.join(",") || "*", w.enabled === false ? "no" : "yes", w.circuitState || "-", w.source,
  ]));
}

function webhookDetails(w: Webhook): string {
  return keyValues([
    ["ID", w.id], ["URL", w.url], ["Events", w.events.join(", ") || "* (all but job.progress)"], ["Enabled", w.enabled === false ? "no" : "yes"],
    ["Headers", Object.keys(w.headers).length > 0 ? Object.entries(w.headers).map(([k, v]) => `${k}: ${v}`).join(", ") : undefined],
    ["Timeout", w.timeout ? `${Number(w.timeout.seconds) + w.timeout.nanos / 1e9}s` : undefined], ["Max attempts", String(w.maxAttempts)],
    ["Circuit", w.circuitState || undefined], ["Source", w.source], ["Created", time(w.createTime)], ["Updated", time(w.updateTime)],
  ]);
}

function lastAttempt(d: WebhookDelivery): string {
  const a = d.attempts[d.attempts.length - 1];
  if (!a) return "-";
  return `${a.statusCode || "no response"}${a.error ? ` (${a.error})` : ""} in ${Math.round(a.latencyMs)} ms`;
}

function deliveriesTable(deliveries: readonly WebhookDelivery[]): string {
  return table(["DELIVERY", "EVENT", "STATE", "ATTEMPTS", "LAST ATTEMPT", "CREATED", "NEXT ATTEMPT"], deliveries.map((d) => [
    d.id, d.eventType, enumName(DeliveryState, d.state), String(d.attempts.length), lastAttempt(d), time(d.createTime), time(d.nextAttemptTime),
  ]));
}

/** The Webhook fields the shared options set; unset ones stay empty so that an update leaves them alone. */
function webhookFields(opts: WebhookOptions) {
  return {
    headers: keyValuePairs(opts.header, "--header"),
    secret: opts.secret ?? "",
    maxAttempts: opts.maxAttempts ?? 0,
    ...(opts.timeout !== undefined && { timeout: { seconds: BigInt(opts.timeout), nanos: 0 } }),
  };
}

function addWebhookOptions(command: Command): Command {
  return command
    .option("--header <name=value>", "header sent with every delivery (repeatable; write-only)", collect)
    .option("--secret <whsec>", "signing secret (default on add: generated and printed once)")
    .option("--timeout <seconds>", "per attempt (default 10)", intOption(1, 300))
    .option("--max-attempts <n>", "attempts per event (default 8)", intOption(1, 100));
}

/** enable/disable: only the enabled field changes (update_mask), as schedules enable/disable do it with their own calls. */
async function setEnabled(cli: Cli, id: string, enabled: boolean): Promise<void> {
  const response = await cli.client().updateWebhook({ id, webhook: { enabled }, updateMask: { paths: ["enabled"] } });
  cli.out.result(UpdateWebhookResponseSchema, response, () => (cli.out.quiet ? undefined : `webhook ${id} ${enabled ? "enabled" : "disabled"}`));
}

/** A webhook id as the daemon makes them, for the examples. */
const ID = "wh_0193a2b4-5c1e-7d3f-9a2b-3c4d5e6f7a8b";

export function webhooksCommand(io: CliIo): Command {
  const webhooks = new Command("webhooks").description("signed HTTP callbacks on job events")
    .addHelpText("after", examples(
      "hyperctl webhooks add https://hooks.example.com/hv job.completed job.failed",
      "hyperctl webhooks list",
      `hyperctl webhooks disable ${ID}   # and enable again`,
      `hyperctl webhooks deliveries ${ID} --limit 20`,
    ));
  const byId = (name: string, description: string, lines: string[]) => new Command(name)
    .description(description)
    .argument("<id>", "webhook id")
    .addHelpText("after", examples(...lines.map((line) => `hyperctl webhooks ${name} ${line}`)));

  webhooks.addCommand(new Command("list").description("list webhooks")
    .addHelpText("after", examples("hyperctl webhooks list", "hyperctl webhooks list -q   # ids only"))
    .action(action(io, async (cli) => {
      const response = await cli.client().listWebhooks({});
      cli.out.result(ListWebhooksResponseSchema, response, () =>
        cli.out.quiet ? response.webhooks.map((w) => w.id).join("\n") : response.webhooks.length ? webhooksTable(response.webhooks) : "no webhooks");
    })));

  webhooks.addCommand(byId("get", "show a webhook", [ID, `${ID} -o json`]).action(action(io, async (cli, id: string) => {
    const response = await cli.client().getWebhook({ id });
    cli.out.result(GetWebhookResponseSchema, response, () => webhookDetails(response.webhook!));
  })));

  webhooks.addCommand(addWebhookOptions(new Command("add")
    .description("add a webhook; its signing secret is printed this once")
    .argument("<url>", "http(s) URL")
    .argument("[events...]", "job.created job.started job.progress job.completed job.failed job.cancelled schedule.triggered vm.discovered (default: all but job.progress)"))
    .option("--disabled", "add it disabled")
    .addHelpText("after", examples(
      "hyperctl webhooks add https://hooks.example.com/hv   # every event but job.progress",
      "hyperctl webhooks add https://hooks.example.com/hv job.failed --header \"authorization=Bearer abc\" --max-attempts 3",
      "hyperctl webhooks add https://hooks.example.com/hv --disabled -q   # prints the id, then the secret",
    ))
    .action(action(io, async (cli, url: string, events: string[], opts: WebhookOptions & { disabled?: boolean }) => {
      const response = await cli.client().createWebhook({ webhook: { url, events, enabled: !opts.disabled, ...webhookFields(opts) } });
      const w = response.webhook!;
      cli.out.result(CreateWebhookResponseSchema, response, () =>
        cli.out.quiet ? `${w.id}\n${response.secret}` : `webhook ${w.id} added\nsecret: ${response.secret}\n(shown this once: store it to verify the webhook-signature header)`);
    })));

  webhooks.addCommand(addWebhookOptions(byId("update", "change a webhook (only the options given)",
    [`${ID} --events job.completed,job.failed`, `${ID} --url https://hooks.example.com/v2 --timeout 30`]))
    .option("--url <url>", "new URL")
    .option("--events <events>", "new event list, comma-separated")
    .addOption(new Option("--enable", "enable it (the same as webhooks enable)").conflicts("disable"))
    .option("--disable", "disable it (the same as webhooks disable)")
    .action(action(io, async (cli, id: string, opts: WebhookOptions & { url?: string; events?: string; enable?: boolean; disable?: boolean }) => {
      const response = await cli.client().updateWebhook({ id, webhook: {
        url: opts.url ?? "",
        events: opts.events ? opts.events.split(",").map((e) => e.trim()).filter(Boolean) : [],
        ...webhookFields(opts),
        ...(opts.enable && { enabled: true }),
        ...(opts.disable && { enabled: false }),
      } });
      cli.out.result(UpdateWebhookResponseSchema, response, () => (cli.out.quiet ? undefined : webhookDetails(response.webhook!)));
    })));

  webhooks.addCommand(byId("enable", "enable a webhook: events are delivered to it again", [ID])
    .action(action(io, (cli, id: string) => setEnabled(cli, id, true))));

  webhooks.addCommand(byId("disable", "disable a webhook: no new events are queued for it, and its pending deliveries wait until it is enabled", [ID])
    .action(action(io, (cli, id: string) => setEnabled(cli, id, false))));

  webhooks.addCommand(byId("delete", "delete a webhook", [ID]).action(action(io, async (cli, id: string) => {
    const response = await cli.client().deleteWebhook({ id });
    cli.out.result(DeleteWebhookResponseSchema, response, () => (cli.out.quiet ? undefined : `webhook ${id} deleted`));
  })));

  webhooks.addCommand(byId("test", "send a webhook.test event now and show the outcome (exit code 1 when it was not delivered)", [ID]).action(action(io, async (cli, id: string) => {
    const response = await cli.client().testWebhook({ id });
    const d = response.delivery!;
    cli.out.result(TestWebhookResponseSchema, response, () => `delivery ${d.id}: ${enumName(DeliveryState, d.state)}, ${lastAttempt(d)}`);
    return d.state === DeliveryState.DELIVERED ? 0 : 1;
  })));

  webhooks.addCommand(byId("deliveries", "a webhook's deliveries with their attempts, newest first", [`${ID} --limit 20`])
    .option("--limit <n>", "at most this many (1-1000)", intOption(1, 1000), 100)
    .action(action(io, async (cli, id: string, opts: { limit: number }) => {
      const response = await cli.client().listWebhookDeliveries({ webhookId: id, pageSize: opts.limit });
      cli.out.result(ListWebhookDeliveriesResponseSchema, response, () => (response.deliveries.length ? deliveriesTable(response.deliveries) : "no deliveries"));
    })));

  return webhooks;
}
