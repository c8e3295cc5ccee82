import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import path from "node:path";
import { runningVmPolicyOf, type Consistency, type JobDefinition } from "../../domain/job.ts";
import { safeFileName } from "../../domain/safe-file-name.ts";
import { FailedPreconditionError, ShutdownError } from "../../errors.ts";
import { writeFileAtomic } from "../../files/write-file-atomic.ts";
import { makeDirectory, publishPartial, startPartial } from "../../files/written-files.ts";
import { writeManifest } from "../../package/manifest.ts";
import { ovfDescriptor } from "../../package/ovf-writer.ts";
import type { Converter } from "../../stages/converter.ts";
import { checkConvertible, finishExport, type PackageArtifacts } from "../../stages/finish-export.ts";
import { packOvaFromOvf } from "../../stages/ova-from-ovf.ts";
import type { HostSlots } from "../../transfer/host-slots.ts";
import type { ExportContext, ExportResult } from "../provider.ts";
import { DISKS_API_VERSION } from "./api-versions.ts";
import type { ArmClient } from "./arm-client.ts";
import { createSnapshot, grantAccess } from "./compute.ts";
import { findVm, type AzureVm, type AzureVmDisk } from "./discovery.ts";
import { releaseHeld, snapshotName, type HeldResources, type ReleaseSettings } from "./held-resources.ts";
import { downloadPageBlobs, type DownloadedBlob } from "./page-blob.ts";

/** What a run saves so that the next one resumes, and what it holds in the subscription (see held-resources.ts). */
export interface AzureCheckpoint extends HeldResources {
  /** Disk file name -> bytes below which the file is complete and synced. */
  files: Record<string, number>;
  /** What `files` came from (the snapshots' or the disks' ids): bytes of another source are not resumed. */
  source?: string;
}

export interface AzureExportOptions {
  hostSlots: HostSlots;
  accessDurationMs: number;
  converter?: Converter;
  release: ReleaseSettings;
}

/** A disk to read: the VM's disk, and the resource whose SAS serves its bytes (a snapshot of it, or the disk itself). */
interface DiskSource {
  disk: AzureVmDisk;
  resourceId: string;
}

/**
 * Exports an Azure VM as an OVF package (<output_dir>/<vm>/<vm>.ovf, <vm>-disk-N.vhd, <vm>.mf) or an OVA built
 * from it, then runs the stages after packaging (conversion, artifact manifest, cleanup). A deallocated VM's disks
 * are read directly; a running one's through snapshots this run makes. Every snapshot and read access is released
 * as soon as the disks are downloaded, whatever became of the download.
 */
export async function exportAzureVm(arm: ArmClient, definition: JobDefinition, context: ExportContext, options: AzureExportOptions): Promise<ExportResult> {
  const { logger, signal } = context;
  context.progress({ phase: "connecting" });
  const vm = await findVm(arm, definition.vm, signal);
  const checkpoint = context.loadCheckpoint<AzureCheckpoint>() ?? { files: {} };
  const save = () => context.saveCheckpoint(checkpoint);
  const baseName = safeFileName(vm.name);
  const vmDir = path.join(definition.outputDir, baseName);
  const warnings: string[] = [];
  let consistency: Consistency = "powered_off";
  let disks: DownloadedBlob[];
  try {
    // Accesses an earlier run left open (its process was killed) are ended first: a new grant replaces them, and a
    // snapshot with an open SAS cannot be deleted.
    await releaseGrants(arm, checkpoint, options, context, save);
    const sources = await prepareSources(arm, vm, definition, checkpoint, context, options);
    consistency = sources.consistency;
    if (sources.warning) warnings.push(sources.warning);
    await makeDirectory(definition.outputDir, context.files);
    await makeDirectory(vmDir, context.files);
    logger.info({ vm: vm.id, disks: sources.disks.length, format: definition.format, consistency }, "exporting VM");
    disks = await download(arm, definition, context, options, { vm, baseName, vmDir, checkpoint, sources: sources.disks, save });
  } finally {
    const shutdown = signal.aborted && signal.reason instanceof ShutdownError;
    const release = shutdown ? { ...options.release, removeAttempts: 1 } : options.release;
    context.progress({ phase: "cleanup" });
    const pending = await releaseHeld(arm, checkpoint, release, logger, save);
    if (pending) warnings.push(`not everything could be released yet: ${pending} in the background (see the job's pending_cleanup)`);
  }
  if (definition.convertTo) await checkConvertible(disks.map((d) => d.path));
  const packaged = await packageVm(vm, definition, context, { baseName, vmDir, disks, warnings });
  const result = await finishExport(packaged.result, packaged.artifacts, definition, context, { converter: options.converter });
  return { ...result, osHint: vm.osType.toLowerCase() === "windows" ? "windows" : vm.osType.toLowerCase() === "linux" ? "linux" : "other", consistency };
}

