import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import type net from "node:net";
import path from "node:path";
import type { AzureConnection } from "../../src/domain/job.ts";
import type { Azurite } from "./azurite.ts";
import { handleArm } from "./azure-standin/arm.ts";
import { createBlobProxy } from "./azure-standin/blob-proxy.ts";
import type { Counts, Ctx, FaultState } from "./azure-standin/context.ts";
import { ArmError, sendArmError } from "./azure-standin/http-util.ts";
import { createState, keyOf, type DiskState, type SnapshotState } from "./azure-standin/state.ts";
import { handleIdentity } from "./azure-standin/token.ts";
import { VM_SIZES } from "./azure-standin/vm-sizes.ts";
import { tempDir } from "./temp-dir.ts";

export { fixedVhdFooter } from "./azure-standin/vhd-footer.ts";

export interface StandinDiskSpec {
  name: string;
  /** Default "rg1". */
  resourceGroup?: string;
  /** Logical size, a multiple of 1 MiB. */
  sizeBytes: number;
  /** Default "Premium_LRS". */
  sku?: string;
  hyperVGeneration?: "V1" | "V2";
  osType?: "Linux" | "Windows";
  /** 512-aligned; everything else stays unwritten (no page range). */
  writes?: { offset: number; data: Buffer }[];
}

export interface StandinVmSpec {
  name: string;
  resourceGroup?: string;
  /** Default "westeurope". */
  location?: string;
  /** Default "Standard_D2s_v3". */
  size?: string;
  /** Default "running". */
  powerState?: "running" | "deallocated" | "stopped";
  /** Disk name, same resource group. */
  osDisk: string;
  dataDisks?: { lun: number; disk: string }[];
  /** Default one NIC `${name}-nic` on vnet1/default. */
  nics?: { name: string; macAddress?: string; vnet?: string; subnet?: string }[];
  securityType?: "TrustedLaunch";
}

export interface AzureStandin {
  tenantId: string;
  clientId: string;
  clientSecret: string;
  subscriptionId: string;
  /** http://127.0.0.1:PORT (token endpoint at /{tenant}/oauth2/v2.0/token). */
  authorityHost: string;
  /** http://127.0.0.1:PORT (the same server as authorityHost). */
  resourceManager: string;
  /** http://127.0.0.1:PORT2: the host of every accessSAS URL handed out. */
  blobProxy: string;
  /** With { tls: true }: the same handlers over https, its self-signed certificate in caFile. */
  https?: { authorityHost: string; resourceManager: string; caFile: string };
  /** As the daemon's domain type AzureConnection, overridable (resourceGroup "" = whole subscription). */
  connection(overrides?: Partial<AzureConnection>): AzureConnection;
  addDisk(spec: StandinDiskSpec): Promise<{ id: string }>;
  addVm(spec: StandinVmSpec): Promise<{ id: string }>;
  /** The running VM writes (changes the disk's live blob; snapshots keep their snapshot-time content). */
  writeDisk(disk: string, offset: number, data: Buffer, resourceGroup?: string): Promise<void>;
  setPowerState(vm: string, state: "running" | "deallocated" | "stopped", resourceGroup?: string): void;
  /** The whole VHD (data + footer) of a disk or snapshot (by name or id), as a full download gives it. */
  vhdBytes(nameOrId: string, resourceGroup?: string): Promise<Buffer>;
  /** Snapshots existing now. */
  snapshots(): { id: string; name: string; sourceDiskId: string; incremental: boolean }[];
  /** Accesses open now (beginGetAccess without endGetAccess). */
  grants(): { resourceId: string }[];
  counts: Counts;
  /** ARM and token requests, in order (path without query). */
  requests: { method: string; path: string; apiVersion?: string; status: number }[];
  faults: {
    /** The next n ARM requests whose "METHOD /path" matches (all when no match): 429 + Retry-After. */
    throttleArm(n: number, retryAfterSeconds: number, match?: RegExp): void;
    /** e.g. "Microsoft.Compute/snapshots/write": 403 AuthorizationFailed on requests needing it. */
    deny(action: string): void;
    /**
     * The blob proxy destroys the socket of the next `times` (default 1) GET bodies longer than afterBytes, after
     * afterBytes (counts.blobCuts counts them).
     */
    cutBlob(afterBytes: number, times?: number): void;
    /** The next n blob requests: 503 ServerBusy + Retry-After. */
    throttleBlob(n: number, retryAfterSeconds: number): void;
    /** 0 = unlimited: slows blob bodies (cancel / kill -9 tests), all of them together to this rate. */
    blobBytesPerSecond: number;
    /** Polls an LRO answers InProgress before it succeeds (default 1). */
    lroPolls: number;
    /** The next n snapshot DELETEs fail (500 InternalServerError). */
    failSnapshotDelete(n: number): void;
    /** Incremental snapshot PUTs are refused (400 BadRequest, a message about incremental snapshots). */
    refuseIncremental: boolean;
    /** Every bearer token issued so far stops working (401 InvalidAuthenticationToken), as when they expire. */
    expireTokens(): void;
    reset(): void;
  };
  close(): Promise<void>;
}

