import { durationMs, timestampFromMs, type Duration } from "@bufbuild/protobuf/wkt";
import type { HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import { parseDurationMs } from "../parse-duration.ts";
import { DeliveryState as DeliveryStatePb, type Webhook as WebhookPb, type WebhookDelivery as WebhookDeliveryPb } from "../../gen/hypervisord/v1/webhook_pb.js";
import { WEBHOOK_EVENTS, type DeliveryState, type Webhook, type WebhookDelivery } from "../domain/webhook.ts";
import { uuidv7 } from "../engine/uuid-v7.ts";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, quoteInput } from "../errors.ts";
import type { WebhookStore } from "../store/store.ts";
import type { WebhookDispatcher } from "../webhooks/dispatcher.ts";
import { redactUrl } from "../redact-url.ts";
import { generateSecret, parseSecret } from "../webhooks/signing.ts";
import { checkWebhookUrl } from "../webhooks/ssrf-guard.ts";
import type { ServiceHandlers } from "../rpc/handlers.ts";
import { intIn } from "./job-definition.ts";
import { pageOf, pageTokenOf, pageSize } from "./page-token.ts";
import { allFields, fieldsToUpdate } from "./update-mask.ts";

type WebhookHandlers = Pick<ServiceHandlers<typeof HypervisordService>,
  "createWebhook" | "getWebhook" | "listWebhooks" | "updateWebhook" | "deleteWebhook" | "testWebhook" | "listWebhookDeliveries">;

const UPDATABLE = ["url", "events", "headers", "secret", "timeout", "max_attempts", "enabled"] as const;
type Updatable = (typeof UPDATABLE)[number];
const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_ATTEMPTS = 8;
/** Headers the daemon sets itself. */
const RESERVED_HEADER = /^(content-type|content-length|host|transfer-encoding|connection|user-agent|webhook-.*)$/i;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/;
const STATE_TO_PB: Record<DeliveryState, DeliveryStatePb> = {
  pending: DeliveryStatePb.PENDING, delivered: DeliveryStatePb.DELIVERED, failed: DeliveryStatePb.FAILED,
};

export interface WebhookDeps {
  store: WebhookStore;
  dispatcher: WebhookDispatcher;
  allowPrivateTargets: boolean;
}

export function createWebhookHandlers({ store, dispatcher, allowPrivateTargets }: WebhookDeps): WebhookHandlers {
  const existing = async (id: string, field = "id") => {
    const trimmed = id.trim();
    if (!trimmed) throw new InvalidArgumentError(field, "required");
    const webhook = await store.get(trimmed);
    if (!webhook) throw new NotFoundError(`webhook ${trimmed} not found`);
    return webhook;
  };
  const toPb = (w: Webhook) => webhookToPb(w, dispatcher.circuitState(w.id));

  return {
    async createWebhook(request) {
      const pb = request.webhook;
      if (!pb) throw new InvalidArgumentError("webhook", "required");
      const now = Date.now();
      const webhook = applyFields({ id: `wh_${uuidv7()}`, source: "api", createTime: now, updateTime: now } as Webhook, pb, allFields(UPDATABLE), allowPrivateTargets);
      await store.insert(webhook);
      return { webhook: toPb(webhook), secret: webhook.secret };
    },

    async getWebhook(request) {
      return { webhook: toPb(await existing(request.id)) };
    },

    async listWebhooks() {
      return { webhooks: (await store.list()).map(toPb) };
    },

    async updateWebhook(request) {
      const webhook = await existing(request.id);
      if (webhook.source === "config") throw new FailedPreconditionError(`webhook ${webhook.id} is defined in the config file; change it there`);
      const pb = request.webhook;
      if (!pb) throw new InvalidArgumentError("webhook", "required");
      const fields = fieldsToUpdate(UPDATABLE, request.updateMask, () => givenFields(pb));
      // A client sending back the URL it was shown (redacted, e.g. an edit form) keeps the stored one.
      if (pb.url.trim() !== "" && pb.url.trim() === redactUrl(webhook.url)) fields.url = false;
      const updated = applyFields({ ...webhook, updateTime: Date.now() }, pb, fields, allowPrivateTargets);
      await store.update(updated);
      return { webhook: toPb(updated) };
    },

    async deleteWebhook(request) {
      const webhook = await existing(request.id);
      if (webhook.source === "config") throw new FailedPreconditionError(`webhook ${webhook.id} is defined in the config file; remove it there`);
      await store.delete(webhook.id);
      return {};
    },

    async testWebhook(request) {
      const webhook = await existing(request.id);
      return { delivery: deliveryToPb(await dispatcher.test(webhook.id)) };
    },

    async listWebhookDeliveries(request) {
      const webhook = await existing(request.webhookId, "webhook_id");
      const limit = pageSize(request.pageSize, 100);
      const page = await store.listDeliveries(webhook.id, { limit, before: pageOf(request.pageToken, "page_token") });
      return { deliveries: page.deliveries.map(deliveryToPb), nextPageToken: pageTokenOf(page.next) };
    },
  };
}

