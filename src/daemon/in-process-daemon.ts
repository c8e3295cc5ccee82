/**
 * The daemon without listeners, for `hyperctl export --local`: the same core and call stack as startDaemon
 * (store, providers, engine, the API with its checks and hooks) over a throw-away data directory, reached
 * through an in-memory Connect transport instead of a socket. So a one-shot export runs exactly the
 * pipeline a daemon runs, while no port is taken and nothing else on the machine can call it.
 */
import { createRouterTransport, type Transport } from "@connectrpc/connect";
import type { Logger } from "pino";
import { loadConfig } from "../config/load-config.ts";
import { createReleasers } from "../releasers.ts";
import { registerConnectServices } from "../server/connect-routes.ts";
import { builtinProviders } from "./builtin-providers.ts";
import { createCallStack } from "./call-stack.ts";
import { openCore } from "./core.ts";

/** Settings a one-shot export takes from the environment: where vSphere or Azure is, qemu-img, retries. Nothing about a daemon's own state. */
const PASSED_ENV = /^HYPERVISORD_(VSPHERE_[A-Z_]+|AZURE_[A-Z_]+|QEMU_IMG|MAX_CONVERSIONS|MAX_ATTEMPTS|RETRY_MAX_ELAPSED)$/;

/** How often, and how long, stop() waits for what ended jobs still hold (a lease to abort, a snapshot to remove). */
const SETTLE_POLL_MS = 100;

export interface InProcessDaemonOptions {
  /** An empty directory of its own: the SQLite store, its key and lock. The caller removes it after stop(). */
  dataDir: string;
  /** The one allowed output root. */
  outputRoot: string;
  env: NodeJS.ProcessEnv;
  logger: Logger;
}

export interface InProcessDaemon {
  /** The API, as a Connect transport for a client in this process. */
  readonly transport: Transport;
  /**
   * Waits up to `limitMs` for the ended jobs to release what they hold on a hypervisor (a daemon would keep
   * trying in the background; this one is about to disappear with its store). Resolves with what is still held.
   */
  settle(limitMs: number): Promise<string[]>;
  /** Running jobs stop, the store closes. */
  stop(): Promise<void>;
}

export async function startInProcessDaemon(options: InProcessDaemonOptions): Promise<InProcessDaemon> {
  const { logger } = options;
  const env = Object.fromEntries(Object.entries(options.env).filter(([name]) => PASSED_ENV.test(name)));
  // Its only caller is this process: no rate limit; the listen addresses are never bound (loopback keeps auth open).
  const command = loadConfig(["--data-dir", options.dataDir, "--allowed-output-root", options.outputRoot], { ...env, HYPERVISORD_RATE_LIMIT_RPS: "0" });
  if (command.kind !== "run") throw new Error(`unexpected config command ${command.kind}`);
  const { config } = command;
  const releasers = createReleasers();
  try {
    const core = await openCore({ config, logger, providers: (tools) => builtinProviders(config, logger, tools) }, releasers);
    const stack = await createCallStack(core, config, logger, releasers, Date.now());
    // Released first, as in startDaemon: running jobs stop before the providers and the store close.
    releasers.add(() => core.engine.shutdown(config.shutdownGraceMs));
    await core.engine.start();
    const transport = createRouterTransport((router) => registerConnectServices(router, stack.bindings, logger));
    let stopping: Promise<void> | undefined;
    return {
      transport,
      async settle(limitMs) {
        const deadline = Date.now() + limitMs;
        let held = await core.store.endedJobsWithCheckpoint();
        while (held.length > 0 && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, SETTLE_POLL_MS));
          held = await core.store.endedJobsWithCheckpoint();
        }
        return held.map((job) => job.pendingCleanup ?? `job ${job.id}: files or a lease not released yet`);
      },
      stop() {
        stopping ??= releasers.releaseAll();
        return stopping;
      },
    };
  } catch (err) {
    await releasers.releaseAll().catch((releaseErr: unknown) => logger.error({ err: releaseErr }, "cleanup after a failed start failed"));
    throw err;
  }
}
