import { HypervisordError, type ErrorCode } from "../../errors.ts";
import { child, path, type XmlNode } from "./xml.ts";

/** A vim25 SOAP fault, with its fault type (e.g. "InvalidLogin") and the code it maps to. */
export class VSphereFault extends HypervisordError {
  readonly faultType: string;

  constructor(faultType: string, message: string, code: ErrorCode, retryable: boolean) {
    super(code, message, { retryable });
    this.name = "VSphereFault";
    this.faultType = faultType;
  }
}

/**
 * Never UNAUTHENTICATED: that code is the API's own answer about the caller's credentials. vCenter refusing
 * the daemon's login is a precondition of the job (fix the connection), and a session vCenter no longer knows
 * (NotAuthenticated after a vCenter restart, or while it starts up) is transient.
 */
const FAULT_CODES: Record<string, [ErrorCode, boolean]> = {
  InvalidLogin: ["FAILED_PRECONDITION", false],
  NotAuthenticated: ["UNAVAILABLE", true],
  NoPermission: ["PERMISSION_DENIED", false],
  ManagedObjectNotFound: ["NOT_FOUND", false],
  NotFound: ["NOT_FOUND", false],
  InvalidPowerState: ["FAILED_PRECONDITION", false],
  InvalidState: ["FAILED_PRECONDITION", false],
  InvalidArgument: ["INVALID_ARGUMENT", false],
  TaskInProgress: ["UNAVAILABLE", true],
  HostCommunication: ["UNAVAILABLE", true],
  HostNotConnected: ["UNAVAILABLE", true],
  HostNotReachable: ["UNAVAILABLE", true],
  RequestCanceled: ["UNAVAILABLE", true],
  Timedout: ["UNAVAILABLE", true],
};

/** Reads the fault of a SOAP response body, or undefined when it carries none. */
export function faultOf(envelope: XmlNode, method: string, endpoint: string): VSphereFault | undefined {
  const fault = path(envelope, "Body", "Fault");
  if (!fault) return undefined;
  const faultString = child(fault, "faultstring")?.text.trim() ?? "";
  const detail = child(fault, "detail")?.children[0];
  const faultType = detail?.type ?? detail?.name.replace(/Fault$/, "") ?? "SoapFault";
  const [code, retryable] = FAULT_CODES[faultType] ?? ["INTERNAL", false];
  const what = faultString && faultString !== faultType ? `${faultType}: ${faultString}` : faultType;
  return new VSphereFault(faultType, `vSphere ${method} at ${endpoint} failed: ${what}`, code, retryable);
}
