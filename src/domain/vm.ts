import type { AzureConnection, VSphereConnection } from "./job.ts";

export type PowerState = "poweredOff" | "poweredOn" | "suspended" | "unknown";

export interface VirtualDisk {
  label: string;
  capacityBytes: number;
  file: string;
  /** Azure: the managed disk's SKU ("Premium_LRS"). */
  sku?: string;
}

export interface VirtualNic {
  label: string;
  network: string;
  macAddress: string;
}

export interface VirtualMachine {
  name: string;
  path: string;
  moref: string;
  uuid: string;
  instanceUuid: string;
  powerState: PowerState;
  guestOs: string;
  numCpu: number;
  memoryMb: number;
  firmware: string;
  disks: VirtualDisk[];
  nics: VirtualNic[];
  /** Azure: the VM size ("Standard_D2s_v3"). */
  size?: string;
  /** Azure: the region. */
  location?: string;
}

export interface VMQuery {
  connection?: VSphereConnection;
  /** Provider "azure": its connection (folder then names a resource group). */
  azure?: AzureConnection;
  /** Glob on the VM name. */
  namePattern?: string;
  folder?: string;
  powerState?: PowerState;
}
