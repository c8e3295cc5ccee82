import { JobState, type Job } from "../../index.ts";
import { elapsedSeconds, formatDuration, formatTime, stateName } from "../format.ts";

/** Each run of the job: when it started and ended, how long it took and how it ended (a retry reads "queued"). */
export function JobAttempts({ job }: { job: Job }) {
  if (job.attempts.length === 0) return null;
  return (
    <div className="table-wrap spaced">
      <table aria-label="Attempts">
        <thead><tr><th className="num">Attempt</th><th>Started</th><th>Ended</th><th className="num">Duration</th><th>Outcome</th><th>Reason</th></tr></thead>
        <tbody>
          {job.attempts.map((a) => {
            const running = !a.endTime;
            return (
              <tr key={a.attempt}>
                <td className="num">{a.attempt}</td>
                <td>{formatTime(a.startTime)}</td>
                <td>{running ? "running" : formatTime(a.endTime)}</td>
                <td className="num">{formatDuration(running ? elapsedSeconds(a.startTime, undefined) : a.durationSeconds)}</td>
                <td>{a.outcome === JobState.UNSPECIFIED ? "–" : a.outcome === JobState.QUEUED ? "requeued" : stateName(a.outcome)}</td>
                <td>{a.reason || "–"}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
