// How bench:export times a run and charges its CPU: wall time, the client's CPU seconds (a child process the bench
// waited for, from its own rusage; or the daemon, from /proc/<pid>/stat over the run, all threads) and the
// simulator's (from /proc).
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { cpuSeconds } from "./bench-utils.ts";
import type { Pinning } from "./export-pinning.ts";

export interface Measured {
  seconds: number;
  clientCpu: number;
  vcsimCpu: number;
}

/** Runs `fn`; with `clientPid` the client is that process, else the child processes `fn` waited for (cutime+cstime). */
export async function measured(simPid: number, fn: () => Promise<void>, clientPid?: number): Promise<Measured> {
  const cpu = () => (clientPid === undefined ? cpuSeconds("self", true) - cpuSeconds("self") : cpuSeconds(clientPid));
  const cpu0 = cpu();
  const sim0 = cpuSeconds(simPid);
  const started = performance.now();
  await fn();
  const seconds = (performance.now() - started) / 1000;
  return { seconds, clientCpu: cpu() - cpu0, vcsimCpu: cpuSeconds(simPid) - sim0 };
}

const execFileAsync = promisify(execFile);

/** A client command on the client core (taskset execs it: its rusage is the command's own). */
export async function execPinned(pinning: Pinning, command: string, args: string[], options: { env?: NodeJS.ProcessEnv; timeout: number }): Promise<void> {
  const [file, argv] = pinning.client(command, args);
  await execFileAsync(file, argv, { ...options, maxBuffer: 64 * 1024 * 1024 });
}
