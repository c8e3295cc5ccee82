import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ExportFormat, JobDefinitionSchema, type JobDefinition as JobDefinitionPb } from "../../gen/hypervisord/v1/job_pb.js";
import type { Profile as ProfilePb } from "../../gen/hypervisord/v1/profile_pb.js";
import type { HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import type { Profile, ProfileSettings } from "../domain/profile.ts";
import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError, quoteInput } from "../errors.ts";
import type { ProfileStore } from "../store/store.ts";
import type { ServiceHandlers } from "../rpc/handlers.ts";
import { exportSettings, type DefinitionRules } from "./job-definition.ts";

type ProfileHandlers = Pick<ServiceHandlers<typeof HypervisordService>, "createProfile" | "getProfile" | "listProfiles" | "updateProfile" | "deleteProfile">;
type PathRules = Pick<DefinitionRules, "allowedOutputRoots" | "realOutputRoots">;

const NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$/;
/** JobDefinition fields that belong to a job, not to reusable settings. */
const NOT_IN_PROFILES = ["vm", "vsphere", "azure", "name", "requestId", "profile"] as const;

/** Config-file profiles (read-only, first) and API profiles (the store), under one name space. */
export interface ProfileRegistry {
  get(name: string): Promise<Profile | undefined>;
  list(): Promise<Profile[]>;
  create(profile: Profile): Promise<Profile>;
  update(name: string, description: string, settings: ProfileSettings): Promise<Profile>;
  delete(name: string): Promise<void>;
}

export function createProfileRegistry(store: ProfileStore, fromConfig: readonly Profile[]): ProfileRegistry {
  const config = new Map(fromConfig.map((p) => [p.name, p]));
  const mutable = async (name: string) => {
    if (config.has(name)) throw new FailedPreconditionError(`profile ${quoteInput(name)} is defined in the config file; change it there`);
    const profile = await store.get(name);
    if (!profile) throw new NotFoundError(`profile ${quoteInput(name)} not found`);
    return profile;
  };
  return {
    get: async (name) => config.get(name) ?? store.get(name),
    list: async () => [...config.values(), ...(await store.list())].sort((a, b) => (a.name < b.name ? -1 : 1)),
    async create(profile) {
      if (config.has(profile.name) || (await store.get(profile.name))) throw new AlreadyExistsError(`profile "${profile.name}" already exists`);
      await store.insert(profile);
      return profile;
    },
    async update(name, description, settings) {
      const updated = { ...(await mutable(name)), description, settings, updateTime: Date.now() };
      await store.update(updated);
      return updated;
    },
    async delete(name) {
      await mutable(name);
      await store.delete(name);
    },
  };
}

/** Checks a profile's name and settings (a JobDefinition with only export settings); errors name the field under `field`. */
export function profileSettingsFromPb(pb: JobDefinitionPb | undefined, field: string, rules: PathRules): ProfileSettings {
  const settings = pb ?? create(JobDefinitionSchema);
  for (const key of NOT_IN_PROFILES) {
    const value = settings[key];
    if (value !== undefined && value !== "") throw new InvalidArgumentError(`${field}.${snake(key)}`, "belongs to a job, not to a profile");
  }
  const all = exportSettings(settings, field, rules, {});
  // Only what the profile sets: a field left empty must not override a job's default later.
  const given: ProfileSettings = {};
  const set = <K extends keyof ProfileSettings>(key: K, isSet: boolean) => {
    if (isSet) given[key] = all[key];
  };
  set("outputDir", settings.outputDir.trim() !== "");
  set("format", settings.format !== ExportFormat.UNSPECIFIED);
  set("compress", settings.compress);
  set("compressionLevel", settings.compressionLevel !== undefined);
  set("convertTo", all.convertTo !== undefined);
  set("parallelDownloads", settings.parallelDownloads !== 0);
  set("bandwidthLimit", settings.bandwidthLimit !== 0n);
  set("powerOff", settings.powerOff);
  set("priority", settings.priority.trim() !== "");
  set("labels", Object.keys(settings.labels).length > 0);
  set("removeDevices", settings.removeDevices.length > 0);
  set("includeImageFiles", settings.includeImageFiles);
  set("manifestAlgorithm", settings.manifestAlgorithm.trim() !== "");
  set("cleanupOvf", settings.cleanupOvf);
  set("generateManifest", settings.generateManifest !== undefined);
  set("verify", settings.verify);
  return given;
}

