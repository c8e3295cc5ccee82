// hyperctl as a user runs it: `node bin/hyperctl.js ...` against a real daemon (fake provider jobs),
// output parsed, exit codes checked; watch in a pseudo-terminal through util-linux `script`.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import YAML from "yaml";
import { HypervisordService } from "../gen/hypervisord/v1/service_pb.js";
import { spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { hasScript, HYPERCTL_BIN, hyperctlEnv, runHyperctl, type HyperctlOptions, type HyperctlRun } from "./support/hyperctl.ts";
import { tempDir } from "./support/temp-dir.ts";
import { startWebhookReceiver } from "./support/webhook-receiver.ts";

/** About 4 s of work. */
const SLOW = "size=8388608&chunk=65536&delayMs=30";
/** About 6 s: still running after `hyperctl export` and then `hyperctl watch` have started (~1 s each) on a busy machine. */
const WATCHED = "size=12582912&chunk=65536&delayMs=30";
const LONG = "size=100000000&chunk=65536&delayMs=50";

let d: DaemonProcess;
let work = "";

type RunOptions = Partial<HyperctlOptions>;
const hyperctl = (args: string[], options: RunOptions = {}) => runHyperctl(args, { ...options, server: options.server ?? d.httpUrl });

/** Runs and expects exit code 0; -o json output parsed. */
async function json<T = any>(args: string[], options: RunOptions = {}): Promise<T> {
  const run = await hyperctl([...args, "-o", "json"], options);
  assert.equal(run.code, 0, `hyperctl ${args.join(" ")}: ${run.stderr}`);
  return JSON.parse(run.stdout) as T;
}

async function ok(args: string[], options: RunOptions = {}): Promise<string> {
  const run = await hyperctl(args, options);
  assert.equal(run.code, 0, `hyperctl ${args.join(" ")}: ${run.stderr}`);
  return run.stdout;
}

async function submit(vm: string, extra: string[] = []): Promise<string> {
  const out = await ok(["-q", "export", "--provider", "fake", "--vm", vm, ...extra]);
  return out.trim();
}

describe("hyperctl", () => {
  before(async () => {
    work = tempDir("cli");
    const config = path.join(work, "hypervisord.yaml");
    fs.writeFileSync(config, "webhooks:\n  allow_private_targets: true\n");
    d = await spawnDaemon({ args: ["--config", config] });
  });
  after(async () => {
    if (d) assert.equal(await d.stop(), 0, "daemon exit code");
  });

  test("status and capabilities: tables and proto JSON", async () => {
    const [status, statusTable, capabilities, capabilitiesTable, statusYaml] = await Promise.all([
      json(["status"]), ok(["status"]), json(["capabilities"]), ok(["capabilities"]), ok(["status", "-o", "yaml"]),
    ]);
    assert.equal(status.lifecycle, "running");
    assert.match(status.version, /^\d+\.\d+\.\d+/);
    assert.equal(typeof status.jobCounts.total, "string", "int64 as a string, as in the Connect JSON");
    assert.match(statusTable, /^Server: +http:\/\/127\.0\.0\.1:\d+\nVersion: +\d/m);
    assert.ok(capabilities.providers.some((p: { name: string }) => p.name === "fake"));
    assert.deepEqual(capabilities.formats, ["EXPORT_FORMAT_OVF", "EXPORT_FORMAT_OVA"]);
    assert.match(capabilitiesTable, /^PROVIDER +RESUMABLE +DISCOVERY\n(.*\n)*fake +yes +yes$/m);
    const yaml = YAML.parse(statusYaml) as { lifecycle: string };
    assert.equal(yaml.lifecycle, "running");
  });

  test("export, get, list; export --watch exits 0 on completed, 1 on failed", async () => {
    const submitted = await json(["export", "--provider", "fake", "--vm", "noop", "--output-dir", "cli-a", "--format", "ova", "--priority", "high", "--label", "suite=cli", "--label", "n=1"]);
    assert.equal(submitted.created, true);
    const id = submitted.job.id as string;
    assert.equal(submitted.job.definition.format, "EXPORT_FORMAT_OVA");
    assert.equal(submitted.job.definition.priority, "high");
    assert.deepEqual(submitted.job.definition.labels, { suite: "cli", n: "1" });

    const watched = await hyperctl(["export", "--provider", "fake", "--vm", "noop", "--label", "suite=cli", "--watch"]);
    assert.equal(watched.code, 0, watched.stderr);
    assert.match(watched.stdout, /^job \S+ submitted: /m);
    assert.match(watched.stdout, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d) +completed +100%/m, "one line per state change");
    assert.match(watched.stdout, /^job \S+ completed in \S+: \//m);

    const job = (await json(["get", id])).job;
    assert.equal(job.id, id);
    assert.ok(["JOB_STATE_COMPLETED", "JOB_STATE_RUNNING", "JOB_STATE_QUEUED"].includes(job.state));
    assert.match(await ok(["get", id]), new RegExp(`^ID: +${id}\\n(.*\\n)*Priority: +high$`, "m"));

    const failed = await hyperctl(["export", "--provider", "fake", "--vm", "bad?failTimes=9&failCode=INVALID_ARGUMENT", "--label", "suite=cli", "--watch"]);
    assert.equal(failed.code, 1);
    assert.match(failed.stdout, /^job \S+ failed: INVALID_ARGUMENT: fake failure 1 of 9$/m);

    const list = await json(["list", "--label", "suite=cli", "--state", "completed,failed", "--state", "running"]);
    assert.ok(list.jobs.length >= 2);
    assert.ok(list.jobs.every((j: { definition: { labels: Record<string, string> } }) => j.definition.labels.suite === "cli"));
    assert.ok(list.jobs.some((j: { state: string }) => j.state === "JOB_STATE_FAILED"));
    assert.equal((await json(["list", "--limit", "1"])).jobs.length, 1);
    assert.deepEqual((await json(["list", "--query", id.toUpperCase()])).jobs.map((j: { id: string }) => j.id), [id], "--query matches the job id, ignoring case");
    assert.match(await ok(["list", "--label", "suite=cli"]), /^ID +NAME +STATE +PROGRESS +SIZE +CREATED +DURATION\n/);
  });

  test("cancel; watch exits 2 on cancelled; JSON lines with -o json", async () => {
    const id = await submit(`long?${LONG}`);
    const watching = hyperctl(["watch", id, "-o", "json"]);
    await new Promise((r) => setTimeout(r, 2_000));
    const cancelled = await json(["cancel", id, "--reason", "from the cli test"]);
    assert.equal(cancelled.length, 1);
    assert.equal(cancelled[0].job.state, "JOB_STATE_CANCELLED");
    const watched = await watching;
    assert.equal(watched.code, 2, watched.stderr);
    const updates = watched.stdout.trim().split("\n").map((line) => JSON.parse(line) as { kind: string; state: string; seq: string });
    assert.equal(updates[0]!.kind, "JOB_EVENT_KIND_SNAPSHOT");
    assert.ok(updates.some((u) => u.kind === "JOB_EVENT_KIND_SYNCED"));
    assert.equal(updates.at(-1)!.state, "JOB_STATE_CANCELLED");

    const again = await hyperctl(["cancel", id, "nonexistent-job"]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already cancelled/);
    assert.match(again.stderr, /cancel nonexistent-job: /);
  });

  test("Ctrl-C stops watching (exit 130), not the job", async () => {
    const id = await submit(`interrupted?${LONG}`);
    const run = await hyperctl(["watch", id], {
      // SIGINT once the first line is out: hyperctl is watching by then.
      onSpawn: (child) => child.stdout!.once("data", () => child.kill("SIGINT")),
    });
    assert.equal(run.code, 130, run.stderr);
    assert.match(run.stderr, new RegExp(`stopped watching; job ${id} goes on`));
    assert.equal((await json(["get", id])).job.state, "JOB_STATE_RUNNING");
    await ok(["cancel", id]);
  });

  test("watch on a terminal draws a progress bar with percent, rate and ETA", async (t) => {
    if (!hasScript()) return t.skip("util-linux `script` is not installed: no pseudo-terminal to test with");
    const id = await submit(`tty?${WATCHED}`);
    const run = await new Promise<HyperctlRun>((resolve) => {
      const child = spawn("script", ["-qfec", `${process.execPath} ${HYPERCTL_BIN} watch ${id}`, "/dev/null"], { env: hyperctlEnv(d.httpUrl), stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
      child.once("close", (code) => resolve({ code, stdout, stderr: "" }));
    });
    assert.equal(run.code, 0, run.stdout);
    const frames = run.stdout.split("\r\x1b[K").filter(Boolean);
    const bars = frames.filter((f) => /^\[[#-]+\] /.test(f));
    assert.ok(bars.length >= 2, `redrawn in place: ${JSON.stringify(run.stdout.slice(0, 400))}`);
    assert.ok(bars.some((f) => /\d+(\.\d)?% +\d+\.\d MiB\/s +ETA \d+:\d\d +downloading/.test(f)), JSON.stringify(bars.slice(0, 3)));
    assert.match(frames.at(-1)!, /^job \S+ completed in /);
  });

  test("watch without a terminal prints a line per state and phase", async () => {
    const id = await submit(`lines?${WATCHED}`);
    const run = await hyperctl(["watch", id]);
    assert.equal(run.code, 0, run.stderr);
    assert.ok(!run.stdout.includes("\r"), "no redrawing when stdout is not a terminal");
    const lines = run.stdout.trim().split("\n");
    assert.match(lines[0]!, /^\S+ +(queued|running)/);
    assert.ok(lines.some((l) => / running +downloading +\d/.test(l)), run.stdout);
    assert.match(lines.at(-1)!, /^job \S+ completed in /);
  });

  test("logs, logs --tail -o json, logs -f until the job ends", async () => {
    const id = await submit(`logs?${SLOW}`);
    const followed = await hyperctl(["logs", "-f", id]);
    assert.equal(followed.code, 0, followed.stderr);
    assert.match(followed.stdout, /^\S+ +INFO +export started +attempt=1 /m);
    assert.match(followed.stdout, /fake disk written/, "followed to the end of the job");
    const tail = (await ok(["logs", "--tail", "1", id, "-o", "json"])).trim().split("\n");
    assert.equal(tail.length, 1);
    assert.equal(typeof (JSON.parse(tail[0]!) as { entry: { message: string } }).entry.message, "string");
  });

  test("submit -f: a YAML list (snake_case and camelCase), {jobs: [...]} JSON, and errors naming the item", async () => {
    const yaml = path.join(work, "jobs.yaml");
    fs.writeFileSync(yaml, [
      "- provider: fake",
      "  vm: noop",
      "  output_dir: batch-a",
      "  labels: {batch: b1}",
      "- provider: fake",
      "  vm: noop",
      "  outputDir: batch-b",
      "  format: ova",
      "  compression_level: 3",
      "",
    ].join("\n"));
    const response = await json(["submit", "-f", yaml]);
    assert.equal(response.results.length, 2);
    assert.deepEqual(response.results[0].job.definition.labels, { batch: "b1" });
    assert.equal(response.results[1].job.definition.format, "EXPORT_FORMAT_OVA");
    assert.equal(response.results[1].job.definition.compressionLevel, 3);

    const jobsJson = path.join(work, "jobs.json");
    fs.writeFileSync(jobsJson, JSON.stringify({ jobs: [{ provider: "fake", vm: "noop" }, { provider: "fake", vm: "noop", output_dir: "/etc" }] }));
    const mixed = await hyperctl(["submit", "-f", jobsJson]);
    assert.equal(mixed.code, 1, "one item refused");
    assert.match(mixed.stdout, /^0 +\S+ +(queued|running|completed)/m);
    assert.match(mixed.stdout, /^1 +- +refused +INVALID_ARGUMENT: .*output_dir/m);

    const bad = path.join(work, "bad.yaml");
    fs.writeFileSync(bad, "jobs:\n  - vm: noop\n    colour: red\n");
    const refused = await hyperctl(["submit", "-f", bad]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^hyperctl: .*bad\.yaml: jobs\[0\]: .*colour/m);
  });

  test("INVALID_ARGUMENT shows the daemon's message, which names the field", async () => {
    const run = await hyperctl(["export", "--provider", "fake", "--vm", "noop", "--output-dir", "/etc"]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /^hyperctl: definition\.output_dir: .*\/etc/m);
  });

  test("vms list / get through the daemon; --password-stdin is read and never printed", async () => {
    const vms = await json(["vms", "list", "--provider", "fake", "--name-pattern", "web-*", "--power-state", "on"]);
    assert.deepEqual(vms.vms.map((v: { name: string }) => v.name), ["web-01", "web-04"]);
    const withPassword = await hyperctl(["vms", "get", "web-02", "--provider", "fake", "--vsphere-url", "https://vc.example/sdk", "--username", "u", "--password-stdin"], { input: "pa55word-from-stdin\n" });
    assert.equal(withPassword.code, 0, withPassword.stderr);
    assert.match(withPassword.stdout, /^Moref: +vm-101$/m);
    assert.ok(!(withPassword.stdout + withPassword.stderr).includes("pa55word"));
    const both = await hyperctl(["vms", "list", "--password", "x", "--password-stdin"], { input: "y\n" });
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--password and --password-stdin are mutually exclusive/);
  });

  test("schedules: create, list, get, update, enable, disable, trigger, runs, delete", async () => {
    const created = (await json(["schedules", "create", "nightly", "0 2 * * *", "--vm", "noop", "--provider", "fake", "--time-zone", "Europe/Berlin", "--overlap", "queue", "--output-dir", "sched", "--keep-last", "3", "--disabled"])).schedule;
    assert.equal(created.enabled, false);
    assert.equal(created.keepLast, 3);
    assert.equal(created.overlapPolicy, "OVERLAP_POLICY_QUEUE");
    assert.equal(created.jobTemplate.vm, "noop");
    const id = created.id as string;
    assert.ok((await json(["schedules", "list"])).schedules.some((s: { id: string }) => s.id === id));
    assert.match(await ok(["schedules", "get", id]), /^Time zone: +Europe\/Berlin$/m);
    const updated = (await json(["schedules", "update", id, "--cron", "30 3 * * *", "--name", "later", "--enable"])).schedule;
    assert.equal(updated.cron, "30 3 * * *");
    assert.equal(updated.name, "later");
    assert.equal(updated.enabled, true);
    assert.equal(updated.keepLast, 3);
    // 0 is sent with an update_mask (without one it would read as "not given"); the other fields given go with it.
    const keepAll = (await json(["schedules", "update", id, "--keep-last", "0", "--name", "all"])).schedule;
    assert.deepEqual([keepAll.keepLast ?? 0, keepAll.name, keepAll.cron], [0, "all", "30 3 * * *"]);
    assert.match(await ok(["schedules", "get", id]), /^Keep last: +all exports$/m);
    const badKeep = await hyperctl(["schedules", "update", id, "--keep-last", "10001"]);
    assert.equal(badKeep.code, 2);
    assert.match(badKeep.stderr, /--keep-last.*from 0 to 10000/);
    assert.equal((await json(["schedules", "disable", id])).schedule.enabled, false);
    assert.equal((await json(["schedules", "enable", id])).schedule.enabled, true);
    const triggered = await json(["schedules", "trigger", id]);
    assert.equal(triggered.run.trigger, "manual");
    assert.equal(triggered.job.scheduleId, id);
    const runs = (await json(["schedules", "runs", id])).runs;
    assert.equal(runs[0].jobId, triggered.job.id);
    assert.match(await ok(["schedules", "delete", id]), /deleted/);
    const gone = await hyperctl(["schedules", "get", id]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /not found/);
  });

  test("webhooks: add prints the secret once, update, test delivers a signed event, deliveries, delete", async () => {
    const receiver = await startWebhookReceiver({ reply: 204 });
    try {
      const added = await ok(["webhooks", "add", receiver.url, "job.completed", "job.failed", "--header", "X-Team=web"]);
      const secret = /^secret: (whsec_\S+)$/m.exec(added)?.[1];
      assert.ok(secret, added);
      const id = /^webhook (\S+) added$/m.exec(added)![1]!;
      const listed = (await json(["webhooks", "list"])).webhooks.find((w: { id: string }) => w.id === id);
      assert.deepEqual(listed.events, ["job.completed", "job.failed"]);
      assert.ok(!("secret" in listed), "the secret is never returned again (and -o json leaves the empty write-only field out)");
      assert.deepEqual(listed.headers, { "x-team": "***" });
      assert.deepEqual((await json(["webhooks", "update", id, "--events", "job.created"])).webhook.events, ["job.created"]);
      assert.match(await ok(["webhooks", "test", id]), /^delivery \S+: delivered, 204/);
      assert.equal(receiver.requests.length, 1);
      assert.match(String(receiver.requests[0]!.headers["webhook-signature"]), /^v1,/);
      assert.equal(receiver.requests[0]!.headers["x-team"], "web");
      const deliveries = (await json(["webhooks", "deliveries", id])).deliveries;
      assert.equal(deliveries[0].eventType, "webhook.test");
      assert.equal(deliveries[0].state, "DELIVERY_STATE_DELIVERED");
      await ok(["webhooks", "delete", id]);
      assert.equal((await hyperctl(["webhooks", "get", id])).code, 1);
    } finally {
      await receiver.close();
    }
  });

  test("profiles: create -f settings.yaml, list, get -o yaml, delete", async () => {
    const settings = path.join(work, "fast.yaml");
    fs.writeFileSync(settings, "description: quick OVA\nsettings:\n  format: ova\n  compress: true\n  compression_level: 1\n  labels: {tier: gold}\n");
    assert.match(await ok(["profiles", "create", "fast", "-f", settings]), /profile fast created/);
    const listed = (await json(["profiles", "list"])).profiles.find((p: { name: string }) => p.name === "fast");
    assert.equal(listed.description, "quick OVA");
    const got = YAML.parse(await ok(["profiles", "get", "fast", "-o", "yaml"])) as { profile: { settings: { format: string; compressionLevel: number } } };
    assert.equal(got.profile.settings.format, "EXPORT_FORMAT_OVA");
    assert.equal(got.profile.settings.compressionLevel, 1);
    await ok(["profiles", "delete", "fast"]);
    assert.equal((await hyperctl(["profiles", "get", "fast"])).code, 1);
  });

  test("ova validate / extract and manifest verify of missing files: the daemon's NOT_FOUND message, exit 1", async () => {
    const commands = [["ova", "validate", "missing.ova"], ["ova", "extract", "missing.ova", "unpacked"], ["manifest", "verify", "missing/artifact-manifest.json"]];
    const runs = await Promise.all(commands.map((args) => hyperctl(args)));
    for (const [i, args] of commands.entries()) {
      const run = runs[i]!;
      assert.equal(run.code, 1, args.join(" "));
      assert.match(run.stderr, /^hyperctl: .*missing.*(no such file|does not exist|not found)/im, run.stderr);
    }
  });

  test("completion bash and zsh print scripts", async () => {
    const bash = await ok(["completion", "bash"]);
    assert.match(bash, /^complete -F _hyperctl hyperctl$/m);
    assert.match(bash, /"schedules"\)\n(.*\n)*? {6}words="list get create update enable disable trigger delete runs /);
    assert.match(bash, /"export"\)\n(.*\n)*? {8}--format\) COMPREPLY=\(\$\(compgen -W "ovf ova"/);
    execFileSync("bash", ["-n"], { input: bash });
    assert.match(await ok(["completion", "zsh"]), /^#compdef hyperctl$/m);
  });

  test("the same over gRPC (grpc://)", async () => {
    const server = `grpc://${d.grpcAddress}`;
    assert.equal((await json(["status"], { server })).lifecycle, "running");
    const run = await hyperctl(["export", "--provider", "fake", "--vm", `grpc?${SLOW}`, "--label", "via=grpc", "--watch"], { server });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /completed in/);
    assert.equal((await json(["list", "--label", "via=grpc"], { server })).jobs.length, 1);
  });

  // Last in this suite: while a usable key exists, a loopback daemon ("open until keys") requires one.
  test("keys: create prints the key once, list, revoke; once enforced, calls need a key and viewers cannot export", async (t) => {
    const created = await hyperctl(["keys", "create", "ci-admin", "--role", "admin", "-o", "json"]);
    if (created.code !== 0) {
      // The ApiKey RPCs are served by another part of the daemon; without them the CLI must still fail cleanly.
      assert.equal(created.code, 1);
      assert.match(created.stderr, /^hyperctl: .+/);
      return t.skip(`the daemon does not serve CreateApiKey: ${created.stderr.trim()}`);
    }
    const admin = JSON.parse(created.stdout) as { key: string; apiKey: { id: string; role: string } };
    assert.match(admin.key, /^hvd_/);
    assert.equal(admin.apiKey.role, "admin");
    const asAdmin = { env: { HYPERVISORD_API_KEY: admin.key } };
    let enforced = false;
    try {
      const viewerOut = await ok(["--api-key", admin.key, "keys", "create", "ci-viewer", "--role", "viewer"]);
      const viewerKey = /^key: (hvd_\S+)$/m.exec(viewerOut)?.[1];
      assert.ok(viewerKey, viewerOut);
      assert.ok(!viewerOut.includes(admin.key), "the key given with --api-key is never printed");
      const keys = (await json(["keys", "list"], asAdmin)).apiKeys as { id: string; name: string }[];
      assert.deepEqual(keys.map((k) => k.name).sort(), ["ci-admin", "ci-viewer"]);
      assert.ok(!JSON.stringify(keys).includes(admin.key), "keys are never listed");
      assert.match(await ok(["keys", "list"], asAdmin), /^ID +NAME +ROLE +PREFIX/);

      const anonymous = await hyperctl(["status"]);
      enforced = anonymous.code !== 0;
      if (enforced) {
        assert.equal(anonymous.stderr, "hyperctl: unauthenticated: pass --api-key or set HYPERVISORD_API_KEY\n");
        const wrong = await hyperctl(["--api-key", "hvd_not_a_real_key", "status"]);
        assert.equal(wrong.stderr, "hyperctl: unauthenticated: invalid API key: check --api-key or HYPERVISORD_API_KEY\n");
        assert.equal((await json(["status"], { env: { HYPERVISORD_API_KEY: viewerKey } })).lifecycle, "running");
        const denied = await hyperctl(["export", "--provider", "fake", "--vm", "noop"], { env: { HYPERVISORD_API_KEY: viewerKey } });
        assert.equal(denied.code, 1);
        assert.match(denied.stderr, /^hyperctl: permission denied: /);
        assert.ok(!denied.stderr.includes(viewerKey));
      }
      const viewerId = keys.find((k) => k.name === "ci-viewer")!.id;
      assert.match(await ok(["keys", "revoke", viewerId], asAdmin), /revoked/);
    } finally {
      await ok(["keys", "revoke", admin.apiKey.id], asAdmin);
    }
    assert.equal((await json(["status"])).lifecycle, "running", "no usable key left: open again on loopback");
    if (!enforced) t.todo("the daemon does not enforce API keys yet (auth hook not wired): UNAUTHENTICATED / PERMISSION_DENIED checked against a fake server only");
  });
});

describe("hyperctl errors", () => {
  test("daemon down: one clear line, exit 3 (unreachable), over both schemes", async () => {
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const { port } = probe.address() as import("node:net").AddressInfo;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    for (const server of [`http://127.0.0.1:${port}`, `grpc://127.0.0.1:${port}`]) {
      const run = await hyperctl(["status"], { server });
      assert.equal(run.code, 3);
      assert.equal(run.stderr, `hyperctl: cannot reach hypervisord at ${server}: connection refused\n`);
    }
  });

  test("UNAUTHENTICATED names the fix; the key is sent as a bearer token and never printed", async () => {
    const seen: (string | undefined)[] = [];
    const server = http.createServer((req, res) => {
      seen.push(req.headers.authorization);
      req.resume();
      res.writeHead(401, { "content-type": "application/json" }).end(JSON.stringify({ code: "unauthenticated", message: "invalid API key" }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as import("node:net").AddressInfo).port}`;
      const run = await hyperctl(["list"], { server: url, env: { HYPERVISORD_API_KEY: "hvd_wrong_key_123" } });
      assert.equal(run.code, 1);
      assert.equal(run.stderr, "hyperctl: unauthenticated: invalid API key: check --api-key or HYPERVISORD_API_KEY\n");
      assert.deepEqual(seen, ["Bearer hvd_wrong_key_123"]);
      const flag = await hyperctl(["--api-key", "hvd_flag_key_456", "status"], { server: url });
      assert.equal(flag.code, 1);
      assert.equal(seen[1], "Bearer hvd_flag_key_456");
      assert.ok(!flag.stderr.includes("hvd_flag_key_456"));
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  test("--tls-ca or --insecure reach a TLS listener; without them the certificate problem is named", async (t) => {
    const dir = tempDir("cli-tls");
    try {
      execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem")], { stdio: "pipe" });
    } catch (err) {
      return t.skip(`openssl could not make a certificate: ${(err as Error).message}`);
    }
    const handler = connectNodeAdapter({ routes: (router) => router.service(HypervisordService, { getStatus: async () => ({ version: "9.9.9", lifecycle: "running" }) }) });
    const server = http2.createSecureServer({ cert: fs.readFileSync(path.join(dir, "cert.pem")), key: fs.readFileSync(path.join(dir, "key.pem")), allowHTTP1: true }, handler);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = `127.0.0.1:${(server.address() as import("node:net").AddressInfo).port}`;
    try {
      const [withCa, insecure, grpcs, untrusted] = await Promise.all([
        hyperctl(["--tls-ca", path.join(dir, "cert.pem"), "status", "-o", "json"], { server: `https://${address}` }),
        hyperctl(["--insecure", "status", "-o", "json"], { server: `https://${address}` }),
        hyperctl(["--tls-ca", path.join(dir, "cert.pem"), "status", "-o", "json"], { server: `grpcs://${address}` }),
        hyperctl(["status"], { server: `https://${address}` }),
      ]);
      for (const run of [withCa, insecure, grpcs]) {
        assert.equal(run.code, 0, run.stderr);
        assert.equal((JSON.parse(run.stdout) as { version: string }).version, "9.9.9");
      }
      assert.equal(untrusted.code, 3, "no call was made: the daemon could not be reached");
      assert.match(untrusted.stderr, /^hyperctl: .*self-signed certificate: pass --tls-ca FILE/);
    } finally {
      server.close();
    }
  });

  test("usage errors: commander's message and a hint, exit 2; a mistyped secret option is not echoed", async () => {
    const server = "http://127.0.0.1:9";
    const [unknownCommand, unknownOption, missing, badChoice] = await Promise.all([
      hyperctl(["stauts"], { server }), hyperctl(["list", "--pasword=hunter22"], { server }), hyperctl(["export"], { server }), hyperctl(["list", "-o", "xml"], { server }),
    ]);
    assert.equal(unknownCommand.code, 2);
    assert.match(unknownCommand.stderr, /unknown command 'stauts'\n\(Did you mean status\?\)\n\(add --help for usage\)/);
    assert.equal(unknownOption.code, 2);
    assert.match(unknownOption.stderr, /unknown option '--pasword=\*\*\*'/);
    assert.ok(!unknownOption.stderr.includes("hunter22"));
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /required option '--vm <vm>' not specified/);
    assert.equal(badChoice.code, 2);
  });
});
