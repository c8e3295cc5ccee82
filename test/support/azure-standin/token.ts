import crypto from "node:crypto";
import type http from "node:http";
import { baseUrl, readBody, sendJson } from "./http-util.ts";
import type { Ctx } from "./context.ts";

/**
 * Microsoft Entra ID's v2.0 endpoints as MSAL and a plain OAuth2 client use them: the client-credentials token,
 * the tenant's OpenID metadata and instance discovery. Errors carry the AADSTS codes Entra ID answers with.
 */
export async function handleIdentity(ctx: Ctx, req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<boolean> {
  const base = baseUrl(req);
  res.once("finish", () => ctx.requests.push({ method: req.method ?? "GET", path: url.pathname, status: res.statusCode }));
  const segments = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  if (req.method === "GET" && url.pathname === "/common/discovery/instance") {
    const host = new URL(base).host;
    sendJson(res, 200, {
      tenant_discovery_endpoint: `${base}/${ctx.tenantId}/v2.0/.well-known/openid-configuration`,
      "api-version": "1.1",
      metadata: [{ preferred_network: host, preferred_cache: host, aliases: [host] }],
    });
    return true;
  }
  if (req.method === "GET" && segments.length === 4 && segments[1] === "v2.0" && segments[2] === ".well-known" && segments[3] === "openid-configuration") {
    const tenant = segments[0]!;
    if (!knownTenant(ctx, tenant)) {
      sendAadError(res, 400, "invalid_tenant", 90002, unknownTenant(tenant));
      return true;
    }
    const t = `${base}/${tenant}`;
    sendJson(res, 200, {
      token_endpoint: `${t}/oauth2/v2.0/token`,
      token_endpoint_auth_methods_supported: ["client_secret_post", "private_key_jwt", "client_secret_basic"],
      jwks_uri: `${t}/discovery/v2.0/keys`,
      response_modes_supported: ["query", "fragment", "form_post"],
      subject_types_supported: ["pairwise"],
      id_token_signing_alg_values_supported: ["RS256"],
      response_types_supported: ["code", "id_token", "code id_token", "id_token token"],
      scopes_supported: ["openid", "profile", "email", "offline_access"],
      issuer: `${base}/${ctx.tenantId}/v2.0`,
      request_uri_parameter_supported: false,
      userinfo_endpoint: `${base}/oidc/userinfo`,
      authorization_endpoint: `${t}/oauth2/v2.0/authorize`,
      device_authorization_endpoint: `${t}/oauth2/v2.0/devicecode`,
      http_logout_supported: true,
      frontchannel_logout_supported: true,
      end_session_endpoint: `${t}/oauth2/v2.0/logout`,
      claims_supported: ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "tid", "ver", "oid"],
      tenant_region_scope: "EU",
      cloud_instance_name: "microsoftonline.com",
      cloud_graph_host_name: "graph.windows.net",
      msgraph_host: "graph.microsoft.com",
      rbac_url: "https://pas.windows.net",
    });
    return true;
  }
  if (req.method === "GET" && segments.length === 4 && segments[1] === "discovery" && segments[3] === "keys") {
    sendJson(res, 200, { keys: [] });
    return true;
  }
  if (req.method === "POST" && segments.length === 4 && segments[1] === "oauth2" && segments[2] === "v2.0" && segments[3] === "token") {
    await token(ctx, req, res, segments[0]!);
    return true;
  }
  return false;
}

async function token(ctx: Ctx, req: http.IncomingMessage, res: http.ServerResponse, tenant: string): Promise<void> {
  ctx.counts.tokenRequests++;
  const form = new URLSearchParams((await readBody(req)).toString("utf8"));
  let clientId = form.get("client_id") ?? "";
  let secret = form.get("client_secret") ?? "";
  const basic = /^Basic (.+)$/i.exec(req.headers.authorization ?? "");
  if (basic) {
    const [id, pass] = Buffer.from(basic[1]!, "base64").toString("utf8").split(":");
    clientId ||= decodeURIComponent(id ?? "");
    secret ||= decodeURIComponent(pass ?? "");
  }
  if (!knownTenant(ctx, tenant)) return sendAadError(res, 400, "invalid_request", 90002, unknownTenant(tenant));
  if (form.get("grant_type") !== "client_credentials") {
    return sendAadError(res, 400, "unsupported_grant_type", 70003, `AADSTS70003: The app requested an unsupported grant type '${form.get("grant_type") ?? ""}'.`);
  }
  if (clientId.toLowerCase() !== ctx.clientId.toLowerCase()) {
    return sendAadError(res, 400, "unauthorized_client", 700016,
      `AADSTS700016: Application with identifier '${clientId}' was not found in the directory '${tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.`);
  }
  if (!secret) {
    return sendAadError(res, 401, "invalid_client", 7000218,
      "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.");
  }
  if (secret !== ctx.clientSecret) {
    return sendAadError(res, 401, "invalid_client", 7000215,
      `AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${ctx.clientId}'.`);
  }
  const scopes = (form.get("scope") ?? "").split(/\s+/).filter(Boolean);
  const resource = scopes.find((s) => s.endsWith("/.default"));
  if (!resource || !ctx.audiences.has(resource.slice(0, -"/.default".length).replace(/\/+$/, ""))) {
    const named = resource ? resource.slice(0, -"/.default".length) : (form.get("scope") ?? "");
    return sendAadError(res, 400, "invalid_resource", 500011,
      `AADSTS500011: The resource principal named ${named} was not found in the tenant named ${tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.`);
  }
  const accessToken = crypto.randomBytes(32).toString("base64url");
  ctx.state.tokens.add(accessToken);
  sendJson(res, 200, { token_type: "Bearer", expires_in: 3599, ext_expires_in: 3599, access_token: accessToken }, {
    "cache-control": "no-store, no-cache",
    pragma: "no-cache",
  });
}

function knownTenant(ctx: Ctx, tenant: string): boolean {
  return tenant.toLowerCase() === ctx.tenantId.toLowerCase();
}

function unknownTenant(tenant: string): string {
  return `AADSTS90002: Tenant '${tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.`;
}

function sendAadError(res: http.ServerResponse, status: number, error: string, code: number, description: string): void {
  const traceId = crypto.randomUUID();
  const correlationId = crypto.randomUUID();
  const timestamp = new Date().toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  sendJson(res, status, {
    error,
    error_description: `${description}\r\nTrace ID: ${traceId}\r\nCorrelation ID: ${correlationId}\r\nTimestamp: ${timestamp}`,
    error_codes: [code],
    timestamp,
    trace_id: traceId,
    correlation_id: correlationId,
    error_uri: `https://login.microsoftonline.com/error?code=${code}`,
  });
}
