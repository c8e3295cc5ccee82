import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import type { JobDefinition } from "../../domain/job.ts";
import { HypervisordError, UnavailableError } from "../../errors.ts";
import { writeFileAtomic } from "../../files/write-file-atomic.ts";
import { makeDirectory, publishPartial, reopenPublished, startPartial } from "../../files/written-files.ts";
import { manifestSize, manifestText, writeManifest } from "../../package/manifest.ts";
import { ovaLayout } from "../../package/ova-layout.ts";
import { prepareOvaFile, syncFile, writeAt } from "../../package/ova-writer.ts";
import { removeDevices } from "../../package/ovf-devices.ts";
import { osHintFromGuestId } from "../../stages/artifact-manifest/build.ts";
import type { Converter } from "../../stages/converter.ts";
import { checkConvertible, finishExport, type PackageArtifacts } from "../../stages/finish-export.ts";
import { packOvaFromOvf } from "../../stages/ova-from-ovf.ts";
import { downloadFiles, fetchSizes, type DownloadFile, type DownloadedFile } from "../../transfer/download.ts";
import type { HostSlots } from "../../transfer/host-slots.ts";
import type { ExportContext, ExportResult, SecretSealer } from "../provider.ts";
import { createDescriptor, type OvfFile } from "./descriptor.ts";
import { findVM } from "./discovery.ts";
import { dropSnapshot, prepareSource, type ExportSource, type SnapshotSettings } from "./export-source.ts";
import { safeFileName } from "../../domain/safe-file-name.ts";
import { abortLease, completeLease, keepLeaseAlive, leaseManifest, leaseState, waitForLease, type LeaseDevice, type ManifestEntry } from "./lease.ts";
import { abortRecordedLease, recordLease, type LeaseRecord } from "./lease-record.ts";
import { retrieveOne } from "./property-collector.ts";
import type { VSphereSession } from "./session.ts";
import type { SnapshotRecord } from "./snapshot-record.ts";
import { child, moRefOf, type MoRef } from "./xml.ts";

/** What a run saves, so that the next one (after a crash or a retry) resumes: bytes on disk per file. */
export interface ExportCheckpoint {
  files: Record<string, number>;
  /** A streamed OVA: the layout the bytes were written for; a different layout starts the archive over. */
  ova?: string;
  /** The export lease while it is held: aborted by the next run, or at daemon start for a job that will not run again. */
  lease?: LeaseRecord;
  /** The snapshot of the running VM this job exports (written before CreateSnapshot_Task), until it is removed. */
  snapshot?: SnapshotRecord;
  /**
   * What `files` were downloaded from: "vm" (the VM's own disks; also when unset, as before snapshots) or a
   * snapshot's moref. Bytes of another source are not resumed: the files start over.
   */
  source?: string;
}

export interface ExportVmOptions {
  hostSlots: HostSlots;
  converter?: Converter;
  /** Seals the lease's session cookie in the checkpoint. */
  secretBox?: SecretSealer;
  snapshots: SnapshotSettings;
}

interface PlannedFile extends DownloadFile {
  device: LeaseDevice;
}

/** Everything a run needs once the lease is ready. */
interface Run {
  session: VSphereSession;
  definition: JobDefinition;
  context: ExportContext;
  options: ExportVmOptions;
  vm: MoRef;
  vmName: string;
  baseName: string;
  /** ExportSnapshot's snapshot; the descriptor then describes the VM as the snapshot has it. */
  snapshot?: MoRef;
  checkpoint: ExportCheckpoint;
  /** For the lease keep-alive: the share of bytes transferred. */
  transferred: { done: number; total: number };
  /** What earlier transfers of this run (the disks, before the NVRAM) moved: later ones add to it, so the job's bytes never go back. */
  earlier: { bytes: number; total: number; files: number };
  /** The lease's manifest, asked for when the lease was ready and awaited after the downloads. */
  leaseManifest: Promise<ManifestEntry[]>;
  /** Files whose size and SHA-1 matched the lease manifest. */
  verified: Set<string>;
  warnings: string[];
}

