import type { Dispatcher } from "undici";
import { request } from "undici";
import { HypervisordError, UnavailableError, toHypervisordError } from "../../errors.ts";
import { faultOf } from "./faults.ts";
import { untrustedCertificateError } from "./untrusted-certificate.ts";
import { parseXml, toXml, type XmlNode, type XmlValue } from "./xml.ts";

export type SoapParams = readonly (readonly [string, XmlValue])[];

const ENVELOPE_OPEN = '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
  + ' xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>';
const ENVELOPE_CLOSE = "</soapenv:Body></soapenv:Envelope>";

export interface SoapClient {
  readonly url: URL;
  /** host:port, for messages. */
  readonly endpoint: string;
  /** Calls a vim25 method; returns its <MethodResponse> element. Faults throw VSphereFault. */
  call(method: string, params: SoapParams, signal: AbortSignal): Promise<XmlNode>;
  /** The session cookie, once logged in (also sent with NFC downloads). */
  readonly cookie: string | undefined;
  setApiVersion(version: string): void;
}

/**
 * vim25 over HTTP(S): one envelope per call, the vmware_soap_session cookie kept between calls. `session` starts
 * the client in an existing session (a lease recorded by a process that died can only be aborted from its own session).
 */
export function createSoapClient(url: URL, dispatcher: Dispatcher, timeoutMs = 120_000, session?: string): SoapClient {
  let cookie: string | undefined = session;
  let soapAction = "urn:vim25/6.5";
  const endpoint = url.host;

  async function call(method: string, params: SoapParams, signal: AbortSignal): Promise<XmlNode> {
    const body = `${ENVELOPE_OPEN}<${method} xmlns="urn:vim25">${params.map(([k, v]) => toXml(k, v)).join("")}</${method}>${ENVELOPE_CLOSE}`;
    let response: Dispatcher.ResponseData;
    try {
      response = await request(url, {
        method: "POST",
        dispatcher,
        signal,
        headers: {
          "content-type": "text/xml; charset=utf-8",
          soapaction: soapAction,
          ...(cookie ? { cookie: `vmware_soap_session=${cookie}` } : {}),
        },
        body,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
    } catch (err) {
      if (signal.aborted) {
        // A deadline of our own (AbortSignal.timeout): vSphere did not answer, as with a connection that fails.
        if (signal.reason instanceof Error && signal.reason.name === "TimeoutError") {
          throw new UnavailableError(`vSphere ${method} at ${endpoint} did not answer in time`, { cause: signal.reason });
        }
        throw signal.reason;
      }
      const tls = tlsProblem(err);
      if (tls) throw await untrustedCertificateError(url, tls, err, signal);
      throw toHypervisordError(err, `calling vSphere ${method} at ${endpoint}`);
    }
    const text = await response.body.text();
    const setCookie = response.headers["set-cookie"];
    for (const line of Array.isArray(setCookie) ? setCookie : setCookie ? [setCookie] : []) {
      const match = /vmware_soap_session="?([^";]+)"?/.exec(line);
      if (match) cookie = match[1];
    }
    if (response.statusCode !== 200 && response.statusCode !== 500) {
      const message = `vSphere ${method} at ${endpoint} answered HTTP ${response.statusCode}`;
      throw response.statusCode >= 500 || response.statusCode === 429 ? new UnavailableError(message) : new HypervisordError("INTERNAL", message);
    }
    let envelope: XmlNode;
    try {
      envelope = parseXml(text);
    } catch (err) {
      throw new HypervisordError("INTERNAL", `vSphere ${method} at ${endpoint}: unreadable response: ${(err as Error).message}`);
    }
    const fault = faultOf(envelope, method, endpoint);
    if (fault) throw fault;
    const result = envelope.children.find((c) => c.name === "Body")?.children[0];
    if (!result) throw new HypervisordError("INTERNAL", `vSphere ${method} at ${endpoint}: empty SOAP body`);
    return result;
  }

  return {
    url,
    endpoint,
    call,
    get cookie() {
      return cookie;
    },
    setApiVersion(version: string) {
      if (/^\d+\.\d+(\.\d+)*$/.test(version)) soapAction = `urn:vim25/${version}`;
    },
  };
}

const TLS_CODES = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT", "SELF_SIGNED_CERT_IN_CHAIN", "UNABLE_TO_VERIFY_LEAF_SIGNATURE", "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED", "CERT_NOT_YET_VALID", "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** The certificate verification failure behind an error, if that is what it is. */
function tlsProblem(err: unknown): string | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && TLS_CODES.has(code)) return e.message;
  }
  return undefined;
}
