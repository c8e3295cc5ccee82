import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { ensureDistBuilt } from "../../scripts/build.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
/** Runs the build in dist/ (fast to start), rebuilt here when the sources changed since: a test file run alone never tests a stale build. */
export const HYPERCTL_BIN = path.join(ROOT, "bin/hyperctl.js");
await ensureDistBuilt();

export interface HyperctlRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface HyperctlOptions {
  /** HYPERVISORD_ADDR: the daemon's http://host:port. */
  server: string;
  /** Written to stdin (closed after); without it stdin is closed from the start. */
  input?: string;
  /** More environment; HYPERVISORD_API_KEY of the test process is dropped unless given here. */
  env?: Record<string, string>;
  /** Called with the child as soon as it is spawned (to signal it). */
  onSpawn?: (child: ChildProcess) => void;
  /** Working directory (default: the repository). */
  cwd?: string;
  /** Killed (SIGKILL) after this long: a hung CLI fails its test instead of the whole run. */
  timeoutMs?: number;
}

/** hyperctl's environment: the test process's, HYPERVISORD_ADDR set, HYPERVISORD_API_KEY dropped unless `extra` sets it. */
export function hyperctlEnv(server: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const vars: NodeJS.ProcessEnv = { ...process.env, HYPERVISORD_ADDR: server, ...extra };
  if (!("HYPERVISORD_API_KEY" in extra)) delete vars.HYPERVISORD_API_KEY;
  return vars;
}

/** `node bin/hyperctl.js ARGS` as a user runs it, against `server`; resolves with its exit code and output. */
export function runHyperctl(args: string[], options: HyperctlOptions): Promise<HyperctlRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [HYPERCTL_BIN, ...args], { cwd: options.cwd ?? ROOT, env: hyperctlEnv(options.server, options.env), stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    if (options.input !== undefined) child.stdin!.end(options.input);
    options.onSpawn?.(child);
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 60_000);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** util-linux `script`, which gives hyperctl a pseudo-terminal (for the in-place redraw). */
export function hasScript(): boolean {
  try {
    execFileSync("script", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
