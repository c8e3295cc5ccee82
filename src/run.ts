import pino, { type Logger } from "pino";
import { ConfigError, loadConfig, type DaemonConfig } from "./config/load-config.ts";
import { startDaemon, type Daemon } from "./daemon/index.ts";
import { createLogger } from "./logging.ts";
import { runSecretsCommand } from "./secrets-command.ts";
import { runStoreCommand } from "./store-command.ts";
import type { DaemonTools, Provider } from "./providers/provider.ts";
import { VERSION } from "./version.ts";

/** Hard limit on a graceful stop: SIGTERM to exit within 10 s whatever happens. */
const STOP_DEADLINE_MS = 9_500;

/** The hypervisord process: configuration, the daemon, signals and exit codes. */
export async function run(
  argv: readonly string[], env: NodeJS.ProcessEnv, providersFor: (config: DaemonConfig, logger: Logger, tools: DaemonTools) => Provider[],
): Promise<void> {
  if (argv[0] === "secrets") {
    process.exitCode = runSecretsCommand(argv.slice(1), env, process.stdout, process.stderr);
    return;
  }
  if (argv[0] === "store") {
    process.exitCode = await runStoreCommand(argv.slice(1), process.stdout, process.stderr);
    return;
  }
  let command;
  try {
    command = loadConfig(argv, env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`hypervisord: ${err.message}\n`);
    process.exit(2);
  }
  if (command.kind === "help") return void process.stdout.write(`${command.text}\n`);
  if (command.kind === "version") return void process.stdout.write(`hypervisord ${VERSION}\n`);

  // Asynchronous: a busy daemon must not wait on its log pipe. Flushed before every exit.
  const destination = pino.destination({ dest: 1, sync: false });
  const exit = (code: number): never => {
    destination.flushSync();
    process.exit(code);
  };
  const root = createLogger(command.config.logLevel, destination);
  // Daemons sharing a PostgreSQL store say which of them wrote each line.
  const logger = command.config.storeUrl ? root.child({ node_id: command.config.cluster.nodeId }) : root;
  for (const warning of command.config.warnings) logger.warn(warning);
  let daemon: Daemon;
  try {
    daemon = await startDaemon({ config: command.config, providers: (tools) => providersFor(command.config, logger, tools), logger, logForward: destination });
  } catch (err) {
    logger.fatal({ err }, `hypervisord could not start: ${(err as Error).message}`);
    exit(1);
  }

  let signals = 0;
  const stop = (signal: NodeJS.Signals) => {
    if (++signals > 1) {
      logger.warn({ signal }, "second signal: exiting now");
      exit(1);
    }
    logger.info({ signal }, "stopping: no new jobs; running jobs checkpoint");
    setTimeout(() => {
      logger.error("graceful stop took too long; exiting");
      exit(1);
    }, STOP_DEADLINE_MS).unref();
    daemon.stop().then(
      () => exit(0),
      (err: unknown) => {
        logger.error({ err }, "error while stopping");
        exit(1);
      },
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  process.on("unhandledRejection", (reason) => logger.error({ err: reason }, "unhandled promise rejection"));
}
