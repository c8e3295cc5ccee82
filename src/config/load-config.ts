import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import YAML from "yaml";
import type { AzureConnection, VSphereConnection } from "../domain/job.ts";
import type { EngineOptions } from "../engine/engine-options.ts";
import type { EdgeOptions } from "../server/edge-options.ts";
import type { ListenAddress } from "../listen-address.ts";
import { parseValue } from "./parse-value.ts";
import { SETTINGS, type Setting } from "./settings.ts";
import { errorMessage } from "../errors.ts";

/** The daemon's configuration with defaults applied, paths absolute and durations in ms. */
export interface DaemonConfig {
  dataDir: string;
  grpcListen: ListenAddress;
  httpListen: ListenAddress;
  logLevel: string;
  allowedOutputRoots: string[];
  corsAllowedOrigins: string[];
  shutdownGraceMs: number;
  maxLogBytesPerJob: number;
  engine: EngineOptions;
  /** The connection used when a request names none. */
  defaultVSphere?: VSphereConnection;
  vsphere: { maxConnections: number; sessionIdleTimeoutMs: number; maxTransfersPerHost: number; snapshotRemoveAttempts: number; snapshotRemoveBackoffMs: number };
  /** The Azure connection used when a request of provider "azure" names none (azure.subscription_id set). */
  defaultAzure?: AzureConnection;
  azure: { maxTransfersPerHost: number; accessDurationMs: number };
  /** qemu-img: an explicit path (else found on PATH) and how many conversions run at once. */
  conversion: { maxConcurrent: number; qemuImg?: string };
  /** The web dashboard served at / on the HTTP listener, from `dir` (absolute). */
  dashboard: { enabled: boolean; dir: string };
  /** A listener for GET /metrics only, besides the HTTP listener's /metrics. */
  metricsListen?: ListenAddress;
  health: { minFreeBytes: number };
  /** API keys from the file, as written (checked where they are used). */
  auth: { disabled: boolean; apiKeys: Record<string, unknown>[] };
  tls: { certFile?: string; keyFile?: string; clientCaFile?: string; requireClientCert: boolean };
  /** base64 of 32 bytes, when set. */
  encryptionKey?: string;
  /** secrets.encryption_key_file (absolute): the key read from a file; neither set: <dataDir>/encryption.key. */
  encryptionKeyFile?: string;
  rateLimit: {
    requestsPerSecond: number; burst: number; overrides: Record<string, Record<string, unknown> | null>;
    /** Refused authentications per address: refill per second (0: unlimited) and burst. */
    authFailures: { perSecond: number; burst: number };
  };
  /** Connection deadlines and caps, request size and HTTP/2 limits of both listeners (`server.*`). */
  server: EdgeOptions;
  /** Webhook endpoints and profiles from the file, as written: checked by the daemon with their field names. */
  webhooks: { allowPrivateTargets: boolean; endpoints: Record<string, unknown>[] };
  profiles: Record<string, Record<string, unknown> | null>;
  /** store.url: PostgreSQL shared by several daemons; undefined: SQLite in dataDir. */
  storeUrl?: string;
  /** This daemon among those sharing a PostgreSQL store: its node id and the lease of its running jobs. */
  cluster: { nodeId: string; leaseMs: number };
  /** The config file read, if any. */
  configFile?: string;
  /** Problems that do not stop the daemon (unknown keys in the file), to be logged at start. */
  warnings: string[];
}

/** clients/web/dist of this checkout: found from this file, not the working directory, so that `npm start` works from anywhere. */
export const DEFAULT_DASHBOARD_DIR = path.resolve(import.meta.dirname, "../../clients/web/dist");

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

export type CommandLine = { kind: "run"; config: DaemonConfig } | { kind: "help"; text: string } | { kind: "version" };

