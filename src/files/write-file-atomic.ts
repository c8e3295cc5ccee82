import fs from "node:fs/promises";
import { diskError } from "./disk-error.ts";
import { publishPartial, startPartial, UNRECORDED, type WrittenFiles } from "./written-files.ts";

/** Writes `file`'s partial name (see written-files.ts), syncs it and renames it to `file`: `file` only ever appears whole. */
export async function writeFileAtomic(file: string, data: string | Buffer, files: WrittenFiles = UNRECORDED): Promise<void> {
  const partial = startPartial(file, files);
  try {
    const handle = await fs.open(partial, "w");
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await publishPartial(file, files);
  } catch (err) {
    throw diskError(err, "writing", partial);
  }
}
