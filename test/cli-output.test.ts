// hyperctl's output as kubectl/gh/govc users expect it, run as a user runs it (`node bin/hyperctl.js`) against
// a real daemon (fake provider jobs): --json, -o wide, secrets left out of -o json, int64 as YAML numbers, job and
// batch id prefixes, --server host:port as gRPC, local times with their offset (TZ), help examples, and shell
// completion of ids in real bash, zsh and fish.
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import YAML from "yaml";
import { spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { HYPERCTL_BIN, hyperctlEnv, runHyperctl, type HyperctlOptions } from "./support/hyperctl.ts";
import { tempDir } from "./support/temp-dir.ts";
import { startWebhookReceiver } from "./support/webhook-receiver.ts";

let d: DaemonProcess;
let work = "";
/** A directory with a `hyperctl` on it, as the completion scripts call the command the user typed. */
let binDir = "";

const hyperctl = (args: string[], options: Partial<HyperctlOptions> = {}) => runHyperctl(args, { ...options, server: options.server ?? d.httpUrl });

async function ok(args: string[], options: Partial<HyperctlOptions> = {}): Promise<string> {
  const run = await hyperctl(args, options);
  assert.equal(run.code, 0, `hyperctl ${args.join(" ")}: ${run.stderr}`);
  return run.stdout;
}

async function json<T = any>(args: string[], options: Partial<HyperctlOptions> = {}): Promise<T> {
  return JSON.parse(await ok([...args, "--json"], options)) as T;
}

/** The shortest prefix of `id` that no other id starts with. */
function uniquePrefix(id: string, others: readonly string[]): string {
  for (let n = 1; n <= id.length; n++) {
    const prefix = id.slice(0, n);
    if (!others.some((o) => o !== id && o.startsWith(prefix))) return prefix;
  }
  return id;
}

function commonPrefix(a: string, b: string): string {
  let n = 0;
  while (n < a.length && a[n] === b[n]) n++;
  return a.slice(0, n);
}

function installed(command: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

let scripts = 0;

/**
 * Runs a script file in a shell, with `hyperctl` on PATH and the daemon's address in the environment
 * (a file, not stdin: fish refuses to read a script from the socket Node gives a child as stdin).
 */
function shell(program: string, args: string[], script: string, server = d.httpUrl): Promise<{ stdout: string; stderr: string }> {
  const file = path.join(work, `script-${++scripts}`);
  fs.writeFileSync(file, script);
  return new Promise((resolve, reject) => {
    const env = hyperctlEnv(server, { PATH: `${binDir}:${process.env.PATH}` });
    execFile(program, [...args, file], { env, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${program}: ${err.message}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

describe("hyperctl output", () => {
  let jobIds: string[] = [];
  let secretJob = "";
  let batchId = "";

  before(async () => {
    work = tempDir("cli-output");
    const config = path.join(work, "hypervisord.yaml");
    fs.writeFileSync(config, "webhooks:\n  allow_private_targets: true\n");
    d = await spawnDaemon({ args: ["--config", config] });
    binDir = path.join(work, "bin");
    fs.mkdirSync(binDir);
    fs.writeFileSync(path.join(binDir, "hyperctl"), `#!/bin/sh\nexec "${process.execPath}" "${HYPERCTL_BIN}" "$@"\n`, { mode: 0o755 });
    secretJob = (await ok(["-q", "export", "--provider", "fake", "--vm", "noop", "--name", "with-secret",
      "--vsphere-url", "https://vc.example/sdk", "--username", "backup", "--password", "s3cret-Pw"])).trim();
    for (const vm of ["alpha", "beta", "gamma"]) await ok(["-q", "export", "--provider", "fake", "--vm", "noop", "--name", vm, "--label", "suite=output"]);
    jobIds = (await json(["list", "--label", "suite=output"])).jobs.map((j: { id: string }) => j.id);
    batchId = (await ok(["-q", "export", "--provider", "fake", "--folder", "/DC1/vm/fleet", "--name-glob", "fleet-0?", "--max-parallel", "2"])).trim();
  });
  after(async () => {
    if (d) assert.equal(await d.stop(), 0, "daemon exit code");
  });

  test("--json is -o json; with another -o it is a usage error", async () => {
    const [byFlag, byOutput] = await Promise.all([ok(["list", "--label", "suite=output", "--json"]), ok(["list", "--label", "suite=output", "-o", "json"])]);
    assert.equal(byFlag, byOutput);
    assert.equal(JSON.parse(byFlag).jobs.length, 3);
    const both = await hyperctl(["status", "--json", "-o", "yaml"]);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /^hyperctl: --json and -o yaml disagree/m);
    assert.equal((await json(["get", jobIds[0]!])).job.id, jobIds[0], "--json after a subcommand's argument");
  });

  test("-o wide adds columns to the jobs and batches tables; -o table keeps the narrow ones", async () => {
    const [narrow, wide, batchesWide] = await Promise.all([
      ok(["list", "--label", "suite=output"]), ok(["list", "--label", "suite=output", "-o", "wide"]), ok(["batches", "list", "-o", "wide"]),
    ]);
    assert.match(narrow, /^ID +NAME +STATE +PROGRESS +SIZE +CREATED +DURATION\n/);
    assert.doesNotMatch(narrow, /ATTEMPT/);
    assert.match(wide, /^ID +NAME +STATE +PROGRESS +SIZE +CREATED +DURATION +PROVIDER +ATTEMPT +PRIORITY +FORMAT +OUTPUT DIR +BATCH +SCHEDULE +ERROR\n/);
    const alpha = wide.split("\n").find((l) => / alpha /.test(l))!;
    assert.match(alpha, / 1\/\d+ +normal +ovf +\/\S+\/noop +- +- +-$/, alpha);
    assert.match(batchesWide, /^ID +NAME +STATE +VMS +COUNTS +SIZE +CREATED +MAX PARALLEL +SCHEDULE +ENDED +DURATION\n/);
    assert.match(batchesWide, new RegExp(`^${batchId} .* 2 +- +`, "m"));
  });

  test("-o json leaves out empty write-only secrets and never prints a set one", async () => {
    const out = await ok(["get", secretJob, "-o", "json"]);
    const vsphere = JSON.parse(out).job.definition.vsphere;
    assert.deepEqual(Object.keys(vsphere).sort(), ["insecure", "thumbprint", "url", "username"], out);
    assert.equal(vsphere.username, "backup");
    assert.ok(!out.includes("s3cret-Pw") && !out.includes("password"), out);
    assert.ok(!(await ok(["get", secretJob, "-o", "yaml"])).includes("password"));

    const receiver = await startWebhookReceiver({ reply: 204 });
    try {
      const id = /^webhook (\S+) added$/m.exec(await ok(["webhooks", "add", receiver.url, "job.failed"]))![1]!;
      const listed = await ok(["webhooks", "list", "--json"]);
      const hook = JSON.parse(listed).webhooks.find((w: { id: string }) => w.id === id);
      assert.equal(hook.url.length > 0, true);
      assert.ok(!("secret" in hook), listed);
      await ok(["webhooks", "delete", id]);
    } finally {
      await receiver.close();
    }
  });

  test("-o yaml prints int64 as numbers (JSON keeps proto JSON's strings)", async () => {
    const [statusYaml, statusJson, jobYaml] = await Promise.all([ok(["status", "-o", "yaml"]), json(["status"]), ok(["get", jobIds[0]!, "-o", "yaml"])]);
    const status = YAML.parse(statusYaml);
    assert.equal(typeof status.jobCounts.total, "number", statusYaml);
    assert.equal(status.jobCounts.total, Number(statusJson.jobCounts.total));
    assert.equal(typeof statusJson.jobCounts.total, "string");
    assert.match(statusYaml, /^ {2}total: \d+$/m, "unquoted");
    const job = YAML.parse(jobYaml).job;
    assert.equal(job.progress.bytesTotal, 262144);
    assert.equal(typeof job.result.files[0].size, "number");
  });

  test("a unique prefix of a job id works for get, history, logs, watch and cancel", async () => {
    const all = (await json(["list", "--limit", "1000"])).jobs.map((j: { id: string }) => j.id);
    const id = jobIds[1]!;
    const prefix = uniquePrefix(id, all);
    assert.ok(prefix.length < id.length);
    assert.equal((await json(["get", prefix])).job.id, id);
    assert.match(await ok(["jobs", "get", prefix.toUpperCase()]), new RegExp(`^ID: +${id}$`, "m"), "any case");
    assert.match(await ok(["history", prefix]), /^TIME +FROM +TO +ACTOR +REASON\n.* - +queued +api +submitted\n/);
    assert.match(await ok(["logs", prefix]), /^\S+ +INFO +export started/m);
    const watched = await hyperctl(["watch", prefix]);
    assert.equal(watched.code, 0, watched.stderr);
    assert.match(watched.stdout, new RegExp(`^job ${id} completed`, "m"));

    const slow = (await ok(["-q", "export", "--provider", "fake", "--vm", "slow?size=100000000&chunk=65536&delayMs=50"])).trim();
    const slowPrefix = uniquePrefix(slow, [...all, slow]);
    const cancelled = await json(["cancel", slowPrefix]);
    assert.equal(cancelled[0].job.id, slow);
    assert.equal(cancelled[0].job.state, "JOB_STATE_CANCELLED");
  });

  test("an ambiguous prefix lists the candidates (id, name, state); an unknown one is not found; exit 1", async () => {
    const [a, b] = jobIds as [string, string];
    const shared = commonPrefix(a, b);
    assert.ok(shared.length >= 4, `${a} and ${b} share a prefix (UUIDv7: the time comes first)`);
    const ambiguous = await hyperctl(["get", shared]);
    assert.equal(ambiguous.code, 1);
    assert.match(ambiguous.stderr, new RegExp(`^hyperctl: job id prefix "${shared}" is ambiguous: `));
    assert.match(ambiguous.stderr, /^ {2}ID +NAME +STATE$/m);
    for (const id of [a, b]) assert.match(ambiguous.stderr, new RegExp(`^ {2}${id} +(alpha|beta|gamma) +completed$`, "m"));
    assert.equal(ambiguous.stdout, "");

    const unknown = await hyperctl(["get", "ffffffff"]);
    assert.equal(unknown.code, 1);
    assert.equal(unknown.stderr, 'hyperctl: job ffffffff not found (no job id is or starts with "ffffffff")\n');
    const cancel = await hyperctl(["cancel", "ffffffff", shared]);
    assert.equal(cancel.code, 1);
    assert.match(cancel.stderr, /^hyperctl: cancel ffffffff: job ffffffff not found/m);
    assert.match(cancel.stderr, /^hyperctl: cancel \S+: job id prefix "\S+" is ambiguous/m);
  });

  test("a batch id prefix works for batches get and list --batch", async () => {
    const prefix = batchId.slice(0, 13);
    assert.equal((await json(["batches", "get", prefix])).batch.id, batchId);
    const children = (await json(["list", "--batch", prefix])).jobs;
    assert.ok(children.length > 0 && children.every((j: { batchId: string }) => j.batchId === batchId));
    const unknown = await hyperctl(["batches", "get", "ffff"]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /^hyperctl: batch ffff not found/);
  });

  test("--server host:port and HYPERVISORD_ADDR host:port mean gRPC; http:// stays Connect", async () => {
    const bare = await ok(["--server", d.grpcAddress, "status"]);
    assert.match(bare, new RegExp(`^Server: +grpc://${d.grpcAddress.replace(/\./g, "\\.")}$`, "m"));
    assert.match(await ok(["status"], { server: d.grpcAddress }), /^Server: +grpc:\/\//m);
    assert.match(await ok(["status"]), /^Server: +http:\/\//m);
    const refused = await hyperctl(["status"], { server: "127.0.0.1:1" });
    assert.notEqual(refused.code, 0);
    assert.equal(refused.stderr, "hyperctl: cannot reach hypervisord at grpc://127.0.0.1:1: connection refused\n");
    assert.match(await ok(["--help"]), /host:port without a scheme means grpc:\/\/host:port/);
  });

  test("times in tables are local with their offset; TZ is respected", async () => {
    const id = jobIds[0]!;
    const created = new Date((await json(["get", id])).job.createTime);
    // The offset a zone had at that instant, from ICU ("GMT+01:00"), and the wall-clock time there.
    const expected = (zone: string) => {
      const name = new Intl.DateTimeFormat("en-US", { timeZone: zone, timeZoneName: "longOffset" }).formatToParts(created).find((p) => p.type === "timeZoneName")!.value;
      const [, sign, hh, mm] = /^GMT([+-])(\d\d):(\d\d)$/.exec(name)!;
      const minutes = (sign === "-" ? -1 : 1) * (Number(hh) * 60 + Number(mm));
      const t = new Date(created.getTime() + minutes * 60_000).toISOString();
      return `${t.slice(0, 10)} ${t.slice(11, 19)} \\${sign}${hh}:${mm}`;
    };
    const berlin = await ok(["get", id], { env: { TZ: "Europe/Berlin" } });
    assert.match(berlin, new RegExp(`^Created: +${expected("Europe/Berlin")}$`, "m"), berlin);
    assert.match(berlin, /^Created: +\S+ \S+ \+0[12]:00$/m);
    const kolkata = await ok(["get", id], { env: { TZ: "Asia/Kolkata" } });
    assert.match(kolkata, new RegExp(`^Created: +${expected("Asia/Kolkata")}$`, "m"), kolkata);
    assert.match(kolkata, /^Created: +\S+ \S+ \+05:30$/m);
    const utc = await ok(["list", "--label", "suite=output"], { env: { TZ: "UTC" } });
    assert.match(utc, / \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+00:00 /, "the offset even in UTC");
    const history = await ok(["history", id], { env: { TZ: "America/New_York" } });
    assert.match(history, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d -0[45]:00 +- +queued/m);

    const schedule = (await json(["schedules", "create", "berlin-night", "0 2 * * *", "--vm", "noop", "--provider", "fake", "--time-zone", "Europe/Berlin"])).schedule;
    try {
      const next = new Date(schedule.nextRunTime);
      assert.equal(next.getUTCHours() === 1 || next.getUTCHours() === 0, true, "02:00 in Berlin is 01:00 or 00:00 UTC");
      const listed = await ok(["schedules", "list"], { env: { TZ: "Europe/Berlin" } });
      assert.match(listed, / \d{4}-\d\d-\d\d 02:00:00 \+0[12]:00 /, listed);
    } finally {
      await ok(["schedules", "delete", schedule.id]);
    }
  });

  test("audit: local times, the filters, -o wide adds transport and peer", async () => {
    const table = await ok(["audit", "--method", "SubmitJob", "--since", "1h", "--limit", "3"], { env: { TZ: "Asia/Kolkata" } });
    assert.match(table, /^TIME +PRINCIPAL +ROLE +METHOD +CODE +RESOURCE +DURATION\n/);
    const lines = table.trim().split("\n");
    const rows = lines.slice(1, -1);
    assert.equal(rows.length, 3, table);
    assert.match(lines.at(-1)!, /^\(next page: --page-token \S+\)$/, "more than 3 SubmitJob calls were made");
    for (const row of rows) assert.match(row, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+05:30 +anonymous +admin +SubmitJob +OK +\S+ +\d+\.\d ms$/, row);
    const wide = await ok(["audit", "--method", "SubmitJob", "--limit", "1", "-o", "wide"]);
    assert.match(wide, /^TIME +PRINCIPAL +ROLE +METHOD +CODE +RESOURCE +DURATION +TRANSPORT +PEER\n.* SubmitJob +OK +.* ms +\S+ +127\.0\.0\.1:\d+$/m, wide);
    assert.equal((await json(["audit", "--since", "2099-01-01T00:00:00Z"])).events.length, 0, "--since in the future: none");
  });

  test("help of every command of jobs, batches, keys, packages, profiles, completion and status shows examples", async () => {
    const commands = [
      ["get"], ["list"], ["cancel"], ["watch"], ["logs"], ["history"], ["jobs", "list"], ["batches", "list"], ["batches", "get"],
      ["batches", "cancel"], ["batches", "watch"], ["keys", "list"], ["keys", "create"], ["keys", "revoke"], ["ova", "validate"],
      ["ova", "extract"], ["manifest", "verify"], ["profiles", "list"], ["profiles", "get"], ["profiles", "create"],
      ["profiles", "update"], ["profiles", "delete"], ["completion"], ["status"], ["capabilities"], ["audit"], [],
    ];
    const helps = await Promise.all(commands.map((c) => ok([...c, "--help"])));
    helps.forEach((help, i) => assert.match(help, /\nExamples:\n( {2}(hyperctl|source) .*\n)+/, `hyperctl ${commands[i]!.join(" ")} --help:\n${help}`));
  });

  test("hyperctl ... | true: a reader that went away ends hyperctl quietly with exit 0 (no EPIPE crash)", async () => {
    // `true` exits before hyperctl (a Node process) writes anything, so every write meets a closed pipe.
    const { stdout, stderr } = await shell("bash", [], `hyperctl list -o wide | true; echo "list \${PIPESTATUS[0]}"
hyperctl --help | true; echo "help \${PIPESTATUS[0]}"`);
    assert.equal(stdout, "list 0\nhelp 0\n");
    assert.equal(stderr, "");
  });

  describe("shell completion of ids", () => {
    test("bash: job ids by prefix, schedule and batch ids, --batch values; nothing printed without a daemon", async () => {
      const id = jobIds[2]!;
      const script = await ok(["completion", "bash"]);
      const complete = (line: string, server?: string) => shell("bash", [], `${script}
COMP_WORDS=(${line}); COMP_CWORD=$(( \${#COMP_WORDS[@]} - 1 ))
_hyperctl
printf '%s\\n' "\${COMPREPLY[@]}"`, server);
      const prefix = id.slice(0, 20);
      assert.deepEqual((await complete(`hyperctl get ${prefix}`)).stdout.trim().split("\n"), jobIds.concat(secretJob).filter((j) => j.startsWith(prefix)).sort());
      const schedule = (await json(["schedules", "create", "complete-me", "@daily", "--vm", "noop", "--provider", "fake", "--disabled"])).schedule;
      try {
        assert.ok((await complete("hyperctl schedules trigger ''")).stdout.split("\n").includes(schedule.id));
        assert.ok((await complete(`hyperctl --server ${d.grpcAddress} schedules get ''`, "http://127.0.0.1:1")).stdout.split("\n").includes(schedule.id),
          "--server on the line is used");
      } finally {
        await ok(["schedules", "delete", schedule.id]);
      }
      assert.ok((await complete("hyperctl jobs list --batch ''")).stdout.split("\n").includes(batchId));
      assert.ok((await complete("hyperctl batches watch ''")).stdout.split("\n").includes(batchId));
      assert.deepEqual((await complete("hyperctl sched")).stdout.trim().split("\n"), ["schedules"]);
      assert.deepEqual((await complete("hyperctl list --state r")).stdout.trim().split("\n"), ["running"]);
      const down = await complete("hyperctl get ''", "http://127.0.0.1:1");
      assert.equal(down.stdout, "\n", "no ids, nothing printed");
      assert.equal(down.stderr, "");
    });

    test("zsh: job ids with their name and state", async (t) => {
      if (!installed("zsh")) return t.skip("zsh is not installed (Debian zsh)");
      const script = await ok(["completion", "zsh"]);
      const { stdout } = await shell("zsh", ["-f"], `compdef() { :; }
compadd() { print -r -- "compadd $*"; [[ "$1" == -l ]] && print -rl -- "\${(@P)3}"; }
${script}
words=(hyperctl watch ${jobIds[0]!.slice(0, 8)}); CURRENT=3; PREFIX=${jobIds[0]!.slice(0, 8)}
_hyperctl`);
      assert.match(stdout, new RegExp(`^compadd -l -d descs -- .*${jobIds[0]}`, "m"), stdout);
      assert.match(stdout, new RegExp(`^${jobIds[0]} {2}-- (alpha|beta|gamma) completed$`, "m"), stdout);
    });

    test("fish: subcommands with descriptions, job and webhook ids", async (t) => {
      if (!installed("fish")) return t.skip("fish is not installed (Debian fish)");
      const script = await ok(["completion", "fish"]);
      const receiver = await startWebhookReceiver({ reply: 204 });
      try {
        const hook = /^webhook (\S+) added$/m.exec(await ok(["webhooks", "add", receiver.url, "job.failed"]))![1]!;
        const { stdout } = await shell("fish", ["--no-config"], `${script}
complete -C'hyperctl sched'
complete -C'hyperctl logs ${jobIds[0]!.slice(0, 20)}'
complete -C'hyperctl webhooks test '
complete -C'hyperctl list --state c'
complete -C'hyperctl list --sta'`);
        assert.match(stdout, /^schedules\trecurring exports$/m);
        assert.match(stdout, new RegExp(`^${jobIds[0]}\t(alpha|beta|gamma) completed$`, "m"));
        assert.match(stdout, new RegExp(`^${hook}\thttp://`, "m"));
        assert.match(stdout, /^completed$/m);
        assert.match(stdout, /^cancelled$/m);
        assert.match(stdout, /^--state\tqueued, running, completed, failed or cancelled/m, "an option keeps its description");
        await ok(["webhooks", "delete", hook]);
      } finally {
        await receiver.close();
      }
    });
  });
});
