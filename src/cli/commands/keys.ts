import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Command, Option } from "commander";
import { CreateApiKeyResponseSchema, ListApiKeysResponseSchema, RevokeApiKeyResponseSchema } from "../../../gen/hypervisord/v1/service_pb.js";
import { action } from "../context.ts";
import { UsageError } from "../errors.ts";
import { time } from "../format.ts";
import { examples } from "../help-examples.ts";
import type { CliIo } from "../io.ts";
import { table } from "../table.ts";

/** "30d", "12h", "90m" from now, or an absolute RFC 3339 time. */
function expiry(value: string): Date {
  const relative = /^(\d+)([mhd])$/.exec(value);
  if (relative) return new Date(Date.now() + Number(relative[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[relative[2] as "m" | "h" | "d"]);
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new UsageError(`--expires: expected 30d, 12h, 90m or an RFC 3339 time, got "${value}"`);
  return date;
}

export function keysCommand(io: CliIo): Command {
  const keys = new Command("keys").description("API keys (admin only)");

  keys.addCommand(new Command("list").description("list API keys (never the keys themselves)")
    .addHelpText("after", examples("hyperctl keys list", "hyperctl keys list -q   # ids only")).action(action(io, async (cli) => {
    const response = await cli.client().listApiKeys({});
    cli.out.result(ListApiKeysResponseSchema, response, () => {
      if (cli.out.quiet) return response.apiKeys.map((k) => k.id).join("\n");
      if (response.apiKeys.length === 0) return "no API keys";
      return table(["ID", "NAME", "ROLE", "PREFIX", "SOURCE", "CREATED", "LAST USED", "EXPIRES", "REVOKED"], response.apiKeys.map((k) => [
        k.id, k.name, k.role, k.prefix, k.source, time(k.createTime), time(k.lastUsedTime), time(k.expireTime), time(k.revokeTime),
      ]));
    });
  })));

  keys.addCommand(new Command("create")
    .description("create an API key; the key is printed this once")
    .argument("<name>", "what the key is for")
    .addOption(new Option("--role <role>", "what it may do").choices(["admin", "operator", "viewer"]).makeOptionMandatory())
    .option("--expires <when>", "30d, 12h, 90m or an RFC 3339 time (default: never)")
    .addHelpText("after", examples("hyperctl keys create ci-exports --role operator --expires 90d", "hyperctl keys create dashboard --role viewer -q > viewer.key"))
    .action(action(io, async (cli, name: string, opts: { role: string; expires?: string }) => {
      const response = await cli.client().createApiKey({ name, role: opts.role, ...(opts.expires && { expireTime: timestampFromDate(expiry(opts.expires)) }) });
      const k = response.apiKey!;
      cli.out.result(CreateApiKeyResponseSchema, response, () =>
        cli.out.quiet ? response.key : `API key ${k.id} (${k.name}, ${k.role}) created\nkey: ${response.key}\n(shown this once: store it now)`);
    })));

  keys.addCommand(new Command("revoke").description("revoke an API key").argument("<id>", "key id")
    .addHelpText("after", examples("hyperctl keys revoke key_01a2b3c4")).action(action(io, async (cli, id: string) => {
    const response = await cli.client().revokeApiKey({ id });
    cli.out.result(RevokeApiKeyResponseSchema, response, () => (cli.out.quiet ? undefined : `API key ${id} revoked at ${time(response.apiKey?.revokeTime)}`));
  })));

  return keys;
}
