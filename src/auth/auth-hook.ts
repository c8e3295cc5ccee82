import { HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import type { Logger } from "pino";
import type { Call, CallHook, Principal } from "../rpc/call-hooks.ts";
import type { CallContext } from "../rpc/handlers.ts";
import type { ApiKey, Role } from "../domain/access.ts";
import { HypervisordError } from "../errors.ts";
import type { AuthFailureLimit } from "../ratelimit/auth-failure-limit.ts";
import type { ApiKeyStore } from "../store/store.ts";
import { hashApiKey } from "./api-key.ts";
import { createApiKeyCache, type ApiKeyCache } from "./key-cache.ts";
import { accessOf, roleAllows, type Access } from "./roles.ts";
import type { AuthMode } from "./startup-rule.ts";

export interface AuthHookOptions {
  /** Where last_used_time is written; lookups go through `keys`. */
  store: Pick<ApiKeyStore, "byHash" | "countUsable" | "touch">;
  /** The lookups, cached (see key-cache.ts); by default a cache of its own over `store`. */
  keys?: ApiKeyCache;
  /** A failed last_used_time write is logged here (it never fails the call). */
  logger: Pick<Logger, "warn">;
  /** From authStartupRule. */
  mode: AuthMode;
  /**
   * The role of a caller that a verified client certificate authenticates (and that sends no key).
   * Default "operator": the CA vouches for a machine, and administration (keys, audit) takes an admin key.
   */
  clientCertificateRole?: Role;
  /** Throttles refused authentications per address (checked before a key is looked at); default none. */
  failures?: AuthFailureLimit;
  /** Told of every refusal (no or a wrong key, or throttled): the audit records them. */
  onRefused?: (method: string, context: CallContext, error: HypervisordError) => void;
  now?: () => number;
}

export interface AuthHook extends CallHook {
  /**
   * The refusal the hook would give a call to `method` with these headers and connection, or undefined when
   * it would pass: lets a transport refuse before it reads a request body. A refusal is counted and
   * reported (onRefused) here as in the hook, so it is not run again for that call. A promise only when
   * the key (or the usable-key count) was not in the cache; it rejects when the store could not be read.
   */
  check(method: string, context: CallContext): HypervisordError | undefined | Promise<HypervisordError | undefined>;
}

/** last_used_time is written at most this often per key: a busy key must not cost a write per call. */
const TOUCH_INTERVAL_MS = 60_000;
const ANONYMOUS: Principal = { kind: "anonymous", id: "anonymous", name: "anonymous", role: "admin" };
const MINIMUM_ROLE: Record<Access, Role> = { read: "viewer", operate: "operator", admin: "admin" };
const MISSING = "missing API key: send authorization: Bearer <key> or x-api-key";
/** The same words for an unknown and a revoked key: a caller learns nothing about which keys exist. */
const INVALID = "invalid API key";

/**
 * Authentication of HypervisordService calls: sets call.principal from an API key (authorization:
 * Bearer, or x-api-key), else a verified client certificate, else (when the mode lets it) the anonymous
 * admin; refuses the call (UNAUTHENTICATED) otherwise. Other services (grpc.health.v1) pass untouched,
 * so that probes need no key. createRoleHook, later in the chain, decides what the principal may call.
 * An address with too many refusals is refused (RESOURCE_EXHAUSTED) before its key is looked at.
 */
export function createAuthHook(options: AuthHookOptions): AuthHook {
  const { store, mode, failures, onRefused, logger } = options;
  const keys = options.keys ?? createApiKeyCache(store);
  const now = options.now ?? Date.now;
  const certificateRole = options.clientCertificateRole ?? "operator";
  const lastTouch = new Map<string, number>();

  function touch(key: ApiKey, time: number): void {
    const last = lastTouch.get(key.id) ?? key.lastUsedTime ?? -Infinity;
    if (time - last < TOUCH_INTERVAL_MS) return;
    lastTouch.set(key.id, time);
    // Not awaited: the call does not wait for a bookkeeping write.
    void store.touch(key.id, time).catch((err: unknown) => logger.warn({ err, keyId: key.id }, "could not record the API key's last use"));
  }

  function byKey(presented: string): Principal | Promise<Principal> {
    const time = now();
    const found = keys.byHash(hashApiKey(presented));
    return found instanceof Promise ? found.then((key) => principalOf(key, time)) : principalOf(found, time);
  }

  function principalOf(key: ApiKey | undefined, time: number): Principal {
    if (!key || key.revokeTime !== undefined) throw unauthenticated(INVALID);
    if (key.expireTime !== undefined && key.expireTime <= time) throw unauthenticated("API key expired: ask an admin for a new one");
    touch(key, time);
    return { kind: "api_key", id: key.id, name: key.name, role: key.role };
  }

  function authenticate(context: CallContext): Principal | Promise<Principal> {
    const presented = presentedKey(context);
    if (presented !== undefined) return byKey(presented);
    const certificate = context.clientCertificate;
    if (certificate) return { kind: "client_certificate", id: certificate.subject, name: certificate.subject, role: certificateRole };
    if (mode === "open") return ANONYMOUS;
    if (mode === "open-until-keys") {
      const usable = keys.countUsable(now());
      return usable instanceof Promise ? usable.then(anonymousUnlessKeys) : anonymousUnlessKeys(usable);
    }
    throw unauthenticated(MISSING);
  }

  /** Synchronous when the lookups were cached: a promise costs the call turns of the microtask queue. */
  function admit(method: string, context: CallContext): Principal | Promise<Principal> {
    const refuse = (error: HypervisordError) => {
      onRefused?.(method, context, error);
      return error;
    };
    const throttled = failures?.check(context.peer);
    if (throttled) throw refuse(throttled);
    const refused = (err: unknown): never => {
      if (err instanceof HypervisordError && err.code === "UNAUTHENTICATED") {
        failures?.failed(context.peer);
        throw refuse(err);
      }
      throw err;
    };
    let admitted: Principal | Promise<Principal>;
    try {
      admitted = authenticate(context);
    } catch (err) {
      return refused(err);
    }
    return admitted instanceof Promise ? admitted.catch(refused) : admitted;
  }

  const refusalOf = (err: unknown): HypervisordError => {
    if (err instanceof HypervisordError) return err;
    throw err;
  };

  return {
    before(call: Call) {
      if (call.service !== HypervisordService.typeName) return;
      const admitted = admit(call.method, call.context);
      if (!(admitted instanceof Promise)) {
        call.principal = admitted;
        return;
      }
      return admitted.then((principal) => {
        call.principal = principal;
      });
    },
    check(method, context) {
      try {
        const admitted = admit(method, context);
        return admitted instanceof Promise ? admitted.then(() => undefined, refusalOf) : undefined;
      } catch (err) {
        return refusalOf(err);
      }
    },
  };
}

function anonymousUnlessKeys(usableKeys: number): Principal {
  if (usableKeys === 0) return ANONYMOUS;
  throw unauthenticated(MISSING);
}

/**
 * Authorization: refuses (PERMISSION_DENIED) an RPC that the principal's role may not call, by the
 * table in roles.ts. A hook of its own, so that hooks between the two (audit) see refused calls too.
 */
export function createRoleHook(): CallHook {
  return {
    before(call: Call) {
      if (call.service !== HypervisordService.typeName) return;
      const principal = call.principal;
      // Fails closed: a chain that lost its authentication hook refuses everything.
      if (!principal) throw new Error("createRoleHook runs after createAuthHook, which sets call.principal");
      if (!roleAllows(principal.role, call.method)) throw permissionDenied(principal, call.method);
    },
  };
}

/** The key from `authorization: Bearer <key>` or `x-api-key: <key>`; undefined when neither is sent. */
function presentedKey(context: CallContext): string | undefined {
  const authorization = context.header("authorization")?.trim();
  if (authorization) {
    const match = /^bearer\s+(\S+)$/i.exec(authorization);
    if (!match) throw unauthenticated("authorization: expected \"Bearer <key>\"");
    return match[1]!;
  }
  const key = context.header("x-api-key")?.trim();
  return key || undefined;
}

function unauthenticated(message: string): HypervisordError {
  return new HypervisordError("UNAUTHENTICATED", message);
}

function permissionDenied(principal: Principal, method: string): HypervisordError {
  const access = accessOf(method);
  const needs = access ? `: it needs the ${MINIMUM_ROLE[access]} role${access === "admin" ? "" : " or above"}` : "";
  const who = principal.kind === "anonymous" ? "anonymous" : `${principal.kind === "api_key" ? "API key" : "client certificate"} "${principal.name}"`;
  return new HypervisordError("PERMISSION_DENIED", `role ${principal.role} (${who}) may not call ${method}${needs}`);
}