/**
 * Exports one VM as an OVF package (<output_dir>/<vm>/<vm>.ovf, <vm>-disk-N.vmdk, <vm>.nvram for EFI, <vm>.mf)
 * or an OVA (<output_dir>/<vm>.ova, or .ova.gz), then runs the stages after packaging (conversion, artifact
 * manifest, cleanup). A powered-off VM is exported directly; a running one, by default, through a snapshot this
 * run makes and removes (see export-source.ts), or powered off first (running_vm_policy power_off). The lease is
 * completed on success and aborted otherwise.
 */
export async function exportVm(session: VSphereSession, definition: JobDefinition, context: ExportContext, options: ExportVmOptions): Promise<ExportResult> {
  const { logger } = context;
  context.progress({ phase: "connecting" });
  const vm = await findVM(session, definition.vm, context.signal);
  const facts = await vmFacts(session, vm, context.signal);
  const checkpoint = context.loadCheckpoint<ExportCheckpoint>() ?? { files: {} };
  let packaged: { result: ExportResult; artifacts: PackageArtifacts } | undefined;
  let source: ExportSource | undefined;
  try {
    source = await prepareSource(session, vm, facts.name, facts.powerState, definition, checkpoint, context, options.snapshots);
    const baseName = safeFileName(facts.name);
    await makeDirectory(definition.outputDir, context.files);
    logger.info({ vm: vm.value, name: facts.name, format: definition.format, compress: definition.compress, snapshot: source.snapshot?.value }, "exporting VM");
    packaged = await exportThroughLease(session, definition, context, options, { vm, facts, baseName, checkpoint, source });
  } finally {
    // Whatever became of the export: a snapshot this job made (or an earlier run left) goes now.
    const pending = await dropSnapshot(session, checkpoint, context, options.snapshots);
    if (pending && packaged) packaged.result = { ...packaged.result, warnings: [...(packaged.result.warnings ?? []), pending] };
  }
  const result = await finishExport(packaged.result, packaged.artifacts, definition, context, { converter: options.converter });
  return { ...result, osHint: osHintFromGuestId(facts.vm.guestId), consistency: source.consistency };
}

/** ExportVm (or ExportSnapshot), the downloads and the packaging, and the lease completed; aborted on failure. */
async function exportThroughLease(session: VSphereSession, definition: JobDefinition, context: ExportContext, options: ExportVmOptions,
  what: { vm: MoRef; facts: VmFacts; baseName: string; checkpoint: ExportCheckpoint; source: ExportSource }): Promise<{ result: ExportResult; artifacts: PackageArtifacts }> {
  const { signal, logger } = context;
  const { vm, facts, baseName, checkpoint, source } = what;
  context.progress({ phase: "lease" });
  // A lease an earlier run still holds (its process was killed, or vCenter was unreachable when it ended) keeps the
  // VM busy until it times out: aborted rather than reused, as it belongs to that run's session and its URLs may be stale.
  await releaseRecordedLease(session, checkpoint, context, options);
  // A snapshot's lease is an ExportVm lease in every way (states, device keys, URLs, manifest), serving the frozen disks.
  const exported = source.snapshot
    ? await session.call("ExportSnapshot", [["_this", source.snapshot]], signal)
    : await session.call("ExportVm", [["_this", vm]], signal);
  const lease = moRefOf(child(exported, "returnval"));
  if (!lease) throw new HypervisordError("INTERNAL", `${source.snapshot ? `ExportSnapshot on ${source.snapshot.value}` : `ExportVm on ${vm.value}`} returned no lease`);
  checkpoint.lease = recordLease(session, lease, options.secretBox);
  context.saveCheckpoint(checkpoint);
  let completed = false;
  let stopKeepAlive = () => {};
  try {
    const info = await waitForLease(session, lease, signal);
    const run: Run = {
      session, definition, context, options, vm, vmName: facts.name, baseName,
      snapshot: source.snapshot,
      checkpoint,
      transferred: { done: 0, total: 0 },
      earlier: { bytes: 0, total: 0, files: 0 },
      // Asked for now, awaited after the downloads: a server may hash every file to answer it (vcsim does),
      // and that must not delay the transfer.
      leaseManifest: leaseManifest(session, lease, signal).catch((err: unknown) => {
        if (!signal.aborted) logger.warn({ err: (err as Error).message }, "the lease offers no manifest; disks are checked against the sizes the server sent only");
        return [] as ManifestEntry[];
      }),
      verified: new Set(),
      warnings: source.warning ? [source.warning] : [],
    };
    let lastKeepAliveError = "";
    stopKeepAlive = keepLeaseAlive(session, lease, info.timeoutSeconds, () => (run.transferred.total > 0 ? (100 * run.transferred.done) / run.transferred.total : 0),
      (err) => {
        // Once per distinct failure: a lease lost with its session fails the same way at every tick.
        if ((err as Error).message !== lastKeepAliveError) logger.warn({ err: (err as Error).message }, "lease keep-alive failed");
        lastKeepAliveError = (err as Error).message;
      });

    const plan = planFiles(info.devices, baseName, definition);
    for (const device of plan.skipped) logger.info({ key: device.key, target: device.targetId }, "skipping a non-disk device (attached image; set include_image_files to export it)");
    let packaged: { result: ExportResult; artifacts: PackageArtifacts };
    try {
      packaged = await packageVm(run, plan, facts);
    } catch (err) {
      throw await explainLeaseFailure(session, lease, err, signal);
    }
    stopKeepAlive();
    try {
      await completeLease(session, lease, signal);
      completed = true;
    } catch (err) {
      // Every byte matched the server's own manifest: the export is right whatever became of the lease (e.g. it
      // went with a session that expired). The finally block still tries to abort it.
      const files = [...plan.disks, ...plan.images];
      if (signal.aborted || files.length === 0 || !files.every((f) => run.verified.has(f.name))) throw err;
      const warning = `HttpNfcLeaseComplete failed after all ${files.length} files were verified against the lease manifest: ${(err as Error).message}; `
        + "the export is complete, and the lease is aborted or times out on the host";
      logger.warn(warning);
      packaged.result = { ...packaged.result, warnings: [...(packaged.result.warnings ?? []), warning] };
    }
    return packaged;
  } finally {
    stopKeepAlive();
    if (!completed) await endLease(session, lease, checkpoint, context);
  }
}

