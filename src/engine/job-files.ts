import fs from "node:fs";
import path from "node:path";
import type { Logger } from "pino";
import { formatBytes } from "../files/disk-error.ts";
import { syncDirectory, type WrittenFiles } from "../files/written-files.ts";
import type { Store } from "../store/store.ts";

/**
 * A job's checkpoint column holds the provider's checkpoint and, beside it, the ledger of the files and
 * directories the job created. Kept together, the ledger survives a crash and every retry, and is cleared
 * with the checkpoint when the job completes; when the job fails for good or is cancelled the engine removes
 * what the ledger names (removeJobFiles), whichever provider wrote it.
 */
interface StoredCheckpoint {
  provider: unknown;
  writtenFiles: string[];
}

/** The column's value: nothing at all when neither the provider nor the ledger has anything (see Store.endedJobsWithCheckpoint). */
function pack(checkpoint: StoredCheckpoint): StoredCheckpoint | undefined {
  return checkpoint.provider == null && checkpoint.writtenFiles.length === 0 ? undefined : checkpoint;
}

function unpack(value: unknown): StoredCheckpoint {
  if (typeof value === "object" && value !== null && "provider" in value && Array.isArray((value as StoredCheckpoint).writtenFiles)) {
    return value as StoredCheckpoint;
  }
  // Saved before the ledger existed: all of it is the provider's.
  return { provider: value ?? null, writtenFiles: [] };
}

export interface JobCheckpoint {
  load<T>(): T | undefined;
  /** Throws the error of an earlier write that failed (the run stops on it, as on a failed write of its own). */
  save(value: unknown): void;
  readonly files: WrittenFiles;
  /** Resolves once every save so far is in the store; rejects with the first write that failed. */
  written(): Promise<void>;
}

/**
 * The checkpoint and ledger of one run of a job, read once; the run is their only writer while it lasts.
 * Providers save synchronously (ExportContext): the copy here is the truth for the run, and each change is
 * written through in order. A write starts at once when none is under way (SQLite has written it when the
 * call returns); changes made meanwhile go in one write of the latest state after it, so a networked store
 * never ends with an older state than the last one written.
 */
export async function openJobCheckpoint(store: Store, jobId: string): Promise<JobCheckpoint> {
  const stored = unpack(await store.loadCheckpoint(jobId));
  let provider = stored.provider;
  const written = new Set(stored.writtenFiles);
  let writing: Promise<void> | undefined;
  let again = false;
  let failure: { error: unknown } | undefined;
  const write = (): Promise<void> => store.saveCheckpoint(jobId, pack({ provider, writtenFiles: [...written] })).then(
    () => {
      if (!again || failure) return;
      again = false;
      return write();
    },
    (error: unknown) => {
      failure ??= { error };
    });
  const persist = () => {
    if (failure) throw failure.error;
    if (writing) {
      again = true;
      return;
    }
    writing = write().finally(() => (writing = undefined));
  };
  return {
    load: <T>() => (provider ?? undefined) as T | undefined,
    save(value) {
      provider = value ?? null;
      persist();
    },
    files: {
      // The end of the job id (a UUIDv7: its last digits are random, its first ones the time).
      partialSuffix: `.${jobId.replace(/-/g, "").slice(-8)}.partial`,
      add(file) {
        if (written.has(file)) return;
        written.add(file);
        persist();
      },
      has: (file) => written.has(file),
    },
    async written() {
      await writing;
      if (failure) throw failure.error;
    },
  };
}

/** The column's value for a completed job whose provider still holds something: that part only, no file ledger (the export stays). */
export function heldCheckpoint(provider: unknown): unknown {
  return pack({ provider: provider ?? null, writtenFiles: [] });
}

/** Whether the job has files on record (an ended job whose cleanup has not run yet, e.g. because the daemon stopped). */
export async function hasWrittenFiles(store: Store, jobId: string): Promise<boolean> {
  return unpack(await store.loadCheckpoint(jobId)).writtenFiles.length > 0;
}

/**
 * For the error of a job that fails for good or is cancelled: what becomes of the files it wrote (removed, or
 * with keep_partial kept, with one of them named so the caller knows where to look); "" when it wrote none.
 */
