import { Command } from "commander";
import { JobDefinitionSchema, type JobDefinition } from "../../../gen/hypervisord/v1/job_pb.js";
import type { Profile } from "../../../gen/hypervisord/v1/profile_pb.js";
import {
  CreateProfileResponseSchema, DeleteProfileResponseSchema, GetProfileResponseSchema, ListProfilesResponseSchema, UpdateProfileResponseSchema,
} from "../../../gen/hypervisord/v1/service_pb.js";
import { action } from "../context.ts";
import { jobDefinitionFromJson, readDataFile } from "../definition-file.ts";
import { InputError } from "../errors.ts";
import { time } from "../format.ts";
import { examples } from "../help-examples.ts";
import type { CliIo } from "../io.ts";
import { protoJson } from "../output.ts";
import { keyValues, table } from "../table.ts";

/** A settings file: the JobDefinition fields of the profile, or `{description, settings: {...}}`. */
function readSettings(file: string): { description?: string; settings: JobDefinition } {
  const data = readDataFile(file);
  if (typeof data !== "object" || data === null || Array.isArray(data)) throw new InputError(`${file}: expected a mapping of settings`);
  if ("settings" in data) {
    const { description, settings } = data as { description?: unknown; settings: unknown };
    if (description !== undefined && typeof description !== "string") throw new InputError(`${file}: description must be a string`);
    return { ...(description !== undefined && { description }), settings: jobDefinitionFromJson(settings, `${file}: settings`) };
  }
  return { settings: jobDefinitionFromJson(data, file) };
}

/** The settings a profile sets, as "key=value" pairs of their proto JSON (defaults left out). */
function settingsSummary(settings: JobDefinition | undefined): string {
  if (!settings) return "-";
  const json = protoJson(JobDefinitionSchema, settings) as Record<string, unknown>;
  const set = Object.entries(json).filter(([, v]) => v !== "" && v !== false && v !== 0 && v !== "0" && v !== "EXPORT_FORMAT_UNSPECIFIED"
    && !(Array.isArray(v) && v.length === 0) && !(typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length === 0));
  return set.map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ") || "-";
}

function profileDetails(p: Profile): string {
  return keyValues([
    ["Name", p.name], ["Description", p.description || undefined], ["Source", p.source], ["Settings", settingsSummary(p.settings)],
    ["Created", time(p.createTime)], ["Updated", time(p.updateTime)],
  ]);
}

export function profilesCommand(io: CliIo): Command {
  const profiles = new Command("profiles").description("named export settings");
  const byName = (name: string, description: string, ...lines: string[]) =>
    new Command(name).description(description).argument("<name>", "profile name").addHelpText("after", examples(...lines));

  profiles.addCommand(new Command("list").description("list profiles").addHelpText("after", examples("hyperctl profiles list", "hyperctl profiles list -o yaml")).action(action(io, async (cli) => {
    const response = await cli.client().listProfiles({});
    cli.out.result(ListProfilesResponseSchema, response, () => {
      if (cli.out.quiet) return response.profiles.map((p) => p.name).join("\n");
      if (response.profiles.length === 0) return "no profiles";
      return table(["NAME", "SOURCE", "DESCRIPTION", "SETTINGS"], response.profiles.map((p) => [p.name, p.source, p.description || "-", settingsSummary(p.settings)]));
    });
  })));

  profiles.addCommand(byName("get", "show a profile", "hyperctl profiles get compressed-ova", "hyperctl profiles get compressed-ova -o yaml").action(action(io, async (cli, name: string) => {
    const response = await cli.client().getProfile({ name });
    cli.out.result(GetProfileResponseSchema, response, () => profileDetails(response.profile!));
  })));

  for (const verb of ["create", "update"] as const) {
    profiles.addCommand(byName(verb, verb === "create" ? "create a profile from a settings file" : "replace a profile's description and settings",
      `hyperctl profiles ${verb} compressed-ova -f compressed-ova.yaml   # format: ova, compress: true, compression_level: 9`,
      `hyperctl profiles ${verb} nightly -f nightly.yaml --description "nightly exports of the web tier"`)
      .requiredOption("-f, --file <file>", "YAML or JSON: JobDefinition fields (format, compress, output_dir, ...), or {description, settings}")
      .option("--description <text>", "what the profile is for")
      .action(action(io, async (cli, name: string, opts: { file: string; description?: string }) => {
        const { description, settings } = readSettings(opts.file);
        const profile = { name, description: opts.description ?? description ?? "", settings };
        if (verb === "create") {
          const response = await cli.client().createProfile({ profile });
          cli.out.result(CreateProfileResponseSchema, response, () => (cli.out.quiet ? undefined : `profile ${name} created`));
        } else {
          const response = await cli.client().updateProfile({ profile });
          cli.out.result(UpdateProfileResponseSchema, response, () => (cli.out.quiet ? undefined : `profile ${name} updated`));
        }
      })));
  }

  profiles.addCommand(byName("delete", "delete a profile", "hyperctl profiles delete compressed-ova").action(action(io, async (cli, name: string) => {
    const response = await cli.client().deleteProfile({ name });
    cli.out.result(DeleteProfileResponseSchema, response, () => (cli.out.quiet ? undefined : `profile ${name} deleted`));
  })));

  return profiles;
}
