import pino from "pino";
import type { JobDefinition } from "../../src/domain/job.ts";
import { createEngine, type Engine } from "../../src/engine/engine.ts";
import { initialSeq } from "../../src/engine/update-bus.ts";
import type { CompiledEngineOptions } from "../../src/engine/engine-options.ts";
import type { Provider } from "../../src/providers/provider.ts";
import { createProviderRegistry } from "../../src/providers/registry.ts";
import type { Store } from "../../src/store/store.ts";
import { createSqliteStore } from "../../src/store/sqlite/sqlite-store.ts";
import { tempDir } from "./temp-dir.ts";
import { fakeProviders } from "./fake-provider.ts";

export const TEST_ENGINE_OPTIONS: CompiledEngineOptions = {
  maxConcurrentJobs: 2,
  maxAttempts: 3,
  retryInitialBackoffMs: 30,
  retryMaxBackoffMs: 200,
  progressPublishIntervalMs: 20,
  progressPersistIntervalMs: 100,
  maxQueuedUpdatesPerSubscriber: 1000,
  jobLogLevel: "info",
};

export interface Harness {
  engine: Engine;
  store: Store;
  dataDir: string;
  outputDir: string;
  /** Shuts the engine down and closes the store. */
  close(): Promise<void>;
}

/** An engine on a real SQLite store in a temp directory, with the fake providers; started (recovery done). */
export async function startEngine(options: Partial<CompiledEngineOptions> = {}, dirs: { dataDir?: string; outputDir?: string } = {}, providers: Provider[] = fakeProviders()): Promise<Harness> {
  const dataDir = dirs.dataDir ?? tempDir("engine");
  const outputDir = dirs.outputDir ?? tempDir("out");
  const store = createSqliteStore({ dataDir, maxLogBytesPerJob: 64 * 1024 });
  const engine = createEngine({
    store, providers: createProviderRegistry(providers), logger: pino({ level: "silent" }),
    options: { ...TEST_ENGINE_OPTIONS, ...options }, initialSeq: await initialSeq(store),
  });
  await engine.start();
  return {
    engine, store, dataDir, outputDir,
    async close() {
      await engine.shutdown(2000);
      await store.close();
    },
  };
}

export function fakeDefinition(outputDir: string, vm: string, overrides: Partial<JobDefinition> = {}): JobDefinition {
  return {
    name: vm, provider: "fake", vm, outputDir, format: "ovf", compress: false, compressionLevel: 6,
    parallelDownloads: 4, bandwidthLimit: 0, powerOff: false, priority: "normal", labels: {}, ...overrides,
  };
}
