import { useId, useState, type KeyboardEvent, type PointerEvent } from "react";
import { linePath, nearestIndex, summarize, type Point } from "../chart-scale.ts";
import { formatClock } from "../format.ts";

export interface ChartSeries {
  label: string;
  /** Picks the colour: .chart-<tone> in styles.css. */
  tone: string;
  points: readonly Point[];
}

export interface TimeChartProps {
  title: string;
  series: ChartSeries[];
  from: number;
  to: number;
  /** The top of the value axis (a round number: chart-scale.ts). */
  max: number;
  format(value: number): string;
  /** A longer pause between two samples is drawn as a gap. */
  gapMs: number;
  /** What the chart shows, for the description read out with it ("sampled from the live stream every 2 s"). */
  about: string;
  /** The right end of the time axis: "now" while it moves, else the time. */
  toLabel?: string;
  /** Shown over the empty plot when no series has a sample. */
  empty: string;
}

// The plot's own coordinates; the SVG stretches to its box (lines keep their width: non-scaling-stroke).
const W = 1000;
const H = 200;

/**
 * A line chart over time drawn as SVG by hand (no charting dependency). Its box has a fixed height and
 * the legend one line whose text changes, so nothing moves when values arrive or the pointer hovers.
 * The values are read from the legend: the latest by default, those under the pointer on hover, or
 * those of the sample chosen with the arrow keys when the plot has the focus (Escape goes back to the latest).
 */
export function TimeChart({ title, series, from, to, max, format, gapMs, about, toLabel = "now", empty }: TimeChartProps) {
  const id = useId();
  const [cursor, setCursor] = useState<number | undefined>();
  const frame = { from, to, max, width: W, height: H };
  const axis = series[0]?.points ?? [];
  const hasData = series.some((s) => s.points.some((p) => p.t >= from && p.t <= to));
  const cursorTime = cursor === undefined ? undefined : axis[cursor]?.t;
  const valueAt = (points: readonly Point[]) => (cursorTime === undefined ? points.at(-1)?.v : points[nearestIndex(points, cursorTime)]?.v);
  const description = `${about}. ${series.map((s) => {
    const { peak, latest } = summarize(s.points);
    return `${s.label}: latest ${format(latest)}, peak ${format(peak)}`;
  }).join("; ")}.`;

  const onPointer = (event: PointerEvent<HTMLDivElement>) => {
    const box = event.currentTarget.getBoundingClientRect();
    const t = from + ((event.clientX - box.left) / Math.max(1, box.width)) * (to - from);
    const index = nearestIndex(axis, t);
    setCursor(index < 0 ? undefined : index);
  };
  const onKey = (event: KeyboardEvent<HTMLDivElement>) => {
    const last = axis.length - 1;
    const current = cursor ?? last;
    const next = { ArrowLeft: current - 1, ArrowRight: current + 1, Home: 0, End: last }[event.key];
    if (event.key === "Escape") setCursor(undefined);
    else if (next !== undefined && last >= 0) setCursor(Math.max(0, Math.min(last, next)));
    else return;
    event.preventDefault();
  };

  return (
    <figure className="chart">
      <figcaption className="chart-head">
        <span className="chart-title" id={`${id}-caption`}>{title}</span>
        <span className="muted">axis top {format(max)}</span>
      </figcaption>
      <div className="chart-plot" tabIndex={0} role="group" aria-label={`${title}: arrow keys read the samples`} aria-describedby={`${id}-legend`}
        onPointerMove={onPointer} onPointerLeave={() => setCursor(undefined)} onKeyDown={onKey} onBlur={() => setCursor(undefined)}>
        <svg viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" role="img" aria-labelledby={`${id}-title`} aria-describedby={`${id}-desc`}>
          <title id={`${id}-title`}>{title}</title>
          <desc id={`${id}-desc`}>{description}</desc>
          <line className="chart-grid" x1={0} x2={W} y1={H / 2} y2={H / 2} vectorEffect="non-scaling-stroke" />
          <line className="chart-grid" x1={0} x2={W} y1={H} y2={H} vectorEffect="non-scaling-stroke" />
          {series.map((s) => (
            <path key={s.label} className={`chart-line chart-${s.tone}`} d={linePath(s.points, frame, gapMs)} vectorEffect="non-scaling-stroke"
              data-samples={s.points.filter((p) => p.t >= from && p.t <= to).length} />
          ))}
          {cursorTime !== undefined && (
            <line className="chart-cursor" x1={((cursorTime - from) / Math.max(1, to - from)) * W} x2={((cursorTime - from) / Math.max(1, to - from)) * W} y1={0} y2={H} vectorEffect="non-scaling-stroke" />
          )}
        </svg>
        {!hasData && <p className="chart-empty">{empty}</p>}
      </div>
      <div className="chart-axis" aria-hidden="true"><span>{formatClock(new Date(from))}</span><span>{toLabel}</span></div>
      <div className="chart-legend" id={`${id}-legend`}>
        <span className="chart-when">{cursorTime === undefined ? "latest" : formatClock(new Date(cursorTime))}</span>
        {series.map((s) => {
          const value = valueAt(s.points);
          return (
            <span key={s.label} className="chart-value">
              <span className={`chart-swatch chart-${s.tone}`} aria-hidden="true" />{s.label} <strong>{value === undefined ? "–" : format(value)}</strong>
            </span>
          );
        })}
      </div>
    </figure>
  );
}
