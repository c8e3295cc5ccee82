// The vsphere provider against VMware's vCenter simulator with export (../shared/vcsim), through the real daemon.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { JobState, type Job } from "../gen/hypervisord/v1/job_pb.js";
import { createGrpcJsClient, type GrpcJsClient } from "./support/clients.ts";
import { hasBytes, isFinal, waitForJob } from "./support/wait-for-job.ts";
import { respawnDaemon, spawnDaemon, type DaemonProcess } from "./support/daemon-process.ts";
import { buildVcsim, startVcsim, type Vcsim } from "./support/vcsim.ts";

let skipReason: string | undefined;
let daemon: DaemonProcess;
let client: GrpcJsClient;
const sims: Vcsim[] = [];

before(async () => {
  skipReason = (await buildVcsim()).reason;
  if (skipReason) {
    console.log(`skipping the vSphere tests: ${skipReason}`);
    return;
  }
  daemon = await spawnDaemon();
  client = createGrpcJsClient(daemon.grpcAddress);
});

after(async () => {
  client?.close();
  if (daemon) assert.equal(await daemon.stop(), 0);
  for (const sim of sims) await sim.stop();
});

async function simulator(args: string[] = [], env: Record<string, string> = {}): Promise<Vcsim> {
  const sim = await startVcsim(args, env);
  sims.push(sim);
  return sim;
}

/** Random bytes written into a simulator disk: what the export must reproduce exactly. */
function fillDisk(file: string, size: number): Buffer {
  const bytes = randomBytes(size);
  fs.writeFileSync(file, bytes);
  return bytes;
}

const connection = (sim: Vcsim, password = "pass") => ({ url: sim.url, username: "user", password, insecure: true });

async function runJob(definition: Record<string, unknown>, timeoutMs = 60_000) {
  const { job } = await client.unary("submitJob", { definition: definition as never });
  return waitForJob(client, job!.id, isFinal, { timeoutMs });
}


