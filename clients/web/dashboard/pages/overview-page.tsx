import { JobState } from "../../index.ts";
import { ActivityCharts } from "../components/activity-charts.tsx";
import { ErrorMessage } from "../components/error-message.tsx";
import { ProgressBar } from "../components/progress-bar.tsx";
import { RecentFailures } from "../components/recent-failures.tsx";
import { formatDuration, formatRate } from "../format.ts";
import { useQuery, useThrottled } from "../query.ts";
import { href } from "../router.ts";
import { useClient, useLive } from "../session.tsx";

/** What runs, how fast, what waits and what failed, kept current by the live stream. */
export function OverviewPage() {
  const client = useClient();
  const live = useLive();
  const changes = useThrottled(live.changes, 1000);
  const status = useQuery((signal) => client.getStatus({}, { signal }), [client, changes]);
  const capabilities = useQuery((signal) => client.getCapabilities({}, { signal }), [client]);
  const active = [...live.active.values()];
  const running = active.filter((job) => job.state === JobState.RUNNING);
  const queued = active.filter((job) => job.state === JobState.QUEUED);
  const throughput = running.reduce((sum, job) => sum + (job.progress?.bytesPerSecond ?? 0), 0);
  const counts = status.data?.jobCounts;
  const stat = (label: string, value: string | number | bigint | undefined, link?: string) => (
    <a className="stat" href={link ?? "#/jobs"} key={label}>
      <span className="stat-value">{value === undefined ? "–" : String(value)}</span>
      <span className="stat-label">{label}</span>
    </a>
  );
  return (
    <>
      <h1>Overview</h1>
      <ErrorMessage error={status.error} prefix="Status" />
      <section aria-label="Jobs by state" className="stats">
        {stat("queued", counts?.queued, href("/jobs", { state: "queued" }))}
        {stat("running", counts?.running, href("/jobs", { state: "running" }))}
        {stat("completed", counts?.completed, href("/jobs", { state: "completed" }))}
        {stat("failed", counts?.failed, href("/jobs", { state: "failed" }))}
        {stat("cancelled", counts?.cancelled, href("/jobs", { state: "cancelled" }))}
        {stat("queue depth", status.data?.queueDepth, href("/jobs", { state: "queued" }))}
        {stat("running / slots", status.data ? `${status.data.running} / ${status.data.maxConcurrentJobs}` : undefined, href("/jobs", { state: "running" }))}
        {stat("throughput", formatRate(throughput), href("/jobs", { state: "running" }))}
      </section>
      <ActivityCharts />
      <div className="grid">
        <section className="card" aria-labelledby="active-title">
          <h2 id="active-title">Active exports</h2>
          {running.length === 0 && queued.length === 0 && <p className="empty">Nothing is running or waiting.</p>}
          {running.length > 0 && (
            <ul className="plain-list">
              {running.map((job) => (
                <li key={job.id} className="active-job">
                  <a href={`#/jobs/${job.id}`}>{job.definition?.name || job.definition?.vm || job.id}</a>
                  <ProgressBar progress={job.progress} state={job.state} label={`Progress of ${job.definition?.name || job.id}`} detail />
                </li>
              ))}
            </ul>
          )}
          {queued.length > 0 && (
            <p>
              {queued.length} queued: {queued.slice(0, 8).map((job, i) => (
                <span key={job.id}>{i > 0 && ", "}<a href={`#/jobs/${job.id}`}>{job.definition?.name || job.id}</a></span>
              ))}{queued.length > 8 && " …"}
            </p>
          )}
        </section>
        <RecentFailures failedCount={counts?.failed} />
        <section className="card" aria-labelledby="daemon-title">
          <h2 id="daemon-title">Daemon</h2>
          {status.data && (
            <dl className="key-values">
              <div><dt>version</dt><dd>{status.data.version}</dd></div>
              <div><dt>state</dt><dd>{status.data.lifecycle}</dd></div>
              <div><dt>up for</dt><dd>{formatDuration(status.data.uptimeSeconds)}</dd></div>
              <div><dt>store</dt><dd>{status.data.store}</dd></div>
              <div><dt>providers</dt><dd>{capabilities.data?.providers.map((p) => p.name).join(", ")}</dd></div>
              <div><dt>stream subscribers</dt><dd>{status.data.subscribers}</dd></div>
            </dl>
          )}
        </section>
      </div>
    </>
  );
}
