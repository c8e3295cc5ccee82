import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import type { JobDefinition } from "../../domain/job.ts";
import { FailedPreconditionError, HypervisordError, UnavailableError } from "../../errors.ts";
import { downloadFiles, type DownloadFile, type DownloadedFile, type HostSlots } from "../../export/download.ts";
import { writeFileAtomic, writeManifest } from "../../export/manifest.ts";
import type { ExportContext, ExportResult } from "../provider.ts";
import { createDescriptor, type OvfFile } from "./descriptor.ts";
import { findVM } from "./discovery.ts";
import { safeFileName } from "./file-names.ts";
import { abortLease, completeLease, keepLeaseAlive, leaseManifest, leaseState, waitForLease, type LeaseDevice, type ManifestEntry } from "./lease.ts";
import { retrieveOne } from "./property-collector.ts";
import type { VSphereSession } from "./session.ts";
import { runTask } from "./tasks.ts";
import { child, moRefOf, type MoRef } from "./xml.ts";

/** What a run saves, so that the next one (after a crash or a retry) resumes: bytes on disk per file. */
export interface ExportCheckpoint {
  files: Record<string, number>;
}

export interface ExportVmOptions {
  hostSlots: HostSlots;
}

interface PlannedFile extends DownloadFile {
  device: LeaseDevice;
}

/**
 * Exports one VM as an OVF package: <output_dir>/<vm>/<vm>.ovf, <vm>-disk-N.vmdk,
 * <vm>.nvram (EFI), <vm>.mf. The source VM is never changed, unless power_off asks
 * to power it off first. The lease is completed on success and aborted otherwise.
 */
export async function exportVm(session: VSphereSession, definition: JobDefinition, context: ExportContext, options: ExportVmOptions): Promise<ExportResult> {
  const { signal, logger } = context;
  context.progress({ phase: "connecting" });
  const vm = await findVM(session, definition.vm, signal);
  const props = await retrieveOne(session, vm, ["name", "runtime.powerState"], signal);
  const vmName = props?.props.get("name")?.text ?? vm.value;
  const powerState = props?.props.get("runtime.powerState")?.text;
  await ensurePoweredOff(session, vm, vmName, powerState, definition.powerOff, context);

  const baseName = safeFileName(vmName);
  const dir = path.join(definition.outputDir, baseName);
  await fs.mkdir(dir, { recursive: true });
  logger.info({ vm: vm.value, name: vmName, dir }, "exporting VM");

  context.progress({ phase: "lease" });
  const lease = moRefOf(child(await session.call("ExportVm", [["_this", vm]], signal), "returnval"));
  if (!lease) throw new HypervisordError("INTERNAL", `ExportVm on ${vm.value} returned no lease`);
  let completed = false;
  let stopKeepAlive = () => {};
  try {
    const info = await waitForLease(session, lease, signal);
    // Asked for now, awaited after the downloads: a server may hash every file to answer it (vcsim does),
    // and that must not delay the transfer. It is checked once both are done.
    const manifest = leaseManifest(session, lease, signal).catch((err: unknown) => {
      if (!signal.aborted) logger.warn({ err: (err as Error).message }, "the lease offers no manifest; disks are checked against the sizes the server sent only");
      return [] as ManifestEntry[];
    });
    const { disks, nvram, skipped } = planFiles(info.devices, baseName, dir);
    for (const device of skipped) logger.info({ key: device.key, target: device.targetId }, "skipping a non-disk device (attached image)");

    const checkpoint = context.loadCheckpoint<ExportCheckpoint>() ?? { files: {} };
    let bytesDone = 0;
    let bytesTotal = 0;
    stopKeepAlive = keepLeaseAlive(session, lease, info.timeoutSeconds, () => (bytesTotal > 0 ? (100 * bytesDone) / bytesTotal : 0),
      (err) => logger.warn({ err: (err as Error).message }, "lease keep-alive failed"));

    context.progress({ phase: "downloading", filesTotal: disks.length, filesDone: 0 });
    const transfer = (files: readonly PlannedFile[]) => downloadFiles(files, {
      dispatcher: session.agent,
      headers: session.soap.cookie ? { cookie: `vmware_soap_session=${session.soap.cookie}` } : undefined,
      parallel: definition.parallelDownloads,
      bandwidthLimit: definition.bandwidthLimit,
      hostSlots: options.hostSlots,
      signal,
      resume: checkpoint.files,
      logger,
      onProgress: (p) => {
        bytesDone = p.bytesDone;
        bytesTotal = p.bytesTotal;
        context.progress({ bytesDone: p.bytesDone, bytesTotal: p.bytesTotal, filesDone: p.filesDone, filesTotal: p.filesTotal, currentFile: p.currentFile });
      },
      onCheckpoint: (name, bytes) => {
        checkpoint.files[name] = bytes;
        context.saveCheckpoint(checkpoint);
      },
    });
    let downloaded: DownloadedFile[];
    try {
      downloaded = await transfer(disks);
    } catch (err) {
      throw await explainLeaseFailure(session, lease, err, signal);
    }
    const entries = await manifest;
    checkAgainstManifest(disks, downloaded, entries);
    logger.info({ disks: disks.length, manifest_entries: entries.length }, "disks checked against the lease manifest");

    const warnings: string[] = [];
    let nvramFile: DownloadedFile | undefined;
    if (nvram) {
      try {
        [nvramFile] = await transfer([nvram]);
      } catch (err) {
        if (signal.aborted) throw err;
        const warning = `the VM's NVRAM could not be read (${(err as Error).message}); the export may not boot on EFI firmware`;
        warnings.push(warning);
        logger.warn(warning);
      }
    }

    context.progress({ phase: "descriptor", currentFile: `${baseName}.ovf` });
    const ovfFiles: OvfFile[] = [...disks.map((f, i) => ({ deviceId: f.device.key, path: f.name, size: downloaded[i]!.size }))];
    if (nvram && nvramFile) ovfFiles.push({ deviceId: nvram.device.key, path: nvram.name, size: nvramFile.size });
    const descriptor = await createDescriptor(session, vm, vmName, ovfFiles, signal);
    const ovfName = `${baseName}.ovf`;
    await writeFileAtomic(path.join(dir, ovfName), descriptor);
    const ovfSha256 = createHash("sha256").update(descriptor).digest("hex");

    const payload = [...downloaded, ...(nvramFile ? [nvramFile] : [])];
    const mfName = `${baseName}.mf`;
    const mfText = await writeManifest(path.join(dir, mfName), [
      { path: ovfName, sha256: ovfSha256 },
      ...payload.map((f) => ({ path: f.name, sha256: f.sha256 })),
    ]);
    stopKeepAlive();
    await completeLease(session, lease, signal);
    completed = true;
    logger.info({ files: payload.length + 2, bytes: payload.reduce((n, f) => n + f.size, 0) }, "export written");
    return {
      outputDir: dir,
      ovfPath: path.join(dir, ovfName),
      manifestPath: path.join(dir, mfName),
      files: [
        { path: ovfName, size: Buffer.byteLength(descriptor), sha256: ovfSha256 },
        ...payload.map((f) => ({ path: f.name, size: f.size, sha256: f.sha256 })),
        { path: mfName, size: Buffer.byteLength(mfText), sha256: createHash("sha256").update(mfText).digest("hex") },
      ],
      warnings,
    };
  } finally {
    stopKeepAlive();
    if (!completed) await abortLease(session, lease);
  }
}