/** Snapshots (a running VM, policy "snapshot") or the disks themselves (deallocated), recorded and made. */
async function prepareSources(arm: ArmClient, vm: AzureVm, definition: JobDefinition, checkpoint: AzureCheckpoint, context: ExportContext,
  options: AzureExportOptions): Promise<{ disks: DiskSource[]; consistency: Consistency; warning?: string }> {
  // A disk can be read directly only while no running VM holds it: Azure grants access to a deallocated VM's disks.
  const direct = vm.powerState === "poweredOff" && vm.disks.every((d) => d.diskState === undefined || d.diskState === "Reserved" || d.diskState === "Unattached");
  if (direct) {
    useSource(checkpoint, vm.disks.map((d) => d.id).join(","), context);
    return { disks: vm.disks.map((disk) => ({ disk, resourceId: disk.id })), consistency: "powered_off" };
  }
  const policy = runningVmPolicyOf(definition);
  if (policy !== "snapshot") {
    throw new FailedPreconditionError(`Azure VM "${vm.resourceGroup}/${vm.name}" is ${vm.powerState === "poweredOn" ? "running" : "not deallocated"} and running_vm_policy is "${policy}"; `
      + "use \"snapshot\", or deallocate the VM");
  }
  const sources = await snapshotSources(arm, vm, checkpoint, context, options);
  // Azure's managed-disk snapshots never quiesce the guest; the disks are snapshotted at nearly, not exactly, one instant.
  const warning = definition.quiesce === false ? undefined
    : "crash-consistent: Azure managed-disk snapshots do not quiesce the guest (set quiesce: false to acknowledge)";
  return { disks: sources, consistency: "crash_consistent", warning };
}

/**
 * The snapshots an earlier run of this job made, when they all still exist (their content has not changed, so the
 * bytes on disk stay valid), else new ones: each recorded before it is asked for, all asked for at once so that the
 * disks are copied as close to one instant as Azure allows.
 */
async function snapshotSources(arm: ArmClient, vm: AzureVm, checkpoint: AzureCheckpoint, context: ExportContext, options: AzureExportOptions): Promise<DiskSource[]> {
  const recorded = checkpoint.snapshots ?? [];
  const reusable = recorded.length === vm.disks.length && vm.disks.every((d, i) => recorded[i]?.disk === d.id) && await allExist(arm, recorded.map((s) => s.id), context.signal);
  if (reusable) {
    useSource(checkpoint, recorded.map((s) => s.id).join(","), context);
    context.logger.info({ snapshots: recorded.length }, "continuing from the snapshots an earlier run of this job made");
    return vm.disks.map((disk, i) => ({ disk, resourceId: recorded[i]!.id }));
  }
  if (recorded.length > 0) {
    const pending = await releaseHeld(arm, checkpoint, options.release, context.logger, () => context.saveCheckpoint(checkpoint));
    if (pending) throw new FailedPreconditionError(`the snapshots of an earlier run of this job could not be deleted: ${pending}`, { retryable: true });
  }
  context.progress({ phase: "snapshot" });
  const subscription = arm.connection.subscriptionId;
  checkpoint.snapshots = vm.disks.map((disk, i) => ({
    id: `/subscriptions/${subscription}/resourceGroups/${disk.resourceGroup}/providers/Microsoft.Compute/snapshots/${snapshotName(context.jobId, i)}`,
    disk: disk.id,
  }));
  context.saveCheckpoint(checkpoint);
  const made = await Promise.allSettled(vm.disks.map((disk, i) => createSnapshot(arm, {
    name: snapshotName(context.jobId, i), resourceGroup: disk.resourceGroup, location: vm.location, sourceDiskId: disk.id, incremental: true,
  }, context.signal)));
  const failed = made.find((m): m is PromiseRejectedResult => m.status === "rejected");
  if (failed) throw failed.reason;
  for (const _ of made) options.release.onSnapshot?.({ kind: "created", consistency: "crash_consistent" });
  context.signal.throwIfAborted();
  useSource(checkpoint, checkpoint.snapshots.map((s) => s.id).join(","), context);
  context.logger.info({ snapshots: checkpoint.snapshots.map((s) => s.id) }, "snapshots made; exporting their content");
  return vm.disks.map((disk, i) => ({ disk, resourceId: checkpoint.snapshots![i]!.id }));
}

