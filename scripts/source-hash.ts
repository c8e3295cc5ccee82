/** The freshness check both builds share (the dashboard's and dist's): a hash of the files a build reads. */
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";

const ROOT = path.resolve(import.meta.dirname, "..");

/** The files of `relative` (a file, or a folder walked recursively), as paths relative to the repository, sorted. */
function filesUnder(relative: string): string[] {
  const full = path.join(ROOT, relative);
  if (!fs.statSync(full).isDirectory()) return [relative];
  return fs.readdirSync(full, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(ROOT, path.join(entry.parentPath, entry.name)))
    .sort();
}

/** sha256 over the names and contents of the inputs (paths relative to the repository). */
export function hashInputs(inputs: readonly string[]): string {
  const hash = createHash("sha256");
  for (const file of inputs.flatMap(filesUnder)) hash.update(`${file}\0`).update(fs.readFileSync(path.join(ROOT, file))).update("\0");
  return hash.digest("hex");
}