/** The fields a request without an update_mask sets. */
function givenFields(pb: WebhookPb): Record<Updatable, boolean> {
  return {
    url: pb.url.trim() !== "",
    events: pb.events.length > 0,
    headers: Object.keys(pb.headers).length > 0,
    secret: pb.secret.trim() !== "",
    timeout: pb.timeout !== undefined,
    max_attempts: pb.maxAttempts !== 0,
    enabled: pb.enabled !== undefined,
  };
}

/** The webhook with the chosen fields taken from `pb`, each checked; errors name `webhook.<field>`. */
export function applyFields(base: Webhook, pb: WebhookPb, fields: Record<Updatable, boolean>, allowPrivateTargets: boolean, field = "webhook"): Webhook {
  const next = { ...base };
  if (fields.url) next.url = checkWebhookUrl(pb.url.trim(), { allowPrivateTargets }, `${field}.url`).href;
  if (fields.events) next.events = eventsOf(pb.events, `${field}.events`);
  if (fields.headers) next.headers = headersOf(pb.headers, `${field}.headers`);
  if (fields.secret) {
    const secret = pb.secret.trim();
    if (secret) parseSecret(secret, `${field}.secret`);
    next.secret = secret || generateSecret();
  }
  if (fields.timeout) next.timeoutMs = timeoutOf(pb.timeout, `${field}.timeout`);
  if (fields.max_attempts) next.maxAttempts = pb.maxAttempts === 0 ? DEFAULT_MAX_ATTEMPTS : intIn(pb.maxAttempts, 1, 100, `${field}.max_attempts`);
  if (fields.enabled) next.enabled = pb.enabled ?? true;
  return next;
}

function eventsOf(events: readonly string[], field: string): string[] {
  return [...new Set(events.map((e, i) => {
    const name = e.trim();
    if (name !== "*" && !(WEBHOOK_EVENTS as readonly string[]).includes(name)) {
      throw new InvalidArgumentError(`${field}[${i}]`, `unknown event ${quoteInput(e)}; use "*" or one of ${WEBHOOK_EVENTS.join(", ")}`);
    }
    return name;
  }))];
}

function headersOf(headers: Record<string, string>, field: string): Record<string, string> {
  const entries = Object.entries(headers);
  if (entries.length > 32) throw new InvalidArgumentError(field, `at most 32 headers, got ${entries.length}`);
  for (const [name, value] of entries) {
    if (!HEADER_NAME.test(name)) throw new InvalidArgumentError(`${field}[${JSON.stringify(name)}]`, "not a valid HTTP header name");
    if (RESERVED_HEADER.test(name)) throw new InvalidArgumentError(`${field}[${JSON.stringify(name)}]`, "set by the daemon; cannot be overridden");
    if (/[\r\n\0]/.test(value) || value.length > 4096) throw new InvalidArgumentError(`${field}[${JSON.stringify(name)}]`, "value has line breaks or is over 4096 characters");
  }
  return Object.fromEntries(entries.map(([k, v]) => [k.toLowerCase(), v]));
}

function timeoutOf(timeout: Duration | undefined, field: string): number {
  if (!timeout) return DEFAULT_TIMEOUT_MS;
  const ms = durationMs(timeout);
  if (!(ms >= 100 && ms <= 120_000)) throw new InvalidArgumentError(field, `must be from 100ms to 120s, got ${ms} ms`);
  return ms;
}

