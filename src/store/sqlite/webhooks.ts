import type { Database } from "better-sqlite3";
import { wantsEvent, type DeliveryAttempt, type DeliveryState, type Webhook, type WebhookDelivery, type WebhookEvent } from "../../domain/webhook.ts";
import { AlreadyExistsError, NotFoundError } from "../../errors.ts";
import type { SecretBox } from "../secret-box.ts";
import type { WebhookStore } from "../store.ts";
import type { Sync } from "../sync-store.ts";
import {
  DELIVERY_STATES, deliveryFromRow, newDeliveryId, rowToWebhook, sameSettings, webhookToRow, type AttemptRow, type DeliveryRow, type WebhookRow,
} from "../webhook-rows.ts";

/** Columns of a due delivery joined with its webhook (webhook columns prefixed with w_). */
type DueRow = DeliveryRow & { [K in keyof WebhookRow as `w_${K}`]: WebhookRow[K] };

/**
 * Webhooks and their delivery outbox; every statement prepared once. The URL (its query may be a
 * token), the headers and the signing secret are sealed by `box`.
 */
export function createWebhookQueries(db: Database, box: SecretBox): Sync<WebhookStore> {
  const webhookParams = (webhook: Webhook) => webhookToRow(webhook, box);
  const webhookFromRow = (row: WebhookRow) => rowToWebhook(row, box);
  const byId = db.prepare<[string], WebhookRow>("SELECT * FROM webhooks WHERE id = ?");
  const all = db.prepare<[], WebhookRow>("SELECT * FROM webhooks ORDER BY create_time, id");
  const enabledRows = db.prepare<[], WebhookRow>("SELECT * FROM webhooks WHERE enabled = 1 ORDER BY create_time, id");
  const configRows = db.prepare<[], WebhookRow>("SELECT * FROM webhooks WHERE source = 'config'");
  const insertWebhook = db.prepare(`INSERT INTO webhooks
    (id, url, events, headers, secret, timeout_ms, max_attempts, enabled, source, create_time, update_time)
    VALUES (@id, @url, @events, @headers, @secret, @timeout_ms, @max_attempts, @enabled, @source, @create_time, @update_time)`);
  const updateWebhook = db.prepare(`UPDATE webhooks SET url = @url, events = @events, headers = @headers, secret = @secret,
    timeout_ms = @timeout_ms, max_attempts = @max_attempts, enabled = @enabled, update_time = @update_time WHERE id = @id`);
  const deleteWebhook = db.prepare("DELETE FROM webhooks WHERE id = ?");
  const insertDelivery = db.prepare(`INSERT INTO webhook_deliveries (id, webhook_id, event_type, payload, state, next_attempt_time, create_time)
    VALUES (?, ?, ?, ?, 'pending', ?, ?)`);
  // Deliveries of deleted or disabled webhooks wait (or stay as history): neither due nor waking the dispatcher.
  const dueRows = db.prepare<[number, number], DueRow>(`SELECT d.*,
      w.id AS w_id, w.url AS w_url, w.events AS w_events, w.headers AS w_headers, w.secret AS w_secret,
      w.timeout_ms AS w_timeout_ms, w.max_attempts AS w_max_attempts, w.enabled AS w_enabled, w.source AS w_source,
      w.create_time AS w_create_time, w.update_time AS w_update_time
    FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
    WHERE d.state = 'pending' AND d.next_attempt_time <= ? AND w.enabled = 1
    ORDER BY d.next_attempt_time, d.pk LIMIT ?`);
  const earliestDue = db.prepare<[], { t: number }>(`SELECT d.next_attempt_time AS t
    FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
    WHERE d.state = 'pending' AND d.next_attempt_time IS NOT NULL AND w.enabled = 1
    ORDER BY d.next_attempt_time LIMIT 1`);
  const deliveryById = db.prepare<[string], DeliveryRow>("SELECT * FROM webhook_deliveries WHERE id = ?");
  const firstPage = db.prepare<[string, number], DeliveryRow>(
    "SELECT * FROM webhook_deliveries WHERE webhook_id = ? ORDER BY pk DESC LIMIT ?");
  const pageBefore = db.prepare<[string, string, number], DeliveryRow>(`SELECT * FROM webhook_deliveries
    WHERE webhook_id = ? AND pk < (SELECT pk FROM webhook_deliveries WHERE id = ?) ORDER BY pk DESC LIMIT ?`);
  // The attempts of several deliveries in one query: their pks bound as one JSON array.
  const attemptsOf = db.prepare<[string], AttemptRow>(`SELECT delivery_pk, time, status_code, latency_ms, error FROM webhook_attempts
    WHERE delivery_pk IN (SELECT value FROM json_each(?)) ORDER BY delivery_pk, pk`);
  const insertAttempt = db.prepare("INSERT INTO webhook_attempts (delivery_pk, time, status_code, latency_ms, error) VALUES (?, ?, ?, ?, ?)");
  const moveDelivery = db.prepare(`UPDATE webhook_deliveries SET state = @state, attempts = attempts + 1, next_attempt_time = @next
    WHERE pk = @pk`);
  // An open circuit parks a webhook's deliveries: neither returned by `due` nor waking the dispatcher.
  const postponeDeliveries = db.prepare(`UPDATE webhook_deliveries SET next_attempt_time = @until
    WHERE webhook_id = @webhook_id AND state = 'pending' AND next_attempt_time < @until`);

  /**
   * Enabled webhooks, for enqueue: it runs inside hot job transactions, so it reads no table. Every
   * write below drops it. (A webhook written and then rolled back in the same transaction as an
   * enqueue could linger until the next write; its deliveries would never be due: `due` joins.)
   */
  let enabledCache: Webhook[] | undefined;

  function insert(webhook: Webhook): void {
    enabledCache = undefined;
    if (byId.get(webhook.id)) throw new AlreadyExistsError(`webhook ${webhook.id} already exists`);
    insertWebhook.run(webhookParams(webhook));
  }

  function update(webhook: Webhook): boolean {
    enabledCache = undefined;
    return updateWebhook.run(webhookParams(webhook)).changes > 0;
  }

  function remove(id: string): boolean {
    enabledCache = undefined;
    return deleteWebhook.run(id).changes > 0;
  }

  const syncConfig = db.transaction((webhooks: readonly Webhook[]): void => {
    enabledCache = undefined;
    const existing = new Map(configRows.all().map((row) => [row.id, webhookFromRow(row)]));
    for (const webhook of webhooks) {
      const current = existing.get(webhook.id);
      existing.delete(webhook.id);
      if (!current) {
        if (byId.get(webhook.id)) throw new AlreadyExistsError(`webhook id ${webhook.id} from the config file is taken by a webhook created through the API`);
        insertWebhook.run(webhookParams({ ...webhook, source: "config" }));
      } else if (!sameSettings(current, webhook)) {
        updateWebhook.run(webhookParams({ ...webhook, createTime: current.createTime }));
      }
    }
    for (const id of existing.keys()) deleteWebhook.run(id);
  });

  function enabledWebhooks(): Webhook[] {
    enabledCache ??= enabledRows.all().map(webhookFromRow);
    return enabledCache;
  }

  function enqueue(event: WebhookEvent, options: { only?: string; now?: number; heldUntil?: number } = {}): WebhookDelivery[] {
    const time = options.now ?? Date.now();
    const targets = enabledWebhooks().filter((w) => (options.only === undefined || w.id === options.only) && wantsEvent(w.events, event.type));
    // Every job change passes here: no JSON for an event that no webhook takes.
    if (targets.length === 0) return [];
    const payload = JSON.stringify({ type: event.type, timestamp: event.timestamp, data: event.data });
    return targets.map((webhook) => {
      const id = newDeliveryId();
      insertDelivery.run(id, webhook.id, event.type, payload, options.heldUntil ?? time, time);
      return { id, webhookId: webhook.id, eventType: event.type, state: "pending", attempts: [], createTime: time, nextAttemptTime: time, payload };
    });
  }

  function due(now: number, limit: number): { delivery: WebhookDelivery; webhook: Webhook }[] {
    const rows = dueRows.all(now, limit);
    const attempts = attemptsByDelivery(rows);
    return rows.map((row) => ({
      delivery: deliveryFromRow(row, attempts.get(row.pk) ?? []),
      webhook: webhookFromRow({
        id: row.w_id, url: row.w_url, events: row.w_events, headers: row.w_headers, secret: row.w_secret,
        timeout_ms: row.w_timeout_ms, max_attempts: row.w_max_attempts, enabled: row.w_enabled, source: row.w_source,
        create_time: row.w_create_time, update_time: row.w_update_time,
      }),
    }));
  }

  const recordAttempt = db.transaction((deliveryId: string, attempt: DeliveryAttempt, outcome: { state: DeliveryState; nextAttemptTime?: number }) => {
    if (!DELIVERY_STATES.has(outcome.state)) throw new Error(`unknown delivery state ${String(outcome.state)}`);
    const row = deliveryById.get(deliveryId);
    if (!row) throw new NotFoundError(`webhook delivery ${deliveryId} not found`);
    insertAttempt.run(row.pk, attempt.time, attempt.statusCode, attempt.latencyMs, attempt.error);
    const next = outcome.state === "pending" ? outcome.nextAttemptTime ?? attempt.time : null;
    moveDelivery.run({ pk: row.pk, state: outcome.state, next });
  });

  function getDelivery(id: string): WebhookDelivery | undefined {
    const row = deliveryById.get(id);
    return row && deliveryFromRow(row, attemptsByDelivery([row]).get(row.pk) ?? []);
  }

  function listDeliveries(webhookId: string, query: { limit: number; before?: string }): { deliveries: WebhookDelivery[]; next?: string } {
    const rows = query.before === undefined ? firstPage.all(webhookId, query.limit + 1) : pageBefore.all(webhookId, query.before, query.limit + 1);
    const page = rows.slice(0, query.limit);
    const attempts = attemptsByDelivery(page);
    return {
      deliveries: page.map((row) => deliveryFromRow(row, attempts.get(row.pk) ?? [])),
      next: rows.length > query.limit ? page[page.length - 1]!.id : undefined,
    };
  }

  function attemptsByDelivery(rows: readonly { pk: number }[]): Map<number, DeliveryAttempt[]> {
    const byDelivery = new Map<number, DeliveryAttempt[]>();
    if (rows.length === 0) return byDelivery;
    for (const a of attemptsOf.all(JSON.stringify(rows.map((r) => r.pk)))) {
      let list = byDelivery.get(a.delivery_pk);
      if (!list) byDelivery.set(a.delivery_pk, (list = []));
      list.push({ time: a.time, statusCode: a.status_code, latencyMs: a.latency_ms, error: a.error });
    }
    return byDelivery;
  }

  return {
    insert,
    get: (id) => {
      const row = byId.get(id);
      return row && webhookFromRow(row);
    },
    list: () => all.all().map(webhookFromRow),
    update,
    delete: remove,
    syncConfig,
    enqueue,
    due,
    nextDueTime: () => earliestDue.get()?.t,
    recordAttempt,
    getDelivery,
    listDeliveries,
    postpone: (webhookId, until) => postponeDeliveries.run({ webhook_id: webhookId, until }).changes,
  };
}
