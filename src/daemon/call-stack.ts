import type { Logger } from "pino";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import { createRequestLimitsHook } from "../api/request-limits.ts";
import { createHypervisordApi } from "../api/service.ts";
import { createAuditHook, createRefusalAudit } from "../audit/audit-hook.ts";
import { createAuthHook, createRoleHook } from "../auth/auth-hook.ts";
import { apiKeysFromConfig } from "../auth/config-keys.ts";
import { createApiKeyCache } from "../auth/key-cache.ts";
import { authStartupRule } from "../auth/startup-rule.ts";
import type { DaemonConfig } from "../config/load-config.ts";
import { createAuthFailureLimit } from "../ratelimit/auth-failure-limit.ts";
import { createRateLimitHook } from "../ratelimit/rate-limit-hook.ts";
import { withCallHooks, type CallHook } from "../rpc/call-hooks.ts";
import { bindService, type GrpcServiceBinding } from "../server/grpc-server.ts";
import { createHealthCheck } from "../server/health-check.ts";
import { createHealthHandlers, createHealthState } from "../server/health.ts";
import { createTracingHook } from "../tracing/tracing-hook.ts";
import { VERSION } from "../version.ts";
import type { Core, Releasers } from "./core.ts";

/** What the listeners serve: the services behind their hooks, the health state and /health, and the pre-body auth check. */
export interface CallStack {
  bindings: GrpcServiceBinding[];
  authorize: ReturnType<typeof createAuthHook>["check"];
  health: ReturnType<typeof createHealthState>;
  healthCheck: ReturnType<typeof createHealthCheck>;
}

/** The API over the core, wrapped in the call hooks in their order, with health beside it. */
export async function createCallStack(core: Core, config: DaemonConfig, logger: Logger, releasers: Releasers, startTime: number): Promise<CallStack> {
  const { store, engine } = core;
  // Checked before anything listens: a wrong override stops the start, naming rate_limit.overrides.<RPC>.
  const rateLimitHook = createRateLimitHook(config.rateLimit);
  await store.apiKeys.syncConfig(apiKeysFromConfig(config.auth.apiKeys));
  const authMode = authStartupRule({
    listeners: [config.grpcListen, config.httpListen], disabled: config.auth.disabled, usableKeys: await store.apiKeys.countUsable(Date.now()),
  });
  // Shared by the auth hook and the API: a key created or revoked here counts at once (see key-cache.ts).
  const apiKeys = createApiKeyCache(store.apiKeys);
  const api = createHypervisordApi({
    engine, store, providers: core.providers, scheduler: core.scheduler, webhooks: core.webhooks, profiles: core.profiles,
    ...core.outputRoots,
    allowPrivateWebhookTargets: config.webhooks.allowPrivateTargets,
    defaultVSphere: config.defaultVSphere,
    defaultAzure: config.defaultAzure,
    conversionUnavailable: core.conversionUnavailable,
    onVmsListed: (provider, vms) => core.metrics.vmsDiscovered(provider, vms),
    onApiKeysChanged: () => apiKeys.invalidate(),
    startTime,
    cluster: core.cluster && { nodeId: config.cluster.nodeId, status: core.cluster.status },
  });
  // Refused authentications are audited (collapsed per address, RPC and code) and throttled per address,
  // here and in the HTTP listener's check before a body is read (authHook.check).
  const refusalAudit = createRefusalAudit({ store: store.audit, logger: logger.child({ component: "audit" }) });
  releasers.add(() => refusalAudit.close());
  const authHook = createAuthHook({
    store: store.apiKeys, keys: apiKeys, logger: logger.child({ component: "auth" }), mode: authMode, failures: createAuthFailureLimit(config.rateLimit.authFailures), onRefused: refusalAudit.record,
  });
  // Order matters: metrics and tracing see every call; auth sets the principal; audit comes next, so that
  // refusals by the rate limit and the role check are recorded (after() runs only for hooks whose before()
  // was reached); the rate limit keys on the principal; the role check last.
  const hooks: CallHook[] = [
    core.metrics.callHook,
    createTracingHook(core.tracing),
    authHook,
    // Before the audit, which stores the request: a field over its limit never reaches a handler or the store.
    createRequestLimitsHook(HypervisordService),
    createAuditHook({ store: store.audit, logger: logger.child({ component: "audit" }) }),
    rateLimitHook,
    createRoleHook(),
  ];
  const healthCheck = createHealthCheck({
    version: VERSION,
    startTime,
    checkDatabase: async () => {
      await store.countByState();
    },
    queue: async () => {
      const stats = await engine.stats();
      return { queued: stats.counts.queued, running: stats.running, lifecycle: stats.lifecycle };
    },
    paths: [config.dataDir, ...config.allowedOutputRoots],
    minFreeBytes: config.health.minFreeBytes,
    cluster: core.cluster && { nodeId: config.cluster.nodeId, leaseMs: config.cluster.leaseMs, lease: core.cluster.leaseStatus },
  });
  const health = createHealthState([HypervisordService.typeName]);
  const bindings = [
    bindService(HypervisordService, withCallHooks(HypervisordService, api, hooks)),
    bindService(Health, createHealthHandlers(health)),
  ];
  return { bindings, authorize: authHook.check, health, healthCheck };
}
