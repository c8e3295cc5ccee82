// CLI cold-start benchmark (npm run bench:cli). A measurement, not a test: it prints medians and PASS/MISS
// against the target and exits 0 unless something crashed.
//
// Each command is started as a new process, as a user's shell does, BENCH_RUNS times (default 15), the
// commands taking turns (round-robin, so a busy moment of the shared machine hits them all alike):
//   node -e 0                           Node's own start: the floor under every Node CLI
//   hyperctl --help, hyperctl status    the built CLI (node bin/hyperctl.js, dist/), status against a daemon started here
//   the same through tsx                the sources (node --import tsx scripts/hyperctl-dev.ts): how bin/hyperctl.js ran before the build
//   govc version, govc about            VMware's Go CLI (from the simulator's build.sh --with-govc); about against the simulator
// Target: hyperctl --help and hyperctl status median <= 0.3 s (wall time, spawn to exit).
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { ensureDistBuilt } from "../../scripts/build.ts";
import { spawnDaemon, type DaemonProcess } from "../support/daemon-process.ts";
import { tempDir } from "../support/temp-dir.ts";
import { buildGovc, startVcsim, type Vcsim } from "../support/vcsim.ts";
import { envNumber, fixed, median } from "./bench-utils.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const RUNS = Math.round(envNumber("BENCH_RUNS", 15));
const TARGET_SECONDS = 0.3;
const run = promisify(execFile);
const work = tempDir("bench-cli");

interface Case {
  label: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  target?: boolean;
  /** Checked on the first run: a command that fails is not timed. */
  expect: RegExp;
  times: number[];
  /** user+sys CPU seconds of each run (GNU time): what the command costs, less swayed than wall time by a busy machine. */
  cpu: number[];
}

const GNU_TIME = "/usr/bin/time";
const hasGnuTime = fs.existsSync(GNU_TIME);

async function timeOnce(c: Case, check: boolean): Promise<void> {
  const cpuFile = path.join(work, "cpu");
  const [command, args] = hasGnuTime ? [GNU_TIME, ["-f", "%U %S", "-o", cpuFile, c.command, ...c.args]] : [c.command, c.args];
  const started = performance.now();
  const { stdout } = await run(command, args, { cwd: ROOT, env: c.env ?? process.env, timeout: 60_000 });
  c.times.push((performance.now() - started) / 1000);
  if (hasGnuTime) c.cpu.push(fs.readFileSync(cpuFile, "utf8").trim().split(/\s+/).map(Number).reduce((a, b) => a + b, 0));
  if (check && !c.expect.test(stdout)) throw new Error(`${c.label} printed ${JSON.stringify(stdout.slice(0, 300))}, expected ${c.expect}`);
}

async function main(): Promise<void> {
  const built = await ensureDistBuilt();
  console.log(built ? "dist/ was stale: rebuilt" : "dist/ is up to date");
  let daemon: DaemonProcess | undefined;
  let sim: Vcsim | undefined;
  try {
    daemon = await spawnDaemon();
    const ctlEnv: NodeJS.ProcessEnv = { ...process.env, HYPERVISORD_ADDR: daemon.httpUrl };
    delete ctlEnv.HYPERVISORD_API_KEY;
    const node = process.execPath;
    const cases: Case[] = [
      { label: "node -e 0", command: node, args: ["-e", "0"], expect: /^$/, times: [], cpu: [] },
      { label: "hyperctl --help", command: node, args: ["bin/hyperctl.js", "--help"], env: ctlEnv, target: true, expect: /Usage: hyperctl/, times: [], cpu: [] },
      { label: "hyperctl status", command: node, args: ["bin/hyperctl.js", "status"], env: ctlEnv, target: true, expect: /Lifecycle:\s+running/, times: [], cpu: [] },
      { label: "tsx: hyperctl --help", command: node, args: ["--import", "tsx", "scripts/hyperctl-dev.ts", "--help"], env: ctlEnv, expect: /Usage: hyperctl/, times: [], cpu: [] },
      { label: "tsx: hyperctl status", command: node, args: ["--import", "tsx", "scripts/hyperctl-dev.ts", "status"], env: ctlEnv, expect: /Lifecycle:\s+running/, times: [], cpu: [] },
    ];
    const { govc, reason } = await buildGovc();
    if (govc) {
      sim = await startVcsim();
      const govcEnv = { ...process.env, GOVC_URL: sim.url, GOVC_USERNAME: "user", GOVC_PASSWORD: "pass", GOVC_INSECURE: "1" };
      cases.push(
        { label: "govc version", command: govc, args: ["version"], env: govcEnv, expect: /govc/, times: [], cpu: [] },
        { label: "govc about", command: govc, args: ["about"], env: govcEnv, expect: /Name:/, times: [], cpu: [] },
      );
    } else {
      console.log(`govc is not measured: ${reason ?? "build.sh --with-govc printed no govc path"}`);
    }
    console.log(`${RUNS} cold starts of each, taking turns; daemon at ${daemon.httpUrl}${sim ? `, vcsim at ${sim.url}` : ""}\n`);
    for (let round = 0; round < RUNS; round++) {
      for (const c of cases) await timeOnce(c, round === 0);
    }
    report(cases);
  } finally {
    await daemon?.stop();
    await sim?.stop();
  }
}

function report(cases: Case[]): void {
  const byLabel = new Map(cases.map((c) => [c.label, median(c.times)]));
  const floor = byLabel.get("node -e 0")!;
  console.log(`${"command".padEnd(24)} ${"median s".padStart(9)} ${"min s".padStart(7)} ${"max s".padStart(7)} ${"- node s".padStart(9)} ${"CPU s".padStart(7)}   target (median wall time)`);
  for (const c of cases) {
    const m = median(c.times);
    const verdict = c.target ? `<= ${TARGET_SECONDS} s: ${m <= TARGET_SECONDS ? "PASS" : "MISS"}` : "";
    const cpu = c.cpu.length ? fixed(median(c.cpu), 2) : "-";
    console.log(`${c.label.padEnd(24)} ${fixed(m, 3).padStart(9)} ${fixed(Math.min(...c.times), 3).padStart(7)} ${fixed(Math.max(...c.times), 3).padStart(7)} ${fixed(m - floor, 3).padStart(9)} ${cpu.padStart(7)}   ${verdict}`);
  }
  console.log(`(- node s: the median less Node's own start; CPU s: median user+sys of the process, GNU time, 10 ms resolution)`);
  console.log();
  for (const what of ["--help", "status"]) {
    const builtMedian = byLabel.get(`hyperctl ${what}`)!;
    console.log(`hyperctl ${what}: built vs tsx ${fixed(builtMedian, 3)} vs ${fixed(byLabel.get(`tsx: hyperctl ${what}`), 3)} s = ${fixed(byLabel.get(`tsx: hyperctl ${what}`)! / builtMedian, 1)}x faster`);
  }
  const govcVersion = byLabel.get("govc version");
  const govcAbout = byLabel.get("govc about");
  if (govcVersion !== undefined && govcAbout !== undefined) {
    console.log(`beside govc: hyperctl --help ${fixed(byLabel.get("hyperctl --help"), 3)} s vs govc version ${fixed(govcVersion, 3)} s; hyperctl status ${fixed(byLabel.get("hyperctl status"), 3)} s vs govc about ${fixed(govcAbout, 3)} s`);
  }
}

await main();
