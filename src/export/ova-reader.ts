import { createHash, randomBytes } from "node:crypto";
import { mkdir, open, realpath, rename, rm, rmdir } from "node:fs/promises";
import path from "node:path";
import { pipeline as pipeStreams, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { XMLParser, XMLValidator } from "fast-xml-parser";
import { extract as tarExtract, type Extract, type Header } from "tar-stream";
import { AlreadyExistsError, HypervisordError, InvalidArgumentError, toHypervisordError } from "../errors.ts";
import { exists, isInside, writeAll } from "../files/fs-utils.ts";
import { openRegularFile } from "../files/open-regular-file.ts";
import { TAR_BLOCK, entryNameProblem } from "./tar-header.ts";

/**
 * Reading OVAs (plain or gzipped tars): validating one against its own descriptor and manifest, and
 * extracting one safely. Entries are streamed and hashed on the way, never held whole in memory (disks
 * can be tens of GiB); only the .ovf and .mf, which are small, are kept to be parsed.
 */

export interface OvaValidation {
  /** No problems. */
  valid: boolean;
  /** The file is gzipped (an `.ova.gz`). */
  compressed: boolean;
  /** Every entry read to its end, in archive order. */
  entries: OvaEntryDigest[];
  /** One sentence per problem found, in the order found. */
  problems: string[];
}

export interface OvaEntryDigest {
  name: string;
  size: number;
  sha256: string;
}

export interface OvaReadOptions {
  /** Abort stops reading (and writing: extractOva removes what it wrote) and rejects with `signal.reason`. */
  signal?: AbortSignal;
}

const IO_CHUNK = 1024 * 1024;
/** .ovf and .mf entries are kept to be parsed up to this size; a larger one is reported, not read into memory. */
const MAX_TEXT = 16 * 1024 * 1024;
const GZIP_MAGIC = [0x1f, 0x8b];

/** The plain tar of an OVA file, gunzipped on the way when the file starts with the gzip magic bytes. */
export async function openOvaStream(file: string): Promise<Readable> {
  return (await openOva(file, undefined)).stream;
}

/**
 * Reads the whole OVA and reports what is wrong with it: the .ovf descriptor is not first (or missing, or
 * repeated); a file in its References is missing, has another size, or is out of References order; an
 * entry is not in References; a manifest digest (SHA256 or SHA1) does not match or is missing; an entry name
 * is unsafe or not a regular file; the archive is cut or damaged (naming the entry, and how many of its
 * bytes the archive holds).
 * Throws only when the file cannot be read (NOT_FOUND, ...) or is not a tar at all (INVALID_ARGUMENT).
 */
export async function validateOva(file: string, options: OvaReadOptions = {}): Promise<OvaValidation> {
  const { stream, compressed } = await openOva(file, options.signal);
  const entries: ScannedEntry[] = [];
  const failure = await readArchive(stream, options.signal, (extract) => scanEntries(extract, entries));
  const problems: string[] = [];
  if (failure) {
    if (entries.length === 0 || isReadError(failure.error)) throw archiveError(failure, file, entries);
    problems.push(breakOff(failure, entries));
  }
  checkEntries(entries, problems);
  const descriptor = entries.find((entry) => isDescriptor(entry.name));
  if (descriptor?.complete) checkReferences(descriptor, entries, problems);
  const manifest = entries.find((entry) => isManifest(entry.name));
  if (manifest?.complete) checkManifest(manifest, entries, problems);
  return {
    valid: problems.length === 0,
    compressed,
    entries: entries.filter((entry) => entry.complete).map(({ name, size, sha256 }) => ({ name, size, sha256 })),
    problems,
  };
}

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

// ---------------------------------------------------------------------------------------------
// Opening and driving tar-stream

async function openOva(file: string, signal: AbortSignal | undefined): Promise<{ stream: Readable; compressed: boolean }> {
  const { handle } = await openRegularFile(file, signal);
  let compressed: boolean;
  try {
    const magic = Buffer.alloc(GZIP_MAGIC.length);
    const { bytesRead } = await handle.read(magic, 0, magic.length, 0);
    compressed = bytesRead === magic.length && GZIP_MAGIC.every((byte, i) => magic[i] === byte);
  } catch (err) {
    await handle.close();
    throw toHypervisordError(err, `reading ${file}`);
  }
  const raw = handle.createReadStream({ start: 0, highWaterMark: IO_CHUNK });
  if (!compressed) return { stream: raw, compressed };
  const gunzip = createGunzip({ chunkSize: IO_CHUNK });
  // Errors reach the reader through `gunzip`, which pipeline destroys with them; a reader that stops early
  // destroys `gunzip`, and pipeline then closes the file.
  pipeStreams(raw, gunzip, () => {});
  return { stream: gunzip, compressed };
}

interface ArchiveFailure {
  error: unknown;
  /** Bytes of plain tar that reached tar-stream. */
  tarBytes: number;
}

/**
 * Feeds the tar to tar-stream while `consume` takes its entries. Returns the failure, or undefined when the
 * archive was read to its end; rejects only when `signal` aborted.
 */
async function readArchive(
  stream: Readable,
  signal: AbortSignal | undefined,
  consume: (extract: Extract) => Promise<void>,
): Promise<ArchiveFailure | undefined> {
  const extract = tarExtract();
  let tarBytes = 0;
  async function* count(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      tarBytes += chunk.length;
      yield chunk;
    }
  }
  const [fed, consumed] = await Promise.allSettled([pipeline(stream, count, extract, signal ? { signal } : {}), consume(extract)]);
  signal?.throwIfAborted();
  const consumerError: unknown = consumed.status === "rejected" ? consumed.reason : undefined;
  const fedError: unknown = fed.status === "rejected" ? fed.reason : undefined;
  if (consumerError === undefined && fedError === undefined) return undefined;
  // A consumer that stops early (a refused entry, a failed write) makes the feed end in a premature close: the
  // consumer's error is the cause. Bad tar or gzip data fails the feed, and the consumer then only sees its
  // entry stream destroyed: the feed's error is the cause.
  const dataError = (fedError as { code?: unknown } | undefined)?.code === "ERR_STREAM_PREMATURE_CLOSE" ? undefined : fedError;
  const consumerFirst = consumerError !== undefined && (isReadError(consumerError) || dataError === undefined);
  return { error: consumerFirst ? consumerError : (dataError ?? fedError), tarBytes };
}

