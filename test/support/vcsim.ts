import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { promisify } from "node:util";

const ROOT = path.resolve(import.meta.dirname, "../..");
/**
 * The project's own simulator (tools/vcsim: govmomi's vcsim with export, snapshot content and the fault switches);
 * HYPERVISORD_VCSIM_BUILD names another build script with the same contract (CI runs the vSphere tests a second
 * time against ../shared/vcsim/build.sh).
 */
const BUILD_SCRIPT = process.env.HYPERVISORD_VCSIM_BUILD ?? path.resolve(ROOT, "tools/vcsim/build.sh");

export interface VcsimVm {
  name: string;
  path: string;
  moref: string;
  uuid: string;
  powerState: string;
  firmware: string;
  nvram?: string;
  disks: { label: string; capacityKB: number; file: string }[];
}

export interface Vcsim {
  url: string;
  vms: VcsimVm[];
  child: ChildProcess;
  stop(): Promise<void>;
}

let built: Promise<{ binary?: string; reason?: string }> | undefined;
let builtGovc: Promise<{ govc?: string; reason?: string }> | undefined;

/** build.sh's exit status when Go or the Debian packages cannot be installed here: the tests skip, saying why. */
const CANNOT_INSTALL = 3;

/**
 * Runs the build script. A simulator that cannot be had here (no script, no Go or packages) is a reason to skip;
 * any other failure (a compile error) throws, so that the vSphere tests fail rather than skip.
 */
async function runBuild(args: string[]): Promise<{ paths?: string[]; reason?: string }> {
  if (!fs.existsSync(BUILD_SCRIPT)) return { reason: `the vCenter simulator's build script is missing: ${BUILD_SCRIPT}` };
  try {
    const { stdout } = await promisify(execFile)(BUILD_SCRIPT, args, { timeout: 15 * 60_000, maxBuffer: 64 * 1024 * 1024 });
    return { paths: stdout.trim().split("\n") };
  } catch (err) {
    const { code, stderr } = err as { code?: unknown; stderr?: string };
    const why = `${[BUILD_SCRIPT, ...args].join(" ")} failed: ${(stderr || (err as Error).message).trim().split("\n").slice(-3).join(" ")}`;
    if (code === CANNOT_INSTALL) return { reason: why };
    throw new Error(why);
  }
}

/** Builds vcsim-export (cached by build.sh) once per test process; a reason instead when it cannot be built here. */
export function buildVcsim(): Promise<{ binary?: string; reason?: string }> {
  built ??= runBuild([]).then(({ paths, reason }) => ({ binary: paths?.[0], reason }));
  return built;
}

/** govc, VMware's CLI, built from Debian's govmomi source (for comparisons in benchmarks). */
export function buildGovc(): Promise<{ govc?: string; reason?: string }> {
  builtGovc ??= runBuild(["--with-govc"]).then(({ paths, reason }) => ({ govc: paths?.[1], reason }));
  return builtGovc;
}

/** Starts vcsim-export on a free loopback port with the given flags and fault-injection environment. */
export async function startVcsim(args: string[] = [], env: Record<string, string> = {}): Promise<Vcsim> {
  const { binary, reason } = await buildVcsim();
  if (!binary) throw new Error(reason);
  const child = spawn(binary, ["-autostart=false", ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const stderr: string[] = [];
  child.stderr!.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const info = await new Promise<{ url: string; vms: VcsimVm[] }>((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout! });
    lines.once("line", (line) => resolve(JSON.parse(line) as { url: string; vms: VcsimVm[] }));
    void exited.then(() => reject(new Error(`vcsim-export exited before it listened: ${stderr.join("")}`)));
  });
  return {
    url: info.url,
    vms: info.vms,
    child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

/** Random raw data (with a zero run, like a real disk) made into a streamOptimized VMDK in the VM's disk file, with qemu-img. */
export function writeStreamOptimizedDisk(vm: VcsimVm, workDir: string, rawSize: number): { raw: string; vmdk: Buffer } {
  const raw = path.join(workDir, `${vm.name}-${Date.now()}.raw`);
  const data = randomBytes(rawSize);
  data.fill(0, rawSize / 4, rawSize / 2);
  fs.writeFileSync(raw, data);
  execFileSync("qemu-img", ["convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, vm.disks[0]!.file]);
  return { raw, vmdk: fs.readFileSync(vm.disks[0]!.file) };
}
