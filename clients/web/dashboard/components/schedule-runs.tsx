import { useState } from "react";
import { JobState, type ScheduleRun } from "../../index.ts";
import { formatDuration, formatTime } from "../format.ts";
import { useQuery } from "../query.ts";
import { useClient } from "../session.tsx";
import { ErrorMessage } from "./error-message.tsx";
import { Pager } from "./pager.tsx";
import { StateBadge } from "./state-badge.tsx";

const PAGE_SIZE = 20;

/** The runs of a schedule, newest first; reloaded when `refresh` changes (a trigger, a job state change). */
export function ScheduleRuns({ scheduleId, refresh }: { scheduleId: string; refresh: number }) {
  const client = useClient();
  const [tokens, setTokens] = useState<string[]>([]);
  const runs = useQuery(
    (signal) => client.listScheduleRuns({ scheduleId, pageSize: PAGE_SIZE, pageToken: tokens.at(-1) ?? "" }, { signal }),
    [client, scheduleId, tokens, refresh],
  );
  return (
    <>
      <ErrorMessage error={runs.error} prefix="Runs" />
      {runs.data && (
        <table aria-label="Runs" aria-busy={runs.loading}>
          <thead>
            <tr><th>Trigger</th><th>Due</th><th>Ran</th><th>State</th><th className="num">Duration</th><th>Job</th><th>Skipped because</th></tr>
          </thead>
          <tbody>{runs.data.runs.map((run) => <RunRow key={run.id} run={run} />)}</tbody>
        </table>
      )}
      {runs.data?.runs.length === 0 && <p className="empty">No runs yet.</p>}
      {runs.data && (tokens.length > 0 || runs.data.nextPageToken) && (
        <Pager label="Runs pages" tokens={tokens} nextToken={runs.data.nextPageToken} onChange={setTokens} />
      )}
      {!runs.data && !runs.error && <p aria-busy="true">Loading runs…</p>}
    </>
  );
}

/** A run without a job or a batch was skipped (the overlap policy, or the daemon stopping before a queued run started). */
function RunRow({ run }: { run: ScheduleRun }) {
  // A run with a selector made a batch (batch_id, no job of its own).
  const skipped = !run.jobId && !run.batchId;
  return (
    <tr>
      <td>{run.trigger}</td>
      <td>{formatTime(run.scheduledTime)}</td>
      <td>{formatTime(run.runTime)}</td>
      <td>
        {skipped ? <span className="badge badge-skipped">skipped</span>
          : run.batchId && run.state === JobState.UNSPECIFIED ? <span className="muted">see its batch</span> : <StateBadge state={run.state} />}
      </td>
      <td className="num">{run.durationSeconds > 0 ? formatDuration(run.durationSeconds) : "–"}</td>
      <td>
        {run.jobId && <a className="mono" href={`#/jobs/${encodeURIComponent(run.jobId)}`}>{run.jobId}</a>}
        {run.batchId && <>batch <a className="mono" href={`#/batches/${encodeURIComponent(run.batchId)}`}>{run.batchId}</a></>}
        {skipped && "–"}
      </td>
      <td>{run.skippedReason}</td>
    </tr>
  );
}