describe("vSphere export against vcsim-export", () => {
  test("a single-disk VM: byte-identical disk, descriptor with real sizes, manifest that sha256sum agrees with", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const sim = await simulator();
    const vm = sim.vms[0]!;
    const source = fillDisk(vm.disks[0]!.file, 3 * 1024 * 1024 + 123);
    const job = await runJob({ provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "single" });
    assert.equal(job.state, JobState.COMPLETED, job.error?.message);
    const dir = path.join(daemon.outputRoot, "single", vm.name);
    assert.equal(job.result!.outputDir, dir);
    const disk = fs.readFileSync(path.join(dir, `${vm.name}-disk-1.vmdk`));
    assert.ok(disk.equals(source), "the exported disk is byte-identical to the source");
    const ovf = fs.readFileSync(path.join(dir, `${vm.name}.ovf`), "utf8");
    assert.match(ovf, new RegExp(`ovf:href="${vm.name}-disk-1.vmdk"[^>]*ovf:size="${source.length}"`));
    // The lease lists the VM's NVRAM as a non-disk device (BIOS VMs have one too); it is exported beside the disks.
    const payload = [`${vm.name}.ovf`, `${vm.name}-disk-1.vmdk`, ...(fs.existsSync(path.join(dir, `${vm.name}.nvram`)) ? [`${vm.name}.nvram`] : [])];
    const mf = fs.readFileSync(path.join(dir, `${vm.name}.mf`), "utf8").trim().split("\n");
    assert.deepEqual(mf.map((l) => /^SHA256\((.+)\)= /.exec(l)?.[1]), payload);
    for (const line of mf) {
      const match = /^SHA256\((.+)\)= ([0-9a-f]{64})$/.exec(line);
      assert.ok(match, line);
      const sha256sum = execFileSync("sha256sum", [path.join(dir, match[1]!)], { encoding: "utf8" }).split(" ")[0];
      assert.equal(match[2], sha256sum, `${match[1]} digest`);
    }
    assert.deepEqual(job.result!.files.map((f) => f.path), [...payload, `${vm.name}.mf`]);
    const status = await client.unary("getStatus", {});
    const counters = status.providers.find((p) => p.name === "vsphere")?.counters ?? {};
    assert.ok((counters.opened ?? 0n) >= 1n, JSON.stringify(status.providers, (_k, v) => (typeof v === "bigint" ? String(v) : v)));
  });

  test("a cut download resumes with Range to identical bytes (VCSIM_EXPORT_DROP_AFTER)", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const sim = await simulator([], { VCSIM_EXPORT_DROP_AFTER: "1000000" });
    const vm = sim.vms[0]!;
    const source = fillDisk(vm.disks[0]!.file, 4 * 1024 * 1024);
    const job = await runJob({ provider: "vsphere", vm: vm.moref, vsphere: connection(sim), outputDir: "cut" });
    assert.equal(job.state, JobState.COMPLETED, job.error?.message);
    assert.equal(job.attempt, 1, "resumed inside the run, not by a job retry");
    assert.ok(fs.readFileSync(path.join(daemon.outputRoot, "cut", vm.name, `${vm.name}-disk-1.vmdk`)).equals(source));
  });

  test("a 3 s lease timeout survives a 10 s export, and an initializing lease is waited for", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const sim = await simulator([], { VCSIM_LEASE_TIMEOUT_S: "3", VCSIM_EXPORT_RATE: "300000", VCSIM_LEASE_INIT_MS: "1500" });
    const vm = sim.vms[1]!;
    const source = fillDisk(vm.disks[0]!.file, 3_000_000);
    const job = await runJob({ provider: "vsphere", vm: vm.name, vsphere: connection(sim), outputDir: "slow" }, 60_000);
    assert.equal(job.state, JobState.COMPLETED, job.error?.message);
    assert.ok(job.result!.durationSeconds >= 9, `took ${job.result!.durationSeconds} s`);
    assert.ok(fs.readFileSync(path.join(daemon.outputRoot, "slow", vm.name, `${vm.name}-disk-1.vmdk`)).equals(source));
  });

  test("an expired session is logged in again transparently", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const sim = await simulator(["-session-idle-timeout", "2s"]);
    const list = () => client.unary("listVMs", { provider: "vsphere", vsphere: connection(sim) });
    assert.equal((await list()).vms.length, sim.vms.length);
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal((await list()).vms.length, sim.vms.length);
  });

  test("a powered-on VM is refused with running_vm_policy fail; with power_off set, the VM is powered off and exported", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const sim = await simulator(["-autostart=true"]);
    const vm = sim.vms[0]!;
    fillDisk(vm.disks[0]!.file, 100_000);
    const refused = await runJob({ provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "on", runningVmPolicy: "fail" });
    assert.equal(refused.state, JobState.FAILED);
    assert.equal(refused.error!.code, "FAILED_PRECONDITION");
    assert.match(refused.error!.message, /is powered on and running_vm_policy is "fail"/);
    assert.equal(refused.attempt, 1, "not retried");
    const before = await client.unary("getVM", { provider: "vsphere", vsphere: connection(sim), vm: vm.path });
    assert.equal(before.vm!.powerState, 2, "refusing left the VM powered on");
    const done = await runJob({ provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "on", powerOff: true });
    assert.equal(done.state, JobState.COMPLETED, done.error?.message);
    const afterwards = await client.unary("getVM", { provider: "vsphere", vsphere: connection(sim), vm: vm.path });
    assert.equal(afterwards.vm!.powerState, 1, "powered off");
  });

  test("wrong password: FAILED_PRECONDITION naming vSphere (not the API's UNAUTHENTICATED), not retried; unknown VM: NOT_FOUND", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const sim = await simulator(["-username", "user", "-password", "pass"]);
    await assert.rejects(client.unary("listVMs", { provider: "vsphere", vsphere: connection(sim, "wrong") }),
      (err: { code: number; details: string }) => err.code === 9 && /^vSphere login to https:\/\/127\.0\.0\.1:\d+\/sdk as user failed: incorrect user name or password$/.test(err.details));
    const job = await runJob({ provider: "vsphere", vm: sim.vms[0]!.path, vsphere: connection(sim, "wrong"), outputDir: "auth" });
    assert.equal(job.state, JobState.FAILED);
    assert.equal(job.error!.code, "FAILED_PRECONDITION");
    assert.equal(job.attempt, 1);
    assert.equal(job.definition!.vsphere!.password, "", "the password never comes back");
    assert.ok(!daemon.logs.some((line) => line.includes('"wrong"') || line.includes("pass\"")), "no password in the daemon log");
    await assert.rejects(client.unary("getVM", { provider: "vsphere", vsphere: connection(sim), vm: "/DC0/vm/no-such-vm" }),
      (err: { code: number; details: string }) => err.code === 5 && /VM "\/DC0\/vm\/no-such-vm" not found/.test(err.details));
    const missing = await runJob({ provider: "vsphere", vm: "no-such-vm", vsphere: connection(sim), outputDir: "auth" });
    assert.equal(missing.error!.code, "NOT_FOUND");
  });

  test("cancel stops a running download at once", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const sim = await simulator([], { VCSIM_EXPORT_RATE: "200000" });
    const vm = sim.vms[0]!;
    fillDisk(vm.disks[0]!.file, 5_000_000);
    const { job } = await client.unary("submitJob", { definition: { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "cancel" } });
    await waitForJob(client, job!.id, hasBytes(0));
    const began = Date.now();
    const { job: cancelled } = await client.unary("cancelJob", { jobId: job!.id });
    assert.equal(cancelled!.state, JobState.CANCELLED);
    for (;;) {
      const status = await client.unary("getStatus", {});
      if (status.running === 0) break;
      assert.ok(Date.now() - began < 3000, "the download stopped within 3 s of the cancel");
      await new Promise((r) => setTimeout(r, 50));
    }
    const { entries } = await client.unary("getJobLogs", { jobId: job!.id });
    assert.ok(entries.some((e) => e.message === "export stopped after cancel"), entries.map((e) => e.message).join("\n"));
  });

  test("an EFI VM: its NVRAM is exported and referenced by the descriptor", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const probe = await simulator();
    const name = probe.vms[0]!.name;
    const sim = await simulator(["-efi", name]);
    const vm = sim.vms.find((v) => v.name === name)!;
    assert.ok(vm.nvram, "the simulator made an NVRAM file");
    const nvram = fillDisk(vm.nvram!, 131_072);
    fillDisk(vm.disks[0]!.file, 200_000);
    const job = await runJob({ provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "efi" });
    assert.equal(job.state, JobState.COMPLETED, job.error?.message);
    const dir = path.join(daemon.outputRoot, "efi", vm.name);
    assert.ok(fs.readFileSync(path.join(dir, `${vm.name}.nvram`)).equals(nvram));
    const ovf = fs.readFileSync(path.join(dir, `${vm.name}.ovf`), "utf8");
    const id = new RegExp(`ovf:href="${vm.name}.nvram" ovf:id="([^"]+)" ovf:size="131072"`).exec(ovf)?.[1];
    assert.ok(id, "References lists the NVRAM with its size");
    assert.match(ovf, new RegExp(`vmw:key="nvram" vmw:value="ovf:/file/${id}"`));
  });

  test("1,000 VMs are listed with names, paths and morefs correctly paired", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const sim = await simulator(["-cluster", "3", "-vm", "250"]);
    const began = performance.now();
    const { vms } = await client.unary("listVMs", { provider: "vsphere", vsphere: connection(sim) });
    t.diagnostic(`listed ${vms.length} VMs in ${Math.round(performance.now() - began)} ms`);
    assert.equal(vms.length, 1000);
    const byMoref = new Map(sim.vms.map((v) => [v.moref, v]));
    for (const vm of vms) {
      const expected = byMoref.get(vm.moref);
      assert.ok(expected, vm.moref);
      assert.equal(vm.name, expected.name);
      assert.equal(vm.path, expected.path);
      assert.equal(vm.uuid, expected.uuid);
    }
    const filtered = await client.unary("listVMs", { provider: "vsphere", vsphere: connection(sim), namePattern: "DC0_C1_*_VM1?" });
    assert.ok(filtered.vms.length > 0 && filtered.vms.every((v) => /^DC0_C1_.*_VM1\d$/.test(v.name)), filtered.vms.map((v) => v.name).join(","));
  });

  test("kill -9 of the daemon mid-export: after a restart the job resumes (new lease, Range) to an identical result", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const sim = await simulator([], { VCSIM_EXPORT_RATE: "600000" });
    const vm = sim.vms[0]!;
    const size = 4 * 1024 * 1024;
    const source = fillDisk(vm.disks[0]!.file, size);
    const first = await spawnDaemon();
    const firstClient = createGrpcJsClient(first.grpcAddress);
    let jobId = "";
    try {
      const { job } = await firstClient.unary("submitJob", { definition: { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "crash" } });
      jobId = job!.id;
      await waitForJob(firstClient, jobId, hasBytes(size / 4));
    } finally {
      firstClient.close();
      await first.kill();
    }
    const second = await respawnDaemon(first);
    const secondClient = createGrpcJsClient(second.grpcAddress);
    try {
      const job = await waitForJob(secondClient, jobId, isFinal);
      assert.equal(job.state, JobState.COMPLETED, job.error?.message);
      assert.ok(fs.readFileSync(path.join(first.outputRoot, "crash", vm.name, `${vm.name}-disk-1.vmdk`)).equals(source), "identical after the restart");
      const { transitions } = await secondClient.unary("getJobHistory", { jobId });
      assert.ok(transitions.some((tr) => tr.actor === "recovery"), "recovered, not restarted by hand");
      const { entries } = await secondClient.unary("getJobLogs", { jobId });
      const starts = entries.filter((e) => e.message === "download started").map((e) => JSON.parse(e.fieldsJson) as { fromByte: number });
      assert.ok(starts.some((st) => st.fromByte >= size / 4), `the download continued where it stopped: ${JSON.stringify(starts)}`);
    } finally {
      secondClient.close();
      assert.equal(await second.stop(), 0);
    }
  });

  test("bytes that differ from the lease manifest (SHA-1) fail the job", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const sim = await simulator([], { VCSIM_EXPORT_RATE: "400000" });
    const vm = sim.vms[0]!;
    const file = vm.disks[0]!.file;
    fillDisk(file, 2_000_000);
    const { job } = await client.unary("submitJob", { definition: { provider: "vsphere", vm: vm.path, vsphere: connection(sim), outputDir: "tampered" } });
    await waitForJob(client, job!.id, hasBytes(0));
    // The manifest was computed when the lease was read; the tail served from now on differs from it.
    const fd = fs.openSync(file, "r+");
    fs.writeSync(fd, randomBytes(100_000), 0, 100_000, 1_900_000);
    fs.closeSync(fd);
    const final = await waitForJob(client, job!.id, isFinal);
    assert.equal(final.state, JobState.FAILED);
    assert.match(final.error!.message, /SHA-1 [0-9a-f]{40} does not match the lease manifest's [0-9a-f]{40}/);
  });
});


