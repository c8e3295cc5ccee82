// hyperctl at its edges, run as a user runs it against the real daemon (and vcsim-export for vSphere): the daemon's
// errors passed through as they are (vCenter refusing its login is not an API key problem; an untrusted vCenter
// certificate is named with its fingerprint, which then pins it), exit code 3 when the daemon cannot be reached
// (also when it goes away mid-watch), enable/disable for webhooks and schedules alike, `get` with converted disks
// and every attempt, and examples in --help.
import assert from "node:assert/strict";
import { execFileSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { JobState } from "../gen/hypervisord/v1/job_pb.js";
import { duration } from "../src/cli/format.ts";
import { LOST_MS, NEVER_REACHED_MS } from "../src/cli/reconnect-budget.ts";
import { findExecutable } from "../src/stages/qemu-img.ts";
import { createGrpcJsClient, type GrpcJsClient } from "./support/clients.ts";
import { respawnDaemon, spawnDaemon, spawnDaemonWithClient, type DaemonProcess } from "./support/daemon-process.ts";
import { runHyperctl, type HyperctlOptions } from "./support/hyperctl.ts";
import { tempDir } from "./support/temp-dir.ts";
import { buildVcsim, startVcsim, writeStreamOptimizedDisk, type Vcsim } from "./support/vcsim.ts";
import { waitFor } from "./support/wait-for.ts";
import { hasBytes, isFinal, waitForJob } from "./support/wait-for-job.ts";
import { startWebhookReceiver } from "./support/webhook-receiver.ts";

const MiB = 1024 * 1024;
const cleanups: (() => Promise<unknown> | void)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

let daemon: DaemonProcess;
let client: GrpcJsClient;
let sim: Vcsim | undefined;
let vsphereSkip: string | undefined;

before(async () => {
  const config = path.join(tempDir("cli-behaviour-config"), "hypervisord.yaml");
  // Short retries (a job failing twice is quick) and webhooks to the loopback receiver.
  fs.writeFileSync(config, "jobs:\n  retry_initial_backoff: 300ms\n  retry_max_backoff: 300ms\nwebhooks:\n  allow_private_targets: true\n");
  ({ daemon, client } = await spawnDaemonWithClient({ args: ["--config", config] }, cleanups));
  vsphereSkip = (await buildVcsim()).reason;
  if (vsphereSkip) {
    console.log(`skipping the vSphere tests of hyperctl: ${vsphereSkip}`);
    return;
  }
  // vcsim-export checks the credentials only when given them; its certificate is self-signed.
  sim = await startVcsim(["-username", "user", "-password", "pass"]);
  cleanups.push(() => sim!.stop());
});

const hyperctl = (args: string[], options: Partial<HyperctlOptions> = {}) => runHyperctl(args, { server: daemon.httpUrl, ...options });

/** A port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const probe = http.createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** The SHA-256 fingerprint of a TLS server's certificate, as openssl (not Node) reads it: "AB:CD:...". */
function opensslFingerprint(hostPort: string): string {
  const pem = execFileSync("openssl", ["s_client", "-connect", hostPort], { input: "", stdio: ["pipe", "pipe", "ignore"] });
  const out = execFileSync("openssl", ["x509", "-noout", "-fingerprint", "-sha256"], { input: pem, encoding: "utf8" });
  return /Fingerprint=([0-9A-F:]+)/i.exec(out)![1]!.toUpperCase();
}

describe("the daemon's errors, as the daemon says them", () => {
  test("a wrong vCenter password is vCenter refusing the login (exit 1), never the API key hint; the password is not printed", async (t) => {
    if (vsphereSkip) return t.skip(vsphereSkip);
    const vm = sim!.vms[0]!;
    const connection = ["--vsphere-url", sim!.url, "--username", "user", "--insecure-vsphere"];
    const expected = `hyperctl: vSphere login to ${sim!.url} as user failed: incorrect user name or password\n`;
    const [list, get, stdin] = await Promise.all([
      hyperctl(["vms", "list", ...connection, "--password", "wrong-password-1"]),
      hyperctl(["vms", "get", vm.path, ...connection, "--password", "wrong-password-1"]),
      hyperctl(["vms", "list", ...connection, "--password-stdin"], { input: "wrong-password-2\n" }),
    ]);
    for (const run of [list, get, stdin]) {
      assert.equal(run.code, 1, run.stderr);
      assert.equal(run.stderr, expected);
      assert.equal(run.stdout, "");
      assert.doesNotMatch(run.stderr, /api-key|API_KEY|wrong-password/);
    }
    // The same connection with the right password works: the refusal was about the password.
    const right = await hyperctl(["vms", "get", vm.path, ...connection, "--password", "pass", "-o", "json"]);
    assert.equal(right.code, 0, right.stderr);
    assert.equal((JSON.parse(right.stdout) as { vm: { name: string } }).vm.name, vm.name);
  });

  test("a vCenter the daemon cannot reach is the daemon's UNAVAILABLE (exit 1), not 'cannot reach hypervisord' (exit 3)", async () => {
    const port = await closedPort();
    const run = await hyperctl(["vms", "list", "--vsphere-url", `https://127.0.0.1:${port}/sdk`, "--username", "u", "--password", "p", "--insecure-vsphere"]);
    assert.equal(run.code, 1, run.stderr);
    assert.equal(run.stderr, `hyperctl: unavailable: calling vSphere RetrieveServiceContent at 127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}\n`);
    assert.doesNotMatch(run.stderr, /cannot reach hypervisord/);
  });

  test("an untrusted vCenter certificate: the fix named for hyperctl and the API, with the SHA-256 fingerprint that --thumbprint then pins", async (t) => {
    if (vsphereSkip) return t.skip(vsphereSkip);
    const host = new URL(sim!.url).host;
    const connection = ["--vsphere-url", sim!.url, "--username", "user", "--password", "pass"];
    const refused = await hyperctl(["vms", "list", ...connection]);
    assert.equal(refused.code, 1, refused.stderr);
    const printed = /--thumbprint ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})\b/.exec(refused.stderr)?.[1];
    assert.ok(printed, `a SHA-256 fingerprint to pass to --thumbprint: ${refused.stderr}`);
    assert.match(refused.stderr, new RegExp(`^hyperctl: the TLS certificate of ${host.replace(/\./g, "\\.")} is not trusted \\(self-signed certificate\\); `
      + "set insecure, or pin it with thumbprint \\(hyperctl: --insecure-vsphere, or --thumbprint "));
    assert.equal(printed, opensslFingerprint(host), "the fingerprint is the certificate's, as openssl reads it");

    // The API says the same (FAILED_PRECONDITION), naming its own fields.
    await assert.rejects(client.unary("listVMs", { vsphere: { url: sim!.url, username: "user", password: "pass" } }),
      (err: { code: number; details: string }) => err.code === 9 && err.details.includes("set insecure, or pin it with thumbprint") && err.details.includes(printed));

    const pinned = await hyperctl(["vms", "list", ...connection, "--thumbprint", printed, "-q"]);
    assert.equal(pinned.code, 0, pinned.stderr);
    assert.deepEqual(pinned.stdout.trim().split("\n").sort(), sim!.vms.map((vm) => vm.path).sort());
    const wrong = await hyperctl(["vms", "list", ...connection, "--thumbprint", printed.replace(/^../, printed.startsWith("00") ? "11" : "00")]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, new RegExp(`does not match the pinned thumbprint \\(it has SHA-256 ${printed}\\)`));
  });
});

