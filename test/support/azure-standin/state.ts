import crypto from "node:crypto";
import {
  BlobSASPermissions,
  BlobServiceClient,
  SASProtocol,
  StorageSharedKeyCredential,
  generateBlobSASQueryParameters,
  type ContainerClient,
} from "@azure/storage-blob";
import type { Azurite } from "../azurite.ts";
import { fixedVhdFooter } from "./vhd-footer.ts";

export const CONTAINER = "disks";
const MAX_PUT_PAGES = 4 * 1024 * 1024;

export interface DiskState {
  id: string;
  name: string;
  resourceGroup: string;
  location: string;
  sizeBytes: number;
  sku: string;
  hyperVGeneration?: "V1" | "V2";
  osType?: "Linux" | "Windows";
  blob: string;
  uniqueId: string;
  /** The VM's resource id when attached. */
  managedBy?: string;
  timeCreated: string;
}

export interface NicState {
  id: string;
  name: string;
  resourceGroup: string;
  location: string;
  macAddress: string;
  vnet: string;
  subnet: string;
  vm: string;
}

export interface VmState {
  id: string;
  name: string;
  resourceGroup: string;
  location: string;
  size: string;
  powerState: "running" | "deallocated" | "stopped";
  osDisk: string;
  dataDisks: { lun: number; disk: string }[];
  nics: string[];
  securityType?: "TrustedLaunch";
  vmId: string;
  timeCreated: string;
}

export interface SnapshotState {
  id: string;
  name: string;
  resourceGroup: string;
  location: string;
  sourceDiskId: string;
  sourceUniqueId: string;
  incremental: boolean;
  blob: string;
  sizeBytes: number;
  osType?: string;
  hyperVGeneration?: string;
  uniqueId: string;
  provisioningState: "Creating" | "Succeeded";
  /** The id of the operation creating it. */
  creatingOp?: string;
  /** The copy of the source's bytes, running in the background from the PUT on (settled once done). */
  copying?: Promise<void>;
  timeCreated: string;
}

export interface GrantState {
  resourceId: string;
  blob: string;
  sigs: Set<string>;
}

export interface Operation {
  id: string;
  /** The location segment of the operation URL. */
  location: string;
  apiVersion: string;
  pollsLeft: number;
  startTime: string;
  endTime?: string;
  /** The Location URL's final body (beginGetAccess: `{accessSAS}`). */
  result?: unknown;
  onDone?: () => void;
  /** While false, a look leaves the operation InProgress without counting (a snapshot's copy still running). */
  ready?: () => boolean;
  /** Set when the work behind the operation failed: it ends "Failed" with this error. */
  failure?: { code: string; message: string };
}

export const keyOf = (id: string) => id.toLowerCase();