async function allExist(arm: ArmClient, ids: readonly string[], signal: AbortSignal): Promise<boolean> {
  const found = await Promise.all(ids.map(async (id) => {
    try {
      const { body } = await arm.request<{ properties?: { provisioningState?: string } }>("GET", id, { apiVersion: DISKS_API_VERSION, signal, what: `reading snapshot ${id}` });
      return body.properties?.provisioningState === "Succeeded";
    } catch (err) {
      if ((err as { code?: string }).code === "NOT_FOUND") return false;
      throw err;
    }
  }));
  return found.every(Boolean);
}


/** Bytes from another source are not resumed: the files start over. */
function useSource(checkpoint: AzureCheckpoint, source: string, context: ExportContext): void {
  if (checkpoint.source === source) return;
  if (Object.keys(checkpoint.files).length > 0) context.logger.info("the export's source changed: disks downloaded from the earlier one start over");
  checkpoint.files = {};
  checkpoint.source = source;
  context.saveCheckpoint(checkpoint);
}

/** Ends the accesses on record; one that cannot be ended fails the run (retryable), as a new grant would be refused. */
async function releaseGrants(arm: ArmClient, checkpoint: AzureCheckpoint, options: AzureExportOptions, context: ExportContext, save: () => void): Promise<void> {
  if (!checkpoint.grants?.length) return;
  // Only the accesses: the snapshots stay for this run to continue from.
  const onlyGrants: HeldResources = { grants: checkpoint.grants };
  const pending = await releaseHeld(arm, onlyGrants, options.release, context.logger, save);
  checkpoint.grants = onlyGrants.grants;
  save();
  if (pending) throw new FailedPreconditionError(`a read access an earlier run of this job opened could not be ended: ${pending}`, { retryable: true });
}

/** Grants a read SAS per source (recorded first), then downloads the page blobs into <vm>-disk-N.vhd. */
async function download(arm: ArmClient, definition: JobDefinition, context: ExportContext, options: AzureExportOptions,
  run: { vm: AzureVm; baseName: string; vmDir: string; checkpoint: AzureCheckpoint; sources: DiskSource[]; save: () => void }): Promise<DownloadedBlob[]> {
  const { checkpoint, save } = run;
  context.progress({ phase: "access" });
  checkpoint.grants = [...new Set([...(checkpoint.grants ?? []), ...run.sources.map((s) => s.resourceId)])];
  save();
  const seconds = Math.max(60, Math.round(options.accessDurationMs / 1000));
  const urls = await Promise.all(run.sources.map((s) => grantAccess(arm, s.resourceId, seconds, context.signal)));
  const files = run.sources.map((_, i) => {
    const name = `${run.baseName}-disk-${i + 1}.vhd`;
    return { name, url: urls[i]!, path: startPartial(path.join(run.vmDir, name), context.files) };
  });
  context.progress({ phase: "downloading", filesTotal: files.length, filesDone: 0 });
  const downloaded = await downloadPageBlobs(files, {
    parallelDisks: definition.parallelDownloads,
    bandwidthLimit: definition.bandwidthLimit,
    hostSlots: options.hostSlots,
    signal: context.signal,
    resume: checkpoint.files,
    logger: context.logger,
    onProgress: (p) => context.progress({ bytesDone: p.bytesDone, bytesTotal: p.bytesTotal, filesDone: p.filesDone, filesTotal: p.filesTotal, currentFile: p.currentFile }),
    onCheckpoint: (name, doneBelow) => {
      checkpoint.files[name] = doneBelow;
      save();
    },
    onFileDone: (file) => context.observeDownload?.(file.seconds),
  });
  const published: DownloadedBlob[] = [];
  for (const file of downloaded) {
    const final = file.path.slice(0, -context.files.partialSuffix.length);
    await publishPartial(final, context.files);
    published.push({ ...file, path: final });
  }
  const moved = downloaded.reduce((n, d) => n + d.dataBytes, 0);
  const size = downloaded.reduce((n, d) => n + d.size, 0);
  context.logger.info({ disks: downloaded.length, bytes: size, bytesMoved: moved }, "disks downloaded (only the ranges that hold data)");
  return published;
}

