import { InvalidArgumentError } from "../errors.ts";
import type { AzureConnection } from "./job.ts";

export const AZURE_AUTHORITY_HOST = "https://login.microsoftonline.com";
export const AZURE_RESOURCE_MANAGER = "https://management.azure.com";

/**
 * The Azure connection a request uses: its own when it names a subscription, else the daemon's default (azure.*
 * in the config). With neither, the request is refused on `<field>.subscription_id`. The result is checked
 * (see checkAzureConnection) and has its endpoints filled in.
 */
export function azureConnectionOf(given: AzureConnection | undefined, fallback: AzureConnection | undefined, field: string): AzureConnection {
  const connection = given?.subscriptionId ? given : fallback;
  if (!connection) throw new InvalidArgumentError(`${field}.subscription_id`, "required: the daemon has no default Azure connection configured");
  return checkAzureConnection(connection, given?.subscriptionId ? field : "azure (the daemon's default connection)");
}

const GUID_OR_DOMAIN = /^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/;

/** Every field a token request and ARM calls need, with the endpoints defaulted; errors name `<field>.<name>`. */
export function checkAzureConnection(connection: AzureConnection, field: string): AzureConnection {
  const at = (name: string) => `${field}.${name}`;
  for (const [name, value] of [["tenant_id", connection.tenantId], ["client_id", connection.clientId], ["subscription_id", connection.subscriptionId]] as const) {
    if (!value) throw new InvalidArgumentError(at(name), "required");
    if (!GUID_OR_DOMAIN.test(value)) throw new InvalidArgumentError(at(name), "a GUID (or, for tenant_id, a domain) was expected");
  }
  if (!connection.clientSecret) throw new InvalidArgumentError(at("client_secret"), "required");
  if (connection.resourceGroup && !/^[-\w._()]{1,90}$/.test(connection.resourceGroup)) throw new InvalidArgumentError(at("resource_group"), "not a resource group name");
  return {
    ...connection,
    authorityHost: endpoint(connection.authorityHost || AZURE_AUTHORITY_HOST, at("authority_host")),
    resourceManager: endpoint(connection.resourceManager || AZURE_RESOURCE_MANAGER, at("resource_manager")),
  };
}

/** An https URL, or http on a loopback address (a stand-in on this machine): a client secret never crosses a network in clear. */
function endpoint(value: string, field: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError(field, "not a URL");
  }
  if (url.username || url.password) throw new InvalidArgumentError(field, "must not carry credentials");
  const loopback = ["127.0.0.1", "[::1]", "localhost"].includes(url.hostname);
  if (url.protocol !== "https:" && !(url.protocol === "http:" && loopback)) throw new InvalidArgumentError(field, "https required (plain http only on a loopback address)");
  return url.href.replace(/\/+$/, "");
}
