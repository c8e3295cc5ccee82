import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import pg from "pg";

/**
 * A throw-away PostgreSQL cluster from Debian's `postgresql` package: initdb in a temp directory, pg_ctl start
 * on a free port (as the `postgres` user when the tests run as root, since PostgreSQL refuses to run as root),
 * removed at stop. `skipReason()` says why none can be started here; the tests print it when they skip.
 */
export interface Postgres {
  /** postgres://hv@127.0.0.1:PORT/DB of a fresh database (createDatabase). */
  port: number;
  url(database?: string): string;
  /** A new empty database; its URL. */
  createDatabase(name?: string): Promise<string>;
  /** pg_ctl stop -m fast, then start again on the same port (a restart under load). */
  restart(options?: { downMs?: number }): Promise<void>;
  stopServer(): void;
  startServer(): void;
  stop(): Promise<void>;
}

const BIN_DIRS = ["/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin"];

function binDir(): string | undefined {
  return BIN_DIRS.find((dir) => fs.existsSync(path.join(dir, "initdb")) && fs.existsSync(path.join(dir, "postgres")));
}

/** Why PostgreSQL cannot be started on this machine, or undefined when it can. */
export function postgresSkipReason(): string | undefined {
  if (!binDir()) return `PostgreSQL server binaries not found in ${BIN_DIRS.join(", ")} (install Debian's postgresql package; .ci/run does)`;
  if (process.getuid?.() === 0 && spawnSync("id", ["postgres"]).status !== 0) return "running as root and there is no postgres user to run the server as";
  return undefined;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

let databases = 0;

export async function startPostgres(): Promise<Postgres> {
  const bin = binDir();
  if (!bin) throw new Error(postgresSkipReason());
  const asRoot = process.getuid?.() === 0;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hvd-pg-"));
  const dataDir = path.join(dir, "data");
  const socketDir = path.join(dir, "sock");
  fs.mkdirSync(socketDir);
  if (asRoot) {
    fs.chmodSync(dir, 0o755);
    execFileSync("chown", ["-R", "postgres:postgres", dir]);
  }
  const run = (file: string, args: string[]) => {
    const command = asRoot ? "runuser" : path.join(bin, file);
    const argv = asRoot ? ["-u", "postgres", "--", path.join(bin, file), ...args] : args;
    return execFileSync(command, argv, { stdio: ["ignore", "pipe", "pipe"], cwd: dir });
  };
  run("initdb", ["-D", dataDir, "-U", "hv", "--auth=trust", "--no-sync", "-E", "UTF8"]);
  const port = await freePort();
  // fsync off: a throw-away cluster; the crash tests kill daemons, not PostgreSQL.
  const options = `-p ${port} -k ${socketDir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300 -c synchronous_commit=off`;
  const startServer = () => void run("pg_ctl", ["-D", dataDir, "-w", "-t", "60", "-l", path.join(dir, "log"), "-o", options, "start"]);
  const stopServer = () => void run("pg_ctl", ["-D", dataDir, "-w", "-m", "fast", "stop"]);
  startServer();
  const url = (database = "postgres") => `postgres://hv@127.0.0.1:${port}/${database}`;
  let stopped = false;
  const cleanup = () => {
    if (stopped) return;
    stopped = true;
    try {
      stopServer();
    } catch {
      // Already down (a test stopped it); the directory goes either way.
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", cleanup);
  return {
    port,
    url,
    async createDatabase(name = `hv_test_${process.pid}_${++databases}`) {
      const client = new pg.Client({ connectionString: url() });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
      } finally {
        await client.end();
      }
      return url(name);
    },
    async restart(options = {}) {
      stopServer();
      await new Promise((resolve) => setTimeout(resolve, options.downMs ?? 0));
      startServer();
    },
    stopServer,
    startServer,
    async stop() {
      // A pool's end() resolves before its connections are gone: stopping the server under them would raise
      // "terminating connection due to administrator command" in the test process. Wait (briefly) for them to go.
      if (!stopped) {
        const client = new pg.Client({ connectionString: url() });
        try {
          await client.connect();
          const deadline = Date.now() + 3_000;
          while (Date.now() < deadline) {
            const { rows } = await client.query<{ n: string }>(
              "SELECT count(*) AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()");
            if (Number(rows[0]!.n) === 0) break;
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        } catch {
          // The server is down already (a test stopped it): nothing to wait for.
        } finally {
          await client.end().catch(() => undefined);
        }
      }
      cleanup();
    },
  };
}