describe("a daemon that cannot be reached: exit code 3", () => {
  const JOB_ID = "0193a2b4-5c1e-7d3f-9a2b-3c4d5e6f7a8b";

  test("any call: one line naming the address, exit 3 (not 1, the code of a refused call or a failed job)", async () => {
    const port = await closedPort();
    for (const server of [`http://127.0.0.1:${port}`, `grpc://127.0.0.1:${port}`]) {
      const run = await hyperctl(["status"], { server });
      assert.equal(run.code, 3, run.stderr);
      assert.equal(run.stderr, `hyperctl: cannot reach hypervisord at ${server}: connection refused\n`);
    }
  });

  test("watch and batches watch: give up within a few seconds, say so, exit 3", async () => {
    const server = `http://127.0.0.1:${await closedPort()}`;
    const started = Date.now();
    const [job, batch] = await Promise.all([hyperctl(["watch", JOB_ID], { server }), hyperctl(["batches", "watch", JOB_ID], { server })]);
    // The budget itself is checked by the message ("tried for 3 s"); the bound leaves room for a loaded machine and
    // is still far below the ~30 s the client library's own reconnection limit would take.
    const seconds = (Date.now() - started) / 1000;
    assert.ok(seconds < NEVER_REACHED_MS / 1000 + 12, `gave up after ${seconds} s`);
    for (const run of [job, batch]) {
      assert.equal(run.code, 3, run.stderr);
      // One line: a stream that never came up is not announced as "dropped, reconnecting".
      assert.equal(run.stderr, `hyperctl: cannot reach hypervisord at ${server}: connection refused (tried for 3 s)\n`);
    }
  });

  test("watch across a daemon restart goes on (exit 0); a daemon gone for good ends it after the budget with exit 3", async () => {
    // A daemon of its own, to kill. The job runs ~6 s, long enough to outlive a restart.
    const own = await spawnDaemon();
    cleanups.push(() => own.kill());
    const ownClient = createGrpcJsClient(own.grpcAddress);
    cleanups.push(() => ownClient.close());
    const slow = "restart?size=4194304&chunk=65536&delayMs=100";
    const { job } = await ownClient.unary("submitJob", { definition: { provider: "fake", vm: slow, outputDir: "restart" } });
    await waitForJob(ownClient, job!.id, hasBytes(0));
    let followed = "";
    const onSpawn = (child: ChildProcess) => child.stdout!.on("data", (chunk: Buffer) => (followed += chunk.toString()));
    const watching = hyperctl(["watch", job!.id], { server: own.httpUrl, timeoutMs: 120_000, onSpawn });
    await waitFor("the watch's first line", () => followed.includes("running"), 15_000);
    const killedAt = Date.now();
    const respawned = await respawnDaemon(own, { samePorts: true });
    cleanups.push(() => respawned.kill());
    const down = Date.now() - killedAt;
    const survived = await watching;
    assert.match(survived.stderr, /update stream of job .* dropped .*reconnecting, attempt 1/);
    // A restart normally takes a few seconds; on a machine so loaded that it took longer than the budget, giving up is right.
    if (down < LOST_MS - 3_000) {
      assert.equal(survived.code, 0, `down ${down} ms: ${survived.stderr}`);
      assert.match(survived.stdout, new RegExp(`job ${job!.id} completed in`));
    } else {
      console.log(`the daemon took ${down} ms to restart (budget ${LOST_MS} ms): hyperctl exited ${survived.code}`);
      assert.ok(survived.code === 0 || (survived.code === 3 && down >= LOST_MS), `down ${down} ms: exit ${survived.code}: ${survived.stderr}`);
    }

    const again = createGrpcJsClient(respawned.grpcAddress);
    cleanups.push(() => again.close());
    const { job: second } = await again.unary("submitJob", { definition: { provider: "fake", vm: slow.replace("restart", "gone"), outputDir: "gone" } });
    await waitForJob(again, second!.id, hasBytes(0));
    followed = "";
    const abandoned = hyperctl(["watch", second!.id], { server: respawned.httpUrl, timeoutMs: 120_000, onSpawn });
    await waitFor("the watch's first line", () => followed.includes("running"), 15_000);
    await respawned.kill();
    const goneAt = Date.now();
    const gone = await abandoned;
    const seconds = (Date.now() - goneAt) / 1000;
    assert.equal(gone.code, 3, gone.stderr);
    assert.ok(seconds >= LOST_MS / 1000 - 1 && seconds < LOST_MS / 1000 + 15, `gave up ${seconds} s after the daemon died`);
    assert.match(gone.stderr, new RegExp(`cannot reach hypervisord at ${respawned.httpUrl}: connection refused \\(the daemon went away and did not come back within 15 s\\); `
      + `stopped watching job ${second!.id}, which goes on in the daemon \\(hyperctl watch ${second!.id} follows it again\\)\\n$`));
  });
});

