import { randomUUID } from "node:crypto";
import type { DeliveryAttempt, DeliveryState, Webhook, WebhookDelivery } from "../domain/webhook.ts";
import type { SecretBox } from "./secret-box.ts";

// Rows of the webhooks, webhook_deliveries and webhook_attempts tables, the same columns in SQLite and PostgreSQL
// (src/store/sqlite/webhooks.ts, src/store/postgres/webhooks.ts), and their mapping to the domain.

export interface WebhookRow {
  id: string;
  url: string;
  events: string;
  headers: string;
  secret: string;
  timeout_ms: number;
  max_attempts: number;
  enabled: number;
  source: string;
  create_time: number;
  update_time: number;
}

export interface DeliveryRow {
  pk: number;
  id: string;
  webhook_id: string;
  event_type: string;
  payload: string;
  state: string;
  next_attempt_time: number | null;
  create_time: number;
}

export interface AttemptRow {
  delivery_pk: number;
  time: number;
  status_code: number;
  latency_ms: number;
  error: string;
}


export const DELIVERY_STATES: ReadonlySet<DeliveryState> = new Set(["pending", "delivered", "failed"]);

/** The webhook-id header of a delivery: "msg_" and 32 random hex digits. */
export function newDeliveryId(): string {
  return `msg_${randomUUID().replaceAll("-", "")}`;
}

export function webhookToRow(webhook: Webhook, box: SecretBox): WebhookRow {
  return {
    id: webhook.id,
    url: box.seal(webhook.url),
    events: JSON.stringify(webhook.events),
    headers: box.seal(JSON.stringify(webhook.headers)),
    secret: box.seal(webhook.secret),
    timeout_ms: webhook.timeoutMs,
    max_attempts: webhook.maxAttempts,
    enabled: webhook.enabled ? 1 : 0,
    source: webhook.source,
    create_time: webhook.createTime,
    update_time: webhook.updateTime,
  };
}

export function rowToWebhook(row: WebhookRow, box: SecretBox): Webhook {
  return {
    id: row.id,
    url: box.open(row.url),
    events: JSON.parse(row.events) as string[],
    headers: JSON.parse(box.open(row.headers)) as Record<string, string>,
    secret: box.open(row.secret),
    timeoutMs: row.timeout_ms,
    maxAttempts: row.max_attempts,
    enabled: row.enabled === 1,
    source: row.source === "config" ? "config" : "api",
    createTime: row.create_time,
    updateTime: row.update_time,
  };
}

export function deliveryFromRow(row: DeliveryRow, attempts: DeliveryAttempt[]): WebhookDelivery {
  const delivery: WebhookDelivery = {
    id: row.id,
    webhookId: row.webhook_id,
    eventType: row.event_type,
    state: row.state as DeliveryState,
    attempts,
    createTime: row.create_time,
    payload: row.payload,
  };
  if (row.state === "pending" && row.next_attempt_time !== null) delivery.nextAttemptTime = row.next_attempt_time;
  return delivery;
}

/** Whether a config webhook changed (times aside): unchanged ones keep their update time. */
export function sameSettings(a: Webhook, b: Webhook): boolean {
  return a.url === b.url && a.secret === b.secret && a.timeoutMs === b.timeoutMs && a.maxAttempts === b.maxAttempts
    && a.enabled === b.enabled && JSON.stringify(a.events) === JSON.stringify(b.events)
    && JSON.stringify(Object.entries(a.headers).sort()) === JSON.stringify(Object.entries(b.headers).sort());
}