export async function writtenFilesNote(store: Store, jobId: string, keepPartial: boolean | undefined): Promise<string> {
  const left = unpack(await store.loadCheckpoint(jobId)).writtenFiles.filter((file) => isFile(file));
  if (left.length === 0) return "";
  const files = `the ${left.length} file${left.length === 1 ? "" : "s"} it wrote ${left.length === 1 ? "is" : "are"}`;
  return keepPartial ? ` (keep_partial: ${files} kept, e.g. ${left[0]})` : ` (${files} removed)`;
}

interface RemovedFiles {
  files: string[];
  directories: string[];
  /** Disk space the removed files took (allocated blocks: a sparse OVA counts what it used). */
  bytes: number;
  /** Directories the job created that hold other files now: left in place. */
  keptDirectories: string[];
  failed: { path: string; error: string }[];
}

/**
 * The end of a job that failed for good or was cancelled, once its run has stopped: removes every file it
 * recorded, then the directories it created that are left empty (deepest first), and nothing else; or, with
 * keep_partial, leaves them. Either way the job log says what happened and the ledger keeps only what could
 * not be removed, for the next start to try again.
 */
export async function removeJobFiles(store: Store, jobId: string, keepPartial: boolean, log: Logger): Promise<void> {
  const recorded = unpack(await store.loadCheckpoint(jobId)).writtenFiles;
  if (recorded.length === 0) return;
  // The provider's part stays, as it is now (it may have changed while files were removed): it may still need
  // it, e.g. to release a lease.
  const keepOnRecord = async (files: string[]) =>
    store.saveCheckpoint(jobId, pack({ provider: unpack(await store.loadCheckpoint(jobId)).provider, writtenFiles: files }));
  if (keepPartial) {
    const left = recorded.filter((file) => fs.existsSync(file));
    log.info({ kept: left }, `keep_partial: kept the ${left.length} files and directories the job wrote`);
    await keepOnRecord([]);
    return;
  }
  const removed = await removeRecorded(recorded);
  // The removals reach the disk before the ledger forgets them: after a power cut, nothing comes back unrecorded.
  await syncParents([...removed.files, ...removed.directories]);
  const summary = `removed what the job wrote: ${removed.files.length} files (${formatBytes(removed.bytes)} released), ${removed.directories.length} directories`;
  log.info({ files: removed.files, directories: removed.directories, bytes_released: removed.bytes, kept_directories: removed.keptDirectories }, summary);
  if (removed.failed.length > 0) log.error({ failed: removed.failed }, `${removed.failed.length} files the job wrote could not be removed; the next start tries again`);
  await keepOnRecord(removed.failed.map((f) => f.path));
}

async function removeRecorded(recorded: readonly string[]): Promise<RemovedFiles> {
  const result: RemovedFiles = { files: [], directories: [], bytes: 0, keptDirectories: [], failed: [] };
  const directories: string[] = [];
  for (const file of recorded) {
    try {
      const info = await fs.promises.lstat(file);
      if (info.isDirectory()) {
        directories.push(file);
        continue;
      }
      // unlink, never a recursive rm: a symbolic link is removed, not what it points to.
      await fs.promises.unlink(file);
      result.files.push(file);
      result.bytes += info.blocks * 512;
    } catch (err) {
      if (code(err) !== "ENOENT") result.failed.push({ path: file, error: (err as Error).message });
    }
  }
  for (const dir of directories.sort((a, b) => b.length - a.length)) {
    try {
      await fs.promises.rmdir(dir);
      result.directories.push(dir);
    } catch (err) {
      if (code(err) === "ENOTEMPTY" || code(err) === "EEXIST") result.keptDirectories.push(dir);
      else if (code(err) !== "ENOENT") result.failed.push({ path: dir, error: (err as Error).message });
    }
  }
  return result;
}

async function syncParents(paths: readonly string[]): Promise<void> {
  for (const dir of new Set(paths.map((p) => path.dirname(p)))) {
    try {
      await syncDirectory(dir);
    } catch (err) {
      if (code(err) !== "ENOENT") throw err; // removed too: its own parent is synced
    }
  }
}

function isFile(file: string): boolean {
  try {
    return !fs.lstatSync(file).isDirectory();
  } catch (err) {
    return code(err) !== "ENOENT"; // cannot look (EACCES): it may well be there
  }
}

const code = (err: unknown) => (err as NodeJS.ErrnoException).code;
