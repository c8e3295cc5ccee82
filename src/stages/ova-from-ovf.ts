import path from "node:path";
import type { JobDefinition } from "../domain/job.ts";
import { writeOvaFromFiles } from "../package/ova-writer.ts";
import type { ExportContext, ExportResult } from "./export-context.ts";

/**
 * An OVA (<output_dir>/<vm>.ova, or .ova.gz with compress) packed from an OVF directory already written, its
 * files in the order the OVF result lists them (the descriptor first). Returns the OVA's result and the OVF files
 * it was built from (removed at the end with cleanup_ovf).
 */
export async function packOvaFromOvf(ovf: ExportResult, vmDir: string, baseName: string, definition: JobDefinition, context: ExportContext): Promise<{ result: ExportResult; intermediate: string[] }> {
  const target = path.join(definition.outputDir, `${baseName}.ova${definition.compress ? ".gz" : ""}`);
  context.progress({ phase: "packaging", currentFile: path.basename(target) });
  const entries = ovf.files.map((f) => ({ name: f.path, path: path.join(vmDir, f.path), size: f.size }));
  const started = performance.now();
  const ova = await writeOvaFromFiles(target, entries, { compressionLevel: definition.compress ? definition.compressionLevel : undefined, signal: context.signal, written: context.files });
  const ratio = definition.compress ? ova.size / ova.tarSize : undefined;
  context.logger.info({ path: target, bytes: ova.size, tarBytes: ova.tarSize, ratio, seconds: (performance.now() - started) / 1000 }, "OVA written from the OVF files");
  return {
    result: {
      ...ovf,
      outputDir: definition.outputDir,
      ovaPath: target,
      files: [{ path: path.basename(target), size: ova.size, sha256: ova.sha256 }, ...ovf.files.map((f) => ({ ...f, path: path.join(baseName, f.path) }))],
      compressionRatio: ratio,
      ovaMethod: "files",
    },
    intermediate: entries.map((e) => e.path),
  };
}
