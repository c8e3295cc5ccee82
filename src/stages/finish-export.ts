import fs from "node:fs/promises";
import path from "node:path";
import type { ConvertedDisk, JobDefinition } from "../domain/job.ts";
import { checkFixedVhd } from "../package/vhd-footer.ts";
import { buildArtifactManifest, writeArtifactManifest, type ArtifactSourceInput, type ArtifactVmInput } from "./artifact-manifest/build.ts";
import type { Converter } from "./converter.ts";
import { checkSingleFileVmdk } from "./vmdk-check.ts";
import type { ExportContext, ExportResult } from "./export-context.ts";

/** A disk file as the export left it on disk. */
export interface DiskFile {
  /** File name, e.g. "web-01-disk-1.vmdk". */
  name: string;
  /** Absolute path. */
  path: string;
  size: number;
  sha256: string;
}

/** What a provider's package stage hands to the stages after it (conversion, artifact manifest, cleanup). */
export interface PackageArtifacts {
  source: Omit<ArtifactSourceInput, "exportedAt">;
  vm: ArtifactVmInput;
  /** Disk files in boot order; empty when the disks exist only inside an OVA. */
  disks: DiskFile[];
  /** The VM's own directory: converted disks and artifact-manifest.json are written here. */
  dir: string;
  /** The OVF files an OVA was built from: removed at the end with cleanup_ovf. */
  intermediate: string[];
}

export interface FinishOptions {
  /** Undefined when qemu-img is unavailable (jobs with convert_to are refused at submission then). */
  converter?: Converter;
}

/**
 * The stages after packaging, in order: convert the disks (convert_to, and qemu-img compare with verify),
 * write artifact-manifest.json (generate_manifest), remove the intermediate OVF files (cleanup_ovf).
 */
export async function finishExport(result: ExportResult, artifacts: PackageArtifacts, definition: JobDefinition, context: ExportContext, options: FinishOptions): Promise<ExportResult> {
  const warnings = [...result.warnings];
  const converted = definition.convertTo ? await convertDisks(artifacts, definition, context, options) : [];
  const relative = (file: string) => path.relative(result.outputDir, file);
  for (const c of converted.filter((c) => c.verification === "different")) {
    warnings.push(`${path.basename(c.path)} differs from its source ${path.basename(c.source)}: ${c.verificationDetail}`);
  }

  let artifactManifestPath: string | undefined;
  if (definition.generateManifest !== false) {
    const disks = converted.length > 0
      ? converted.map((c) => ({ name: path.basename(c.path), path: c.path, size: c.size, sha256: c.sha256 }))
      : definition.cleanupOvf ? [] : artifacts.disks;
    if (disks.length > 0) {
      const manifest = buildArtifactManifest({
        source: { ...artifacts.source, exportedAt: new Date() },
        vm: artifacts.vm,
        disks,
        directory: artifacts.dir,
        exportFormat: definition.format,
        jobId: context.jobId,
        labels: definition.labels,
        notes: converted.length > 0 ? [`disks converted to ${definition.convertTo} with qemu-img`] : [],
      });
      artifactManifestPath = await writeArtifactManifest(artifacts.dir, manifest, context.files);
      context.logger.info({ path: artifactManifestPath, disks: disks.length }, "artifact manifest written");
    } else {
      const warning = "artifact-manifest.json not written: the disks exist only inside the OVA (use format OVF, convert_to, or keep the OVF files)";
      warnings.push(warning);
      context.logger.warn(warning);
    }
  }

  if (definition.cleanupOvf && artifacts.intermediate.length > 0) {
    for (const file of artifacts.intermediate) await fs.rm(file, { force: true });
    await fs.rmdir(artifacts.dir).catch(() => {}); // only when nothing else (converted disks, manifest) is left in it
    context.logger.info({ files: artifacts.intermediate.length }, "intermediate OVF files removed (cleanup_ovf)");
  }

  const kept = definition.cleanupOvf ? result.files.filter((f) => !artifacts.intermediate.includes(path.join(result.outputDir, f.path))) : result.files;
  return {
    ...result,
    ovfPath: definition.cleanupOvf && result.ovaPath ? undefined : result.ovfPath,
    manifestPath: definition.cleanupOvf && result.ovaPath ? undefined : result.manifestPath,
    files: kept,
    warnings,
    convertedDisks: converted.map((c) => ({ ...c, source: relative(c.source), path: relative(c.path) })),
    artifactManifestPath,
  };
}

/**
 * Called by a provider's package stage as soon as the disks are on disk, when they are to be converted: a disk
 * that is not a single-file VMDK or a fixed VHD fails the job (FAILED_PRECONDITION, not retried) before anything
 * is packed, and the engine then removes what the job wrote.
 */
export async function checkConvertible(diskPaths: readonly string[]): Promise<void> {
  for (const disk of diskPaths) {
    const extension = path.extname(disk).toLowerCase();
    if (extension === ".vmdk") await checkSingleFileVmdk(disk);
    else if (extension === ".vhd") await checkFixedVhd(disk, path.basename(disk));
  }
}

/** Each disk through qemu-img, one after the other (the converter caps conversions across jobs); progress in bytes of source. */
async function convertDisks(artifacts: PackageArtifacts, definition: JobDefinition, context: ExportContext, options: FinishOptions): Promise<ConvertedDisk[]> {
  const format = definition.convertTo!;
  const { converter } = options;
  if (!converter) throw new Error("convert_to was accepted without a converter"); // refused at submission; a bug if reached
  const bytesTotal = artifacts.disks.reduce((n, d) => n + d.size, 0);
  let bytesBefore = 0;
  const converted: ConvertedDisk[] = [];
  for (const [i, disk] of artifacts.disks.entries()) {
    const target = path.join(artifacts.dir, `${path.parse(disk.name).name}.${format}`);
    context.progress({ phase: "converting", currentFile: path.basename(target), filesDone: i, filesTotal: artifacts.disks.length, bytesDone: bytesBefore, bytesTotal });
    const result = await converter.convert({
      source: disk.path,
      target,
      format,
      written: context.files,
      signal: context.signal,
      onProgress: (percent) => context.progress({ bytesDone: bytesBefore + Math.round((disk.size * percent) / 100) }),
    });
    context.logger.info({ source: disk.name, target: path.basename(target), bytes: result.bytes, seconds: result.seconds }, `disk converted to ${format}`);
    const entry: ConvertedDisk = { source: disk.path, path: target, format, size: result.bytes, sha256: result.sha256 };
    if (definition.verify) {
      context.progress({ phase: "verifying", currentFile: path.basename(target) });
      const comparison = await converter.compare(disk.path, target, { signal: context.signal });
      entry.verification = comparison.identical ? "identical" : "different";
      if (!comparison.identical) {
        entry.verificationDetail = comparison.detail;
        context.logger.error({ source: disk.name, target: path.basename(target), detail: comparison.detail }, "converted disk differs from its source");
      } else {
        context.logger.info({ source: disk.name, target: path.basename(target) }, "qemu-img compare: identical");
      }
    }
    converted.push(entry);
    bytesBefore += disk.size;
    context.progress({ filesDone: i + 1, bytesDone: bytesBefore });
  }
  return converted;
}
