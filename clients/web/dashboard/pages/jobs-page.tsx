import { useEffect, useState, type FormEvent } from "react";
import { JobState, type Job } from "../../index.ts";
import { ErrorMessage } from "../components/error-message.tsx";
import { Field } from "../components/field.tsx";
import { Pager } from "../components/pager.tsx";
import { ProgressBar } from "../components/progress-bar.tsx";
import { StateBadge } from "../components/state-badge.tsx";
import { formatDuration, formatLabels, formatTime, parseLabels, STATES, stateName } from "../format.ts";
import { jobDuration, jobFormat } from "../job-facts.ts";
import { useQuery, useThrottled } from "../query.ts";
import { navigate } from "../router.ts";
import { freshestJob } from "../live.ts";
import { useClient, useLive } from "../session.tsx";

const PAGE_SIZE = 25;

/** The filters live in the URL (#/jobs?state=failed&label=team%3Dweb&provider=vsphere&q=web), so a view can be bookmarked. */
export function JobsPage({ params }: { params: URLSearchParams }) {
  const client = useClient();
  const live = useLive();
  const filters = { state: params.get("state") ?? "", label: params.get("label") ?? "", provider: params.get("provider") ?? "", q: params.get("q") ?? "" };
  const key = JSON.stringify(filters);
  const [tokens, setTokens] = useState<string[]>([]);
  useEffect(() => setTokens([]), [key]);
  const changes = useThrottled(live.changes, 1500);
  const capabilities = useQuery((signal) => client.getCapabilities({}, { signal }), [client]);
  const labels = parsedLabels(filters.label);
  const jobs = useQuery(async (signal) => {
    const state = STATES.find((s) => stateName(s) === filters.state);
    return client.listJobs({
      states: state === undefined ? [] : [state],
      labels: labels.value ?? {},
      provider: filters.provider,
      query: filters.q,
      pageSize: PAGE_SIZE,
      pageToken: tokens.at(-1) ?? "",
    }, { signal });
  }, [client, key, tokens, changes]);

  const apply = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const value = (name: string) => String(form.get(name) ?? "").trim() || undefined;
    navigate("/jobs", { state: value("state"), label: value("label"), provider: value("provider"), q: value("q") });
  };

  return (
    <>
      <div className="page-head">
        <h1>Jobs</h1>
        <span className="muted" aria-live="polite">{jobs.data ? `${String(jobs.data.totalSize)} matching` : ""}</span>
        <a href="#/export">New export</a>
      </div>
      <form className="filters" role="search" aria-label="Filter jobs" onSubmit={apply} key={key}>
        <Field label="State">
          <select name="state" defaultValue={filters.state}>
            <option value="">any</option>
            {STATES.map((s) => <option key={s} value={stateName(s)}>{stateName(s)}</option>)}
          </select>
        </Field>
        <Field label="Provider">
          <select name="provider" defaultValue={filters.provider}>
            <option value="">any</option>
            {capabilities.data?.providers.map((p) => <option key={p.name} value={p.name}>{p.name}</option>)}
          </select>
        </Field>
        <Field label="Label">
          <input type="text" name="label" placeholder="team=web" defaultValue={filters.label} />
        </Field>
        <Field label="Search">
          <input type="search" name="q" placeholder="name, VM, id, output" defaultValue={filters.q} />
        </Field>
        <button type="submit" className="primary">Filter</button>
        {(filters.state || filters.label || filters.provider || filters.q) && <a href="#/jobs">Clear filters</a>}
      </form>
      <ErrorMessage error={labels.error} />
      <ErrorMessage error={jobs.error} />
      <div className="table-wrap">
        <table aria-label="Jobs" aria-busy={jobs.loading}>
          <thead>
            <tr><th>Job</th><th>State</th><th>Error</th><th>Format</th><th>Progress</th><th>Created</th><th className="num">Duration</th><th>Provider</th><th>Labels</th></tr>
          </thead>
          <tbody>
            {jobs.data?.jobs.map((job) => <JobRow key={job.id} job={freshestJob(job, live.active.get(job.id) ?? live.ended.get(job.id))!} />)}
          </tbody>
        </table>
        {jobs.data?.jobs.length === 0 && <p className="empty table-empty">No jobs match.</p>}
      </div>
      <Pager label="Jobs pages" tokens={tokens} nextToken={jobs.data?.nextPageToken ?? ""} onChange={setTokens} />
    </>
  );
}

/** The label filter, or why it is not one (shown, and the filter left out). */
function parsedLabels(text: string): { value?: Record<string, string>; error?: unknown } {
  try {
    return { value: parseLabels(text, "label") };
  } catch (error) {
    return { error };
  }
}

/** One job: its name links to it, with the VM under it only when the name does not already say it. */
function JobRow({ job }: { job: Job }) {
  const name = job.definition?.name || job.definition?.vm || job.id;
  const vm = job.definition?.vm ?? "";
  return (
    <tr>
      <td><a href={`#/jobs/${job.id}`}>{name}</a>{vm && vm !== name && !vm.endsWith(`/${name}`) && <div className="muted mono">{vm}</div>}</td>
      <td><StateBadge state={job.state} />{job.state === JobState.QUEUED && job.attempt > 0 && <span className="muted"> retry {job.attempt + 1}</span>}</td>
      <td>{job.error?.code ? <span className="error-code" title={job.error.message}>{job.error.code}</span> : "–"}</td>
      <td className="mono">{jobFormat(job.definition)}</td>
      <td><ProgressBar progress={job.progress} state={job.state} label={`Progress of ${name}`} /></td>
      <td>{formatTime(job.createTime)}</td>
      <td className="num">{formatDuration(jobDuration(job))}</td>
      <td>{job.definition?.provider}</td>
      <td>{formatLabels(job.definition?.labels ?? {})}</td>
    </tr>
  );
}