describe("vSphere export of VMs changed through vim25", () => {
  /** A session of the project's own vim25 client, to reconfigure the simulator's inventory for a test. */
  async function adminSession(sim: Vcsim) {
    const { openSession } = await import("../src/providers/vsphere/session.ts");
    const pino = (await import("pino")).default;
    return openSession({ url: sim.url, username: "user", password: "pass", insecure: true, thumbprint: "" }, { maxConnections: 2, logger: pino({ level: "silent" }) }, AbortSignal.timeout(10_000));
  }

  test("a VM with two disks: both exported byte-identical, in order, and referenced by the descriptor", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { runTask } = await import("../src/providers/vsphere/tasks.ts");
    const { retrieveOne } = await import("../src/providers/vsphere/property-collector.ts");
    const { element } = await import("../src/providers/vsphere/xml.ts");
    const sim = await simulator();
    const vm = sim.vms[0]!;
    const ref = { type: "VirtualMachine", value: vm.moref };
    const session = await adminSession(sim);
    try {
      const devices = (await retrieveOne(session, ref, ["config.hardware.device"], AbortSignal.timeout(10_000)))!.props.get("config.hardware.device")!;
      const scsi = devices.children.find((d) => /SCSIController$/.test(d.type ?? ""))!;
      const controllerKey = scsi.children.find((c) => c.name === "key")!.text;
      const disk = element([
        ["key", -1],
        ["backing", element([["fileName", ""], ["diskMode", "persistent"]], "VirtualDiskFlatVer2BackingInfo")],
        ["controllerKey", Number(controllerKey)],
        ["unitNumber", 1],
        ["capacityInKB", 2048],
      ], "VirtualDisk");
      const spec = element([["deviceChange", element([["operation", "add"], ["fileOperation", "create"], ["device", disk]])]]);
      await runTask(session, "ReconfigVM_Task", ref, AbortSignal.timeout(10_000), [["spec", spec]]);
    } finally {
      await session.close();
    }
    const { vm: info } = await client.unary("getVM", { provider: "vsphere", vsphere: connection(sim), vm: vm.moref });
    assert.equal(info!.disks.length, 2, "the simulator now has a second disk");
    const datastoreRoot = path.dirname(path.dirname(vm.disks[0]!.file));
    const sources = info!.disks.map((d, i) => fillDisk(path.join(datastoreRoot, d.file.replace(/^\[[^\]]+\] /, "")), 1_500_000 + i * 777));
    const job = await runJob({ provider: "vsphere", vm: vm.moref, vsphere: connection(sim), outputDir: "multi", parallelDownloads: 2 });
    assert.equal(job.state, JobState.COMPLETED, job.error?.message);
    const dir = path.join(daemon.outputRoot, "multi", vm.name);
    sources.forEach((source, i) => assert.ok(fs.readFileSync(path.join(dir, `${vm.name}-disk-${i + 1}.vmdk`)).equals(source), `disk ${i + 1}`));
    const ovf = fs.readFileSync(path.join(dir, `${vm.name}.ovf`), "utf8");
    sources.forEach((source, i) => assert.match(ovf, new RegExp(`ovf:href="${vm.name}-disk-${i + 1}.vmdk"[^>]*ovf:size="${source.length}"`)));
  });

  test("remove_devices: the export keeps its disk and NIC, the .mf covers the written descriptor, and the VM keeps its CD-ROM and floppy", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { runTask } = await import("../src/providers/vsphere/tasks.ts");
    const { retrieveOne } = await import("../src/providers/vsphere/property-collector.ts");
    const { element } = await import("../src/providers/vsphere/xml.ts");
    const sim = await simulator();
    const vm = sim.vms[0]!;
    const ref = { type: "VirtualMachine", value: vm.moref };
    const session = await adminSession(sim);
    const deviceTypes = async () => {
      const devices = (await retrieveOne(session, ref, ["config.hardware.device"], AbortSignal.timeout(10_000)))!.props.get("config.hardware.device")!;
      return devices.children.map((d) => d.type ?? "");
    };
    try {
      const devices = (await retrieveOne(session, ref, ["config.hardware.device"], AbortSignal.timeout(10_000)))!.props.get("config.hardware.device")!;
      const ide = devices.children.find((d) => /VirtualIDEController$/.test(d.type ?? ""));
      assert.ok(ide, `the simulator's VM has an IDE controller: ${devices.children.map((d) => d.type).join(", ")}`);
      const ideKey = Number(ide.children.find((c) => c.name === "key")!.text);
      const cdrom = element([
        ["key", -2],
        ["backing", element([["deviceName", ""], ["exclusive", false]], "VirtualCdromRemotePassthroughBackingInfo")],
        ["controllerKey", ideKey],
        ["unitNumber", 1],
      ], "VirtualCdrom");
      const floppy = element([["key", -3], ["backing", element([["deviceName", ""]], "VirtualFloppyRemoteDeviceBackingInfo")]], "VirtualFloppy");
      const spec = element([["deviceChange", [element([["operation", "add"], ["device", cdrom]]), element([["operation", "add"], ["device", floppy]])]]]);
      await runTask(session, "ReconfigVM_Task", ref, AbortSignal.timeout(10_000), [["spec", spec]]);
      const before = await deviceTypes();
      assert.ok(before.includes("VirtualCdrom") && before.includes("VirtualFloppy"), before.join(", "));

      // vcsim's CreateDescriptor writes no CD-ROM or floppy Items (real vSphere does): the removal itself is
      // tested on a vSphere-shaped descriptor in ovf-devices.test.ts; here, that the job and the VM are right.
      fillDisk(vm.disks[0]!.file, 200_000);
      const job = await runJob({ provider: "vsphere", vm: vm.moref, vsphere: connection(sim), outputDir: "devices-removed", removeDevices: ["cdrom", "FLOPPY"] });
      assert.equal(job.state, JobState.COMPLETED, job.error?.message);
      assert.deepEqual(job.definition!.removeDevices, ["cdrom", "floppy"]);
      const dir = path.join(daemon.outputRoot, "devices-removed", vm.name);
      const ovf = fs.readFileSync(path.join(dir, `${vm.name}.ovf`), "utf8");
      assert.doesNotMatch(ovf, /<rasd:ResourceType>1[45]<\/rasd:ResourceType>/);
      assert.match(ovf, /<rasd:ResourceType>17<\/rasd:ResourceType>/, "the disk stays");
      assert.match(ovf, /<rasd:ResourceType>10<\/rasd:ResourceType>/, "the NIC stays");
      const mf = fs.readFileSync(path.join(dir, `${vm.name}.mf`), "utf8");
      const ovfDigest = execFileSync("sha256sum", [path.join(dir, `${vm.name}.ovf`)], { encoding: "utf8" }).split(" ")[0];
      assert.ok(mf.includes(`SHA256(${vm.name}.ovf)= ${ovfDigest}`), "the manifest covers the edited descriptor");
      assert.deepEqual(await deviceTypes(), before, "the source VM is unchanged");
    } finally {
      await session.close();
    }
  });

  test("remove_devices with an unknown kind is refused, naming the field", async (t) => {
    if (skipReason) return t.skip(skipReason);
    await assert.rejects(client.unary("submitJob", { definition: { vm: "x", vsphere: { url: "https://vc.example/sdk" }, removeDevices: ["cdrom", "gpu"] } as never }),
      (err: { code: number; details: string }) => err.code === 3 && /definition\.remove_devices\[1\]: unknown value "gpu"; use one of cdrom, floppy/.test(err.details));
  });

  test("a VM whose name is unsafe as a file name is written under a sanitized name, inside the output directory", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { runTask } = await import("../src/providers/vsphere/tasks.ts");
    const sim = await simulator();
    const vm = sim.vms[0]!;
    const session = await adminSession(sim);
    try {
      await runTask(session, "Rename_Task", { type: "VirtualMachine", value: vm.moref }, AbortSignal.timeout(10_000), [["newName", "../../evil:name*?"]]);
    } finally {
      await session.close();
    }
    const source = fillDisk(vm.disks[0]!.file, 300_000);
    const job = await runJob({ provider: "vsphere", vm: vm.moref, vsphere: connection(sim), outputDir: "unsafe" });
    assert.equal(job.state, JobState.COMPLETED, job.error?.message);
    const dir = path.join(daemon.outputRoot, "unsafe", "_.._evil_name__");
    assert.equal(job.result!.outputDir, dir);
    assert.ok(fs.readFileSync(path.join(dir, "_.._evil_name__-disk-1.vmdk")).equals(source));
  });
});

