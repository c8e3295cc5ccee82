import { useState } from "react";
import { ExportFormat, isTerminal, type Job, type JobDefinition } from "../../index.ts";
import { ConfirmButton } from "../components/confirm-button.tsx";
import { ErrorMessage } from "../components/error-message.tsx";
import { KeyValues } from "../components/key-values.tsx";
import { ProgressBar } from "../components/progress-bar.tsx";
import { StateBadge } from "../components/state-badge.tsx";
import { JobLogs } from "../components/job-logs.tsx";
import { JobAttempts } from "../components/job-attempts.tsx";
import { JobThroughput } from "../components/job-throughput.tsx";
import { formatBytes, formatDuration, formatLabels, formatTime, stateName } from "../format.ts";
import { jobDuration, jobFiles, jobFormat } from "../job-facts.ts";
import { useQuery, useThrottled } from "../query.ts";
import { freshestJob } from "../live.ts";
import { useClient, useLive } from "../session.tsx";

export function JobPage({ jobId }: { jobId: string }) {
  const client = useClient();
  const live = useLive();
  const liveJob = live.active.get(jobId) ?? live.ended.get(jobId);
  // Reload the whole job when its state changes (the live map drops it when it ends).
  const changes = useThrottled(live.changes, 500);
  const loaded = useQuery((signal) => client.getJob({ jobId }, { signal }), [client, jobId, changes]);
  const history = useQuery((signal) => client.getJobHistory({ jobId }, { signal }), [client, jobId, changes]);
  const [cancelError, setCancelError] = useState<unknown>();
  const job = loaded.data?.job && freshestJob(loaded.data.job, liveJob);
  if (!job) return <>{loaded.error ? <><h1>Job {jobId}</h1><ErrorMessage error={loaded.error} /></> : <p aria-busy="true">Loading job {jobId}…</p>}</>;
  const name = job.definition?.name || job.id;
  const cancel = async () => {
    setCancelError(undefined);
    try {
      await client.cancelJob({ jobId, reason: "cancelled from the dashboard" });
      loaded.reload();
    } catch (err) {
      setCancelError(err);
    }
  };
  return (
    <>
      <div className="page-head">
        <h1>{name}</h1>
        <StateBadge state={job.state} />
        <span className="muted mono">{job.id}</span>
        <div className="actions">
          {!isTerminal(job.state) && <ConfirmButton className="danger" confirm="Cancel this job?" onConfirm={cancel}>Cancel job</ConfirmButton>}
          <a href={`#/export?from=${encodeURIComponent(job.id)}`}>Export again…</a>
        </div>
      </div>
      <ErrorMessage error={cancelError} prefix="Cancel" />
      <ErrorMessage error={loaded.error} />
      <section className="card" aria-labelledby="progress-title">
        <h2 id="progress-title">Progress</h2>
        <ProgressBar progress={job.progress} state={job.state} label={`Progress of ${name}`} detail files={jobFiles(job)} />
        <KeyValues rows={[
          ["attempt", job.maxAttempts ? `${job.attempt} of ${job.maxAttempts}` : String(job.attempt)],
          ["created", formatTime(job.createTime)],
          ["started", job.startTime && formatTime(job.startTime)],
          ["ended", job.endTime && formatTime(job.endTime)],
          ["duration", job.attempts.length > 1 ? `${formatDuration(jobDuration(job))} over ${job.attempts.length} attempts` : formatDuration(jobDuration(job))],
          ["next attempt", job.nextAttemptTime && formatTime(job.nextAttemptTime)],
          ["schedule", job.scheduleId && <a href="#/schedules">{job.scheduleId}</a>],
          ["batch", job.batchId && <a href={`#/batches/${job.batchId}`}>{job.batchId}</a>],
          ["pending cleanup", job.pendingCleanup && <span className="error-text">{job.pendingCleanup}</span>],
        ]} />
        <JobAttempts job={job} />
      </section>
      <JobThroughput job={job} />
      {job.error && (
        <section className="card" aria-labelledby="error-title">
          <h2 id="error-title">Error</h2>
          <p className="error" role="alert"><strong>{job.error.code}</strong>: {job.error.message}</p>
          <p className="muted">{job.error.retryable ? "Transient: retried automatically while attempts remain." : "Not retried: fix the cause and export again."}</p>
        </section>
      )}
      {job.result && <ResultSection job={job} />}
      <div className="grid">
        <section className="card" aria-labelledby="definition-title">
          <h2 id="definition-title">Definition</h2>
          {job.definition && <DefinitionView definition={job.definition} />}
        </section>
        <section className="card" aria-labelledby="history-title">
          <h2 id="history-title">History</h2>
          <ErrorMessage error={history.error} />
          <ol className="plain-list">
            {history.data?.transitions.map((t) => (
              <li key={String(t.seq)}>
                <span className="muted">{formatTime(t.time)}</span> {t.fromState ? `${stateName(t.fromState)} → ` : ""}<strong>{stateName(t.toState)}</strong>
                {t.reason && <> · {t.reason}</>}{t.actor && <span className="muted"> ({t.actor})</span>}
              </li>
            ))}
          </ol>
        </section>
      </div>
      <section className="card" aria-labelledby="logs-title">
        <h2 id="logs-title">Logs</h2>
        <JobLogs jobId={job.id} follow={!isTerminal(job.state)} />
      </section>
    </>
  );
}

