import type { AzureConnection as AzureConnectionPb, JobDefinition as JobDefinitionPb, VSphereConnection as VSphereConnectionPb } from "../../gen/hypervisord/v1/job_pb.js";
import { ExportFormat } from "../../gen/hypervisord/v1/job_pb.js";
import type { VmSelector as VmSelectorPb } from "../../gen/hypervisord/v1/job_pb.js";
import { PowerState as PowerStatePb } from "../../gen/hypervisord/v1/vm_pb.js";
import {
  CONVERT_FORMATS, MANIFEST_ALGORITHMS, PRIORITIES, QUIESCE_POLICIES, REMOVABLE_DEVICES, RUNNING_VM_POLICIES,
  type AzureConnection, type ConvertFormat, type JobDefinition, type Priority, type VmSelector, type VSphereConnection,
} from "../domain/job.ts";
import type { PowerState } from "../domain/vm.ts";
import type { Profile, ProfileSettings } from "../domain/profile.ts";
import { azureConnectionOf } from "../domain/azure-connection.ts";
import { vsphereConnectionOf } from "../domain/vsphere-connection.ts";
import { FailedPreconditionError, InvalidArgumentError, quoteInput } from "../errors.ts";
import type { ProviderRegistry } from "../providers/registry.ts";
import { resolveOutputDir } from "./output-dir.ts";

export interface DefinitionRules {
  providers: ProviderRegistry;
  allowedOutputRoots: readonly string[];
  /** The roots with symbolic links resolved (see realPaths). */
  realOutputRoots: readonly string[];
  defaultVSphere?: VSphereConnection;
  /** The config's azure.* connection: provider "azure" jobs without definition.azure use it. */
  defaultAzure?: AzureConnection;
  /** Why a conversion format cannot run here (qemu-img missing), or undefined when it can. */
  conversionUnavailable?(format: ConvertFormat): string | undefined;
  /** A profile by name (JobDefinition.profile). */
  profile?(name: string): Promise<Profile | undefined>;
}

export const DEFAULT_PROVIDER = "vsphere";
export const AZURE_PROVIDER = "azure";
const LABEL_KEY = /^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$/;
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Checks a JobDefinition from the wire and returns it with defaults applied; every error names its field under `field`. */
export async function definitionFromPb(pb: JobDefinitionPb | undefined, field: string, rules: DefinitionRules): Promise<JobDefinition> {
  if (!pb) throw new InvalidArgumentError(field, "required");
  const at = (name: string) => `${field}.${name}`;
  const vm = text(pb.vm, at("vm"), 1024);
  const vmSelector = pb.vmSelector && selectorFromPb(pb.vmSelector, at("vm_selector"));
  if (vm && vmSelector) throw new InvalidArgumentError(at("vm_selector"), "set either vm (one VM) or vm_selector (a batch of VMs), not both");
  if (!vm && !vmSelector) throw new InvalidArgumentError(at("vm"), "required: an inventory path, name, managed object reference or UUID (or a vm_selector)");
  const maxParallel = intIn(pb.maxParallel, 0, 1000, at("max_parallel"));
  if (maxParallel && !vmSelector) throw new InvalidArgumentError(at("max_parallel"), "needs vm_selector (it caps a batch's running jobs)");
  const providerName = text(pb.provider, at("provider"), 64) || DEFAULT_PROVIDER;
  const provider = rules.providers.get(providerName);
  if (!provider) {
    const available = rules.providers.list().map((p) => p.name).join(", ") || "none";
    throw new InvalidArgumentError(at("provider"), `unknown provider ${quoteInput(providerName)} (available: ${available})`);
  }
  const profileName = text(pb.profile, at("profile"), 128);
  const profile = profileName ? await rules.profile?.(profileName) : undefined;
  if (profileName && !profile) throw new InvalidArgumentError(at("profile"), `unknown profile ${quoteInput(profileName)}`);
  if (vmSelector && !provider.listVMs) throw new InvalidArgumentError(at("vm_selector"), `provider ${quoteInput(providerName)} cannot list VMs; name one VM in vm`);
  const runningVmPolicy = oneOf(pb.runningVmPolicy, RUNNING_VM_POLICIES, at("running_vm_policy"), "policy");
  if (pb.powerOff && runningVmPolicy && runningVmPolicy !== "power_off") {
    throw new InvalidArgumentError(at("running_vm_policy"), `${quoteInput(runningVmPolicy)} contradicts power_off: true (power_off is the same as running_vm_policy "power_off")`);
  }
  const quiescePolicy = oneOf(pb.quiescePolicy, QUIESCE_POLICIES, at("quiesce_policy"), "policy");
  const azure = azureOfDefinition(pb, providerName, field, rules);
  const definition: JobDefinition = {
    name: text(pb.name, at("name"), 256) || vm || selectorName(vmSelector!),
    provider: providerName,
    vm,
    vsphere: pb.vsphere && connectionFromPb(pb.vsphere, at("vsphere")),
    ...(azure ? { azure } : {}),
    ...exportSettings(pb, field, rules, profile?.settings ?? {}),
    requestId: text(pb.requestId, at("request_id"), 256) || undefined,
    ...(profileName ? { profile: profileName } : {}),
    ...(pb.keepPartial ? { keepPartial: true } : {}),
    ...(runningVmPolicy ? { runningVmPolicy } : {}),
    ...(pb.quiesce !== undefined ? { quiesce: pb.quiesce } : {}),
    ...(quiescePolicy ? { quiescePolicy } : {}),
    ...(vmSelector ? { vmSelector } : {}),
    ...(maxParallel ? { maxParallel } : {}),
  };
  const unavailable = definition.convertTo && rules.conversionUnavailable?.(definition.convertTo);
  if (unavailable) throw new FailedPreconditionError(`${at("convert_to")}: conversion to ${definition.convertTo} is unavailable: ${unavailable}`);
  if (definition.verify && !definition.convertTo) throw new InvalidArgumentError(at("verify"), "needs convert_to (it compares converted disks with their sources)");
  if (providerName === DEFAULT_PROVIDER) vsphereConnectionOf(definition.vsphere, rules.defaultVSphere, at("vsphere"));
  provider.validate?.(definition);
  return definition;
}

