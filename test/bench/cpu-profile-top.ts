// Top self-time entries of V8 .cpuprofile files (what `node --cpu-prof` writes: one file per thread, so a
// transfer worker gets its own). Used by bench:export (BENCH_PROFILE=1) and runnable standalone:
//   node --import tsx test/bench/cpu-profile-top.ts FILE.cpuprofile [MORE.cpuprofile ...] [--top N]
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

/** Self time per function (same name and url:line merged across call paths), largest first. */
export function summarizeProfiles(profiles: CpuProfile[], top = 10): ProfileSummary {
  const byKey = new Map<string, { functionName: string; location: string; selfUs: number }>();
  let totalUs = 0;
  for (const profile of profiles) {
    totalUs += profile.endTime - profile.startTime;
    const frames = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
    const samples = profile.samples ?? [];
    const deltas = profile.timeDeltas ?? [];
    // timeDeltas[i] is the time from the previous sample to sample i, so sample i lasts until sample i+1
    // (how Chrome DevTools attributes it); the last one lasts until endTime.
    let at = profile.startTime;
    const stamps = deltas.map((d) => (at += d));
    samples.forEach((id, i) => {
      const duration = (i + 1 < stamps.length ? stamps[i + 1]! : profile.endTime) - stamps[i]!;
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
  const topAt = args.indexOf("--top");
  const top = topAt >= 0 ? Number(args.splice(topAt, 2)[1]) : 10;
  if (args.length === 0 || !Number.isInteger(top) || top <= 0) {
    console.error("usage: node --import tsx test/bench/cpu-profile-top.ts FILE.cpuprofile [MORE.cpuprofile ...] [--top N]");
    process.exit(2);
  }
  const profiles = args.map(readProfile);
  args.forEach((file, i) => console.log(`${formatSummary(file, summarizeProfiles([profiles[i]!], top))}\n`));
  if (profiles.length > 1) console.log(formatSummary(`all ${profiles.length} profiles`, summarizeProfiles(profiles, top)));
}
