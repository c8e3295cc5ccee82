import { lstat, type FileHandle } from "node:fs/promises";
import path from "node:path";

/**
 * Whether `candidate` is `root` or lies below it, by the text of the paths alone (resolve symbolic links
 * first when they matter). Argument order as in "is candidate inside root".
 */
export function isInside(candidate: string, root: string): boolean {
  const relative = path.relative(root, candidate);
  return relative === "" || (relative !== ".." && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative));
}

/** A positional write of all of `data`: a short count (a filling disk) is followed by the rest until it errors. */
export async function writeAll(handle: FileHandle, data: Buffer, position: number): Promise<void> {
  for (let written = 0; written < data.length; ) {
    const { bytesWritten } = await handle.write(data, written, data.length - written, position + written);
    written += bytesWritten;
  }
}

/** Whether something is at `file` (a dangling symbolic link counts). */
export async function exists(file: string): Promise<boolean> {
  try {
    await lstat(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}