/** Where an entry's data starts in the plain tar, for the message when the archive breaks off in it. */
interface EntryProgress {
  name: string;
  size: number;
  dataOffset: number;
  complete: boolean;
}

/** tar-stream gives the offset of an entry's (ustar) header block; its data follows. */
function dataOffsetOf(source: { offset: number }): number {
  return source.offset + TAR_BLOCK;
}

/** Where the archive breaks off: in an entry's data (the bytes it holds of how many), or between entries. */
function breakOff(failure: ArchiveFailure, seen: readonly EntryProgress[]): string {
  const { error, tarBytes } = failure;
  const reason = error instanceof Error ? error.message : String(error);
  const last = seen.at(-1);
  if (!last) return `not a tar archive (${reason})`;
  if (last.complete) return `the archive breaks off after the entry ${last.name} (${reason})`;
  const held = Math.max(0, Math.min(last.size, tarBytes - last.dataOffset));
  return `${last.name}: the archive breaks off after ${held} of the entry's ${last.size} bytes (${reason})`;
}

/** A failure of reading the file or of writing (ours), as opposed to bad tar or gzip data. */
function isReadError(err: unknown): boolean {
  return err instanceof HypervisordError || isSystemError(err);
}

/** The error to throw for a failed read: ours as is, the file's I/O mapped, bad data INVALID_ARGUMENT naming where. */
function archiveError(failure: ArchiveFailure, file: string, seen: readonly EntryProgress[]): HypervisordError {
  if (isReadError(failure.error)) return toHypervisordError(failure.error, `reading ${file}`);
  const where = seen.length === 0 ? `is ${breakOff(failure, seen)}` : `is damaged: ${breakOff(failure, seen)}`;
  return new HypervisordError("INVALID_ARGUMENT", `${file} ${where}`, { cause: failure.error });
}

/** An error from a system call (reading the file, writing one) rather than from the tar or gzip data. */
function isSystemError(err: unknown): boolean {
  return typeof (err as { syscall?: unknown } | undefined)?.syscall === "string";
}

// ---------------------------------------------------------------------------------------------
// Validation

interface ScannedEntry extends EntryProgress {
  index: number;
  /** Read so far. */
  bytes: number;
  type: Header["type"];
  linkname: string;
  sha256: string;
  sha1: string;
  /** The content of a .ovf or .mf entry no larger than MAX_TEXT. */
  text?: string;
}

async function scanEntries(extract: Extract, entries: ScannedEntry[]): Promise<void> {
  for await (const source of extract) {
    const { header } = source;
    const entry: ScannedEntry = {
      index: entries.length,
      name: header.name,
      type: header.type,
      linkname: header.linkname,
      size: header.size,
      dataOffset: dataOffsetOf(source),
      bytes: 0,
      complete: false,
      sha256: "",
      sha1: "",
    };
    entries.push(entry);
    const sha256 = createHash("sha256");
    const sha1 = createHash("sha1");
    const text: Buffer[] | undefined = isDescriptor(entry.name) || isManifest(entry.name) ? [] : undefined;
    for await (const chunk of source as AsyncIterable<Buffer>) {
      sha256.update(chunk);
      sha1.update(chunk);
      entry.bytes += chunk.length;
      if (text && entry.bytes <= MAX_TEXT) text.push(chunk);
    }
    entry.sha256 = sha256.digest("hex");
    entry.sha1 = sha1.digest("hex");
    if (text && entry.bytes <= MAX_TEXT) entry.text = Buffer.concat(text).toString("utf8");
    entry.complete = true;
  }
}

