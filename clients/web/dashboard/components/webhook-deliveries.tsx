import { useState } from "react";
import { DeliveryState, type WebhookDelivery } from "../../index.ts";
import { formatTime } from "../format.ts";
import { useQuery } from "../query.ts";
import { useClient } from "../session.tsx";
import { ErrorMessage } from "./error-message.tsx";
import { Pager } from "./pager.tsx";

const PAGE_SIZE = 20;

/** "delivered", "pending", "failed": the API's enum names, lower case (also the badge classes). */
export function deliveryStateName(state: DeliveryState): string {
  return (DeliveryState[state] ?? "unknown").toLowerCase();
}

export function DeliveryStateBadge({ state }: { state: DeliveryState }) {
  const name = deliveryStateName(state);
  return <span className={`badge badge-${name}`}>{name}</span>;
}

export function formatLatency(ms: number | undefined): string {
  return ms === undefined ? "–" : `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
}

/** A webhook's deliveries, newest first, a page at a time; reloaded when `refresh` changes. */
export function WebhookDeliveries({ webhookId, refresh }: { webhookId: string; refresh: number }) {
  const client = useClient();
  const [tokens, setTokens] = useState<string[]>([]);
  const deliveries = useQuery(
    (signal) => client.listWebhookDeliveries({ webhookId, pageSize: PAGE_SIZE, pageToken: tokens.at(-1) ?? "" }, { signal }),
    [client, webhookId, tokens, refresh],
  );
  return (
    <>
      <ErrorMessage error={deliveries.error} prefix="Deliveries" />
      {deliveries.data && (
        <table aria-label="Deliveries" aria-busy={deliveries.loading}>
          <thead>
            <tr><th>Time</th><th>Event</th><th>State</th><th className="num">Attempts</th><th className="num">Status</th><th className="num">Latency</th><th>Last error</th></tr>
          </thead>
          <tbody>{deliveries.data.deliveries.map((d) => <DeliveryRow key={d.id} delivery={d} />)}</tbody>
        </table>
      )}
      {deliveries.data?.deliveries.length === 0 && <p className="empty">No deliveries yet.</p>}
      {deliveries.data && <Pager label="Deliveries pages" tokens={tokens} nextToken={deliveries.data.nextPageToken} onChange={setTokens} />}
      {!deliveries.data && !deliveries.error && <p aria-busy="true">Loading deliveries…</p>}
    </>
  );
}

function DeliveryRow({ delivery: d }: { delivery: WebhookDelivery }) {
  const last = d.attempts.at(-1);
  return (
    <tr>
      <td>{formatTime(d.createTime)}</td>
      <td className="mono">{d.eventType}</td>
      <td>
        <DeliveryStateBadge state={d.state} />
        {d.state === DeliveryState.PENDING && d.nextAttemptTime && <div className="muted">next try {formatTime(d.nextAttemptTime)}</div>}
      </td>
      <td className="num">{d.attempts.length}</td>
      <td className="num">{last ? last.statusCode || "none" : "–"}</td>
      <td className="num">{formatLatency(last?.latencyMs)}</td>
      <td className="error-text">{last?.error}</td>
    </tr>
  );
}
