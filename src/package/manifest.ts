import type { ManifestAlgorithm } from "../domain/job.ts";
import { writeFileAtomic } from "../files/write-file-atomic.ts";
import type { WrittenFiles } from "../files/written-files.ts";

export interface ManifestEntry {
  /** File name relative to the manifest's directory. */
  path: string;
  sha256: string;
  /** Needed when the manifest is written with SHA-1. */
  sha1?: string;
}

const LABEL: Record<ManifestAlgorithm, string> = { sha256: "SHA256", sha1: "SHA1" };
const HEX_LENGTH: Record<ManifestAlgorithm, number> = { sha256: 64, sha1: 40 };

/** The OVF manifest line format, exactly: "SHA256(name)= <hex>" (or "SHA1(name)= <hex>" for older importers). */
export function manifestText(entries: readonly ManifestEntry[], algorithm: ManifestAlgorithm = "sha256"): string {
  return entries.map((e) => {
    const digest = algorithm === "sha1" ? e.sha1 : e.sha256;
    if (digest?.length !== HEX_LENGTH[algorithm]) throw new Error(`no ${LABEL[algorithm]} digest for ${e.path}`);
    return `${LABEL[algorithm]}(${e.path})= ${digest}\n`;
  }).join("");
}

/** The manifest's size in bytes before the digests are known (every line has a fixed length). */
export function manifestSize(names: readonly string[], algorithm: ManifestAlgorithm = "sha256"): number {
  const digest = "0".repeat(HEX_LENGTH[algorithm]);
  return Buffer.byteLength(manifestText(names.map((name) => ({ path: name, sha256: digest, sha1: digest })), algorithm));
}

/** Writes the manifest atomically (see files/write-file-atomic.ts), so that a crash never leaves half of one. */
export async function writeManifest(file: string, entries: readonly ManifestEntry[], algorithm: ManifestAlgorithm, files: WrittenFiles): Promise<string> {
  const text = manifestText(entries, algorithm);
  await writeFileAtomic(file, text, files);
  return text;
}
