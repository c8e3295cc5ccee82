/**
 * `hyperctl export --local`: the export runs in this process, without a daemon, as govc users expect of a
 * one-shot command. The daemon's own core and API run in-process (daemon/in-process-daemon.ts) over a
 * temporary data directory, and hyperctl talks to them through an in-memory transport with the client it
 * uses for a daemon: the same checks, pipeline, progress bar, outcome line and exit codes as `export --watch`.
 * The daemon's modules are imported only here, when --local is given, so that other commands start fast.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { wrapTransport } from "../../clients/core/hypervisord-client.ts";
import type { Cli } from "./context.ts";
import { UsageError } from "./errors.ts";

/** How long the end of a run waits for a lease abort or snapshot removal that is still going on. */
const SETTLE_LIMIT_MS = 30_000;

export interface LocalRun {
  /** A Cli whose client() is the in-process daemon's. */
  cli: Cli;
  /** What Ctrl-C (or SIGTERM) cancels, once the job or batch exists. */
  cancelOnInterrupt(cancel: () => Promise<unknown>): void;
}

/**
 * The output directory of a local export, absolute: relative to the current directory (there is no daemon
 * with output roots), default the current directory. Options only a daemon can honour are refused here.
 */
export function localOutputRoot(opts: { outputDir?: string; profile?: string }): string {
  if (opts.profile) throw new UsageError("--profile: profiles are kept by a daemon, and --local runs without one; give the settings as options");
  const dir = path.resolve(opts.outputDir ?? ".");
  if (fs.existsSync(dir) && !fs.statSync(dir).isDirectory()) throw new UsageError(`--output-dir: ${dir} is not a directory`);
  return dir;
}

/**
 * Starts the in-process daemon with `outputRoot` as its only output root, runs `run` against it, and
 * removes what the run leaves that is not the export: the temporary data directory always, the output
 * directories it had to create when the export did not complete (and they are empty).
 */
export async function runLocally(cli: Cli, outputRoot: string, run: (local: LocalRun) => Promise<number>): Promise<number> {
  const { out } = cli;
  const created = missingDirectories(outputRoot);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "hyperctl-local-"));
  let interrupted = false;
  let cancel: (() => Promise<unknown>) | undefined;
  const cancelNow = () => {
    cancel?.().catch((err: unknown) => {
      // The job ended on its own meanwhile: nothing left to cancel.
      if (err instanceof ConnectError && err.code === Code.FailedPrecondition) return;
      out.warn(`hyperctl: cancelling failed: ${(err as Error).message}`);
    });
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) {
      // A second signal: the user wants out now, cleaned up or not.
      fs.rmSync(dataDir, { recursive: true, force: true });
      out.warn(`hyperctl: ${signal} again: quitting without waiting; partial files may be left under ${outputRoot}`);
      process.exit(130);
    }
    interrupted = true;
    out.warn(`hyperctl: ${signal}: cancelling the export and removing what it wrote (again to quit at once)`);
    cancelNow();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  let code = 1;
  try {
    const [{ startInProcessDaemon }, { createLogger }] = await Promise.all([import("../daemon/in-process-daemon.ts"), import("../logging.ts")]);
    // Only errors of the daemon itself (the job's own failure is the outcome line), as readable lines.
    const logger = createLogger("error", { write: (line: string) => void out.warn(`hyperctl: ${logLine(line)}`) });
    const daemon = await startInProcessDaemon({ dataDir, outputRoot, env: cli.io.env, logger });
    const client = wrapTransport(daemon.transport, { url: "in-process" }, () => {});
    try {
      if (interrupted) {
        out.warn("hyperctl: interrupted before the export started");
        return (code = 130);
      }
      // No Ctrl-C of the watch itself: here Ctrl-C cancels the job (onSignal), and the watch sees it end.
      const quiet = new AbortController();
      const local: Cli = { ...cli, client: () => client, interruptSignal: () => quiet.signal };
      code = await run({
        cli: local,
        cancelOnInterrupt(fn) {
          cancel = fn;
          if (interrupted) cancelNow();
        },
      });
      for (const held of await daemon.settle(SETTLE_LIMIT_MS)) {
        out.warn(`hyperctl: not released: ${held}; no daemon is left to retry it: release it by hand`);
      }
      return code;
    } finally {
      client.close();
      await daemon.stop();
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    fs.rmSync(dataDir, { recursive: true, force: true });
    if (code !== 0) removeEmptyDirectories(created);
  }
}

/** The directories of `dir`'s path that do not exist yet, deepest first. */
function missingDirectories(dir: string): string[] {
  const missing: string[] = [];
  for (let d = dir; !fs.existsSync(d); d = path.dirname(d)) {
    missing.push(d);
    if (path.dirname(d) === d) break;
  }
  return missing;
}

/** Removes the directories (deepest first) while they are empty: never anything the run did not create. */
function removeEmptyDirectories(dirs: readonly string[]): void {
  for (const dir of dirs) {
    try {
      fs.rmdirSync(dir);
    } catch (err) {
      const errno = (err as NodeJS.ErrnoException).code;
      // Not made after all, or something is in it (kept with --keep-partial, or put there by someone else).
      if (errno === "ENOENT") continue;
      if (errno === "ENOTEMPTY" || errno === "EEXIST") return;
      throw err;
    }
  }
}

/** A pino record (one JSON line) as one line of text: its message and error. */
function logLine(json: string): string {
  const record = JSON.parse(json) as { msg?: string; err?: { message?: string } };
  return [record.msg, record.err?.message].filter(Boolean).join(": ");
}
