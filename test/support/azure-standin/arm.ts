import crypto from "node:crypto";
import type http from "node:http";
import { ArmError, baseUrl, readBody, sendArmError, sendJson } from "./http-util.ts";
import type { Ctx } from "./context.ts";
import { keyOf, type DiskState, type Operation, type SnapshotState } from "./state.ts";
import { VM_SIZES } from "./vm-sizes.ts";
import { diskJson, grantOpen, idOf, instanceView, nicJson, snapshotJson, vmJson } from "./resource-json.ts";

/** api-versions accepted per resource family: ours (src/providers/azure/api-versions.ts) and @azure/arm-compute@24.1.0's. */
const COMPUTE_VERSIONS = ["2023-09-01", "2024-03-01", "2024-07-01", "2024-11-01", "2025-04-01", "2026-03-01"];
const DISK_VERSIONS = ["2023-04-02", "2023-10-02", "2024-03-02", "2025-01-02"];
const NETWORK_VERSIONS = ["2023-09-01", "2024-01-01", "2024-05-01", "2024-07-01"];

interface Route {
  rg?: string;
  ns: string;
  /** Segments after the provider namespace, e.g. ["snapshots", "s1", "beginGetAccess"]. */
  rest: string[];
}

/** Azure Resource Manager for Microsoft.Compute (VMs, sizes, disks, snapshots, access) and Microsoft.Network NICs. */
export async function handleArm(ctx: Ctx, req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
  ctx.counts.armRequests++;
  const method = req.method ?? "GET";
  const apiVersion = url.searchParams.get("api-version") ?? undefined;
  res.once("finish", () => ctx.requests.push({ method, path: url.pathname, apiVersion, status: res.statusCode }));
  try {
    const token = /^Bearer (.+)$/i.exec(req.headers.authorization ?? "")?.[1];
    if (!token || !ctx.state.tokens.has(token)) {
      const www = `Bearer authorization_uri="https://login.microsoftonline.com/${ctx.tenantId}", error="invalid_token", error_description="${token ? "The access token is invalid." : "The authentication failed because of missing 'Authorization' header."}"`;
      throw token
        ? new ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.", { "www-authenticate": www })
        : new ArmError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.", { "www-authenticate": www });
    }
    const throttle = ctx.faults.armThrottles.find((t) => t.left > 0 && (!t.match || t.match.test(`${method} ${url.pathname}`)));
    if (throttle) {
      throttle.left--;
      throw new ArmError(429, "TooManyRequests",
        `The request is being throttled as the limit has been reached for operation type - ${method === "GET" ? "Read" : "Write"}. For more information, see - https://aka.ms/srpthrottlinglimits`,
        { "retry-after": String(throttle.retryAfterSeconds), "x-ms-ratelimit-remaining-subscription-reads": "0" });
    }
    const route = parseRoute(ctx, url);
    checkApiVersion(route, apiVersion);
    const action = actionOf(method, route);
    if (ctx.faults.denied.has(action.toLowerCase())) {
      throw new ArmError(403, "AuthorizationFailed",
        `The client '${ctx.clientId}' with object id '${ctx.objectId}' does not have authorization to perform action '${action}' over scope '${scopeOf(url.pathname)}' or the scope is invalid. If access was recently granted, please refresh your credentials.`);
    }
    if (route.rg !== undefined && ![...ctx.state.resourceGroups].some((g) => g.toLowerCase() === route.rg!.toLowerCase())) {
      throw new ArmError(404, "ResourceGroupNotFound", `Resource group '${route.rg}' could not be found.`);
    }
    await dispatch(ctx, req, res, url, route, method);
  } catch (err) {
    if (err instanceof ArmError) return sendArmError(res, err);
    sendArmError(res, new ArmError(500, "InternalServerError", `the stand-in failed: ${(err as Error).message}`));
  }
}

