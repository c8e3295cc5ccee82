import { Fragment, useEffect, useRef, useState, type ReactNode } from "react";
import { DeliveryState, type Webhook, type WebhookDelivery } from "../../index.ts";
import { ConfirmButton } from "../components/confirm-button.tsx";
import { ErrorMessage } from "../components/error-message.tsx";
import { VisuallyHidden } from "../components/visually-hidden.tsx";
import { DeliveryStateBadge, formatLatency, WebhookDeliveries } from "../components/webhook-deliveries.tsx";
import { WebhookForm } from "../components/webhook-form.tsx";
import { useRowActions, useToggleSet } from "../actions.ts";
import { useQuery } from "../query.ts";
import { useClient } from "../session.tsx";
import "./admin.css";

const COLUMNS = 6;

type Editing = { mode: "new" } | { mode: "edit"; webhook: Webhook };
type Notice = { ok: boolean; content: ReactNode };

/** HTTP endpoints told about job and schedule events: list, add, edit, enable/disable, test, delete, and their deliveries. */
export function WebhooksPage() {
  const client = useClient();
  const list = useQuery((signal) => client.listWebhooks({}, { signal }), [client]);
  const [editing, setEditing] = useState<Editing>();
  // The signing secret of a webhook just created: on screen until dismissed, kept nowhere else.
  const [secret, setSecret] = useState<{ url: string; secret: string }>();
  const { run: act, busy, failure, setFailure, notice, setNotice } = useRowActions<Notice>(list.reload);
  const [expanded, toggleDeliveries] = useToggleSet();
  const [deliveriesVersion, setDeliveriesVersion] = useState(0);
  const formHeading = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    if (editing) formHeading.current?.focus();
  }, [editing]);

  const setEnabled = (w: Webhook, enabled: boolean) => act(`${enabled ? "Enable" : "Disable"} ${w.url}`, w.id, async () => {
    await client.updateWebhook({ id: w.id, webhook: { enabled }, updateMask: { paths: ["enabled"] } });
  });
  const test = (w: Webhook) => act(`Test ${w.url}`, w.id, async () => {
    const { delivery } = await client.testWebhook({ id: w.id });
    if (delivery) setNotice({ ok: delivery.state === DeliveryState.DELIVERED, content: <TestResult url={w.url} delivery={delivery} /> });
    setDeliveriesVersion((v) => v + 1);
  });
  const remove = (w: Webhook) => act(`Delete ${w.url}`, w.id, async () => {
    await client.deleteWebhook({ id: w.id });
    if (editing?.mode === "edit" && editing.webhook.id === w.id) setEditing(undefined);
    setNotice({ ok: true, content: <>Deleted the webhook to <code>{w.url}</code>.</> });
  });
  const saved = (webhook: Webhook, newSecret: string) => {
    setEditing(undefined);
    setFailure(undefined);
    if (newSecret) {
      setNotice(undefined);
      setSecret({ url: webhook.url, secret: newSecret });
    } else {
      setNotice({ ok: true, content: <>Saved the webhook to <code>{webhook.url}</code>.</> });
    }
    list.reload();
  };

  const webhooks = list.data?.webhooks ?? [];
  return (
    <>
      <div className="page-head">
        <h1>Webhooks</h1>
        <span className="muted">Signed HTTP callbacks (Standard Webhooks) on job and schedule events.</span>
        {/* Hidden while its form is open: one "Add webhook" button at a time, the form's submit. */}
        {editing?.mode !== "new" && <button type="button" className="primary" onClick={() => setEditing({ mode: "new" })}>Add webhook</button>}
      </div>
      {secret && <SecretNotice url={secret.url} secret={secret.secret} onDismiss={() => setSecret(undefined)} />}
      {editing && (
        <section className="card" aria-labelledby="webhook-form-title">
          <h2 id="webhook-form-title" ref={formHeading} tabIndex={-1}>{editing.mode === "new" ? "Add webhook" : "Edit webhook"}</h2>
          <WebhookForm
            key={editing.mode === "new" ? "new" : editing.webhook.id}
            webhook={editing.mode === "edit" ? editing.webhook : undefined}
            onSaved={saved}
            onCancel={() => setEditing(undefined)}
          />
        </section>
      )}
      {notice && <div className={notice.ok ? "notice" : "error"} role="status">{notice.content}</div>}
      {failure && <ErrorMessage error={failure.error} prefix={failure.action} />}
      <ErrorMessage error={list.error} prefix="Webhooks" />
      <div className="table-wrap">
        <table aria-label="Webhooks" aria-busy={list.loading}>
          <thead>
            <tr><th>URL</th><th>Events</th><th>State</th><th>Circuit</th><th>Source</th><th>Actions</th></tr>
          </thead>
          <tbody>
            {webhooks.map((w) => {
              const readOnly = w.source === "config";
              const why = readOnly ? "defined in the daemon's config file: change it there" : undefined;
              return (
                <Fragment key={w.id}>
                  <tr>
                    <td className="mono">{w.url}</td>
                    <td>{w.events.length === 0 || w.events.includes("*") ? <span className="muted">all but job.progress</span> : w.events.join(", ")}</td>
                    <td><span className={`badge badge-${w.enabled ? "enabled" : "disabled"}`}>{w.enabled ? "enabled" : "disabled"}</span></td>
                    <td><span className={`badge badge-circuit-${w.circuitState || "closed"}`}>{w.circuitState || "closed"}</span></td>
                    <td>{readOnly ? <>config file<div className="muted">read-only</div></> : w.source}</td>
                    <td>
                      <div className="row-actions">
                        <button type="button" disabled={readOnly || busy?.id === w.id} title={why} onClick={() => void setEnabled(w, !w.enabled)}>
                          {w.enabled ? "Disable" : "Enable"}<VisuallyHidden> {w.url}</VisuallyHidden>
                        </button>
                        <button type="button" disabled={busy?.id === w.id} onClick={() => void test(w)}>
                          {busy?.action === `Test ${w.url}` ? "Testing…" : "Test"}<VisuallyHidden> {w.url}</VisuallyHidden>
                        </button>
                        <button type="button" disabled={readOnly} title={why} onClick={() => setEditing({ mode: "edit", webhook: w })}>Edit<VisuallyHidden> {w.url}</VisuallyHidden></button>
                        <button type="button" aria-expanded={expanded.has(w.id)} onClick={() => toggleDeliveries(w.id)}>Deliveries<VisuallyHidden> to {w.url}</VisuallyHidden></button>
                        <ConfirmButton className="danger" confirm={`Delete the webhook to ${w.url}?`} disabled={readOnly || busy?.id === w.id} onConfirm={() => remove(w)}>
                          Delete<VisuallyHidden> {w.url}</VisuallyHidden>
                        </ConfirmButton>
                      </div>
                    </td>
                  </tr>
                  {expanded.has(w.id) && (
                    <tr className="detail-row">
                      <td colSpan={COLUMNS}><WebhookDeliveries webhookId={w.id} refresh={deliveriesVersion} /></td>
                    </tr>
                  )}
                </Fragment>
              );
            })}
          </tbody>
        </table>
        {list.data && webhooks.length === 0 && <p className="empty table-empty">No webhooks yet. “Add webhook” makes one.</p>}
      </div>
    </>
  );
}