/**
 * A definition's Azure connection: refused on another provider, and for provider "azure" checked (or the
 * config's default checked in its place) at submission, so that a job cannot fail later for a missing field.
 * The checked connection (endpoints filled in) is kept only when the definition gave one: a job on the
 * default stores none and follows the config, as a vSphere job without vsphere does.
 */
function azureOfDefinition(pb: JobDefinitionPb, providerName: string, field: string, rules: DefinitionRules): AzureConnection | undefined {
  const at = (name: string) => `${field}.${name}`;
  if (providerName !== AZURE_PROVIDER) {
    if (pb.azure) throw new InvalidArgumentError(at("azure"), `is for provider "azure"; provider ${quoteInput(providerName)} does not use it`);
    return undefined;
  }
  if (pb.vsphere) throw new InvalidArgumentError(at("vsphere"), "is for provider \"vsphere\"; an Azure job takes azure (or the daemon's default)");
  const given = pb.azure && azureFromPb(pb.azure, at("azure"));
  if (given && !given.subscriptionId && Object.values(given).some(Boolean)) {
    // Half a connection would otherwise be dropped silently for the default.
    throw new InvalidArgumentError(at("azure.subscription_id"), "required when azure is set (leave azure unset to use the daemon's default connection)");
  }
  const checked = azureConnectionOf(given, rules.defaultAzure, at("azure"));
  return given?.subscriptionId ? checked : undefined;
}

/** An AzureConnection from the wire, trimmed (the secret as given); the fields are checked by checkAzureConnection. */
export function azureFromPb(pb: AzureConnectionPb, field: string): AzureConnection {
  return {
    tenantId: text(pb.tenantId, `${field}.tenant_id`, 256),
    clientId: text(pb.clientId, `${field}.client_id`, 256),
    clientSecret: pb.clientSecret,
    subscriptionId: text(pb.subscriptionId, `${field}.subscription_id`, 256),
    resourceGroup: text(pb.resourceGroup, `${field}.resource_group`, 90),
    authorityHost: text(pb.authorityHost, `${field}.authority_host`, 2048),
    resourceManager: text(pb.resourceManager, `${field}.resource_manager`, 2048),
  };
}

type ExportSettings = Required<Omit<ProfileSettings, "convertTo">> & Pick<ProfileSettings, "convertTo">;

/**
 * The export settings of a definition: each field the definition sets (not false, 0 or empty), else the
 * profile's, else the default. Profiles are checked with the same function (and no profile under them).
 */
