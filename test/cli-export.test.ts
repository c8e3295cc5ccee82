// `hyperctl export` as a user runs it: every job field as an option (read back from the daemon with a
// grpc-js GetJob / GetSchedule), bad values refused before any call, the examples of --help, and
// `export --local` (no daemon) against the vCenter simulator: disk bytes, exit codes, and what is left behind.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { JobState } from "../gen/hypervisord/v1/job_pb.js";
import { HypervisordService, type SubmitJobRequest } from "../gen/hypervisord/v1/service_pb.js";
import { createGrpcJsClient, type GrpcJsClient } from "./support/clients.ts";
import { spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { runHyperctl, type HyperctlOptions } from "./support/hyperctl.ts";
import { tempDir } from "./support/temp-dir.ts";
import { buildVcsim, startVcsim, type Vcsim } from "./support/vcsim.ts";
import { waitFor } from "./support/wait-for.ts";
import { findExecutable } from "../src/stages/qemu-img.ts";

/** Nothing listens here: a command that called the daemon would fail with "cannot reach", not a usage error. */
const NO_DAEMON = "http://127.0.0.1:9";

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

describe("hyperctl export: every job field as an option", () => {
  let d: DaemonProcess;
  let client: GrpcJsClient;
  before(async () => {
    d = await spawnDaemon();
    client = createGrpcJsClient(d.grpcAddress);
  });
  after(async () => {
    client?.close();
    if (d) assert.equal(await d.stop(), 0, "daemon exit code");
  });

  const hyperctl = (args: string[], options: Partial<HyperctlOptions> = {}) => runHyperctl(args, { server: d.httpUrl, ...options });

  /** `export -q ARGS` (a fake-provider job), and the definition the daemon stored. */
  async function stored(args: string[]) {
    const run = await hyperctl(["-q", "export", "--provider", "fake", "--vm", "noop", ...args]);
    assert.equal(run.code, 0, run.stderr);
    const { job } = await client.unary("getJob", { jobId: run.stdout.trim() });
    return job!.definition!;
  }

  test("the download, package and running-VM fields reach the stored definition", async () => {
    const definition = await stored([
      "--parallel-downloads", "7", "--bandwidth-limit", "100MiB/s", "--format", "ova", "--cleanup-ovf",
      "--remove-device", "cdrom", "--remove-device", "USB", "--remove-device", "cdrom", "--include-image-files",
      "--manifest-algorithm", "sha1", "--no-generate-manifest", "--running-vm-policy", "power-off",
      "--quiesce-policy", "fail", "--keep-partial",
    ]);
    assert.equal(definition.parallelDownloads, 7);
    assert.equal(definition.bandwidthLimit, 100n * 1024n * 1024n);
    assert.equal(definition.cleanupOvf, true);
    assert.deepEqual(definition.removeDevices, ["cdrom", "usb"], "lower-cased, each once");
    assert.equal(definition.includeImageFiles, true);
    assert.equal(definition.manifestAlgorithm, "sha1");
    assert.equal(definition.generateManifest, false);
    assert.equal(definition.runningVmPolicy, "power_off");
    assert.equal(definition.quiescePolicy, "fail");
    assert.equal(definition.keepPartial, true);
  });

  test("unset options leave the daemon's defaults; --no-quiesce and rates in other units", async () => {
    const plain = await stored([]);
    assert.equal(plain.parallelDownloads, 4, "the daemon's default");
    assert.equal(plain.bandwidthLimit, 0n);
    assert.equal(plain.quiesce, true, "the daemon's default");
    assert.equal(plain.generateManifest, true);
    assert.equal(plain.manifestAlgorithm, "sha256");
    assert.deepEqual(plain.removeDevices, []);
    const other = await stored(["--no-quiesce", "--bandwidth-limit", "1.5GB/s"]);
    assert.equal(other.quiesce, false);
    assert.equal(other.bandwidthLimit, 1_500_000_000n);
    assert.equal((await stored(["--bandwidth-limit", "1048576"])).bandwidthLimit, 1_048_576n);
  });

  test("--convert with --verify", async (t) => {
    if (!findExecutable("qemu-img")) return t.skip("qemu-img is not installed (Debian qemu-utils): the daemon refuses conversions without it");
    const definition = await stored(["--convert", "qcow2", "--verify"]);
    assert.equal(definition.convertTo, "qcow2");
    assert.equal(definition.verify, true);
  });

  test("schedules create takes the same options for its job template", async () => {
    const run = await hyperctl(["-q", "schedules", "create", "cli-export-template", "@daily", "--provider", "fake", "--vm", "noop",
      "--parallel-downloads", "3", "--bandwidth-limit", "20MB", "--remove-device", "floppy", "--include-image-files",
      "--manifest-algorithm", "sha1", "--cleanup-ovf", "--no-generate-manifest", "--no-quiesce"]);
    assert.equal(run.code, 0, run.stderr);
    const { schedule } = await client.unary("getSchedule", { id: run.stdout.trim() });
    const template = schedule!.jobTemplate!;
    assert.equal(template.parallelDownloads, 3);
    assert.equal(template.bandwidthLimit, 20_000_000n);
    assert.deepEqual(template.removeDevices, ["floppy"]);
    assert.equal(template.includeImageFiles, true);
    assert.equal(template.manifestAlgorithm, "sha1");
    assert.equal(template.cleanupOvf, true);
    assert.equal(template.generateManifest, false);
    assert.equal(template.quiesce, false);
  });

  test("--quiesce sends quiesce: true, neither option leaves it unset (the request as a server receives it)", async () => {
    // The daemon stores its default (true) for an unset quiesce, so only the request itself tells the two apart.
    const requests: SubmitJobRequest[] = [];
    const server = http.createServer(connectNodeAdapter({ routes: (router) => router.service(HypervisordService, {
      submitJob: async (request) => {
        requests.push(request);
        return { created: true, job: { id: `recorded-${requests.length}`, state: JobState.QUEUED } };
      },
    }) }));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      for (const args of [["--quiesce"], [], ["--no-quiesce"]]) {
        const run = await hyperctl(["export", "--vm", "web-01", ...args], { server: url });
        assert.equal(run.code, 0, run.stderr);
      }
      assert.deepEqual(requests.map((r) => r.definition!.quiesce), [true, undefined, false]);
      assert.deepEqual(requests.map((r) => r.definition!.generateManifest), [undefined, undefined, undefined]);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test("a job file's bandwidth_limit takes the same units; a bad one names the file and the field", async () => {
    const dir = tempDir("cli-export-file");
    const good = path.join(dir, "job.yaml");
    fs.writeFileSync(good, "provider: fake\nvm: noop\nbandwidth_limit: 64MiB/s\nremove_devices: [sound]\n");
    const run = await hyperctl(["-o", "json", "submit", "-f", good]);
    assert.equal(run.code, 0, run.stderr);
    const id = (JSON.parse(run.stdout) as { results: { job: { id: string } }[] }).results[0]!.job.id;
    const { job } = await client.unary("getJob", { jobId: id });
    assert.equal(job!.definition!.bandwidthLimit, 64n * 1024n * 1024n);
    assert.deepEqual(job!.definition!.removeDevices, ["sound"]);
    const bad = path.join(dir, "bad.yaml");
    fs.writeFileSync(bad, "vm: noop\nbandwidth_limit: 100Mb/s\n");
    const refused = await hyperctl(["submit", "-f", bad], { server: NO_DAEMON });
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, new RegExp(`${bad}: bandwidth_limit: expected bytes per second .*got "100Mb/s"`));
  });
});

describe("hyperctl export: bad values are usage errors naming the option, before any call", () => {
  const cases: [string[], RegExp][] = [
    [["--parallel-downloads", "0"], /--parallel-downloads <n>' argument '0' is invalid\. expected an integer from 1 to 32/],
    [["--parallel-downloads", "33"], /--parallel-downloads/],
    [["--bandwidth-limit", "100Mb/s"], /--bandwidth-limit <rate>' argument '100Mb\/s' is invalid\. expected bytes per second .*b would be bits/],
    [["--bandwidth-limit", "fast"], /--bandwidth-limit/],
    [["--remove-device", "dvd"], /--remove-device must be one of cdrom, floppy, serial, parallel, usb, sound, got "dvd"/],
    [["--manifest-algorithm", "md5"], /--manifest-algorithm <algorithm>' argument 'md5' is invalid\. Allowed choices are sha256, sha1/],
    [["--running-vm-policy", "suspend"], /--running-vm-policy must be one of snapshot, power_off, fail/],
    [["--verify"], /--verify needs --convert/],
    [["--power-off", "--running-vm-policy", "fail"], /--power-off contradicts --running-vm-policy fail/],
    [["--local", "--profile", "gold"], /--profile: profiles are kept by a daemon/],
  ];
  test("each refused with exit code 2", async () => {
    // One after another: each is a Node start, and the machine is shared.
    for (const [args, message] of cases) {
      const run = await runHyperctl(["export", "--vm", "web-01", ...args], { server: NO_DAEMON });
      assert.equal(run.code, 2, `${args.join(" ")}: ${run.stderr}`);
      assert.match(run.stderr, message, args.join(" "));
      assert.doesNotMatch(run.stderr, /cannot reach/, "no call was made");
    }
  });
});

describe("hyperctl export and submit --help", () => {
  test("show examples, and what --local means for --output-dir", async () => {
    const [exportHelp, submitHelp] = await Promise.all([
      runHyperctl(["export", "--help"], { server: NO_DAEMON }),
      runHyperctl(["submit", "--help"], { server: NO_DAEMON }),
    ]);
    assert.equal(exportHelp.code, 0);
    assert.match(exportHelp.stdout, /\nExamples:\n/);
    assert.match(exportHelp.stdout, /^ {2}hyperctl export --local --vm web-01 /m);
    assert.match(exportHelp.stdout, /--bandwidth-limit 50MiB\/s/);
    assert.match(exportHelp.stdout.replace(/\s+/g, " "), /with export --local a directory on this machine, relative to the current one/);
    assert.equal(submitHelp.code, 0);
    assert.match(submitHelp.stdout, /\nExamples:\n(.*\n)* {2}hyperctl submit -f job\.yaml\n/);
  });
});

describe("hyperctl export --local (no daemon) against the vCenter simulator", () => {
  let skipReason: string | undefined;
  let sim: Vcsim;
  let slowSim: Vcsim;
  let work: string;

  before(async () => {
    skipReason = (await buildVcsim()).reason;
    if (skipReason) {
      console.log(`skipping the export --local tests: ${skipReason}`);
      return;
    }
    work = tempDir("cli-local");
    preexisting = new Set(dataDirs());
    // A vCenter that checks the password; the slow one streams at 300 kB/s, so that Ctrl-C lands mid-download.
    [sim, slowSim] = await Promise.all([
      startVcsim(["-username", "user", "-password", "pass"]),
      startVcsim(["-username", "user", "-password", "pass"], { VCSIM_EXPORT_RATE: "300000" }),
    ]);
  });
  after(async () => {
    await sim?.stop();
    await slowSim?.stop();
  });

  /** The temporary data directories of export --local, other than those there before these tests: it must leave none. */
  const dataDirs = () => fs.readdirSync(os.tmpdir()).filter((name) => name.startsWith("hyperctl-local-"));
  let preexisting = new Set<string>();
  const leftDataDirs = () => dataDirs().filter((name) => !preexisting.has(name));

  function local(target: Vcsim, args: string[], options: Partial<HyperctlOptions> = {}) {
    return runHyperctl(["export", "--local", "--vsphere-url", target.url, "--username", "user", "--insecure-vsphere", ...args],
      { server: NO_DAEMON, cwd: work, timeoutMs: 120_000, ...options });
  }

  test("exports a VM in-process: the disk's bytes are the simulator's, exit 0, no data directory left", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const vm = sim.vms[0]!;
    const source = randomBytes(3 * 1024 * 1024 + 123);
    fs.writeFileSync(vm.disks[0]!.file, source);
    // A relative --output-dir is under the current directory; the password comes from stdin.
    const run = await local(sim, ["--vm", vm.path, "--password-stdin", "--output-dir", "out/ok"], { input: "pass\n" });
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
    const dir = path.join(work, "out/ok", vm.name);
    assert.match(run.stdout, new RegExp(`completed in [\\d.]+ ?s: ${dir}`));
    assert.equal(sha256(fs.readFileSync(path.join(dir, `${vm.name}-disk-1.vmdk`))), sha256(source));
    assert.ok(fs.existsSync(path.join(dir, `${vm.name}.ovf`)) && fs.existsSync(path.join(dir, `${vm.name}.mf`)));
    assert.deepEqual(leftDataDirs(), []);
  });

  test("a wrong password: exit 1 with vCenter's refusal, no password in the output, nothing left", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const run = await local(sim, ["--vm", sim.vms[0]!.path, "--password", "wrong-secret", "--output-dir", "out/denied/deeper"]);
    assert.equal(run.code, 1, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout + run.stderr, /failed: FAILED_PRECONDITION: vSphere login to https:\/\/127\.0\.0\.1:\d+\/sdk as user failed: incorrect user name or password/);
    assert.doesNotMatch(run.stdout + run.stderr, /wrong-secret/);
    assert.ok(!fs.existsSync(path.join(work, "out/denied")), "the output directories it created are removed");
    assert.ok(fs.existsSync(path.join(work, "out")), "but not one that was there before");
    assert.deepEqual(leftDataDirs(), []);
  });

  test("an unknown VM: exit 1 with NOT_FOUND, nothing left", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const run = await local(sim, ["--vm", "/DC0/vm/no-such-vm", "--password", "pass", "--output-dir", "out/unknown"]);
    assert.equal(run.code, 1, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout + run.stderr, /failed: NOT_FOUND: VM "\/DC0\/vm\/no-such-vm" not found/);
    assert.ok(!fs.existsSync(path.join(work, "out/unknown")));
    assert.deepEqual(leftDataDirs(), []);
  });

  test("a folder as one batch, in-process: a package per VM, exit 0", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const run = await local(sim, ["--folder", "/DC0/vm", "--max-parallel", "2", "--password", "pass", "--output-dir", "out/folder"]);
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout, new RegExp(`batch \\S+ completed in [\\d.]+ ?s: ${sim.vms.length} completed`));
    for (const vm of sim.vms) assert.ok(fs.existsSync(path.join(work, "out/folder", vm.name, `${vm.name}.ovf`)), vm.name);
    assert.deepEqual(leftDataDirs(), []);
  });

  test("Ctrl-C mid-export cancels: exit 2, no partial files, no data directory left", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const vm = slowSim.vms[0]!;
    fs.writeFileSync(vm.disks[0]!.file, randomBytes(3_000_000));
    const out = path.join(work, "out/cancelled");
    let child: import("node:child_process").ChildProcess | undefined;
    const running = local(slowSim, ["--vm", vm.path, "--password", "pass", "--output-dir", out], { onSpawn: (c) => (child = c) });
    // Interrupted once the disk is being written (about 10 s of download at this rate).
    await waitFor("a partial disk file", () => {
      const vmDir = path.join(out, vm.name);
      return fs.existsSync(vmDir) && fs.readdirSync(vmDir).some((f) => f.endsWith(".partial") && fs.statSync(path.join(vmDir, f)).size > 0);
    }, 60_000, 50);
    child!.kill("SIGINT");
    const run = await running;
    assert.equal(run.code, 2, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stderr, /SIGINT: cancelling the export and removing what it wrote/);
    assert.match(run.stdout, /cancelled/);
    assert.ok(!fs.existsSync(out), `nothing left under ${out}: ${fs.existsSync(out) ? fs.readdirSync(out, { recursive: true }).join(", ") : ""}`);
    assert.deepEqual(leftDataDirs(), []);
  });

  test("Ctrl-C during a batch cancels the batch: exit 2, nothing left", async (t) => {
    if (skipReason) return t.skip(skipReason);
    // Every VM's disk takes seconds at this rate, whichever the batch starts with (a tiny one's .partial lives a moment).
    for (const vm of slowSim.vms) fs.writeFileSync(vm.disks[0]!.file, randomBytes(3_000_000));
    const out = path.join(work, "out/batch-cancelled");
    let child: import("node:child_process").ChildProcess | undefined;
    const running = local(slowSim, ["--folder", "/DC0/vm", "--max-parallel", "1", "--password", "pass", "--output-dir", out], { onSpawn: (c) => (child = c) });
    await waitFor("a partial disk file of the batch", () =>
      fs.existsSync(out) && fs.readdirSync(out, { recursive: true }).some((f) => String(f).endsWith(".partial")), 60_000, 50);
    child!.kill("SIGINT");
    const run = await running;
    assert.equal(run.code, 2, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout, /batch \S+ cancelled/);
    assert.ok(!fs.existsSync(out), `nothing left under ${out}: ${fs.existsSync(out) ? fs.readdirSync(out, { recursive: true }).join(", ") : ""}`);
    assert.deepEqual(leftDataDirs(), []);
  });
});
