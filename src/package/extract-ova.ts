import { createHash, randomBytes } from "node:crypto";
import { mkdir, open, realpath, rename, rm, rmdir } from "node:fs/promises";
import path from "node:path";
import type { Extract } from "tar-stream";
import { AlreadyExistsError, errorMessage, InvalidArgumentError, toHypervisordError } from "../errors.ts";
import { exists, isInside, writeAll } from "../files/fs-utils.ts";
import { archiveError, dataOffsetOf, isRegular, isSystemError, openOva, readArchive, type ArchiveFailure, type EntryProgress, type OvaEntryDigest, type OvaReadOptions } from "./ova-archive.ts";
import { entryNameProblem } from "./tar-header.ts";

/**
 * Extracts the OVA's regular files into `destDir` (created if missing), each written to a temporary name,
 * synced, then renamed. Refuses the whole archive (INVALID_ARGUMENT, naming the entry) at the first entry
 * that is absolute, has a `..` segment, a backslash or a NUL, or is a symlink, hard link or device;
 * directory entries are skipped (parents are created as files need them). Refuses to replace an existing
 * file (ALREADY_EXISTS). Nothing is written outside `destDir`, symlinks inside it included. On any failure
 * every file and directory it created is removed.
 */
export async function extractOva(file: string, destDir: string, options: OvaReadOptions = {}): Promise<{ files: OvaEntryDigest[] }> {
  const { stream } = await openOva(file, options.signal);
  const undo = createUndoList();
  const files: OvaEntryDigest[] = [];
  const seen: EntryProgress[] = [];
  let failure: ArchiveFailure | undefined;
  try {
    const root = await makeRoot(path.resolve(destDir), undo);
    failure = await readArchive(stream, options.signal, (extract) => writeEntries(extract, { file, root, undo, files, seen }));
  } catch (err) {
    stream.destroy();
    failure = { error: err, tarBytes: 0 };
  }
  if (!failure) return { files };
  await undo.run(failure.error);
  if (options.signal?.aborted) throw options.signal.reason;
  throw archiveError(failure, file, seen);
}

interface ExtractContext {
  file: string;
  /** The real path of the destination directory. */
  root: string;
  undo: UndoList;
  files: OvaEntryDigest[];
  seen: EntryProgress[];
}

async function writeEntries(extract: Extract, context: ExtractContext): Promise<void> {
  for await (const source of extract) {
    const { header } = source;
    const progress: EntryProgress = { name: header.name, size: header.size, dataOffset: dataOffsetOf(source), complete: false };
    context.seen.push(progress);
    const unsafe = entryNameProblem(header.name);
    if (unsafe) throw refused(context, header.name, `is an unsafe name: it ${unsafe}`);
    if (header.type === "directory") {
      source.resume();
      continue;
    }
    if (!isRegular(header.type)) {
      const target = header.linkname ? ` to ${header.linkname}` : "";
      throw refused(context, header.name, `is a ${header.type}${target}; only regular files are extracted`);
    }
    const { size, sha256 } = await writeEntry(source as AsyncIterable<Buffer>, progress.name, context);
    context.files.push({ name: header.name, size, sha256 });
    progress.complete = true;
  }
}

/** Writes one entry to a temporary file next to its target, syncs it and renames it. */
async function writeEntry(source: AsyncIterable<Buffer>, name: string, context: ExtractContext): Promise<{ size: number; sha256: string }> {
  const target = await prepareTarget(name, context);
  const temp = path.join(path.dirname(target), `.${path.basename(target)}.${randomBytes(4).toString("hex")}.partial`);
  const label = `extracting ${name} of ${context.file} to ${target}`;
  const hash = createHash("sha256");
  let size = 0;
  const handle = await open(temp, "wx").catch((err: unknown) => {
    throw toHypervisordError(err, label);
  });
  context.undo.file(temp);
  try {
    for await (const chunk of source) {
      hash.update(chunk);
      await writeAll(handle, chunk, size);
      size += chunk.length;
    }
    await handle.sync();
  } catch (err) {
    throw isSystemError(err) ? toHypervisordError(err, label) : err;
  } finally {
    await handle.close();
  }
  try {
    await rename(temp, target);
  } catch (err) {
    throw toHypervisordError(err, label);
  }
  context.undo.renamed(temp, target);
  return { size, sha256: hash.digest("hex") };
}

/**
 * The absolute target path of `name`, its parent directories created one at a time. A directory already in
 * the destination may be a symlink leading elsewhere: each step is resolved and must stay inside the root.
 */
async function prepareTarget(name: string, context: ExtractContext): Promise<string> {
  const { root, undo } = context;
  const lexical = path.resolve(root, name);
  if (!isInside(lexical, root) || lexical === root) throw refused(context, name, `would be written outside ${root}`);
  try {
    let parent = root;
    for (const segment of path.relative(root, path.dirname(lexical)).split(path.sep)) {
      if (segment === "") continue;
      const next = path.join(parent, segment);
      if (await exists(next)) {
        parent = await realpath(next);
        if (!isInside(parent, root)) throw refused(context, name, `would be written to ${parent}, outside ${root}`);
      } else {
        await mkdir(next);
        undo.dir(next);
        parent = next;
      }
    }
    const target = path.join(parent, path.basename(lexical));
    if (await exists(target)) throw new AlreadyExistsError(`${target} already exists (entry ${name} of ${context.file})`);
    return target;
  } catch (err) {
    throw toHypervisordError(err, `extracting ${name} of ${context.file}`);
  }
}

function refused(context: ExtractContext, name: string, why: string): InvalidArgumentError {
  return new InvalidArgumentError("ova", `${context.file}: entry ${JSON.stringify(name)} ${why}`);
}

/** mkdir -p of the destination, recording the directories it creates; returns its real path. */
async function makeRoot(dest: string, undo: UndoList): Promise<string> {
  try {
    const first = await mkdir(dest, { recursive: true });
    if (first !== undefined) {
      const below: string[] = [];
      for (let dir = dest; dir !== first && dir !== path.dirname(dir); dir = path.dirname(dir)) below.push(dir);
      for (const dir of [first, ...below.reverse()]) undo.dir(dir);
    }
    return await realpath(dest);
  } catch (err) {
    throw toHypervisordError(err, `creating ${dest}`);
  }
}

interface UndoList {
  file(file: string): void;
  renamed(from: string, to: string): void;
  dir(dir: string): void;
  /** Removes the files, then the directories, newest first. */
  run(reason: unknown): Promise<void>;
}

function createUndoList(): UndoList {
  const files: string[] = [];
  const dirs: string[] = [];
  return {
    file: (file) => void files.push(file),
    renamed: (from, to) => void files.splice(files.indexOf(from), 1, to),
    dir: (dir) => void dirs.push(dir),
    async run(reason) {
      try {
        for (const file of files.reverse()) await rm(file, { force: true });
        for (const dir of dirs.reverse()) await rmdir(dir);
      } catch (err) {
        const message = errorMessage(reason);
        throw toHypervisordError(err, `cleaning up after a failed extraction (${message})`);
      }
    },
  };
}