export function exportSettings(pb: JobDefinitionPb, field: string, rules: Pick<DefinitionRules, "allowedOutputRoots" | "realOutputRoots">, profile: ProfileSettings): ExportSettings {
  const at = (name: string) => `${field}.${name}`;
  return {
    outputDir: pb.outputDir.trim() || profile.outputDir === undefined
      ? resolveOutputDir(pb.outputDir, rules.allowedOutputRoots, at("output_dir"), [...rules.realOutputRoots])
      : profile.outputDir,
    format: pb.format !== ExportFormat.UNSPECIFIED ? formatFromPb(pb.format, at("format")) : profile.format ?? "ovf",
    compress: pb.compress || (profile.compress ?? false),
    compressionLevel: pb.compressionLevel !== undefined ? intIn(pb.compressionLevel, 0, 9, at("compression_level")) : profile.compressionLevel ?? 6,
    convertTo: convertFromPb(pb.convertTo, at("convert_to")) ?? profile.convertTo,
    parallelDownloads: pb.parallelDownloads !== 0 ? intIn(pb.parallelDownloads, 1, 32, at("parallel_downloads")) : profile.parallelDownloads ?? 4,
    bandwidthLimit: pb.bandwidthLimit !== 0n ? nonNegative(pb.bandwidthLimit, at("bandwidth_limit")) : profile.bandwidthLimit ?? 0,
    powerOff: pb.powerOff || (profile.powerOff ?? false),
    priority: pb.priority.trim() ? priorityFromText(pb.priority, at("priority")) : profile.priority ?? "normal",
    labels: { ...profile.labels, ...labelsFromPb(pb.labels, at("labels")) },
    removeDevices: pb.removeDevices.length > 0 ? oneOfEach(pb.removeDevices, REMOVABLE_DEVICES, at("remove_devices")) : profile.removeDevices ?? [],
    includeImageFiles: pb.includeImageFiles || (profile.includeImageFiles ?? false),
    manifestAlgorithm: oneOf(pb.manifestAlgorithm, MANIFEST_ALGORITHMS, at("manifest_algorithm")) ?? profile.manifestAlgorithm ?? "sha256",
    cleanupOvf: pb.cleanupOvf || (profile.cleanupOvf ?? false),
    generateManifest: pb.generateManifest ?? profile.generateManifest ?? true,
    verify: pb.verify || (profile.verify ?? false),
  };
}

const SELECTABLE_POWER_STATES = new Map<PowerStatePb, PowerState>([
  [PowerStatePb.POWERED_OFF, "poweredOff"], [PowerStatePb.POWERED_ON, "poweredOn"], [PowerStatePb.SUSPENDED, "suspended"],
]);

/** A VmSelector from the wire: a folder or a name glob (or both), checked; errors name `field`'s members. */
export function selectorFromPb(pb: VmSelectorPb, field: string): VmSelector {
  const folderText = text(pb.folder, `${field}.folder`, 1024);
  const folder = folderText && `/${folderText.replace(/^\/+|\/+$/g, "")}`;
  if (folderText && (folder === "/" || folder.split("/").some((part, i) => i > 0 && (part === "" || part === "." || part === "..")))) {
    throw new InvalidArgumentError(`${field}.folder`, `${quoteInput(folderText)} is not an inventory folder path such as /DC0/vm/production`);
  }
  const nameGlob = text(pb.nameGlob, `${field}.name_glob`, 256);
  if (!folder && !nameGlob) throw new InvalidArgumentError(field, "needs a folder or a name_glob (or both)");
  const powerStates: PowerState[] = [];
  pb.powerStates.forEach((state, i) => {
    const known = SELECTABLE_POWER_STATES.get(state);
    if (!known) throw new InvalidArgumentError(`${field}.power_states[${i}]`, `unknown power state ${state}; use POWER_STATE_POWERED_ON, POWER_STATE_POWERED_OFF or POWER_STATE_SUSPENDED`);
    if (!powerStates.includes(known)) powerStates.push(known);
  });
  return { ...(folder ? { folder } : {}), recursive: pb.recursive ?? true, ...(nameGlob ? { nameGlob } : {}), powerStates };
}

/** A batch's default name: its folder and glob. */
export function selectorName(selector: VmSelector): string {
  return [selector.folder, selector.nameGlob].filter(Boolean).join(" ");
}