/** Write-only fields stay behind: no secret, header values masked, the URL's userinfo and query values redacted. */
export function webhookToPb(w: Webhook, circuit: string): WebhookPb {
  return {
    $typeName: "hypervisord.v1.Webhook",
    id: w.id,
    url: redactUrl(w.url),
    events: w.events,
    headers: Object.fromEntries(Object.keys(w.headers).map((k) => [k, "***"])),
    secret: "",
    timeout: { $typeName: "google.protobuf.Duration", seconds: BigInt(Math.floor(w.timeoutMs / 1000)), nanos: (w.timeoutMs % 1000) * 1_000_000 },
    maxAttempts: w.maxAttempts,
    enabled: w.enabled,
    createTime: timestampFromMs(w.createTime),
    updateTime: timestampFromMs(w.updateTime),
    source: w.source,
    circuitState: circuit,
  };
}

export function deliveryToPb(d: WebhookDelivery): WebhookDeliveryPb {
  return {
    $typeName: "hypervisord.v1.WebhookDelivery",
    id: d.id,
    webhookId: d.webhookId,
    eventType: d.eventType,
    state: STATE_TO_PB[d.state],
    attempts: d.attempts.map((a) => ({ $typeName: "hypervisord.v1.DeliveryAttempt", time: timestampFromMs(a.time), statusCode: a.statusCode, latencyMs: a.latencyMs, error: a.error })),
    createTime: timestampFromMs(d.createTime),
    nextAttemptTime: d.state === "pending" && d.nextAttemptTime !== undefined ? timestampFromMs(d.nextAttemptTime) : undefined,
    payload: d.payload,
  };
}

/** `webhooks.endpoints` of the config file, checked like CreateWebhook (ids "cfg-<name>"). */
export function webhooksFromConfig(records: readonly Record<string, unknown>[], allowPrivateTargets: boolean): Webhook[] {
  const now = Date.now();
  const seen = new Set<string>();
  return records.map((record, i) => {
    const field = `webhooks.endpoints[${i}]`;
    const name = typeof record.name === "string" ? record.name.trim() : "";
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(name)) throw new InvalidArgumentError(`${field}.name`, "required: 1-63 letters, digits, '.', '_' or '-'");
    if (seen.has(name)) throw new InvalidArgumentError(`${field}.name`, `"${name}" is used twice`);
    seen.add(name);
    if (typeof record.secret !== "string" || !record.secret) throw new InvalidArgumentError(`${field}.secret`, "required in the config file (whsec_<base64>), so that it survives restarts");
    const known = new Set(["name", "url", "events", "headers", "secret", "timeout", "max_attempts", "enabled"]);
    for (const key of Object.keys(record)) if (!known.has(key)) throw new InvalidArgumentError(`${field}.${key}`, "unknown key");
    const pb = {
      url: String(record.url ?? ""),
      events: Array.isArray(record.events) ? record.events.map(String) : [],
      headers: (record.headers ?? {}) as Record<string, string>,
      secret: record.secret,
      maxAttempts: Number(record.max_attempts ?? 0),
      enabled: record.enabled === undefined ? true : Boolean(record.enabled),
    } as unknown as WebhookPb;
    const base: Webhook = { id: `cfg-${name}`, source: "config", createTime: now, updateTime: now, timeoutMs: DEFAULT_TIMEOUT_MS } as Webhook;
    const all = Object.fromEntries(UPDATABLE.map((f) => [f, f !== "timeout"])) as Record<Updatable, boolean>;
    const webhook = applyFields(base, pb, all, allowPrivateTargets, field);
    if (record.timeout !== undefined) webhook.timeoutMs = configTimeout(record.timeout, `${field}.timeout`);
    return webhook;
  });
}

function configTimeout(raw: unknown, field: string): number {
  let ms = NaN;
  try {
    ms = parseDurationMs(raw);
  } catch {
    // Reported below with the field's name.
  }
  if (!(ms >= 100 && ms <= 120_000)) throw new InvalidArgumentError(field, `expected a duration from 100ms to 120s, got ${JSON.stringify(raw)}`);
  return ms;
}
