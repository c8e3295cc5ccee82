// CPU pinning for bench:export: the simulator plays the ESXi host, which has CPUs of its own, so it gets one core
// and every client (curl, govc, the daemon) another, with taskset. Without taskset, with fewer than 2 CPUs
// allowed, or with BENCH_PIN=0, nothing is pinned and `description` says why.
import { execFileSync } from "node:child_process";
import fs from "node:fs";

export interface Pinning {
  /** One line for the bench's header. */
  description: string;
  /** The command line that runs `command` on the client core (unchanged when not pinning). */
  client(command: string, args: string[]): [string, string[]];
  /** Moves every thread of a running process to the client core (threads made later inherit it from their creator). */
  pinClient(pid: number): void;
  /** Moves every thread of the simulator to its core. */
  pinSimulator(pid: number): void;
  /** Threads of a client process that may run off the client core (0 when not pinning): a check after a run. */
  strays(pid: number): number;
}

/** The CPUs this process may run on, from `taskset -p -c` ("pid N's current affinity list: 0-1,4"); undefined without taskset. */
function allowedCpus(): number[] | undefined {
  let out: string;
  try {
    out = execFileSync("taskset", ["-p", "-c", String(process.pid)], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  } catch {
    return undefined;
  }
  const list = out.slice(out.lastIndexOf(":") + 1).trim();
  return list.split(",").flatMap((part) => {
    const [from, to = from] = part.split("-").map(Number);
    return Array.from({ length: to! - from! + 1 }, (_, i) => from! + i);
  });
}

/** Cpus_allowed_list of every thread of a process ("1", "0-1"). */
function threadCpuLists(pid: number): string[] {
  const lists: string[] = [];
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const status = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8");
      lists.push(/^Cpus_allowed_list:\s*(\S+)/m.exec(status)?.[1] ?? "?");
    } catch {
      // The thread ended between the listing and the read: nothing to check.
    }
  }
  return lists;
}

function taskset(core: number, pid: number): void {
  execFileSync("taskset", ["-a", "-p", "-c", String(core), String(pid)], { stdio: "ignore" });
}

export function createPinning(): Pinning {
  const unpinned = (why: string): Pinning => ({
    description: `not pinned: ${why}`,
    client: (command, args) => [command, args],
    pinClient: () => {},
    pinSimulator: () => {},
    strays: () => 0,
  });
  if (process.env.BENCH_PIN === "0") return unpinned("BENCH_PIN=0");
  const cpus = allowedCpus();
  if (!cpus) return unpinned("taskset is missing (Debian util-linux)");
  if (cpus.length < 2) return unpinned(`only ${cpus.length} CPU allowed (${cpus.join(",")}): simulator and clients share it`);
  const [simCore, clientCore] = cpus as [number, number];
  return {
    description: `pinned with taskset: the simulator on CPU ${simCore}, every client (curl, govc, the daemon with all its threads) on CPU ${clientCore}` +
      `${cpus.length > 2 ? ` (of ${cpus.length} allowed)` : ""}; the bench process itself is not pinned`,
    client: (command, args) => ["taskset", ["-c", String(clientCore), command, ...args]],
    pinClient: (pid) => taskset(clientCore, pid),
    pinSimulator: (pid) => taskset(simCore, pid),
    strays: (pid) => threadCpuLists(pid).filter((list) => list !== String(clientCore)).length,
  };
}