function parseRoute(ctx: Ctx, url: URL): Route {
  const s = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  if (s[0]?.toLowerCase() !== "subscriptions" || !s[1]) throw notFoundPath(url);
  if (s[1].toLowerCase() !== ctx.subscriptionId.toLowerCase()) {
    throw new ArmError(404, "SubscriptionNotFound", `The subscription '${s[1]}' could not be found.`);
  }
  let i = 2;
  let rg: string | undefined;
  if (s[i]?.toLowerCase() === "resourcegroups") {
    rg = s[i + 1];
    i += 2;
  }
  if (s[i]?.toLowerCase() !== "providers" || !s[i + 1]) throw notFoundPath(url);
  return { rg, ns: s[i + 1]!.toLowerCase(), rest: s.slice(i + 2) };
}

function notFoundPath(url: URL): ArmError {
  return new ArmError(404, "NotFound", `No HTTP resource was found that matches the request URI '${url.pathname}'.`);
}

function familyOf(route: Route): { type: string; versions: string[] } {
  const type = (route.rest[0] ?? "").toLowerCase();
  if (route.ns === "microsoft.network") return { type, versions: NETWORK_VERSIONS };
  if (type === "disks" || type === "snapshots") return { type, versions: DISK_VERSIONS };
  if (type === "locations" && route.rest[2]?.toLowerCase() === "operations") {
    return { type: "locations/operations", versions: [...new Set([...COMPUTE_VERSIONS, ...DISK_VERSIONS])] };
  }
  return { type, versions: COMPUTE_VERSIONS };
}

