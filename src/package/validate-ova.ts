import { createHash } from "node:crypto";
import { XMLParser, XMLValidator } from "fast-xml-parser";
import type { Extract, Header } from "tar-stream";
import { archiveError, breakOff, dataOffsetOf, isReadError, isRegular, openOva, readArchive, type EntryProgress, type OvaEntryDigest, type OvaReadOptions } from "./ova-archive.ts";
import { entryNameProblem } from "./tar-header.ts";

/**
 * Validating an OVA against its own descriptor and manifest. Entries are hashed on the way; only the .ovf
 * and .mf, which are small, are kept to be parsed.
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

/** .ovf and .mf entries are kept to be parsed up to this size; a larger one is reported, not read into memory. */
const MAX_TEXT = 16 * 1024 * 1024;

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