describe("enable and disable: webhooks and schedules alike", () => {
  test("webhooks enable/disable ID: only the enabled flag changes; a disabled webhook gets no events, an enabled one does", async () => {
    const receiver = await startWebhookReceiver({ reply: 204 });
    const added = await hyperctl(["webhooks", "add", receiver.url, "job.completed", "--disabled", "-q"]);
    assert.equal(added.code, 0, added.stderr);
    const id = added.stdout.split("\n")[0]!;
    const webhook = async () => (await client.unary("getWebhook", { id })).webhook!;
    assert.equal((await webhook()).enabled, false);

    const enabled = await hyperctl(["webhooks", "enable", id]);
    assert.equal(enabled.code, 0, enabled.stderr);
    assert.equal(enabled.stdout, `webhook ${id} enabled\n`);
    const on = await webhook();
    assert.equal(on.enabled, true);
    assert.deepEqual(on.events, ["job.completed"], "the other fields are left as they were");
    const { job: first } = await client.unary("submitJob", { definition: { provider: "fake", vm: "noop", outputDir: "hook-on" } });
    await waitFor("the job.completed delivery", () => receiver.requests.find((r) => r.body.includes(first!.id)), 15_000);

    const disabled = await hyperctl(["webhooks", "disable", id, "-o", "json"]);
    assert.equal(disabled.code, 0, disabled.stderr);
    assert.equal((JSON.parse(disabled.stdout) as { webhook: { enabled: boolean } }).webhook.enabled, false);
    const { job: second } = await client.unary("submitJob", { definition: { provider: "fake", vm: "noop", outputDir: "hook-off" } });
    await waitForJob(client, second!.id, isFinal);
    const { deliveries } = await client.unary("listWebhookDeliveries", { webhookId: id, pageSize: 100 });
    assert.equal(deliveries.length, 1, "no delivery was queued for the job that ended while the webhook was disabled");
    assert.ok(!receiver.requests.some((r) => r.body.includes(second!.id)));

    // The older spelling still works.
    const updated = await hyperctl(["webhooks", "update", id, "--enable"]);
    assert.equal(updated.code, 0, updated.stderr);
    assert.equal((await webhook()).enabled, true);
    const unknown = await hyperctl(["webhooks", "enable", "wh_no-such-webhook"]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /^hyperctl: .*wh_no-such-webhook/);
  });

  test("schedules enable/disable ID: the same verbs; disabled means no next run", async () => {
    const created = await hyperctl(["schedules", "create", "toggled", "0 3 * * *", "--provider", "fake", "--vm", "noop", "--disabled", "-o", "json"]);
    assert.equal(created.code, 0, created.stderr);
    const id = (JSON.parse(created.stdout) as { schedule: { id: string } }).schedule.id;
    const schedule = async () => (await client.unary("getSchedule", { id })).schedule!;
    assert.equal((await schedule()).enabled, false);
    const enabled = await hyperctl(["schedules", "enable", id]);
    assert.equal(enabled.code, 0, enabled.stderr);
    assert.match(enabled.stdout, new RegExp(`^schedule ${id} enabled; next run \\d{4}-\\d\\d-\\d\\d`));
    const on = await schedule();
    assert.equal(on.enabled, true);
    assert.ok(on.nextRunTime, "an enabled schedule has a next run");
    const disabled = await hyperctl(["schedules", "disable", id]);
    assert.equal(disabled.code, 0, disabled.stderr);
    assert.equal(disabled.stdout, `schedule ${id} disabled\n`);
    assert.equal((await schedule()).enabled, false);
    const shown = await hyperctl(["schedules", "get", id]);
    assert.match(shown.stdout, /^Enabled: +no$/m);
  });
});