describe("vSphere TLS", () => {
  test("a pinned thumbprint (SHA-256 or SHA-1) is accepted, a wrong one refused, an untrusted certificate explained", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const tls = await import("node:tls");
    const sim = await simulator();
    const { hostname, port } = new URL(sim.url);
    const cert = await new Promise<{ fingerprint256: string; fingerprint: string }>((resolve, reject) => {
      const socket = tls.connect({ host: hostname, port: Number(port), rejectUnauthorized: false }, () => {
        resolve(socket.getPeerCertificate());
        socket.end();
      });
      socket.once("error", reject);
    });
    const pinned = (thumbprint: string) => ({ url: sim.url, username: "user", password: "pass", insecure: false, thumbprint });
    for (const thumbprint of [cert.fingerprint256, cert.fingerprint.replace(/:/g, "").toLowerCase()]) {
      assert.equal((await client.unary("listVMs", { provider: "vsphere", vsphere: pinned(thumbprint) })).vms.length, sim.vms.length, thumbprint);
    }
    await assert.rejects(client.unary("listVMs", { provider: "vsphere", vsphere: pinned("00".repeat(32)) }),
      (err: { code: number; details: string }) => err.code === 9 && /does not match the pinned thumbprint/.test(err.details));
    await assert.rejects(client.unary("listVMs", { provider: "vsphere", vsphere: pinned("") }),
      (err: { code: number; details: string }) => err.code === 9 && /is not trusted .*set insecure, or pin it with thumbprint/.test(err.details));
  });
});

