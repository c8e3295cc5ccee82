import fs from "node:fs/promises";
import path from "node:path";

export interface ManifestEntry {
  /** File name relative to the manifest's directory. */
  path: string;
  sha256: string;
}

/** The OVF manifest line format, exactly: "SHA256(name)= <hex>". */
export function manifestText(entries: readonly ManifestEntry[]): string {
  return entries.map((e) => `SHA256(${e.path})= ${e.sha256}\n`).join("");
}

/** Writes the manifest atomically (temp file, then rename), so that a crash never leaves half of one. */
export async function writeManifest(file: string, entries: readonly ManifestEntry[]): Promise<string> {
  const text = manifestText(entries);
  await writeFileAtomic(file, text);
  return text;
}

export async function writeFileAtomic(file: string, data: string | Buffer): Promise<void> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.partial`);
  const handle = await fs.open(temp, "w");
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.rename(temp, file);
}
