import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { FailedPreconditionError } from "../errors.ts";

/** Absolute path of an executable found on PATH, or undefined. */
export function findExecutable(name: string, envPath = process.env.PATH ?? ""): string | undefined {
  for (const dir of envPath.split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (fs.statSync(candidate).isFile()) return candidate;
    } catch {
      // Not in this directory: look in the next.
    }
  }
  return undefined;
}

/** The qemu-img to use: `configured` when set (it must be an executable file), else the one on PATH; or why there is none. */
export function resolveQemuImg(configured?: string, envPath = process.env.PATH ?? ""): { path: string } | { reason: string } {
  if (!configured) {
    const found = findExecutable("qemu-img", envPath);
    return found ? { path: found } : { reason: "qemu-img not found on PATH (install qemu-utils)" };
  }
  try {
    fs.accessSync(configured, fs.constants.X_OK);
    if (fs.statSync(configured).isFile()) return { path: path.resolve(configured) };
  } catch {
    // Reported below.
  }
  return { reason: `conversion.qemu_img ${configured} is not an executable file` };
}

export interface QemuImg {
  /** Absolute path of the binary. */
  path: string;
  /** e.g. "7.2.22". */
  version: string;
}

const VERSION_TIMEOUT_MS = 10_000;

/**
 * qemu-img on PATH and its version (one `qemu-img --version`), or undefined when it is not on PATH.
 * Rejects with FAILED_PRECONDITION when a binary is there but does not answer like qemu-img.
 */
export async function detectQemuImg(envPath?: string): Promise<QemuImg | undefined> {
  const found = findExecutable("qemu-img", envPath);
  if (!found) return undefined;
  const run = await runQemuImg(found, ["--version"], { signal: AbortSignal.timeout(VERSION_TIMEOUT_MS) }).catch((err: unknown) => {
    throw new FailedPreconditionError(`${found} --version: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  });
  const version = /qemu-img version (\d+\.\d+(?:\.\d+)?)/.exec(run.stdout)?.[1];
  if (run.code !== 0 || !version) {
    throw new FailedPreconditionError(`${found} --version: ${describeExit(run)}; output: ${JSON.stringify(run.stdout.slice(0, 200))}`);
  }
  return { path: found, version };
}

export interface QemuImgRun {
  /** Exit code, or null when a signal ended the process. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Its first STDOUT_KEEP characters (empty when `onStdout` takes the output). */
  stdout: string;
  /** Its last STDERR_KEEP characters. */
  stderr: string;
}

export interface RunQemuImgOptions {
  /** Abort sends SIGTERM, then SIGKILL after `killGraceMs`; the call rejects with `signal.reason` once the process is gone. */
  signal: AbortSignal;
  /** Receives stdout as it comes (instead of collecting it). If it throws, the process is stopped and the call rejects with that error. */
  onStdout?(chunk: string): void;
  /** Default 5 s. */
  killGraceMs?: number;
}

const STDOUT_KEEP = 1024 * 1024;
const STDERR_KEEP = 64 * 1024;
const DEFAULT_KILL_GRACE_MS = 5000;

/**
 * Runs qemu-img (no shell) and resolves with how it ended, whatever the exit code: callers give codes their meaning.
 * LC_ALL=C keeps its messages (strerror included) in English, so callers may match them.
 */
export function runQemuImg(qemuImg: string, args: readonly string[], options: RunQemuImgOptions): Promise<QemuImgRun> {
  const { signal } = options;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const child = spawn(qemuImg, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, LC_ALL: "C" } });
    let stdout = "";
    let stderr = "";
    let failure: { error: unknown } | undefined;
    let killTimer: NodeJS.Timeout | undefined;

    const stop = (error: unknown) => {
      failure ??= { error };
      child.kill("SIGTERM");
      killTimer ??= setTimeout(() => child.kill("SIGKILL"), options.killGraceMs ?? DEFAULT_KILL_GRACE_MS);
    };
    const onAbort = () => stop(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });

    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      if (!options.onStdout) {
        if (stdout.length < STDOUT_KEEP) stdout += chunk.slice(0, STDOUT_KEEP - stdout.length);
        return;
      }
      try {
        options.onStdout(chunk);
      } catch (err) {
        stop(err);
      }
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-STDERR_KEEP);
    });
    // 'error' comes instead of 'close' when the binary cannot be started.
    child.on("error", (err) => {
      signal.removeEventListener("abort", onAbort);
      reject(new FailedPreconditionError(`cannot run ${qemuImg}: ${err.message}`, { cause: err }));
    });
    child.on("close", (code, exitSignal) => {
      signal.removeEventListener("abort", onAbort);
      clearTimeout(killTimer);
      if (failure) reject(failure.error);
      else resolve({ code, signal: exitSignal, stdout, stderr });
    });
  });
}

/** "exit 1" or "killed by SIGKILL". */
export function describeExit(run: Pick<QemuImgRun, "code" | "signal">): string {
  return run.code === null ? `killed by ${run.signal}` : `exit ${run.code}`;
}

/** The end of qemu-img's stderr for an error message: whole lines, trimmed, at most `max` characters. */
export function stderrTail(stderr: string, max = 1024): string {
  const trimmed = stderr.trim();
  if (trimmed.length <= max) return trimmed;
  const tail = trimmed.slice(-max);
  const lineStart = tail.indexOf("\n");
  return `...${lineStart >= 0 && lineStart < tail.length - 1 ? tail.slice(lineStart + 1) : tail}`;
}

export interface ProgressParser {
  /** Feeds a chunk of `qemu-img -p` stdout; tokens split across chunks are joined. */
  push(chunk: string): void;
  /** The run succeeded: reports 100 if it was not reported yet. */
  finish(): void;
}

/** Reports are at least this many percentage points apart (except the final 100). */
const PROGRESS_STEP = 0.5;
/** A line longer than this is no progress token: it is dropped, so the buffer stays small. */
const MAX_PENDING = 256;

/**
 * Parses `qemu-img convert -p` progress: `    (12.34/100%)` tokens ended by carriage returns. Calls `onPercent`
 * with increasing values, each >= PROGRESS_STEP above the previous one, and 100 at most once, at the end.
 */
export function createProgressParser(onPercent: (percent: number) => void): ProgressParser {
  let pending = "";
  let reported = -Infinity;
  const report = (percent: number) => {
    if (reported >= 100) return;
    if (percent >= 100 || percent - reported >= PROGRESS_STEP) {
      reported = Math.min(percent, 100);
      onPercent(reported);
    }
  };
  return {
    push(chunk) {
      const lines = (pending + chunk).split(/[\r\n]/);
      pending = lines.pop()!;
      if (pending.length > MAX_PENDING) pending = "";
      for (const line of lines) {
        const match = /\((\d+(?:\.\d+)?)\/100%\)/.exec(line);
        if (match) report(Number(match[1]));
      }
    },
    finish() {
      report(100);
    },
  };
}
