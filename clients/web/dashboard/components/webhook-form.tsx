import { formText, useFormSubmit } from "../actions.ts";
import { create } from "@bufbuild/protobuf";
import { DurationSchema, type Duration } from "@bufbuild/protobuf/wkt";
import type { Webhook } from "../../index.ts";
import { ErrorMessage } from "./error-message.tsx";
import { Field } from "./field.tsx";
import { useClient } from "../session.tsx";

export const WEBHOOK_EVENTS = ["job.created", "job.started", "job.progress", "job.completed", "job.failed", "job.cancelled", "schedule.triggered", "vm.discovered"];
/** What the daemon sends the header values back as: they are write-only. */
const MASKED = "***";

/**
 * Add a webhook, or edit `webhook`. An edit always sends url, events, timeout, max_attempts and enabled;
 * headers only when the field was changed (their values come back masked), the secret only when one is typed.
 */
export function WebhookForm({ webhook, onSaved, onCancel }: { webhook?: Webhook; onSaved(webhook: Webhook, secret: string): void; onCancel(): void }) {
  const client = useClient();
  const initialHeaders = Object.entries(webhook?.headers ?? {}).map(([name, value]) => `${name}: ${value}`).join("\n");
  const { onSubmit, error, pending: saving } = useFormSubmit(async (form) => {
    const text = (name: string) => formText(form, name);
    const headersText = text("headers");
    const headersChanged = !webhook || headersText !== initialHeaders.trim();
    const headers = parseHeaders(headersText);
    const masked = Object.entries(headers).find(([, value]) => value === MASKED);
    if (webhook && headersChanged && masked) {
      throw new Error(`headers: type the value of "${masked[0]}" again; header values are write-only and shown as ${MASKED}`);
    }
    const maxAttempts = text("max_attempts");
    const fields = {
      url: text("url"),
      events: form.getAll("events").map(String),
      headers,
      secret: text("secret"),
      timeout: durationOf(text("timeout")),
      maxAttempts: maxAttempts ? Number(maxAttempts) : 0,
      enabled: form.get("enabled") === "on",
    };
    if (webhook) {
      const paths = ["url", "events", "timeout", "max_attempts", "enabled", ...(headersChanged ? ["headers"] : []), ...(fields.secret ? ["secret"] : [])];
      const { webhook: saved } = await client.updateWebhook({ id: webhook.id, webhook: fields, updateMask: { paths } });
      onSaved(saved!, "");
    } else {
      const { webhook: created, secret } = await client.createWebhook({ webhook: fields });
      onSaved(created!, secret);
    }
  });
  const subscribed = new Set(webhook?.events.filter((e) => e !== "*"));
  return (
    <form className="stacked" onSubmit={onSubmit} aria-label={webhook ? `Edit webhook ${webhook.url}` : "Add webhook"}>
      <Field label="URL" hint="http(s); the daemon refuses loopback and private addresses unless its config sets webhooks.allow_private_targets">
        <input type="url" name="url" required defaultValue={webhook?.url} placeholder="https://hooks.example.com/hypervisord" />
      </Field>
      <fieldset>
        <legend>Events</legend>
        <div className="event-choices">
          {WEBHOOK_EVENTS.map((e) => (
            <Field key={e} label={e} inline><input type="checkbox" name="events" value={e} defaultChecked={subscribed.has(e)} /></Field>
          ))}
        </div>
        <span className="field-hint">None checked: every event except job.progress (which is sent only when checked).</span>
      </fieldset>
      <Field label="Headers" hint={webhook
        ? <>one <code>name: value</code> per line; values are hidden ({MASKED}): leave the field as it is to keep them, or retype every value</>
        : <>one <code>name: value</code> per line, sent with every delivery, e.g. <code>authorization: Bearer …</code></>}>
        <textarea name="headers" className="mono" spellCheck={false} defaultValue={initialHeaders} placeholder="x-team: web" />
      </Field>
      <Field label="Signing secret" hint={webhook
        ? <>empty keeps the current secret; or paste a new <code>whsec_…</code> to replace it</>
        : <>empty: the daemon generates one and shows it once; or paste a <code>whsec_…</code></>}>
        <input type="password" name="secret" autoComplete="new-password" spellCheck={false} />
      </Field>
      <div className="row">
        <Field label="Timeout (seconds)" hint="per attempt, 0.1 to 120; empty means 10">
          <input type="number" name="timeout" min={0.1} max={120} step="any" defaultValue={webhook?.timeout ? seconds(webhook.timeout) : undefined} placeholder="10" />
        </Field>
        <Field label="Max attempts" hint="per event, 1 to 100; empty means 8">
          <input type="number" name="max_attempts" min={1} max={100} step={1} defaultValue={webhook?.maxAttempts || undefined} placeholder="8" />
        </Field>
        <Field label="Enabled" inline><input type="checkbox" name="enabled" defaultChecked={webhook?.enabled ?? true} /></Field>
      </div>
      <ErrorMessage error={error} prefix="Not saved" />
      <div className="actions">
        <button type="submit" className="primary" disabled={saving}>{saving ? "Saving…" : webhook ? "Save changes" : "Add webhook"}</button>
        <button type="button" onClick={onCancel}>Cancel</button>
      </div>
    </form>
  );
}

/** "name: value" lines; throws naming the bad line. */
function parseHeaders(text: string): Record<string, string> {
  const headers: Record<string, string> = {};
  text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    const colon = line.indexOf(":");
    if (colon <= 0) throw new Error(`headers line ${i + 1}: "${line.trim()}" is not name: value`);
    headers[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
  });
  return headers;
}

/** The timeout field as a Duration; undefined (the daemon's default) when empty. */
function durationOf(text: string): Duration | undefined {
  if (!text) return undefined;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`timeout: "${text}" is not a positive number of seconds`);
  const whole = Math.floor(value);
  return create(DurationSchema, { seconds: BigInt(whole), nanos: Math.round((value - whole) * 1e9) });
}

function seconds(d: Duration): number {
  return Number(d.seconds) + d.nanos / 1e9;
}
