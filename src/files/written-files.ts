import fs from "node:fs/promises";
import path from "node:path";
import { exists } from "./fs-utils.ts";

/**
 * The files and directories one job creates. Each is recorded before it is created (write-ahead) and the
 * record is durable when `add` returns, so that a job that fails for good or is cancelled can remove exactly
 * what it wrote (also after a crash) and nothing it did not write. The engine keeps the record with the job's
 * checkpoint (src/engine/job-files.ts).
 */
export interface WrittenFiles {
  /** Records `file` (an absolute path) as this job's, before it is created. */
  add(file: string): void;
  /** Whether this job recorded `file`. */
  has(file: string): boolean;
  /**
   * What every file the job writes carries until it is complete and verified, e.g. ".1c2b7d4e.partial": the
   * same for every run of the job (a resume finds its bytes), different between jobs, so that two jobs writing
   * the same names (the same VM into the same directory) never write into, rename or remove each other's file.
   */
  readonly partialSuffix: string;
}

/** For writers whose caller removes what they write itself (tests, tools): records nothing. */
export const UNRECORDED: WrittenFiles = { add() {}, has: () => false, partialSuffix: ".partial" };

/** Where `final` is written until it is complete. */
export function partialPath(final: string, files: WrittenFiles): string {
  return `${final}${files.partialSuffix}`;
}

/** The partial name to write `final` under, recorded as this job's. */
export function startPartial(final: string, files: WrittenFiles): string {
  const partial = partialPath(final, files);
  files.add(partial);
  return partial;
}

/**
 * `mkdir -p` that records every directory it creates (and only those), so that cleanup can remove the ones
 * the job leaves empty. A directory that already exists is never recorded. The new entries are synced: the
 * files renamed into them later are only as durable as the directories holding them.
 */
export async function makeDirectory(dir: string, files: WrittenFiles): Promise<void> {
  const missing: string[] = [];
  for (let current = path.resolve(dir); !(await exists(current)); current = path.dirname(current)) {
    missing.push(current);
    if (path.dirname(current) === current) break;
  }
  if (missing.length === 0) return;
  missing.reverse();
  for (const created of missing) files.add(created);
  await fs.mkdir(dir, { recursive: true });
  for (const created of missing) await syncDirectory(path.dirname(created));
}

/**
 * Renames `final`'s complete `.partial` (its data already synced) to `final` and syncs the directory, so the
 * final name only ever appears with whole content, and stays after a power cut. `final` is recorded before
 * the rename when nothing is there (a crash right after it leaves nothing unrecorded), after it when the
 * rename replaces a file (a file the job did not write is never on record).
 */
export async function publishPartial(final: string, files: WrittenFiles): Promise<void> {
  const replaces = await exists(final);
  if (!replaces) files.add(final);
  await fs.rename(partialPath(final, files), final);
  if (replaces) files.add(final);
  await syncDirectory(path.dirname(final));
}

/**
 * A retry, or a resume after a crash, finds a file that an earlier run of the same job already published:
 * it goes back under its `.partial` name, so the resume code (which works on `.partial` bytes) continues from
 * it instead of writing it again, and no final name stands beside unfinished files. Only files this job
 * wrote; returns whether one was moved.
 */
export async function reopenPublished(final: string, files: WrittenFiles): Promise<boolean> {
  const partial = partialPath(final, files);
  if (!files.has(final) || (await exists(partial)) || !(await exists(final))) return false;
  files.add(partial);
  await fs.rename(final, partial);
  return true;
}

/** Makes a rename in `dir` durable. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await fs.open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
