import pino from "pino";
import { ConfigError, loadConfig } from "./config/load-config.ts";
import { startDaemon } from "./daemon.ts";
import { createLogger } from "./logging.ts";
import type { Provider } from "./providers/provider.ts";
import { VERSION } from "./version.ts";

/** Hard limit on a graceful stop: SIGTERM to exit within 10 s whatever happens. */
const STOP_DEADLINE_MS = 9_500;

/** The hypervisord process: configuration, the daemon, signals and exit codes. */
export async function run(argv: readonly string[], env: NodeJS.ProcessEnv, providers: readonly Provider[]): Promise<void> {
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

  const destination = pino.destination({ dest: 1, sync: true });
  const logger = createLogger(command.config.logLevel, destination);
  for (const warning of command.config.warnings) logger.warn(warning);
  let daemon;
  try {
    daemon = await startDaemon({ config: command.config, providers, logger, logForward: destination });
  } catch (err) {
    logger.fatal({ err }, `hypervisord could not start: ${(err as Error).message}`);
    process.exit(1);
  }

  let signals = 0;
  const stop = (signal: NodeJS.Signals) => {
    if (++signals > 1) {
      logger.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    logger.info({ signal }, "stopping: no new jobs; running jobs checkpoint");
    setTimeout(() => {
      logger.error("graceful stop took too long; exiting");
      process.exit(1);
    }, STOP_DEADLINE_MS).unref();
    daemon.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, "error while stopping");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  process.on("unhandledRejection", (reason) => logger.error({ err: reason }, "unhandled promise rejection"));
}
