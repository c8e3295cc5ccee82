import type { Logger } from "pino";
import { redactUrl } from "../redact-url.ts";
import { loadEncryptionKey } from "./encryption-key.ts";
import { migrate } from "./postgres/migrations.ts";
import { createPostgresStore } from "./postgres/pg-store.ts";
import { createPool } from "./postgres/pool.ts";
import { keyContext } from "./postgres/stored-secrets.ts";
import { createSqliteStore } from "./sqlite/sqlite-store.ts";
import type { Store } from "./store.ts";

/**
 * The daemon's store: SQLite in the data directory, or, with store.url, the PostgreSQL database several daemons
 * share (then with its cluster side). Either way the encryption key is loaded and checked against the secrets the
 * store already holds: a wrong key stops the start here.
 */
export interface OpenStoreOptions {
  dataDir: string;
  /** store.url; undefined: SQLite in dataDir. */
  storeUrl?: string;
  maxLogBytesPerJob: number;
  encryptionKey?: string;
  encryptionKeyFile?: string;
  cluster: { nodeId: string; leaseMs: number };
  /** Per provider: running jobs per hypervisor host, across the cluster (vsphere/azure.max_transfers_per_host). */
  hostCaps: Record<string, number>;
}

export async function openStore(config: OpenStoreOptions, logger: Logger): Promise<Store> {
  const encryption = { key: config.encryptionKey, keyFile: config.encryptionKeyFile };
  if (!config.storeUrl) {
    return createSqliteStore({ dataDir: config.dataDir, maxLogBytesPerJob: config.maxLogBytesPerJob, logger, encryption });
  }
  const url = config.storeUrl;
  // The schema first (under the migration lock), then what the key loader asks of the database.
  const setup = createPool(url, { max: 1, applicationName: `hypervisord ${config.cluster.nodeId} setup` });
  let context;
  try {
    await migrate(setup);
    context = await keyContext(setup);
  } catch (err) {
    throw new Error(`store.url ${redactUrl(url)}: ${(err as Error).message}`, { cause: err });
  } finally {
    await setup.end();
  }
  const key = loadEncryptionKey({ dataDir: config.dataDir, ...encryption }, context);
  if (key.event === "generated") {
    logger.warn({ key_file: key.dataDirFile }, "no encryption key configured: generated one for the PostgreSQL store; every daemon sharing the "
      + "database must be given this same key (secrets.encryption_key_file), see README, Secrets and Several daemons");
  }
  const caps = config.hostCaps;
  const { nodeId, leaseMs } = config.cluster;
  const store = await createPostgresStore({
    url, nodeId, leaseMs, hostCap: (provider) => caps[provider], maxLogBytesPerJob: config.maxLogBytesPerJob,
    secretBox: key.box, keySource: key.source, logger,
  });
  return store;
}
