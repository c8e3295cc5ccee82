import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import readline from "node:readline";
import { ensureDistBuilt } from "../../scripts/build.ts";
import { createGrpcJsClient, type GrpcJsClient } from "./clients.ts";
import { startPostgres, type Postgres } from "./postgres.ts";
import { tempDir } from "./temp-dir.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
// The daemon here runs from the sources (fake-daemon.ts adds test providers), but tests beside it run bin/hyperctl.js,
// which runs dist/: rebuilt when stale (a hash check, milliseconds when fresh), so a test file run alone sees the current sources.
await ensureDistBuilt();

export interface DaemonProcess {
  child: ChildProcess;
  grpcAddress: string;
  httpAddress: string;
  /** http://host:port of the HTTP listener. */
  httpUrl: string;
  dataDir: string;
  outputRoot: string;
  /** What it was spawned with (its args and env are kept by respawnDaemon). */
  options: SpawnOptions;
  /** Every stdout line so far (pino JSON). */
  logs: string[];
  /** SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL; resolves when the process is gone. */
  kill(): Promise<void>;
}

export interface SpawnOptions {
  dataDir?: string;
  outputRoot?: string;
  args?: string[];
  env?: Record<string, string>;
  /** Options of node itself, before the script (e.g. `--cpu-prof`, which NODE_OPTIONS does not allow). */
  nodeArgs?: string[];
}

let sharedPostgres: Promise<Postgres> | undefined;

/**
 * With HYPERVISORD_TEST_STORE=postgres (test/api-postgres.test.ts sets it), every daemon a test spawns without a
 * --store of its own gets a fresh database of one throw-away PostgreSQL cluster: the API suites run against the
 * PostgreSQL store unchanged. The --store argument is kept in the options, so a respawned daemon finds its database.
 */
async function withTestStore(options: SpawnOptions): Promise<SpawnOptions> {
  if (process.env.HYPERVISORD_TEST_STORE !== "postgres" || options.args?.includes("--store")) return options;
  sharedPostgres ??= startPostgres();
  const url = await (await sharedPostgres).createDatabase();
  return { ...options, args: [...(options.args ?? []), "--store", url] };
}

/** Starts test/support/fake-daemon.ts (the real daemon plus fake providers) on free ports and waits for "hypervisord ready". */
export async function spawnDaemon(spawnOptions: SpawnOptions = {}): Promise<DaemonProcess> {
  const options = await withTestStore(spawnOptions);
  const dataDir = options.dataDir ?? tempDir("data");
  const outputRoot = options.outputRoot ?? tempDir("exports");
  const child = spawn(process.execPath, [
    ...(options.nodeArgs ?? []), "--import", "tsx", path.join(ROOT, "test/support/fake-daemon.ts"),
    "--data-dir", dataDir, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
    "--allowed-output-root", outputRoot, ...(options.args ?? []),
  ], { cwd: ROOT, env: { ...process.env, HYPERVISORD_RATE_LIMIT_RPS: "0", ...options.env }, stdio: ["ignore", "pipe", "pipe"] });
  const logs: string[] = [];
  const stderr: string[] = [];
  child.stderr!.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const ready = new Promise<{ grpc: string; http: string }>((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      logs.push(line);
      if (line.includes('"hypervisord ready"')) {
        const record = JSON.parse(line) as { grpc_address: string; http_address: string };
        resolve({ grpc: record.grpc_address, http: record.http_address });
      }
    });
    void exited.then((code) => reject(new Error(`daemon exited with ${code} before ready:\n${logs.join("\n")}\n${stderr.join("")}`)));
  });
  const timeout = setTimeout(() => child.kill("SIGKILL"), 30_000);
  const addresses = await ready.finally(() => clearTimeout(timeout));
  return {
    child,
    grpcAddress: addresses.grpc,
    httpAddress: addresses.http,
    httpUrl: `http://${addresses.http}`,
    dataDir,
    outputRoot,
    options,
    logs,
    stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      return exited;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}

/**
 * What starts a daemon again where `daemon` ran: its data dir, output root, args and env, and with
 * `samePorts` its listen addresses too (a client reconnecting to the old address finds the new daemon).
 */
export function respawnOptions(daemon: DaemonProcess, { samePorts = false }: { samePorts?: boolean } = {}): SpawnOptions {
  const ports = samePorts ? ["--http-listen", daemon.httpAddress, "--grpc-listen", daemon.grpcAddress] : [];
  return { ...daemon.options, dataDir: daemon.dataDir, outputRoot: daemon.outputRoot, args: [...(daemon.options.args ?? []), ...ports] };
}

/** kill -9 (a crash: no graceful shutdown, nothing flushed on the way out), then the same daemon started again, see respawnOptions. */
export async function respawnDaemon(daemon: DaemonProcess, options: { samePorts?: boolean } = {}): Promise<DaemonProcess> {
  await daemon.kill();
  return spawnDaemon(respawnOptions(daemon, options));
}

/** Spawns the daemon expecting it to refuse to start with `message`; one that starts anyway is stopped (not leaked) and fails the test. */
export async function assertRefusesToStart(options: SpawnOptions, message: RegExp): Promise<string> {
  let daemon: DaemonProcess;
  try {
    daemon = await spawnDaemon(options);
  } catch (err) {
    assert.match((err as Error).message, message);
    return (err as Error).message;
  }
  await daemon.stop();
  return assert.fail(`the daemon started; expected it to refuse with ${message}`);
}

/** A daemon and a grpc-js client to it; `cleanups` gets the kill of the one and the close of the other. */
export async function spawnDaemonWithClient(
  options: SpawnOptions, cleanups: (() => Promise<unknown> | void)[],
): Promise<{ daemon: DaemonProcess; client: GrpcJsClient }> {
  const daemon = await spawnDaemon(options);
  const client = createGrpcJsClient(daemon.grpcAddress);
  cleanups.push(() => daemon.kill(), () => client.close());
  return { daemon, client };
}
