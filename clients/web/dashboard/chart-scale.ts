// The arithmetic of the time charts, kept apart from the SVG so it can be tested without a browser:
// a round top for the value axis, the line path from samples (broken where samples are missing), and
// the sample nearest to a pointer position.

export interface Point {
  /** ms since epoch. */
  t: number;
  v: number;
}

/** The smallest of 1, 2, 2.5, 5 × 10^k that is >= value (1 for 0 or less): a top an axis can be read against. */
export function niceCeiling(value: number): number {
  if (!(value > 0)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * magnitude >= value * (1 - 1e-12)) return step * magnitude;
  }
  return 10 * magnitude;
}

/** A round top for a byte rate, in the binary unit the value reads in (40 MiB/s, not 41943040 B/s). */
export function byteCeiling(value: number): number {
  if (!(value > 0)) return 1024;
  let unit = 1;
  while (value / unit >= 1024 && unit < 1024 ** 5) unit *= 1024;
  return niceCeiling(value / unit) * unit;
}

/** A round top for counts (jobs): whole numbers, at least 1. */
export function countCeiling(value: number): number {
  return Math.max(1, Math.ceil(niceCeiling(value)));
}

export interface Frame {
  from: number;
  to: number;
  max: number;
  width: number;
  height: number;
}

/**
 * The SVG path of a series in a frame: x by time, y by value (0 at the bottom). A gap longer than
 * `gapMs` between two samples starts a new segment (the page was closed or offline: no data, not a
 * straight line through it). Samples outside the frame are left out.
 */
export function linePath(points: readonly Point[], frame: Frame, gapMs: number): string {
  const { from, to, max, width, height } = frame;
  const span = Math.max(1, to - from);
  const x = (t: number) => (((t - from) / span) * width).toFixed(1);
  const y = (v: number) => (height - (Math.min(Math.max(v, 0), max) / max) * height).toFixed(1);
  let d = "";
  let previous: number | undefined;
  for (const p of points) {
    if (p.t < from || p.t > to) continue;
    d += `${previous === undefined || p.t - previous > gapMs ? "M" : "L"}${x(p.t)},${y(p.v)}`;
    previous = p.t;
  }
  return d;
}

/** Index of the sample nearest in time to `t` (points sorted by time), or -1 when there is none. */
export function nearestIndex(points: readonly Point[], t: number): number {
  if (points.length === 0) return -1;
  let lo = 0;
  let hi = points.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid]!.t < t) lo = mid + 1;
    else hi = mid;
  }
  if (lo > 0 && t - points[lo - 1]!.t < points[lo]!.t - t) return lo - 1;
  return lo;
}

/** Peak and latest value of a series (0 when empty). */
export function summarize(points: readonly Point[]): { peak: number; latest: number } {
  return { peak: points.reduce((m, p) => Math.max(m, p.v), 0), latest: points.at(-1)?.v ?? 0 };
}
