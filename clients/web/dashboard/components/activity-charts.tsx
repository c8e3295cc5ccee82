import { byteCeiling, countCeiling } from "../chart-scale.ts";
import { formatRate } from "../format.ts";
import { useTimeline } from "../session.tsx";
import { TimeChart } from "./time-chart.tsx";

const MIN_SPAN_MS = 60_000;

export const rateText = (v: number) => (v > 0 ? formatRate(v) : "0 B/s");
const countText = (v: number) => String(Math.round(v));

/** The overview's last hour: the throughput of all running jobs, and how many ran and waited. */
export function ActivityCharts() {
  const timeline = useTimeline();
  const samples = timeline.overall();
  const to = Date.now();
  // Up to the last hour, but no wider than the samples (and at least a minute): a tab opened a minute
  // ago draws its minute across the chart rather than a sliver at the right edge of an empty hour.
  const from = Math.max(to - timeline.windowMs, Math.min(samples[0]?.t ?? to, to - MIN_SPAN_MS));
  const rate = samples.map((s) => ({ t: s.t, v: s.bytesPerSecond }));
  const running = samples.map((s) => ({ t: s.t, v: s.running }));
  const queued = samples.map((s) => ({ t: s.t, v: s.queued }));
  const gapMs = timeline.bucketMs * 3;
  const seconds = timeline.bucketMs / 1000;
  const empty = "No samples yet: they are recorded while the dashboard is open.";
  return (
    <section className="card" aria-labelledby="activity-title">
      <h2 id="activity-title">Last hour</h2>
      <p className="muted chart-note">Recorded from the live stream while this tab is open (the daemon keeps no history): the last {spanText(to - from)}.</p>
      <div className="chart-grid-2">
        <TimeChart title="Throughput" series={[{ label: "all running jobs", tone: "rate", points: rate }]} from={from} to={to}
          max={byteCeiling(Math.max(0, ...rate.map((p) => p.v)))} format={rateText} gapMs={gapMs} empty={empty}
          about={`Bytes per second of all running jobs over the last ${spanText(to - from)}, sampled from the live update stream every ${seconds} s`} />
        <TimeChart title="Queue" series={[{ label: "running", tone: "running", points: running }, { label: "queued", tone: "queued", points: queued }]}
          from={from} to={to} max={countCeiling(Math.max(0, ...running.map((p) => p.v), ...queued.map((p) => p.v)))} format={countText} gapMs={gapMs} empty={empty}
          about={`Jobs running and jobs queued over the last ${spanText(to - from)}, sampled from the live update stream every ${seconds} s`} />
      </div>
    </section>
  );
}

function spanText(ms: number): string {
  return `${Math.round(ms / 60_000)} min`;
}