describe("vSphere session hygiene", () => {
  test("every session the daemon opened is logged out when it stops, after exports, discovery and a failed job", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { openSession } = await import("../src/providers/vsphere/session.ts");
    const { retrieveOne } = await import("../src/providers/vsphere/property-collector.ts");
    const pino = (await import("pino")).default;
    const sim = await simulator();
    const vm = sim.vms[0]!;
    fillDisk(vm.disks[0]!.file, 200_000);
    const own = await spawnDaemon();
    const ownClient = createGrpcJsClient(own.grpcAddress);
    try {
      await ownClient.unary("listVMs", { provider: "vsphere", vsphere: connection(sim) });
      for (const ref of [vm.path, "no-such-vm"]) {
        const { job } = await ownClient.unary("submitJob", { definition: { provider: "vsphere", vm: ref, vsphere: connection(sim), outputDir: "hygiene" } });
        await waitForJob(ownClient, job!.id, isFinal);
      }
    } finally {
      ownClient.close();
      assert.equal(await own.stop(), 0);
    }
    const observer = await openSession({ url: sim.url, username: "observer", password: "x", insecure: true, thumbprint: "" },
      { maxConnections: 1, logger: pino({ level: "silent" }) }, AbortSignal.timeout(10_000));
    try {
      const sessions = (await retrieveOne(observer, observer.content.sessionManager, ["sessionList"], AbortSignal.timeout(10_000)))!
        .props.get("sessionList")!.children.map((s) => s.children.find((c) => c.name === "userName")?.text);
      assert.deepEqual(sessions, ["observer"], "only the observer's own session is left");
    } finally {
      await observer.close();
    }
  });
});

