import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Command } from "commander";
import type { AzureConnectionSchema, VSphereConnectionSchema } from "../../gen/hypervisord/v1/job_pb.js";
import { UsageError } from "./errors.ts";
import { readAll, type CliIo } from "./io.ts";

export interface ConnectionOptions {
  provider?: string;
  vsphereUrl?: string;
  username?: string;
  password?: string;
  passwordStdin?: boolean;
  insecureVsphere?: boolean;
  thumbprint?: string;
  azureTenantId?: string;
  azureClientId?: string;
  azureClientSecret?: string;
  azureSubscriptionId?: string;
  azureResourceGroup?: string;
  azureAuthorityHost?: string;
  azureResourceManager?: string;
}

/** Read by hyperctl (not only by the daemon) so that a client secret need not stand on a command line. */
export const AZURE_SECRET_ENV = "HYPERVISORD_AZURE_CLIENT_SECRET";

/** The options that say which hypervisor to talk to (export, vms, schedules create). */
export function addConnectionOptions(command: Command): Command {
  return command
    .option("--provider <name>", "provider (daemon default: vsphere)")
    .option("--vsphere-url <url>", "vCenter/ESXi SDK URL (default: the daemon's configured connection)")
    .option("--username <user>", "vSphere user")
    .option("--password <password>", "vSphere password (visible to other local users: prefer --password-stdin)")
    .option("--password-stdin", "read the vSphere password from stdin")
    .option("--insecure-vsphere", "do not verify the vSphere certificate")
    .option("--thumbprint <fingerprint>", "pin the vSphere certificate's SHA-1 or SHA-256 fingerprint")
    .option("--azure-tenant-id <id>", "with --provider azure: the Entra ID tenant (GUID or domain) (default: the daemon's azure.* connection)")
    .option("--azure-client-id <id>", "with --provider azure: the service principal's application (client) id")
    .option("--azure-client-secret <secret>", `with --provider azure: the client secret (visible to other local users: prefer the ${AZURE_SECRET_ENV} environment variable, which hyperctl reads)`)
    .option("--azure-subscription-id <id>", "with --provider azure: the subscription (GUID)")
    .option("--azure-resource-group <name>", "with --provider azure: look VMs up in this resource group only")
    .option("--azure-authority-host <url>", "with --provider azure: token authority (default https://login.microsoftonline.com; sovereign clouds set theirs)")
    .option("--azure-resource-manager <url>", "with --provider azure: Resource Manager endpoint (default https://management.azure.com)");
}

const AZURE_FLAGS = [
  ["--azure-tenant-id", "azureTenantId"], ["--azure-client-id", "azureClientId"], ["--azure-client-secret", "azureClientSecret"],
  ["--azure-subscription-id", "azureSubscriptionId"], ["--azure-resource-group", "azureResourceGroup"],
  ["--azure-authority-host", "azureAuthorityHost"], ["--azure-resource-manager", "azureResourceManager"],
] as const;
const VSPHERE_FLAGS = [
  ["--vsphere-url", "vsphereUrl"], ["--username", "username"], ["--password", "password"], ["--password-stdin", "passwordStdin"],
  ["--insecure-vsphere", "insecureVsphere"], ["--thumbprint", "thumbprint"],
] as const;
const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const DOMAIN = /^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/;

/**
 * The connections of the options: vsphere for vSphere (the default provider), azure for --provider azure;
 * each undefined when no option of it was given (the daemon's default is used). The other provider's options
 * are refused, so that a flag is never silently ignored.
 */
export async function connectionsOf(opts: ConnectionOptions, io: CliIo): Promise<{
  vsphere?: MessageInitShape<typeof VSphereConnectionSchema>;
  azure?: MessageInitShape<typeof AzureConnectionSchema>;
}> {
  const azureProvider = opts.provider?.trim().toLowerCase() === "azure";
  const other: readonly (readonly [string, keyof ConnectionOptions])[] = azureProvider ? VSPHERE_FLAGS : AZURE_FLAGS;
  const stray = other.find(([, key]) => opts[key] !== undefined);
  if (stray) {
    throw new UsageError(azureProvider
      ? `${stray[0]} is a vSphere option; with --provider azure use the --azure-* options`
      : `${stray[0]} needs --provider azure`);
  }
  if (!azureProvider) {
    const vsphere = await connectionOf(opts, io);
    return vsphere ? { vsphere } : {};
  }
  const azure = azureConnectionOf(opts, io);
  return azure ? { azure } : {};
}