/** Names, types, duplicates and the place of the descriptor and manifest. */
function checkEntries(entries: readonly ScannedEntry[], problems: string[]): void {
  if (entries.length === 0) {
    problems.push("the archive has no entries");
    return;
  }
  const counts = new Map<string, number>();
  for (const entry of entries) {
    counts.set(entry.name, (counts.get(entry.name) ?? 0) + 1);
    const unsafe = entryNameProblem(entry.name);
    if (unsafe) problems.push(`${JSON.stringify(entry.name)} is an unsafe entry name: it ${unsafe}`);
    if (!isRegular(entry.type)) {
      const target = entry.linkname ? ` to ${entry.linkname}` : "";
      problems.push(`${entry.name} is a ${entry.type} entry${target}; an OVA holds only regular files`);
    }
  }
  for (const [name, count] of counts) if (count > 1) problems.push(`${name} appears ${count} times in the archive`);

  const descriptors = entries.filter((entry) => isDescriptor(entry.name));
  if (descriptors.length === 0) problems.push("the OVA has no .ovf descriptor");
  else if (descriptors.length > 1) problems.push(`the OVA has ${descriptors.length} .ovf descriptors (${descriptors.map((d) => d.name).join(", ")}); it must have one`);
  const first = entries[0]!;
  if (descriptors.length > 0 && !isDescriptor(first.name)) {
    problems.push(`the first entry is ${first.name}; an OVA starts with its .ovf descriptor (${descriptors[0]!.name} is entry ${descriptors[0]!.index + 1})`);
  }

  const manifests = entries.filter((entry) => isManifest(entry.name));
  if (manifests.length > 1) problems.push(`the OVA has ${manifests.length} .mf manifests (${manifests.map((m) => m.name).join(", ")}); it may have one`);
  const manifest = manifests[0];
  const after = manifest && entries.slice(manifest.index + 1).find((entry) => !isCertificate(entry.name));
  if (manifest && after) problems.push(`${manifest.name} is followed by ${after.name}; the manifest comes after every file (only a .cert may follow it)`);
}

interface Reference {
  href: string;
  size?: number;
  /** Stored as chunks `<href>.000000000`, `<href>.000000001`, ... (ovf:chunkSize). */
  chunked: boolean;
}

const ovfParser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "",
  // `ovf:href`, `ovf:size` and `<ovf:References>` whatever the prefix: OVF names are unambiguous without it.
  removeNSPrefix: true,
  parseAttributeValue: false,
  isArray: (name) => name === "File",
});

/** Every local File of the descriptor's References is in the archive, with its declared size, in References order. */
function checkReferences(descriptor: ScannedEntry, entries: readonly ScannedEntry[], problems: string[]): void {
  const references = parseReferences(descriptor, problems);
  if (!references) return;
  const referenced = new Set<ScannedEntry>();
  const placed: { href: string; index: number }[] = [];
  for (const reference of references) {
    const parts = referenceEntries(reference, entries);
    const declared = reference.size !== undefined ? ` (${reference.size} bytes)` : "";
    if (parts.length === 0) {
      problems.push(`References lists ${reference.href}${declared} but the OVA has no such entry`);
      continue;
    }
    for (const part of parts) referenced.add(part);
    placed.push({ href: reference.href, index: parts[0]!.index });
    const size = parts.reduce((sum, part) => sum + part.size, 0);
    if (reference.size !== undefined && parts.every((part) => part.complete) && size !== reference.size) {
      problems.push(`${reference.href}: References gives its size as ${reference.size} bytes, the entry has ${size} bytes`);
    }
  }
  const outOfOrder = placed.findIndex((place, i) => i > 0 && place.index < placed[i - 1]!.index);
  if (outOfOrder > 0) {
    problems.push(`${placed[outOfOrder]!.href} comes before ${placed[outOfOrder - 1]!.href} in the archive but after it in References`);
  }
  for (const entry of entries) {
    const packaging = isDescriptor(entry.name) || isManifest(entry.name) || isCertificate(entry.name);
    if (!packaging && !referenced.has(entry) && isRegular(entry.type)) problems.push(`${entry.name} is in the OVA but not in the References of ${descriptor.name}`);
  }
}

