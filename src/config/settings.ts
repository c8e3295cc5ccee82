/**
 * Every setting of the daemon, once: its config-file key, flag, environment
 * variable, type and default. config.example.yaml documents the same keys.
 */
export type SettingType = "string" | "int" | "duration" | "bool" | "list" | "address" | "level" | "records" | "map";

export interface Setting {
  key: string;
  flag?: string;
  env?: string;
  type: SettingType;
  /** Written as a user would write it (e.g. "7s"); parsed like any other value. */
  default?: unknown;
  min?: number;
  max?: number;
  help: string;
}

export const SETTINGS: readonly Setting[] = [
  { key: "data_dir", flag: "data-dir", env: "HYPERVISORD_DATA_DIR", type: "string", default: "./data", help: "directory of the SQLite database" },
  { key: "store.url", flag: "store", env: "HYPERVISORD_STORE_URL", type: "string", help: "postgres://user@host/db: keep the state in PostgreSQL, shared by several daemons (default: SQLite in data_dir)" },
  { key: "cluster.node_id", env: "HYPERVISORD_NODE_ID", type: "string", help: "this daemon's name among those sharing a PostgreSQL store (default: host name + a hash of data_dir)" },
  { key: "cluster.lease_timeout", env: "HYPERVISORD_LEASE_TIMEOUT", type: "duration", default: "30s", min: 1000, max: 3_600_000, help: "a running job whose node has not renewed its lease this long is resumed by another node (PostgreSQL store)" },
  { key: "grpc_listen", flag: "grpc-listen", env: "HYPERVISORD_GRPC_LISTEN", type: "address", default: "127.0.0.1:50051", help: "gRPC listener, host:port (port 0 picks a free one)" },
  { key: "http_listen", flag: "http-listen", env: "HYPERVISORD_HTTP_LISTEN", type: "address", default: "127.0.0.1:8080", help: "Connect / gRPC-Web / HTTP listener, host:port" },
  { key: "log_level", flag: "log-level", env: "HYPERVISORD_LOG_LEVEL", type: "level", default: "info", help: "trace, debug, info, warn, error or fatal" },
  { key: "allowed_output_roots", flag: "allowed-output-root", env: "HYPERVISORD_ALLOWED_OUTPUT_ROOTS", type: "list", default: ["./exports"], help: "directories exports may be written under (flag repeatable, env comma-separated)" },
  { key: "cors_allowed_origins", flag: "cors-allowed-origin", env: "HYPERVISORD_CORS_ALLOWED_ORIGINS", type: "list", default: [], help: "browser origins allowed to call the HTTP listener, or * for any" },
  { key: "shutdown_grace", flag: "shutdown-grace", env: "HYPERVISORD_SHUTDOWN_GRACE", type: "duration", default: "7s", min: 0, max: 60_000, help: "how long running jobs get to checkpoint on SIGTERM" },
  { key: "jobs.max_concurrent", flag: "max-concurrent-jobs", env: "HYPERVISORD_MAX_CONCURRENT_JOBS", type: "int", default: 2, min: 1, max: 256, help: "jobs run at once" },
  { key: "jobs.max_attempts", env: "HYPERVISORD_MAX_ATTEMPTS", type: "int", default: 10, min: 1, max: 100, help: "runs of a job that keeps failing with transient errors (retrying also stops at jobs.retry_max_elapsed)" },
  { key: "jobs.retry_max_elapsed", env: "HYPERVISORD_RETRY_MAX_ELAPSED", type: "duration", default: "15m", min: 0, help: "no retry starts once this long has passed since the job's first attempt (or its resume after a restart) started (0: attempts alone limit)" },
  { key: "jobs.retry_initial_backoff", type: "duration", default: "2s", min: 0, help: "wait before the first retry; doubles each retry (+-20% jitter)" },
  { key: "jobs.retry_max_backoff", type: "duration", default: "5m", min: 0, help: "longest wait between retries" },
  { key: "jobs.cleanup_retry_initial", type: "duration", default: "30s", min: 100, help: "first background retry of what an ended job still holds on a hypervisor (a snapshot whose removal failed); doubles while it fails" },
  { key: "jobs.cleanup_retry_max", type: "duration", default: "5m", min: 100, help: "longest wait between background cleanup retries (they also run at every start)" },
  { key: "jobs.log_max_bytes", type: "int", default: 1_048_576, min: 4096, help: "per-job log size cap; the oldest entries are dropped" },
  { key: "jobs.log_level", type: "level", default: "info", help: "level of the per-job logs" },
  { key: "jobs.progress_interval", type: "duration", default: "250ms", min: 10, max: 60_000, help: "at most one progress update per job per this interval" },
  { key: "jobs.max_queued_updates", type: "int", default: 10_000, min: 100, help: "state changes a slow StreamJobUpdates subscriber may lag before it is cut off" },
  { key: "dashboard.enabled", env: "HYPERVISORD_DASHBOARD_ENABLED", type: "bool", default: true, help: "serve the web dashboard at / on the HTTP listener" },
  { key: "dashboard.dir", env: "HYPERVISORD_DASHBOARD_DIR", type: "string", help: "the built dashboard; default: clients/web/dist of the hypervisord checkout, wherever the daemon is started" },
  { key: "metrics_listen", flag: "metrics-listen", env: "HYPERVISORD_METRICS_LISTEN", type: "address", help: "a separate listener for GET /metrics (it is also on the HTTP listener)" },
  { key: "health.min_free_bytes", type: "int", default: 1_073_741_824, min: 0, help: "free bytes below which a data or output root makes /health degraded" },
  { key: "auth.disabled", env: "HYPERVISORD_AUTH_DISABLED", type: "bool", default: false, help: "serve without authentication even on a non-loopback address" },
  { key: "auth.api_keys", type: "records", default: [], help: "API keys defined in the config file (file only; see config.example.yaml)" },
  { key: "tls.cert_file", flag: "tls-cert", env: "HYPERVISORD_TLS_CERT", type: "string", help: "PEM certificate (chain) for both listeners; with tls.key_file, they serve TLS" },
  { key: "tls.key_file", flag: "tls-key", env: "HYPERVISORD_TLS_KEY", type: "string", help: "PEM private key of tls.cert_file" },
  { key: "tls.client_ca_file", env: "HYPERVISORD_TLS_CLIENT_CA", type: "string", help: "PEM CA bundle: client certificates it signed authenticate callers (mTLS)" },
  { key: "tls.require_client_cert", type: "bool", default: false, help: "refuse TLS connections without a valid client certificate" },
  { key: "secrets.encryption_key", env: "HYPERVISORD_ENCRYPTION_KEY", type: "string", help: "base64 of 32 bytes: stored secrets (vSphere passwords, webhook URLs, secrets and headers) are encrypted with it (AES-256-GCM); default: <data_dir>/encryption.key, generated at first start" },
  { key: "secrets.encryption_key_file", flag: "encryption-key-file", env: "HYPERVISORD_ENCRYPTION_KEY_FILE", type: "string", help: "a file holding the encryption key (base64 of 32 bytes), e.g. a systemd credential; instead of secrets.encryption_key" },
  { key: "rate_limit.requests_per_second", env: "HYPERVISORD_RATE_LIMIT_RPS", type: "int", default: 50, min: 0, help: "per client (API key, else address) token refill rate; 0 disables rate limiting" },
  { key: "rate_limit.burst", type: "int", default: 100, min: 1, help: "per client bucket size" },
  { key: "rate_limit.overrides", type: "map", default: {}, help: "per RPC {requests_per_second, burst}, e.g. SubmitJob (file only)" },
  { key: "rate_limit.auth_failures_per_minute", env: "HYPERVISORD_AUTH_FAILURES_PER_MINUTE", type: "int", default: 60, min: 0, help: "refused authentications (no or a wrong key) allowed per minute per address; 0 disables the limit" },
  { key: "rate_limit.auth_failure_burst", type: "int", default: 20, min: 1, help: "refused authentications an address may have at once before it gets RESOURCE_EXHAUSTED" },
  { key: "server.max_connections", env: "HYPERVISORD_MAX_CONNECTIONS", type: "int", default: 1000, min: 1, help: "connections per listener; at the cap the one idle the longest is closed" },
  { key: "server.first_bytes_timeout", type: "duration", default: "10s", min: 100, help: "a connection that sends nothing this long is closed" },
  { key: "server.headers_timeout", type: "duration", default: "30s", min: 100, help: "a connection whose first request (TLS handshake and headers included) is not in this long after connecting is closed" },
  { key: "server.idle_timeout", type: "duration", default: "2m", min: 100, help: "a connection with no call in flight this long is closed (HTTP/2: GOAWAY); live streams are never cut" },
  { key: "server.request_timeout", type: "duration", default: "60s", min: 100, help: "a request body not received whole this long after its headers closes the connection" },
  { key: "server.keepalive_time", type: "duration", default: "1m", min: 1000, help: "TCP keep-alive (and HTTP/2 PING on the gRPC listener) after this long without traffic" },
  { key: "server.keepalive_timeout", type: "duration", default: "20s", min: 1000, help: "an HTTP/2 PING not answered this long closes the connection (gRPC listener)" },
  { key: "server.max_request_bytes", env: "HYPERVISORD_MAX_REQUEST_BYTES", type: "int", default: 4_194_304, min: 1024, help: "largest request message on both listeners (RESOURCE_EXHAUSTED beyond)" },
  { key: "server.max_concurrent_streams", type: "int", default: 100, min: 1, help: "HTTP/2 streams open at once per connection" },
  { key: "server.stream_reset_burst", type: "int", default: 200, min: 1, help: "stream resets by the client a connection may make at once before GOAWAY (HTTP/2 rapid reset)" },
  { key: "server.stream_reset_rate", type: "int", default: 20, min: 1, help: "stream resets per second refilled to server.stream_reset_burst" },
  { key: "conversion.max_concurrent", env: "HYPERVISORD_MAX_CONVERSIONS", type: "int", default: 2, min: 1, max: 64, help: "qemu-img conversions run at once, across jobs" },
  { key: "conversion.qemu_img", env: "HYPERVISORD_QEMU_IMG", type: "string", help: "path of qemu-img; default: found on PATH" },
  { key: "webhooks.allow_private_targets", type: "bool", default: false, help: "let webhooks target loopback, link-local and private addresses" },
  { key: "webhooks.endpoints", type: "records", default: [], help: "webhooks defined in the config file (file only; see config.example.yaml)" },
  { key: "profiles", type: "map", default: {}, help: "named export settings, by name (file only; see config.example.yaml)" },
  { key: "vsphere.url", env: "HYPERVISORD_VSPHERE_URL", type: "string", help: "default vSphere connection: SDK URL" },
  { key: "vsphere.username", env: "HYPERVISORD_VSPHERE_USERNAME", type: "string", help: "default vSphere connection: user" },
  { key: "vsphere.password", env: "HYPERVISORD_VSPHERE_PASSWORD", type: "string", help: "default vSphere connection: password" },
  { key: "vsphere.insecure", env: "HYPERVISORD_VSPHERE_INSECURE", type: "bool", default: false, help: "default vSphere connection: skip TLS verification" },
  { key: "vsphere.max_connections", env: "HYPERVISORD_VSPHERE_MAX_CONNECTIONS", type: "int", default: 8, min: 1, max: 64, help: "HTTP connections per vSphere endpoint (SOAP and downloads)" },
  { key: "vsphere.session_idle_timeout", type: "duration", default: "5m", min: 1000, help: "a vSphere session unused this long is logged out" },
  { key: "vsphere.max_transfers_per_host", env: "HYPERVISORD_VSPHERE_MAX_TRANSFERS_PER_HOST", type: "int", default: 8, min: 1, max: 64, help: "concurrent disk transfers per ESXi host, across jobs" },
  { key: "vsphere.snapshot_remove_attempts", type: "int", default: 5, min: 1, max: 100, help: "RemoveSnapshot_Task tries within a job's run before its removal is left to the background retries" },
  { key: "vsphere.snapshot_remove_backoff", type: "duration", default: "1s", min: 0, help: "wait before the second in-run try of a snapshot's removal; doubles after each (5 tries: about 15 s)" },
  { key: "vsphere.thumbprint", env: "HYPERVISORD_VSPHERE_THUMBPRINT", type: "string", help: "default vSphere connection: pinned certificate fingerprint" },
  { key: "azure.tenant_id", env: "HYPERVISORD_AZURE_TENANT_ID", type: "string", help: "default Azure connection: Microsoft Entra tenant id" },
  { key: "azure.client_id", env: "HYPERVISORD_AZURE_CLIENT_ID", type: "string", help: "default Azure connection: the service principal's application (client) id" },
  { key: "azure.client_secret", env: "HYPERVISORD_AZURE_CLIENT_SECRET", type: "string", help: "default Azure connection: the service principal's client secret" },
  { key: "azure.subscription_id", env: "HYPERVISORD_AZURE_SUBSCRIPTION_ID", type: "string", help: "default Azure connection: subscription (setting it makes the default)" },
  { key: "azure.resource_group", env: "HYPERVISORD_AZURE_RESOURCE_GROUP", type: "string", help: "default Azure connection: limit discovery and VM names to this resource group" },
  { key: "azure.authority_host", env: "HYPERVISORD_AZURE_AUTHORITY_HOST", type: "string", help: "default Azure connection: token authority (default https://login.microsoftonline.com)" },
  { key: "azure.resource_manager", env: "HYPERVISORD_AZURE_RESOURCE_MANAGER", type: "string", help: "default Azure connection: Resource Manager endpoint (default https://management.azure.com)" },
  { key: "azure.max_transfers_per_host", env: "HYPERVISORD_AZURE_MAX_TRANSFERS_PER_HOST", type: "int", default: 8, min: 1, max: 64, help: "concurrent page-blob range requests per storage host, across jobs" },
  { key: "azure.access_duration", type: "duration", default: "4h", min: 60_000, help: "how long a disk's read SAS (beginGetAccess) is valid; ended (endGetAccess) as soon as the export is done" },
];
