import { formText, useFormSubmit } from "../actions.ts";
import { MissedRunPolicy, OverlapPolicy, type GetCapabilitiesResponse, type Profile, type Schedule } from "../../index.ts";
import { formatLabels, parseLabels } from "../format.ts";
import { DefinitionFields, definitionFromForm } from "./definition-fields.tsx";
import { ErrorMessage } from "./error-message.tsx";
import { Field } from "./field.tsx";
import { useClient } from "../session.tsx";

/** Every Schedule field this form edits: an edit sends them all, so what the form shows is what gets stored. */
const SCHEDULE_PATHS = ["name", "description", "cron", "time_zone", "job_template", "enabled", "tags", "overlap_policy", "missed_run_policy"];

const BROWSER_TIME_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;
const TIME_ZONES = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];

/**
 * Create a schedule, or edit `schedule` (all form-managed fields are sent with an update_mask).
 * The job template's own inputs come from DefinitionFields; their names do not clash with the ones here.
 */
export function ScheduleForm({ schedule, capabilities, profiles, onSaved, onCancel }: {
  schedule?: Schedule;
  capabilities?: GetCapabilitiesResponse;
  profiles?: Profile[];
  onSaved(schedule: Schedule, created: boolean): void;
  onCancel(): void;
}) {
  const client = useClient();
  const { onSubmit, error, pending: saving } = useFormSubmit(async (form) => {
    const text = (name: string) => formText(form, name);
    const fields = {
      name: text("schedule_name"),
      description: text("schedule_description"),
      cron: text("cron"),
      timeZone: text("time_zone"),
      jobTemplate: definitionFromForm(form),
      enabled: form.get("enabled") === "on",
      tags: parseLabels(text("tags"), "tags"),
      overlapPolicy: Number(text("overlap_policy")) as OverlapPolicy,
      missedRunPolicy: Number(text("missed_run_policy")) as MissedRunPolicy,
    };
    const saved = schedule
      ? (await client.updateSchedule({ id: schedule.id, schedule: fields, updateMask: { paths: SCHEDULE_PATHS } })).schedule
      : (await client.createSchedule({ schedule: fields })).schedule;
    onSaved(saved!, !schedule);
  });
  const overlap = schedule?.overlapPolicy || OverlapPolicy.SKIP;
  const missed = schedule?.missedRunPolicy || MissedRunPolicy.SKIP;
  return (
    <form className="stacked" onSubmit={onSubmit} aria-label={schedule ? `Edit schedule ${schedule.name}` : "New schedule"}>
      <fieldset>
        <legend>Schedule</legend>
        <div className="row">
          <Field label="Name"><input type="text" name="schedule_name" required maxLength={256} defaultValue={schedule?.name} placeholder="nightly-web" /></Field>
          <Field label="Description"><input type="text" name="schedule_description" maxLength={2048} defaultValue={schedule?.description} /></Field>
        </div>
        <div className="row">
          <Field label="Cron" hint={<>5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first; <code>0 2 * * *</code> is 02:00 every day</>}>
            <input type="text" name="cron" required className="mono" spellCheck={false} defaultValue={schedule?.cron} placeholder="0 2 * * *" />
          </Field>
          <Field label="Time zone" hint="IANA name; empty means UTC">
            <input type="text" name="time_zone" list="schedule-time-zones" spellCheck={false} defaultValue={schedule ? schedule.timeZone : BROWSER_TIME_ZONE} placeholder="UTC" />
          </Field>
          <datalist id="schedule-time-zones">{TIME_ZONES.map((zone) => <option key={zone} value={zone} />)}</datalist>
        </div>
        <div className="row">
          <Field label="If the previous run is still going">
            <select name="overlap_policy" defaultValue={overlap}>
              <option value={OverlapPolicy.SKIP}>skip this run</option>
              <option value={OverlapPolicy.QUEUE}>queue it behind the running job</option>
              <option value={OverlapPolicy.ALLOW}>start it anyway</option>
            </select>
          </Field>
          <Field label="Runs missed while the daemon was down">
            <select name="missed_run_policy" defaultValue={missed}>
              <option value={MissedRunPolicy.SKIP}>skip them</option>
              <option value={MissedRunPolicy.RUN_ONCE}>run once at startup</option>
            </select>
          </Field>
        </div>
        <div className="row">
          <Field label="Tags" hint="key=value, separated by commas">
            <input type="text" name="tags" defaultValue={formatLabels(schedule?.tags ?? {})} placeholder="team=web" />
          </Field>
          <Field label="Enabled" inline><input type="checkbox" name="enabled" defaultChecked={schedule?.enabled ?? true} /></Field>
        </div>
      </fieldset>
      <h3 className="form-section">Job each run submits</h3>
      {schedule?.jobTemplate?.vsphere?.url && <p className="muted">Leave the vCenter password empty to keep the stored one.</p>}
      <DefinitionFields initial={schedule?.jobTemplate} capabilities={capabilities} profiles={profiles} />
      <ErrorMessage error={error} prefix="Not saved" />
      <div className="actions">
        <button type="submit" className="primary" disabled={saving}>{saving ? "Saving…" : schedule ? "Save changes" : "Create schedule"}</button>
        <button type="button" onClick={onCancel}>Cancel</button>
      </div>
    </form>
  );
}
