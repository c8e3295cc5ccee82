import type { VSphereConnection } from "./job.ts";

export type PowerState = "poweredOff" | "poweredOn" | "suspended" | "unknown";

export interface VirtualDisk {
  label: string;
  capacityBytes: number;
  file: string;
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
}

export interface VMQuery {
  connection?: VSphereConnection;
  /** Glob on the VM name. */
  namePattern?: string;
  folder?: string;
  powerState?: PowerState;
}
