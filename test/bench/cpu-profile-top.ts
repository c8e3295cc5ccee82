// Top self-time entries of V8 .cpuprofile files (what `node --cpu-prof` writes: one file per thread, so a
// transfer worker gets its own). Used by bench:export (BENCH_PROFILE=1) and runnable standalone:
//   node --import tsx test/bench/cpu-profile-top.ts FILE.cpuprofile [MORE.cpuprofile ...] [--top N] [--from US] [--to US]
// With several files it prints each, then all of them merged (the process's CPU across its threads).
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

interface CallFrame {
  functionName: string;
  url: string;
  /** 0-based, as V8 writes it. */
  lineNumber: number;
  columnNumber: number;
}
export interface CpuProfile {
  nodes: { id: number; callFrame: CallFrame }[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}
export interface SelfTimeEntry {
  functionName: string;
  /** url:line (1-based), relative to the working directory when under it; "" for V8's own entries. */
  location: string;
  selfMs: number;
  /** Share of the busy time: everything but "(idle)". */
  percent: number;
}
export interface ProfileSummary {
  /** Profile wall time. */
  totalMs: number;
  idleMs: number;
  busyMs: number;
  top: SelfTimeEntry[];
}

const IDLE = "(idle)";

/**
 * A span of V8's clock (microseconds of CLOCK_MONOTONIC on Linux, the clock of `process.hrtime.bigint()` / 1000 in
 * any process on the machine), to count only the samples of one job rather than the daemon's whole life.
 */
export interface ProfileWindow {
  fromUs: number;
  toUs: number;
}

/** Self time per function (same name and url:line merged across call paths), largest first; within `window` if given. */
export function summarizeProfiles(profiles: CpuProfile[], top = 10, window?: ProfileWindow): ProfileSummary {
  const byKey = new Map<string, { functionName: string; location: string; selfUs: number }>();
  let totalUs = 0;
  for (const profile of profiles) {
    const from = Math.max(profile.startTime, window?.fromUs ?? -Infinity);
    const to = Math.min(profile.endTime, window?.toUs ?? Infinity);
    totalUs += Math.max(0, to - from);
    const frames = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
    const samples = profile.samples ?? [];
    const deltas = profile.timeDeltas ?? [];
    // timeDeltas[i] is the time from the previous sample to sample i, so sample i lasts until sample i+1
    // (how Chrome DevTools attributes it); the last one lasts until endTime.
    let at = profile.startTime;
    const stamps = deltas.map((d) => (at += d));
    samples.forEach((id, i) => {
      const end = i + 1 < stamps.length ? stamps[i + 1]! : profile.endTime;
      const duration = Math.min(end, to) - Math.max(stamps[i]!, from);
      const frame = frames.get(id);
      if (!frame || duration <= 0) return;
      const location = frame.url ? `${shortUrl(frame.url)}:${frame.lineNumber + 1}` : "";
      const functionName = frame.functionName || "(anonymous)";
      const key = `${functionName}\u0000${location}`;
      const entry = byKey.get(key) ?? { functionName, location, selfUs: 0 };
      entry.selfUs += duration;
      byKey.set(key, entry);
    });
  }
  const entries = [...byKey.values()];
  const idleUs = entries.filter((e) => e.functionName === IDLE).reduce((sum, e) => sum + e.selfUs, 0);
  const sampledUs = entries.reduce((sum, e) => sum + e.selfUs, 0);
  const busyUs = sampledUs - idleUs;
  return {
    totalMs: totalUs / 1000,
    idleMs: idleUs / 1000,
    busyMs: busyUs / 1000,
    top: entries
      .filter((e) => e.functionName !== IDLE)
      .sort((a, b) => b.selfUs - a.selfUs)
      .slice(0, top)
      .map((e) => ({ functionName: e.functionName, location: e.location, selfMs: e.selfUs / 1000, percent: busyUs > 0 ? (100 * e.selfUs) / busyUs : 0 })),
  };
}

export function readProfile(file: string): CpuProfile {
  return JSON.parse(fs.readFileSync(file, "utf8")) as CpuProfile;
}

/** The summary as a table, for the bench's output and the closing note. */
export function formatSummary(title: string, summary: ProfileSummary): string {
  const rows = summary.top.map((e, i) => [String(i + 1), e.functionName, e.location || "-", e.selfMs.toFixed(1), e.percent.toFixed(1)]);
  const header = ["#", "function", "url:line", "self ms", "% busy"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 1 || i === 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [
    `${title}: ${summary.totalMs.toFixed(0)} ms profiled, ${summary.busyMs.toFixed(0)} ms busy, ${summary.idleMs.toFixed(0)} ms idle`,
    line(header),
    widths.map((w) => "-".repeat(w)).join("  "),
    ...rows.map(line),
  ].join("\n");
}

function shortUrl(url: string): string {
  const file = url.startsWith("file://") ? decodeURIComponent(new URL(url).pathname) : url;
  const relative = path.isAbsolute(file) ? path.relative(process.cwd(), file) : file;
  return relative.startsWith("..") ? file : relative;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const args = process.argv.slice(2);
  const option = (name: string) => {
    const at = args.indexOf(name);
    return at >= 0 ? Number(args.splice(at, 2)[1]) : undefined;
  };
  const top = option("--top") ?? 10;
  const fromUs = option("--from");
  const toUs = option("--to");
  const window = fromUs !== undefined || toUs !== undefined ? { fromUs: fromUs ?? -Infinity, toUs: toUs ?? Infinity } : undefined;
  if (args.length === 0 || !Number.isInteger(top) || top <= 0 || Number.isNaN(window?.fromUs) || Number.isNaN(window?.toUs)) {
    console.error("usage: node --import tsx test/bench/cpu-profile-top.ts FILE.cpuprofile [MORE.cpuprofile ...] [--top N] [--from US] [--to US]\n" +
      "  --from/--to: only samples in that span of V8's clock (microseconds, as the profile's startTime)");
    process.exit(2);
  }
  const profiles = args.map(readProfile);
  args.forEach((file, i) => console.log(`${formatSummary(file, summarizeProfiles([profiles[i]!], top, window))}\n`));
  if (profiles.length > 1) console.log(formatSummary(`all ${profiles.length} profiles`, summarizeProfiles(profiles, top, window)));
}
