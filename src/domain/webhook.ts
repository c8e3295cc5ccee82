export const WEBHOOK_EVENTS = [
  "job.created", "job.started", "job.progress", "job.completed", "job.failed", "job.cancelled", "schedule.triggered", "vm.discovered",
  "batch.completed",
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENTS)[number] | "webhook.test";

/** Event types a webhook with no events (or "*") receives: all but the chatty job.progress, which is opt-in. */
export const DEFAULT_EVENTS: readonly WebhookEventType[] = WEBHOOK_EVENTS.filter((e) => e !== "job.progress");

export interface Webhook {
  id: string;
  url: string;
  /** As given: empty or ["*"] means DEFAULT_EVENTS. */
  events: string[];
  headers: Record<string, string>;
  /** "whsec_<base64>". Never leaves the daemon except once, when created. */
  secret: string;
  timeoutMs: number;
  maxAttempts: number;
  enabled: boolean;
  source: "api" | "config";
  createTime: number;
  updateTime: number;
}

/** The JSON body of a delivery: {"type", "timestamp", "data"}. */
export interface WebhookEvent {
  type: WebhookEventType;
  /** ISO 8601, UTC. */
  timestamp: string;
  data: Record<string, unknown>;
}

export type DeliveryState = "pending" | "delivered" | "failed";

export interface DeliveryAttempt {
  time: number;
  /** 0 when no response arrived. */
  statusCode: number;
  latencyMs: number;
  error: string;
}

export interface WebhookDelivery {
  /** The webhook-id header ("msg_..."): the same on every attempt. */
  id: string;
  webhookId: string;
  eventType: string;
  state: DeliveryState;
  attempts: DeliveryAttempt[];
  createTime: number;
  /** While pending. */
  nextAttemptTime?: number;
  /** The exact body sent. */
  payload: string;
}

/** Whether a webhook subscribed with `events` receives `type`. */
export function wantsEvent(events: readonly string[], type: WebhookEventType): boolean {
  if (type === "webhook.test") return true;
  if (events.includes(type)) return true;
  return (events.length === 0 || events.includes("*")) && DEFAULT_EVENTS.includes(type);
}
