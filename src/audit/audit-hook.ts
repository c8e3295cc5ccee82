import type { DescMessage } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import { HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import type { CallHook, CallOutcome, Principal } from "../rpc/call-hooks.ts";
import type { CallContext } from "../rpc/handlers.ts";
import { statusOf } from "../rpc/status.ts";
import type { HypervisordError } from "../errors.ts";
import { addressOf } from "../ratelimit/rate-limit-hook.ts";
import type { AuditEvent } from "../domain/access.ts";
import type { AuditStore } from "../store/store.ts";
import { requestJson } from "./request-json.ts";

/**
 * The RPCs that change something, by name: only these are audited (reads and streams are not). Listed
 * one by one rather than matched by verb, so that a new RPC is audited only once someone has decided it
 * should be; test/ratelimit-audit.test.ts fails when an RPC named like a mutation is missing here.
 */
export const MUTATING_METHODS: ReadonlySet<string> = new Set([
  "SubmitJob", "SubmitJobs", "CancelJob", "CancelBatch", "ExtractOva",
  "CreateSchedule", "UpdateSchedule", "DeleteSchedule", "EnableSchedule", "DisableSchedule", "TriggerSchedule",
  "CreateProfile", "UpdateProfile", "DeleteProfile",
  "CreateWebhook", "UpdateWebhook", "DeleteWebhook", "TestWebhook",
  "CreateApiKey", "RevokeApiKey",
]);

export interface AuditHookOptions {
  store: AuditStore;
  /** Where a failed append is reported: the call it belongs to has already happened, so it is not failed. */
  logger: Logger;
  /** Milliseconds since the epoch; default Date.now. */
  now?: () => number;
}

/**
 * Appends one event per mutating call once it has ended, refused ones included (a PERMISSION_DENIED
 * attempt is what an audit log is for): who, from where, what, the request without secrets, the outcome.
 * Put it after authentication (createAuthHook sets the principal) and before the rate limit and the role
 * check (createRoleHook), so that their refusals are recorded: `after` runs only for the hooks whose
 * `before` was reached. Calls refused by authentication itself (no or a wrong key) never reach it: the
 * authentication hook reports them to createRefusalAudit, which records them whatever the RPC.
 */
export function createAuditHook(options: AuditHookOptions): CallHook {
  const now = options.now ?? Date.now;
  const inputs = new Map<string, DescMessage>(HypervisordService.methods.map((m) => [m.name, m.input]));
  // statusOf logs unknown errors; the transports already do, once.
  const quiet = options.logger.child({}, { level: "silent" });
  return {
    after(call, outcome) {
      if (!MUTATING_METHODS.has(call.method)) return;
      // An after hook must not throw: the call it would fail has already taken effect.
      try {
        options.store.append({
          time: now(),
          principal: principalName(call.principal),
          role: call.principal?.role ?? "",
          method: call.method,
          transport: call.context.transport,
          peer: call.context.peer,
          code: outcome.error === undefined ? "OK" : statusOf(outcome.error, quiet, call.method).code,
          resource: resourceOf(call.request, responseOf(outcome)),
          requestJson: requestJson(inputs.get(call.method), call.request),
          durationMs: outcome.durationMs,
        });
      } catch (err) {
        options.logger.error({ err, method: call.method, peer: call.context.peer }, "could not write an audit event");
      }
    },
  };
}

/** As in AuditEvent.principal: "api_key:<id> (<name>)", "client_certificate:<subject>" or "anonymous". */
export function principalName(principal: Principal | undefined): string {
  switch (principal?.kind) {
    case "api_key":
      return `api_key:${principal.id} (${principal.name})`;
    case "client_certificate":
      return `client_certificate:${principal.id}`;
    default:
      return "anonymous";
  }
}

/** The unary response, when the call hooks pass it on (see the integration notes); undefined otherwise. */
function responseOf(outcome: CallOutcome): unknown {
  return (outcome as CallOutcome & { response?: unknown }).response;
}

type Fields = Record<string, unknown>;
const REQUEST_ID_FIELDS = ["jobId", "id", "batchId", "scheduleId", "webhookId", "name", "path"] as const;
/** Messages inside a request or response that carry the id of what was acted on, and the field holding it. */
const NESTED_IDS = [["job", "id"], ["batch", "id"], ["schedule", "id"], ["webhook", "id"], ["apiKey", "id"], ["profile", "name"]] as const;

/**
 * What the call acted on, best effort: an id the response names (what Create* and Submit* made: only
 * there, as the request cannot know it), else the first id-like field of the request (job_id, id,
 * schedule_id, webhook_id, name, path), else the name of a profile, schedule or webhook it carries.
 */
export function resourceOf(request: unknown, response?: unknown): string {
  return createdIds(response) || ownId(request, REQUEST_ID_FIELDS) || nestedId(request);
}

function createdIds(response: unknown): string {
  if (!isFields(response)) return "";
  if (Array.isArray(response.results)) {
    // SubmitJobs: the jobs of the items that were accepted.
    return response.results.map((r: unknown) => (isFields(r) ? nestedId(r) : "")).filter(Boolean).join(",");
  }
  return nestedId(response);
}

function nestedId(message: unknown): string {
  if (!isFields(message)) return "";
  for (const [field, id] of NESTED_IDS) {
    const value = ownId(message[field], [id]);
    if (value) return value;
  }
  return "";
}

function ownId(message: unknown, fields: readonly string[]): string {
  if (!isFields(message)) return "";
  for (const field of fields) {
    const value = message[field];
    if (typeof value === "string" && value !== "") return value;
  }
  return "";
}

function isFields(value: unknown): value is Fields {
  return value !== null && typeof value === "object";
}

export interface RefusalAuditOptions extends AuditHookOptions {
  /** Identical refusals (address, RPC, code) within this window are written once, then as one count; default 60 s. */
  windowMs?: number;
  /** Distinct (address, RPC, code) kept per window; past it, refusals are counted under one "many addresses" entry. Default 10,000. */
  maxKeys?: number;
}

export interface RefusalAudit {
  /** Records a call refused before anyone was authenticated (no or a wrong key, or throttled). */
  record(method: string, context: CallContext, error: HypervisordError): void;
  /** Writes the counts of the current window and stops (at shutdown, before the store closes). */
  close(): void;
}

interface Collapsed {
  event: Omit<AuditEvent, "id">;
  message: string;
  repeats: number;
}

const DEFAULT_WINDOW_MS = 60_000;
const DEFAULT_MAX_KEYS = 10_000;

/**
 * The audit of refused authentications, for every RPC: principal "anonymous", the peer, the code
 * (UNAUTHENTICATED, or RESOURCE_EXHAUSTED once the address is throttled) and the reason. The request is
 * not kept: it comes from someone unknown. So that a flood of bad keys does not become a flood of
 * writes, the first refusal of an (address, RPC, code) in a window is written at once and the rest of
 * the window as one event counting them ({"refused": reason, "repeats": n}).
 */
export function createRefusalAudit(options: RefusalAuditOptions): RefusalAudit {
  const now = options.now ?? Date.now;
  const windowMs = options.windowMs ?? DEFAULT_WINDOW_MS;
  const maxKeys = options.maxKeys ?? DEFAULT_MAX_KEYS;
  let window = new Map<string, Collapsed>();

  const append = (event: Omit<AuditEvent, "id">) => {
    try {
      options.store.append(event);
    } catch (err) {
      options.logger.error({ err, method: event.method, peer: event.peer }, "could not write an audit event");
    }
  };
  const flush = () => {
    const ended = window;
    window = new Map();
    for (const { event, message, repeats } of ended.values()) {
      if (repeats > 0) append({ ...event, time: now(), requestJson: JSON.stringify({ refused: message, repeats }) });
    }
  };
  const timer = setInterval(flush, windowMs);
  timer.unref();

  return {
    record(method, context, error) {
      const key = `${addressOf(context.peer)} ${method} ${error.code}`;
      // Past the cap, new addresses are only counted, together: their first refusals are not written one by one.
      const many = !window.has(key) && window.size >= maxKeys;
      const seen = window.get(many ? `* ${method} ${error.code}` : key);
      if (seen) {
        seen.repeats++;
        return;
      }
      const event = {
        time: now(), principal: principalName(undefined), role: "", method, transport: context.transport,
        peer: many ? "many addresses" : context.peer, code: error.code, resource: "",
        requestJson: JSON.stringify({ refused: error.message }), durationMs: 0,
      };
      window.set(many ? `* ${method} ${error.code}` : key, { event, message: error.message, repeats: many ? 1 : 0 });
      if (!many) append(event);
    },
    close() {
      clearInterval(timer);
      flush();
    },
  };
}