export function profileName(value: string, field: string): string {
  const name = value.trim();
  if (!NAME.test(name)) throw new InvalidArgumentError(field, `${quoteInput(value)} is not a profile name: 1-64 letters, digits, '.', '_' or '-'`);
  return name;
}

/** The `profiles:` mapping of the config file, checked like CreateProfile (snake_case keys as in the API's JSON). */
export function profilesFromConfig(raw: Record<string, Record<string, unknown> | null>, rules: PathRules): Profile[] {
  const now = Date.now();
  return Object.entries(raw).map(([name, body]) => {
    const field = `profiles.${name}`;
    const { description = "", ...settings } = body ?? {};
    if (typeof description !== "string") throw new InvalidArgumentError(`${field}.description`, "expected a string");
    if (typeof settings.format === "string" && /^(ovf|ova)$/i.test(settings.format)) settings.format = `EXPORT_FORMAT_${settings.format.toUpperCase()}`;
    let pb: JobDefinitionPb;
    try {
      pb = fromJson(JobDefinitionSchema, settings as JsonValue);
    } catch (err) {
      throw new InvalidArgumentError(field, (err as Error).message);
    }
    return { name: profileName(name, field), description, settings: profileSettingsFromPb(pb, field, rules), source: "config", createTime: now, updateTime: now };
  });
}

export function profileToPb(profile: Profile): ProfilePb {
  const s = profile.settings;
  return {
    $typeName: "hypervisord.v1.Profile",
    name: profile.name,
    description: profile.description,
    settings: create(JobDefinitionSchema, {
      outputDir: s.outputDir ?? "",
      format: s.format === "ova" ? ExportFormat.OVA : s.format === "ovf" ? ExportFormat.OVF : ExportFormat.UNSPECIFIED,
      compress: s.compress ?? false,
      compressionLevel: s.compressionLevel,
      convertTo: s.convertTo ?? "",
      parallelDownloads: s.parallelDownloads ?? 0,
      bandwidthLimit: BigInt(s.bandwidthLimit ?? 0),
      powerOff: s.powerOff ?? false,
      priority: s.priority ?? "",
      labels: s.labels ?? {},
      removeDevices: s.removeDevices ?? [],
      includeImageFiles: s.includeImageFiles ?? false,
      manifestAlgorithm: s.manifestAlgorithm ?? "",
      cleanupOvf: s.cleanupOvf ?? false,
      generateManifest: s.generateManifest,
      verify: s.verify ?? false,
    }),
    source: profile.source,
    createTime: timestampFromMs(profile.createTime),
    updateTime: timestampFromMs(profile.updateTime),
  };
}

export function createProfileHandlers(registry: ProfileRegistry, rules: PathRules): ProfileHandlers {
  const fromRequest = (pb: ProfilePb | undefined) => {
    if (!pb) throw new InvalidArgumentError("profile", "required");
    return {
      name: profileName(pb.name, "profile.name"),
      description: pb.description.trim().slice(0, 1024),
      settings: profileSettingsFromPb(pb.settings, "profile.settings", rules),
    };
  };
  const existing = async (name: string) => {
    const profile = await registry.get(profileName(name, "name"));
    if (!profile) throw new NotFoundError(`profile ${quoteInput(name)} not found`);
    return profile;
  };
  return {
    async createProfile(request) {
      const now = Date.now();
      return { profile: profileToPb(await registry.create({ ...fromRequest(request.profile), source: "api", createTime: now, updateTime: now })) };
    },
    async getProfile(request) {
      return { profile: profileToPb(await existing(request.name)) };
    },
    async listProfiles() {
      return { profiles: (await registry.list()).map(profileToPb) };
    },
    async updateProfile(request) {
      const { name, description, settings } = fromRequest(request.profile);
      return { profile: profileToPb(await registry.update(name, description, settings)) };
    },
    async deleteProfile(request) {
      await registry.delete(profileName(request.name, "name"));
      return {};
    },
  };
}

const snake = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