describe("hyperctl get", () => {
  test("a job that ran three times: total duration and every attempt, with its outcome and reason", async () => {
    const vm = "flaky?size=524288&chunk=65536&delayMs=20&failTimes=2&failAfter=131072";
    const { job } = await client.unary("submitJob", { definition: { provider: "fake", vm, outputDir: "flaky" } });
    const done = await waitForJob(client, job!.id, isFinal);
    assert.equal(done.state, JobState.COMPLETED, done.error?.message);
    assert.equal(done.attempts.length, 3);

    const run = await hyperctl(["get", job!.id]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, new RegExp(`^Duration: +${duration(done.durationSeconds).replace(".", "\\.")} \\(3 attempts\\)$`, "m"));
    const section = run.stdout.split("\n\nAttempts:\n")[1];
    assert.ok(section, run.stdout);
    const rows = section.trim().split("\n");
    assert.match(rows[0]!, /^ATTEMPT +STARTED +ENDED +DURATION +OUTCOME +REASON$/);
    assert.equal(rows.length, 4);
    const outcomes = rows.slice(1).map((row) => row.split(/\s{2,}/));
    assert.deepEqual(outcomes.map((cells) => cells[0]), ["1", "2", "3"]);
    assert.deepEqual(outcomes.map((cells) => cells[4]), ["requeued", "requeued", "completed"]);
    assert.deepEqual(outcomes.map((cells) => cells[3]), done.attempts.map((a) => duration(a.durationSeconds)));
    assert.match(outcomes[0]![5]!, /fake failure 1 of 2/);

    // The jobs table counts all three runs as well.
    const listed = await hyperctl(["list", "-q"]);
    assert.ok(listed.stdout.split("\n").includes(job!.id));
    const table = await hyperctl(["list"]);
    const row = table.stdout.split("\n").find((line) => line.startsWith(job!.id))!;
    assert.ok(row.trimEnd().endsWith(duration(done.durationSeconds)), row);
  });

  test("a converted, verified export: the converted disks with their verification, and the files counted from the result", async (t) => {
    if (vsphereSkip) return t.skip(vsphereSkip);
    if (!findExecutable("qemu-img")) return t.skip("qemu-img not found on PATH (install qemu-utils)");
    const vm = sim!.vms[2]!;
    writeStreamOptimizedDisk(vm, tempDir("cli-behaviour-disk"), 2 * MiB);
    const { job } = await client.unary("submitJob", { definition: {
      provider: "vsphere", vm: vm.path, vsphere: { url: sim!.url, username: "user", password: "pass", insecure: true },
      outputDir: "converted", convertTo: "qcow2", verify: true,
    } });
    const done = await waitForJob(client, job!.id, isFinal, { timeoutMs: 120_000 });
    assert.equal(done.state, JobState.COMPLETED, done.error?.message);
    const [converted] = done.result!.convertedDisks;
    assert.equal(converted?.verification, "identical");

    const run = await hyperctl(["get", job!.id]);
    assert.equal(run.code, 0, run.stderr);
    const files = done.result!.files.length;
    assert.match(run.stdout, new RegExp(`^Progress: +100%, .+, ${files} files?, 1 converted$`, "m"));
    assert.doesNotMatch(run.stdout, /files \d+\/\d+/, "no progress count of a later phase");
    const section = run.stdout.split("\n\nConverted disks:\n")[1];
    assert.ok(section, run.stdout);
    const [header, row] = section.trim().split("\n");
    assert.match(header!, /^SOURCE +CONVERTED +FORMAT +SIZE +VERIFIED +SHA256$/);
    assert.deepEqual(row!.split(/\s{2,}/), [converted.source, converted.path, "qcow2", expectBytes(converted.size), "identical", converted.sha256]);
  });
});

