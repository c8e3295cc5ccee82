import fs from "node:fs";
import path from "node:path";
import { safeFileName } from "../domain/safe-file-name.ts";
export { createVmKeys } from "../domain/safe-file-name.ts";

/** A run directory's name: the run time to the second (UTC), then "-2", "-3"... when that name is taken. */
export const RUN_DIR_NAME = /^\d{8}T\d{6}Z(-\d+)?$/;

/** YYYYMMDDTHHMMSSZ (UTC): sorts by time as text. */
export function runStamp(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z").replace(/[-:]/g, "");
}

/** A single-VM template's directory name: the last segment of its VM reference (a path, a name or an id). */
export function vmKeyOfRef(vm: string): string {
  return safeFileName(vm.split("/").filter((part) => part !== "").pop() ?? vm);
}

export interface RunLayout {
  /**
   * `<outputDir>/<vmKey>/<run stamp>`, a name no directory on disk, no recorded export and no run being
   * submitted has: two runs in the same second get different directories. Release it once it is recorded.
   */
  reserve(outputDir: string, vmKey: string, runTime: number): Promise<string>;
  release(dirs: readonly string[]): void;
}

export function createRunLayout(isRecorded: (dir: string) => Promise<boolean>): RunLayout {
  const reserved = new Set<string>();
  return {
    async reserve(outputDir, vmKey, runTime) {
      const base = path.join(outputDir, vmKey, runStamp(runTime));
      for (let n = 1; ; n++) {
        const dir = n === 1 ? base : `${base}-${n}`;
        if (reserved.has(dir)) continue;
        // Held while the store is asked, so that a reservation made meanwhile takes another name.
        reserved.add(dir);
        let free = false;
        try {
          // lstat: a dangling symbolic link takes the name too.
          free = !(await isRecorded(dir)) && !fs.lstatSync(dir, { throwIfNoEntry: false });
        } finally {
          if (!free) reserved.delete(dir);
        }
        if (free) return dir;
      }
    },
    release(dirs) {
      for (const dir of dirs) reserved.delete(dir);
    },
  };
}