/** Reads flags, then HYPERVISORD_* variables, then the YAML file, then defaults: the first that sets a key wins. */
export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv): CommandLine {
  const flagSettings = SETTINGS.filter((s) => s.flag);
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        config: { type: "string", short: "c" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean" },
        ...Object.fromEntries(flagSettings.map((s) => [s.flag!, { type: s.type === "bool" ? "boolean" : "string", multiple: s.type === "list" }])),
      },
    });
  } catch (err) {
    throw new ConfigError(`${errorMessage(err)}; see --help`);
  }
  const flags = parsed.values as Record<string, unknown>;
  if (flags.help) return { kind: "help", text: helpText() };
  if (flags.version) return { kind: "version" };

  const configFile = (flags.config as string | undefined) ?? env.HYPERVISORD_CONFIG;
  const warnings: string[] = [];
  const fromFile = configFile ? readConfigFile(configFile, warnings) : new Map<string, unknown>();
  const values = new Map<string, unknown>();
  for (const setting of SETTINGS) {
    const flagValue = setting.flag ? flags[setting.flag] : undefined;
    const envValue = setting.env ? env[setting.env] : undefined;
    const [raw, source] =
      flagValue !== undefined ? [flagValue, `--${setting.flag}`]
      : envValue !== undefined && envValue !== "" ? [envValue, setting.env!]
      : fromFile.has(setting.key) ? [fromFile.get(setting.key), `${configFile}: ${setting.key}`]
      : [setting.default, `default of ${setting.key}`];
    if (raw === undefined) continue;
    try {
      values.set(setting.key, parseValue(setting, raw));
    } catch (err) {
      throw new ConfigError(`${source}: ${(err as Error).message}`);
    }
  }
  return { kind: "run", config: { ...compile(values, configFile), warnings } };
}