export function connectionFromPb(pb: VSphereConnectionPb, field: string): VSphereConnection {
  const url = pb.url.trim();
  if (url) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(url);
    } catch {
      parsed = undefined;
    }
    if (!parsed || (parsed.protocol !== "https:" && parsed.protocol !== "http:")) {
      throw new InvalidArgumentError(`${field}.url`, `${quoteInput(url)} is not an http(s) URL such as https://vcenter.example.com/sdk`);
    }
    if (parsed.username || parsed.password) {
      throw new InvalidArgumentError(`${field}.url`, "must not carry credentials; use the username and password fields");
    }
  }
  const thumbprint = pb.thumbprint.trim();
  const hex = thumbprint.replace(/:/g, "");
  if (thumbprint && !(/^[0-9a-fA-F]+$/.test(hex) && (hex.length === 40 || hex.length === 64))) {
    throw new InvalidArgumentError(`${field}.thumbprint`, "expected a SHA-1 (40 hex digits) or SHA-256 (64 hex digits) fingerprint, colons optional");
  }
  return { url, username: text(pb.username, `${field}.username`, 256), password: pb.password, insecure: pb.insecure, thumbprint };
}

function formatFromPb(format: ExportFormat, field: string): JobDefinition["format"] {
  switch (format) {
    case ExportFormat.UNSPECIFIED:
    case ExportFormat.OVF:
      return "ovf";
    case ExportFormat.OVA:
      return "ova";
    default:
      throw new InvalidArgumentError(field, `unknown format ${format}; use EXPORT_FORMAT_OVF or EXPORT_FORMAT_OVA`);
  }
}

function convertFromPb(value: string, field: string): ConvertFormat | undefined {
  return oneOf(value, CONVERT_FORMATS, field, "format");
}

/** A case-insensitive name from `allowed`, or undefined when empty. */
function oneOf<T extends string>(value: string, allowed: readonly T[], field: string, what = "value"): T | undefined {
  const name = value.trim().toLowerCase();
  if (!name) return undefined;
  if ((allowed as readonly string[]).includes(name)) return name as T;
  throw new InvalidArgumentError(field, `unknown ${what} ${quoteInput(value)}; use one of ${allowed.join(", ")}`);
}

/** Each item one of `allowed`, without repeats (sorted in `allowed` order). */
function oneOfEach<T extends string>(values: readonly string[], allowed: readonly T[], field: string): T[] {
  const picked = new Set<T>();
  values.forEach((value, i) => {
    const name = oneOf(value, allowed, `${field}[${i}]`);
    if (!name) throw new InvalidArgumentError(`${field}[${i}]`, `empty; use one of ${allowed.join(", ")}`);
    picked.add(name);
  });
  return allowed.filter((name) => picked.has(name));
}

/** Accepts "high", "HIGH", "PRIORITY_HIGH" and "JOB_PRIORITY_HIGH". */
export function priorityFromText(value: string, field: string): Priority {
  const name = value.trim().toLowerCase().replace(/^(job_)?priority_/, "");
  if (!name) return "normal";
  if ((PRIORITIES as readonly string[]).includes(name)) return name as Priority;
  throw new InvalidArgumentError(field, `unknown priority ${quoteInput(value)}; use one of ${PRIORITIES.join(", ")}`);
}

export function labelsFromPb(labels: Record<string, string>, field: string): Record<string, string> {
  const entries = Object.entries(labels);
  if (entries.length > 64) throw new InvalidArgumentError(field, `at most 64 labels, got ${entries.length}`);
  for (const [key, value] of entries) {
    if (!LABEL_KEY.test(key)) {
      throw new InvalidArgumentError(`${field}[${JSON.stringify(key)}]`, "label keys are 1-63 letters, digits, '.', '_', '/' or '-', starting and ending with a letter or digit");
    }
    text(value, `${field}[${JSON.stringify(key)}]`, 256);
  }
  return Object.fromEntries(entries.sort(([a], [b]) => (a < b ? -1 : 1)));
}

function text(value: string, field: string, max: number): string {
  const trimmed = value.trim();
  if (trimmed.length > max) throw new InvalidArgumentError(field, `at most ${max} characters, got ${trimmed.length}`);
  if (CONTROL.test(trimmed)) throw new InvalidArgumentError(field, "contains control characters");
  return trimmed;
}

export function intIn(value: number, min: number, max: number, field: string): number {
  if (!Number.isInteger(value) || value < min || value > max) throw new InvalidArgumentError(field, `must be from ${min} to ${max}, got ${value}`);
  return value;
}

/** An int64 from the wire as a safe JS number, 0 or more. */
export function nonNegative(value: bigint, field: string): number {
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new InvalidArgumentError(field, `must be from 0 to ${Number.MAX_SAFE_INTEGER}, got ${value}`);
  }
  return Number(value);
}
