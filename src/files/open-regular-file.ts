import { constants, type Stats } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { callerPathProblem, HypervisordError, toHypervisordError } from "../errors.ts";

/**
 * Opens a file a caller named, for reading, and refuses anything but a regular file. Every API path that
 * reads a file a request names goes through here (ValidateOva, ExtractOva, VerifyManifest).
 * O_NONBLOCK makes open() return at once on a FIFO: without it open() waits for a writer, holding one of
 * libuv's four threads, and four such calls stall every file operation of the daemon. The type is then
 * read from the open descriptor (fstat), so the path cannot be swapped between the check and the open.
 * O_NONBLOCK changes nothing for reads of a regular file.
 */
export async function openRegularFile(file: string, signal?: AbortSignal): Promise<{ handle: FileHandle; stats: Stats }> {
  signal?.throwIfAborted();
  let handle: FileHandle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const problem = callerPathProblem(err);
    if (problem) throw new HypervisordError("INVALID_ARGUMENT", `${file} ${problem}`, { cause: err });
    throw toHypervisordError(err, `opening ${file}`);
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw new HypervisordError("INVALID_ARGUMENT", `${file} is not a regular file (${kindOf(stats)})`);
    return { handle, stats };
  } catch (err) {
    await handle.close();
    throw toHypervisordError(err, `reading ${file}`);
  }
}

function kindOf(stats: Stats): string {
  if (stats.isFIFO()) return "a FIFO";
  if (stats.isDirectory()) return "a directory";
  if (stats.isCharacterDevice()) return "a character device";
  if (stats.isBlockDevice()) return "a block device";
  if (stats.isSocket()) return "a socket";
  return "not a file";
}