/**
 * Aborts a lease this run did not complete. While vCenter cannot be reached the record stays in the checkpoint:
 * the next run, or the next daemon start, aborts it.
 */
async function endLease(session: VSphereSession, lease: MoRef, checkpoint: ExportCheckpoint, context: ExportContext): Promise<void> {
  const ended = await abortLease(session, lease);
  if (ended.outcome === "unreachable") {
    context.logger.warn({ lease: lease.value, err: ended.why }, "could not abort the export lease; the next run aborts it, else it times out on the host");
    return;
  }
  if (ended.outcome === "gone") context.logger.info({ lease: lease.value, why: ended.why }, "the export lease had already ended");
  delete checkpoint.lease;
  context.saveCheckpoint(checkpoint);
}

/** The lease recorded by an earlier run, if any: aborted, and its record dropped unless vCenter could not be reached. */
async function releaseRecordedLease(session: VSphereSession, checkpoint: ExportCheckpoint, context: ExportContext, options: ExportVmOptions): Promise<void> {
  const record = checkpoint.lease;
  if (!record) return;
  const ended = await abortRecordedLease(record, session, options.secretBox, context.logger);
  if (ended.outcome === "unreachable") {
    context.logger.warn({ lease: record.lease, err: ended.why }, "could not abort the export lease an earlier run left; it times out on the host");
    return;
  }
  if (ended.outcome === "aborted") context.logger.info({ lease: record.lease }, "aborted the export lease an earlier run left");
  else context.logger.info({ lease: record.lease, why: ended.why }, "the export lease an earlier run left is no longer held");
  delete checkpoint.lease;
  context.saveCheckpoint(checkpoint);
}

