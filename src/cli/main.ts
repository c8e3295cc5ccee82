import { CommanderError } from "commander";
import { Interrupted, type GlobalOptions } from "./context.ts";
import { describeError } from "./errors.ts";
import { processIo, type CliIo } from "./io.ts";
import { createProgram, DEFAULT_SERVER } from "./program.ts";

/** Runs hyperctl with `argv` (as process.argv: node, script, args...); resolves with the exit code. */
export async function main(argv: readonly string[], given?: CliIo): Promise<number> {
  if (!given) stopOnClosedPipe();
  const io = given ?? processIo(argv);
  const program = createProgram(io);
  try {
    await program.parseAsync([...argv]);
    return io.exitCode;
  } catch (err) {
    // commander has printed its message (unknown command or option, missing argument, --help, --version).
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof Interrupted) return 130;
    const options = program.opts<GlobalOptions>();
    const { message, exitCode } = describeError(err, { server: options.server ?? DEFAULT_SERVER, apiKeyGiven: Boolean(options.apiKey) });
    io.stderr.write(`hyperctl: ${message}\n`);
    return exitCode;
  }
}

/**
 * `hyperctl list | head`: once the reader has gone, writing to stdout fails with EPIPE; stop quietly
 * (exit 0, as cat or kubectl do) instead of crashing with an unhandled 'error' event.
 */
function stopOnClosedPipe(): void {
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code !== "EPIPE") throw err;
    process.exit(0);
  });
}