describe("vSphere session pool", () => {
  test("one session per endpoint and user, reused; a session the server dropped while idle is health-checked and logged in again", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const { createSessionPool } = await import("../src/providers/vsphere/session-pool.ts");
    const { listVMs } = await import("../src/providers/vsphere/discovery.ts");
    const pino = (await import("pino")).default;
    const sim = await simulator(["-session-idle-timeout", "1s"]);
    const lines: string[] = [];
    const pool = createSessionPool({
      maxConnections: 2, idleTimeoutMs: 60_000, healthCheckAfterMs: 300,
      logger: pino({ level: "info" }, { write: (line: string) => void lines.push(line) }),
    });
    const conn = { ...connection(sim), thumbprint: "" };
    try {
      const list = () => pool.use(conn, AbortSignal.timeout(10_000), (s) => listVMs(s, {}, AbortSignal.timeout(10_000)));
      await Promise.all([list(), list(), list()]);
      await new Promise((r) => setTimeout(r, 2500)); // vcsim expires idle sessions in a periodic sweep
      assert.equal((await list()).length, sim.vms.length);
      const stats = await pool.stats();
      assert.deepEqual({ opened: stats.opened, reused: stats.reused, relogins: stats.relogins }, { opened: 1, reused: 3, relogins: 1 }, lines.join("\n"));
      assert.ok(lines.some((l) => l.includes('"why":"health check"')), lines.join("\n"));
    } finally {
      await pool.closeAll();
    }
  });
});
