import { Fragment, useEffect, useRef, useState, type ReactNode } from "react";
import type { Schedule, TriggerScheduleResponse } from "../../index.ts";
import { ConfirmButton } from "../components/confirm-button.tsx";
import { ErrorMessage } from "../components/error-message.tsx";
import { Pager } from "../components/pager.tsx";
import { ScheduleForm } from "../components/schedule-form.tsx";
import { ScheduleRuns } from "../components/schedule-runs.tsx";
import { useRowActions, useToggleSet } from "../actions.ts";
import { VisuallyHidden } from "../components/visually-hidden.tsx";
import { formatTime } from "../format.ts";
import { useQuery, useThrottled } from "../query.ts";
import { useClient, useLive } from "../session.tsx";
import "./admin.css";

const PAGE_SIZE = 100;
const COLUMNS = 8;

type Editing = { mode: "new" } | { mode: "edit"; schedule: Schedule };

/** Cron schedules of export jobs: list, create, edit, enable/disable, trigger now, delete, and each one's runs. */
export function SchedulesPage() {
  const client = useClient();
  const live = useLive();
  // Runs create jobs: the next/last run times and run counts change with them.
  const changes = useThrottled(live.changes, 2000);
  const [tokens, setTokens] = useState<string[]>([]);
  const list = useQuery(
    (signal) => client.listSchedules({ pageSize: PAGE_SIZE, pageToken: tokens.at(-1) ?? "" }, { signal }),
    [client, tokens, changes],
  );
  // What the template form offers (providers, conversions, output roots, profiles).
  const setup = useQuery(async (signal) => {
    const [capabilities, profiles] = await Promise.all([client.getCapabilities({}, { signal }), client.listProfiles({}, { signal })]);
    return { capabilities, profiles: profiles.profiles };
  }, [client]);
  const [editing, setEditing] = useState<Editing>();
  const { run: act, busy, failure, setFailure, notice, setNotice } = useRowActions<ReactNode>(list.reload);
  const [expanded, toggleRuns] = useToggleSet();
  const [runsVersion, setRunsVersion] = useState(0);
  const formHeading = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    if (!editing) return;
    formHeading.current?.scrollIntoView({ block: "start" });
    formHeading.current?.focus();
  }, [editing]);

  const trigger = (s: Schedule) => act(`Trigger ${s.name}`, s.id, async () => {
    const result = await client.triggerSchedule({ id: s.id });
    setNotice(<TriggerResult name={s.name} result={result} />);
    setRunsVersion((v) => v + 1);
  });
  const setEnabled = (s: Schedule, enabled: boolean) => act(`${enabled ? "Enable" : "Disable"} ${s.name}`, s.id, async () => {
    if (enabled) await client.enableSchedule({ id: s.id });
    else await client.disableSchedule({ id: s.id });
  });
  const remove = (s: Schedule) => act(`Delete ${s.name}`, s.id, async () => {
    await client.deleteSchedule({ id: s.id });
    if (editing?.mode === "edit" && editing.schedule.id === s.id) setEditing(undefined);
    setNotice(<>Deleted schedule <strong>{s.name}</strong>.</>);
  });
  const saved = (schedule: Schedule, created: boolean) => {
    setEditing(undefined);
    setFailure(undefined);
    setNotice(<>{created ? "Created" : "Saved"} schedule <strong>{schedule.name}</strong>{schedule.nextRunTime ? <>; next run {formatTime(schedule.nextRunTime)}</> : ""}.</>);
    list.reload();
  };

  const schedules = list.data?.schedules ?? [];
  return (
    <>
      <div className="page-head">
        <h1>Schedules</h1>
        <span className="muted">Cron-driven exports: each run submits the schedule's job template.</span>
        <button type="button" className="primary" onClick={() => setEditing({ mode: "new" })}>New schedule</button>
      </div>
      {editing && (
        <section className="card" aria-labelledby="schedule-form-title">
          <h2 id="schedule-form-title" ref={formHeading} tabIndex={-1}>{editing.mode === "new" ? "New schedule" : `Edit ${editing.schedule.name}`}</h2>
          <ErrorMessage error={setup.error} prefix="Export settings" />
          {setup.data ? (
            <ScheduleForm
              key={editing.mode === "new" ? "new" : editing.schedule.id}
              schedule={editing.mode === "edit" ? editing.schedule : undefined}
              capabilities={setup.data.capabilities}
              profiles={setup.data.profiles}
              onSaved={saved}
              onCancel={() => setEditing(undefined)}
            />
          ) : !setup.error && <p aria-busy="true">Loading…</p>}
        </section>
      )}
      {notice && <div className="notice" role="status">{notice}</div>}
      {failure && <ErrorMessage error={failure.error} prefix={failure.action} />}
      <ErrorMessage error={list.error} prefix="Schedules" />
      <div className="table-wrap">
        <table aria-label="Schedules" aria-busy={list.loading}>
          <thead>
            <tr><th>Name</th><th>Cron</th><th>State</th><th>Next run</th><th>Last run</th><th className="num">Runs</th><th>Template VM</th><th>Actions</th></tr>
          </thead>
          <tbody>
            {schedules.map((s) => (
              <Fragment key={s.id}>
                <tr>
                  <td><strong>{s.name}</strong>{s.description && <div className="muted">{s.description}</div>}</td>
                  <td><code>{s.cron}</code><div className="muted">{s.timeZone || "UTC"}</div></td>
                  <td><span className={`badge badge-${s.enabled ? "enabled" : "disabled"}`}>{s.enabled ? "enabled" : "disabled"}</span></td>
                  <td>{s.enabled ? formatTime(s.nextRunTime) : "–"}</td>
                  <td>{formatTime(s.lastRunTime)}</td>
                  <td className="num">{String(s.runCount)}</td>
                  <td><code>{s.jobTemplate?.vm || [s.jobTemplate?.vmSelector?.folder, s.jobTemplate?.vmSelector?.nameGlob].filter(Boolean).join(" ")}</code>{s.jobTemplate?.provider && <div className="muted">{s.jobTemplate.provider}</div>}</td>
                  <td>
                    <div className="row-actions">
                      <button type="button" disabled={busy?.id === s.id} onClick={() => void setEnabled(s, !s.enabled)}>
                        {s.enabled ? "Disable" : "Enable"}<VisuallyHidden> {s.name}</VisuallyHidden>
                      </button>
                      <button type="button" disabled={busy?.id === s.id} onClick={() => void trigger(s)}>Trigger now<VisuallyHidden> {s.name}</VisuallyHidden></button>
                      <button type="button" onClick={() => setEditing({ mode: "edit", schedule: s })}>Edit<VisuallyHidden> {s.name}</VisuallyHidden></button>
                      <button type="button" aria-expanded={expanded.has(s.id)} onClick={() => toggleRuns(s.id)}>Runs<VisuallyHidden> of {s.name}</VisuallyHidden></button>
                      <ConfirmButton className="danger" confirm={`Delete schedule ${s.name}?`} disabled={busy?.id === s.id} onConfirm={() => remove(s)}>
                        Delete<VisuallyHidden> {s.name}</VisuallyHidden>
                      </ConfirmButton>
                    </div>
                  </td>
                </tr>
                {expanded.has(s.id) && (
                  <tr className="detail-row">
                    <td colSpan={COLUMNS}><ScheduleRuns scheduleId={s.id} refresh={runsVersion + changes} /></td>
                  </tr>
                )}
              </Fragment>
            ))}
          </tbody>
        </table>
        {list.data && schedules.length === 0 && <p className="empty table-empty">No schedules yet. “New schedule” makes one.</p>}
      </div>
      {(tokens.length > 0 || list.data?.nextPageToken) && (
        <Pager label="Schedules pages" tokens={tokens} nextToken={list.data?.nextPageToken ?? ""} onChange={setTokens} />
      )}
    </>
  );
}

/** The created job, or why there is none. */
function TriggerResult({ name, result }: { name: string; result: TriggerScheduleResponse }) {
  const jobId = result.job?.id || result.run?.jobId;
  if (jobId) return <>Triggered <strong>{name}</strong>: started job <a href={`#/jobs/${encodeURIComponent(jobId)}`}>{result.job?.definition?.name || jobId}</a>.</>;
  if (result.run?.skippedReason) return <>Triggered <strong>{name}</strong>: skipped, {result.run.skippedReason}.</>;
  return <>Triggered <strong>{name}</strong>: queued behind its running job; it starts when that one ends.</>;
}