function checkApiVersion(route: Route, apiVersion: string | undefined): void {
  if (!apiVersion) {
    throw new ArmError(400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.");
  }
  const { type, versions } = familyOf(route);
  if (!versions.includes(apiVersion)) {
    throw new ArmError(400, "InvalidApiVersionParameter",
      `The api-version '${apiVersion}' is invalid. The supported versions for resource type '${route.ns}/${type}' are '${versions.join(",")}'.`);
  }
}

/** The RBAC action a request needs, as Azure names it. */
function actionOf(method: string, route: Route): string {
  const [type = "", , sub] = route.rest;
  const t = type.toLowerCase();
  if (route.ns === "microsoft.network") return "Microsoft.Network/networkInterfaces/read";
  if (t === "locations") {
    return route.rest[2]?.toLowerCase() === "operations" ? "Microsoft.Compute/locations/operations/read" : "Microsoft.Compute/locations/vmSizes/read";
  }
  const kind = t === "virtualmachines" ? "virtualMachines" : t === "disks" ? "disks" : t === "snapshots" ? "snapshots" : type;
  if (sub?.toLowerCase() === "instanceview") return `Microsoft.Compute/${kind}/instanceView/read`;
  if (sub?.toLowerCase() === "begingetaccess") return `Microsoft.Compute/${kind}/beginGetAccess/action`;
  if (sub?.toLowerCase() === "endgetaccess") return `Microsoft.Compute/${kind}/endGetAccess/action`;
  const verb = method === "PUT" || method === "PATCH" ? "write" : method === "DELETE" ? "delete" : "read";
  return `Microsoft.Compute/${kind}/${verb}`;
}

function scopeOf(pathname: string): string {
  return pathname.replace(/\/(beginGetAccess|endGetAccess|instanceView)$/i, "");
}

async function dispatch(ctx: Ctx, req: http.IncomingMessage, res: http.ServerResponse, url: URL, route: Route, method: string): Promise<void> {
  const base = baseUrl(req);
  const [type = "", name, sub, extra] = route.rest;
  const t = type.toLowerCase();
  const get = method === "GET";
  if (route.ns === "microsoft.network" && t === "networkinterfaces") {
    if (get && name && !sub) return sendJson(res, 200, nicJson(ctx, findNic(ctx, route.rg!, name)));
    if (get && !name) return sendList(ctx, res, url, base, [...ctx.state.nics.values()].filter((n) => inScope(route, n.resourceGroup)).map((n) => nicJson(ctx, n)));
  }
  if (route.ns === "microsoft.compute") {
    if (t === "locations" && route.rg === undefined && name) {
      if (get && sub?.toLowerCase() === "vmsizes" && !extra) return sendJson(res, 200, { value: VM_SIZES });
      if (get && sub?.toLowerCase() === "operations" && extra) return operation(ctx, res, url, extra);
    }
    if (t === "virtualmachines") {
      if (get && !name) {
        const expand = url.searchParams.get("statusOnly") === "true" || /instanceView/i.test(url.searchParams.get("$expand") ?? "");
        const vms = [...ctx.state.vms.values()].filter((v) => inScope(route, v.resourceGroup));
        return sendList(ctx, res, url, base, vms.map((v) => vmJson(ctx, v, expand)));
      }
      if (get && name && !sub) {
        const vm = findVm(ctx, route.rg!, name);
        return sendJson(res, 200, vmJson(ctx, vm, /instanceView/i.test(url.searchParams.get("$expand") ?? "")));
      }
      if (get && sub?.toLowerCase() === "instanceview" && !extra) return sendJson(res, 200, instanceView(ctx, findVm(ctx, route.rg!, name!)));
    }
    if (t === "disks") {
      if (get && !name) return sendList(ctx, res, url, base, [...ctx.state.disks.values()].filter((d) => inScope(route, d.resourceGroup)).map((d) => diskJson(ctx, d)));
      if (get && name && !sub) return sendJson(res, 200, diskJson(ctx, findDisk(ctx, route.rg!, name)));
      if (method === "POST" && sub && !extra) return access(ctx, req, res, base, sub, findDisk(ctx, route.rg!, name!));
    }
    if (t === "snapshots") {
      if (get && !name) return sendList(ctx, res, url, base, [...ctx.state.snapshots.values()].filter((s) => inScope(route, s.resourceGroup)).map((s) => snapshotJson(ctx, s)));
      if (get && name && !sub) {
        const snapshot = findSnapshot(ctx, route.rg!, name);
        const creating = snapshot.creatingOp ? ctx.state.operations.get(snapshot.creatingOp) : undefined;
        if (snapshot.provisioningState === "Creating" && creating) advance(creating);
        return sendJson(res, 200, snapshotJson(ctx, snapshot));
      }
      if (method === "PUT" && name && !sub) return putSnapshot(ctx, req, res, base, route.rg!, name, url);
      if (method === "DELETE" && name && !sub) return deleteSnapshot(ctx, res, base, route.rg!, name);
      if (method === "POST" && sub && !extra) return access(ctx, req, res, base, sub, findSnapshot(ctx, route.rg!, name!));
    }
  }
  if (route.rg === undefined && name === undefined && !get) {
    throw new ArmError(405, "MethodNotAllowed", `The requested resource does not support http method '${method}'.`);
  }
  throw new ArmError(404, "InvalidResourceType", `The resource type '${route.rest.join("/")}' could not be found in the namespace '${route.ns}' for api version '${url.searchParams.get("api-version")}'.`);
}

function inScope(route: Route, rg: string): boolean {
  return route.rg === undefined || route.rg.toLowerCase() === rg.toLowerCase();
}

function sendList(ctx: Ctx, res: http.ServerResponse, url: URL, base: string, items: unknown[]): void {
  const skip = Number(url.searchParams.get("$skiptoken") ?? 0) || 0;
  const page = items.slice(skip, skip + ctx.pageSize);
  const body: { value: unknown[]; nextLink?: string } = { value: page };
  if (skip + ctx.pageSize < items.length) {
    const next = new URL(url.pathname + url.search, base);
    next.searchParams.set("$skiptoken", String(skip + ctx.pageSize));
    body.nextLink = next.toString();
  }
  sendJson(res, 200, body);
}


function lookup<T>(map: Map<string, T>, id: string, type: string, name: string, rg: string): T {
  const found = map.get(keyOf(id));
  if (!found) throw new ArmError(404, "ResourceNotFound", `The Resource '${type}/${name}' under resource group '${rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix`);
  return found;
}

const findVm = (ctx: Ctx, rg: string, name: string) =>
  lookup(ctx.state.vms, idOf(ctx, rg, "Microsoft.Compute", "virtualMachines", name), "Microsoft.Compute/virtualMachines", name, rg);
const findDisk = (ctx: Ctx, rg: string, name: string) =>
  lookup(ctx.state.disks, idOf(ctx, rg, "Microsoft.Compute", "disks", name), "Microsoft.Compute/disks", name, rg);
const findSnapshot = (ctx: Ctx, rg: string, name: string) =>
  lookup(ctx.state.snapshots, idOf(ctx, rg, "Microsoft.Compute", "snapshots", name), "Microsoft.Compute/snapshots", name, rg);
const findNic = (ctx: Ctx, rg: string, name: string) =>
  lookup(ctx.state.nics, idOf(ctx, rg, "Microsoft.Network", "networkInterfaces", name), "Microsoft.Network/networkInterfaces", name, rg);

/** A long-running operation's status URL (Azure-AsyncOperation) and its monitor URL (Location). */
function startOperation(ctx: Ctx, base: string, location: string, apiVersion: string, op: Partial<Operation> = {}): Record<string, string> {
  const id = crypto.randomUUID();
  ctx.state.operations.set(id, { id, location, apiVersion, pollsLeft: ctx.faults.lroPolls, startTime: new Date().toISOString(), ...op });
  const status = `${base}/subscriptions/${ctx.subscriptionId}/providers/Microsoft.Compute/locations/${location}/operations/${id}?p=${crypto.randomUUID()}&api-version=${apiVersion}`;
  return { "azure-asyncoperation": status, location: `${status}&monitor=true`, "retry-after": "0" };
}

/**
 * One look at an operation: it answers InProgress for faults.lroPolls looks, then completes. A GET of the
 * resource being created counts as a look too, so a client that waits on provisioningState also sees it finish
 * (Azure finishes an operation whether or not anyone polls).
 */
function advance(op: Operation): void {
  if (op.endTime) return;
  if (op.failure) {
    op.endTime = new Date().toISOString();
    return;
  }
  if (op.ready && !op.ready()) return;
  if (op.pollsLeft > 0) op.pollsLeft--;
  else {
    op.endTime = new Date().toISOString();
    op.onDone?.();
  }
}

function operation(ctx: Ctx, res: http.ServerResponse, url: URL, id: string): void {
  const op = ctx.state.operations.get(id);
  if (!op) throw new ArmError(404, "NotFound", `The operation '${id}' was not found.`);
  advance(op);
  const done = Boolean(op.endTime);
  if (url.searchParams.get("monitor") === "true") {
    if (!done) return sendJson(res, 202, undefined, { location: url.toString(), "retry-after": "0" });
    if (op.failure) return sendJson(res, 500, { error: op.failure });
    if (op.result === undefined) return sendJson(res, 200, undefined);
    return sendJson(res, 200, op.result);
  }
  sendJson(res, 200, {
    startTime: op.startTime,
    ...(done ? { endTime: op.endTime } : {}),
    status: !done ? "InProgress" : op.failure ? "Failed" : "Succeeded",
    ...(op.failure ? { error: op.failure } : {}),
    ...(done && op.result !== undefined ? { properties: { output: op.result } } : {}),
    name: op.id,
  });
}

async function jsonBody(req: http.IncomingMessage): Promise<Record<string, any>> {
  const text = (await readBody(req)).toString("utf8");
  if (!text.trim()) return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new ArmError(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized.");
  }
}

const sameLocation = (a: string, b: string) => a.replace(/\s+/g, "").toLowerCase() === b.replace(/\s+/g, "").toLowerCase();

async function putSnapshot(ctx: Ctx, req: http.IncomingMessage, res: http.ServerResponse, base: string, rg: string, name: string, url: URL): Promise<void> {
  const body = await jsonBody(req);
  const apiVersion = url.searchParams.get("api-version")!;
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,78}[A-Za-z0-9_]$|^[A-Za-z0-9_]$/.test(name)) {
    throw new ArmError(400, "InvalidParameter", `The entity name '${name}' is invalid according to its validation rule: ^[^_\\W][\\w-._]{0,79}(?<![-.])$.`);
  }
  if (typeof body.location !== "string" || !body.location) {
    throw new ArmError(400, "LocationRequired", "The location property is required for this definition.");
  }
  const creation = body.properties?.creationData ?? {};
  const sourceId: unknown = creation.sourceResourceId;
  if (String(creation.createOption ?? "").toLowerCase() !== "copy" || typeof sourceId !== "string") {
    throw new ArmError(400, "InvalidParameter", "Required parameter 'creationData.sourceResourceId' is missing (null) or 'creationData.createOption' is not 'Copy'.");
  }
  const source = ctx.state.disks.get(keyOf(sourceId)) ?? ctx.state.snapshots.get(keyOf(sourceId));
  if (!source) throw new ArmError(404, "NotFound", `Resource ${sourceId} is not found.`);
  if (!sameLocation(source.location, body.location)) {
    throw new ArmError(400, "InvalidParameter", `The source resource '${sourceId}' is in location '${source.location}', the snapshot in '${body.location}': a copy must be in the source's region.`);
  }
  const incremental = body.properties?.incremental === true;
  if (incremental && ctx.faults.refuseIncremental) {
    throw new ArmError(400, "BadRequest", `Incremental snapshots are not supported for disk '${source.name}'. Create a full snapshot (incremental: false) instead.`);
  }
  const id = idOf(ctx, rg, "Microsoft.Compute", "snapshots", name);
  const existing = ctx.state.snapshots.get(keyOf(id));
  if (existing) {
    if (keyOf(existing.sourceDiskId) !== keyOf(sourceId)) {
      throw new ArmError(409, "PropertyChangeNotAllowed", "Changing property 'sourceResourceId' is not allowed.");
    }
    const headers = startOperation(ctx, base, existing.location.toLowerCase(), apiVersion);
    delete headers.location;
    return sendJson(res, 200, snapshotJson(ctx, existing), headers);
  }
  const sourceDisk = "sourceDiskId" in source ? ctx.state.disks.get(keyOf(source.sourceDiskId)) : source;
  const blob = ctx.state.blobName("snap", rg, name);
  // The disk's content now: the copy runs on after the answer (as Azure's does), and writes to the disk
  // (writeDisk) wait for it, so that they do not reach the snapshot.
  const copying = ctx.state.startCopy(source.blob, blob);
  let copied = false;
  const snapshot: SnapshotState = {
    id,
    name,
    resourceGroup: rg,
    location: source.location,
    sourceDiskId: sourceId,
    sourceUniqueId: source.uniqueId,
    incremental,
    blob,
    sizeBytes: source.sizeBytes,
    osType: sourceDisk?.osType,
    hyperVGeneration: sourceDisk?.hyperVGeneration,
    uniqueId: crypto.randomUUID(),
    provisioningState: "Creating",
    timeCreated: new Date().toISOString(),
    copying: copying.catch(() => {}),
  };
  ctx.state.snapshots.set(keyOf(id), snapshot);
  const headers = startOperation(ctx, base, snapshot.location.toLowerCase(), apiVersion, {
    onDone: () => {
      snapshot.provisioningState = "Succeeded";
    },
    ready: () => copied,
  });
  const op = ctx.state.operations.get(new URL(headers["azure-asyncoperation"]!).pathname.split("/").at(-1)!)!;
  copying.then(() => {
    copied = true;
  }, (err: Error) => {
    op.failure = { code: "InternalExecutionError", message: `copying ${sourceId} failed: ${err.message}` };
  });
  delete headers.location;
  snapshot.creatingOp = new URL(headers["azure-asyncoperation"]!).pathname.split("/").at(-1);
  sendJson(res, 201, snapshotJson(ctx, snapshot), headers);
}

