// Small helpers shared by the benchmarks.
import fs from "node:fs";

const CLK_TCK = 100;

export const fixed = (n: number | undefined, digits = 1) => (n === undefined || !Number.isFinite(n) ? "-" : n.toFixed(digits));

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length === 0 ? NaN : sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** utime+stime (and optionally cutime+cstime: children already waited for) of a process, in seconds. */
export function cpuSeconds(pid: number | "self", withChildren = false): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
    // fields[0] is field 3 (state): utime = field 14, stime 15, cutime 16, cstime 17.
    const ticks = fields[11]! + fields[12]! + (withChildren ? fields[13]! + fields[14]! : 0);
    return ticks / CLK_TCK;
  } catch {
    return NaN;
  }
}

/** A positive number from the environment, else `fallback`. */
export function envNumber(name: string, fallback: number): number {
  const value = Number(process.env[name]);
  return process.env[name] && Number.isFinite(value) && value > 0 ? value : fallback;
}
