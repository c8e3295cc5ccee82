import { request, type Dispatcher } from "undici";
import { retryDelayMs, type BackoffOptions } from "../backoff.ts";
import type { Webhook, WebhookDelivery } from "../domain/webhook.ts";
import { FailedPreconditionError, HypervisordError, NotFoundError, UnavailableError, errorDetail } from "../errors.ts";
import type { WebhookStore } from "../store/store.ts";
import { VERSION } from "../version.ts";
import { testEvent } from "../domain/webhook-events.ts";
import { signatureHeaders } from "./signing.ts";
import { createGuardedAgent } from "./ssrf-guard.ts";

/**
 * Delivers the webhook outbox: a timer-driven loop takes due deliveries from the store and POSTs
 * them, several webhooks at once but few requests per webhook, retries with backoff, and pauses a
 * webhook that keeps failing (circuit breaker). The store is the source of truth: a delivery is
 * pending until an attempt moves it, so a restart resumes where the last run stopped.
 */

/** TestWebhook's delivery is posted by the call itself; other dispatchers leave it alone this long (its attempt sets its next time). */
const TEST_HOLD_MS = 60_000;

export interface DispatcherLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export type CircuitState = "closed" | "open" | "half-open";

export interface WebhookDispatcherOptions {
  store: WebhookStore;
  logger: DispatcherLogger;
  /** webhooks.allow_private_targets. */
  allowPrivateTargets: boolean;
  /** The longest the loop sleeps without being woken (catches deliveries nobody announced). Default 10 s. */
  pollIntervalMs?: number;
  now?: () => number;
  /** Backoff between attempts of a delivery. Default 1 s doubling to 10 min (+-20% jitter). */
  retry?: BackoffOptions;
  /** The longest Retry-After honoured. Default 1 h. */
  maxRetryAfterMs?: number;
  /** Opens after `failureThreshold` failed attempts in a row, for `cooldownMs` doubling up to `maxCooldownMs` while probes fail. Default 5, 30 s, 5 min. */
  circuit?: { failureThreshold: number; cooldownMs: number; maxCooldownMs: number };
  /** Requests in flight per webhook. Default 2. */
  maxInFlightPerWebhook?: number;
  /** Due deliveries read per pass; also the most taken from the store and not started yet. Default 100. */
  batchSize?: number;
  /**
   * How long a delivery taken from the store may wait here for a free slot before it is let go (read again
   * later). A shared store's claim on it lasts 60 s: past that another daemon may take it. Default 30 s.
   */
  holdMs?: number;
}

export interface DispatcherStats {
  /** Deliveries that reached a final state, and attempts followed by a retry, since start. */
  delivered: number;
  failed: number;
  retried: number;
  inFlight: number;
  circuits: Record<string, CircuitState>;
}

export interface WebhookDispatcher {
  start(): void;
  /** Run a pass now: call after enqueueing (once the transaction committed). */
  wake(): void;
  /** Aborts requests in flight (their deliveries stay pending) and resolves once they have settled. */
  stop(): Promise<void>;
  /** Sends a webhook.test event to that webhook at once, whatever its circuit; resolves with the delivery after the attempt. */
  test(webhookId: string): Promise<WebhookDelivery>;
  stats(): DispatcherStats;
  circuitState(webhookId: string): CircuitState;
}

const USER_AGENT = `hypervisord-webhooks/${VERSION}`;
/** Set by the HTTP layer or by the signature: a webhook's own headers cannot replace them. */
const MANAGED_HEADERS = new Set([
  "host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "expect", "te", "trailer",
  "webhook-id", "webhook-timestamp", "webhook-signature",
]);
/** Bytes of a failed response's body kept in the attempt's error. */
const ERROR_BODY_BYTES = 256;
/** Bytes of a successful response's body read (and dropped) so the connection can be reused. */
const DRAIN_BYTES = 64 * 1024;

type Lifecycle = "idle" | "running" | "stopping" | "stopped";

interface Circuit {
  state: CircuitState;
  /** Failed attempts in a row. */
  failures: number;
  openUntil: number;
  /** Of the current or last opening; doubles when a probe fails. */
  cooldownMs: number;
}

/** What one attempt got: a response, or an error before one. */
type AttemptResult =
  | { statusCode: number; retryAfterMs?: number; error: string }
  | { statusCode: 0; error: string; retryable: boolean };

class StopReason extends Error {
  constructor() {
    super("the webhook dispatcher is stopping");
  }
}

