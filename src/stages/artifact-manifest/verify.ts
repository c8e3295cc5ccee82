import { createHash } from "node:crypto";
import fs, { type FileHandle } from "node:fs/promises";
import path from "node:path";
import { errorMessage, HypervisordError, NotFoundError, toHypervisordError } from "../../errors.ts";
import { openRegularFile } from "../../files/open-regular-file.ts";
import type { ArtifactDisk, ArtifactManifest } from "./schema.ts";
import { parseArtifactManifest } from "./validate.ts";

// Verification: re-hash every disk against the manifest (VerifyManifest).

export interface VerifiedDisk {
  id: string;
  /** The file actually checked (see resolveDiskPath). */
  path: string;
  /** The manifest's checksum. */
  expected: string;
  /** "sha256:<hex>" of the file, when it was hashed. */
  actual?: string;
  /** The file's size, when it exists. */
  bytes?: number;
  ok: boolean;
  problem?: string;
}

export interface ArtifactVerification {
  valid: boolean;
  disks: VerifiedDisk[];
  /** One line per failed disk, e.g. `disks[1] (disk-1): checksum mismatch: ...`. */
  problems: string[];
}

export interface VerifyOptions {
  signal?: AbortSignal;
  /** A disk whose resolved path this refuses is reported as a problem and never read (the daemon's output roots). */
  mayRead?(file: string): boolean;
}

/**
 * Reads and validates the manifest at `file`, then re-hashes every disk. Disk problems (missing,
 * wrong size, wrong checksum, unreadable) are reported, not thrown; a manifest that is missing
 * throws NOT_FOUND, one that cannot be read or is not a valid manifest INVALID_ARGUMENT, an abort CANCELLED.
 */
export async function verifyArtifactManifest(file: string, options: VerifyOptions = {}): Promise<ArtifactVerification> {
  const manifest = await readArtifactManifest(file);
  const outputDirExists = await isDirectory(manifest.output.directory);
  const packageDir = path.dirname(path.resolve(file));
  const disks: VerifiedDisk[] = [];
  for (const disk of manifest.disks) {
    if (options.signal?.aborted) throw toHypervisordError(options.signal.reason, `verifying ${file}`);
    const diskPath = resolveDiskPath(disk.local_path, manifest.output.directory, outputDirExists, packageDir);
    if (options.mayRead && !options.mayRead(diskPath)) {
      disks.push({ id: disk.id, path: diskPath, expected: disk.checksum, ok: false, problem: `${diskPath} is outside the allowed output roots; not read` });
      continue;
    }
    disks.push(await verifyDisk(disk, diskPath, options.signal));
  }
  const problems = disks.flatMap((d, index) => (d.problem ? [`disks[${index}] (${d.id}): ${d.problem}`] : []));
  return { valid: problems.length === 0, disks, problems };
}

/** A manifest lists a package's disks: far below this; a larger file is not one, and is not read into memory. */
const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;

async function readArtifactManifest(file: string): Promise<ArtifactManifest> {
  let text: string;
  try {
    const { handle, stats } = await openRegularFile(file);
    try {
      if (stats.size > MAX_MANIFEST_BYTES) throw new Error(`${stats.size} bytes; a manifest is at most ${MAX_MANIFEST_BYTES}`);
      text = await handle.readFile("utf8");
    } finally {
      await handle.close();
    }
  } catch (err) {
    if (err instanceof HypervisordError && err.code === "NOT_FOUND") throw new NotFoundError(`artifact manifest ${file} does not exist`, { cause: err });
    throw new HypervisordError("INVALID_ARGUMENT", `artifact manifest ${file} cannot be read: ${errorMessage(err)}`, { cause: err });
  }
  try {
    return parseArtifactManifest(text);
  } catch (err) {
    throw new HypervisordError("INVALID_ARGUMENT", `artifact manifest ${file}: ${errorMessage(err)}`, { cause: err });
  }
}

/**
 * Where to find a disk. While output.directory exists it is the base: a relative local_path is
 * resolved against it and an absolute one is used as is. When it is gone, the package was
 * moved (or copied elsewhere and the original deleted): the manifest's own directory takes its
 * place, for relative paths and for absolute ones under the old output.directory alike.
 */
export function resolveDiskPath(localPath: string, outputDir: string, outputDirExists: boolean, packageDir: string): string {
  if (outputDirExists) return path.resolve(outputDir, localPath);
  if (!path.isAbsolute(localPath)) return path.resolve(packageDir, localPath);
  const inside = path.relative(outputDir, localPath);
  const underOutputDir = inside !== "" && !inside.startsWith("..") && !path.isAbsolute(inside);
  return underOutputDir ? path.join(packageDir, inside) : localPath;
}

async function verifyDisk(disk: ArtifactDisk, diskPath: string, signal: AbortSignal | undefined): Promise<VerifiedDisk> {
  const result: VerifiedDisk = { id: disk.id, path: diskPath, expected: disk.checksum, ok: false };
  let opened: Awaited<ReturnType<typeof openRegularFile>>;
  try {
    // Opened once, as a regular file (a FIFO named by a manifest must not hang the call), then sized and hashed.
    opened = await openRegularFile(diskPath, signal);
  } catch (err) {
    if (signal?.aborted) throw toHypervisordError(signal.reason ?? err, `verifying ${diskPath}`);
    const notFound = err instanceof HypervisordError && err.code === "NOT_FOUND";
    return { ...result, problem: notFound ? `file not found: ${diskPath}` : errorMessage(err) };
  }
  const { handle, stats } = opened;
  result.bytes = stats.size;
  if (result.bytes !== disk.bytes) {
    await handle.close();
    // A file of the wrong size cannot match: skip hashing what may be hundreds of GiB.
    return { ...result, problem: `size mismatch: manifest says ${disk.bytes} bytes, ${diskPath} has ${result.bytes}` };
  }
  try {
    result.actual = `sha256:${await sha256File(handle, signal)}`;
  } catch (err) {
    if (signal?.aborted) throw toHypervisordError(signal.reason ?? err, `verifying ${diskPath}`);
    return { ...result, problem: `cannot read ${diskPath}: ${errorMessage(err)}` };
  }
  if (result.actual !== disk.checksum) {
    return { ...result, problem: `checksum mismatch: manifest says ${disk.checksum}, ${diskPath} has ${result.actual}` };
  }
  return { ...result, ok: true };
}

/** Reads the file to its end (closing it) and returns its SHA-256 in hex. */
async function sha256File(handle: FileHandle, signal: AbortSignal | undefined): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of handle.createReadStream({ signal, highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

async function isDirectory(dir: string): Promise<boolean> {
  try {
    return (await fs.stat(dir)).isDirectory();
  } catch (err) {
    if (errorCode(err) === "ENOENT" || errorCode(err) === "ENOTDIR") return false;
    throw toHypervisordError(err, `checking output directory ${dir}`);
  }
}

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}