const DEFAULT_RG = "rg1";
const DEFAULT_LOCATION = "westeurope";

/**
 * A stand-in for Microsoft Entra ID's token endpoint and Azure Resource Manager (Compute VMs, sizes, disks,
 * snapshots, disk access; Network interfaces), following their REST API references, with every managed disk a
 * page blob in Azurite (a fixed VHD: data then footer) read through a counting, fault-injecting proxy.
 */
export async function startAzureStandin(options: { azurite: Azurite; tls?: boolean; pageSize?: number }): Promise<AzureStandin> {
  const state = createState(options.azurite);
  await state.init();
  const faultState: FaultState = freshFaults();
  const counts: Counts = { tokenRequests: 0, armRequests: 0, blobRequests: 0, blobBytes: 0, pageListRequests: 0, blobCuts: 0 };
  const ctx: Ctx = {
    tenantId: crypto.randomUUID(),
    clientId: crypto.randomUUID(),
    clientSecret: `s3cr3t~${crypto.randomBytes(18).toString("base64url")}`,
    objectId: crypto.randomUUID(),
    subscriptionId: crypto.randomUUID(),
    audiences: new Set(),
    blobProxy: "",
    pageSize: options.pageSize ?? 100,
    state,
    faults: faultState,
    counts,
    requests: [],
  };

  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://standin");
    void (async () => {
      if (url.pathname.toLowerCase().startsWith("/subscriptions/")) return handleArm(ctx, req, res, url);
      if (await handleIdentity(ctx, req, res, url)) return;
      sendArmError(res, new ArmError(404, "NotFound", `No HTTP resource was found that matches the request URI '${url.pathname}'.`));
    })().catch((err: Error) => {
      if (!res.headersSent) sendArmError(res, new ArmError(500, "InternalServerError", err.message));
      else res.destroy();
    });
  };

  const sockets = new Set<net.Socket>();
  const track = (server: http.Server | https.Server) => {
    server.on("connection", (socket: net.Socket) => {
      sockets.add(socket);
      socket.once("close", () => sockets.delete(socket));
    });
    return server;
  };
  const servers: (http.Server | https.Server)[] = [];
  const listen = async (server: http.Server | https.Server): Promise<number> => {
    servers.push(track(server));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return (server.address() as net.AddressInfo).port;
  };

  const armPort = await listen(http.createServer(handler));
  const blobPort = await listen(createBlobProxy(ctx, options.azurite));
  const plain = `http://127.0.0.1:${armPort}`;
  ctx.blobProxy = `http://127.0.0.1:${blobPort}`;
  ctx.audiences.add(plain);
  let tls: AzureStandin["https"];
  if (options.tls) {
    const dir = tempDir("azure-standin-tls");
    const key = path.join(dir, "key.pem");
    const cert = path.join(dir, "cert.pem");
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
      "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], { stdio: "ignore" });
    const port = await listen(https.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, handler));
    const secure = `https://127.0.0.1:${port}`;
    ctx.audiences.add(secure);
    tls = { authorityHost: secure, resourceManager: secure, caFile: cert };
  }

  const id = (rg: string, ns: string, type: string, name: string) =>
    `/subscriptions/${ctx.subscriptionId}/resourceGroups/${rg}/providers/${ns}/${type}/${name}`;
  const diskOf = (name: string, rg = DEFAULT_RG): DiskState => {
    const disk = state.disks.get(keyOf(name.startsWith("/") ? name : id(rg, "Microsoft.Compute", "disks", name)));
    if (!disk) throw new Error(`the stand-in has no disk ${name} in ${rg}`);
    return disk;
  };
  const vmOf = (name: string, rg = DEFAULT_RG) => {
    const vm = state.vms.get(keyOf(name.startsWith("/") ? name : id(rg, "Microsoft.Compute", "virtualMachines", name)));
    if (!vm) throw new Error(`the stand-in has no VM ${name} in ${rg}`);
    return vm;
  };

  const faults: AzureStandin["faults"] = {
    throttleArm(n, retryAfterSeconds, match) {
      faultState.armThrottles.push({ left: n, retryAfterSeconds, match });
    },
    deny(action) {
      faultState.denied.add(action.toLowerCase());
    },
    cutBlob(afterBytes, times = 1) {
      faultState.blobCuts.push({ afterBytes, left: times });
    },
    throttleBlob(n, retryAfterSeconds) {
      faultState.blobThrottle = { left: n, retryAfterSeconds };
    },
    get blobBytesPerSecond() {
      return faultState.blobBytesPerSecond;
    },
    set blobBytesPerSecond(value: number) {
      faultState.blobBytesPerSecond = value;
    },
    get lroPolls() {
      return faultState.lroPolls;
    },
    set lroPolls(value: number) {
      faultState.lroPolls = value;
    },
    failSnapshotDelete(n) {
      faultState.snapshotDeleteFailures = n;
    },
    get refuseIncremental() {
      return faultState.refuseIncremental;
    },
    set refuseIncremental(value: boolean) {
      faultState.refuseIncremental = value;
    },
    expireTokens() {
      state.tokens.clear();
    },
    reset() {
      Object.assign(faultState, freshFaults());
    },
  };

  return {
    tenantId: ctx.tenantId,
    clientId: ctx.clientId,
    clientSecret: ctx.clientSecret,
    subscriptionId: ctx.subscriptionId,
    authorityHost: plain,
    resourceManager: plain,
    blobProxy: ctx.blobProxy,
    https: tls,
    connection(overrides = {}) {
      return {
        tenantId: ctx.tenantId,
        clientId: ctx.clientId,
        clientSecret: ctx.clientSecret,
        subscriptionId: ctx.subscriptionId,
        resourceGroup: "",
        authorityHost: plain,
        resourceManager: plain,
        ...overrides,
      };
    },

    async addDisk(spec) {
      const rg = spec.resourceGroup ?? DEFAULT_RG;
      if (spec.sizeBytes <= 0 || spec.sizeBytes % (1024 * 1024) !== 0) {
        throw new Error(`disk ${spec.name}: Azure sizes a managed disk's VHD in whole MiB, not ${spec.sizeBytes} bytes`);
      }
      const diskId = id(rg, "Microsoft.Compute", "disks", spec.name);
      if (state.disks.has(keyOf(diskId))) throw new Error(`disk ${rg}/${spec.name} exists already`);
      const blob = state.blobName("disk", rg, spec.name);
      await state.createDiskBlob(blob, spec.sizeBytes);
      for (const write of spec.writes ?? []) {
        if (write.offset + write.data.length > spec.sizeBytes) throw new Error(`disk ${spec.name}: a write past its end`);
        await state.writeBlob(blob, write.offset, write.data);
      }
      state.resourceGroups.add(rg);
      state.disks.set(keyOf(diskId), {
        id: diskId,
        name: spec.name,
        resourceGroup: rg,
        location: DEFAULT_LOCATION,
        sizeBytes: spec.sizeBytes,
        sku: spec.sku ?? "Premium_LRS",
        hyperVGeneration: spec.hyperVGeneration,
        osType: spec.osType,
        blob,
        uniqueId: crypto.randomUUID(),
        timeCreated: new Date().toISOString(),
      });
      return { id: diskId };
    },

    async addVm(spec) {
      const rg = spec.resourceGroup ?? DEFAULT_RG;
      const location = spec.location ?? DEFAULT_LOCATION;
      const size = spec.size ?? "Standard_D2s_v3";
      if (!VM_SIZES.some((s) => s.name === size)) throw new Error(`VM ${spec.name}: the stand-in knows no size ${size}`);
      const vmId = id(rg, "Microsoft.Compute", "virtualMachines", spec.name);
      if (state.vms.has(keyOf(vmId))) throw new Error(`VM ${rg}/${spec.name} exists already`);
      const disks = [spec.osDisk, ...(spec.dataDisks ?? []).map((d) => d.disk)].map((name) => diskOf(name, rg));
      for (const disk of disks) {
        if (disk.managedBy) throw new Error(`disk ${disk.name} is attached to ${disk.managedBy} already`);
      }
      disks[0]!.osType ??= "Linux";
      for (const disk of disks) {
        disk.managedBy = vmId;
        disk.location = location;
      }
      const nicSpecs = spec.nics ?? [{ name: `${spec.name}-nic` }];
      const nics = nicSpecs.map((nic) => {
        const nicId = id(rg, "Microsoft.Network", "networkInterfaces", nic.name);
        const mac = nic.macAddress ?? `00-0D-3A-${crypto.randomBytes(3).toString("hex").toUpperCase().match(/../g)!.join("-")}`;
        state.nics.set(keyOf(nicId), {
          id: nicId,
          name: nic.name,
          resourceGroup: rg,
          location,
          macAddress: mac.replace(/:/g, "-").toUpperCase(),
          vnet: nic.vnet ?? "vnet1",
          subnet: nic.subnet ?? "default",
          vm: vmId,
        });
        return nicId;
      });
      state.resourceGroups.add(rg);
      state.vms.set(keyOf(vmId), {
        id: vmId,
        name: spec.name,
        resourceGroup: rg,
        location,
        size,
        powerState: spec.powerState ?? "running",
        osDisk: disks[0]!.id,
        dataDisks: (spec.dataDisks ?? []).map((d) => ({ lun: d.lun, disk: diskOf(d.disk, rg).id })).sort((a, b) => a.lun - b.lun),
        nics,
        securityType: spec.securityType,
        vmId: crypto.randomUUID(),
        timeCreated: new Date().toISOString(),
      });
      return { id: vmId };
    },

    async writeDisk(disk, offset, data, resourceGroup) {
      const d = diskOf(disk, resourceGroup);
      if (offset + data.length > d.sizeBytes) throw new Error(`disk ${disk}: a write past its end`);
      await state.writeBlob(d.blob, offset, data);
    },

    setPowerState(vm, powerState, resourceGroup) {
      vmOf(vm, resourceGroup).powerState = powerState;
    },

    async vhdBytes(nameOrId, resourceGroup = DEFAULT_RG) {
      let found: DiskState | SnapshotState | undefined;
      if (nameOrId.startsWith("/")) {
        found = state.disks.get(keyOf(nameOrId)) ?? state.snapshots.get(keyOf(nameOrId));
      } else {
        found = state.disks.get(keyOf(id(resourceGroup, "Microsoft.Compute", "disks", nameOrId)))
          ?? state.snapshots.get(keyOf(id(resourceGroup, "Microsoft.Compute", "snapshots", nameOrId)));
      }
      if (!found) throw new Error(`the stand-in has no disk or snapshot ${nameOrId} in ${resourceGroup}`);
      if ("copying" in found) await found.copying;
      return state.blobBytes(found.blob);
    },

    snapshots() {
      return [...state.snapshots.values()].map((s) => ({ id: s.id, name: s.name, sourceDiskId: s.sourceDiskId, incremental: s.incremental }));
    },

    grants() {
      return [...state.grants.values()].map((g) => ({ resourceId: g.resourceId }));
    },

    counts,
    requests: ctx.requests,
    faults,

    async close() {
      await state.copiesDone();
      for (const server of servers) server.close();
      for (const socket of sockets) socket.destroy();
      await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
    },
  };
}

function freshFaults(): FaultState {
  return {
    armThrottles: [],
    denied: new Set(),
    blobCuts: [],
    blobThrottle: { left: 0, retryAfterSeconds: 0 },
    blobBytesPerSecond: 0,
    lroPolls: 1,
    snapshotDeleteFailures: 0,
    refuseIncremental: false,
  };
}