export function createWebhookDispatcher(options: WebhookDispatcherOptions): WebhookDispatcher {
  const { store, logger } = options;
  const now = options.now ?? Date.now;
  const pollIntervalMs = options.pollIntervalMs ?? 10_000;
  const retry = options.retry ?? { initialMs: 1000, maxMs: 600_000 };
  const maxRetryAfterMs = options.maxRetryAfterMs ?? 3_600_000;
  const breaker = options.circuit ?? { failureThreshold: 5, cooldownMs: 30_000, maxCooldownMs: 300_000 };
  const maxInFlightPerWebhook = options.maxInFlightPerWebhook ?? 2;
  const batchSize = options.batchSize ?? 100;
  const holdMs = options.holdMs ?? 30_000;
  const agent = createGuardedAgent({ allowPrivateTargets: options.allowPrivateTargets });

  let lifecycle: Lifecycle = "idle";
  let stopping: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let timerAt = Infinity;
  const inFlight = new Map<string, Promise<void>>();
  /**
   * Due deliveries taken from the store whose webhook had no free slot, by id, in due order. A shared store
   * claimed them for this daemon: it does not hand them out again, so they wait here instead of in the store.
   */
  const waiting = new Map<string, { delivery: WebhookDelivery; webhook: Webhook; since: number }>();
  /** The pass running now; a wake during it runs another pass right after (`again`). */
  let passing: Promise<void> | undefined;
  let again = false;
  const busy = new Map<string, number>();
  const controllers = new Set<AbortController>();
  const circuits = new Map<string, Circuit>();
  const counts = { delivered: 0, failed: 0, retried: 0 };

  // ---- the loop -------------------------------------------------------------------------------

  /** Runs a pass at `time` unless one is already set for earlier. */
  function wakeAt(time: number): void {
    if (lifecycle !== "running" || (timer && timerAt <= time)) return;
    clearTimeout(timer);
    timerAt = time;
    timer = setTimeout(pass, Math.max(0, time - now()));
    timer.unref();
  }

  /** One pass at a time: the store is read between the checks of slots and the launches. */
  function pass(): void {
    timer = undefined;
    timerAt = Infinity;
    if (lifecycle !== "running") return;
    if (passing) {
      again = true;
      return;
    }
    passing = runPass().finally(() => {
      passing = undefined;
      if (!again) return;
      again = false;
      wakeAt(now());
    });
  }

  /** Never rejects: a failure is logged and the loop tries again after the poll interval. */
  async function runPass(): Promise<void> {
    const time = now();
    try {
      await dispatchDue(time);
      // A delivery due but not started waits for a slot: the end of a request wakes the loop.
      const next = await store.nextDueTime();
      wakeAt(next !== undefined && next > time ? Math.min(next, time + pollIntervalMs) : time + pollIntervalMs);
    } catch (err) {
      logger.error({ err: errorDetail(err) }, "webhook dispatcher: reading the outbox failed");
      wakeAt(time + pollIntervalMs);
    }
  }

  async function dispatchDue(time: number): Promise<void> {
    for (const [id, held] of waiting) if (time - held.since >= holdMs) waiting.delete(id);
    // Never more taken and not started than a pass reads; what is here or in flight is not asked for again.
    const room = batchSize - waiting.size;
    if (room > 0) {
      const due = await store.due(time, room);
      if (lifecycle !== "running") return;
      for (const { delivery, webhook } of due) {
        // An unclaiming store (SQLite) returns them again until their attempt is recorded.
        if (!inFlight.has(delivery.id) && !waiting.has(delivery.id)) waiting.set(delivery.id, { delivery, webhook, since: time });
      }
    }
    const parked = new Map<string, number>();
    for (const [id, { delivery, webhook }] of waiting) {
      const circuit = circuitAt(webhook.id, time);
      if (circuit?.state === "open") {
        // Back to the store, which keeps them until the circuit's cooldown is over.
        waiting.delete(id);
        parked.set(webhook.id, circuit.openUntil);
        continue;
      }
      const limit = circuit?.state === "half-open" ? 1 : maxInFlightPerWebhook;
      if ((busy.get(webhook.id) ?? 0) >= limit) continue;
      waiting.delete(id);
      void launch(delivery, webhook);
    }
    for (const [webhookId, until] of parked) await store.postpone(webhookId, until);
  }

  /** Starts an attempt, tracked until it settles; it never rejects. */
  function launch(delivery: WebhookDelivery, webhook: Webhook): Promise<void> {
    // test() and a pass may both have it (the pass read the outbox while test() enqueued): one attempt.
    const running = inFlight.get(delivery.id);
    if (running) return running;
    busy.set(webhook.id, (busy.get(webhook.id) ?? 0) + 1);
    const started = attempt(delivery, webhook)
      .catch((err: unknown) => {
        logger.error({ webhookId: webhook.id, deliveryId: delivery.id, err: errorDetail(err) }, "webhook attempt could not be recorded");
      })
      .finally(() => {
        inFlight.delete(delivery.id);
        const left = (busy.get(webhook.id) ?? 1) - 1;
        if (left > 0) busy.set(webhook.id, left);
        else busy.delete(webhook.id);
        wakeAt(now());
      });
    inFlight.set(delivery.id, started);
    return started;
  }

  // ---- one attempt ----------------------------------------------------------------------------

  async function attempt(delivery: WebhookDelivery, webhook: Webhook): Promise<void> {
    const time = now();
    const started = performance.now();
    const controller = new AbortController();
    controllers.add(controller);
    const timeout = setTimeout(() => controller.abort(new Error(`timed out after ${webhook.timeoutMs} ms`)), webhook.timeoutMs);
    let result: AttemptResult;
    try {
      result = await post(delivery, webhook, Math.floor(time / 1000), controller.signal);
    } catch (err) {
      // Interrupted by stop(): not the receiver's doing, the delivery stays pending as it was.
      if (controller.signal.reason instanceof StopReason) return;
      const reason = controller.signal.aborted ? controller.signal.reason : err;
      result = { statusCode: 0, error: errorDetail(reason), retryable: !(reason instanceof HypervisordError && !reason.retryable) };
    } finally {
      clearTimeout(timeout);
      controllers.delete(controller);
    }
    const latencyMs = performance.now() - started;
    const number = delivery.attempts.length + 1;
    const outcome = decide(result, number, webhook.maxAttempts, now());
    // In flight when the circuit opened: its retry is parked with the webhook's other deliveries.
    const circuit = circuitAt(webhook.id, now());
    if (outcome.state === "pending" && circuit?.state === "open") outcome.nextAttemptTime = Math.max(outcome.nextAttemptTime!, circuit.openUntil);
    await store.recordAttempt(delivery.id, { time, statusCode: result.statusCode, latencyMs, error: result.error }, outcome);
    await updateCircuit(webhook.id, outcome.state === "delivered", now());
    const context = { webhookId: webhook.id, deliveryId: delivery.id, eventType: delivery.eventType, host: hostOf(webhook.url), attempt: number, statusCode: result.statusCode };
    if (outcome.state === "delivered") {
      counts.delivered++;
    } else if (outcome.state === "pending") {
      counts.retried++;
      logger.warn({ ...context, error: result.error, nextAttemptTime: new Date(outcome.nextAttemptTime!).toISOString() }, "webhook attempt failed, will retry");
    } else {
      counts.failed++;
      logger.warn({ ...context, error: result.error }, "webhook delivery failed for good");
    }
  }

  async function post(delivery: WebhookDelivery, webhook: Webhook, timestampSeconds: number, signal: AbortSignal): Promise<AttemptResult> {
    const { statusCode, headers, body } = await request(webhook.url, {
      method: "POST",
      dispatcher: agent,
      signal,
      headers: requestHeaders(delivery, webhook, timestampSeconds),
      body: delivery.payload,
    });
    if (statusCode >= 200 && statusCode < 300) {
      await body.dump({ limit: DRAIN_BYTES, signal });
      return { statusCode, error: "" };
    }
    const text = await readStart(body, ERROR_BODY_BYTES);
    const retryAfter = statusCode === 429 || statusCode === 503 ? parseRetryAfter(headers["retry-after"], now(), maxRetryAfterMs) : undefined;
    return { statusCode, retryAfterMs: retryAfter, error: text ? `HTTP ${statusCode}: ${text}` : `HTTP ${statusCode}` };
  }

  /** Delivered on 2xx; retried after network errors, timeouts, 408, 429 and 5xx; failed otherwise or out of attempts. */
  function decide(result: AttemptResult, number: number, maxAttempts: number, time: number): { state: "delivered" | "pending" | "failed"; nextAttemptTime?: number } {
    const { statusCode } = result;
    if (statusCode >= 200 && statusCode < 300) return { state: "delivered" };
    const retryable = "retryable" in result ? result.retryable : statusCode === 408 || statusCode === 429 || statusCode >= 500;
    if (!retryable || number >= maxAttempts) return { state: "failed" };
    const backoff = retryDelayMs(number, retry);
    const retryAfter = "retryAfterMs" in result ? result.retryAfterMs ?? 0 : 0;
    return { state: "pending", nextAttemptTime: time + Math.max(backoff, retryAfter) };
  }

  // ---- circuit breaker ------------------------------------------------------------------------

  /** The webhook's circuit, an open one turned half-open once its cooldown is over. */
  function circuitAt(webhookId: string, time: number): Circuit | undefined {
    const circuit = circuits.get(webhookId);
    if (circuit?.state === "open" && time >= circuit.openUntil) circuit.state = "half-open";
    return circuit;
  }

  async function updateCircuit(webhookId: string, ok: boolean, time: number): Promise<void> {
    const circuit = circuitAt(webhookId, time) ?? { state: "closed", failures: 0, openUntil: 0, cooldownMs: breaker.cooldownMs };
    circuits.set(webhookId, circuit);
    if (ok) {
      if (circuit.state !== "closed") logger.info({ webhookId }, "webhook circuit closed: deliveries resume");
      Object.assign(circuit, { state: "closed", failures: 0, cooldownMs: breaker.cooldownMs });
      return;
    }
    circuit.failures++;
    const probeFailed = circuit.state === "half-open";
    if (!probeFailed && !(circuit.state === "closed" && circuit.failures >= breaker.failureThreshold)) return;
    circuit.cooldownMs = probeFailed ? Math.min(circuit.cooldownMs * 2, breaker.maxCooldownMs) : breaker.cooldownMs;
    circuit.openUntil = time + circuit.cooldownMs;
    circuit.state = "open";
    const parked = await store.postpone(webhookId, circuit.openUntil);
    logger.warn({ webhookId, failures: circuit.failures, cooldownMs: circuit.cooldownMs, postponed: parked }, "webhook circuit opened: deliveries paused");
  }

  // ---- the handle -----------------------------------------------------------------------------

  return {
    start() {
      if (lifecycle === "running") return;
      if (lifecycle !== "idle") throw new FailedPreconditionError("the webhook dispatcher was stopped; create a new one");
      lifecycle = "running";
      wakeAt(now());
    },
    wake: () => wakeAt(now()),
    stop() {
      stopping ??= (async () => {
        lifecycle = "stopping";
        clearTimeout(timer);
        timer = undefined;
        for (const controller of controllers) controller.abort(new StopReason());
        // A pass reading the store launches nothing once it is back (lifecycle), but is waited for.
        await passing;
        await Promise.allSettled(inFlight.values());
        waiting.clear();
        await agent.destroy();
        lifecycle = "stopped";
      })();
      return stopping;
    },
    async test(webhookId) {
      if (lifecycle === "stopping" || lifecycle === "stopped") throw new UnavailableError("the webhook dispatcher is stopping");
      const webhook = await store.get(webhookId);
      if (!webhook) throw new NotFoundError(`webhook ${webhookId} not found`);
      const time = now();
      // Held for the attempt below: no dispatcher (of another daemon sharing the store) posts it meanwhile.
      const [delivery] = await store.enqueue(testEvent(webhookId, time), { only: webhookId, now: time, heldUntil: time + TEST_HOLD_MS });
      if (!delivery) throw new FailedPreconditionError(`webhook ${webhookId} is disabled`);
      // A pass that read it meanwhile leaves it to this launch.
      waiting.delete(delivery.id);
      await launch(delivery, webhook);
      return (await store.getDelivery(delivery.id)) ?? delivery;
    },
    stats: () => ({
      ...counts,
      inFlight: inFlight.size,
      circuits: Object.fromEntries([...circuits.keys()].map((id) => [id, circuitAt(id, now())!.state])),
    }),
    circuitState: (webhookId) => circuitAt(webhookId, now())?.state ?? "closed",
  };
}

