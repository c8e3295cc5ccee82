import fs from "node:fs";
import type { Command } from "commander";
import { createHypervisordClient, type HypervisordClient } from "../../clients/node/index.ts";
import { InputError, UsageError } from "./errors.ts";
import type { CliIo } from "./io.ts";
import { createOutput, parseOutputFormat, type Output } from "./output.ts";

/** The program-wide options (see program.ts). */
export interface GlobalOptions {
  server: string;
  apiKey?: string;
  tlsCa?: string;
  insecure?: boolean;
  output: string;
  json?: boolean;
  quiet?: boolean;
  timeout: string;
}

/** Ctrl-C while watching: the job goes on, hyperctl stops (exit 130). */
export class Interrupted extends Error {
  override name = "Interrupted";
}

/** What a command's action gets: its output, a lazily made client, and the process's I/O. */
export interface Cli {
  readonly io: CliIo;
  readonly options: GlobalOptions;
  readonly out: Output;
  client(): HypervisordClient;
  /** A signal aborted (with Interrupted) by Ctrl-C; once asked for, Ctrl-C no longer kills hyperctl. */
  interruptSignal(): AbortSignal;
}

/** How a command's client differs from the default (the --timeout deadline and 3 retries): shell completion must answer quickly. */
export interface ClientSettings {
  timeoutMs?: number;
  retries?: number;
}

function createCli(io: CliIo, options: GlobalOptions, settings: ClientSettings): Cli & { close(): void } {
  const out = createOutput(parseOutputFormat(options.output, options.json), options.quiet ?? false, io);
  const cleanups: (() => void)[] = [];
  let client: HypervisordClient | undefined;
  let interrupt: AbortController | undefined;
  return {
    io,
    options,
    out,
    client() {
      if (!client) {
        const timeout = Number(options.timeout);
        if (!Number.isFinite(timeout) || timeout < 0) throw new UsageError(`--timeout must be a number of seconds, got "${options.timeout}"`);
        client = createHypervisordClient({
          url: options.server,
          ...(options.apiKey && { apiKey: options.apiKey }),
          timeoutMs: settings.timeoutMs ?? timeout * 1000,
          ...(settings.retries !== undefined && { retries: settings.retries }),
          tls: { ...(options.tlsCa && { ca: readTlsCa(options.tlsCa) }), insecure: options.insecure ?? false },
        });
        cleanups.push(() => client!.close());
      }
      return client;
    },
    interruptSignal() {
      if (!interrupt) {
        const controller = new AbortController();
        const onSigint = () => controller.abort(new Interrupted("interrupted"));
        process.on("SIGINT", onSigint);
        cleanups.push(() => process.off("SIGINT", onSigint));
        interrupt = controller;
      }
      return interrupt.signal;
    },
    close() {
      for (const cleanup of cleanups.reverse()) cleanup();
    },
  };
}

function readTlsCa(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new InputError(`--tls-ca: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

/**
 * Wraps a command's handler for commander: builds the Cli from the global options, runs the
 * handler with the positional arguments and the command's own options, sets the exit code it
 * returns, and always closes the client (so that the process can exit).
 */
export function action<A extends unknown[]>(io: CliIo, handler: (cli: Cli, ...args: A) => Promise<number | void>, settings: ClientSettings = {}) {
  return async (...args: unknown[]): Promise<void> => {
    const command = args[args.length - 1] as Command;
    const cli = createCli(io, command.optsWithGlobals<GlobalOptions>(), settings);
    try {
      const code = await handler(cli, ...(args.slice(0, -1) as A));
      if (typeof code === "number") io.exitCode = code;
    } finally {
      cli.close();
    }
  };
}