/** The resource inventory and the disk bytes in Azurite; the HTTP faces read and change it. */
export function createState(azurite: Azurite) {
  const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
  const container: ContainerClient = service.getContainerClient(CONTAINER);
  const credential = new StorageSharedKeyCredential(azurite.account, azurite.accountKey);
  // Several stand-ins may share one Azurite: blob names carry this one's prefix.
  const prefix = crypto.randomBytes(4).toString("hex");
  let sequence = 0;

  const state = {
    container,
    disks: new Map<string, DiskState>(),
    vms: new Map<string, VmState>(),
    nics: new Map<string, NicState>(),
    snapshots: new Map<string, SnapshotState>(),
    grants: new Map<string, GrantState>(),
    operations: new Map<string, Operation>(),
    resourceGroups: new Set<string>(),
    /** Issued bearer tokens. */
    tokens: new Set<string>(),
    /** SAS signatures handed out and not revoked, to the blob they open. */
    sas: new Map<string, string>(),
    /** Snapshot copies running, by source blob: a write to the source waits for them (snapshot-time content). */
    copies: new Map<string, Set<Promise<void>>>(),

    /** Copies `from` in the background; writes to `from` wait until it is done. */
    startCopy(from: string, to: string): Promise<void> {
      const copying = state.copyBlob(from, to);
      const running = state.copies.get(from) ?? new Set<Promise<void>>();
      state.copies.set(from, running);
      const settled = copying.catch(() => {});
      running.add(settled);
      void settled.then(() => running.delete(settled));
      return copying;
    },

    async copiesDone(from?: string): Promise<void> {
      const running = from ? [...(state.copies.get(from) ?? [])] : [...state.copies.values()].flatMap((set) => [...set]);
      await Promise.all(running);
    },

    async init(): Promise<void> {
      await container.createIfNotExists();
    },

    blobName(kind: string, rg: string, name: string): string {
      return `${prefix}-${kind}-${rg}-${name}-${++sequence}.vhd`.toLowerCase();
    },

    /** A page blob of size + 512 with the fixed VHD footer in its last page. */
    async createDiskBlob(blob: string, sizeBytes: number): Promise<void> {
      const client = container.getPageBlobClient(blob);
      await client.create(sizeBytes + 512);
      await client.uploadPages(fixedVhdFooter(sizeBytes), sizeBytes, 512);
    },

    async writeBlob(blob: string, offset: number, data: Buffer): Promise<void> {
      await state.copiesDone(blob);
      if (offset % 512 !== 0 || data.length % 512 !== 0) {
        throw new Error(`disk writes are 512-byte aligned: offset ${offset}, length ${data.length}`);
      }
      const client = container.getPageBlobClient(blob);
      for (let at = 0; at < data.length; at += MAX_PUT_PAGES) {
        const piece = data.subarray(at, at + MAX_PUT_PAGES);
        await client.uploadPages(piece, offset + at, piece.length);
      }
    },

    /** A copy of a blob's written ranges only (an unwritten range stays unwritten in the copy). */
    async copyBlob(from: string, to: string): Promise<void> {
      const source = container.getPageBlobClient(from);
      const target = container.getPageBlobClient(to);
      const { contentLength } = await source.getProperties();
      await target.create(contentLength!);
      const { pageRange = [] } = await source.getPageRanges();
      const pieces: { at: number; count: number }[] = [];
      for (const range of pageRange) {
        // The SDK reports count as End - Start of the service's inclusive range: one byte short.
        const end = range.offset + range.count! + 1;
        for (let at = range.offset; at < end; at += MAX_PUT_PAGES) pieces.push({ at, count: Math.min(MAX_PUT_PAGES, end - at) });
      }
      // A few pieces at a time: a benchmark's snapshot of hundreds of MiB stays a matter of seconds.
      const copyNext = async (): Promise<void> => {
        for (let piece = pieces.shift(); piece; piece = pieces.shift()) {
          const data = await source.downloadToBuffer(piece.at, piece.count);
          await target.uploadPages(data, piece.at, piece.count);
        }
      };
      await Promise.all([copyNext(), copyNext(), copyNext(), copyNext()]);
    },

    async deleteBlob(blob: string): Promise<void> {
      await container.getPageBlobClient(blob).deleteIfExists();
    },

    async blobBytes(blob: string): Promise<Buffer> {
      return container.getPageBlobClient(blob).downloadToBuffer();
    },

    /** A read-only SAS for one blob, signed with the Azurite account key, its path as Azurite serves it. */
    sasFor(blob: string, seconds: number): { path: string; query: string; sig: string } {
      const query = generateBlobSASQueryParameters(
        {
          containerName: CONTAINER,
          blobName: blob,
          permissions: BlobSASPermissions.parse("r"),
          startsOn: new Date(Date.now() - 5 * 60_000),
          expiresOn: new Date(Date.now() + seconds * 1000),
          protocol: SASProtocol.HttpsAndHttp,
        },
        credential,
      ).toString();
      const sig = new URLSearchParams(query).get("sig")!;
      return { path: `/${azurite.account}/${CONTAINER}/${blob}`, query, sig };
    },
  };
  return state;
}

export type StandinState = ReturnType<typeof createState>;