/** OVF directory, OVA streamed from the network, or OVA built from the OVF directory. */
async function packageVm(run: Run, plan: FilePlan, facts: VmFacts): Promise<{ result: ExportResult; artifacts: PackageArtifacts }> {
  const { definition, context, baseName } = run;
  const vmDir = path.join(definition.outputDir, baseName);
  const artifactsOf = (disks: PackageArtifacts["disks"], intermediate: string[]): PackageArtifacts => ({
    source: { provider: "vsphere", vmId: facts.uuid || run.vm.value, vmName: run.vmName, datacenter: facts.datacenter },
    vm: facts.vm, disks, dir: vmDir, intermediate,
  });
  if (definition.format === "ova") {
    const why = streamBlocker(definition);
    if (!why) {
      const streamed = await streamOva(run, plan, vmDir);
      if (streamed) return { result: streamed, artifacts: artifactsOf([], []) };
    } else {
      context.logger.info({ reason: why }, "OVA built from files: the OVF package is downloaded first, then packed");
    }
  }
  const ovf = await downloadOvf(run, plan, vmDir);
  const disks = ovf.disks.map((d) => ({ name: d.name, path: d.path, size: d.size, sha256: d.sha256 }));
  if (definition.format !== "ova") return { result: ovf.result, artifacts: artifactsOf(disks, []) };

  const ova = await packOvaFromOvf(ovf.result, vmDir, baseName, definition, context);
  return { result: ova.result, artifacts: artifactsOf(disks, ova.intermediate) };
}