function ResultSection({ job }: { job: Job }) {
  const result = job.result!;
  return (
    <section className="card" aria-labelledby="result-title">
      <h2 id="result-title">Result</h2>
      <KeyValues rows={[
        ["output directory", <code>{result.outputDir}</code>],
        ["OVF", result.ovfPath && <code>{result.ovfPath}</code>],
        ["OVA", result.ovaPath && <code>{result.ovaPath}</code>],
        ["OVA method", result.ovaMethod],
        ["consistency", result.consistency && `${result.consistency.replace(/_/g, " ")}${result.applicationConsistent ? "" : " (not application-consistent)"}`],
        ["manifest", result.manifestPath && <code>{result.manifestPath}</code>],
        ["artifact manifest", result.artifactManifestPath && <code>{result.artifactManifestPath}</code>],
        ["compression ratio", result.compressionRatio > 0 && result.compressionRatio.toFixed(3)],
        ["format", jobFormat(job.definition)],
        ["export duration", formatDuration(result.durationSeconds)],
      ]} />
      {result.warnings.length > 0 && <ul>{result.warnings.map((w) => <li key={w} className="muted">⚠ {w}</li>)}</ul>}
      <div className="table-wrap">
        <table aria-label="Result files">
          <thead><tr><th>File</th><th className="num">Size</th><th>SHA-256</th></tr></thead>
          <tbody>
            {result.files.map((file) => (
              <tr key={file.path}><td className="mono">{file.path}</td><td className="num">{formatBytes(file.size)}</td><td className="mono">{file.sha256}</td></tr>
            ))}
          </tbody>
        </table>
      </div>
      {result.convertedDisks.length > 0 && (
        <div className="table-wrap spaced">
          <table aria-label="Converted disks">
            <thead><tr><th>Converted disk</th><th>Format</th><th className="num">Size</th><th>SHA-256</th><th>Verification</th></tr></thead>
            <tbody>
              {result.convertedDisks.map((disk) => (
                <tr key={disk.path}>
                  <td className="mono">{disk.path}<div className="muted">from {disk.source}</div></td>
                  <td>{disk.format}</td>
                  <td className="num">{formatBytes(disk.size)}</td>
                  <td className="mono">{disk.sha256}</td>
                  <td>{disk.verification || "–"}{disk.verificationDetail && <div className="muted">{disk.verificationDetail}</div>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

/** The job as submitted. Passwords are never shown (the daemon does not send them back either). */
function DefinitionView({ definition: d }: { definition: JobDefinition }) {
  return (
    <KeyValues rows={[
      ["provider", d.provider],
      ["VM", <code>{d.vm}</code>],
      ["vCenter", d.vsphere?.url && `${d.vsphere.url}${d.vsphere.username ? ` as ${d.vsphere.username}` : ""}${d.vsphere.insecure ? " (TLS not verified)" : ""}`],
      ["password", d.vsphere?.url && "hidden"],
      ["profile", d.profile],
      ["output directory", <code>{d.outputDir}</code>],
      ["format", d.format === ExportFormat.OVA ? "OVA" : "OVF"],
      ["compression", d.compress && `gzip${d.compressionLevel !== undefined ? ` level ${d.compressionLevel}` : ""}`],
      ["convert to", d.convertTo],
      ["verify", d.verify && "yes"],
      ["manifest", d.generateManifest === false ? "none" : d.manifestAlgorithm || "sha256"],
      ["remove devices", d.removeDevices.join(", ")],
      ["image files", d.includeImageFiles && "included"],
      ["parallel downloads", d.parallelDownloads > 0 && String(d.parallelDownloads)],
      ["bandwidth limit", d.bandwidthLimit > 0n && `${formatBytes(d.bandwidthLimit)}/s`],
      ["power off first", d.powerOff && "yes"],
      ["running VM", d.runningVmPolicy.replace(/_/g, " ")],
      ["quiesce", d.quiesce === false ? "no" : d.quiescePolicy && `if it fails: ${d.quiescePolicy}`],
      ["keep partial files", d.keepPartial && "yes"],
      ["priority", d.priority],
      ["labels", formatLabels(d.labels)],
      ["request id", d.requestId],
    ]} />
  );
}