/** The secret CreateWebhook returns this once; the receiver needs it to verify signatures. */
function SecretNotice({ url, secret, onDismiss }: { url: string; secret: string; onDismiss(): void }) {
  const [copied, setCopied] = useState<string>();
  // The Clipboard API exists only in secure contexts (https or localhost).
  const canCopy = typeof navigator.clipboard?.writeText === "function";
  const copy = () => navigator.clipboard.writeText(secret).then(
    () => setCopied("Copied."),
    (err: unknown) => setCopied(`Could not copy (${err instanceof Error ? err.message : String(err)}): select the secret and copy it.`),
  );
  return (
    <div className="notice secret-notice" role="status">
      <p>Added the webhook to <code>{url}</code>. Its signing secret is shown <strong>this once</strong>: copy it now into the receiver that verifies the signatures.</p>
      <p>Signing secret: <code className="secret">{secret}</code></p>
      <div className="actions">
        {canCopy && <button type="button" onClick={() => void copy()}>Copy secret</button>}
        <button type="button" onClick={onDismiss}>I have copied it</button>
        <span className="muted" aria-live="polite">{copied ?? (canCopy ? "" : "Select the secret (one click selects all) and copy it.")}</span>
      </div>
    </div>
  );
}

/** What the test delivery did: its state, the HTTP status, how long it took and any error. */
function TestResult({ url, delivery }: { url: string; delivery: WebhookDelivery }) {
  const last = delivery.attempts.at(-1);
  return (
    <>
      Test delivery to <code>{url}</code>: <DeliveryStateBadge state={delivery.state} />
      {last && <> · {last.statusCode ? `HTTP ${last.statusCode}` : "no HTTP response"} · {formatLatency(last.latencyMs)}</>}
      {last?.error && <> · {last.error}</>}
      {delivery.state === DeliveryState.PENDING && " · retried later"}
    </>
  );
}
