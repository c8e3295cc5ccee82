import { isTerminal, type Job } from "../../index.ts";
import { byteCeiling } from "../chart-scale.ts";
import { formatClock, formatRate, toDate } from "../format.ts";
import { averageRate } from "../job-facts.ts";
import { useTimeline } from "../session.tsx";
import { rateText } from "./activity-charts.tsx";
import { TimeChart } from "./time-chart.tsx";

/** One job's throughput while it ran, from the samples this tab recorded; the average from the result beside it. */
export function JobThroughput({ job }: { job: Job }) {
  const timeline = useTimeline();
  const points = timeline.job(job.id);
  const ended = isTerminal(job.state);
  const first = points[0]?.t;
  const start = toDate(job.startTime)?.getTime();
  const known = [first, start].filter((t): t is number => t !== undefined);
  const from = known.length > 0 ? Math.min(...known) : Date.now() - 60_000;
  const end = toDate(job.endTime)?.getTime();
  const to = ended ? Math.max(points.at(-1)?.t ?? 0, end ?? 0, from + 1000) : Date.now();
  const average = averageRate(job);
  return (
    <section className="card" aria-labelledby="throughput-title">
      <h2 id="throughput-title">Throughput</h2>
      <TimeChart title={`Throughput of ${job.definition?.name || job.id}`} series={[{ label: "this job", tone: "rate", points }]} from={from} to={to}
        max={byteCeiling(Math.max(0, ...points.map((p) => p.v)))} format={rateText} gapMs={timeline.jobBucketMs * 5}
        toLabel={ended ? formatClock(new Date(to)) : "now"}
        empty={ended ? "Not recorded: the job ran while no dashboard tab was open (the daemon keeps no throughput history)." : "Waiting for the first progress update…"}
        about={`Bytes per second of this job, sampled from the live update stream every ${timeline.jobBucketMs / 1000} s`} />
      {average !== undefined && <p className="muted">Average over the export: {formatRate(average)}</p>}
    </section>
  );
}
