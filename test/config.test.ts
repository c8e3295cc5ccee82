import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import YAML from "yaml";
import { ConfigError, loadConfig, type DaemonConfig } from "../src/config/load-config.ts";
import { SETTINGS } from "../src/config/settings.ts";
import { tempDir } from "./support/temp-dir.ts";

const EXAMPLE = path.resolve(import.meta.dirname, "../config.example.yaml");

function config(argv: string[], env: NodeJS.ProcessEnv = {}): DaemonConfig {
  const result = loadConfig(argv, env);
  assert.equal(result.kind, "run");
  return (result as { config: DaemonConfig }).config;
}

function writeYaml(text: string): string {
  const file = path.join(tempDir("config"), "config.yaml");
  fs.writeFileSync(file, text);
  return file;
}

describe("configuration", () => {
  test("defaults: loopback listeners, ./data, ./exports", () => {
    const c = config([]);
    assert.deepEqual(c.grpcListen, { host: "127.0.0.1", port: 50051 });
    assert.deepEqual(c.httpListen, { host: "127.0.0.1", port: 8080 });
    assert.equal(c.dataDir, path.resolve("data"));
    assert.deepEqual(c.allowedOutputRoots, [path.resolve("exports")]);
    assert.equal(c.engine.maxConcurrentJobs, 2);
    assert.equal(c.defaultVSphere, undefined);
  });

  test("flags beat environment variables, which beat the file, which beats defaults", () => {
    const file = writeYaml("grpc_listen: 127.0.0.1:1001\nhttp_listen: 127.0.0.1:2001\nlog_level: warn\njobs:\n  max_concurrent: 7\n  max_attempts: 9\n");
    const env = { HYPERVISORD_GRPC_LISTEN: "127.0.0.1:1002", HYPERVISORD_HTTP_LISTEN: "127.0.0.1:2002", HYPERVISORD_MAX_CONCURRENT_JOBS: "5" };
    const c = config(["--config", file, "--grpc-listen", "127.0.0.1:1003"], env);
    assert.equal(c.grpcListen.port, 1003, "flag");
    assert.equal(c.httpListen.port, 2002, "env over file");
    assert.equal(c.engine.maxConcurrentJobs, 5, "env over file");
    assert.equal(c.engine.maxAttempts, 9, "file over default");
    assert.equal(c.logLevel, "warn", "file");
    assert.equal(c.engine.retryInitialBackoffMs, 2000, "default");
    assert.equal(c.configFile, file);
  });

  test("HYPERVISORD_CONFIG names the file; lists come comma-separated from the environment", () => {
    const file = writeYaml("allowed_output_roots: [/srv/a]\n");
    const c = config([], { HYPERVISORD_CONFIG: file, HYPERVISORD_CORS_ALLOWED_ORIGINS: "http://a.example, http://b.example" });
    assert.deepEqual(c.allowedOutputRoots, ["/srv/a"]);
    assert.deepEqual(c.corsAllowedOrigins, ["http://a.example", "http://b.example"]);
    assert.deepEqual(config(["--allowed-output-root", "/x", "--allowed-output-root", "/y"]).allowedOutputRoots, ["/x", "/y"]);
  });

  test("durations, IPv6 addresses and the default vSphere connection", () => {
    const file = writeYaml("shutdown_grace: 1500ms\njobs:\n  retry_max_backoff: 2m\nvsphere:\n  url: https://vc/sdk\n  username: u\n  insecure: true\n");
    const c = config(["--config", file, "--http-listen", "[::1]:0"], { HYPERVISORD_VSPHERE_PASSWORD: "s3cret" });
    assert.equal(c.shutdownGraceMs, 1500);
    assert.equal(c.engine.retryMaxBackoffMs, 120_000);
    assert.deepEqual(c.httpListen, { host: "::1", port: 0 });
    assert.deepEqual(c.defaultVSphere, { url: "https://vc/sdk", username: "u", password: "s3cret", insecure: true, thumbprint: "" });
  });

  test("bad values name their source and the setting", () => {
    const cases: [string[], NodeJS.ProcessEnv, RegExp][] = [
      [["--grpc-listen", "nope"], {}, /^--grpc-listen: expected host:port/],
      [["--max-concurrent-jobs", "0"], {}, /^--max-concurrent-jobs: must be at least 1/],
      [[], { HYPERVISORD_MAX_CONCURRENT_JOBS: "two" }, /^HYPERVISORD_MAX_CONCURRENT_JOBS: expected an integer/],
      [[], { HYPERVISORD_LOG_LEVEL: "loud" }, /^HYPERVISORD_LOG_LEVEL: expected one of trace/],
      [["--shutdown-grace", "soon"], {}, /^--shutdown-grace: expected a duration/],
      [["--no-such-flag"], {}, /Unknown option '--no-such-flag'/],
      [["--config", "/does/not/exist.yaml"], {}, /cannot read config file \/does\/not\/exist.yaml/],
    ];
    for (const [argv, env, pattern] of cases) assert.throws(() => loadConfig(argv, env), (err) => err instanceof ConfigError && pattern.test(err.message), pattern.source);
  });

  test("unknown keys in the file are reported by name, not silently dropped; wrong values of known keys stop the start", () => {
    const file = writeYaml("jobs:\n  max_concurent: 3\nmetrics:\n  listen: 1\n");
    const c = config(["--config", file]);
    assert.equal(c.engine.maxConcurrentJobs, 2);
    assert.deepEqual(c.warnings, [
      `${file}: unknown setting "jobs.max_concurent" ignored (see config.example.yaml for the keys)`,
      `${file}: unknown setting "metrics" ignored (see config.example.yaml for the keys)`,
    ]);
    const typed = writeYaml("jobs:\n  max_concurrent: many\n");
    assert.throws(() => loadConfig(["--config", typed], {}), /: jobs.max_concurrent: expected an integer/);
  });

  test("dashboard: on by default from clients/web/dist of the checkout, whatever the working directory; env and file override", () => {
    const cwd = process.cwd();
    process.chdir(tempDir("elsewhere"));
    try {
      const c = config([]);
      assert.deepEqual(c.dashboard, { enabled: true, dir: path.resolve(import.meta.dirname, "../clients/web/dist") });
      const file = writeYaml("dashboard:\n  enabled: false\n  dir: web/dist\n");
      assert.deepEqual(config(["--config", file]).dashboard, { enabled: false, dir: path.resolve("web/dist") }, "a dir of the file resolves against the working directory");
      assert.deepEqual(config(["--config", file], { HYPERVISORD_DASHBOARD_ENABLED: "true", HYPERVISORD_DASHBOARD_DIR: "/srv/dashboard" }).dashboard, { enabled: true, dir: "/srv/dashboard" });
      assert.equal(config(["--config", writeYaml("dashboard:\n  dir: \"\"\n")]).dashboard.dir, c.dashboard.dir, "empty: the default");
      assert.throws(() => loadConfig([], { HYPERVISORD_DASHBOARD_ENABLED: "maybe" }), /^ConfigError: HYPERVISORD_DASHBOARD_ENABLED: expected true or false/);
    } finally {
      process.chdir(cwd);
    }
  });

  test("config.example.yaml loads and documents every setting", () => {
    config(["--config", EXAMPLE]);
    const document = YAML.parse(fs.readFileSync(EXAMPLE, "utf8")) as Record<string, unknown>;
    const keys = new Set<string>();
    const walk = (object: Record<string, unknown>, prefix: string) => {
      for (const [k, v] of Object.entries(object)) {
        const key = prefix ? `${prefix}.${k}` : k;
        const known = SETTINGS.some((setting) => setting.key === key);
        if (!known && v && typeof v === "object" && !Array.isArray(v)) walk(v as Record<string, unknown>, key);
        else keys.add(key);
      }
    };
    walk(document, "");
    assert.deepEqual([...keys].sort(), SETTINGS.map((s) => s.key).sort());
    const text = fs.readFileSync(EXAMPLE, "utf8");
    for (const s of SETTINGS) if (s.env) assert.ok(text.includes(s.env), `${s.env} documented`);
  });

  test("--help lists every flag", () => {
    const result = loadConfig(["--help"], {});
    assert.equal(result.kind, "help");
    for (const s of SETTINGS.filter((x) => x.flag)) assert.ok((result as { text: string }).text.includes(`--${s.flag}`), s.flag);
  });
});
