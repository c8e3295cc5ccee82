import { JobState } from "../../index.ts";
import { groupFailures } from "../failure-groups.ts";
import { formatDate, stateName } from "../format.ts";
import { useQuery } from "../query.ts";
import { href } from "../router.ts";
import { useClient } from "../session.tsx";
import { ErrorMessage } from "./error-message.tsx";

/** How many of the latest failed jobs are grouped; older ones count in the total only. */
const WINDOW = 200;
const SHOWN = 8;

/**
 * The latest failed jobs grouped by error code and message pattern: count, last seen, the latest job.
 * Reloaded when the daemon's count of failed jobs moves (`failedCount`, from GetStatus), not on every
 * state change: a page of 200 jobs is too much to fetch each second while exports run.
 */
export function RecentFailures({ failedCount }: { failedCount: bigint | undefined }) {
  const client = useClient();
  const failures = useQuery((signal) => client.listJobs({ states: [JobState.FAILED], pageSize: WINDOW }, { signal }), [client, String(failedCount)]);
  const jobs = failures.data?.jobs ?? [];
  const groups = groupFailures(jobs);
  const total = failures.data?.totalSize ?? 0n;
  return (
    <section className="card" aria-labelledby="failures-title">
      <h2 id="failures-title">Recent failures</h2>
      <ErrorMessage error={failures.error} />
      {failures.data && jobs.length === 0 && <p className="empty">No failed jobs.</p>}
      {groups.length > 0 && (
        <div className="table-wrap">
          <table aria-label="Failures by error">
            <thead><tr><th>Error</th><th className="num">Jobs</th><th>Last seen</th><th>Latest</th></tr></thead>
            <tbody>
              {groups.slice(0, SHOWN).map((g) => (
                <tr key={`${g.code}\0${g.pattern}`}>
                  <td><strong className="error-code">{g.code}:</strong> <span title={g.count > 1 ? `pattern: ${g.pattern}` : undefined}>{g.message || "(no message)"}</span></td>
                  <td className="num">{g.count}</td>
                  <td>{formatDate(g.lastSeen)}</td>
                  <td><a href={`#/jobs/${g.latest.id}`}>{g.latest.definition?.name || g.latest.id}</a></td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <p className="muted">
        {groups.length > SHOWN && `${groups.length - SHOWN} more kinds of error. `}
        {total > BigInt(jobs.length) && `Grouped: the latest ${jobs.length} of ${String(total)} failed jobs. `}
        {total > 0n && <a href={href("/jobs", { state: stateName(JobState.FAILED) })}>All {String(total)} failed jobs</a>}
      </p>
    </section>
  );
}