/**
 * The AzureConnection of the --azure-* options (the secret from --azure-client-secret, else from
 * HYPERVISORD_AZURE_CLIENT_SECRET), or undefined when none was given. Values are checked here as the daemon
 * would, so that a typo is a usage error naming the flag.
 */
export function azureConnectionOf(opts: ConnectionOptions, io: CliIo): MessageInitShape<typeof AzureConnectionSchema> | undefined {
  const given = AZURE_FLAGS.some(([flag, key]) => flag !== "--azure-client-secret" && opts[key] !== undefined);
  const secret = opts.azureClientSecret ?? io.env[AZURE_SECRET_ENV] ?? "";
  if (!given && opts.azureClientSecret === undefined) return undefined;
  if (secret) io.secrets.add(secret);
  const tenantId = checked(opts.azureTenantId, "--azure-tenant-id", (v) => GUID.test(v) || DOMAIN.test(v), "a tenant GUID or domain such as contoso.onmicrosoft.com");
  const clientId = checked(opts.azureClientId, "--azure-client-id", (v) => GUID.test(v), "an application (client) id GUID");
  const subscriptionId = checked(opts.azureSubscriptionId, "--azure-subscription-id", (v) => GUID.test(v), "a subscription GUID");
  const resourceGroup = checked(opts.azureResourceGroup, "--azure-resource-group", (v) => /^[-\w._()]{1,90}$/.test(v), "a resource group name (1-90 letters, digits, '-', '_', '.', '(' or ')')");
  const authorityHost = checked(opts.azureAuthorityHost, "--azure-authority-host", httpUrl, "an https URL such as https://login.microsoftonline.com");
  const resourceManager = checked(opts.azureResourceManager, "--azure-resource-manager", httpUrl, "an https URL such as https://management.azure.com");
  if (opts.azureClientSecret !== undefined && !opts.azureClientSecret) throw new UsageError("--azure-client-secret: empty");
  if (!subscriptionId) throw new UsageError("--azure-subscription-id is required with the other --azure-* options (without any, the daemon's default connection is used)");
  return { tenantId, clientId, clientSecret: secret, subscriptionId, resourceGroup, authorityHost, resourceManager };
}

function checked(value: string | undefined, flag: string, ok: (value: string) => boolean, expected: string): string {
  if (value === undefined) return "";
  const trimmed = value.trim();
  if (!trimmed || !ok(trimmed)) throw new UsageError(`${flag}: expected ${expected}, got "${value}"`);
  return trimmed;
}

function httpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === "https:" || url.protocol === "http:") && !url.username && !url.password;
  } catch {
    return false;
  }
}

/** The VSphereConnection of the options, or undefined when none was given (the daemon's default is used). */
export async function connectionOf(opts: ConnectionOptions, io: CliIo): Promise<MessageInitShape<typeof VSphereConnectionSchema> | undefined> {
  if (opts.password !== undefined && opts.passwordStdin) throw new UsageError("--password and --password-stdin are mutually exclusive");
  let password = opts.password ?? "";
  if (opts.passwordStdin) {
    password = (await readAll(io.stdin)).replace(/\r?\n$/, "");
    if (!password) throw new UsageError("--password-stdin: stdin was empty");
    io.secrets.add(password);
  }
  if (!opts.vsphereUrl && !opts.username && !password && !opts.insecureVsphere && !opts.thumbprint) return undefined;
  return {
    url: opts.vsphereUrl ?? "",
    username: opts.username ?? "",
    password,
    insecure: opts.insecureVsphere ?? false,
    thumbprint: opts.thumbprint ?? "",
  };
}