/** The local files of the descriptor's References, or undefined (with a problem) when it cannot be read. */
function parseReferences(descriptor: ScannedEntry, problems: string[]): Reference[] | undefined {
  const name = descriptor.name;
  if (descriptor.text === undefined) {
    problems.push(`${name} has ${descriptor.bytes} bytes, more than an OVF descriptor may (${MAX_TEXT})`);
    return undefined;
  }
  const wellFormed = XMLValidator.validate(descriptor.text);
  if (wellFormed !== true) {
    problems.push(`${name} is not well-formed XML: ${wellFormed.err.msg} (line ${wellFormed.err.line})`);
    return undefined;
  }
  const envelope = objectOf(objectOf(ovfParser.parse(descriptor.text))?.Envelope);
  if (!envelope) {
    problems.push(`${name} is not an OVF descriptor: it has no Envelope element`);
    return undefined;
  }
  if (!("References" in envelope)) {
    problems.push(`${name} has no References element`);
    return undefined;
  }
  const files = objectOf(envelope.References)?.File;
  const references: Reference[] = [];
  for (const file of Array.isArray(files) ? files : []) {
    const attributes = objectOf(file) ?? {};
    const href = attributes.href;
    if (typeof href !== "string" || href === "") {
      problems.push(`${name}: a File in References has no href`);
      continue;
    }
    if (/^[a-z][a-z0-9+.-]*:/i.test(href)) continue; // a URL: outside the package by design
    const size = attributes.size;
    if (size !== undefined && !(typeof size === "string" && /^\d+$/.test(size))) {
      problems.push(`${name}: References gives ${href} the size ${JSON.stringify(size)}, not a number of bytes`);
    }
    references.push({
      href,
      ...(typeof size === "string" && /^\d+$/.test(size) ? { size: Number(size) } : {}),
      chunked: attributes.chunkSize !== undefined,
    });
  }
  return references;
}

function referenceEntries(reference: Reference, entries: readonly ScannedEntry[]): ScannedEntry[] {
  if (!reference.chunked) return entries.filter((entry) => entry.name === reference.href).slice(0, 1);
  const prefix = `${reference.href}.`;
  return entries.filter((entry) => entry.name.startsWith(prefix) && /^\d{9}$/.test(entry.name.slice(prefix.length)));
}

/** Lenient on reading: `SHA256(name)= hex`, also `SHA256 (name) = hex` and any case; SHA1 checked too. */
const MANIFEST_LINE = /^(SHA1|SHA256|SHA512)\s*\((.+)\)\s*=\s*([0-9a-f]+)$/i;

/** Every line of the manifest is well-formed and matches its entry, and every file of the OVA has a line. */
function checkManifest(manifest: ScannedEntry, entries: readonly ScannedEntry[], problems: string[]): void {
  if (manifest.text === undefined) {
    problems.push(`${manifest.name} has ${manifest.bytes} bytes, more than a manifest may (${MAX_TEXT})`);
    return;
  }
  const listed = new Set<string>();
  manifest.text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === "") return;
    const match = MANIFEST_LINE.exec(line);
    if (!match) {
      problems.push(`${manifest.name} line ${i + 1} is not "SHA256(name)= digest": ${JSON.stringify(line.slice(0, 200))}`);
      return;
    }
    const algorithm = match[1]!.toUpperCase();
    const name = match[2]!;
    const digest = match[3]!.toLowerCase();
    listed.add(name);
    const entry = entries.find((candidate) => candidate.name === name);
    if (!entry) problems.push(`${manifest.name} lists ${name}, which is not in the OVA`);
    else if (algorithm === "SHA512") problems.push(`${manifest.name} line ${i + 1}: SHA512 digests are not checked, only SHA256 and SHA1`);
    else if (entry.complete) {
      const actual = algorithm === "SHA1" ? entry.sha1 : entry.sha256;
      if (digest !== actual) problems.push(`${name}: ${algorithm} in the manifest is ${digest}, the entry's is ${actual}`);
    }
  });
  for (const entry of entries) {
    const packaging = isManifest(entry.name) || isCertificate(entry.name);
    if (!packaging && entry.complete && isRegular(entry.type) && !listed.has(entry.name)) {
      problems.push(`${manifest.name} has no digest for ${entry.name}`);
    }
  }
}

function objectOf(value: unknown): Record<string, unknown> | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

function isDescriptor(name: string): boolean {
  return name.toLowerCase().endsWith(".ovf");
}

function isManifest(name: string): boolean {
  return name.toLowerCase().endsWith(".mf");
}

function isCertificate(name: string): boolean {
  return name.toLowerCase().endsWith(".cert");
}

/** GNU tar extracts a contiguous file ('7') as a regular one. */
function isRegular(type: Header["type"]): boolean {
  return type === "file" || type === "contiguous-file";
}

// ---------------------------------------------------------------------------------------------
// Extraction

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
        const message = reason instanceof Error ? reason.message : String(reason);
        throw toHypervisordError(err, `cleaning up after a failed extraction (${message})`);
      }
    },
  };
}