/** Unknown keys are reported, not fatal: a config written for a newer daemon still starts this one. */
function readConfigFile(file: string, warnings: string[]): Map<string, unknown> {
  let document: unknown;
  try {
    document = YAML.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  const values = new Map<string, unknown>();
  if (document === null || document === undefined) return values;
  if (typeof document !== "object" || Array.isArray(document)) throw new ConfigError(`${file}: expected a mapping of settings at the top level`);
  const known = new Map<string, Setting>(SETTINGS.map((s) => [s.key, s]));
  const groups = new Set(SETTINGS.filter((s) => s.key.includes(".")).map((s) => s.key.split(".")[0]!));
  const walk = (object: Record<string, unknown>, prefix: string) => {
    for (const [name, value] of Object.entries(object)) {
      const key = prefix ? `${prefix}.${name}` : name;
      if (known.has(key)) values.set(key, value);
      else if (!prefix && groups.has(key) && value && typeof value === "object" && !Array.isArray(value)) walk(value as Record<string, unknown>, key);
      else if (!prefix && groups.has(key) && value === null) continue;
      else warnings.push(`${file}: unknown setting "${key}" ignored (see config.example.yaml for the keys)`);
    }
  };
  walk(document as Record<string, unknown>, "");
  return values;
}

function compile(values: Map<string, unknown>, configFile: string | undefined): Omit<DaemonConfig, "warnings"> {
  const get = <T>(key: string) => values.get(key) as T;
  const roots = get<string[]>("allowed_output_roots");
  if (roots.length === 0) throw new ConfigError("allowed_output_roots: at least one directory is required");
  const vsphereUrl = get<string | undefined>("vsphere.url");
  const azureSubscription = get<string | undefined>("azure.subscription_id");
  const dataDir = path.resolve(get<string>("data_dir"));
  return {
    dataDir,
    storeUrl: checkStoreUrl(get<string | undefined>("store.url")),
    cluster: { nodeId: checkNodeId(get<string | undefined>("cluster.node_id")) ?? defaultNodeId(dataDir), leaseMs: get<number>("cluster.lease_timeout") },
    grpcListen: get<ListenAddress>("grpc_listen"),
    httpListen: get<ListenAddress>("http_listen"),
    logLevel: get<string>("log_level"),
    allowedOutputRoots: roots.map((r) => path.resolve(r)),
    corsAllowedOrigins: get<string[]>("cors_allowed_origins"),
    shutdownGraceMs: get<number>("shutdown_grace"),
    maxLogBytesPerJob: get<number>("jobs.log_max_bytes"),
    engine: {
      maxConcurrentJobs: get<number>("jobs.max_concurrent"),
      maxAttempts: get<number>("jobs.max_attempts"),
      retryMaxElapsedMs: get<number>("jobs.retry_max_elapsed"),
      retryInitialBackoffMs: get<number>("jobs.retry_initial_backoff"),
      retryMaxBackoffMs: get<number>("jobs.retry_max_backoff"),
      cleanupRetryInitialMs: get<number>("jobs.cleanup_retry_initial"),
      cleanupRetryMaxMs: get<number>("jobs.cleanup_retry_max"),
      progressIntervalMs: get<number>("jobs.progress_interval"),
      maxQueuedUpdatesPerSubscriber: get<number>("jobs.max_queued_updates"),
      jobLogLevel: get<string>("jobs.log_level"),
    },
    defaultVSphere: vsphereUrl
      ? {
          url: vsphereUrl,
          username: get<string | undefined>("vsphere.username") ?? "",
          password: get<string | undefined>("vsphere.password") ?? "",
          insecure: get<boolean>("vsphere.insecure"),
          thumbprint: get<string | undefined>("vsphere.thumbprint") ?? "",
        }
      : undefined,
    vsphere: {
      maxConnections: get<number>("vsphere.max_connections"),
      sessionIdleTimeoutMs: get<number>("vsphere.session_idle_timeout"),
      maxTransfersPerHost: get<number>("vsphere.max_transfers_per_host"),
      snapshotRemoveAttempts: get<number>("vsphere.snapshot_remove_attempts"),
      snapshotRemoveBackoffMs: get<number>("vsphere.snapshot_remove_backoff"),
    },
    defaultAzure: azureSubscription
      ? {
          tenantId: get<string | undefined>("azure.tenant_id") ?? "",
          clientId: get<string | undefined>("azure.client_id") ?? "",
          clientSecret: get<string | undefined>("azure.client_secret") ?? "",
          subscriptionId: azureSubscription,
          resourceGroup: get<string | undefined>("azure.resource_group") ?? "",
          authorityHost: get<string | undefined>("azure.authority_host") ?? "",
          resourceManager: get<string | undefined>("azure.resource_manager") ?? "",
        }
      : undefined,
    azure: { maxTransfersPerHost: get<number>("azure.max_transfers_per_host"), accessDurationMs: get<number>("azure.access_duration") },
    dashboard: { enabled: get<boolean>("dashboard.enabled"), dir: optionalPath(get<string | undefined>("dashboard.dir")) ?? DEFAULT_DASHBOARD_DIR },
    metricsListen: get<ListenAddress | undefined>("metrics_listen"),
    health: { minFreeBytes: get<number>("health.min_free_bytes") },
    auth: { disabled: get<boolean>("auth.disabled"), apiKeys: get<Record<string, unknown>[]>("auth.api_keys") },
    tls: {
      certFile: optionalPath(get<string | undefined>("tls.cert_file")),
      keyFile: optionalPath(get<string | undefined>("tls.key_file")),
      clientCaFile: optionalPath(get<string | undefined>("tls.client_ca_file")),
      requireClientCert: get<boolean>("tls.require_client_cert"),
    },
    encryptionKey: get<string | undefined>("secrets.encryption_key") || undefined,
    encryptionKeyFile: optionalPath(get<string | undefined>("secrets.encryption_key_file")),
    rateLimit: {
      requestsPerSecond: get<number>("rate_limit.requests_per_second"),
      burst: get<number>("rate_limit.burst"),
      overrides: get<Record<string, Record<string, unknown> | null>>("rate_limit.overrides"),
      authFailures: { perSecond: get<number>("rate_limit.auth_failures_per_minute") / 60, burst: get<number>("rate_limit.auth_failure_burst") },
    },
    server: {
      maxConnections: get<number>("server.max_connections"),
      firstBytesTimeoutMs: get<number>("server.first_bytes_timeout"),
      headersTimeoutMs: get<number>("server.headers_timeout"),
      idleTimeoutMs: get<number>("server.idle_timeout"),
      requestTimeoutMs: get<number>("server.request_timeout"),
      keepaliveTimeMs: get<number>("server.keepalive_time"),
      keepaliveTimeoutMs: get<number>("server.keepalive_timeout"),
      maxRequestBytes: get<number>("server.max_request_bytes"),
      maxConcurrentStreams: get<number>("server.max_concurrent_streams"),
      streamResets: { burst: get<number>("server.stream_reset_burst"), perSecond: get<number>("server.stream_reset_rate") },
    },
    webhooks: {
      allowPrivateTargets: get<boolean>("webhooks.allow_private_targets"),
      endpoints: get<Record<string, unknown>[]>("webhooks.endpoints"),
    },
    profiles: get<Record<string, Record<string, unknown> | null>>("profiles"),
    conversion: {
      maxConcurrent: get<number>("conversion.max_concurrent"),
      qemuImg: get<string | undefined>("conversion.qemu_img") || undefined,
    },
    configFile: configFile && path.resolve(configFile),
  };
}

const optionalPath = (value: string | undefined) => (value ? path.resolve(value) : undefined);

function helpText(): string {
  const lines = [
    "usage: hypervisord [--config FILE] [flags]",
    "       hypervisord secrets rotate [--new-key-file FILE] [--config FILE] [flags]   re-encrypt stored secrets with a new key (see secrets --help)",
    "       hypervisord store copy --from DATA_DIR --to postgres://... [--force]   copy a SQLite daemon's database into PostgreSQL (see store --help)",
    "",
    "Exports virtual machines from hypervisors into OVF/OVA packages as durable jobs.",
    "Settings come from flags, then HYPERVISORD_* variables, then the YAML config file, then defaults.",
    "",
    "  -c, --config FILE                 YAML config file (env HYPERVISORD_CONFIG); see config.example.yaml",
  ];
  for (const s of SETTINGS.filter((x) => x.flag)) {
    const flag = `--${s.flag} ${s.type === "bool" ? "" : s.type.toUpperCase()}`.padEnd(32);
    const def = s.default !== undefined && !(Array.isArray(s.default) && s.default.length === 0) ? ` (default ${JSON.stringify(s.default)})` : "";
    lines.push(`      ${flag}  ${s.help}${def}; env ${s.env}`);
  }
  lines.push("  -h, --help                        this text", "      --version                     print the version");
  return lines.join("\n");
}

/** postgres:// or postgresql:// (libpq's URL forms); the message never repeats the URL (it may hold a password). */
function checkStoreUrl(url: string | undefined): string | undefined {
  if (url === undefined || url === "") return undefined;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError("store.url: not a URL; expected postgres://user@host[:port]/database");
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    throw new ConfigError(`store.url: unsupported scheme "${parsed.protocol.replace(/:$/, "")}"; expected postgres://user@host[:port]/database (leave it unset for SQLite in data_dir)`);
  }
  if (!parsed.hostname && !parsed.searchParams.get("host")) throw new ConfigError("store.url: no host; expected postgres://user@host[:port]/database");
  return url;
}

function checkNodeId(id: string | undefined): string | undefined {
  if (id === undefined || id === "") return undefined;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(id)) throw new ConfigError(`cluster.node_id: "${id}" must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  return id;
}

/** The host name and a short hash of the data directory: two daemons on one machine get different ids. */
export function defaultNodeId(dataDir: string): string {
  const host = os.hostname().replace(/[^A-Za-z0-9._-]/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, 48) || "node";
  return `${host}-${createHash("sha256").update(dataDir).digest("hex").slice(0, 8)}`;
}