async function ensurePoweredOff(session: VSphereSession, vm: MoRef, name: string, state: string | undefined, powerOff: boolean, context: ExportContext): Promise<void> {
  if (state === "poweredOff") return;
  if (state === "poweredOn" && powerOff) {
    context.progress({ phase: "powering-off" });
    context.logger.info({ vm: vm.value }, "powering the VM off before export (power_off is set)");
    await runTask(session, "PowerOffVM_Task", vm, context.signal);
    return;
  }
  throw new FailedPreconditionError(state === "poweredOn"
    ? `VM "${name}" is powered on; set power_off or shut it down`
    : `VM "${name}" is ${state ?? "in an unknown power state"}; only a powered-off VM can be exported`);
}

/**
 * Disks get stable names (<vm>-disk-N.vmdk, in lease order), so a resumed run finds them under a new
 * lease; their SHA-1 is computed on the way, for the lease manifest.
 */
function planFiles(devices: readonly LeaseDevice[], baseName: string, dir: string) {
  const disks: PlannedFile[] = devices.filter((d) => d.disk).map((device, i) => {
    const name = `${baseName}-disk-${i + 1}.vmdk`;
    return { device, name, url: device.url, path: path.join(dir, name), sha1: true };
  });
  const nvramDevice = devices.find((d) => !d.disk && (d.key.endsWith("/nvram") || d.targetId.endsWith(".nvram")));
  const nvram: PlannedFile | undefined = nvramDevice && {
    device: nvramDevice, name: `${baseName}.nvram`, url: nvramDevice.url, path: path.join(dir, `${baseName}.nvram`),
  };
  const skipped = devices.filter((d) => !d.disk && d !== nvramDevice);
  return { disks, nvram, skipped };
}

/** When the lease has a manifest, sizes and SHA-1s must be what the server says it sent. */
function checkAgainstManifest(planned: readonly PlannedFile[], downloaded: readonly DownloadedFile[], manifest: readonly ManifestEntry[]): void {
  planned.forEach((file, i) => {
    const got = downloaded[i]!;
    const expected = manifest.find((m) => m.key === file.device.key);
    if (!expected) return;
    if (expected.size && got.size !== expected.size) {
      throw new HypervisordError("INTERNAL", `${file.name}: the lease manifest says ${expected.size} bytes, ${got.size} were downloaded`);
    }
    if (expected.sha1 && got.sha1 !== expected.sha1) {
      throw new HypervisordError("INTERNAL", `${file.name}: SHA-1 ${got.sha1} does not match the lease manifest's ${expected.sha1}`);
    }
  });
}

/** A download that fails because the lease expired (404) needs a new lease: make that clear, and retryable. */
async function explainLeaseFailure(session: VSphereSession, lease: MoRef, err: unknown, signal: AbortSignal): Promise<unknown> {
  if (signal.aborted) return err;
  const state = await leaseState(session, lease, AbortSignal.timeout(10_000)).catch(() => "unknown");
  if (state === "ready") return err;
  return new UnavailableError(`the export lease ended (${state}) during the download: ${(err as Error).message}; the job resumes with a new lease`, { cause: err });
}