function requestHeaders(delivery: WebhookDelivery, webhook: Webhook, timestampSeconds: number): Record<string, string> {
  const headers: Record<string, string> = { "content-type": "application/json", "user-agent": USER_AGENT };
  for (const [name, value] of Object.entries(webhook.headers)) {
    const key = name.toLowerCase();
    if (!MANAGED_HEADERS.has(key)) headers[key] = value;
  }
  return { ...headers, ...signatureHeaders(webhook.secret, delivery.id, timestampSeconds, delivery.payload) };
}

/** The first `max` bytes of a body as one line of text; the rest is dropped with the stream. */
async function readStart(body: Dispatcher.ResponseData["body"], max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= max) break;
  }
  return Buffer.concat(chunks).subarray(0, max).toString("utf8").replace(/\s+/g, " ").trim();
}

/** Retry-After in seconds or as an HTTP date, as a delay from `time`, capped. */
export function parseRetryAfter(value: string | string[] | undefined, time: number, capMs: number): number | undefined {
  const text = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!text) return undefined;
  const ms = /^\d+$/.test(text) ? Number(text) * 1000 : Date.parse(text) - time;
  return Number.isFinite(ms) ? Math.min(Math.max(0, ms), capMs) : undefined;
}

/** Host and port only: a webhook URL's path and query may be a credential (Slack-style URLs). */
function hostOf(url: string): string {
  return URL.canParse(url) ? new URL(url).host : "";
}