/** Why an OVA cannot go straight from the network into the tar (undefined: it can). */
function streamBlocker(definition: JobDefinition): string | undefined {
  if (definition.compress) return "compress: a gzip stream cannot take parallel writes at offsets";
  if (definition.convertTo) return "convert_to: qemu-img reads the disks as files";
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// OVF directory

async function downloadOvf(run: Run, plan: FilePlan, dir: string) {
  const { definition, context, baseName } = run;
  await makeDirectory(dir, context.files);
  const ovfName = `${baseName}.ovf`;
  const mfName = `${baseName}.mf`;
  // What an earlier run of this job published goes back under .partial names: resumed, not downloaded again,
  // and no .mf or .ovf stands beside unfinished disks meanwhile.
  for (const name of [mfName, ovfName, ...[...plan.disks, ...plan.images, ...(plan.nvram ? [plan.nvram] : [])].map((f) => f.name)]) {
    await reopenPublished(path.join(dir, name), context.files);
  }
  const inDir = (files: PlannedFile[]) => files.map((f) => ({ ...f, path: startPartial(path.join(dir, f.name), context.files) }));
  const disks = inDir(plan.disks);
  const images = inDir(plan.images);
  context.progress({ phase: "downloading", filesTotal: disks.length + images.length, filesDone: 0 });
  const downloaded = await publish(run, [...disks, ...images], await transfer(run, [...disks, ...images]));
  // Disks qemu-img cannot take fail the job now, before a descriptor, .mf or OVA is made of them.
  if (definition.convertTo) await checkConvertible(downloaded.slice(0, disks.length).map((d) => d.path));
  const nvram = plan.nvram && (await fetchNvram(run, inDir([plan.nvram])[0]!));

  context.progress({ phase: "descriptor", currentFile: `${baseName}.ovf` });
  const payload = nvram ? [...downloaded, nvram.file] : downloaded;
  const planned = nvram ? [...disks, ...images, nvram.planned] : [...disks, ...images];
  const descriptor = await descriptorFor(run, planned.map((f, i) => ({ deviceId: f.device.key, path: f.name, size: payload[i]!.size })));
  await writeFileAtomic(path.join(dir, ovfName), descriptor.text, context.files);
  const algorithm = definition.manifestAlgorithm ?? "sha256";
  const mfText = await writeManifest(path.join(dir, mfName), [{ path: ovfName, ...descriptor.digests }, ...payload.map((f) => ({ path: f.name, sha256: f.sha256, sha1: f.sha1 }))], algorithm, context.files);
  context.logger.info({ files: payload.length + 2, bytes: payload.reduce((n, f) => n + f.size, 0) }, "export written");
  const result: ExportResult = {
    outputDir: dir,
    ovfPath: path.join(dir, ovfName),
    manifestPath: path.join(dir, mfName),
    files: [
      { path: ovfName, size: descriptor.text.length, sha256: descriptor.digests.sha256 },
      ...payload.map((f) => ({ path: f.name, size: f.size, sha256: f.sha256 })),
      { path: mfName, size: Buffer.byteLength(mfText), sha256: sha256(mfText) },
    ],
    warnings: run.warnings,
  };
  return { result, disks: downloaded.slice(0, disks.length) };
}

/**
 * Files downloaded to their partial names, complete and checked against the lease manifest: renamed to their
 * final names, with the final paths.
 */
async function publish(run: Run, planned: readonly PlannedFile[], downloaded: readonly DownloadedFile[]): Promise<DownloadedFile[]> {
  await checkAgainstLeaseManifest(run, planned, downloaded);
  const published: DownloadedFile[] = [];
  for (const file of downloaded) {
    const final = file.path.slice(0, -run.context.files.partialSuffix.length);
    await publishPartial(final, run.context.files);
    published.push({ ...file, path: final });
  }
  return published;
}

/** The NVRAM after the disks; a VM whose NVRAM cannot be read still exports, with a warning (and without its .partial). */
async function fetchNvram(run: Run, planned: PlannedFile): Promise<{ planned: PlannedFile; file: DownloadedFile } | undefined> {
  let downloaded: DownloadedFile[];
  try {
    downloaded = await transfer(run, [planned]);
  } catch (err) {
    if (run.context.signal.aborted) throw err;
    await fs.rm(planned.path, { force: true });
    nvramWarning(run, (err as Error).message);
    return undefined;
  }
  const [file] = await publish(run, [planned], downloaded);
  return { planned, file: file! };
}

function nvramWarning(run: Run, why: string): void {
  const warning = `the VM's NVRAM could not be read (${why}); the export may not boot on EFI firmware`;
  run.warnings.push(warning);
  run.context.logger.warn(warning);
}

// ---------------------------------------------------------------------------------------------
// OVA streamed: the tar is laid out from the sizes (HEAD), the descriptor is made first, and every file is
// downloaded straight into its region of the OVA's partial file, in parallel and resumable like the OVF files.

async function streamOva(run: Run, plan: FilePlan, vmDir: string): Promise<ExportResult | undefined> {
  const { session, definition, context, baseName } = run;
  const planned = [...plan.disks, ...plan.images, ...(plan.nvram ? [plan.nvram] : [])];
  const sizes = await fetchSizes(planned.map((f) => f.url), { dispatcher: session.agent, headers: cookieHeader(session), signal: context.signal });
  const unknown = planned.filter((f, i) => sizes[i] === undefined && f !== plan.nvram);
  if (unknown.length > 0) {
    context.logger.info({ files: unknown.map((f) => f.name) }, "OVA built from files: the server gave no size for these files (HEAD), so the tar cannot be laid out in advance");
    return undefined;
  }
  const files = planned.flatMap((f, i) => (sizes[i] === undefined ? [] : [{ ...f, size: sizes[i] }]));
  if (plan.nvram && sizes[planned.length - 1] === undefined) nvramWarning(run, "the server gave no size for it (HEAD)");
  context.logger.info({ files: files.length }, "OVA streamed: files go from the network straight into the tar");

  context.progress({ phase: "descriptor", currentFile: `${baseName}.ovf` });
  const descriptor = await descriptorFor(run, files.map((f) => ({ deviceId: f.device.key, path: f.name, size: f.size })));
  const algorithm = definition.manifestAlgorithm ?? "sha256";
  const ovfName = `${baseName}.ovf`;
  const mfName = `${baseName}.mf`;
  const layout = ovaLayout([
    { name: ovfName, size: descriptor.text.length },
    ...files.map((f) => ({ name: f.name, size: f.size })),
    { name: mfName, size: manifestSize([ovfName, ...files.map((f) => f.name)], algorithm) },
  ]);
  const target = path.join(definition.outputDir, `${baseName}.ova`);
  await reopenPublished(target, context.files);
  const partial = startPartial(target, context.files);
  const layoutKey = sha256(JSON.stringify([descriptor.digests.sha256, algorithm, layout.entries.map((e) => [e.name, e.size])]));
  const kept = await prepareOvaFile(partial, layout, run.checkpoint.ova === layoutKey);
  if (!kept) {
    // In place: the checkpoint also records the lease.
    run.checkpoint.files = {};
    run.checkpoint.ova = layoutKey;
    context.saveCheckpoint(run.checkpoint);
  }
  const region = (name: string) => layout.entries.find((e) => e.name === name)!.dataOffset;
  await writeAt(partial, descriptor.text, region(ovfName));

  context.progress({ phase: "downloading", filesTotal: files.length, filesDone: 0 });
  const placed = files.map((f) => ({ ...f, path: partial, offset: region(f.name) }));
  const downloaded = await transfer(run, placed);
  await checkAgainstLeaseManifest(run, placed, downloaded);

  const mf = Buffer.from(manifestText([{ path: ovfName, ...descriptor.digests }, ...downloaded.map((f) => ({ path: f.name, sha256: f.sha256, sha1: f.sha1 }))], algorithm));
  await writeAt(partial, mf, region(mfName));
  await syncFile(partial);
  await publishPartial(target, context.files);
  context.logger.info({ path: target, bytes: layout.totalSize, files: layout.entries.length }, "OVA written (streamed)");
  return {
    outputDir: definition.outputDir,
    ovaPath: target,
    // The archive's own SHA-256 would take a second read of every byte; its entries' digests are in its .mf.
    files: [{ path: path.basename(target), size: layout.totalSize, sha256: "" }],
    warnings: run.warnings,
    ovaMethod: "streamed",
  };
}

// ---------------------------------------------------------------------------------------------
// Shared steps

async function transfer(run: Run, files: readonly PlannedFile[]): Promise<DownloadedFile[]> {
  const { session, definition, context, checkpoint } = run;
  const before = { ...run.earlier };
  let last = { bytesDone: 0, bytesTotal: 0, filesDone: 0 };
  const downloaded = await downloadFiles(files, {
    dispatcher: session.agent,
    tls: session.tls,
    headers: cookieHeader(session),
    parallel: definition.parallelDownloads,
    bandwidthLimit: definition.bandwidthLimit,
    hostSlots: run.options.hostSlots,
    signal: context.signal,
    resume: checkpoint.files,
    logger: context.logger,
    onProgress: (p) => {
      last = p;
      run.transferred = { done: before.bytes + p.bytesDone, total: before.total + p.bytesTotal };
      context.progress({
        bytesDone: before.bytes + p.bytesDone, bytesTotal: before.total + p.bytesTotal,
        filesDone: before.files + p.filesDone, filesTotal: before.files + p.filesTotal, currentFile: p.currentFile,
      });
    },
    onCheckpoint: (name, bytes) => {
      run.checkpoint.files[name] = bytes;
      context.saveCheckpoint(run.checkpoint);
    },
    onFileDone: (file) => context.observeDownload?.(file.seconds),
  });
  run.earlier = { bytes: before.bytes + last.bytesDone, total: before.total + last.bytesTotal, files: before.files + last.filesDone };
  return downloaded;
}

/** CreateDescriptor with the files as written, minus the devices remove_devices names; its digests for the .mf. */
async function descriptorFor(run: Run, files: OvfFile[]) {
  const { session, vm, vmName, definition, context } = run;
  const written = await createDescriptor(session, vm, vmName, files, definition.includeImageFiles ?? false, context.signal, run.snapshot);
  const { descriptor, removed } = removeDevices(written, definition.removeDevices ?? []);
  for (const device of removed) context.logger.info({ kind: device.kind, device: device.name }, "device left out of the descriptor (remove_devices); the VM is unchanged");
  const text = Buffer.from(descriptor);
  return { text, digests: { sha256: sha256(text), sha1: createHash("sha1").update(text).digest("hex") } };
}

function cookieHeader(session: VSphereSession): Record<string, string> | undefined {
  return session.soap.cookie ? { cookie: `vmware_soap_session=${session.soap.cookie}` } : undefined;
}

const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

interface VmFacts {
  name: string;
  powerState?: string;
  uuid: string;
  datacenter: string;
  vm: PackageArtifacts["vm"];
}

/** What the export and its artifact manifest say about the VM. */
async function vmFacts(session: VSphereSession, vm: MoRef, signal: AbortSignal): Promise<VmFacts> {
  const found = await retrieveOne(session, vm, [
    "name", "runtime.powerState", "config.uuid", "config.hardware.numCPU", "config.hardware.memoryMB", "config.firmware",
    "config.guestId", "config.guestFullName", "config.bootOptions",
  ], signal);
  const text = (name: string) => found?.props.get(name)?.text ?? "";
  const bootOptions = found?.props.get("config.bootOptions");
  const secureBoot = bootOptions?.children.find((c) => c.name === "efiSecureBootEnabled")?.text === "true";
  const firmware = text("config.firmware") === "efi" ? "efi" : "bios";
  return {
    name: text("name") || vm.value,
    powerState: text("runtime.powerState") || undefined,
    uuid: text("config.uuid"),
    datacenter: await datacenterOf(session, vm, signal),
    vm: {
      cpu: Math.max(1, Number(text("config.hardware.numCPU")) || 1),
      memoryMiB: Math.max(1, Number(text("config.hardware.memoryMB")) || 1),
      firmware,
      secureBoot: firmware === "efi" && secureBoot,
      guestId: text("config.guestId") || "otherGuest",
      guestFullName: text("config.guestFullName") || undefined,
    },
  };
}

/** The name of the Datacenter above the VM (walking `parent`), or "" when there is none (a bare ESXi host has "ha-datacenter"). */
async function datacenterOf(session: VSphereSession, vm: MoRef, signal: AbortSignal): Promise<string> {
  let current: MoRef | undefined = vm;
  for (let depth = 0; current && depth < 32; depth++) {
    const found = await retrieveOne(session, current, current.type === "Datacenter" ? ["name"] : ["parent"], signal);
    if (current.type === "Datacenter") return found?.props.get("name")?.text ?? "";
    const parent = found?.props.get("parent");
    current = parent ? moRefOf(parent) : undefined;
  }
  return "";
}

interface FilePlan {
  disks: PlannedFile[];
  nvram?: PlannedFile;
  /** Attached ISO/floppy images, with include_image_files. */
  images: PlannedFile[];
  skipped: LeaseDevice[];
}

/**
 * Files get stable names (<vm>-disk-N.vmdk in lease order, <vm>-image-N.<ext>), so a resumed run finds them
 * under a new lease. SHA-1 is computed on the way for every file (the lease manifest and a SHA-1 .mf need it). `path` is
 * set by the packaging (a file of the OVF directory, or the OVA).
 */
function planFiles(devices: readonly LeaseDevice[], baseName: string, definition: JobDefinition): FilePlan {
  const file = (device: LeaseDevice, name: string, sha1: boolean): PlannedFile => ({ device, name, url: device.url, path: "", sha1 });
  const disks = devices.filter((d) => d.disk).map((d, i) => file(d, `${baseName}-disk-${i + 1}.vmdk`, true));
  const nvramDevice = devices.find((d) => !d.disk && (d.key.endsWith("/nvram") || d.targetId.endsWith(".nvram")));
  const others = devices.filter((d) => !d.disk && d !== nvramDevice);
  const images = definition.includeImageFiles
    ? others.map((d, i) => file(d, `${baseName}-image-${i + 1}${imageExtension(d.targetId)}`, true))
    : [];
  return {
    disks,
    nvram: nvramDevice && file(nvramDevice, `${baseName}.nvram`, true),
    images,
    skipped: definition.includeImageFiles ? [] : others,
  };
}

/** ".iso", ".flp", ".img" from the lease's target id; ".bin" when it names none. */
function imageExtension(targetId: string): string {
  const ext = path.extname(targetId).toLowerCase();
  return /^\.[a-z0-9]{1,8}$/.test(ext) ? ext : ".bin";
}

/** When the lease has a manifest, sizes and SHA-1s must be what the server says it sent. */
async function checkAgainstLeaseManifest(run: Run, planned: readonly PlannedFile[], downloaded: readonly DownloadedFile[]): Promise<void> {
  const manifest = await run.leaseManifest;
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
    if (expected.sha1) run.verified.add(file.name);
  });
  run.context.logger.info({ files: planned.length, manifest_entries: manifest.length }, "files checked against the lease manifest");
}

/** A download that fails because the lease expired (404) needs a new lease: make that clear, and retryable. */
async function explainLeaseFailure(session: VSphereSession, lease: MoRef, err: unknown, signal: AbortSignal): Promise<unknown> {
  if (signal.aborted) return err;
  const state = await leaseState(session, lease, AbortSignal.timeout(10_000)).catch(() => "unknown");
  if (state === "ready") return err;
  return new UnavailableError(`the export lease ended (${state}) during the download: ${(err as Error).message}; the job resumes with a new lease`, { cause: err });
}