/** The descriptor written from the VM's properties, the .mf, and for format OVA the archive of those files. */
async function packageVm(vm: AzureVm, definition: JobDefinition, context: ExportContext,
  run: { baseName: string; vmDir: string; disks: DownloadedBlob[]; warnings: string[] }): Promise<{ result: ExportResult; artifacts: PackageArtifacts }> {
  const { baseName, vmDir, disks } = run;
  context.progress({ phase: "descriptor", currentFile: `${baseName}.ovf` });
  const ovfName = `${baseName}.ovf`;
  const mfName = `${baseName}.mf`;
  const descriptor = Buffer.from(ovfDescriptor({
    name: vm.name,
    cpu: vm.cpu,
    memoryMiB: vm.memoryMiB,
    firmware: vm.firmware,
    osType: vm.osType,
    description: `Exported from Azure VM ${vm.id} (${vm.size}, ${vm.location}) by hypervisord`,
    disks: disks.map((d) => ({ fileName: d.name, fileSize: d.size, capacityBytes: d.footer.currentSize, format: "vhd" as const })),
    nics: vm.nics.map((n) => ({ name: n.name, network: n.network, macAddress: n.macAddress })),
  }));
  await writeFileAtomic(path.join(vmDir, ovfName), descriptor, context.files);
  const algorithm = definition.manifestAlgorithm ?? "sha256";
  const sha1s = algorithm === "sha1" ? await Promise.all(disks.map((d) => fileSha1(d.path))) : [];
  const mfText = await writeManifest(path.join(vmDir, mfName), [
    { path: ovfName, sha256: sha256(descriptor), sha1: createHash("sha1").update(descriptor).digest("hex") },
    ...disks.map((d, i) => ({ path: d.name, sha256: d.sha256, sha1: sha1s[i] })),
  ], algorithm, context.files);
  const files = [
    { path: ovfName, size: descriptor.length, sha256: sha256(descriptor) },
    ...disks.map((d) => ({ path: d.name, size: d.size, sha256: d.sha256 })),
    { path: mfName, size: Buffer.byteLength(mfText), sha256: sha256(mfText) },
  ];
  const artifacts: PackageArtifacts = {
    source: { provider: "azure", vmId: vm.vmId || vm.id, vmName: vm.name, datacenter: vm.location, exportMethod: `azure-${definition.format}-export` },
    vm: {
      cpu: vm.cpu, memoryMiB: vm.memoryMiB, firmware: vm.firmware, secureBoot: false,
      guestId: vm.osType.toLowerCase() === "windows" ? "windows9Server64Guest" : vm.osType.toLowerCase() === "linux" ? "otherLinux64Guest" : "otherGuest64",
      guestFullName: `${vm.osType || "unknown OS"} (Azure ${vm.size})`,
    },
    disks: disks.map((d) => ({ name: d.name, path: d.path, size: d.size, sha256: d.sha256 })),
    dir: vmDir,
    intermediate: [],
  };
  const ovf: ExportResult = { outputDir: vmDir, ovfPath: path.join(vmDir, ovfName), manifestPath: path.join(vmDir, mfName), files, warnings: run.warnings };
  if (definition.format !== "ova") return { result: ovf, artifacts };

  const ova = await packOvaFromOvf(ovf, vmDir, baseName, definition, context);
  return { result: ova.result, artifacts: { ...artifacts, intermediate: ova.intermediate } };
}

async function fileSha1(file: string): Promise<string> {
  const hash = createHash("sha1");
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");