/** The size as the table prints it (format.ts bytes), recomputed here. */
function expectBytes(size: bigint): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let n = Number(size);
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) {
    n /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${n.toFixed(n < 10 ? 1 : 0)} ${units[unit]}`;
}

describe("--help", () => {
  test("hyperctl --help lists the exit codes", async () => {
    const run = await hyperctl(["--help"]);
    assert.equal(run.code, 0);
    const table = run.stdout.split("Exit codes:\n")[1];
    assert.ok(table, run.stdout);
    const codes = table.split("\n").map((line) => /^ {2}(\d+) +\S/.exec(line)?.[1]).filter(Boolean);
    assert.deepEqual(codes, ["0", "1", "2", "3", "130"]);
    assert.match(table, /^ {2}3 +the daemon could not be reached/m);
  });

  test("examples in the --help of vms, schedules and webhooks commands", async () => {
    const commands = [["vms"], ["vms", "list"], ["vms", "get"], ["schedules"], ["schedules", "create"], ["schedules", "enable"], ["schedules", "disable"],
      ["schedules", "runs"], ["webhooks"], ["webhooks", "add"], ["webhooks", "enable"], ["webhooks", "disable"], ["webhooks", "deliveries"]];
    const runs = await Promise.all(commands.map((command) => hyperctl([...command, "--help"])));
    for (const [i, run] of runs.entries()) {
      const command = commands[i]!.join(" ");
      assert.equal(run.code, 0, `${command}: ${run.stderr}`);
      const examples = run.stdout.split("\nExamples:\n")[1]?.split("\n").filter((line) => line.startsWith("  hyperctl "));
      assert.ok(examples && examples.length > 0, `${command} --help has examples:\n${run.stdout}`);
      assert.ok(examples.every((line) => line.startsWith(`  hyperctl ${commands[i]![0]}`)), `${command}: ${examples.join("\n")}`);
      if (commands[i]!.length === 2) assert.ok(examples.some((line) => line.startsWith(`  hyperctl ${command}`)), `${command}: an example of itself`);
    }
  });
});

// Last in the file: while a usable key exists, the loopback daemon requires one.
describe("with API keys enforced", () => {
  test("only the daemon refusing the caller's key gets the API key hint; vCenter refusing the daemon's login does not", async (t) => {
    if (vsphereSkip) return t.skip(vsphereSkip);
    const created = await hyperctl(["keys", "create", "behaviour-admin", "--role", "admin", "-o", "json"]);
    assert.equal(created.code, 0, created.stderr);
    const { key, apiKey } = JSON.parse(created.stdout) as { key: string; apiKey: { id: string } };
    try {
      const vms = ["vms", "list", "--vsphere-url", sim!.url, "--username", "user", "--password", "wrong-password-3", "--insecure-vsphere"];
      const [noKey, badKey, goodKey] = await Promise.all([
        hyperctl(vms),
        hyperctl(vms, { env: { HYPERVISORD_API_KEY: "hvd_not_a_real_key" } }),
        hyperctl(vms, { env: { HYPERVISORD_API_KEY: key } }),
      ]);
      for (const run of [noKey, badKey, goodKey]) assert.equal(run.code, 1, run.stderr);
      assert.equal(noKey.stderr, "hyperctl: unauthenticated: pass --api-key or set HYPERVISORD_API_KEY\n");
      assert.equal(badKey.stderr, "hyperctl: unauthenticated: invalid API key: check --api-key or HYPERVISORD_API_KEY\n");
      assert.equal(goodKey.stderr, `hyperctl: vSphere login to ${sim!.url} as user failed: incorrect user name or password\n`);
    } finally {
      const revoked = await hyperctl(["keys", "revoke", apiKey.id], { env: { HYPERVISORD_API_KEY: key } });
      assert.equal(revoked.code, 0, revoked.stderr);
    }
  });
});