async function deleteSnapshot(ctx: Ctx, res: http.ServerResponse, base: string, rg: string, name: string): Promise<void> {
  if (ctx.faults.snapshotDeleteFailures > 0) {
    ctx.faults.snapshotDeleteFailures--;
    throw new ArmError(500, "InternalServerError", "An internal execution error occurred. Please retry later.");
  }
  const id = idOf(ctx, rg, "Microsoft.Compute", "snapshots", name);
  const snapshot = ctx.state.snapshots.get(keyOf(id));
  // ARM answers a DELETE of a resource that does not exist with 204 No Content.
  if (!snapshot) return sendJson(res, 204, undefined);
  if (grantOpen(ctx, id)) {
    throw new ArmError(409, "OperationNotAllowed",
      `Operation 'Delete' is not allowed on snapshot '${name}' since it has an active SAS (diskState ActiveSAS). Revoke access (endGetAccess) first.`);
  }
  ctx.state.snapshots.delete(keyOf(id));
  await snapshot.copying;
  await ctx.state.deleteBlob(snapshot.blob);
  sendJson(res, 202, undefined, startOperation(ctx, base, snapshot.location.toLowerCase(), DISK_VERSIONS.at(-1)!));
}

async function access(ctx: Ctx, req: http.IncomingMessage, res: http.ServerResponse, base: string, action: string, target: DiskState | SnapshotState): Promise<void> {
  const kind = "sourceDiskId" in target ? "snapshot" : "disk";
  const apiVersion = DISK_VERSIONS.at(-1)!;
  if (action.toLowerCase() === "endgetaccess") {
    await readBody(req);
    const grant = ctx.state.grants.get(keyOf(target.id));
    if (grant) for (const sig of grant.sigs) ctx.state.sas.delete(sig);
    ctx.state.grants.delete(keyOf(target.id));
    return sendJson(res, 202, undefined, startOperation(ctx, base, target.location.toLowerCase(), apiVersion));
  }
  if (action.toLowerCase() !== "begingetaccess") throw new ArmError(404, "InvalidResourceType", `The resource type '${kind}s/${action}' could not be found.`);
  const body = await jsonBody(req);
  const seconds = body.durationInSeconds;
  if (String(body.access ?? "").toLowerCase() !== "read" || !Number.isInteger(seconds) || seconds <= 0) {
    throw new ArmError(400, "InvalidParameter", "The value of parameter 'grantAccessData' is invalid: 'access' must be 'Read' and 'durationInSeconds' a positive integer.");
  }
  if (kind === "disk") {
    const vm = (target as DiskState).managedBy ? ctx.state.vms.get(keyOf((target as DiskState).managedBy!)) : undefined;
    if (vm && vm.powerState !== "deallocated") {
      throw new ArmError(409, "OperationNotAllowed",
        `Operation 'beginGetAccess' is not allowed on Disk '${target.name}' since it is attached to VM '${vm.id}' which is not deallocated (PowerState/${vm.powerState}). Deallocate the VM or export a snapshot of the disk.`);
    }
  } else if ((target as SnapshotState).provisioningState !== "Succeeded") {
    throw new ArmError(409, "OperationNotAllowed", `Operation 'beginGetAccess' is not allowed on snapshot '${target.name}' while it is being created (provisioningState Creating).`);
  }
  const sas = ctx.state.sasFor(target.blob, seconds);
  ctx.state.sas.set(sas.sig, target.blob);
  const grant = ctx.state.grants.get(keyOf(target.id)) ?? { resourceId: target.id, blob: target.blob, sigs: new Set<string>() };
  grant.sigs.add(sas.sig);
  ctx.state.grants.set(keyOf(target.id), grant);
  const accessSAS = `${ctx.blobProxy}${sas.path}?${sas.query}`;
  sendJson(res, 202, undefined, startOperation(ctx, base, target.location.toLowerCase(), apiVersion, { result: { accessSAS } }));
}
