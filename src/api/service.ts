import type { HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import type { AzureConnection, VSphereConnection } from "../domain/job.ts";
import type { VirtualMachine } from "../domain/vm.ts";
import type { Engine } from "../engine/engine.ts";
import type { ProviderRegistry } from "../providers/registry.ts";
import type { ServiceHandlers } from "../rpc/handlers.ts";
import type { Scheduler } from "../scheduler/scheduler.ts";
import type { Store } from "../store/store.ts";
import type { WebhookDispatcher } from "../webhooks/dispatcher.ts";
import { createApiKeyHandlers } from "./api-keys.ts";
import { createAuditHandlers } from "./audit.ts";
import { createBatchHandlers } from "./batches.ts";
import type { DefinitionRules } from "./job-definition.ts";
import { createJobHandlers } from "./jobs.ts";
import { createPackageHandlers } from "./packages.ts";
import { createProfileHandlers, type ProfileRegistry } from "./profiles.ts";
import { createScheduleHandlers } from "./schedules.ts";
import { createSystemHandlers, type SystemDeps } from "./system.ts";
import { createVmHandlers } from "./vms.ts";
import { createWebhookHandlers } from "./webhooks.ts";

export interface ApiDeps {
  engine: Engine;
  store: Store;
  providers: ProviderRegistry;
  scheduler: Scheduler;
  webhooks: WebhookDispatcher;
  profiles: ProfileRegistry;
  allowedOutputRoots: readonly string[];
  /** allowedOutputRoots with symbolic links resolved (see realPaths): computed once by the daemon. */
  realOutputRoots: readonly string[];
  allowPrivateWebhookTargets: boolean;
  defaultVSphere?: VSphereConnection;
  /** The config's azure.* connection, for provider "azure" jobs without their own. */
  defaultAzure?: AzureConnection;
  /** Per conversion format: why it cannot run here, or undefined when it can. */
  conversionUnavailable(format: string): string | undefined;
  /** An unfiltered ListVMs result: the whole inventory (the vms_discovered gauge). */
  onVmsListed?(provider: string, vms: readonly VirtualMachine[]): void;
  /** An API key was created or revoked (the auth hook's key cache). */
  onApiKeysChanged?(): void;
  startTime: number;
  /** A cluster node (PostgreSQL store), for GetStatus. */
  cluster?: SystemDeps["cluster"];
}

/** The HypervisordService, independent of transport (src/server adapts it to gRPC and Connect): one module per resource. */
export function createHypervisordApi(deps: ApiDeps): ServiceHandlers<typeof HypervisordService> {
  const { engine, store, providers } = deps;
  const rules: DefinitionRules = {
    providers, allowedOutputRoots: deps.allowedOutputRoots, realOutputRoots: deps.realOutputRoots, defaultVSphere: deps.defaultVSphere,
    defaultAzure: deps.defaultAzure,
    conversionUnavailable: deps.conversionUnavailable,
    profile: (name) => deps.profiles.get(name),
  };
  return {
    ...createJobHandlers({ engine, store, rules }),
    ...createBatchHandlers(engine),
    ...createVmHandlers({ providers, webhookStore: store.webhooks, webhooks: deps.webhooks, onVmsListed: deps.onVmsListed }),
    ...createSystemHandlers({ engine, store, providers, allowedOutputRoots: deps.allowedOutputRoots, conversionUnavailable: deps.conversionUnavailable, startTime: deps.startTime, cluster: deps.cluster }),
    ...createPackageHandlers(deps.allowedOutputRoots, rules.realOutputRoots),
    ...createScheduleHandlers({ store: store.schedules, scheduler: deps.scheduler, engine, rules }),
    ...createProfileHandlers(deps.profiles, rules),
    ...createWebhookHandlers({ store: store.webhooks, dispatcher: deps.webhooks, allowPrivateTargets: deps.allowPrivateWebhookTargets }),
    ...createApiKeyHandlers(store.apiKeys, { onChange: deps.onApiKeysChanged }),
    ...createAuditHandlers(store.audit),
  };
}
