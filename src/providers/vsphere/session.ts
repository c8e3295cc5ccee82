import type { Logger } from "pino";
import type { Agent } from "undici";
import type { VSphereConnection } from "../../domain/job.ts";
import { HypervisordError, InvalidArgumentError } from "../../errors.ts";
import { redactSecrets } from "../../redact-secret.ts";
import { createVSphereAgent, vsphereTls } from "./agent.ts";
import type { RawTls } from "../../transfer/raw-get.ts";
import { VSphereFault } from "./faults.ts";
import { SERVICE_INSTANCE, serviceContentOf, type ServiceContent } from "./service-content.ts";
import { createSoapClient, type SoapClient, type SoapParams } from "./soap-client.ts";
import { child, children, element, textOf, type XmlNode } from "./xml.ts";

export interface VSphereSession {
  readonly connection: VSphereConnection;
  readonly soap: SoapClient;
  readonly agent: Agent;
  /** The agent's TLS policy, for the disk downloads' own connections. */
  readonly tls: RawTls;
  readonly content: ServiceContent;
  /** Calls a method; a NotAuthenticated fault (expired session) logs in again once and retries. */
  call(method: string, params: SoapParams, signal: AbortSignal): Promise<XmlNode>;
  /** Health check: logs in again when the server no longer knows the session (SessionManager.currentSession is unset). */
  ensureAlive(signal: AbortSignal): Promise<void>;
  /** Logs out and closes the connections. */
  close(): Promise<void>;
  readonly relogins: number;
}

/** "https://vc" and "https://vc/" mean "https://vc/sdk". */
export function sdkUrl(raw: string, field = "vsphere.url"): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new InvalidArgumentError(field, `"${raw}" is not a URL`);
  }
  if (url.pathname === "/" || url.pathname === "") url.pathname = "/sdk";
  return url;
}

/** The session's SDK URL as a checkpoint records it (a lease's, a snapshot's): without credentials. */
export function recordedUrl(session: VSphereSession): string {
  const url = new URL(session.soap.url);
  url.username = url.password = "";
  return url.href;
}

export async function openSession(connection: VSphereConnection, options: { maxConnections: number; logger: Logger }, signal: AbortSignal): Promise<VSphereSession> {
  const url = sdkUrl(connection.url);
  const agent = createVSphereAgent({ insecure: connection.insecure, thumbprint: connection.thumbprint, maxConnections: options.maxConnections });
  const soap = createSoapClient(url, agent);
  try {
    const content = serviceContentOf(await soap.call("RetrieveServiceContent", [["_this", SERVICE_INSTANCE]], signal));
    soap.setApiVersion(content.apiVersion);
    const login = async (s: AbortSignal) => {
      try {
        await soap.call("Login", [["_this", content.sessionManager], ["userName", connection.username], ["password", connection.password]], s);
      } catch (err) {
        if (err instanceof VSphereFault && err.faultType === "InvalidLogin") throw invalidLogin(url, connection.username, err);
        throw withoutPassword(err, connection.password);
      }
    };
    await login(signal);
    options.logger.info({ endpoint: soap.endpoint, user: connection.username, server: content.fullName }, "vSphere session opened");
    let relogin: Promise<void> | undefined;
    let relogins = 0;
    const loginAgain = (s: AbortSignal, why: string) => {
      // One shared re-login for every caller that found the session gone.
      relogin ??= login(s).then(() => {
        relogins++;
        options.logger.info({ endpoint: soap.endpoint, user: connection.username, why }, "vSphere session logged in again");
      }).finally(() => (relogin = undefined));
      return relogin;
    };
    return {
      connection, soap, agent, content, tls: vsphereTls(connection),
      get relogins() {
        return relogins;
      },
      async call(method, params, s) {
        try {
          return await soap.call(method, params, s);
        } catch (err) {
          if (!(err instanceof VSphereFault) || err.faultType !== "NotAuthenticated") throw err;
          await loginAgain(s, "NotAuthenticated");
          return soap.call(method, params, s);
        }
      },
      async ensureAlive(s) {
        const response = await soap.call("RetrievePropertiesEx", [
          ["_this", content.propertyCollector],
          ["specSet", element([
            ["propSet", [element([["type", "SessionManager"], ["all", false], ["pathSet", ["currentSession"]]])]],
            ["objectSet", element([["obj", content.sessionManager], ["skip", false]])],
          ])],
          ["options", element([])],
        ], s).catch((err: unknown) => {
          if (err instanceof VSphereFault && err.faultType === "NotAuthenticated") return undefined;
          throw err;
        });
        const alive = children(child(response, "returnval"), "objects")
          .some((o) => children(o, "propSet").some((p) => textOf(p, "name") === "currentSession"));
        if (!alive) await loginAgain(s, "health check");
      },
      async close() {
        try {
          await soap.call("Logout", [["_this", content.sessionManager]], AbortSignal.timeout(5000));
          options.logger.info({ endpoint: soap.endpoint, user: connection.username }, "vSphere session closed");
        } catch (err) {
          // NotAuthenticated: the server had already ended the session (idle timeout); nothing is leaked.
          if (!(err instanceof VSphereFault && err.faultType === "NotAuthenticated")) {
            options.logger.warn({ endpoint: soap.endpoint, err: (err as Error).message }, "vSphere logout failed");
          }
        } finally {
          await agent.close();
        }
      },
    };
  } catch (err) {
    await agent.close();
    throw err;
  }
}

/**
 * vCenter refused the daemon's credentials: FAILED_PRECONDITION naming vSphere, so that a client can tell it from
 * its own API key being refused (UNAUTHENTICATED). The URL is shown without userinfo, and never the password.
 */
/**
 * Any other failure of Login may echo the request (a fault string quoting the body, a proxy's error page): its
 * message loses the password (see redact-secret.ts), and the original error, whose cause and stack still hold
 * it, is not kept.
 */
function withoutPassword(err: unknown, password: string): unknown {
  if (!(err instanceof HypervisordError)) return err;
  const message = redactSecrets(err.message, [password]);
  if (message === err.message && !err.cause) return err;
  if (err instanceof VSphereFault) return new VSphereFault(err.faultType, message, err.code, err.retryable);
  return new HypervisordError(err.code, message, { retryable: err.retryable });
}

function invalidLogin(url: URL, username: string, cause: VSphereFault): VSphereFault {
  const fault = new VSphereFault("InvalidLogin", `vSphere login to ${url.origin}${url.pathname} as ${username} failed: incorrect user name or password`, "FAILED_PRECONDITION", false);
  fault.cause = cause;
  return fault;
}
