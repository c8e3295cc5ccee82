import type { Dispatcher } from "undici";
import { HypervisordError } from "../../errors.ts";
import type { HostSlots } from "../../transfer/host-slots.ts";
import { blobLabel, blobRequest, withBlobRetries, type BlobRetry } from "./blob-request.ts";

/** A byte range of a blob, `end` exclusive. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface PageRanges {
  /** The blob's size (x-ms-blob-content-length). */
  size: number;
  /** The ranges that hold data, sorted, adjacent ones merged, `end` exclusive. */
  ranges: ByteRange[];
}

export interface PageRangesOptions {
  /** Names the blob in errors and logs (the URL is a credential and never appears). Default "the page blob". */
  name?: string;
  dispatcher?: Dispatcher;
  retry?: BlobRetry;
  /** A slot on the blob's host is held per request (not during backoff). */
  hostSlots?: HostSlots;
  logger?: { warn(obj: object, msg: string): void };
}

/**
 * Get Page Ranges of a page blob through its SAS URL: `GET <sas>&comp=pagelist`, following NextMarker, as the
 * list of ranges holding data. A managed disk's blob answers in pages of ranges when it is fragmented; the
 * pages are requested one after the other (each continues from the marker of the last).
 */
export async function getPageRanges(url: string, signal: AbortSignal, options: PageRangesOptions = {}): Promise<PageRanges> {
  const name = options.name ?? "the page blob";
  const label = blobLabel("listing the page ranges of", name, url);
  const ranges: ByteRange[] = [];
  let size: number | undefined;
  let marker: string | undefined;
  do {
    const pageUrl = new URL(url);
    pageUrl.searchParams.set("comp", "pagelist");
    if (marker) pageUrl.searchParams.set("marker", marker);
    const { headers, body } = await withBlobRetries(label, { signal, retry: options.retry, logger: options.logger }, async () => {
      const release = await options.hostSlots?.acquire(pageUrl.host, signal);
      try {
        return await blobRequest(pageUrl, { method: "GET", signal, dispatcher: options.dispatcher, label });
      } finally {
        release?.();
      }
    });
    const length = headers["x-ms-blob-content-length"];
    if (length === undefined || !/^\d+$/.test(length)) {
      throw new HypervisordError("INTERNAL", `${label}: the answer has no x-ms-blob-content-length header`);
    }
    size = Number(length);
    const page = parsePageList(body.toString("utf8"), label);
    ranges.push(...page.ranges);
    marker = page.nextMarker;
  } while (marker);
  return { size, ranges: mergeRanges(ranges, size, label) };
}

/**
 * The ranges and NextMarker of one PageList answer (`<PageRange><Start>0</Start><End>511</End></PageRange>`,
 * End inclusive). ClearRange elements (only in diff answers) are not data and are skipped.
 */
export function parsePageList(xml: string, label = "the page list"): { ranges: ByteRange[]; nextMarker?: string } {
  if (!/<PageList[\s>/]/.test(xml)) throw new HypervisordError("INTERNAL", `${label}: the answer is not a PageList`);
  const ranges: ByteRange[] = [];
  for (const match of xml.matchAll(/<PageRange>\s*<Start>\s*(\d+)\s*<\/Start>\s*<End>\s*(\d+)\s*<\/End>\s*<\/PageRange>/g)) {
    const start = Number(match[1]);
    const end = Number(match[2]) + 1;
    if (!(end > start)) throw new HypervisordError("INTERNAL", `${label}: a page range ends before it starts (${match[1]}-${match[2]})`);
    ranges.push({ start, end });
  }
  const count = xml.match(/<PageRange>/g)?.length ?? 0;
  if (count !== ranges.length) throw new HypervisordError("INTERNAL", `${label}: ${count - ranges.length} PageRange elements could not be read`);
  const nextMarker = /<NextMarker>([^<]+)<\/NextMarker>/.exec(xml)?.[1]?.trim();
  return nextMarker ? { ranges, nextMarker: decodeXml(nextMarker) } : { ranges };
}

/** Sorted, adjacent and overlapping ranges merged; a range past the blob's end is an error. */
export function mergeRanges(ranges: readonly ByteRange[], size: number, label = "the page list"): ByteRange[] {
  const sorted = [...ranges].sort((a, b) => a.start - b.start);
  const merged: ByteRange[] = [];
  for (const range of sorted) {
    if (range.end > size) throw new HypervisordError("INTERNAL", `${label}: a page range ends at byte ${range.end}, past the blob's ${size} bytes`);
    const last = merged[merged.length - 1];
    if (last && range.start <= last.end) last.end = Math.max(last.end, range.end);
    else merged.push({ ...range });
  }
  return merged;
}

/**
 * The requests that fetch `ranges` from byte `from` on: ranges closer than `mergeGap` become one request (a
 * request costs a round trip; a few KiB of zeros between two ranges cost less), then split into pieces of at
 * most `chunkBytes` on a grid of `chunkBytes` (so the pieces of a disk stay aligned, 4 MiB by default).
 */
export function planChunks(ranges: readonly ByteRange[], options: { from: number; chunkBytes: number; mergeGap: number }): ByteRange[] {
  const { from, chunkBytes, mergeGap } = options;
  const spans: ByteRange[] = [];
  for (const range of ranges) {
    const start = Math.max(range.start, from);
    if (range.end <= start) continue;
    const last = spans[spans.length - 1];
    if (last && start - last.end <= mergeGap) last.end = range.end;
    else spans.push({ start, end: range.end });
  }
  const chunks: ByteRange[] = [];
  for (const span of spans) {
    for (let start = span.start; start < span.end; ) {
      const end = Math.min(span.end, (Math.floor(start / chunkBytes) + 1) * chunkBytes);
      chunks.push({ start, end });
      start = end;
    }
  }
  return chunks;
}

function decodeXml(text: string): string {
  return text.replace(/&(lt|gt|amp|quot|apos);/g, (_, entity: string) => ({ lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" })[entity]!);
}
