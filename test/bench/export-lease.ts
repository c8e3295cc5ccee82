// A vSphere export lease made by the bench itself (the project's SOAP code), for curl's row and for timing how long
// the simulator takes to make a lease ready (it hashes every file then, SHA-1 and SHA-256, for
// HttpNfcLeaseGetManifest): a fixed cost in govc's and hypervisord's times that no client can overlap.
import { pino } from "pino";
import { abortLease, leaseState, waitForLease, type LeaseInfo } from "../../src/providers/vsphere/lease.ts";
import { openSession } from "../../src/providers/vsphere/session.ts";
import { child, moRefOf } from "../../src/providers/vsphere/xml.ts";
import type { Vcsim, VcsimVm } from "../support/vcsim.ts";
import { connection, JOB_TIMEOUT_MS } from "./export-job.ts";

/** The state is polled this often to time the lease (waitForLease backs off to 1 s, too coarse to time it). */
const POLL_MS = 20;
const logger = pino({ level: "warn" });

/** ExportVm on `vm`, ready; `use` gets its info and the seconds from ExportVm until ready; the lease is aborted after. */
export async function withExportLease<T>(sim: Vcsim, vm: VcsimVm, use: (info: LeaseInfo, readySeconds: number) => Promise<T>): Promise<T> {
  const signal = AbortSignal.timeout(JOB_TIMEOUT_MS);
  const session = await openSession(connection(sim), { maxConnections: 2, logger }, signal);
  try {
    const started = performance.now();
    const lease = moRefOf(child(await session.call("ExportVm", [["_this", { type: "VirtualMachine", value: vm.moref }]], signal), "returnval"));
    if (!lease) throw new Error(`ExportVm on ${vm.moref} returned no lease`);
    try {
      while ((await leaseState(session, lease, signal)) === "initializing") await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      const readySeconds = (performance.now() - started) / 1000;
      return await use(await waitForLease(session, lease, signal), readySeconds);
    } finally {
      await abortLease(session, lease);
    }
  } finally {
    await session.close();
  }
}
